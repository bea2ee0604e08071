#!/usr/bin/env python3
"""run.py — tributary's benchmark driver (`make bench`; bench/README.md explains it).

Starts a fresh server (own port, own temporary data directory) for every measured run,
so its peak RSS (VmHWM) belongs to that run alone, and runs the baseline on the same
records right before it: baseline, server, baseline, server, ... for --rounds rounds.
These machines are noisy, so every figure reported is the median over the rounds, and
ratios are taken between medians. The load generator and the baselines are the C
programs in bench/ (built into build/bench by bench/Makefile); this script only
orchestrates them, reads /proc, and prints markdown tables (also saved, with the raw
numbers as JSON, under build/bench/).

Backends are rows of the tables: SQLite always; PostgreSQL once the server has a
PostgreSQL backend (it then needs a PostgreSQL server, started here in a temporary
cluster; see PostgresBackend). Until then its rows say why they are skipped.

With --compare OTHER, every server run of the throughput, small-request and big-table
scenarios is followed by the same run with the OTHER binary: two builds interleaved in one
run, on the same noise, which is what a change's effect has to be judged on.
"""

import argparse
import datetime
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

ADMIN_KEY = "bench-admin-key-0123456789"
STEPS = ("throughput", "small", "big_request", "big_table", "backfill", "snapshot")
TABLE = "t"
MIB = 1024 * 1024


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- helpers


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise BenchError(f"no {field} in /proc/{pid}/status")


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spec_args(spec):
    return [f"--{k}={v}" for k, v in spec.items()]


def run_json(cmd):
    """Runs one of the C programs and returns the JSON object it prints."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# ---------------------------------------------------------------- workloads
#
# Record j has primary key rec_key(j) (records.h). A throughput run of n records writes
# j = 0 .. n-1. In dedup mode the even j were loaded before the clock starts, so every
# measured batch updates half its records and inserts the other half; the measured
# records carry version 1 so every update really changes the document.


def preload_spec(n):
    return {"first": 0, "count": n // 2, "stride": 2, "version": 0, "batch": 1000}


def measured_spec(mode, n, batch):
    return {"first": 0, "count": n, "stride": 1, "version": 1 if mode == "dedup" else 0,
            "batch": batch}


def filler_spec(n, total, batch):
    """Documents that bring a dedup table to `total` without touching measured keys."""
    return {"first": n, "count": max(0, total - n // 2), "stride": 1, "version": 0,
            "batch": batch}


# ---------------------------------------------------------------- backends


class SqliteBackend:
    name = "SQLite"

    def __init__(self, bindir):
        self.bindir = bindir
        self.skip = None

    def server_args(self, run_dir):
        return []

    def settle(self):
        """Before a measured phase: the kernel writes back what earlier phases left dirty,
        so that their writeback does not run inside this one."""
        os.sync()

    def baseline(self, run_dir):
        return SqliteBaseline(os.path.join(self.bindir, "baseline_sqlite"),
                              os.path.join(run_dir, "baseline.db"))

    def close(self):
        pass


class SqliteBaseline:
    def __init__(self, prog, db):
        self.prog, self.db = prog, db

    def run(self, mode, spec, lazy=False):
        return run_json([self.prog, "--db", self.db, "--mode", mode, *spec_args(spec)]
                        + (["--lazy"] if lazy else []))


class PostgresBackend:
    """PostgreSQL rows: need the server's PostgreSQL backend (`--database-url` in
    `tributary serve --help`), the baseline_pg program and a PostgreSQL server. The
    server is a throwaway cluster under the run's temporary directory (initdb runs as the
    `postgres` user when this script runs as root); every run gets a fresh database."""

    name = "PostgreSQL"

    def __init__(self, bindir, server_bin, tmp_root, settings=()):
        self.bindir, self.cluster, self.port, self.sock = bindir, None, None, None
        self.settings = settings
        self.ndb = 0
        self.skip = self._why_not(server_bin)
        if self.skip is None:
            self.skip = self._start_cluster(tmp_root)

    def _why_not(self, server_bin):
        helptext = subprocess.run([server_bin, "serve", "--help"], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True).stdout
        if "--database-url" not in helptext:
            return "no PostgreSQL backend yet"
        if not os.path.exists(os.path.join(self.bindir, "baseline_pg")):
            return "baseline_pg not built (libpq missing)"
        if not shutil.which("initdb") or not shutil.which("pg_ctl"):
            return "no PostgreSQL server installed (initdb, pg_ctl)"
        return None

    def _as_pg(self, cmd):
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *cmd]
        return cmd

    def _start_cluster(self, tmp_root):
        self.cluster = tempfile.mkdtemp(prefix="tributary-bench-pg-", dir=tmp_root)
        self.sock = self.cluster
        if os.geteuid() == 0:
            shutil.chown(self.cluster, "postgres", "postgres")
        data = os.path.join(self.cluster, "data")
        self.port = free_port()
        steps = [
            ["initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            ["pg_ctl", "-D", data, "-w", "-l", os.path.join(self.cluster, "log"), "-o",
             f"-k {self.sock} -p {self.port} -c listen_addresses='' -c fsync=on "
             "-c synchronous_commit=on -c max_wal_size=4GB"
             + "".join(f" -c {x}" for x in self.settings), "start"],
        ]
        for cmd in steps:
            p = subprocess.run(self._as_pg(cmd), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
            if p.returncode != 0:
                reason = p.stdout.strip().splitlines()[-1:] or ["?"]
                shutil.rmtree(self.cluster, ignore_errors=True)
                self.cluster = None
                return f"no PostgreSQL server could be started ({reason[0]})"
        return None

    def _url(self, db):
        return f"host={self.sock} port={self.port} user=postgres dbname={db}"

    def new_database(self):
        """A fresh database; the previous run's is dropped (runs never overlap), so that a
        full run does not keep several 5 M-document databases on disk."""
        self.ndb += 1
        name = f"bench{self.ndb}"
        sql = [f"DROP DATABASE IF EXISTS bench{self.ndb - 1} WITH (FORCE)",
               f"CREATE DATABASE {name}"]
        subprocess.run(self._as_pg(["psql", "-q", "-d", self._url("postgres"),
                                    *(a for q in sql for a in ("-c", q))]), check=True)
        return self._url(name)

    def server_args(self, run_dir):
        return ["--database-url", self.new_database()]

    def settle(self):
        """Before a measured phase: a checkpoint writes out every page earlier phases and
        runs (other databases of the cluster) left dirty, so that the checkpointer does
        not write them during this one."""
        subprocess.run(self._as_pg(["psql", "-q", "-d", self._url("postgres"), "-c",
                                    "CHECKPOINT"]), check=True)
        os.sync()

    def baseline(self, run_dir):
        return PostgresBaseline(os.path.join(self.bindir, "baseline_pg"), self.new_database())

    def close(self):
        if self.cluster:
            subprocess.run(self._as_pg(["pg_ctl", "-D", os.path.join(self.cluster, "data"),
                                        "-m", "fast", "-w", "stop"]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.rmtree(self.cluster, ignore_errors=True)
            self.cluster = None


class PostgresBaseline:
    def __init__(self, prog, url):
        self.prog, self.url = prog, url

    def run(self, mode, spec, lazy=False):
        return run_json([self.prog, "--url", self.url, "--mode", mode, *spec_args(spec)]
                        + (["--lazy"] if lazy else []))


# ---------------------------------------------------------------- the server


class Server:
    """One tributary process on a free port with its own data directory."""

    def __init__(self, binary, backend, bindir, tmp_root):
        self.bindir = bindir
        self.dir = tempfile.mkdtemp(prefix="tributary-bench-", dir=tmp_root)
        self.port = free_port()
        data = os.path.join(self.dir, "data")
        self.log = open(os.path.join(self.dir, "server.log"), "w")
        cmd = [binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", data,
               "--admin-key", ADMIN_KEY, *backend.server_args(self.dir)]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        self._wait_ready()

    def _wait_ready(self):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"server exited with {self.proc.returncode}: "
                                 f"{self._log_tail()}")
            try:
                if self.request("GET", "/version")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise BenchError("server did not answer /version within 20 s")

    def _log_tail(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()[-1000:]

    def request(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        try:
            headers = {"Authorization": f"Convex {ADMIN_KEY}"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def call(self, method, path, body=None):
        status, data = self.request(method, path, body)
        if status != 200:
            raise BenchError(f"{method} {path}: HTTP {status} {data[:300]!r}")
        return json.loads(data) if data else None

    def add_index(self, table=TABLE):
        self.call("PUT", "/api/streaming_import/add_primary_key_indexes",
                  {"indexes": {table: [["id"]]}})

    def wait_index(self, table=TABLE, poll=0.005, limit=3600):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            got = self.call("GET", "/api/streaming_import/primary_key_indexes_ready"
                            f"?tables={table}")
            if got.get("indexesReady") is True:
                return
            time.sleep(poll)
        raise BenchError(f"index on {table} not ready after {limit} s")

    def load(self, mode, spec, conns, lazy=False, fill=None):
        cmd = [os.path.join(self.bindir, "loadgen"), "--port", str(self.port), "--key", ADMIN_KEY,
               "--table", TABLE, "--mode", mode, "--conns", str(conns), *spec_args(spec)]
        if lazy:
            cmd.append("--lazy")
        if fill:
            cmd.append(f"--fill={fill}")
        return run_json(cmd)

    def snapshot_page(self, snapshot=None, cursor=None):
        q = {"tableName": TABLE, "format": "json", "snapshot": snapshot, "cursor": cursor}
        query = urllib.parse.urlencode({k: v for k, v in q.items() if v is not None})
        return self.call("GET", f"/api/list_snapshot?{query}")

    def snapshot_walk(self, snapshot, cursor, pages):
        """Median ms of the next `pages` list_snapshot pages at `snapshot` from `cursor`;
        the cursor after them."""
        times = []
        for _ in range(pages):
            t0 = time.monotonic()
            page = self.snapshot_page(snapshot, cursor)
            times.append((time.monotonic() - t0) * 1e3)
            if len(page["values"]) < 1000 or not page["hasMore"]:
                raise BenchError("a snapshot page came back short")
            cursor = page["cursor"]
        return median(times), cursor

    def rss_kib(self):
        return proc_status_kib(self.proc.pid, "VmRSS")

    def hwm_kib(self):
        return proc_status_kib(self.proc.pid, "VmHWM")

    def cpu_seconds(self):
        return proc_cpu_seconds(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------- scenarios


class Bench:
    def __init__(self, args):
        self.args = args
        self.bindir = args.bin_dir
        self.results = {}

    def log(self, msg):
        print(msg, file=sys.stderr, flush=True)

    def server(self, backend, binary=None):
        return Server(binary or self.args.server, backend, self.bindir, self.args.tmp)

    def server_runs(self, row, key, *run_args, **kw):
        """server_run(*run_args) into row[key]; with --compare, then the same run with
        the other binary into row[key + "_b"]."""
        row[key].append(self.server_run(*run_args, **kw))
        if self.args.compare:
            row.setdefault(key + "_b", []).append(
                self.server_run(*run_args, binary=self.args.compare, **kw))

    def scratch(self):
        return tempfile.mkdtemp(prefix="tributary-bench-base-", dir=self.args.tmp)

    def baseline_run(self, backend, mode, n, batch, filler_to=None):
        d = self.scratch()
        try:
            b = backend.baseline(d)
            if mode == "dedup":
                b.run(mode, preload_spec(n), lazy=True)
                if filler_to:
                    b.run(mode, filler_spec(n, filler_to, 1000), lazy=True)
            backend.settle()
            return b.run(mode, measured_spec(mode, n, batch))
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def server_run(self, backend, mode, n, batch, conns, filler_to=None, binary=None):
        """A fresh server, the dedup pre-load (and filler) untimed, then the measured run."""
        with self.server(backend, binary) as s:
            if mode == "dedup":
                s.add_index()
                s.wait_index()
                s.load(mode, preload_spec(n), 8, lazy=True)
                if filler_to:
                    s.load(mode, filler_spec(n, filler_to, 1000), 8, lazy=True)
            backend.settle()
            cpu0 = s.cpu_seconds()
            r = s.load(mode, measured_spec(mode, n, batch), conns)
            r["server_cpu_s"] = s.cpu_seconds() - cpu0
            r["peak_rss_kib"] = s.hwm_kib()
            self.check_counts(mode, n, r)
            return r

    @staticmethod
    def check_counts(mode, n, r):
        """The server's own summaries must show the intended work (when it sends them)."""
        if r.get("inserted", 0) + r.get("replaced", 0) == 0:
            return
        want = (n - n // 2, n // 2) if mode == "dedup" else (n, 0)
        if (r["inserted"], r["replaced"]) != want:
            raise BenchError(f"{mode}: server inserted/replaced {r['inserted']}/{r['replaced']},"
                             f" expected {want[0]}/{want[1]}")

    def throughput(self, backends):
        """Target 1: the four rows, 2 and 8 connections, interleaved rounds."""
        a = self.args
        rows = []
        for backend in backends:
            for mode in ("append", "dedup"):
                for conns in a.conns:
                    rows.append({"backend": backend.name, "mode": mode, "conns": conns,
                                 "skip": backend.skip, "base": [], "srv": []})
        for rnd in range(a.rounds):
            for row, backend in self.row_backends(rows, backends):
                self.log(f"[round {rnd + 1}/{a.rounds}] {row['backend']} {row['mode']} "
                         f"{row['conns']} conns: baseline, server")
                row["base"].append(self.baseline_run(backend, row["mode"], a.records, a.batch))
                self.server_runs(row, "srv", backend, row["mode"], a.records, a.batch,
                                 row["conns"])
        self.results["throughput"] = rows

    @staticmethod
    def row_backends(rows, backends):
        by_name = {b.name: b for b in backends}
        return [(r, by_name[r["backend"]]) for r in rows if not r["skip"]]

    def small(self, backends):
        """Target 5: 8 connections sending batches of 10 records; p99 latency."""
        a = self.args
        rows = []
        for backend in backends:
            for mode in ("append", "dedup"):
                rows.append({"backend": backend.name, "mode": mode, "conns": 8,
                             "skip": backend.skip, "base": [], "srv": []})
        for rnd in range(a.rounds):
            for row, backend in self.row_backends(rows, backends):
                self.log(f"[round {rnd + 1}/{a.rounds}] {row['backend']} {row['mode']} "
                         f"small requests: baseline, server")
                row["base"].append(self.baseline_run(backend, row["mode"], a.small_records, 10))
                self.server_runs(row, "srv", backend, row["mode"], a.small_records, 10, 8)
        self.results["small"] = rows

    def big_request(self, backends):
        """Target 2: peak RSS of one 64 MiB request against the idle process."""
        a = self.args
        rows = []
        for backend in backends:
            for mode in ("append", "dedup"):
                rows.append({"backend": backend.name, "mode": mode, "skip": backend.skip,
                             "runs": []})
        for rnd in range(a.rounds):
            for row, backend in self.row_backends(rows, backends):
                self.log(f"[round {rnd + 1}/{a.rounds}] {row['backend']} {row['mode']} "
                         f"one {a.big_body / MIB:.0f} MiB request")
                with self.server(backend) as s:
                    if row["mode"] == "dedup":
                        s.add_index()
                        s.wait_index()
                    backend.settle()
                    time.sleep(0.2)
                    idle = s.rss_kib()
                    r = s.load(row["mode"], measured_spec(row["mode"], 0, 1000), 1,
                               fill=a.big_body)
                    r["idle_rss_kib"] = idle
                    r["peak_rss_kib"] = s.hwm_kib()
                    row["runs"].append(r)
        self.results["big_request"] = rows

    def big_table(self, backends):
        """Target 3 (full): dedup throughput with 5 M documents in the table against the
        same batches on the throughput scenario's small table (records/2 documents), runs
        ordered small, big, small, big, ..., small. The baseline program does the same, to
        show how much the storage itself slows down on the big table."""
        a = self.args
        rows = []
        for backend in backends:
            rows.append({"backend": backend.name, "conns": a.big_conns, "skip": backend.skip,
                         "small": [], "big": [], "base_small": [], "base_big": []})
        for rnd in range(a.big_rounds):
            for row, backend in self.row_backends(rows, backends):
                self.log(f"[full {rnd + 1}/{a.big_rounds}] {row['backend']} dedup on the "
                         f"small table, then on {a.big_docs:,} documents")
                self.server_runs(row, "small", backend, "dedup", a.records, a.batch,
                                 a.big_conns)
                self.server_runs(row, "big", backend, "dedup", a.records, a.batch, a.big_conns,
                                 filler_to=a.big_docs)
                row["base_small"].append(self.baseline_run(backend, "dedup", a.records,
                                                           a.batch))
                row["base_big"].append(self.baseline_run(backend, "dedup", a.records, a.batch,
                                                         filler_to=a.big_docs))
        for row, backend in self.row_backends(rows, backends):
            self.log(f"[full] {row['backend']} closing run on the small table")
            self.server_runs(row, "small", backend, "dedup", a.records, a.batch, a.big_conns)
        self.results["big_table"] = rows

    def backfill(self, backends):
        """Target 4 (full): add_primary_key_indexes on 1 M appended documents against the
        baseline's insert rate of the same records; then clear_tables on them."""
        a = self.args
        rows = []
        for backend in backends:
            rows.append({"backend": backend.name, "skip": backend.skip, "base": [], "srv": []})
        n = a.backfill_docs
        for rnd in range(a.big_rounds):
            for row, backend in self.row_backends(rows, backends):
                self.log(f"[full {rnd + 1}/{a.big_rounds}] {row['backend']} {n:,} documents:"
                         f" baseline insert, server backfill + clear")
                row["base"].append(self.baseline_run(backend, "append", n, a.batch))
                with self.server(backend) as s:
                    s.load("append", measured_spec("append", n, a.batch), 8, lazy=True)
                    backend.settle()
                    t0 = time.monotonic()
                    s.add_index()
                    s.wait_index()
                    secs = time.monotonic() - t0
                    t0 = time.monotonic()
                    s.call("PUT", "/api/streaming_import/clear_tables", {"tableNames": [TABLE]})
                    clear_ms = (time.monotonic() - t0) * 1e3
                    row["srv"].append({"backfill_s": secs, "records_per_s": n / secs,
                                       "clear_ms": clear_ms, "peak_rss_kib": s.hwm_kib()})
        self.results["backfill"] = rows


    def snapshot(self, backends):
        """Not a target of the issue: the export side's list_snapshot page time at a
        snapshot taken before a dedup import replaced half the table, against the same
        walk before the import. A snapshot page reads the versions replaced since its
        snapshot from `history`, which is indexed by valid_to only (docs/storage.md)."""
        a = self.args
        n = a.records
        rows = [{"backend": b.name, "skip": b.skip, "before": [], "after": []}
                for b in backends]
        for rnd in range(a.big_rounds):
            for row, backend in self.row_backends(rows, backends):
                self.log(f"[snapshot {rnd + 1}/{a.big_rounds}] {row['backend']} pages of "
                         f"{n // 2:,} documents, before and after {n // 2:,} replaces")
                with self.server(backend) as s:
                    s.add_index()
                    s.wait_index()
                    s.load("dedup", preload_spec(n), 8, lazy=True)
                    page = s.snapshot_page()
                    snap, cursor = page["snapshot"], page["cursor"]
                    ms, cursor = s.snapshot_walk(snap, cursor, a.snapshot_pages)
                    row["before"].append(ms)
                    s.load("dedup", measured_spec("dedup", n, a.batch), 2, lazy=True)
                    ms, _ = s.snapshot_walk(snap, cursor, a.snapshot_pages)
                    row["after"].append(ms)
        self.results["snapshot"] = rows


# ---------------------------------------------------------------- report


def fmt_rate(v):
    return "–" if v is None else f"{v / 1000:,.1f}k"


def fmt_ms(v):
    return "–" if v is None else f"{v:.1f}"


def fmt_mib(kib):
    return "–" if kib is None else f"{kib / 1024:.0f}"


def verdict(ok):
    return "met" if ok else "**missed**"


def med(runs, key):
    return median([r.get(key) for r in runs])


def machine_info(tmp):
    info = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "nproc": os.cpu_count(), "kernel": platform.release()}
    try:
        with open("/proc/cpuinfo") as f:
            models = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
        info["cpu"] = models[0] if models else "?"
    except OSError:
        info["cpu"] = "?"
    try:
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    info["disk"] = disk_info(tmp)
    try:
        import sqlite3
        info["sqlite"] = sqlite3.sqlite_version
    except ImportError:
        pass
    return info


def cpu_snapshot():
    """(machine busy CPU seconds, machine total CPU seconds, this script's and its
    children's CPU seconds): the difference tells how much else ran during the benchmark
    (on a shared machine, other work makes every figure noisier)."""
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    busy = user + nice + system + irq + softirq + steal
    t = os.times()
    return busy / tick, (busy + idle + iowait) / tick, \
        t.user + t.system + t.children_user + t.children_system


def other_cpu_share(before, after):
    busy, total, ours = (a - b for a, b in zip(after, before))
    return max(0.0, busy - ours) / total if total > 0 else 0.0


def disk_info(path):
    """Filesystem and block device under `path`, with what the kernel says about it."""
    dev = os.stat(path).st_dev
    fs, src = "?", "?"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            major, minor = parts[2].split(":")
            if os.makedev(int(major), int(minor)) == dev:
                sep = parts.index("-")
                fs, src = parts[sep + 1], parts[sep + 2]
    name = os.path.basename(src)
    rot = None
    for cand in (name, name.rstrip("0123456789")):
        p = f"/sys/block/{cand}/queue/rotational"
        if os.path.exists(p):
            with open(p) as f:
                rot = f.read().strip()
            name = cand
            break
    kind = {"0": "non-rotational", "1": "reported rotational"}.get(rot, "type unknown")
    virtio = " (virtio, a VM disk)" if name.startswith("vd") else ""
    return f"{fs} on {src}{virtio}, {kind}"


def report(bench, args, info):
    out = []
    w = out.append
    a = args
    w(f"Date: {info['date']}. Machine: {info['nproc']} CPUs ({info['cpu']}), "
      f"{info.get('mem_gib', '?')} GiB RAM, Linux {info['kernel']}, SQLite "
      f"{info.get('sqlite', '?')}; data on {info['disk']}. Server binary sha256 "
      f"{info['server_sha256']}….")
    steps = set(bench.results)
    rounds = [f"{a.rounds} interleaved rounds (baseline, server, baseline, server, …)"
              ] if steps & {"throughput", "small", "big_request"} else []
    if steps & {"big_table", "backfill", "snapshot"}:
        rounds.append(f"{a.big_rounds} for the full-mode and snapshot scenarios")
    w(f"Command: `{a.command}`. Medians of {', '.join(rounds)}; a fresh server and a fresh "
      f"database for every run.")
    other = info.get("other_cpu_share")
    if other is not None:
        w(f"Other processes used {100 * other:.0f}% of the machine's CPU time during the run "
          f"(load average at the start: {info['loadavg']})"
          + ("; **the machine was shared, figures are noisier than usual**." if other > 0.1
             else "."))
    w("")
    t = bench.results.get("throughput")
    if t is not None:
        w(f"### Throughput: {a.records:,} records of ~270 bytes, {a.batch} per request "
          f"(target 1: ratio ≥ 0.7)")
        w("")
        w("| backend | mode | conns | tributary rec/s | baseline rec/s | ratio | p50 ms | "
          "p99 ms | peak RSS MiB | target |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in t:
            if r["skip"]:
                w(f"| {r['backend']} | {r['mode']} | {r['conns']} | skipped ({r['skip']}) "
                  f"| | | | | | |")
                continue
            srv, base = med(r["srv"], "records_per_s"), med(r["base"], "records_per_s")
            ratio = srv / base
            r["ratio"] = ratio
            w(f"| {r['backend']} | {r['mode']} | {r['conns']} | {fmt_rate(srv)} | "
              f"{fmt_rate(base)} | {ratio:.2f} | {fmt_ms(med(r['srv'], 'p50_ms'))} | "
              f"{fmt_ms(med(r['srv'], 'p99_ms'))} | {fmt_mib(med(r['srv'], 'peak_rss_kib'))} | "
              f"{verdict(ratio >= 0.7)} |")
        w("")
    s = bench.results.get("small")
    if s is not None:
        w("### Small requests: 8 connections, 10 records per request (target 5: p99 < 20 ms)")
        w("")
        w("| backend | mode | tributary rec/s | baseline rec/s | ratio | p50 ms | p99 ms | "
          "baseline p99 ms (per txn) | target |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---|")
        for r in s:
            if r["skip"]:
                w(f"| {r['backend']} | {r['mode']} | skipped ({r['skip']}) | | | | | | |")
                continue
            srv, base = med(r["srv"], "records_per_s"), med(r["base"], "records_per_s")
            p99 = med(r["srv"], "p99_ms")
            w(f"| {r['backend']} | {r['mode']} | {fmt_rate(srv)} | {fmt_rate(base)} | "
              f"{srv / base:.2f} | {fmt_ms(med(r['srv'], 'p50_ms'))} | {fmt_ms(p99)} | "
              f"{fmt_ms(med(r['base'], 'p99_ms'))} | {verdict(p99 < 20)} |")
        w("")
    b = bench.results.get("big_request")
    if b is not None:
        w(f"### One large request (target 2: peak RSS ≤ idle + 2 × 64 MiB)")
        w("")
        w("| backend | mode | request MiB | records | seconds | idle RSS MiB | peak RSS MiB | "
          "peak − idle MiB | (peak − idle) / request | target |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in b:
            if r["skip"]:
                w(f"| {r['backend']} | {r['mode']} | skipped ({r['skip']}) | | | | | | | |")
                continue
            idle, peak = med(r["runs"], "idle_rss_kib"), med(r["runs"], "peak_rss_kib")
            growth = median([x["peak_rss_kib"] - x["idle_rss_kib"] for x in r["runs"]])
            body = r["runs"][0]["bytes"]
            w(f"| {r['backend']} | {r['mode']} | {body / MIB:.1f} | {r['runs'][0]['records']:,} | "
              f"{med(r['runs'], 'seconds'):.2f} | {fmt_mib(idle)} | {fmt_mib(peak)} | "
              f"{fmt_mib(growth)} | {growth * 1024 / body:.2f} | "
              f"{verdict(growth * 1024 <= 2 * 64 * MIB)} |")
        w("")
    g = bench.results.get("big_table")
    if g is not None:
        w(f"### Dedup on a big table (target 3: ≥ 0.7 × the throughput on an empty table)")
        w("")
        w(f"The throughput scenario's dedup batches, {a.big_conns} conns, on its small table "
          f"({a.records // 2:,} documents) and on {a.big_docs:,} documents; the baseline "
          f"program's own big / small ratio, with the same tables, for comparison.")
        w("")
        w("| backend | small table rec/s | big table rec/s | ratio | baseline ratio "
          "(small / big rec/s) | p99 ms (small / big) | peak RSS MiB (big) | target |")
        w("|---|---:|---:|---:|---:|---:|---:|---|")
        for r in g:
            if r["skip"]:
                w(f"| {r['backend']} | skipped ({r['skip']}) | | | | | | |")
                continue
            e, big = med(r["small"], "records_per_s"), med(r["big"], "records_per_s")
            be, bb = med(r["base_small"], "records_per_s"), med(r["base_big"], "records_per_s")
            w(f"| {r['backend']} | {fmt_rate(e)} | {fmt_rate(big)} | {big / e:.2f} | "
              f"{bb / be:.2f} ({fmt_rate(be)} / {fmt_rate(bb)}) | "
              f"{fmt_ms(med(r['small'], 'p99_ms'))} / {fmt_ms(med(r['big'], 'p99_ms'))} | "
              f"{fmt_mib(med(r['big'], 'peak_rss_kib'))} | {verdict(big / e >= 0.7)} |")
        w("")
    f = bench.results.get("backfill")
    if f is not None:
        w(f"### Index backfill and clear on {a.backfill_docs:,} documents "
          f"(target 4: backfill ≥ 0.5 × baseline insert rate; clear < 50 ms)")
        w("")
        w("| backend | backfill s | backfill rec/s | baseline insert rec/s | ratio | target | "
          "clear_tables ms | target |")
        w("|---|---:|---:|---:|---:|---|---:|---|")
        for r in f:
            if r["skip"]:
                w(f"| {r['backend']} | skipped ({r['skip']}) | | | | | | |")
                continue
            rate, base = med(r["srv"], "records_per_s"), med(r["base"], "records_per_s")
            clear = med(r["srv"], "clear_ms")
            w(f"| {r['backend']} | {med(r['srv'], 'backfill_s'):.2f} | {fmt_rate(rate)} | "
              f"{fmt_rate(base)} | {rate / base:.2f} | {verdict(rate / base >= 0.5)} | "
              f"{clear:.1f} | {verdict(clear < 50)} |")
        w("")
    if a.compare:
        compare_report(bench, a, info, w)
    p = bench.results.get("snapshot")
    if p is not None:
        w(f"### Snapshot pages read after replaces (not a target; the export side)")
        w("")
        w(f"`list_snapshot` pages of 1,000 documents at a snapshot of {a.records // 2:,} "
          f"documents, {a.snapshot_pages} pages before and {a.snapshot_pages} after a dedup "
          f"import replaced every one of them (and added as many), median ms per page.")
        w("")
        w("| backend | ms per page | ms per page after the replaces | ratio |")
        w("|---|---:|---:|---:|")
        for r in p:
            if r["skip"]:
                w(f"| {r['backend']} | skipped ({r['skip']}) | | |")
                continue
            x, y = median(r["before"]), median(r["after"])
            w(f"| {r['backend']} | {x:.1f} | {y:.1f} | {y / x:.1f} |")
        w("")
    w("Every run (records/s, tributary / baseline; server CPU seconds in the measured phase):")
    w("")
    for key in ("throughput", "small"):
        for r in bench.results.get(key) or []:
            if r["skip"]:
                continue
            runs = ", ".join(f"{x['records_per_s'] / 1000:.1f}k/{y['records_per_s'] / 1000:.1f}k"
                             f" ({x['server_cpu_s']:.1f}s)" for x, y in zip(r["srv"], r["base"]))
            label = "small" if key == "small" else f"{r['conns']} conns"
            w(f"- {r['backend']} {r['mode']} {label}: {runs}")
    def rates(runs):
        return ", ".join(f"{x['records_per_s'] / 1000:.1f}k" for x in runs)

    for r in bench.results.get("big_table") or []:
        if not r["skip"]:
            w(f"- {r['backend']} dedup small table: {rates(r['small'])}; big: {rates(r['big'])};"
              f" baseline small: {rates(r['base_small'])}; baseline big: {rates(r['base_big'])}")
            if a.compare:
                w(f"- {r['backend']} dedup, --compare binary: small table "
                  f"{rates(r['small_b'])}; big: {rates(r['big_b'])}")
    for r in bench.results.get("snapshot") or []:
        if not r["skip"]:
            w(f"- {r['backend']} snapshot ms per page: "
              + ", ".join(f"{x:.1f}/{y:.1f}" for x, y in zip(r["before"], r["after"])))
    for r in bench.results.get("backfill") or []:
        if not r["skip"]:
            w(f"- {r['backend']} backfill: "
              + ", ".join(f"{x['backfill_s']:.2f}s/{x['clear_ms']:.1f}ms" for x in r["srv"])
              + f"; baseline insert: {rates(r['base'])}")
    return "\n".join(out) + "\n"


def compare_report(bench, a, info, w):
    """The --compare table: each scenario's median records/s of the two binaries, whose
    runs alternated (A, B, A, B, ...), and B / A."""
    w(f"### --compare: A = the server binary ({info['server_sha256']}…), B = "
      f"`{a.compare_original}` ({info['compare_sha256']}…)")
    w("")
    w("| scenario | backend | A rec/s | B rec/s | B / A | every run, A / B |")
    w("|---|---|---:|---:|---:|---|")
    cases = []
    for key, label in (("throughput", "{mode}, {conns} conns"), ("small", "{mode}, small")):
        for r in bench.results.get(key) or []:
            if not r["skip"]:
                cases.append((label.format(**r), r["backend"], r["srv"], r["srv_b"]))
    for r in bench.results.get("big_table") or []:
        if not r["skip"]:
            cases.append(("dedup, small table", r["backend"], r["small"], r["small_b"]))
            cases.append((f"dedup, {a.big_docs:,} documents", r["backend"], r["big"],
                           r["big_b"]))
    for label, backend, ra, rb in cases:
        x, y = med(ra, "records_per_s"), med(rb, "records_per_s")
        runs = ", ".join(f"{p['records_per_s'] / 1000:.1f}k/{q['records_per_s'] / 1000:.1f}k"
                         for p, q in zip(ra, rb))
        w(f"| {label} | {backend} | {fmt_rate(x)} | {fmt_rate(y)} | {y / x:.2f} | {runs} |")
    for r in bench.results.get("big_table") or []:
        if not r["skip"]:
            ra = med(r["big"], "records_per_s") / med(r["small"], "records_per_s")
            rb = med(r["big_b"], "records_per_s") / med(r["small_b"], "records_per_s")
            w("")
            w(f"{r['backend']} target 3 (big / small table): A {ra:.2f}, B {rb:.2f}.")
    w("")


# ---------------------------------------------------------------- main


def parse_args():
    p = argparse.ArgumentParser(description="tributary benchmark (see bench/README.md)")
    p.add_argument("--server", default="build/tributary", help="the server binary")
    p.add_argument("--bin-dir", default="build/bench", help="loadgen and baselines")
    p.add_argument("--tmp", default=tempfile.gettempdir(),
                   help="where data directories go (must be a real disk, not tmpfs)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per scenario")
    p.add_argument("--records", type=int, default=300000, help="records per throughput run")
    p.add_argument("--batch", type=int, default=1000, help="records per request")
    p.add_argument("--conns", default="2,8", help="client connections, comma separated")
    p.add_argument("--small-records", type=int, default=24000,
                   help="records per small-request run (10 per request)")
    p.add_argument("--big-body", type=int, default=64 * MIB - 64 * 1024,
                   help="body size of the large request (just under the 64 MiB limit)")
    p.add_argument("--full", action="store_true",
                   help="also the big-table and backfill/clear scenarios (targets 3 and 4)")
    p.add_argument("--only", default="",
                   help="comma separated subset: throughput,small,big_request,big_table,"
                        "backfill,snapshot (snapshot runs only when named here)")
    p.add_argument("--big-docs", type=int, default=5000000)
    p.add_argument("--big-conns", type=int, default=2)
    p.add_argument("--big-rounds", type=int, default=3,
                   help="rounds of the full-mode scenarios")
    p.add_argument("--backfill-docs", type=int, default=1000000)
    p.add_argument("--snapshot-pages", type=int, default=20,
                   help="list_snapshot pages timed before and after (snapshot step)")
    p.add_argument("--backends", default="sqlite,postgres",
                   help="comma separated subset: sqlite,postgres")
    p.add_argument("--pg-setting", action="append", default=[], metavar="NAME=VALUE",
                   help="a setting of the throwaway PostgreSQL cluster (repeatable), e.g. "
                        "shared_buffers=1GB; both programs run on it")
    p.add_argument("--compare", default="", metavar="BINARY",
                   help="a second server binary, run right after the first in every round "
                        "of the throughput, small and big_table scenarios (an A/B)")
    p.add_argument("--out", default="build/bench/results.md",
                   help="also write the tables here (and the raw runs next to it as .json)")
    args = p.parse_args()
    args.conns = [int(c) for c in args.conns.split(",") if c]
    args.backends = [b for b in args.backends.split(",") if b]
    if set(args.backends) - {"sqlite", "postgres"}:
        p.error("--backends: sqlite and/or postgres")
    for x in args.pg_setting:
        if not re.fullmatch(r"[a-z_]+=[A-Za-z0-9_.]+", x):
            p.error(f"--pg-setting {x!r}: NAME=VALUE, letters, digits, '_' and '.' only")
    args.command = " ".join(["python3", *sys.argv]) if not os.environ.get("BENCH_COMMAND") \
        else os.environ["BENCH_COMMAND"]
    return args


def file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def freeze_server(args):
    """Copies the server binaries aside and points args.server (and args.compare) at the
    copies, so every run measures the same build even if build/tributary is rebuilt
    meanwhile. Returns the directory of the copies."""
    d = tempfile.mkdtemp(prefix="tributary-bench-bin-", dir=args.tmp)
    for attr in ("server", "compare"):
        if getattr(args, attr):
            copy = os.path.join(d, f"tributary-{attr}")
            shutil.copy2(getattr(args, attr), copy)
            setattr(args, attr + "_original", getattr(args, attr))
            setattr(args, attr, copy)
    return d


def main():
    args = parse_args()
    for prog in (args.server, *([args.compare] if args.compare else []),
                 os.path.join(args.bin_dir, "loadgen"),
                 os.path.join(args.bin_dir, "baseline_sqlite")):
        if not os.access(prog, os.X_OK):
            sys.exit(f"run.py: {prog} missing; run `make bench` (it builds everything)")
    steps = ["throughput", "small", "big_request"]
    if args.full:
        steps += ["big_table", "backfill"]
    if args.only:
        steps = [s for s in args.only.split(",") if s]
        unknown = set(steps) - set(STEPS)
        if unknown:
            sys.exit(f"run.py: --only: unknown step(s) {', '.join(sorted(unknown))}")
    info = machine_info(args.tmp)
    copies = freeze_server(args)
    info["server_sha256"] = file_sha256(args.server)[:12]
    if args.compare:
        info["compare_sha256"] = file_sha256(args.compare)[:12]
    with open("/proc/loadavg") as f:
        info["loadavg"] = " ".join(f.read().split()[:3])
    bench = Bench(args)
    backends = ([SqliteBackend(args.bin_dir)] if "sqlite" in args.backends else []) + \
        ([PostgresBackend(args.bin_dir, args.server, args.tmp, args.pg_setting)]
         if "postgres" in args.backends else [])
    t0, cpu0 = time.monotonic(), cpu_snapshot()
    try:
        for step in steps:
            getattr(bench, step)(backends)
    except BenchError as e:
        sys.exit(f"run.py: {e}")
    finally:
        for b in backends:
            b.close()
        shutil.rmtree(copies, ignore_errors=True)
    info["other_cpu_share"] = other_cpu_share(cpu0, cpu_snapshot())
    text = report(bench, args, info)
    text += f"\n(benchmark wall time {time.monotonic() - t0:.0f} s)\n"
    print(text)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump({"machine": info, "results": bench.results}, f, indent=1)


if __name__ == "__main__":
    main()

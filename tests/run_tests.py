#!/usr/bin/env python3
"""Runs every test suite of tributary and prints one summary line.

Suites: each cmocka unit-test program in <build>/tests, a short run of each libFuzzer
target in build/fuzz (when not --sanitized: those are sanitizer builds already), and
the end-to-end suite against the real binary for each storage backend: SQLite, then
PostgreSQL on a throwaway cluster started here (tests/pgcluster.py) and removed again
whatever happens. A cluster that cannot start is a failed suite, not a skip: CI installs
PostgreSQL (scripts/install-deps). Each suite's counts are printed as it ends; the last
line is "N passed, N failed" summed over all of them, which is what CI reads. Exit
status 0 only when nothing failed.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading

import pgcluster

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, env=None, timeout=None):
    """Runs cmd, echoing its output; returns (exit code, output)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    out = []
    try:
        for line in proc.stdout:
            sys.stdout.write(line)
            out.append(line)
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = -9
    except BaseException as e:
        interrupt(proc, type(e) is KeyboardInterrupt)
        raise
    sys.stdout.flush()
    return code, "".join(out)


def interrupt(proc, ctrl_c):
    """Stops a child we are abandoning (Ctrl-C, SIGTERM) with a SIGTERM, so it can stop
    its own children; SIGKILL if it does not end soon. After a Ctrl-C in the terminal
    it got a SIGINT already and is stopping: it gets time first. Its output is still
    read meanwhile, so it cannot block on a full pipe."""
    threading.Thread(target=lambda: [sys.stdout.write(line) for line in proc.stdout],
                     daemon=True).start()
    signals = ((None,) if ctrl_c else ()) + (signal.SIGTERM, signal.SIGKILL)
    for sig in signals:
        if sig is not None:
            proc.send_signal(sig)
        try:
            proc.wait(10 if sig is None else 30)
            return
        except subprocess.TimeoutExpired:
            pass


def unit_suite(path):
    code, out = run([path])
    passed = failed = 0
    m = re.search(r"\[  PASSED  \] (\d+) test", out)
    if m:
        passed = int(m.group(1))
    m = re.search(r"\[  FAILED  \] (\d+) test", out)
    if m:
        failed = int(m.group(1))
    if code != 0 and failed == 0:
        failed = 1  # crashed or a sanitizer stopped it before cmocka could count
    return passed, failed


def fuzz_suite(path):
    corpus = os.path.join(ROOT, "tests", "fuzz", "corpus", os.path.basename(path))
    # New inputs go to a scratch directory first in the list; the seeds stay untouched.
    with tempfile.TemporaryDirectory() as scratch:
        cmd = [path, "-runs=20000", "-max_len=4096", scratch]
        if os.path.isdir(corpus):
            cmd.append(corpus)
        code, _ = run(cmd, timeout=600)
    return (1, 0) if code == 0 else (0, 1)


def e2e_suite(binary, backend, extra):
    env = dict(os.environ)
    code, out = run([sys.executable, "tests/e2e/run.py", "--bin", binary,
                     "--backend", backend] + extra, env=env)
    m = None
    for m in re.finditer(r"^SUITE [^:]+: (\d+) passed, (\d+) failed", out, re.M):
        pass
    if not m:
        return 0, 1
    passed, failed = int(m.group(1)), int(m.group(2))
    if code != 0 and failed == 0:
        failed = 1
    return passed, failed


def e2e_postgres_suite(binary):
    """The e2e suite on a throwaway cluster; the cluster is removed even on Ctrl-C."""
    print("e2e postgres: starting a throwaway PostgreSQL cluster", flush=True)
    try:
        cluster = pgcluster.Cluster().start()
    except pgcluster.ClusterError as e:
        print("e2e postgres: FAILED: the throwaway PostgreSQL cluster did not start: %s" % e,
              flush=True)
        return 0, 1
    try:
        return e2e_suite(binary, "postgres", ["--database-url", cluster.url,
                                              "--pg-ctl", cluster.pg_ctl_shell()])
    finally:
        cluster.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--sanitized", action="store_true")
    args = ap.parse_args()
    pgcluster.interrupt_on_signals()

    results = []
    tests_dir = os.path.join(ROOT, args.build, "tests")
    for name in sorted(os.listdir(tests_dir)) if os.path.isdir(tests_dir) else []:
        path = os.path.join(tests_dir, name)
        if name.startswith("test_") and os.access(path, os.X_OK) and "." not in name:
            results.append(("unit " + name, unit_suite(path)))

    if not args.sanitized:
        fuzz_dir = os.path.join(ROOT, "build", "fuzz")
        for name in sorted(os.listdir(fuzz_dir)) if os.path.isdir(fuzz_dir) else []:
            results.append(("fuzz " + name, fuzz_suite(os.path.join(fuzz_dir, name))))

    binary = os.path.join(ROOT, args.build, "tributary")
    if args.sanitized:
        os.environ["TRIBUTARY_SANITIZED"] = "1"
    results.append(("e2e sqlite", e2e_suite(binary, "sqlite", [])))
    results.append(("e2e postgres", e2e_postgres_suite(binary)))

    print()
    total_p = total_f = 0
    for name, (p, f) in results:
        print(f"  {name}: {p} passed, {f} failed")
        total_p += p
        total_f += f
    print(f"{total_p} passed, {total_f} failed")
    return 0 if total_f == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

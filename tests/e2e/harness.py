"""Harness of tributary's end-to-end suite: the real binary, driven over HTTP.

The tests are black-box: they start `tributary serve` as a child process on a free
port with a fresh temporary data directory, talk to it with http.client (one TCP
connection per request, as Airbyte's connector does) or raw sockets when the HTTP
framing itself is under test, and look at the stored data through
`tributary export`, the way an operator would.

Everything that depends on the storage backend goes through one Backend object, so
the same tests can run against SQLite (the default) or PostgreSQL (`--backend
postgres --database-url URL`, which hands the URL to every command as
`--database-url`, each server with a database of its own). PostgreSQL-only tests that
restart the database server get the cluster's pg_ctl command line (run.py --pg-ctl, or
env TRIBUTARY_E2E_PG_CTL) and call restart_database().

Nothing here knows the server's code. Only the standard library is used.
"""
import atexit
import base64
import glob
import gzip
import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
API = "/api/streaming_import/"
MIB = 1024 * 1024
DEFAULT_IMPORT_LIMIT = 64 * MIB
SMALL_ENDPOINT_LIMIT = 2 * MIB
ADMIN_KEY = "e2e-admin-key-5f1c9a0d7be34c21"


class Config:
    """What run.py (or the environment, when tests are run directly) chose."""
    binary = os.environ.get("TRIBUTARY_BIN", os.path.join(ROOT, "build", "tributary"))
    backend = os.environ.get("TRIBUTARY_E2E_BACKEND", "sqlite")
    database_url = os.environ.get("TRIBUTARY_E2E_DATABASE_URL", "")
    # pg_ctl of the cluster the URL points at, with its -D (and -l): a list of arguments
    pg_ctl = shlex.split(os.environ.get("TRIBUTARY_E2E_PG_CTL", ""))
    sanitized = os.environ.get("TRIBUTARY_SANITIZED", "") not in ("", "0")


def configure(binary=None, backend=None, database_url=None, pg_ctl=None):
    if binary:
        Config.binary = os.path.abspath(binary)
    if backend:
        Config.backend = backend
    if database_url is not None:
        Config.database_url = database_url
    if pg_ctl is not None:
        Config.pg_ctl = shlex.split(pg_ctl) if isinstance(pg_ctl, str) else list(pg_ctl)


def slow():
    """How much slower the binary is than a plain build (ASan+UBSan: about 3x)."""
    return 3 if Config.sanitized else 1


def scaled(n, minimum=1):
    """A heavy load size, smaller under sanitizers so the suite keeps its time budget."""
    return max(minimum, n // 2 if Config.sanitized else n)


def timeout(seconds):
    return seconds * slow()


# ---------------------------------------------------------------------------
# Storage backends

class SqliteBackend:
    name = "sqlite"

    def create(self):
        """Storage for one new server (SQLite: its data directory is enough)."""

    def drop(self):
        pass

    def server_args(self, data_dir):
        return ["--data-dir", data_dir]

    def cli_args(self, data_dir):
        return ["--data-dir", data_dir]


def psql_program():
    """psql from PATH, else from the newest /usr/lib/postgresql/<v>/bin."""
    found = shutil.which("psql")
    if found:
        return found
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(os.path.join(bindir, "psql"), os.X_OK):
            return os.path.join(bindir, "psql")
    raise RuntimeError("psql not found: the postgres backend needs it to create databases")


def psql(base_url, sql):
    """Runs SQL on the server base_url points at; returns what it printed (unaligned,
    tuples only: a single value prints as itself)."""
    p = subprocess.run([psql_program(), base_url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
                       capture_output=True, text=True, errors="replace",
                       stdin=subprocess.DEVNULL, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("psql %r failed (exit %d): %s"
                           % (sql, p.returncode, p.stderr.strip()))
    return p.stdout.strip()


class DatabasePool:
    """Creates the servers' databases ahead of need and drops them afterwards, on a
    thread of its own: CREATE DATABASE copies template1 (about 100 ms with fsync on),
    which a server would otherwise wait for at every start. SPARES are kept ready
    (making them comes before dropping); at exit the spares and every queued drop are
    dealt with (atexit)."""

    SPARES = 2

    def __init__(self, base_url):
        self.base_url = base_url
        self.cond = threading.Condition()
        self.spares = []
        self.drops = []
        self.closing = False
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    @staticmethod
    def new_name():
        return "tributary_e2e_%s" % os.urandom(6).hex()

    def take(self):
        """A new empty database's name: a spare if one is there, else made now."""
        with self.cond:
            name = self.spares.pop(0) if self.spares else None
            self.cond.notify()
        if name is None:
            name = self.new_name()
            psql(self.base_url, 'CREATE DATABASE "%s"' % name)
        return name

    def drop(self, name):
        with self.cond:
            self.drops.append(name)
            self.cond.notify()

    def _next_job(self):
        """('create', None), ('drop', name) or None when closed and done."""
        with self.cond:
            while True:
                if not self.closing and len(self.spares) < self.SPARES:
                    return "create", None
                if self.drops:
                    return "drop", self.drops.pop(0)
                if self.closing:
                    return None
                self.cond.wait()

    def _work(self):
        failed = 0  # CREATE DATABASEs failed in a row (take() reports why)
        while True:
            job = self._next_job()
            if job is None:
                return
            if job[0] == "drop":
                # a test may be restarting the database server: retry before reporting
                for attempt in range(5):
                    if self._try('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % job[1],
                                 report=attempt == 4):
                        break
                    time.sleep(0.5 * (attempt + 1))
                continue
            name = self.new_name()
            if not self._try('CREATE DATABASE "%s"' % name, report=False):
                # e.g. the database server is restarting: retry later, less and less often
                failed += 1
                time.sleep(min(5.0, 0.25 * 2 ** failed))
                continue
            failed = 0
            with self.cond:
                if self.closing:
                    self.drops.append(name)
                else:
                    self.spares.append(name)

    def _try(self, sql, report=True):
        """Runs sql; a failure is written to stderr when report (a database left over)."""
        try:
            psql(self.base_url, sql)
            return True
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            if report:
                sys.stderr.write("e2e database pool: %s\n" % e)
            return False

    def close(self):
        with self.cond:
            self.closing = True
            self.drops += self.spares
            self.spares = []
            self.cond.notify()
        self.thread.join(60)


_POOLS = {}
_POOLS_LOCK = threading.Lock()


def database_pool(base_url):
    with _POOLS_LOCK:
        if base_url not in _POOLS:
            _POOLS[base_url] = DatabasePool(base_url)
        return _POOLS[base_url]


def close_database_pools():
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()


class PostgresBackend:
    """Each server gets a database of its own on the server the URL points at (the URL
    must allow CREATE DATABASE), dropped afterwards (DatabasePool). The URL is either a
    postgresql:// URI (then `dbname=` is appended to its query string, which overrides
    the database in its path) or a libpq key=value string."""
    name = "postgres"

    def __init__(self, url):
        if not url:
            raise ValueError("--backend postgres needs --database-url")
        self.base_url = url
        self.dbname = None

    def create(self):
        if self.dbname is None:
            self.dbname = database_pool(self.base_url).take()

    def drop(self):
        if self.dbname is not None:
            database_pool(self.base_url).drop(self.dbname)
            self.dbname = None

    def terminate_connections(self):
        """Ends every connection to this database, as a failover or an operator would."""
        psql(self.base_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
             "WHERE datname = '%s' AND pid <> pg_backend_pid()" % self.dbname)

    def url(self):
        """The base URL with its database replaced by this server's own."""
        if "://" in self.base_url:
            sep = "&" if "?" in self.base_url else "?"
            return self.base_url + sep + "dbname=" + self.dbname
        return self.base_url + " dbname=" + self.dbname

    def server_args(self, data_dir):
        return ["--data-dir", data_dir, "--database-url", self.url()]

    def cli_args(self, data_dir):
        return ["--data-dir", data_dir, "--database-url", self.url()]


def restart_database(mode="fast"):
    """Restarts the PostgreSQL server under the tests (pg_ctl restart -m MODE) and waits
    until it accepts connections again."""
    if not Config.pg_ctl:
        raise unittest.SkipTest("no pg_ctl command for the database (run.py --pg-ctl)")
    p = subprocess.run(Config.pg_ctl + ["restart", "-m", mode, "-w", "-t", "60"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       errors="replace", timeout=120)
    if p.returncode != 0:
        raise AssertionError("pg_ctl restart failed (exit %d): %s"
                             % (p.returncode, (p.stdout + p.stderr).strip()))


def backend():
    if Config.backend == "sqlite":
        return SqliteBackend()
    if Config.backend == "postgres":
        return PostgresBackend(Config.database_url)
    raise ValueError("unknown backend %r" % Config.backend)


# ---------------------------------------------------------------------------
# Values as `tributary export` prints them

class Int64(int):
    """An int64 Convex value (export prints it as {"$integer": base64}); plain JSON
    numbers in an export are float64 values."""


def decode_value(v):
    if isinstance(v, dict):
        if len(v) == 1 and "$integer" in v:
            raw = base64.b64decode(v["$integer"])
            if len(raw) != 8:
                raise ValueError("$integer is not 8 bytes: %r" % v)
            return Int64(struct.unpack("<q", raw)[0])
        return {k: decode_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [decode_value(x) for x in v]
    return v


def first_cursor(test, server):
    """The latest commit timestamp, as a document_deltas cursor."""
    r = server.request("GET", "/api/list_snapshot?format=convex_json&tableName=none_such")
    return test.assertJsonOk(r)["snapshot"]


def deltas_since(test, server, cursor):
    """Every document_deltas value after cursor (all pages) and the final cursor."""
    values = []
    while True:
        query = urllib.parse.urlencode({"cursor": cursor, "format": "convex_json"})
        body = test.assertJsonOk(server.request("GET", "/api/document_deltas?" + query))
        test.assertGreaterEqual(body["cursor"], cursor, "the deltas cursor went back")
        values += body["values"]
        cursor = body["cursor"]
        if not body["hasMore"]:
            return values, cursor


def user_fields(doc):
    """A document without its system fields."""
    return {k: v for k, v in doc.items() if k not in ("_id", "_creationTime")}


# ---------------------------------------------------------------------------
# HTTP

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # list of (name, value)
        self.body = body

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    @property
    def content_type(self):
        return (self.header("Content-Type") or "").split(";")[0].strip().lower()

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        body = self.text
        if len(body) > 400:
            body = body[:400] + "..."
        return "<HTTP %s %s>" % (self.status, body)


NO_CONTENT_TYPE = object()
_OWN_KEY = object()


def http_request(port, method, path, body=None, headers=None, key=None,
                 content_type="application/json", timeout_s=None):
    """One request on a fresh connection. body: dict/list (sent as JSON), bytes, str
    or None. key: the admin key, sent as `Authorization: Convex <key>`."""
    hdrs = {}
    if key is not None:
        hdrs["Authorization"] = "Convex " + key
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    if body is not None and content_type is not NO_CONTENT_TYPE and content_type:
        hdrs["Content-Type"] = content_type
    hdrs.update(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", port,
                                      timeout=timeout_s or timeout(120))
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, resp.getheaders(), data)
    finally:
        conn.close()


class RawResponse(Response):
    def __init__(self, status, headers, body, closed, raw):
        super().__init__(status, headers, body)
        self.closed = closed  # the server closed the connection after answering
        self.raw = raw


class _RawReader(threading.Thread):
    """Reads a socket until one full response is there (or until EOF when asked)."""

    def __init__(self, sock, wait_close, deadline):
        super().__init__(daemon=True)
        self.sock = sock
        self.wait_close = wait_close
        self.deadline = deadline
        self.data = b""
        self.eof = False
        self.done = threading.Event()

    def run(self):
        try:
            while time.monotonic() < self.deadline:
                self.sock.settimeout(max(0.05, min(1.0, self.deadline - time.monotonic())))
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    self.eof = True
                    break
                if not chunk:
                    self.eof = True
                    break
                self.data += chunk
                if not self.wait_close and parse_raw_response(self.data) is not None:
                    break
        finally:
            self.done.set()


def parse_raw_response(data):
    """(status, headers, body) of the first complete response in data, else None."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = data[:end].decode("latin-1").split("\r\n")
    parts = head[0].split(" ", 2)
    status = int(parts[1])
    headers = []
    for line in head[1:]:
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    rest = data[end + 4:]
    hmap = {k.lower(): v for k, v in headers}
    if "content-length" in hmap:
        n = int(hmap["content-length"])
        if len(rest) < n:
            return None
        return status, headers, rest[:n]
    if hmap.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            line_end = rest.find(b"\r\n")
            if line_end < 0:
                return None
            size = int(rest[:line_end].split(b";")[0], 16)
            if len(rest) < line_end + 2 + size + 2:
                return None
            body += rest[line_end + 2:line_end + 2 + size]
            rest = rest[line_end + 2 + size + 2:]
            if size == 0:
                return status, headers, body
    return None


def raw_exchange(port, head, body_parts=(), wait_close=False, timeout_s=None):
    """Sends head (bytes, the request line and headers with the final blank line)
    then each of body_parts, reading concurrently so an early answer is seen even
    while the server refuses the rest. Returns a RawResponse, or one with status None
    when nothing complete came back before the deadline."""
    deadline = time.monotonic() + (timeout_s or timeout(30))
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout(30))
    try:
        reader = _RawReader(sock, wait_close, deadline)
        reader.start()
        try:
            sock.sendall(head)
            for part in body_parts:
                if reader.done.is_set():
                    break
                sock.sendall(part)
        except OSError:
            pass  # the server answered early and stopped reading: expected here
        reader.join(max(0.0, deadline - time.monotonic()) + 1)
        parsed = parse_raw_response(reader.data)
        if parsed is None:
            return RawResponse(None, [], b"", reader.eof, reader.data)
        status, headers, body = parsed
        return RawResponse(status, headers, body, reader.eof, reader.data)
    finally:
        sock.close()


def request_head(method, path, headers):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1"]
    lines += ["%s: %s" % (k, v) for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunked(data, size=65536):
    """data in HTTP/1.1 chunked framing, as a list of parts to send."""
    parts = []
    for i in range(0, len(data), size):
        piece = data[i:i + size]
        parts.append(b"%x\r\n" % len(piece) + piece + b"\r\n")
    parts.append(b"0\r\n\r\n")
    return parts


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# Request bodies

def append_stream(schema=None):
    return {"primaryKey": None, "jsonSchema": schema}


def dedup_stream(*paths, schema=None):
    return {"primaryKey": [list(p) for p in paths], "jsonSchema": schema}


def messages(table, datas):
    return [{"tableName": table, "data": d} for d in datas]


def gzip_bytes(data):
    return gzip.compress(data, compresslevel=6)


# ---------------------------------------------------------------------------
# Running the binary

_LIVE = set()
_LIVE_LOCK = threading.Lock()


def _kill_leftovers():
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass


atexit.register(close_database_pools)
atexit.register(_kill_leftovers)  # registered last: runs first


def run_cli(args, env=None, timeout_s=None):
    """Runs `tributary ARGS`; returns CompletedProcess with text stdout/stderr."""
    return subprocess.run([Config.binary] + list(args), env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, errors="replace",
                          timeout=timeout_s or timeout(120))


def env_without_key(extra=None):
    env = dict(os.environ)
    for name in ("TRIBUTARY_ADMIN_KEY", "DATABASE_URL", "POSTGRES_URL"):
        env.pop(name, None)
    env.update(extra or {})
    return env


class ExportError(Exception):
    pass


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "ThreadSanitizer")


class Server:
    """One `tributary serve` process. start() waits until GET /version answers."""

    def __init__(self, data_dir=None, admin_key=ADMIN_KEY, extra_args=(), env=None,
                 port=None, key_in_env=False, database_of=None):
        """database_of: another Server whose database this one shares (PostgreSQL:
        several processes on one database); that server owns and drops it."""
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="tributary-e2e-")
        self.logs = tempfile.mkdtemp(prefix="tributary-e2e-logs-")
        self.admin_key = admin_key
        self.extra_args = list(extra_args)
        self.env = env
        self.fixed_port = port
        self.key_in_env = key_in_env
        self.port = None
        self.proc = None
        self.generation = 0
        self.killed = False  # by kill(): a deliberate crash, not a failure
        self.stdout_path = self.stderr_path = None
        self.owns_database = database_of is None
        self.backend = database_of.backend if database_of is not None else backend()

    # -- process ------------------------------------------------------------

    def command(self):
        cmd = [Config.binary, "serve", "--listen", "127.0.0.1:%d" % self.port]
        cmd += self.backend.server_args(self.data_dir)
        if self.admin_key is not None and not self.key_in_env:
            cmd += ["--admin-key", self.admin_key]
        return cmd + self.extra_args

    def _environment(self):
        env = env_without_key(self.env)
        if self.admin_key is not None and self.key_in_env:
            env["TRIBUTARY_ADMIN_KEY"] = self.admin_key
        return env

    def start(self, wait=True):
        """Starts the process; retries on another port if a picked port was taken."""
        for attempt in range(3):
            self.port = self.fixed_port or free_port()
            self.spawn()
            if not wait:
                return self
            try:
                self.wait_up()
                return self
            except ServerDied as e:
                if self.fixed_port or attempt == 2 or "in use" not in str(e).lower():
                    raise
        return self

    def spawn(self):
        self.backend.create()
        self.killed = False
        self.generation += 1
        self.stdout_path = os.path.join(self.logs, "stdout.%d" % self.generation)
        self.stderr_path = os.path.join(self.logs, "stderr.%d" % self.generation)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL,
                                         env=self._environment(), cwd=self.logs)
        with _LIVE_LOCK:
            _LIVE.add(self.proc)

    def wait_up(self, limit=None):
        deadline = time.monotonic() + (limit or timeout(30))
        while True:
            if self.proc.poll() is not None:
                raise ServerDied("server exited with %s before answering:\n%s"
                                 % (self.proc.returncode, self.stderr_tail()))
            try:
                r = http_request(self.port, "GET", "/version", timeout_s=5)
                if r.status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise ServerDied("server did not answer GET /version in time:\n"
                                 + self.stderr_tail())
            time.sleep(0.05)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, limit=None):
        """Stops the process gracefully (SIGKILL if it hangs); returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(limit or timeout(30))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
                with _LIVE_LOCK:
                    _LIVE.discard(self.proc)
                raise AssertionError("server did not exit within %ss of %s"
                                     % (limit or timeout(30), signal.Signals(sig).name))
        with _LIVE_LOCK:
            _LIVE.discard(self.proc)
        return self.proc.returncode

    def kill(self):
        """kill -9: what a crash or power cut looks like to the data directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.killed = True
            self.proc.kill()
            self.proc.wait(30)
        if self.proc is not None:
            with _LIVE_LOCK:
                _LIVE.discard(self.proc)

    def close(self, check_exit=True):
        """Stops the server and removes its files. With check_exit, a non-zero exit
        or a sanitizer report in the log is an error."""
        problem = None
        try:
            if self.running():
                code = self.stop()
                if check_exit and code != 0:
                    problem = "server exited with %s after SIGTERM" % code
            elif check_exit and self.proc is not None and not self.killed \
                    and self.proc.returncode != 0:
                problem = "server died during the tests (exit %s)" % self.proc.returncode
            if check_exit and problem is None:
                log = self.stderr_text(all_generations=True)
                for mark in SANITIZER_MARKS:
                    if mark in log:
                        problem = "sanitizer report in the server log"
                        break
            if problem:
                raise AssertionError(problem + ":\n" + self.stderr_tail(60))
        finally:
            self.kill()
            shutil.rmtree(self.logs, ignore_errors=True)
            if self.own_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)
            if self.owns_database:
                self.backend.drop()

    # -- logs -----------------------------------------------------------------

    def stdout_text(self):
        return _read(self.stdout_path)

    def stderr_text(self, all_generations=False):
        if not all_generations:
            return _read(self.stderr_path)
        return "".join(_read(os.path.join(self.logs, "stderr.%d" % g))
                       for g in range(1, self.generation + 1))

    def stderr_tail(self, lines=40):
        text = self.stderr_text().splitlines()
        return "\n".join(text[-lines:])

    # -- HTTP -----------------------------------------------------------------

    def request(self, method, path, body=None, headers=None, key=_OWN_KEY, **kw):
        """key: the server's admin key unless given; None sends no credentials."""
        if key is _OWN_KEY:
            key = self.admin_key
        return http_request(self.port, method, path, body=body, headers=headers,
                            key=key, **kw)

    def api(self, method, endpoint, body=None, **kw):
        return self.request(method, API + endpoint, body, **kw)

    def import_records(self, tables, msgs, **kw):
        return self.api("POST", "import_airbyte_records",
                        {"tables": tables, "messages": msgs}, **kw)

    def clear_tables(self, names, **kw):
        return self.api("PUT", "clear_tables", {"tableNames": names}, **kw)

    def add_indexes(self, indexes, **kw):
        return self.api("PUT", "add_primary_key_indexes", {"indexes": indexes}, **kw)

    def indexes_ready(self, tables, **kw):
        """GET primary_key_indexes_ready with the JSON body on the GET, like Airbyte."""
        return self.api("GET", "primary_key_indexes_ready", {"tables": tables}, **kw)

    def wait_indexes_ready(self, tables, limit=None):
        deadline = time.monotonic() + (limit or timeout(180))
        while True:
            r = self.indexes_ready(tables)
            if r.status != 200:
                raise AssertionError("primary_key_indexes_ready: %r" % r)
            if r.json()["indexesReady"] is True:
                return
            if time.monotonic() > deadline:
                raise AssertionError("indexes of %s not ready in time" % tables)
            time.sleep(0.1)

    # -- data, seen by an operator ----------------------------------------------

    def export_raw(self, table):
        return run_cli(["export"] + self.backend.cli_args(self.data_dir)
                       + ["--table", table], env=env_without_key(self.env))

    def export(self, table):
        """The table's documents (decoded: int64 values become Int64)."""
        p = self.export_raw(table)
        if p.returncode != 0:
            raise ExportError("export of %s failed (%s): %s"
                              % (table, p.returncode, p.stderr.strip()))
        docs = []
        for line in p.stdout.splitlines():
            if line.strip():
                docs.append(decode_value(json.loads(line)))
        return docs

    def export_or_none(self, table):
        try:
            return self.export(table)
        except ExportError:
            return None


class ServerDied(Exception):
    pass


def _read(path):
    if not path or not os.path.exists(path):
        return ""
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


# ---------------------------------------------------------------------------
# Test case base

class ServerTestCase(unittest.TestCase):
    """A test class with its own server (fresh port and data directory). Tests may
    start more servers with new_server(); every one is stopped afterwards, and the
    tail of its log is printed when a test fails."""

    server_args = ()
    server = None
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        server = Server(extra_args=cls.server_args)
        try:
            server.start()
            cls.server = server
            cls.prepare_server(server)
        except BaseException:
            cls.server = None
            server.close(check_exit=False)
            raise

    @classmethod
    def prepare_server(cls, server):
        """Hook: fill the class server with the data its tests share."""

    @classmethod
    def tearDownClass(cls):
        if cls.server is not None:
            server, cls.server = cls.server, None
            server.close()

    def new_server(self, **kw):
        server = Server(**kw)
        self._extra_servers().append(server)
        self.addCleanup(server.close, check_exit=False)
        return server

    def _extra_servers(self):
        if "_servers" not in self.__dict__:
            self._servers = []
        return self._servers

    def run(self, result=None):
        before = _problem_count(result)
        out = super().run(result)
        if result is not None and _problem_count(result) > before:
            servers = ([type(self).server] if type(self).server else []) + self._extra_servers()
            for s in servers:
                sys.stderr.write("---- server stderr tail (port %s, %s) ----\n%s\n----\n"
                                 % (s.port, s.data_dir, s.stderr_tail()))
            sys.stderr.flush()
        return out

    # -- assertions -----------------------------------------------------------

    def assertOk(self, resp, msg=None):
        if resp.status != 200:
            self.fail("%sexpected 200, got %r" % (msg + ": " if msg else "", resp))
        return resp

    def assertJsonOk(self, resp):
        self.assertOk(resp)
        self.assertEqual(resp.content_type, "application/json", resp.headers)
        body = resp.json()
        self.assertIsInstance(body, dict)
        return body

    def assertError(self, resp, status, code=None, mentions=()):
        """An error answer as §1.4 wants it: the status, JSON {code, message}."""
        self.assertEqual(resp.status, status, "expected %s %s, got %r" % (status, code, resp))
        self.assertEqual(resp.content_type, "application/json",
                         "error without a JSON content type: %r %r" % (resp.headers, resp))
        body = resp.json()
        self.assertIsInstance(body, dict, resp)
        self.assertIsInstance(body.get("code"), str, resp)
        self.assertIsInstance(body.get("message"), str, resp)
        self.assertTrue(body["message"].strip(), "empty error message: %r" % resp)
        if code is not None:
            self.assertEqual(body["code"], code, resp)
        for word in mentions:
            self.assertIn(word, body["message"], "message should name %r: %r" % (word, resp))
        return body

    def assertCounts(self, resp, messages=None, inserted=None, replaced=None, deleted=None):
        body = self.assertJsonOk(resp)
        want = {"messages": messages, "inserted": inserted, "replaced": replaced,
                "deleted": deleted}
        got = {k: body.get(k) for k, v in want.items() if v is not None}
        self.assertEqual(got, {k: v for k, v in want.items() if v is not None}, resp)
        return body

    def export(self, table, server=None):
        return (server or self.server).export(table)


def _problem_count(result):
    if result is None:
        return 0
    return len(result.failures) + len(result.errors)

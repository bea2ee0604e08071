"""A throwaway PostgreSQL cluster for the end-to-end tests.

`make test` runs the end-to-end suite against PostgreSQL as well as SQLite, and must not
depend on a database the machine happens to run, so it starts its own: initdb into a
fresh temporary directory, a server that listens only on a unix socket inside that
directory (no TCP port another engineer's cluster could collide with, nothing reachable
from outside), trust authentication for the `postgres` user, and everything removed
again at the end, whatever happened in between (failure, Ctrl-C, SIGTERM).

initdb refuses to run as root, so under root every PostgreSQL program runs as the
`postgres` user (runuser) and the directory belongs to that user.

Usage:
    with Cluster() as pg:          # raises ClusterError when it cannot start
        pg.url                      # postgresql:///postgres?host=DIR&port=PORT&user=postgres
        pg.pg_ctl_command()         # the pg_ctl command line, for restart tests
Only the standard library is used.
"""
import glob
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time

SUPERUSER = "postgres"

# Settings of the throwaway cluster: enough connections for several tributary
# processes with their pools, no TCP, and the log kept quiet enough to read.
SETTINGS = {
    "listen_addresses": "''",
    "max_connections": "300",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] '",
}


class ClusterError(Exception):
    """The cluster could not be created or started; the message says why."""


def find_bindir():
    """The newest PostgreSQL's bin directory: /usr/lib/postgresql/<v>/bin (Debian),
    else pg_config --bindir, else where initdb is on PATH."""
    def version(path):
        m = re.search(r"/postgresql/(\d+)(?:\.(\d+))?/bin$", path)
        return (int(m.group(1)), int(m.group(2) or 0)) if m else (0, 0)
    candidates = [d for d in glob.glob("/usr/lib/postgresql/*/bin")
                  if os.access(os.path.join(d, "initdb"), os.X_OK)]
    if candidates:
        return max(candidates, key=version)
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
        if out and os.access(os.path.join(out, "initdb"), os.X_OK):
            return out
    except (OSError, subprocess.SubprocessError):
        pass
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise ClusterError("no PostgreSQL server programs found (initdb under "
                       "/usr/lib/postgresql/*/bin or on PATH); run scripts/install-deps")


def free_port():
    """A port number no local TCP listener uses (the socket's name is derived from it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, bindir=None):
        self.bindir = bindir
        self.dir = None
        self.port = None
        self.started = False
        self.as_user = os.geteuid() == 0

    # -- paths and commands ----------------------------------------------------

    @property
    def datadir(self):
        return os.path.join(self.dir, "data")

    @property
    def logfile(self):
        return os.path.join(self.dir, "server.log")

    @property
    def url(self):
        return "postgresql:///postgres?host=%s&port=%d&user=%s" % (self.dir, self.port,
                                                                   SUPERUSER)

    def _program(self, name):
        cmd = [os.path.join(self.bindir, name)]
        return ["runuser", "-u", SUPERUSER, "--"] + cmd if self.as_user else cmd

    def pg_ctl_command(self):
        """pg_ctl with this cluster's data directory and log file; append the action
        (e.g. `restart -m fast`). The log file matters: without one the server would
        keep the caller's stdout open."""
        return self._program("pg_ctl") + ["-D", self.datadir, "-l", self.logfile]

    def pg_ctl_shell(self):
        return " ".join(shlex.quote(a) for a in self.pg_ctl_command())

    def _run(self, cmd, what, limit=120):
        try:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, errors="replace", timeout=limit, cwd=self.dir)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ClusterError("%s failed: %s" % (what, e)) from None
        if p.returncode != 0:
            raise ClusterError("%s failed (exit %d): %s%s"
                               % (what, p.returncode, (p.stdout + p.stderr).strip()[-2000:],
                                  self._log_tail()))
        return p

    def _log_tail(self, lines=20):
        try:
            with open(self.logfile, errors="replace") as f:
                tail = f.read().splitlines()[-lines:]
        except OSError:
            return ""
        return "\nserver log:\n" + "\n".join(tail) if tail else ""

    # -- life cycle --------------------------------------------------------------

    def start(self):
        """initdb, configure and start; ClusterError (after cleaning up) on failure."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self):
        self.bindir = self.bindir or find_bindir()
        self.dir = tempfile.mkdtemp(prefix="tributary-pg-")
        if self.as_user:
            try:
                user = pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise ClusterError("running as root but there is no %r user to run "
                                   "PostgreSQL as" % SUPERUSER) from None
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        os.chmod(self.dir, 0o700)
        self._run(self._program("initdb") + ["-D", self.datadir, "-U", SUPERUSER,
                                              "--auth=trust", "--encoding=UTF8",
                                              "--no-locale", "--no-sync", "--no-instructions"],
                  "initdb")
        self.port = free_port()
        settings = dict(SETTINGS, port=str(self.port),
                        unix_socket_directories="'%s'" % self.dir.replace("'", "''"))
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\n# tributary tests (tests/pgcluster.py)\n")
            for k, v in settings.items():
                f.write("%s = %s\n" % (k, v))
        self.started = True  # from here on a postmaster may exist: stop() must look
        self._run(self.pg_ctl_command() + ["start", "-w", "-t", "60"], "pg_ctl start")
        self._run([os.path.join(self.bindir, "psql"), self.url, "-qAtc", "SELECT 1"],
                  "connecting to the new cluster", limit=30)

    def _postmaster_pid(self):
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def stop(self):
        """Stops the server (immediate: the data is thrown away) and removes the
        directory. Safe to call more than once and after a failed start."""
        if self.dir is None:
            return
        if self.started:
            pid = self._postmaster_pid()
            try:
                subprocess.run(self.pg_ctl_command() + ["stop", "-m", "immediate", "-w",
                                                        "-t", "30"],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
                               cwd=self.dir)
            except (OSError, subprocess.TimeoutExpired):
                pass
            if pid is not None and _alive(pid):
                _kill_postmaster(pid)
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _kill_postmaster(pid):
    """Last resort when pg_ctl could not stop our own postmaster: SIGKILL it (its
    children exit when they notice it is gone) and wait a little for them."""
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        return
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: unittest lets KeyboardInterrupt through (it
    would record a SystemExit as one more test error and go on)."""


def interrupt_on_signals():
    """SIGTERM and SIGINT raise (Terminated, KeyboardInterrupt), so `finally` blocks
    stop the cluster and the servers; SIGINT too when the process was started with it
    ignored (a background job of a shell script)."""
    def handler(signum, frame):
        raise Terminated()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)

"""The command line (SPEC §6): help and version, flag errors, the admin key's life
cycle, request logging, graceful shutdown and start-up failures."""
import os
import re
import signal
import socket
import stat
import tempfile
import time
import unittest

from harness import (API, ServerTestCase, append_stream, env_without_key,
                     free_port, http_request, messages, raw_exchange, request_head,
                     run_cli, timeout, user_fields)

COMMANDS = [[], ["serve"], ["admin-key"], ["export"]]
KEY_LINE = re.compile(r"^Admin key: (\S+)\s*$", re.M)


def one_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    return len(lines) == 1


class CliTests(unittest.TestCase):

    def test_help_and_version_on_every_command(self):
        top = run_cli(["--version"], env=env_without_key())
        self.assertEqual(top.returncode, 0, top.stderr)
        m = re.search(r"\d+\.\d+\.\d+", top.stdout)
        self.assertIsNotNone(m, "no version number in %r" % top.stdout)
        for cmd in COMMANDS:
            with self.subTest(command=cmd, flag="--help"):
                p = run_cli(cmd + ["--help"], env=env_without_key())
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertTrue(p.stdout.strip(), "help goes to stdout")
            with self.subTest(command=cmd, flag="--version"):
                p = run_cli(cmd + ["--version"], env=env_without_key())
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertIn(m.group(0), p.stdout)

    def test_unknown_flag_exits_2_naming_it(self):
        with tempfile.TemporaryDirectory() as d:
            for cmd in (["serve", "--data-dir", d, "--listen", "127.0.0.1:%d" % free_port()],
                        ["admin-key", "--data-dir", d], ["export", "--data-dir", d,
                                                         "--table", "t"]):
                with self.subTest(command=cmd[0]):
                    p = run_cli(cmd + ["--no-such-flag"], env=env_without_key(),
                                timeout_s=timeout(30))
                    self.assertEqual(p.returncode, 2, p.stderr)
                    self.assertIn("--no-such-flag", p.stderr)
                    self.assertTrue(one_line(p.stderr), "one line: %r" % p.stderr)

    def test_bad_option_values_exit_2_naming_them(self):
        with tempfile.TemporaryDirectory() as d:
            base = ["serve", "--data-dir", d, "--listen", "127.0.0.1:%d" % free_port()]
            for flag, value in (("--threads", "0"), ("--retention", "soon"),
                                ("--max-body-size", "big"), ("--snapshot-cache-rows", "-1"),
                                ("--snapshot-cache-rows", "12x"),
                                ("--snapshot-cache-rows", "")):
                with self.subTest(flag=flag, value=value):
                    p = run_cli(base + [flag, value], env=env_without_key(),
                                timeout_s=timeout(30))
                    self.assertEqual(p.returncode, 2, p.stderr)
                    self.assertIn("bad %s '%s'" % (flag, value), p.stderr)
                    self.assertTrue(one_line(p.stderr), "one line: %r" % p.stderr)

    def test_unknown_command_fails(self):
        p = run_cli(["frobnicate"], env=env_without_key(), timeout_s=timeout(30))
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("frobnicate", p.stderr)


class ServerCliTests(ServerTestCase):
    """Tests that start their own servers (the class server is only for the log test)."""

    def test_first_start_generates_a_key_once(self):
        srv = self.new_server(admin_key=None).start()
        keys = KEY_LINE.findall(srv.stdout_text())
        self.assertEqual(len(keys), 1, "stdout: %r" % srv.stdout_text())
        key = keys[0]
        r = srv.import_records({"k": append_stream()}, messages("k", [{"a": 1}]), key=key)
        self.assertOk(r)
        r = srv.import_records({"k": append_stream()}, messages("k", [{"a": 1}]), key="nope")
        self.assertError(r, 401, "BadAdminKey")
        self.assertNotIn(key, srv.stderr_text())

        found_private = False
        for name in os.listdir(srv.data_dir):
            path = os.path.join(srv.data_dir, name)
            if not os.path.isfile(path):
                continue
            with open(path, "rb") as f:
                self.assertNotIn(key.encode(), f.read(), "the key is stored in " + name)
            if stat.S_IMODE(os.stat(path).st_mode) == 0o600:
                found_private = True
        self.assertTrue(found_private, "no 0600 file (the key hash) in the data dir")

        self.assertEqual(srv.stop(), 0)
        srv.start()
        self.assertEqual(KEY_LINE.findall(srv.stdout_text()), [],
                         "a later start must not print a key")
        self.assertOk(srv.indexes_ready([], key=key))
        self.assertError(srv.indexes_ready([], key="nope"), 401, "BadAdminKey")

    def test_admin_key_rotation(self):
        srv = self.new_server(admin_key=None).start()
        old = KEY_LINE.findall(srv.stdout_text())[0]
        self.assertEqual(srv.stop(), 0)
        # the key hash lives in the data dir on both backends
        p = run_cli(["admin-key", "--data-dir", srv.data_dir], env=env_without_key())
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(one_line(p.stdout), "one line: %r" % p.stdout)
        new = p.stdout.strip()
        if new.startswith("Admin key:"):
            new = new.split(":", 1)[1].strip()
        self.assertTrue(new)
        self.assertNotEqual(new, old)
        srv.start()
        self.assertEqual(self.assertJsonOk(srv.indexes_ready([], key=new)),
                         {"indexesReady": True})
        self.assertError(srv.indexes_ready([], key=old), 401, "BadAdminKey")
        self.assertError(srv.request("GET", "/version", key=old), 401, "BadAdminKey")

    def test_key_from_environment(self):
        srv = self.new_server(admin_key="env-key-123456789", key_in_env=True).start()
        self.assertOk(srv.indexes_ready([], key="env-key-123456789"))
        self.assertError(srv.indexes_ready([], key="other"), 401, "BadAdminKey")
        self.assertEqual(KEY_LINE.findall(srv.stdout_text()), [])

    def test_sigterm_and_sigint_exit_0(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(signal=sig.name):
                srv = self.new_server().start()
                self.assertOk(srv.import_records({"s": append_stream()},
                                                 messages("s", [{"a": 1}])))
                self.assertEqual(srv.stop(sig), 0, srv.stderr_tail())
                self.assertEqual(len(srv.export("s")), 1)

    def test_sigterm_finishes_the_request_in_flight(self):
        srv = self.new_server().start()
        body = ('{"tables": {"inflight": {"primaryKey": null, "jsonSchema": null}}, '
                '"messages": [%s]}' % ",".join('{"tableName": "inflight", "data": {"i": %d}}'
                                               % i for i in range(1000))).encode()
        head = request_head("POST", API + "import_airbyte_records", [
            ("Authorization", "Convex " + srv.admin_key), ("Content-Type", "application/json"),
            ("Content-Length", str(len(body)))])
        half = len(body) // 2

        def halves():
            """The first half, then SIGTERM while the request is in flight, then the rest."""
            yield body[:half]
            time.sleep(0.3 * timeout(1))
            srv.send_signal(signal.SIGTERM)
            time.sleep(0.5 * timeout(1))
            yield body[half:]

        r = raw_exchange(srv.port, head, halves(), timeout_s=timeout(60))
        self.assertEqual(r.status, 200, r.raw[:300])
        srv.proc.wait(timeout(30))
        self.assertEqual(srv.proc.returncode, 0, srv.stderr_tail())
        self.assertEqual(sorted(d["i"] for d in srv.export("inflight")), list(range(1000)))

    def test_port_taken(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            port = s.getsockname()[1]
            srv = self.new_server(port=port)
            srv.start(wait=False)
            try:
                code = srv.proc.wait(timeout(30))
            finally:
                srv.kill()
        self.assertNotEqual(code, 0)
        err = srv.stderr_text()
        self.assertTrue(one_line(err), "one-line reason: %r" % err)

    def test_data_dir_unwritable(self):
        with tempfile.TemporaryDirectory() as d:
            blocker = os.path.join(d, "a-file")
            with open(blocker, "w") as f:
                f.write("not a directory")
            srv = self.new_server(data_dir=os.path.join(blocker, "data"))
            srv.start(wait=False)
            try:
                code = srv.proc.wait(timeout(30))
            finally:
                srv.kill()
            self.assertNotEqual(code, 0)
            err = srv.stderr_text()
            self.assertTrue(one_line(err), "one-line reason: %r" % err)

    def test_export_of_unknown_table_fails(self):
        p = self.server.export_raw("no_such_table")
        self.assertNotEqual(p.returncode, 0)
        self.assertTrue(p.stderr.strip())

    def test_export_while_serving(self):
        self.assertOk(self.server.import_records({"live_export": append_stream()},
                                                 messages("live_export", [{"a": 1}])))
        self.assertEqual([user_fields(d) for d in self.server.export("live_export")],
                         [{"a": 1}])
        self.assertOk(self.server.import_records({"live_export": append_stream()},
                                                 messages("live_export", [{"a": 2}])))
        self.assertEqual(len(self.server.export("live_export")), 2)

    def test_one_log_line_per_request(self):
        def lines(word):
            return [line for line in self.server.stderr_text().splitlines() if word in line]
        imports_before = len(lines("import_airbyte_records"))
        for _ in range(3):
            http_request(self.server.port, "GET", "/unique-path-for-log-test", key=None)
        self.assertOk(self.server.import_records(
            {"logged": append_stream()}, messages("logged", [{"a": 1}]),
            headers={"Convex-Client": "streaming-import-0.1.0"}))
        deadline = time.monotonic() + timeout(5)
        while True:
            hits = lines("/unique-path-for-log-test")
            imports = lines("import_airbyte_records")[imports_before:]
            if len(hits) >= 3 and imports:
                break
            self.assertLess(time.monotonic(), deadline, "requests not logged:\n%s"
                            % self.server.stderr_tail(20))
            time.sleep(0.05)
        self.assertEqual(len(hits), 3)
        for line in hits:
            self.assertIn("GET", line)
            self.assertIn("404", line)
        self.assertEqual(len(imports), 1)
        for part in ("POST", "/api/streaming_import/import_airbyte_records", "200",
                     "streaming-import"):
            self.assertIn(part, imports[0])
        self.assertNotIn(self.server.admin_key, self.server.stderr_text())

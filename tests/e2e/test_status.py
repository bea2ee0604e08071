"""GET /metrics and the status page at / (SPEC §5), as a monitoring system and an
operator with a browser use them: who may read them, and that what they show matches
what the server did and what is stored."""
import re
import threading
import unittest

from harness import Config, ServerTestCase, append_stream, dedup_stream, messages, psql

IMPORT_PATH = "/api/streaming_import/import_airbyte_records"
SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text format → {(name, frozenset(labels.items())): value}; fails on a
    line that is neither a comment nor a sample, or on a sample without its # TYPE."""
    samples, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            raise AssertionError("not a metrics line: %r" % line)
        name, labels, value = m.groups()
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in typed and base not in typed:
            raise AssertionError("sample before its # TYPE: %r" % line)
        key = (name, frozenset(LABEL_RE.findall(labels or "")))
        if key in samples:
            raise AssertionError("duplicate sample: %r" % line)
        samples[key] = float(value)
    return samples


def metric(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


class MetricsTests(ServerTestCase):

    def metrics(self, server=None, **kw):
        r = (server or self.server).request("GET", "/metrics", **kw)
        self.assertOk(r)
        self.assertEqual(r.content_type, "text/plain")
        return parse_metrics(r.text)

    def test_metrics_need_the_admin_key(self):
        r = self.server.request("GET", "/metrics", key=None)
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.json()["code"], "BadDeployKey")
        r = self.server.request("GET", "/metrics", key="wrong")
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.json()["code"], "BadAdminKey")
        self.metrics()

    def test_metrics_count_what_the_server_did(self):
        s = self.new_server()
        s.start()
        self.assertOk(s.import_records({"events": append_stream()},
                                       messages("events", [{"n": i} for i in range(3)])))
        self.assertOk(s.add_indexes({"users": [["id"]]}))
        s.wait_indexes_ready(["users"])
        self.assertOk(s.import_records({"users": dedup_stream(["id"])},
                                       messages("users", [{"id": 1}, {"id": 2}])))
        self.assertOk(s.import_records({"users": dedup_stream(["id"])},
                                       messages("users", [{"id": 2, "v": "new"}])))
        bad = s.import_records({"users": dedup_stream(["id"])},
                               messages("users", [{"v": "no key"}]))
        self.assertEqual(bad.status, 400, bad)
        self.assertEqual(s.request("GET", "/no/such/path").status, 404)

        m = self.metrics(s)
        version = s.request("GET", "/version", key=None).text.strip()
        self.assertEqual(metric(m, "tributary_build_info", version=version), 1)
        self.assertGreater(metric(m, "tributary_uptime_seconds"), 0)
        self.assertEqual(metric(m, "tributary_import_records_total"), 6)
        for action, n in (("inserted", 5), ("replaced", 1), ("deleted", 0)):
            self.assertEqual(metric(m, "tributary_import_documents_total", action=action), n,
                             action)
        imp = {"method": "POST", "path": IMPORT_PATH}
        self.assertEqual(metric(m, "tributary_http_requests_total", code="2xx", **imp), 3)
        self.assertEqual(metric(m, "tributary_http_requests_total", code="4xx", **imp), 1)
        self.assertIsNone(metric(m, "tributary_http_requests_total", code="5xx", **imp))
        self.assertEqual(metric(m, "tributary_http_requests_total", code="4xx",
                                method="", path="other"), 1)
        # the histogram: cumulative buckets ending at +Inf = _count = requests answered
        buckets = sorted((float(dict(k[1])["le"]), v) for k, v in m.items()
                         if k[0] == "tributary_http_request_duration_seconds_bucket"
                         and dict(k[1])["path"] == IMPORT_PATH)
        self.assertEqual(buckets[-1][0], float("inf"))
        self.assertEqual([v for _, v in buckets], sorted(v for _, v in buckets))
        self.assertEqual(buckets[-1][1], 4)
        self.assertEqual(metric(m, "tributary_http_request_duration_seconds_count", **imp), 4)
        self.assertGreater(metric(m, "tributary_http_request_duration_seconds_sum", **imp), 0)

        self.assertEqual(metric(m, "tributary_storage_up"), 1)
        self.assertEqual(metric(m, "tributary_table_documents", table="events"), 3)
        self.assertEqual(metric(m, "tributary_table_documents", table="users"), 2)
        self.assertEqual(metric(m, "tributary_table_index_ready", table="users"), 1)
        self.assertIsNone(metric(m, "tributary_table_index_ready", table="events"))

    def test_an_answered_request_is_in_the_next_scrape(self):
        # a refused import's connection is closed and the next request comes on a new
        # one, so the server must count it before the client can read its answer;
        # several clients at once, so that the server's threads race
        s = self.new_server()
        s.start()
        imp = {"method": "POST", "path": IMPORT_PATH}
        lock, answered, failures = threading.Lock(), [0], []

        def client():
            for _ in range(250):
                bad = s.import_records({"users": dedup_stream(["id"])},
                                       messages("users", [{"v": "no key"}]))
                if bad.status != 400:
                    failures.append("import answered %d" % bad.status)
                    return
                with lock:
                    answered[0] += 1
                    seen_before = answered[0]
                counted = metric(self.metrics(s), "tributary_http_requests_total",
                                 code="4xx", **imp)
                if counted < seen_before:
                    failures.append("%d refused imports answered, %d counted"
                                    % (seen_before, counted))
                    return

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(failures, [])
        self.assertEqual(metric(self.metrics(s), "tributary_http_requests_total",
                                code="4xx", **imp), 1000)

    def test_table_metrics_follow_clear_tables(self):
        self.assertOk(self.server.import_records(
            {"to_clear": append_stream()}, messages("to_clear", [{"n": i} for i in range(4)])))
        self.assertEqual(metric(self.metrics(), "tributary_table_documents", table="to_clear"), 4)
        self.assertOk(self.server.clear_tables(["to_clear"]))
        self.assertEqual(metric(self.metrics(), "tributary_table_documents", table="to_clear"), 0)

    def test_public_metrics_by_flag_or_environment(self):
        for kw in ({"extra_args": ["--public-metrics"]},
                   {"env": {"TRIBUTARY_PUBLIC_METRICS": "1"}}):
            with self.subTest(**kw):
                s = self.new_server(**kw)
                s.start()
                self.assertEqual(metric(self.metrics(s, key=None), "tributary_storage_up"), 1)
                # a key that is sent is still checked, and nothing else became public
                self.assertEqual(s.request("GET", "/metrics", key="wrong").status, 401)
                self.assertEqual(s.request("GET", "/", key=None).status, 403)
                self.assertEqual(s.api("PUT", "clear_tables", {"tableNames": []},
                                       key=None).status, 403)


class StatusPageTests(ServerTestCase):

    def test_status_page_needs_the_admin_key(self):
        r = self.server.request("GET", "/", key=None)
        self.assertEqual(r.status, 403, r)
        self.assertEqual(self.server.request("GET", "/?adminKey=wrong", key=None).status, 401)

    def test_status_page_shows_tables_counts_and_indexes(self):
        s = self.server
        refused = s.import_records({"page_events": dedup_stream(["id"])},
                                   messages("page_events", [{"id": 1}]))
        self.assertEqual(refused.status, 400, refused)  # no index: IndexNotFoundError
        self.assertOk(s.import_records({"page_events": append_stream()},
                                       messages("page_events", [{"n": i} for i in range(7)])))
        self.assertOk(s.add_indexes({"page_users": [["id"], ["org", "name"]]}))
        s.wait_indexes_ready(["page_users"])
        self.assertOk(s.import_records(
            {"page_users": dedup_stream(["id"], ["org", "name"])},
            messages("page_users", [{"id": 1, "org": {"name": "a"}},
                                    {"id": 2, "org": {"name": "b"}}])))
        # a browser: the key in the address, no Convex header
        r = s.request("GET", "/?adminKey=" + s.admin_key, key=None)
        self.assertOk(r)
        self.assertEqual(r.content_type, "text/html")
        rows = {}
        for row in re.findall(r"<tr><td>(.*?)</td></tr>", r.text):
            cells = re.split(r"</td><td(?: class=n)?>", row)
            rows[cells[0]] = cells[1:]
        self.assertEqual(rows["page_events"], ["7", "", ""])
        self.assertEqual(rows["page_users"], ["2", "id, org.name", "ready"])
        self.assertIn("<tr><th>records</th><td class=n>9</td>", r.text)
        self.assertIn("<tr><th></th><td class=n>1</td><td>refused (4xx)</td></tr>", r.text)
        version = s.request("GET", "/version", key=None).text.strip()
        self.assertIn(version, r.text)


@unittest.skipUnless(Config.backend == "postgres", "PostgreSQL backend only")
class StorageDownTests(ServerTestCase):

    def test_metrics_and_page_answer_while_the_database_is_gone(self):
        s = self.new_server().start()
        self.assertOk(s.import_records({"gone": append_stream()},
                                       messages("gone", [{"n": 1}])))
        psql(s.backend.base_url, 'DROP DATABASE "%s" WITH (FORCE)' % s.backend.dbname)
        r = s.request("GET", "/metrics")
        self.assertOk(r)
        m = parse_metrics(r.text)
        self.assertEqual(metric(m, "tributary_storage_up"), 0)
        self.assertEqual(metric(m, "tributary_import_records_total"), 1)
        self.assertFalse([k for k in m if k[0] == "tributary_table_documents"])
        r = s.request("GET", "/")
        self.assertOk(r)
        self.assertIn("The tables could not be read", r.text)
        self.assertNotIn("<td>gone</td>", r.text)

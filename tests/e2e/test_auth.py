"""Authentication (SPEC §1.1): who gets in, who gets 403/401, and that the key never
leaks into the logs."""
import json
import time
import urllib.parse

from harness import (API, ServerTestCase, append_stream, messages, raw_exchange,
                     request_head, timeout, user_fields)

ENDPOINTS = [
    ("POST", "import_airbyte_records",
     {"tables": {"auth_t": {"primaryKey": None, "jsonSchema": None}},
      "messages": [{"tableName": "auth_t", "data": {"a": 1}}]}),
    ("PUT", "clear_tables", {"tableNames": ["auth_t"]}),
    ("POST", "replace_tables", {"tableNames": {"temp_1_auth_t": "auth_t"}}),
    ("PUT", "add_primary_key_indexes", {"indexes": {"auth_i": [["id"]]}}),
    ("GET", "primary_key_indexes_ready", {"tables": []}),
]


class AuthTests(ServerTestCase):

    def test_no_credentials_is_403_on_every_endpoint(self):
        for method, endpoint, body in ENDPOINTS:
            with self.subTest(endpoint=endpoint):
                r = self.server.api(method, endpoint, body, key=None)
                self.assertError(r, 403, "BadDeployKey")
        self.assertIsNone(self.server.export_or_none("auth_t"))

    def test_no_credentials_is_403_even_with_a_bad_body(self):
        r = self.server.api("POST", "import_airbyte_records", b"{not json", key=None)
        self.assertError(r, 403, "BadDeployKey")

    def test_wrong_credentials_are_401_on_every_endpoint(self):
        bad_headers = ["Convex wrong-key", "Convex " + self.server.admin_key + "x",
                       "Bearer x", "Bearer " + self.server.admin_key, "Convex",
                       "Convex ", "Basic Zm9vOmJhcg==", "Convex" + self.server.admin_key,
                       "garbage"]
        for method, endpoint, body in ENDPOINTS:
            for header in bad_headers:
                with self.subTest(endpoint=endpoint, authorization=header):
                    r = self.server.api(method, endpoint, body, key=None,
                                        headers={"Authorization": header})
                    self.assertError(r, 401, "BadAdminKey")
        self.assertIsNone(self.server.export_or_none("auth_t"))

    def test_scheme_is_case_insensitive(self):
        for scheme in ("Convex", "convex", "CONVEX", "cOnVeX"):
            with self.subTest(scheme=scheme):
                r = self.server.import_records(
                    {"cases": append_stream()}, messages("cases", [{"scheme": scheme}]),
                    key=None, headers={"Authorization": scheme + " " + self.server.admin_key})
                self.assertOk(r)
        self.assertEqual(sorted(d["scheme"] for d in self.export("cases")),
                         sorted(["Convex", "convex", "CONVEX", "cOnVeX"]))

    def test_admin_key_query_parameter(self):
        path = API + "import_airbyte_records?" + urllib.parse.urlencode(
            {"adminKey": self.server.admin_key})
        body = {"tables": {"qp": append_stream()}, "messages": messages("qp", [{"q": 1}])}
        self.assertOk(self.server.request("POST", path, body, key=None))
        self.assertEqual([user_fields(d) for d in self.export("qp")], [{"q": 1}])
        r = self.server.request("GET", API + "primary_key_indexes_ready?adminKey=wrong",
                                {"tables": []}, key=None)
        self.assertError(r, 401, "BadAdminKey")
        r = self.server.request("GET", API + "primary_key_indexes_ready?adminKey="
                                + self.server.admin_key, {"tables": []}, key=None)
        self.assertEqual(self.assertJsonOk(r), {"indexesReady": True})

    def test_version_checks_credentials_only_when_sent(self):
        self.assertOk(self.server.request("GET", "/version", key=None))
        self.assertOk(self.server.request("GET", "/version"))
        self.assertOk(self.server.request("GET", "/version", key=None,
                                          headers={"Authorization": "convex "
                                                   + self.server.admin_key}))
        for header in ("Convex wrong", "Bearer x"):
            with self.subTest(authorization=header):
                r = self.server.request("GET", "/version", key=None,
                                        headers={"Authorization": header})
                self.assertError(r, 401, "BadAdminKey")
        r = self.server.request("GET", "/version?adminKey=wrong", key=None)
        self.assertError(r, 401, "BadAdminKey")

    def _huge_unauthenticated(self, auth_headers, want_status, want_code):
        head = request_head("POST", API + "import_airbyte_records",
                            auth_headers + [("Content-Type", "application/json"),
                                            ("Content-Length", str(60 * 1024 * 1024))])
        started = time.monotonic()
        r = raw_exchange(self.server.port, head, [b'{"tables": {'], timeout_s=timeout(15))
        self.assertEqual(r.status, want_status,
                         "no answer before the body was sent: %r" % r.raw[:300])
        self.assertLess(time.monotonic() - started, timeout(10))
        self.assertEqual(json.loads(r.body)["code"], want_code)

    def test_unauthenticated_huge_body_refused_from_headers(self):
        self._huge_unauthenticated([], 403, "BadDeployKey")

    def test_wrong_key_huge_body_refused_from_headers(self):
        self._huge_unauthenticated([("Authorization", "Convex nope")], 401, "BadAdminKey")

    def test_key_never_logged(self):
        key = self.server.admin_key
        self.assertOk(self.server.request("GET", "/version"))
        self.assertOk(self.server.indexes_ready([]))
        self.assertOk(self.server.request(
            "GET", API + "primary_key_indexes_ready?adminKey=" + key, {"tables": []}, key=None))
        self.server.request("GET", "/nope?adminKey=" + key, key=None)
        self.assertError(self.server.request(
            "GET", API + "primary_key_indexes_ready",
            {"tables": []}, key=key + "-typo"), 401, "BadAdminKey")
        deadline = time.monotonic() + timeout(5)
        while "primary_key_indexes_ready" not in self.server.stderr_text():
            self.assertLess(time.monotonic(), deadline, "requests are not logged")
            time.sleep(0.05)
        log = self.server.stderr_text() + self.server.stdout_text()
        self.assertNotIn(key, log)

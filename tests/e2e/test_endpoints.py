"""Every endpoint answers as SPEC §1.5, §3 and §5 say, for a well-behaved client."""
import re
import time

from harness import (API, NO_CONTENT_TYPE, ServerTestCase, append_stream, dedup_stream,
                     gzip_bytes, messages, run_cli, user_fields)

ID_RE = re.compile(r"^[0-9a-hjkmnp-tv-z]{32}$")


class EndpointTests(ServerTestCase):

    def test_version_is_plain_text_and_matches_the_cli(self):
        r = self.server.request("GET", "/version", key=None)
        self.assertOk(r)
        self.assertEqual(r.content_type, "text/plain")
        version = r.text.strip()
        self.assertTrue(version)
        cli = run_cli(["--version"])
        self.assertEqual(cli.returncode, 0)
        self.assertIn(version, cli.stdout)

    def test_import_append_answers_counts_and_stores_documents(self):
        before = time.time() * 1000
        r = self.server.import_records(
            {"events": append_stream()},
            messages("events", [{"kind": "signup", "user": 1}, {"kind": "login", "user": 1}]))
        self.assertCounts(r, messages=2, inserted=2, replaced=0, deleted=0)
        docs = self.export("events")
        self.assertEqual([user_fields(d) for d in docs],
                         [{"kind": "signup", "user": 1}, {"kind": "login", "user": 1}])
        for d in docs:
            self.assertRegex(d["_id"], ID_RE)
            self.assertIsInstance(d["_creationTime"], float)
            self.assertGreater(d["_creationTime"], before - 60000)
            self.assertLess(d["_creationTime"], time.time() * 1000 + 60000)
        self.assertNotEqual(docs[0]["_id"], docs[1]["_id"])
        self.assertLess(docs[0]["_creationTime"], docs[1]["_creationTime"])

    def test_creation_times_strictly_increase_across_requests(self):
        for i in range(3):
            self.assertOk(self.server.import_records(
                {"ordered": append_stream()},
                messages("ordered", [{"n": i * 10 + j} for j in range(10)])))
        docs = sorted(self.export("ordered"), key=lambda d: d["n"])
        times = [d["_creationTime"] for d in docs]
        self.assertEqual(len(set(times)), len(times), "creation times must be distinct")
        self.assertEqual(times, sorted(times))

    def test_import_with_empty_messages_is_a_no_op(self):
        r = self.server.import_records({"quiet": append_stream(), "other": dedup_stream(["id"])},
                                       [])
        self.assertCounts(r, messages=0, inserted=0, replaced=0, deleted=0)

    def test_import_accepts_a_stream_without_primary_key_field(self):
        # PowerSync sends tables entries with only a jsonSchema
        body = {"tables": {"marks": {"jsonSchema": {"type": "object"}}},
                "messages": [{"tableName": "marks", "data": {"lsn": "0/16B3748"}}]}
        self.assertCounts(self.server.api("POST", "import_airbyte_records", body),
                          messages=1, inserted=1)
        self.assertEqual([user_fields(d) for d in self.export("marks")], [{"lsn": "0/16B3748"}])

    def test_import_ignores_json_schema_and_unknown_fields(self):
        schema = {"type": "object", "properties": {"n": {"type": "string",
                                                         "airbyte_type": "integer"}}}
        body = {"tables": {"loose": {"primaryKey": None, "jsonSchema": schema, "x": 1}},
                "messages": [{"tableName": "loose", "data": {"n": 5}, "emitted_at": 1}],
                "extra": [1, 2]}
        self.assertOk(self.server.api("POST", "import_airbyte_records", body))
        self.assertEqual([user_fields(d) for d in self.export("loose")], [{"n": 5}])

    def test_json_content_types_accepted(self):
        for ct in ("application/json; charset=utf-8", "application/vnd.airbyte+json",
                   "Application/JSON", NO_CONTENT_TYPE):
            with self.subTest(content_type=ct):
                r = self.server.import_records({"ct": append_stream()},
                                               messages("ct", [{"ct": str(ct)}]),
                                               content_type=ct)
                self.assertOk(r)
        self.assertEqual(len(self.export("ct")), 4)

    def test_convex_client_header_values_accepted(self):
        for value in ("streaming-import-0.1.0", "streaming-import-1.0.0",
                      "airbyte-export-0.4.0", "my-tool-not.a.version"):
            with self.subTest(client=value):
                r = self.server.import_records({"cc": append_stream()},
                                               messages("cc", [{"client": value}]),
                                               headers={"Convex-Client": value})
                self.assertOk(r)
        self.assertEqual(len(self.export("cc")), 4)

    def test_gzip_body_accepted(self):
        body = ('{"tables": {"zipped": {"primaryKey": null, "jsonSchema": null}}, '
                '"messages": [%s]}' % ",".join(
                    '{"tableName": "zipped", "data": {"i": %d}}' % i for i in range(500)))
        r = self.server.api("POST", "import_airbyte_records", gzip_bytes(body.encode()),
                            headers={"Content-Encoding": "gzip"})
        self.assertCounts(r, messages=500, inserted=500)
        self.assertEqual(sorted(d["i"] for d in self.export("zipped")), list(range(500)))

    def test_clear_tables(self):
        self.assertOk(self.server.import_records({"c1": append_stream()},
                                                 messages("c1", [{"a": 1}, {"a": 2}])))
        r = self.server.clear_tables(["c1"])
        body = self.assertJsonOk(r)
        self.assertIsInstance(body.get("cleared"), int, r)
        self.assertEqual(self.export("c1"), [])

    def test_replace_tables_is_retired(self):
        r = self.server.api("POST", "replace_tables", {"tableNames": {"temp_1_t": "t"}})
        body = self.assertError(r, 400, "OverwriteNotSupported")
        self.assertIn("Overwrite sync mode is not supported", body["message"])
        # after authentication: no key is still a 403
        r = self.server.api("POST", "replace_tables", {"tableNames": {"temp_1_t": "t"}}, key=None)
        self.assertError(r, 403, "BadDeployKey")

    def test_add_primary_key_indexes_and_ready(self):
        body = self.assertJsonOk(self.server.add_indexes({"people": [["id"]],
                                                          "orgs": [["org"], ["meta", "region"]]}))
        self.assertIsInstance(body, dict)
        # empty tables: ready at once
        r = self.server.indexes_ready(["people", "orgs"])
        self.assertEqual(self.assertJsonOk(r), {"indexesReady": True})

    def test_add_primary_key_indexes_empty_object(self):
        self.assertJsonOk(self.server.add_indexes({}))

    def test_add_same_index_twice_is_a_no_op(self):
        self.assertJsonOk(self.server.add_indexes({"twice": [["k"]]}))
        self.assertOk(self.server.import_records({"twice": dedup_stream(["k"])},
                                                 messages("twice", [{"k": 1, "v": "a"}])))
        self.assertJsonOk(self.server.add_indexes({"twice": [["k"]]}))
        self.assertEqual(self.assertJsonOk(self.server.indexes_ready(["twice"])),
                         {"indexesReady": True})
        r = self.server.import_records({"twice": dedup_stream(["k"])},
                                       messages("twice", [{"k": 1, "v": "b"}]))
        self.assertCounts(r, inserted=0, replaced=1)
        self.assertEqual([user_fields(d) for d in self.export("twice")], [{"k": 1, "v": "b"}])

    def test_indexes_ready_via_query_string(self):
        self.assertJsonOk(self.server.add_indexes({"qa": [["id"]], "qb": [["id"]]}))
        r = self.server.request("GET", API + "primary_key_indexes_ready?tables=qa,qb")
        self.assertEqual(self.assertJsonOk(r), {"indexesReady": True})

    def test_indexes_ready_with_empty_list_is_true(self):
        r = self.server.indexes_ready([])
        self.assertEqual(self.assertJsonOk(r), {"indexesReady": True})

    def test_success_answers_are_json(self):
        for r in (self.server.import_records({"j": append_stream()}, []),
                  self.server.clear_tables(["j"]),
                  self.server.add_indexes({}),
                  self.server.indexes_ready([])):
            with self.subTest(r=r):
                self.assertJsonOk(r)

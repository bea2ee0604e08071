"""clear_tables (SPEC §3.2) on small tables; big and backfilling tables are in
test_backfill.py."""
from harness import ServerTestCase, append_stream, dedup_stream, messages, user_fields


class ClearTests(ServerTestCase):

    def fill(self, table, n):
        self.assertOk(self.server.import_records({table: append_stream()},
                                                 messages(table, [{"n": i} for i in range(n)])))

    def test_clears_several_tables_and_creates_missing_ones(self):
        self.fill("ca", 5)
        self.fill("cb", 7)
        self.fill("keep", 2)
        self.assertIsNone(self.server.export_or_none("cnew"))
        self.assertJsonOk(self.server.clear_tables(["ca", "cb", "cnew"]))
        self.assertEqual(self.export("ca"), [])
        self.assertEqual(self.export("cb"), [])
        self.assertEqual(self.export("cnew"), [], "a missing table is created empty")
        self.assertEqual(len(self.export("keep")), 2, "unlisted tables are untouched")

    def test_a_refused_request_clears_nothing(self):
        self.fill("ra", 3)
        self.fill("rb", 3)
        r = self.server.clear_tables(["ra", "rb", "x" * 65])
        self.assertError(r, 400, "InvalidTableName")
        self.assertEqual(len(self.export("ra")), 3)
        self.assertEqual(len(self.export("rb")), 3)

    def test_empty_list_is_fine(self):
        self.assertJsonOk(self.server.clear_tables([]))

    def test_index_survives_and_stays_ready(self):
        self.assertOk(self.server.add_indexes({"ci": [["id"]]}))
        self.server.wait_indexes_ready(["ci"])
        self.assertOk(self.server.import_records(
            {"ci": dedup_stream(["id"])}, messages("ci", [{"id": i} for i in range(10)])))
        self.assertOk(self.server.clear_tables(["ci"]))
        self.assertEqual(self.assertJsonOk(self.server.indexes_ready(["ci"])),
                         {"indexesReady": True})
        r = self.server.import_records({"ci": dedup_stream(["id"])},
                                       messages("ci", [{"id": 1, "v": "a"}, {"id": 1, "v": "b"}]))
        self.assertCounts(r, inserted=1, replaced=1)
        self.assertEqual([user_fields(d) for d in self.export("ci")], [{"id": 1, "v": "b"}])

    def test_table_usable_after_clear_with_new_ids(self):
        self.fill("reuse", 3)
        old = {d["_id"] for d in self.export("reuse")}
        old_times = [d["_creationTime"] for d in self.export("reuse")]
        self.assertOk(self.server.clear_tables(["reuse"]))
        self.fill("reuse", 3)
        docs = self.export("reuse")
        self.assertEqual(len(docs), 3)
        self.assertFalse(old & {d["_id"] for d in docs}, "an _id was reused")
        self.assertGreater(min(d["_creationTime"] for d in docs), max(old_times))

    def test_overwrite_sync_pattern(self):
        self.fill("snap", 50)
        self.assertOk(self.server.clear_tables(["snap"]))
        self.assertOk(self.server.import_records(
            {"snap": append_stream()}, messages("snap", [{"n": 100 + i} for i in range(5)])))
        self.assertEqual(sorted(d["n"] for d in self.export("snap")), list(range(100, 105)))

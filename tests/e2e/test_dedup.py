"""Deduplicated streams (SPEC §3.1, §2.6): what an upsert, a CDC deletion and
pre-existing duplicates leave in the table, now and in a snapshot taken before."""
import urllib.parse

from harness import (Int64, ServerTestCase, append_stream, dedup_stream, messages,
                     user_fields)


class DedupTests(ServerTestCase):

    def index(self, table, *paths):
        self.assertOk(self.server.add_indexes({table: [list(p) for p in paths]}))
        self.server.wait_indexes_ready([table])

    def upsert(self, table, datas, key=("id",)):
        return self.server.import_records({table: dedup_stream(list(key))},
                                          messages(table, datas))

    def read_snapshot(self, table, snapshot=None):
        """Every document of `table` as list_snapshot shows it (at `snapshot`, or now), by
        _id, and the snapshot read."""
        docs, cursor = {}, None
        while True:
            q = {"tableName": table, "format": "json", "snapshot": snapshot, "cursor": cursor}
            query = urllib.parse.urlencode({k: v for k, v in q.items() if v is not None})
            body = self.assertJsonOk(self.server.request("GET", "/api/list_snapshot?" + query))
            snapshot = body["snapshot"]
            docs.update((v["_id"], v) for v in body["values"])
            if not body["hasMore"]:
                return docs, snapshot
            cursor = body["cursor"]

    def test_replace_is_whole_and_keeps_system_fields(self):
        self.index("whole", ["id"])
        self.assertCounts(self.upsert("whole", [{"id": 1, "a": 1, "b": {"c": 2}}]),
                          messages=1, inserted=1, replaced=0, deleted=0)
        before = self.export("whole")
        self.assertCounts(self.upsert("whole", [{"id": 1, "a": 3}]),
                          messages=1, inserted=0, replaced=1, deleted=0)
        after = self.export("whole")
        self.assertEqual(len(after), 1)
        self.assertEqual(user_fields(after[0]), {"id": 1, "a": 3})
        self.assertEqual(after[0]["_id"], before[0]["_id"])
        self.assertEqual(after[0]["_creationTime"], before[0]["_creationTime"])

    def test_a_large_batch_of_replaces_keeps_every_old_version(self):
        # ~6 MB of new versions in one request, with deletions and inserts
        self.index("bulk", ["id"])
        n, pad = 1500, "abcd" * 1000
        self.assertCounts(self.upsert("bulk", [{"id": i, "v": "old", "pad": pad}
                                               for i in range(n + 20)]), inserted=n + 20)
        before, snapshot = self.read_snapshot("bulk")
        self.assertEqual(len(before), n + 20)
        r = self.upsert("bulk", [{"id": i, "v": "new", "pad": pad.upper()} for i in range(n)]
                        + [{"id": n + i, "_ab_cdc_deleted_at": "now"} for i in range(10)]
                        + [{"id": 10 ** 6 + i, "v": "added"} for i in range(10)])
        self.assertCounts(r, messages=n + 20, inserted=10, replaced=n, deleted=10)

        old = {d["id"]: d for d in before.values()}
        now = {d["id"]: d for d in self.export("bulk")}
        self.assertEqual(sorted(now), list(range(n)) + list(range(n + 10, n + 20))
                         + list(range(10 ** 6, 10 ** 6 + 10)))
        for i in range(n):
            self.assertEqual(user_fields(now[i]), {"id": i, "v": "new", "pad": pad.upper()})
            self.assertEqual((now[i]["_id"], now[i]["_creationTime"]),
                             (old[i]["_id"], old[i]["_creationTime"]))
        for i in range(n + 10, n + 20):
            self.assertEqual(user_fields(now[i]), {"id": i, "v": "old", "pad": pad})
        # the snapshot taken before reads every old version, unchanged
        self.assertEqual(self.read_snapshot("bulk", snapshot)[0], before)

    def test_last_record_for_a_key_wins_within_a_batch(self):
        self.index("lastwins", ["id"])
        r = self.upsert("lastwins", [{"id": 1, "v": 1}, {"id": 2, "v": 1}, {"id": 1, "v": 2},
                                     {"id": 1, "v": 3, "extra": True}])
        self.assertCounts(r, messages=4, inserted=2, replaced=2, deleted=0)
        got = sorted((d["id"], user_fields(d)) for d in self.export("lastwins"))
        self.assertEqual([g[1] for g in got], [{"id": 1, "v": 3, "extra": True},
                                               {"id": 2, "v": 1}])

    def test_long_key_values_upsert_and_build_an_index(self):
        # keys far longer than a PostgreSQL btree entry (about 2.7 kB), incompressible
        longs = ["".join("%08x" % ((i * 2654435761 + j * 40503) & 0xffffffff)
                         for j in range(800)) + str(i) for i in range(3)]
        self.index("longkey", ["id"])
        self.assertCounts(self.upsert("longkey", [{"id": k, "v": 1} for k in longs]),
                          messages=3, inserted=3)
        self.assertCounts(self.upsert("longkey", [{"id": longs[1], "v": 2}]),
                          messages=1, inserted=0, replaced=1)
        got = sorted((d["id"], d["v"]) for d in self.export("longkey"))
        self.assertEqual(got, sorted([(longs[0], 1), (longs[1], 2), (longs[2], 1)]))
        # and an index built over existing documents with such keys becomes ready
        self.assertOk(self.server.import_records({"longapp": append_stream()},
                                                 messages("longapp", [{"id": k} for k in longs])))
        self.index("longapp", ["id"])
        self.assertCounts(self.upsert("longapp", [{"id": longs[2], "v": 9}]),
                          messages=1, inserted=0, replaced=1)

    def test_cdc_deletion_and_dropped_cdc_fields(self):
        self.index("cdc", ["id"])
        r = self.upsert("cdc", [
            {"id": 1, "v": "a", "_ab_cdc_lsn": 10, "_ab_cdc_updated_at": "t",
             "_ab_cdc_deleted_at": None},
            {"id": 2, "v": "b", "_ab_cdc_lsn": 11},
            {"id": 3, "v": "c"}])
        self.assertCounts(r, inserted=3)
        first = [user_fields(d) for d in self.export("cdc") if d["id"] == 1]
        self.assertEqual(first, [{"id": 1, "v": "a"}],
                         "source_ab_cdc* fields are dropped in a dedup stream")
        r = self.upsert("cdc", [{"id": 2, "_ab_cdc_deleted_at": "2026-01-01T00:00:00Z",
                                 "_ab_cdc_lsn": 12}])
        self.assertCounts(r, messages=1, inserted=0, replaced=0, deleted=1)
        self.assertEqual(sorted(d["id"] for d in self.export("cdc")), [1, 3])
        # a deletion whose key matches nothing does nothing
        r = self.upsert("cdc", [{"id": 99, "_ab_cdc_deleted_at": "2026-01-01T00:00:00Z"},
                                {"id": 2, "_ab_cdc_deleted_at": "2026-01-01T00:00:00Z"}])
        self.assertCounts(r, messages=2, inserted=0, replaced=0, deleted=0)
        self.assertEqual(sorted(d["id"] for d in self.export("cdc")), [1, 3])
        # delete then insert again in one batch: the key comes back as a new document
        old_id = [d["_id"] for d in self.export("cdc") if d["id"] == 3][0]
        r = self.upsert("cdc", [{"id": 3, "_ab_cdc_deleted_at": "x"}, {"id": 3, "v": "new"}])
        self.assertCounts(r, messages=2, inserted=1, deleted=1)
        docs = [d for d in self.export("cdc") if d["id"] == 3]
        self.assertEqual([user_fields(d) for d in docs], [{"id": 3, "v": "new"}])
        self.assertNotEqual(docs[0]["_id"], old_id)

    def test_deletion_marker_false_like_values_still_delete(self):
        # any non-null value marks a deletion
        self.index("falsy", ["id"])
        self.assertOk(self.upsert("falsy", [{"id": i} for i in range(3)]))
        r = self.upsert("falsy", [{"id": 0, "_ab_cdc_deleted_at": False},
                                  {"id": 1, "_ab_cdc_deleted_at": 0},
                                  {"id": 2, "_ab_cdc_deleted_at": ""}])
        self.assertCounts(r, deleted=3)
        self.assertEqual(self.export("falsy"), [])

    def test_null_key_value_is_a_key(self):
        self.index("nullkey", ["id"])
        self.assertCounts(self.upsert("nullkey", [{"id": None, "v": 1}]), inserted=1)
        self.assertCounts(self.upsert("nullkey", [{"id": None, "v": 2}]), replaced=1)
        self.assertEqual([user_fields(d) for d in self.export("nullkey")],
                         [{"id": None, "v": 2}])

    def test_keys_of_different_types_differ(self):
        self.index("typed", ["id"])
        r = self.upsert("typed", [{"id": 1, "v": "num"}, {"id": "1", "v": "str"},
                                  {"id": True, "v": "bool"}, {"id": [1], "v": "arr"},
                                  {"id": 1.0, "v": "num again"}])
        self.assertCounts(r, messages=5, inserted=4, replaced=1)
        def kind(v):
            if isinstance(v, bool):
                return "boolean"
            if isinstance(v, (int, float)):
                return "number"
            return type(v).__name__
        docs = self.export("typed")
        self.assertEqual(len(docs), 4)
        self.assertEqual({kind(d["id"]): d["v"] for d in docs},
                         {"number": "num again", "str": "str", "boolean": "bool",
                          "list": "arr"})

    def test_big_integer_keys_do_not_collide(self):
        self.index("bigkey", ["id"])
        raw = ('{"tables": {"bigkey": {"primaryKey": [["id"]], "jsonSchema": null}}, '
               '"messages": [{"tableName": "bigkey", "data": {"id": 1234567890123456789}},'
               ' {"tableName": "bigkey", "data": {"id": 1234567890123456788}},'
               ' {"tableName": "bigkey", "data": {"id": 1234567890123456789, "v": 2}}]}')
        r = self.server.api("POST", "import_airbyte_records", raw.encode())
        self.assertCounts(r, messages=3, inserted=2, replaced=1)
        docs = sorted(self.export("bigkey"), key=lambda d: d["id"])
        self.assertEqual([user_fields(d) for d in docs],
                         [{"id": 1234567890123456788}, {"id": 1234567890123456789, "v": 2}])
        self.assertTrue(all(isinstance(d["id"], Int64) for d in docs))

    def test_composite_and_nested_keys(self):
        self.index("composite", ["org"], ["user", "id"])
        key = [["org"], ["user", "id"]]
        t = {"composite": {"primaryKey": key, "jsonSchema": None}}
        r = self.server.import_records(t, messages("composite", [
            {"org": "a", "user": {"id": 1}, "v": 1},
            {"org": "a", "user": {"id": 2}, "v": 1},
            {"org": "b", "user": {"id": 1}, "v": 1},
            {"org": "a", "user": {"id": 1, "name": "x"}, "v": 2}]))
        self.assertCounts(r, messages=4, inserted=3, replaced=1)
        got = sorted((d["org"], d["user"]["id"], d["v"]) for d in self.export("composite"))
        self.assertEqual(got, [("a", 1, 2), ("a", 2, 1), ("b", 1, 1)])

    def test_duplicates_from_appends_collapse_to_the_oldest(self):
        # duplicates written before the index exists
        self.assertOk(self.server.import_records({"dups": append_stream()}, messages("dups", [
            {"id": 1, "v": "first"}, {"id": 2, "v": "only"}, {"id": 1, "v": "second"}])))
        self.assertOk(self.server.import_records({"dups": append_stream()}, messages("dups", [
            {"id": 1, "v": "third"}])))
        docs = self.export("dups")
        oldest = min((d for d in docs if d["id"] == 1),
                     key=lambda d: (d["_creationTime"], d["_id"]))
        self.index("dups", ["id"])
        self.assertOk(self.upsert("dups", [{"id": 1, "v": "upserted"}]))
        docs = self.export("dups")
        ones = [d for d in docs if d["id"] == 1]
        self.assertEqual(len(ones), 1, "one document per key after an upsert")
        self.assertEqual(user_fields(ones[0]), {"id": 1, "v": "upserted"})
        self.assertEqual((ones[0]["_id"], ones[0]["_creationTime"]),
                         (oldest["_id"], oldest["_creationTime"]))
        self.assertEqual(len(docs), 2)

        # duplicates appended while the index exists
        self.assertOk(self.server.import_records({"dups": append_stream()}, messages("dups", [
            {"id": 2, "v": "again"}, {"id": 2, "v": "and again"}])))
        only = [d for d in self.export("dups") if d["id"] == 2]
        oldest = min(only, key=lambda d: (d["_creationTime"], d["_id"]))
        self.assertEqual(oldest["v"], "only")
        self.assertOk(self.upsert("dups", [{"id": 2, "v": "one"}]))
        twos = [d for d in self.export("dups") if d["id"] == 2]
        self.assertEqual([user_fields(d) for d in twos], [{"id": 2, "v": "one"}])
        self.assertEqual(twos[0]["_id"], oldest["_id"])

        # a deletion removes every duplicate of the key
        self.assertOk(self.server.import_records({"dups": append_stream()}, messages("dups", [
            {"id": 1, "v": "dup"}, {"id": 1, "v": "dup2"}])))
        self.assertOk(self.upsert("dups", [{"id": 1, "_ab_cdc_deleted_at": "now"}]))
        self.assertEqual([d["id"] for d in self.export("dups")], [2])

    def test_append_stream_keeps_cdc_fields(self):
        r = self.server.import_records({"history": append_stream()}, messages("history", [
            {"id": 1, "v": "a", "_ab_cdc_lsn": 1, "_ab_cdc_deleted_at": None},
            {"id": 1, "_ab_cdc_lsn": 2, "_ab_cdc_deleted_at": "2026-01-01T00:00:00Z"}]))
        self.assertCounts(r, messages=2, inserted=2, replaced=0, deleted=0)
        docs = sorted(self.export("history"), key=lambda d: d["source_ab_cdc_lsn"])
        self.assertEqual([user_fields(d) for d in docs], [
            {"id": 1, "v": "a", "source_ab_cdc_lsn": 1, "source_ab_cdc_deleted_at": None},
            {"id": 1, "source_ab_cdc_lsn": 2,
             "source_ab_cdc_deleted_at": "2026-01-01T00:00:00Z"}])

    def test_append_into_a_table_with_an_index_does_not_upsert(self):
        self.index("mixed", ["id"])
        self.assertOk(self.upsert("mixed", [{"id": 1, "v": 1}]))
        r = self.server.import_records({"mixed": append_stream()},
                                       messages("mixed", [{"id": 1, "v": 2}]))
        self.assertCounts(r, inserted=1, replaced=0)
        self.assertEqual(len(self.export("mixed")), 2)

    def test_index_on_other_fields_replaces_the_old_one(self):
        self.index("reidx", ["a"])
        self.assertOk(self.upsert("reidx", [{"a": 1, "b": 10}, {"a": 2, "b": 20}], key=("a",)))
        self.assertOk(self.server.add_indexes({"reidx": [["b"]]}))
        self.server.wait_indexes_ready(["reidx"])
        r = self.upsert("reidx", [{"a": 1, "b": 10}], key=("a",))
        self.assertError(r, 400, "PrimaryKeyMismatch")
        r = self.upsert("reidx", [{"a": 3, "b": 20}], key=("b",))
        self.assertCounts(r, inserted=0, replaced=1)
        self.assertEqual(sorted((d["a"], d["b"]) for d in self.export("reidx")),
                         [(1, 10), (3, 20)])

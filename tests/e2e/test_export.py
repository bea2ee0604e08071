"""The Streaming Export API (SPEC §4): json_schemas, list_snapshot, document_deltas and
the connection probe, driven the way the export connectors drive them.

The strongest test is ReplicaTests: one client keeps importing (appends, dedup replaces,
CDC deletions, a clear_tables in the middle) while another follows the export protocol
(snapshot pages, then deltas from the snapshot) into an in-memory copy, which must end
equal to what `tributary export` prints.
"""
import json
import math
import random
import threading
import time
import urllib.parse

from harness import (ServerTestCase, append_stream, dedup_stream, messages, timeout,
                     scaled)

META = ("_table", "_ts", "_component", "_deleted")
FORMATS = ("json", "convex_clean_json", "convex_json", "convex_encoded_json")


def get(server, endpoint, key=None, **params):
    """GET /api/<endpoint>?params (None values left out)."""
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    path = "/api/" + endpoint + ("?" + query if query else "")
    if key is None:
        return server.request("GET", path)
    return server.request("GET", path, key=key)


def post(server, endpoint, body):
    return server.request("POST", "/api/" + endpoint, body)


def strip(value):
    return {k: v for k, v in value.items() if k not in META}


def exported_raw(server, table):
    """`tributary export` lines as parsed JSON, without decoding (convex encoding)."""
    p = server.export_raw(table)
    if p.returncode != 0:
        raise AssertionError("export of %s failed: %s" % (table, p.stderr))
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


class ExportClient:
    """The export side of a connector: snapshot pages, then document deltas."""

    def __init__(self, test, server, table=None, fmt="convex_json", use_post=False):
        self.test = test
        self.server = server
        self.table = table
        self.fmt = fmt
        self.use_post = use_post
        self.copy = {}
        self.snapshot = None
        self.cursor = None
        self.pages = 0
        self.deletions = 0

    def call(self, endpoint, **params):
        params = {k: v for k, v in params.items() if v is not None}
        params["format"] = self.fmt
        if self.table is not None:
            params["tableName"] = self.table
        if self.use_post:
            r = post(self.server, endpoint, params)
        else:
            r = get(self.server, endpoint, **params)
        return self.test.assertJsonOk(r)

    def snapshot_page(self, cursor=None):
        body = self.call("list_snapshot", snapshot=self.snapshot, cursor=cursor)
        self.pages += 1
        t = self.test
        t.assertLessEqual(len(body["values"]), 1000)
        if self.snapshot is None:
            self.snapshot = body["snapshot"]
        t.assertEqual(body["snapshot"], self.snapshot, "a later page changed the snapshot")
        t.assertEqual(body["hasMore"], body["cursor"] is not None)
        for v in body["values"]:
            t.assertLessEqual(v["_ts"], self.snapshot, "a document newer than the snapshot")
            t.assertEqual(v["_component"], "")
            t.assertNotIn("_deleted", v)
            if self.table is not None:
                t.assertEqual(v["_table"], self.table)
            t.assertNotIn(v["_id"], self.copy, "a document twice in one snapshot")
            self.copy[v["_id"]] = v
        return body

    def read_snapshot(self, between_pages=None):
        body = self.snapshot_page()
        while body["hasMore"]:
            if between_pages:
                between_pages()
            body = self.snapshot_page(body["cursor"])
        self.cursor = self.snapshot

    def deltas_page(self):
        body = self.call("document_deltas", cursor=self.cursor)
        t = self.test
        t.assertGreaterEqual(body["cursor"], self.cursor, "the cursor went back")
        last = self.cursor
        for v in body["values"]:
            t.assertGreater(v["_ts"], self.cursor)
            t.assertLessEqual(v["_ts"], body["cursor"])
            t.assertGreaterEqual(v["_ts"], last, "values out of commit order")
            last = v["_ts"]
            t.assertIsInstance(v["_deleted"], bool)
            if v["_deleted"]:
                t.assertEqual(set(v), {"_id", "_table", "_ts", "_component", "_deleted"})
                self.copy.pop(v["_id"], None)
                self.deletions += 1
            else:
                self.copy[v["_id"]] = v
        self.cursor = body["cursor"]
        return body

    def read_deltas(self):
        while self.deltas_page()["hasMore"]:
            pass

    def documents(self):
        return sorted((strip(v) for v in self.copy.values()), key=lambda d: d["_id"])


class ExportParamsTests(ServerTestCase):

    @classmethod
    def prepare_server(cls, server):
        rows = [{"n": i, "name": "row %d" % i} for i in range(5)]
        r = server.import_records({"base": append_stream()}, messages("base", rows))
        assert r.status == 200, r

    def test_probe_answers_null_with_a_valid_key(self):
        r = get(self.server, "test_streaming_export_connection")
        self.assertOk(r)
        self.assertIsNone(r.json())
        self.assertError(self.server.request("GET", "/api/test_streaming_export_connection",
                                             key=None), 403, "BadDeployKey")
        self.assertError(get(self.server, "test_streaming_export_connection", key="wrong"),
                         401, "BadAdminKey")

    def test_every_endpoint_needs_the_key(self):
        for path in ("/api/json_schemas", "/api/list_snapshot", "/api/document_deltas?cursor=1"):
            self.assertError(self.server.request("GET", path, key=None), 403, "BadDeployKey")
            self.assertError(self.server.request("GET", path, key="nope"), 401, "BadAdminKey")
        self.assertError(self.server.request("POST", "/api/list_snapshot", {}, key=None), 403)

    def test_methods(self):
        self.assertError(self.server.request("PUT", "/api/list_snapshot", {}), 405)
        self.assertError(self.server.request("POST", "/api/json_schemas", {}), 405)
        self.assertError(self.server.request("DELETE", "/api/document_deltas"), 405)

    def test_formats_and_their_aliases(self):
        for fmt in FORMATS:
            self.assertJsonOk(get(self.server, "list_snapshot", format=fmt))
            self.assertJsonOk(get(self.server, "json_schemas", format=fmt))
            self.assertJsonOk(post(self.server, "list_snapshot", {"format": fmt}))
        snap = self.assertJsonOk(get(self.server, "list_snapshot"))["snapshot"]
        for endpoint, params in (("list_snapshot", {}), ("json_schemas", {}),
                                 ("document_deltas", {"cursor": snap})):
            body = self.assertError(get(self.server, endpoint, format="xml", **params),
                                    400, "BadFormat", mentions=("xml",))
            self.assertIn("json", body["message"])
        self.assertError(post(self.server, "document_deltas", {"cursor": snap, "format": "csv"}),
                         400, "BadFormat")
        self.assertError(post(self.server, "list_snapshot", {"format": 3}), 400, "BadJsonBody",
                         mentions=("format",))

    def test_list_snapshot_values(self):
        body = self.assertJsonOk(get(self.server, "list_snapshot", tableName="base"))
        self.assertEqual(set(body), {"values", "snapshot", "cursor", "hasMore"})
        self.assertIsInstance(body["snapshot"], int)
        self.assertFalse(body["hasMore"])
        self.assertIsNone(body["cursor"])
        docs = exported_raw(self.server, "base")
        self.assertEqual([strip(v) for v in body["values"]], docs)
        for v in body["values"]:
            self.assertEqual(v["_table"], "base")
            self.assertEqual(v["_component"], "")
            self.assertIsInstance(v["_ts"], int)
            self.assertLessEqual(v["_ts"], body["snapshot"])
            self.assertGreater(v["_ts"], 10 ** 18, "_ts is in nanoseconds")

    def test_snapshot_errors(self):
        snap = self.assertJsonOk(get(self.server, "list_snapshot"))["snapshot"]
        self.assertError(get(self.server, "list_snapshot", snapshot=snap + 10 ** 12), 400,
                         "SnapshotTooNew")
        self.assertError(post(self.server, "list_snapshot", {"snapshot": snap + 10 ** 12}), 400,
                         "SnapshotTooNew")
        self.assertError(get(self.server, "list_snapshot", snapshot="soon"), 400,
                         "BadQueryArgs", mentions=("snapshot",))
        self.assertError(post(self.server, "list_snapshot", {"snapshot": "soon"}), 400,
                         "BadJsonBody", mentions=("snapshot",))
        self.assertError(post(self.server, "list_snapshot", {"snapshot": 1.5}), 400,
                         "BadJsonBody")
        for bad in ("x", "nope!", '{"tablet":"1","id":"2"}', "AAAA", "A" * 40, "A" * 400):
            self.assertError(get(self.server, "list_snapshot", cursor=bad), 400,
                             "InvalidListSnapshotCursor")
        self.assertError(post(self.server, "list_snapshot", {"cursor": 12}), 400, "BadJsonBody")

    def test_cursor_must_match_its_snapshot_and_table(self):
        self.assertOk(self.server.import_records(
            {"pair": append_stream()}, messages("pair", [{"i": i} for i in range(1500)])))
        first = self.assertJsonOk(get(self.server, "list_snapshot", tableName="pair"))
        self.assertTrue(first["hasMore"])
        cursor, snap = first["cursor"], first["snapshot"]
        self.assertIsInstance(cursor, str)
        self.assertError(get(self.server, "list_snapshot", tableName="pair", cursor=cursor,
                             snapshot=snap - 1), 400, "InvalidListSnapshotCursor")
        self.assertError(get(self.server, "list_snapshot", tableName="base", cursor=cursor,
                             snapshot=snap), 400, "InvalidListSnapshotCursor")
        # the cursor alone continues the same snapshot
        rest = self.assertJsonOk(get(self.server, "list_snapshot", tableName="pair",
                                     cursor=cursor))
        self.assertEqual(rest["snapshot"], snap)
        self.assertEqual(len(first["values"]) + len(rest["values"]), 1500)

    def test_deltas_errors(self):
        self.assertError(get(self.server, "document_deltas"), 400,
                         "DocumentDeltasCursorRequired")
        self.assertError(post(self.server, "document_deltas", {"tableName": "base"}), 400,
                         "DocumentDeltasCursorRequired")
        self.assertError(post(self.server, "document_deltas", {"cursor": None}), 400,
                         "DocumentDeltasCursorRequired")
        self.assertError(self.server.request("POST", "/api/document_deltas", b""), 400,
                         "DocumentDeltasCursorRequired")
        for bad in ("abc", "1.5", "12x", "99999999999999999999"):
            self.assertError(get(self.server, "document_deltas", cursor=bad), 400,
                             "BadQueryArgs", mentions=("cursor",))
        self.assertError(post(self.server, "document_deltas", {"cursor": "123"}), 400,
                         "BadJsonBody", mentions=("cursor",))
        self.assertError(post(self.server, "document_deltas", {"cursor": 0.5}), 400,
                         "BadJsonBody")
        self.assertError(self.server.request("POST", "/api/document_deltas", "[1]"), 400,
                         "BadJsonBody")
        self.assertError(get(self.server, "document_deltas", cursor=1), 400,
                         "InvalidWindowToReadDocuments")

    def test_table_names_are_rewritten_and_both_spellings_work(self):
        self.assertOk(self.server.import_records(
            {"my-table": append_stream()}, messages("my-table", [{"k": 1}])))
        for params in ({"tableName": "my-table"}, {"table_name": "my-table"},
                       {"tableName": "source_my_table"}):
            body = self.assertJsonOk(get(self.server, "list_snapshot", **params))
            self.assertEqual([v["_table"] for v in body["values"]], ["source_my_table"])
            body = self.assertJsonOk(post(self.server, "list_snapshot", params))
            self.assertEqual(len(body["values"]), 1)
        self.assertError(get(self.server, "list_snapshot", tableName="x" * 70), 400,
                         "InvalidTableName")
        body = self.assertJsonOk(get(self.server, "list_snapshot", tableName="never_written"))
        self.assertEqual(body["values"], [])
        self.assertFalse(body["hasMore"])

    def test_all_tables_when_no_table_is_named(self):
        self.assertOk(self.server.import_records(
            {"zz_last": append_stream()}, messages("zz_last", [{"z": 1}])))
        c = ExportClient(self, self.server)
        c.read_snapshot()
        tables = {v["_table"] for v in c.copy.values()}
        self.assertTrue({"base", "zz_last"} <= tables, tables)

    def test_pages_of_at_most_1000(self):
        n = 2500
        rows = [{"i": i} for i in range(n)]
        self.assertOk(self.server.import_records({"big": append_stream()}, messages("big", rows)))
        c = ExportClient(self, self.server, "big", fmt="json")
        sizes = []
        body = c.snapshot_page()
        sizes.append(len(body["values"]))
        while body["hasMore"]:
            body = c.snapshot_page(body["cursor"])
            sizes.append(len(body["values"]))
        self.assertEqual(sizes, [1000, 1000, 500])
        self.assertEqual(sorted(v["i"] for v in c.copy.values()), list(range(n)))
        ids = [d["_id"] for d in exported_raw(self.server, "big")]
        self.assertEqual(sorted(c.copy), sorted(ids))

    def test_deltas_cursor_advances_past_other_tables(self):
        snap = self.assertJsonOk(get(self.server, "list_snapshot", tableName="quiet"))["snapshot"]
        body = self.assertJsonOk(get(self.server, "document_deltas", tableName="quiet",
                                     cursor=snap))
        self.assertEqual(body["values"], [])
        self.assertFalse(body["hasMore"])
        self.assertGreaterEqual(body["cursor"], snap)
        self.assertOk(self.server.import_records(
            {"busy": append_stream()}, messages("busy", [{"b": 1}])))
        later = self.assertJsonOk(get(self.server, "document_deltas", tableName="quiet",
                                      cursor=body["cursor"]))
        self.assertEqual(later["values"], [])
        self.assertGreater(later["cursor"], body["cursor"], "the cursor did not move forward")
        # and an idle, caught-up cursor keeps working
        again = self.assertJsonOk(get(self.server, "document_deltas", tableName="quiet",
                                      cursor=later["cursor"]))
        self.assertEqual(again["cursor"], later["cursor"])

    def test_deltas_over_post_and_get_agree(self):
        snap = self.assertJsonOk(get(self.server, "list_snapshot"))["snapshot"]
        self.assertOk(self.server.import_records(
            {"agree": append_stream()}, messages("agree", [{"a": i} for i in range(3)])))
        a = self.assertJsonOk(get(self.server, "document_deltas", cursor=snap,
                                  tableName="agree"))
        b = self.assertJsonOk(post(self.server, "document_deltas",
                                   {"cursor": snap, "tableName": "agree", "format": "json",
                                    "selection": {"ignored": True}}))
        self.assertEqual(a, b)
        self.assertEqual([v["a"] for v in a["values"]], [0, 1, 2])
        self.assertTrue(all(v["_deleted"] is False for v in a["values"]))


class JsonSchemaTests(ServerTestCase):

    @classmethod
    def prepare_server(cls, server):
        rows = [
            {"name": "a", "age": 30, "big": 1234567890123456789, "tags": ["x"],
             "addr": {"city": "Lisbon", "zip": "1000"}, "maybe": None},
            {"name": "b", "age": 31.5, "big": 2234567890123456789, "tags": [],
             "addr": {"city": "Porto"}, "note": "only here"},
        ]
        assert server.import_records({"people": append_stream()},
                                     messages("people", rows)).status == 200
        assert server.clear_tables(["empty"]).status == 200

    def schemas(self, **params):
        return self.assertJsonOk(get(self.server, "json_schemas", **params))

    def test_airbyte_discover_call(self):
        body = self.schemas(deltaSchema="true", format="json")
        self.assertEqual(set(body), {"people", "empty"})
        s = body["people"]
        self.assertEqual(s["$schema"], "http://json-schema.org/draft-07/schema#")
        self.assertEqual(s["type"], "object")
        self.assertIs(s["additionalProperties"], False)
        props = s["properties"]
        self.assertEqual(props["_id"], {"$description": "Id(people)", "type": "string"})
        self.assertEqual(props["_creationTime"], {"type": "number"})
        self.assertEqual(props["_ts"], {"type": "integer"})
        self.assertEqual(props["_deleted"], {"type": "boolean"})
        self.assertEqual(props["_table"], {"type": "string"})
        self.assertEqual(props["_component"], {"type": "string"})
        self.assertEqual(props["name"], {"type": "string"})
        self.assertEqual(props["age"], {"type": "number"})
        self.assertEqual(props["big"], {"$description": "int64 represented as base10 string",
                                        "type": "string"})
        self.assertEqual(props["tags"], {"type": "array", "items": {"type": "string"}})
        self.assertEqual(props["addr"]["required"], ["city"])
        self.assertEqual(set(props["addr"]["properties"]), {"city", "zip"})
        self.assertEqual(props["maybe"], {"type": "null"})
        self.assertEqual(sorted(s["required"]),
                         ["_creationTime", "_id", "addr", "age", "big", "name", "tags"])

    def test_without_delta_fields(self):
        s = self.schemas()["people"]
        self.assertFalse({"_ts", "_deleted", "_table", "_component"} & set(s["properties"]))

    def test_convex_json_format_describes_the_encoding(self):
        big = self.schemas(format="convex_json")["people"]["properties"]["big"]
        self.assertEqual(big["type"], "object")
        self.assertIn("$integer", big["properties"])

    def test_empty_table_has_the_system_fields(self):
        s = self.schemas()["empty"]
        self.assertEqual(set(s["properties"]), {"_id", "_creationTime"})
        self.assertEqual(sorted(s["required"]), ["_creationTime", "_id"])

    def test_by_component(self):
        body = self.schemas(byComponent="true")
        self.assertEqual(list(body), [""])
        self.assertIn("people", body[""])
        self.assertError(get(self.server, "json_schemas", deltaSchema="yes"), 400,
                         "BadQueryArgs")

    def test_kept_up_to_date_and_reset_by_clear(self):
        self.assertOk(self.server.import_records(
            {"grow": append_stream()}, messages("grow", [{"a": 1}])))
        self.assertEqual(self.schemas()["grow"]["required"], ["_creationTime", "_id", "a"])
        self.assertOk(self.server.import_records(
            {"grow": append_stream()}, messages("grow", [{"b": "x"}])))
        s = self.schemas()["grow"]
        self.assertEqual(s["required"], ["_creationTime", "_id"])
        self.assertEqual(s["properties"]["b"], {"type": "string"})
        self.assertOk(self.server.clear_tables(["grow"]))
        self.assertEqual(set(self.schemas()["grow"]["properties"]), {"_id", "_creationTime"})

    def test_survives_a_restart(self):
        before = self.schemas(deltaSchema="true")
        self.server.stop()
        self.server.start()
        self.assertEqual(self.schemas(deltaSchema="true"), before)


class RoundTripTests(ServerTestCase):
    """Every value type tributary stores, read back in both formats."""

    ROW = {
        "null": None, "t": True, "f": False, "zero": 0, "negzero": -0.0, "float": 1.5,
        "huge": 1e300, "tiny": 5e-324, "negative": -12.25, "int53": 9007199254740993,
        "int64max": 9223372036854775807, "int64min": -9223372036854775808,
        "exact": 9007199254740992, "str": "héllo \"q\" \\ \n\t\u0001 ☃ 😀", "empty": "",
        "list": [1, "two", None, [3.5], {"k": 9223372036854775807}],
        "obj": {"inner": {"deep": [True, -0.0]}, "e": {}},
    }

    @classmethod
    def prepare_server(cls, server):
        body = json.dumps({"tables": {"vals": append_stream()},
                           "messages": messages("vals", [cls.ROW])})
        r = server.request("POST", "/api/streaming_import/import_airbyte_records", body)
        assert r.status == 200, r

    def value(self, fmt):
        body = self.assertJsonOk(get(self.server, "list_snapshot", tableName="vals", format=fmt))
        self.assertEqual(len(body["values"]), 1)
        return body["values"][0]

    def test_convex_json_equals_what_export_prints(self):
        stored = exported_raw(self.server, "vals")[0]
        for fmt in ("convex_json", "convex_encoded_json"):
            v = strip(self.value(fmt))
            self.assertEqual(v, stored)
        v = self.value("convex_json")
        self.assertEqual(v["int64max"], {"$integer": "/////////38="})
        self.assertEqual(v["int64min"], {"$integer": "AAAAAAAAAIA="})
        self.assertEqual(v["int53"]["$integer"], "AQAAAAAAIAA=")
        self.assertEqual(v["negzero"], {"$float": "AAAAAAAAAIA="})
        self.assertEqual(v["obj"]["inner"]["deep"][1], {"$float": "AAAAAAAAAIA="})
        self.assertEqual(v["list"][4]["k"], {"$integer": "/////////38="})
        self.assertEqual(v["zero"], 0)
        self.assertEqual(v["exact"], 9007199254740992)
        self.assertEqual(v["str"], self.ROW["str"])

    def test_clean_json(self):
        for fmt in ("json", "convex_clean_json"):
            v = self.value(fmt)
            self.assertEqual(v["int64max"], "9223372036854775807")
            self.assertEqual(v["int64min"], "-9223372036854775808")
            self.assertEqual(v["int53"], "9007199254740993")
            self.assertEqual(v["list"][4]["k"], "9223372036854775807")
            self.assertEqual(v["negzero"], 0.0)
            self.assertEqual(math.copysign(1, v["negzero"]), -1.0)
            self.assertEqual(math.copysign(1, v["obj"]["inner"]["deep"][1]), -1.0)
            for k in ("null", "t", "f", "float", "huge", "tiny", "negative", "exact", "str",
                      "empty"):
                self.assertEqual(v[k], self.ROW[k], k)
            self.assertEqual(v["list"][:4], [1, "two", None, [3.5]])
            self.assertEqual(v["obj"]["e"], {})

    def test_deltas_use_the_same_encodings(self):
        snap = self.assertJsonOk(get(self.server, "list_snapshot"))["snapshot"]
        self.assertOk(self.server.request(
            "POST", "/api/streaming_import/import_airbyte_records",
            json.dumps({"tables": {"vals2": append_stream()},
                        "messages": messages("vals2", [self.ROW])})))
        for fmt in ("json", "convex_json"):
            snap_v = self.assertJsonOk(get(self.server, "list_snapshot", tableName="vals2",
                                           format=fmt))["values"][0]
            delta_v = self.assertJsonOk(get(self.server, "document_deltas", tableName="vals2",
                                            cursor=snap, format=fmt))["values"][0]
            self.assertIs(delta_v.pop("_deleted"), False)
            self.assertEqual(strip(delta_v), strip(snap_v))


class RetentionTests(ServerTestCase):
    server_args = ("--retention", "1s")

    def test_old_snapshots_and_cursors_are_refused(self):
        self.assertOk(self.server.import_records(
            {"r": append_stream()}, messages("r", [{"a": 1}])))
        old = self.assertJsonOk(get(self.server, "list_snapshot"))["snapshot"]
        time.sleep(1.5)
        # nothing was committed since: nothing can be missing yet
        self.assertJsonOk(get(self.server, "list_snapshot", snapshot=old))
        self.assertEqual(self.assertJsonOk(get(self.server, "document_deltas", cursor=old))
                         ["cursor"], old)
        self.assertOk(self.server.import_records(
            {"r": append_stream()}, messages("r", [{"a": 2}])))
        self.assertError(get(self.server, "list_snapshot", snapshot=old), 400, "SnapshotTooOld")
        self.assertError(get(self.server, "document_deltas", cursor=old), 400,
                         "InvalidWindowToReadDocuments")
        fresh = self.assertJsonOk(get(self.server, "list_snapshot", tableName="r"))
        self.assertEqual(len(fresh["values"]), 2)


class SnapshotWalkTests(ServerTestCase):
    """The server keeps each list_snapshot walk's old versions found between pages
    (docs/export.md): every page must still show the state at its snapshot, whatever was
    written since the last one, for several walks at once, of the same snapshot and of
    another. Run with the default cache, with none (every page looks them up), and with
    one too small for some walks (they give up on it and look them up)."""

    def test_walks_of_two_snapshots_stay_exact_while_writes_go_on_between_pages(self):
        s = self.server
        by_id = {"walked": dedup_stream(["id"])}
        self.assertOk(s.add_indexes({"walked": [["id"]]}))
        s.wait_indexes_ready(["walked"])
        self.assertOk(s.import_records(by_id, messages(
            "walked", [{"id": k, "v": 0} for k in range(0, 9000, 2)])))
        at_first = exported_raw(s, "walked")
        one = ExportClient(self, s, "walked")
        first = one.snapshot_page()
        self.assertTrue(first["hasMore"])
        # changes ahead of the walk and behind it: replaces, deletions, new documents
        rng = random.Random(11)
        sample = rng.sample(range(0, 9000, 2), 1500)
        self.assertOk(s.import_records(by_id, messages(
            "walked", [{"id": k, "v": 1} for k in sample]
            + [{"id": k + 1, "v": "new"} for k in sample[:300]])))
        self.assertOk(s.import_records(by_id, messages(
            "walked", [{"id": k, "v": 2} for k in rng.sample(range(0, 9000, 2), 2000)]
            + [{"id": k, "_ab_cdc_deleted_at": "x"} for k in range(0, 9000, 10)])))
        at_second = exported_raw(s, "walked")
        two = ExportClient(self, s, "walked")
        again = ExportClient(self, s, "walked")
        again.snapshot = one.snapshot
        walks = [(one, first), (two, two.snapshot_page()), (again, again.snapshot_page())]
        self.assertNotEqual(two.snapshot, one.snapshot)
        round_ = 0
        while any(body["hasMore"] for _, body in walks):
            round_ += 1
            self.assertOk(s.import_records(by_id, messages(
                "walked", [{"id": k, "v": 10 + round_} for k in rng.sample(range(9000), 700)]
                + [{"id": k, "_ab_cdc_deleted_at": "x"}
                   for k in rng.sample(range(9000), 100)])))
            walks = [(c, c.snapshot_page(body["cursor"]) if body["hasMore"] else body)
                     for c, body in walks]
        self.assertGreater(round_, 3)
        self.assertEqual(one.documents(), at_first)
        self.assertEqual(again.documents(), at_first)
        self.assertEqual(two.documents(), at_second)


class SnapshotWalkWithoutCacheTests(SnapshotWalkTests):
    server_args = ("--snapshot-cache-rows", "0")


class SnapshotWalkSmallCacheTests(SnapshotWalkTests):
    server_args = ("--snapshot-cache-rows", "2500")


class ReplicaTests(ServerTestCase):
    """A follower stays exact while imports, replaces, deletions and a clear go on."""

    def test_replica_follows_live_writes(self):
        s = self.server
        self.assertOk(s.add_indexes({"users": [["id"]]}))
        s.wait_indexes_ready(["users"])
        rng = random.Random(7)
        nkeys = 2500
        self.assertOk(s.import_records(
            {"users": dedup_stream(["id"])},
            messages("users", [{"id": k, "v": 0, "name": "u%d" % k} for k in range(nkeys)])))
        self.assertOk(s.import_records(
            {"events": append_stream()}, messages("events", [{"e": i} for i in range(3000)])))

        rounds = scaled(80, 30)
        done = [0]
        stop = threading.Event()
        errors = []

        def writer():
            try:
                for r in range(1, rounds + 1):
                    batch = []
                    for _ in range(100):
                        k = rng.randrange(nkeys + 500)
                        if rng.random() < 0.2:
                            batch.append({"id": k, "_ab_cdc_deleted_at": "2026-01-01"})
                        else:
                            batch.append({"id": k, "v": r, "x": rng.random()})
                    resp = s.import_records({"users": dedup_stream(["id"])},
                                            messages("users", batch))
                    assert resp.status == 200, resp
                    resp = s.import_records({"events": append_stream()},
                                            messages("events", [{"e": r, "i": i}
                                                                for i in range(50)]))
                    assert resp.status == 200, resp
                    if r == rounds // 2:
                        resp = s.clear_tables(["users", "events"])
                        assert resp.status == 200, resp
                    done[0] = r
                    time.sleep(0.01)
            except BaseException as e:  # reported by the main thread
                errors.append(e)
            finally:
                stop.set()

        users = ExportClient(self, s, "users")
        events = ExportClient(self, s, "events", fmt="json", use_post=True)
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        users.read_snapshot(between_pages=lambda: time.sleep(0.05))
        events.read_snapshot(between_pages=lambda: time.sleep(0.05))
        during = done[0]
        self.assertGreater(users.pages, 2)
        self.assertGreater(events.pages, 2)
        while not stop.is_set():
            users.deltas_page()
            events.deltas_page()
            time.sleep(0.005)
        thread.join(timeout(60))
        if errors:
            raise errors[0]
        self.assertLess(during, rounds, "the writer finished before the snapshots: no overlap")
        self.assertGreater(during, 0, "no write overlapped the snapshot pages")
        users.read_deltas()
        events.read_deltas()
        self.assertEqual(users.documents(), exported_raw(s, "users"))
        want_events = exported_raw(s, "events")
        self.assertEqual(events.documents(), want_events)
        self.assertGreater(len(want_events), 0)
        # the clear's deletions reached the follower (events are only ever appended)
        self.assertGreaterEqual(events.deletions, 3000)

    def test_snapshot_pages_show_the_state_at_the_snapshot(self):
        s = self.server
        self.assertOk(s.add_indexes({"accounts": [["id"]]}))
        s.wait_indexes_ready(["accounts"])
        self.assertOk(s.import_records(
            {"accounts": dedup_stream(["id"])},
            messages("accounts", [{"id": k, "v": 0} for k in range(2500)])))
        before = exported_raw(s, "accounts")  # nothing is writing: the state at the snapshot
        c = ExportClient(self, s, "accounts")
        first = c.snapshot_page()
        self.assertTrue(first["hasMore"])
        # replace every document, delete some, add some, then empty the table
        self.assertOk(s.import_records(
            {"accounts": dedup_stream(["id"])},
            messages("accounts", [{"id": k, "v": 1} for k in range(0, 3000, 2)]
                     + [{"id": k, "_ab_cdc_deleted_at": "x"} for k in range(1, 2500, 4)])))
        self.assertOk(s.clear_tables(["accounts"]))
        self.assertOk(s.import_records(
            {"accounts": dedup_stream(["id"])},
            messages("accounts", [{"id": k, "v": 2} for k in range(10)])))
        body = first
        while body["hasMore"]:
            body = c.snapshot_page(body["cursor"])
        self.assertEqual(c.documents(), before)

"""Every client mistake named in SPEC §1-§3 gets its status and JSON {code, message}."""
import json

from harness import (API, ServerTestCase, append_stream, dedup_stream, messages,
                     raw_exchange, request_head, timeout)


def import_body(table="t", data=None, stream=None):
    return {"tables": {table: stream or append_stream()},
            "messages": [{"tableName": table, "data": data if data is not None else {"a": 1}}]}


class RequestErrorTests(ServerTestCase):
    """Errors about the request itself: headers, routes, JSON shape."""

    def post_import(self, body, **kw):
        return self.server.api("POST", "import_airbyte_records", body, **kw)

    def test_convex_client_without_dash(self):
        for endpoint, method, body in (
                ("import_airbyte_records", "POST", import_body("cv")),
                ("clear_tables", "PUT", {"tableNames": ["cv"]})):
            with self.subTest(endpoint=endpoint):
                r = self.server.api(method, endpoint, body, headers={"Convex-Client": "airbyte"})
                self.assertError(r, 400, "InvalidClientVersion")
        self.assertFalse(self.server.export_or_none("cv"), "nothing may be written")

    def test_malformed_json(self):
        for raw in (b'{"tables": {', b'{"tables": {}, "messages": [}', b"not json",
                    b'{"tables": {}, "messages": []} trailing', b"",
                    b'{"tables": {}, "messages": [], }'):
            with self.subTest(body=raw):
                self.assertError(self.post_import(raw), 400, "BadJsonBody")

    def test_invalid_utf8_in_body(self):
        raw = b'{"tables": {"u": {"primaryKey": null, "jsonSchema": null}}, ' \
              b'"messages": [{"tableName": "u", "data": {"s": "\xff\xfe"}}]}'
        self.assertError(self.post_import(raw), 400, "BadJsonBody")

    def test_wrong_types_name_the_place(self):
        cases = [
            ({"tables": [], "messages": []}, "tables"),
            ({"tables": {}, "messages": {}}, "messages"),
            ({"tables": {"t": append_stream()},
              "messages": [{"tableName": "t", "data": {}}, 5]}, "messages[1]"),
            ({"tables": {"t": append_stream()},
              "messages": [{"tableName": "t", "data": {}},
                           {"tableName": 7, "data": {}}]}, "messages[1].tableName"),
            ({"tables": {"t": {"primaryKey": "id", "jsonSchema": None}},
              "messages": []}, "primaryKey"),
            ({"tables": {"t": 3}, "messages": []}, "tables"),
        ]
        for body, place in cases:
            with self.subTest(place=place, body=body):
                self.assertError(self.post_import(body), 400, "BadJsonBody", mentions=[place])

    def test_missing_required_fields(self):
        cases = [
            ({"messages": []}, "tables"),
            ({"tables": {}}, "messages"),
            ({"tables": {"t": append_stream()}, "messages": [{"data": {}}]}, "tableName"),
            ({"tables": {"t": append_stream()}, "messages": [{"tableName": "t"}]}, "data"),
            ({"tables": {"t": {"primaryKey": None}}, "messages": []}, "jsonSchema"),
        ]
        for body, field in cases:
            with self.subTest(field=field):
                self.assertError(self.post_import(body), 400, "BadJsonBody", mentions=[field])
        for endpoint, method, body, field in (
                ("clear_tables", "PUT", {}, "tableNames"),
                ("clear_tables", "PUT", {"tableNames": "t"}, "tableNames"),
                ("add_primary_key_indexes", "PUT", {}, "indexes"),
                ("add_primary_key_indexes", "PUT", {"indexes": {"t": "id"}}, "indexes"),
                ("primary_key_indexes_ready", "GET", {"tables": 5}, "tables")):
            with self.subTest(endpoint=endpoint, body=body):
                r = self.server.api(method, endpoint, body)
                self.assertError(r, 400, "BadJsonBody", mentions=[field])

    def test_top_level_not_an_object(self):
        for body in ([], "x", 5, None):
            with self.subTest(body=body):
                self.assertError(self.post_import(json.dumps(body)), 400, "BadJsonBody")

    def test_explicit_non_json_content_type(self):
        for ct in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
            with self.subTest(content_type=ct):
                r = self.post_import(import_body("ct"), content_type=ct)
                self.assertError(r, 400, "BadJsonBody")
                r = self.server.api("PUT", "clear_tables", {"tableNames": ["ct"]},
                                    content_type=ct)
                self.assertError(r, 400, "BadJsonBody")
        self.assertIsNone(self.server.export_or_none("ct"))

    def test_unknown_path_is_404_json(self):
        for method, path in (("GET", "/nope"), ("POST", API + "import_records"),
                             ("GET", API), ("PUT", "/api/streaming_import/clear_tables/x")):
            with self.subTest(path=path):
                self.assertError(self.server.request(method, path, {}), 404)

    def test_wrong_method_is_405_json(self):
        for method, path in (("GET", API + "import_airbyte_records"),
                             ("POST", API + "clear_tables"),
                             ("GET", API + "replace_tables"),
                             ("POST", API + "add_primary_key_indexes"),
                             ("POST", API + "primary_key_indexes_ready"),
                             ("DELETE", API + "clear_tables"),
                             ("POST", "/version")):
            with self.subTest(method=method, path=path):
                self.assertError(self.server.request(method, path, {}), 405)

    def test_number_out_of_range(self):
        for literal in ("1e400", "-1e400", "1" + "0" * 400):
            with self.subTest(number=literal):
                raw = ('{"tables": {"nums": {"primaryKey": null, "jsonSchema": null}}, '
                       '"messages": [{"tableName": "nums", "data": {"x": %s}}]}' % literal)
                r = self.post_import(raw.encode())
                self.assertError(r, 400)
        self.assertIsNone(self.server.export_or_none("nums"))

    def test_duplicate_content_length_rejected_and_closed(self):
        body = json.dumps(import_body("smuggle1")).encode()
        head = request_head("POST", API + "import_airbyte_records", [
            ("Authorization", "Convex " + self.server.admin_key),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Content-Length", str(len(body) - 5))])
        r = raw_exchange(self.server.port, head, [body], wait_close=True)
        self.assertEqual(r.status, 400, r.raw[:500])
        self.assertTrue(r.closed, "connection must be closed after the 400")
        self.assertIsNone(self.server.export_or_none("smuggle1"))

    def test_content_length_and_transfer_encoding_rejected_and_closed(self):
        body = json.dumps(import_body("smuggle2")).encode()
        chunk = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
        head = request_head("POST", API + "import_airbyte_records", [
            ("Authorization", "Convex " + self.server.admin_key),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(chunk))),
            ("Transfer-Encoding", "chunked")])
        r = raw_exchange(self.server.port, head, [chunk], wait_close=True)
        self.assertEqual(r.status, 400, r.raw[:500])
        self.assertTrue(r.closed, "connection must be closed after the 400")
        self.assertIsNone(self.server.export_or_none("smuggle2"))

    def test_request_too_large_by_content_length(self):
        for endpoint, method, size in (
                ("import_airbyte_records", "POST", 64 * 1024 * 1024 + 1),
                ("clear_tables", "PUT", 2 * 1024 * 1024 + 1),
                ("add_primary_key_indexes", "PUT", 2 * 1024 * 1024 + 1),
                ("primary_key_indexes_ready", "GET", 2 * 1024 * 1024 + 1)):
            with self.subTest(endpoint=endpoint):
                head = request_head(method, API + endpoint, [
                    ("Authorization", "Convex " + self.server.admin_key),
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(size))])
                # only the headers and a few bytes: the answer must not wait for the rest
                r = raw_exchange(self.server.port, head, [b'{"tab'], timeout_s=timeout(20))
                self.assertEqual(r.status, 413, r.raw[:500])
                self.assertEqual(r.content_type, "application/json")
                self.assertEqual(json.loads(r.body)["code"], "RequestTooLarge")


class DataErrorTests(ServerTestCase):
    """Errors about names, records, keys and indexes."""

    def imp(self, tables, msgs):
        return self.server.import_records(tables, msgs)

    def test_invalid_table_name_too_long_after_rewrite(self):
        long_invalid = "x-" * 33           # source_x_x_..._x: 72 characters
        long_valid = "a" * 65             # valid characters, too long
        for name in (long_invalid, long_valid):
            with self.subTest(name=name):
                r = self.imp({name: append_stream()}, messages(name, [{"a": 1}]))
                self.assertError(r, 400, "InvalidTableName")
                self.assertError(self.server.clear_tables([name]), 400, "InvalidTableName")
                self.assertError(self.server.add_indexes({name: [["id"]]}), 400,
                                 "InvalidTableName")
        # 64 characters is still fine
        ok = "b" * 64
        self.assertOk(self.imp({ok: append_stream()}, messages(ok, [{"a": 1}])))
        self.assertEqual(len(self.export(ok)), 1)

    def test_invalid_field_name_unresolvable_collision(self):
        data = {"_a": 1, "source_a": 2, "source_source_a": 3, "source_source_source_a": 4}
        r = self.imp({"fields": append_stream()}, messages("fields", [data]))
        self.assertError(r, 400, "InvalidFieldName")
        nested = {"outer": {"list": [data]}}
        r = self.imp({"fields": append_stream()}, messages("fields", [nested]))
        self.assertError(r, 400, "InvalidFieldName")
        self.assertIsNone(self.server.export_or_none("fields"))

    def test_invalid_record_data_not_an_object(self):
        for data in (5, "text", [1, 2], True, None):
            with self.subTest(data=data):
                body = {"tables": {"rec": append_stream()},
                        "messages": [{"tableName": "rec", "data": {"ok": 1}},
                                     {"tableName": "rec", "data": data}]}
                r = self.server.api("POST", "import_airbyte_records", body)
                self.assertError(r, 400, "InvalidRecord", mentions=["messages[1]"])
        self.assertIsNone(self.server.export_or_none("rec"))

    def test_missing_stream(self):
        r = self.imp({"known": append_stream()},
                     messages("known", [{"a": 1}]) + messages("unknown", [{"a": 2}]))
        self.assertError(r, 400, "MissingStream", mentions=["unknown"])
        self.assertIsNone(self.server.export_or_none("known"))

    def test_empty_primary_key(self):
        self.assertOk(self.server.add_indexes({"epk": [["id"]]}))
        r = self.imp({"epk": {"primaryKey": [], "jsonSchema": None}},
                     messages("epk", [{"id": 1}]))
        self.assertError(r, 400, "EmptyPrimaryKey")
        self.assertEqual(self.export("epk"), [])

    def test_invalid_primary_key_variants(self):
        self.assertOk(self.server.add_indexes({"ipk": [["id"]]}))
        many = [["f%d" % i] for i in range(17)]
        for pk in ([[]], [["_id"]], [["id"], ["id"]], many, [["first name"]],
                   [["1a"]], [["a", ""]], [["a-b"]]):
            with self.subTest(primary_key=pk):
                data = {"id": 1, "first name": 1, "1a": 1, "a": {"": 1}, "a-b": 1}
                data.update({p[0]: 1 for p in many})
                r = self.imp({"ipk": {"primaryKey": pk, "jsonSchema": None}},
                             messages("ipk", [data]))
                self.assertError(r, 400, "InvalidPrimaryKey")
        for pk in ([[]], [["id"], ["id"]], many, [["first name"]], [["1a"]]):
            with self.subTest(index=pk):
                self.assertError(self.server.add_indexes({"ipk2": pk}), 400,
                                 "InvalidPrimaryKey")
        self.assertEqual(self.export("ipk"), [])

    def test_sixteen_key_paths_are_fine(self):
        paths = [["k%d" % i] for i in range(16)]
        self.assertOk(self.server.add_indexes({"wide": paths}))
        self.server.wait_indexes_ready(["wide"])
        data = {"k%d" % i: i for i in range(16)}
        r = self.imp({"wide": {"primaryKey": paths, "jsonSchema": None}},
                     messages("wide", [data, dict(data, extra=1)]))
        self.assertCounts(r, inserted=1, replaced=1)

    def test_index_field_name_reserved(self):
        for pk in ([["_x"]], [["a", "_b"]], [["ok"], ["_creationTime"]]):
            with self.subTest(index=pk):
                self.assertError(self.server.add_indexes({"reserved": pk}), 400,
                                 "IndexFieldNameReserved")
        r = self.server.indexes_ready(["reserved"])
        self.assertError(r, 400, "MissingIndex")

    def test_missing_primary_key_value(self):
        self.assertOk(self.server.add_indexes({"mpk": [["user_id"]], "mpk2": [["a", "b"]]}))
        r = self.imp({"mpk": dedup_stream(["user_id"])},
                     messages("mpk", [{"user_id": 1}, {"name": "no key"}]))
        self.assertError(r, 400, "MissingPrimaryKeyValue", mentions=["user_id"])
        for data in ({"a": 5}, {"a": {"c": 1}}, {"a": [{"b": 1}]}, {"b": 1}):
            with self.subTest(data=data):
                r = self.imp({"mpk2": dedup_stream(["a", "b"])}, messages("mpk2", [data]))
                self.assertError(r, 400, "MissingPrimaryKeyValue")
        self.assertEqual(self.export("mpk"), [])
        self.assertEqual(self.export("mpk2"), [])

    def test_index_not_found(self):
        self.assertOk(self.imp({"noidx": append_stream()}, messages("noidx", [{"id": 1}])))
        r = self.imp({"noidx": dedup_stream(["id"])}, messages("noidx", [{"id": 1}]))
        self.assertError(r, 400, "IndexNotFoundError")
        r = self.imp({"never_made": dedup_stream(["id"])}, messages("never_made", [{"id": 1}]))
        self.assertError(r, 400, "IndexNotFoundError")
        self.assertEqual(len(self.export("noidx")), 1)

    def test_primary_key_mismatch(self):
        self.assertOk(self.server.add_indexes({"pkm": [["id"]], "pkm2": [["a"], ["b"]]}))
        for table, pk in (("pkm", [["other"]]), ("pkm", [["id"], ["other"]]),
                          ("pkm2", [["a"]]), ("pkm2", [["a"], ["b"], ["id"]])):
            with self.subTest(table=table, pk=pk):
                r = self.imp({table: {"primaryKey": pk, "jsonSchema": None}},
                             messages(table, [{"id": 1, "other": 2, "a": 1, "b": 2}]))
                self.assertError(r, 400, "PrimaryKeyMismatch")
        self.assertEqual(self.export("pkm"), [])

    def test_missing_index(self):
        self.assertOk(self.server.add_indexes({"has_index": [["id"]]}))
        self.assertOk(self.imp({"no_index": append_stream()}, messages("no_index", [{"a": 1}])))
        for tables in (["no_index"], ["has_index", "no_index"], ["does_not_exist"]):
            with self.subTest(tables=tables):
                r = self.server.indexes_ready(tables)
                self.assertError(r, 400, "MissingIndex")
                r = self.server.request("GET", API + "primary_key_indexes_ready?tables="
                                        + ",".join(tables))
                self.assertError(r, 400, "MissingIndex")

    def test_value_too_large(self):
        # Convex size of {"s": "x"*L} with _id (32 chars) and _creationTime:
        # 2 + (3+1+34) + (13+1+9) + (1+1+L+2) = 67 + L
        limit = 1024 * 1024
        fits = "x" * (limit - 67)
        r = self.imp({"big": append_stream()}, messages("big", [{"s": fits}]))
        self.assertOk(r, "a document of exactly 1 MiB (Convex size) is allowed")
        r = self.imp({"big": append_stream()}, messages("big", [{"s": fits + "x"}]))
        self.assertError(r, 400, "ValueTooLargeError")
        r = self.imp({"big": append_stream()},
                     messages("big", [{"parts": ["y" * 300000 for _ in range(4)]}]))
        self.assertError(r, 400, "ValueTooLargeError")
        self.assertEqual(len(self.export("big")), 1)

    def test_too_nested_document(self):
        def nest(levels, inner):
            doc = inner
            for _ in range(levels - 1):
                doc = {"n": doc}
            return doc
        # the document itself is level 1; 16 levels allowed, 17 not
        self.assertOk(self.imp({"deep": append_stream()},
                               messages("deep", [nest(16, {"leaf": 1})])))
        r = self.imp({"deep": append_stream()}, messages("deep", [nest(17, {"leaf": 1})]))
        self.assertError(r, 400, "InvalidDocumentError")
        # arrays count as levels too
        arr = {"leaf": 1}
        for _ in range(16):
            arr = [arr]
        r = self.imp({"deep": append_stream()}, messages("deep", [{"a": arr}]))
        self.assertError(r, 400, "InvalidDocumentError")
        self.assertEqual(len(self.export("deep")), 1)

    def test_too_many_fields(self):
        fields = {"f%d" % i: i for i in range(1024)}
        self.assertOk(self.imp({"wide2": append_stream()},
                               messages("wide2", [{"inner": fields}])))
        r = self.imp({"wide2": append_stream()},
                     messages("wide2", [{"inner": dict(fields, extra=1)}]))
        self.assertError(r, 400, "TooManyFieldsError")
        r = self.imp({"wide2": append_stream()}, messages("wide2", [dict(fields, extra=1)]))
        self.assertError(r, 400, "TooManyFieldsError")
        self.assertEqual(len(self.export("wide2")), 1)

    def test_array_too_long(self):
        self.assertOk(self.imp({"arr": append_stream()},
                               messages("arr", [{"a": list(range(8192))}])))
        r = self.imp({"arr": append_stream()}, messages("arr", [{"a": list(range(8193))}]))
        self.assertError(r, 400, "ArrayTooLong")
        r = self.imp({"arr": append_stream()},
                     messages("arr", [{"o": {"a": [None] * 8193}}]))
        self.assertError(r, 400, "ArrayTooLong")
        docs = self.export("arr")
        self.assertEqual(len(docs), 1)
        self.assertEqual(docs[0]["a"], list(range(8192)))

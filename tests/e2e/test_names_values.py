"""Name rewriting (SPEC §2.1, §2.2) and value mapping (§2.3), seen through export."""
from harness import (Int64, ServerTestCase, append_stream, dedup_stream, messages,
                     user_fields)


class TableNameTests(ServerTestCase):

    def test_invalid_table_names_are_rewritten(self):
        cases = [("my-table", "source_my_table"), ("*name!of.table", "source_name_of_table"),
                 ("_system_table", "source_system_table"), ("123", "source_123"),
                 ("Caf\u00e9 Orders", "source_cafe_orders")]
        for raw, stored in cases:
            with self.subTest(raw=raw):
                self.assertOk(self.server.import_records(
                    {raw: append_stream()}, messages(raw, [{"raw": raw}])))
                self.assertEqual([user_fields(d) for d in self.export(stored)], [{"raw": raw}])

    def test_valid_names_keep_their_case(self):
        self.assertOk(self.server.import_records({"Users": append_stream()},
                                                 messages("Users", [{"n": 1}])))
        self.assertEqual(len(self.export("Users")), 1)
        self.assertIsNone(self.server.export_or_none("source_users"))

    def test_same_raw_name_works_on_every_endpoint(self):
        raw = "public.dedup-users"
        stored = "source_public_dedup_users"
        self.assertOk(self.server.add_indexes({raw: [["id"]]}))
        r = self.server.indexes_ready([raw])
        self.assertEqual(self.assertJsonOk(r), {"indexesReady": True})
        r = self.server.import_records({raw: dedup_stream(["id"])},
                                       messages(raw, [{"id": 1, "v": "a"}, {"id": 2, "v": "b"},
                                                      {"id": 1, "v": "c"}]))
        self.assertCounts(r, messages=3, inserted=2, replaced=1)
        self.assertEqual(sorted((d["id"], d["v"]) for d in self.export(stored)),
                         [(1, "c"), (2, "b")])
        self.assertOk(self.server.clear_tables([raw]))
        self.assertEqual(self.export(stored), [])
        self.assertEqual(self.assertJsonOk(self.server.indexes_ready([raw])),
                         {"indexesReady": True})


class FieldNameTests(ServerTestCase):

    def stored(self, data, table="fields"):
        self.assertOk(self.server.import_records({table: append_stream()},
                                                 messages(table, [data])))
        docs = self.export(table)
        self.assertOk(self.server.clear_tables([table]))
        self.assertEqual(len(docs), 1)
        return user_fields(docs[0])

    def test_rewrites(self):
        got = self.stored({"_id": "abc", "_creationTime": 5, "$foo": 1, "caf\u00e9": 2,
                           "_airbyte_ab_id": "x", "ok": 3})
        self.assertEqual(got, {"source_id": "abc", "source_creationtime": 5, "source_foo": 1,
                               "source_cafe": 2, "source_airbyte_ab_id": "x", "ok": 3})

    def test_allowed_names_are_kept(self):
        data = {"with space": 1, "dash-ed": 2, "dot.ted": 3, "CamelCase": 4, "a$b": 5,
                "": 6, "x" * 1024: 7, "~!@#%^&*()": 8}
        self.assertEqual(self.stored(data), data)

    def test_nested_keys_are_rewritten(self):
        got = self.stored({"outer": {"_inner": 1, "$x": {"_deep": 2}},
                           "list": [{"_a": 1}, [{"caf\u00e9": 2}], 3]})
        self.assertEqual(got, {"outer": {"source_inner": 1, "source_x": {"source_deep": 2}},
                               "list": [{"source_a": 1}, [{"source_cafe": 2}], 3]})

    def test_collision_with_an_original_key(self):
        want = {"source_id": 1, "source_source_id": 2}
        self.assertEqual(self.stored({"source_id": 1, "_id": 2}), want)
        self.assertEqual(self.stored({"_id": 2, "source_id": 1}), want)
        self.assertEqual(self.stored({"n": {"_id": 2, "source_id": 1}}), {"n": want})

    def test_collision_between_rewritten_keys_drops_nothing(self):
        got = self.stored({"_a": 1, "$a": 2})
        self.assertEqual(sorted(got), ["source_a", "source_source_a"])
        self.assertEqual(sorted(got.values()), [1, 2])

    def test_duplicate_keys_last_wins(self):
        raw = (b'{"tables": {"dups": {"primaryKey": null, "jsonSchema": null}}, '
               b'"messages": [{"tableName": "dups", "data": {"a": 1, "b": 0, "a": 2}}]}')
        self.assertOk(self.server.api("POST", "import_airbyte_records", raw))
        self.assertEqual([user_fields(d) for d in self.export("dups")], [{"a": 2, "b": 0}])


class ValueTests(ServerTestCase):

    def roundtrip(self, data, raw=None):
        table = "vals"
        if raw is None:
            self.assertOk(self.server.import_records({table: append_stream()},
                                                     messages(table, [data])))
        else:
            body = ('{"tables": {"vals": {"primaryKey": null, "jsonSchema": null}}, '
                    '"messages": [{"tableName": "vals", "data": %s}]}' % raw)
            self.assertOk(self.server.api("POST", "import_airbyte_records", body.encode()))
        docs = self.export(table)
        self.assertOk(self.server.clear_tables([table]))
        self.assertEqual(len(docs), 1)
        return user_fields(docs[0])

    def test_big_integers_keep_every_digit(self):
        got = self.roundtrip(None, raw='{"a": 1234567890123456789, "b": -1234567890123456789,'
                                       ' "c": 9007199254740993, "d": 9223372036854775807,'
                                       ' "e": -9223372036854775808, "n": [1234567890123456789]}')
        for field, want in (("a", 1234567890123456789), ("b", -1234567890123456789),
                            ("c", 2 ** 53 + 1), ("d", 2 ** 63 - 1), ("e", -2 ** 63)):
            with self.subTest(field=field):
                self.assertIsInstance(got[field], Int64)
                self.assertEqual(got[field], want)
        self.assertIsInstance(got["n"][0], Int64)
        self.assertEqual(got["n"][0], 1234567890123456789)

    def test_numbers_a_float_holds_stay_float(self):
        got = self.roundtrip(None, raw='{"a": 9007199254740992, "b": -9007199254740992,'
                                       ' "c": 42, "d": 1.5, "e": 1e300, "f": -0.25,'
                                       ' "g": 9223372036854775808, "h": 1E2, "i": 0}')
        want = {"a": 2 ** 53, "b": -2 ** 53, "c": 42, "d": 1.5, "e": 1e300, "f": -0.25,
                "g": 2 ** 63, "h": 100, "i": 0}
        for field, value in want.items():
            with self.subTest(field=field):
                self.assertNotIsInstance(got[field], Int64)
                self.assertEqual(got[field], value)

    def test_nested_structures_roundtrip(self):
        data = {"obj": {"a": [1, {"b": [None, True, False, "s"]}], "empty": {}},
                "arr": [[], [[]], {}], "null": None, "t": True, "f": False, "s": "",
                "mixed": [1, "two", 3.5, None, {"four": 4}]}
        self.assertEqual(self.roundtrip(data), data)

    def test_unicode_strings(self):
        data = {"emoji": "\U0001F600 \u2603", "cjk": "\u6f22\u5b57\u304b\u306a",
                "accents": "caf\u00e9 na\u00efve", "rtl": "\u05e9\u05dc\u05d5\u05dd",
                "escapes": "quote\" backslash\\ tab\t newline\n \u0001",
                "long": "\u00e9" * 10000}
        self.assertEqual(self.roundtrip(data), data)

    def test_escaped_unicode_in_json_text(self):
        got = self.roundtrip(None, raw='{"s": "\\ud83d\\ude00 \\u00e9\\u0041"}')
        self.assertEqual(got, {"s": "\U0001F600 \u00e9A"})

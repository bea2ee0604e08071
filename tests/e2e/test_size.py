"""Request size limits (SPEC §1.3): what fits is accepted, what does not gets 413
RequestTooLarge, whether the size is announced by Content-Length, only seen while
reading a chunked body, or reached by decompressing a gzip body."""
import json

from harness import (API, DEFAULT_IMPORT_LIMIT, SMALL_ENDPOINT_LIMIT, ServerTestCase,
                     chunked, gzip_bytes, raw_exchange, request_head, timeout)

PREFIX = '{"tables":{"%s":{"primaryKey":null,"jsonSchema":null}},"messages":['
RECORD = '{"tableName":"%s","data":{"i":%d,"s":"%s"}}'


def records_body(table, size, record_size=16384):
    """An import body of exactly `size` bytes made of records of about record_size."""
    head = PREFIX % table
    n = max(1, (size - len(head) - 2) // (record_size + 1))
    while True:
        fixed = len(head) + 2 + (n - 1) + sum(len(RECORD % (table, i, "")) for i in range(n))
        room = size - fixed
        if room >= 0:
            break
        n -= 1
    per, extra = divmod(room, n)
    parts = [RECORD % (table, i, "x" * (per + (1 if i < extra else 0))) for i in range(n)]
    body = (head + ",".join(parts) + "]}").encode()
    assert len(body) == size, (len(body), size)
    return body, n


def padded_body(doc, size):
    """doc as JSON, padded with whitespace (still valid JSON) to exactly `size` bytes."""
    text = json.dumps(doc, separators=(",", ":"))
    assert len(text) + 1 <= size
    return ("{" + " " * (size - len(text)) + text[1:]).encode()


def import_doc(table, n=3):
    return {"tables": {table: {"primaryKey": None, "jsonSchema": None}},
            "messages": [{"tableName": table, "data": {"i": i}} for i in range(n)]}


class SizeMixin:

    def post(self, body, headers=None, endpoint="import_airbyte_records", method="POST"):
        return self.server.api(method, endpoint, body, headers=headers, timeout_s=timeout(300))

    def raw(self, body, endpoint="import_airbyte_records", method="POST", chunked_body=False,
            gzip=False):
        """Sends the whole body on a raw socket, reading the answer as it comes, so an
        early 413 is seen even if the server stops reading."""
        headers = [("Authorization", "Convex " + self.server.admin_key),
                   ("Content-Type", "application/json"), ("Connection", "close")]
        if gzip:
            headers.append(("Content-Encoding", "gzip"))
        if chunked_body:
            headers.append(("Transfer-Encoding", "chunked"))
            parts = chunked(body)
        else:
            headers.append(("Content-Length", str(len(body))))
            parts = [body[i:i + 65536] for i in range(0, len(body), 65536)]
        return raw_exchange(self.server.port, request_head(method, API + endpoint, headers),
                            parts, timeout_s=timeout(120))

    def assertTooLarge(self, r):
        self.assertEqual(r.status, 413, r.raw[:300] if hasattr(r, "raw") else r)
        self.assertEqual(r.content_type, "application/json")
        self.assertEqual(json.loads(r.body)["code"], "RequestTooLarge")

    def assertNoTable(self, table):
        self.assertFalse(self.server.export_or_none(table), "a refused request wrote to " + table)


class DefaultLimitTests(SizeMixin, ServerTestCase):

    def test_request_just_under_64_mib_is_accepted(self):
        body, n = records_body("huge", DEFAULT_IMPORT_LIMIT - 100)
        self.assertGreater(n, 1000)
        r = self.post(body)
        self.assertCounts(r, messages=n, inserted=n)
        docs = self.export("huge")
        self.assertEqual(sorted(d["i"] for d in docs), list(range(n)))
        self.assertEqual(sum(len(d["s"]) for d in docs),
                         len(body) - len(PREFIX % "huge") - 2 - (n - 1)
                         - sum(len(RECORD % ("huge", i, "")) for i in range(n)))

    def test_request_over_64_mib_is_refused(self):
        body, _ = records_body("over", DEFAULT_IMPORT_LIMIT + 1)
        self.assertTooLarge(self.raw(body))
        self.assertTooLarge(self.raw(body, chunked_body=True))
        self.assertNoTable("over")

    def test_gzip_bomb_is_refused(self):
        raw, _ = records_body("bomb", DEFAULT_IMPORT_LIMIT + 4096)
        packed = gzip_bytes(raw)
        self.assertLess(len(packed), 1024 * 1024)
        self.assertTooLarge(self.raw(packed, gzip=True))
        self.assertTooLarge(self.raw(packed, gzip=True, chunked_body=True))
        self.assertNoTable("bomb")

    def test_gzip_body_just_under_the_limit_is_accepted(self):
        raw, n = records_body("zipfit", DEFAULT_IMPORT_LIMIT - 100)
        packed = gzip_bytes(raw)
        self.assertLess(len(packed), 4 * 1024 * 1024)
        r = self.post(packed, headers={"Content-Encoding": "gzip"})
        self.assertCounts(r, messages=n, inserted=n)
        self.assertOk(self.server.clear_tables(["zipfit"]))

    def test_whitespace_is_not_a_value(self):
        # pretty-printed JSON may carry a lot of insignificant whitespace; it counts
        # toward the body limit only
        raw = padded_body(import_doc("spaces"), 12 * 1024 * 1024)
        self.assertCounts(self.post(raw), messages=3, inserted=3)

    def test_other_endpoints_take_2_mib(self):
        fits = padded_body({"tableNames": ["two_mib"]}, SMALL_ENDPOINT_LIMIT - 10)
        self.assertOk(self.post(fits, endpoint="clear_tables", method="PUT"))
        self.assertEqual(self.export("two_mib"), [])
        over = padded_body({"tableNames": ["two_mib_over"]}, SMALL_ENDPOINT_LIMIT + 1)
        self.assertTooLarge(self.raw(over, endpoint="clear_tables", method="PUT"))
        self.assertTooLarge(self.raw(over, endpoint="clear_tables", method="PUT",
                                     chunked_body=True))
        self.assertTooLarge(self.raw(gzip_bytes(over), endpoint="clear_tables", method="PUT",
                                     gzip=True))
        over = padded_body({"indexes": {"two_mib_idx": [["id"]]}}, SMALL_ENDPOINT_LIMIT + 1)
        self.assertTooLarge(self.raw(over, endpoint="add_primary_key_indexes", method="PUT"))
        self.assertNoTable("two_mib_over")
        self.assertNoTable("two_mib_idx")

    def test_corrupt_gzip_is_a_client_error(self):
        r = self.post(b"\x1f\x8b\x08\x00garbage that is not deflate",
                      headers={"Content-Encoding": "gzip"})
        self.assertGreaterEqual(r.status, 400, r)
        self.assertLess(r.status, 500, r)
        self.assertEqual(r.content_type, "application/json")


class ConfiguredLimitTests(SizeMixin, ServerTestCase):
    LIMIT = 100000
    server_args = ("--max-body-size", str(LIMIT), "--threads", "8")

    def test_under_the_limit_is_accepted(self):
        body, n = records_body("small_ok", self.LIMIT, record_size=1000)
        self.assertCounts(self.post(body), messages=n, inserted=n)
        body, m = records_body("small_ok", self.LIMIT - 5000, record_size=1000)
        r = self.raw(body, chunked_body=True)
        self.assertEqual(r.status, 200, r.raw[:300])
        self.assertEqual(len(self.export("small_ok")), n + m)

    def test_over_the_limit_is_refused(self):
        body, _ = records_body("small_over", self.LIMIT + 1, record_size=1000)
        self.assertTooLarge(self.raw(body))
        self.assertTooLarge(self.raw(body, chunked_body=True))
        self.assertNoTable("small_over")

    def test_gzip_limit_applies_to_decompressed_size(self):
        fits, n = records_body("small_zip", self.LIMIT - 10, record_size=1000)
        r = self.post(gzip_bytes(fits), headers={"Content-Encoding": "gzip"})
        self.assertCounts(r, messages=n, inserted=n)
        over, _ = records_body("small_zip_over", self.LIMIT * 3, record_size=1000)
        packed = gzip_bytes(over)
        self.assertLess(len(packed), self.LIMIT)
        self.assertTooLarge(self.raw(packed, gzip=True))
        self.assertTooLarge(self.raw(packed, gzip=True, chunked_body=True))
        self.assertNoTable("small_zip_over")

    def test_other_endpoints_keep_their_own_limit(self):
        body = padded_body({"tableNames": ["small_clear"]}, 1024 * 1024)
        self.assertOk(self.post(body, endpoint="clear_tables", method="PUT"))
        self.assertEqual(self.export("small_clear"), [])

"""Whole syncs driven exactly like Airbyte's Convex destination (reference/clients.md §1):
the same calls in the same order, the same headers and JSON encoding, a fresh
connection per request, 1000-record batches that repeat the full `tables` map, mix
streams and may be empty. The result is checked through `tributary export`."""
import http.client
import json
import time

from harness import Int64, ServerTestCase, timeout, user_fields

RECORD, STATE = "RECORD", "STATE"


class SyncFailed(Exception):
    pass


class Connector:
    """The destination's client.py + writer.py + destination.py, in miniature."""

    flush_interval = 1000

    def __init__(self, port, access_key):
        self.url = "http://127.0.0.1:%d" % port
        self.port = port
        self.access_key = access_key
        self.responses = []
        self.states = []

    def _send(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout(300))
        try:
            data = None if body is None else json.dumps(body).encode()
            hdrs = {"User-Agent": "python-requests/2.32.3", "Accept-Encoding": "gzip, deflate",
                    "Connection": "keep-alive"}
            if data is not None:
                hdrs["Content-Type"] = "application/json"
            hdrs.update(headers or {})
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def _call(self, method, endpoint, body):
        status, text = self._send(method, "/api/streaming_import/" + endpoint, body, {
            "Accept": "application/json", "Convex-Client": "streaming-import-0.1.0",
            "Authorization": "Convex " + self.access_key})
        if status != 200:
            raise SyncFailed("Request to `%s/api/streaming_import/%s` failed with status code "
                             "%s: %s" % (self.url, endpoint, status, text.decode("utf-8", "replace")))
        return text

    def check(self):
        status, _ = self._send("GET", "/version",
                               headers={"Authorization": "Convex " + self.access_key})
        return status

    def write(self, catalog, input_messages, poll_interval=0.25):
        """catalog: [(table, mode, primary_key or None, json_schema)]"""
        tables = {}
        for table, mode, pk, schema in catalog:
            tables[table] = {"primaryKey": pk if mode == "append_dedup" else None,
                             "jsonSchema": schema}
        overwrite = [t for t, mode, _, _ in catalog if mode == "overwrite"]
        if overwrite:
            self._call("PUT", "clear_tables", {"tableNames": overwrite})
        indexes = {t: pk for t, mode, pk, _ in catalog if mode == "append_dedup" and pk}
        if indexes:
            self._call("PUT", "add_primary_key_indexes", {"indexes": indexes})
            deadline = time.monotonic() + timeout(180)
            while True:
                text = self._call("GET", "primary_key_indexes_ready",
                                  {"tables": list(indexes)})
                if json.loads(text)["indexesReady"]:
                    break
                if time.monotonic() > deadline:
                    raise SyncFailed("indexes never became ready")
                time.sleep(poll_interval)
        buffer = []
        for kind, *rest in input_messages:
            if kind == RECORD:
                table, data = rest
                buffer.append({"tableName": table, "data": data})
                if len(buffer) == self.flush_interval:
                    self._flush(tables, buffer)
                    buffer = []
            elif kind == STATE:
                self._flush(tables, buffer)
                buffer = []
                self.states.append(rest[0])
        self._flush(tables, buffer)

    def _flush(self, tables, buffer):
        text = self._call("POST", "import_airbyte_records",
                          {"tables": tables, "messages": buffer})
        self.responses.append((len(buffer), text))


USER_SCHEMA = {"type": "object", "properties": {
    "id": {"type": "integer", "airbyte_type": "integer"},
    "name": {"type": ["null", "string"]},
    "updated": {"type": "string", "format": "date-time",
                "airbyte_type": "timestamp_with_timezone"},
    "_ab_cdc_lsn": {"type": ["null", "number"]},
    "_ab_cdc_deleted_at": {"type": ["null", "string"]}}}

CATALOG = [
    ("public_events", "append", None, {"type": "object"}),
    ("public_snapshots", "overwrite", None, {"type": "object",
                                             "properties": {"row": {"type": "integer"}}}),
    ("public_users", "append_dedup", [["id"]], USER_SCHEMA),
    ("public_orders", "append_dedup", [["region"], ["order", "number"]], None),
]


def user(uid, name, lsn, deleted=False):
    return {"id": uid, "name": name, "updated": "2026-01-01T00:00:%02dZ" % (uid % 60),
            "tags": ["t%d" % (uid % 3)], "score": uid / 4, "_ab_cdc_lsn": lsn,
            "_ab_cdc_updated_at": "2026-01-01T00:00:00Z",
            "_ab_cdc_deleted_at": "2026-01-02T00:00:00Z" if deleted else None}


def order(region, number, status):
    return {"region": region, "order": {"number": number, "lines": [number, number + 1]},
            "status": status}


def interleave(*streams):
    """Round-robin over several lists of messages, as a source reading tables in
    parallel might emit them."""
    iters = [iter(s) for s in streams]
    out = []
    while iters:
        for it in list(iters):
            try:
                out.append(next(it))
            except StopIteration:
                iters.remove(it)
    return out


class AirbyteSyncTests(ServerTestCase):

    def expected_user(self, d):
        return {k: v for k, v in d.items() if not k.startswith("_ab_cdc")}

    def test_check_connection(self):
        self.assertEqual(Connector(self.server.port, self.server.admin_key).check(), 200)
        self.assertEqual(Connector(self.server.port, "wrong-key").check(), 401)

    def test_two_syncs_append_overwrite_dedup(self):
        conn = Connector(self.server.port, self.server.admin_key)

        # ---- sync 1
        users = {}
        events1 = [(RECORD, "public_events", {"event_id": i, "sync": 1, "big": 10 ** 18 + i,
                                              "payload": {"k": [i, None, "x"]}})
                   for i in range(2300)]
        snaps1 = [(RECORD, "public_snapshots", {"row": i, "sync": 1}) for i in range(1500)]
        users1 = []
        for uid in range(2000):
            users1.append((RECORD, "public_users", user(uid, "v1-%d" % uid, uid)))
            users[uid] = self.expected_user(user(uid, "v1-%d" % uid, uid))
        for uid in range(500):
            users1.append((RECORD, "public_users", user(uid, "v2-%d" % uid, 5000 + uid)))
            users[uid] = self.expected_user(user(uid, "v2-%d" % uid, 5000 + uid))
        for uid in list(range(1900, 2000)) + [70000]:
            users1.append((RECORD, "public_users", user(uid, None, 9000 + uid, deleted=True)))
            users.pop(uid, None)
        orders = {}
        orders1 = []
        for n in range(300):
            for region in ("eu", "us"):
                orders1.append((RECORD, "public_orders", order(region, n, "new")))
                orders[(region, n)] = order(region, n, "new")
        for n in range(0, 300, 3):
            orders1.append((RECORD, "public_orders", order("us", n, "shipped")))
            orders[("us", n)] = order("us", n, "shipped")

        mixed = interleave(events1, snaps1, users1[:2000], orders1) + users1[2000:]
        stream = [(STATE, {"n": 0})] + mixed[:1700] + [(STATE, {"n": 1}), (STATE, {"n": 2})] \
            + mixed[1700:] + [(STATE, {"n": 3})]
        conn.write(CATALOG, stream)
        self.assertEqual(conn.states, [{"n": i} for i in range(4)])
        self.assertTrue(any(n == 0 for n, _ in conn.responses), "empty batches were sent")
        self.assertTrue(any(n == 1000 for n, _ in conn.responses))
        self.check_counts(conn, len(mixed))

        self.assertEqual(sorted((d["event_id"], d["big"]) for d in self.export("public_events")),
                         [(i, 10 ** 18 + i) for i in range(2300)])
        self.assertTrue(all(isinstance(d["big"], Int64) for d in self.export("public_events")))
        self.assertEqual(sorted(d["row"] for d in self.export("public_snapshots")),
                         list(range(1500)))
        after1 = self.check_users(users)
        self.check_orders(orders)

        # ---- sync 2: more appends, a new overwrite snapshot, dedup updates and deletes
        events2 = [(RECORD, "public_events", {"event_id": 2300 + i, "sync": 2,
                                              "big": 10 ** 18 + 2300 + i, "payload": {}})
                   for i in range(700)]
        snaps2 = [(RECORD, "public_snapshots", {"row": i, "sync": 2}) for i in range(800)]
        users2 = []
        for uid in range(1000, 1100):
            users2.append((RECORD, "public_users", user(uid, "v3-%d" % uid, 20000 + uid)))
            users[uid] = self.expected_user(user(uid, "v3-%d" % uid, 20000 + uid))
        for uid in range(50):
            users2.append((RECORD, "public_users", user(uid, None, 30000 + uid, deleted=True)))
            users.pop(uid)
        users2.append((RECORD, "public_users", user(1950, "back", 40000)))
        users[1950] = self.expected_user(user(1950, "back", 40000))
        orders2 = []
        for n in range(0, 300, 2):
            orders2.append((RECORD, "public_orders", order("eu", n, "paid")))
            orders[("eu", n)] = order("eu", n, "paid")
        mixed2 = interleave(events2, snaps2, users2, orders2)
        conn2 = Connector(self.server.port, self.server.admin_key)
        conn2.write(CATALOG, mixed2[:999] + [(STATE, {"n": 4})] + mixed2[999:])
        self.check_counts(conn2, len(mixed2))

        self.assertEqual(sorted(d["event_id"] for d in self.export("public_events")),
                         list(range(3000)))
        snaps = self.export("public_snapshots")
        self.assertEqual(sorted((d["sync"], d["row"]) for d in snaps),
                         [(2, i) for i in range(800)])
        after2 = self.check_users(users)
        self.check_orders(orders)
        for uid in range(1000, 1100):
            self.assertEqual((after2[uid]["_id"], after2[uid]["_creationTime"]),
                             (after1[uid]["_id"], after1[uid]["_creationTime"]),
                             "a replaced document keeps _id and _creationTime")
        self.assertNotIn(after2[1950]["_id"], {d["_id"] for d in after1.values()})

    def check_counts(self, conn, records):
        total = {"messages": 0, "inserted": 0, "replaced": 0, "deleted": 0}
        for n, text in conn.responses:
            body = json.loads(text)
            self.assertEqual(body["messages"], n, body)
            for k in total:
                total[k] += body[k]
        self.assertEqual(total["messages"], records)
        self.assertLessEqual(total["inserted"] + total["replaced"] + total["deleted"], records)

    def check_users(self, want):
        docs = self.export("public_users")
        by_id = {}
        for d in docs:
            self.assertNotIn(d["id"], by_id, "two documents for id %s" % d["id"])
            by_id[d["id"]] = d
        self.assertEqual(sorted(by_id), sorted(want))
        for uid, fields in want.items():
            self.assertEqual(user_fields(by_id[uid]), fields)
        return by_id

    def check_orders(self, want):
        docs = self.export("public_orders")
        got = {}
        for d in docs:
            key = (d["region"], d["order"]["number"])
            self.assertNotIn(key, got, "two documents for %s" % (key,))
            got[key] = user_fields(d)
        self.assertEqual(got, want)

"""A request is applied entirely or not at all (SPEC §3.1 "Atomic"), and a 200 means
the data survives a crash (§3.1 "Durable")."""
import http.client
import json
import sqlite3
import threading
import time

from harness import (Config, ServerTestCase, append_stream, dedup_stream, messages, scaled,
                     timeout, user_fields)


def nested_list(levels):
    v = [1]
    for _ in range(levels - 1):
        v = [v]
    return v


class AtomicityTests(ServerTestCase):

    @classmethod
    def prepare_server(cls, srv):
        ok = srv.add_indexes({"users": [["id"]]})
        if ok.status != 200:
            raise AssertionError("add_primary_key_indexes: %r" % ok)
        srv.wait_indexes_ready(["users"])
        for r in (srv.import_records({"users": dedup_stream(["id"])},
                                     messages("users", [{"id": i, "v": "orig"}
                                                        for i in range(3)])),
                  srv.import_records({"log": append_stream()},
                                     messages("log", [{"n": i} for i in range(3)]))):
            if r.status != 200:
                raise AssertionError("seeding: %r" % r)

    def snapshot(self):
        return {t: sorted(json.dumps(d, sort_keys=True) for d in self.export(t))
                for t in ("users", "log")}

    def check_nothing_written(self, tables, msgs, status, code):
        before = self.snapshot()
        r = self.server.import_records(tables, msgs)
        self.assertError(r, status, code)
        self.assertEqual(self.snapshot(), before, "a failed request must write nothing")
        self.assertIsNone(self.server.export_or_none("fresh_table"),
                          "a failed request must not create tables")

    def good_prefix(self, n=300, fresh="fresh_table"):
        return (messages("log", [{"n": 1000 + i} for i in range(n)])
                + messages("users", [{"id": i, "v": "changed"} for i in range(3)])
                + messages("users", [{"id": 100 + i, "v": "new"} for i in range(n)])
                + messages("users", [{"id": 0, "_ab_cdc_deleted_at": "now"}])
                + messages(fresh, [{"x": 1}]))

    def tables(self, fresh="fresh_table"):
        return {"log": append_stream(), "users": dedup_stream(["id"]),
                fresh: append_stream()}

    def test_last_record_not_an_object(self):
        self.check_nothing_written(self.tables(),
                                   self.good_prefix() + [{"tableName": "log", "data": 5}],
                                   400, "InvalidRecord")

    def test_last_record_missing_primary_key(self):
        self.check_nothing_written(self.tables(),
                                   self.good_prefix() + messages("users", [{"v": "no id"}]),
                                   400, "MissingPrimaryKeyValue")

    def test_last_record_unknown_stream(self):
        self.check_nothing_written(self.tables(),
                                   self.good_prefix() + messages("nowhere", [{"a": 1}]),
                                   400, "MissingStream")

    def test_last_record_too_large(self):
        self.check_nothing_written(self.tables(),
                                   self.good_prefix() + messages("log", [{"a": list(range(9000))}]),
                                   400, "ArrayTooLong")

    def test_large_batch_with_bad_record_at_the_end(self):
        n = scaled(20000)
        self.check_nothing_written(
            self.tables(),
            self.good_prefix(n) + messages("log", [{"ok": 1, "a": nested_list(17)}]),
            400, "InvalidDocumentError")

    def test_z_the_same_batch_without_the_bad_record_applies(self):
        r = self.server.import_records(self.tables("fresh_ok"), self.good_prefix(10, "fresh_ok"))
        self.assertCounts(r, messages=10 + 3 + 10 + 1 + 1, inserted=21, replaced=3, deleted=1)
        users = {d["id"]: user_fields(d) for d in self.export("users")}
        self.assertNotIn(0, users)
        self.assertEqual(users[1], {"id": 1, "v": "changed"})
        self.assertEqual(sorted(k for k in users if k >= 100), list(range(100, 110)))
        self.assertEqual(len(self.export("log")), 13)
        self.assertEqual(len(self.export("fresh_ok")), 1)


class DurabilityTests(ServerTestCase):
    """kill -9 in the middle of concurrent imports, restart on the same data."""

    THREADS = 4

    @staticmethod
    def batch_size(seq):
        """Small and large transactions, so the kill may land inside a big commit."""
        return 200 + (seq % 4) * 700

    def batch(self, marker, seq):
        """A client's request: (streams, messages, its size)."""
        size = self.batch_size(seq)
        data = [{"batch": marker, "i": i, "pad": "p" * 100} for i in range(size)]
        return ({"durable": append_stream(), "durable_idx": dedup_stream(["k"])},
                messages("durable", data) + messages("durable_idx", [{"k": marker, "n": size}]),
                size)

    def run_clients(self, server, round_no, stop_after, batch=None):
        """THREADS clients send batch(marker, seq) requests until stop_after were
        answered 200, then the server is killed: (markers acked, {marker: size} sent)."""
        batch = batch or self.batch
        acked, sent, failures = set(), {}, []
        lock = threading.Lock()
        stop = threading.Event()

        def client(tid):
            seq = 0
            while not stop.is_set():
                marker = "r%d-t%d-b%d" % (round_no, tid, seq)
                streams, msgs, size = batch(marker, seq)
                with lock:
                    sent[marker] = size
                try:
                    r = server.import_records(streams, msgs, timeout_s=timeout(60))
                except (OSError, http.client.HTTPException):
                    return  # the server is gone
                if r.status == 200:
                    with lock:
                        acked.add(marker)
                else:
                    failures.append(repr(r))
                    return
                seq += 1

        threads = [threading.Thread(target=client, args=(t,)) for t in range(self.THREADS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + timeout(60)
        try:
            while len(acked) < stop_after and time.monotonic() < deadline and not failures:
                time.sleep(0.02)
            server.kill()
        finally:
            stop.set()
            for t in threads:
                t.join(timeout(120))
        self.assertEqual(failures, [])
        self.assertGreaterEqual(len(acked), stop_after, "imports too slow to test a crash")
        return acked, sent

    def check(self, server, acked, sent):
        counts = {}
        for d in server.export("durable"):
            counts.setdefault(d["batch"], set()).add(d["i"])
        keys = {d["k"]: d for d in server.export("durable_idx")}
        for marker, idx in counts.items():
            self.assertIn(marker, sent)
            self.assertEqual(idx, set(range(sent[marker])),
                             "batch %s is there only in part" % marker)
            self.assertIn(marker, keys, "batch %s is there only in part" % marker)
        for marker in keys:
            self.assertIn(marker, counts, "batch %s is there only in part" % marker)
        for marker in acked:
            self.assertIn(marker, counts, "batch %s was answered 200 and is lost" % marker)

    def test_kill_9_loses_no_acknowledged_batch(self):
        self.assertOk(self.server.add_indexes({"durable_idx": [["k"]]}))
        self.server.wait_indexes_ready(["durable_idx"])
        acked, sent = set(), {}
        for round_no in range(2):
            a, s = self.run_clients(self.server, round_no, stop_after=scaled(40, 10))
            acked |= a
            sent.update(s)
            self.server.start()
            self.check(self.server, acked, sent)
        # still fully usable after two crashes
        r = self.server.import_records({"durable_idx": dedup_stream(["k"])},
                                       messages("durable_idx", [{"k": "after", "n": 0}]))
        self.assertCounts(r, inserted=1)
        self.assertEqual(self.assertJsonOk(self.server.indexes_ready(["durable_idx"])),
                         {"indexesReady": True})

    def test_kill_9_while_index_entries_merge_keeps_every_key_once(self):
        """SQLite keeps new index entries in a table of their own until a sweep merges
        them into the index, which starts at 16,384 entries and runs inside import jobs;
        kill -9 once one is under way (on PostgreSQL: a kill among imports that grow an
        index). After the restart every acknowledged key is there, and importing every
        key sent again finds each stored one (replaced, not inserted twice)."""
        server = self.new_server().start()
        self.assertOk(server.add_indexes({"keyed": [["k"]]}))
        server.wait_indexes_ready(["keyed"])
        per = 1000
        keyed = {"keyed": dedup_stream(["k"])}

        def batch(marker, seq):
            return keyed, messages("keyed", [{"k": "%s-%d" % (marker, i), "v": 0}
                                             for i in range(per)]), per

        acked, sent = self.run_clients(server, 0, stop_after=20, batch=batch)
        server.start()
        if Config.backend == "sqlite":
            # the kill came after a sweep began: entries in both tables
            con = sqlite3.connect(server.data_dir + "/tributary.db")
            try:
                main, recent = con.execute("SELECT (SELECT count(*) FROM pk_entries),"
                                           " (SELECT count(*) FROM pk_recent)").fetchone()
            finally:
                con.close()
            self.assertGreater(main, 0)
            self.assertGreater(recent, 0)
        stored = {}
        for d in server.export("keyed"):
            stored.setdefault(d["k"].rsplit("-", 1)[0], []).append(d["k"])
        for marker in acked:
            self.assertIn(marker, stored, "batch %s was answered 200 and is lost" % marker)
        for marker, keys in stored.items():
            self.assertEqual(sorted(keys), sorted("%s-%d" % (marker, i) for i in range(per)),
                             "batch %s is there only in part, or twice" % marker)
        for marker in sent:
            r = server.import_records(keyed, messages(
                "keyed", [{"k": "%s-%d" % (marker, i), "v": 1} for i in range(per)]))
            if marker in stored:
                self.assertCounts(r, inserted=0, replaced=per)
            else:
                self.assertCounts(r, inserted=per, replaced=0)
        docs = server.export("keyed")
        self.assertEqual(len(docs), per * len(sent))
        self.assertEqual({d["v"] for d in docs}, {1})


"""Primary key indexes on big tables (SPEC §3.4, §3.5, §3.2): the background build,
imports refused while it runs, writes that happen during it, and clear_tables on
big and backfilling tables."""
import threading
import time

from harness import (Config, ServerTestCase, append_stream, dedup_stream, messages, scaled,
                     timeout, user_fields)


def load(server, table, n, batch=10000, start=0):
    for lo in range(start, start + n, batch):
        hi = min(start + n, lo + batch)
        r = server.import_records({table: append_stream()},
                                  messages(table, [{"k": i, "v": "x"} for i in range(lo, hi)]))
        if r.status != 200:
            raise AssertionError("loading %s: %r" % (table, r))


def clear_time_limit():
    return 4.0 if Config.sanitized else 2.0


class BigTableTests(ServerTestCase):
    N = scaled(200000)

    @classmethod
    def prepare_server(cls, server):
        load(server, "big_a", cls.N)
        load(server, "big_b", cls.N)

    def ready(self, table):
        r = self.server.indexes_ready([table])
        self.assertOk(r)
        return self.assertJsonOk(r)["indexesReady"]

    def test_dedup_import_refused_while_backfilling_then_clear(self):
        self.assertOk(self.server.add_indexes({"big_a": [["k"]]}))
        ready_before = self.ready("big_a")
        r = self.server.import_records({"big_a": dedup_stream(["k"])},
                                       messages("big_a", [{"k": 5, "v": "new"}]))
        ready_after = self.ready("big_a")
        if not ready_before and not ready_after:
            self.assertError(r, 400, "IndexBackfillingError")
        elif r.status != 200:
            self.assertError(r, 400, "IndexBackfillingError")
        refused = r.status != 200

        self.server.wait_indexes_ready(["big_a"])
        r = self.server.import_records({"big_a": dedup_stream(["k"])},
                                       messages("big_a", [{"k": 5, "v": "newer"},
                                                          {"k": self.N + 1, "v": "added"}]))
        self.assertCounts(r, inserted=1, replaced=1)
        docs = self.export("big_a")
        self.assertEqual(len(docs), self.N + 1)
        self.assertEqual([user_fields(d) for d in docs if d["k"] == 5], [{"k": 5, "v": "newer"}])
        if refused:
            self.assertTrue(all(d["v"] != "new" for d in docs), "a refused import wrote")

        # clearing a big table with a ready index: quick, the index stays and is ready
        started = time.monotonic()
        self.assertOk(self.server.clear_tables(["big_a"]))
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, clear_time_limit(),
                        "clear_tables took %.2fs for %d documents" % (elapsed, self.N))
        self.assertTrue(self.ready("big_a"))
        self.assertEqual(self.export("big_a"), [])
        r = self.server.import_records({"big_a": dedup_stream(["k"])},
                                       messages("big_a", [{"k": 5, "v": "a"}, {"k": 5, "v": "b"}]))
        self.assertCounts(r, inserted=1, replaced=1)
        self.assertEqual([user_fields(d) for d in self.export("big_a")], [{"k": 5, "v": "b"}])
        if ready_before:
            self.skipTest("the backfill of %d documents ended before it could be observed"
                          % self.N)

    def test_clear_while_backfilling(self):
        self.assertOk(self.server.add_indexes({"big_b": [["k"]]}))
        backfilling = not self.ready("big_b")
        started = time.monotonic()
        self.assertOk(self.server.clear_tables(["big_b"]))
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, clear_time_limit(),
                        "clear_tables took %.2fs for %d documents" % (elapsed, self.N))
        self.assertTrue(self.ready("big_b"), "after a clear the index is ready at once")
        self.assertEqual(self.export("big_b"), [])
        r = self.server.import_records({"big_b": dedup_stream(["k"])},
                                       messages("big_b", [{"k": 1, "v": "a"}, {"k": 2, "v": "b"},
                                                          {"k": 1, "v": "c"}]))
        self.assertCounts(r, inserted=2, replaced=1)
        self.assertEqual(sorted((d["k"], d["v"]) for d in self.export("big_b")),
                         [(1, "c"), (2, "b")])
        if not backfilling:
            self.skipTest("the backfill ended before clear_tables could be sent")


class Appenders:
    """CLIENTS threads appending batches of fresh keys to a table until stopped."""

    def __init__(self, server, table, first_key, clients=4, batch=500, think=0.0,
                 max_batches=None):
        self.server, self.table, self.first_key = server, table, first_key
        self.batch, self.think, self.max_batches = batch, think, max_batches
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.keys, self.failures = [], []
        self.batches = [0] * clients
        self.threads = [threading.Thread(target=self.client, args=(t,)) for t in range(clients)]

    def client(self, tid):
        seq = 0
        while not self.stop_event.is_set() and seq != self.max_batches:
            base = self.first_key + tid * 10 ** 8 + seq * self.batch
            keys = list(range(base, base + self.batch))
            try:
                r = self.server.import_records(
                    {self.table: append_stream()},
                    messages(self.table, [{"k": k, "v": "during"} for k in keys]))
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.failures.append(repr(e))
                return
            if r.status != 200:
                self.failures.append(repr(r))
                return
            with self.lock:
                self.keys.extend(keys)
            self.batches[tid] += 1
            seq += 1
            if self.think:
                time.sleep(self.think)

    def __enter__(self):
        for t in self.threads:
            t.start()
        deadline = time.monotonic() + timeout(60)
        while min(self.batches) < 1 and not self.failures and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def more(self, n):
        """Waits until n more batches went through."""
        target = sum(self.batches) + n
        deadline = time.monotonic() + timeout(10)
        while sum(self.batches) < target and not self.failures \
                and time.monotonic() < deadline and self.running():
            time.sleep(0.01)

    def running(self):
        return any(t.is_alive() for t in self.threads)

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout(120))

    def __exit__(self, *exc):
        self.stop()


def wait_ready_while(server, table, appenders, limit):
    """Polls readiness while the appenders run; returns (ready, seen_not_ready)."""
    seen_not_ready = False
    deadline = time.monotonic() + limit
    while not appenders.failures and time.monotonic() < deadline:
        r = server.indexes_ready([table])
        if r.status != 200:
            raise AssertionError("primary_key_indexes_ready: %r" % r)
        if r.json()["indexesReady"]:
            return True, seen_not_ready
        seen_not_ready = True
        time.sleep(0.05)
    return False, seen_not_ready


class IndexUnderLoadTests(ServerTestCase):
    """add_primary_key_indexes on a big table while 4 clients keep appending to it."""

    N = scaled(100000)

    def test_index_built_during_appends_is_complete(self):
        load(self.server, "live", self.N)
        # a bounded amount of appends, so this test checks correctness whatever the
        # backfill's speed under load (test_index_build_progresses... checks that)
        with Appenders(self.server, "live", self.N, think=0.01,
                       max_batches=scaled(40, 20)) as app:
            self.assertOk(self.server.add_indexes({"live": [["k"]]}))
            at_add = sum(app.batches)
            ready, seen_not_ready = wait_ready_while(self.server, "live", app, timeout(120))
            at_ready = sum(app.batches)
            if ready:
                app.more(8)  # writes after the switch to ready must be indexed too
        self.assertEqual(app.failures, [])
        self.assertTrue(ready, "index not ready after %ds" % timeout(120))

        all_keys = list(range(self.N)) + app.keys
        self.assertEqual(len(self.export("live")), len(all_keys))
        for lo in range(0, len(all_keys), 10000):
            chunk = all_keys[lo:lo + 10000]
            r = self.server.import_records({"live": dedup_stream(["k"])},
                                           messages("live", [{"k": k, "v": "deduped"}
                                                             for k in chunk]))
            self.assertCounts(r, messages=len(chunk), inserted=0, replaced=len(chunk), deleted=0)
        docs = self.export("live")
        self.assertEqual(len(docs), len(all_keys))
        self.assertEqual(sorted(d["k"] for d in docs), sorted(all_keys))
        self.assertTrue(all(d["v"] == "deduped" for d in docs))
        if not seen_not_ready or at_ready <= at_add + len(app.threads):
            self.skipTest("the index was ready before concurrent writes could race it")


class IndexBuildLivenessTests(ServerTestCase):
    """The background build makes progress even while imports never pause."""

    def test_index_build_progresses_under_saturating_appends(self):
        # 1000-record batches back to back, as Airbyte connectors send them; an index
        # on 20k documents takes well under a second to build on an idle server
        n = scaled(20000)
        load(self.server, "busy", n)
        limit = timeout(10)
        with Appenders(self.server, "busy", n, batch=1000) as app:
            self.assertOk(self.server.add_indexes({"busy": [["k"]]}))
            ready, _ = wait_ready_while(self.server, "busy", app, limit)
        self.assertEqual(app.failures, [])
        self.assertTrue(ready, "an index on %d documents was not ready after %ds while 4 "
                        "clients appended without pause (%d documents meanwhile): the "
                        "backfill is starved by imports" % (n, limit, len(app.keys)))
        self.server.wait_indexes_ready(["busy"])

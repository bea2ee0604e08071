"""PostgreSQL only: several tributary processes on one database, and database faults.

What issue #4 promises for `--database-url`, checked from outside:
- two processes on one database, 8 clients spread over both, upserting overlapping keys
  and appending: exactly one document per key, every append there once, the response
  counts add up across processes, and the change feed (read through one process) has
  one distinct timestamp per commit, increasing in commit order, with nothing skipped;
- an index backfill whose process is killed (kill -9) is finished by the other process;
- PostgreSQL restarting, or dropping every connection, while clients import: clients see
  503 DatabaseUnavailable (or a dropped connection) and then success, every acknowledged
  batch is stored, no failed batch is half stored, and the servers keep running;
- the index entries of a cleared table or a replaced index are deleted in the
  background, and the new ones find their documents; index instances whose numbers
  share a range of the entries index (2^24 apart) keep apart;
- a writer keeps the tables it wrote from one commit to the next only while nothing
  else wrote: a clear, an append, a new or replaced index from another process show
  at its next import;
- a statement the writer sent ahead without waiting (the change-log row, which rides
  with the next statement or the commit) that fails fails its own request only, with
  nothing of it stored, while other clients' requests, grouped with it, succeed;
- a COMMIT that went through but whose answer was lost with the connection is answered
  200 (asked again on a new connection), so the client does not send the batch twice.

These tests are skipped (not counted) on the SQLite backend. Restarting the database
needs the cluster's pg_ctl (run.py --pg-ctl; `make test` passes it).
"""
import http.client
import random
import threading
import time
import unittest

from harness import (Config, ServerTestCase, append_stream, deltas_since, dedup_stream,
                     first_cursor, messages, psql, restart_database, scaled, timeout,
                     user_fields)

POSTGRES_ONLY = unittest.skipUnless(Config.backend == "postgres",
                                    "PostgreSQL backend only")


def load(server, table, n, batch=20000):
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        r = server.import_records({table: append_stream()},
                                  messages(table, [{"k": i} for i in range(lo, hi)]))
        if r.status != 200:
            raise AssertionError("loading %s: %r" % (table, r))


# ---------------------------------------------------------------------------
# Two processes, one database

class Follower(threading.Thread):
    """Follows document_deltas through one server while the imports run, the way an
    export connector does, into a copy of the tables. A commit that becomes visible
    with a timestamp below a cursor already read (commit order != timestamp order)
    never reaches the copy."""

    def __init__(self, test, server, cursor):
        super().__init__(daemon=True)
        self.test, self.server, self.cursor = test, server, cursor
        self.copy = {}
        self.stop_event = threading.Event()
        self.error = None

    def read(self):
        values, self.cursor = deltas_since(self.test, self.server, self.cursor)
        for v in values:
            self.copy[v["_id"]] = v

    def run(self):
        try:
            while not self.stop_event.is_set():
                self.read()
                time.sleep(0.02)
            self.read()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e


@POSTGRES_ONLY
class TwoProcessTests(ServerTestCase):
    CLIENTS = 8
    KEYS = 400          # dedup keys shared by every client
    PER_BATCH = 100     # dedup records and appends per request
    BATCHES = scaled(16, 8)

    def request(self, tid, seq, rnd):
        """(tag, dedup keys, appends, tables, messages) of one import. Every request
        appends at least one document: those are never changed again, so the change
        feed shows each commit's timestamp through them."""
        tag = "c%d-%d" % (tid, seq)
        kind = seq % 3  # dedup + one append, appends only, or both in full
        keys = rnd.sample(range(self.KEYS), self.PER_BATCH) if kind != 1 else []
        appends = self.PER_BATCH if kind != 0 else 1
        tables, msgs = {"ap": append_stream()}, []
        if keys:
            tables["dd"] = dedup_stream(["k"])
            msgs += messages("dd", [{"k": k, "b": tag} for k in keys])
        msgs += messages("ap", [{"b": tag, "j": j} for j in range(appends)])
        return tag, keys, appends, tables, msgs

    def client(self, tid, server, acked, failures):
        rnd = random.Random(tid)
        for seq in range(self.BATCHES):
            tag, keys, appends, tables, msgs = self.request(tid, seq, rnd)
            try:
                r = server.import_records(tables, msgs)
            except (OSError, http.client.HTTPException) as e:
                failures.append("%s on port %s: %r" % (tag, server.port, e))
                continue
            if r.status != 200:
                failures.append("%s on port %s: %r" % (tag, server.port, r))
                continue
            acked.append((tag, keys, appends, r.json()))

    def test_concurrent_dedup_and_appends_through_two_processes(self):
        one = self.server
        two = self.new_server(database_of=one).start()
        self.assertOk(one.add_indexes({"dd": [["k"]]}))
        two.wait_indexes_ready(["dd"])
        start = first_cursor(self, one)
        follower = Follower(self, one, start)
        follower.start()

        acked, failures = [], []
        servers = (one, two)
        threads = [threading.Thread(target=self.client,
                                    args=(t, servers[t % 2], acked, failures))
                   for t in range(self.CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout(300))
        follower.stop_event.set()
        follower.join(timeout(120))
        self.assertEqual(failures, [], "imports that did not answer 200")
        self.assertIsNone(follower.error)
        self.assertTrue(one.running() and two.running())

        written = {}   # key -> tags of the batches that wrote it
        appended = set()
        records = inserted = replaced = 0
        for tag, keys, appends, counts in acked:
            for k in keys:
                written.setdefault(k, set()).add(tag)
            appended.update((tag, j) for j in range(appends))
            records += len(keys) + appends
            inserted += counts["inserted"]
            replaced += counts["replaced"]
            self.assertEqual(counts["deleted"], 0)
        # each key is inserted once, by whichever process came first; the rest replace
        self.assertEqual(inserted, len(written) + len(appended), "inserted counts")
        self.assertEqual(replaced, records - inserted, "replaced counts")

        # the stored data, as an operator sees it (`tributary export`, through process two)
        dd = two.export("dd")
        self.assertEqual(sorted(d["k"] for d in dd), sorted(written),
                         "not exactly one document per key")
        ap = two.export("ap")
        self.assertEqual(len(ap), len(appended))
        self.assertEqual({(d["b"], d["j"]) for d in ap}, appended)

        # the change feed, read again from the start through process one
        values, _ = deltas_since(self, one, start)
        commit_ts = self.check_commit_timestamps(values, acked)
        latest = {v["_id"]: v for v in values}
        self.assertEqual(set(latest), {d["_id"] for d in dd + ap},
                         "document_deltas and the tables disagree")
        for d in dd:
            v = latest[d["_id"]]
            self.assertEqual((v["k"], v["b"]), (d["k"], d["b"]))
            # the version that stays is the one of the latest commit: timestamp order
            # is commit order, across processes too
            last = max(written[d["k"]], key=lambda t: commit_ts[t])
            self.assertEqual(d["b"], last, "key %s: the last commit did not win" % d["k"])
            self.assertEqual(v["_ts"], commit_ts[last])
        self.assertEqual({i: (v["_ts"], v["b"]) for i, v in follower.copy.items()},
                         {i: (v["_ts"], v["b"]) for i, v in latest.items()},
                         "a reader following document_deltas during the imports missed "
                         "commits (a commit got a timestamp below one already read)")

    def check_commit_timestamps(self, values, acked):
        """Every acknowledged batch is one commit with a timestamp of its own; returns
        {batch tag: timestamp} (seen through the appends, which nothing changes)."""
        last = 0
        stamps = {}
        for v in values:
            self.assertGreaterEqual(v["_ts"], last, "document_deltas out of commit order")
            last = v["_ts"]
            self.assertFalse(v["_deleted"])
            if v["_table"] == "ap":
                stamps.setdefault(v["b"], set()).add(v["_ts"])
        self.assertEqual(sorted(stamps), sorted(a[0] for a in acked),
                         "batches missing from document_deltas")
        for tag, ts in stamps.items():
            self.assertEqual(len(ts), 1, "batch %s has several timestamps" % tag)
        commit_ts = {tag: ts.pop() for tag, ts in stamps.items()}
        self.assertEqual(len(set(commit_ts.values())), len(commit_ts),
                         "two commits (of two processes) share a timestamp")
        return commit_ts


# ---------------------------------------------------------------------------
# A backfill whose process dies

@POSTGRES_ONLY
class KilledBackfillTests(ServerTestCase):
    N = scaled(200000)

    @classmethod
    def prepare_server(cls, server):
        load(server, "big", cls.N)

    def test_backfill_of_a_killed_process_finishes_in_the_other(self):
        one = self.server
        two = self.new_server(database_of=one).start()
        self.assertOk(one.add_indexes({"big": [["k"]]}))
        r = one.indexes_ready(["big"])
        one.kill()
        backfilling = r.status == 200 and r.json()["indexesReady"] is False
        self.assertOk(r)

        two.wait_indexes_ready(["big"], limit=timeout(180))
        n = self.N
        r = two.import_records({"big": dedup_stream(["k"])},
                               messages("big", [{"k": 5, "v": "new"}, {"k": n, "v": "added"}]))
        self.assertCounts(r, inserted=1, replaced=1, deleted=0)
        # keys all over the table, the last ones too: the index covers every document
        sample = sorted(set(range(0, n, max(1, n // 500))) | set(range(n - 50, n)))
        r = two.import_records({"big": dedup_stream(["k"])},
                               messages("big", [{"k": k, "v": "again"} for k in sample]))
        self.assertCounts(r, messages=len(sample), inserted=0, replaced=len(sample), deleted=0)
        docs = two.export("big")
        self.assertEqual(len(docs), n + 1)
        self.assertEqual(len({d["k"] for d in docs}), n + 1)

        # the killed process comes back and sees the finished index
        one.start()
        self.assertTrue(self.assertJsonOk(one.indexes_ready(["big"]))["indexesReady"])
        r = one.import_records({"big": dedup_stream(["k"])},
                               messages("big", [{"k": n, "v": "from one"}]))
        self.assertCounts(r, inserted=0, replaced=1)
        if not backfilling:
            self.skipTest("the backfill of %d documents ended before the kill" % n)


# ---------------------------------------------------------------------------
# Database faults during imports

class FaultClients:
    """Clients importing batches until stopped: on each of the given servers, one
    appending fresh keys to `ap` and one upserting keys of `dd`. Every outcome is
    kept: 200, 503 DatabaseUnavailable, a dropped connection, anything else."""

    BATCH = 200

    def __init__(self, servers):
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.acked = []        # (client, table, keys, started) of 200 answers
        self.unknown = []      # (table, keys) of batches that failed as allowed
        self.failures = []
        self.threads = []
        for i, server in enumerate(servers):
            for table in ("ap", "dd"):
                self.threads.append(threading.Thread(
                    target=self.client, args=(server, table, 2 * i + (table == "dd"))))

    def client(self, server, table, cid):
        seq = 0
        while not self.stop_event.is_set():
            if table == "ap":
                keys = list(range((cid * 10 ** 6 + seq) * self.BATCH,
                                  (cid * 10 ** 6 + seq + 1) * self.BATCH))
                stream = append_stream()
            else:
                keys = [(cid * 10 ** 6 + seq * 7 + j) % 5000 for j in range(self.BATCH)]
                stream = dedup_stream(["k"])
            seq += 1
            data = [{"k": k, "c": cid, "s": seq} for k in keys]
            started = time.monotonic()
            try:
                r = server.import_records({table: stream}, messages(table, data),
                                          timeout_s=timeout(60))
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.unknown.append((table, keys))
                time.sleep(0.02)
                continue
            with self.lock:
                if r.status == 200:
                    self.acked.append((cid, table, keys, started))
                elif r.status == 503 and _error_code(r) == "DatabaseUnavailable":
                    self.unknown.append((table, keys))
                else:
                    self.failures.append("port %s: %r" % (server.port, r))
                    return
            time.sleep(0.01 if r.status == 200 else 0.05)

    def recovered(self, moment, batches):
        """Every client had `batches` batches acknowledged that it sent after moment."""
        with self.lock:
            per_client = [0] * len(self.threads)
            for cid, _, _, started in self.acked:
                if started >= moment:
                    per_client[cid] += 1
        return min(per_client) >= batches

    def wait(self, what, condition, limit):
        deadline = time.monotonic() + limit
        while not condition():
            if self.failures or time.monotonic() > deadline:
                raise AssertionError("%s: not within %ds (failures: %s)"
                                     % (what, limit, self.failures))
            time.sleep(0.05)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout(120))


def _error_code(resp):
    try:
        return resp.json().get("code")
    except ValueError:
        return None


@POSTGRES_ONLY
class DatabaseFaultTests(ServerTestCase):

    def through_fault(self, fault):
        """Runs fault(server) while 4 clients import through two processes; then
        checks that every client recovered and what the tables hold. A database of
        its own for each test: the class server's is left alone."""
        one = self.new_server().start()
        two = self.new_server(database_of=one).start()
        self.assertOk(one.add_indexes({"dd": [["k"]]}))
        one.wait_indexes_ready(["dd"])
        with FaultClients([one, two]) as clients:
            clients.wait("first imports", lambda: clients.recovered(0, 2), timeout(60))
            fault(one)
            after = time.monotonic()
            clients.wait("every client succeeding after the fault",
                         lambda: clients.recovered(after, 3), timeout(60))
        self.assertEqual(clients.failures, [], "answers other than 200 or 503 "
                                               "DatabaseUnavailable")
        for server in (one, two):
            self.assertTrue(server.running(), "a server died (port %s)" % server.port)
            self.assertOk(server.request("GET", "/version"))
            # the read side reconnects too (a pooled connection that died with the
            # fault may fail one request with 503 when it is next used)
            self.eventually_ok(lambda: server.indexes_ready(["dd"]))
            self.eventually_ok(lambda: server.request(
                "GET", "/api/list_snapshot?tableName=ap&format=convex_json"))
        self.check_tables(one, clients)

    def eventually_ok(self, call, limit=None):
        deadline = time.monotonic() + (limit or timeout(30))
        while True:
            r = call()
            if r.status == 200 or time.monotonic() > deadline:
                return self.assertJsonOk(r)
            self.assertError(r, 503, "DatabaseUnavailable")
            time.sleep(0.05)

    def check_tables(self, server, clients):
        ap = [(d["k"], d["c"]) for d in server.export("ap")]
        self.assertEqual(len(ap), len(set(ap)), "an append stored twice")
        ap_keys = {k for k, _ in ap}
        dd = server.export("dd")
        dd_keys = [d["k"] for d in dd]
        self.assertEqual(len(dd_keys), len(set(dd_keys)), "two documents with one key")
        for _, table, keys, _ in clients.acked:
            have = ap_keys if table == "ap" else set(dd_keys)
            missing = [k for k in keys if k not in have]
            self.assertEqual(missing, [], "an acknowledged batch of %s is missing" % table)
        for table, keys in clients.unknown:
            if table == "ap":  # a failed batch is stored entirely or not at all
                present = sum(1 for k in keys if k in ap_keys)
                self.assertIn(present, (0, len(keys)), "a failed batch is half stored")
        for doc in dd:
            self.assertEqual(set(user_fields(doc)), {"k", "c", "s"})

    def test_postgres_restart_during_imports(self):
        self.through_fault(lambda server: restart_database("fast"))

    def test_connections_dropped_during_imports(self):
        self.through_fault(lambda server: server.backend.terminate_connections())


# ---------------------------------------------------------------------------
# Index entries of retired index instances

@POSTGRES_ONLY
class RetiredEntriesTests(ServerTestCase):

    def entries(self, url):
        return int(psql(url, "SELECT count(*) FROM tributary.entries"))

    def wait_entries(self, url, want):
        deadline = time.monotonic() + timeout(60)
        while self.entries(url) != want:
            self.assertLess(time.monotonic(), deadline,
                            "entries left: %d, want %d" % (self.entries(url), want))
            time.sleep(0.1)

    def test_entries_of_a_cleared_table_and_a_replaced_index_are_deleted(self):
        server = self.new_server().start()
        url = server.backend.url()
        self.assertOk(server.add_indexes({"p": [["k"]]}))
        server.wait_indexes_ready(["p"])
        by_k = {"p": dedup_stream(["k"])}
        self.assertCounts(server.import_records(
            by_k, messages("p", [{"k": i, "v": -i} for i in range(300)])), inserted=300)
        self.assertEqual(self.entries(url), 300)

        self.assertOk(server.clear_tables(["p"]))
        self.assertCounts(server.import_records(
            by_k, messages("p", [{"k": i, "v": -i} for i in range(5)])), inserted=5)
        self.wait_entries(url, 5)  # the 300 of the cleared generation are gone

        self.assertOk(server.add_indexes({"p": [["v"]]}))  # another key: a new instance
        server.wait_indexes_ready(["p"])
        self.wait_entries(url, 5)  # the backfill's 5, not the old index's
        by_v = {"p": dedup_stream(["v"])}
        self.assertCounts(server.import_records(
            by_v, messages("p", [{"k": 100, "v": -3}, {"k": 101, "v": 7}])),
            inserted=1, replaced=1)
        docs = server.export("p")
        self.assertEqual(sorted((d["k"], d["v"]) for d in docs),
                         [(0, 0), (1, -1), (2, -2), (4, -4), (100, -3), (101, 7)])


    def test_instances_that_share_a_range_of_the_index_keep_apart(self):
        """The entries index holds an instance's number in 24 bits, so instances 2^24
        apart share a range of it. Two tables with the same keys and such instances:
        each finds only its own documents, and reclaiming one's entries leaves the
        other's."""
        server = self.new_server().start()
        url = server.backend.url()

        def ix(table):
            return int(psql(url, "SELECT p.ix FROM tributary.pk_indexes p JOIN"
                                 " tributary.tables t ON t.number = p.table_number"
                                 " WHERE t.name = '%s'" % table))

        def entries(instance):
            return int(psql(url, "SELECT count(*) FROM tributary.entries WHERE ix = %d"
                                 % instance))

        self.assertOk(server.add_indexes({"a": [["k"]]}))
        server.wait_indexes_ready(["a"])
        first = ix("a")
        psql(url, "UPDATE tributary.meta SET value = %d WHERE key = 'next_ix'"
             % (first + (1 << 24)))
        self.assertOk(server.add_indexes({"b": [["k"]]}))
        server.wait_indexes_ready(["b"])
        self.assertEqual(ix("b"), first + (1 << 24))

        def put(table, v, **counts):
            self.assertCounts(server.import_records(
                {table: dedup_stream(["k"])},
                messages(table, [{"k": i, "v": v} for i in range(100)])), **counts)

        put("a", "a1", inserted=100)
        put("b", "b1", inserted=100)  # the same keys: not a's documents
        put("a", "a2", replaced=100)
        put("b", "b2", replaced=100)
        self.assertEqual({d["v"] for d in server.export("a")}, {"a2"})
        self.assertEqual({d["v"] for d in server.export("b")}, {"b2"})

        self.assertOk(server.clear_tables(["a"]))
        deadline = time.monotonic() + timeout(60)
        while entries(first):
            self.assertLess(time.monotonic(), deadline, "a's old entries are still there")
            time.sleep(0.1)
        self.assertEqual(entries(first + (1 << 24)), 100)
        put("b", "b3", replaced=100)
        put("a", "a3", inserted=100)
        self.assertEqual(len(server.export("b")), 100)


# ---------------------------------------------------------------------------
# Failures among statements sent ahead

@POSTGRES_ONLY
class SentAheadFailureTests(ServerTestCase):
    CLIENTS = 3   # per table
    BATCHES = scaled(12, 6)

    def client(self, server, table, cid, results):
        for seq in range(self.BATCHES):
            keys = [(cid * 1000 + seq) * 10 + j for j in range(10)]
            r = server.import_records({table: append_stream()},
                                      messages(table, [{"k": k} for k in keys]))
            results.append((table, keys, r))

    def test_a_failed_change_log_row_fails_only_its_request(self):
        server = self.new_server().start()
        url = server.backend.url()
        for table in ("good", "bad"):
            self.assertCounts(server.import_records(
                {table: append_stream()}, messages(table, [{"k": -1}])), inserted=1)
        bad = psql(url, "SELECT tablet FROM tributary.tables WHERE name = 'bad'")
        psql(url, "CREATE FUNCTION tributary.refuse() RETURNS trigger LANGUAGE plpgsql"
                  " AS $$BEGIN RAISE EXCEPTION 'refused by the test'; END$$;"
                  " CREATE TRIGGER refuse BEFORE INSERT ON tributary.changes FOR EACH ROW"
                  " WHEN (NEW.tablet = %s) EXECUTE FUNCTION tributary.refuse()" % bad)
        results = []
        threads = [threading.Thread(target=self.client,
                                    args=(server, table, 10 * (table == "bad") + i, results))
                   for table in ("good", "bad") for i in range(self.CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout(120))
        psql(url, "DROP TRIGGER refuse ON tributary.changes")

        stored = {t: sorted(d["k"] for d in server.export(t)) for t in ("good", "bad")}
        want_good = [-1]
        for table, keys, r in results:
            if table == "good":
                self.assertCounts(r, inserted=len(keys))
                want_good += keys
            else:
                self.assertError(r, 500, "StorageError", mentions=["refused by the test"])
        self.assertEqual(len(results), 2 * self.CLIENTS * self.BATCHES)
        self.assertEqual(stored["good"], sorted(want_good))
        self.assertEqual(stored["bad"], [-1], "a failed request left documents")
        self.assertCounts(server.import_records(
            {"bad": append_stream()}, messages("bad", [{"k": 5}])), inserted=1)
        self.assertEqual(sorted(d["k"] for d in server.export("bad")), [-1, 5])


# ---------------------------------------------------------------------------
# A COMMIT whose answer is lost

@POSTGRES_ONLY
class LostCommitAnswerTests(ServerTestCase):

    @staticmethod
    def set_standby(names):
        psql(Config.database_url, "ALTER SYSTEM SET synchronous_standby_names = " + names)
        psql(Config.database_url, "SELECT pg_reload_conf()")

    def import_in_background(self, server, keys):
        results = []
        t = threading.Thread(target=lambda: results.append(server.import_records(
            {"t": append_stream()}, messages("t", [{"k": k} for k in keys]))))
        t.start()
        return t, results

    def test_a_commit_that_went_through_is_answered_200_when_its_answer_was_lost(self):
        # PostgreSQL waits to answer a COMMIT while a synchronous standby that never
        # comes is configured; the commit is already durable on the server then.
        # Ending the writer's session in that wait loses the answer, not the commit.
        server = self.new_server().start()
        url = server.backend.url()
        db = psql(url, "SELECT current_database()")
        self.assertCounts(server.import_records(
            {"t": append_stream()}, messages("t", [{"k": 0}])), inserted=1)
        stored = [0]
        self.set_standby("'tributary_test_nobody'")
        try:
            # the setting takes effect a little after the reload: imports that commit
            # before it are answered as usual, and the next one is tried
            deadline = time.monotonic() + timeout(30)
            pid = ""
            while not pid and time.monotonic() < deadline:
                keys = list(range(stored[-1] + 1, stored[-1] + 6))
                t, results = self.import_in_background(server, keys)
                while not pid and t.is_alive() and time.monotonic() < deadline:
                    pid = psql(url, "SELECT pid FROM pg_stat_activity WHERE datname = '%s'"
                                    " AND wait_event = 'SyncRep'" % db)
                    time.sleep(0.02)
                if not pid:
                    t.join(timeout(30))
                    self.assertCounts(results[0], inserted=5)
                    stored += keys
            self.assertTrue(pid, "no import's COMMIT waited for the standby")
            psql(url, "SELECT pg_terminate_backend(%s)" % pid)
        finally:
            self.set_standby("DEFAULT")
        t.join(timeout(30))
        self.assertEqual(len(results), 1)
        self.assertCounts(results[0], inserted=5)
        stored += keys
        self.assertIn("the transaction had committed", server.stderr_text())
        self.assertEqual(sorted(d["k"] for d in server.export("t")), stored)
        self.assertCounts(server.import_records(
            {"t": append_stream()}, messages("t", [{"k": -1}])), inserted=1)
        self.assertEqual(sorted(d["k"] for d in server.export("t")), [-1] + stored)


# ---------------------------------------------------------------------------
# The writer's tables cache

@POSTGRES_ONLY
class WriterCacheTests(ServerTestCase):

    def keys(self, server, table):
        return sorted(d["k"] for d in server.export(table))

    def test_what_another_process_changed_shows_at_the_next_import(self):
        one = self.new_server().start()
        two = self.new_server(database_of=one).start()
        ap = {"t": append_stream()}
        self.assertCounts(one.import_records(ap, messages("t", [{"k": 1}])), inserted=1)
        self.assertCounts(one.import_records(ap, messages("t", [{"k": 2}])), inserted=1)

        self.assertOk(two.clear_tables(["t"]))  # a new generation
        self.assertCounts(one.import_records(ap, messages("t", [{"k": 3}])), inserted=1)
        self.assertEqual(self.keys(one, "t"), [3], "written to the cleared generation")

        # ids come from the table's sequence: a stale one would repeat an id (a 500)
        self.assertCounts(two.import_records(ap, messages("t", [{"k": 4}])), inserted=1)
        self.assertCounts(one.import_records(ap, messages("t", [{"k": 5}])), inserted=1)
        self.assertEqual(self.keys(two, "t"), [3, 4, 5])

        self.assertOk(two.add_indexes({"t": [["k"]]}))
        two.wait_indexes_ready(["t"])
        by_k = {"t": dedup_stream(["k"])}
        self.assertCounts(one.import_records(by_k, messages("t", [{"k": 3, "v": 1}])),
                          replaced=1)

        self.assertOk(two.add_indexes({"t": [["v"]]}))  # replaces the index
        two.wait_indexes_ready(["t"])
        self.assertError(one.import_records(by_k, messages("t", [{"k": 4, "v": 2}])),
                         400, "PrimaryKeyMismatch")
        by_v = {"t": dedup_stream(["v"])}
        self.assertCounts(one.import_records(by_v, messages("t", [{"k": 9, "v": 1}])),
                          replaced=1)
        self.assertEqual(self.keys(two, "t"), [4, 5, 9])

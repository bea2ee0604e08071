"""A database written by the first storage format is upgraded when a server starts on it.

Version 2 of both engines stores the change log as one row per commit and generation
(version 1: a row per document); PostgreSQL's version 2 also keeps primary key index
entries in a table of their own with 8-byte key digests (version 1: columns of
`documents`, 16-byte digests). A user who upgrades tributary keeps their data: the test writes
with the current server, turns its database back into version 1 exactly as the first
release laid it out, starts the server again and checks what a user would — the change
feed reads the same, existing dedup keys are still found (no duplicates), and the
database says the current version, 3 on both (SQLite: index entries that imports wrote
since the last merge wait in `pk_recent`; PostgreSQL: the entries index holds one bigint
per entry instead of `(ix, kh)`; version 2 had neither). Runs on both backends.
"""
import sqlite3

import unittest

from harness import (Config, ServerTestCase, append_stream, deltas_since, dedup_stream,
                     first_cursor, messages, psql)

# PostgreSQL: back to version 1's change log and index entries in columns of documents,
# with 16-byte digests (the first 8 bytes are what version 2 keeps; the other 8 are
# arbitrary here, as nothing reads them).
PG_TO_VERSION_1 = """
BEGIN;
ALTER TABLE tributary.changes RENAME TO changes_v2;
ALTER INDEX tributary.changes_pkey RENAME TO changes_v2_pkey;
CREATE TABLE tributary.changes(ts bigint NOT NULL, tablet bigint NOT NULL, id bytea NOT NULL,
  deleted boolean NOT NULL, PRIMARY KEY(ts, tablet, id));
INSERT INTO tributary.changes
  SELECT c.ts, c.tablet, u.id, u.deleted
  FROM tributary.changes_v2 c, unnest(c.ids, c.deleted) u(id, deleted);
DROP TABLE tributary.changes_v2;
ALTER TABLE tributary.documents ADD COLUMN ix bigint, ADD COLUMN key bytea,
  ADD COLUMN kh bytea;
UPDATE tributary.documents d
  SET ix = e.ix, key = e.key,
      kh = decode(lpad(to_hex(e.kh), 16, '0') || 'a5a5a5a5a5a5a5a5', 'hex')
  FROM tributary.entries e WHERE e.tablet = d.tablet AND e.id = d.id;
CREATE INDEX documents_by_key ON tributary.documents(ix, kh) WHERE ix IS NOT NULL;
DROP TABLE tributary.entries;
DROP TABLE tributary.dead_indexes;
UPDATE tributary.meta SET value = 1 WHERE key = 'schema_version';
COMMIT;
"""

# PostgreSQL: back to version 2's index of entries on (ix, kh).
PG_TO_VERSION_2 = """
BEGIN;
DROP INDEX tributary.entries_by_slot;
CREATE INDEX entries_by_key ON tributary.entries(ix, kh);
UPDATE tributary.meta SET value = 2 WHERE key = 'schema_version';
COMMIT;
"""


def sqlite_to_version_1(path):
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("BEGIN")
        rows = con.execute("SELECT ts, tablet, ids, deleted FROM changes").fetchall()
        con.execute("DROP TABLE changes")
        con.execute("CREATE TABLE changes(ts INTEGER NOT NULL, tablet INTEGER NOT NULL,"
                    " id BLOB NOT NULL, deleted INTEGER NOT NULL,"
                    " PRIMARY KEY(ts, tablet, id)) WITHOUT ROWID")
        for ts, tablet, ids, deleted in rows:
            for i, flag in enumerate(deleted):
                con.execute("INSERT INTO changes VALUES (?, ?, ?, ?)",
                            (ts, tablet, ids[16 * i:16 * i + 16], flag))
        con.execute("INSERT INTO pk_entries SELECT ix, key, doc FROM pk_recent")
        con.execute("DROP TABLE pk_recent")
        con.execute("UPDATE meta SET value = 1 WHERE key = 'schema_version'")
        con.execute("COMMIT")
        return con.execute("SELECT count(*) FROM changes").fetchone()[0]
    finally:
        con.close()


def sqlite_version(path):
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    finally:
        con.close()


class SchemaUpgradeTests(ServerTestCase):

    def to_version_1(self, server):
        """Rewrites the stopped server's database as version 1; returns its change-log
        row count (one per document change there)."""
        if Config.backend == "postgres":
            url = server.backend.url()
            psql(url, PG_TO_VERSION_1)
            return int(psql(url, "SELECT count(*) FROM tributary.changes"))
        return sqlite_to_version_1(server.data_dir + "/tributary.db")

    def version(self, server):
        if Config.backend == "postgres":
            return int(psql(server.backend.url(), "SELECT value FROM tributary.meta"
                                                  " WHERE key = 'schema_version'"))
        return sqlite_version(server.data_dir + "/tributary.db")

    def test_a_version_1_database_is_upgraded_when_a_server_starts(self):
        server = self.new_server().start()
        start = first_cursor(self, server)
        self.assertOk(server.add_indexes({"people": [["k"]]}))
        server.wait_indexes_ready(["people"])
        people = {"people": dedup_stream(["k"])}
        self.assertCounts(server.import_records(
            dict(people, log=append_stream()),
            messages("people", [{"k": i, "v": "a"} for i in range(40)])
            + messages("log", [{"n": i} for i in range(15)])), inserted=55)
        self.assertCounts(server.import_records(
            people, messages("people", [{"k": i, "v": "b"} for i in range(0, 40, 4)])),
            replaced=10)
        self.assertCounts(server.import_records(
            people, messages("people", [{"k": 3, "_ab_cdc_deleted_at": "now"}])), deleted=1)
        before, _ = deltas_since(self, server, start)
        self.assertEqual(len(before), 40 + 15)
        server.stop()

        self.assertEqual(self.to_version_1(server), 55 + 10 + 1)
        server.start()
        self.assertEqual(self.version(server), 3)
        after, _ = deltas_since(self, server, start)
        self.assertEqual(after, before)
        # the index survived the upgrade: existing keys are found, not duplicated
        self.assertCounts(server.import_records(
            people, messages("people", [{"k": 8, "v": "c"}, {"k": 39, "v": "c"},
                                        {"k": 3, "v": "back"}, {"k": 100, "v": "new"}])),
            inserted=2, replaced=2)
        docs = server.export("people")
        self.assertEqual(sorted(d["k"] for d in docs), sorted(set(range(40)) | {100}))
        self.assertEqual({d["k"]: d["v"] for d in docs if d["k"] in (8, 39, 3)},
                         {8: "c", 39: "c", 3: "back"})

    @unittest.skipUnless(Config.backend == "postgres", "PostgreSQL backend only")
    def test_a_postgres_version_2_database_gets_the_slot_index(self):
        server = self.new_server().start()
        url = server.backend.url()
        self.assertOk(server.add_indexes({"people": [["k"]]}))
        server.wait_indexes_ready(["people"])
        people = {"people": dedup_stream(["k"])}
        self.assertCounts(server.import_records(
            people, messages("people", [{"k": i, "v": "a"} for i in range(50)])), inserted=50)
        server.stop()
        psql(url, PG_TO_VERSION_2)
        server.start()
        self.assertEqual(self.version(server), 3)
        self.assertEqual(psql(url, "SELECT string_agg(indexname, ',' ORDER BY indexname)"
                                   " FROM pg_indexes WHERE tablename = 'entries'"),
                         "entries_by_slot")
        self.assertCounts(server.import_records(
            people, messages("people", [{"k": i, "v": "b"} for i in range(40, 60)])),
            inserted=10, replaced=10)
        self.assertEqual(len(server.export("people")), 60)


/*
 * sqlite.c — the SQLite engine behind store.h.
 *
 * One database file, <data_dir>/tributary.db, in WAL mode with synchronous=FULL, so a
 * commit is on disk when COMMIT returns and readers never wait for the writer.
 *
 * Writes: one writer connection, touched only by the thread that currently leads the
 * write queue (wqueue.h). Every write (an import, a clear, an index change, a background
 * step) is a job on that queue. A caller enqueues its job; if no leader is running it
 * becomes the leader, takes every job waiting, runs them one after the other in one
 * transaction, commits once — one fsync for the whole group — and wakes every caller
 * with its own result. Jobs that arrive meanwhile wait for the next leader. A job that
 * fails fails alone: it checks before writing, and one that fails after writing makes
 * the leader roll back and run the others again (see group_try). A COMMIT that fails
 * fails every job of its group.
 *
 * Every job that changes documents gets its own commit timestamp (int64 ns,
 * max(clock, last + 1)); the last one is saved in the same transaction, so after a restart
 * timestamps continue above it even if the clock went back.
 *
 * Every import also widens the inferred shapes of the tables it writes (shape.h): the
 * batch brings small shapes (or the caller scans its texts into them) before queueing,
 * the job merges them into the cached table shapes, and the group saves the changed ones
 * before it commits.
 *
 * Reads (indexes_ready, export, the streaming-export API) use a pool of read-only
 * connections, one read transaction per call; in readonly mode
 * (the export CLI, possibly next to a running server) there is no writer and no
 * background thread. The background thread (index backfill, space reclaim: backfill.c)
 * submits its steps to the same queue.
 *
 * Schema, the SQL behind each operation, and what is kept for export: docs/storage.md.
 */
#include "store/store_impl.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "json/emit.h"
#include "model/docid.h"
#include "store/backfill.h"
#include "store/batch.h"
#include "store/bgthread.h"
#include "store/changelog.h"
#include "store/keys.h"
#include "store/shape.h"
#include "store/snapcache.h"
#include "store/wqueue.h"
#include "util/arena.h"
#include "util/buf.h"
#include "util/xalloc.h"

#define SQ_SCHEMA_VERSION 3
#define SQ_BUSY_TIMEOUT_MS 5000
#define SQ_RECLAIM_INTERVAL_S 30 /* background pass when nothing woke it earlier */

/* ---- schema ---- */

/* The change log: per commit and generation, the ids it wrote or deleted (changelog.h). */
#define SQ_CHANGES_TABLE                                                                   \
    "CREATE TABLE IF NOT EXISTS changes("                                                  \
    "  ts INTEGER NOT NULL,"                                                               \
    "  tablet INTEGER NOT NULL,"                                                           \
    "  ids BLOB NOT NULL,"     /* n ids of 16 bytes, in id order */                        \
    "  deleted BLOB NOT NULL," /* n bytes, 1: ids[i] was deleted */                        \
    "  PRIMARY KEY(ts, tablet)"                                                            \
    ")"

static const char sq_schema[] =
    "CREATE TABLE IF NOT EXISTS meta("
    "  key TEXT PRIMARY KEY,"
    "  value INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS tables("
    "  number INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  tablet INTEGER NOT NULL,"
    "  last_creation_time REAL NOT NULL,"
    "  next_seq INTEGER NOT NULL"
    ");"
    "CREATE TABLE IF NOT EXISTS tablets("
    "  id INTEGER PRIMARY KEY,"
    "  table_number INTEGER NOT NULL,"
    "  created_ts INTEGER NOT NULL,"
    "  dropped_ts INTEGER,"
    "  doc_count INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX IF NOT EXISTS tablets_dropped ON tablets(dropped_ts)"
    "  WHERE dropped_ts IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS documents("
    "  tablet INTEGER NOT NULL,"
    "  id BLOB NOT NULL,"
    "  ts INTEGER NOT NULL,"
    "  creation_time REAL NOT NULL,"
    "  value TEXT NOT NULL,"
    "  UNIQUE(tablet, id)"
    ");"
    "CREATE TABLE IF NOT EXISTS history("
    "  tablet INTEGER NOT NULL,"
    "  id BLOB NOT NULL,"
    "  valid_from INTEGER NOT NULL,"
    "  valid_to INTEGER NOT NULL,"
    "  creation_time REAL NOT NULL,"
    "  value TEXT NOT NULL"
    ");"
    "CREATE INDEX IF NOT EXISTS history_by_end ON history(valid_to);"
    SQ_CHANGES_TABLE ";"
    "CREATE TABLE IF NOT EXISTS pk_indexes("
    "  table_number INTEGER PRIMARY KEY,"
    "  ix INTEGER NOT NULL UNIQUE,"
    "  fields TEXT NOT NULL,"
    "  state TEXT NOT NULL CHECK(state IN ('ready', 'backfilling')),"
    "  cursor BLOB,"
    "  end_id BLOB"
    ");"
    "CREATE TABLE IF NOT EXISTS pk_entries("
    "  ix INTEGER NOT NULL,"
    "  key BLOB NOT NULL,"
    "  doc INTEGER NOT NULL,"
    "  PRIMARY KEY(ix, key, doc)"
    ") WITHOUT ROWID;"
    /* entries written by imports since the last merge into pk_entries (backfill.h) */
    "CREATE TABLE IF NOT EXISTS pk_recent("
    "  ix INTEGER NOT NULL,"
    "  key BLOB NOT NULL,"
    "  doc INTEGER NOT NULL,"
    "  PRIMARY KEY(ix, key, doc)"
    ") WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS dead_indexes(ix INTEGER PRIMARY KEY);"
    "CREATE TABLE IF NOT EXISTS shapes("
    "  tablet INTEGER PRIMARY KEY,"
    "  shape TEXT NOT NULL"
    ");"
    "INSERT OR IGNORE INTO meta(key, value) VALUES"
    "  ('schema_version', 3), ('last_ts', 0), ('next_ix', 1);";

/* ---- prepared statements, one cache per connection ---- */

enum {
    S_BEGIN_WRITE,
    S_BEGIN_READ,
    S_COMMIT,
    S_ROLLBACK,
    S_META_GET,
    S_META_SET,
    S_TABLE_GET,
    S_TABLE_NEXT_NUMBER,
    S_TABLE_NEW,
    S_TABLE_SAVE,
    S_TABLE_SWAP,
    S_TABLET_NEW,
    S_TABLET_GET,
    S_TABLET_COUNT,
    S_TABLET_DROP,
    S_INDEX_GET,
    S_INDEX_PUT,
    S_INDEX_RENEW,
    S_INDEX_DEAD,
    S_DOC_INSERT,
    S_DOC_MATCH,
    S_DOC_SAVE,
    S_DOC_REPLACE,
    S_DOC_DELETE,
    S_ENTRY_ADD,
    S_ENTRY_DEL,
    S_RECENT_DEL,
    S_RECENT_COUNT,
    S_INDEXED_COUNT,
    S_CHANGE_ROW,
    S_READ_INDEX_STATE,
    S_READ_DOCS,
    S_SHAPE_GET,
    S_SHAPE_PUT,
    S_SHAPE_DEL,
    S_READ_TABLE_NEXT,
    S_READ_TABLE_NUMBER,
    S_READ_TABLET_AT,
    S_READ_SNAP_DOCS,
    S_READ_SNAP_OLD,
    S_READ_SNAP_ENDED,
    S_READ_SNAP_AT,
    S_READ_CHANGES,
    S_READ_DROPS,
    S_READ_DOC,
    S_READ_TABLET_IDS,
    S_READ_TABLET_TABLE,
    S_READ_SHAPES,
    S_READ_STATS,
    S_NSTMT
};

static const char *const sq_sql[S_NSTMT] = {
    [S_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [S_BEGIN_READ] = "BEGIN",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [S_META_SET] = "UPDATE meta SET value = ?2 WHERE key = ?1",
    [S_TABLE_GET] = "SELECT number, tablet, last_creation_time, next_seq FROM tables"
                    " WHERE name = ?1",
    [S_TABLE_NEXT_NUMBER] = "SELECT coalesce(max(number), 10000) + 1 FROM tables",
    [S_TABLE_NEW] = "INSERT INTO tables(number, name, tablet, last_creation_time, next_seq)"
                    " VALUES (?1, ?2, ?3, 0, 1)",
    [S_TABLE_SAVE] = "UPDATE tables SET last_creation_time = ?2, next_seq = ?3"
                     " WHERE number = ?1",
    [S_TABLE_SWAP] = "UPDATE tables SET tablet = ?2 WHERE number = ?1",
    [S_TABLET_NEW] = "INSERT INTO tablets(table_number, created_ts) VALUES (?1, ?2)",
    [S_TABLET_GET] = "SELECT doc_count, created_ts FROM tablets WHERE id = ?1",
    [S_TABLET_COUNT] = "UPDATE tablets SET doc_count = doc_count + ?2 WHERE id = ?1",
    [S_TABLET_DROP] = "UPDATE tablets SET dropped_ts = ?2 WHERE id = ?1",
    [S_INDEX_GET] = "SELECT ix, fields, state FROM pk_indexes WHERE table_number = ?1",
    /* end_id: the last document a backfill must visit; later ones get their entries
     * from the writes that insert them, so the build never chases a growing table. */
    [S_INDEX_PUT] = "INSERT OR REPLACE INTO pk_indexes(table_number, ix, fields, state, cursor,"
                    " end_id) VALUES (?1, ?2, ?3, ?4, NULL,"
                    " (SELECT max(id) FROM documents WHERE tablet = ?5))",
    [S_INDEX_RENEW] = "UPDATE pk_indexes SET ix = ?2, state = 'ready', cursor = NULL"
                      " WHERE table_number = ?1",
    [S_INDEX_DEAD] = "INSERT INTO dead_indexes(ix) VALUES (?1)",
    [S_DOC_INSERT] = "INSERT INTO documents(tablet, id, ts, creation_time, value)"
                     " VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_DOC_MATCH] = "SELECT d.rowid, d.ts, d.creation_time, d.id FROM pk_entries e"
                    " JOIN documents d ON d.rowid = e.doc"
                    " WHERE e.ix = ?1 AND e.key = ?2"
                    " UNION ALL SELECT d.rowid, d.ts, d.creation_time, d.id FROM pk_recent e"
                    " JOIN documents d ON d.rowid = e.doc"
                    " WHERE e.ix = ?1 AND e.key = ?2",
    [S_DOC_SAVE] = "INSERT INTO history(tablet, id, valid_from, valid_to, creation_time, value)"
                   " SELECT tablet, id, ts, ?2, creation_time, value FROM documents"
                   " WHERE rowid = ?1",
    [S_DOC_REPLACE] = "UPDATE documents SET ts = ?2, value = ?3 WHERE rowid = ?1",
    [S_DOC_DELETE] = "DELETE FROM documents WHERE rowid = ?1",
    [S_ENTRY_ADD] = "INSERT OR IGNORE INTO pk_recent(ix, key, doc) VALUES (?1, ?2, ?3)",
    [S_ENTRY_DEL] = "DELETE FROM pk_entries WHERE ix = ?1 AND key = ?2 AND doc = ?3",
    [S_RECENT_DEL] = "DELETE FROM pk_recent WHERE ix = ?1 AND key = ?2 AND doc = ?3",
    [S_RECENT_COUNT] = "SELECT count(*) FROM pk_recent",
    [S_INDEXED_COUNT] = "SELECT coalesce(sum(g.doc_count), 0) FROM pk_indexes p"
                        " JOIN tables t ON t.number = p.table_number"
                        " JOIN tablets g ON g.id = t.tablet",
    [S_CHANGE_ROW] = "INSERT INTO changes(ts, tablet, ids, deleted)"
                     " VALUES (?1, ?2, ?3, ?4)",
    [S_READ_INDEX_STATE] = "SELECT p.state FROM tables t"
                           " JOIN pk_indexes p ON p.table_number = t.number WHERE t.name = ?1",
    [S_READ_DOCS] = "SELECT id, creation_time, value FROM documents WHERE tablet = ?1"
                    " ORDER BY id",
    [S_SHAPE_GET] = "SELECT shape FROM shapes WHERE tablet = ?1",
    [S_SHAPE_PUT] = "INSERT OR REPLACE INTO shapes(tablet, shape) VALUES (?1, ?2)",
    [S_SHAPE_DEL] = "DELETE FROM shapes WHERE tablet = ?1",
    [S_READ_TABLE_NEXT] = "SELECT number, name FROM tables WHERE number >= ?1"
                          " ORDER BY number LIMIT 1",
    [S_READ_TABLE_NUMBER] = "SELECT name FROM tables WHERE number = ?1",
    [S_READ_TABLET_AT] = "SELECT id FROM tablets WHERE table_number = ?1 AND created_ts <= ?2"
                         " AND (dropped_ts IS NULL OR dropped_ts > ?2)",
    /* a snapshot at ?3: current versions written by then, plus the versions replaced or
     * deleted since that were valid at ?3 (each document has one or the other) */
    [S_READ_SNAP_DOCS] = "SELECT id, ts, creation_time, value FROM documents"
                         " WHERE tablet = ?1 AND id > ?2 AND id <= ?5 AND ts <= ?3"
                         " ORDER BY id LIMIT ?4",
    [S_READ_SNAP_OLD] = "SELECT id, valid_from, creation_time, value FROM history"
                        " WHERE valid_to > ?3 AND valid_from <= ?3 AND tablet = ?1 AND id > ?2"
                        " ORDER BY id LIMIT ?4",
    /* for the walks' cache (snapcache.h): the versions valid at ?2 ended after ?3, and
     * one of them by its address, if this reader sees it there */
    [S_READ_SNAP_ENDED] = "SELECT id, rowid FROM history"
                          " WHERE valid_to > ?3 AND valid_from <= ?2 AND tablet = ?1",
    [S_READ_SNAP_AT] = "SELECT id, valid_from, creation_time, value FROM history"
                       " WHERE rowid = ?1 AND tablet = ?2 AND id = ?3 AND valid_from <= ?4"
                       " AND valid_to > ?4",
    [S_READ_CHANGES] = "SELECT ts, tablet, ids, deleted FROM changes WHERE ts > ?1 AND ts <= ?2"
                       " ORDER BY ts, tablet",
    [S_READ_DROPS] = "SELECT dropped_ts, id, table_number, doc_count FROM tablets"
                     " WHERE dropped_ts > ?1 AND dropped_ts <= ?2 ORDER BY dropped_ts, id",
    [S_READ_DOC] = "SELECT ts, creation_time, value FROM documents WHERE tablet = ?1 AND id = ?2",
    [S_READ_TABLET_IDS] = "SELECT id FROM documents WHERE tablet = ?1 ORDER BY id",
    [S_READ_TABLET_TABLE] = "SELECT t.table_number, n.name FROM tablets t"
                            " JOIN tables n ON n.number = t.table_number WHERE t.id = ?1",
    [S_READ_SHAPES] = "SELECT n.name, s.shape FROM tables n"
                      " LEFT JOIN shapes s ON s.tablet = n.tablet ORDER BY n.name",
    [S_READ_STATS] = "SELECT n.name, g.doc_count, p.fields, p.state = 'ready' FROM tables n"
                     " JOIN tablets g ON g.id = n.tablet"
                     " LEFT JOIN pk_indexes p ON p.table_number = n.number ORDER BY n.name",
};

typedef struct sq_conn {
    sqlite3 *db;
    sqlite3_stmt *st[S_NSTMT];
    struct sq_conn *next; /* reader pool */
} sq_conn;

/* ---- the engine ---- */

typedef struct sq_store sq_store;
typedef wq_job sq_job; /* see wqueue.h */

/* The inferred shape of one generation, cached on the writer between jobs. `dirty`: it
 * changed since it was last saved; the group saves it before committing. */
typedef struct sq_shape {
    int64_t tablet;
    shape *sh;
    int dirty;
} sq_shape;

/* A document matched by key: its row and what decides how it is replaced or deleted. */
typedef struct sq_match {
    int64_t rowid;
    int64_t ts;
    double creation_time;
    uint8_t id[DOCID_INTERNAL_LEN];
} sq_match;

struct sq_store {
    store base;
    char *path;
    int readonly;
    int64_t retention_ns;
    int64_t recent_cfg; /* store_config.recent_entries */

    /* writer state: only the queue leader touches it */
    sq_conn w;
    sq_maint *maint;
    int64_t last_ts;
    size_t group_jobs; /* jobs of the running group (see maint_run) */
    int64_t recent;    /* about how many entries pk_recent holds (see merge_some) */
    int64_t recent_max; /* pk_recent entries that start a merge sweep */
    int merging;       /* a merge sweep is under way */
    arena *job_arena; /* per job */
    arena *doc_arena; /* per document parsed */
    buf key;
    chg_log log;       /* the running job's change-log entries */
    buf log_ids, log_deleted;
    sq_match *matches;
    size_t nmatches, cap_matches;
    sq_shape **shapes; /* every generation written since the cache was last dropped */
    size_t nshapes, cap_shapes;
    buf shape_text;
    _Atomic int64_t reclaim_floor; /* the newest horizon reclaim has worked to */
    snapcache *snaps;              /* list_snapshot walks' old versions */

    wqueue q;

    pthread_mutex_t rmu;
    sq_conn *readers;

    bgthread bg;

    /* checkpointer: its own connection and thread (see ck_main) */
    sqlite3 *ck_db;
    pthread_mutex_t ckmu;
    pthread_cond_t ckcv;
    int ck_pending, ck_stop, ck_running;
    pthread_t ck;
};

static sqlite3_stmt *stmt(sq_conn *c, int id, tr_err *e) {
    return sq_prepare(c->db, &c->st[id], sq_sql[id], e);
}

/* Runs a statement without parameters or rows (transaction control). */
static int run(sq_conn *c, int id, tr_err *e) {
    sqlite3_stmt *st = stmt(c, id, e);
    return st ? sq_step_done(c->db, st, e) : -1;
}

/* Runs a writer statement that takes two integers and returns no rows. */
static int run_ints(sq_store *s, int id, int64_t a, int64_t b, tr_err *e) {
    sqlite3_stmt *st = stmt(&s->w, id, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, a);
    sqlite3_bind_int64(st, 2, b);
    return sq_step_done(s->w.db, st, e);
}

static void conn_close(sq_conn *c) {
    for (size_t i = 0; i < S_NSTMT; i++) sqlite3_finalize(c->st[i]);
    sqlite3_close(c->db);
    memset(c->st, 0, sizeof c->st);
    c->db = NULL;
}

static int conn_open(sq_conn *c, const char *path, int flags, const char *pragmas, tr_err *e) {
    memset(c, 0, sizeof *c);
    int rc = sqlite3_open_v2(path, &c->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        err_set(e, 500, "StorageError", "Cannot open database %s: %s", path,
                c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        conn_close(c);
        return -1;
    }
    sqlite3_busy_timeout(c->db, SQ_BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(c->db, 1);
    rc = sqlite3_exec(c->db, pragmas, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        sq_error(c->db, rc, e);
        conn_close(c);
        return -1;
    }
    return 0;
}

static int64_t clock_ns(clockid_t clk) {
    struct timespec t;
    clock_gettime(clk, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Strictly increasing, and never below the wall clock when the clock behaves. */
static int64_t next_ts(sq_store *s) {
    int64_t now = clock_ns(CLOCK_REALTIME);
    s->last_ts = now > s->last_ts ? now : s->last_ts + 1;
    return s->last_ts;
}

static int meta_read(sq_conn *c, const char *key, int64_t *v, tr_err *e) {
    sqlite3_stmt *st = stmt(c, S_META_GET, e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *v = sqlite3_column_int64(st, 0);
    else if (rc == SQLITE_DONE) err_set(e, 500, "StorageError", "Database has no meta.%s", key);
    else sq_error(c->db, rc, e);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

static int meta_get(sq_store *s, const char *key, int64_t *v, tr_err *e) {
    return meta_read(&s->w, key, v, e);
}

static int meta_set(sq_store *s, const char *key, int64_t v, tr_err *e) {
    sqlite3_stmt *st = stmt(&s->w, S_META_SET, e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, v);
    return sq_step_done(s->w.db, st, e);
}

/* ---- inferred shapes (writer side) ----
 *
 * Every document written widens its generation's shape (shape.h). The shapes live in
 * memory between jobs and are saved, when they changed, in the transaction of the group
 * that changed them; a rolled-back transaction drops the whole cache, which is simply
 * read again from the database when needed. */

static void shapes_drop(sq_store *s) {
    for (size_t i = 0; i < s->nshapes; i++) {
        shape_free(s->shapes[i]->sh);
        free(s->shapes[i]);
    }
    s->nshapes = 0;
}

static void shape_forget(sq_store *s, int64_t tablet) {
    for (size_t i = 0; i < s->nshapes; i++) {
        if (s->shapes[i]->tablet != tablet) continue;
        shape_free(s->shapes[i]->sh);
        free(s->shapes[i]);
        s->shapes[i] = s->shapes[--s->nshapes];
        return;
    }
}

/* A cleared generation's shape goes with it (the new generation starts empty). */
static int shape_delete(sq_store *s, int64_t tablet, tr_err *e) {
    shape_forget(s, tablet);
    sqlite3_stmt *st = stmt(&s->w, S_SHAPE_DEL, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, tablet);
    return sq_step_done(s->w.db, st, e);
}

/* The cached shape of a generation, read from the database on first use. */
static sq_shape *shape_of(sq_store *s, int64_t tablet, tr_err *e) {
    for (size_t i = 0; i < s->nshapes; i++)
        if (s->shapes[i]->tablet == tablet) return s->shapes[i];
    sqlite3_stmt *st = stmt(&s->w, S_SHAPE_GET, e);
    if (!st) return NULL;
    sqlite3_bind_int64(st, 1, tablet);
    int rc = sqlite3_step(st);
    shape *sh = NULL;
    if (rc == SQLITE_ROW)
        rc = shape_read((const char *)sqlite3_column_text(st, 0),
                        (size_t)sqlite3_column_bytes(st, 0), &sh, e) == 0 ? SQLITE_DONE : -1;
    else if (rc == SQLITE_DONE) sh = shape_new();
    else sq_error(s->w.db, rc, e);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return NULL;
    if (s->nshapes == s->cap_shapes) {
        s->cap_shapes = s->cap_shapes ? s->cap_shapes * 2 : 8;
        s->shapes = xrealloc(s->shapes, s->cap_shapes * sizeof *s->shapes);
    }
    sq_shape *entry = xmalloc(sizeof *entry);
    *entry = (sq_shape){tablet, sh, 0};
    s->shapes[s->nshapes++] = entry;
    return entry;
}

/* Saves every shape changed by the group, in its transaction. */
static int shapes_save(sq_store *s, tr_err *e) {
    for (size_t i = 0; i < s->nshapes; i++) {
        sq_shape *x = s->shapes[i];
        if (!x->dirty) continue;
        buf_reset(&s->shape_text);
        shape_write(x->sh, &s->shape_text);
        sqlite3_stmt *st = stmt(&s->w, S_SHAPE_PUT, e);
        if (!st) return -1;
        sqlite3_bind_int64(st, 1, x->tablet);
        sqlite3_bind_text(st, 2, s->shape_text.p, (int)s->shape_text.len, SQLITE_STATIC);
        if (sq_step_done(s->w.db, st, e) != 0) return -1;
        x->dirty = 0;
    }
    return 0;
}

/* ---- the write queue ---- */

/* One transaction over every job not yet failed. A job that fails before writing fails
 * alone. One that fails after writing (a storage fault, mostly) spoils the transaction:
 * it is rolled back, that job keeps its error, and the function returns 1 so the caller
 * runs the others again in a fresh transaction. Savepoints would avoid the rerun but
 * cost a sub-journal copy of every page a job touches, on every commit. */
static int group_try(sq_store *s, sq_job *head) {
    tr_err fatal;
    s->group_jobs = wq_arm(head);
    if (run(&s->w, S_BEGIN_WRITE, &fatal) != 0) {
        wq_fail_all(head, &fatal);
        return 0;
    }
    int stamped = 0, ok = 0, kick = 0;
    for (sq_job *j = head; j; j = j->next) {
        if (j->rc != 1) continue;
        int64_t before = sqlite3_total_changes64(s->w.db);
        j->kick = 0;
        j->rc = j->run(&s->base, j, j->stamped ? next_ts(s) : 0, &j->err);
        if (j->rc == 0) {
            ok = 1;
            stamped |= j->stamped;
            kick |= j->kick;
            continue;
        }
        int lost = sqlite3_get_autocommit(s->w.db);
        if (!lost && sqlite3_total_changes64(s->w.db) == before) continue;
        if (!lost) run(&s->w, S_ROLLBACK, &fatal);
        shapes_drop(s);
        return 1;
    }
    if (!ok) {
        run(&s->w, S_ROLLBACK, &fatal);
        shapes_drop(s);
        return 0;
    }
    if (shapes_save(s, &fatal) != 0 ||
        (stamped && meta_set(s, "last_ts", s->last_ts, &fatal) != 0) ||
        run(&s->w, S_COMMIT, &fatal) != 0) {
        shapes_drop(s);
        wq_fail_all(head, &fatal);
        tr_err ignored;
        if (!sqlite3_get_autocommit(s->w.db)) run(&s->w, S_ROLLBACK, &ignored);
        return 0;
    }
    if (kick) bgt_kick(&s->bg);
    return 0;
}

/* Runs a whole group and sets every job's result; each rerun drops one failed job. */
static void group_run(store *st, sq_job *head) {
    while (group_try((sq_store *)st, head)) continue;
}

/* Enqueues j and returns once it has committed or failed; may lead a group meanwhile. */
static int queue_run(sq_store *s, sq_job *j, tr_err *e) {
    return wq_run(&s->q, &s->base, group_run, j, e);
}

static int writable(sq_store *s, tr_err *e) {
    if (!s->readonly) return 0;
    return err_set(e, 500, "StorageError", "The database is open read-only");
}

/* ---- tables, generations, indexes (writer side) ---- */

/* What a job knows about one table; written back once at the end of the job. */
typedef struct sq_table {
    const char *name;
    int exists;
    int64_t number;
    int64_t tablet;      /* current generation */
    double last_ct;      /* newest _creationTime of the table */
    double first_ct;     /* _creationTime of this job's first new document (INFINITY: none) */
    int64_t next_seq;    /* sequence number of the next document id */
    int64_t count_delta; /* documents inserted minus removed by this job */
    int has_index;
    int index_ready;
    int64_t ix;          /* index instance whose entries are in pk_entries */
    const char *fields;  /* index definition (canonical key text) */
    pkey *key;           /* the same, parsed when an append stream needs it */
    sq_shape *shape;     /* the generation's shape, once a document was written */
} sq_table;

static int table_load(sq_store *s, const char *name, sq_table *t, tr_err *e) {
    memset(t, 0, sizeof *t);
    t->name = name;
    t->first_ct = INFINITY;
    sqlite3_stmt *st = stmt(&s->w, S_TABLE_GET, e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        t->exists = 1;
        t->number = sqlite3_column_int64(st, 0);
        t->tablet = sqlite3_column_int64(st, 1);
        t->last_ct = sqlite3_column_double(st, 2);
        t->next_seq = sqlite3_column_int64(st, 3);
    } else if (rc != SQLITE_DONE) {
        sq_error(s->w.db, rc, e);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW) return rc == SQLITE_DONE ? 0 : -1;

    st = stmt(&s->w, S_INDEX_GET, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, t->number);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        t->has_index = 1;
        t->ix = sqlite3_column_int64(st, 0);
        t->fields = arena_strndup(s->job_arena, (const char *)sqlite3_column_text(st, 1),
                                  (size_t)sqlite3_column_bytes(st, 1));
        t->index_ready = strcmp((const char *)sqlite3_column_text(st, 2), "ready") == 0;
    } else if (rc != SQLITE_DONE) {
        sq_error(s->w.db, rc, e);
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

static int tablet_new(sq_store *s, int64_t number, int64_t ts, int64_t *id, tr_err *e) {
    sqlite3_stmt *st = stmt(&s->w, S_TABLET_NEW, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, number);
    sqlite3_bind_int64(st, 2, ts);
    if (sq_step_done(s->w.db, st, e) != 0) return -1;
    *id = sqlite3_last_insert_rowid(s->w.db);
    return 0;
}

static int table_create(sq_store *s, sq_table *t, int64_t ts, tr_err *e) {
    sqlite3_stmt *st = stmt(&s->w, S_TABLE_NEXT_NUMBER, e);
    if (!st) return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) t->number = sqlite3_column_int64(st, 0);
    else sq_error(s->w.db, rc, e);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW || tablet_new(s, t->number, ts, &t->tablet, e) != 0) return -1;
    st = stmt(&s->w, S_TABLE_NEW, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, t->number);
    sqlite3_bind_text(st, 2, t->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, t->tablet);
    if (sq_step_done(s->w.db, st, e) != 0) return -1;
    t->exists = 1;
    t->last_ct = 0;
    t->next_seq = 1;
    return 0;
}

static int table_load_or_create(sq_store *s, const char *name, sq_table *t, int64_t ts,
                                tr_err *e) {
    if (table_load(s, name, t, e) != 0) return -1;
    return t->exists ? 0 : table_create(s, t, ts, e);
}

/* Writes back what the job changed: creation time and id sequence, document count. */
static int table_save(sq_store *s, const sq_table *t, tr_err *e) {
    if (isinf(t->first_ct) && t->count_delta == 0) return 0;
    sqlite3_stmt *st = stmt(&s->w, S_TABLE_SAVE, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, t->number);
    sqlite3_bind_double(st, 2, t->last_ct);
    sqlite3_bind_int64(st, 3, t->next_seq);
    if (sq_step_done(s->w.db, st, e) != 0) return -1;
    st = stmt(&s->w, S_TABLET_COUNT, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, t->tablet);
    sqlite3_bind_int64(st, 2, t->count_delta);
    return sq_step_done(s->w.db, st, e);
}

static int tablet_get(sq_store *s, int64_t tablet, int64_t *count, int64_t *created_ts,
                      tr_err *e) {
    sqlite3_stmt *st = stmt(&s->w, S_TABLET_GET, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, tablet);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *count = sqlite3_column_int64(st, 0);
        *created_ts = sqlite3_column_int64(st, 1);
    } else if (rc == SQLITE_DONE) {
        err_set(e, 500, "StorageError", "Database has no generation %lld", (long long)tablet);
    } else {
        sq_error(s->w.db, rc, e);
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

/* A fresh index instance id: its entries start empty, the old ones become garbage. */
static int index_instance(sq_store *s, int64_t *ix, tr_err *e) {
    if (meta_get(s, "next_ix", ix, e) != 0) return -1;
    return meta_set(s, "next_ix", *ix + 1, e);
}

static int index_retire(sq_store *s, int64_t ix, tr_err *e) {
    sqlite3_stmt *st = stmt(&s->w, S_INDEX_DEAD, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, ix);
    return sq_step_done(s->w.db, st, e);
}

/* ---- documents (writer side) ---- */

/* One change-log row (chg_rows callback; ctx: the job's sq_log_ctx). */
typedef struct sq_log_ctx {
    sq_store *s;
    int64_t ts;
} sq_log_ctx;

static int log_row(void *ctx, int64_t tablet, const buf *ids, const buf *deleted, size_t n,
                   tr_err *e) {
    sq_log_ctx *c = ctx;
    sqlite3_stmt *st = stmt(&c->s->w, S_CHANGE_ROW, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, c->ts);
    sqlite3_bind_int64(st, 2, tablet);
    sqlite3_bind_blob(st, 3, ids->p, (int)(n * DOCID_INTERNAL_LEN), SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, deleted->p, (int)n, SQLITE_STATIC);
    return sq_step_done(c->s->w.db, st, e);
}

/* Writes the job's change log (one row per generation it touched). */
static int log_write(sq_store *s, int64_t ts, tr_err *e) {
    sq_log_ctx c = {s, ts};
    return chg_rows(&s->log, &s->log_ids, &s->log_deleted, log_row, &c, e);
}

static int doc_insert(sq_store *s, sq_table *t, const char *doc, size_t len, int64_t ts,
                      int64_t *rowid, tr_err *e) {
    uint8_t id[DOCID_INTERNAL_LEN];
    docid_new_internal((uint64_t)t->next_seq++, ts / 1000000, id);
    double ct = nextafter(t->last_ct, INFINITY);
    if ((double)ts / 1e6 > ct) ct = (double)ts / 1e6;
    t->last_ct = ct;
    if (isinf(t->first_ct)) t->first_ct = ct;
    t->count_delta++;

    sqlite3_stmt *st = stmt(&s->w, S_DOC_INSERT, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, t->tablet);
    sqlite3_bind_blob(st, 2, id, sizeof id, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, ts);
    sqlite3_bind_double(st, 4, ct);
    sqlite3_bind_text(st, 5, doc, (int)len, SQLITE_STATIC);
    if (sq_step_done(s->w.db, st, e) != 0) return -1;
    *rowid = sqlite3_last_insert_rowid(s->w.db);
    chg_put(&s->log, t->tablet, id, 0);
    return 0;
}

static int entry_write(sq_store *s, int id, int64_t ix, const void *key, size_t klen,
                       int64_t doc, tr_err *e) {
    sqlite3_stmt *st = stmt(&s->w, id, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, ix);
    sqlite3_bind_blob(st, 2, key, (int)klen, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, doc);
    return sq_step_done(s->w.db, st, e);
}

/* A new document's entry goes to pk_recent, which merge_some empties into pk_entries in
 * key order (backfill.h). */
static int entry_add(sq_store *s, int64_t ix, const void *key, size_t klen, int64_t doc,
                     tr_err *e) {
    if (entry_write(s, S_ENTRY_ADD, ix, key, klen, doc, e) != 0) return -1;
    s->recent++;
    return 0;
}

/* The one number a query returns. */
static int count_of(sq_store *s, int id, int64_t *n, tr_err *e) {
    sqlite3_stmt *st = stmt(&s->w, id, e);
    if (!st) return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *n = sqlite3_column_int64(st, 0);
    else sq_error(s->w.db, rc, e);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

/* Counts pk_recent afresh and sets the size that starts the next merge sweep (at open
 * and after each sweep). */
static int recent_count(sq_store *s, tr_err *e) {
    int64_t indexed;
    if (count_of(s, S_RECENT_COUNT, &s->recent, e) != 0 ||
        (!s->recent_cfg && count_of(s, S_INDEXED_COUNT, &indexed, e) != 0))
        return -1;
    s->recent_max = s->recent_cfg ? s->recent_cfg : sq_merge_threshold(indexed);
    return 0;
}

/* Moves up to n entries of pk_recent into pk_entries while a merge sweep is under way; a
 * sweep starts once pk_recent holds recent_max entries. Each import job moves twice the
 * entries it added, in its own transaction: the merge keeps pace with any import rate
 * (a background thread fell behind imports with 8 connections and let pk_recent grow to
 * millions), and a sweep ends after about half as many new entries as it found. The
 * count is kept by the writer; a rolled-back group can leave it off, so each sweep ends
 * by counting again. Entries that arrive behind a sweep's cursor wait for the next one. */
static int merge_some(sq_store *s, int64_t n, tr_err *e) {
    if (!s->merging && s->recent < s->recent_max) return 0;
    s->merging = 1;
    int done = 0;
    while (n > 0 && !done) {
        int64_t moved, chunk = n < SQ_MERGE_CHUNK ? n : SQ_MERGE_CHUNK;
        if (sq_merge_step(s->maint, chunk, &moved, &done, e) != 0) return -1;
        s->recent -= moved;
        n -= chunk;
    }
    if (!done) return 0;
    s->merging = 0;
    return recent_count(s, e);
}

/* The entry may be in either table (in both only if something went wrong: then it
 * leaves both). */
static int entry_delete(sq_store *s, int64_t ix, const void *key, size_t klen, int64_t doc,
                        tr_err *e) {
    return entry_write(s, S_ENTRY_DEL, ix, key, klen, doc, e) == 0
               ? entry_write(s, S_RECENT_DEL, ix, key, klen, doc, e)
               : -1;
}


/* Keeps the version a job is about to overwrite, unless this job wrote that version
 * itself (same timestamp): no reader could ever see it. */
static int doc_keep_old(sq_store *s, const sq_match *m, int64_t ts, tr_err *e) {
    return m->ts < ts ? run_ints(s, S_DOC_SAVE, m->rowid, ts, e) : 0;
}

static int doc_replace(sq_store *s, const sq_table *t, const sq_match *m, const char *doc,
                       size_t len, int64_t ts, tr_err *e) {
    /* written earlier in this job, the document is in the log already */
    if (m->ts < ts) {
        if (doc_keep_old(s, m, ts, e) != 0) return -1;
        chg_put(&s->log, t->tablet, m->id, 0);
    }
    sqlite3_stmt *st = stmt(&s->w, S_DOC_REPLACE, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, m->rowid);
    sqlite3_bind_int64(st, 2, ts);
    sqlite3_bind_text(st, 3, doc, (int)len, SQLITE_STATIC);
    return sq_step_done(s->w.db, st, e);
}

static int doc_delete(sq_store *s, sq_table *t, const sq_match *m, const void *key, size_t klen,
                      int64_t ts, tr_err *e) {
    /* a document born in this job was never visible: it leaves no trace at all */
    int born_here = m->creation_time >= t->first_ct;
    if (doc_keep_old(s, m, ts, e) != 0) return -1;
    if (born_here) chg_drop(&s->log, t->tablet, m->id);
    else chg_put(&s->log, t->tablet, m->id, 1);
    sqlite3_stmt *st = stmt(&s->w, S_DOC_DELETE, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, m->rowid);
    if (sq_step_done(s->w.db, st, e) != 0) return -1;
    t->count_delta--;
    return entry_delete(s, t->ix, key, klen, m->rowid, e);
}

/* Every document of the table's index with this key into s->matches, the oldest first
 * (found here rather than by ORDER BY, which would cost a sorter per lookup). A document
 * listed by both entry tables counts once. */
static int doc_matches(sq_store *s, const sq_table *t, const void *key, size_t klen,
                       tr_err *e) {
    sqlite3_stmt *st = stmt(&s->w, S_DOC_MATCH, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, t->ix);
    sqlite3_bind_blob(st, 2, key, (int)klen, SQLITE_STATIC);
    s->nmatches = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t rowid = sqlite3_column_int64(st, 0);
        size_t k = 0;
        while (k < s->nmatches && s->matches[k].rowid != rowid) k++;
        if (k < s->nmatches) continue;
        if (s->nmatches == s->cap_matches) {
            s->cap_matches = s->cap_matches ? s->cap_matches * 2 : 8;
            s->matches = xrealloc(s->matches, s->cap_matches * sizeof *s->matches);
        }
        sq_match *m = &s->matches[s->nmatches++];
        m->rowid = rowid;
        m->ts = sqlite3_column_int64(st, 1);
        m->creation_time = sqlite3_column_double(st, 2);
        memset(m->id, 0, sizeof m->id);
        if (sqlite3_column_bytes(st, 3) == DOCID_INTERNAL_LEN)
            memcpy(m->id, sqlite3_column_blob(st, 3), DOCID_INTERNAL_LEN);
        if (m->creation_time < s->matches[0].creation_time) {
            sq_match oldest = *m;
            *m = s->matches[0];
            s->matches[0] = oldest;
        }
    }
    if (rc != SQLITE_DONE) sq_error(s->w.db, rc, e);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* ---- import ---- */

typedef struct import_job {
    sq_job base;
    const store_batch *b;
    store_import_result *r;
    shape **shapes; /* per stream: the shape of the documents it writes (NULL: none) */
} import_job;

/* Widens each written table's shape with the batch's (saved with the group). */
static int import_shapes_merge(sq_store *s, import_job *ij, const int *map, sq_table *tabs,
                               tr_err *e) {
    for (size_t i = 0; i < ij->b->nstreams; i++) {
        if (!ij->shapes[i] || map[i] < 0) continue;
        sq_table *t = &tabs[map[i]];
        if (!t->shape && !(t->shape = shape_of(s, t->tablet, e))) return -1;
        int changed = 0;
        shape_merge(t->shape->sh, ij->shapes[i], &changed);
        t->shape->dirty |= changed;
    }
    return 0;
}

static int import_append(sq_store *s, sq_table *t, const char *doc, size_t len, int64_t ts,
                         store_import_result *r, tr_err *e) {
    int64_t rowid;
    if (doc_insert(s, t, doc, len, ts, &rowid, e) != 0) return -1;
    r->inserted++;
    if (!t->has_index) return 0;
    if (!t->key) {
        t->key = arena_alloc(s->job_arena, sizeof *t->key);
        if (store_index_key(t->fields, strlen(t->fields), s->job_arena, t->key, e) != 0) return -1;
    }
    arena_reset(s->doc_arena);
    if (store_doc_key(t->key, doc, len, s->doc_arena, &s->key, e) != 0) return -1;
    return entry_add(s, t->ix, s->key.p, s->key.len, rowid, e);
}

static int import_dedup(sq_store *s, sq_table *t, const store_record *rec, const char *doc,
                        const unsigned char *key, int64_t ts, store_import_result *r,
                        tr_err *e) {
    if (doc_matches(s, t, key, rec->key_len, e) != 0) return -1;
    size_t first = 0;
    if (!rec->deleted) {
        if (s->nmatches == 0) {
            int64_t rowid;
            r->inserted++;
            return doc_insert(s, t, doc, rec->doc_len, ts, &rowid, e) == 0
                       ? entry_add(s, t->ix, key, rec->key_len, rowid, e)
                       : -1;
        }
        if (doc_replace(s, t, &s->matches[0], doc, rec->doc_len, ts, e) != 0) return -1;
        r->replaced++;
        first = 1;
    }
    for (size_t i = first; i < s->nmatches; i++) {
        if (doc_delete(s, t, &s->matches[i], key, rec->key_len, ts, e) != 0) return -1;
        r->deleted++;
    }
    return 0;
}

/* Loads every table that has records; map[stream] = index into tabs, or -1. */
static int import_tables(sq_store *s, const store_batch *b, int *map, sq_table *tabs,
                         size_t *ntabs, tr_err *e) {
    const char **names = arena_alloc(s->job_arena, b->nstreams * sizeof *names);
    if (batch_tables(b, map, names, ntabs, e) != 0) return -1;
    for (size_t k = 0; k < *ntabs; k++)
        if (table_load(s, names[k], &tabs[k], e) != 0) return -1;
    return 0;
}

static int import_run(store *st, sq_job *job, int64_t ts, tr_err *e) {
    sq_store *s = (sq_store *)st;
    import_job *ij = (import_job *)job;
    const store_batch *b = ij->b;
    store_import_result *r = ij->r;
    *r = (store_import_result){0, 0, 0};
    arena_reset(s->job_arena);
    chg_reset(&s->log);
    int *map = arena_alloc(s->job_arena, b->nstreams * sizeof *map);
    sq_table *tabs = arena_alloc(s->job_arena, b->nstreams * sizeof *tabs);
    size_t ntabs;
    int64_t recent = s->recent;
    if (import_tables(s, b, map, tabs, &ntabs, e) != 0) return -1;
    for (size_t i = 0; i < b->nstreams; i++) {
        const sq_table *t = map[i] >= 0 ? &tabs[map[i]] : NULL;
        if (t && b->streams[i].dedup &&
            batch_check_index(&b->streams[i], t->exists && t->has_index, t->index_ready,
                              t->fields, &s->key, e) != 0)
            return -1;
    }
    for (size_t k = 0; k < ntabs; k++)
        if (!tabs[k].exists && table_create(s, &tabs[k], ts, e) != 0) return -1;

    for (size_t i = 0; i < b->nrecords; i++) {
        const store_record *rec = &b->records[i];
        sq_table *t = &tabs[map[rec->stream]];
        const char *doc = b->docs + rec->doc_off;
        int rc = b->streams[rec->stream].dedup
                     ? import_dedup(s, t, rec, doc, b->keys + rec->key_off, ts, r, e)
                     : import_append(s, t, doc, rec->doc_len, ts, r, e);
        if (rc != 0) return -1;
    }
    if (log_write(s, ts, e) != 0) return -1;
    for (size_t k = 0; k < ntabs; k++)
        if (table_save(s, &tabs[k], e) != 0) return -1;
    if (merge_some(s, 2 * (s->recent - recent), e) != 0) return -1;
    return import_shapes_merge(s, ij, map, tabs, e);
}

static int sq_import(store *st, const store_batch *b, store_import_result *r, tr_err *e) {
    sq_store *s = (sq_store *)st;
    if (writable(s, e) != 0) return -1;
    import_job j = {.base = {.run = import_run, .stamped = 1}, .b = b, .r = r};
    int rc = batch_shapes(b, &j.shapes, e) == 0 ? queue_run(s, &j.base, e) : -1;
    batch_shapes_free(b, j.shapes);
    if (rc != 0) *r = (store_import_result){0, 0, 0};
    return rc;
}

/* ---- clear_tables ---- */

typedef struct clear_job {
    sq_job base;
    const char *const *names;
    size_t n;
    uint64_t cleared;
} clear_job;

/* Swaps in a fresh empty generation; the old one stays readable until reclaimed. */
static int clear_one(sq_store *s, const char *name, int64_t ts, uint64_t *cleared, tr_err *e) {
    sq_table t;
    if (table_load(s, name, &t, e) != 0) return -1;
    if (!t.exists) return table_create(s, &t, ts, e);
    int64_t count, created_ts, tablet;
    if (tablet_get(s, t.tablet, &count, &created_ts, e) != 0) return -1;
    if (created_ts == ts) return 0; /* listed twice: already cleared by this job */
    if (run_ints(s, S_TABLET_DROP, t.tablet, ts, e) != 0 ||
        tablet_new(s, t.number, ts, &tablet, e) != 0 ||
        run_ints(s, S_TABLE_SWAP, t.number, tablet, e) != 0 || shape_delete(s, t.tablet, e) != 0)
        return -1;
    *cleared += (uint64_t)count;
    if (!t.has_index) return 0;
    int64_t ix;
    if (index_retire(s, t.ix, e) != 0 || index_instance(s, &ix, e) != 0) return -1;
    return run_ints(s, S_INDEX_RENEW, t.number, ix, e);
}

static int clear_run(store *st, sq_job *job, int64_t ts, tr_err *e) {
    sq_store *s = (sq_store *)st;
    clear_job *cj = (clear_job *)job;
    cj->cleared = 0;
    arena_reset(s->job_arena);
    for (size_t i = 0; i < cj->n; i++)
        if (clear_one(s, cj->names[i], ts, &cj->cleared, e) != 0) return -1;
    job->kick = 1;
    return 0;
}

static int sq_clear_tables(store *st, const char *const *tables, size_t n, uint64_t *cleared,
                           tr_err *e) {
    sq_store *s = (sq_store *)st;
    if (writable(s, e) != 0) return -1;
    clear_job j = {.base = {.run = clear_run, .stamped = 1}, .names = tables, .n = n};
    if (queue_run(s, &j.base, e) != 0) return -1;
    *cleared = j.cleared;
    return 0;
}

/* ---- primary key indexes ---- */

typedef struct index_job {
    sq_job base;
    const store_index_req *reqs;
    size_t n;
} index_job;

static int index_one(sq_store *s, const store_index_req *req, int64_t ts, int *kick, tr_err *e) {
    sq_table t;
    if (table_load_or_create(s, req->table, &t, ts, e) != 0) return -1;
    buf_reset(&s->key);
    pkey_canonical(&req->key, &s->key);
    if (t.has_index && strcmp(t.fields, s->key.p) == 0) return 0;
    int64_t count, created_ts, ix;
    if ((t.has_index && index_retire(s, t.ix, e) != 0) ||
        tablet_get(s, t.tablet, &count, &created_ts, e) != 0 || index_instance(s, &ix, e) != 0)
        return -1;
    sqlite3_stmt *st = stmt(&s->w, S_INDEX_PUT, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, t.number);
    sqlite3_bind_int64(st, 2, ix);
    sqlite3_bind_text(st, 3, s->key.p, (int)s->key.len, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, count ? "backfilling" : "ready", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, t.tablet);
    *kick |= count != 0 || t.has_index;
    return sq_step_done(s->w.db, st, e);
}

static int index_run(store *st, sq_job *job, int64_t ts, tr_err *e) {
    sq_store *s = (sq_store *)st;
    index_job *ij = (index_job *)job;
    arena_reset(s->job_arena);
    for (size_t i = 0; i < ij->n; i++)
        if (index_one(s, &ij->reqs[i], ts, &job->kick, e) != 0) return -1;
    return 0;
}

static int sq_add_indexes(store *st, const store_index_req *reqs, size_t n, tr_err *e) {
    sq_store *s = (sq_store *)st;
    if (writable(s, e) != 0) return -1;
    index_job j = {.base = {.run = index_run, .stamped = 1}, .reqs = reqs, .n = n};
    return queue_run(s, &j.base, e);
}

/* ---- background work ---- */

typedef struct maint_job {
    sq_job base;
    int backfill; /* else reclaim */
    int more;
} maint_job;

/* A backfill step that has its transaction to itself goes on with the next chunks while
 * no other job waits, up to SQ_BACKFILL_CHUNKS_MAX: a chunk's entries land on pages all
 * over the index (keys are random in document order), so the fewer commits the fewer
 * times each page is written, and a job that arrives meanwhile still waits for one chunk
 * at most. */
static int maint_run(store *st, sq_job *job, int64_t ts, tr_err *e) {
    sq_store *s = (sq_store *)st;
    (void)ts;
    maint_job *mj = (maint_job *)job;
    if (mj->backfill) {
        int chunks = 0;
        do {
            if (sq_backfill_step(s->maint, &mj->more, e) != 0) return -1;
        } while (mj->more && s->group_jobs == 1 && ++chunks < SQ_BACKFILL_CHUNKS_MAX &&
                 !wq_waiting(&s->q));
        return 0;
    }
    int64_t now = clock_ns(CLOCK_REALTIME);
    int64_t horizon = (now > s->last_ts ? now : s->last_ts) - s->retention_ns;
    /* published before the deletions commit, so a reader that sees them sees this too */
    if (horizon > atomic_load(&s->reclaim_floor)) atomic_store(&s->reclaim_floor, horizon);
    return sq_reclaim_step(s->maint, horizon, &mj->more, e);
}

/* One background step; returns whether more work is waiting. */
static int bg_step(sq_store *s, int backfill) {
    maint_job j = {.base = {.run = maint_run, .stamped = 0}, .backfill = backfill};
    tr_err e;
    if (queue_run(s, &j.base, &e) != 0) {
        fprintf(stderr, "tributary: background %s: %s\n",
                backfill ? "index backfill" : "space reclaim", e.message);
        return 0;
    }
    return j.more;
}

/* A background round: one backfill step and one reclaim step (bgthread.h). */
static int bg_round(void *ctx, int kicked) {
    (void)kicked;
    sq_store *s = ctx;
    int more = bg_step(s, 1);
    return bg_step(s, 0) | more;
}

/* ---- readers ---- */

static const char sq_reader_pragmas[] =
    "PRAGMA query_only = 1; PRAGMA cache_size = -16384; PRAGMA mmap_size = 268435456;";

static sq_conn *reader_get(sq_store *s, tr_err *e) {
    pthread_mutex_lock(&s->rmu);
    sq_conn *c = s->readers;
    if (c) s->readers = c->next;
    pthread_mutex_unlock(&s->rmu);
    if (c) return c;
    c = xmalloc(sizeof *c);
    if (conn_open(c, s->path, SQLITE_OPEN_READONLY, sq_reader_pragmas, e) != 0) {
        free(c);
        return NULL;
    }
    return c;
}

static void reader_put(sq_store *s, sq_conn *c) {
    pthread_mutex_lock(&s->rmu);
    c->next = s->readers;
    s->readers = c;
    pthread_mutex_unlock(&s->rmu);
}

/* Ends a read transaction; an error before this (in *rc) wins over one here. */
static int reader_end(sq_store *s, sq_conn *c, int rc, tr_err *e) {
    tr_err ignored;
    if (run(c, S_COMMIT, rc == 0 ? e : &ignored) != 0) rc = -1;
    reader_put(s, c);
    return rc;
}

static int index_state(sq_conn *c, const char *table, int *ready, tr_err *e) {
    sqlite3_stmt *st = stmt(c, S_READ_INDEX_STATE, e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(st, 0), "ready") != 0)
        *ready = 0;
    if (rc == SQLITE_DONE)
        err_set(e, 400, "MissingIndex", "Missing index: %s" STORE_INDEX_SUFFIX, table);
    else if (rc != SQLITE_ROW)
        sq_error(c->db, rc, e);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

static int sq_indexes_ready(store *st, const char *const *tables, size_t n, int *ready,
                            tr_err *e) {
    sq_store *s = (sq_store *)st;
    sq_conn *c = reader_get(s, e);
    if (!c) return -1;
    if (run(c, S_BEGIN_READ, e) != 0) {
        reader_put(s, c);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) rc = index_state(c, tables[i], ready, e);
    return reader_end(s, c, rc, e);
}

/* {"_id":..,"_creationTime":..} followed by the stored fields. */
static void export_doc(buf *out, uint32_t number, sqlite3_stmt *st) {
    char idtext[DOCID_TEXT_MAX + 1];
    const void *id = sqlite3_column_blob(st, 0);
    uint8_t internal[DOCID_INTERNAL_LEN] = {0};
    if (id && sqlite3_column_bytes(st, 0) == DOCID_INTERNAL_LEN)
        memcpy(internal, id, DOCID_INTERNAL_LEN);
    docid_encode(number, internal, idtext);
    buf_reset(out);
    buf_puts(out, "{\"_id\":\"");
    buf_puts(out, idtext);
    buf_puts(out, "\",\"_creationTime\":");
    json_emit_double(sqlite3_column_double(st, 1), out);
    const char *v = (const char *)sqlite3_column_text(st, 2);
    size_t n = (size_t)sqlite3_column_bytes(st, 2);
    /* stored values are objects: skip their '{' and any blank, then splice the rest */
    size_t i = 1;
    while (i < n && (v[i] == ' ' || v[i] == '\n' || v[i] == '\t' || v[i] == '\r')) i++;
    if (i < n && v[i] != '}') buf_putc(out, ',');
    if (i < n) buf_append(out, v + i, n - i);
    else buf_putc(out, '}');
}

static int export_rows(sq_conn *c, const char *table, store_doc_fn fn, void *ctx, tr_err *e) {
    sqlite3_stmt *st = stmt(c, S_TABLE_GET, e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int64_t number = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    int64_t tablet = rc == SQLITE_ROW ? sqlite3_column_int64(st, 1) : 0;
    if (rc == SQLITE_DONE) err_set(e, 404, "TableNotFound", "Table %s not found.", table);
    else if (rc != SQLITE_ROW) sq_error(c->db, rc, e);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW) return -1;

    if (!(st = stmt(c, S_READ_DOCS, e))) return -1;
    sqlite3_bind_int64(st, 1, tablet);
    buf out = BUF_INIT;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        export_doc(&out, (uint32_t)number, st);
        if (fn(ctx, out.p, out.len) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE) sq_error(c->db, rc, e);
    sqlite3_reset(st);
    buf_free(&out);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int sq_export_table(store *st, const char *table, store_doc_fn fn, void *ctx,
                           tr_err *e) {
    sq_store *s = (sq_store *)st;
    sq_conn *c = reader_get(s, e);
    if (!c) return -1;
    if (run(c, S_BEGIN_READ, e) != 0) {
        reader_put(s, c);
        return -1;
    }
    return reader_end(s, c, export_rows(c, table, fn, ctx, e), e);
}

/* ---- streaming export reads (SPEC §4) ----
 *
 * Every call is one read transaction: its first statement reads meta.last_ts, which
 * fixes the WAL snapshot the whole call reads from, and every check (too new, too old)
 * is made against what that snapshot holds. What a snapshot at S and the deltas after C
 * read is laid out in docs/storage.md ("What is kept for the export API"). */

/* Runs fn in one read transaction on a pooled reader connection. */
typedef int (*read_fn)(sq_store *s, sq_conn *c, void *arg, tr_err *e);

static int read_tx(sq_store *s, read_fn fn, void *arg, tr_err *e) {
    sq_conn *c = reader_get(s, e);
    if (!c) return -1;
    if (run(c, S_BEGIN_READ, e) != 0) {
        reader_put(s, c);
        return -1;
    }
    return reader_end(s, c, fn(s, c, arg, e), e);
}

/* Whether reading at t could miss rows reclaim has deleted: t is before the horizon and
 * something was committed after t. The horizon is the one reclaim uses, or the newest one
 * it actually worked to if that is later (a clock that went back). */
static int too_old(sq_store *s, int64_t t, int64_t last) {
    int64_t now = clock_ns(CLOCK_REALTIME);
    int64_t horizon = (now > last ? now : last) - s->retention_ns;
    int64_t floor = atomic_load(&s->reclaim_floor);
    if (floor > horizon) horizon = floor;
    return t < horizon && t < last;
}

static void blob16(sqlite3_stmt *st, int col, uint8_t out[DOCID_INTERNAL_LEN]) {
    memset(out, 0, DOCID_INTERNAL_LEN);
    if (sqlite3_column_bytes(st, col) == DOCID_INTERNAL_LEN)
        memcpy(out, sqlite3_column_blob(st, col), DOCID_INTERNAL_LEN);
}

/* A one-row lookup: *found = 1 and the row is left for the caller to read and reset. */
static int read_row(sq_conn *c, sqlite3_stmt *st, int *found, tr_err *e) {
    int rc = sqlite3_step(st);
    *found = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW) return 0;
    if (rc != SQLITE_DONE) sq_error(c->db, rc, e);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* The number of a table by name; *found = 0 when there is no such table. */
static int table_number(sq_conn *c, const char *name, uint32_t *number, int *found,
                        tr_err *e) {
    sqlite3_stmt *st = stmt(c, S_TABLE_GET, e);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (read_row(c, st, found, e) != 0) return -1;
    if (*found) {
        *number = (uint32_t)sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
    }
    return 0;
}

/* The first table numbered `from` or above; *found = 0 when there is none. */
static int table_next(sq_conn *c, uint32_t from, uint32_t *number, char *name, int *found,
                      tr_err *e) {
    sqlite3_stmt *st = stmt(c, S_READ_TABLE_NEXT, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, from);
    if (read_row(c, st, found, e) != 0) return -1;
    if (*found) {
        *number = (uint32_t)sqlite3_column_int64(st, 0);
        snprintf(name, NAMES_TABLE_MAX + 1, "%s", (const char *)sqlite3_column_text(st, 1));
        sqlite3_reset(st);
    }
    return 0;
}

/* ---- list_snapshot ---- */

typedef struct snap_walk {
    sq_store *s;
    sq_conn *c;
    const store_snapshot_req *rq;
    store_value_fn fn;
    void *ctx;
    int64_t snapshot;
    int64_t last;      /* the last commit this reader sees */
    size_t left;       /* documents the page may still take */
    size_t bytes;      /* stored bytes on the page so far */
    size_t max_bytes;
    int full;          /* the page is complete */
    int more_here;     /* ... and the table it ended in has documents after it */
    uint32_t last_table;
    uint8_t last_id[DOCID_INTERNAL_LEN];
} snap_walk;

static int snap_emit(snap_walk *w, uint32_t number, const char *name, sqlite3_stmt *st,
                     tr_err *e) {
    char idtext[DOCID_TEXT_MAX + 1];
    blob16(st, 0, w->last_id);
    w->last_table = number;
    docid_encode(number, w->last_id, idtext);
    store_value v = {.table = name, .id = idtext, .ts = sqlite3_column_int64(st, 1)};
    v.creation_time = sqlite3_column_double(st, 2);
    v.fields = (const char *)sqlite3_column_text(st, 3);
    v.fields_len = (size_t)sqlite3_column_bytes(st, 3);
    w->left--;
    w->bytes += v.fields_len;
    return w->fn(w->ctx, &v, e);
}

/* Which of two statements positioned on rows (or done) holds the smaller id. */
static sqlite3_stmt *snap_pick(sqlite3_stmt *a, int ra, sqlite3_stmt *b, int rb) {
    if (ra != SQLITE_ROW) return b;
    if (rb != SQLITE_ROW) return a;
    uint8_t ia[DOCID_INTERNAL_LEN], ib[DOCID_INTERNAL_LEN];
    blob16(a, 0, ia);
    blob16(b, 0, ib);
    return memcmp(ia, ib, sizeof ia) < 0 ? a : b;
}

/* A page's cache update (snapcache_update_fn): the versions of generation `tablet`
 * valid at the snapshot that commits after `seen` ended. */
typedef struct snap_update {
    snap_walk *w;
    int64_t tablet;
    tr_err *e;
} snap_update;

static int snap_ended(void *ctx, snapcache *c, snapcache_entry *en, int64_t seen, int *fits) {
    snap_update *u = ctx;
    sqlite3_stmt *st = stmt(u->w->c, S_READ_SNAP_ENDED, u->e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, u->tablet);
    sqlite3_bind_int64(st, 2, u->w->snapshot);
    sqlite3_bind_int64(st, 3, seen);
    int rc = SQLITE_DONE;
    while (*fits && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint8_t id[DOCID_INTERNAL_LEN];
        blob16(st, 0, id);
        *fits = snapcache_add(c, en, id, sqlite3_column_int64(st, 1)) == 0;
    }
    sqlite3_reset(st);
    return *fits && rc != SQLITE_DONE ? sq_error(u->w->c->db, rc, u->e) : 0;
}

/* Positions S_READ_SNAP_AT on the cached old version rows[i], if this reader sees it
 * there; SQLITE_DONE when it does not, or past the last. */
static int snap_cached_step(sqlite3_stmt *at, int64_t tablet, int64_t snapshot,
                            const snapcache_row *rows, size_t n, size_t i) {
    sqlite3_reset(at);
    if (i >= n) return SQLITE_DONE;
    sqlite3_bind_int64(at, 1, rows[i].addr);
    sqlite3_bind_int64(at, 2, tablet);
    sqlite3_bind_blob(at, 3, rows[i].id, DOCID_INTERNAL_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_int64(at, 4, snapshot);
    return sqlite3_step(at);
}

/* The old versions the page may take from the cache (snapcache.h): into *rows (*n, at
 * most one more than the page has room for), each checked to be where the cache says in
 * this reader's view. *n = SIZE_MAX when the page must use the plain query instead
 * (the walk's versions do not fit the cache, or one is not there). */
static int snap_cached(snap_walk *w, int64_t tablet, const uint8_t *after, snapcache_row **rows,
                       size_t *n, tr_err *e) {
    *n = SIZE_MAX;
    /* nothing ended after a snapshot of the last commit: the plain query is cheap, and
     * its walk (one page, mostly) need not push another out of the cache */
    if (!w->s->snaps || w->left > SNAPCACHE_PAGE_MAX || w->snapshot >= w->last) return 0;
    *rows = xmalloc((w->left + 1) * sizeof **rows);
    snap_update u = {w, tablet, e};
    if (snapcache_take(w->s->snaps, tablet, w->snapshot, w->last, snap_ended, &u, after, *rows,
                       w->left + 1, n) != 0)
        return -1;
    sqlite3_stmt *at = stmt(w->c, S_READ_SNAP_AT, e);
    if (!at) return -1;
    for (size_t i = 0; *n != SIZE_MAX && i < *n; i++) {
        int rc = snap_cached_step(at, tablet, w->snapshot, *rows, *n, i);
        if (rc == SQLITE_DONE) *n = SIZE_MAX;
        else if (rc != SQLITE_ROW) return sq_error(w->c->db, rc, e);
    }
    sqlite3_reset(at);
    return 0;
}

/* The documents of one table as of the snapshot, after id `after` (alen bytes; 0: from
 * the first), until the page is full. Current versions and kept old versions are two
 * id-ordered streams that never share a document; they are merged here. The old
 * versions come from the walk's cache when it has them, else from one query. */
static int snap_table(snap_walk *w, uint32_t number, const char *name, const uint8_t *after,
                      int alen, tr_err *e) {
    sqlite3_stmt *at = stmt(w->c, S_READ_TABLET_AT, e);
    if (!at) return -1;
    sqlite3_bind_int64(at, 1, number);
    sqlite3_bind_int64(at, 2, w->snapshot);
    int found;
    if (read_row(w->c, at, &found, e) != 0) return -1;
    if (!found) return 0; /* the table did not exist yet */
    int64_t tablet = sqlite3_column_int64(at, 0);
    sqlite3_reset(at);

    snapcache_row *rows = NULL;
    size_t nrows, next = 0; /* the cached old versions, the one q[1] is on */
    if (snap_cached(w, tablet, alen ? after : NULL, &rows, &nrows, e) != 0) {
        free(rows);
        return -1;
    }
    int cached = nrows != SIZE_MAX;
    sqlite3_stmt *q[2] = {stmt(w->c, S_READ_SNAP_DOCS, e),
                          stmt(w->c, cached ? S_READ_SNAP_AT : S_READ_SNAP_OLD, e)};
    if (!q[0] || !q[1]) {
        free(rows);
        return -1;
    }
    /* When the cache gives the page more old versions than it has room for, current
     * versions past the last of them cannot make the page: their scan stops there
     * instead of reading every document changed since the snapshot (they are skipped,
     * and after a big import that is most of the table). */
    size_t end_len;
    const uint8_t *end = snapcache_scan_end(rows, nrows, w->left + 1, &end_len);
    sqlite3_bind_blob(q[0], 5, end, (int)end_len, SQLITE_TRANSIENT);
    int r[2];
    for (int i = 0; i < 2 - cached; i++) {
        sqlite3_bind_int64(q[i], 1, tablet);
        sqlite3_bind_blob(q[i], 2, after ? (const void *)after : "", alen, SQLITE_TRANSIENT);
        sqlite3_bind_int64(q[i], 3, w->snapshot);
        sqlite3_bind_int64(q[i], 4, (int64_t)w->left + 1);
        r[i] = sqlite3_step(q[i]);
    }
    if (cached) r[1] = snap_cached_step(q[1], tablet, w->snapshot, rows, nrows, next);
    int rc = 0;
    while (rc == 0 && (r[0] == SQLITE_ROW || r[1] == SQLITE_ROW)) {
        if (w->left == 0 || w->bytes >= w->max_bytes) {
            w->full = w->more_here = 1;
            break;
        }
        sqlite3_stmt *pick = snap_pick(q[0], r[0], q[1], r[1]);
        rc = snap_emit(w, number, name, pick, e);
        int k = pick == q[1];
        r[k] = k && cached ? snap_cached_step(q[1], tablet, w->snapshot, rows, nrows, ++next)
                           : sqlite3_step(q[k]);
    }
    for (int i = 0; i < 2; i++) {
        if (rc == 0 && r[i] != SQLITE_ROW && r[i] != SQLITE_DONE) rc = sq_error(w->c->db, r[i], e);
        sqlite3_reset(q[i]);
    }
    free(rows);
    if (w->left == 0 || w->bytes >= w->max_bytes) w->full = 1;
    return rc;
}

/* Walks the tables from the cursor on until the page is full or every table is done;
 * `only` (when rq->table) is the one table's number. */
static int snap_tables(snap_walk *w, uint32_t only, tr_err *e) {
    const store_snapshot_pos *cur = w->rq->cursor;
    char name[NAMES_TABLE_MAX + 1];
    uint32_t number = cur ? cur->table_number : 0;
    const uint8_t *after = cur ? cur->id : NULL;
    if (w->rq->table) {
        if (only && snap_table(w, only, w->rq->table, after, after ? 16 : 0, e) != 0) return -1;
        return 0;
    }
    for (;;) {
        int found;
        if (table_next(w->c, number, &number, name, &found, e) != 0) return -1;
        if (!found) return 0;
        if (snap_table(w, number, name, after, after ? 16 : 0, e) != 0) return -1;
        if (w->full) {
            /* a later table may still have documents: let the client ask */
            if (!w->more_here && table_next(w->c, number + 1, &number, name, &found, e) != 0)
                return -1;
            w->more_here |= found;
            return 0;
        }
        number++;
        after = NULL;
    }
}

/* Checks the cursor against the request; *only: the requested table's number (0: it
 * does not exist). */
static int snap_check_cursor(snap_walk *w, uint32_t *only, tr_err *e) {
    const store_snapshot_req *rq = w->rq;
    const store_snapshot_pos *cur = rq->cursor;
    int found = 0;
    *only = 0;
    if (rq->table && table_number(w->c, rq->table, only, &found, e) != 0) return -1;
    if (!cur) return 0;
    if (rq->has_snapshot && rq->snapshot != cur->snapshot)
        return err_set(e, 400, "InvalidListSnapshotCursor",
                       "The cursor belongs to snapshot %lld, not to snapshot %lld",
                       (long long)cur->snapshot, (long long)rq->snapshot);
    if (rq->table && cur->table_number != *only)
        return err_set(e, 400, "InvalidListSnapshotCursor",
                       "The cursor does not belong to a walk of table %s", rq->table);
    sqlite3_stmt *st = stmt(w->c, S_READ_TABLE_NUMBER, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, cur->table_number);
    if (read_row(w->c, st, &found, e) != 0) return -1;
    if (found) sqlite3_reset(st);
    else return err_set(e, 400, "InvalidListSnapshotCursor", "The cursor names no table");
    return 0;
}

typedef struct snap_call {
    const store_snapshot_req *rq;
    store_value_fn fn;
    void *ctx;
    store_snapshot_page *out;
} snap_call;

static int snap_read(sq_store *s, sq_conn *c, void *arg, tr_err *e) {
    snap_call *call = arg;
    const store_snapshot_req *rq = call->rq;
    int64_t last;
    if (meta_read(c, "last_ts", &last, e) != 0) return -1;
    snap_walk w = {.s = s, .c = c, .rq = rq, .fn = call->fn, .ctx = call->ctx,
                   .left = rq->limit, .last = last};
    uint32_t only;
    if (snap_check_cursor(&w, &only, e) != 0) return -1;
    w.snapshot = rq->cursor ? rq->cursor->snapshot : rq->has_snapshot ? rq->snapshot : last;
    if (w.snapshot > last)
        return err_set(e, 400, "SnapshotTooNew",
                       "Snapshot %lld is newer than the latest commit %lld",
                       (long long)w.snapshot, (long long)last);
    if (too_old(s, w.snapshot, last))
        return err_set(e, 400, "SnapshotTooOld",
                       "Snapshot %lld is older than the retention window of %lld seconds; "
                       "start a new snapshot",
                       (long long)w.snapshot, (long long)(s->retention_ns / 1000000000));
    if (w.left == 0) w.left = 1;
    w.max_bytes = rq->max_bytes ? rq->max_bytes : SIZE_MAX;
    if (snap_tables(&w, only, e) != 0) return -1;
    store_snapshot_page *out = call->out;
    out->snapshot = w.snapshot;
    out->has_more = w.full && w.more_here;
    if (out->has_more) {
        out->next.snapshot = w.snapshot;
        out->next.table_number = w.last_table;
        memcpy(out->next.id, w.last_id, sizeof w.last_id);
    }
    return 0;
}

static int sq_list_snapshot(store *st, const store_snapshot_req *rq, store_value_fn fn,
                            void *ctx, store_snapshot_page *out, tr_err *e) {
    snap_call call = {rq, fn, ctx, out};
    return read_tx((sq_store *)st, snap_read, &call, e);
}

/* ---- document_deltas ---- */

typedef struct tablet_name {
    int64_t tablet;
    uint32_t number;
    char name[NAMES_TABLE_MAX + 1];
} tablet_name;

typedef struct delta_read {
    sq_conn *c;
    const store_deltas_req *rq;
    store_value_fn fn;
    void *ctx;
    uint32_t only; /* rq->table's number (0: no such table) */
    tablet_name *tabs;
    size_t ntabs, cap;
    sqlite3_stmt *log, *drops; /* the two event streams, in commit order */
    int rlog, rdrops;
} delta_read;

/* The table a generation belongs to (remembered for the rest of the call). */
static const tablet_name *delta_tablet(delta_read *d, int64_t tablet, tr_err *e) {
    for (size_t i = 0; i < d->ntabs; i++)
        if (d->tabs[i].tablet == tablet) return &d->tabs[i];
    sqlite3_stmt *st = stmt(d->c, S_READ_TABLET_TABLE, e);
    if (!st) return NULL;
    sqlite3_bind_int64(st, 1, tablet);
    int found;
    if (read_row(d->c, st, &found, e) != 0) return NULL;
    if (!found)
        return err_set(e, 500, "StorageError", "Change log names generation %lld, which is gone",
                       (long long)tablet),
               NULL;
    if (d->ntabs == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->tabs = xrealloc(d->tabs, d->cap * sizeof *d->tabs);
    }
    tablet_name *t = &d->tabs[d->ntabs++];
    t->tablet = tablet;
    t->number = (uint32_t)sqlite3_column_int64(st, 0);
    snprintf(t->name, sizeof t->name, "%s", (const char *)sqlite3_column_text(st, 1));
    sqlite3_reset(st);
    return t;
}

static int delta_wanted(const delta_read *d, uint32_t number) {
    return !d->rq->table || number == d->only;
}

/* Positions both event streams at their first event in (after, upto]. */
static int delta_open(delta_read *d, int64_t after, int64_t upto, tr_err *e) {
    if (!(d->log = stmt(d->c, S_READ_CHANGES, e)) || !(d->drops = stmt(d->c, S_READ_DROPS, e)))
        return -1;
    sqlite3_bind_int64(d->log, 1, after);
    sqlite3_bind_int64(d->log, 2, upto);
    sqlite3_bind_int64(d->drops, 1, after);
    sqlite3_bind_int64(d->drops, 2, upto);
    d->rlog = sqlite3_step(d->log);
    d->rdrops = sqlite3_step(d->drops);
    return 0;
}

/* The stream holding the next event (the log first on a tie), or NULL at the end. Both
 * streams have ts in column 0. */
static sqlite3_stmt *delta_next(delta_read *d) {
    if (d->rlog != SQLITE_ROW) return d->rdrops == SQLITE_ROW ? d->drops : NULL;
    if (d->rdrops != SQLITE_ROW) return d->log;
    return sqlite3_column_int64(d->drops, 0) < sqlite3_column_int64(d->log, 0) ? d->drops
                                                                             : d->log;
}

static void delta_step(delta_read *d, sqlite3_stmt *which) {
    if (which == d->log) d->rlog = sqlite3_step(d->log);
    else d->rdrops = sqlite3_step(d->drops);
}

static int delta_close(delta_read *d, int rc, tr_err *e) {
    int r[2] = {d->rlog, d->rdrops};
    for (int i = 0; i < 2; i++)
        if (rc == 0 && r[i] != SQLITE_ROW && r[i] != SQLITE_DONE) rc = sq_error(d->c->db, r[i], e);
    sqlite3_reset(d->log);
    sqlite3_reset(d->drops);
    return rc;
}

/* How many values an event yields for this request. */
static int delta_count(delta_read *d, sqlite3_stmt *ev, int64_t *n, tr_err *e) {
    if (ev == d->drops) {
        *n = delta_wanted(d, (uint32_t)sqlite3_column_int64(ev, 2)) ? sqlite3_column_int64(ev, 3)
                                                                    : 0;
        return 0;
    }
    *n = sqlite3_column_bytes(ev, 2) / DOCID_INTERNAL_LEN;
    if (!d->rq->table) return 0;
    const tablet_name *t = delta_tablet(d, sqlite3_column_int64(ev, 1), e);
    if (!t) return -1;
    if (!delta_wanted(d, t->number)) *n = 0;
    return 0;
}

/* First pass, counting only: the last commit the page takes (*end) and whether commits
 * are left after it. Whole commits only; the first one is taken whatever its size. */
static int delta_plan(delta_read *d, int64_t last, int64_t *end, int *more, tr_err *e) {
    int64_t after = d->rq->cursor, total = 0, cur_ts = 0, cur_n = 0, n;
    int rc = 0, have = 0;
    *end = after;
    *more = 0;
    if (delta_open(d, after, last, e) != 0) return -1;
    sqlite3_stmt *ev;
    while ((ev = delta_next(d))) {
        int64_t ts = sqlite3_column_int64(ev, 0);
        if (have && ts != cur_ts) {
            if (total > 0 && total + cur_n > (int64_t)d->rq->limit) break;
            total += cur_n;
            *end = cur_ts;
            cur_n = 0;
            if (total >= (int64_t)d->rq->limit) break;
        }
        if ((rc = delta_count(d, ev, &n, e)) != 0) break;
        cur_ts = ts;
        have = 1;
        cur_n += n;
        delta_step(d, ev);
    }
    if (rc == 0 && ev) *more = 1;
    else if (rc == 0 && have && total > 0 && total + cur_n > (int64_t)d->rq->limit) *more = 1;
    else if (rc == 0) *end = after > last ? after : last;
    return delta_close(d, rc, e);
}

static int delta_value(delta_read *d, const tablet_name *t, const uint8_t *id, int64_t ts,
                       sqlite3_stmt *doc, tr_err *e) {
    char idtext[DOCID_TEXT_MAX + 1];
    docid_encode(t->number, id, idtext);
    store_value v = {.table = t->name, .id = idtext, .ts = ts, .deleted = doc == NULL};
    if (doc) {
        v.creation_time = sqlite3_column_double(doc, 1);
        v.fields = (const char *)sqlite3_column_text(doc, 2);
        v.fields_len = (size_t)sqlite3_column_bytes(doc, 2);
    }
    return d->fn(d->ctx, &v, e);
}

/* A document of a change-log row: a deletion, or the document if this is still its
 * latest version (otherwise a later row of the log reports it). */
static int delta_doc(delta_read *d, const tablet_name *t, const uint8_t *id, int deleted,
                     int64_t ts, tr_err *e) {
    if (deleted) return delta_value(d, t, id, ts, NULL, e);
    sqlite3_stmt *doc = stmt(d->c, S_READ_DOC, e);
    if (!doc) return -1;
    sqlite3_bind_int64(doc, 1, t->tablet);
    sqlite3_bind_blob(doc, 2, id, DOCID_INTERNAL_LEN, SQLITE_STATIC);
    int found, rc = read_row(d->c, doc, &found, e);
    if (rc != 0 || !found) return rc;
    if (sqlite3_column_int64(doc, 0) == ts) rc = delta_value(d, t, id, ts, doc, e);
    sqlite3_reset(doc);
    return rc;
}

/* A change-log row: the documents one commit wrote or deleted in one generation. */
static int delta_change(delta_read *d, sqlite3_stmt *ev, tr_err *e) {
    const tablet_name *t = delta_tablet(d, sqlite3_column_int64(ev, 1), e);
    if (!t) return -1;
    if (!delta_wanted(d, t->number)) return 0;
    int64_t ts = sqlite3_column_int64(ev, 0);
    const uint8_t *ids = sqlite3_column_blob(ev, 2);
    size_t n = (size_t)sqlite3_column_bytes(ev, 2) / DOCID_INTERNAL_LEN;
    const uint8_t *deleted = sqlite3_column_blob(ev, 3);
    if ((size_t)sqlite3_column_bytes(ev, 3) != n)
        return err_set(e, 500, "StorageError", "Change-log row of commit %lld is damaged",
                       (long long)ts);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = delta_doc(d, t, ids + i * DOCID_INTERNAL_LEN, deleted[i], ts, e);
    return rc;
}

/* A generation emptied by clear_tables: each of its documents, deleted at the clear. */
static int delta_drop(delta_read *d, sqlite3_stmt *ev, tr_err *e) {
    if (!delta_wanted(d, (uint32_t)sqlite3_column_int64(ev, 2))) return 0;
    int64_t ts = sqlite3_column_int64(ev, 0);
    const tablet_name *t = delta_tablet(d, sqlite3_column_int64(ev, 1), e);
    sqlite3_stmt *ids = stmt(d->c, S_READ_TABLET_IDS, e);
    if (!t || !ids) return -1;
    sqlite3_bind_int64(ids, 1, t->tablet);
    int rc, r;
    uint8_t id[DOCID_INTERNAL_LEN];
    for (rc = 0; rc == 0 && (r = sqlite3_step(ids)) == SQLITE_ROW;) {
        blob16(ids, 0, id);
        rc = delta_value(d, t, id, ts, NULL, e);
    }
    if (rc == 0 && r != SQLITE_DONE) rc = sq_error(d->c->db, r, e);
    sqlite3_reset(ids);
    return rc;
}

/* Second pass: every value of the commits in (cursor, end]. */
static int delta_emit(delta_read *d, int64_t end, tr_err *e) {
    if (delta_open(d, d->rq->cursor, end, e) != 0) return -1;
    int rc = 0;
    sqlite3_stmt *ev;
    while (rc == 0 && (ev = delta_next(d))) {
        rc = ev == d->log ? delta_change(d, ev, e) : delta_drop(d, ev, e);
        delta_step(d, ev);
    }
    return delta_close(d, rc, e);
}

typedef struct delta_call {
    const store_deltas_req *rq;
    store_value_fn fn;
    void *ctx;
    store_deltas_page *out;
} delta_call;

static int delta_read_page(sq_store *s, sq_conn *c, void *arg, tr_err *e) {
    delta_call *call = arg;
    int64_t last, end;
    int found = 0, more;
    if (meta_read(c, "last_ts", &last, e) != 0) return -1;
    if (too_old(s, call->rq->cursor, last))
        return err_set(e, 400, "InvalidWindowToReadDocuments",
                       "Cursor %lld is older than the retention window of %lld seconds; the "
                       "changes after it may be gone. Run a full re-sync (list_snapshot).",
                       (long long)call->rq->cursor, (long long)(s->retention_ns / 1000000000));
    delta_read d = {.c = c, .rq = call->rq, .fn = call->fn, .ctx = call->ctx};
    int rc = call->rq->table ? table_number(c, call->rq->table, &d.only, &found, e) : 0;
    if (rc == 0) rc = delta_plan(&d, last, &end, &more, e);
    if (rc == 0) rc = delta_emit(&d, end, e);
    free(d.tabs);
    if (rc != 0) return -1;
    call->out->cursor = end;
    call->out->has_more = more;
    return 0;
}

static int sq_document_deltas(store *st, const store_deltas_req *rq, store_value_fn fn,
                              void *ctx, store_deltas_page *out, tr_err *e) {
    store_deltas_req r = *rq;
    if (r.limit == 0) r.limit = 1;
    delta_call call = {&r, fn, ctx, out};
    return read_tx((sq_store *)st, delta_read_page, &call, e);
}

/* ---- json_schemas ---- */

typedef struct shapes_call {
    store_shape_fn fn;
    void *ctx;
} shapes_call;

static int shapes_read(sq_store *s, sq_conn *c, void *arg, tr_err *e) {
    (void)s;
    shapes_call *call = arg;
    sqlite3_stmt *st = stmt(c, S_READ_SHAPES, e);
    if (!st) return -1;
    int rc = 0, r;
    while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW) {
        shape *sh = NULL;
        if (sqlite3_column_type(st, 1) != SQLITE_NULL)
            rc = shape_read((const char *)sqlite3_column_text(st, 1),
                            (size_t)sqlite3_column_bytes(st, 1), &sh, e);
        if (rc == 0) rc = call->fn(call->ctx, (const char *)sqlite3_column_text(st, 0), sh, e);
        shape_free(sh);
    }
    if (rc == 0 && r != SQLITE_DONE) rc = sq_error(c->db, r, e);
    sqlite3_reset(st);
    return rc;
}

static int sq_table_shapes(store *st, store_shape_fn fn, void *ctx, tr_err *e) {
    shapes_call call = {fn, ctx};
    return read_tx((sq_store *)st, shapes_read, &call, e);
}

/* ---- table statistics (status page, /metrics) ---- */

typedef struct stats_call {
    store_stat_fn fn;
    void *ctx;
} stats_call;

static int stats_read(sq_store *s, sq_conn *c, void *arg, tr_err *e) {
    (void)s;
    stats_call *call = arg;
    sqlite3_stmt *st = stmt(c, S_READ_STATS, e);
    if (!st) return -1;
    int rc = 0, r;
    while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW) {
        store_table_stat t = {
            .name = (const char *)sqlite3_column_text(st, 0),
            .documents = sqlite3_column_int64(st, 1),
            .index = (const char *)sqlite3_column_text(st, 2),
            .index_ready = sqlite3_column_int(st, 3),
        };
        rc = call->fn(call->ctx, &t, e);
    }
    if (rc == 0 && r != SQLITE_DONE) rc = sq_error(c->db, r, e);
    sqlite3_reset(st);
    return rc;
}

static int sq_table_stats(store *st, store_stat_fn fn, void *ctx, tr_err *e) {
    stats_call call = {fn, ctx};
    return read_tx((sq_store *)st, stats_read, &call, e);
}

/* ---- open / close ---- */

/* The writer maps as much of the file as SQLite may (2 GiB in Debian's build): on a big
 * table each key lookup reads index pages all over the file, through the page cache
 * without a read call each (docs/performance.md). The mapped pages are the kernel's page
 * cache, shared with every other reader of the file, not memory of the process. */
static const char sq_writer_pragmas[] =
    "PRAGMA synchronous = FULL; PRAGMA cache_size = -32768;"
    "PRAGMA mmap_size = 2147418112; PRAGMA temp_store = MEMORY;"
    "PRAGMA journal_size_limit = 67108864;";

static int schema_check(sqlite3 *db, tr_err *e) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema_version'", -1,
                                &st, NULL);
    if (rc != SQLITE_OK) {
        err_set(e, 500, "StorageError", "Not a tributary database (%s)", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return -1;
    }
    rc = sqlite3_step(st);
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) sq_error(db, rc, e);
    else if (v != SQ_SCHEMA_VERSION)
        err_set(e, 500, "StorageError",
                "Database schema version %lld, this tributary reads version %d%s", (long long)v,
                SQ_SCHEMA_VERSION,
                v < SQ_SCHEMA_VERSION ? " (start `tributary serve` on it once to update it)"
                                      : "");
    sqlite3_finalize(st);
    return rc == SQLITE_ROW && v == SQ_SCHEMA_VERSION ? 0 : -1;
}

/* WAL is what lets readers run during a write and makes a commit one append + fsync:
 * refuse to run without it (e.g. on a file system without shared memory). */
static int wal_on(sqlite3 *db, tr_err *e) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    int wal = rc == SQLITE_ROW &&
              strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    if (rc != SQLITE_ROW) sq_error(db, rc, e);
    else if (!wal)
        err_set(e, 500, "StorageError", "The database cannot use WAL mode (journal mode %s)",
                (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return wal ? 0 : -1;
}

/* A new database starts its timestamps at the clock rather than at 0, so even the first
 * export snapshot of an empty database is a real, non-zero timestamp (clients treat 0 as
 * "no cursor"). */
static int first_ts(sq_store *s, tr_err *e) {
    if (s->last_ts != 0) return 0;
    s->last_ts = clock_ns(CLOCK_REALTIME);
    return meta_set(s, "last_ts", s->last_ts, e);
}

/* Version 1 logged one change-log row per document; version 2 one per commit and
 * generation. Converted inside the opening transaction (the old rows come in (ts, tablet,
 * id) order, so each new row is one run of them). */
static int migrate_v1(sq_store *s, tr_err *e) {
    int rc = sqlite3_exec(s->w.db, "ALTER TABLE changes RENAME TO changes_v1;" SQ_CHANGES_TABLE,
                          NULL, NULL, NULL);
    sqlite3_stmt *old = NULL;
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(s->w.db,
                                "SELECT ts, tablet, id, deleted FROM changes_v1"
                                " ORDER BY ts, tablet, id",
                                -1, &old, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(old);
        return sq_error(s->w.db, rc, e);
    }
    sq_log_ctx c = {s, 0};
    int64_t tablet = 0;
    size_t n = 0;
    int r = 0, step;
    buf_reset(&s->log_ids);
    buf_reset(&s->log_deleted);
    while (r == 0 && (step = sqlite3_step(old)) == SQLITE_ROW) {
        int64_t ts = sqlite3_column_int64(old, 0), tb = sqlite3_column_int64(old, 1);
        if (n && (ts != c.ts || tb != tablet)) {
            r = log_row(&c, tablet, &s->log_ids, &s->log_deleted, n, e);
            buf_reset(&s->log_ids);
            buf_reset(&s->log_deleted);
            n = 0;
        }
        c.ts = ts;
        tablet = tb;
        uint8_t id[DOCID_INTERNAL_LEN] = {0};
        blob16(old, 2, id);
        buf_append(&s->log_ids, id, sizeof id);
        buf_putc(&s->log_deleted, sqlite3_column_int(old, 3) != 0);
        n++;
    }
    if (r == 0 && step != SQLITE_DONE) r = sq_error(s->w.db, step, e);
    if (r == 0 && n) r = log_row(&c, tablet, &s->log_ids, &s->log_deleted, n, e);
    sqlite3_finalize(old);
    if (r != 0) return -1;
    rc = sqlite3_exec(s->w.db,
                      "DROP TABLE changes_v1;"
                      " UPDATE meta SET value = 2 WHERE key = 'schema_version'",
                      NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : sq_error(s->w.db, rc, e);
}

static int writer_open(sq_store *s, tr_err *e) {
    if (conn_open(&s->w, s->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, sq_writer_pragmas,
                  e) != 0 ||
        wal_on(s->w.db, e) != 0)
        return -1;
    tr_err ignored;
    if (run(&s->w, S_BEGIN_WRITE, e) != 0) return -1;
    int rc = sqlite3_exec(s->w.db, sq_schema, NULL, NULL, NULL);
    if (rc != SQLITE_OK) sq_error(s->w.db, rc, e);
    int64_t version = 0;
    if (rc == SQLITE_OK && meta_get(s, "schema_version", &version, e) != 0) rc = SQLITE_ERROR;
    if (rc == SQLITE_OK && version == 1 && migrate_v1(s, e) != 0) rc = SQLITE_ERROR;
    /* version 3 added pk_recent, created above with the rest of the schema */
    if (rc == SQLITE_OK && (version == 1 || version == 2) &&
        meta_set(s, "schema_version", 3, e) != 0)
        rc = SQLITE_ERROR;
    if (rc != SQLITE_OK || schema_check(s->w.db, e) != 0 ||
        meta_get(s, "last_ts", &s->last_ts, e) != 0 || first_ts(s, e) != 0 ||
        run(&s->w, S_COMMIT, e) != 0) {
        run(&s->w, S_ROLLBACK, &ignored);
        return -1;
    }
    s->maint = sq_maint_new(s->w.db);
    return recent_count(s, e);
}

/* The export CLI may run next to a server, so it only checks what is there. */
static int readonly_check(sq_store *s, tr_err *e) {
    struct stat sb;
    if (stat(s->path, &sb) != 0)
        return err_set(e, 500, "StorageError", "No database at %s: %s", s->path,
                       strerror(errno));
    sq_conn *c = reader_get(s, e);
    if (!c) return -1;
    int rc = schema_check(c->db, e);
    reader_put(s, c);
    return rc;
}

/* ---- checkpoints ----
 *
 * SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold, on
 * the one writer every import waits for; it was about 15% of the writer's time. Instead
 * the writer's WAL hook only signals, and a thread of its own copies the WAL into the
 * database with PASSIVE checkpoints on its own connection, next to the writer (a
 * PASSIVE checkpoint never blocks it). Durability does not change: a commit is durable
 * in the WAL; checkpoints only bound the WAL's size. The checkpoint connection must have
 * read the database once (ck_start), or its checkpoints do nothing. */

/* Measured (docs/storage.md): waking at 1000 pages copied pages that several batches
 * change once per checkpoint each, and made dedups 5% slower than 4096. */
#define SQ_CHECKPOINT_PAGES 4096       /* WAL pages that wake the checkpointer */
#define SQ_CHECKPOINT_HARD_PAGES 16384 /* WAL pages at which the writer finishes one itself */

static int ck_wal_hook(void *arg, sqlite3 *db, const char *name, int pages) {
    (void)name;
    sq_store *s = arg;
    if (pages >= SQ_CHECKPOINT_HARD_PAGES) {
        /* A checkpoint next to a writer that never pauses cannot catch up with the last
         * frame, and the WAL restarts only once one has: finish the job here, in the
         * writer. The checkpointer has copied most frames already, so this is short. */
        sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        return SQLITE_OK;
    }
    if (pages < SQ_CHECKPOINT_PAGES) return SQLITE_OK;
    pthread_mutex_lock(&s->ckmu);
    s->ck_pending = 1;
    pthread_cond_signal(&s->ckcv);
    pthread_mutex_unlock(&s->ckmu);
    return SQLITE_OK;
}

static void *ck_main(void *arg) {
    sq_store *s = arg;
    pthread_mutex_lock(&s->ckmu);
    for (;;) {
        while (!s->ck_pending && !s->ck_stop) pthread_cond_wait(&s->ckcv, &s->ckmu);
        if (s->ck_stop) break;
        s->ck_pending = 0;
        pthread_mutex_unlock(&s->ckmu);
        int rc = sqlite3_wal_checkpoint_v2(s->ck_db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            fprintf(stderr, "tributary: checkpoint: %s\n", sqlite3_errmsg(s->ck_db));
        pthread_mutex_lock(&s->ckmu);
    }
    pthread_mutex_unlock(&s->ckmu);
    return NULL;
}

static int ck_start(sq_store *s, tr_err *e) {
    int rc = sqlite3_open_v2(s->path, &s->ck_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        return err_set(e, 500, "StorageError", "Cannot open the checkpoint connection: %s",
                       s->ck_db ? sqlite3_errmsg(s->ck_db) : sqlite3_errstr(rc));
    sqlite3_busy_timeout(s->ck_db, SQ_BUSY_TIMEOUT_MS);
    /* A connection learns that the database is in WAL mode from its first read; until
     * then a checkpoint through it does nothing at all (and says SQLITE_OK). */
    rc = sqlite3_exec(s->ck_db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return err_set(e, 500, "StorageError",
                       "Cannot read through the checkpoint connection: %s",
                       sqlite3_errmsg(s->ck_db));
    if (pthread_create(&s->ck, NULL, ck_main, s) != 0)
        return err_set(e, 500, "StorageError", "Cannot start the checkpoint thread");
    s->ck_running = 1;
    sqlite3_wal_hook(s->w.db, ck_wal_hook, s);
    return 0;
}

static void ck_stop(sq_store *s) {
    if (s->ck_running) {
        sqlite3_wal_hook(s->w.db, NULL, NULL);
        pthread_mutex_lock(&s->ckmu);
        s->ck_stop = 1;
        pthread_cond_signal(&s->ckcv);
        pthread_mutex_unlock(&s->ckmu);
        pthread_join(s->ck, NULL);
        s->ck_running = 0;
    }
    if (s->ck_db) sqlite3_close(s->ck_db);
    s->ck_db = NULL;
}

static const store_ops sq_ops;

static void sq_close(store *st) {
    sq_store *s = (sq_store *)st;
    bgt_close(&s->bg);
    ck_stop(s); /* after the last writer job: the hook lives on the writer connection */
    while (s->readers) {
        sq_conn *c = s->readers;
        s->readers = c->next;
        conn_close(c);
        free(c);
    }
    sq_maint_free(s->maint);
    if (s->w.db) conn_close(&s->w);
    wq_destroy(&s->q);
    pthread_mutex_destroy(&s->rmu);
    pthread_mutex_destroy(&s->ckmu);
    pthread_cond_destroy(&s->ckcv);
    arena_free(s->job_arena);
    arena_free(s->doc_arena);
    buf_free(&s->key);
    chg_free(&s->log);
    buf_free(&s->log_ids);
    buf_free(&s->log_deleted);
    free(s->matches);
    shapes_drop(s);
    free(s->shapes);
    buf_free(&s->shape_text);
    snapcache_free(s->snaps);
    free(s->path);
    free(s);
}

static sq_store *sq_new(const store_config *c) {
    sq_store *s = xcalloc(1, sizeof *s);
    s->base.ops = &sq_ops;
    s->readonly = c->readonly;
    s->retention_ns = c->retention_ns;
    s->recent_cfg = (int64_t)c->recent_entries;
    buf p = BUF_INIT;
    buf_printf(&p, "%s/tributary.db", c->data_dir);
    s->path = buf_steal(&p);
    s->job_arena = arena_new();
    s->doc_arena = arena_new();
    wq_init(&s->q);
    pthread_mutex_init(&s->rmu, NULL);
    if (c->snapshot_cache_rows) s->snaps = snapcache_new(c->snapshot_cache_rows);
    bgt_init(&s->bg);
    pthread_mutex_init(&s->ckmu, NULL);
    pthread_cond_init(&s->ckcv, NULL);
    return s;
}

int store_sqlite_open(const store_config *c, store **out, tr_err *e) {
    *out = NULL;
    if (!c->readonly && mkdir(c->data_dir, 0755) != 0 && errno != EEXIST)
        return err_set(e, 500, "StorageError", "Cannot create data directory %s: %s",
                       c->data_dir, strerror(errno));
    sq_store *s = sq_new(c);
    int rc = s->readonly ? readonly_check(s, e) : writer_open(s, e);
    if (rc == 0 && !s->readonly) rc = ck_start(s, e);
    if (rc == 0 && !s->readonly) {
        /* the first round runs at once: an unfinished backfill resumes */
        if (bgt_start(&s->bg, bg_round, s, SQ_RECLAIM_INTERVAL_S) != 0)
            rc = err_set(e, 500, "StorageError", "Cannot start the background thread");
    }
    if (rc != 0) {
        sq_close(&s->base);
        return -1;
    }
    *out = &s->base;
    return 0;
}

static const store_ops sq_ops = {
    .close = sq_close,
    .import = sq_import,
    .clear_tables = sq_clear_tables,
    .add_indexes = sq_add_indexes,
    .indexes_ready = sq_indexes_ready,
    .export_table = sq_export_table,
    .list_snapshot = sq_list_snapshot,
    .document_deltas = sq_document_deltas,
    .table_shapes = sq_table_shapes,
    .table_stats = sq_table_stats,
};

/*
 * pg.c — the PostgreSQL engine behind store.h: schema, writes, background work.
 *
 * Built for several tributary processes on one database (docs/postgres.md):
 *
 * - Every write transaction starts by taking one transaction-level advisory lock
 *   (PG_COMMIT_LOCK) and only then reads meta.last_ts, so writers of all processes run
 *   one after the other, each job's commit timestamp is max(clock, last_ts + 1), and
 *   commits happen in timestamp order: a reader never sees a commit whose predecessor is
 *   still invisible, so the change feed cannot skip one. Because writers are serialised,
 *   a dedup import sees every document committed before it, in any process, and key
 *   uniqueness needs no further locking; clear_tables is one transaction like any other.
 * - Within a process, writes go through the group-commit queue (wqueue.h): the leader
 *   runs every waiting job in one transaction, one lock acquisition and one commit.
 * - Round trips are what a job mostly waits for: statements whose result is not needed
 *   at once are sent ahead (pg_send) and ride with the next one, the commit carries the
 *   last job's, and opens the next group's transaction when jobs are already waiting.
 * - Bulk paths: a job decides in C, from the batch and one lookup of the keys it names,
 *   what happens to each document (insert, replace, delete). One statement moves the
 *   versions it ends (replaced or deleted) to history, by their row addresses; one COPY
 *   writes every new version (new documents and new versions of replaced ones); one
 *   change-log row per table lists the ids the commit touched.
 * - Background work (index backfill, space reclaim) runs as jobs in short transactions
 *   under the same lock, with all progress in the database: a backfill is continued by
 *   whichever process looks next, so it survives the death of the one that started it.
 * - A lost connection fails the requests in flight with 503 DatabaseUnavailable (the
 *   transaction is gone, nothing is half-written) and the next request reconnects;
 *   unless the connection broke during the COMMIT and, asked on a new one, the
 *   transaction had committed: then they get their 200s (commit_outcome).
 *
 * Reads are in pg_read.c, libpq plumbing in pg_conn.c, the schema in pg_impl.h.
 */
#include "store/pg_impl.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "model/docid.h"
#include "store/batch.h"
#include "store/bgthread.h"
#include "store/keys.h"
#include "store/snapcache.h"
#include "store/wqueue.h"
#include "util/arena.h"
#include "util/xalloc.h"

#define PG_MIN_SERVER 130000 /* pg_current_xact_id() (the tables cache) */

/* advisory lock keys, as SQL literals */
#define PG_COMMIT_LOCK "7596902372845318401" /* serialises writers of every process */
#define PG_SCHEMA_LOCK "7596902372845318402" /* serialises schema creation */
#define PG_BACKFILL_CHUNK 2000               /* documents indexed per backfill step */
#define PG_BACKFILL_CHUNKS_MAX 8 /* steps per transaction while nothing else waits */
#define PG_RECLAIM_CHUNK 5000                /* rows deleted per reclaim step */
#define PG_RECLAIM_LOG_ROWS 50 /* change-log rows per step (each lists a commit's ids) */
#define PG_MAX_READERS 16 /* connections for reads per process; more readers wait */
#define PG_POLL_S 2        /* how often a process looks for a backfill to carry on */
#define PG_RECLAIM_S 30    /* how often it reclaims when nothing else woke it */

#define PG_CHANGES_TABLE                                                                   \
    "CREATE TABLE IF NOT EXISTS tributary.changes("                                        \
    "  ts bigint NOT NULL,"                                                                \
    "  tablet bigint NOT NULL,"                                                            \
    "  ids bytea[] NOT NULL,"                                                              \
    "  deleted boolean[] NOT NULL,"                                                        \
    "  PRIMARY KEY(ts, tablet));"                                                          \
    "ALTER TABLE tributary.changes ALTER COLUMN ids SET STORAGE EXTERNAL"

/* An entry's place in the entries index: one bigint, the index instance in the top 24
 * bits and the key digest's low 40 bits below. Eight bytes where (ix, kh) took sixteen:
 * with 5 M entries the index shrank by 29%, and on a big table its pages, read at
 * random, are most of what a dedup import waits for (docs/performance.md). An instance's
 * entries are one range of it (reclaim walks that range). Lookups recheck ix, kh and
 * the key: instances 2^24 apart share a range, and keys can share 40 bits. */
#define PG_ENTRY_SLOT "((ix << 40) | (kh & 1099511627775))"
#define PG_SLOT_OF(ix, kh) "((" ix " << 40) | (" kh " & 1099511627775))"

/* A document's primary key index entry: index instance, 64-bit key digest, the key. */
#define PG_ENTRIES_TABLE                                                                   \
    "CREATE TABLE IF NOT EXISTS tributary.entries("                                        \
    "  ix bigint NOT NULL,"                                                                \
    "  kh bigint NOT NULL,"                                                                \
    "  tablet bigint NOT NULL,"                                                            \
    "  id bytea NOT NULL,"                                                                 \
    "  key bytea NOT NULL);"                                                               \
    "CREATE INDEX IF NOT EXISTS entries_by_slot ON tributary.entries(" PG_ENTRY_SLOT ");"  \
    "CREATE TABLE IF NOT EXISTS tributary.dead_indexes(ix bigint PRIMARY KEY)"

static const char pg_schema[] =
    "CREATE SCHEMA IF NOT EXISTS tributary;"
    "CREATE TABLE IF NOT EXISTS tributary.meta("
    "  key text PRIMARY KEY,"
    "  value bigint NOT NULL);"
    "CREATE TABLE IF NOT EXISTS tributary.tables("
    "  number bigint PRIMARY KEY,"
    "  name text NOT NULL UNIQUE,"
    "  tablet bigint NOT NULL,"
    "  last_creation_time float8 NOT NULL,"
    "  next_seq bigint NOT NULL);"
    "CREATE TABLE IF NOT EXISTS tributary.tablets("
    "  id bigserial PRIMARY KEY,"
    "  table_number bigint NOT NULL,"
    "  created_ts bigint NOT NULL,"
    "  dropped_ts bigint,"
    "  doc_count bigint NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS tablets_dropped ON tributary.tablets(dropped_ts)"
    "  WHERE dropped_ts IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS tributary.documents("
    "  tablet bigint NOT NULL,"
    "  id bytea NOT NULL,"
    "  ts bigint NOT NULL,"
    "  creation_time float8 NOT NULL,"
    "  value text NOT NULL,"
    "  PRIMARY KEY(tablet, id));"
    PG_ENTRIES_TABLE ";"
    "CREATE TABLE IF NOT EXISTS tributary.history("
    "  tablet bigint NOT NULL,"
    "  id bytea NOT NULL,"
    "  valid_from bigint NOT NULL,"
    "  valid_to bigint NOT NULL,"
    "  creation_time float8 NOT NULL,"
    "  value text NOT NULL);"
    "CREATE INDEX IF NOT EXISTS history_by_end ON tributary.history(valid_to);"
    PG_CHANGES_TABLE ";"
    "CREATE TABLE IF NOT EXISTS tributary.pk_indexes("
    "  table_number bigint PRIMARY KEY,"
    "  ix bigint NOT NULL UNIQUE,"
    "  fields text NOT NULL,"
    "  state text NOT NULL CHECK(state IN ('ready', 'backfilling')),"
    "  cursor bytea,"
    "  end_id bytea);"
    "CREATE TABLE IF NOT EXISTS tributary.shapes("
    "  tablet bigint PRIMARY KEY,"
    "  shape text NOT NULL);"
    "INSERT INTO tributary.meta(key, value) VALUES"
    "  ('schema_version', " STR(PG_SCHEMA_VERSION) "), ('next_ix', 1), ('reclaim_floor', 0)"
    "  ON CONFLICT (key) DO NOTHING";

static const char pg_copy_documents[] =
    "COPY documents(tablet, id, ts, creation_time, value) FROM STDIN";
static const char pg_copy_entries[] = "COPY entries(ix, kh, tablet, id, key) FROM STDIN";
/* The writer's statements that run for every job (or group), prepared once per
 * connection (pg_stmt): parsing and planning each at every execution cost the backend
 * about 0.1-0.2 ms apiece, a tenth of an append job's database time. */
enum {
    W_LOCK,         /* the commit lock (send_begin) */
    W_LAST_TS,      /* the last commit's timestamp, and the group's transaction id */
    W_SET_LAST_TS,  /* ... set at commit */
    W_TABLE,        /* a table, its generation, index and stored shape (table_load) */
    W_LOOKUP,       /* stored documents under a dedup batch's keys (plan_lookup) */
    W_MOVE,         /* ended versions to history (move_ended) */
    W_DEL_ENTRIES,  /* index entries of deleted documents (delete_entries) */
    W_TABLE_COMMIT, /* a job's change-log row and table counters (table_commit) */
    W_COUNT
};
static const pg_stmt w_stmts[W_COUNT] = {
    [W_LOCK] = {"tr_lock", "SELECT pg_advisory_xact_lock(" PG_COMMIT_LOCK ")"},
    [W_LAST_TS] = {"tr_last_ts",
                   "SELECT value, pg_current_xact_id() FROM meta WHERE key = 'last_ts'"},
    [W_SET_LAST_TS] = {"tr_set_last_ts", "UPDATE meta SET value = $1 WHERE key = 'last_ts'"},
    [W_TABLE] = {"tr_table",
                 "SELECT t.number, t.tablet, t.last_creation_time, t.next_seq,"
                 " p.ix, p.fields, p.state = 'ready', sh.shape"
                 " FROM tables t LEFT JOIN pk_indexes p ON p.table_number = t.number"
                 " LEFT JOIN shapes sh ON sh.tablet = t.tablet"
                 " WHERE t.name = $1"},
    /* LATERAL ... OFFSET 0: index probes per key, whatever the statistics say (with stale
     * ones the planner would otherwise scan every entry of the index instance) */
    [W_LOOKUP] = {"tr_lookup",
                  "SELECT x.key, x.id, d.creation_time, d.tid, x.etid"
                  " FROM (SELECT DISTINCT h, key FROM unnest($2::int8[], $3::bytea[])"
                  "       u(h, key)) k"
                  " CROSS JOIN LATERAL (SELECT key, tablet, id, ctid AS etid FROM entries"
                  "   WHERE " PG_ENTRY_SLOT " = " PG_SLOT_OF("$1::int8", "k.h")
                  "   AND ix = $1 AND kh = k.h AND key = k.key OFFSET 0) x"
                  " CROSS JOIN LATERAL (SELECT creation_time, ctid AS tid FROM documents"
                  "   WHERE tablet = x.tablet AND id = x.id OFFSET 0) d"},
    /* A job's replaces and deletes end the stored versions: they move to history, found
     * by the row addresses ($2, tid[]) the job's key lookup returned (still theirs:
     * writers hold the commit lock, and the lookup's lock on the table keeps VACUUM FULL
     * out). A replace then writes its new version as a new row, by the same COPY as new
     * documents. */
    [W_MOVE] = {"tr_move",
                "WITH m AS (DELETE FROM documents WHERE ctid = ANY($2)"
                "   RETURNING tablet, id, ts, creation_time, value)"
                " INSERT INTO history(tablet, id, valid_from, valid_to, creation_time, value)"
                " SELECT tablet, id, ts, $1, creation_time, value FROM m"},
    [W_DEL_ENTRIES] = {"tr_del_entries", "DELETE FROM entries WHERE ctid = ANY($1)"},
    /* What a job did to one table: its change-log row (ids $3, deleted flags $4; none
     * when empty), the table's newest creation time and next sequence number, its
     * document count (+$8). */
    [W_TABLE_COMMIT] = {"tr_table_commit",
                        "WITH c AS (INSERT INTO changes(ts, tablet, ids, deleted)"
                        "   SELECT $1, $2, $3, $4 WHERE cardinality($3) > 0),"
                        " t AS (UPDATE tables SET last_creation_time = $6, next_seq = $7"
                        "       WHERE number = $5)"
                        " UPDATE tablets SET doc_count = doc_count + $8 WHERE id = $2"},
};

/* ---- the engine ---- */

typedef struct pg_shape {
    int64_t tablet;
    shape *sh;
    int dirty;
} pg_shape;

struct pg_store {
    store base;
    char *url;
    int readonly;
    int64_t retention_ns;

    /* writer state: only the queue leader touches it */
    wqueue q;
    PGconn *w;
    int begun;   /* the next group's transaction was opened with the last commit */
    int careful; /* this group runs again after a failed commit: no statement of a job
                    is left to ride with the commit */
    unsigned prepared; /* bit k: w_stmts[k] is prepared on w */
    struct pg_table *tables; /* tables read or written by earlier groups (see "the
                               tables cache"; name, fields, shape owned; key unset) */
    size_t ntables, cap_tables;
    int64_t group_xid; /* the transaction id of the group that last committed or runs */
    size_t group_jobs; /* jobs of the running group (see maint_run) */
    int64_t last_ts;
    arena *job_arena;
    arena *doc_arena;
    buf key, copy, text;
    buf arr[2]; /* array parameters: a lookup's digests and keys, a change-log row */
    pg_shape *shapes; /* the shapes this group changed or read, dropped after it */
    size_t nshapes, cap_shapes;

    pthread_mutex_t rmu; /* the reader pool: at most PG_MAX_READERS connections open */
    pthread_cond_t rcv;
    PGconn *readers[PG_MAX_READERS];
    size_t nreaders, nopen;

    bgthread bg;
    struct timespec last_reclaim; /* background thread only */

    snapcache *snaps; /* list_snapshot walks' old versions (pg_read.c) */
};

int64_t pg_retention_ns(const pg_store *s) {
    return s->retention_ns;
}

snapcache *pg_snapcache(pg_store *s) {
    return s->snaps;
}

/* Every read walks an index in order and stops after a page (ORDER BY … LIMIT). On a
 * table bulk-loaded moments ago and never analyzed, the planner would rather scan the
 * whole rest of the range and sort it, for every page: readers rule that out. */
static const char pg_reader_session[] = "SET enable_bitmapscan = off; SET enable_sort = off";

PGconn *pg_reader_get(pg_store *s, tr_err *e) {
    PGconn *c = NULL;
    pthread_mutex_lock(&s->rmu);
    while (!s->nreaders && s->nopen >= PG_MAX_READERS) pthread_cond_wait(&s->rcv, &s->rmu);
    if (s->nreaders) c = s->readers[--s->nreaders];
    else s->nopen++;
    pthread_mutex_unlock(&s->rmu);
    if (c) return c;
    if ((c = pg_connect(s->url, e)) && pg_run(c, pg_reader_session, NULL, e) == 0) return c;
    PQfinish(c);
    pthread_mutex_lock(&s->rmu);
    s->nopen--;
    pthread_cond_signal(&s->rcv);
    pthread_mutex_unlock(&s->rmu);
    return NULL;
}

void pg_reader_put(pg_store *s, PGconn *c) {
    int alive = pg_alive(c);
    if (!alive) PQfinish(c);
    pthread_mutex_lock(&s->rmu);
    if (alive) s->readers[s->nreaders++] = c;
    else s->nopen--;
    pthread_cond_signal(&s->rcv);
    pthread_mutex_unlock(&s->rmu);
}

static int64_t clock_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int64_t next_ts(pg_store *s) {
    int64_t now = clock_ns();
    s->last_ts = now > s->last_ts ? now : s->last_ts + 1;
    return s->last_ts;
}

static int writable(pg_store *s, tr_err *e) {
    if (!s->readonly) return 0;
    return err_set(e, 500, "StorageError", "The database is open read-only");
}

/* Prepares w_stmts[k] on the writer connection unless it is already (sent ahead: it
 * costs no round trip of its own). */
static int w_prepared(pg_store *s, int k, const pg_params *p, tr_err *e) {
    if (s->prepared & 1u << k) return 0;
    if (pg_prepare(s->w, &w_stmts[k], p, e) != 0) return -1;
    s->prepared |= 1u << k;
    return 0;
}

static PGresult *w_exec(pg_store *s, int k, const pg_params *p, tr_err *e) {
    return w_prepared(s, k, p, e) == 0 ? pg_exec_stmt(s->w, &w_stmts[k], p, e) : NULL;
}

static int w_send(pg_store *s, int k, const pg_params *p, tr_err *e) {
    return w_prepared(s, k, p, e) == 0 ? pg_send_stmt(s->w, &w_stmts[k], p, e) : -1;
}

/* The writer session: a writer waiting for the commit lock longer than lock_timeout
 * gives up with a 503 instead of hanging, and a writer process that stalls inside a
 * transaction (stopped, partitioned) loses it after a minute, releasing the lock for the
 * others. Its lookups probe one key at a time: a plain index scan, never a bitmap built
 * for a single row. */
static const char pg_writer_session[] =
    "SET lock_timeout = '60s'; SET idle_in_transaction_session_timeout = '60s';"
    " SET enable_bitmapscan = off";

/* The writer connection, (re)connected when it was lost. */
static int writer_ready(pg_store *s, tr_err *e) {
    if (pg_alive(s->w)) return 0;
    PQfinish(s->w);
    s->prepared = 0;
    s->w = pg_connect(s->url, e);
    if (!s->w) return -1;
    if (pg_run(s->w, pg_writer_session, NULL, e) == 0) return 0;
    PQfinish(s->w);
    s->w = NULL;
    return -1;
}

static int meta_i64(PGconn *c, const char *key, int64_t *v, tr_err *e) {
    pg_params p = {0};
    pgp_text(&p, key, strlen(key));
    PGresult *r = pg_exec(c, "SELECT value FROM meta WHERE key = $1", &p, e);
    if (!r) return -1;
    int found = PQntuples(r) == 1;
    if (found) *v = pg_i64(r, 0, 0);
    PQclear(r);
    return found ? 0 : err_set(e, 500, "StorageError", "Database has no meta.%s", key);
}

/* The statements that open a group's transaction: the commit lock first, then the last
 * timestamp, read by a statement that starts after the lock is held, so it sees every
 * earlier commit. */
static int send_begin(pg_store *s, tr_err *e) {
    if (pg_send(s->w, "BEGIN", NULL, e) != 0 || w_send(s, W_LOCK, NULL, e) != 0 ||
        w_send(s, W_LAST_TS, NULL, e) != 0)
        return -1;
    return pg_sync(s->w, e);
}

/* Commits the writer's transaction, with whatever was sent ahead and, when `stamped`,
 * its last timestamp: one round trip. `begin_next` (more jobs are waiting): the next
 * group's transaction is opened in the same round trip, in a segment of its own (its
 * failure cannot undo this commit); group_begin reads its result. */
static int commit(pg_store *s, int stamped, int begin_next, tr_err *e) {
    if (stamped) {
        pg_params p = {0};
        pgp_i64(&p, s->last_ts);
        if (w_send(s, W_SET_LAST_TS, &p, e) != 0) return -1;
    }
    if (pg_send(s->w, "COMMIT", NULL, e) != 0 || pg_sync(s->w, e) != 0) return -1;
    tr_err ignored; /* a failed early begin shows in group_begin, which starts over */
    s->begun = begin_next && send_begin(s, &ignored) == 0;
    return pg_segment(s->w, NULL, e);
}

/* ---- inferred shapes (writer side): read when a group first needs one, saved with the
 * group when changed, kept with the tables cache (below) ---- */

static void shapes_drop(pg_store *s) {
    for (size_t i = 0; i < s->nshapes; i++) shape_free(s->shapes[i].sh);
    s->nshapes = 0;
}

/* A cleared generation's shape goes with it (the new generation starts empty). */
static void shape_forget(pg_store *s, int64_t tablet) {
    for (size_t i = 0; i < s->nshapes; i++) {
        if (s->shapes[i].tablet != tablet) continue;
        shape_free(s->shapes[i].sh);
        s->shapes[i] = s->shapes[--s->nshapes];
        return;
    }
}

/* The shape of generation `tablet`: the group's copy, else `text` as stored when the
 * job loaded its table (NULL: none stored yet). */
static pg_shape *shape_of(pg_store *s, int64_t tablet, const char *text, size_t len,
                          tr_err *e) {
    for (size_t i = 0; i < s->nshapes; i++)
        if (s->shapes[i].tablet == tablet) return &s->shapes[i];
    shape *sh = NULL;
    if (text && shape_read(text, len, &sh, e) != 0) return NULL;
    if (!sh) sh = shape_new();
    if (s->nshapes == s->cap_shapes) {
        s->cap_shapes = s->cap_shapes ? s->cap_shapes * 2 : 8;
        s->shapes = xrealloc(s->shapes, s->cap_shapes * sizeof *s->shapes);
    }
    s->shapes[s->nshapes] = (pg_shape){tablet, sh, 0};
    return &s->shapes[s->nshapes++];
}

/* Sends the changed shapes ahead, to be written with the commit. */
static int shapes_save(pg_store *s, tr_err *e) {
    for (size_t i = 0; i < s->nshapes; i++) {
        if (!s->shapes[i].dirty) continue;
        buf_reset(&s->text);
        shape_write(s->shapes[i].sh, &s->text);
        pg_params p = {0};
        pgp_i64(&p, s->shapes[i].tablet);
        pgp_text(&p, s->text.p, s->text.len);
        if (pg_send(s->w,
                    "INSERT INTO shapes(tablet, shape) VALUES ($1, $2)"
                    " ON CONFLICT (tablet) DO UPDATE SET shape = excluded.shape",
                    &p, e) != 0)
            return -1;
        s->shapes[i].dirty = 0;
    }
    return 0;
}

/* A table as a job reads and changes it. */
typedef struct pg_table {
    const char *name;
    int exists;
    int64_t number;
    int64_t tablet;      /* current generation */
    double last_ct;      /* newest _creationTime of the table */
    int64_t next_seq;    /* sequence number of the next document id */
    int64_t count_delta; /* documents inserted minus removed by this job */
    int written;         /* the job created documents: save last_ct and next_seq */
    int has_index;
    int index_ready;
    int64_t ix;          /* index instance the documents' entries are computed for */
    const char *fields;  /* index definition (canonical key text) */
    pkey *key;           /* the same, parsed when needed */
    const char *shape;   /* the stored shape of the generation (NULL: none) */
    size_t shape_len;
} pg_table;

/* ---- the tables cache (writer side) ----
 * Every import job needs its tables' rows (generation, id sequence, index): a round trip
 * each. The writer keeps the rows it read and wrote, and the shapes, from one group to
 * the next, as long as no other transaction wrote anything in between: a group's
 * transaction id (pg_current_xact_id(), taken right after the commit lock) then follows
 * the previous group's directly. Any other writer — another process, a hand-run
 * statement — takes an id in between and the next group starts afresh. Only imports use
 * and update the cache; every other job (clear, index, background step) drops it before
 * and after it runs, and a failed group drops it too. */

static void cache_drop(pg_store *s) {
    for (size_t i = 0; i < s->ntables; i++) {
        free((char *)s->tables[i].name);
        free((char *)s->tables[i].fields);
        free((char *)s->tables[i].shape);
    }
    s->ntables = 0;
}

static pg_table *cache_find(pg_store *s, const char *name) {
    for (size_t i = 0; i < s->ntables; i++)
        if (strcmp(s->tables[i].name, name) == 0) return &s->tables[i];
    return NULL;
}

/* Remembers table t as this job leaves it (its id sequence and creation time). */
static void cache_put(pg_store *s, const pg_table *t) {
    pg_table *c = cache_find(s, t->name);
    if (c) {
        c->last_ct = t->last_ct;
        c->next_seq = t->next_seq;
        return;
    }
    if (s->ntables == s->cap_tables) {
        s->cap_tables = s->cap_tables ? 2 * s->cap_tables : 16;
        s->tables = xrealloc(s->tables, s->cap_tables * sizeof *s->tables);
    }
    c = &s->tables[s->ntables++];
    *c = *t;
    c->name = xstrdup(t->name);
    c->fields = t->fields ? xstrdup(t->fields) : NULL;
    c->shape = t->shape ? xstrndup(t->shape, t->shape_len) : NULL;
    c->key = NULL;
    c->count_delta = 0;
    c->written = 0;
}

/* A new group with transaction id `xid`: the cache holds unless someone wrote since. */
static void cache_check(pg_store *s, int64_t xid) {
    if (xid != s->group_xid + 1) {
        cache_drop(s);
        shapes_drop(s);
    }
    s->group_xid = xid;
}

/* A group that failed: nothing it read or wrote can be trusted. */
static void cache_forget(pg_store *s) {
    cache_drop(s);
    shapes_drop(s);
    s->group_xid = 0;
}

/* ---- the write queue ---- */

static void rollback_conn(PGconn *c) {
    tr_err ignored;
    if (c && PQpipelineStatus(c) != PQ_PIPELINE_OFF) pg_settle(c, NULL, &ignored);
    if (c && PQtransactionStatus(c) != PQTRANS_IDLE) pg_run(c, "ROLLBACK", NULL, &ignored);
}

/* After a failure: the transaction is rolled back, the tables cache and the statements
 * prepared in it are forgotten (which of them went through is unknown). */
static void rollback(pg_store *s) {
    s->begun = 0;
    cache_forget(s);
    rollback_conn(s->w);
    tr_err ignored;
    if (s->prepared && PQstatus(s->w) == CONNECTION_OK &&
        pg_run(s->w, "DEALLOCATE ALL", NULL, &ignored) == 0)
        s->prepared = 0;
}

/* Reads what send_begin sent: the last commit's timestamp. */
static int begin_result(pg_store *s, tr_err *e) {
    PGresult *r = NULL;
    int rc = pg_segment(s->w, &r, e);
    if (rc == 0 && (PQntuples(r) != 1 || PQpipelineStatus(s->w) != PQ_PIPELINE_OFF))
        rc = err_set(e, 500, "StorageError", "PostgreSQL: BEGIN: unexpected result");
    if (rc == 0) {
        s->last_ts = pg_i64(r, 0, 0);
        cache_check(s, pg_i64(r, 0, 1));
    }
    PQclear(r);
    return rc;
}

/* Opens the group's transaction (send_begin), unless the last commit did already. */
static int group_begin(pg_store *s, tr_err *e) {
    if (s->begun) {
        s->begun = 0;
        if (begin_result(s, e) == 0) return 0;
        rollback(s); /* and begin the usual way */
    }
    /* a connection that died while idle (a database restart) only shows when used: then
     * nothing reached the database yet, so reconnect and try once more */
    for (int attempt = 0;; attempt++) {
        if (writer_ready(s, e) != 0) return -1;
        if (send_begin(s, e) == 0 && begin_result(s, e) == 0) return 0;
        rollback(s);
        if (attempt == 1 || PQstatus(s->w) == CONNECTION_OK) return -1;
    }
}

/* After a COMMIT whose answer was lost with the connection: what became of transaction
 * `xid`, asked on a new connection (pg_xact_status). PostgreSQL may have committed it
 * before the connection broke; answering 503 then would make the client send the batch
 * again, and an append would be stored twice. While the old session is still ending its
 * transaction shows as in progress: asked again, for up to PG_OUTCOME_WAIT_S.
 * 1 committed, 0 not committed, -1 unknown. */
#define PG_OUTCOME_WAIT_S 10
static int commit_outcome(pg_store *s, int64_t xid) {
    rollback(s);
    tr_err e;
    pg_params p = {0};
    pgp_i64(&p, xid);
    for (int i = 0; i < PG_OUTCOME_WAIT_S * 10; i++) {
        if (writer_ready(s, &e) != 0) return -1;
        PGresult *r = pg_exec(s->w, "SELECT pg_xact_status($1::text::xid8)", &p, &e);
        if (!r) return -1;
        int outcome = -1;
        if (PQntuples(r) == 1 && !pg_isnull(r, 0, 0)) {
            const char *st = PQgetvalue(r, 0, 0);
            outcome = strcmp(st, "committed") == 0 ? 1 : strcmp(st, "aborted") == 0 ? 0 : -1;
        }
        PQclear(r);
        if (outcome >= 0) return outcome;
        nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
    }
    return -1;
}

static int import_run(store *st, wq_job *job, int64_t ts, tr_err *e);

/* One transaction over every job not yet failed (see wqueue.h). A job that fails for a
 * client reason has written nothing and fails alone. Any other failure spoils the
 * transaction (PostgreSQL aborts it): roll back and return 1 so the others run again,
 * unless the connection is gone, which fails them all. A job's statements sent ahead
 * are not waited for before the next job starts (that would be a round trip per job),
 * so a failure seen by a later job or by the commit may be an earlier job's: then the
 * group runs again "careful", checking each job's statements before the next one. */

static int group_try(pg_store *s, wq_job *head) {
    tr_err fatal;
    s->group_jobs = wq_arm(head);
    if (group_begin(s, &fatal) != 0) {
        wq_fail_all(head, &fatal);
        return 0;
    }
    int stamped = 0, ok = 0, kick = 0;
    size_t ran = 0;
    for (wq_job *j = head; j; j = j->next) {
        if (j->rc != 1) continue;
        j->kick = 0;
        int caching = j->run == import_run; /* see "the tables cache" */
        if (!caching) cache_drop(s);
        j->rc = j->run(&s->base, j, j->stamped ? next_ts(s) : 0, &j->err);
        if (!caching) cache_drop(s);
        /* what the job sent ahead rides with the next job's first statement, or with the
         * commit; run carefully, the group checks it now, so it fails as the job's own */
        if (j->rc == 0 && s->careful && pg_settle(s->w, NULL, &j->err) != 0) j->rc = -1;
        if (j->rc == 0) {
            ok = 1;
            ran++;
            stamped |= j->stamped;
            kick |= j->kick;
            continue;
        }
        if (j->err.status < 500 && PQtransactionStatus(s->w) == PQTRANS_INTRANS) continue;
        rollback(s);
        if (PQstatus(s->w) != CONNECTION_OK) {
            wq_fail_all(head, &j->err);
            return 0;
        }
        /* the failure may be an earlier job's statement that rode with this job's: run
         * the group again, carefully, to know whose */
        if (ran > 0 && !s->careful) {
            j->rc = 1;
            s->careful = 1;
        }
        return 1;
    }
    int committed = 0;
    if (ok && shapes_save(s, &fatal) == 0) {
        int64_t xid = s->group_xid;
        committed = commit(s, stamped, wq_waiting(&s->q), &fatal) == 0;
        if (!committed && xid && PQstatus(s->w) != CONNECTION_OK) {
            committed = commit_outcome(s, xid);
            fprintf(stderr, "tributary: PostgreSQL: the answer to a COMMIT was lost with the"
                            " connection; asked again, the transaction %s\n",
                    committed > 0 ? "had committed" : committed == 0 ? "had not committed"
                                                                     : "could not be found out");
            if (committed < 0) {
                wq_fail_all(head, &fatal);
                return 0;
            }
        }
    }
    if (committed) {
        if (kick) bgt_kick(&s->bg);
        return 0;
    }
    rollback(s);
    /* the failure may be one job's statement that rode with the commit: run the group
     * again, each job's statements checked before the next job's, to know whose */
    if (ran > 1 && !s->careful && PQstatus(s->w) == CONNECTION_OK) {
        s->careful = 1;
        return 1;
    }
    if (ok) wq_fail_all(head, &fatal);
    return 0;
}

static void group_run(store *st, wq_job *head) {
    pg_store *s = (pg_store *)st;
    while (group_try(s, head)) continue;
    s->careful = 0;
}

static int queue_run(pg_store *s, wq_job *j, tr_err *e) {
    return wq_run(&s->q, &s->base, group_run, j, e);
}

/* ---- tables, generations, indexes (writer side) ---- */

static int table_load(pg_store *s, const char *name, pg_table *t, tr_err *e) {
    const pg_table *c = cache_find(s, name);
    if (c) {
        *t = *c;
        t->name = name;
        return 0;
    }
    memset(t, 0, sizeof *t);
    t->name = name;
    pg_params p = {0};
    pgp_text(&p, name, strlen(name));
    PGresult *r = w_exec(s, W_TABLE, &p, e);
    if (!r) return -1;
    if (PQntuples(r) == 1) {
        t->exists = 1;
        t->number = pg_i64(r, 0, 0);
        t->tablet = pg_i64(r, 0, 1);
        t->last_ct = pg_f64(r, 0, 2);
        t->next_seq = pg_i64(r, 0, 3);
        if (!pg_isnull(r, 0, 4)) {
            size_t n;
            const char *f = pg_val(r, 0, 5, &n);
            t->has_index = 1;
            t->ix = pg_i64(r, 0, 4);
            t->fields = arena_strndup(s->job_arena, f, n);
            t->index_ready = pg_i64(r, 0, 6) != 0;
        }
        if (!pg_isnull(r, 0, 7)) {
            const char *text = pg_val(r, 0, 7, &t->shape_len);
            t->shape = arena_strndup(s->job_arena, text, t->shape_len);
        }
        cache_put(s, t);
    }
    PQclear(r);
    return 0;
}

static int table_create(pg_store *s, pg_table *t, int64_t ts, tr_err *e) {
    pg_params p = {0};
    pgp_text(&p, t->name, strlen(t->name));
    pgp_i64(&p, ts);
    PGresult *r = pg_exec(s->w,
                          "WITH n AS (SELECT coalesce(max(number), 10000) + 1 AS number"
                          "           FROM tables),"
                          " g AS (INSERT INTO tablets(table_number, created_ts)"
                          "       SELECT number, $2 FROM n RETURNING id, table_number)"
                          " INSERT INTO tables(number, name, tablet, last_creation_time, next_seq)"
                          " SELECT table_number, $1, id, 0, 1 FROM g RETURNING number, tablet",
                          &p, e);
    if (!r) return -1;
    t->exists = 1;
    t->number = pg_i64(r, 0, 0);
    t->tablet = pg_i64(r, 0, 1);
    t->last_ct = 0;
    t->next_seq = 1;
    PQclear(r);
    cache_put(s, t);
    return 0;
}

static int table_load_or_create(pg_store *s, const char *name, pg_table *t, int64_t ts,
                                tr_err *e) {
    if (table_load(s, name, t, e) != 0) return -1;
    return t->exists ? 0 : table_create(s, t, ts, e);
}

/* The table's index definition, parsed (once per job). */
static int table_key(pg_store *s, pg_table *t, tr_err *e) {
    if (t->key) return 0;
    t->key = arena_alloc(s->job_arena, sizeof *t->key);
    return store_index_key(t->fields, strlen(t->fields), s->job_arena, t->key, e);
}

/* Index instance `ix` is retired (its table was cleared or its index replaced): reclaim
 * deletes its entries. */
static int index_retire(pg_store *s, int64_t ix, tr_err *e) {
    pg_params p = {0};
    pgp_i64(&p, ix);
    return pg_run(s->w, "INSERT INTO dead_indexes(ix) VALUES ($1) ON CONFLICT DO NOTHING", &p,
                  e);
}

/* A fresh index instance id: the entries of an older one are not its entries. */
static int index_instance(pg_store *s, int64_t *ix, tr_err *e) {
    PGresult *r = pg_exec(s->w,
                          "UPDATE meta SET value = value + 1 WHERE key = 'next_ix'"
                          " RETURNING value - 1",
                          NULL, e);
    if (!r) return -1;
    *ix = pg_i64(r, 0, 0);
    PQclear(r);
    return 0;
}

/* The index holds a 64-bit digest of each key rather than the key: entries stay small,
 * compare as integers, and a key of any length can be indexed (a btree entry is limited
 * to about 2.7 kB). Lookups recheck the key itself. The first 8 bytes of the key's
 * BLAKE2b-128, big-endian. */
static int64_t key_digest(const void *key, size_t len) {
    unsigned char h[16];
    crypto_generichash(h, sizeof h, key, len, NULL, 0);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | h[i];
    return (int64_t)v;
}

/* ---- import ----
 *
 * A job first works out, in C, what each record does to which document, exactly as if
 * the records were applied one by one: the documents a dedup record can match are those
 * already stored under its key (one lookup per table for all keys of the batch) and
 * those this batch created before it. Then the versions it ends move to history in one
 * statement (W_MOVE), the versions it writes go in by one COPY, and each table gets
 * its change-log row. */

enum { D_KEEP, D_NEW, D_REPLACED, D_DELETED };

typedef struct plan_doc {
    int tab;
    int state;
    int stored; /* existed before this job */
    double ct;
    uint8_t id[DOCID_INTERNAL_LEN];
    uint8_t tid[PG_TID_LEN];  /* where the stored version is (when `stored`) */
    uint8_t etid[PG_TID_LEN]; /* where its index entry is (when `stored`) */
    const char *doc; /* the value to write */
    size_t len;
    const unsigned char *key; /* its index entry (NULL: the table has no index) */
    size_t klen;
    int next; /* next document with the same key, -1: none */
} plan_doc;

typedef struct plan_slot {
    const unsigned char *key;
    size_t klen;
    int tab;
    int first; /* first document with this key, -1: none */
} plan_slot;

typedef struct plan {
    plan_doc *docs;
    size_t ndocs, cap;
    plan_slot *slots;
    size_t nslots; /* a power of two */
} plan;

static uint64_t key_hash(int tab, const unsigned char *k, size_t n) {
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)tab;
    for (size_t i = 0; i < n; i++) h = (h ^ k[i]) * 1099511628211ULL;
    return h;
}

static plan_slot *plan_slot_of(plan *pl, int tab, const unsigned char *k, size_t n) {
    size_t i = key_hash(tab, k, n) & (pl->nslots - 1);
    for (;; i = (i + 1) & (pl->nslots - 1)) {
        plan_slot *sl = &pl->slots[i];
        if (!sl->key) {
            *sl = (plan_slot){k, n, tab, -1};
            return sl;
        }
        if (sl->tab == tab && sl->klen == n && memcmp(sl->key, k, n) == 0) return sl;
    }
}

static plan_doc *plan_add(plan *pl, int tab, const unsigned char *k, size_t klen) {
    if (pl->ndocs == pl->cap) {
        pl->cap = pl->cap ? pl->cap * 2 : 1024;
        pl->docs = xrealloc(pl->docs, pl->cap * sizeof *pl->docs);
    }
    plan_doc *d = &pl->docs[pl->ndocs];
    memset(d, 0, sizeof *d);
    d->tab = tab;
    d->key = k;
    d->klen = klen;
    d->next = -1;
    if (k) {
        plan_slot *sl = plan_slot_of(pl, tab, k, klen);
        d->next = sl->first;
        sl->first = (int)pl->ndocs;
    }
    pl->ndocs++;
    return d;
}

/* A document this job creates: the next id and creation time of its table. */
static plan_doc *plan_new_doc(plan *pl, pg_table *tabs, int tab, const unsigned char *k,
                              size_t klen, int64_t ts) {
    pg_table *t = &tabs[tab];
    plan_doc *d = plan_add(pl, tab, k, klen);
    d->state = D_NEW;
    docid_new_internal((uint64_t)t->next_seq++, ts / 1000000, d->id);
    double ct = nextafter(t->last_ct, INFINITY);
    if ((double)ts / 1e6 > ct) ct = (double)ts / 1e6;
    t->last_ct = d->ct = ct;
    t->written = 1;
    t->count_delta++;
    return d;
}

typedef struct import_job {
    wq_job base;
    const store_batch *b;
    store_import_result *r;
    shape **shapes;
    plan pl;
} import_job;

/* The stored documents under every key the batch's dedup records of table `tab` name. */
static int plan_lookup(pg_store *s, import_job *ij, const int *map, pg_table *tabs, int tab,
                       tr_err *e) {
    const store_batch *b = ij->b;
    size_t n = 0;
    for (size_t i = 0; i < b->nrecords; i++)
        n += b->streams[b->records[i].stream].dedup && map[b->records[i].stream] == tab;
    buf *hashes = &s->arr[0], *keys = &s->arr[1];
    pg_array_start(hashes, PG_ARRAY_INT8, n);
    pg_array_start(keys, PG_ARRAY_BYTEA, n);
    for (size_t i = 0; i < b->nrecords; i++) {
        const store_record *rec = &b->records[i];
        if (!b->streams[rec->stream].dedup || map[rec->stream] != tab) continue;
        pg_array_item(keys, b->keys + rec->key_off, rec->key_len);
        pg_array_i64(hashes, key_digest(b->keys + rec->key_off, rec->key_len));
    }
    pg_params p = {0};
    pgp_i64(&p, tabs[tab].ix);
    pgp_array(&p, hashes);
    pgp_array(&p, keys);
    PGresult *r = w_exec(s, W_LOOKUP, &p, e);
    if (!r) return -1;
    for (int row = 0; row < PQntuples(r); row++) {
        size_t klen, idlen;
        const char *k = pg_val(r, row, 0, &klen);
        const char *id = pg_val(r, row, 1, &idlen);
        unsigned char *kc = arena_alloc(s->job_arena, klen ? klen : 1);
        memcpy(kc, k, klen);
        plan_doc *d = plan_add(&ij->pl, tab, kc, klen);
        d->state = D_KEEP;
        d->stored = 1;
        d->ct = pg_f64(r, row, 2);
        if (idlen == DOCID_INTERNAL_LEN) memcpy(d->id, id, idlen);
        size_t tidlen, etidlen;
        const char *tid = pg_val(r, row, 3, &tidlen);
        if (tidlen == PG_TID_LEN) memcpy(d->tid, tid, tidlen);
        const char *etid = pg_val(r, row, 4, &etidlen);
        if (etidlen == PG_TID_LEN) memcpy(d->etid, etid, etidlen);
    }
    PQclear(r);
    return 0;
}

static int plan_append(pg_store *s, import_job *ij, pg_table *tabs, int tab,
                       const store_record *rec, int64_t ts, tr_err *e) {
    pg_table *t = &tabs[tab];
    const char *doc = ij->b->docs + rec->doc_off;
    unsigned char *k = NULL;
    size_t klen = 0;
    if (t->has_index) {
        if (table_key(s, t, e) != 0) return -1;
        arena_reset(s->doc_arena);
        if (store_doc_key(t->key, doc, rec->doc_len, s->doc_arena, &s->key, e) != 0) return -1;
        klen = s->key.len;
        k = arena_alloc(s->job_arena, klen ? klen : 1);
        memcpy(k, s->key.p, klen);
    }
    plan_doc *d = plan_new_doc(&ij->pl, tabs, tab, k, klen, ts);
    d->doc = doc;
    d->len = rec->doc_len;
    ij->r->inserted++;
    return 0;
}

static void plan_delete(pg_table *tabs, plan_doc *d, store_import_result *r) {
    d->state = D_DELETED;
    tabs[d->tab].count_delta--;
    r->deleted++;
}

/* A dedup record: replace the oldest live document with its key (delete the others), or
 * insert; a deletion deletes them all. */
static void plan_dedup(import_job *ij, pg_table *tabs, int tab, const store_record *rec,
                       int64_t ts) {
    plan *pl = &ij->pl;
    const unsigned char *k = ij->b->keys + rec->key_off;
    plan_slot *sl = plan_slot_of(pl, tab, k, rec->key_len);
    int oldest = -1;
    for (int i = sl->first; i >= 0; i = pl->docs[i].next)
        if (pl->docs[i].state != D_DELETED && (oldest < 0 || pl->docs[i].ct < pl->docs[oldest].ct))
            oldest = i;
    if (!rec->deleted && oldest < 0) {
        plan_doc *d = plan_new_doc(pl, tabs, tab, k, rec->key_len, ts);
        d->doc = ij->b->docs + rec->doc_off;
        d->len = rec->doc_len;
        ij->r->inserted++;
        return;
    }
    for (int i = sl->first; i >= 0; i = pl->docs[i].next) {
        plan_doc *d = &pl->docs[i];
        if (d->state == D_DELETED) continue;
        if (i == oldest && !rec->deleted) {
            if (d->stored) d->state = D_REPLACED;
            d->doc = ij->b->docs + rec->doc_off;
            d->len = rec->doc_len;
            ij->r->replaced++;
        } else {
            plan_delete(tabs, d, ij->r);
        }
    }
}

/* An index entry's row (pg_copy_entries). */
static void copy_entry(buf *b, int64_t ix, const unsigned char *key, size_t len, int64_t tablet,
                       const void *id, size_t idlen) {
    pg_copy_i64(b, ix);
    pg_copy_i64(b, key_digest(key, len));
    pg_copy_i64(b, tablet);
    pg_copy_bytea(b, id, idlen);
    pg_copy_bytea(b, key, len);
    pg_copy_row_end(b);
}

enum { OP_INSERT, OP_REPLACE, OP_DELETE };

/* What a planned document needs written: OP_INSERT, OP_REPLACE, OP_DELETE, or -1. */
static int plan_op(const plan_doc *d) {
    switch (d->state) {
    case D_NEW: return OP_INSERT;
    case D_REPLACED: return OP_REPLACE;
    case D_DELETED: return d->stored ? OP_DELETE : -1; /* born in this job: never seen */
    default: return -1;
    }
}

/* A document's row: a new document or the new version of a replaced one. */
static void copy_document(buf *b, const plan_doc *d, const pg_table *t, int64_t ts) {
    pg_copy_i64(b, t->tablet);
    pg_copy_bytea(b, d->id, DOCID_INTERNAL_LEN);
    pg_copy_i64(b, ts);
    pg_copy_f64(b, d->ct);
    pg_copy_text(b, d->doc, d->len);
    pg_copy_row_end(b);
}

/* Whether a planned document needs an index entry written: a new one in a table with an
 * index (a replaced one keeps its entry: same id, same key). */
static int needs_entry(const plan_doc *d, const pg_table *t) {
    return plan_op(d) == OP_INSERT && t->has_index && d->key;
}

/* The versions the job writes, in one COPY, streamed; then the new documents' index
 * entries, in another. */
static int copy_documents(pg_store *s, import_job *ij, const pg_table *tabs, int64_t ts,
                          size_t entries, tr_err *e) {
    if (pg_copy_open(s->w, pg_copy_documents, &s->copy, e) != 0) return -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < ij->pl.ndocs; i++) {
        const plan_doc *d = &ij->pl.docs[i];
        int op = plan_op(d);
        if (op != OP_INSERT && op != OP_REPLACE) continue;
        copy_document(&s->copy, d, &tabs[d->tab], ts);
        rc = pg_copy_flush(s->w, &s->copy, e);
    }
    if (pg_copy_close(s->w, &s->copy, rc, e) != 0) return -1;
    if (!entries) return 0;
    if (pg_copy_open(s->w, pg_copy_entries, &s->copy, e) != 0) return -1;
    for (size_t i = 0; rc == 0 && i < ij->pl.ndocs; i++) {
        const plan_doc *d = &ij->pl.docs[i];
        const pg_table *t = &tabs[d->tab];
        if (!needs_entry(d, t)) continue;
        copy_entry(&s->copy, t->ix, d->key, d->klen, t->tablet, d->id, DOCID_INTERNAL_LEN);
        rc = pg_copy_flush(s->w, &s->copy, e);
    }
    return pg_copy_close(s->w, &s->copy, rc, e);
}

/* Runs w_stmts[k] with parameters p, which must change exactly `n` rows, found by the
 * addresses the job's key lookup returned: anything else means they moved, and nothing
 * of the job may be committed. `what` names the rows in the error. */
static int run_at_lookup(pg_store *s, int k, const pg_params *p, size_t n, const char *what,
                         tr_err *e) {
    PGresult *r = w_exec(s, k, p, e);
    if (!r) return -1;
    long long changed = atoll(PQcmdTuples(r));
    PQclear(r);
    if (changed != (long long)n)
        return err_set(e, 500, "StorageError", "%lld of %zu %s were where the lookup found them",
                       changed, n, what);
    return 0;
}

/* Moves the `n` versions the job ends (replaced or deleted) to history. */
static int move_ended(pg_store *s, import_job *ij, size_t n, int64_t ts, tr_err *e) {
    buf *tids = &s->arr[0];
    pg_array_start(tids, PG_ARRAY_TID, n);
    for (size_t i = 0; i < ij->pl.ndocs; i++) {
        int op = plan_op(&ij->pl.docs[i]);
        if (op == OP_REPLACE || op == OP_DELETE)
            pg_array_item(tids, ij->pl.docs[i].tid, PG_TID_LEN);
    }
    pg_params p = {0};
    pgp_i64(&p, ts);
    pgp_array(&p, tids);
    return run_at_lookup(s, W_MOVE, &p, n, "documents to replace or delete", e);
}

/* Deletes the index entries of the `n` documents the job deletes. */
static int delete_entries(pg_store *s, import_job *ij, size_t n, tr_err *e) {
    buf *tids = &s->arr[0];
    pg_array_start(tids, PG_ARRAY_TID, n);
    for (size_t i = 0; i < ij->pl.ndocs; i++)
        if (plan_op(&ij->pl.docs[i]) == OP_DELETE)
            pg_array_item(tids, ij->pl.docs[i].etid, PG_TID_LEN);
    pg_params p = {0};
    pgp_array(&p, tids);
    return run_at_lookup(s, W_DEL_ENTRIES, &p, n, "index entries to delete", e);
}

/* Records what the job did to table `tab` (W_TABLE_COMMIT): the change-log row lists
 * the ids it wrote or deleted (one row per commit and table keeps the log small: a batch
 * of a thousand records is one row, not a thousand). */
static int table_commit(pg_store *s, import_job *ij, const pg_table *t, int tab, int64_t ts,
                        tr_err *e) {
    size_t n = 0;
    for (size_t i = 0; i < ij->pl.ndocs; i++)
        n += ij->pl.docs[i].tab == tab && plan_op(&ij->pl.docs[i]) >= 0;
    if (!n && !t->written && !t->count_delta) return 0;
    buf *ids = &s->arr[0], *deleted = &s->arr[1];
    pg_array_start(ids, PG_ARRAY_BYTEA, n);
    pg_array_start(deleted, PG_ARRAY_BOOL, n);
    for (size_t i = 0; i < ij->pl.ndocs; i++) {
        const plan_doc *d = &ij->pl.docs[i];
        int op = plan_op(d);
        if (d->tab != tab || op < 0) continue;
        pg_array_item(ids, d->id, DOCID_INTERNAL_LEN);
        pg_array_bool(deleted, op == OP_DELETE);
    }
    pg_params p = {0};
    pgp_i64(&p, ts);
    pgp_i64(&p, t->tablet);
    pgp_array(&p, ids);
    pgp_array(&p, deleted);
    pgp_i64(&p, t->number);
    pgp_f64(&p, t->last_ct);
    pgp_i64(&p, t->next_seq);
    pgp_i64(&p, t->count_delta);
    cache_put(s, t);
    return w_send(s, W_TABLE_COMMIT, &p, e); /* its result: with the next statement */
}

/* The job's decisions in a few bulk operations: the versions it ends move to history
 * (first: the new versions of replaced documents reuse their ids) and deleted documents
 * lose their index entries; the versions it writes and the new documents' entries go in
 * by COPY; then one statement per table records the rest. */
static int plan_apply(pg_store *s, import_job *ij, const pg_table *tabs, size_t ntabs,
                      int64_t ts, tr_err *e) {
    size_t ended = 0, deleted = 0, written = 0, entries = 0;
    for (size_t i = 0; i < ij->pl.ndocs; i++) {
        const plan_doc *d = &ij->pl.docs[i];
        int op = plan_op(d);
        written += op == OP_INSERT || op == OP_REPLACE;
        ended += op == OP_REPLACE || op == OP_DELETE;
        deleted += op == OP_DELETE;
        entries += needs_entry(d, &tabs[d->tab]);
    }
    if (ended && move_ended(s, ij, ended, ts, e) != 0) return -1;
    if (deleted && delete_entries(s, ij, deleted, e) != 0) return -1;
    if (written && copy_documents(s, ij, tabs, ts, entries, e) != 0) return -1;
    for (size_t k = 0; k < ntabs; k++)
        if (table_commit(s, ij, &tabs[k], (int)k, ts, e) != 0) return -1;
    return 0;
}

/* Loads every table that has records; map[stream] = index into tabs, or -1. */
static int import_tables(pg_store *s, const store_batch *b, int *map, pg_table *tabs,
                         size_t *ntabs, tr_err *e) {
    const char **names = arena_alloc(s->job_arena, b->nstreams * sizeof *names);
    if (batch_tables(b, map, names, ntabs, e) != 0) return -1;
    for (size_t k = 0; k < *ntabs; k++)
        if (table_load(s, names[k], &tabs[k], e) != 0) return -1;
    return 0;
}

static int import_shapes_merge(pg_store *s, import_job *ij, const int *map,
                               const pg_table *tabs, tr_err *e) {
    for (size_t i = 0; i < ij->b->nstreams; i++) {
        if (!ij->shapes[i] || map[i] < 0) continue;
        const pg_table *t = &tabs[map[i]];
        pg_shape *sh = shape_of(s, t->tablet, t->shape, t->shape_len, e);
        if (!sh) return -1;
        int changed = 0;
        shape_merge(sh->sh, ij->shapes[i], &changed);
        sh->dirty |= changed;
    }
    return 0;
}

static int import_run(store *st, wq_job *job, int64_t ts, tr_err *e) {
    pg_store *s = (pg_store *)st;
    import_job *ij = (import_job *)job;
    const store_batch *b = ij->b;
    *ij->r = (store_import_result){0, 0, 0};
    arena_reset(s->job_arena);
    ij->pl.ndocs = 0;
    int *map = arena_alloc(s->job_arena, b->nstreams * sizeof *map);
    pg_table *tabs = arena_alloc(s->job_arena, b->nstreams * sizeof *tabs);
    size_t ntabs;
    if (import_tables(s, b, map, tabs, &ntabs, e) != 0) return -1;
    for (size_t i = 0; i < b->nstreams; i++) {
        const pg_table *t = map[i] >= 0 ? &tabs[map[i]] : NULL;
        if (t && b->streams[i].dedup &&
            batch_check_index(&b->streams[i], t->exists && t->has_index, t->index_ready,
                              t->fields, &s->key, e) != 0)
            return -1;
    }
    for (size_t k = 0; k < ntabs; k++)
        if (!tabs[k].exists && table_create(s, &tabs[k], ts, e) != 0) return -1;

    size_t nslots = 16;
    while (nslots < 2 * b->nrecords + 16) nslots *= 2;
    ij->pl.nslots = nslots;
    ij->pl.slots = arena_alloc(s->job_arena, nslots * sizeof *ij->pl.slots);
    memset(ij->pl.slots, 0, nslots * sizeof *ij->pl.slots);
    for (size_t k = 0; k < ntabs; k++) {
        int dedup = 0;
        for (size_t i = 0; i < b->nstreams; i++) dedup |= map[i] == (int)k && b->streams[i].dedup;
        if (dedup && plan_lookup(s, ij, map, tabs, (int)k, e) != 0) return -1;
    }
    for (size_t i = 0; i < b->nrecords; i++) {
        const store_record *rec = &b->records[i];
        int tab = map[rec->stream];
        if (!b->streams[rec->stream].dedup) {
            if (plan_append(s, ij, tabs, tab, rec, ts, e) != 0) return -1;
        } else {
            plan_dedup(ij, tabs, tab, rec, ts);
        }
    }
    if (plan_apply(s, ij, tabs, ntabs, ts, e) != 0) return -1;
    return import_shapes_merge(s, ij, map, tabs, e);
}

static int pg_import(store *st, const store_batch *b, store_import_result *r, tr_err *e) {
    pg_store *s = (pg_store *)st;
    if (writable(s, e) != 0) return -1;
    import_job j = {.base = {.run = import_run, .stamped = 1}, .b = b, .r = r};
    int rc = batch_shapes(b, &j.shapes, e) == 0 ? queue_run(s, &j.base, e) : -1;
    batch_shapes_free(b, j.shapes);
    free(j.pl.docs);
    if (rc != 0) *r = (store_import_result){0, 0, 0};
    return rc;
}

/* ---- clear_tables ---- */

typedef struct clear_job {
    wq_job base;
    const char *const *names;
    size_t n;
    uint64_t cleared;
} clear_job;

/* Swaps in a fresh empty generation; the old one stays readable until reclaimed. */
static int clear_one(pg_store *s, const char *name, int64_t ts, uint64_t *cleared, tr_err *e) {
    pg_table t;
    if (table_load(s, name, &t, e) != 0) return -1;
    if (!t.exists) return table_create(s, &t, ts, e);
    pg_params p = {0};
    pgp_i64(&p, t.tablet);
    pgp_i64(&p, ts);
    pgp_i64(&p, t.number);
    /* listed twice: the second time finds the generation this job created, and keeps it */
    PGresult *r = pg_exec(s->w,
                          "WITH old AS (UPDATE tablets SET dropped_ts = $2"
                          "             WHERE id = $1 AND created_ts <> $2 RETURNING doc_count),"
                          " g AS (INSERT INTO tablets(table_number, created_ts)"
                          "       SELECT $3, $2 FROM old RETURNING id),"
                          " sw AS (UPDATE tables SET tablet = g.id FROM g WHERE number = $3),"
                          " sh AS (DELETE FROM shapes WHERE tablet = $1 AND EXISTS"
                          "        (SELECT 1 FROM old))"
                          " SELECT doc_count FROM old",
                          &p, e);
    if (!r) return -1;
    int swapped = PQntuples(r) == 1;
    if (swapped) *cleared += (uint64_t)pg_i64(r, 0, 0);
    PQclear(r);
    if (swapped) shape_forget(s, t.tablet);
    if (!swapped || !t.has_index) return 0;
    int64_t ix;
    if (index_retire(s, t.ix, e) != 0 || index_instance(s, &ix, e) != 0) return -1;
    pg_params q = {0};
    pgp_i64(&q, t.number);
    pgp_i64(&q, ix);
    return pg_run(s->w,
                  "UPDATE pk_indexes SET ix = $2, state = 'ready', cursor = NULL, end_id = NULL"
                  " WHERE table_number = $1",
                  &q, e);
}

static int clear_run(store *st, wq_job *job, int64_t ts, tr_err *e) {
    pg_store *s = (pg_store *)st;
    clear_job *cj = (clear_job *)job;
    cj->cleared = 0;
    arena_reset(s->job_arena);
    for (size_t i = 0; i < cj->n; i++)
        if (clear_one(s, cj->names[i], ts, &cj->cleared, e) != 0) return -1;
    job->kick = 1;
    return 0;
}

static int pg_clear_tables(store *st, const char *const *tables, size_t n, uint64_t *cleared,
                           tr_err *e) {
    pg_store *s = (pg_store *)st;
    if (writable(s, e) != 0) return -1;
    clear_job j = {.base = {.run = clear_run, .stamped = 1}, .names = tables, .n = n};
    if (queue_run(s, &j.base, e) != 0) return -1;
    *cleared = j.cleared;
    return 0;
}

/* ---- primary key indexes ---- */

typedef struct index_job {
    wq_job base;
    const store_index_req *reqs;
    size_t n;
} index_job;

static int index_one(pg_store *s, const store_index_req *req, int64_t ts, int *kick, tr_err *e) {
    pg_table t;
    if (table_load_or_create(s, req->table, &t, ts, e) != 0) return -1;
    buf_reset(&s->key);
    pkey_canonical(&req->key, &s->key);
    if (t.has_index && strcmp(t.fields, s->key.p) == 0) return 0;
    int64_t ix;
    if ((t.has_index && index_retire(s, t.ix, e) != 0) || index_instance(s, &ix, e) != 0)
        return -1;
    pg_params p = {0};
    pgp_i64(&p, t.number);
    pgp_i64(&p, ix);
    pgp_text(&p, s->key.p, s->key.len);
    pgp_i64(&p, t.tablet);
    /* end_id: the last document a backfill must visit; later ones get their entries from
     * the writes that insert them, so the build never chases a growing table */
    PGresult *r = pg_exec(s->w,
                          "WITH last AS (SELECT (SELECT id FROM documents WHERE tablet = $4"
                          "              ORDER BY id DESC LIMIT 1) AS id)"
                          " INSERT INTO pk_indexes(table_number, ix, fields, state, cursor, end_id)"
                          " SELECT $1, $2, $3,"
                          "   CASE WHEN id IS NULL THEN 'ready' ELSE 'backfilling' END, NULL, id"
                          " FROM last"
                          " ON CONFLICT (table_number) DO UPDATE SET ix = excluded.ix,"
                          "   fields = excluded.fields, state = excluded.state, cursor = NULL,"
                          "   end_id = excluded.end_id"
                          " RETURNING state = 'backfilling'",
                          &p, e);
    if (!r) return -1;
    *kick |= pg_i64(r, 0, 0) != 0;
    PQclear(r);
    return 0;
}

static int index_run(store *st, wq_job *job, int64_t ts, tr_err *e) {
    pg_store *s = (pg_store *)st;
    index_job *ij = (index_job *)job;
    arena_reset(s->job_arena);
    for (size_t i = 0; i < ij->n; i++)
        if (index_one(s, &ij->reqs[i], ts, &job->kick, e) != 0) return -1;
    return 0;
}

static int pg_add_indexes(store *st, const store_index_req *reqs, size_t n, tr_err *e) {
    pg_store *s = (pg_store *)st;
    if (writable(s, e) != 0) return -1;
    index_job j = {.base = {.run = index_run, .stamped = 1}, .reqs = reqs, .n = n};
    return queue_run(s, &j.base, e);
}

/* ---- background work: one step per job, all progress in the database ---- */

/* Gives each document of `docs` (id, value) its entry in index instance ix: appended
 * to the entries table by one COPY. */
static int backfill_entries(pg_store *s, PGresult *docs, int64_t tablet, int64_t ix,
                            const pkey *k, tr_err *e) {
    if (pg_copy_open(s->w, pg_copy_entries, &s->copy, e) != 0) return -1;
    int rc = 0;
    for (int i = 0; rc == 0 && i < PQntuples(docs); i++) {
        size_t idlen, vlen;
        const char *id = pg_val(docs, i, 0, &idlen);
        const char *v = pg_val(docs, i, 1, &vlen);
        arena_reset(s->doc_arena);
        if ((rc = store_doc_key(k, v, vlen, s->doc_arena, &s->key, e)) != 0) break;
        copy_entry(&s->copy, ix, (const unsigned char *)s->key.p, s->key.len, tablet, id, idlen);
        rc = pg_copy_flush(s->w, &s->copy, e);
    }
    return pg_copy_close(s->w, &s->copy, rc, e);
}

/* The next chunk of documents to index, read through the primary key in id order
 * whatever the statistics say: on a table bulk-loaded moments ago and never analyzed, the
 * planner picks a bitmap scan of the whole rest of the range plus a sort for every
 * chunk, which makes a backfill quadratic. */
static PGresult *backfill_docs(pg_store *s, const pg_params *p, tr_err *e) {
    /* bitmap scans are off for the whole writer session (pg_writer_session) */
    if (pg_run(s->w, "SET LOCAL enable_sort = off", NULL, e) != 0) return NULL;
    PGresult *r = pg_exec(s->w,
                          "SELECT id, value FROM documents WHERE tablet = $1"
                          " AND id > $2 AND id <= $3 ORDER BY id LIMIT $4",
                          p, e);
    tr_err ignored;
    if (pg_run(s->w, "RESET enable_sort", NULL, r ? e : &ignored) == 0)
        return r;
    PQclear(r);
    return NULL;
}

/* Indexes the next chunk of the first backfilling index's documents, up to end_id, and
 * marks the index ready once it has seen them all. */
static int backfill_step(pg_store *s, int *more, tr_err *e) {
    *more = 0;
    PGresult *r = pg_exec(s->w,
                          "SELECT p.table_number, p.ix, p.fields, p.cursor, p.end_id, t.tablet"
                          " FROM pk_indexes p JOIN tables t ON t.number = p.table_number"
                          " WHERE p.state = 'backfilling' ORDER BY p.table_number LIMIT 1",
                          NULL, e);
    if (!r) return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return 0;
    }
    *more = 1;
    int64_t number = pg_i64(r, 0, 0), ix = pg_i64(r, 0, 1), tablet = pg_i64(r, 0, 5);
    arena_reset(s->job_arena);
    size_t n, clen, elen;
    const char *f = pg_val(r, 0, 2, &n);
    f = arena_strndup(s->job_arena, f, n);
    pkey k;
    int rc = store_index_key(f, n, s->job_arena, &k, e);
    const char *cur = pg_val(r, 0, 3, &clen);
    const char *end = pg_val(r, 0, 4, &elen);
    int no_end = pg_isnull(r, 0, 4);
    pg_params p = {0};
    pgp_i64(&p, tablet);
    pgp_bytes(&p, cur, pg_isnull(r, 0, 3) ? 0 : clen);
    pgp_bytes(&p, end, elen);
    pgp_i64(&p, PG_BACKFILL_CHUNK);
    PGresult *docs = rc == 0 && !no_end ? backfill_docs(s, &p, e) : NULL;
    PQclear(r);
    if (rc != 0 || (!no_end && !docs)) return -1;
    int rows = docs ? PQntuples(docs) : 0;
    if (rows > 0) {
        pg_params q = {0};
        size_t idlen;
        const char *last = pg_val(docs, rows - 1, 0, &idlen);
        pgp_i64(&q, number);
        pgp_bytes(&q, last, idlen);
        rc = backfill_entries(s, docs, tablet, ix, &k, e) == 0 &&
                     pg_run(s->w, "UPDATE pk_indexes SET cursor = $2 WHERE table_number = $1",
                            &q, e) == 0
                 ? 0
                 : -1;
    }
    PQclear(docs);
    if (rc != 0 || rows == PG_BACKFILL_CHUNK) return rc;
    pg_params q = {0};
    pgp_i64(&q, number);
    return pg_run(s->w,
                  "UPDATE pk_indexes SET state = 'ready', cursor = NULL WHERE table_number = $1",
                  &q, e);
}

/* One chunk of the entries of a retired index instance (no reader uses entries, so they
 * go at once, not after the retention window). */
static int reclaim_entries(pg_store *s, int *more, tr_err *e) {
    pg_params p = {0};
    pgp_i64(&p, PG_RECLAIM_CHUNK);
    PGresult *r = pg_exec(s->w,
                          "WITH d AS (SELECT ix FROM dead_indexes ORDER BY ix LIMIT 1),"
                          " x AS (DELETE FROM entries WHERE ctid = ANY(ARRAY("
                          "   SELECT ctid FROM entries WHERE " PG_ENTRY_SLOT " BETWEEN"
                          "   " PG_SLOT_OF("(SELECT ix FROM d)", "0") " AND"
                          "   " PG_SLOT_OF("(SELECT ix FROM d)", "-1")
                          "   AND ix = (SELECT ix FROM d) LIMIT $1))"
                          "   RETURNING 1)"
                          " SELECT (SELECT ix FROM d), (SELECT count(*) FROM x)",
                          &p, e);
    if (!r) return -1;
    int dead = !pg_isnull(r, 0, 0);
    int64_t ix = dead ? pg_i64(r, 0, 0) : 0, n = pg_i64(r, 0, 1);
    PQclear(r);
    *more |= dead;
    if (!dead || n == PG_RECLAIM_CHUNK) return 0;
    pg_params q = {0};
    pgp_i64(&q, ix);
    return pg_run(s->w, "DELETE FROM dead_indexes WHERE ix = $1", &q, e);
}

/* Deletes one chunk of what no reader can need: entries of retired index instances,
 * documents of generations dropped before the horizon, versions replaced before it,
 * change-log rows older than it. The horizon reached is recorded (meta.reclaim_floor) in
 * the same transaction, for readers. */
static int reclaim_step(pg_store *s, int *more, tr_err *e) {
    int64_t now = clock_ns();
    int64_t horizon = (now > s->last_ts ? now : s->last_ts) - s->retention_ns;
    static const char *const sql[] = {
        "WITH g AS (SELECT id FROM tablets WHERE dropped_ts < $1 ORDER BY dropped_ts LIMIT 1),"
        " d AS (DELETE FROM documents WHERE tablet = (SELECT id FROM g) AND id = ANY(ARRAY("
        "   SELECT id FROM documents WHERE tablet = (SELECT id FROM g) ORDER BY id LIMIT $2))"
        "   RETURNING 1)"
        " SELECT (SELECT id FROM g), (SELECT count(*) FROM d)",
        "DELETE FROM history WHERE ctid = ANY(ARRAY("
        " SELECT ctid FROM history WHERE valid_to < $1 LIMIT $2))",
        "DELETE FROM changes WHERE ctid = ANY(ARRAY("
        " SELECT ctid FROM changes WHERE ts < $1 LIMIT $2))",
    };
    int64_t deleted = 0;
    *more = 0;
    if (reclaim_entries(s, more, e) != 0) return -1;
    static const int64_t limit[] = {PG_RECLAIM_CHUNK, PG_RECLAIM_CHUNK, PG_RECLAIM_LOG_ROWS};
    for (int i = 0; i < 3; i++) {
        pg_params p = {0};
        pgp_i64(&p, horizon);
        pgp_i64(&p, limit[i]);
        PGresult *r = pg_exec(s->w, sql[i], &p, e);
        if (!r) return -1;
        int64_t n = i == 0 ? pg_i64(r, 0, 1) : atoll(PQcmdTuples(r));
        int64_t gone = i == 0 && !pg_isnull(r, 0, 0) && n < limit[i] ? pg_i64(r, 0, 0) : 0;
        PQclear(r);
        deleted += n;
        *more |= n == limit[i];
        if (gone) {
            /* the generation is empty now: forget it and its shape */
            pg_params q = {0};
            pgp_i64(&q, gone);
            if (pg_run(s->w, "WITH t AS (DELETE FROM tablets WHERE id = $1)"
                             " DELETE FROM shapes WHERE tablet = $1", &q, e) != 0)
                return -1;
            *more = 1;
        }
    }
    if (deleted == 0) return 0;
    pg_params p = {0};
    pgp_i64(&p, horizon);
    return pg_run(s->w, "UPDATE meta SET value = greatest(value, $1) WHERE key = 'reclaim_floor'",
                  &p, e);
}

typedef struct maint_job {
    wq_job base;
    int backfill; /* else reclaim */
    int more;
} maint_job;

/* A backfill step that has its transaction to itself goes on with the next chunks while
 * no job of this process waits, up to PG_BACKFILL_CHUNKS_MAX: fewer commits and lock
 * rounds, and a job that arrives meanwhile still waits for one chunk at most. */
static int maint_run(store *st, wq_job *job, int64_t ts, tr_err *e) {
    (void)ts;
    pg_store *s = (pg_store *)st;
    maint_job *mj = (maint_job *)job;
    if (!mj->backfill) return reclaim_step(s, &mj->more, e);
    int chunks = 0;
    do {
        if (backfill_step(s, &mj->more, e) != 0) return -1;
    } while (mj->more && s->group_jobs == 1 && ++chunks < PG_BACKFILL_CHUNKS_MAX &&
             !wq_waiting(&s->q));
    return 0;
}

static int bg_step(pg_store *s, int backfill) {
    maint_job j = {.base = {.run = maint_run, .stamped = 0}, .backfill = backfill};
    tr_err e;
    if (queue_run(s, &j.base, &e) != 0) {
        fprintf(stderr, "tributary: background %s: %s\n",
                backfill ? "index backfill" : "space reclaim", e.message);
        return 0;
    }
    return j.more;
}

/* Whether any index is backfilling, asked without the commit lock (cheap enough to ask
 * every few seconds: this is how a backfill left by a dead process gets picked up). */
static int backfill_waiting(pg_store *s) {
    tr_err e;
    PGconn *c = pg_reader_get(s, &e);
    if (!c) return 0;
    PGresult *r = pg_exec(c, "SELECT 1 FROM pk_indexes WHERE state = 'backfilling' LIMIT 1",
                          NULL, &e);
    int waiting = r && PQntuples(r) > 0;
    PQclear(r);
    pg_reader_put(s, c);
    return waiting;
}

/* A background round (bgthread.h, every PG_POLL_S): a backfill step when an index is
 * building, a reclaim step after a kick or every PG_RECLAIM_S. */
static int bg_round(void *ctx, int kicked) {
    pg_store *s = ctx;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int more = (kicked || backfill_waiting(s)) && bg_step(s, 1);
    if (kicked || now.tv_sec - s->last_reclaim.tv_sec >= PG_RECLAIM_S) {
        s->last_reclaim = now;
        more |= bg_step(s, 0);
    }
    return more;
}

/* ---- open / close ---- */

static int schema_exists(PGconn *c, int *exists, tr_err *e) {
    PGresult *r = pg_exec(c, "SELECT to_regclass('tributary.meta') IS NOT NULL", NULL, e);
    if (!r) return -1;
    *exists = pg_i64(r, 0, 0) != 0;
    PQclear(r);
    return 0;
}

/* Version 1 logged one change-log row per document (version 2: one per commit and
 * generation) and kept index entries in columns of documents, with 16-byte key digests
 * (version 2: a table of their own, with the digests' first 8 bytes as a bigint; entries
 * of retired index instances are left behind). Under the commit lock, so no writer of
 * any process is in between. */
static const char pg_migrate_v1[] =
    "BEGIN; SELECT pg_advisory_xact_lock(" PG_COMMIT_LOCK ");"
    "ALTER TABLE tributary.changes RENAME TO changes_v1;"
    "ALTER INDEX tributary.changes_pkey RENAME TO changes_v1_pkey;" PG_CHANGES_TABLE ";"
    "INSERT INTO tributary.changes(ts, tablet, ids, deleted)"
    "  SELECT ts, tablet, array_agg(id ORDER BY id), array_agg(deleted ORDER BY id)"
    "  FROM tributary.changes_v1 GROUP BY ts, tablet;"
    "DROP TABLE tributary.changes_v1;"
    PG_ENTRIES_TABLE ";"
    "INSERT INTO tributary.entries(ix, kh, tablet, id, key)"
    "  SELECT d.ix, ('x' || encode(substring(d.kh FROM 1 FOR 8), 'hex'))::bit(64)::bigint,"
    "    d.tablet, d.id, d.key"
    "  FROM tributary.documents d JOIN tributary.pk_indexes p ON p.ix = d.ix;"
    "DROP INDEX tributary.documents_by_key;"
    "ALTER TABLE tributary.documents DROP COLUMN ix, DROP COLUMN key, DROP COLUMN kh;"
    "UPDATE tributary.meta SET value = 2 WHERE key = 'schema_version';"
    "COMMIT";

/* Version 3 indexes entries by one bigint (PG_ENTRY_SLOT; version 2: by (ix, kh)). */
static const char pg_migrate_v2[] =
    "BEGIN; SELECT pg_advisory_xact_lock(" PG_COMMIT_LOCK ");"
    "DROP INDEX IF EXISTS tributary.entries_by_key;" PG_ENTRIES_TABLE ";"
    "UPDATE tributary.meta SET value = 3 WHERE key = 'schema_version';"
    "COMMIT";

/* Creates the schema when it is missing (one transaction: the DDL and the first
 * timestamp, which starts at the clock as a cursor of 0 means "none" to some clients),
 * or brings an older version up to date. Processes starting together serialise on a
 * session lock; a current schema is never touched, so a starting process takes no lock
 * a running writer could be waiting on. */
static int schema_update(PGconn *c, tr_err *e) {
    if (pg_run(c, "SELECT pg_advisory_lock(" PG_SCHEMA_LOCK ")", NULL, e) != 0) return -1;
    int exists = 0;
    int64_t version = 0;
    int rc = schema_exists(c, &exists, e);
    if (rc == 0 && !exists) {
        buf sql = BUF_INIT;
        buf_printf(&sql,
                   "%s; INSERT INTO tributary.meta(key, value) VALUES ('last_ts', %lld)"
                   " ON CONFLICT (key) DO NOTHING",
                   pg_schema, (long long)clock_ns());
        rc = pg_run(c, sql.p, NULL, e);
        buf_free(&sql);
    } else if (rc == 0 && (rc = meta_i64(c, "schema_version", &version, e)) == 0) {
        if (version == 1) rc = pg_run(c, pg_migrate_v1, NULL, e);
        if (rc == 0 && (version == 1 || version == 2)) rc = pg_run(c, pg_migrate_v2, NULL, e);
        if (rc != 0) rollback_conn(c);
    }
    tr_err ignored;
    pg_run(c, "SELECT pg_advisory_unlock(" PG_SCHEMA_LOCK ")", NULL, &ignored);
    return rc;
}

/* Creates or updates the schema if needed (not in read-only mode) and checks its
 * version. */
static int schema_setup(PGconn *c, int readonly, tr_err *e) {
    int exists;
    int64_t version = 0;
    int v = PQserverVersion(c); /* 90603: 9.6.3; 120005: 12.5 */
    if (v < PG_MIN_SERVER)
        return err_set(e, 500, "StorageError",
                       "tributary needs PostgreSQL 13 or later; this server is %d.%d",
                       v / 10000, v >= 100000 ? v % 100 : v % 10000 / 100);
    if (schema_exists(c, &exists, e) != 0) return -1;
    if (!exists && readonly)
        return err_set(e, 500, "StorageError",
                       "The database holds no tributary data (no schema 'tributary')");
    if (exists && meta_i64(c, "schema_version", &version, e) != 0) return -1;
    if (!readonly && (!exists || version < PG_SCHEMA_VERSION)) {
        if (schema_update(c, e) != 0 || meta_i64(c, "schema_version", &version, e) != 0)
            return -1;
    }
    if (version != PG_SCHEMA_VERSION)
        return err_set(e, 500, "StorageError",
                       "The database has tributary schema version %lld; this build reads "
                       "version %d%s",
                       (long long)version, PG_SCHEMA_VERSION,
                       readonly && version < PG_SCHEMA_VERSION
                           ? " (start `tributary serve` on it once to update it)"
                           : "");
    return 0;
}

static void pg_close(store *st) {
    pg_store *s = (pg_store *)st;
    bgt_close(&s->bg);
    PQfinish(s->w);
    for (size_t i = 0; i < s->nreaders; i++) PQfinish(s->readers[i]);
    shapes_drop(s);
    free(s->shapes);
    cache_drop(s);
    free(s->tables);
    arena_free(s->job_arena);
    arena_free(s->doc_arena);
    buf_free(&s->key);
    buf_free(&s->copy);
    buf_free(&s->arr[0]);
    buf_free(&s->arr[1]);
    buf_free(&s->text);
    wq_destroy(&s->q);
    pthread_mutex_destroy(&s->rmu);
    pthread_cond_destroy(&s->rcv);
    snapcache_free(s->snaps);
    free(s->url);
    free(s);
}

static const store_ops pg_ops = {
    .close = pg_close,
    .import = pg_import,
    .clear_tables = pg_clear_tables,
    .add_indexes = pg_add_indexes,
    .indexes_ready = pg_indexes_ready,
    .export_table = pg_export_table,
    .list_snapshot = pg_list_snapshot,
    .document_deltas = pg_document_deltas,
    .table_shapes = pg_table_shapes,
    .table_stats = pg_table_stats,
};

int store_pg_open(const store_config *c, store **out, tr_err *e) {
    pg_store *s = xcalloc(1, sizeof *s);
    s->base.ops = &pg_ops;
    s->url = xstrdup(c->database_url);
    s->readonly = c->readonly;
    s->retention_ns = c->retention_ns;
    s->job_arena = arena_new();
    s->doc_arena = arena_new();
    wq_init(&s->q);
    pthread_mutex_init(&s->rmu, NULL);
    pthread_cond_init(&s->rcv, NULL);
    if (c->snapshot_cache_rows) s->snaps = snapcache_new(c->snapshot_cache_rows);
    bgt_init(&s->bg);

    PGconn *setup = pg_connect(s->url, e);
    int rc = setup && schema_setup(setup, s->readonly, e) == 0 &&
                     pg_run(setup, pg_reader_session, NULL, e) == 0
                 ? 0
                 : -1;
    if (rc == 0) {
        s->nopen = 1;
        pg_reader_put(s, setup);
    } else {
        PQfinish(setup);
    }
    if (rc == 0 && !s->readonly) rc = writer_ready(s, e);
    if (rc == 0 && !s->readonly) {
        if (bgt_start(&s->bg, bg_round, s, PG_POLL_S) != 0)
            rc = err_set(e, 500, "StorageError", "Cannot start the background thread");
    }
    if (rc != 0) {
        pg_close(&s->base);
        return -1;
    }
    *out = &s->base;
    return 0;
}

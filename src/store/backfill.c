/*
 * backfill.c — index and space upkeep of the SQLite engine: building primary key indexes
 * over existing documents and deleting what no reader can see any more (background
 * work), and merging recent index entries into the main index (backfill.h).
 *
 * Both run as many small steps instead of one big statement, so an import waiting for
 * the writer waits for one step at most (a few milliseconds), and a crash loses at most
 * one step: the backfill cursor (last document id indexed) is saved with each step, and
 * reclaim needs no cursor because what it deletes is gone once committed.
 *
 * Backfill reads documents in id order (ids grow with insertion, see docid.h) up to the
 * last id that existed when the index was created. Documents written after that add
 * their own entries (INSERT OR IGNORE, so either side may be first), which is why the
 * build ends even while imports never pause.
 *
 * Reclaim deletes at most about SQ_RECLAIM_CHUNK rows per step (SQ_RECLAIM_LOG_ROWS of the
 * change log, whose rows each list a commit's ids): through a LIMITed subquery of rowids
 * for rowid tables, and for the WITHOUT ROWID index entries by first reading the key of
 * the last row to delete, then deleting the key range up to it. The merge cuts its chunks
 * the same way.
 */
#include "store/backfill.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store/keys.h"
#include "util/xalloc.h"

enum {
    M_BF_NEXT,
    M_BF_DOCS,
    M_BF_ENTRY,
    M_BF_CURSOR,
    M_BF_READY,
    M_RC_DEAD,
    M_RC_DEAD_BOUND,
    M_RC_DEAD_SOME,
    M_RC_DEAD_ALL,
    M_RC_DEAD_RECENT,
    M_RC_DEAD_DONE,
    M_MG_BOUND,
    M_MG_MOVE,
    M_MG_DROP,
    M_RC_TABLET,
    M_RC_TABLET_DOCS,
    M_RC_TABLET_DONE,
    M_RC_HISTORY,
    M_RC_LOG,
    M_NSTMT
};

static const char *const maint_sql[M_NSTMT] = {
    [M_BF_NEXT] = "SELECT p.table_number, p.ix, p.fields, p.cursor, t.tablet, p.end_id"
                  " FROM pk_indexes p JOIN tables t ON t.number = p.table_number"
                  " WHERE p.state = 'backfilling' ORDER BY p.table_number LIMIT 1",
    [M_BF_DOCS] = "SELECT id, rowid, value FROM documents"
                  " WHERE tablet = ?1 AND id > ?2 AND id <= ?4 ORDER BY id LIMIT ?3",
    [M_BF_ENTRY] = "INSERT OR IGNORE INTO pk_entries(ix, key, doc) VALUES (?1, ?2, ?3)",
    [M_BF_CURSOR] = "UPDATE pk_indexes SET cursor = ?2 WHERE table_number = ?1",
    [M_BF_READY] = "UPDATE pk_indexes SET state = 'ready', cursor = NULL"
                   " WHERE table_number = ?1",
    [M_RC_DEAD] = "SELECT ix FROM dead_indexes LIMIT 1",
    [M_RC_DEAD_BOUND] = "SELECT key, doc FROM pk_entries WHERE ix = ?1"
                        " ORDER BY key, doc LIMIT 1 OFFSET ?2",
    [M_RC_DEAD_SOME] = "DELETE FROM pk_entries WHERE ix = ?1 AND (key, doc) <= (?2, ?3)",
    [M_RC_DEAD_ALL] = "DELETE FROM pk_entries WHERE ix = ?1",
    [M_RC_DEAD_RECENT] = "DELETE FROM pk_recent WHERE ix = ?1",
    [M_RC_DEAD_DONE] = "DELETE FROM dead_indexes WHERE ix = ?1",
    /* a chunk: the entries after the cursor (?1, ?2, ?3) up to the bound (?4, ?5, ?6) */
    [M_MG_BOUND] = "SELECT ix, key, doc FROM pk_recent WHERE (ix, key, doc) > (?1, ?2, ?3)"
                   " ORDER BY ix, key, doc LIMIT 1 OFFSET ?4",
    [M_MG_MOVE] = "INSERT OR IGNORE INTO pk_entries(ix, key, doc)"
                  " SELECT ix, key, doc FROM pk_recent"
                  " WHERE (ix, key, doc) > (?1, ?2, ?3) AND (ix, key, doc) <= (?4, ?5, ?6)"
                  " ORDER BY ix, key, doc",
    [M_MG_DROP] = "DELETE FROM pk_recent"
                  " WHERE (ix, key, doc) > (?1, ?2, ?3) AND (ix, key, doc) <= (?4, ?5, ?6)",
    [M_RC_TABLET] = "SELECT id FROM tablets"
                    " WHERE dropped_ts IS NOT NULL AND dropped_ts < ?1 LIMIT 1",
    [M_RC_TABLET_DOCS] = "DELETE FROM documents WHERE rowid IN"
                         " (SELECT rowid FROM documents WHERE tablet = ?1 LIMIT ?2)",
    [M_RC_TABLET_DONE] = "DELETE FROM tablets WHERE id = ?1",
    [M_RC_HISTORY] = "DELETE FROM history WHERE rowid IN"
                     " (SELECT rowid FROM history WHERE valid_to < ?1 LIMIT ?2)",
    [M_RC_LOG] = "DELETE FROM changes WHERE rowid IN"
                 " (SELECT rowid FROM changes WHERE ts < ?1 ORDER BY ts LIMIT ?2)",
};

/* One index entry of a backfill step, collected so the step can insert in key order. */
typedef struct bf_item {
    const unsigned char *key;
    size_t len;
    int64_t doc;
} bf_item;

/* A position in pk_recent's key order; ix 0 (no index has it) is before every entry. */
typedef struct mg_pos {
    int64_t ix;
    buf key;
    int64_t doc;
} mg_pos;

struct sq_maint {
    sqlite3 *db;
    mg_pos from, to; /* the merge sweep's cursor; the bound of its step */
    sqlite3_stmt *st[M_NSTMT];
    arena *a;     /* per document parsed */
    arena *keys;  /* per backfill step: the entries' keys */
    bf_item *items;
    size_t cap_items;
    buf key;
    pkey k;
};

int sq_error(sqlite3 *db, int rc, tr_err *e) {
    const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    int primary = rc & 0xff;
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
        return err_set(e, 503, "DatabaseUnavailable", "The database is busy, try again: %s", msg);
    return err_set(e, 500, "StorageError", "Storage error: %s", msg);
}

sqlite3_stmt *sq_prepare(sqlite3 *db, sqlite3_stmt **slot, const char *sql, tr_err *e) {
    if (*slot) return *slot;
    int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL);
    if (rc != SQLITE_OK) {
        sq_error(db, rc, e);
        *slot = NULL;
    }
    return *slot;
}

int sq_step_done(sqlite3 *db, sqlite3_stmt *st, tr_err *e) {
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) sq_error(db, rc, e);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

sq_maint *sq_maint_new(sqlite3 *writer) {
    sq_maint *m = xcalloc(1, sizeof *m);
    m->db = writer;
    m->a = arena_new();
    m->keys = arena_new();
    return m;
}

void sq_maint_free(sq_maint *m) {
    if (!m) return;
    for (size_t i = 0; i < M_NSTMT; i++) sqlite3_finalize(m->st[i]);
    arena_free(m->a);
    arena_free(m->keys);
    free(m->items);
    buf_free(&m->key);
    buf_free(&m->from.key);
    buf_free(&m->to.key);
    free(m);
}

static sqlite3_stmt *maint_stmt(sq_maint *m, int id, tr_err *e) {
    return sq_prepare(m->db, &m->st[id], maint_sql[id], e);
}

/* The backfilling index to work on next, or *found = 0. */
typedef struct bf_target {
    int64_t table_number, ix, tablet;
    unsigned char cursor[64];
    int cursor_len;
    unsigned char end[64]; /* last document id that existed when the index was created */
    int end_len;
} bf_target;

static int bf_next(sq_maint *m, bf_target *t, int *found, tr_err *e) {
    sqlite3_stmt *st = maint_stmt(m, M_BF_NEXT, e);
    if (!st) return -1;
    int rc = sqlite3_step(st);
    *found = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW) {
        t->table_number = sqlite3_column_int64(st, 0);
        t->ix = sqlite3_column_int64(st, 1);
        t->tablet = sqlite3_column_int64(st, 4);
        const void *cur = sqlite3_column_blob(st, 3);
        int clen = sqlite3_column_bytes(st, 3);
        t->cursor_len = clen <= (int)sizeof t->cursor ? clen : 0;
        if (cur && t->cursor_len) memcpy(t->cursor, cur, (size_t)t->cursor_len);
        const void *end = sqlite3_column_blob(st, 5);
        int elen = sqlite3_column_bytes(st, 5);
        t->end_len = elen <= (int)sizeof t->end ? elen : 0;
        if (end && t->end_len) memcpy(t->end, end, (size_t)t->end_len);
        arena_reset(m->a);
        rc = store_index_key((const char *)sqlite3_column_text(st, 2),
                             (size_t)sqlite3_column_bytes(st, 2), m->a, &m->k, e);
        sqlite3_reset(st);
        return rc;
    }
    if (rc != SQLITE_DONE) sq_error(m->db, rc, e);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int bf_item_cmp(const void *a, const void *b) {
    const bf_item *x = a, *y = b;
    int c = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* Inserts the step's entries in key order: consecutive inserts then land on the same or
 * neighbouring B-tree pages instead of on random ones. */
static int bf_insert(sq_maint *m, int64_t ix, size_t n, tr_err *e) {
    qsort(m->items, n, sizeof *m->items, bf_item_cmp);
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *st = maint_stmt(m, M_BF_ENTRY, e);
        if (!st) return -1;
        sqlite3_bind_int64(st, 1, ix);
        sqlite3_bind_blob(st, 2, m->items[i].key, (int)m->items[i].len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, m->items[i].doc);
        if (sq_step_done(m->db, st, e) != 0) return -1;
    }
    return 0;
}

/* Keys up to one chunk of documents after the cursor, then indexes them; *n = how many
 * it saw. */
static int bf_chunk(sq_maint *m, bf_target *t, int *n, tr_err *e) {
    sqlite3_stmt *st = maint_stmt(m, M_BF_DOCS, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, t->tablet);
    sqlite3_bind_blob(st, 2, t->cursor, t->cursor_len, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 3, SQ_BACKFILL_CHUNK);
    sqlite3_bind_blob(st, 4, t->end, t->end_len, SQLITE_TRANSIENT);
    *n = 0;
    arena_reset(m->keys);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int idlen = sqlite3_column_bytes(st, 0);
        if (idlen > (int)sizeof t->cursor) idlen = (int)sizeof t->cursor;
        memcpy(t->cursor, sqlite3_column_blob(st, 0), (size_t)idlen);
        t->cursor_len = idlen;
        arena_reset(m->a);
        if (store_doc_key(&m->k, (const char *)sqlite3_column_text(st, 2),
                          (size_t)sqlite3_column_bytes(st, 2), m->a, &m->key, e) != 0) {
            sqlite3_reset(st);
            return -1;
        }
        if ((size_t)*n == m->cap_items) {
            m->cap_items = m->cap_items ? m->cap_items * 2 : 1024;
            m->items = xrealloc(m->items, m->cap_items * sizeof *m->items);
        }
        unsigned char *k = arena_alloc(m->keys, m->key.len ? m->key.len : 1);
        memcpy(k, m->key.p, m->key.len);
        m->items[*n] = (bf_item){k, m->key.len, sqlite3_column_int64(st, 1)};
        (*n)++;
    }
    if (rc != SQLITE_DONE) sq_error(m->db, rc, e);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return -1;
    return bf_insert(m, t->ix, (size_t)*n, e);
}

int sq_backfill_step(sq_maint *m, int *more, tr_err *e) {
    *more = 0;
    bf_target t;
    int found, n;
    if (bf_next(m, &t, &found, e) != 0) return -1;
    if (!found) return 0;
    if (bf_chunk(m, &t, &n, e) != 0) return -1;
    int done = n < SQ_BACKFILL_CHUNK;
    sqlite3_stmt *st = maint_stmt(m, done ? M_BF_READY : M_BF_CURSOR, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, t.table_number);
    if (!done) sqlite3_bind_blob(st, 2, t.cursor, t.cursor_len, SQLITE_TRANSIENT);
    *more = 1;
    return sq_step_done(m->db, st, e);
}

static void mg_bind(sqlite3_stmt *st, int col, const mg_pos *p) {
    sqlite3_bind_int64(st, col, p->ix);
    if (p->key.len) sqlite3_bind_blob(st, col + 1, p->key.p, (int)p->key.len, SQLITE_STATIC);
    else sqlite3_bind_zeroblob(st, col + 1, 0); /* a blob, never NULL: NULL compares to nothing */
    sqlite3_bind_int64(st, col + 2, p->doc);
}

static void mg_set(mg_pos *p, int64_t ix, const void *key, size_t len, int64_t doc) {
    p->ix = ix;
    buf_reset(&p->key);
    if (len) buf_append(&p->key, key, len);
    p->doc = doc;
}

/* Runs M_MG_MOVE or M_MG_DROP over the step's range. */
static int mg_range(sq_maint *m, int id, tr_err *e) {
    sqlite3_stmt *st = maint_stmt(m, id, e);
    if (!st) return -1;
    mg_bind(st, 1, &m->from);
    mg_bind(st, 4, &m->to);
    return sq_step_done(m->db, st, e);
}

int64_t sq_merge_threshold(int64_t indexed) {
    double t = 64.0 * sqrt(indexed > 0 ? (double)indexed : 0.0);
    return t < SQ_RECENT_MIN ? SQ_RECENT_MIN : t > SQ_RECENT_MAX ? SQ_RECENT_MAX : (int64_t)t;
}

int sq_merge_step(sq_maint *m, int64_t chunk, int64_t *moved, int *done, tr_err *e) {
    *moved = 0;
    sqlite3_stmt *bound = maint_stmt(m, M_MG_BOUND, e);
    if (!bound) return -1;
    mg_bind(bound, 1, &m->from);
    sqlite3_bind_int64(bound, 4, chunk - 1);
    int rc = sqlite3_step(bound);
    *done = rc != SQLITE_ROW;
    if (rc == SQLITE_ROW)
        mg_set(&m->to, sqlite3_column_int64(bound, 0), sqlite3_column_blob(bound, 1),
               (size_t)sqlite3_column_bytes(bound, 1), sqlite3_column_int64(bound, 2));
    else if (rc == SQLITE_DONE) /* fewer than a chunk left: all of them */
        mg_set(&m->to, INT64_MAX, NULL, 0, 0);
    else
        sq_error(m->db, rc, e);
    sqlite3_reset(bound);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return -1;
    if (mg_range(m, M_MG_MOVE, e) != 0 || mg_range(m, M_MG_DROP, e) != 0) return -1;
    *moved = sqlite3_changes(m->db);
    if (*done) mg_set(&m->from, 0, NULL, 0, 0);
    else mg_set(&m->from, m->to.ix, m->to.key.p, m->to.key.len, m->to.doc);
    return 0;
}

/* The id of the first row of a one-row query, or *found = 0. */
static int first_id(sq_maint *m, sqlite3_stmt *st, int64_t *id, int *found, tr_err *e) {
    int rc = sqlite3_step(st);
    *found = rc == SQLITE_ROW;
    if (*found) *id = sqlite3_column_int64(st, 0);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) sq_error(m->db, rc, e);
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* One chunk of the entries of an index instance nobody uses any more. */
static int rc_dead_entries(sq_maint *m, int *did, tr_err *e) {
    sqlite3_stmt *st = maint_stmt(m, M_RC_DEAD, e);
    int64_t ix;
    if (!st || first_id(m, st, &ix, did, e) != 0) return -1;
    if (!*did) return 0;

    sqlite3_stmt *bound = maint_stmt(m, M_RC_DEAD_BOUND, e);
    if (!bound) return -1;
    sqlite3_bind_int64(bound, 1, ix);
    sqlite3_bind_int(bound, 2, SQ_RECLAIM_CHUNK - 1);
    int rc = sqlite3_step(bound);
    int64_t doc = 0;
    if (rc == SQLITE_ROW) {
        buf_reset(&m->key);
        buf_append(&m->key, sqlite3_column_blob(bound, 0), (size_t)sqlite3_column_bytes(bound, 0));
        doc = sqlite3_column_int64(bound, 1);
    } else if (rc != SQLITE_DONE) {
        sq_error(m->db, rc, e);
    }
    sqlite3_reset(bound);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return -1;
    if (rc == SQLITE_ROW) {
        sqlite3_stmt *some = maint_stmt(m, M_RC_DEAD_SOME, e);
        if (!some) return -1;
        sqlite3_bind_int64(some, 1, ix);
        sqlite3_bind_blob(some, 2, m->key.p, (int)m->key.len, SQLITE_STATIC);
        sqlite3_bind_int64(some, 3, doc);
        return sq_step_done(m->db, some, e);
    }
    /* fewer than a chunk left: delete them, and those the merge has not moved yet (at
     * most what pk_recent holds between sweeps), and forget the instance */
    sqlite3_stmt *all = maint_stmt(m, M_RC_DEAD_ALL, e);
    sqlite3_stmt *recent = maint_stmt(m, M_RC_DEAD_RECENT, e);
    sqlite3_stmt *gone = maint_stmt(m, M_RC_DEAD_DONE, e);
    if (!all || !recent || !gone) return -1;
    sqlite3_bind_int64(all, 1, ix);
    sqlite3_bind_int64(recent, 1, ix);
    sqlite3_bind_int64(gone, 1, ix);
    return sq_step_done(m->db, all, e) == 0 && sq_step_done(m->db, recent, e) == 0
               ? sq_step_done(m->db, gone, e)
               : -1;
}

/* One chunk of the documents of a generation dropped before the horizon. */
static int rc_dropped_tablet(sq_maint *m, int64_t horizon, int *did, tr_err *e) {
    sqlite3_stmt *st = maint_stmt(m, M_RC_TABLET, e);
    int64_t tablet;
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, horizon);
    if (first_id(m, st, &tablet, did, e) != 0) return -1;
    if (!*did) return 0;

    sqlite3_stmt *docs = maint_stmt(m, M_RC_TABLET_DOCS, e);
    if (!docs) return -1;
    sqlite3_bind_int64(docs, 1, tablet);
    sqlite3_bind_int(docs, 2, SQ_RECLAIM_CHUNK);
    if (sq_step_done(m->db, docs, e) != 0) return -1;
    if (sqlite3_changes(m->db) == SQ_RECLAIM_CHUNK) return 0;
    sqlite3_stmt *done = maint_stmt(m, M_RC_TABLET_DONE, e);
    if (!done) return -1;
    sqlite3_bind_int64(done, 1, tablet);
    return sq_step_done(m->db, done, e);
}

/* One chunk of replaced versions that ended before the horizon. */
static int rc_history(sq_maint *m, int64_t horizon, int *did, tr_err *e) {
    sqlite3_stmt *st = maint_stmt(m, M_RC_HISTORY, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, horizon);
    sqlite3_bind_int(st, 2, SQ_RECLAIM_CHUNK);
    if (sq_step_done(m->db, st, e) != 0) return -1;
    *did = sqlite3_changes(m->db) > 0;
    return 0;
}

/* One chunk of the change log older than the horizon (rows list a commit's ids, so a
 * chunk is a few of them). */
static int rc_log(sq_maint *m, int64_t horizon, int *did, tr_err *e) {
    sqlite3_stmt *st = maint_stmt(m, M_RC_LOG, e);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, horizon);
    sqlite3_bind_int(st, 2, SQ_RECLAIM_LOG_ROWS);
    if (sq_step_done(m->db, st, e) != 0) return -1;
    *did = sqlite3_changes(m->db) > 0;
    return 0;
}

int sq_reclaim_step(sq_maint *m, int64_t horizon, int *more, tr_err *e) {
    *more = 0;
    if (rc_dead_entries(m, more, e) != 0) return -1;
    if (!*more && rc_dropped_tablet(m, horizon, more, e) != 0) return -1;
    if (!*more && rc_history(m, horizon, more, e) != 0) return -1;
    if (!*more && rc_log(m, horizon, more, e) != 0) return -1;
    return 0;
}

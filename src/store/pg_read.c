/*
 * pg_read.c — every read of the PostgreSQL engine (pg_impl.h): indexes_ready, export,
 * and the streaming-export API (list_snapshot, document_deltas, json_schemas).
 *
 * Each call is one REPEATABLE READ, READ ONLY transaction on a pooled connection, so all
 * its statements see one snapshot and none waits for the writer. The semantics, error
 * codes and messages are the SQLite engine's (sqlite.c, "readers"); what is read at a
 * snapshot S or after a cursor C is laid out in docs/storage.md ("What is kept for the
 * export API"). Where the SQLite engine merges two cursors in C, the queries here let
 * PostgreSQL do it (UNION ALL ... ORDER BY), and every read keeps the client's memory
 * bounded whatever the table size:
 *   - export walks a table in id-ordered chunks (`id > last`), each at most
 *     EXPORT_CHUNK_ROWS rows and EXPORT_CHUNK_BYTES of stored JSON;
 *   - a snapshot page asks for limit + 1 rows per table, but a running sum of the stored
 *     sizes leaves out the text of the rows past the page's byte budget, so a page of
 *     large documents never fetches more than the page holds; the old versions it needs
 *     come from the walk's cache (snapcache.h) by row address when it has them;
 *   - deltas plan the page with a recursive query that walks the commits one by one
 *     through the indexes, counting each, and stops where the page ends (PostgreSQL
 *     would otherwise aggregate the whole log after the cursor); the page's values are
 *     then read through a server-side cursor, DELTA_FETCH_ROWS at a time (one commit
 *     may be larger than any page).
 * The retention check reads meta.last_ts and meta.reclaim_floor (the newest horizon the
 * writer's reclaim has deleted up to) in the transaction's first statement, so it judges
 * exactly the rows the rest of the transaction reads.
 */
#include "store/pg_impl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json/emit.h"
#include "model/docid.h"
#include "store/shape.h"
#include "store/snapcache.h"
#include "util/xalloc.h"

#define EXPORT_CHUNK_ROWS 1000
#define EXPORT_CHUNK_BYTES (8 << 20)
#define DELTA_PLAN_COMMITS 1000
#define DELTA_FETCH_ROWS 1000
#define READ_BEGIN_TRIES 64 /* pooled connections tried before a read gives up */


/* ---- transactions ---- */

typedef int (*read_fn)(pg_store *s, PGconn *c, void *arg, tr_err *e);

/* A connection with its read transaction begun. A pooled connection the server dropped
 * while it was idle (a restart, a terminated backend) only shows it now: it is closed
 * and the next one tried, so that one outage does not fail a read per pooled
 * connection. A connection that is still open but refuses BEGIN is a real error. */
static PGconn *read_begin(pg_store *s, tr_err *e) {
    for (int tries = 0; tries < READ_BEGIN_TRIES; tries++) {
        PGconn *c = pg_reader_get(s, e);
        if (!c) return NULL;
        if (pg_run(c, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", NULL, e) == 0)
            return c;
        int broken = PQstatus(c) != CONNECTION_OK;
        pg_reader_put(s, c);
        if (!broken) return NULL;
    }
    return NULL;
}

/* Runs fn in one read transaction on a pooled connection; fn's error wins over the
 * COMMIT's, and a failed call is rolled back. */
static int read_tx(store *st, read_fn fn, void *arg, tr_err *e) {
    pg_store *s = (pg_store *)st;
    PGconn *c = read_begin(s, e);
    if (!c) return -1;
    int rc = fn(s, c, arg, e);
    if (rc == 0) rc = pg_run(c, "COMMIT", NULL, e);
    else pg_run(c, "ROLLBACK", NULL, NULL);
    pg_reader_put(s, c);
    return rc;
}

/* ---- small helpers ---- */

static int64_t clamp64(size_t v) {
    return v > (size_t)INT64_MAX ? INT64_MAX : (int64_t)v;
}

/* A 16-byte internal id from a bytea column (zeros when the stored value is malformed). */
static void id16(const PGresult *r, int row, int col, uint8_t out[DOCID_INTERNAL_LEN]) {
    size_t n;
    const char *v = pg_val(r, row, col, &n);
    memset(out, 0, DOCID_INTERNAL_LEN);
    if (n == DOCID_INTERNAL_LEN) memcpy(out, v, DOCID_INTERNAL_LEN);
}

/* A table's number and current generation by name; *found = 0 when there is none. */
static int table_by_name(PGconn *c, const char *name, int64_t *number, int64_t *tablet,
                         int *found, tr_err *e) {
    pg_params p = {0};
    pgp_text(&p, name, strlen(name));
    PGresult *r = pg_exec(c, "SELECT number, tablet FROM tables WHERE name = $1", &p, e);
    if (!r) return -1;
    *found = PQntuples(r) > 0;
    if (*found) {
        *number = pg_i64(r, 0, 0);
        *tablet = pg_i64(r, 0, 1);
    }
    PQclear(r);
    return 0;
}

/* ---- retention ---- */

typedef struct read_clock {
    int64_t last;  /* meta.last_ts: the latest commit */
    int64_t floor; /* meta.reclaim_floor, 0 when absent */
} read_clock;

static int clock_read(PGconn *c, read_clock *k, tr_err *e) {
    PGresult *r = pg_exec(c,
                          "SELECT key, value FROM meta WHERE key IN ('last_ts', 'reclaim_floor')",
                          NULL, e);
    if (!r) return -1;
    int have_last = 0;
    k->floor = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        size_t n;
        const char *key = pg_val(r, i, 0, &n);
        if (n == 7 && memcmp(key, "last_ts", 7) == 0) {
            k->last = pg_i64(r, i, 1);
            have_last = 1;
        } else {
            k->floor = pg_i64(r, i, 1);
        }
    }
    PQclear(r);
    if (!have_last) return err_set(e, 500, "StorageError", "Database has no meta.last_ts");
    return 0;
}

/* Whether reading at t could miss rows reclaim has deleted: t is before the horizon and
 * something was committed after t. The horizon is the one reclaim uses, or the newest one
 * it actually worked to if that is later (a clock that went back). */
static int too_old(const pg_store *s, const read_clock *k, int64_t t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    int64_t horizon = (now > k->last ? now : k->last) - pg_retention_ns(s);
    if (k->floor > horizon) horizon = k->floor;
    return t < horizon && t < k->last;
}

static long long retention_s(const pg_store *s) {
    return (long long)(pg_retention_ns(s) / 1000000000);
}

/* ---- indexes_ready ---- */

typedef struct ready_call {
    const char *const *tables;
    size_t n;
    int *ready;
} ready_call;

static int index_state(PGconn *c, const char *table, int *ready, tr_err *e) {
    pg_params p = {0};
    pgp_text(&p, table, strlen(table));
    PGresult *r = pg_exec(c,
                          "SELECT p.state FROM tables t JOIN pk_indexes p"
                          " ON p.table_number = t.number WHERE t.name = $1",
                          &p, e);
    if (!r) return -1;
    int found = PQntuples(r) > 0;
    if (found) {
        size_t n;
        const char *state = pg_val(r, 0, 0, &n);
        if (n != 5 || memcmp(state, "ready", 5) != 0) *ready = 0;
    }
    PQclear(r);
    if (!found) return err_set(e, 400, "MissingIndex", "Missing index: %s" STORE_INDEX_SUFFIX, table);
    return 0;
}

static int ready_read(pg_store *s, PGconn *c, void *arg, tr_err *e) {
    (void)s;
    ready_call *call = arg;
    for (size_t i = 0; i < call->n; i++)
        if (index_state(c, call->tables[i], call->ready, e) != 0) return -1;
    return 0;
}

int pg_indexes_ready(store *st, const char *const *tables, size_t n, int *ready, tr_err *e) {
    ready_call call = {tables, n, ready};
    return read_tx(st, ready_read, &call, e);
}

/* ---- export ---- */

typedef struct export_call {
    const char *table;
    store_doc_fn fn;
    void *ctx;
} export_call;

/* One chunk of a generation after id $2: at most EXPORT_CHUNK_ROWS rows, ending with the
 * row that brings the chunk to $3 bytes of stored JSON (the sum leaves values unread). */
static const char export_sql[] =
    "SELECT id, creation_time, value FROM ("
    "  SELECT id, creation_time, value,"
    "    sum(octet_length(value)) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING)"
    "      - octet_length(value) AS before"
    "  FROM (SELECT id, creation_time, value FROM documents"
    "        WHERE tablet = $1 AND id > $2 ORDER BY id LIMIT $4) d) w"
    " WHERE before < $3 ORDER BY id";

/* {"_id":..,"_creationTime":..} followed by the stored fields. */
static void export_doc(buf *out, uint32_t number, const PGresult *r, int row) {
    char idtext[DOCID_TEXT_MAX + 1];
    uint8_t internal[DOCID_INTERNAL_LEN];
    id16(r, row, 0, internal);
    docid_encode(number, internal, idtext);
    buf_reset(out);
    buf_puts(out, "{\"_id\":\"");
    buf_puts(out, idtext);
    buf_puts(out, "\",\"_creationTime\":");
    json_emit_double(pg_f64(r, row, 1), out);
    size_t n;
    const char *v = pg_val(r, row, 2, &n);
    /* stored values are objects: skip their '{' and any blank, then splice the rest */
    size_t i = 1;
    while (i < n && (v[i] == ' ' || v[i] == '\n' || v[i] == '\t' || v[i] == '\r')) i++;
    if (i < n && v[i] != '}') buf_putc(out, ',');
    if (i < n) buf_append(out, v + i, n - i);
    else buf_putc(out, '}');
}

/* Walks the generation chunk by chunk until it is done or the callback stops it. */
static int export_rows(PGconn *c, const export_call *call, uint32_t number, int64_t tablet,
                       tr_err *e) {
    buf out = BUF_INIT, last = BUF_INIT;
    int rc = 0, stop = 0, n;
    do {
        pg_params p = {0};
        pgp_i64(&p, tablet);
        pgp_bytes(&p, last.p ? last.p : "", last.len);
        pgp_i64(&p, EXPORT_CHUNK_BYTES);
        pgp_i64(&p, EXPORT_CHUNK_ROWS);
        PGresult *r = pg_exec(c, export_sql, &p, e);
        if (!r) {
            rc = -1;
            break;
        }
        n = PQntuples(r);
        for (int i = 0; i < n && !stop; i++) {
            export_doc(&out, number, r, i);
            stop = call->fn(call->ctx, out.p, out.len) != 0;
        }
        if (n > 0) {
            size_t len;
            const char *id = pg_val(r, n - 1, 0, &len);
            buf_reset(&last);
            buf_append(&last, id, len);
        }
        PQclear(r);
    } while (n > 0 && !stop);
    buf_free(&out);
    buf_free(&last);
    return rc;
}

static int export_read(pg_store *s, PGconn *c, void *arg, tr_err *e) {
    (void)s;
    export_call *call = arg;
    int64_t number = 0, tablet = 0;
    int found;
    if (table_by_name(c, call->table, &number, &tablet, &found, e) != 0) return -1;
    if (!found) return err_set(e, 404, "TableNotFound", "Table %s not found.", call->table);
    return export_rows(c, call, (uint32_t)number, tablet, e);
}

int pg_export_table(store *st, const char *table, store_doc_fn fn, void *ctx, tr_err *e) {
    export_call call = {table, fn, ctx};
    return read_tx(st, export_read, &call, e);
}

/* ---- list_snapshot ---- */

/* The tables numbered $1..$3 with the generation current at snapshot $2 (NULL: the
 * table did not exist yet). */
static const char snap_tables_sql[] =
    "SELECT n.number, n.name, t.id FROM tables n"
    " LEFT JOIN LATERAL (SELECT id FROM tablets WHERE table_number = n.number"
    "   AND created_ts <= $2 AND (dropped_ts IS NULL OR dropped_ts > $2) LIMIT 1) t ON true"
    " WHERE n.number BETWEEN $1 AND $3 ORDER BY n.number";

/* The documents of generation $1 after id $2 as of snapshot $3: current versions written
 * by then plus the versions replaced or deleted since that were valid at $3 (each
 * document has one or the other), merged by id, at most $4. Each side is limited and
 * ordered on its own, which lets the planner merge an index scan of `documents` with
 * the few history rows instead of sorting the table. `before` is the stored size of
 * the rows ahead of each one; the value of a row past the byte budget $5 is left NULL.
 * SNAP_PAGE(bound, old versions): `bound` limits the current versions' scan. */
#define SNAP_PAGE(bound, old)                                                              \
    "SELECT id, ts, creation_time, CASE WHEN before < $5 THEN value END FROM ("            \
    "  SELECT id, ts, creation_time, value,"                                               \
    "    sum(octet_length(value)) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING)"             \
    "      - octet_length(value) AS before"                                                \
    "  FROM ((SELECT id, ts, creation_time, value FROM documents"                          \
    "         WHERE tablet = $1 AND id > $2" bound " AND ts <= $3 ORDER BY id LIMIT $4)"   \
    "        UNION ALL (" old ")"                                                          \
    "        ORDER BY id LIMIT $4) v) w"                                                   \
    " ORDER BY id"
static const char snap_docs_sql[] =
    SNAP_PAGE("", "SELECT id, valid_from, creation_time, value FROM history"
                  " WHERE valid_to > $3 AND valid_from <= $3 AND tablet = $1 AND id > $2"
                  " ORDER BY id LIMIT $4");
/* The same with the old versions from the walk's cache (snapcache.h), by their row
 * addresses $6 (checked by snap_cached), and the current versions' scan ending at id $7
 * (see snap_table). */
static const char snap_docs_cached_sql[] =
    SNAP_PAGE(" AND id <= $7", "SELECT id, valid_from, creation_time, value FROM history"
                               " WHERE ctid = ANY($6) AND tablet = $1 AND valid_from <= $3"
                               " AND valid_to > $3");
/* For the walks' cache: the versions of generation $1 valid at $2 that commits after $3
 * ended, with their addresses; */
static const char snap_ended_sql[] =
    "SELECT id, ctid FROM history WHERE valid_to > $3 AND valid_from <= $2 AND tablet = $1";
/* and how many of the rows at addresses $1 are versions of generation $3 valid at $4,
 * in this reader's view, of documents among $2. A document has one version valid at
 * $4, so when all are there the rows at $1 are exactly those of $2 (one TID scan). */
static const char snap_check_sql[] =
    "SELECT count(*) FROM history WHERE ctid = ANY($1) AND id = ANY($2) AND tablet = $3"
    " AND valid_from <= $4 AND valid_to > $4";

typedef struct snap_walk {
    pg_store *s;
    PGconn *c;
    const store_snapshot_req *rq;
    store_value_fn fn;
    void *ctx;
    int64_t snapshot;
    int64_t last; /* the last commit this reader sees */
    size_t left;       /* documents the page may still take */
    size_t bytes;      /* stored bytes on the page so far */
    size_t max_bytes;
    int full;          /* the page is complete */
    int more_here;     /* ... and the table it ended in has documents after it */
    uint32_t last_table;
    uint8_t last_id[DOCID_INTERNAL_LEN];
} snap_walk;

static int snap_emit(snap_walk *w, uint32_t number, const char *name, const PGresult *r,
                     int row, tr_err *e) {
    char idtext[DOCID_TEXT_MAX + 1];
    id16(r, row, 0, w->last_id);
    w->last_table = number;
    docid_encode(number, w->last_id, idtext);
    store_value v = {.table = name, .id = idtext, .ts = pg_i64(r, row, 1)};
    v.creation_time = pg_f64(r, row, 2);
    v.fields = pg_val(r, row, 3, &v.fields_len);
    w->left--;
    w->bytes += v.fields_len;
    return w->fn(w->ctx, &v, e);
}

/* A row address (ctid) as the cache keeps it. */
static int64_t tid_addr(const unsigned char t[PG_TID_LEN]) {
    return (int64_t)((uint64_t)t[0] << 40 | (uint64_t)t[1] << 32 | (uint64_t)t[2] << 24 |
                     (uint64_t)t[3] << 16 | (uint64_t)t[4] << 8 | t[5]);
}

/* The addresses of rows[0..n) as a tid[] parameter. */
static void tid_array(buf *b, const snapcache_row *rows, size_t n) {
    pg_array_start(b, PG_ARRAY_TID, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char t[PG_TID_LEN];
        int64_t a = rows[i].addr;
        for (int k = PG_TID_LEN - 1; k >= 0; k--, a >>= 8) t[k] = (unsigned char)(a & 0xff);
        pg_array_item(b, t, PG_TID_LEN);
    }
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
    pg_params p = {0};
    pgp_i64(&p, u->tablet);
    pgp_i64(&p, u->w->snapshot);
    pgp_i64(&p, seen);
    PGresult *r = pg_exec(u->w->c, snap_ended_sql, &p, u->e);
    if (!r) return -1;
    for (int i = 0; *fits && i < PQntuples(r); i++) {
        uint8_t id[DOCID_INTERNAL_LEN];
        size_t len;
        const char *tid = pg_val(r, i, 1, &len);
        id16(r, i, 0, id);
        *fits = len == PG_TID_LEN &&
                snapcache_add(c, en, id, tid_addr((const unsigned char *)tid)) == 0;
    }
    PQclear(r);
    return 0;
}

/* The old versions the page may take from the cache (snapcache.h): into *rows (*n, at
 * most one more than the page has room for), their addresses into `tids` as a tid[]
 * parameter, all of them checked to be versions valid at the snapshot at those
 * addresses in this reader's view. *n = SIZE_MAX when the page must use the plain
 * query instead (the walk's versions do not fit the cache, or one is not there). */
static int snap_cached(snap_walk *w, int64_t tablet, const uint8_t *after, snapcache_row **rows,
                       size_t *n, buf *tids, tr_err *e) {
    *n = SIZE_MAX;
    /* nothing ended after a snapshot of the last commit: the plain query is cheap, and
     * its walk (one page, mostly) need not push another out of the cache */
    snapcache *cache = pg_snapcache(w->s);
    if (!cache || w->left > SNAPCACHE_PAGE_MAX || w->snapshot >= w->last) return 0;
    *rows = xmalloc((w->left + 1) * sizeof **rows);
    snap_update u = {w, tablet, e};
    if (snapcache_take(cache, tablet, w->snapshot, w->last, snap_ended, &u, after, *rows,
                       w->left + 1, n) != 0)
        return -1;
    if (*n == SIZE_MAX) return 0;
    tid_array(tids, *rows, *n);
    if (*n == 0) return 0;
    buf ids = BUF_INIT;
    pg_array_start(&ids, PG_ARRAY_BYTEA, *n);
    for (size_t i = 0; i < *n; i++) pg_array_item(&ids, (*rows)[i].id, DOCID_INTERNAL_LEN);
    pg_params p = {0};
    pgp_array(&p, tids);
    pgp_array(&p, &ids);
    pgp_i64(&p, tablet);
    pgp_i64(&p, w->snapshot);
    PGresult *r = pg_exec(w->c, snap_check_sql, &p, e);
    buf_free(&ids);
    if (!r) return -1;
    if (pg_i64(r, 0, 0) != (int64_t)*n) *n = SIZE_MAX;
    PQclear(r);
    return 0;
}

/* The documents of one table as of the snapshot, after id `after` (NULL: from the
 * first), until the page is full. The old versions come from the walk's cache when it
 * has them; when it gives the page more of them than the page has room for, current
 * versions past the last of those cannot make the page, and their scan stops there
 * instead of stepping over every document changed since the snapshot (after a big
 * import, most of the table). */
static int snap_table(snap_walk *w, uint32_t number, const char *name, int64_t tablet,
                      const uint8_t *after, tr_err *e) {
    snapcache_row *rows = NULL;
    size_t nrows;
    buf tids = BUF_INIT;
    if (snap_cached(w, tablet, after, &rows, &nrows, &tids, e) != 0) {
        free(rows);
        buf_free(&tids);
        return -1;
    }
    int cached = nrows != SIZE_MAX;
    pg_params p = {0};
    pgp_i64(&p, tablet);
    pgp_bytes(&p, after ? (const void *)after : "", after ? DOCID_INTERNAL_LEN : 0);
    pgp_i64(&p, w->snapshot);
    pgp_i64(&p, w->left < SIZE_MAX ? clamp64(w->left + 1) : INT64_MAX); /* one more: is there? */
    pgp_i64(&p, clamp64(w->max_bytes - w->bytes));
    if (cached) {
        pgp_array(&p, &tids);
        size_t end_len;
        const uint8_t *end = snapcache_scan_end(rows, nrows, w->left + 1, &end_len);
        pgp_bytes(&p, end, end_len);
    }
    PGresult *r = pg_exec(w->c, cached ? snap_docs_cached_sql : snap_docs_sql, &p, e);
    buf_free(&tids);
    free(rows);
    if (!r) return -1;
    int rc = 0;
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        if (w->left == 0 || w->bytes >= w->max_bytes || pg_isnull(r, i, 3)) {
            w->full = w->more_here = 1;
            break;
        }
        rc = snap_emit(w, number, name, r, i, e);
    }
    PQclear(r);
    if (w->left == 0 || w->bytes >= w->max_bytes) w->full = 1;
    return rc;
}

/* Walks the tables from the cursor on (only the requested one when rq->table: `only`,
 * 0 when it does not exist) until the page is full or every table is done. */
static int snap_tables(snap_walk *w, uint32_t only, tr_err *e) {
    const store_snapshot_pos *cur = w->rq->cursor;
    if (w->rq->table && !only) return 0;
    pg_params p = {0};
    pgp_i64(&p, w->rq->table ? only : cur ? cur->table_number : 0);
    pgp_i64(&p, w->snapshot);
    pgp_i64(&p, w->rq->table ? only : INT64_MAX);
    PGresult *r = pg_exec(w->c, snap_tables_sql, &p, e);
    if (!r) return -1;
    int rc = 0, n = PQntuples(r);
    for (int i = 0; rc == 0 && i < n; i++) {
        uint32_t number = (uint32_t)pg_i64(r, i, 0);
        const uint8_t *after = cur && number == cur->table_number ? cur->id : NULL;
        if (!pg_isnull(r, i, 2))
            rc = snap_table(w, number, PQgetvalue(r, i, 1), pg_i64(r, i, 2), after, e);
        if (w->full) {
            /* a later table may still have documents: let the client ask */
            w->more_here |= i + 1 < n;
            break;
        }
    }
    PQclear(r);
    return rc;
}

/* Checks the cursor against the request; *only: the requested table's number (0: it
 * does not exist). */
static int snap_check_cursor(snap_walk *w, uint32_t *only, tr_err *e) {
    const store_snapshot_req *rq = w->rq;
    const store_snapshot_pos *cur = rq->cursor;
    int64_t number = 0, tablet;
    int found = 0;
    if (rq->table && table_by_name(w->c, rq->table, &number, &tablet, &found, e) != 0)
        return -1;
    *only = found ? (uint32_t)number : 0;
    if (!cur) return 0;
    if (rq->has_snapshot && rq->snapshot != cur->snapshot)
        return err_set(e, 400, "InvalidListSnapshotCursor",
                       "The cursor belongs to snapshot %lld, not to snapshot %lld",
                       (long long)cur->snapshot, (long long)rq->snapshot);
    if (rq->table && cur->table_number != *only)
        return err_set(e, 400, "InvalidListSnapshotCursor",
                       "The cursor does not belong to a walk of table %s", rq->table);
    pg_params p = {0};
    pgp_i64(&p, cur->table_number);
    PGresult *r = pg_exec(w->c, "SELECT 1 FROM tables WHERE number = $1", &p, e);
    if (!r) return -1;
    found = PQntuples(r) > 0;
    PQclear(r);
    if (!found)
        return err_set(e, 400, "InvalidListSnapshotCursor", "The cursor names no table");
    return 0;
}

typedef struct snap_call {
    const store_snapshot_req *rq;
    store_value_fn fn;
    void *ctx;
    store_snapshot_page *out;
} snap_call;

static int snap_read(pg_store *s, PGconn *c, void *arg, tr_err *e) {
    snap_call *call = arg;
    const store_snapshot_req *rq = call->rq;
    read_clock k;
    if (clock_read(c, &k, e) != 0) return -1;
    snap_walk w = {.s = s, .c = c, .rq = rq, .fn = call->fn, .ctx = call->ctx,
                   .left = rq->limit, .last = k.last};
    uint32_t only;
    if (snap_check_cursor(&w, &only, e) != 0) return -1;
    w.snapshot = rq->cursor ? rq->cursor->snapshot : rq->has_snapshot ? rq->snapshot : k.last;
    if (w.snapshot > k.last)
        return err_set(e, 400, "SnapshotTooNew",
                       "Snapshot %lld is newer than the latest commit %lld",
                       (long long)w.snapshot, (long long)k.last);
    if (too_old(s, &k, w.snapshot))
        return err_set(e, 400, "SnapshotTooOld",
                       "Snapshot %lld is older than the retention window of %lld seconds; "
                       "start a new snapshot",
                       (long long)w.snapshot, retention_s(s));
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

int pg_list_snapshot(store *st, const store_snapshot_req *rq, store_value_fn fn, void *ctx,
                     store_snapshot_page *out, tr_err *e) {
    snap_call call = {rq, fn, ctx, out};
    return read_tx(st, snap_read, &call, e);
}

/* ---- document_deltas ---- */

/* The commits in ($1, $2] that have changes or emptied generations, in order, with how
 * many values each yields for table $3 (0: every table): found one at a time through
 * the indexes (the next commit of either kind, then its rows), so the walk reads no
 * further than the page needs. It stops after the commit that brings the page's total
 * ($5 before the first) to $4 values or more (the one after it is fetched by a call of
 * its own), or after $6 commits. */
static const char delta_plan_sql[] =
    "WITH RECURSIVE walk(ts, n, before, step) AS ("
    "  SELECT $1::int8, 0::int8, $5::int8, 0"
    "  UNION ALL"
    "  SELECT x.ts,"
    "    (SELECT coalesce(sum(cardinality(ids)) FILTER (WHERE $3 = 0"
    "       OR tablet IN (SELECT id FROM tablets WHERE table_number = $3)), 0)::int8"
    "     FROM changes WHERE ts = x.ts)"
    "    + (SELECT coalesce(sum(CASE WHEN $3 = 0 OR table_number = $3"
    "         THEN doc_count ELSE 0 END), 0)::int8"
    "       FROM tablets WHERE dropped_ts = x.ts),"
    "    w.before + w.n, w.step + 1"
    "  FROM walk w CROSS JOIN LATERAL ("
    "    SELECT least((SELECT min(ts) FROM changes WHERE ts > w.ts AND ts <= $2),"
    "                 (SELECT min(dropped_ts) FROM tablets"
    "                  WHERE dropped_ts > w.ts AND dropped_ts <= $2)) AS ts"
    "    OFFSET 0) x" /* computed once per step */
    "  WHERE x.ts IS NOT NULL AND (w.step = 0 OR w.before + w.n < $4) AND w.step < $6)"
    " SELECT ts, n FROM walk WHERE step > 0 ORDER BY step";

/* Every value of the commits in ($1, $2] for table $3 (0: every table), in commit order,
 * the change log before emptied generations within a commit, ids in order: change-log
 * rows that are deletions or still the document's latest version (a later row reports
 * the others), and each document of a generation emptied by clear_tables, deleted at
 * the clear. A NULL name is a log row whose generation is gone. */
static const char delta_emit_sql[] =
    "DECLARE tr_deltas NO SCROLL CURSOR FOR"
    " SELECT c.ts, 0 AS kind, c.tablet, u.id, u.deleted, t.table_number, n.name,"
    "   d.creation_time, d.value"
    " FROM changes c"
    " CROSS JOIN LATERAL unnest(c.ids, c.deleted) u(id, deleted)"
    " LEFT JOIN tablets t ON t.id = c.tablet"
    " LEFT JOIN tables n ON n.number = t.table_number"
    " LEFT JOIN documents d ON NOT u.deleted AND d.tablet = c.tablet AND d.id = u.id"
    "   AND d.ts = c.ts"
    " WHERE c.ts > $1 AND c.ts <= $2 AND ($3 = 0 OR t.table_number = $3 OR n.name IS NULL)"
    "   AND (u.deleted OR d.id IS NOT NULL OR n.name IS NULL)"
    " UNION ALL"
    " SELECT t.dropped_ts, 1, t.id, d.id, true, t.table_number, n.name, NULL::float8,"
    "   NULL::text"
    " FROM tablets t JOIN tables n ON n.number = t.table_number"
    " JOIN documents d ON d.tablet = t.id"
    " WHERE t.dropped_ts > $1 AND t.dropped_ts <= $2 AND ($3 = 0 OR t.table_number = $3)"
    " ORDER BY 1, 2, 3, 4";

typedef struct delta_read {
    PGconn *c;
    const store_deltas_req *rq;
    store_value_fn fn;
    void *ctx;
    int64_t only; /* rq->table's number; 0: every table */
} delta_read;

/* The commits after the cursor, fetched up to DELTA_PLAN_COMMITS at a time; `total`:
 * the values the page has taken so far, which tells the query where to stop. */
typedef struct commit_iter {
    PGconn *c;
    int64_t after, upto, only, limit;
    PGresult *r;
    int row;
} commit_iter;

static int commit_next(commit_iter *it, int64_t total, int64_t *ts, int64_t *n, int *found,
                       tr_err *e) {
    *found = 0;
    if (!it->r || it->row == PQntuples(it->r)) {
        PQclear(it->r);
        pg_params p = {0};
        pgp_i64(&p, it->after);
        pgp_i64(&p, it->upto);
        pgp_i64(&p, it->only);
        pgp_i64(&p, it->limit);
        pgp_i64(&p, total);
        pgp_i64(&p, DELTA_PLAN_COMMITS);
        it->row = 0;
        if (!(it->r = pg_exec(it->c, delta_plan_sql, &p, e))) return -1;
        if (PQntuples(it->r) == 0) return 0;
    }
    *ts = pg_i64(it->r, it->row, 0);
    *n = pg_i64(it->r, it->row, 1);
    it->after = *ts;
    it->row++;
    *found = 1;
    return 0;
}

/* First pass, counting only: the last commit the page takes (*end) and whether commits
 * are left after it. Whole commits only; the first one is taken whatever its size. When
 * every commit fits, *end is the latest commit (or the cursor, if later). */
static int delta_plan(delta_read *d, int64_t last, int64_t *end, int *more, tr_err *e) {
    int64_t after = d->rq->cursor, limit = clamp64(d->rq->limit), total = 0, ts = 0, n = 0;
    commit_iter it = {.c = d->c, .after = after, .upto = last, .only = d->only, .limit = limit};
    int rc, found;
    *end = after;
    *more = 0;
    while ((rc = commit_next(&it, total, &ts, &n, &found, e)) == 0 && found) {
        if (total > 0 && total + n > limit) {
            *more = 1;
            break;
        }
        total += n;
        *end = ts;
        if (total >= limit) {
            rc = commit_next(&it, total, &ts, &n, more, e);
            break;
        }
    }
    PQclear(it.r);
    if (rc == 0 && !*more) *end = after > last ? after : last;
    return rc;
}

static int delta_value(delta_read *d, const PGresult *r, int row, tr_err *e) {
    if (pg_isnull(r, row, 6))
        return err_set(e, 500, "StorageError", "Change log names generation %lld, which is gone",
                       (long long)pg_i64(r, row, 2));
    char idtext[DOCID_TEXT_MAX + 1];
    uint8_t id[DOCID_INTERNAL_LEN];
    id16(r, row, 3, id);
    docid_encode((uint32_t)pg_i64(r, row, 5), id, idtext);
    store_value v = {.table = PQgetvalue(r, row, 6), .id = idtext, .ts = pg_i64(r, row, 0)};
    v.deleted = pg_i64(r, row, 4) != 0;
    if (!v.deleted) {
        v.creation_time = pg_f64(r, row, 7);
        v.fields = pg_val(r, row, 8, &v.fields_len);
    }
    return d->fn(d->ctx, &v, e);
}

/* Second pass: every value of the commits in (cursor, end]. */
static int delta_emit(delta_read *d, int64_t end, tr_err *e) {
    pg_params p = {0};
    pgp_i64(&p, d->rq->cursor);
    pgp_i64(&p, end);
    pgp_i64(&p, d->only);
    if (pg_run(d->c, delta_emit_sql, &p, e) != 0) return -1;
    int rc = 0, n;
    do {
        PGresult *r = pg_exec(d->c, "FETCH " STR(DELTA_FETCH_ROWS) " FROM tr_deltas", NULL, e);
        if (!r) return -1;
        n = PQntuples(r);
        for (int i = 0; rc == 0 && i < n; i++) rc = delta_value(d, r, i, e);
        PQclear(r);
    } while (rc == 0 && n == DELTA_FETCH_ROWS);
    return rc;
}

typedef struct delta_call {
    const store_deltas_req *rq;
    store_value_fn fn;
    void *ctx;
    store_deltas_page *out;
} delta_call;

static int delta_read_page(pg_store *s, PGconn *c, void *arg, tr_err *e) {
    delta_call *call = arg;
    const store_deltas_req *rq = call->rq;
    read_clock k;
    if (clock_read(c, &k, e) != 0) return -1;
    if (too_old(s, &k, rq->cursor))
        return err_set(e, 400, "InvalidWindowToReadDocuments",
                       "Cursor %lld is older than the retention window of %lld seconds; the "
                       "changes after it may be gone. Run a full re-sync (list_snapshot).",
                       (long long)rq->cursor, retention_s(s));
    delta_read d = {.c = c, .rq = rq, .fn = call->fn, .ctx = call->ctx};
    int64_t tablet, end;
    int found = 1, more = 0;
    if (rq->table && table_by_name(c, rq->table, &d.only, &tablet, &found, e) != 0) return -1;
    if (!found) {
        /* nothing to report: the log is exhausted for this table */
        call->out->cursor = rq->cursor > k.last ? rq->cursor : k.last;
        call->out->has_more = 0;
        return 0;
    }
    if (delta_plan(&d, k.last, &end, &more, e) != 0 || delta_emit(&d, end, e) != 0) return -1;
    call->out->cursor = end;
    call->out->has_more = more;
    return 0;
}

int pg_document_deltas(store *st, const store_deltas_req *rq, store_value_fn fn, void *ctx,
                       store_deltas_page *out, tr_err *e) {
    store_deltas_req r = *rq;
    if (r.limit == 0) r.limit = 1;
    delta_call call = {&r, fn, ctx, out};
    return read_tx(st, delta_read_page, &call, e);
}

/* ---- json_schemas ---- */

typedef struct shapes_call {
    store_shape_fn fn;
    void *ctx;
} shapes_call;

static int shapes_read(pg_store *s, PGconn *c, void *arg, tr_err *e) {
    (void)s;
    shapes_call *call = arg;
    /* name order is byte order, as in SQLite, whatever the database's collation */
    PGresult *r = pg_exec(c,
                          "SELECT n.name, s.shape FROM tables n"
                          " LEFT JOIN shapes s ON s.tablet = n.tablet"
                          " ORDER BY n.name COLLATE \"C\"",
                          NULL, e);
    if (!r) return -1;
    int rc = 0;
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        shape *sh = NULL;
        if (!pg_isnull(r, i, 1)) {
            size_t len;
            const char *text = pg_val(r, i, 1, &len);
            rc = shape_read(text, len, &sh, e);
        }
        if (rc == 0) rc = call->fn(call->ctx, PQgetvalue(r, i, 0), sh, e);
        shape_free(sh);
    }
    PQclear(r);
    return rc;
}

int pg_table_shapes(store *st, store_shape_fn fn, void *ctx, tr_err *e) {
    shapes_call call = {fn, ctx};
    return read_tx(st, shapes_read, &call, e);
}

/* ---- table statistics (status page, /metrics) ---- */

typedef struct stats_call {
    store_stat_fn fn;
    void *ctx;
} stats_call;

static int stats_read(pg_store *s, PGconn *c, void *arg, tr_err *e) {
    (void)s;
    stats_call *call = arg;
    PGresult *r = pg_exec(c,
                          "SELECT n.name, g.doc_count, p.fields, p.state = 'ready' FROM tables n"
                          " JOIN tablets g ON g.id = n.tablet"
                          " LEFT JOIN pk_indexes p ON p.table_number = n.number"
                          " ORDER BY n.name COLLATE \"C\"",
                          NULL, e);
    if (!r) return -1;
    int rc = 0;
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        store_table_stat t = {
            .name = PQgetvalue(r, i, 0),
            .documents = pg_i64(r, i, 1),
            .index = pg_isnull(r, i, 2) ? NULL : PQgetvalue(r, i, 2),
            .index_ready = !pg_isnull(r, i, 3) && pg_i64(r, i, 3) != 0,
        };
        rc = call->fn(call->ctx, &t, e);
    }
    PQclear(r);
    return rc;
}

int pg_table_stats(store *st, store_stat_fn fn, void *ctx, tr_err *e) {
    stats_call call = {fn, ctx};
    return read_tx(st, stats_read, &call, e);
}

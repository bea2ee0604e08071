/*
 * test_export.c — the streaming-export reads of the SQLite store (store.h:
 * store_list_snapshot, store_document_deltas, store_table_shapes), as the API layer
 * calls them.
 *
 * Every test gets a fresh data directory. Values handed to the callbacks are copied into
 * a small list so a test can look at a whole page, the way a client would.
 */
#include "unit.h"

#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "util/buf.h"


static store *open_store(int64_t retention_ns) {
    store_config c = {.data_dir = unit_dir, .retention_ns = retention_ns};
    store *s = NULL;
    tr_err e;
    if (store_open(&c, &s, &e) != 0) fail_msg("store_open: %s", e.message);
    return s;
}

/* ---- writing ---- */

typedef struct wbatch {
    store_stream streams[2];
    size_t nstreams;
    store_record recs[64];
    size_t nrecs;
    buf docs, keys;
} wbatch;

static uint32_t w_stream(wbatch *b, const char *table, int dedup) {
    store_stream *st = &b->streams[b->nstreams];
    memset(st, 0, sizeof *st);
    snprintf(st->table, sizeof st->table, "%s", table);
    if (dedup) {
        st->dedup = 1;
        st->key.npaths = 1;
        st->key.paths[0].ncomp = 1;
        snprintf(st->key.paths[0].comp[0], sizeof st->key.paths[0].comp[0], "id");
    }
    return (uint32_t)b->nstreams++;
}

/* A record {"id":key,"v":v} (a deletion when `deleted`). */
static void w_rec(wbatch *b, uint32_t stream, int key, const char *v, int deleted) {
    store_record *r = &b->recs[b->nrecs++];
    memset(r, 0, sizeof *r);
    r->stream = stream;
    r->deleted = deleted;
    r->doc_off = b->docs.len;
    buf_printf(&b->docs, "{\"id\":%d,\"v\":\"%s\"}", key, v);
    r->doc_len = b->docs.len - r->doc_off;
    if (b->streams[stream].dedup) {
        val k = {.type = VAL_FLOAT, .u.f = key};
        r->key_off = b->keys.len;
        pkey_encode_value(&k, &b->keys);
        r->key_len = b->keys.len - r->key_off;
    }
}

static void w_commit(store *s, wbatch *b) {
    store_batch batch = {b->streams, b->nstreams, b->recs, b->nrecs, b->docs.p,
                         (const unsigned char *)b->keys.p, NULL};
    store_import_result r;
    tr_err e;
    if (store_import(s, &batch, &r, &e) != 0) fail_msg("import: %s %s", e.code, e.message);
    buf_free(&b->docs);
    buf_free(&b->keys);
    memset(b, 0, sizeof *b);
}

/* One commit: for each key in keys[0..n), {"id":key,"v":v} into a dedup table. */
static void upsert(store *s, const char *table, const int *keys, size_t n, const char *v) {
    wbatch b = {0};
    uint32_t st = w_stream(&b, table, 1);
    for (size_t i = 0; i < n; i++) w_rec(&b, st, keys[i], v, 0);
    w_commit(s, &b);
}

static void delete_key(store *s, const char *table, int key) {
    wbatch b = {0};
    w_rec(&b, w_stream(&b, table, 1), key, "", 1);
    w_commit(s, &b);
}

static void make_index(store *s, const char *table) {
    store_index_req req;
    memset(&req, 0, sizeof req);
    snprintf(req.table, sizeof req.table, "%s", table);
    req.key.npaths = 1;
    req.key.paths[0].ncomp = 1;
    snprintf(req.key.paths[0].comp[0], sizeof req.key.paths[0].comp[0], "id");
    tr_err e;
    if (store_add_indexes(s, &req, 1, &e) != 0) fail_msg("add_indexes: %s", e.message);
}

static void clear(store *s, const char *table) {
    uint64_t n;
    tr_err e;
    if (store_clear_tables(s, &table, 1, &n, &e) != 0) fail_msg("clear: %s", e.message);
}

/* ---- reading ---- */

typedef struct got {
    char table[NAMES_TABLE_MAX + 1];
    char id[40];
    int64_t ts;
    int deleted;
    char fields[128];
} got;

typedef struct page {
    got v[64];
    size_t n;
} page;

static int collect(void *ctx, const store_value *v, tr_err *e) {
    (void)e;
    page *p = ctx;
    if (p->n == 64) fail_msg("page too long");
    got *g = &p->v[p->n++];
    snprintf(g->table, sizeof g->table, "%s", v->table);
    snprintf(g->id, sizeof g->id, "%s", v->id);
    g->ts = v->ts;
    g->deleted = v->deleted;
    snprintf(g->fields, sizeof g->fields, "%.*s", (int)(v->fields ? v->fields_len : 0),
             v->fields ? v->fields : "");
    if (!v->deleted) assert_true(v->creation_time > 0);
    return 0;
}

static store_snapshot_page snap_ok(store *s, const char *table, const int64_t *at,
                                   const store_snapshot_pos *cur, size_t limit, page *p) {
    store_snapshot_req rq = {.table = table, .has_snapshot = at != NULL,
                             .snapshot = at ? *at : 0, .cursor = cur, .limit = limit};
    store_snapshot_page out;
    tr_err e;
    p->n = 0;
    if (store_list_snapshot(s, &rq, collect, p, &out, &e) != 0)
        fail_msg("list_snapshot: %s %s", e.code, e.message);
    return out;
}

static const char *snap_err(store *s, const char *table, const int64_t *at,
                            const store_snapshot_pos *cur, tr_err *e) {
    store_snapshot_req rq = {.table = table, .has_snapshot = at != NULL,
                             .snapshot = at ? *at : 0, .cursor = cur, .limit = 10};
    store_snapshot_page out;
    page p = {.n = 0};
    if (store_list_snapshot(s, &rq, collect, &p, &out, e) == 0) fail_msg("list_snapshot passed");
    assert_int_equal(e->status, 400);
    return e->code;
}

static store_deltas_page deltas_ok(store *s, const char *table, int64_t cursor, size_t limit,
                                   page *p) {
    store_deltas_req rq = {.table = table, .cursor = cursor, .limit = limit};
    store_deltas_page out;
    tr_err e;
    p->n = 0;
    if (store_document_deltas(s, &rq, collect, p, &out, &e) != 0)
        fail_msg("document_deltas: %s %s", e.code, e.message);
    return out;
}

/* The whole snapshot of `table` (NULL: all), page by page with `limit`. */
static int64_t snap_all(store *s, const char *table, size_t limit, page *all) {
    page p;
    store_snapshot_pos cur;
    int has = 0;
    int64_t at = 0;
    all->n = 0;
    for (int guard = 0; guard < 100; guard++) {
        store_snapshot_page out = snap_ok(s, table, has ? &at : NULL, has ? &cur : NULL, limit, &p);
        assert_true(p.n <= limit);
        at = out.snapshot;
        memcpy(all->v + all->n, p.v, p.n * sizeof p.v[0]);
        all->n += p.n;
        if (!out.has_more) return at;
        cur = out.next;
        has = 1;
    }
    fail_msg("snapshot walk does not end");
    return 0;
}

static const got *find(const page *p, const char *fields) {
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i].fields, fields) == 0) return &p->v[i];
    return NULL;
}

/* ---- list_snapshot ---- */

static void snapshot_pages_ignore_later_writes(void **state) {
    (void)state;
    store *s = open_store(0);
    make_index(s, "t");
    make_index(s, "other");
    int keys[] = {0, 1, 2, 3, 4};
    upsert(s, "t", keys, 5, "old");
    upsert(s, "other", keys, 1, "o");
    page p;
    store_snapshot_page first = snap_ok(s, "t", NULL, NULL, 2, &p);
    assert_int_equal(p.n, 2);
    assert_true(first.has_more);
    int64_t at = first.snapshot;

    /* replace two, delete one, add one, clear the other table */
    int changed[] = {0, 3, 9};
    upsert(s, "t", changed, 3, "new");
    delete_key(s, "t", 1);
    clear(s, "other");

    page rest;
    store_snapshot_page next = snap_ok(s, "t", &at, &first.next, 10, &rest);
    assert_false(next.has_more);
    assert_int_equal(next.snapshot, at);
    assert_int_equal(rest.n, 3);
    for (size_t i = 0; i < rest.n; i++) {
        assert_true(strstr(rest.v[i].fields, "\"old\"") != NULL);
        assert_true(rest.v[i].ts <= at);
    }
    /* every page together, in _id order, exactly the five documents as they were */
    memcpy(p.v + p.n, rest.v, rest.n * sizeof rest.v[0]);
    p.n += rest.n;
    for (size_t i = 1; i < p.n; i++) assert_true(strcmp(p.v[i - 1].id, p.v[i].id) < 0);
    for (int k = 0; k < 5; k++) {
        char want[64];
        snprintf(want, sizeof want, "{\"id\":%d,\"v\":\"old\"}", k);
        assert_non_null(find(&p, want));
    }
    /* the cleared table still shows its document at that snapshot, none now */
    snap_ok(s, "other", &at, NULL, 10, &p);
    assert_int_equal(p.n, 1);
    snap_ok(s, "other", NULL, NULL, 10, &p);
    assert_int_equal(p.n, 0);
    /* and now t shows the new state */
    snap_all(s, "t", 3, &p);
    assert_int_equal(p.n, 5);
    assert_non_null(find(&p, "{\"id\":9,\"v\":\"new\"}"));
    assert_null(find(&p, "{\"id\":1,\"v\":\"old\"}"));
    store_close(s);
}

static void snapshot_walks_every_table_in_pages(void **state) {
    (void)state;
    store *s = open_store(0);
    int keys[] = {0, 1, 2};
    make_index(s, "a");
    make_index(s, "b");
    make_index(s, "empty");
    upsert(s, "a", keys, 3, "a");
    upsert(s, "b", keys, 2, "b");
    page all;
    for (size_t limit = 1; limit <= 6; limit++) {
        snap_all(s, NULL, limit, &all);
        assert_int_equal(all.n, 5);
        assert_string_equal(all.v[0].table, "a");
        assert_string_equal(all.v[2].table, "a");
        assert_string_equal(all.v[3].table, "b");
    }
    /* a table that does not exist (or did not yet): no documents, no error */
    int64_t before = snap_all(s, "nosuch", 10, &all);
    assert_int_equal(all.n, 0);
    make_index(s, "late");
    upsert(s, "late", keys, 1, "l");
    snap_ok(s, "late", &before, NULL, 10, &all);
    assert_int_equal(all.n, 0);
    store_close(s);
}

static void snapshot_errors(void **state) {
    (void)state;
    store *s = open_store(0);
    int keys[] = {0, 1};
    make_index(s, "a");
    make_index(s, "b");
    upsert(s, "a", keys, 2, "x");
    upsert(s, "b", keys, 2, "x");
    page p;
    store_snapshot_page first = snap_ok(s, "a", NULL, NULL, 1, &p);
    tr_err e;
    int64_t future = first.snapshot + 1000000000LL;
    assert_string_equal(snap_err(s, "a", &future, NULL, &e), "SnapshotTooNew");
    int64_t other = first.snapshot - 1;
    assert_string_equal(snap_err(s, "a", &other, &first.next, &e), "InvalidListSnapshotCursor");
    assert_string_equal(snap_err(s, "b", NULL, &first.next, &e), "InvalidListSnapshotCursor");
    store_snapshot_pos bad = first.next;
    bad.table_number = 99999;
    assert_string_equal(snap_err(s, NULL, NULL, &bad, &e), "InvalidListSnapshotCursor");
    /* the cursor alone carries its snapshot */
    upsert(s, "a", keys, 2, "y");
    store_snapshot_page rest = snap_ok(s, "a", NULL, &first.next, 10, &p);
    assert_int_equal(rest.snapshot, first.snapshot);
    assert_int_equal(p.n, 1);
    assert_non_null(find(&p, "{\"id\":1,\"v\":\"x\"}"));
    store_close(s);
}

static void retention_limits_snapshots_and_cursors(void **state) {
    (void)state;
    store *s = open_store(20 * 1000000LL); /* 20 ms */
    int keys[] = {0};
    make_index(s, "t");
    upsert(s, "t", keys, 1, "x");
    page p;
    int64_t old = snap_ok(s, "t", NULL, NULL, 10, &p).snapshot;
    usleep(50000);
    /* nothing committed since: an old snapshot and cursor lost nothing */
    snap_ok(s, "t", &old, NULL, 10, &p);
    assert_int_equal(p.n, 1);
    store_deltas_page d = deltas_ok(s, "t", old, 10, &p);
    assert_int_equal(d.cursor, old);
    upsert(s, "t", keys, 1, "y");
    tr_err e;
    assert_string_equal(snap_err(s, "t", &old, NULL, &e), "SnapshotTooOld");
    store_deltas_req rq = {.cursor = old, .limit = 10};
    store_deltas_page out;
    assert_int_equal(store_document_deltas(s, &rq, collect, &p, &out, &e), -1);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.code, "InvalidWindowToReadDocuments");
    store_close(s);
}

/* ---- document_deltas ---- */

static void deltas_in_commit_order_whole_commits(void **state) {
    (void)state;
    store *s = open_store(0);
    make_index(s, "t");
    page p;
    int64_t start = snap_ok(s, NULL, NULL, NULL, 10, &p).snapshot;
    int ab[] = {1, 2, 3}, cd[] = {4, 5}, e_[] = {1};
    upsert(s, "t", ab, 3, "A"); /* commit A: three documents */
    upsert(s, "t", cd, 2, "B"); /* commit B: two */
    upsert(s, "t", e_, 1, "C"); /* commit C: replaces 1 */

    /* limit 2: commit A is taken whole (3 > 2), then B, then C */
    store_deltas_page d1 = deltas_ok(s, "t", start, 2, &p);
    assert_true(d1.has_more);
    /* 1 changed again in C, so A reports 2 and 3; C reports 1 */
    assert_int_equal(p.n, 2);
    assert_non_null(find(&p, "{\"id\":2,\"v\":\"A\"}"));
    assert_int_equal(p.v[0].ts, d1.cursor);
    store_deltas_page d2 = deltas_ok(s, "t", d1.cursor, 2, &p);
    assert_true(d2.has_more);
    assert_int_equal(p.n, 2);
    assert_true(d2.cursor > d1.cursor);
    store_deltas_page d3 = deltas_ok(s, "t", d2.cursor, 2, &p);
    assert_false(d3.has_more);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.v[0].fields, "{\"id\":1,\"v\":\"C\"}");
    assert_int_equal(p.v[0].ts, d3.cursor);
    /* caught up: nothing, and the cursor stays */
    store_deltas_page d4 = deltas_ok(s, "t", d3.cursor, 2, &p);
    assert_int_equal(p.n, 0);
    assert_int_equal(d4.cursor, d3.cursor);
    assert_false(d4.has_more);
    /* a commit to another table moves a filtered reader's cursor too */
    make_index(s, "u");
    upsert(s, "u", e_, 1, "U");
    store_deltas_page d5 = deltas_ok(s, "t", d4.cursor, 2, &p);
    assert_int_equal(p.n, 0);
    assert_true(d5.cursor > d4.cursor);
    store_close(s);
}

static void deltas_report_deletions_and_clears(void **state) {
    (void)state;
    store *s = open_store(0);
    make_index(s, "t");
    make_index(s, "u");
    int keys[] = {1, 2, 3};
    upsert(s, "t", keys, 3, "x");
    upsert(s, "u", keys, 1, "u");
    page p;
    int64_t start = snap_ok(s, NULL, NULL, NULL, 10, &p).snapshot;
    delete_key(s, "t", 2);
    clear(s, "t");
    upsert(s, "t", keys, 1, "after");

    store_deltas_page d = deltas_ok(s, "t", start, 100, &p);
    assert_false(d.has_more);
    /* the CDC deletion, then the two documents the clear removed, then the new one */
    assert_int_equal(p.n, 4);
    assert_true(p.v[0].deleted);
    assert_true(p.v[1].deleted && p.v[2].deleted);
    assert_int_equal(p.v[1].ts, p.v[2].ts);
    assert_true(p.v[1].ts > p.v[0].ts);
    assert_false(p.v[3].deleted);
    assert_string_equal(p.v[3].fields, "{\"id\":1,\"v\":\"after\"}");
    assert_true(strcmp(p.v[1].id, p.v[3].id) != 0);
    for (size_t i = 0; i < p.n; i++) assert_string_equal(p.v[i].table, "t");
    /* another table's reader sees none of it */
    deltas_ok(s, "u", start, 100, &p);
    assert_int_equal(p.n, 0);
    /* all tables: the same four */
    deltas_ok(s, NULL, start, 100, &p);
    assert_int_equal(p.n, 4);
    store_close(s);
}

/* Applying list_snapshot then document_deltas reproduces the table. */
static void replica_from_snapshot_and_deltas(void **state) {
    (void)state;
    store *s = open_store(0);
    make_index(s, "t");
    int k1[] = {1, 2, 3, 4};
    upsert(s, "t", k1, 4, "v1");
    page snap, p;
    int64_t at = snap_all(s, "t", 3, &snap);
    int k2[] = {2, 5};
    upsert(s, "t", k2, 2, "v2");
    delete_key(s, "t", 3);
    clear(s, "t");
    int k3[] = {6, 7};
    upsert(s, "t", k3, 2, "v3");
    delete_key(s, "t", 6);

    char ids[64][40], fields[64][128];
    size_t n = 0;
    for (size_t i = 0; i < snap.n; i++, n++) {
        snprintf(ids[n], sizeof ids[n], "%s", snap.v[i].id);
        snprintf(fields[n], sizeof fields[n], "%s", snap.v[i].fields);
    }
    store_deltas_page d = {.cursor = at, .has_more = 1};
    while (d.has_more) {
        d = deltas_ok(s, "t", d.cursor, 2, &p);
        for (size_t i = 0; i < p.n; i++) {
            size_t j = 0;
            while (j < n && strcmp(ids[j], p.v[i].id) != 0) j++;
            if (p.v[i].deleted) {
                if (j < n) {
                    memcpy(ids[j], ids[n - 1], sizeof ids[j]);
                    memcpy(fields[j], fields[n - 1], sizeof fields[j]);
                    n--;
                }
                continue;
            }
            if (j == n) n++;
            snprintf(ids[j], sizeof ids[j], "%s", p.v[i].id);
            snprintf(fields[j], sizeof fields[j], "%s", p.v[i].fields);
        }
    }
    snap_all(s, "t", 10, &p);
    assert_int_equal(n, p.n);
    assert_int_equal(n, 1);
    assert_string_equal(fields[0], "{\"id\":7,\"v\":\"v3\"}");
    assert_string_equal(ids[0], p.v[0].id);
    store_close(s);
}

/* ---- shapes ---- */

typedef struct shapes_seen {
    char names[8][NAMES_TABLE_MAX + 1];
    char schema[8][1024];
    int empty[8];
    size_t n;
} shapes_seen;

static int shape_collect(void *ctx, const char *table, const shape *sh, tr_err *e) {
    (void)e;
    shapes_seen *x = ctx;
    snprintf(x->names[x->n], sizeof x->names[0], "%s", table);
    x->empty[x->n] = sh == NULL;
    buf b = BUF_INIT;
    shape_json_schema(sh, table, 0, 1, &b);
    snprintf(x->schema[x->n], sizeof x->schema[0], "%s", b.p);
    buf_free(&b);
    x->n++;
    return 0;
}

static shapes_seen shapes(store *s) {
    shapes_seen x = {.n = 0};
    tr_err e;
    if (store_table_shapes(s, shape_collect, &x, &e) != 0) fail_msg("shapes: %s", e.message);
    return x;
}

static void shapes_follow_writes_clears_and_restarts(void **state) {
    (void)state;
    store *s = open_store(0);
    make_index(s, "t");
    make_index(s, "a");
    int keys[] = {1};
    upsert(s, "t", keys, 1, "x");
    wbatch b = {0};
    uint32_t st = w_stream(&b, "a", 0);
    store_record *r = &b.recs[b.nrecs++];
    memset(r, 0, sizeof *r);
    r->stream = st;
    buf_puts(&b.docs, "{\"n\":{\"$integer\":\"AQAAAAAAAAA=\"},\"extra\":[true]}");
    r->doc_len = b.docs.len;
    w_commit(s, &b);

    shapes_seen x = shapes(s);
    assert_int_equal(x.n, 2);
    assert_string_equal(x.names[0], "a");
    assert_true(strstr(x.schema[0], "\"n\":{\"$description\":\"int64") != NULL);
    assert_true(strstr(x.schema[0], "\"extra\":{\"type\":\"array\"") != NULL);
    assert_true(strstr(x.schema[1], "\"v\":{\"type\":\"string\"}") != NULL);
    store_close(s);

    s = open_store(0); /* persisted with the documents */
    shapes_seen y = shapes(s);
    assert_string_equal(x.schema[0], y.schema[0]);
    assert_string_equal(x.schema[1], y.schema[1]);
    clear(s, "t");
    y = shapes(s);
    assert_true(y.empty[1]);
    assert_null(strstr(y.schema[1], "\"v\""));
    store_close(s);
}

#define T(f) cmocka_unit_test_setup_teardown(f, unit_make_dir, unit_remove_dir)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(snapshot_pages_ignore_later_writes),
        T(snapshot_walks_every_table_in_pages),
        T(snapshot_errors),
        T(retention_limits_snapshots_and_cursors),
        T(deltas_in_commit_order_whole_commits),
        T(deltas_report_deletions_and_clears),
        T(replica_from_snapshot_and_deltas),
        T(shapes_follow_writes_clears_and_restarts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

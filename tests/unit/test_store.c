/*
 * test_store.c — the SQLite store through store.h, as the API layer uses it, plus direct
 * looks into the database file where only the file can tell (index entries, timestamps,
 * what reclaim deleted).
 *
 * Every test gets a fresh data directory. Documents are Convex JSON written by hand;
 * keys are built with pkey_encode_value, as the import path would.
 */
#include "unit.h"

#include "store/store.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "json/reader.h"
#include "model/docid.h"
#include "util/arena.h"
#include "util/buf.h"


static store *open_config(const store_config *c) {
    store *s = NULL;
    tr_err e;
    if (store_open(c, &s, &e) != 0) fail_msg("store_open: %s", e.message);
    return s;
}

static store *open_store(int readonly, int64_t retention_ns) {
    store_config c = {.data_dir = unit_dir, .readonly = readonly, .retention_ns = retention_ns};
    return open_config(&c);
}

/* A store that merges its recent index entries once `recent` of them gathered. */
static store *open_store_merging(size_t recent) {
    store_config c = {.data_dir = unit_dir, .recent_entries = recent};
    return open_config(&c);
}

/* ---- building batches ---- */

typedef struct tbatch {
    store_stream streams[4];
    size_t nstreams;
    store_record *recs;
    size_t nrecs, cap;
    buf docs, keys;
} tbatch;

static void tb_free(tbatch *b) {
    free(b->recs);
    buf_free(&b->docs);
    buf_free(&b->keys);
    memset(b, 0, sizeof *b);
}

/* keyfield NULL: an append stream; else a dedup stream keyed by that one field. */
static uint32_t tb_stream(tbatch *b, const char *table, const char *keyfield) {
    store_stream *st = &b->streams[b->nstreams];
    memset(st, 0, sizeof *st);
    snprintf(st->table, sizeof st->table, "%s", table);
    if (keyfield) {
        st->dedup = 1;
        st->key.npaths = 1;
        st->key.paths[0].ncomp = 1;
        snprintf(st->key.paths[0].comp[0], sizeof st->key.paths[0].comp[0], "%s", keyfield);
    }
    return (uint32_t)b->nstreams++;
}

static store_record *tb_record(tbatch *b, uint32_t stream, const char *doc) {
    if (b->nrecs == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->recs = realloc(b->recs, b->cap * sizeof *b->recs);
    }
    store_record *r = &b->recs[b->nrecs++];
    memset(r, 0, sizeof *r);
    r->stream = stream;
    r->doc_off = b->docs.len;
    buf_puts(&b->docs, doc);
    r->doc_len = b->docs.len - r->doc_off;
    return r;
}

static void tb_append(tbatch *b, uint32_t stream, const char *doc) { tb_record(b, stream, doc); }

/* A dedup record whose key is the number `key`. */
static void tb_dedup(tbatch *b, uint32_t stream, const char *doc, double key, int deleted) {
    store_record *r = tb_record(b, stream, doc);
    val v = {.type = VAL_FLOAT, .u.f = key};
    r->deleted = deleted;
    r->key_off = b->keys.len;
    pkey_encode_value(&v, &b->keys);
    r->key_len = b->keys.len - r->key_off;
}

static int tb_import(store *s, tbatch *b, store_import_result *r, tr_err *e) {
    store_batch batch = {
        .streams = b->streams,
        .nstreams = b->nstreams,
        .records = b->recs,
        .nrecords = b->nrecs,
        .docs = b->docs.p,
        .keys = (const unsigned char *)b->keys.p,
    };
    return store_import(s, &batch, r, e);
}

static store_import_result import_ok(store *s, tbatch *b) {
    store_import_result r;
    tr_err e;
    if (tb_import(s, b, &r, &e) != 0) fail_msg("store_import: %s %s", e.code, e.message);
    tb_free(b);
    return r;
}

/* n documents {"id":<first+i>,"n":i} appended to table */
static void append_many(store *s, const char *table, int first, int n) {
    tbatch b = {0};
    uint32_t st = tb_stream(&b, table, NULL);
    char doc[64];
    for (int i = 0; i < n; i++) {
        snprintf(doc, sizeof doc, "{\"id\":%d,\"n\":%d}", first + i, i);
        tb_append(&b, st, doc);
    }
    import_ok(s, &b);
}

static void add_index(store *s, const char *table, const char *field) {
    store_index_req req;
    memset(&req, 0, sizeof req);
    snprintf(req.table, sizeof req.table, "%s", table);
    req.key.npaths = 1;
    req.key.paths[0].ncomp = 1;
    snprintf(req.key.paths[0].comp[0], sizeof req.key.paths[0].comp[0], "%s", field);
    tr_err e;
    if (store_add_indexes(s, &req, 1, &e) != 0) fail_msg("add_indexes: %s", e.message);
}

static int ready(store *s, const char *table) {
    int r = -1;
    tr_err e;
    if (store_indexes_ready(s, &table, 1, &r, &e) != 0) fail_msg("indexes_ready: %s", e.message);
    return r;
}

static int wait_ready(store *s, const char *table, int seconds) {
    for (int i = 0; i < seconds * 100; i++) {
        if (ready(s, table)) return 1;
        usleep(10000);
    }
    return 0;
}

/* ---- reading back ---- */

typedef struct exported {
    arena *a;
    val **docs;
    size_t n, cap;
} exported;

static int collect(void *ctx, const char *json, size_t len) {
    exported *x = ctx;
    val *v;
    tr_err e;
    if (json_parse(x->a, json, len, 0, JSON_CONVEX, &v, &e) != 0)
        fail_msg("exported text is not JSON (%s): %.*s", e.message, (int)len, json);
    if (x->n == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 16;
        x->docs = realloc(x->docs, x->cap * sizeof *x->docs);
    }
    x->docs[x->n++] = v;
    return 0;
}

static exported export_all(store *s, const char *table) {
    exported x = {.a = arena_new()};
    tr_err e;
    if (store_export_table(s, table, collect, &x, &e) != 0)
        fail_msg("export %s: %s %s", table, e.code, e.message);
    return x;
}

static void exported_free(exported *x) {
    arena_free(x->a);
    free(x->docs);
}

static double num(const val *doc, const char *field) {
    const val *v = val_get(doc, field);
    assert_non_null(v);
    assert_int_equal(v->type, VAL_FLOAT);
    return v->u.f;
}

static const char *str(const val *doc, const char *field) {
    const val *v = val_get(doc, field);
    assert_non_null(v);
    assert_int_equal(v->type, VAL_STRING);
    return v->u.s.p;
}

/* ---- looking into the database file ---- */

static int64_t q_int(const char *sql) {
    char path[128];
    snprintf(path, sizeof path, "%s/tributary.db", unit_dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    int rc = sqlite3_step(st);
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Every index entry, wherever it is (pk_recent: not merged yet). */
#define ENTRIES "(SELECT ix, key, doc FROM pk_entries UNION ALL SELECT ix, key, doc FROM pk_recent)"

/* Documents that have no index entry or more than one. */
#define NOT_ONE_ENTRY                                                                      \
    "SELECT count(*) FROM documents d LEFT JOIN"                                           \
    " (SELECT doc, count(*) AS n FROM " ENTRIES " GROUP BY doc) e ON e.doc = d.rowid"       \
    " WHERE coalesce(e.n, 0) != 1"

/* Prefix of a query over the change log with one row per logged document:
 * log(ts, tablet, id, deleted) out of the packed rows of `changes`. */
#define LOG_ROWS                                                                           \
    "WITH RECURSIVE e(ts, tablet, ids, dels, i) AS ("                                      \
    "  SELECT ts, tablet, ids, deleted, 0 FROM changes WHERE length(deleted) > 0"          \
    "  UNION ALL SELECT ts, tablet, ids, dels, i + 1 FROM e WHERE i + 1 < length(dels)),"  \
    " log(ts, tablet, id, deleted) AS (SELECT ts, tablet, substr(ids, 16 * i + 1, 16),"    \
    "  substr(dels, i + 1, 1) = x'01' FROM e) "

/* ---- tests ---- */

static void append_then_export(void **state) {
    (void)state;
    store *s = open_store(0, 0);
    tbatch b = {0};
    uint32_t st = tb_stream(&b, "t", NULL);
    tb_append(&b, st, "{\"a\":1,\"s\":\"x\"}");
    tb_append(&b, st, "{}");
    tb_append(&b, st, "{\"nested\":{\"k\":[1,2]}}");
    store_import_result r = import_ok(s, &b);
    assert_int_equal(r.inserted, 3);
    assert_int_equal(r.replaced + r.deleted, 0);

    exported x = export_all(s, "t");
    assert_int_equal(x.n, 3);
    uint32_t number;
    uint8_t internal[DOCID_INTERNAL_LEN];
    const char *id = str(x.docs[0], "_id");
    assert_int_equal(strlen(id), 32);
    assert_int_equal(docid_decode(id, strlen(id), &number, internal), 0);
    assert_int_equal(number, DOCID_FIRST_TABLE);
    /* system fields first, then the stored fields in their order */
    assert_string_equal(x.docs[0]->u.o.fields[0].key, "_id");
    assert_string_equal(x.docs[0]->u.o.fields[1].key, "_creationTime");
    assert_true(num(x.docs[0], "_creationTime") > 1.6e12);
    assert_int_equal(num(x.docs[0], "a"), 1);
    assert_string_equal(str(x.docs[0], "s"), "x");
    assert_int_equal(x.docs[1]->u.o.n, 2);
    assert_non_null(val_get(val_get(x.docs[2], "nested"), "k"));
    assert_true(strcmp(str(x.docs[0], "_id"), str(x.docs[1], "_id")) < 0);
    exported_free(&x);

    tr_err e;
    assert_int_equal(store_export_table(s, "nope", collect, NULL, &e), -1);
    assert_int_equal(e.status, 404);
    assert_string_equal(e.code, "TableNotFound");
    store_close(s);
}

static void dedup_replace_keeps_id_and_creation_time(void **state) {
    (void)state;
    store *s = open_store(0, 0);
    add_index(s, "t", "id");
    assert_true(ready(s, "t"));
    tbatch b = {0};
    uint32_t st = tb_stream(&b, "t", "id");
    tb_dedup(&b, st, "{\"id\":1,\"v\":\"a\",\"old\":true}", 1, 0);
    assert_int_equal(import_ok(s, &b).inserted, 1);
    exported before = export_all(s, "t");

    st = tb_stream(&b, "t", "id");
    tb_dedup(&b, st, "{\"id\":1,\"v\":\"b\"}", 1, 0);
    store_import_result r = import_ok(s, &b);
    assert_int_equal(r.replaced, 1);
    assert_int_equal(r.inserted, 0);

    exported after = export_all(s, "t");
    assert_int_equal(after.n, 1);
    assert_string_equal(str(after.docs[0], "_id"), str(before.docs[0], "_id"));
    assert_true(num(after.docs[0], "_creationTime") == num(before.docs[0], "_creationTime"));
    assert_string_equal(str(after.docs[0], "v"), "b");
    assert_null(val_get(after.docs[0], "old"));
    exported_free(&before);
    exported_free(&after);

    /* the replaced version is kept for export, valid until the replacing commit */
    assert_int_equal(q_int("SELECT count(*) FROM history h JOIN documents d ON d.id = h.id"
                           " WHERE h.valid_to = d.ts AND h.value LIKE '%\"a\"%'"),
                     1);
    store_close(s);
}

static void last_record_for_a_key_wins(void **state) {
    (void)state;
    store *s = open_store(0, 0);
    add_index(s, "t", "id");
    tbatch b = {0};
    uint32_t st = tb_stream(&b, "t", "id");
    tb_dedup(&b, st, "{\"id\":5,\"v\":1}", 5, 0);
    tb_dedup(&b, st, "{\"id\":5,\"v\":2}", 5, 0);
    tb_dedup(&b, st, "{\"id\":6,\"v\":1}", 6, 0);
    tb_dedup(&b, st, "{\"id\":6}", 6, 1);
    tb_dedup(&b, st, "{\"id\":5,\"v\":3}", 5, 0);
    store_import_result r = import_ok(s, &b);
    assert_int_equal(r.inserted, 2);
    assert_int_equal(r.replaced, 2);
    assert_int_equal(r.deleted, 1);
    exported x = export_all(s, "t");
    assert_int_equal(x.n, 1);
    assert_int_equal(num(x.docs[0], "v"), 3);
    exported_free(&x);
    /* id 6 lived and died inside one commit: no reader could see it, nothing is kept;
     * the change log lists id 5 only */
    assert_int_equal(q_int(LOG_ROWS "SELECT count(*) FROM log"), 1);
    assert_int_equal(q_int("SELECT count(*) FROM history"), 0);
    store_close(s);
}

static void cdc_delete_and_unknown_key(void **state) {
    (void)state;
    store *s = open_store(0, 0);
    add_index(s, "t", "id");
    tbatch b = {0};
    uint32_t st = tb_stream(&b, "t", "id");
    tb_dedup(&b, st, "{\"id\":1}", 1, 0);
    tb_dedup(&b, st, "{\"id\":2}", 2, 0);
    import_ok(s, &b);

    st = tb_stream(&b, "t", "id");
    tb_dedup(&b, st, "{\"id\":1}", 1, 1);
    store_import_result r = import_ok(s, &b);
    assert_int_equal(r.deleted, 1);
    st = tb_stream(&b, "t", "id");
    tb_dedup(&b, st, "{\"id\":99}", 99, 1);
    r = import_ok(s, &b);
    assert_int_equal(r.deleted + r.inserted + r.replaced, 0);

    exported x = export_all(s, "t");
    assert_int_equal(x.n, 1);
    assert_int_equal(num(x.docs[0], "id"), 2);
    exported_free(&x);
    /* the deletion is logged for the export side, with the old version */
    assert_int_equal(q_int(LOG_ROWS "SELECT count(*) FROM log WHERE deleted"), 1);
    assert_int_equal(q_int(LOG_ROWS "SELECT count(*) FROM history h JOIN log c"
                                    " ON c.id = h.id AND c.ts = h.valid_to WHERE c.deleted"),
                     1);
    assert_int_equal(q_int("SELECT doc_count FROM tablets"), 1);
    store_close(s);
}

static void duplicates_collapse_to_the_oldest(void **state) {
    (void)state;
    store *s = open_store(0, 0);
    tbatch b = {0};
    uint32_t st = tb_stream(&b, "t", NULL);
    tb_append(&b, st, "{\"id\":7,\"v\":\"first\"}");
    tb_append(&b, st, "{\"id\":7,\"v\":\"second\"}");
    tb_append(&b, st, "{\"other\":1}");
    import_ok(s, &b);
    st = tb_stream(&b, "t", NULL);
    tb_append(&b, st, "{\"id\":7,\"v\":\"third\"}");
    import_ok(s, &b);
    exported before = export_all(s, "t");
    assert_int_equal(before.n, 4);

    add_index(s, "t", "id");
    assert_true(wait_ready(s, "t", 10));
    st = tb_stream(&b, "t", "id");
    tb_dedup(&b, st, "{\"id\":7,\"v\":\"new\"}", 7, 0);
    store_import_result r = import_ok(s, &b);
    assert_int_equal(r.replaced, 1);
    assert_int_equal(r.deleted, 2);

    exported after = export_all(s, "t");
    assert_int_equal(after.n, 2);
    assert_string_equal(str(after.docs[0], "_id"), str(before.docs[0], "_id"));
    assert_string_equal(str(after.docs[0], "v"), "new");
    assert_int_equal(num(after.docs[1], "other"), 1);
    exported_free(&before);
    exported_free(&after);
    store_close(s);
}

/* A failed batch must leave nothing behind, not even the tables it would create. */
static void expect_import_error(store *s, tbatch *b, int status, const char *code,
                                const char *msg_part) {
    uint32_t other = tb_stream(b, "created_by_failed_batch", NULL);
    tb_append(b, other, "{\"x\":1}");
    store_import_result r;
    tr_err e;
    assert_int_equal(tb_import(s, b, &r, &e), -1);
    assert_int_equal(e.status, status);
    assert_string_equal(e.code, code);
    if (!strstr(e.message, msg_part)) fail_msg("message \"%s\" lacks \"%s\"", e.message, msg_part);
    assert_int_equal(r.inserted + r.replaced + r.deleted, 0);
    assert_int_equal(store_export_table(s, "created_by_failed_batch", collect, NULL, &e), -1);
    assert_string_equal(e.code, "TableNotFound");
    tb_free(b);
}

static void dedup_errors_write_nothing(void **state) {
    (void)state;
    store *s = open_store(0, 0);
    tbatch b = {0};
    uint32_t st = tb_stream(&b, "missing", "id");
    tb_dedup(&b, st, "{\"id\":1}", 1, 0);
    expect_import_error(s, &b, 400, "IndexNotFoundError",
                        "Index missing._by_airbyte_primary_key not found.");

    append_many(s, "plain", 0, 3);
    st = tb_stream(&b, "plain", "id");
    tb_dedup(&b, st, "{\"id\":1}", 1, 0);
    expect_import_error(s, &b, 400, "IndexNotFoundError",
                        "Index plain._by_airbyte_primary_key not found.");

    add_index(s, "keyed", "id");
    st = tb_stream(&b, "keyed", "other");
    tb_dedup(&b, st, "{\"other\":1}", 1, 0);
    expect_import_error(s, &b, 400, "PrimaryKeyMismatch", "[[\"other\"]]");
    st = tb_stream(&b, "keyed", "other");
    tb_dedup(&b, st, "{\"other\":1}", 1, 0);
    expect_import_error(s, &b, 400, "PrimaryKeyMismatch", "[[\"id\"]]");

    /* a big table keeps the background build busy for many steps */
    append_many(s, "big", 0, 60000);
    add_index(s, "big", "id");
    assert_false(ready(s, "big"));
    st = tb_stream(&b, "big", "id");
    tb_dedup(&b, st, "{\"id\":1}", 1, 0);
    expect_import_error(s, &b, 400, "IndexBackfillingError",
                        "Index big._by_airbyte_primary_key is currently backfilling and not "
                        "available to query yet.");

    /* a dedup stream without records is not checked */
    st = tb_stream(&b, "missing", "id");
    uint32_t ok = tb_stream(&b, "plain", NULL);
    tb_append(&b, ok, "{\"y\":2}");
    assert_int_equal(import_ok(s, &b).inserted, 1);
    exported x = export_all(s, "plain");
    assert_int_equal(x.n, 4);
    exported_free(&x);
    (void)st;
    store_close(s);
}

/* How a batch of the group commit test ends. */
enum { BATCH_GOOD, BATCH_REFUSED, BATCH_FAILS_AFTER_WRITING };

typedef struct group_arg {
    store *s;
    pthread_barrier_t *start;
    int round, thread, kind;
    int rc;
    tr_err e;
} group_arg;

static void *group_worker(void *p) {
    group_arg *a = p;
    tbatch b = {0};
    uint32_t app = tb_stream(&b, "g", NULL);
    uint32_t ded = tb_stream(&b, a->kind == BATCH_REFUSED ? "g_noindex" : "gk", "id");
    char doc[96];
    for (int i = 0; i < 50; i++) {
        snprintf(doc, sizeof doc, "{\"round\":%d,\"thread\":%d,\"i\":%d}", a->round, a->thread, i);
        tb_append(&b, app, doc);
        int key = (a->round * 100 + a->thread) * 100 + i;
        snprintf(doc, sizeof doc, "{\"id\":%d}", key);
        tb_dedup(&b, ded, doc, key, 0);
    }
    /* the store cannot compute the index key of an unreadable document: it fails with
     * half of the batch already written */
    if (a->kind == BATCH_FAILS_AFTER_WRITING) tb_append(&b, tb_stream(&b, "gi", NULL), "{bad");
    store_import_result r;
    pthread_barrier_wait(a->start);
    a->rc = tb_import(a->s, &b, &r, &a->e);
    tb_free(&b);
    return NULL;
}

static void group_commit_fails_one_batch_alone(void **state) {
    (void)state;
    store *s = open_store(0, 0);
    add_index(s, "gk", "id");
    add_index(s, "gi", "id");
    append_many(s, "g_noindex", 0, 1);
    enum { THREADS = 8, ROUNDS = 5 };
    int good = 0;
    for (int round = 0; round < ROUNDS; round++) {
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, THREADS);
        pthread_t th[THREADS];
        group_arg args[THREADS];
        for (int t = 0; t < THREADS; t++) {
            int kind = t == round % THREADS             ? BATCH_REFUSED
                       : t == (round + 1) % THREADS ? BATCH_FAILS_AFTER_WRITING
                                                    : BATCH_GOOD;
            args[t] = (group_arg){
                .s = s, .start = &start, .round = round, .thread = t, .kind = kind};
            pthread_create(&th[t], NULL, group_worker, &args[t]);
        }
        for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
        pthread_barrier_destroy(&start);
        for (int t = 0; t < THREADS; t++) {
            if (args[t].kind == BATCH_REFUSED) {
                assert_int_equal(args[t].rc, -1);
                assert_string_equal(args[t].e.code, "IndexNotFoundError");
            } else if (args[t].kind == BATCH_FAILS_AFTER_WRITING) {
                assert_int_equal(args[t].rc, -1);
                assert_int_equal(args[t].e.status, 500);
            } else {
                if (args[t].rc != 0) fail_msg("good batch failed: %s", args[t].e.message);
                good++;
            }
        }
    }
    exported g = export_all(s, "g");
    exported gk = export_all(s, "gk");
    assert_int_equal(g.n, (size_t)good * 50);
    assert_int_equal(gk.n, (size_t)good * 50);
    for (size_t i = 0; i < g.n; i++) {
        int thread = (int)num(g.docs[i], "thread"), round = (int)num(g.docs[i], "round");
        assert_int_not_equal(thread, round % THREADS);
        assert_int_not_equal(thread, (round + 1) % THREADS);
    }
    exported_free(&g);
    exported_free(&gk);
    exported gi = export_all(s, "gi");
    assert_int_equal(gi.n, 0);
    exported_free(&gi);
    /* every commit has its own timestamp */
    assert_int_equal(q_int("SELECT count(DISTINCT ts) FROM documents d JOIN tables t"
                           " ON t.tablet = d.tablet WHERE t.name = 'gk'"),
                     good);
    store_close(s);
}

static void clear_tables_empties_and_keeps_index(void **state) {
    (void)state;
    store *s = open_store(0, 0);
    add_index(s, "t", "id");
    tbatch b = {0};
    uint32_t st = tb_stream(&b, "t", "id");
    for (int i = 0; i < 3; i++) tb_dedup(&b, st, "{\"id\":1}", i, 0);
    import_ok(s, &b);
    append_many(s, "u", 0, 2);

    const char *names[] = {"t", "u", "fresh", "t"};
    uint64_t cleared = 0;
    tr_err e;
    assert_int_equal(store_clear_tables(s, names, 4, &cleared, &e), 0);
    assert_int_equal(cleared, 5);
    for (int i = 0; i < 3; i++) {
        exported x = export_all(s, names[i]);
        assert_int_equal(x.n, 0);
        exported_free(&x);
    }
    assert_true(ready(s, "t"));
    const char *fresh = "fresh";
    int r;
    assert_int_equal(store_indexes_ready(s, &fresh, 1, &r, &e), -1);
    assert_string_equal(e.code, "MissingIndex");

    /* the index works on the new generation: key 1 is new again */
    st = tb_stream(&b, "t", "id");
    tb_dedup(&b, st, "{\"id\":1}", 1, 0);
    assert_int_equal(import_ok(s, &b).inserted, 1);
    /* the old rows stay readable for the retention window */
    assert_int_equal(q_int("SELECT count(*) FROM tablets WHERE dropped_ts IS NOT NULL"), 2);
    assert_int_equal(q_int("SELECT count(*) FROM documents"), 6);
    store_close(s);
}

static void index_on_empty_table_is_ready_at_once(void **state) {
    (void)state;
    store *s = open_store(0, 0);
    add_index(s, "e", "id");
    assert_true(ready(s, "e"));
    exported x = export_all(s, "e"); /* the table was created */
    assert_int_equal(x.n, 0);
    exported_free(&x);

    tr_err e;
    int r = -1;
    assert_int_equal(store_indexes_ready(s, NULL, 0, &r, &e), 0);
    assert_int_equal(r, 1);
    const char *names[] = {"e", "none"};
    assert_int_equal(store_indexes_ready(s, names, 2, &r, &e), -1);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.code, "MissingIndex");
    assert_string_equal(e.message, "Missing index: none._by_airbyte_primary_key");

    /* same fields again: nothing changes; other fields: a new, empty-table index */
    add_index(s, "e", "id");
    assert_int_equal(q_int("SELECT count(*) FROM dead_indexes"), 0);
    add_index(s, "e", "other");
    assert_true(ready(s, "e"));
    store_close(s);
}

typedef struct appender {
    store *s;
    int thread;
    atomic_int *stop;
    int batches;
} appender;

static void *append_worker(void *p) {
    appender *a = p;
    while (!*a->stop || a->batches < 3) {
        append_many(a->s, "bf", 1000000 * (a->thread + 1) + a->batches * 100, 100);
        a->batches++;
    }
    return NULL;
}

static void backfill_with_concurrent_appends(void **state) {
    (void)state;
    store *s = open_store(0, 0);
    append_many(s, "bf", 0, 30000);
    tbatch b = {0};
    uint32_t st = tb_stream(&b, "bf", NULL);
    tb_append(&b, st, "{\"nokey\":true}");
    import_ok(s, &b);

    add_index(s, "bf", "id");
    assert_false(ready(s, "bf"));
    atomic_int stop = 0;
    pthread_t th[4];
    appender args[4];
    for (int t = 0; t < 4; t++) {
        args[t] = (appender){.s = s, .thread = t, .stop = &stop};
        pthread_create(&th[t], NULL, append_worker, &args[t]);
    }
    int became_ready = wait_ready(s, "bf", 30);
    stop = 1;
    for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
    assert_true(became_ready);
    assert_true(ready(s, "bf"));

    assert_int_equal(q_int(NOT_ONE_ENTRY), 0);
    int64_t docs = q_int("SELECT count(*) FROM documents");
    int64_t appended = 0;
    for (int t = 0; t < 4; t++) appended += args[t].batches * 100;
    assert_int_equal(docs, 30001 + appended);
    assert_int_equal(q_int("SELECT count(*) FROM " ENTRIES), docs);
    assert_int_equal(q_int("SELECT doc_count FROM tablets"), docs);

    /* the backfilled entries serve dedup imports */
    st = tb_stream(&b, "bf", "id");
    tb_dedup(&b, st, "{\"id\":123,\"v\":\"replaced\"}", 123, 0);
    assert_int_equal(import_ok(s, &b).replaced, 1);
    store_close(s);
}

static void backfill_resumes_after_restart(void **state) {
    (void)state;
    store *s = open_store(0, 0);
    append_many(s, "r", 0, 20000);
    add_index(s, "r", "id");
    store_close(s);
    /* whatever the first run managed, the next one finishes the build */
    s = open_store(0, 0);
    assert_true(wait_ready(s, "r", 30));
    assert_int_equal(q_int("SELECT count(*) FROM pk_entries"), 20000);
    store_close(s);
}

/* One dedup batch on table "t": keys first, first + step, ... (n of them) with value v,
 * or deletions of them. */
static store_import_result dedup_keys(store *s, int first, int step, int n, int v, int del) {
    tbatch b = {0};
    uint32_t st = tb_stream(&b, "t", "id");
    char doc[64];
    for (int i = 0; i < n; i++) {
        int k = first + i * step;
        snprintf(doc, sizeof doc, "{\"id\":%d,\"v\":%d}", k, v);
        tb_dedup(&b, st, doc, k, del);
    }
    return import_ok(s, &b);
}

static void recent_entries_merge_into_the_index(void **state) {
    (void)state;
    store *s = open_store_merging(50);
    add_index(s, "t", "id");
    /* a job past the threshold moves twice what it added: here a sweep in several steps
     * (SQ_MERGE_CHUNK each), then one that merges into a full index */
    assert_int_equal(dedup_keys(s, 0, 1, 9000, 0, 0).inserted, 9000);
    assert_int_equal(q_int("SELECT count(*) FROM pk_recent"), 0);
    assert_int_equal(dedup_keys(s, 9000, 1, 600, 0, 0).inserted, 600);
    assert_int_equal(q_int("SELECT count(*) FROM pk_recent"), 0);
    assert_int_equal(q_int("SELECT count(*) FROM pk_entries"), 9600);
    store_close(s);

    /* after a restart: keys in the main index and keys only in pk_recent are found alike */
    s = open_store_merging(1000000);
    store_import_result r = dedup_keys(s, 9000, 1, 700, 1, 0); /* 9600..9699 are new */
    assert_int_equal(r.replaced, 600);
    assert_int_equal(r.inserted, 100);
    assert_int_equal(q_int("SELECT count(*) FROM pk_recent"), 100);
    r = dedup_keys(s, 9000, 1, 700, 2, 0);
    assert_int_equal(r.replaced, 700);
    assert_int_equal(r.inserted, 0);
    /* deletions take the entry out of whichever table holds it */
    r = dedup_keys(s, 9550, 1, 100, 0, 1);
    assert_int_equal(r.deleted, 100);
    assert_int_equal(q_int("SELECT count(*) FROM pk_entries"), 9550);
    assert_int_equal(q_int("SELECT count(*) FROM pk_recent"), 50);
    assert_int_equal(q_int("SELECT count(*) FROM documents"), 9600);
    assert_int_equal(q_int(NOT_ONE_ENTRY), 0);
    assert_int_equal(q_int("SELECT count(*) FROM " ENTRIES " e LEFT JOIN documents d"
                           " ON d.rowid = e.doc WHERE d.rowid IS NULL"),
                     0);
    exported x = export_all(s, "t");
    assert_int_equal(x.n, 9600);
    for (size_t i = 0; i < x.n; i++) {
        double k = num(x.docs[i], "id");
        assert_true(k < 9550 || (k >= 9650 && k < 9700));
        assert_int_equal(num(x.docs[i], "v"), k < 9000 ? 0 : 2);
    }
    exported_free(&x);
    store_close(s);
}

/* However fast imports come, pk_recent stays below its threshold after each job: a job
 * that reaches it merges twice what it adds. */
static void merges_keep_pace_with_imports(void **state) {
    (void)state;
    store *s = open_store_merging(500);
    add_index(s, "t", "id");
    int64_t most = 0;
    for (int r = 0; r < 40; r++) {
        /* keys r, r + 40, ...: each batch spread over the whole key range */
        assert_int_equal(dedup_keys(s, r, 40, 100, 0, 0).inserted, 100);
        int64_t n = q_int("SELECT count(*) FROM pk_recent");
        if (n > most) most = n;
    }
    /* it filled up to near the threshold (nothing merged before), and not past it */
    assert_true(most >= 400);
    assert_true(most < 500);
    assert_int_equal(q_int("SELECT count(*) FROM " ENTRIES), 4000);
    assert_int_equal(q_int(NOT_ONE_ENTRY), 0);
    assert_int_equal(dedup_keys(s, 0, 1, 4000, 1, 0).replaced, 4000);
    store_close(s);
}

/* Should a document's entry ever be in both tables, a lookup still sees one document. */
static void an_entry_in_both_tables_is_one_match(void **state) {
    (void)state;
    store *s = open_store_merging(1000000);
    add_index(s, "t", "id");
    assert_int_equal(dedup_keys(s, 7, 1, 1, 0, 0).inserted, 1);
    q_int("INSERT INTO pk_entries SELECT * FROM pk_recent");
    assert_int_equal(q_int("SELECT count(*) FROM " ENTRIES), 2);
    store_import_result r = dedup_keys(s, 7, 1, 1, 1, 0);
    assert_int_equal(r.replaced, 1);
    assert_int_equal(r.deleted, 0);
    assert_int_equal(q_int("SELECT count(*) FROM documents"), 1);
    assert_int_equal(dedup_keys(s, 7, 1, 1, 0, 1).deleted, 1);
    assert_int_equal(q_int("SELECT count(*) FROM " ENTRIES), 0);
    store_close(s);
}

static void clear_during_backfill_makes_index_ready(void **state) {
    (void)state;
    store *s = open_store(0, 0);
    append_many(s, "c", 0, 60000);
    add_index(s, "c", "id");
    const char *name = "c";
    uint64_t cleared;
    tr_err e;
    assert_int_equal(store_clear_tables(s, &name, 1, &cleared, &e), 0);
    assert_int_equal(cleared, 60000);
    assert_true(ready(s, "c"));
    store_close(s);
}

static void timestamps_increase_across_reopen(void **state) {
    (void)state;
    store *s = open_store(0, 0);
    append_many(s, "t", 0, 1);
    append_many(s, "t", 1, 1);
    store_close(s);
    int64_t first = q_int("SELECT min(ts) FROM documents");
    int64_t second = q_int("SELECT max(ts) FROM documents");
    assert_true(second > first);
    assert_int_equal(q_int("SELECT value FROM meta WHERE key = 'last_ts'"), second);

    /* as if the clock went back an hour: the next commit still comes after */
    char sql[128];
    int64_t future = second + 3600LL * 1000000000LL;
    snprintf(sql, sizeof sql, "UPDATE meta SET value = %lld WHERE key = 'last_ts'",
             (long long)future);
    q_int(sql);
    s = open_store(0, 0);
    append_many(s, "t", 2, 1);
    store_close(s);
    assert_int_equal(q_int("SELECT max(ts) FROM documents"), future + 1);
}

static void creation_times_strictly_increase(void **state) {
    (void)state;
    store *s = open_store(0, 0);
    append_many(s, "t", 0, 1000);
    append_many(s, "t", 1000, 10);
    add_index(s, "t", "id");
    assert_true(wait_ready(s, "t", 10));
    tbatch b = {0};
    uint32_t st = tb_stream(&b, "t", "id");
    tb_dedup(&b, st, "{\"id\":5000}", 5000, 0);
    import_ok(s, &b);
    exported x = export_all(s, "t");
    assert_int_equal(x.n, 1011);
    for (size_t i = 1; i < x.n; i++) {
        assert_true(num(x.docs[i], "_creationTime") > num(x.docs[i - 1], "_creationTime"));
        assert_true(strcmp(str(x.docs[i], "_id"), str(x.docs[i - 1], "_id")) > 0);
    }
    exported_free(&x);
    store_close(s);
}

static void readonly_open_next_to_a_writer(void **state) {
    (void)state;
    store_config missing = {.data_dir = "/nonexistent/tributary", .readonly = 1};
    store *none;
    tr_err e;
    assert_int_equal(store_open(&missing, &none, &e), -1);
    assert_int_equal(e.status, 500);

    store *w = open_store(0, 0);
    append_many(w, "t", 0, 5);
    store *r = open_store(1, 0);
    exported x = export_all(r, "t");
    assert_int_equal(x.n, 5);
    exported_free(&x);
    append_many(w, "t", 5, 5);
    x = export_all(r, "t");
    assert_int_equal(x.n, 10);
    exported_free(&x);
    tbatch b = {0};
    uint32_t st = tb_stream(&b, "t", NULL);
    tb_append(&b, st, "{}");
    store_import_result res;
    assert_int_equal(tb_import(r, &b, &res, &e), -1);
    assert_int_equal(e.status, 500);
    tb_free(&b);
    store_close(r);
    store_close(w);

    /* and with no server running */
    r = open_store(1, 0);
    x = export_all(r, "t");
    assert_int_equal(x.n, 10);
    exported_free(&x);
    store_close(r);
}

static void reclaim_after_retention(void **state) {
    (void)state;
    store *s = open_store(0, 0);
    add_index(s, "t", "id");
    tbatch b = {0};
    uint32_t st = tb_stream(&b, "t", "id");
    for (int i = 0; i < 3; i++) tb_dedup(&b, st, "{\"id\":0}", i, 0);
    import_ok(s, &b);
    st = tb_stream(&b, "t", "id");
    tb_dedup(&b, st, "{\"id\":0,\"v\":1}", 0, 0);
    tb_dedup(&b, st, "{\"id\":1}", 1, 1);
    import_ok(s, &b);
    assert_int_equal(q_int("SELECT count(*) FROM history"), 2);
    assert_int_equal(q_int(LOG_ROWS "SELECT count(*) FROM log WHERE deleted"), 1);
    store_close(s);

    s = open_store(0, 1); /* now keep old versions for 1 ns only */
    const char *name = "t";
    uint64_t cleared;
    tr_err e;
    assert_int_equal(store_clear_tables(s, &name, 1, &cleared, &e), 0);
    assert_int_equal(cleared, 2);
    const char *left = "SELECT (SELECT count(*) FROM documents) + (SELECT count(*) FROM history)"
                       " + (SELECT count(*) FROM changes) + (SELECT count(*) FROM " ENTRIES ")"
                       " + (SELECT count(*) FROM dead_indexes)"
                       " + (SELECT count(*) FROM tablets WHERE dropped_ts IS NOT NULL)";
    int64_t n = -1;
    for (int i = 0; i < 1000 && n != 0; i++) {
        n = q_int(left);
        if (n) usleep(10000);
    }
    assert_int_equal(n, 0);
    assert_true(ready(s, "t"));
    store_close(s);
}

static void busy_database_is_503(void **state) {
    (void)state;
    store *s = open_store(0, 0);
    append_many(s, "t", 0, 1);
    char path[128];
    snprintf(path, sizeof path, "%s/tributary.db", unit_dir);
    sqlite3 *other;
    assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
    sqlite3_busy_timeout(other, 5000); /* the store's background thread may be writing */
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    tbatch b = {0};
    uint32_t st = tb_stream(&b, "t", NULL);
    tb_append(&b, st, "{}");
    store_import_result r;
    tr_err e;
    assert_int_equal(tb_import(s, &b, &r, &e), -1);
    assert_int_equal(e.status, 503);
    assert_string_equal(e.code, "DatabaseUnavailable");
    sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(other);
    assert_int_equal(tb_import(s, &b, &r, &e), 0);
    tb_free(&b);
    store_close(s);
}

static void full_disk_fails_the_batch_and_recovers(void **state) {
    (void)state;
    store *s = open_store(0, 0);
    append_many(s, "t", 0, 10);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 1 << 20; /* files may not grow past 1 MiB */
    setrlimit(RLIMIT_FSIZE, &lim);

    tbatch b = {0};
    uint32_t st = tb_stream(&b, "t", NULL);
    char doc[1100];
    memset(doc, 0, sizeof doc);
    strcpy(doc, "{\"pad\":\"");
    memset(doc + 8, 'x', 1000);
    strcat(doc, "\"}");
    for (int i = 0; i < 4000; i++) tb_append(&b, st, doc);
    store_import_result r;
    tr_err e;
    int rc = tb_import(s, &b, &r, &e);
    setrlimit(RLIMIT_FSIZE, &old);
    assert_int_equal(rc, -1);
    assert_int_equal(e.status, 500);
    assert_string_equal(e.code, "StorageError");

    exported x = export_all(s, "t");
    assert_int_equal(x.n, 10);
    exported_free(&x);
    assert_int_equal(tb_import(s, &b, &r, &e), 0);
    tb_free(&b);
    x = export_all(s, "t");
    assert_int_equal(x.n, 4010);
    exported_free(&x);
    store_close(s);
}

static long long file_size(const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", unit_dir, name);
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* Checkpoints run on their own thread while imports go on: the data reaches the database
 * file without waiting for the WAL to fill up to the limit at which the writer copies it
 * itself (a checkpoint connection that never read the database would do nothing). */
static void checkpoints_run_beside_the_writer(void **state) {
    (void)state;
    store *s = open_store(0, 0);
    char doc[1100];
    snprintf(doc, sizeof doc, "{\"pad\":\"%01000d\"}", 0);
    for (int n = 0; n < 24; n++) { /* about 24 MiB: past the checkpointer's threshold */
        tbatch b = {0};
        uint32_t st = tb_stream(&b, "t", NULL);
        for (int i = 0; i < 1000; i++) tb_append(&b, st, doc);
        store_import_result r;
        tr_err e;
        assert_int_equal(tb_import(s, &b, &r, &e), 0);
        tb_free(&b);
    }
    long long db = 0;
    for (int waited = 0; waited < 100 && db < 8 << 20; waited++) {
        usleep(100 * 1000);
        db = file_size("tributary.db");
    }
    if (db < 8 << 20)
        fail_msg("tributary.db holds %lld bytes, tributary.db-wal %lld", db,
                 file_size("tributary.db-wal"));
    store_close(s);
}

#define T(f) cmocka_unit_test_setup_teardown(f, unit_make_dir, unit_remove_dir)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(append_then_export),
        T(dedup_replace_keeps_id_and_creation_time),
        T(last_record_for_a_key_wins),
        T(cdc_delete_and_unknown_key),
        T(duplicates_collapse_to_the_oldest),
        T(dedup_errors_write_nothing),
        T(group_commit_fails_one_batch_alone),
        T(clear_tables_empties_and_keeps_index),
        T(index_on_empty_table_is_ready_at_once),
        T(backfill_with_concurrent_appends),
        T(backfill_resumes_after_restart),
        T(clear_during_backfill_makes_index_ready),
        T(recent_entries_merge_into_the_index),
        T(merges_keep_pace_with_imports),
        T(an_entry_in_both_tables_is_one_match),
        T(timestamps_increase_across_reopen),
        T(creation_times_strictly_increase),
        T(readonly_open_next_to_a_writer),
        T(reclaim_after_retention),
        T(busy_database_is_503),
        T(full_disk_fails_the_batch_and_recovers),
        T(checkpoints_run_beside_the_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

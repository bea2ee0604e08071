/*
 * store.c — the one entry point of the storage layer: picks the engine and dispatches.
 *
 * Engines implement store_impl.h. What every engine shares (the retention default, an
 * empty batch being a no-op) is settled here once, so engines only see real work.
 */
#include "store/store_impl.h"

#include <string.h>

#define STORE_DEFAULT_RETENTION_NS (5LL * 24 * 3600 * 1000000000LL)

int store_open(const store_config *c, store **out, tr_err *e) {
    store_config cfg = *c;
    if (cfg.retention_ns <= 0) cfg.retention_ns = STORE_DEFAULT_RETENTION_NS;
    return cfg.database_url ? store_pg_open(&cfg, out, e) : store_sqlite_open(&cfg, out, e);
}

void store_close(store *s) {
    if (s) s->ops->close(s);
}

int store_import(store *s, const store_batch *b, store_import_result *r, tr_err *e) {
    *r = (store_import_result){0, 0, 0};
    if (b->nrecords == 0) return 0;
    return s->ops->import(s, b, r, e);
}

int store_clear_tables(store *s, const char *const *tables, size_t n, uint64_t *cleared,
                       tr_err *e) {
    *cleared = 0;
    if (n == 0) return 0;
    return s->ops->clear_tables(s, tables, n, cleared, e);
}

int store_add_indexes(store *s, const store_index_req *reqs, size_t n, tr_err *e) {
    if (n == 0) return 0;
    return s->ops->add_indexes(s, reqs, n, e);
}

int store_indexes_ready(store *s, const char *const *tables, size_t n, int *ready, tr_err *e) {
    *ready = 1;
    if (n == 0) return 0;
    return s->ops->indexes_ready(s, tables, n, ready, e);
}

int store_export_table(store *s, const char *table, store_doc_fn fn, void *ctx, tr_err *e) {
    return s->ops->export_table(s, table, fn, ctx, e);
}

int store_list_snapshot(store *s, const store_snapshot_req *rq, store_value_fn fn, void *ctx,
                        store_snapshot_page *out, tr_err *e) {
    memset(out, 0, sizeof *out);
    return s->ops->list_snapshot(s, rq, fn, ctx, out, e);
}

int store_document_deltas(store *s, const store_deltas_req *rq, store_value_fn fn, void *ctx,
                          store_deltas_page *out, tr_err *e) {
    memset(out, 0, sizeof *out);
    return s->ops->document_deltas(s, rq, fn, ctx, out, e);
}

int store_table_shapes(store *s, store_shape_fn fn, void *ctx, tr_err *e) {
    return s->ops->table_shapes(s, fn, ctx, e);
}

int store_table_stats(store *s, store_stat_fn fn, void *ctx, tr_err *e) {
    return s->ops->table_stats(s, fn, ctx, e);
}

/*
 * store_impl.h — what a storage engine provides behind store.h.
 *
 * store.c only dispatches: every store_* call goes through the engine's table of
 * operations, so a second engine (PostgreSQL) is one more table and one more branch in
 * store_open, and the API layer never learns which engine it talks to. Internal to
 * src/store.
 */
#ifndef TR_STORE_IMPL_H
#define TR_STORE_IMPL_H

#include "store/store.h"

/* The suffix of a primary key index's name, as Convex names it in messages. */
#define STORE_INDEX_SUFFIX "._by_airbyte_primary_key"

typedef struct store_ops {
    void (*close)(store *s);
    int (*import)(store *s, const store_batch *b, store_import_result *r, tr_err *e);
    int (*clear_tables)(store *s, const char *const *tables, size_t n, uint64_t *cleared,
                        tr_err *e);
    int (*add_indexes)(store *s, const store_index_req *reqs, size_t n, tr_err *e);
    int (*indexes_ready)(store *s, const char *const *tables, size_t n, int *ready, tr_err *e);
    int (*export_table)(store *s, const char *table, store_doc_fn fn, void *ctx, tr_err *e);
    int (*list_snapshot)(store *s, const store_snapshot_req *rq, store_value_fn fn, void *ctx,
                         store_snapshot_page *out, tr_err *e);
    int (*document_deltas)(store *s, const store_deltas_req *rq, store_value_fn fn, void *ctx,
                           store_deltas_page *out, tr_err *e);
    int (*table_shapes)(store *s, store_shape_fn fn, void *ctx, tr_err *e);
    int (*table_stats)(store *s, store_stat_fn fn, void *ctx, tr_err *e);
} store_ops;

/* Every engine's handle starts with this, so a store * can be cast to the engine's type. */
struct store {
    const store_ops *ops;
};

/* The SQLite engine (sqlite.c). c->retention_ns is already resolved (never 0). */
int store_sqlite_open(const store_config *c, store **out, tr_err *e);
/* The PostgreSQL engine (pg.c), on c->database_url. */
int store_pg_open(const store_config *c, store **out, tr_err *e);

#endif

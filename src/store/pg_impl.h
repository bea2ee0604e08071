/*
 * pg_impl.h — what the PostgreSQL engine's files share. Internal to src/store.
 *
 * The engine is three files: pg_conn.c (libpq plumbing: connecting, parameters, binary
 * results, streamed COPY, turning failures into the store's errors), pg.c (the schema, the
 * write queue, imports, clears, indexes, background work) and pg_read.c (every read:
 * indexes_ready, export, the streaming-export API). The multi-process design is in
 * docs/postgres.md.
 *
 * Everything lives in the schema `tributary` of the database the URL names (every
 * connection sets search_path to it). All results are asked for in binary format, so
 * integers, doubles and bytea come back exact and without text parsing.
 *
 * Schema (version 3; the same model as the SQLite engine, docs/storage.md; pg.c updates
 * a version 1 or 2 database when a serving process starts):
 *   meta(key text PK, value bigint)          schema_version, last_ts (last commit ts),
 *                                             next_ix, reclaim_floor (newest horizon
 *                                             reclaim has deleted up to; readers refuse
 *                                             timestamps below it)
 *   tables(number bigint PK, name text UNIQUE, tablet bigint, last_creation_time float8,
 *          next_seq bigint)
 *   tablets(id bigserial PK, table_number bigint, created_ts bigint, dropped_ts bigint
 *           NULL = current, doc_count bigint)
 *   documents(tablet bigint, id bytea, ts bigint, creation_time float8, value text;
 *             PK(tablet, id))
 *   entries(ix bigint, kh bigint, tablet bigint, id bytea, key bytea;
 *           index on the slot (ix << 40) | (kh & (2^40 - 1)), pg.c PG_ENTRY_SLOT)
 *       a document's primary key index entry in index instance `ix` (pk_indexes.ix),
 *       `kh` a 64-bit digest of `key` (the index holds eight bytes per entry, so keys of
 *       any length fit; lookups recheck ix, kh and `key`). A replaced document keeps
 *       its entry (same id, same key); a deleted one loses it in the same transaction.
 *   dead_indexes(ix bigint PK)  retired index instances (cleared table, replaced
 *       index) whose entries reclaim deletes
 *   history(tablet, id, valid_from, valid_to, creation_time, value; index on valid_to)
 *   changes(ts bigint, tablet bigint, ids bytea[], deleted boolean[]; PK(ts, tablet))
 *       the change log: per commit and generation, the ids of the documents the commit
 *       wrote or deleted (deleted[i] for ids[i]); one row per batch, not per document
 *   pk_indexes(table_number bigint PK, ix bigint UNIQUE, fields text,
 *              state text 'ready'|'backfilling', cursor bytea, end_id bytea)
 *   shapes(tablet bigint PK, shape text)
 */
#ifndef TR_STORE_PG_IMPL_H
#define TR_STORE_PG_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "store/store_impl.h"
#include "util/buf.h"
#include "util/err.h"

#define PG_SCHEMA_VERSION 3

/* A number as an SQL literal. */
#define STR_(x) #x
#define STR(x) STR_(x)

/* ---- connections (pg_conn.c) ---- */

/* Opens a connection to `url` (any libpq connection string or URI), sets search_path to
 * the tributary schema and synchronous_commit on. NULL with 503 DatabaseUnavailable when
 * the server cannot be reached, 500 StorageError for anything else. */
PGconn *pg_connect(const char *url, tr_err *e);

/* Whether a connection is still usable (a broken one must be closed and replaced). */
int pg_alive(PGconn *c);

/* Fills *e from a failed result (r may be NULL) and returns -1. SQLSTATE classes that a
 * retry may cure (connection lost, server shutting down or starting, too many
 * connections, serialization failure, deadlock, lock timeout) and a lost connection
 * give 503 DatabaseUnavailable; everything else 500 StorageError. `what` names the
 * operation in the message. */
int pg_error(PGconn *c, const PGresult *r, const char *what, tr_err *e);

/* Query parameters: each added value is sent in binary format. */
#define PG_MAX_PARAMS 12
typedef struct pg_params {
    int n;
    const char *values[PG_MAX_PARAMS];
    int lengths[PG_MAX_PARAMS];
    int formats[PG_MAX_PARAMS];
    Oid types[PG_MAX_PARAMS];
    char num[PG_MAX_PARAMS][8]; /* storage for the big-endian numbers */
} pg_params;

void pgp_i64(pg_params *p, int64_t v);                    /* int8 */
void pgp_f64(pg_params *p, double v);                     /* float8 */
void pgp_bytes(pg_params *p, const void *v, size_t len);  /* bytea; v NULL: SQL NULL */
void pgp_text(pg_params *p, const char *v, size_t len);   /* text; v NULL: SQL NULL */
/* An array parameter (bytea[], tid[], int8[] or boolean[]): pg_array_start(b, kind, n),
 * n items (pg_array_item for bytea and tid, pg_array_i64 for int8, pg_array_bool for
 * boolean), then pgp_array (b must outlive the call that uses p). */
enum { PG_ARRAY_BYTEA, PG_ARRAY_TID, PG_ARRAY_INT8, PG_ARRAY_BOOL };
#define PG_TID_LEN 6 /* a row address (tid) in binary: block number, item number */
void pg_array_start(buf *b, int kind, size_t n);
void pg_array_item(buf *b, const void *v, size_t len);
void pg_array_i64(buf *b, int64_t v);
void pg_array_bool(buf *b, int v);
void pgp_array(pg_params *p, const buf *b);

/* Runs one statement (params may be NULL), results in binary format. Returns the
 * result (PGRES_TUPLES_OK or PGRES_COMMAND_OK; PQclear it) or NULL with *e filled. */
PGresult *pg_exec(PGconn *c, const char *sql, const pg_params *p, tr_err *e);
/* The same when no rows are wanted. */
int pg_run(PGconn *c, const char *sql, const pg_params *p, tr_err *e);

/* Statements sent ahead, without waiting (libpq pipeline mode): pg_send queues one
 * statement (one, not several separated by ';'); the next pg_exec, pg_run or
 * pg_copy_open on the connection sends it along, waits for everything, and fails with
 * the first failure among them (the statements after a failed one are skipped, as in a
 * transaction that broke). pg_sync ends a segment: a failure skips the rest of its own
 * segment only (what follows the sync runs, and fails too while the transaction that
 * broke is still open). pg_segment reads the results of the oldest synced segment: 0,
 * or -1 with its first failure; *last (when not NULL) its last statement's result.
 * pg_settle syncs and reads every segment still pending, *last the last result of any
 * of them; it leaves the connection out of pipeline mode. */
int pg_send(PGconn *c, const char *sql, const pg_params *p, tr_err *e);
int pg_sync(PGconn *c, tr_err *e);
int pg_segment(PGconn *c, PGresult **last, tr_err *e);
int pg_settle(PGconn *c, PGresult **last, tr_err *e);

/* Prepared statements, for those that run for every job: PostgreSQL parses (and, once it
 * settles on a generic plan, plans) them once per connection instead of at every
 * execution. pg_prepare sends the preparation ahead, with the parameter types of p;
 * pg_send_stmt sends an execution ahead; pg_exec_stmt runs one and waits (as pg_exec).
 * Whether a statement is prepared on a connection is the caller's to track: one whose
 * preparation failed or was skipped (after a failure earlier in its pipeline segment)
 * is not, one prepared stays so whatever becomes of the transaction. */
typedef struct pg_stmt {
    const char *name;
    const char *sql;
} pg_stmt;
int pg_prepare(PGconn *c, const pg_stmt *st, const pg_params *p, tr_err *e);
int pg_send_stmt(PGconn *c, const pg_stmt *st, const pg_params *p, tr_err *e);
PGresult *pg_exec_stmt(PGconn *c, const pg_stmt *st, const pg_params *p, tr_err *e);

/* Binary result values. */
int pg_isnull(const PGresult *r, int row, int col);
int64_t pg_i64(const PGresult *r, int row, int col);   /* int8 (also int4, bool) */
double pg_f64(const PGresult *r, int row, int col);    /* float8 */
/* bytea or text; sets *len, so never use *len in the same call (argument order is
 * unspecified in C): take the pointer first. */
const char *pg_val(const PGresult *r, int row, int col, size_t *len);

/* COPY (text format), streamed so memory stays bounded: pg_copy_open runs `sql`
 * ("COPY t(...) FROM STDIN"); per row one pg_copy_* per field, pg_copy_row_end, then
 * pg_copy_flush (which sends `b` once it holds 32 KiB); pg_copy_close sends the rest
 * and returns the COPY's result. Give pg_copy_close the error state so far (0, or -1
 * with *e filled: the COPY is then abandoned and nothing of it is written). Not after a
 * failed pg_copy_open. pg_copy_open waits for statements sent ahead first. */
int pg_copy_open(PGconn *c, const char *sql, buf *b, tr_err *e);
void pg_copy_i64(buf *b, int64_t v);
void pg_copy_f64(buf *b, double v);
void pg_copy_bytea(buf *b, const void *v, size_t len);
void pg_copy_text(buf *b, const char *v, size_t len);
void pg_copy_null(buf *b);
void pg_copy_row_end(buf *b);
int pg_copy_flush(PGconn *c, buf *b, tr_err *e);
int pg_copy_close(PGconn *c, buf *b, int rc, tr_err *e);

/* ---- the engine (pg.c) ---- */

typedef struct pg_store pg_store;

/* A connection for one read transaction, from the pool (a new one when none is free,
 * up to a limit per process; past it, waits for one); pg_reader_put gives it back, or
 * closes it when it broke. */
PGconn *pg_reader_get(pg_store *s, tr_err *e);
void pg_reader_put(pg_store *s, PGconn *c);
int64_t pg_retention_ns(const pg_store *s);
/* The process's cache of list_snapshot walks' old versions (snapcache.h). */
struct snapcache *pg_snapcache(pg_store *s);

/* ---- reads (pg_read.c); each is one REPEATABLE READ, READ ONLY transaction ---- */

int pg_indexes_ready(store *st, const char *const *tables, size_t n, int *ready, tr_err *e);
int pg_export_table(store *st, const char *table, store_doc_fn fn, void *ctx, tr_err *e);
int pg_list_snapshot(store *st, const store_snapshot_req *rq, store_value_fn fn, void *ctx,
                     store_snapshot_page *out, tr_err *e);
int pg_document_deltas(store *st, const store_deltas_req *rq, store_value_fn fn, void *ctx,
                       store_deltas_page *out, tr_err *e);
int pg_table_shapes(store *st, store_shape_fn fn, void *ctx, tr_err *e);
int pg_table_stats(store *st, store_stat_fn fn, void *ctx, tr_err *e);

#endif

/*
 * store.h — the storage interface: everything the HTTP/API layers may ask of a database.
 *
 * One interface, two engines: SQLite (sqlite.c) and PostgreSQL (pg.c, pg_read.c). The
 * API layer validates and normalises a whole request first and hands the store a
 * finished batch of stored bytes; the store applies it in one transaction and returns
 * only once that transaction is durable. Every function may be called from many threads
 * at once; the store serialises writers itself (and may let several waiting batches
 * share one commit, each still succeeding or failing whole).
 *
 * Model (see docs/architecture.md): tables are numbered from 10001 (the number goes into
 * document IDs). Every commit gets an int64 nanosecond timestamp, strictly increasing in
 * commit order. A table's documents live in its current generation; clear_tables swaps
 * in a fresh empty generation in constant time and the old one is reclaimed in the
 * background. Replaced and deleted versions are kept (for the export API) for the
 * retention window.
 */
#ifndef TR_STORE_H
#define TR_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "model/names.h"
#include "model/pkey.h"
#include "store/shape.h"
#include "util/err.h"

typedef struct store store;

typedef struct store_config {
    const char *database_url; /* non-NULL: PostgreSQL (any libpq connection string) */
    const char *data_dir;  /* SQLite: the database is <data_dir>/tributary.db */
    int readonly;          /* open an existing database for reading only (CLI export);
                              no schema changes, no background threads */
    int64_t retention_ns;  /* how long replaced/deleted versions are kept; 0 = 5 days */
    size_t recent_entries; /* SQLite: index entries written since the last merge into the
                              main index that start the next one; 0 = by the index
                              size (sq_merge_threshold, backfill.h); tests set it low */
    size_t snapshot_cache_rows; /* old versions list_snapshot walks may keep found, per
                                   process (snapcache.h); 0: none, every page looks */
} store_config;

/* Opens (creating when needed) the database and starts background work (index
 * backfills, space reclaim). Errors: 500 StorageError with the reason. */
int store_open(const store_config *c, store **out, tr_err *e);
/* Stops background threads (an unfinished backfill resumes at the next open) and closes. */
void store_close(store *s);

/* ---- import_airbyte_records ---- */

typedef struct store_stream {
    char table[NAMES_TABLE_MAX + 1]; /* valid (already rewritten) table name */
    int dedup;                       /* 1: upsert by `key`; 0: append */
    pkey key;                        /* when dedup */
} store_stream;

typedef struct store_record {
    uint32_t stream;  /* index into store_batch.streams */
    int deleted;      /* dedup only: a CDC deletion */
    size_t doc_off;   /* the document (Convex JSON, no system fields) is */
    size_t doc_len;   /*   docs[doc_off .. doc_off+doc_len) */
    size_t key_off;   /* dedup only: encoded primary key (pkey_encode_doc) is */
    size_t key_len;   /*   keys[key_off .. key_off+key_len) */
} store_record;

typedef struct store_batch {
    const store_stream *streams;
    size_t nstreams;
    const store_record *records;  /* in message order */
    size_t nrecords;
    const char *docs;
    const unsigned char *keys;
    /* Optional: shapes[stream] = the shape of the documents the stream writes (NULL: it
     * writes none), built by the caller from the documents' trees (shape_add_val); the
     * batch's owner frees them. NULL: the store builds them from `docs`. */
    shape *const *shapes;
} store_batch;

typedef struct store_import_result {
    size_t inserted;  /* new documents */
    size_t replaced;  /* documents replaced by key */
    size_t deleted;   /* documents deleted (CDC deletions, and duplicates collapsed) */
} store_import_result;

/* Applies a whole batch in one transaction, in record order (the last record for a key
 * wins). Append records insert. Dedup records replace the document with the same key
 * whole (keeping its _id and _creationTime); when several documents share the key the
 * oldest is replaced and the others deleted; no match inserts; a deletion deletes every
 * match, and a deletion matching nothing does nothing. Tables are created on first write.
 * Errors (400, nothing written) for a dedup stream that has records:
 *   no primary key index → IndexNotFoundError "Index <t>._by_airbyte_primary_key not found."
 *   index backfilling   → IndexBackfillingError
 *   key ≠ index fields  → PrimaryKeyMismatch
 * Storage faults: 500 StorageError (503 DatabaseUnavailable where retrying may help). */
int store_import(store *s, const store_batch *b, store_import_result *r, tr_err *e);

/* ---- clear_tables ---- */

/* Empties every listed table atomically (missing tables are created empty). Primary key
 * indexes survive and are ready afterwards, even one that was backfilling. Constant time
 * whatever the table size. *cleared = number of documents removed. */
int store_clear_tables(store *s, const char *const *tables, size_t n, uint64_t *cleared,
                       tr_err *e);

/* ---- primary key indexes ---- */

typedef struct store_index_req {
    char table[NAMES_TABLE_MAX + 1];
    pkey key;
} store_index_req;

/* In one transaction, for each request: creates the table if missing; creates its
 * primary key index; the same fields again is a no-op; different fields replace the
 * index. An index on an empty table is ready at once; otherwise it is built in the
 * background (writes meanwhile keep it correct) and becomes ready by itself. */
int store_add_indexes(store *s, const store_index_req *reqs, size_t n, tr_err *e);

/* *ready = 1 when no listed table's index is still building (an empty list is ready).
 * A listed table with no primary key index → 400 MissingIndex
 * "Missing index: <t>._by_airbyte_primary_key". */
int store_indexes_ready(store *s, const char *const *tables, size_t n, int *ready, tr_err *e);

/* ---- reading back ---- */

/* Called once per document: compact JSON with "_id" and "_creationTime" first, then the
 * stored fields (Convex JSON encoding). Return non-zero to stop. */
typedef int (*store_doc_fn)(void *ctx, const char *json, size_t len);

/* Every current document of a table, in _id order. Unknown table → 404 TableNotFound. */
int store_export_table(store *s, const char *table, store_doc_fn fn, void *ctx, tr_err *e);

/* ---- streaming export (SPEC §4) ----
 *
 * Each call below is one read transaction on its own connection, so it sees one commit
 * and never waits for the writer. Timestamps are commit timestamps (int64 ns). A
 * timestamp T is within retention when T >= (max(clock, latest commit) - retention), or
 * when nothing was committed after T (nothing of what T needs can have been reclaimed). */

/* One exported value; its pointers are valid during the callback only. */
typedef struct store_value {
    const char *table;    /* table name */
    const char *id;       /* document ID text (_id) */
    int64_t ts;           /* _ts: the commit that wrote this version, or deleted it */
    int deleted;          /* document_deltas: a deletion (no fields, no creation time) */
    double creation_time; /* _creationTime */
    const char *fields;   /* the stored fields: a Convex JSON object text */
    size_t fields_len;
} store_value;

/* Called once per value, in order. Return 0, or -1 with *e filled to stop the call. */
typedef int (*store_value_fn)(void *ctx, const store_value *v, tr_err *e);

/* Where a snapshot walk goes on: after document `id` of table `table_number`, reading
 * the database as of commit `snapshot`. Opaque to clients (the API layer encodes it). */
typedef struct store_snapshot_pos {
    int64_t snapshot;
    uint32_t table_number;
    uint8_t id[16];
} store_snapshot_pos;

typedef struct store_snapshot_req {
    const char *table;                /* one table (name already rewritten), or NULL: all */
    int has_snapshot;                 /* else: the latest commit (or the cursor's) */
    int64_t snapshot;
    const store_snapshot_pos *cursor; /* NULL: from the start */
    size_t limit;                     /* most documents per page, at least 1 */
    size_t max_bytes;                 /* the page ends after the document whose stored
                                         fields bring the page to this many bytes */
} store_snapshot_req;

typedef struct store_snapshot_page {
    int64_t snapshot;          /* the commit every page of this walk shows */
    int has_more;
    store_snapshot_pos next;   /* when has_more: pass it back as the cursor */
} store_snapshot_page;

/* One page of the documents as they were at the snapshot: tables in table-number order
 * (a page may span several), documents in _id order, each with `ts` = the commit that
 * wrote the version visible at the snapshot. A table that did not exist at the snapshot,
 * or does not exist at all, has no documents. Errors (400):
 *   snapshot after the latest commit       → SnapshotTooNew
 *   snapshot outside retention             → SnapshotTooOld
 *   cursor of another snapshot or table, or of an unknown table → InvalidListSnapshotCursor */
int store_list_snapshot(store *s, const store_snapshot_req *rq, store_value_fn fn, void *ctx,
                        store_snapshot_page *out, tr_err *e);

typedef struct store_deltas_req {
    const char *table; /* one table (name already rewritten), or NULL: all */
    int64_t cursor;    /* exclusive: changes committed after this timestamp */
    size_t limit;      /* values per page; a commit is never split, so one commit with more
                          changes than this makes a longer page */
} store_deltas_req;

typedef struct store_deltas_page {
    int64_t cursor; /* the last commit included; when the log is exhausted, the latest
                       commit (or the request's cursor if that is later) */
    int has_more;
} store_deltas_page;

/* One page of the change log after rq->cursor, in commit order (ids in order within a
 * commit). A written document comes with its fields; a deleted one (a CDC deletion, a
 * duplicate collapsed, or every document of a generation emptied by clear_tables, at the
 * clear's commit) as `deleted`. A document changed again by a later commit is reported
 * once, at its latest change: readers that apply the values in order end with the
 * current documents. Errors: cursor outside retention → 400 InvalidWindowToReadDocuments. */
int store_document_deltas(store *s, const store_deltas_req *rq, store_value_fn fn, void *ctx,
                          store_deltas_page *out, tr_err *e);

/* Called once per table, in name order, with its inferred shape (NULL: no document was
 * ever written to its current generation). The shape is valid during the call only. */
typedef int (*store_shape_fn)(void *ctx, const char *table, const shape *sh, tr_err *e);

/* The shape of every table's current generation (see shape.h). */
int store_table_shapes(store *s, store_shape_fn fn, void *ctx, tr_err *e);

/* What the status page and /metrics show of one table (valid during the call only). */
typedef struct store_table_stat {
    const char *name;
    int64_t documents; /* live documents of the current generation */
    const char *index; /* primary key index, canonical text ([["a"],["b","c"]]); NULL: none */
    int index_ready;   /* the index is backfilled (0 while backfilling) */
} store_table_stat;
typedef int (*store_stat_fn)(void *ctx, const store_table_stat *t, tr_err *e);

/* Every table, in name order (one read transaction). */
int store_table_stats(store *s, store_stat_fn fn, void *ctx, tr_err *e);

#endif

/*
 * backfill.h — the SQLite engine's index and space upkeep: primary key index backfill
 * and space reclaim (background work), the merge of recent index entries (done by import
 * jobs), and the few helpers it shares with sqlite.c. Internal to src/store.
 *
 * Each step is one bounded unit of work on the writer connection; sqlite.c runs backfill
 * and reclaim steps as jobs of its group-commit queue, so they are serialised with
 * imports and land in a short transaction, and merge steps inside import jobs. All
 * progress of the background work lives in the database (the backfill cursor, the
 * dropped generations, the list of dead index instances), so a restart simply carries
 * on; the merge keeps its cursor in memory only, and a restart starts its sweep over,
 * which costs time, not correctness.
 *
 * Index entries: imports add each new document's entry to pk_recent, a small table, and
 * lookups read both it and pk_entries. On a big index a new key's entry lands on a page
 * of its own, written once to the WAL at commit and once at the checkpoint, so a batch
 * of random keys cost about one page write per record. pk_recent stays small enough that
 * a batch's entries share its pages, and the merge moves its entries into pk_entries in
 * key order, a chunk per step, where each page it dirties takes all the entries it gets
 * from one sweep.
 */
#ifndef TR_STORE_BACKFILL_H
#define TR_STORE_BACKFILL_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "model/pkey.h"
#include "util/arena.h"
#include "util/buf.h"
#include "util/err.h"

#define SQ_BACKFILL_CHUNK 8000 /* documents indexed per backfill step */
#define SQ_BACKFILL_CHUNKS_MAX 8 /* steps per transaction while nothing else waits */
#define SQ_RECENT_MIN 16384    /* sq_merge_threshold's bounds */
#define SQ_RECENT_MAX 262144
#define SQ_MERGE_CHUNK 4000    /* most index entries one merge step moves */
#define SQ_RECLAIM_CHUNK 5000  /* rows deleted per reclaim transaction */
#define SQ_RECLAIM_LOG_ROWS 50 /* change-log rows (each lists a commit's ids) per step */

/* Turns a failed sqlite call into the store's error: busy or locked beyond the timeout →
 * 503 DatabaseUnavailable (retrying may help); anything else → 500 StorageError with
 * sqlite's message. Returns -1. */
int sq_error(sqlite3 *db, int rc, tr_err *e);

/* A statement cache slot: prepares `sql` on first use and keeps it for the connection's
 * life. NULL with *e filled when preparing fails. */
sqlite3_stmt *sq_prepare(sqlite3 *db, sqlite3_stmt **slot, const char *sql, tr_err *e);

/* Steps a statement that returns no rows and resets it. */
int sq_step_done(sqlite3 *db, sqlite3_stmt *st, tr_err *e);

typedef struct sq_maint sq_maint; /* prepared statements on the writer connection */

sq_maint *sq_maint_new(sqlite3 *writer);
void sq_maint_free(sq_maint *m);

/* Indexes the next SQ_BACKFILL_CHUNK documents of one backfilling index and marks the
 * index ready once it has seen them all. *more = 0 when no index was backfilling. */
int sq_backfill_step(sq_maint *m, int *more, tr_err *e);

/* How many entries pk_recent may gather before a merge sweep starts, for indexes holding
 * `indexed` documents in all. A sweep writes about every page of pk_entries, so the
 * bigger the index the more entries it should move at once; but while pk_recent grows,
 * each commit writes more of its pages. Balanced at about 64·√indexed entries, within
 * [SQ_RECENT_MIN, SQ_RECENT_MAX] (measured: docs/performance.md). */
int64_t sq_merge_threshold(int64_t indexed);

/* Moves the next `chunk` entries (at most SQ_MERGE_CHUNK) of pk_recent after the sweep's
 * cursor into pk_entries, in key order; *moved: how many. *done = 1 when the sweep
 * reached the end of pk_recent: the next step starts a new sweep from the first entry. */
int sq_merge_step(sq_maint *m, int64_t chunk, int64_t *moved, int *done, tr_err *e);

/* Deletes one chunk of what nobody can read any more: entries of replaced or cleared
 * indexes; documents of generations dropped before `horizon`; replaced versions and
 * change-log rows older than `horizon`. *more = 0 when nothing was left to delete. */
int sq_reclaim_step(sq_maint *m, int64_t horizon, int *more, tr_err *e);

#endif

/*
 * changelog.h — one job's change-log entries, collected in memory and written as one
 * row per generation.
 *
 * The change log tells document_deltas which documents a commit wrote or deleted. A row
 * per document was the SQLite writer's third B-tree insert for every appended record
 * (documents, their (tablet, id) index, the log); a row per commit and generation, with
 * the ids packed in a blob, costs one insert per batch instead. A job records what it does
 * as it goes, in the order it does it (chg_put, chg_drop); chg_rows then resolves each
 * document to its last operation and hands over the rows.
 */
#ifndef TR_STORE_CHANGELOG_H
#define TR_STORE_CHANGELOG_H

#include <stddef.h>
#include <stdint.h>

#include "model/docid.h"
#include "util/buf.h"
#include "util/err.h"

typedef struct chg_entry chg_entry;

typedef struct chg_log {
    chg_entry *e;
    size_t n, cap;
} chg_log;

#define CHG_LOG_INIT {NULL, 0, 0}

void chg_reset(chg_log *l); /* forgets the entries, keeps the memory */
void chg_free(chg_log *l);

/* The document was written (deleted = 0) or deleted (1) by the job: it is in the log. */
void chg_put(chg_log *l, int64_t tablet, const uint8_t id[DOCID_INTERNAL_LEN], int deleted);
/* The document was created and deleted by the same job: no reader ever saw it, so it
 * leaves the log. */
void chg_drop(chg_log *l, int64_t tablet, const uint8_t id[DOCID_INTERNAL_LEN]);

/* Calls fn once per generation (in tablet order) with its documents in id order: `ids`
 * holds n ids of DOCID_INTERNAL_LEN bytes, `deleted` n bytes (1: deleted). Each document
 * counts with its last chg_put; one whose last operation was chg_drop is left out. `ids`
 * and `deleted` are scratch buffers. Stops at, and returns, the first nonzero result. */
typedef int (*chg_row_fn)(void *ctx, int64_t tablet, const buf *ids, const buf *deleted,
                          size_t n, tr_err *e);
int chg_rows(chg_log *l, buf *ids, buf *deleted, chg_row_fn fn, void *ctx, tr_err *e);

#endif

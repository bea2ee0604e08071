/*
 * batch.h — what both engines do with an import batch before it reaches the writer.
 *
 * The shapes of a batch's documents (shape.h) are scanned on the request thread, so the
 * writer, which is serial, only merges one small shape per table. The tables a batch
 * writes and the checks a dedup stream's index must pass are the same for every engine,
 * and so are their error messages. Internal to src/store.
 */
#ifndef TR_STORE_BATCH_H
#define TR_STORE_BATCH_H

#include "store/shape.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/err.h"

/* *out[stream] = the shape of the documents that stream writes (NULL: none): the
 * batch's own shapes when it has them, else built from its texts; free it with
 * batch_shapes_free even when this fails. */
int batch_shapes(const store_batch *b, shape ***out, tr_err *e);
void batch_shapes_free(const store_batch *b, shape **sh);

/* The distinct tables a batch writes: map[stream] = index into names[] (streams naming
 * the same table share one), or -1 for a stream without records; *n = how many. map and
 * names have room for b->nstreams entries. A record naming no stream → 500. */
int batch_tables(const store_batch *b, int *map, const char **names, size_t *n, tr_err *e);

/* Whether a dedup stream may write through its table's index: there must be one
 * (400 IndexNotFoundError), ready (IndexBackfillingError), on the stream's key fields
 * (PrimaryKeyMismatch; `fields` is the index's canonical key text). */
int batch_check_index(const store_stream *st, int has_index, int ready, const char *fields,
                      buf *scratch, tr_err *e);

#endif

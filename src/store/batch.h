/*
 * batch.h — what both engines do with an import batch before it reaches the writer.
 *
 * The shapes of a batch's documents (shape.h) are scanned on the request thread, so the
 * writer, which is serial, only merges one small shape per table. Internal to src/store.
 */
#ifndef TR_STORE_BATCH_H
#define TR_STORE_BATCH_H

#include "store/shape.h"
#include "store/store.h"
#include "util/err.h"

/* *out[stream] = the shape of the documents that stream writes (NULL: none); free it
 * with batch_shapes_free even when this fails. */
int batch_shapes(const store_batch *b, shape ***out, tr_err *e);
void batch_shapes_free(const store_batch *b, shape **sh);

#endif

/*
 * batch.c — per-batch work done on the request thread before queueing (batch.h).
 */
#include "store/batch.h"

#include <stdlib.h>

#include "util/xalloc.h"

/* The shape of each stream's written documents, built on the caller's thread so the
 * writer only has to merge one small shape per table (the engines merge them into the table shapes). */
int batch_shapes(const store_batch *b, shape ***out, tr_err *e) {
    shape **sh = xcalloc(b->nstreams ? b->nstreams : 1, sizeof *sh);
    *out = sh;
    for (size_t i = 0; i < b->nrecords; i++) {
        const store_record *rec = &b->records[i];
        if (rec->stream >= b->nstreams || (rec->deleted && b->streams[rec->stream].dedup))
            continue;
        if (!sh[rec->stream]) sh[rec->stream] = shape_new();
        int changed = 0;
        if (shape_add_doc(sh[rec->stream], b->docs + rec->doc_off, rec->doc_len, &changed) != 0)
            return err_set(e, 500, "StorageError", "Record %zu is not a Convex JSON object", i);
    }
    return 0;
}

void batch_shapes_free(const store_batch *b, shape **sh) {
    for (size_t i = 0; sh && i < b->nstreams; i++) shape_free(sh[i]);
    free(sh);
}


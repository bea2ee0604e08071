/*
 * batch.c — what every engine does with an import batch before and while writing it
 * (batch.h): shapes scanned on the request thread, the tables it names, the index checks.
 */
#include "store/batch.h"

#include <stdlib.h>
#include <string.h>

#include "store/store_impl.h"
#include "util/xalloc.h"

/* The shape of each stream's written documents, on the caller's thread so the writer
 * only has to merge one small shape per table: the batch's own (the import decoder
 * builds them from the trees it has anyway), or scanned from the stored texts. */
int batch_shapes(const store_batch *b, shape ***out, tr_err *e) {
    shape **sh = xcalloc(b->nstreams ? b->nstreams : 1, sizeof *sh);
    *out = sh;
    if (b->shapes) {
        for (size_t i = 0; i < b->nstreams; i++) sh[i] = b->shapes[i];
        return 0;
    }
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
    for (size_t i = 0; sh && !b->shapes && i < b->nstreams; i++) shape_free(sh[i]);
    free(sh);
}

int batch_tables(const store_batch *b, int *map, const char **names, size_t *n, tr_err *e) {
    for (size_t i = 0; i < b->nstreams; i++) map[i] = -1;
    *n = 0;
    for (size_t i = 0; i < b->nrecords; i++) {
        uint32_t si = b->records[i].stream;
        if (si >= b->nstreams)
            return err_set(e, 500, "StorageError", "Record %zu names stream %u of %zu", i, si,
                           b->nstreams);
        if (map[si] >= 0) continue;
        const char *name = b->streams[si].table;
        for (size_t k = 0; k < *n && map[si] < 0; k++)
            if (strcmp(names[k], name) == 0) map[si] = (int)k;
        if (map[si] >= 0) continue;
        names[*n] = name;
        map[si] = (int)(*n)++;
    }
    return 0;
}

int batch_check_index(const store_stream *st, int has_index, int ready, const char *fields,
                      buf *scratch, tr_err *e) {
    if (!has_index)
        return err_set(e, 400, "IndexNotFoundError",
                       "Index %s" STORE_INDEX_SUFFIX " not found.", st->table);
    if (!ready)
        return err_set(e, 400, "IndexBackfillingError",
                       "Index %s" STORE_INDEX_SUFFIX
                       " is currently backfilling and not available to query yet.",
                       st->table);
    buf_reset(scratch);
    pkey_canonical(&st->key, scratch);
    if (strcmp(scratch->p, fields) != 0)
        return err_set(e, 400, "PrimaryKeyMismatch",
                       "The primary key %s of stream %s does not match the fields %s of index "
                       "%s" STORE_INDEX_SUFFIX ".",
                       scratch->p, st->table, fields, st->table);
    return 0;
}

/*
 * fuzz_import_decode.c — libFuzzer target for the import body decoder.
 *
 * The first input byte chooses a chunk size, so the same body is also fed in pieces that
 * split tokens and UTF-8 sequences. Invariants: no crash or leak; an error is always a
 * 4xx with a code; a success yields records whose offsets lie inside the batch buffers
 * and whose stream indexes are valid, and shapes (when it has them) equal to what the
 * store would scan from the stored texts.
 */
#include "api/import_decode.h"
#include "store/batch.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void fz_same_shapes(const store_batch *b) {
    store_batch texts = *b;
    texts.shapes = NULL;
    shape **want;
    tr_err e;
    if (batch_shapes(&texts, &want, &e) != 0) abort();
    buf x = BUF_INIT, y = BUF_INIT;
    for (size_t i = 0; i < b->nstreams; i++) {
        if (!want[i] != !b->shapes[i]) abort();
        if (!want[i]) continue;
        buf_reset(&x);
        buf_reset(&y);
        shape_write(want[i], &x);
        shape_write(b->shapes[i], &y);
        if (x.len != y.len || memcmp(x.p, y.p, x.len) != 0) abort();
    }
    buf_free(&x);
    buf_free(&y);
    batch_shapes_free(&texts, want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t chunk = (size_t)data[0] % 64 + 1;
    data++;
    size--;
    import_decoder *d = import_decoder_new();
    tr_err e;
    err_clear(&e);
    int rc = 0;
    for (size_t off = 0; off < size && rc == 0; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        rc = import_decoder_feed(d, (const char *)data + off, n, &e);
    }
    store_batch b;
    if (rc == 0) rc = import_decoder_finish(d, &b, &e);
    if (rc != 0) {
        assert(e.status >= 400 && e.status < 500);
        assert(e.code[0] != '\0');
    } else {
        for (size_t i = 0; i < b.nrecords; i++) {
            const store_record *r = &b.records[i];
            assert(r->stream < b.nstreams);
            assert(r->doc_len >= 2 && b.docs[r->doc_off] == '{');
            assert(!b.streams[r->stream].dedup || r->key_len > 0);
        }
        if (b.shapes) fz_same_shapes(&b);
    }
    import_decoder_free(d);
    return 0;
}

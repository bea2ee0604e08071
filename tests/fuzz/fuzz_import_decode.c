/*
 * fuzz_import_decode.c — libFuzzer target for the import body decoder.
 *
 * The first input byte chooses a chunk size, so the same body is also fed in pieces that
 * split tokens and UTF-8 sequences. Invariants: no crash or leak; an error is always a
 * 4xx with a code; a success yields records whose offsets lie inside the batch buffers
 * and whose stream indexes are valid.
 */
#include "api/import_decode.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

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
    }
    import_decoder_free(d);
    return 0;
}

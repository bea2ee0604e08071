/*
 * fuzz_export_cursor.c — libFuzzer target for the list_snapshot cursor decoder.
 *
 * Invariants: no crash; an error is 400 InvalidListSnapshotCursor; a cursor that decodes
 * encodes back to exactly the same text (there is one text per cursor).
 */
#include "api/export_cursor.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    store_snapshot_pos pos;
    tr_err e;
    err_clear(&e);
    if (export_cursor_decode((const char *)data, size, &pos, &e) != 0) {
        assert(e.status == 400);
        assert(strcmp(e.code, "InvalidListSnapshotCursor") == 0);
        return 0;
    }
    buf out = BUF_INIT;
    export_cursor_encode(&pos, &out);
    assert(out.len == size + 2 && out.p[0] == '"' && out.p[out.len - 1] == '"');
    assert(memcmp(out.p + 1, data, size) == 0);
    buf_free(&out);
    return 0;
}

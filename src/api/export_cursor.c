/*
 * export_cursor.c — list_snapshot cursors (see export_cursor.h).
 */
#include "api/export_cursor.h"
#include "json/emit.h"

#include <string.h>

#include <sodium.h>

#define EX_CURSOR_VERSION 1
#define EX_CURSOR_BYTES (1 + 8 + 4 + 16)

static int not_a_cursor(tr_err *e) {
    return err_set(e, 400, "InvalidListSnapshotCursor",
                   "cursor: not a list_snapshot cursor of this server");
}

void export_cursor_encode(const store_snapshot_pos *pos, buf *out) {
    unsigned char raw[EX_CURSOR_BYTES];
    raw[0] = EX_CURSOR_VERSION;
    for (int i = 0; i < 8; i++) raw[1 + i] = (unsigned char)((uint64_t)pos->snapshot >> (56 - 8 * i));
    for (int i = 0; i < 4; i++) raw[9 + i] = (unsigned char)(pos->table_number >> (24 - 8 * i));
    memcpy(raw + 13, pos->id, sizeof pos->id);
    char text[sodium_base64_ENCODED_LEN(EX_CURSOR_BYTES, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    sodium_bin2base64(text, sizeof text, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    json_emit_string(text, strlen(text), out);
}

int export_cursor_decode(const char *s, size_t n, store_snapshot_pos *pos, tr_err *e) {
    unsigned char raw[EX_CURSOR_BYTES + 1];
    size_t len = 0;
    const char *end;
    if (sodium_base642bin(raw, sizeof raw, s, n, NULL, &len, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        end != s + n || len != EX_CURSOR_BYTES || raw[0] != EX_CURSOR_VERSION)
        return not_a_cursor(e);
    /* base64 leaves spare low bits in the last character: only the canonical text of a
     * cursor is one, so a cursor has exactly one spelling */
    char canon[sodium_base64_ENCODED_LEN(EX_CURSOR_BYTES, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    sodium_bin2base64(canon, sizeof canon, raw, EX_CURSOR_BYTES,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    if (strlen(canon) != n || memcmp(canon, s, n) != 0)
        return not_a_cursor(e);
    uint64_t snap = 0;
    uint32_t number = 0;
    for (int i = 0; i < 8; i++) snap = snap << 8 | raw[1 + i];
    for (int i = 0; i < 4; i++) number = number << 8 | raw[9 + i];
    pos->snapshot = (int64_t)snap;
    pos->table_number = number;
    memcpy(pos->id, raw + 13, sizeof pos->id);
    return 0;
}

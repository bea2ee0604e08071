/*
 * docid.c — Convex document IDs: varint table number, internal id, Fletcher-16 footer,
 * lowercase Crockford base32 (see docid.h).
 *
 * IDs arrive from outside (export cursors, stored documents), so decoding is strict in
 * the same way as the reference: after every individual check the decoded parts are
 * encoded again and must give back exactly the input text, which rules out every
 * non-canonical spelling (upper case, non-zero padding bits, long varints) at once.
 */
#include "model/docid.h"

#include <string.h>

#include <sodium.h>

#define DOCID_VARINT_MAX 5
#define DOCID_FOOTER_LEN 2
#define DOCID_BYTES_MAX (DOCID_VARINT_MAX + DOCID_INTERNAL_LEN + DOCID_FOOTER_LEN)
#define DOCID_TEXT_MIN 31 /* one-byte varint */
#define DOCID_VERSION 0
#define DOCID_MS_PER_DAY 86400000

static const char docid_alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";

static size_t docid_varint_put(uint32_t v, uint8_t *out) {
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

/* Parses a varint of at most 5 bytes that fits in 32 bits; returns its length or 0. */
static size_t docid_varint_get(const uint8_t *p, size_t n, uint32_t *v) {
    uint64_t acc = 0;
    for (size_t i = 0; i < n && i < DOCID_VARINT_MAX; i++) {
        acc |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            if (acc > UINT32_MAX) return 0;
            *v = (uint32_t)acc;
            return i + 1;
        }
    }
    return 0;
}

static void docid_footer(const uint8_t *p, size_t n, uint8_t out[DOCID_FOOTER_LEN]) {
    uint8_t c0 = 0, c1 = 0;
    for (size_t i = 0; i < n; i++) {
        c0 = (uint8_t)(c0 + p[i]);
        c1 = (uint8_t)(c1 + c0);
    }
    uint16_t f = (uint16_t)(((unsigned)c1 << 8 | c0) ^ DOCID_VERSION);
    out[0] = (uint8_t)(f & 0xff);
    out[1] = (uint8_t)(f >> 8);
}

static size_t docid_bytes(uint32_t table_number, const uint8_t internal[DOCID_INTERNAL_LEN],
                          uint8_t out[DOCID_BYTES_MAX]) {
    size_t n = docid_varint_put(table_number, out);
    memcpy(out + n, internal, DOCID_INTERNAL_LEN);
    n += DOCID_INTERNAL_LEN;
    docid_footer(out, n, out + n);
    return n + DOCID_FOOTER_LEN;
}

static size_t docid_base32(const uint8_t *p, size_t n, char *out) {
    size_t len = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | p[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[len++] = docid_alphabet[(acc >> bits) & 31];
        }
    }
    if (bits > 0) out[len++] = docid_alphabet[(acc << (5 - bits)) & 31];
    out[len] = '\0';
    return len;
}

size_t docid_encode(uint32_t table_number, const uint8_t internal[DOCID_INTERNAL_LEN],
                    char out[DOCID_TEXT_MAX + 1]) {
    uint8_t bytes[DOCID_BYTES_MAX];
    size_t n = docid_bytes(table_number, internal, bytes);
    return docid_base32(bytes, n, out);
}

static int docid_char_value(unsigned char c) {
    const char *p = c ? memchr(docid_alphabet, c, 32) : NULL;
    return p ? (int)(p - docid_alphabet) : -1;
}

/* Base32 text to bytes; -1 on a character outside the alphabet. */
static int docid_unbase32(const char *s, size_t n, uint8_t *out, size_t *out_len) {
    size_t len = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = docid_char_value((unsigned char)s[i]);
        if (v < 0) return -1;
        acc = (acc << 5) | (uint32_t)v;
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            out[len++] = (uint8_t)(acc >> bits);
        }
    }
    *out_len = len;
    return 0;
}

int docid_decode(const char *s, size_t n, uint32_t *table_number,
                 uint8_t internal[DOCID_INTERNAL_LEN]) {
    if (n < DOCID_TEXT_MIN || n > DOCID_TEXT_MAX) return -1;
    uint8_t bytes[DOCID_BYTES_MAX];
    size_t len;
    if (docid_unbase32(s, n, bytes, &len) < 0) return -1;
    uint32_t table;
    size_t vlen = docid_varint_get(bytes, len, &table);
    if (vlen == 0 || table == 0) return -1;
    if (len != vlen + DOCID_INTERNAL_LEN + DOCID_FOOTER_LEN) return -1;
    uint8_t footer[DOCID_FOOTER_LEN];
    docid_footer(bytes, vlen + DOCID_INTERNAL_LEN, footer);
    if (memcmp(footer, bytes + vlen + DOCID_INTERNAL_LEN, DOCID_FOOTER_LEN) != 0) return -1;
    char again[DOCID_TEXT_MAX + 1];
    if (docid_encode(table, bytes + vlen, again) != n || memcmp(again, s, n) != 0) return -1;
    *table_number = table;
    memcpy(internal, bytes + vlen, DOCID_INTERNAL_LEN);
    return 0;
}

/* Random bytes are drawn 4 KiB at a time: one getrandom() per document showed up in
 * import profiles. Per thread, so no lock; only the store's writer makes ids. */
static void docid_random(uint8_t *out, size_t n) {
    static _Thread_local uint8_t pool[4096];
    static _Thread_local size_t left;
    if (left < n) {
        randombytes_buf(pool, sizeof pool);
        left = sizeof pool;
    }
    memcpy(out, pool + sizeof pool - left, n);
    left -= n;
}

void docid_new_internal(uint64_t seq, int64_t unix_ms, uint8_t internal[DOCID_INTERNAL_LEN]) {
    for (int i = 0; i < 8; i++) internal[i] = (uint8_t)(seq >> (56 - 8 * i));
    docid_random(internal + 8, 6);
    uint16_t days = unix_ms > 0 ? (uint16_t)(unix_ms / DOCID_MS_PER_DAY) : 0;
    internal[14] = (uint8_t)(days >> 8);
    internal[15] = (uint8_t)(days & 0xff);
}

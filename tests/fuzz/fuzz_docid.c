/*
 * fuzz_docid.c — libFuzzer target for document IDs. Any text either fails to decode or
 * decodes to parts that encode back to exactly that text; any table number and internal
 * id encode to a text that decodes back to them.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/docid.h"

#define CHECK(cond) \
    do {            \
        if (!(cond)) abort(); \
    } while (0)

static void check_decode(const char *s, size_t n) {
    uint32_t table;
    uint8_t internal[DOCID_INTERNAL_LEN];
    if (docid_decode(s, n, &table, internal) != 0) return;
    CHECK(table >= 1);
    char text[DOCID_TEXT_MAX + 1];
    CHECK(docid_encode(table, internal, text) == n);
    CHECK(memcmp(text, s, n) == 0);
}

static void check_round_trip(const uint8_t *p) {
    uint32_t table = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    if (table == 0) table = 1;
    char text[DOCID_TEXT_MAX + 1];
    size_t n = docid_encode(table, p + 4, text);
    CHECK(n >= 31 && n <= DOCID_TEXT_MAX && strlen(text) == n);
    uint32_t back;
    uint8_t internal[DOCID_INTERNAL_LEN];
    CHECK(docid_decode(text, n, &back, internal) == 0);
    CHECK(back == table && memcmp(internal, p + 4, DOCID_INTERNAL_LEN) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_decode((const char *)data, size);
    if (size >= 4 + DOCID_INTERNAL_LEN) check_round_trip(data);
    return 0;
}

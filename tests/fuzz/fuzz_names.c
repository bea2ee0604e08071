/*
 * fuzz_names.c — libFuzzer target for name rewriting: any bytes as a table name or a
 * field key. A rewritten table name is always valid (or a clean InvalidTableName), a
 * valid one is kept as is, and a field slug is "source_" + words of [a-z0-9] joined by
 * single '_', which slugging again leaves unchanged.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/names.h"

#define CHECK(cond) \
    do {            \
        if (!(cond)) abort(); \
    } while (0)

static void check_table(const char *s, size_t n) {
    char out[NAMES_TABLE_MAX + 1];
    tr_err e;
    err_clear(&e);
    if (names_table_rewrite(s, n, out, &e) != 0) {
        CHECK(e.status == 400 && strcmp(e.code, "InvalidTableName") == 0);
        buf b = BUF_INIT;
        names_source_slug(s, n, &b);
        CHECK(b.len > NAMES_TABLE_MAX);
        buf_free(&b);
        return;
    }
    size_t len = strlen(out);
    CHECK(names_table_valid(out, len));
    if (names_table_valid(s, n)) CHECK(len == n && memcmp(out, s, n) == 0);
    else CHECK(strncmp(out, "source_", 7) == 0);
}

static void check_slug(const char *s, size_t n) {
    buf b = BUF_INIT;
    names_source_slug(s, n, &b);
    CHECK(b.len >= 7 && memcmp(b.p, "source_", 7) == 0);
    CHECK(strlen(b.p) == b.len);
    const char *slug = b.p + 7;
    size_t len = b.len - 7;
    CHECK(len <= 2 * n);
    for (size_t i = 0; i < len; i++) {
        char c = slug[i];
        CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
        if (c == '_') CHECK(i > 0 && i + 1 < len && slug[i + 1] != '_');
    }
    if (len <= NAMES_FIELD_MAX - 7) CHECK(names_field_kept(b.p, b.len));
    buf again = BUF_INIT;
    names_source_slug(slug, len, &again);
    CHECK(again.len == b.len && memcmp(again.p, b.p, b.len) == 0);
    buf_free(&again);
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    check_table(s, size);
    check_slug(s, size);
    if (names_identifier(s, size)) CHECK(size <= NAMES_TABLE_MAX);
    return 0;
}

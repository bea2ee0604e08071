/*
 * test_docid.c — Convex document IDs: a real ID from the reference, round trips at every
 * varint length, strict decoding, and fresh internal ids.
 */
#include "unit.h"

#include <sodium.h>

#include "model/docid.h"

static const char vector_id[] = "kg27rxfv99gzp01wmph0gvt92d6hnvy6";
static const uint8_t vector_internal[DOCID_INTERNAL_LEN] = {
    0x7c, 0x75, 0xfb, 0x4a, 0x61, 0xfb, 0x00, 0x3c,
    0xa5, 0xa2, 0x08, 0x6f, 0x49, 0x13, 0x4d, 0x1a,
};
static const char alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";

static int decode_str(const char *s, uint32_t *table, uint8_t internal[DOCID_INTERNAL_LEN]) {
    return docid_decode(s, strlen(s), table, internal);
}

/* Base32 of arbitrary bytes, to build IDs the encoder would never produce. */
static void base32(const uint8_t *p, size_t n, char *out) {
    uint32_t acc = 0;
    int bits = 0;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | p[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[len++] = alphabet[(acc >> bits) & 31];
        }
    }
    if (bits > 0) out[len++] = alphabet[(acc << (5 - bits)) & 31];
    out[len] = '\0';
}

static void fletcher(const uint8_t *p, size_t n, uint8_t out[2]) {
    uint8_t c0 = 0, c1 = 0;
    for (size_t i = 0; i < n; i++) {
        c0 = (uint8_t)(c0 + p[i]);
        c1 = (uint8_t)(c1 + c0);
    }
    out[0] = c0;
    out[1] = c1;
}

static void test_reference_vector_decodes(void **state) {
    (void)state;
    uint32_t table = 0;
    uint8_t internal[DOCID_INTERNAL_LEN];
    assert_int_equal(decode_str(vector_id, &table, internal), 0);
    assert_int_equal(table, 540);
    assert_memory_equal(internal, vector_internal, DOCID_INTERNAL_LEN);
}

static void test_reference_vector_encodes(void **state) {
    (void)state;
    char text[DOCID_TEXT_MAX + 1];
    assert_int_equal(docid_encode(540, vector_internal, text), 32);
    assert_string_equal(text, vector_id);
}

static void test_any_single_character_change_fails(void **state) {
    (void)state;
    char s[sizeof vector_id];
    uint32_t table;
    uint8_t internal[DOCID_INTERNAL_LEN];
    for (size_t pos = 0; pos < sizeof vector_id - 1; pos++) {
        for (const char *c = alphabet; *c; c++) {
            if (*c == vector_id[pos]) continue;
            memcpy(s, vector_id, sizeof s);
            s[pos] = *c;
            if (decode_str(s, &table, internal) == 0) fail_msg("%s decoded", s);
        }
    }
}

static void test_bad_text_fails(void **state) {
    (void)state;
    uint32_t table;
    uint8_t internal[DOCID_INTERNAL_LEN];
    assert_int_equal(decode_str("KG27RXFV99GZP01WMPH0GVT92D6HNVY6", &table, internal), -1);
    assert_int_equal(decode_str("kg27rxfv99gzp01wmph0gvt92d6hnvy60", &table, internal), -1);
    assert_int_equal(decode_str("kg27rxfv99gzp01wmph0gvt92d6hnvy", &table, internal), -1);
    assert_int_equal(decode_str("", &table, internal), -1);
    assert_int_equal(decode_str("ig27rxfv99gzp01wmph0gvt92d6hnvy6", &table, internal), -1);
    assert_int_equal(decode_str("kg27rxfv99gzp01wmph0gvt92d6hnvu6", &table, internal), -1);
    assert_int_equal(docid_decode("kg27rxfv99gzp01wmph0gvt92d6hnvy6\0", 33, &table, internal), -1);
    assert_int_equal(decode_str("kg27rxfv99gzp01wmph0gvt92d6hnvy6kg27rx", &table, internal), -1);
}

static void test_round_trip_every_length(void **state) {
    (void)state;
    const struct {
        uint32_t table;
        size_t len;
    } cases[] = {
        {1, 31},          {127, 31},        {128, 32},        {DOCID_FIRST_TABLE, 32},
        {16383, 32},      {16384, 34},      {(1u << 21) - 1, 34}, {1u << 21, 36},
        {(1u << 28) - 1, 36}, {1u << 28, 37}, {UINT32_MAX, 37},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint8_t internal[DOCID_INTERNAL_LEN];
        for (int j = 0; j < DOCID_INTERNAL_LEN; j++) internal[j] = (uint8_t)(i * 31 + j * 7);
        char text[DOCID_TEXT_MAX + 1];
        assert_int_equal(docid_encode(cases[i].table, internal, text), cases[i].len);
        assert_int_equal(strlen(text), cases[i].len);
        uint32_t table = 0;
        uint8_t back[DOCID_INTERNAL_LEN];
        assert_int_equal(decode_str(text, &table, back), 0);
        assert_int_equal(table, cases[i].table);
        assert_memory_equal(back, internal, DOCID_INTERNAL_LEN);
    }
}

static void test_user_table_ids_are_32_chars_starting_g_to_z(void **state) {
    (void)state;
    uint8_t internal[DOCID_INTERNAL_LEN] = {0};
    char text[DOCID_TEXT_MAX + 1];
    assert_int_equal(docid_encode(DOCID_FIRST_TABLE, internal, text), 32);
    assert_true(text[0] >= 'g' && text[0] <= 'z');
    memset(internal, 0xff, sizeof internal);
    assert_int_equal(docid_encode(DOCID_FIRST_TABLE + 5000, internal, text), 32);
    assert_true(text[0] >= 'g' && text[0] <= 'z');
}

static void test_table_zero_fails(void **state) {
    (void)state;
    char text[DOCID_TEXT_MAX + 1];
    docid_encode(0, vector_internal, text);
    uint32_t table;
    uint8_t internal[DOCID_INTERNAL_LEN];
    assert_int_equal(decode_str(text, &table, internal), -1);
}

/* 19 bytes leave 3 unused bits in the last character; they must be zero. */
static void test_nonzero_padding_bits_fail(void **state) {
    (void)state;
    char text[DOCID_TEXT_MAX + 1];
    assert_int_equal(docid_encode(1, vector_internal, text), 31);
    uint32_t table;
    uint8_t internal[DOCID_INTERNAL_LEN];
    assert_int_equal(decode_str(text, &table, internal), 0);
    int v = (int)(strchr(alphabet, text[30]) - alphabet);
    for (int pad = 1; pad < 8; pad++) {
        text[30] = alphabet[(v & ~7) | pad];
        assert_int_equal(decode_str(text, &table, internal), -1);
    }
}

/* Table 1 written as a two-byte varint, with a correct footer: not canonical. */
static void test_long_varint_fails(void **state) {
    (void)state;
    uint8_t bytes[20] = {0x81, 0x00};
    memcpy(bytes + 2, vector_internal, DOCID_INTERNAL_LEN);
    fletcher(bytes, 18, bytes + 18);
    char text[40];
    base32(bytes, sizeof bytes, text);
    uint32_t table;
    uint8_t internal[DOCID_INTERNAL_LEN];
    assert_int_equal(decode_str(text, &table, internal), -1);

    bytes[0] = 0x01; /* the same bytes with a proper one-byte varint decode fine */
    memcpy(bytes + 1, vector_internal, DOCID_INTERNAL_LEN);
    fletcher(bytes, 17, bytes + 17);
    base32(bytes, 19, text);
    assert_int_equal(decode_str(text, &table, internal), 0);
    assert_int_equal(table, 1);
}

/* A five-byte varint above 2^32 - 1. */
static void test_varint_overflow_fails(void **state) {
    (void)state;
    uint8_t bytes[23] = {0xff, 0xff, 0xff, 0xff, 0x1f};
    memcpy(bytes + 5, vector_internal, DOCID_INTERNAL_LEN);
    fletcher(bytes, 21, bytes + 21);
    char text[40];
    base32(bytes, sizeof bytes, text);
    assert_int_equal(strlen(text), 37);
    uint32_t table;
    uint8_t internal[DOCID_INTERNAL_LEN];
    assert_int_equal(decode_str(text, &table, internal), -1);
}

static void test_new_internal_layout(void **state) {
    (void)state;
    uint8_t a[DOCID_INTERNAL_LEN], b[DOCID_INTERNAL_LEN];
    int64_t ms = 1700000000000; /* 2023-11-14: day 19675 = 0x4cdb */
    docid_new_internal(0x0102030405060708ULL, ms, a);
    docid_new_internal(0x0102030405060708ULL, ms, b);
    const uint8_t seq[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_memory_equal(a, seq, 8);
    assert_int_equal(a[14], 0x4c);
    assert_int_equal(a[15], 0xdb);
    assert_memory_not_equal(a + 8, b + 8, 6); /* 48 random bits: equal by chance ~never */
}

static void test_new_ids_sort_in_insertion_order(void **state) {
    (void)state;
    char prev[DOCID_TEXT_MAX + 1] = "";
    for (uint64_t seq = 1; seq < 600; seq += 7) {
        uint8_t internal[DOCID_INTERNAL_LEN];
        docid_new_internal(seq, 1700000000000, internal);
        char text[DOCID_TEXT_MAX + 1];
        docid_encode(DOCID_FIRST_TABLE, internal, text);
        assert_true(strcmp(prev, text) < 0);
        memcpy(prev, text, sizeof text);
    }
}

int main(void) {
    if (sodium_init() < 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_vector_decodes),
        cmocka_unit_test(test_reference_vector_encodes),
        cmocka_unit_test(test_any_single_character_change_fails),
        cmocka_unit_test(test_bad_text_fails),
        cmocka_unit_test(test_round_trip_every_length),
        cmocka_unit_test(test_user_table_ids_are_32_chars_starting_g_to_z),
        cmocka_unit_test(test_table_zero_fails),
        cmocka_unit_test(test_nonzero_padding_bits_fail),
        cmocka_unit_test(test_long_varint_fails),
        cmocka_unit_test(test_varint_overflow_fails),
        cmocka_unit_test(test_new_internal_layout),
        cmocka_unit_test(test_new_ids_sort_in_insertion_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

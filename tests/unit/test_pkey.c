/*
 * test_pkey.c — primary keys: the validation rules of both endpoints, the canonical
 * text, and the index key bytes (distinct per type, memcmp order = value order).
 */
#include "unit.h"

#include <math.h>
#include <stdio.h>

#include "json/reader.h"
#include "model/pkey.h"

static arena *test_arena;

static int setup(void **state) {
    (void)state;
    test_arena = arena_new();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    arena_free(test_arena);
    return 0;
}

static val *json(const char *text) {
    val *v = NULL;
    tr_err e;
    if (json_parse(test_arena, text, strlen(text), 64, 0, &v, &e) != 0) {
        fail_msg("bad test JSON %s: %s", text, e.message);
    }
    return v;
}

static int parse(const char *text, pkey_origin origin, pkey *k, tr_err *e) {
    err_clear(e);
    return pkey_parse(json(text), origin, k, e);
}

static void expect_error(const char *text, pkey_origin origin, const char *code,
                         const char *fragment) {
    pkey k;
    tr_err e;
    if (parse(text, origin, &k, &e) == 0) fail_msg("%s was accepted", text);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.code, code);
    if (!strstr(e.message, fragment)) fail_msg("%s: \"%s\" lacks \"%s\"", text, e.message, fragment);
}

static void expect_invalid(const char *text, const char *fragment) {
    expect_error(text, PKEY_FROM_STREAM, "InvalidPrimaryKey", fragment);
    expect_error(text, PKEY_FROM_INDEX, "InvalidPrimaryKey", fragment);
}

/* "[["f0"],["f1"],...]" with n paths, or one path of n components when one_path. */
static void many(char *out, size_t n, int one_path) {
    strcpy(out, one_path ? "[[" : "[");
    for (size_t i = 0; i < n; i++) {
        char part[16];
        snprintf(part, sizeof part, one_path ? "%s\"f%zu\"" : "%s[\"f%zu\"]", i ? "," : "", i);
        strcat(out, part);
    }
    strcat(out, one_path ? "]]" : "]");
}

static void test_parse_and_canonical(void **state) {
    (void)state;
    pkey k;
    tr_err e;
    assert_int_equal(parse(" [ [\"id\"] , [\"address\", \"zip_2\"] ] ", PKEY_FROM_STREAM, &k, &e), 0);
    assert_int_equal(k.npaths, 2);
    assert_int_equal(k.paths[0].ncomp, 1);
    assert_string_equal(k.paths[0].comp[0], "id");
    assert_int_equal(k.paths[1].ncomp, 2);
    assert_string_equal(k.paths[1].comp[1], "zip_2");
    buf b = BUF_INIT;
    pkey_canonical(&k, &b);
    assert_string_equal(b.p, "[[\"id\"],[\"address\",\"zip_2\"]]");
    buf_free(&b);
}

static void test_empty_key(void **state) {
    (void)state;
    expect_error("[]", PKEY_FROM_STREAM, "EmptyPrimaryKey", "Primary keys cannot be empty");
}

static void expect_bad_json(const char *text, const char *fragment) {
    expect_error(text, PKEY_FROM_STREAM, "BadJsonBody", fragment);
    expect_error(text, PKEY_FROM_INDEX, "BadJsonBody", fragment);
}

/* Wrong JSON types are a malformed body, found before any key rule. */
static void test_wrong_types(void **state) {
    (void)state;
    expect_bad_json("\"id\"", "got a string");
    expect_bad_json("{\"id\": 1}", "got an object");
    expect_bad_json("[\"id\"]", "[0]: expected a list of field names, got a string");
    expect_bad_json("[[\"a\"], [1]]", "[1][0]: expected a string, got a number");
    expect_bad_json("[[\"a b\"], [null]]", "[1][0]: expected a string, got null");
}

static void test_bad_paths(void **state) {
    (void)state;
    expect_invalid("[[]]", "field path 0 is empty");
    expect_invalid("[[\"a b\"]]",
                   "\"a b\" in field path 0 is not valid: Identifiers must start with a letter");
    expect_invalid("[[\"a b\"]]", "[[\"a b\"]]");
    expect_invalid("[[\"ok\"], [\"1a\"]]", "\"1a\"");
    expect_invalid("[[\"_\"]]", "\"_\"");
    expect_invalid("[[\"a.b\"]]", "\"a.b\"");
    expect_invalid("[[\"\"]]", "\"\"");
    expect_invalid("[[\"_id\"]]", "`_id` is not a valid index field");
    expect_invalid("[[\"a\",\"b\"], [\"c\"], [\"a\",\"b\"]]", "Duplicate field \"a.b\"");
    char text[2048];
    memset(text, 0, sizeof text);
    strcpy(text, "[[\"");
    memset(text + 3, 'x', 65);
    strcat(text, "\"]]");
    expect_invalid(text, "longer than 64 characters");
}

static void test_limits(void **state) {
    (void)state;
    char text[2048];
    pkey k;
    tr_err e;
    many(text, PKEY_MAX_PATHS, 0);
    assert_int_equal(parse(text, PKEY_FROM_STREAM, &k, &e), 0);
    assert_int_equal(k.npaths, PKEY_MAX_PATHS);
    many(text, PKEY_MAX_PATHS + 1, 0);
    expect_invalid(text, "up to 16 fields");
    many(text, PKEY_MAX_COMPONENTS, 1);
    assert_int_equal(parse(text, PKEY_FROM_STREAM, &k, &e), 0);
    assert_int_equal(k.paths[0].ncomp, PKEY_MAX_COMPONENTS);
    many(text, PKEY_MAX_COMPONENTS + 1, 1);
    expect_invalid(text, "17 components");
}

static void test_allowed_by_stream(void **state) {
    (void)state;
    pkey k;
    tr_err e;
    assert_int_equal(parse("[[\"_id\", \"x\"]]", PKEY_FROM_STREAM, &k, &e), 0);
    assert_int_equal(parse("[[\"_airbyte_id\"]]", PKEY_FROM_STREAM, &k, &e), 0);
    assert_int_equal(parse("[[\"a\",\"b\"], [\"a\"], [\"b\",\"a\"]]", PKEY_FROM_STREAM, &k, &e), 0);
}

static void test_reserved_in_index(void **state) {
    (void)state;
    expect_error("[[\"_airbyte_id\"]]", PKEY_FROM_INDEX, "IndexFieldNameReserved", "\"_airbyte_id\"");
    expect_error("[[\"a\"], [\"x\", \"_b\"]]", PKEY_FROM_INDEX, "IndexFieldNameReserved", "\"_b\"");
    /* a malformed key is reported as such even when it also uses a reserved name */
    expect_error("[[\"_a\"], [\"b c\"]]", PKEY_FROM_INDEX, "InvalidPrimaryKey", "\"b c\"");
}

/* ---- encoding ---- */

static void encode(const val *v, buf *out) {
    buf_reset(out);
    pkey_encode_value(v, out);
}

static int cmp_bufs(const buf *a, const buf *b) {
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->p, b->p, n);
    if (c) return c;
    return (a->len > b->len) - (a->len < b->len);
}

/* Each value must encode strictly above the previous one. */
static void expect_ascending(val **vals, size_t n) {
    buf prev = BUF_INIT, cur = BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        encode(vals[i], &cur);
        if (i > 0 && cmp_bufs(&prev, &cur) >= 0) fail_msg("value %zu does not sort above %zu", i, i - 1);
        buf_reset(&prev);
        buf_append(&prev, cur.p, cur.len);
    }
    buf_free(&prev);
    buf_free(&cur);
}

static val *num(double d) {
    val *v = arena_alloc(test_arena, sizeof *v);
    v->type = VAL_FLOAT;
    v->u.f = d;
    return v;
}

static val *int64(int64_t i) {
    val *v = arena_alloc(test_arena, sizeof *v);
    v->type = VAL_INT;
    v->u.i = i;
    return v;
}

static val *str(const char *s, size_t n) {
    val *v = arena_alloc(test_arena, sizeof *v);
    v->type = VAL_STRING;
    v->u.s.p = s;
    v->u.s.len = n;
    return v;
}

static void test_types_are_distinct(void **state) {
    (void)state;
    val *vals[] = {num(1), int64(1), json("\"1\""), json("null"), json("true"), json("[1]"),
                   json("{\"1\": 1}")};
    size_t n = sizeof vals / sizeof *vals;
    buf a = BUF_INIT, b = BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++) {
            encode(vals[i], &a);
            encode(vals[j], &b);
            if (cmp_bufs(&a, &b) == 0) fail_msg("values %zu and %zu encode alike", i, j);
        }
    }
    buf_free(&a);
    buf_free(&b);
}

static void test_type_order(void **state) {
    (void)state;
    val *vals[] = {json("null"), int64(INT64_MAX), num(-INFINITY), num(INFINITY), json("false"),
                   json("true"), json("\"\""), json("[]"), json("{}")};
    expect_ascending(vals, sizeof vals / sizeof *vals);
}

static void test_float_order(void **state) {
    (void)state;
    val *vals[] = {num(-INFINITY), num(-1e300), num(-2.5), num(-1), num(-1e-300), num(-0.0),
                   num(0.0), num(5e-324), num(1e-300), num(1), num(1.5), num(2), num(1e300),
                   num(INFINITY)};
    expect_ascending(vals, sizeof vals / sizeof *vals);
}

static void test_int_order(void **state) {
    (void)state;
    val *vals[] = {int64(INT64_MIN), int64(-9007199254740993), int64(-1), int64(0), int64(1),
                   int64(9007199254740993), int64(INT64_MAX)};
    expect_ascending(vals, sizeof vals / sizeof *vals);
}

static void test_string_order(void **state) {
    (void)state;
    val *vals[] = {str("", 0),      str("\0", 1),     str("\0\0", 2), str("\0\x01", 2),
                   str("\x01", 1),  str("a", 1),      str("a\0", 2),  str("a\0b", 3),
                   str("a\x01", 2), str("ab", 2),     str("b", 1),    str("\xc3\xa9", 2),
                   str("\xff", 1)};
    expect_ascending(vals, sizeof vals / sizeof *vals);
}

static void test_string_bytes(void **state) {
    (void)state;
    buf b = BUF_INIT;
    encode(str("a\0b", 3), &b);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.p, "\x10" "a\0\xff" "b\0\0", 7);
    buf_free(&b);
}

static void test_array_and_object_order(void **state) {
    (void)state;
    val *arrays[] = {json("[]"), json("[null]"), json("[1]"), json("[1, 2]"), json("[2]"),
                     json("[\"a\"]")};
    expect_ascending(arrays, sizeof arrays / sizeof *arrays);
    val *objects[] = {json("{}"), json("{\"a\": 1}"), json("{\"a\": 1, \"b\": 1}"),
                      json("{\"a\": 2}"), json("{\"b\": 0}")};
    expect_ascending(objects, sizeof objects / sizeof *objects);
}

static void encode_doc_ok(const pkey *k, const char *doc, buf *out) {
    tr_err e;
    buf_reset(out);
    if (pkey_encode_doc(k, json(doc), 1, out, &e) != 0) fail_msg("%s: %s", doc, e.message);
}

static void test_multi_path_key_sorts_like_tuple(void **state) {
    (void)state;
    pkey k;
    tr_err e;
    assert_int_equal(parse("[[\"a\"], [\"b\"]]", PKEY_FROM_STREAM, &k, &e), 0);
    const char *docs[] = {
        "{\"a\": \"a\", \"b\": \"z\"}",
        "{\"b\": \"a\", \"a\": \"ab\"}",
        "{\"a\": \"ab\", \"b\": \"b\"}",
        "{\"a\": \"b\", \"b\": null}",
    };
    buf prev = BUF_INIT, cur = BUF_INIT;
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
        encode_doc_ok(&k, docs[i], &cur);
        if (i > 0 && cmp_bufs(&prev, &cur) >= 0) fail_msg("%s does not sort above the previous", docs[i]);
        buf_reset(&prev);
        buf_append(&prev, cur.p, cur.len);
    }
    /* the key is the values of the paths in key order, whatever the field order */
    buf one = BUF_INIT;
    encode_doc_ok(&k, "{\"x\": 1, \"b\": 2, \"a\": 1}", &one);
    buf_reset(&cur);
    pkey_encode_value(num(1), &cur);
    pkey_encode_value(num(2), &cur);
    assert_int_equal(one.len, cur.len);
    assert_memory_equal(one.p, cur.p, cur.len);
    buf_free(&one);
    buf_free(&prev);
    buf_free(&cur);
}

static void test_nested_path_and_null(void **state) {
    (void)state;
    pkey k;
    tr_err e;
    assert_int_equal(parse("[[\"address\", \"zip\"]]", PKEY_FROM_STREAM, &k, &e), 0);
    buf b = BUF_INIT;
    encode_doc_ok(&k, "{\"address\": {\"zip\": null}}", &b);
    assert_int_equal(b.len, 1);
    assert_int_equal((unsigned char)b.p[0], 0x03);
    encode_doc_ok(&k, "{\"address\": {\"zip\": \"12345\"}}", &b);
    assert_int_equal((unsigned char)b.p[0], 0x10);
    buf_free(&b);
}

static void test_missing_value(void **state) {
    (void)state;
    pkey k;
    tr_err e;
    assert_int_equal(parse("[[\"id\"], [\"a\", \"b\"]]", PKEY_FROM_STREAM, &k, &e), 0);
    const char *docs[] = {
        "{\"id\": 1}",
        "{\"id\": 1, \"a\": 5}",
        "{\"id\": 1, \"a\": {\"c\": 1}}",
        "{\"id\": 1, \"a\": [{\"b\": 1}]}",
        "{\"id\": 1, \"a\": null}",
    };
    buf b = BUF_INIT;
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
        err_clear(&e);
        assert_int_equal(pkey_encode_doc(&k, json(docs[i]), 1, &b, &e), -1);
        assert_int_equal(e.status, 400);
        assert_string_equal(e.code, "MissingPrimaryKeyValue");
        assert_string_equal(e.message, "Missing value for primary key field: \"a.b\".");
    }
    /* backfill: a missing value becomes undefined, which sorts below null */
    buf_reset(&b);
    assert_int_equal(pkey_encode_doc(&k, json("{\"a\": 5}"), 0, &b, &e), 0);
    assert_int_equal(b.len, 2);
    assert_memory_equal(b.p, "\x01\x01", 2);
    buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_canonical),
        cmocka_unit_test(test_empty_key),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_bad_paths),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_allowed_by_stream),
        cmocka_unit_test(test_reserved_in_index),
        cmocka_unit_test(test_types_are_distinct),
        cmocka_unit_test(test_type_order),
        cmocka_unit_test(test_float_order),
        cmocka_unit_test(test_int_order),
        cmocka_unit_test(test_string_order),
        cmocka_unit_test(test_string_bytes),
        cmocka_unit_test(test_array_and_object_order),
        cmocka_unit_test(test_multi_path_key_sorts_like_tuple),
        cmocka_unit_test(test_nested_path_and_null),
        cmocka_unit_test(test_missing_value),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

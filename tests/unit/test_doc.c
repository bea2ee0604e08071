/*
 * test_doc.c — normalising an imported record: field renaming at every depth with the
 * collision rule, Airbyte CDC fields, and the document limits with Convex's size.
 */
#include "unit.h"

#include "json/reader.h"
#include "model/doc.h"
#include "util/buf.h"

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
    if (json_parse(test_arena, text, strlen(text), 1000, 0, &v, &e) != 0) {
        fail_msg("bad test JSON: %s", e.message);
    }
    return v;
}

/* Key list of an object, "a,b,c", to compare names and order at once. */
static void keys(const val *obj, buf *out) {
    buf_reset(out);
    for (size_t i = 0; i < obj->u.o.n; i++) {
        if (i) buf_putc(out, ',');
        buf_append(out, obj->u.o.fields[i].key, obj->u.o.fields[i].key_len);
    }
}

static void expect_keys(const val *obj, const char *want) {
    buf b = BUF_INIT;
    assert_int_equal(obj->type, VAL_OBJECT);
    keys(obj, &b);
    assert_string_equal(b.p ? b.p : "", want);
    buf_free(&b);
}

static val *normalize_ok(const char *text, doc_mode mode, int *deleted) {
    val *v = json(text);
    tr_err e;
    int del = -1;
    if (doc_normalize(test_arena, v, mode, &del, &e) != 0) fail_msg("%s: %s", text, e.message);
    if (deleted) *deleted = del;
    return v;
}

static void expect_error(val *v, doc_mode mode, const char *code, const char *message) {
    tr_err e;
    int deleted;
    err_clear(&e);
    assert_int_equal(doc_normalize(test_arena, v, mode, &deleted, &e), -1);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.code, code);
    if (strncmp(e.message, message, strlen(message)) != 0) {
        fail_msg("message \"%s\" does not start with \"%s\"", e.message, message);
    }
}

static void test_kept_keys_untouched(void **state) {
    (void)state;
    val *v = normalize_ok("{\"hello world\": 1, \"a-b.c\": 2, \"Caps\": 3, \"\": 4, \"mid_$\": 5}",
                          DOC_APPEND, NULL);
    expect_keys(v, "hello world,a-b.c,Caps,,mid_$");
}

static void test_rename_at_every_depth(void **state) {
    (void)state;
    val *v = normalize_ok("{\"_a\": {\"$b\": [{\"_c\": 1}, [{\"caf\\u00e9\": 2}]]}, \"ok\": "
                          "{\"_creationTime\": 3}}",
                          DOC_APPEND, NULL);
    expect_keys(v, "source_a,ok");
    val *a = v->u.o.fields[0].v;
    expect_keys(a, "source_b");
    val *arr = a->u.o.fields[0].v;
    expect_keys(arr->u.a.items[0], "source_c");
    expect_keys(arr->u.a.items[1]->u.a.items[0], "source_cafe");
    expect_keys(v->u.o.fields[1].v, "source_creationtime");
    assert_string_equal(v->u.o.fields[0].key, "source_a"); /* NUL-terminated too */
}

static void test_collision_with_original_key(void **state) {
    (void)state;
    val *v = normalize_ok("{\"_id\": 1, \"source_id\": 2}", DOC_APPEND, NULL);
    expect_keys(v, "source_source_id,source_id");
    assert_true(v->u.o.fields[0].v->u.f == 1);
    assert_true(v->u.o.fields[1].v->u.f == 2);

    v = normalize_ok("{\"source_id\": 2, \"source_source_id\": 3, \"_id\": 1}", DOC_APPEND, NULL);
    expect_keys(v, "source_id,source_source_id,source_source_source_id");
}

static void test_collision_between_renamed_keys(void **state) {
    (void)state;
    /* the reference silently keeps one of these; here no value is lost */
    val *v = normalize_ok("{\"_a\": 1, \"$a\": 2, \"_A\": 3}", DOC_APPEND, NULL);
    expect_keys(v, "source_a,source_source_a,source_source_source_a");
    assert_true(v->u.o.fields[2].v->u.f == 3);
}

static void test_collision_unresolvable(void **state) {
    (void)state;
    expect_error(json("{\"source_id\": 1, \"source_source_id\": 2, \"source_source_source_id\": 3, "
                      "\"_id\": 4}"),
                 DOC_APPEND, "InvalidFieldName", "data: field \"_id\" cannot be renamed");
    expect_error(json("{\"x\": [0, {\"_a\": 1, \"$a\": 2, \"_A\": 3, \"$A\": 4}]}"), DOC_APPEND,
                 "InvalidFieldName", "data.x[1]: field \"$A\" cannot be renamed");
}

static void test_many_renames_in_one_object(void **state) {
    (void)state;
    buf b = BUF_INIT;
    buf_putc(&b, '{');
    for (int i = 0; i < DOC_MAX_FIELDS; i++) buf_printf(&b, "%s\"_k%d\": %d", i ? "," : "", i, i);
    buf_putc(&b, '}');
    val *v = normalize_ok(b.p, DOC_APPEND, NULL);
    assert_int_equal(v->u.o.n, DOC_MAX_FIELDS);
    assert_string_equal(v->u.o.fields[0].key, "source_k0");
    assert_string_equal(v->u.o.fields[DOC_MAX_FIELDS - 1].key, "source_k1023");
    buf_free(&b);
}

static void test_cdc_dedup(void **state) {
    (void)state;
    int deleted;
    val *v = normalize_ok("{\"id\": 1, \"_ab_cdc_deleted_at\": \"2024-01-01T00:00:00Z\", "
                          "\"_ab_cdc_lsn\": 5, \"source_ab_cdc_cursor\": 7, \"x\": 2}",
                          DOC_DEDUP, &deleted);
    assert_int_equal(deleted, 1);
    expect_keys(v, "id,x");

    v = normalize_ok("{\"id\": 1, \"_ab_cdc_deleted_at\": null, \"_ab_cdc_updated_at\": 3}",
                     DOC_DEDUP, &deleted);
    assert_int_equal(deleted, 0);
    expect_keys(v, "id");
}

static void test_cdc_append_keeps_fields(void **state) {
    (void)state;
    int deleted;
    val *v = normalize_ok("{\"id\": 1, \"_ab_cdc_deleted_at\": 17, \"_ab_cdc_lsn\": 5}",
                          DOC_APPEND, &deleted);
    assert_int_equal(deleted, 1);
    expect_keys(v, "id,source_ab_cdc_deleted_at,source_ab_cdc_lsn");

    v = normalize_ok("{\"id\": 1}", DOC_APPEND, &deleted);
    assert_int_equal(deleted, 0);
}

static void test_cdc_only_at_top_level(void **state) {
    (void)state;
    int deleted;
    val *v = normalize_ok("{\"x\": {\"_ab_cdc_deleted_at\": 1, \"_ab_cdc_lsn\": 2}}", DOC_DEDUP,
                          &deleted);
    assert_int_equal(deleted, 0);
    expect_keys(v, "x");
    expect_keys(v->u.o.fields[0].v, "source_ab_cdc_deleted_at,source_ab_cdc_lsn");
}

static void test_cdc_uses_name_after_renaming(void **state) {
    (void)state;
    int deleted;
    /* the literal column wins the name; the renamed one becomes source_source_... */
    val *v = normalize_ok("{\"source_ab_cdc_deleted_at\": null, \"_ab_cdc_deleted_at\": 1}",
                          DOC_DEDUP, &deleted);
    assert_int_equal(deleted, 0);
    expect_keys(v, "source_source_ab_cdc_deleted_at");
}

/* {"a":{"a":...{}...}} with `levels` objects, and one array halfway if asked. */
static val *nested(size_t levels, int array_inside) {
    buf b = BUF_INIT;
    size_t mid = array_inside ? levels / 2 : 0;
    for (size_t i = 1; i < levels; i++) buf_puts(&b, i == mid ? "{\"a\":[" : "{\"a\":");
    buf_puts(&b, "{}");
    for (size_t i = levels - 1; i >= 1; i--) buf_puts(&b, i == mid ? "]}" : "}");
    val *v = json(b.p);
    buf_free(&b);
    return v;
}

static void test_depth_limit(void **state) {
    (void)state;
    tr_err e;
    int deleted;
    assert_int_equal(doc_normalize(test_arena, nested(16, 0), DOC_APPEND, &deleted, &e), 0);
    expect_error(nested(17, 0), DOC_APPEND, "InvalidDocumentError",
                 "data: document is too nested (17 levels > maximum 16)");
    expect_error(nested(30, 0), DOC_APPEND, "InvalidDocumentError",
                 "data: document is too nested (30 levels > maximum 16)");
    /* arrays are levels too: 8 objects + 1 array + 8 objects */
    expect_error(nested(16, 1), DOC_APPEND, "InvalidDocumentError",
                 "data: document is too nested (17 levels > maximum 16)");
}

static val *object_of(size_t n, const char *wrap) {
    buf b = BUF_INIT;
    buf_puts(&b, wrap ? wrap : "");
    buf_putc(&b, '{');
    for (size_t i = 0; i < n; i++) buf_printf(&b, "%s\"f%zu\": null", i ? "," : "", i);
    buf_putc(&b, '}');
    if (wrap) buf_putc(&b, '}');
    val *v = json(b.p);
    buf_free(&b);
    return v;
}

static void test_field_count_limit(void **state) {
    (void)state;
    tr_err e;
    int deleted;
    assert_int_equal(doc_normalize(test_arena, object_of(DOC_MAX_FIELDS, NULL), DOC_APPEND,
                                   &deleted, &e), 0);
    expect_error(object_of(DOC_MAX_FIELDS + 1, NULL), DOC_APPEND, "TooManyFieldsError",
                 "data: Object has too many fields (1025 > maximum number 1024)");
    expect_error(object_of(DOC_MAX_FIELDS + 1, "{\"in\\\"ner\": "), DOC_APPEND,
                 "TooManyFieldsError", "data[\"in\\\"ner\"]: Object has too many fields");
}

static val *array_of(size_t n) {
    buf b = BUF_INIT;
    buf_puts(&b, "{\"list\": [");
    for (size_t i = 0; i < n; i++) buf_puts(&b, i ? ",0" : "0");
    buf_puts(&b, "]}");
    val *v = json(b.p);
    buf_free(&b);
    return v;
}

static void test_array_limit(void **state) {
    (void)state;
    tr_err e;
    int deleted;
    assert_int_equal(doc_normalize(test_arena, array_of(DOC_MAX_ARRAY), DOC_APPEND, &deleted, &e), 0);
    expect_error(array_of(DOC_MAX_ARRAY + 1), DOC_APPEND, "ArrayTooLong",
                 "data.list: Array length is too long (8193 > maximum length 8192)");
}

static void test_size_measure(void **state) {
    (void)state;
    assert_int_equal(doc_size(json("null")), 1);
    assert_int_equal(doc_size(json("false")), 1);
    assert_int_equal(doc_size(json("1.5")), 9);
    assert_int_equal(doc_size(json("12345678901234567890")), 9);
    assert_int_equal(doc_size(json("\"abc\"")), 5);
    assert_int_equal(doc_size(json("\"caf\\u00e9\"")), 7); /* UTF-8 bytes */
    assert_int_equal(doc_size(json("[]")), 2);
    assert_int_equal(doc_size(json("[1, \"a\"]")), 14);
    assert_int_equal(doc_size(json("{\"ab\": 1}")), 14);
    assert_int_equal(doc_size(json("{\"ab\": {\"c\": [true]}}")), 2 + 3 + (2 + 2 + 3));
    assert_int_equal(DOC_SYSTEM_FIELDS_SIZE, 61);
}

/* {"<key>": "xxx..."}: Convex size len + strlen(key) + 5 */
static val *sized_doc(const char *key, size_t len, const char *extra) {
    buf b = BUF_INIT;
    buf_printf(&b, "{%s\"%s\": \"", extra ? extra : "", key);
    buf_reserve(&b, len);
    memset(b.p + b.len, 'x', len);
    b.len += len;
    buf_puts(&b, "\"}");
    val *v = json(b.p);
    buf_free(&b);
    return v;
}

static void test_size_limit(void **state) {
    (void)state;
    tr_err e;
    int deleted;
    size_t fit = DOC_MAX_SIZE - DOC_SYSTEM_FIELDS_SIZE - 5 - 1; /* key "s" */
    assert_int_equal(doc_normalize(test_arena, sized_doc("s", fit, NULL), DOC_APPEND, &deleted, &e), 0);
    expect_error(sized_doc("s", fit + 1, NULL), DOC_APPEND, "ValueTooLargeError",
                 "data: Value is too large (1048577 > maximum size 1 MiB)");
}

static void test_size_is_measured_after_normalising(void **state) {
    (void)state;
    tr_err e;
    int deleted;
    size_t fit = DOC_MAX_SIZE - DOC_SYSTEM_FIELDS_SIZE - 5 - 1;
    /* "_s" fits as typed but not as "source_s" */
    expect_error(sized_doc("_s", fit - 1, NULL), DOC_APPEND, "ValueTooLargeError",
                 "data: Value is too large (1048582 > maximum size 1 MiB)");
    /* dropped CDC fields do not count in a dedup stream, but do in an append stream */
    const char *cdc = "\"_ab_cdc_lsn\": 1, ";
    assert_int_equal(doc_normalize(test_arena, sized_doc("s", fit, cdc), DOC_DEDUP, &deleted, &e), 0);
    expect_error(sized_doc("s", fit, cdc), DOC_APPEND, "ValueTooLargeError",
                 "data: Value is too large");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kept_keys_untouched),
        cmocka_unit_test(test_rename_at_every_depth),
        cmocka_unit_test(test_collision_with_original_key),
        cmocka_unit_test(test_collision_between_renamed_keys),
        cmocka_unit_test(test_collision_unresolvable),
        cmocka_unit_test(test_many_renames_in_one_object),
        cmocka_unit_test(test_cdc_dedup),
        cmocka_unit_test(test_cdc_append_keeps_fields),
        cmocka_unit_test(test_cdc_only_at_top_level),
        cmocka_unit_test(test_cdc_uses_name_after_renaming),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_field_count_limit),
        cmocka_unit_test(test_array_limit),
        cmocka_unit_test(test_size_measure),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_size_is_measured_after_normalising),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

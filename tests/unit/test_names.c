/*
 * test_names.c — name validity rules and the rewriting of table and field names
 * (SPEC §2.1, §2.2), with the reference's own examples.
 */
#include "unit.h"

#include "model/names.h"

static void expect_table(const char *raw, const char *want) {
    char out[NAMES_TABLE_MAX + 1];
    tr_err e;
    err_clear(&e);
    int rc = names_table_rewrite(raw, strlen(raw), out, &e);
    if (rc != 0) fail_msg("%s: %s", raw, e.message);
    assert_string_equal(out, want);
}

static void expect_field(const char *raw, size_t n, const char *want) {
    buf b = BUF_INIT;
    names_source_slug(raw, n, &b);
    assert_string_equal(b.p, want);
    assert_int_equal(b.len, strlen(want));
    buf_free(&b);
}

#define FIELD(raw, want) expect_field(raw, sizeof(raw) - 1, want)

static void test_table_rewrite_reference_examples(void **state) {
    (void)state;
    expect_table("my-table", "source_my_table");
    expect_table("*name!of.table", "source_name_of_table");
    expect_table("_system_table", "source_system_table");
    expect_table("123", "source_123");
    expect_table("Users", "Users");
    expect_table("ok_table", "ok_table");
    expect_table("", "source_");
}

static void test_table_rewrite_separators(void **state) {
    (void)state;
    expect_table("  spaced   name  ", "source_spaced_name");
    expect_table("__a__b__", "source_a_b");
    expect_table("a--b..c", "source_a_b_c");
    expect_table("Mixed Case!", "source_mixed_case");
    expect_table("---", "source_");
    expect_table("tab\tand\nnewline", "source_tab_and_newline");
}

static void test_table_rewrite_result_is_valid(void **state) {
    (void)state;
    const char *raws[] = {"my-table", "", "___", "9lives", "café au lait", "\xff\xfe"};
    for (size_t i = 0; i < sizeof raws / sizeof *raws; i++) {
        char out[NAMES_TABLE_MAX + 1];
        assert_int_equal(names_table_rewrite(raws[i], strlen(raws[i]), out, NULL), 0);
        assert_true(names_table_valid(out, strlen(out)));
    }
}

static void test_table_too_long_after_rewrite(void **state) {
    (void)state;
    char raw[200];
    char out[NAMES_TABLE_MAX + 1];
    tr_err e;

    /* "-" + 57 letters: the slug has 57 characters, "source_" + slug exactly 64 */
    raw[0] = '-';
    memset(raw + 1, 'a', 57);
    assert_int_equal(names_table_rewrite(raw, 58, out, &e), 0);
    assert_int_equal(strlen(out), 64);

    memset(raw + 1, 'a', 58);
    err_clear(&e);
    assert_int_equal(names_table_rewrite(raw, 59, out, &e), -1);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.code, "InvalidTableName");
    assert_non_null(strstr(e.message, "-aaaa"));
    assert_non_null(strstr(e.message, "65 characters"));

    /* a valid-looking but over-long name is rewritten, and still too long */
    memset(raw, 'b', 150);
    err_clear(&e);
    assert_int_equal(names_table_rewrite(raw, 150, out, &e), -1);
    assert_string_equal(e.code, "InvalidTableName");
    assert_non_null(strstr(e.message, "157 characters"));
    assert_true(strlen(e.message) < 250); /* the long name is shortened in the message */
}

static void test_table_valid(void **state) {
    (void)state;
    char long_name[NAMES_TABLE_MAX + 2];
    memset(long_name, 'x', sizeof long_name);
    assert_true(names_table_valid("a", 1));
    assert_true(names_table_valid("Users_2", 7));
    assert_true(names_table_valid(long_name, NAMES_TABLE_MAX));
    assert_false(names_table_valid(long_name, NAMES_TABLE_MAX + 1));
    assert_false(names_table_valid("", 0));
    assert_false(names_table_valid("_a", 2));
    assert_false(names_table_valid("1a", 2));
    assert_false(names_table_valid("a-b", 3));
    assert_false(names_table_valid("a b", 3));
    assert_false(names_table_valid("a\0b", 3));
}

static void test_field_reference_examples(void **state) {
    (void)state;
    FIELD("_id", "source_id");
    FIELD("_creationTime", "source_creationtime");
    FIELD("$foo", "source_foo");
    FIELD("caf\xc3\xa9", "source_cafe");
    FIELD("_airbyte_ab_id", "source_airbyte_ab_id");
    FIELD("_ab_cdc_deleted_at", "source_ab_cdc_deleted_at");
}

static void test_field_transliteration(void **state) {
    (void)state;
    FIELD("Stra\xc3\x9f" "e", "source_strasse");                      /* ß */
    FIELD("\xc3\x86r\xc3\xb8sk\xc3\xb8" "bing", "source_aeroskobing"); /* Æ ø */
    FIELD("\xc5\x93uvre", "source_oeuvre");                             /* œ */
    FIELD("\xc3\xbe" "orn", "source_thorn");                            /* þ */
    FIELD("\xc3\x90" "a\xc3\xb0", "source_dad");                        /* Ð ð */
    FIELD("\xc5\x81\xc3\xb3" "d\xc5\xba", "source_lodz");               /* Ł ó ź */
    FIELD("\xc3\x89T\xc3\x89", "source_ete");                           /* É */
    FIELD("\xc8\x99" "i\xc8\x9b", "source_sit");                        /* ș ț */
}

static void test_field_other_characters(void **state) {
    (void)state;
    FIELD("a\xe2\x82\xac" "b", "source_a_b");       /* € separates words */
    FIELD("a\xf0\x9f\x98\x80" "b", "source_ab");    /* an emoji vanishes, as in unidecode */
    FIELD("e\xcc\x81t\xcc\x81" "e", "source_ete");  /* combining accents vanish */
    FIELD("a\xff" "b", "source_a_b");               /* not UTF-8 */
    FIELD("a\xc3", "source_a");                     /* truncated sequence */
    FIELD("a\0b", "source_a_b");
    FIELD("\xc2\xb0" "C", "source_degc");           /* ° is "deg" */
    FIELD("", "source_");
}

static void test_field_kept(void **state) {
    (void)state;
    char big[NAMES_FIELD_MAX + 1];
    memset(big, 'k', sizeof big);
    assert_true(names_field_kept("hello world", 11));
    assert_true(names_field_kept("a-b.c", 5));
    assert_true(names_field_kept("Capital", 7));
    assert_true(names_field_kept("mid_$_ok", 8));
    assert_true(names_field_kept("", 0));
    assert_true(names_field_kept(big, NAMES_FIELD_MAX));
    assert_false(names_field_kept(big, NAMES_FIELD_MAX + 1));
    assert_false(names_field_kept("_x", 2));
    assert_false(names_field_kept("$x", 2));
    assert_false(names_field_kept("caf\xc3\xa9", 5));
    assert_false(names_field_kept("tab\there", 8));
    assert_false(names_field_kept("del\x7f", 4));
    assert_false(names_field_kept("a\0b", 3));
}

static void test_identifier(void **state) {
    (void)state;
    char long_id[NAMES_TABLE_MAX + 1];
    memset(long_id, 'i', sizeof long_id);
    assert_true(names_identifier("a", 1));
    assert_true(names_identifier("_a", 2));
    assert_true(names_identifier("A_1", 3));
    assert_true(names_identifier("__x__", 5));
    assert_true(names_identifier(long_id, NAMES_TABLE_MAX));
    assert_false(names_identifier(long_id, NAMES_TABLE_MAX + 1));
    assert_false(names_identifier("", 0));
    assert_false(names_identifier("_", 1));
    assert_false(names_identifier("___", 3));
    assert_false(names_identifier("1a", 2));
    assert_false(names_identifier("a b", 3));
    assert_false(names_identifier("a-b", 3));
    assert_false(names_identifier("a.b", 3));
}

static void test_slug_appends(void **state) {
    (void)state;
    buf b = BUF_INIT;
    buf_puts(&b, "x:");
    names_source_slug("_y", 2, &b);
    assert_string_equal(b.p, "x:source_y");
    buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_rewrite_reference_examples),
        cmocka_unit_test(test_table_rewrite_separators),
        cmocka_unit_test(test_table_rewrite_result_is_valid),
        cmocka_unit_test(test_table_too_long_after_rewrite),
        cmocka_unit_test(test_table_valid),
        cmocka_unit_test(test_field_reference_examples),
        cmocka_unit_test(test_field_transliteration),
        cmocka_unit_test(test_field_other_characters),
        cmocka_unit_test(test_field_kept),
        cmocka_unit_test(test_identifier),
        cmocka_unit_test(test_slug_appends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

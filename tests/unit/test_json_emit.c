/*
 * test_json_emit.c — the JSON emitters: Convex's encodings (docs §1.3, §1.4), string
 * escaping, shortest float text, and round trips through the reader.
 */
#include "unit.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "json/emit.h"
#include "json/reader.h"

static arena *ta;
static buf out;

static int setup(void **state) {
    (void)state;
    ta = arena_new();
    buf_reset(&out);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    arena_free(ta);
    buf_free(&out);
    return 0;
}

static val vint(int64_t i) { return (val){.type = VAL_INT, .u.i = i}; }
static val vfloat(double d) { return (val){.type = VAL_FLOAT, .u.f = d}; }

static const char *convex(val v) {
    buf_reset(&out);
    json_emit_convex(&v, &out);
    return out.p;
}

static const char *clean(val v) {
    buf_reset(&out);
    json_emit_clean(&v, &out);
    return out.p;
}

static const char *dbl(double d) {
    buf_reset(&out);
    json_emit_double(d, &out);
    return out.p;
}

static const char *str(const char *s, size_t n) {
    buf_reset(&out);
    json_emit_string(s, n, &out);
    return out.p;
}

static double nan_with_bits(uint64_t bits) {
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* Structural equality; floats compare by bits. */
static int same(const val *a, const val *b) {
    if (a->type != b->type) return 0;
    switch (a->type) {
    case VAL_NULL: return 1;
    case VAL_BOOL: return a->u.b == b->u.b;
    case VAL_FLOAT: return memcmp(&a->u.f, &b->u.f, sizeof(double)) == 0;
    case VAL_INT: return a->u.i == b->u.i;
    case VAL_STRING: return a->u.s.len == b->u.s.len && memcmp(a->u.s.p, b->u.s.p, a->u.s.len) == 0;
    case VAL_ARRAY:
        if (a->u.a.n != b->u.a.n) return 0;
        for (size_t i = 0; i < a->u.a.n; i++)
            if (!same(a->u.a.items[i], b->u.a.items[i])) return 0;
        return 1;
    case VAL_OBJECT:
        if (a->u.o.n != b->u.o.n) return 0;
        for (size_t i = 0; i < a->u.o.n; i++) {
            const val_field *x = &a->u.o.fields[i], *y = &b->u.o.fields[i];
            if (x->key_len != y->key_len || memcmp(x->key, y->key, x->key_len) != 0) return 0;
            if (!same(x->v, y->v)) return 0;
        }
        return 1;
    }
    return 0;
}

static val *reparse(const char *text, int flags) {
    val *v = NULL;
    tr_err e = {0};
    if (json_parse(ta, text, strlen(text), 64, flags, &v, &e) != 0)
        fail_msg("%s does not parse: %s", text, e.message);
    return v;
}

static void test_convex_reference_encodings(void **state) {
    (void)state;
    assert_string_equal(convex(vint(1)), "{\"$integer\":\"AQAAAAAAAAA=\"}");
    assert_string_equal(convex(vint(0)), "{\"$integer\":\"AAAAAAAAAAA=\"}");
    assert_string_equal(convex(vint(-1)), "{\"$integer\":\"//////////8=\"}");
    assert_string_equal(convex(vint(INT64_MAX)), "{\"$integer\":\"/////////38=\"}");
    assert_string_equal(convex(vint(INT64_MIN)), "{\"$integer\":\"AAAAAAAAAIA=\"}");
    assert_string_equal(convex(vfloat(NAN)), "{\"$float\":\"AAAAAAAA+H8=\"}");
    assert_string_equal(convex(vfloat(INFINITY)), "{\"$float\":\"AAAAAAAA8H8=\"}");
    assert_string_equal(convex(vfloat(-INFINITY)), "{\"$float\":\"AAAAAAAA8P8=\"}");
    assert_string_equal(convex(vfloat(-0.0)), "{\"$float\":\"AAAAAAAAAIA=\"}");
    assert_string_equal(convex(vfloat(0.0)), "0");
    assert_string_equal(convex(vfloat(1.5)), "1.5");
}

static void test_clean_encodings(void **state) {
    (void)state;
    assert_string_equal(clean(vint(123)), "\"123\"");
    assert_string_equal(clean(vint(INT64_MIN)), "\"-9223372036854775808\"");
    assert_string_equal(clean(vint(INT64_MAX)), "\"9223372036854775807\"");
    assert_string_equal(clean(vfloat(NAN)), "\"NaN\"");
    assert_string_equal(clean(vfloat(INFINITY)), "\"Infinity\"");
    assert_string_equal(clean(vfloat(-INFINITY)), "\"-Infinity\"");
    assert_string_equal(clean(vfloat(-0.0)), "-0.0");
    assert_string_equal(clean(vfloat(0.0)), "0");
    assert_string_equal(clean(vfloat(3.0)), "3");
    assert_string_equal(clean(vfloat(0.1)), "0.1");
    assert_string_equal(clean(vfloat(1e300)), "1e+300");
}

static void test_containers_keep_order(void **state) {
    (void)state;
    const char *t = "{\"z\":[1,true,null,\"s\",{}],\"a\":{\"y\":[],\"b\":false},\"m\":-2.5}";
    val *v = reparse(t, 0);
    buf_reset(&out);
    json_emit_convex(v, &out);
    assert_string_equal(out.p, t);
    buf_reset(&out);
    json_emit_clean(v, &out);
    assert_string_equal(out.p, t);
}

static void test_double_shortest(void **state) {
    (void)state;
    assert_string_equal(dbl(0.1), "0.1");
    assert_string_equal(dbl(1.0 / 3), "0.3333333333333333");
    assert_string_equal(dbl(2.0 / 3), "0.6666666666666666");
    assert_string_equal(dbl(0.1 + 0.2), "0.30000000000000004");
    assert_string_equal(dbl(5e-324), "5e-324");
    assert_string_equal(dbl(1e21), "1e+21");
    assert_string_equal(dbl(-123456.75), "-123456.75");
    assert_string_equal(dbl(1.7976931348623157e308), "1.7976931348623157e+308");
    assert_string_equal(dbl(9007199254740992.0), "9007199254740992");
    /* above 2^53 an integer-looking float gets ".0" so it is not read back as int64 */
    assert_string_equal(dbl(9007199254740994.0), "9007199254740994.0");
    assert_string_equal(dbl(-9007199254740994.0), "-9007199254740994.0");
    /* integers take a shortcut that must print what %.15g prints */
    assert_string_equal(dbl(999999999999999.0), "999999999999999");
    assert_string_equal(dbl(1e15), "1e+15");
    assert_string_equal(dbl(-42.0), "-42");
    char want[32];
    srand(3);
    for (int i = 0; i < 100000; i++) {
        double d = (double)(rand() - RAND_MAX / 2) * (i % 3 ? 1 : 100000);
        snprintf(want, sizeof want, "%.15g", d);
        assert_string_equal(dbl(d), want);
    }
}

static void test_double_round_trips(void **state) {
    (void)state;
    srand(11);
    for (int i = 0; i < 200000; i++) {
        uint64_t bits = 0;
        for (int k = 0; k < 8; k++) bits = bits << 8 | (uint64_t)(rand() & 0xff);
        double d;
        memcpy(&d, &bits, sizeof d);
        if (!isfinite(d)) continue;
        const char *t = dbl(d);
        double back = strtod(t, NULL);
        if (memcmp(&back, &d, sizeof d) != 0) fail_msg("%.17g printed as %s", d, t);
        if (strlen(t) > 24) fail_msg("%s is too long", t);
    }
}

/* A number the parser read through its fast path keeps its decimal form, and prints
 * from it (json_emit_decimal): the text must be exactly json_emit_double's. */
static void test_double_from_its_decimal_form(void **state) {
    (void)state;
    static const char *const fixed[] = {
        "0.1",     "-0.5",     "1.5e300",  "123.456", "1e-22",    "9.99e22", "0.0001",
        "0.00001", "1e15",     "1e14",     "-2.50",   "100.0",    "12e-3",   "3.0e+2",
        "0.000123450", "999999999999999e7", "123456789012345e-22", "1E5", "0.0000"};
    char text[64], want[64];
    srand(17);
    for (int i = 0; i < 200000 + (int)(sizeof fixed / sizeof *fixed); i++) {
        if (i < (int)(sizeof fixed / sizeof *fixed)) {
            snprintf(text, sizeof text, "%s", fixed[i]);
        } else {
            /* up to 15 digits, a point somewhere or none, an exponent or none */
            int nd = 1 + rand() % 15, point = rand() % (nd + 1), k = 0;
            if (rand() % 2) text[k++] = '-';
            for (int j = 0; j < nd; j++) {
                if (j == point && j > 0) text[k++] = '.';
                text[k++] = (char)('0' + (j == 0 ? 1 + rand() % 9 : rand() % 10));
            }
            if (rand() % 2)
                k += snprintf(text + k, sizeof text - (size_t)k, "e%d", rand() % 41 - 20);
            text[k] = '\0';
        }
        val *v;
        tr_err e;
        assert_int_equal(json_parse(ta, text, strlen(text), 4, 0, &v, &e), 0);
        assert_int_equal(v->type, VAL_FLOAT);
        snprintf(want, sizeof want, "%s", dbl(strtod(text, NULL)));
        buf_reset(&out);
        json_emit_convex(v, &out);
        if (strcmp(out.p, want) != 0) fail_msg("%s printed as %s, not %s", text, out.p, want);
    }
}

static void test_string_escapes(void **state) {
    (void)state;
    assert_string_equal(str("a\"b\\c", 5), "\"a\\\"b\\\\c\"");
    assert_string_equal(str("\n\t\r\b\f", 5), "\"\\n\\t\\r\\b\\f\"");
    assert_string_equal(str("\x01\x1f\x7f", 3), "\"\\u0001\\u001f\x7f\"");
    assert_string_equal(str("a\0b", 3), "\"a\\u0000b\"");
    assert_string_equal(str("/", 1), "\"/\"");
    assert_string_equal(str("", 0), "\"\"");
    /* valid UTF-8 is kept byte for byte */
    assert_string_equal(str("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", 14),
                        "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"");
    /* what json_string_verbatim promises is written as it is */
    const char *verbatim[] = {"", "name", "a b/c~!", "\x7f"};
    for (size_t i = 0; i < sizeof verbatim / sizeof *verbatim; i++) {
        size_t n = strlen(verbatim[i]);
        assert_true(json_string_verbatim(verbatim[i], n));
        const char *text = str(verbatim[i], n);
        assert_int_equal(strlen(text), n + 2);
        assert_memory_equal(text + 1, verbatim[i], n);
    }
    assert_false(json_string_verbatim("a\"b", 3));
    assert_false(json_string_verbatim("a\\b", 3));
    assert_false(json_string_verbatim("a\nb", 3));
    assert_false(json_string_verbatim("a\0b", 3));
    assert_false(json_string_verbatim("caf\xC3\xA9", 5));
}

static void test_string_invalid_utf8_replaced(void **state) {
    (void)state;
    assert_string_equal(str("a\xff" "b", 3), "\"a\xEF\xBF\xBD" "b\"");
    assert_string_equal(str("\xC0\x80", 2), "\"\xEF\xBF\xBD\xEF\xBF\xBD\"");            /* overlong */
    assert_string_equal(str("\xED\xA0\x80", 3), "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""); /* surrogate */
    assert_string_equal(str("x\xE2\x82", 3), "\"x\xEF\xBF\xBD\xEF\xBF\xBD\"");          /* cut short */
    assert_string_equal(str("\xF4\x90\x80\x80", 4),
                        "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""); /* > U+10FFFF */
    /* whatever the bytes, the output reads back as JSON */
    char all[256];
    for (int i = 0; i < 256; i++) all[i] = (char)i;
    reparse(str(all, sizeof all), 0);
}

static void test_convex_round_trip(void **state) {
    (void)state;
    const char *t = "{\"i\":[{\"$integer\":\"AQAAAAAAAAA=\"},{\"$integer\":\"AAAAAAAAAIA=\"},"
                    "{\"$integer\":\"/////////38=\"},9007199254740993,-9007199254740993],"
                    "\"f\":[{\"$float\":\"AAAAAAAA+H8=\"},{\"$float\":\"AQAAAAAA+H8=\"},"
                    "{\"$float\":\"AAAAAAAA8H8=\"},{\"$float\":\"AAAAAAAA8P8=\"},-0,-0.0,0,"
                    "5e-324,2.2250738585072014e-308,1.7976931348623157e308,0.1,1e22,"
                    "9007199254740994.0,-1.5e-7],"
                    "\"s\":[\"\",\"a\\u0000b\",\"\\\"\\\\\\n\\u001f\",\"\\u00e9\\ud83d\\ude00\"],"
                    "\"o\":{\"nested\":{\"deeper\":[[[]]]},\"b\":true,\"n\":null}}";
    val *v = reparse(t, JSON_CONVEX);
    buf_reset(&out);
    json_emit_convex(v, &out);
    char *text = buf_steal(&out);
    val *back = reparse(text, JSON_CONVEX);
    assert_true(same(v, back));
    /* and emitting again gives the same text */
    json_emit_convex(back, &out);
    assert_string_equal(out.p, text);
    free(text);
    /* the NaN payload survives */
    val *f = val_get(back, "f");
    assert_true(isnan(f->u.a.items[1]->u.f));
    double want = nan_with_bits(0x7ff8000000000001ULL);
    assert_memory_equal(&f->u.a.items[1]->u.f, &want, sizeof want);
    assert_int_equal(val_get(back, "i")->u.a.items[3]->type, VAL_INT);
    assert_int_equal(f->u.a.items[12]->type, VAL_FLOAT);
}

static void test_clean_output_is_json(void **state) {
    (void)state;
    const char *t = "[{\"$integer\":\"AQAAAAAAAAA=\"},{\"$float\":\"AAAAAAAA+H8=\"},"
                    "{\"$float\":\"AAAAAAAA8P8=\"},{\"$float\":\"AAAAAAAAAIA=\"},9007199254740993,1e300]";
    val *v = reparse(t, JSON_CONVEX);
    buf_reset(&out);
    json_emit_clean(v, &out);
    assert_string_equal(out.p, "[\"1\",\"NaN\",\"-Infinity\",-0.0,\"9007199254740993\",1e+300]");
    val *back = reparse(out.p, 0);
    assert_int_equal(back->u.a.n, 6);
    assert_int_equal(back->u.a.items[3]->type, VAL_FLOAT);
    assert_true(signbit(back->u.a.items[3]->u.f));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_convex_reference_encodings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clean_encodings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_containers_keep_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_double_shortest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_double_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_double_from_its_decimal_form, setup, teardown),
        cmocka_unit_test_setup_teardown(test_string_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_string_invalid_utf8_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_convex_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clean_output_is_json, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

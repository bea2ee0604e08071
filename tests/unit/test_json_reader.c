/*
 * test_json_reader.c — the JSON reader: numbers (SPEC §2.3), streaming of the messages
 * array, element limits, chunking, UTF-8 and the Convex-encoded special objects.
 */
#include "unit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "json/emit.h"
#include "json/reader.h"

/* ---- helpers ---- */

static arena *ta;

static int setup(void **state) {
    (void)state;
    ta = arena_new();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    arena_free(ta);
    return 0;
}

static val *parse_ok(const char *text) {
    val *v = NULL;
    tr_err e = {0};
    int rc = json_parse(ta, text, strlen(text), 64, 0, &v, &e);
    if (rc != 0) fail_msg("parse of %s failed: %s", text, e.message);
    assert_non_null(v);
    return v;
}

static tr_err parse_err(const char *text, size_t n, int flags) {
    val *v = NULL;
    tr_err e = {0};
    assert_int_equal(json_parse(ta, text, n, 64, flags, &v, &e), -1);
    return e;
}

static void assert_bad_json(const char *text, const char *needle) {
    tr_err e = parse_err(text, strlen(text), 0);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.code, "BadJsonBody");
    if (needle && !strstr(e.message, needle)) fail_msg("message \"%s\" lacks \"%s\"", e.message, needle);
}

static void assert_same_double(double a, double b) {
    if (memcmp(&a, &b, sizeof a) != 0) fail_msg("%.17g != %.17g", a, b);
}

/* Streaming run: the body fed in chunks of `chunk` bytes (0 = all at once); every element
 * and then the root are written, in convex JSON, one per line, into out. */
typedef struct run {
    buf out;
    arena *elem;
    size_t calls;
    size_t abort_at; /* index whose callback fails, or SIZE_MAX */
} run;

static int on_elem(void *ctx, size_t index, val *element, tr_err *e) {
    run *r = ctx;
    r->calls++;
    if (index == r->abort_at) return err_set(e, 400, "InvalidRecord", "element %zu refused", index);
    buf_printf(&r->out, "%zu:", index);
    json_emit_convex(element, &r->out);
    buf_putc(&r->out, '\n');
    arena_reset(r->elem);
    return 0;
}

static json_reader_opts stream_opts(run *r) {
    json_reader_opts o = {.max_depth = 8,
                          .stream_key = "messages",
                          .element_max_depth = 4,
                          .element_max_fields = 4,
                          .element_max_array = 4,
                          .on_element = on_elem,
                          .ctx = r};
    return o;
}

/* Returns 0 or -1; out holds the elements, then "root:" + root. */
static int stream_body(json_reader_opts o, run *r, const char *body, size_t n, size_t chunk,
                       tr_err *e) {
    o.ctx = r;
    r->elem = arena_new();
    json_reader *jr = json_reader_new(&o, ta, r->elem);
    int rc = 0;
    for (size_t off = 0; rc == 0 && off < n; off += chunk ? chunk : n) {
        size_t len = chunk && n - off > chunk ? chunk : n - off;
        rc = json_reader_feed(jr, body + off, len, e);
    }
    val *root = NULL;
    if (rc == 0) rc = json_reader_finish(jr, &root, e);
    if (rc == 0) {
        buf_printf(&r->out, "root:");
        json_emit_convex(root, &r->out);
        buf_printf(&r->out, " streamed=%d", json_reader_streamed(jr));
    }
    json_reader_free(jr);
    arena_free(r->elem);
    return rc;
}

static tr_err stream_err(const json_reader_opts *o, const char *body) {
    run r = {BUF_INIT, NULL, 0, SIZE_MAX};
    tr_err e = {0};
    assert_int_equal(stream_body(*o, &r, body, strlen(body), 0, &e), -1);
    buf_free(&r.out);
    return e;
}

static void assert_err(tr_err e, const char *code, const char *message) {
    assert_int_equal(e.status, 400);
    assert_string_equal(e.code, code);
    assert_string_equal(e.message, message);
}

/* ---- numbers ---- */

static void test_int64_rule(void **state) {
    (void)state;
    val *v = parse_ok("[9007199254740993, 9007199254740992, -9223372036854775808,"
                      " 9223372036854775808, 9223372036854775807, -9007199254740993,"
                      " -9007199254740992, 1234567890123456789, 12345678901234567890123, 0, -0]");
    assert_int_equal(v->type, VAL_ARRAY);
    assert_int_equal(v->u.a.n, 11);
    val **it = v->u.a.items;
    assert_int_equal(it[0]->type, VAL_INT);
    assert_true(it[0]->u.i == 9007199254740993LL);
    assert_int_equal(it[1]->type, VAL_FLOAT);
    assert_same_double(it[1]->u.f, 9007199254740992.0);
    assert_int_equal(it[2]->type, VAL_INT);
    assert_true(it[2]->u.i == INT64_MIN);
    assert_int_equal(it[3]->type, VAL_FLOAT);
    assert_same_double(it[3]->u.f, 9223372036854775808.0);
    assert_int_equal(it[4]->type, VAL_INT);
    assert_true(it[4]->u.i == INT64_MAX);
    assert_int_equal(it[5]->type, VAL_INT);
    assert_true(it[5]->u.i == -9007199254740993LL);
    assert_int_equal(it[6]->type, VAL_FLOAT);
    assert_same_double(it[6]->u.f, -9007199254740992.0);
    assert_int_equal(it[7]->type, VAL_INT);
    assert_true(it[7]->u.i == 1234567890123456789LL);
    assert_int_equal(it[8]->type, VAL_FLOAT);
    assert_same_double(it[8]->u.f, 1.2345678901234568e22);
    assert_int_equal(it[9]->type, VAL_FLOAT);
    assert_same_double(it[9]->u.f, 0.0);
    assert_int_equal(it[10]->type, VAL_FLOAT);
    assert_same_double(it[10]->u.f, -0.0);
}

static void test_non_integer_literals_are_floats(void **state) {
    (void)state;
    /* a fraction or exponent makes a float even where the value is a big integer */
    val *v = parse_ok("[9007199254740993.0, 1e18, 1.5, -2.5e-3]");
    for (size_t i = 0; i < v->u.a.n; i++) assert_int_equal(v->u.a.items[i]->type, VAL_FLOAT);
    assert_same_double(v->u.a.items[0]->u.f, 9007199254740992.0);
    assert_same_double(v->u.a.items[1]->u.f, 1e18);
    assert_same_double(v->u.a.items[3]->u.f, -2.5e-3);
}

/* Every float must be the correctly rounded double, whichever path parsed it. */
static void test_floats_match_strtod(void **state) {
    (void)state;
    static const char *fixed[] = {
        "0.1", "0.3", "123.456", "1e22", "1e23", "9007199254740993.5", "2.2250738585072014e-308",
        "4.9e-324", "1e-400", "1.7976931348623157e308", "0.000001234", "123456789012345.6",
        "1234567890123456.7", "3.141592653589793238462643383279", "1E+2", "-0.0", "7e-23",
        "100000000000000000000000000000000000000000000000000000000000000000000000001",
    };
    char text[128];
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
        val *v = parse_ok(fixed[i]);
        assert_int_equal(v->type, VAL_FLOAT);
        assert_same_double(v->u.f, strtod(fixed[i], NULL));
    }
    srand(7);
    for (int i = 0; i < 20000; i++) {
        double m = (double)rand() / RAND_MAX * 1e6;
        int prec = 1 + rand() % 18, ex = rand() % 60 - 30;
        if (i % 2) snprintf(text, sizeof text, "%.*fe%d", prec, m, ex);
        else snprintf(text, sizeof text, "%.*g", prec, m * pow(10, ex));
        val *v = parse_ok(text);
        if (v->type != VAL_FLOAT) continue; /* an int64 literal */
        if (memcmp(&v->u.f, &(double){strtod(text, NULL)}, sizeof(double)) != 0)
            fail_msg("%s read as %.17g", text, v->u.f);
        if (i % 1000 == 0) arena_reset(ta);
    }
    assert_same_double(parse_ok("5e-324")->u.f, 4.9406564584124654e-324);
}

static void test_number_out_of_range(void **state) {
    (void)state;
    tr_err e = parse_err("1e400", 5, 0);
    assert_err(e, "BadJsonBody", "number out of range: 1e400");
    e = parse_err("[1, -1e400]", 11, 0);
    assert_err(e, "BadJsonBody", "[1]: number out of range: -1e400");
    e = parse_err("{\"a\": 2e308}", 12, 0);
    assert_err(e, "BadJsonBody", "a: number out of range: 2e308");
    /* underflow is not an error */
    assert_same_double(parse_ok("1e-400")->u.f, 0.0);
}

/* ---- structure ---- */

static void test_values_and_strings(void **state) {
    (void)state;
    val *v = parse_ok("{\"n\":null,\"t\":true,\"f\":false,\"s\":\"a\\u0000b\\n\\\"\","
                      "\"k\\u0000\":[],\"o\":{},\"u\":\"\\u00e9\\ud83d\\ude00\"}");
    assert_int_equal(v->type, VAL_OBJECT);
    assert_int_equal(v->u.o.n, 7);
    assert_int_equal(val_get(v, "n")->type, VAL_NULL);
    assert_int_equal(val_get(v, "t")->u.b, 1);
    assert_int_equal(val_get(v, "f")->u.b, 0);
    val *s = val_get(v, "s");
    assert_int_equal(s->u.s.len, 5);
    assert_memory_equal(s->u.s.p, "a\0b\n\"", 5);
    const val_field *k = &v->u.o.fields[4];
    assert_int_equal(k->key_len, 2);
    assert_memory_equal(k->key, "k\0", 2);
    assert_int_equal(k->v->type, VAL_ARRAY);
    assert_int_equal(k->v->u.a.n, 0);
    assert_int_equal(val_get(v, "o")->u.o.n, 0);
    val *u = val_get(v, "u");
    assert_int_equal(u->u.s.len, 6);
    assert_memory_equal(u->u.s.p, "\xC3\xA9\xF0\x9F\x98\x80", 6);
}

static void test_duplicate_keys_last_wins_first_position(void **state) {
    (void)state;
    val *v = parse_ok("{\"a\":1,\"b\":2,\"a\":3}");
    assert_int_equal(v->u.o.n, 2);
    assert_string_equal(v->u.o.fields[0].key, "a");
    assert_same_double(v->u.o.fields[0].v->u.f, 3);
    assert_string_equal(v->u.o.fields[1].key, "b");
    /* a big object takes the hashed path */
    buf b = BUF_INIT;
    buf_puts(&b, "{");
    for (int i = 0; i < 100; i++) buf_printf(&b, "\"k%d\":%d,", i % 40, i);
    buf_puts(&b, "\"k0\":\"last\"}");
    v = parse_ok(b.p);
    buf_free(&b);
    assert_int_equal(v->u.o.n, 40);
    for (int i = 0; i < 40; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        assert_string_equal(v->u.o.fields[i].key, key);
    }
    assert_string_equal(v->u.o.fields[0].v->u.s.p, "last");
    assert_same_double(v->u.o.fields[39].v->u.f, 79);
}

static void test_nesting_limit(void **state) {
    (void)state;
    val *v = NULL;
    tr_err e = {0};
    assert_int_equal(json_parse(ta, "[[{\"a\":[1]}]]", 13, 4, 0, &v, &e), 0);
    assert_int_equal(json_parse(ta, "[[{\"a\":[[1]]}]]", 15, 4, 0, &v, &e), -1);
    assert_err(e, "BadJsonBody", "JSON nested too deeply");
}

static void test_syntax_errors(void **state) {
    (void)state;
    assert_bad_json("{\"a\" 1}", "invalid JSON at byte");
    assert_bad_json("{} x", "invalid JSON");
    assert_bad_json("{} 1", "trailing garbage");
    assert_bad_json("[1] [2]", "invalid JSON");
    assert_bad_json("/* c */ {}", "invalid JSON");
    assert_bad_json("[01]", "invalid JSON");
    assert_bad_json("{'a':1}", "invalid JSON");
    tr_err e = parse_err("[1,", 3, 0);
    assert_err(e, "BadJsonBody", "unexpected end of JSON");
    e = parse_err("", 0, 0);
    assert_err(e, "BadJsonBody", "unexpected end of JSON");
    e = parse_err("tru", 3, 0);
    assert_err(e, "BadJsonBody", "unexpected end of JSON");
    e = parse_err("{\"a\":\"x", 7, 0);
    assert_err(e, "BadJsonBody", "unexpected end of JSON");
    /* messages are one line */
    e = parse_err("[1,]", 4, 0);
    assert_null(strchr(e.message, '\n'));
}

static void test_invalid_utf8_rejected(void **state) {
    (void)state;
    assert_bad_json("[\"a\xff\"]", "invalid");
    assert_bad_json("[\"\xC0\x80\"]", "invalid UTF-8");            /* overlong NUL */
    assert_bad_json("[\"\xED\xA0\x80\"]", "invalid UTF-8");         /* raw surrogate */
    assert_bad_json("[\"\xF4\x90\x80\x80\"]", "invalid UTF-8");     /* above U+10FFFF */
    assert_bad_json("{\"\xE0\x80\xAF\":1}", "invalid UTF-8 in a key"); /* overlong '/' */
    assert_bad_json("[\"\\ud800\"]", "unpaired UTF-16 surrogate");
    assert_bad_json("[\"\\udc00\"]", "unpaired UTF-16 surrogate");
    assert_bad_json("[\"\\ud800x\"]", "unpaired UTF-16 surrogate");
    assert_bad_json("[\"\\ud800\\u0041\"]", "unpaired UTF-16 surrogate");
    assert_bad_json("[\"\\ud800\\n\"]", "unpaired UTF-16 surrogate");
    /* an escaped backslash before "u" is no \u escape */
    val *v = parse_ok("[\"\\\\ud800\", \"\\u20ac\"]");
    assert_int_equal(v->u.a.items[0]->u.s.len, 6);
    assert_memory_equal(v->u.a.items[1]->u.s.p, "\xE2\x82\xAC", 3);
}

/* ---- Convex-encoded input ---- */

static void test_convex_decoding(void **state) {
    (void)state;
    const char *t = "[{\"$integer\":\"AQAAAAAAAAA=\"},{\"$integer\":\"//////////8=\"},"
                    "{\"$integer\":\"AAAAAAAAAIA=\"},{\"$float\":\"AAAAAAAA+H8=\"},"
                    "{\"$float\":\"AAAAAAAA8H8=\"},{\"$float\":\"AAAAAAAA8P8=\"},"
                    "{\"$float\":\"AAAAAAAAAIA=\"},{\"$integer\":\"AQAAAAAAAAA=\",\"x\":1}]";
    val *v = NULL;
    tr_err e = {0};
    assert_int_equal(json_parse(ta, t, strlen(t), 16, JSON_CONVEX, &v, &e), 0);
    val **it = v->u.a.items;
    assert_int_equal(it[0]->type, VAL_INT);
    assert_true(it[0]->u.i == 1);
    assert_true(it[1]->u.i == -1);
    assert_true(it[2]->u.i == INT64_MIN);
    assert_int_equal(it[3]->type, VAL_FLOAT);
    assert_true(isnan(it[3]->u.f));
    assert_true(isinf(it[4]->u.f) && it[4]->u.f > 0);
    assert_true(isinf(it[5]->u.f) && it[5]->u.f < 0);
    assert_same_double(it[6]->u.f, -0.0);
    assert_int_equal(it[7]->type, VAL_OBJECT); /* two keys: an ordinary object */
    /* without the flag the objects stay objects */
    assert_int_equal(parse_ok(t)->u.a.items[0]->type, VAL_OBJECT);
}

static void test_convex_malformed(void **state) {
    (void)state;
    static const char *bad[] = {
        "{\"$integer\":\"AQAA\"}",             /* 3 bytes */
        "{\"$integer\":\"AQAAAAAAAAAA\"}",     /* 9 bytes */
        "{\"$integer\":5}",                    /* not a string */
        "{\"$integer\":\"AQAAAAAA AAA=\"}",    /* not base64 */
        "{\"$float\":\"AAAAAAAA8D8=\"}",       /* 1.0 must be a plain number */
        "{\"$float\":\"AAAAAAAAAAA=\"}",       /* +0 too */
        "{\"a\":[{\"$float\":null}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tr_err e = parse_err(bad[i], strlen(bad[i]), JSON_CONVEX);
        assert_int_equal(e.status, 400);
        assert_string_equal(e.code, "BadJsonBody");
    }
    tr_err e = parse_err(bad[6], strlen(bad[6]), JSON_CONVEX);
    assert_string_equal(e.message, "a[0]: $float must be base64 of 8 bytes");
}

/* ---- streaming ---- */

static const char sample[] =
    "{\"tables\": {\"t\": {\"primaryKey\": [[\"id\"]], \"jsonSchema\": null}},\n"
    " \"messages\": [{\"tableName\": \"t\", \"data\": {\"id\": 9007199254740993, \"s\": \"\\u00e9\\ud83d\\ude00 x\"}},\n"
    "   {\"tableName\": \"t\", \"data\": {\"id\": -1.5e3, \"a\": [true, false, null], \"id\": 2}},\n"
    "   7, \"str\", []],\n"
    " \"after\": [1, {\"x\": \"y\"}]}";

static const char sample_out[] =
    "0:{\"tableName\":\"t\",\"data\":{\"id\":{\"$integer\":\"AQAAAAAAIAA=\"},\"s\":\"\xC3\xA9\xF0\x9F\x98\x80 x\"}}\n"
    "1:{\"tableName\":\"t\",\"data\":{\"id\":2,\"a\":[true,false,null]}}\n"
    "2:7\n"
    "3:\"str\"\n"
    "4:[]\n"
    "root:{\"tables\":{\"t\":{\"primaryKey\":[[\"id\"]],\"jsonSchema\":null}},\"after\":[1,{\"x\":\"y\"}]}"
    " streamed=1";

static void test_stream_elements_and_root(void **state) {
    (void)state;
    run r = {BUF_INIT, NULL, 0, SIZE_MAX};
    json_reader_opts o = stream_opts(&r);
    tr_err e = {0};
    assert_int_equal(stream_body(o, &r, sample, strlen(sample), 0, &e), 0);
    assert_string_equal(r.out.p, sample_out);
    buf_free(&r.out);
}

static void test_stream_every_split_point(void **state) {
    (void)state;
    size_t n = strlen(sample);
    for (size_t chunk = 1; chunk <= n; chunk++) {
        run r = {BUF_INIT, NULL, 0, SIZE_MAX};
        json_reader_opts o = stream_opts(&r);
        tr_err e = {0};
        if (stream_body(o, &r, sample, n, chunk, &e) != 0) fail_msg("chunk %zu: %s", chunk, e.message);
        if (strcmp(r.out.p, sample_out) != 0) fail_msg("chunk %zu gave %s", chunk, r.out.p);
        buf_free(&r.out);
        arena_reset(ta);
    }
    /* two chunks, split at every byte */
    for (size_t cut = 0; cut <= n; cut++) {
        run r = {BUF_INIT, arena_new(), 0, SIZE_MAX};
        json_reader_opts o = stream_opts(&r);
        json_reader *jr = json_reader_new(&o, ta, r.elem);
        tr_err e = {0};
        val *root = NULL;
        assert_int_equal(json_reader_feed(jr, sample, cut, &e), 0);
        assert_int_equal(json_reader_feed(jr, sample + cut, n - cut, &e), 0);
        assert_int_equal(json_reader_finish(jr, &root, &e), 0);
        buf_puts(&r.out, "root:");
        json_emit_convex(root, &r.out);
        buf_printf(&r.out, " streamed=%d", json_reader_streamed(jr));
        if (strcmp(r.out.p, sample_out) != 0) fail_msg("cut %zu gave %s", cut, r.out.p);
        json_reader_free(jr);
        arena_free(r.elem);
        buf_free(&r.out);
        arena_reset(ta);
    }
}

static void test_stream_key_absent(void **state) {
    (void)state;
    run r = {BUF_INIT, NULL, 0, SIZE_MAX};
    json_reader_opts o = stream_opts(&r);
    tr_err e = {0};
    const char *body = "{\"tables\":{},\"x\":{\"messages\":[1]}}";
    assert_int_equal(stream_body(o, &r, body, strlen(body), 0, &e), 0);
    assert_string_equal(r.out.p, "root:{\"tables\":{},\"x\":{\"messages\":[1]}} streamed=0");
    assert_int_equal(r.calls, 0);
    buf_free(&r.out);
}

static void test_stream_shape_errors(void **state) {
    (void)state;
    run r = {BUF_INIT, NULL, 0, SIZE_MAX};
    json_reader_opts o = stream_opts(&r);
    assert_err(stream_err(&o, "{\"messages\": {}}"), "BadJsonBody", "messages: expected an array");
    assert_err(stream_err(&o, "{\"messages\": null}"), "BadJsonBody", "messages: expected an array");
    assert_err(stream_err(&o, "{\"messages\": [], \"messages\": []}"), "BadJsonBody",
               "messages: duplicate key");
    assert_err(stream_err(&o, "[{\"messages\": []}]"), "BadJsonBody",
               "expected a JSON object, got an array");
    assert_err(stream_err(&o, "5"), "BadJsonBody", "expected a JSON object, got a number");
    assert_err(stream_err(&o, "{\"messages\": [{\"a\": 1}, {\"a\": "), "BadJsonBody",
               "unexpected end of JSON");
    assert_err(stream_err(&o, "{\"messages\": [1, \"\\udc00\"]}"), "BadJsonBody",
               "messages[1]: invalid \\u escape: unpaired UTF-16 surrogate");
    assert_err(stream_err(&o, "{\"messages\": [{\"data\": {\"x\": 1e999}}]}"), "BadJsonBody",
               "messages[0].data.x: number out of range: 1e999");
    /* outside the element, max_depth applies */
    assert_err(stream_err(&o, "{\"t\": [[[[[[[[1]]]]]]]]}"), "BadJsonBody", "JSON nested too deeply");
}

static void test_element_limits(void **state) {
    (void)state;
    run r = {BUF_INIT, NULL, 0, SIZE_MAX};
    json_reader_opts o = stream_opts(&r);
    /* depth: the element is level 1, so four nested containers are allowed */
    tr_err e = {0};
    const char *ok = "{\"messages\": [{\"a\": {\"b\": [{\"c\": 1}]}}]}";
    assert_int_equal(stream_body(o, &r, ok, strlen(ok), 0, &e), 0);
    buf_free(&r.out);
    assert_err(stream_err(&o, "{\"messages\": [1, {\"a\": {\"b\": [{\"c\": []}]}}]}"),
               "InvalidDocumentError", "messages[1].a.b[0].c: value is nested more than 4 levels deep");
    /* fields: distinct keys count, duplicates do not */
    assert_err(stream_err(&o, "{\"messages\": [{}, {}, {\"data\": {\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5}}]}"),
               "TooManyFieldsError", "messages[2].data: object has more than 4 fields");
    assert_err(stream_err(&o, "{\"messages\": [{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,"
                              "\"h\":8,\"i\":9,\"j\":10}]}"),
               "TooManyFieldsError", "messages[0]: object has more than 4 fields");
    const char *dups = "{\"messages\": [{\"a\":1,\"b\":2,\"a\":3,\"b\":4,\"a\":5,\"b\":6,\"a\":7,"
                       "\"b\":8,\"a\":9,\"c\":10,\"d\":11,\"a\":12}]}";
    assert_int_equal(stream_body(o, &r, dups, strlen(dups), 0, &e), 0);
    assert_non_null(strstr(r.out.p, "0:{\"a\":12,\"b\":8,\"c\":10,\"d\":11}\n"));
    buf_free(&r.out);
    /* arrays */
    assert_err(stream_err(&o, "{\"messages\": [{\"data\": {\"tags\": [1, 2, 3, 4, [5]]}}]}"),
               "ArrayTooLong", "messages[0].data.tags: array has more than 4 elements");
    /* the streamed array itself and arrays outside elements have no element limit */
    const char *many = "{\"messages\": [1, 2, 3, 4, 5, 6], \"x\": [1, 2, 3, 4, 5, 6]}";
    r.calls = 0;
    assert_int_equal(stream_body(o, &r, many, strlen(many), 0, &e), 0);
    assert_int_equal(r.calls, 6);
    buf_free(&r.out);
}

static void test_on_element_abort(void **state) {
    (void)state;
    run r = {BUF_INIT, arena_new(), 0, 1};
    json_reader_opts o = stream_opts(&r);
    json_reader *jr = json_reader_new(&o, ta, r.elem);
    tr_err e = {0};
    const char *body = "{\"messages\": [1, 2, 3, 4]}";
    assert_int_equal(json_reader_feed(jr, body, 19, &e), -1);
    assert_err(e, "InvalidRecord", "element 1 refused");
    assert_int_equal(r.calls, 2);
    /* the reader stays failed */
    tr_err e2 = {0};
    assert_int_equal(json_reader_feed(jr, body + 19, strlen(body) - 19, &e2), -1);
    assert_string_equal(e2.code, "InvalidRecord");
    val *root = NULL;
    assert_int_equal(json_reader_finish(jr, &root, &e2), -1);
    assert_int_equal(r.calls, 2);
    assert_string_equal(r.out.p, "0:1\n");
    json_reader_free(jr);
    arena_free(r.elem);
    buf_free(&r.out);
}

/* The root arena must not grow with the streamed elements. */
static void test_stream_memory_stays_flat(void **state) {
    (void)state;
    run r = {BUF_INIT, arena_new(), 0, SIZE_MAX};
    json_reader_opts o = stream_opts(&r);
    json_reader *jr = json_reader_new(&o, ta, r.elem);
    tr_err e = {0};
    const char *head = "{\"messages\": [";
    const char *msg = "{\"tableName\": \"table\", \"data\": {\"name\": \"a fairly long string value\"}},";
    assert_int_equal(json_reader_feed(jr, head, strlen(head), &e), 0);
    size_t before = arena_used(ta);
    for (int i = 0; i < 20000; i++) {
        assert_int_equal(json_reader_feed(jr, msg, strlen(msg), &e), 0);
        buf_reset(&r.out);
        assert_true(arena_used(r.elem) == 0);
    }
    assert_int_equal(json_reader_feed(jr, "1]}", 3, &e), 0);
    val *root = NULL;
    assert_int_equal(json_reader_finish(jr, &root, &e), 0);
    assert_true(arena_used(ta) - before < 256);
    assert_int_equal(root->u.o.n, 0);
    assert_int_equal(r.calls, 20001);
    json_reader_free(jr);
    arena_free(r.elem);
    buf_free(&r.out);
}


/* A token longer than any valid document could need is refused while it streams in,
 * instead of being buffered and re-scanned for every chunk. */
static int count_field(void *ctx, const char *key, size_t key_len, val *value, tr_err *e) {
    (void)key, (void)key_len, (void)value, (void)e;
    (*(int *)ctx)++;
    return 0;
}

static void test_huge_token_refused_early(void **state) {
    (void)state;
    arena *ea = arena_new();
    int fields = 0;
    json_reader_opts o = {.stream_key = "messages", .on_root_field = count_field, .ctx = &fields};
    json_reader *r = json_reader_new(&o, ta, ea);
    tr_err e;
    err_clear(&e);
    const char *head = "{\"tables\":{},\"messages\":[{\"data\":\"";
    assert_int_equal(json_reader_feed(r, head, strlen(head), &e), 0);
    assert_int_equal(fields, 1); /* "tables" was handed out as soon as it was complete */
    char chunk[65536];
    memset(chunk, 'a', sizeof chunk);
    int rc = 0;
    size_t fed = 0;
    while (rc == 0 && fed < 20u * 1024 * 1024) {
        rc = json_reader_feed(r, chunk, sizeof chunk, &e);
        fed += sizeof chunk;
    }
    assert_int_equal(rc, -1);
    assert_string_equal(e.code, "ValueTooLargeError");
    assert_true(fed >= JSON_TOKEN_MAX && fed < JSON_TOKEN_MAX + sizeof chunk);
    json_reader_free(r);

    /* whitespace between tokens is no token: 12 MiB of it is fine */
    r = json_reader_new(&o, ta, ea);
    assert_int_equal(json_reader_feed(r, "{\"tables\":", 10, &e), 0);
    memset(chunk, ' ', sizeof chunk);
    for (fed = 0; fed < 12u * 1024 * 1024; fed += sizeof chunk)
        assert_int_equal(json_reader_feed(r, chunk, sizeof chunk, &e), 0);
    assert_int_equal(json_reader_feed(r, "{},\"messages\":[]}", 17, &e), 0);
    val *root;
    assert_int_equal(json_reader_finish(r, &root, &e), 0);
    json_reader_free(r);
    arena_free(ea);
}

/* The limit holds to the byte for a string full of escaped quotes and backslashes (so a
 * tracker that took an escaped quote for the end would miss it), and for a number, after
 * 3 MiB of short strings (every quote counts), fed in chunks that end between a backslash
 * and the quote it escapes (the escape carries over) or at odd places. */
typedef struct token_case {
    char *text;
    size_t len;
} token_case;

static token_case long_token(size_t token_len, int number) {
    static const char head[] = "{\"messages\":[";
    static const char filler[] = "{\"k\":\"v\",\"n\":[12,\"\"],\"s\":\"quoted\"},";
    const char *last = number ? "{\"data\":" : "{\"data\":\"", *tail = number ? "}]}" : "\"}]}";
    /* raw: ab\\e: ]f\n,x\"a stretch of plain text\t (the reader's fast way takes stretches
     * of 16 bytes and more between backslashes) */
    static const char unit[] = "ab\\\\e: ]f\\n,x\\\"a stretch of plain text\\t";
    const size_t fillers = 3u * 1024 * 1024 / strlen(filler), ul = strlen(unit);
    token_case t;
    t.text = malloc(strlen(head) + fillers * strlen(filler) + strlen(last) + token_len +
                    strlen(tail) + 1);
    assert_non_null(t.text);
    size_t at = 0;
    memcpy(t.text, head, strlen(head));
    at += strlen(head);
    for (size_t i = 0; i < fillers; i++, at += strlen(filler))
        memcpy(t.text + at, filler, strlen(filler));
    memcpy(t.text + at, last, strlen(last));
    at += strlen(last);
    size_t end = number ? at + token_len : at - 1 + token_len; /* the opening quote counts */
    while (!number && at + ul <= end) {
        memcpy(t.text + at, unit, ul);
        at += ul;
    }
    memset(t.text + at, number ? '7' : 'x', end - at);
    memcpy(t.text + end, tail, strlen(tail) + 1);
    t.len = end + strlen(tail);
    return t;
}

/* Feeds t in chunks of about `chunk` bytes, each cut between a backslash and the quote
 * it escapes when after_backslash is set; returns the error code, "" when all of it was
 * accepted. */
static const char *feed_token_case(const token_case *t, size_t chunk, int after_backslash) {
    static char code[64];
    arena *ea = arena_new();
    json_reader_opts o = {.stream_key = "messages"};
    json_reader *r = json_reader_new(&o, ta, ea);
    tr_err e;
    err_clear(&e);
    int rc = 0;
    size_t at = 0;
    while (rc == 0 && at < t->len) {
        size_t n = t->len - at < chunk ? t->len - at : chunk;
        if (after_backslash) {
            const char *b = memmem(t->text + at + n - 1, t->len - at - n + 1, "\\\"", 2);
            if (b) n = (size_t)(b - (t->text + at)) + 1;
        }
        rc = json_reader_feed(r, t->text + at, n, &e);
        at += n;
    }
    val *root;
    if (rc == 0) rc = json_reader_finish(r, &root, &e);
    snprintf(code, sizeof code, "%s", rc == 0 ? "" : e.code);
    json_reader_free(r);
    arena_free(ea);
    return code;
}

static void test_token_limit_exact_with_escapes(void **state) {
    (void)state;
    size_t chunks[] = {1u << 20, (1u << 20) + 7};
    for (int number = 0; number < 2; number++) {
        token_case fits = long_token(JSON_TOKEN_MAX, number);
        token_case over = long_token(JSON_TOKEN_MAX + 1, number);
        for (size_t i = 0; i < sizeof chunks / sizeof *chunks; i++) {
            for (int after_backslash = 0; after_backslash < 2; after_backslash++) {
                /* a number that long is out of range, but not refused for its length */
                assert_string_equal(feed_token_case(&fits, chunks[i], after_backslash),
                                    number ? "BadJsonBody" : "");
                assert_string_equal(feed_token_case(&over, chunks[i], after_backslash),
                                    "ValueTooLargeError");
            }
        }
        free(fits.text);
        free(over.text);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_int64_rule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_non_integer_literals_are_floats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_floats_match_strtod, setup, teardown),
        cmocka_unit_test_setup_teardown(test_number_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_values_and_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_keys_last_wins_first_position, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nesting_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syntax_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_utf8_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_convex_decoding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_convex_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_elements_and_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_every_split_point, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_key_absent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_shape_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_element_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_on_element_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_memory_stays_flat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_huge_token_refused_early, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_limit_exact_with_escapes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

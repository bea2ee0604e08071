/*
 * test_shape.c — inferred shapes (store/shape.h): what stored documents teach a shape,
 * and the JSON Schema a client of /api/json_schemas reads from it.
 *
 * Schemas are checked by parsing them back and looking at the parts a consumer uses
 * (property types, "required", descriptions), not by comparing whole strings.
 */
#include "unit.h"

#include "store/shape.h"

#include <stdio.h>
#include <stdlib.h>

#include "json/emit.h"
#include "json/reader.h"
#include "util/arena.h"
#include "util/buf.h"

static int add(shape *s, const char *doc) {
    int changed = 0;
    if (shape_add_doc(s, doc, strlen(doc), &changed) != 0) fail_msg("not a document: %s", doc);
    return changed;
}

/* The schema of s, parsed (in arena a). */
static val *schema(const shape *s, int delta, int clean, arena *a) {
    buf out = BUF_INIT;
    shape_json_schema(s, "t", delta, clean, &out);
    val *v;
    tr_err e;
    if (json_parse(a, out.p, out.len, 0, 0, &v, &e) != 0)
        fail_msg("schema is not JSON (%s): %s", e.message, out.p);
    buf_free(&out);
    return v;
}

static val *path(val *v, const char *a, const char *b, const char *c) {
    const char *keys[] = {a, b, c};
    for (int i = 0; i < 3 && keys[i] && v; i++) v = val_get(v, keys[i]);
    if (!v) fail_msg("missing %s.%s.%s", a, b ? b : "", c ? c : "");
    return v;
}

static const char *str(val *v) {
    assert_int_equal(v->type, VAL_STRING);
    return v->u.s.p;
}

/* The "required" list of an object schema, joined with commas. */
static const char *required(val *obj, char *out, size_t n) {
    val *r = val_get(obj, "required");
    assert_non_null(r);
    out[0] = '\0';
    for (size_t i = 0; i < r->u.a.n; i++) {
        strncat(out, i ? "," : "", n - strlen(out) - 1);
        strncat(out, str(r->u.a.items[i]), n - strlen(out) - 1);
    }
    return out;
}

static void types_and_optional_fields(void **state) {
    (void)state;
    arena *a = arena_new();
    char req[256];
    shape *s = shape_new();
    assert_int_equal(add(s, "{\"a\":1,\"b\":\"x\",\"c\":true}"), 1);
    assert_int_equal(add(s, "{\"a\":2,\"b\":\"y\",\"c\":false}"), 0);
    assert_int_equal(add(s, "{\"c\":null,\"a\":null,\"d\":[]}"), 1);
    val *sc = schema(s, 0, 1, a);
    assert_string_equal(str(val_get(sc, "$schema")), "http://json-schema.org/draft-07/schema#");
    assert_string_equal(str(val_get(sc, "type")), "object");
    assert_string_equal(required(sc, req, sizeof req), "_creationTime,_id,a,c");
    assert_int_equal(path(sc, "additionalProperties", NULL, NULL)->u.b, 0);
    val *props = val_get(sc, "properties");
    assert_string_equal(str(path(props, "_id", "$description", NULL)), "Id(t)");
    assert_string_equal(str(path(props, "_creationTime", "type", NULL)), "number");
    val *any = path(props, "a", "anyOf", NULL);
    assert_int_equal(any->u.a.n, 2);
    assert_string_equal(str(val_get(any->u.a.items[0], "type")), "null");
    assert_string_equal(str(val_get(any->u.a.items[1], "type")), "number");
    assert_string_equal(str(path(props, "b", "type", NULL)), "string");
    assert_int_equal(path(props, "c", "anyOf", NULL)->u.a.n, 2);
    /* only empty arrays seen: no element is allowed */
    assert_int_equal(path(props, "d", "items", NULL)->type, VAL_BOOL);
    assert_int_equal(path(props, "d", "items", NULL)->u.b, 0);
    shape_free(s);
    arena_free(a);
}

static void int64_and_special_floats_per_format(void **state) {
    (void)state;
    arena *a = arena_new();
    shape *s = shape_new();
    add(s, "{\"i\":{\"$integer\":\"AQAAAAAAAAA=\"},\"z\":{\"$float\":\"AAAAAAAAAIA=\"},"
           "\"n\":{\"$float\":\"AAAAAAAA+H8=\"},\"f\":1.5}");
    val *clean = val_get(schema(s, 0, 1, a), "properties");
    assert_string_equal(str(path(clean, "i", "type", NULL)), "string");
    assert_string_equal(str(path(clean, "i", "$description", NULL)),
                        "int64 represented as base10 string");
    /* -0 is a plain number in the json format; NaN is a string there */
    assert_string_equal(str(path(clean, "z", "type", NULL)), "number");
    val *nan = path(clean, "n", "anyOf", NULL);
    assert_string_equal(str(val_get(nan->u.a.items[1], "type")), "string");
    assert_string_equal(str(path(clean, "f", "type", NULL)), "number");

    val *enc = val_get(schema(s, 0, 0, a), "properties");
    assert_string_equal(str(path(enc, "i", "type", NULL)), "object");
    assert_non_null(path(enc, "i", "properties", "$integer"));
    val *z = path(enc, "z", "anyOf", NULL);
    assert_non_null(path(z->u.a.items[1], "properties", "$float", NULL));
    shape_free(s);
    arena_free(a);
}

static void nested_objects_and_arrays(void **state) {
    (void)state;
    arena *a = arena_new();
    char req[256];
    shape *s = shape_new();
    add(s, "{\"o\":{\"x\":[1,2],\"y\":{\"deep\":\"v\"}},\"l\":[{\"k\":1},{\"k\":2,\"m\":3}]}");
    add(s, "{\"o\":{\"x\":[]}}");
    val *props = val_get(schema(s, 0, 1, a), "properties");
    val *o = val_get(props, "o");
    assert_string_equal(str(val_get(o, "type")), "object");
    assert_string_equal(required(o, req, sizeof req), "x");
    assert_string_equal(str(path(path(o, "properties", "x", "items"), "type", NULL, NULL)),
                        "number");
    val *y = path(o, "properties", "y", "properties");
    assert_string_equal(str(path(y, "deep", "type", NULL)), "string");
    val *items = path(props, "l", "items", NULL);
    assert_string_equal(required(items, req, sizeof req), "k");
    assert_non_null(path(items, "properties", "m", NULL));
    shape_free(s);
    arena_free(a);
}

static void escaped_field_names_round_trip(void **state) {
    (void)state;
    arena *a = arena_new();
    shape *s = shape_new();
    add(s, "{\"a\\\"b\":1,\"c\\\\d\":2,\"tab\\tx\":3}");
    val *props = val_get(schema(s, 0, 1, a), "properties");
    assert_non_null(val_get(props, "a\"b"));
    assert_non_null(val_get(props, "c\\d"));
    assert_non_null(val_get(props, "tab\tx"));
    shape_free(s);
    arena_free(a);
}

static void delta_schema_adds_metadata(void **state) {
    (void)state;
    arena *a = arena_new();
    char req[256];
    val *sc = schema(NULL, 1, 1, a);
    val *props = val_get(sc, "properties");
    assert_int_equal(props->u.o.n, 6);
    assert_string_equal(str(path(props, "_ts", "type", NULL)), "integer");
    assert_string_equal(str(path(props, "_deleted", "type", NULL)), "boolean");
    assert_string_equal(str(path(props, "_table", "type", NULL)), "string");
    assert_string_equal(str(path(props, "_component", "type", NULL)), "string");
    assert_string_equal(required(sc, req, sizeof req), "_creationTime,_id");
    /* an empty table without deltaSchema: just the system fields */
    assert_int_equal(val_get(schema(NULL, 0, 1, a), "properties")->u.o.n, 2);
    arena_free(a);
}

static void persistent_form_round_trips(void **state) {
    (void)state;
    shape *s = shape_new();
    add(s, "{\"a\":1,\"q\\\"\":[{\"x\":{\"$integer\":\"AQAAAAAAAAA=\"}}],\"o\":{\"p\":null}}");
    add(s, "{\"a\":\"s\",\"o\":{}}");
    buf w1 = BUF_INIT, w2 = BUF_INIT, s1 = BUF_INIT, s2 = BUF_INIT;
    shape_write(s, &w1);
    shape *back;
    tr_err e;
    assert_int_equal(shape_read(w1.p, w1.len, &back, &e), 0);
    shape_write(back, &w2);
    assert_string_equal(w1.p, w2.p);
    shape_json_schema(s, "t", 1, 0, &s1);
    shape_json_schema(back, "t", 1, 0, &s2);
    assert_string_equal(s1.p, s2.p);
    /* what was learned keeps counting: the same document again changes nothing */
    assert_int_equal(add(back, "{\"a\":\"s\",\"o\":{}}"), 0);
    shape *damaged;
    assert_int_equal(shape_read("{\"t\":\"x\"}", 9, &damaged, &e), -1);
    assert_int_equal(e.status, 500);
    assert_null(damaged);
    shape_free(back);
    shape_free(s);
    buf_free(&w1);
    buf_free(&w2);
    buf_free(&s1);
    buf_free(&s2);
}

/* Documents merged through batch shapes give the same shape as one by one. */
static void merging_batches_equals_adding_documents(void **state) {
    (void)state;
    const char *docs[] = {
        "{\"a\":1,\"o\":{\"x\":1,\"y\":[1]}}",
        "{\"a\":\"s\",\"o\":{\"x\":null},\"n\":{\"$integer\":\"AQAAAAAAAAA=\"}}",
        "{\"o\":{\"x\":2,\"z\":[{\"q\":true}]},\"l\":[]}",
        "{\"a\":2,\"o\":{\"x\":3},\"l\":[{\"$float\":\"AAAAAAAAAIA=\"}]}",
    };
    size_t n = sizeof docs / sizeof docs[0];
    for (size_t split = 0; split <= n; split++) {
        shape *one = shape_new(), *table = shape_new(), *b1 = shape_new(), *b2 = shape_new();
        for (size_t i = 0; i < n; i++) add(i < split ? b1 : b2, docs[i]);
        for (size_t i = 0; i < n; i++) add(one, docs[i]);
        int changed = 0;
        shape_merge(table, b1, &changed);
        assert_int_equal(changed, split > 0);
        shape_merge(table, b2, &changed);
        buf x = BUF_INIT, y = BUF_INIT;
        shape_json_schema(one, "t", 1, 0, &x);
        shape_json_schema(table, "t", 1, 0, &y);
        assert_string_equal(x.p, y.p);
        changed = 0;
        shape_merge(table, b1, &changed);
        shape_merge(table, b2, &changed);
        assert_int_equal(changed, 0);
        buf_free(&x);
        buf_free(&y);
        shape_free(one);
        shape_free(table);
        shape_free(b1);
        shape_free(b2);
    }
}

static void too_many_fields_make_an_open_object(void **state) {
    (void)state;
    arena *a = arena_new();
    shape *s = shape_new();
    char doc[64];
    for (int i = 0; i < SHAPE_MAX_FIELDS + 10; i++) {
        snprintf(doc, sizeof doc, "{\"k%d\":%d}", i, i);
        add(s, doc);
    }
    val *sc = schema(s, 0, 1, a);
    assert_int_equal(val_get(sc, "additionalProperties")->u.b, 1);
    assert_int_equal(val_get(sc, "properties")->u.o.n, SHAPE_MAX_FIELDS + 2);
    /* once open, another new field is no news */
    assert_int_equal(add(s, "{\"another\":1}"), 0);
    shape_free(s);
    arena_free(a);
}

/* Random documents as Convex JSON text: every value type, the special floats, nested
 * objects and arrays, field names that need escaping, fields present in some documents
 * and not others. */
static unsigned rnd(unsigned *seed, unsigned n) {
    *seed = *seed * 1103515245u + 12345u;
    return (*seed >> 16) % n;
}

static void random_value(unsigned *seed, int depth, buf *out) {
    static const char *const scalars[] = {
        "null", "true", "false", "12", "-3.25", "1e300", "0", "-0", "\"s\"", "\"q\\\"\\n\"",
        "{\"$integer\":\"AQAAAAAAAAA=\"}", "{\"$float\":\"AAAAAAAAAIA=\"}",
        "{\"$float\":\"AAAAAAAA+H8=\"}", "0.1000000000000000055511151231257827",
        "123456789012345678901234567890",
    };
    static const char *const names[] = {"a", "b", "c", "k\\\"q", "k\\\\b", "\xc3\xbc", "t\\t"};
    unsigned kind = depth > 3 ? 0 : rnd(seed, 4);
    if (kind < 2) {
        buf_puts(out, scalars[rnd(seed, sizeof scalars / sizeof *scalars)]);
    } else if (kind == 2) {
        buf_putc(out, '[');
        for (unsigned i = 0, n = rnd(seed, 4); i < n; i++) {
            if (i) buf_putc(out, ',');
            random_value(seed, depth + 1, out);
        }
        buf_putc(out, ']');
    } else {
        buf_putc(out, '{');
        unsigned used = 0;
        for (unsigned i = 0, n = rnd(seed, 5); i < n; i++) {
            unsigned k = rnd(seed, sizeof names / sizeof *names);
            if (used & 1u << k) continue;
            used |= 1u << k;
            if (used != 1u << k) buf_putc(out, ',');
            buf_printf(out, "\"%s\":", names[k]);
            random_value(seed, depth + 1, out);
        }
        buf_putc(out, '}');
    }
}

/* shape_add_val on a document's tree widens a shape exactly as shape_add_doc on the text
 * json_emit_convex writes for it, document after document. */
static void value_trees_widen_as_their_text(void **state) {
    (void)state;
    unsigned seed = 7;
    for (int table = 0; table < 200; table++) {
        shape *from_text = shape_new(), *from_tree = shape_new();
        for (int d = 0; d < 6; d++) {
            arena *a = arena_new();
            buf in = BUF_INIT, text = BUF_INIT;
            buf_putc(&in, '{');
            for (unsigned i = 0, n = 1 + rnd(&seed, 4); i < n; i++) {
                buf_printf(&in, "%s\"f%u\":", i ? "," : "", rnd(&seed, 6));
                random_value(&seed, 1, &in);
            }
            buf_putc(&in, '}');
            val *v;
            tr_err e;
            if (json_parse(a, in.p, in.len, 64, JSON_CONVEX, &v, &e) != 0)
                fail_msg("%s: %s", e.message, in.p);
            json_emit_convex(v, &text);
            int c1 = 0, c2 = 0;
            if (shape_add_doc(from_text, text.p, text.len, &c1) != 0) fail_msg("%s", text.p);
            shape_add_val(from_tree, v, &c2);
            assert_int_equal(c1, c2);
            buf x = BUF_INIT, y = BUF_INIT;
            shape_write(from_text, &x);
            shape_write(from_tree, &y);
            if (strcmp(x.p, y.p) != 0) fail_msg("after %s:\n text %s\n tree %s", text.p, x.p, y.p);
            buf_free(&x);
            buf_free(&y);
            buf_free(&in);
            buf_free(&text);
            arena_free(a);
        }
        shape_free(from_text);
        shape_free(from_tree);
    }
}

static void malformed_texts_are_refused(void **state) {
    (void)state;
    const char *bad[] = {"", "[1]", "{\"a\":", "{\"a\":1} x", "{\"a\" 1}", "{\"a\":\"x}",
                         "{\"$other\":\"x\"}", "{\"a\":[1,}", "{\"a\":tru}", "{\"a\":\"\\"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        shape *s = shape_new();
        int changed = 0;
        if (shape_add_doc(s, bad[i], strlen(bad[i]), &changed) != -1)
            fail_msg("accepted: %s", bad[i]);
        shape_free(s);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(types_and_optional_fields),
        cmocka_unit_test(int64_and_special_floats_per_format),
        cmocka_unit_test(nested_objects_and_arrays),
        cmocka_unit_test(escaped_field_names_round_trip),
        cmocka_unit_test(delta_schema_adds_metadata),
        cmocka_unit_test(persistent_form_round_trips),
        cmocka_unit_test(merging_batches_equals_adding_documents),
        cmocka_unit_test(too_many_fields_make_an_open_object),
        cmocka_unit_test(value_trees_widen_as_their_text),
        cmocka_unit_test(malformed_texts_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * fuzz_json_reader.c — libFuzzer target for the JSON reader and emitters.
 *
 * Input: byte 0 seeds the chunk sizes, byte 1 picks the element whose callback fails
 * (0xff: none), the rest is the body. The body is streamed in random-sized chunks with
 * stream key "messages" and small limits, then parsed whole with JSON_CONVEX. Besides
 * "no crash, no leak" (ASan), every tree that parses must survive emit → re-parse
 * unchanged, and the clean emitter's output must be JSON; otherwise the target aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json/emit.h"
#include "json/reader.h"

typedef struct fz {
    arena *elem;
    arena *scratch;
    buf text;
    size_t abort_at;
} fz;

static int fz_same(const val *a, const val *b) {
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
            if (!fz_same(a->u.a.items[i], b->u.a.items[i])) return 0;
        return 1;
    case VAL_OBJECT:
        if (a->u.o.n != b->u.o.n) return 0;
        for (size_t i = 0; i < a->u.o.n; i++) {
            const val_field *x = &a->u.o.fields[i], *y = &b->u.o.fields[i];
            if (x->key_len != y->key_len || memcmp(x->key, y->key, x->key_len) != 0) return 0;
            if (!fz_same(x->v, y->v)) return 0;
        }
        return 1;
    }
    return 0;
}

/* A tree read without JSON_CONVEX may hold {"$integer": ...} literally, which the convex
 * re-read would decode: such trees are not expected to round-trip. */
static int fz_has_special(const val *v) {
    if (v->type == VAL_ARRAY) {
        for (size_t i = 0; i < v->u.a.n; i++)
            if (fz_has_special(v->u.a.items[i])) return 1;
    } else if (v->type == VAL_OBJECT) {
        if (v->u.o.n == 1 && v->u.o.fields[0].key[0] == '$') return 1;
        for (size_t i = 0; i < v->u.o.n; i++)
            if (fz_has_special(v->u.o.fields[i].v)) return 1;
    }
    return 0;
}

static void fz_round_trip(fz *f, const val *v) {
    val *back = NULL;
    tr_err e;
    if (!fz_has_special(v)) {
        buf_reset(&f->text);
        json_emit_convex(v, &f->text);
        if (json_parse(f->scratch, f->text.p, f->text.len, 64, JSON_CONVEX, &back, &e) != 0) abort();
        if (!fz_same(v, back)) abort();
    }
    buf_reset(&f->text);
    json_emit_clean(v, &f->text);
    if (json_parse(f->scratch, f->text.p, f->text.len, 64, 0, &back, &e) != 0) abort();
    arena_reset(f->scratch);
}

static int fz_element(void *ctx, size_t index, val *element, tr_err *e) {
    fz *f = ctx;
    fz_round_trip(f, element);
    arena_reset(f->elem);
    if (index == f->abort_at) return err_set(e, 400, "Stopped", "element %zu refused", index);
    return 0;
}

static void fz_stream(fz *f, const uint8_t *p, size_t n, unsigned seed) {
    json_reader_opts o = {.max_depth = 8,
                          .stream_key = "messages",
                          .element_max_depth = 6,
                          .element_max_fields = 8,
                          .element_max_array = 8,
                          .on_element = fz_element,
                          .ctx = f};
    arena *root_arena = arena_new();
    json_reader *r = json_reader_new(&o, root_arena, f->elem);
    tr_err e;
    int rc = 0;
    size_t off = 0;
    while (rc == 0 && off < n) {
        seed = seed * 1103515245u + 12345u;
        size_t len = 1 + (seed >> 16) % 64;
        if (len > n - off) len = n - off;
        rc = json_reader_feed(r, p + off, len, &e);
        off += len;
    }
    val *root = NULL;
    if (rc == 0) rc = json_reader_finish(r, &root, &e);
    if (rc != 0 && e.status != 400) abort();
    if (rc == 0) {
        if (root->type != VAL_OBJECT || val_get(root, "messages")) abort();
        fz_round_trip(f, root);
    }
    json_reader_free(r);
    arena_free(root_arena);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    fz f = {arena_new(), arena_new(), BUF_INIT, data[1] == 0xff ? SIZE_MAX : data[1]};
    const uint8_t *body = data + 2;
    size_t n = size - 2;
    fz_stream(&f, body, n, data[0]);

    arena *a = arena_new();
    val *v = NULL;
    tr_err e;
    if (json_parse(a, (const char *)body, n, 16, JSON_CONVEX, &v, &e) == 0) {
        buf_reset(&f.text);
        json_emit_convex(v, &f.text);
        val *back = NULL;
        if (json_parse(f.scratch, f.text.p, f.text.len, 16, JSON_CONVEX, &back, &e) != 0) abort();
        if (!fz_same(v, back)) abort();
        arena_reset(f.scratch);
        fz_round_trip(&f, v);
    } else if (e.status != 400) {
        abort();
    }
    arena_free(a);
    arena_free(f.elem);
    arena_free(f.scratch);
    buf_free(&f.text);
    return 0;
}

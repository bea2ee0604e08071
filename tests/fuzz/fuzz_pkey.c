/*
 * fuzz_pkey.c — libFuzzer target for primary keys: pkey_parse (the `primaryKey` of an
 * import's stream and the fields of add_primary_key_indexes, both from clients) and the
 * index key encoding that dedup relies on.
 *
 * The input is one JSON text (Convex encodings allowed, so every float bit pattern and
 * int64 is reachable). Invariants:
 * - pkey_parse: an error is a 400 with one of the documented codes; a key that parses
 *   has 1..16 non-empty paths, its canonical text parses back to the same key, and a
 *   key add_primary_key_indexes accepts is accepted from a stream too.
 * - Encoding, when the input is an array: for every pair of its items, the encodings
 *   compare (memcmp, shorter first) as the values do by the order written out below
 *   independently of pkey.c, and neither is a proper prefix of the other (so the
 *   encodings of several key paths, one after the other, never collide).
 */
#include "json/reader.h"
#include "model/pkey.h"
#include "util/arena.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)           \
    do {                      \
        if (!(cond)) abort(); \
    } while (0)

#define MAX_PAIRS_ITEMS 24

/* ---- the value order pkey.h promises, written out apart from its encoder ---- */

/* Types ascending as pkey.h's tags: null < int64 < float64 < boolean < string < array <
 * object. */
static int type_rank(const val *v) {
    switch (v->type) {
    case VAL_NULL: return 0;
    case VAL_INT: return 1;
    case VAL_FLOAT: return 2;
    case VAL_BOOL: return 3;
    case VAL_STRING: return 4;
    case VAL_ARRAY: return 5;
    case VAL_OBJECT: return 6;
    }
    abort();
}

static int sign_of(int c) { return (c > 0) - (c < 0); }

static int cmp_u64(uint64_t a, uint64_t b) { return (a > b) - (a < b); }

/* IEEE 754 totalOrder: -NaN < -inf < ... < -0 < +0 < ... < +inf < +NaN; NaNs of one sign
 * by payload (larger payload further from zero). */
static int cmp_float(double a, double b) {
    int na = signbit(a) != 0, nb = signbit(b) != 0;
    if (na != nb) return na ? -1 : 1;
    uint64_t ba, bb;
    memcpy(&ba, &a, sizeof ba);
    memcpy(&bb, &b, sizeof bb);
    uint64_t ma = ba & ~((uint64_t)1 << 63), mb = bb & ~((uint64_t)1 << 63);
    /* Same sign: the magnitudes' bit patterns order as the magnitudes (NaNs above inf). */
    int c = cmp_u64(ma, mb);
    return na ? -c : c;
}

/* Bytes, unsigned, a proper prefix first. */
static int cmp_bytes(const char *a, size_t na, const char *b, size_t nb) {
    size_t n = na < nb ? na : nb;
    int c = n ? memcmp(a, b, n) : 0;
    if (c) return sign_of(c);
    return (na > nb) - (na < nb);
}

static int cmp_val(const val *a, const val *b) {
    int ra = type_rank(a), rb = type_rank(b);
    if (ra != rb) return ra < rb ? -1 : 1;
    switch (a->type) {
    case VAL_NULL: return 0;
    case VAL_INT: return (a->u.i > b->u.i) - (a->u.i < b->u.i);
    case VAL_FLOAT: return cmp_float(a->u.f, b->u.f);
    case VAL_BOOL: return (a->u.b != 0) - (b->u.b != 0);
    case VAL_STRING: return cmp_bytes(a->u.s.p, a->u.s.len, b->u.s.p, b->u.s.len);
    case VAL_ARRAY:
        for (size_t i = 0; i < a->u.a.n && i < b->u.a.n; i++) {
            int c = cmp_val(a->u.a.items[i], b->u.a.items[i]);
            if (c) return c;
        }
        return (a->u.a.n > b->u.a.n) - (a->u.a.n < b->u.a.n);
    case VAL_OBJECT:
        /* field by field in their order: the key, then the value */
        for (size_t i = 0; i < a->u.o.n && i < b->u.o.n; i++) {
            const val_field *fa = &a->u.o.fields[i], *fb = &b->u.o.fields[i];
            int c = cmp_bytes(fa->key, fa->key_len, fb->key, fb->key_len);
            if (!c) c = cmp_val(fa->v, fb->v);
            if (c) return c;
        }
        return (a->u.o.n > b->u.o.n) - (a->u.o.n < b->u.o.n);
    }
    abort();
}

static void check_encodings(const val *list) {
    size_t n = list->u.a.n < MAX_PAIRS_ITEMS ? list->u.a.n : MAX_PAIRS_ITEMS;
    buf enc[MAX_PAIRS_ITEMS];
    for (size_t i = 0; i < n; i++) {
        enc[i] = (buf)BUF_INIT;
        pkey_encode_value(list->u.a.items[i], &enc[i]);
        CHECK(enc[i].len > 0);
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            int want = cmp_val(list->u.a.items[i], list->u.a.items[j]);
            CHECK(cmp_bytes(enc[i].p, enc[i].len, enc[j].p, enc[j].len) == want);
            if (want && enc[i].len < enc[j].len)
                CHECK(memcmp(enc[i].p, enc[j].p, enc[i].len) != 0);
        }
    for (size_t i = 0; i < n; i++) buf_free(&enc[i]);
}

/* ---- pkey_parse ---- */

static int documented_code(const char *code) {
    static const char *const codes[] = {"BadJsonBody", "EmptyPrimaryKey", "InvalidPrimaryKey",
                                        "IndexFieldNameReserved"};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
        if (strcmp(code, codes[i]) == 0) return 1;
    return 0;
}

static void check_parse(const val *v, pkey_origin origin, arena *a) {
    pkey k;
    tr_err e;
    err_clear(&e);
    if (pkey_parse(v, origin, &k, &e) != 0) {
        CHECK(e.status == 400 && documented_code(e.code));
        CHECK(origin == PKEY_FROM_INDEX || strcmp(e.code, "IndexFieldNameReserved") != 0);
        return;
    }
    CHECK(k.npaths >= 1 && k.npaths <= PKEY_MAX_PATHS);
    for (size_t i = 0; i < k.npaths; i++) {
        CHECK(k.paths[i].ncomp >= 1 && k.paths[i].ncomp <= PKEY_MAX_COMPONENTS);
        for (size_t j = 0; j < k.paths[i].ncomp; j++) CHECK(k.paths[i].comp[j][0] != '\0');
    }
    buf text = BUF_INIT, again = BUF_INIT;
    pkey_canonical(&k, &text);
    val *back;
    CHECK(json_parse(a, text.p, text.len, 8, 0, &back, &e) == 0);
    pkey k2;
    CHECK(pkey_parse(back, origin, &k2, &e) == 0);
    pkey_canonical(&k2, &again);
    CHECK(again.len == text.len && memcmp(again.p, text.p, text.len) == 0);
    if (origin == PKEY_FROM_INDEX) {
        CHECK(pkey_parse(v, PKEY_FROM_STREAM, &k2, &e) == 0);
        buf_reset(&again);
        pkey_canonical(&k2, &again);
        CHECK(again.len == text.len && memcmp(again.p, text.p, text.len) == 0);
    }
    buf_free(&again);
    buf_free(&text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    arena *a = arena_new();
    val *v;
    tr_err e;
    err_clear(&e);
    if (json_parse(a, (const char *)data, size, 16, JSON_CONVEX, &v, &e) == 0) {
        check_parse(v, PKEY_FROM_STREAM, a);
        check_parse(v, PKEY_FROM_INDEX, a);
        if (v->type == VAL_ARRAY) check_encodings(v);
    }
    arena_free(a);
    return 0;
}

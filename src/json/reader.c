/*
 * reader.c — yajl push-parser callbacks that build value trees (see reader.h).
 *
 * Bodies are up to 64 MiB and arrive in network-sized chunks, so the builder keeps no
 * per-node heap allocation and no recursion:
 * - Open containers form a stack of levels. The children of every open level sit in one
 *   shared, reader-owned vector of slots (key + value by value), the innermost level's on
 *   top. When a container closes, its slots are copied into the arena in one allocation
 *   (the val nodes and the pointer/field array side by side) and popped. The vectors keep
 *   their capacity, so a steady stream of messages allocates nothing but arena space.
 * - Streaming mode: the array under the top-level stream key is a level that keeps no
 *   slots; each finished element is handed to on_element and forgotten. While that array
 *   is open every node goes into elem_arena, which the callback may reset: the reader
 *   holds no pointer into elem_arena once the callback has been called.
 * - Numbers come in as raw text (yajl_number) so int64 literals keep every digit; short
 *   literals take an exact fast path instead of strtod.
 * - Duplicate keys: the last value wins, at the position of the key's first occurrence
 *   (what JavaScript's JSON.parse does). Collapsing happens when the object closes, and,
 *   for element objects with a field limit, whenever the raw count reaches twice the
 *   limit, so memory stays bounded and the limit counts distinct keys exactly.
 * - yajl checks only the shape of UTF-8 and turns \u escapes with unpaired surrogates
 *   into '?' or a wrong character. So every string is checked strictly (no overlongs,
 *   no surrogates, nothing past U+10FFFF), and the raw input is scanned for \u escapes
 *   (a memchr for '\\', cheap) so that unpaired surrogates are refused, not mangled.
 * - A limit of 0 means no limit (max_depth too).
 */
#include "json/reader.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <yajl/yajl_parse.h>

#include "util/buf.h"
#include "util/utf8.h"
#include "util/xalloc.h"

#define JR_BAD "BadJsonBody"
#define JR_PATH_MAX 200 /* longest location prefix in an error message */
#define JR_KEY_SHOWN 64 /* bytes of one key shown in a location */
#define JR_TWO53 9007199254740992ULL
#define JR_PLAIN_MIN 16 /* shortest stretch jr_track_plain takes (jr_track_tokens) */

typedef struct jr_slot {
    const char *key;
    size_t key_len;
    val v;
} jr_slot;

typedef struct jr_level {
    size_t start;        /* first slot of this container's children */
    const char *key;     /* pending key (objects) */
    size_t key_len;
    unsigned char is_obj;
    unsigned char in_elem;       /* inside a streamed element: element limits apply */
    unsigned char streamed;      /* the streamed array itself */
    unsigned char key_is_stream; /* pending key of the top-level object is stream_key */
} jr_level;

/* Escape scanner states (see jr_scan). */
enum { JR_ESC_NONE, JR_ESC_BACKSLASH, JR_ESC_HEX };

struct json_reader {
    yajl_handle h;
    json_reader_opts o;
    size_t stream_key_len;
    int flags;
    arena *root_arena;
    arena *elem_arena;
    arena *cur; /* where new nodes go: elem_arena while the streamed array is open */

    jr_level *lv;
    size_t nlv, cap_lv;
    jr_slot *sl;
    size_t nsl, cap_sl;
    size_t *hash; /* open-addressing table for collapsing duplicate keys */
    size_t cap_hash;

    size_t stream_lv; /* index of the streamed array's level while it is open */
    size_t elem_index;
    int streamed;
    int done;   /* the top-level value is complete */
    int failed; /* err holds the error; every later call repeats it */
    val *root;
    size_t fed; /* bytes fed before the current chunk, for error positions */
    tr_err err;

    int esc_state;
    int esc_nhex;
    unsigned esc_cp;
    int esc_want_low; /* a high surrogate was read; a \u low surrogate must follow */

    buf num; /* NUL-terminated copy of a long number for strtod */

    int tok_in_str;  /* token tracking (jr_track_tokens): inside a string */
    int tok_esc;     /* the previous string byte was a backslash */
    size_t tok_len;  /* bytes of the token that has not ended yet */
};

/* ---- errors ---- */

/* Where the value being started inside the first `upto` levels sits, e.g.
 * "messages[17].data.tags[3]"; empty at the top level. */
static void jr_path(const json_reader *r, size_t upto, char *out, size_t cap) {
    size_t pos = 0;
    out[0] = '\0';
    for (size_t i = 0; i < upto && pos < cap; i++) {
        const jr_level *l = &r->lv[i];
        int w;
        if (l->is_obj) {
            int shown = l->key_len > JR_KEY_SHOWN ? JR_KEY_SHOWN : (int)l->key_len;
            w = snprintf(out + pos, cap - pos, "%s%.*s", i ? "." : "", shown,
                         l->key ? l->key : "");
        } else {
            size_t end = i + 1 < r->nlv ? r->lv[i + 1].start : r->nsl;
            size_t idx = l->streamed ? r->elem_index : end - l->start;
            w = snprintf(out + pos, cap - pos, "[%zu]", idx);
        }
        if (w < 0) break;
        pos += (size_t)w;
    }
}

/* Records an error located at the child position of level upto-1; returns 0 so yajl
 * callbacks can `return jr_fail(...)` to cancel the parse. */
static int jr_fail(json_reader *r, size_t upto, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int jr_fail(json_reader *r, size_t upto, const char *code, const char *fmt, ...) {
    char where[JR_PATH_MAX + 1];
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    jr_path(r, upto, where, sizeof where);
    err_set(&r->err, 400, code, "%s%s%s", where, where[0] ? ": " : "", msg);
    r->failed = 1;
    return 0;
}

/* ---- building ---- */

static void jr_push_slot(json_reader *r, const char *key, size_t key_len, const val *v) {
    if (r->nsl == r->cap_sl) {
        r->cap_sl = r->cap_sl ? r->cap_sl * 2 : 256;
        r->sl = xrealloc(r->sl, r->cap_sl * sizeof *r->sl);
    }
    jr_slot *s = &r->sl[r->nsl++];
    s->key = key;
    s->key_len = key_len;
    s->v = *v;
}

static jr_level *jr_push_level(json_reader *r, int is_obj) {
    if (r->nlv == r->cap_lv) {
        r->cap_lv = r->cap_lv ? r->cap_lv * 2 : 32;
        r->lv = xrealloc(r->lv, r->cap_lv * sizeof *r->lv);
    }
    jr_level *l = &r->lv[r->nlv++];
    memset(l, 0, sizeof *l);
    l->start = r->nsl;
    l->is_obj = (unsigned char)is_obj;
    l->in_elem = r->stream_lv != SIZE_MAX;
    return l;
}

/* A finished value goes to its parent: the root, the element callback, or a slot. */
static int jr_put(json_reader *r, const val *v) {
    if (r->nlv == 0) {
        r->root = arena_alloc(r->root_arena, sizeof *r->root);
        *r->root = *v;
        r->done = 1;
        return 1;
    }
    jr_level *l = &r->lv[r->nlv - 1];
    if (!l->streamed) {
        jr_push_slot(r, l->is_obj ? l->key : NULL, l->is_obj ? l->key_len : 0, v);
        if (r->nlv == 1 && l->is_obj && r->o.stream_key && r->o.on_root_field) {
            /* slots move when they grow: hand out a copy that stays put */
            val *fv = arena_alloc(r->root_arena, sizeof *fv);
            *fv = *v;
            if (r->o.on_root_field(r->o.ctx, l->key, l->key_len, fv, &r->err) != 0) {
                if (r->err.status == 0) err_set(&r->err, 500, "InternalServerError", "import stopped");
                r->failed = 1;
                return 0;
            }
        }
        return 1;
    }
    if (r->o.on_element) {
        val *ev = arena_alloc(r->elem_arena, sizeof *ev);
        *ev = *v;
        if (r->o.on_element(r->o.ctx, r->elem_index, ev, &r->err) != 0) {
            if (r->err.status == 0) err_set(&r->err, 500, "InternalServerError", "import stopped");
            r->failed = 1;
            return 0;
        }
    }
    r->elem_index++;
    return 1;
}

static int jr_key_eq(const jr_slot *a, const jr_slot *b) {
    return a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0;
}

static size_t jr_key_hash(const char *k, size_t n) {
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)k[i]) * 1099511628211ULL;
    return (size_t)(h ^ (h >> 29));
}

/* Collapses duplicate keys among n slots in place; returns the new count. */
static size_t jr_dedup(json_reader *r, jr_slot *s, size_t n) {
    size_t out = 0;
    if (n < 2) return n;
    if (n <= 12) {
        for (size_t i = 0; i < n; i++) {
            size_t j = 0;
            while (j < out && !jr_key_eq(&s[j], &s[i])) j++;
            if (j < out) s[j].v = s[i].v;
            else s[out++] = s[i];
        }
        return out;
    }
    size_t cap = 32;
    while (cap < 2 * n) cap *= 2;
    if (cap > r->cap_hash) {
        free(r->hash);
        r->hash = xmalloc(cap * sizeof *r->hash);
        r->cap_hash = cap;
    }
    memset(r->hash, 0xff, cap * sizeof *r->hash);
    for (size_t i = 0; i < n; i++) {
        size_t h = jr_key_hash(s[i].key, s[i].key_len) & (cap - 1);
        while (r->hash[h] != SIZE_MAX && !jr_key_eq(&s[r->hash[h]], &s[i])) h = (h + 1) & (cap - 1);
        if (r->hash[h] != SIZE_MAX) {
            s[r->hash[h]].v = s[i].v;
        } else {
            s[out] = s[i];
            r->hash[h] = out++;
        }
    }
    return out;
}

/* ---- Convex-encoded special objects (JSON_CONVEX) ---- */

static int jr_b64_8(const val *v, unsigned char out[8]) {
    size_t len = 0;
    if (v->type != VAL_STRING) return -1;
    if (sodium_base642bin(out, 8, v->u.s.p, v->u.s.len, NULL, &len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 || len != 8)
        return -1;
    return 0;
}

static uint64_t jr_le64(const unsigned char b[8]) {
    uint64_t u = 0;
    for (int i = 7; i >= 0; i--) u = (u << 8) | b[i];
    return u;
}

/* Decodes {"$integer": b64} / {"$float": b64}. Returns 1 when decoded into *v, 0 when
 * the object is not one of them, -1 (error recorded) for a malformed payload. */
static int jr_convex_special(json_reader *r, const jr_slot *f, val *v) {
    unsigned char b[8];
    if (f->key_len == 8 && memcmp(f->key, "$integer", 8) == 0) {
        if (jr_b64_8(&f->v, b) < 0) {
            jr_fail(r, r->nlv - 1, JR_BAD, "$integer must be base64 of 8 bytes");
            return -1;
        }
        uint64_t u = jr_le64(b);
        v->type = VAL_INT;
        memcpy(&v->u.i, &u, 8);
        return 1;
    }
    if (f->key_len == 6 && memcmp(f->key, "$float", 6) == 0) {
        if (jr_b64_8(&f->v, b) < 0) {
            jr_fail(r, r->nlv - 1, JR_BAD, "$float must be base64 of 8 bytes");
            return -1;
        }
        uint64_t u = jr_le64(b);
        double d;
        memcpy(&d, &u, 8);
        if (!isnan(d) && !isinf(d) && !(d == 0 && signbit(d))) {
            jr_fail(r, r->nlv - 1, JR_BAD, "$float is only for NaN, Infinity and -0");
            return -1;
        }
        *v = (val){.type = VAL_FLOAT, .u.f = d};
        return 1;
    }
    return 0;
}

/* ---- closing containers ---- */

static int jr_close_object(json_reader *r) {
    jr_level *l = &r->lv[r->nlv - 1];
    size_t n = r->nsl > l->start ? jr_dedup(r, r->sl + l->start, r->nsl - l->start) : 0;
    size_t maxf = r->o.element_max_fields;
    if (l->in_elem && maxf && n > maxf)
        return jr_fail(r, r->nlv - 1, "TooManyFieldsError", "object has more than %zu fields", maxf);
    val v;
    int special = 0;
    if ((r->flags & JSON_CONVEX) && n == 1) {
        special = jr_convex_special(r, &r->sl[l->start], &v);
        if (special < 0) return 0;
    }
    if (!special) {
        v.type = VAL_OBJECT;
        v.u.o.n = n;
        v.u.o.fields = NULL;
        if (n) {
            val_field *fs = arena_alloc(r->cur, n * (sizeof(val_field) + sizeof(val)));
            val *vs = (val *)(fs + n);
            for (size_t i = 0; i < n; i++) {
                const jr_slot *s = &r->sl[l->start + i];
                vs[i] = s->v;
                fs[i].key = s->key;
                fs[i].key_len = s->key_len;
                fs[i].v = &vs[i];
            }
            v.u.o.fields = fs;
        }
    }
    r->nsl = l->start;
    r->nlv--;
    return jr_put(r, &v);
}

static int jr_close_array(json_reader *r) {
    jr_level *l = &r->lv[r->nlv - 1];
    if (l->streamed) {
        r->nlv--;
        r->stream_lv = SIZE_MAX;
        r->cur = r->root_arena;
        return 1;
    }
    size_t n = r->nsl - l->start;
    val v;
    v.type = VAL_ARRAY;
    v.u.a.n = n;
    v.u.a.items = NULL;
    if (n) {
        val **ps = arena_alloc(r->cur, n * (sizeof(val *) + sizeof(val)));
        val *vs = (val *)(ps + n);
        for (size_t i = 0; i < n; i++) {
            vs[i] = r->sl[l->start + i].v;
            ps[i] = &vs[i];
        }
        v.u.a.items = ps;
    }
    r->nsl = l->start;
    r->nlv--;
    return jr_put(r, &v);
}

/* ---- checks when a value starts ---- */

static int jr_begin(json_reader *r, val_type t) {
    if (r->nlv == 0) {
        if (r->o.stream_key && t != VAL_OBJECT)
            return jr_fail(r, 0, JR_BAD, "expected a JSON object, got %s", val_type_name(t));
        return 1;
    }
    const jr_level *l = &r->lv[r->nlv - 1];
    if (l->key_is_stream) {
        if (t != VAL_ARRAY) return jr_fail(r, r->nlv, JR_BAD, "expected an array");
        if (r->streamed) return jr_fail(r, r->nlv, JR_BAD, "duplicate key");
    }
    size_t maxa = r->o.element_max_array;
    if (!l->is_obj && l->in_elem && maxa && r->nsl - l->start >= maxa)
        return jr_fail(r, r->nlv - 1, "ArrayTooLong", "array has more than %zu elements", maxa);
    return 1;
}

static int jr_begin_container(json_reader *r, val_type t) {
    if (!jr_begin(r, t)) return 0;
    if (r->stream_lv != SIZE_MAX) {
        size_t depth = r->nlv - r->stream_lv;
        size_t maxd = r->o.element_max_depth;
        if (maxd && depth > maxd)
            return jr_fail(r, r->nlv, "InvalidDocumentError",
                           "value is nested more than %zu levels deep", maxd);
    } else if (r->o.max_depth && r->nlv + 1 > r->o.max_depth) {
        return jr_fail(r, 0, JR_BAD, "JSON nested too deeply");
    }
    return 1;
}

/* ---- numbers ---- */

static const double jr_pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                  1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                  1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Integer literal -?[0-9]+ that fits in uint64: exact int64/float64. Returns 1 when
 * handled, 0 when it needs strtod. */
static int jr_number_int(const char *s, size_t n, val *v) {
    int neg = s[0] == '-';
    size_t i = (size_t)neg;
    uint64_t m = 0;
    if (i == n || n - i > 19) return 0; /* 19 digits always fit in uint64 */
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        m = m * 10 + (uint64_t)(s[i] - '0');
    }
    if (m > JR_TWO53 && (neg ? m <= (uint64_t)INT64_MAX + 1 : m <= (uint64_t)INT64_MAX)) {
        v->type = VAL_INT;
        v->u.i = neg ? (m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m) : (int64_t)m;
        return 1;
    }
    if (m > JR_TWO53) return 0; /* beyond int64 only when 19 digits: round via strtod */
    *v = (val){.type = VAL_FLOAT, .u.f = neg ? -(double)m : (double)m};
    return 1;
}

/* Clinger's fast path: a mantissa below 2^53 and a power of ten up to 22 are both exact
 * doubles, so one multiplication or division rounds correctly. Returns 0 for anything
 * else (left to strtod). Sets *dec to the number's VAL_DEC (0 for zero). */
static int jr_number_fast(const char *s, size_t n, double *out, uint64_t *dec) {
    size_t i = 0;
    int neg = s[0] == '-';
    uint64_t m = 0;
    int digits = 0, frac = 0;
    long ex = 0;
    if (neg) i++;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        if (m || s[i] != '0') digits++;
        m = m * 10 + (uint64_t)(s[i] - '0');
        if (digits > 15) return 0;
    }
    if (i < n && s[i] == '.') {
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            if (m || s[i] != '0') digits++;
            m = m * 10 + (uint64_t)(s[i] - '0');
            frac++;
            if (digits > 15 || frac > 400) return 0;
        }
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        int eneg = 0;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) eneg = s[i++] == '-';
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            ex = ex * 10 + (s[i] - '0');
            if (ex > 100000) return 0;
        }
        if (eneg) ex = -ex;
    }
    if (i != n) return 0;
    long e10 = ex - frac;
    double d = (double)m;
    if (m != 0 && (e10 > 22 || e10 < -22)) return 0;
    if (m != 0 && e10 >= 0) d *= jr_pow10[e10];
    if (m != 0 && e10 < 0) d /= jr_pow10[-e10];
    *out = neg ? -d : d;
    *dec = m ? VAL_DEC(m, e10) : 0;
    return 1;
}

static int jr_number(json_reader *r, const char *s, size_t n, val *v) {
    if (jr_number_int(s, n, v)) return 1;
    *v = (val){.type = VAL_FLOAT};
    if (jr_number_fast(s, n, &v->u.f, &v->u.dec)) return 1;
    buf_reset(&r->num);
    buf_append(&r->num, s, n);
    v->u.f = strtod(r->num.p, NULL);
    if (isinf(v->u.f)) {
        int shown = n > 64 ? 64 : (int)n;
        return jr_fail(r, r->nlv, JR_BAD, "number out of range: %.*s%s", shown, s,
                       n > 64 ? "..." : "");
    }
    return 1;
}

/* ---- yajl callbacks ---- */

static int jr_cb_null(void *ctx) {
    json_reader *r = ctx;
    val v = {.type = VAL_NULL};
    return jr_begin(r, VAL_NULL) && jr_put(r, &v);
}

static int jr_cb_bool(void *ctx, int b) {
    json_reader *r = ctx;
    val v = {.type = VAL_BOOL, .u.b = b ? 1 : 0};
    return jr_begin(r, VAL_BOOL) && jr_put(r, &v);
}

static int jr_cb_number(void *ctx, const char *s, size_t n) {
    json_reader *r = ctx;
    val v;
    return jr_begin(r, VAL_FLOAT) && jr_number(r, s, n, &v) && jr_put(r, &v);
}

static int jr_cb_string(void *ctx, const unsigned char *s, size_t n) {
    json_reader *r = ctx;
    if (!jr_begin(r, VAL_STRING)) return 0;
    if (!utf8_valid(s, n)) return jr_fail(r, r->nlv, JR_BAD, "invalid UTF-8 in a string");
    val v = {.type = VAL_STRING};
    v.u.s.p = arena_strndup(r->cur, (const char *)s, n);
    v.u.s.len = n;
    return jr_put(r, &v);
}

static int jr_cb_key(void *ctx, const unsigned char *s, size_t n) {
    json_reader *r = ctx;
    jr_level *l = &r->lv[r->nlv - 1];
    size_t maxf = r->o.element_max_fields;
    l->key = NULL;
    l->key_len = 0;
    if (!utf8_valid(s, n)) return jr_fail(r, r->nlv - 1, JR_BAD, "invalid UTF-8 in a key");
    if (l->in_elem && maxf && r->nsl - l->start >= 2 * maxf) {
        r->nsl = l->start + jr_dedup(r, r->sl + l->start, r->nsl - l->start);
        if (r->nsl - l->start > maxf)
            return jr_fail(r, r->nlv - 1, "TooManyFieldsError", "object has more than %zu fields",
                           maxf);
    }
    l->key = arena_strndup(r->cur, (const char *)s, n);
    l->key_len = n;
    l->key_is_stream = r->nlv == 1 && r->o.stream_key && n == r->stream_key_len &&
                       memcmp(s, r->o.stream_key, n) == 0;
    return 1;
}

static int jr_cb_start_map(void *ctx) {
    json_reader *r = ctx;
    if (!jr_begin_container(r, VAL_OBJECT)) return 0;
    jr_push_level(r, 1);
    return 1;
}

static int jr_cb_end_map(void *ctx) { return jr_close_object(ctx); }

static int jr_cb_start_array(void *ctx) {
    json_reader *r = ctx;
    if (!jr_begin_container(r, VAL_ARRAY)) return 0;
    int stream = r->nlv == 1 && r->lv[0].key_is_stream;
    jr_level *l = jr_push_level(r, 0);
    if (stream) {
        l->streamed = 1;
        r->stream_lv = r->nlv - 1;
        r->streamed = 1;
        r->cur = r->elem_arena;
    }
    return 1;
}

static int jr_cb_end_array(void *ctx) { return jr_close_array(ctx); }

static const yajl_callbacks jr_callbacks = {
    .yajl_null = jr_cb_null,
    .yajl_boolean = jr_cb_bool,
    .yajl_number = jr_cb_number,
    .yajl_string = jr_cb_string,
    .yajl_start_map = jr_cb_start_map,
    .yajl_map_key = jr_cb_key,
    .yajl_end_map = jr_cb_end_map,
    .yajl_start_array = jr_cb_start_array,
    .yajl_end_array = jr_cb_end_array,
};

/* ---- \u escape scanner ---- */

static int jr_hex(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Follows escapes through the raw bytes (backslashes appear only inside strings in valid
 * JSON; anything else yajl rejects by itself). Returns n, or the offset of the byte that
 * proves a surrogate unpaired. State carries over between chunks. */
static size_t jr_scan(json_reader *r, const unsigned char *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (r->esc_state == JR_ESC_NONE) {
            if (r->esc_want_low) {
                if (c != '\\') return i;
                r->esc_state = JR_ESC_BACKSLASH;
                i++;
                continue;
            }
            const unsigned char *b = memchr(p + i, '\\', n - i);
            if (!b) return n;
            i = (size_t)(b - p) + 1;
            r->esc_state = JR_ESC_BACKSLASH;
        } else if (r->esc_state == JR_ESC_BACKSLASH) {
            if (c == 'u') {
                r->esc_state = JR_ESC_HEX;
                r->esc_nhex = 0;
                r->esc_cp = 0;
            } else {
                if (r->esc_want_low) return i;
                r->esc_state = JR_ESC_NONE;
            }
            i++;
        } else {
            int h = jr_hex(c);
            if (h < 0) {
                r->esc_state = JR_ESC_NONE;
                r->esc_want_low = 0;
                continue;
            }
            r->esc_cp = r->esc_cp << 4 | (unsigned)h;
            i++;
            if (++r->esc_nhex < 4) continue;
            r->esc_state = JR_ESC_NONE;
            int low = r->esc_cp >= 0xDC00 && r->esc_cp <= 0xDFFF;
            int high = r->esc_cp >= 0xD800 && r->esc_cp <= 0xDBFF;
            if (r->esc_want_low != low) return i - 1;
            r->esc_want_low = high;
        }
    }
    return n;
}

/* ---- driving yajl ---- */

static void jr_yajl_error(json_reader *r, const unsigned char *p, size_t n) {
    unsigned char *m = yajl_get_error(r->h, 0, p, n);
    char text[256];
    snprintf(text, sizeof text, "%s", m ? (const char *)m : "syntax error");
    if (m) yajl_free_error(r->h, m);
    for (char *c = text; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    size_t len = strlen(text);
    while (len && text[len - 1] == ' ') text[--len] = '\0';
    err_set(&r->err, 400, JR_BAD, "invalid JSON at byte %zu: %s",
            r->fed + yajl_get_bytes_consumed(r->h), text);
    r->failed = 1;
}

static int jr_parse(json_reader *r, const unsigned char *p, size_t n) {
    yajl_status st = yajl_parse(r->h, p, n);
    if (st == yajl_status_ok) return 0;
    if (st != yajl_status_client_canceled) jr_yajl_error(r, p, n);
    r->failed = 1;
    return -1;
}

static int jr_error_out(const json_reader *r, tr_err *e) {
    if (e) *e = r->err;
    return -1;
}

json_reader *json_reader_new(const json_reader_opts *o, arena *root_arena, arena *elem_arena) {
    json_reader *r = xcalloc(1, sizeof *r);
    r->o = *o;
    r->stream_key_len = o->stream_key ? strlen(o->stream_key) : 0;
    r->root_arena = root_arena;
    r->elem_arena = elem_arena;
    r->cur = root_arena;
    r->stream_lv = SIZE_MAX;
    r->h = yajl_alloc(&jr_callbacks, NULL, r);
    if (!r->h) abort();
    yajl_config(r->h, yajl_allow_comments, 0);
    yajl_config(r->h, yajl_dont_validate_strings, 0);
    yajl_config(r->h, yajl_allow_multiple_values, 0);
    return r;
}

void json_reader_free(json_reader *r) {
    if (!r) return;
    yajl_free(r->h);
    free(r->lv);
    free(r->sl);
    free(r->hash);
    buf_free(&r->num);
    free(r);
}

/* ---- token length limit ----
 * JSON_TOKEN_MAX: yajl re-scans a token that spans chunks from its start, so a huge
 * token costs time quadratic in its length; no token this long can be part of a valid
 * 1 MiB document even fully escaped (6 bytes per \uXXXX), so refusing it early loses
 * nothing. Tracking runs over every byte of every body, hence the fast path. */

/* Bytes that end a number or literal outside strings. */
static int jr_token_sep(unsigned char c) {
    return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == ',' || c == ':' || c == '[' ||
           c == ']' || c == '{' || c == '}';
}

/* Follows where strings, numbers and literals start and end, byte by byte, to refuse a
 * token longer than JSON_TOKEN_MAX before yajl buffers it. Returns 0 when the current
 * token has grown too long. */
static int jr_track_exact(json_reader *r, const unsigned char *p, size_t n) {
    size_t len = r->tok_len;
    int in_str = r->tok_in_str, esc = r->tok_esc;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (in_str) {
            if (esc) esc = 0;
            else if (c == '\\') esc = 1;
            else if (c == '"') in_str = 0, len = 0;
            if (in_str) len++;
        } else if (c == '"') {
            in_str = 1;
            len = 1;
        } else if (jr_token_sep(c)) {
            len = 0;
        } else {
            len++;
        }
        if (len > JSON_TOKEN_MAX) return 0;
    }
    r->tok_len = len;
    r->tok_in_str = in_str;
    r->tok_esc = esc;
    return 1;
}

/* Whether p[0, n) holds an odd number of '"', eight bytes at a time: a byte of
 * x ^ 0x22.. is zero exactly where a quote was, the expression marks exactly those bytes
 * with their top bit (no carry crosses a byte), and XOR keeps the count's parity. */
static int jr_quotes_odd(const unsigned char *p, size_t n) {
    const uint64_t low7 = 0x7f7f7f7f7f7f7f7fULL, quotes = 0x2222222222222222ULL;
    uint64_t acc = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        x ^= quotes;
        acc ^= ~(((x & low7) + low7) | x | low7);
    }
    int odd = __builtin_parityll(acc);
    for (; i < n; i++) odd ^= p[i] == '"';
    return odd;
}

/* The same as jr_track_exact for bytes without a backslash, outside an escape, without
 * the byte loop: there every quote opens or closes a string, so the state at the end
 * follows from the quotes' parity and what comes after the last one. When no token in
 * the stretch can exceed the limit (tok_len + n within it), only that end state counts. */
static int jr_track_plain(json_reader *r, const unsigned char *p, size_t n) {
    if (r->tok_len + n > JSON_TOKEN_MAX) return jr_track_exact(r, p, n);
    int in_str = r->tok_in_str ^ jr_quotes_odd(p, n);
    const unsigned char *q = memrchr(p, '"', n);
    size_t after = q ? (size_t)(q - p) + 1 : 0; /* the stretch after the last quote */
    if (in_str) {
        r->tok_len = q ? n - after + 1 : r->tok_len + n;
    } else {
        size_t j = n;
        while (j > after && !jr_token_sep(p[j - 1])) j--;
        r->tok_len = j == 0 ? r->tok_len + n : n - j;
    }
    r->tok_in_str = in_str;
    return 1;
}

/* Token tracking over a chunk: the stretches between backslashes go the fast way, each
 * backslash and the byte it escapes the exact way, and so do stretches too short for the
 * fast way's fixed cost (text full of escapes). Whitespace between tokens costs
 * nothing. Returns 0 when the current token has grown too long. */
static int jr_track_tokens(json_reader *r, const unsigned char *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (!r->tok_esc) {
            const unsigned char *b = memchr(p + i, '\\', n - i);
            size_t end = b ? (size_t)(b - p) : n;
            int ok = end - i < JR_PLAIN_MIN ? jr_track_exact(r, p + i, end - i)
                                            : jr_track_plain(r, p + i, end - i);
            if (!ok) return 0;
            i = end;
            if (i == n) break;
        }
        size_t step = n - i < 2 ? n - i : 2;
        if (!jr_track_exact(r, p + i, step)) return 0;
        i += step;
    }
    return 1;
}

int json_reader_feed(json_reader *r, const void *p, size_t n, tr_err *e) {
    const unsigned char *b = p;
    if (r->failed) return jr_error_out(r, e);
    size_t ok = jr_scan(r, b, n);
    if (!jr_track_tokens(r, b, ok)) {
        jr_fail(r, r->nlv, "ValueTooLargeError", "a single JSON value is longer than %u bytes",
                JSON_TOKEN_MAX);
        return jr_error_out(r, e);
    }
    if (ok && jr_parse(r, b, ok) < 0) return jr_error_out(r, e);
    if (ok < n) {
        jr_fail(r, r->nlv, JR_BAD, "invalid \\u escape: unpaired UTF-16 surrogate");
        return jr_error_out(r, e);
    }
    r->fed += n;
    return 0;
}

int json_reader_finish(json_reader *r, val **root, tr_err *e) {
    if (r->failed) return jr_error_out(r, e);
    yajl_status st = yajl_complete_parse(r->h);
    if (st == yajl_status_client_canceled) {
        r->failed = 1;
        return jr_error_out(r, e);
    }
    if (st != yajl_status_ok && r->done) {
        jr_yajl_error(r, NULL, 0);
        return jr_error_out(r, e);
    }
    if (st != yajl_status_ok || !r->done || r->esc_want_low) {
        err_set(&r->err, 400, JR_BAD, "unexpected end of JSON");
        r->failed = 1;
        return jr_error_out(r, e);
    }
    *root = r->root;
    return 0;
}

int json_reader_streamed(const json_reader *r) { return r->streamed; }

int json_parse(arena *a, const char *p, size_t n, size_t max_depth, int flags, val **out,
               tr_err *e) {
    json_reader_opts o = {.max_depth = max_depth};
    json_reader *r = json_reader_new(&o, a, a);
    r->flags = flags;
    int rc = json_reader_feed(r, p, n, e);
    if (rc == 0) rc = json_reader_finish(r, out, e);
    json_reader_free(r);
    return rc;
}

/*
 * shape.c — inferred document shapes and their JSON Schema (see shape.h).
 *
 * shape_add_doc runs on the writer for every stored document, so it reads the stored
 * text with a small recursive scanner instead of building a value tree: it walks the text
 * and the shape side by side and only allocates when the shape grows. Stored texts come
 * from json_emit_convex, whose escaping is deterministic, so a field name is kept and
 * compared as it appears between its quotes (escapes and all); that is also exactly what
 * the schema has to print. Documents of one table usually repeat their fields in the same
 * order, so the field search first tries the slot after the previous match.
 *
 * Persistent form: {"t": type bits, "o": 1 when open, "i": element shape,
 * "f": [[name, optional, shape], …]}, each part present only when needed.
 */
#include "store/shape.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json/emit.h"
#include "json/reader.h"
#include "util/arena.h"
#include "util/xalloc.h"

#define SH_MAX_DEPTH 64      /* stored documents nest 16 deep; this only guards the stack */
#define SH_READ_DEPTH 512    /* persistent form: about three JSON levels per value level */
#define SH_NEGZERO_B64 "AAAAAAAAAIA=" /* the only $float payload that is not NaN or ±Inf */

enum {
    SH_NULL = 1 << 0,
    SH_BOOL = 1 << 1,
    SH_FLOAT = 1 << 2,     /* a float64 written as a plain number */
    SH_NEGZERO = 1 << 3,   /* -0 */
    SH_NONFINITE = 1 << 4, /* NaN, +Inf or -Inf */
    SH_INT = 1 << 5,
    SH_STRING = 1 << 6,
    SH_ARRAY = 1 << 7,
    SH_OBJECT = 1 << 8,
    SH_ALL = (1 << 9) - 1,
};

typedef struct sh_field {
    char *name; /* as between the quotes of the stored JSON (escaped) */
    size_t len;
    int optional;
    uint64_t stamp; /* the object merge that last saw this field */
    shape *s;
} sh_field;

struct shape {
    unsigned types;
    shape *items; /* SH_ARRAY: union of every element seen; NULL while only [] was seen */
    sh_field *fields;
    size_t nfields, cap;
    int open;
    uint64_t merges; /* objects merged so far, to stamp the fields each one has */
};

shape *shape_new(void) { return xcalloc(1, sizeof(shape)); }

void shape_free(shape *s) {
    if (!s) return;
    shape_free(s->items);
    for (size_t i = 0; i < s->nfields; i++) {
        free(s->fields[i].name);
        shape_free(s->fields[i].s);
    }
    free(s->fields);
    free(s);
}

static sh_field *sh_add_field(shape *s, const char *name, size_t len, int optional) {
    if (s->nfields == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->fields = xrealloc(s->fields, s->cap * sizeof *s->fields);
    }
    sh_field *f = &s->fields[s->nfields++];
    f->name = xmalloc(len + 1);
    memcpy(f->name, name, len);
    f->name[len] = '\0';
    f->len = len;
    f->optional = optional;
    f->stamp = 0;
    f->s = shape_new();
    return f;
}

/* ---- scanning a stored document ---- */

typedef struct sh_scan {
    const char *p, *end;
    int *changed;
} sh_scan;

static void sc_ws(sh_scan *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\t' || *c->p == '\r'))
        c->p++;
}

static int sc_eat(sh_scan *c, char ch) {
    sc_ws(c);
    if (c->p >= c->end || *c->p != ch) return -1;
    c->p++;
    return 0;
}

/* A string literal; (*s, *n): its raw content between the quotes. */
static int sc_string(sh_scan *c, const char **s, size_t *n) {
    if (sc_eat(c, '"') != 0) return -1;
    const char *start = c->p, *q = start;
    for (;;) {
        q = memchr(q, '"', (size_t)(c->end - q));
        if (!q) return -1;
        size_t bs = 0; /* a quote after an odd run of backslashes is escaped */
        while (q - bs > start && q[-1 - (ptrdiff_t)bs] == '\\') bs++;
        if (bs % 2 == 0) break;
        q++;
    }
    *s = start;
    *n = (size_t)(q - start);
    c->p = q + 1;
    return 0;
}

static int sc_literal(sh_scan *c, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return -1;
    c->p += n;
    return 0;
}

static int sc_number(sh_scan *c) {
    const char *start = c->p;
    while (c->p < c->end && ((*c->p >= '0' && *c->p <= '9') || *c->p == '-' || *c->p == '+' ||
                             *c->p == '.' || *c->p == 'e' || *c->p == 'E'))
        c->p++;
    return c->p > start ? 0 : -1;
}

static void sh_mark(shape *s, unsigned type, int *changed) {
    if (!s || (s->types & type)) return;
    s->types |= type;
    *changed = 1;
}

static int sc_value(sh_scan *c, shape *s, int depth);

/* The field `name` of object shape s; *hint: where the next search starts. */
static sh_field *sh_find(shape *s, const char *name, size_t len, size_t *hint) {
    for (size_t k = 0; k < s->nfields; k++) {
        size_t i = (*hint + k) % s->nfields;
        sh_field *f = &s->fields[i];
        if (f->len == len && memcmp(f->name, name, len) == 0) {
            *hint = i + 1;
            return f;
        }
    }
    return NULL;
}

/* A field of an object being merged: the shape to merge its value into (NULL: skip). */
static shape *sh_field_shape(shape *s, int first, const char *k, size_t klen, size_t *hint,
                             int *changed) {
    sh_field *f = sh_find(s, k, klen, hint);
    if (!f) {
        if (s->open) return NULL;
        if (s->nfields == SHAPE_MAX_FIELDS) {
            s->open = 1;
            *changed = 1;
            return NULL;
        }
        f = sh_add_field(s, k, klen, !first);
        *changed = 1;
        *hint = s->nfields;
    }
    f->stamp = s->merges;
    return f->s;
}

/* {"$integer": …} or {"$float": …}, the first key already read. */
static int sc_special(sh_scan *c, shape *s, const char *k, size_t klen) {
    const char *v;
    size_t vlen;
    if (sc_eat(c, ':') != 0 || sc_string(c, &v, &vlen) != 0 || sc_eat(c, '}') != 0) return -1;
    if (klen == 8 && memcmp(k, "$integer", 8) == 0) {
        sh_mark(s, SH_INT, c->changed);
        return 0;
    }
    if (klen == 6 && memcmp(k, "$float", 6) == 0) {
        int negzero = vlen == strlen(SH_NEGZERO_B64) && memcmp(v, SH_NEGZERO_B64, vlen) == 0;
        sh_mark(s, negzero ? SH_NEGZERO : SH_NONFINITE, c->changed);
        return 0;
    }
    return -1;
}

/* The members of an object, the first key (k) already read; s NULL: only skip them. */
static int sc_members(sh_scan *c, shape *s, int first, const char *k, size_t klen,
                      int depth) {
    size_t hint = 0;
    for (;;) {
        shape *fs = s ? sh_field_shape(s, first, k, klen, &hint, c->changed) : NULL;
        if (sc_eat(c, ':') != 0 || sc_value(c, fs, depth + 1) != 0) return -1;
        sc_ws(c);
        if (c->p < c->end && *c->p == '}') {
            c->p++;
            return 0;
        }
        if (sc_eat(c, ',') != 0 || sc_string(c, &k, &klen) != 0) return -1;
    }
}

/* After an object was merged into s: a field it lacked is optional from now on. */
static void sh_absent_optional(shape *s, int *changed) {
    for (size_t i = 0; i < s->nfields; i++) {
        sh_field *f = &s->fields[i];
        if (f->stamp == s->merges || f->optional) continue;
        f->optional = 1;
        *changed = 1;
    }
}

/* An object, its '{' already read. */
static int sc_object(sh_scan *c, shape *s, int depth) {
    const char *k = NULL;
    size_t klen = 0;
    sc_ws(c);
    int empty = c->p < c->end && *c->p == '}';
    if (empty) {
        c->p++;
    } else {
        if (sc_string(c, &k, &klen) != 0) return -1;
        if (klen > 0 && k[0] == '$') return sc_special(c, s, k, klen);
    }
    if (!s) return empty ? 0 : sc_members(c, NULL, 0, k, klen, depth);
    int first = !(s->types & SH_OBJECT);
    sh_mark(s, SH_OBJECT, c->changed);
    s->merges++;
    if (!empty && sc_members(c, s, first, k, klen, depth) != 0) return -1;
    sh_absent_optional(s, c->changed);
    return 0;
}

/* An array, its '[' already read. */
static int sc_array(sh_scan *c, shape *s, int depth) {
    sh_mark(s, SH_ARRAY, c->changed);
    sc_ws(c);
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        return 0;
    }
    for (;;) {
        if (s && !s->items) {
            s->items = shape_new();
            *c->changed = 1;
        }
        if (sc_value(c, s ? s->items : NULL, depth + 1) != 0) return -1;
        sc_ws(c);
        if (c->p < c->end && *c->p == ']') {
            c->p++;
            return 0;
        }
        if (sc_eat(c, ',') != 0) return -1;
    }
}

/* One value; s NULL: only check and skip it. */
static int sc_value(sh_scan *c, shape *s, int depth) {
    if (depth > SH_MAX_DEPTH) return -1;
    sc_ws(c);
    if (c->p >= c->end) return -1;
    const char *str;
    size_t n;
    switch (*c->p) {
    case '{': c->p++; return sc_object(c, s, depth);
    case '[': c->p++; return sc_array(c, s, depth);
    case '"':
        sh_mark(s, SH_STRING, c->changed);
        return sc_string(c, &str, &n);
    case 'n': sh_mark(s, SH_NULL, c->changed); return sc_literal(c, "null");
    case 't': sh_mark(s, SH_BOOL, c->changed); return sc_literal(c, "true");
    case 'f': sh_mark(s, SH_BOOL, c->changed); return sc_literal(c, "false");
    default: sh_mark(s, SH_FLOAT, c->changed); return sc_number(c);
    }
}

int shape_add_doc(shape *s, const char *doc, size_t len, int *changed) {
    sh_scan c = {doc, doc + len, changed};
    if (sc_eat(&c, '{') != 0 || sc_object(&c, s, 1) != 0) return -1;
    sc_ws(&c);
    return c.p == c.end ? 0 : -1;
}

/* ---- from a value tree ----
 * The same widening as scanning the text json_emit_convex writes for the tree: the
 * import decoder has every document as a tree anyway, and walking it skips re-reading
 * the text (7% of an append's CPU). Field names are kept as escaped in that text. */

/* What a float is written as: a plain number, or {"$float": …} for -0, NaN and ±Inf. */
static unsigned sh_float_type(const val *v) {
    double d = v->u.f;
    if (v->u.dec || !(isnan(d) || isinf(d) || (d == 0 && signbit(d)))) return SH_FLOAT;
    return d == 0 ? SH_NEGZERO : SH_NONFINITE;
}

static void sv_value(shape *s, const val *v, buf *name, int *changed) {
    switch (v->type) {
    case VAL_NULL: sh_mark(s, SH_NULL, changed); return;
    case VAL_BOOL: sh_mark(s, SH_BOOL, changed); return;
    case VAL_FLOAT: sh_mark(s, sh_float_type(v), changed); return;
    case VAL_INT: sh_mark(s, SH_INT, changed); return;
    case VAL_STRING: sh_mark(s, SH_STRING, changed); return;
    case VAL_ARRAY:
        sh_mark(s, SH_ARRAY, changed);
        for (size_t i = 0; i < v->u.a.n; i++) {
            if (!s->items) {
                s->items = shape_new();
                *changed = 1;
            }
            sv_value(s->items, v->u.a.items[i], name, changed);
        }
        return;
    case VAL_OBJECT: break;
    }
    int first = !(s->types & SH_OBJECT);
    sh_mark(s, SH_OBJECT, changed);
    s->merges++;
    size_t hint = 0;
    for (size_t i = 0; i < v->u.o.n; i++) {
        const val_field *f = &v->u.o.fields[i];
        const char *k = f->key;
        size_t klen = f->key_len;
        if (!json_string_verbatim(k, klen)) {
            buf_reset(name);
            json_emit_string(k, klen, name);
            k = name->p + 1;
            klen = name->len - 2;
        }
        shape *fs = sh_field_shape(s, first, k, klen, &hint, changed);
        if (fs) sv_value(fs, f->v, name, changed);
    }
    sh_absent_optional(s, changed);
}

void shape_add_val(shape *s, const val *doc, int *changed) {
    buf name = BUF_INIT;
    sv_value(s, doc, &name, changed);
    buf_free(&name);
}

/* ---- merging shapes ---- */

static void sh_merge(shape *dst, const shape *src, int *changed);

/* The fields of object shape src into dst; `first`: dst had seen no object before. */
static void sh_merge_fields(shape *dst, const shape *src, int first, int *changed) {
    dst->merges++;
    size_t hint = 0;
    for (size_t i = 0; i < src->nfields; i++) {
        const sh_field *f = &src->fields[i];
        sh_field *d = sh_find(dst, f->name, f->len, &hint);
        if (!d) {
            if (dst->open) continue;
            if (dst->nfields == SHAPE_MAX_FIELDS) {
                dst->open = 1;
                *changed = 1;
                continue;
            }
            d = sh_add_field(dst, f->name, f->len, !first || f->optional);
            *changed = 1;
            hint = dst->nfields;
        } else if (f->optional && !d->optional) {
            d->optional = 1;
            *changed = 1;
        }
        d->stamp = dst->merges;
        sh_merge(d->s, f->s, changed);
    }
    if (!first) sh_absent_optional(dst, changed);
    if (src->open && !dst->open) {
        dst->open = 1;
        *changed = 1;
    }
}

static void sh_merge(shape *dst, const shape *src, int *changed) {
    int first = !(dst->types & SH_OBJECT);
    if ((dst->types | src->types) != dst->types) {
        dst->types |= src->types;
        *changed = 1;
    }
    if (src->items) {
        if (!dst->items) {
            dst->items = shape_new();
            *changed = 1;
        }
        sh_merge(dst->items, src->items, changed);
    }
    if (src->types & SH_OBJECT) sh_merge_fields(dst, src, first, changed);
}

void shape_merge(shape *dst, const shape *src, int *changed) { sh_merge(dst, src, changed); }

/* ---- persistent form ---- */

void shape_write(const shape *s, buf *out) {
    buf_printf(out, "{\"t\":%u", s->types);
    if (s->open) buf_puts(out, ",\"o\":1");
    if (s->items) {
        buf_puts(out, ",\"i\":");
        shape_write(s->items, out);
    }
    if (s->nfields) {
        buf_puts(out, ",\"f\":[");
        for (size_t i = 0; i < s->nfields; i++) {
            const sh_field *f = &s->fields[i];
            buf_puts(out, i ? ",[\"" : "[\"");
            buf_append(out, f->name, f->len);
            buf_printf(out, "\",%d,", f->optional);
            shape_write(f->s, out);
            buf_putc(out, ']');
        }
        buf_putc(out, ']');
    }
    buf_putc(out, '}');
}

static int sh_bad(tr_err *e, const char *what) {
    return err_set(e, 500, "StorageError", "Stored table shape is damaged: %s", what);
}

static int sh_from_val(const val *v, shape *s, buf *tmp, tr_err *e);

static int sh_field_from_val(const val *v, shape *s, buf *tmp, tr_err *e) {
    if (v->type != VAL_ARRAY || v->u.a.n != 3 || v->u.a.items[0]->type != VAL_STRING ||
        v->u.a.items[1]->type != VAL_FLOAT)
        return sh_bad(e, "a field is not [name, optional, shape]");
    if (s->nfields == SHAPE_MAX_FIELDS) return sh_bad(e, "too many fields");
    const val *name = v->u.a.items[0];
    buf_reset(tmp);
    json_emit_string(name->u.s.p, name->u.s.len, tmp);
    sh_field *f = sh_add_field(s, tmp->p + 1, tmp->len - 2, v->u.a.items[1]->u.f != 0);
    return sh_from_val(v->u.a.items[2], f->s, tmp, e);
}

static int sh_from_val(const val *v, shape *s, buf *tmp, tr_err *e) {
    if (v->type != VAL_OBJECT) return sh_bad(e, "a shape is not an object");
    const val *t = val_get(v, "t"), *o = val_get(v, "o"), *i = val_get(v, "i"),
              *f = val_get(v, "f");
    if (!t || t->type != VAL_FLOAT || t->u.f < 0 || t->u.f > SH_ALL)
        return sh_bad(e, "bad type bits");
    s->types = (unsigned)t->u.f;
    s->open = o != NULL;
    if (i) {
        s->items = shape_new();
        if (sh_from_val(i, s->items, tmp, e) != 0) return -1;
    }
    if (!f) return 0;
    if (f->type != VAL_ARRAY) return sh_bad(e, "fields are not an array");
    for (size_t k = 0; k < f->u.a.n; k++)
        if (sh_field_from_val(f->u.a.items[k], s, tmp, e) != 0) return -1;
    return 0;
}

int shape_read(const char *text, size_t len, shape **out, tr_err *e) {
    arena *a = arena_new();
    buf tmp = BUF_INIT;
    val *root;
    shape *s = shape_new();
    int rc = json_parse(a, text, len, SH_READ_DEPTH, 0, &root, e);
    if (rc != 0) sh_bad(e, e->message);
    else rc = sh_from_val(root, s, &tmp, e);
    arena_free(a);
    buf_free(&tmp);
    if (rc != 0) {
        shape_free(s);
        s = NULL;
    }
    *out = s;
    return rc;
}

/* ---- JSON Schema ---- */

static void sh_schema(const shape *s, int clean, buf *out);

static void sh_float_schema(unsigned types, int clean, buf *out) {
    unsigned special = clean ? SH_NONFINITE : SH_NONFINITE | SH_NEGZERO;
    if (!(types & special)) {
        buf_puts(out, "{\"type\":\"number\"}");
    } else if (clean) {
        buf_puts(out, "{\"$description\":\"float64\",\"anyOf\":[{\"type\":\"number\"},"
                      "{\"type\":\"string\",\"$description\":\"-inf, inf, or NaN\"}]}");
    } else {
        buf_puts(out, "{\"$description\":\"float64\",\"anyOf\":[{\"type\":\"number\"},"
                      "{\"type\":\"object\",\"$description\":\"-0, -inf, inf, or NaN\","
                      "\"properties\":{\"$float\":{\"$description\":"
                      "\"float64 -> little-endian -> base64\",\"type\":\"string\"}},"
                      "\"required\":[\"$float\"],\"additionalProperties\":false}]}");
    }
}

static void sh_int_schema(int clean, buf *out) {
    if (clean)
        buf_puts(out, "{\"$description\":\"int64 represented as base10 string\","
                      "\"type\":\"string\"}");
    else
        buf_puts(out, "{\"$description\":\"int64\",\"type\":\"object\",\"properties\":"
                      "{\"$integer\":{\"$description\":\"int64 -> little-endian -> base64\","
                      "\"type\":\"string\"}},\"required\":[\"$integer\"],"
                      "\"additionalProperties\":false}");
}

/* One property of an object schema. */
typedef struct sh_prop {
    const char *name;
    size_t len;
    const char *fixed; /* a system field's schema, or NULL */
    const sh_field *f; /* else a document field */
    int required;
} sh_prop;

static int sh_prop_cmp(const void *a, const void *b) {
    const sh_prop *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* The members of an object schema — "type", "properties" (the fields of s, which may be
 * NULL, and `nsys` system fields, in byte order), "additionalProperties", "required" —
 * without the braces, so the top level can add "$schema". */
static void sh_object_members(const shape *s, const sh_prop *sys, size_t nsys, int clean,
                              buf *out) {
    size_t nf = s ? s->nfields : 0, n = 0;
    sh_prop *props = xmalloc((nf + nsys + 1) * sizeof *props);
    for (size_t i = 0; i < nsys; i++) props[n++] = sys[i];
    for (size_t i = 0; i < nf; i++) {
        const sh_field *f = &s->fields[i];
        props[n++] = (sh_prop){f->name, f->len, NULL, f, !f->optional};
    }
    qsort(props, n, sizeof *props, sh_prop_cmp);
    buf_puts(out, "\"type\":\"object\",\"properties\":{");
    for (size_t i = 0; i < n; i++) {
        buf_puts(out, i ? ",\"" : "\"");
        buf_append(out, props[i].name, props[i].len);
        buf_puts(out, "\":");
        if (props[i].fixed) buf_puts(out, props[i].fixed);
        else sh_schema(props[i].f->s, clean, out);
    }
    buf_printf(out, "},\"additionalProperties\":%s,\"required\":[",
               s && s->open ? "true" : "false");
    const char *sep = "\"";
    for (size_t i = 0; i < n; i++) {
        if (!props[i].required) continue;
        buf_puts(out, sep);
        buf_append(out, props[i].name, props[i].len);
        buf_putc(out, '"');
        sep = ",\"";
    }
    buf_putc(out, ']');
    free(props);
}

static void sh_schema(const shape *s, int clean, buf *out) {
    unsigned t = s->types;
    int alts = !!(t & SH_NULL) + !!(t & SH_BOOL) + !!(t & (SH_FLOAT | SH_NEGZERO | SH_NONFINITE)) +
               !!(t & SH_INT) + !!(t & SH_STRING) + !!(t & SH_ARRAY) + !!(t & SH_OBJECT);
    if (alts == 0) {
        buf_puts(out, "{}");
        return;
    }
    if (alts > 1) buf_puts(out, "{\"anyOf\":[");
    const char *sep = "";
    if (t & SH_NULL) {
        buf_puts(out, "{\"type\":\"null\"}");
        sep = ",";
    }
    if (t & SH_BOOL) {
        buf_printf(out, "%s{\"type\":\"boolean\"}", sep);
        sep = ",";
    }
    if (t & (SH_FLOAT | SH_NEGZERO | SH_NONFINITE)) {
        buf_puts(out, sep);
        sh_float_schema(t, clean, out);
        sep = ",";
    }
    if (t & SH_INT) {
        buf_puts(out, sep);
        sh_int_schema(clean, out);
        sep = ",";
    }
    if (t & SH_STRING) {
        buf_printf(out, "%s{\"type\":\"string\"}", sep);
        sep = ",";
    }
    if (t & SH_ARRAY) {
        buf_printf(out, "%s{\"type\":\"array\",\"items\":", sep);
        if (s->items) sh_schema(s->items, clean, out);
        else buf_puts(out, "false");
        buf_putc(out, '}');
        sep = ",";
    }
    if (t & SH_OBJECT) {
        buf_printf(out, "%s{", sep);
        sh_object_members(s, NULL, 0, clean, out);
        buf_putc(out, '}');
    }
    if (alts > 1) buf_puts(out, "]}");
}

void shape_json_schema(const shape *s, const char *table, int delta, int clean, buf *out) {
    buf id = BUF_INIT, desc = BUF_INIT;
    buf_printf(&desc, "Id(%s)", table);
    buf_puts(&id, "{\"$description\":");
    json_emit_string(desc.p, desc.len, &id);
    buf_puts(&id, ",\"type\":\"string\"}");
    const sh_prop sys[] = {
        {"_id", 3, id.p, NULL, 1},
        {"_creationTime", 13, "{\"type\":\"number\"}", NULL, 1},
        {"_table", 6, "{\"type\":\"string\"}", NULL, 0},
        {"_component", 10, "{\"type\":\"string\"}", NULL, 0},
        {"_ts", 3, "{\"type\":\"integer\"}", NULL, 0},
        {"_deleted", 8, "{\"type\":\"boolean\"}", NULL, 0},
    };
    buf_puts(out, "{\"$schema\":\"http://json-schema.org/draft-07/schema#\",");
    sh_object_members(s, sys, delta ? 6 : 2, clean, out);
    buf_putc(out, '}');
    buf_free(&id);
    buf_free(&desc);
}

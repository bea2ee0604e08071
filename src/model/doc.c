/*
 * doc.c — turning an imported record into a storable document: field renaming, CDC
 * fields and Convex's document limits, in one walk over the tree (see doc.h).
 *
 * This runs for every record of every import, so the common case costs one pass and no
 * allocation: an object whose keys are all acceptable is only checked. Only an object
 * with a key to rename builds a small hash set in the arena, holding just the keys a
 * renamed key could collide with (every new name starts with "source_", so only kept keys
 * with that prefix, plus the names handed out so far); collisions are then found in
 * constant time however many fields the object has. The Convex size is summed on the way
 * back up, after renaming and dropping, so the limit is checked on what will be stored.
 * Error paths name the field with the keys as the client sent them.
 */
#include "model/doc.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "model/names.h"

#define DOC_PREFIX "source_"
#define DOC_PREFIX_LEN 7
#define DOC_PREFIX_TRIES 3
#define DOC_CDC_PREFIX "source_ab_cdc"
#define DOC_CDC_DELETED "source_ab_cdc_deleted_at"
#define DOC_QUOTE_MAX 60     /* bytes of one key quoted in a message */
#define DOC_PATH_MAX 200     /* bytes of a field path in a message */
#define DOC_DEPTH_CAP 1024   /* deepest level measured for a too-nested message */

typedef struct doc_seg {
    const char *key; /* NULL for an array element */
    size_t key_len;
    size_t index;
} doc_seg;

typedef struct doc_ctx {
    arena *a;
    doc_mode mode;
    int *deleted;
    const val *root;
    buf scratch; /* candidate names for a renamed key */
    doc_seg path[DOC_MAX_DEPTH + 1];
    size_t npath;
    tr_err *e;
} doc_ctx;

/* Keys a renamed key must avoid: open addressing, linear probing, arena memory. */
typedef struct doc_names {
    const char **key;
    size_t *len;
    size_t mask;
} doc_names;

/* ---- error messages ---- */

static void doc_quote(const char *s, size_t n, buf *out) {
    names_quote(s, n, DOC_QUOTE_MAX, out);
}

static int doc_plain_key(const char *s, size_t n) {
    if (n == 0 || n > DOC_QUOTE_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '.' || c == '[' || c == ']' || c == '"') return 0;
    }
    return 1;
}

/* "data.a[3][\"odd key\"]" for the field being looked at. */
static void doc_path(const doc_ctx *c, buf *out) {
    buf_puts(out, "data");
    for (size_t i = 0; i < c->npath && out->len < DOC_PATH_MAX; i++) {
        const doc_seg *s = &c->path[i];
        if (!s->key) {
            buf_printf(out, "[%zu]", s->index);
        } else if (doc_plain_key(s->key, s->key_len)) {
            buf_putc(out, '.');
            buf_append(out, s->key, s->key_len);
        } else {
            buf_putc(out, '[');
            doc_quote(s->key, s->key_len, out);
            buf_putc(out, ']');
        }
    }
    if (c->npath > 0 && out->len >= DOC_PATH_MAX) buf_puts(out, "...");
}

static int doc_fail(doc_ctx *c, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int doc_fail(doc_ctx *c, const char *code, const char *fmt, ...) {
    buf where = BUF_INIT;
    doc_path(c, &where);
    char what[sizeof c->e->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    err_set(c->e, 400, code, "%s: %s", where.p, what);
    buf_free(&where);
    return -1;
}

/* Depth of v (a scalar is 0), measured no deeper than cap. */
static size_t doc_depth(const val *v, size_t cap) {
    if (cap == 0 || (v->type != VAL_ARRAY && v->type != VAL_OBJECT)) return 0;
    size_t deepest = 0;
    size_t n = v->type == VAL_ARRAY ? v->u.a.n : v->u.o.n;
    for (size_t i = 0; i < n && deepest < cap - 1; i++) {
        const val *child = v->type == VAL_ARRAY ? v->u.a.items[i] : v->u.o.fields[i].v;
        size_t d = doc_depth(child, cap - 1);
        if (d > deepest) deepest = d;
    }
    return 1 + deepest;
}

static int doc_too_deep(doc_ctx *c) {
    size_t depth = doc_depth(c->root, DOC_DEPTH_CAP);
    c->npath = 0;
    return doc_fail(c, "InvalidDocumentError",
                    "document is too nested (%s%zu levels > maximum %d)",
                    depth >= DOC_DEPTH_CAP ? "at least " : "", depth, DOC_MAX_DEPTH);
}

/* ---- the set of names a renamed key must avoid ---- */

static size_t doc_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return (size_t)h;
}

static void doc_names_init(doc_names *s, arena *a, size_t count) {
    size_t cap = 8;
    while (cap < 2 * count) cap *= 2;
    s->key = arena_alloc(a, cap * sizeof *s->key);
    s->len = arena_alloc(a, cap * sizeof *s->len);
    memset(s->key, 0, cap * sizeof *s->key);
    s->mask = cap - 1;
}

/* Returns 1 when the name was already there, else adds it and returns 0. */
static int doc_names_add(doc_names *s, const char *k, size_t n) {
    size_t i = doc_hash(k, n) & s->mask;
    while (s->key[i]) {
        if (s->len[i] == n && memcmp(s->key[i], k, n) == 0) return 1;
        i = (i + 1) & s->mask;
    }
    s->key[i] = k;
    s->len[i] = n;
    return 0;
}

static int doc_names_has(const doc_names *s, const char *k, size_t n) {
    size_t i = doc_hash(k, n) & s->mask;
    while (s->key[i]) {
        if (s->len[i] == n && memcmp(s->key[i], k, n) == 0) return 1;
        i = (i + 1) & s->mask;
    }
    return 0;
}

static int doc_has_prefix(const char *s, size_t n, const char *prefix, size_t plen) {
    return n >= plen && memcmp(s, prefix, plen) == 0;
}

/* Counts the keys to rename; when there are some, fills taken with the kept keys that
 * a new name could equal. */
static size_t doc_plan_renames(doc_ctx *c, const val *obj, doc_names *taken) {
    size_t renames = 0, prefixed = 0;
    for (size_t i = 0; i < obj->u.o.n; i++) {
        const val_field *f = &obj->u.o.fields[i];
        if (!names_field_kept(f->key, f->key_len)) {
            renames++;
        } else if (doc_has_prefix(f->key, f->key_len, DOC_PREFIX, DOC_PREFIX_LEN)) {
            prefixed++;
        }
    }
    if (renames == 0) return 0;
    doc_names_init(taken, c->a, renames + prefixed);
    if (prefixed == 0) return renames;
    for (size_t i = 0; i < obj->u.o.n; i++) {
        const val_field *f = &obj->u.o.fields[i];
        if (doc_has_prefix(f->key, f->key_len, DOC_PREFIX, DOC_PREFIX_LEN)) {
            doc_names_add(taken, f->key, f->key_len);
        }
    }
    return renames;
}

/* Gives f the first free name of source_<slug>, source_source_<slug>, ... */
static int doc_rename(doc_ctx *c, doc_names *taken, val_field *f) {
    buf *s = &c->scratch;
    buf_reset(s);
    for (int i = 1; i < DOC_PREFIX_TRIES; i++) buf_append(s, DOC_PREFIX, DOC_PREFIX_LEN);
    names_source_slug(f->key, f->key_len, s);
    for (int tries = 1; tries <= DOC_PREFIX_TRIES; tries++) {
        size_t skip = (size_t)(DOC_PREFIX_TRIES - tries) * DOC_PREFIX_LEN;
        const char *name = s->p + skip;
        size_t n = s->len - skip;
        if (doc_names_has(taken, name, n)) continue;
        char *copy = arena_strndup(c->a, name, n);
        doc_names_add(taken, copy, n);
        f->key = copy;
        f->key_len = n;
        return 0;
    }
    buf key = BUF_INIT, other = BUF_INIT;
    doc_quote(f->key, f->key_len, &key);
    doc_quote(s->p + 2 * DOC_PREFIX_LEN, s->len - 2 * DOC_PREFIX_LEN, &other);
    doc_fail(c, "InvalidFieldName",
             "field %s cannot be renamed: %s is taken, and so are the names with two "
             "and three \"source_\" prefixes.",
             key.p, other.p);
    buf_free(&key);
    buf_free(&other);
    return -1;
}

/* ---- the walk ---- */

static int doc_walk(doc_ctx *c, val *v, size_t level, size_t *size);

static int doc_walk_array(doc_ctx *c, val *v, size_t level, size_t *size) {
    if (level > DOC_MAX_DEPTH) return doc_too_deep(c);
    if (v->u.a.n > DOC_MAX_ARRAY) {
        return doc_fail(c, "ArrayTooLong", "Array length is too long (%zu > maximum length %d)",
                        v->u.a.n, DOC_MAX_ARRAY);
    }
    size_t total = 2;
    for (size_t i = 0; i < v->u.a.n; i++) {
        c->path[c->npath++] = (doc_seg){NULL, 0, i};
        size_t item;
        int rc = doc_walk(c, v->u.a.items[i], level + 1, &item);
        c->npath--;
        if (rc < 0) return -1;
        total += item;
    }
    *size = total;
    return 0;
}

/* At the top level: notes a deletion, and reports whether the field is to be dropped. */
static int doc_cdc_drop(doc_ctx *c, const val_field *f) {
    if (!doc_has_prefix(f->key, f->key_len, DOC_CDC_PREFIX, sizeof DOC_CDC_PREFIX - 1)) return 0;
    if (f->key_len == sizeof DOC_CDC_DELETED - 1 &&
        memcmp(f->key, DOC_CDC_DELETED, f->key_len) == 0 && f->v->type != VAL_NULL) {
        *c->deleted = 1;
    }
    return c->mode == DOC_DEDUP;
}

static int doc_walk_object(doc_ctx *c, val *v, size_t level, size_t *size) {
    if (level > DOC_MAX_DEPTH) return doc_too_deep(c);
    if (v->u.o.n > DOC_MAX_FIELDS) {
        return doc_fail(c, "TooManyFieldsError",
                        "Object has too many fields (%zu > maximum number %d)", v->u.o.n,
                        DOC_MAX_FIELDS);
    }
    doc_names taken;
    size_t renames = doc_plan_renames(c, v, &taken);
    size_t total = 2, kept = 0;
    for (size_t i = 0; i < v->u.o.n; i++) {
        val_field f = v->u.o.fields[i];
        c->path[c->npath++] = (doc_seg){f.key, f.key_len, 0};
        size_t child;
        int rc = doc_walk(c, f.v, level + 1, &child);
        c->npath--;
        if (rc < 0) return -1;
        if (renames > 0 && !names_field_kept(f.key, f.key_len) && doc_rename(c, &taken, &f) < 0) {
            return -1;
        }
        if (level == 1 && doc_cdc_drop(c, &f)) continue;
        total += f.key_len + 1 + child;
        v->u.o.fields[kept++] = f;
    }
    v->u.o.n = kept;
    *size = total;
    return 0;
}

static int doc_walk(doc_ctx *c, val *v, size_t level, size_t *size) {
    switch (v->type) {
    case VAL_NULL:
    case VAL_BOOL: *size = 1; return 0;
    case VAL_FLOAT:
    case VAL_INT: *size = 9; return 0;
    case VAL_STRING: *size = v->u.s.len + 2; return 0;
    case VAL_ARRAY: return doc_walk_array(c, v, level, size);
    case VAL_OBJECT: return doc_walk_object(c, v, level, size);
    }
    *size = 0;
    return 0;
}

int doc_normalize(arena *a, val *data, doc_mode mode, int *deleted, tr_err *e) {
    doc_ctx c = {.a = a, .mode = mode, .deleted = deleted, .root = data, .e = e};
    *deleted = 0;
    size_t size;
    int rc = doc_walk(&c, data, 1, &size);
    buf_free(&c.scratch);
    if (rc < 0) return -1;
    size += DOC_SYSTEM_FIELDS_SIZE;
    if (size > DOC_MAX_SIZE) {
        return err_set(e, 400, "ValueTooLargeError",
                       "data: Value is too large (%zu > maximum size 1 MiB)", size);
    }
    return 0;
}

size_t doc_size(const val *v) {
    switch (v->type) {
    case VAL_NULL:
    case VAL_BOOL: return 1;
    case VAL_FLOAT:
    case VAL_INT: return 9;
    case VAL_STRING: return v->u.s.len + 2;
    case VAL_ARRAY: {
        size_t total = 2;
        for (size_t i = 0; i < v->u.a.n; i++) total += doc_size(v->u.a.items[i]);
        return total;
    }
    case VAL_OBJECT: {
        size_t total = 2;
        for (size_t i = 0; i < v->u.o.n; i++) {
            total += v->u.o.fields[i].key_len + 1 + doc_size(v->u.o.fields[i].v);
        }
        return total;
    }
    }
    return 0;
}

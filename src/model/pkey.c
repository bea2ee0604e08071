/*
 * pkey.c — primary keys: validating the declared field paths and encoding the values at
 * those paths into index key bytes (see pkey.h).
 *
 * Validation follows the reference in two passes: first every rule that makes the key
 * itself malformed (InvalidPrimaryKey, reported with the whole key printed, as Convex
 * does), and only then, for add_primary_key_indexes, the reserved-name rule; so a key
 * that breaks both gets the same answer as from Convex.
 *
 * Each encoded value is prefix-free (fixed-width numbers; strings, arrays and objects
 * carry a terminator that sorts below any content byte), so the concatenation of the
 * values of several paths sorts like the tuple of those values.
 */
#include "model/pkey.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "model/names.h"

#define PKEY_TAG_UNDEFINED 0x01
#define PKEY_TAG_NULL 0x03
#define PKEY_TAG_INT 0x04
#define PKEY_TAG_FLOAT 0x0D
#define PKEY_TAG_FALSE 0x0E
#define PKEY_TAG_TRUE 0x0F
#define PKEY_TAG_STRING 0x10
#define PKEY_TAG_ARRAY 0x12
#define PKEY_TAG_OBJECT 0x13
#define PKEY_END 0x00
#define PKEY_NUL_ESCAPE 0xFF

#define PKEY_SHOW_MAX 200 /* bytes of the declared key printed in a message */
#define PKEY_IDENTIFIER_RULE                                                        \
    "Identifiers must start with a letter and can only contain letters, digits, and " \
    "underscores."

/* ---- printing a declared key for messages ---- */

static void pkey_show_string(const char *s, size_t n, buf *out) {
    names_quote(s, n, out->len < PKEY_SHOW_MAX ? PKEY_SHOW_MAX - out->len : 0, out);
}

/* Compact JSON-like text of v, cut short with "..." when long. */
static void pkey_show(const val *v, buf *out) {
    if (out->len >= PKEY_SHOW_MAX) {
        buf_puts(out, "...");
        return;
    }
    switch (v->type) {
    case VAL_NULL: buf_puts(out, "null"); break;
    case VAL_BOOL: buf_puts(out, v->u.b ? "true" : "false"); break;
    case VAL_FLOAT: buf_printf(out, "%.17g", v->u.f); break;
    case VAL_INT: buf_printf(out, "%lld", (long long)v->u.i); break;
    case VAL_STRING: pkey_show_string(v->u.s.p, v->u.s.len, out); break;
    case VAL_OBJECT: buf_puts(out, "{...}"); break;
    case VAL_ARRAY:
        buf_putc(out, '[');
        for (size_t i = 0; i < v->u.a.n; i++) {
            if (i) buf_putc(out, ',');
            if (out->len >= PKEY_SHOW_MAX) {
                buf_puts(out, "...");
                break;
            }
            pkey_show(v->u.a.items[i], out);
        }
        buf_putc(out, ']');
        break;
    }
}

/* Fills e with InvalidPrimaryKey: "Invalid primary key: <why> <whole key>." */
static int pkey_invalid(const val *key, tr_err *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int pkey_invalid(const val *key, tr_err *e, const char *fmt, ...) {
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    buf shown = BUF_INIT;
    pkey_show(key, &shown);
    err_set(e, 400, "InvalidPrimaryKey", "Invalid primary key: %s %s", why, shown.p);
    buf_free(&shown);
    return -1;
}

/* ---- parsing ---- */

static int pkey_path_equal(const pkey_path *a, const pkey_path *b) {
    if (a->ncomp != b->ncomp) return 0;
    for (size_t i = 0; i < a->ncomp; i++) {
        if (strcmp(a->comp[i], b->comp[i]) != 0) return 0;
    }
    return 1;
}

static void pkey_dotted(const pkey_path *p, buf *out) {
    for (size_t i = 0; i < p->ncomp; i++) {
        if (i) buf_putc(out, '.');
        buf_puts(out, p->comp[i]);
    }
}

static int pkey_parse_component(const val *key, size_t i, size_t j, const val *c,
                                pkey_path *p, tr_err *e) {
    (void)j;
    const char *s = c->u.s.p;
    size_t n = c->u.s.len;
    if (!names_identifier(s, n)) {
        buf name = BUF_INIT;
        pkey_show_string(s, n, &name);
        const char *why = n > NAMES_TABLE_MAX ? "it is longer than 64 characters."
                                               : PKEY_IDENTIFIER_RULE;
        pkey_invalid(key, e, "field name %s in field path %zu is not valid: %s", name.p, i,
                     why);
        buf_free(&name);
        return -1;
    }
    memcpy(p->comp[j], s, n);
    p->comp[j][n] = '\0';
    return 0;
}

static int pkey_parse_path(const val *key, size_t i, pkey *out, tr_err *e) {
    const val *v = key->u.a.items[i];
    if (v->u.a.n == 0) return pkey_invalid(key, e, "field path %zu is empty.", i);
    if (v->u.a.n > PKEY_MAX_COMPONENTS) {
        return pkey_invalid(key, e, "field path %zu has %zu components (maximum %d).", i,
                            v->u.a.n, PKEY_MAX_COMPONENTS);
    }
    pkey_path *p = &out->paths[i];
    p->ncomp = v->u.a.n;
    for (size_t j = 0; j < v->u.a.n; j++) {
        if (pkey_parse_component(key, i, j, v->u.a.items[j], p, e) < 0) return -1;
    }
    if (p->ncomp == 1 && strcmp(p->comp[0], "_id") == 0) {
        return pkey_invalid(key, e,
                            "`_id` is not a valid index field. To load documents by ID, use "
                            "`db.get(id)`.");
    }
    for (size_t k = 0; k < i; k++) {
        if (!pkey_path_equal(&out->paths[k], p)) continue;
        buf dotted = BUF_INIT;
        pkey_dotted(p, &dotted);
        pkey_invalid(key, e,
                     "Duplicate field \"%s\". Index fields must be unique within an index.",
                     dotted.p);
        buf_free(&dotted);
        return -1;
    }
    return 0;
}

static int pkey_check_reserved(const pkey *k, tr_err *e) {
    for (size_t i = 0; i < k->npaths; i++) {
        for (size_t j = 0; j < k->paths[i].ncomp; j++) {
            if (k->paths[i].comp[j][0] != '_') continue;
            return err_set(e, 400, "IndexFieldNameReserved",
                           "Reserved fields (starting with `_`) are not allowed in indexes: "
                           "\"%s\" in field path %zu.",
                           k->paths[i].comp[j], i);
        }
    }
    return 0;
}

/* The JSON shape (a list of lists of strings) is checked before any rule, so a wrong
 * type anywhere is BadJsonBody, as when the reference fails to deserialise the body. */
static int pkey_check_types(const val *v, tr_err *e) {
    if (v->type != VAL_ARRAY)
        return err_set(e, 400, "BadJsonBody",
                       "expected a list of field paths such as [[\"id\"]], got %s",
                       val_type_name(v->type));
    for (size_t i = 0; i < v->u.a.n; i++) {
        const val *path = v->u.a.items[i];
        if (path->type != VAL_ARRAY)
            return err_set(e, 400, "BadJsonBody", "[%zu]: expected a list of field names, got %s",
                           i, val_type_name(path->type));
        for (size_t j = 0; j < path->u.a.n; j++) {
            const val *c = path->u.a.items[j];
            if (c->type != VAL_STRING)
                return err_set(e, 400, "BadJsonBody", "[%zu][%zu]: expected a string, got %s", i,
                               j, val_type_name(c->type));
        }
    }
    return 0;
}

int pkey_parse(const val *v, pkey_origin origin, pkey *out, tr_err *e) {
    if (pkey_check_types(v, e) != 0) return -1;
    if (v->u.a.n == 0) return err_set(e, 400, "EmptyPrimaryKey", "Primary keys cannot be empty");
    if (v->u.a.n > PKEY_MAX_PATHS) {
        return pkey_invalid(v, e, "Indexes may have up to %d fields, got %zu.", PKEY_MAX_PATHS,
                            v->u.a.n);
    }
    out->npaths = v->u.a.n;
    for (size_t i = 0; i < v->u.a.n; i++) {
        if (pkey_parse_path(v, i, out, e) < 0) return -1;
    }
    if (origin == PKEY_FROM_INDEX) return pkey_check_reserved(out, e);
    return 0;
}

void pkey_canonical(const pkey *k, buf *out) {
    buf_putc(out, '[');
    for (size_t i = 0; i < k->npaths; i++) {
        if (i) buf_putc(out, ',');
        buf_putc(out, '[');
        for (size_t j = 0; j < k->paths[i].ncomp; j++) {
            if (j) buf_putc(out, ',');
            buf_putc(out, '"');
            buf_puts(out, k->paths[i].comp[j]);
            buf_putc(out, '"');
        }
        buf_putc(out, ']');
    }
    buf_putc(out, ']');
}

/* ---- encoding ---- */

static void pkey_put_u64(uint64_t x, buf *out) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(x >> (56 - 8 * i));
    buf_append(out, b, sizeof b);
}

/* Bytes with NUL escaped, then the 0x00 0x00 terminator: a proper prefix sorts first. */
static void pkey_put_string(const char *s, size_t n, buf *out) {
    static const char escaped_nul[2] = {0x00, (char)PKEY_NUL_ESCAPE};
    static const char end[2] = {PKEY_END, PKEY_END};
    buf_putc(out, PKEY_TAG_STRING);
    while (n > 0) {
        const char *nul = memchr(s, 0, n);
        size_t run = nul ? (size_t)(nul - s) : n;
        buf_append(out, s, run);
        if (!nul) break;
        buf_append(out, escaped_nul, sizeof escaped_nul);
        s += run + 1;
        n -= run + 1;
    }
    buf_append(out, end, sizeof end);
}

/* IEEE bits made to sort as numbers: negatives reversed below positives. */
static uint64_t pkey_float_bits(double d) {
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    return (bits >> 63) ? ~bits : bits ^ ((uint64_t)1 << 63);
}

void pkey_encode_value(const val *v, buf *out) {
    switch (v->type) {
    case VAL_NULL: buf_putc(out, PKEY_TAG_NULL); break;
    case VAL_BOOL: buf_putc(out, v->u.b ? PKEY_TAG_TRUE : PKEY_TAG_FALSE); break;
    case VAL_INT:
        buf_putc(out, PKEY_TAG_INT);
        pkey_put_u64((uint64_t)v->u.i ^ ((uint64_t)1 << 63), out);
        break;
    case VAL_FLOAT:
        buf_putc(out, PKEY_TAG_FLOAT);
        pkey_put_u64(pkey_float_bits(v->u.f), out);
        break;
    case VAL_STRING: pkey_put_string(v->u.s.p, v->u.s.len, out); break;
    case VAL_ARRAY:
        buf_putc(out, PKEY_TAG_ARRAY);
        for (size_t i = 0; i < v->u.a.n; i++) pkey_encode_value(v->u.a.items[i], out);
        buf_putc(out, PKEY_END);
        break;
    case VAL_OBJECT:
        buf_putc(out, PKEY_TAG_OBJECT);
        for (size_t i = 0; i < v->u.o.n; i++) {
            pkey_put_string(v->u.o.fields[i].key, v->u.o.fields[i].key_len, out);
            pkey_encode_value(v->u.o.fields[i].v, out);
        }
        buf_putc(out, PKEY_END);
        break;
    }
}

/* The value at path p in doc, or NULL when a step is missing or not an object. */
static const val *pkey_lookup(const pkey_path *p, const val *doc) {
    const val *cur = doc;
    for (size_t j = 0; j < p->ncomp && cur; j++) cur = val_get(cur, p->comp[j]);
    return cur;
}

int pkey_encode_doc(const pkey *k, const val *doc, int require, buf *out, tr_err *e) {
    for (size_t i = 0; i < k->npaths; i++) {
        const val *v = pkey_lookup(&k->paths[i], doc);
        if (v) {
            pkey_encode_value(v, out);
            continue;
        }
        if (!require) {
            buf_putc(out, PKEY_TAG_UNDEFINED);
            continue;
        }
        buf dotted = BUF_INIT;
        pkey_dotted(&k->paths[i], &dotted);
        err_set(e, 400, "MissingPrimaryKeyValue", "Missing value for primary key field: \"%s\".",
                dotted.p);
        buf_free(&dotted);
        return -1;
    }
    return 0;
}

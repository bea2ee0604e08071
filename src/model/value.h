/*
 * value.h — Convex values as a small tree.
 *
 * One imported message (or one stored document being re-read) is held as a tree of
 * `val` nodes allocated from an arena; nothing in tributary holds a whole request as a
 * tree. Strings carry their length because JSON strings may contain NUL bytes.
 * Objects keep fields in input order; duplicate keys have already been collapsed
 * (last one wins) by whoever built the tree.
 */
#ifndef TR_VALUE_H
#define TR_VALUE_H

#include <stddef.h>
#include <stdint.h>

typedef enum val_type {
    VAL_NULL,
    VAL_BOOL,
    VAL_FLOAT,  /* float64: every JSON number, unless the int64 rule applies */
    VAL_INT,    /* int64: integer literals with |n| > 2^53 that fit in int64 */
    VAL_STRING, /* UTF-8 bytes, length-counted */
    VAL_ARRAY,
    VAL_OBJECT,
} val_type;

typedef struct val val;

typedef struct val_field {
    const char *key; /* NUL-terminated too, but may contain NUL: use key_len */
    size_t key_len;
    val *v;
} val_field;

/* A float's decimal form, when the parser saw it: |f| is mant × 10^exp10 correctly
 * rounded, with 1 <= mant < 10^15 and -22 <= exp10 <= 22, packed as mant << 6 | (exp10 +
 * 22). Its shortest text is then those digits (json_emit_decimal), found without printf.
 * 0: unknown. */
#define VAL_DEC(mant, exp10) ((uint64_t)(mant) << 6 | (uint64_t)((exp10) + 22))
#define VAL_DEC_MANT(dec) ((dec) >> 6)
#define VAL_DEC_EXP10(dec) ((int)((dec) & 63) - 22)

struct val {
    val_type type;
    union {
        int b;
        struct {
            double f;
            uint64_t dec; /* VAL_DEC of f, or 0 */
        };
        int64_t i;
        struct {
            const char *p;
            size_t len;
        } s;
        struct {
            val **items;
            size_t n;
        } a;
        struct {
            val_field *fields;
            size_t n;
        } o;
    } u;
};

/* The field named key (exact bytes) of an object, or NULL. */
val *val_get(const val *obj, const char *key);
/* Name of a type for error messages: "null", "a boolean", "a number", "a string", ... */
const char *val_type_name(val_type t);

#endif

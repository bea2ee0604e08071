/*
 * emit.c — value trees out as compact JSON text (see emit.h).
 *
 * Output goes straight into a buf, without a generator object: values are small trees
 * (one document), written once, so a recursive walk is the simplest fast form. Strings
 * are copied in runs between the bytes that need work.
 * Floats use the shortest of %.15g/%.16g/%.17g that reads back to the same bits; a
 * float whose text would look like an integer literal beyond 2^53 gets ".0" so it is
 * never read back as an int64 (reader.h's number rule).
 */
#include "json/emit.h"
#include "util/utf8.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define JE_TWO53 9007199254740992.0

/* 0: copy as is; 1: needs an escape; 2: first byte of a multi-byte sequence to check.
 * A table, as this is looked up for every byte of every stored string. */
static const unsigned char je_kind[256] = {
    [0x00 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1, [0x80 ... 0xff] = 2,
};

static void je_escape(unsigned char c, buf *out) {
    static const char hex[] = "0123456789abcdef";
    char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
    switch (c) {
    case '"': buf_append(out, "\\\"", 2); break;
    case '\\': buf_append(out, "\\\\", 2); break;
    case '\b': buf_append(out, "\\b", 2); break;
    case '\f': buf_append(out, "\\f", 2); break;
    case '\n': buf_append(out, "\\n", 2); break;
    case '\r': buf_append(out, "\\r", 2); break;
    case '\t': buf_append(out, "\\t", 2); break;
    default: buf_append(out, u, 6); break;
    }
}

void json_emit_string(const char *str, size_t n, buf *out) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0;
    buf_reserve(out, n + 2);
    buf_putc(out, '"');
    for (;;) {
        while (i < n && !je_kind[s[i]]) i++;
        if (i == n) break;
        size_t len = je_kind[s[i]] == 2 ? utf8_seq(s + i, n - i) : 0;
        if (len) {
            i += len;
            continue;
        }
        buf_append(out, s + run, i - run);
        if (je_kind[s[i]] == 1) je_escape(s[i], out);
        else buf_append(out, "\xEF\xBF\xBD", 3);
        run = ++i;
    }
    buf_append(out, s + run, i - run);
    buf_putc(out, '"');
}

int json_string_verbatim(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n; i++)
        if (je_kind[s[i]]) return 0;
    return 1;
}

/* Whether text is -?[0-9]+, i.e. would be read as an integer literal. */
static int je_int_literal(const char *t) {
    if (*t == '-') t++;
    if (!*t) return 0;
    for (; *t; t++)
        if (*t < '0' || *t > '9') return 0;
    return 1;
}

/* Integral doubles below 1e15 (ids, counts) print as plain integers, which is what %.15g
 * would give, without the cost of snprintf and strtod. */
static int je_small_integer(double d, buf *out) {
    if (!(d > -1e15 && d < 1e15) || d != (double)(int64_t)d || (d == 0 && signbit(d))) return 0;
    char t[24];
    char *p = t + sizeof t;
    int64_t i = (int64_t)d;
    uint64_t u = i < 0 ? (uint64_t)(-i) : (uint64_t)i;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (i < 0) *--p = '-';
    buf_append(out, p, (size_t)(t + sizeof t - p));
    return 1;
}

void json_emit_double(double d, buf *out) {
    char t[40];
    if (je_small_integer(d, out)) return;
    /* Subnormals carry few significant bits, so their shortest form may be far below 15
     * digits (5e-324); normal doubles never need fewer than %.15g gives. */
    int prec = fabs(d) < DBL_MIN ? 1 : 15;
    for (; prec < 17; prec++) {
        snprintf(t, sizeof t, "%.*g", prec, d);
        if (strtod(t, NULL) == d) break;
    }
    if (prec == 17) snprintf(t, sizeof t, "%.17g", d);
    buf_puts(out, t);
    if (fabs(d) > JE_TWO53 && je_int_literal(t)) buf_append(out, ".0", 2);
}

void json_emit_decimal(int neg, uint64_t dec, buf *out) {
    uint64_t m = VAL_DEC_MANT(dec);
    int e10 = VAL_DEC_EXP10(dec);
    while (m % 10 == 0) {
        m /= 10;
        e10++;
    }
    char digits[20], *d = digits + sizeof digits; /* written from the last digit */
    for (uint64_t t = m; t; t /= 10) *--d = (char)('0' + t % 10);
    int nd = (int)(digits + sizeof digits - d);
    int x = nd - 1 + e10; /* the exponent of the first digit, as %e would print it */
    if (neg) buf_putc(out, '-');
    if (x < -4 || x >= 15) { /* %.15g's exponent form */
        buf_putc(out, d[0]);
        if (nd > 1) {
            buf_putc(out, '.');
            buf_append(out, d + 1, (size_t)nd - 1);
        }
        buf_printf(out, "e%c%02d", x < 0 ? '-' : '+', x < 0 ? -x : x);
    } else if (x >= nd - 1) { /* an integer: the digits, then zeros */
        buf_append(out, d, (size_t)nd);
        for (int i = nd - 1; i < x; i++) buf_putc(out, '0');
    } else if (x >= 0) {
        buf_append(out, d, (size_t)x + 1);
        buf_putc(out, '.');
        buf_append(out, d + x + 1, (size_t)(nd - x - 1));
    } else {
        buf_append(out, "0.", 2);
        for (int i = 0; i < -x - 1; i++) buf_putc(out, '0');
        buf_append(out, d, (size_t)nd);
    }
}

static void je_special(const char *key, uint64_t bits, buf *out) {
    unsigned char b[8];
    char b64[sodium_base64_ENCODED_LEN(8, sodium_base64_VARIANT_ORIGINAL)];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(bits >> (8 * i));
    sodium_bin2base64(b64, sizeof b64, b, sizeof b, sodium_base64_VARIANT_ORIGINAL);
    buf_printf(out, "{\"%s\":\"%s\"}", key, b64);
}

static void je_float(double d, int clean, buf *out) {
    int special = isnan(d) || isinf(d) || (d == 0 && signbit(d));
    if (special && !clean) {
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        je_special("$float", bits, out);
    } else if (isnan(d)) {
        buf_puts(out, "\"NaN\"");
    } else if (isinf(d)) {
        buf_puts(out, d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    } else if (special) {
        buf_puts(out, "-0.0");
    } else {
        json_emit_double(d, out);
    }
}

static void je_value(const val *v, int clean, buf *out) {
    switch (v->type) {
    case VAL_NULL: buf_append(out, "null", 4); break;
    case VAL_BOOL: buf_puts(out, v->u.b ? "true" : "false"); break;
    case VAL_FLOAT:
        if (v->u.dec) json_emit_decimal(signbit(v->u.f), v->u.dec, out);
        else je_float(v->u.f, clean, out);
        break;
    case VAL_INT:
        if (clean) buf_printf(out, "\"%" PRId64 "\"", v->u.i);
        else je_special("$integer", (uint64_t)v->u.i, out);
        break;
    case VAL_STRING: json_emit_string(v->u.s.p, v->u.s.len, out); break;
    case VAL_ARRAY:
        buf_putc(out, '[');
        for (size_t i = 0; i < v->u.a.n; i++) {
            if (i) buf_putc(out, ',');
            je_value(v->u.a.items[i], clean, out);
        }
        buf_putc(out, ']');
        break;
    case VAL_OBJECT:
        buf_putc(out, '{');
        for (size_t i = 0; i < v->u.o.n; i++) {
            const val_field *f = &v->u.o.fields[i];
            if (i) buf_putc(out, ',');
            json_emit_string(f->key, f->key_len, out);
            buf_putc(out, ':');
            je_value(f->v, clean, out);
        }
        buf_putc(out, '}');
        break;
    }
}

void json_emit_convex(const val *v, buf *out) { je_value(v, 0, out); }

void json_emit_clean(const val *v, buf *out) { je_value(v, 1, out); }

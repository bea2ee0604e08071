/*
 * buf.h — a growable byte buffer, the one way this code builds output.
 *
 * Allocation failure aborts the process (xalloc.h): every buffer is bounded by a request
 * limit, so running out of memory is a server fault, not something to unwind from.
 * The content is always followed by a NUL byte (not counted in len), so a buffer can be
 * handed to C string functions when it holds text.
 */
#ifndef TR_BUF_H
#define TR_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

typedef struct buf {
    char *p;     /* content; NULL until something is added */
    size_t len;  /* bytes used */
    size_t cap;  /* bytes allocated */
} buf;

#define BUF_INIT {NULL, 0, 0}

void buf_free(buf *b);                 /* releases memory; b is empty afterwards */
void buf_reset(buf *b);                /* len = 0, keeps the allocation */
void buf_reserve(buf *b, size_t more); /* room for `more` bytes (+ NUL) after len */
void buf_grow(buf *b, size_t need);    /* capacity of at least `need` bytes (for buf_putc) */
/* Appending is inline: emitters call it for every comma, quote, key and short string,
 * mostly with a length the compiler knows. */
static inline void buf_append(buf *b, const void *p, size_t n) {
    if (b->len + n + 1 > b->cap) buf_grow(b, b->len + n + 1);
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}
static inline void buf_putc(buf *b, char c) {
    if (b->len + 2 > b->cap) buf_grow(b, b->len + 2);
    b->p[b->len++] = c;
    b->p[b->len] = '\0';
}
static inline void buf_puts(buf *b, const char *s) { buf_append(b, s, strlen(s)); }
void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(buf *b, const char *fmt, va_list ap);
/* Hands the content over to the caller (to free()); b is empty afterwards. */
char *buf_steal(buf *b);

#endif

/*
 * arena.c — chunked bump allocator (see arena.h).
 *
 * Chunks form a list; a request larger than the standard chunk gets a chunk of its own.
 * Reset keeps the first standard chunk so a steady stream of messages allocates nothing.
 */
#include "util/arena.h"
#include "util/xalloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_CHUNK (64 * 1024)
#define ARENA_ALIGN 16

typedef struct chunk {
    struct chunk *next;
    size_t size;  /* usable bytes in data */
    size_t used;
    _Alignas(ARENA_ALIGN) unsigned char data[];
} chunk;

struct arena {
    chunk *head;  /* current chunk; older ones follow */
    size_t used;  /* total handed out since reset */
};

static chunk *chunk_new(size_t size) {
    chunk *c = xmalloc(sizeof(chunk) + size);
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

arena *arena_new(void) {
    arena *a = xcalloc(1, sizeof *a);
    a->head = chunk_new(ARENA_CHUNK);
    return a;
}

void arena_free(arena *a) {
    if (!a) return;
    chunk *c = a->head;
    while (c) {
        chunk *n = c->next;
        free(c);
        c = n;
    }
    free(a);
}

void arena_reset(arena *a) {
    chunk *keep = NULL;
    chunk *c = a->head;
    while (c) {
        chunk *n = c->next;
        if (!keep && c->size == ARENA_CHUNK) {
            keep = c;
        } else {
            free(c);
        }
        c = n;
    }
    if (!keep) keep = chunk_new(ARENA_CHUNK);
    keep->next = NULL;
    keep->used = 0;
    a->head = keep;
    a->used = 0;
}

void *arena_alloc(arena *a, size_t n) {
    size_t rounded = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (rounded < n) abort(); /* overflow */
    chunk *c = a->head;
    if (c->size - c->used < rounded) {
        if (rounded > ARENA_CHUNK / 4) {
            /* big block: own chunk, placed behind the current one so the current keeps filling */
            chunk *big = chunk_new(rounded);
            big->used = rounded;
            big->next = c->next;
            c->next = big;
            a->used += rounded;
            return big->data;
        }
        c = chunk_new(ARENA_CHUNK);
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += rounded;
    a->used += rounded;
    return p;
}

char *arena_strndup(arena *a, const char *p, size_t n) {
    char *s = arena_alloc(a, n + 1);
    if (n) memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

size_t arena_used(const arena *a) { return a->used; }

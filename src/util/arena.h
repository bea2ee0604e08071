/*
 * arena.h — bump allocator for values that live exactly as long as one unit of work.
 *
 * The import path builds one message at a time as a small tree; all of its nodes come
 * from an arena that is reset after the message has been turned into stored bytes, so
 * a 64 MiB request costs no per-node malloc/free and never holds more than one message
 * as a tree. Allocation failure aborts (xalloc.h).
 */
#ifndef TR_ARENA_H
#define TR_ARENA_H

#include <stddef.h>

typedef struct arena arena;

arena *arena_new(void);
void arena_free(arena *a);
/* Forgets every allocation; keeps one chunk for reuse, frees the rest. */
void arena_reset(arena *a);
/* n bytes, 16-byte aligned, uninitialised. */
void *arena_alloc(arena *a, size_t n);
/* n bytes copied from p, followed by a NUL byte. */
char *arena_strndup(arena *a, const char *p, size_t n);
/* Bytes handed out since the last reset (for limits and tests). */
size_t arena_used(const arena *a);

#endif

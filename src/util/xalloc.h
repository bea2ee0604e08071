/*
 * xalloc.h — allocation that never returns NULL.
 *
 * Every allocation in tributary is bounded by a configured limit (body size, document
 * size), so an allocation failure means the machine is out of memory: we log and abort
 * instead of threading NULL checks through every parser callback.
 */
#ifndef TR_XALLOC_H
#define TR_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif

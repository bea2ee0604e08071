/*
 * utf8.h — strict UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above
 * U+10FFFF). The JSON reader refuses what this refuses, and the emitter replaces it, so
 * both sides agree on what valid text is.
 */
#ifndef TR_UTF8_H
#define TR_UTF8_H

#include <stddef.h>

/* Length (1-4) of the well-formed sequence starting at s[0], or 0 if there is none. */
size_t utf8_seq(const unsigned char *s, size_t n);

/* Whether all n bytes are well-formed UTF-8. */
int utf8_valid(const unsigned char *s, size_t n);

#endif

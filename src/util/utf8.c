/*
 * utf8.c — strict UTF-8 checks (see utf8.h). The validator skips ASCII eight bytes at a
 * time: almost all JSON text is ASCII.
 */
#include "util/utf8.h"

#include <stdint.h>
#include <string.h>

static int utf8_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return n >= 2 && utf8_cont(s[1]) ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || !utf8_cont(s[1]) || !utf8_cont(s[2])) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;
        if (c == 0xED && s[1] >= 0xA0) return 0;
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || !utf8_cont(s[1]) || !utf8_cont(s[2]) || !utf8_cont(s[3])) return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;
        if (c == 0xF4 && s[1] >= 0x90) return 0;
        return 4;
    }
    return 0;
}

int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ULL) break;
            i += 8;
        }
        if (i >= n) break;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t len = utf8_seq(s + i, n - i);
        if (!len) return 0;
        i += len;
    }
    return 1;
}

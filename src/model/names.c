/*
 * names.c — Convex's name rules and the streaming-import rewriting of bad names.
 *
 * The reference rewrites a bad name with the Rust `slugify` crate on top of `unidecode`.
 * Once the text is ASCII that slug is simply the runs of [a-z0-9] joined by single '_'
 * (trimming and the trailing-'_' rule only ever remove separators), so slugging is one
 * pass that emits a '_' lazily, when the next letter or digit arrives. Transliteration
 * uses unidecode's own table for U+0080..U+0233 (Latin-1 Supplement, Latin Extended-A
 * and -B), so names come out as the reference makes them; combining accents and
 * characters outside the Basic Multilingual Plane vanish as they do there, and any other
 * character (or a byte that is not UTF-8) separates words.
 */
#include "model/names.h"

#include <stdint.h>
#include <string.h>

#define NAMES_PREFIX "source_"
#define NAMES_PREFIX_LEN 7
#define NAMES_LATIN_FIRST 0x80
#define NAMES_LATIN_END 0x234
#define NAMES_QUOTE_MAX 40 /* bytes of a raw name quoted in an error message */

/* unidecode's transliterations (lowercased) of U+0080..U+0233. */
static const char names_latin[NAMES_LATIN_END - NAMES_LATIN_FIRST][4] = {
    /* U+0080 */ "", "", "", "", "", "", "", "",
    /* U+0088 */ "", "", "", "", "", "", "", "",
    /* U+0090 */ "", "", "", "", "", "", "", "",
    /* U+0098 */ "", "", "", "", "", "", "", "",
    /* U+00A0 */ " ", "!", "c/", "ps", "$?", "y=", "|", "ss",
    /* U+00A8 */ "\"", "(c)", "a", "<<", "!", "", "(r)", "-",
    /* U+00B0 */ "deg", "+-", "2", "3", "'", "u", "p", "*",
    /* U+00B8 */ ",", "1", "o", ">>", "1/4", "1/2", "3/4", "?",
    /* U+00C0 */ "a", "a", "a", "a", "a", "a", "ae", "c",
    /* U+00C8 */ "e", "e", "e", "e", "i", "i", "i", "i",
    /* U+00D0 */ "d", "n", "o", "o", "o", "o", "o", "x",
    /* U+00D8 */ "o", "u", "u", "u", "u", "u", "th", "ss",
    /* U+00E0 */ "a", "a", "a", "a", "a", "a", "ae", "c",
    /* U+00E8 */ "e", "e", "e", "e", "i", "i", "i", "i",
    /* U+00F0 */ "d", "n", "o", "o", "o", "o", "o", "/",
    /* U+00F8 */ "o", "u", "u", "u", "u", "y", "th", "y",
    /* U+0100 */ "a", "a", "a", "a", "a", "a", "c", "c",
    /* U+0108 */ "c", "c", "c", "c", "c", "c", "d", "d",
    /* U+0110 */ "d", "d", "e", "e", "e", "e", "e", "e",
    /* U+0118 */ "e", "e", "e", "e", "g", "g", "g", "g",
    /* U+0120 */ "g", "g", "g", "g", "h", "h", "h", "h",
    /* U+0128 */ "i", "i", "i", "i", "i", "i", "i", "i",
    /* U+0130 */ "i", "i", "ij", "ij", "j", "j", "k", "k",
    /* U+0138 */ "k", "l", "l", "l", "l", "l", "l", "l",
    /* U+0140 */ "l", "l", "l", "n", "n", "n", "n", "n",
    /* U+0148 */ "n", "'n", "ng", "ng", "o", "o", "o", "o",
    /* U+0150 */ "o", "o", "oe", "oe", "r", "r", "r", "r",
    /* U+0158 */ "r", "r", "s", "s", "s", "s", "s", "s",
    /* U+0160 */ "s", "s", "t", "t", "t", "t", "t", "t",
    /* U+0168 */ "u", "u", "u", "u", "u", "u", "u", "u",
    /* U+0170 */ "u", "u", "u", "u", "w", "w", "y", "y",
    /* U+0178 */ "y", "z", "z", "z", "z", "z", "z", "s",
    /* U+0180 */ "b", "b", "b", "b", "6", "6", "o", "c",
    /* U+0188 */ "c", "d", "d", "d", "d", "d", "3", "@",
    /* U+0190 */ "e", "f", "f", "g", "g", "hv", "i", "i",
    /* U+0198 */ "k", "k", "l", "l", "w", "n", "n", "o",
    /* U+01A0 */ "o", "o", "oi", "oi", "p", "p", "yr", "2",
    /* U+01A8 */ "2", "sh", "sh", "t", "t", "t", "t", "u",
    /* U+01B0 */ "u", "y", "v", "y", "y", "z", "z", "zh",
    /* U+01B8 */ "zh", "zh", "zh", "2", "5", "5", "ts", "w",
    /* U+01C0 */ "|", "||", "|=", "!", "dz", "dz", "dz", "lj",
    /* U+01C8 */ "lj", "lj", "nj", "nj", "nj", "a", "a", "i",
    /* U+01D0 */ "i", "o", "o", "u", "u", "u", "u", "u",
    /* U+01D8 */ "u", "u", "u", "u", "u", "@", "a", "a",
    /* U+01E0 */ "a", "a", "ae", "ae", "g", "g", "g", "g",
    /* U+01E8 */ "k", "k", "o", "o", "o", "o", "zh", "zh",
    /* U+01F0 */ "j", "dz", "d", "dz", "g", "g", "hv", "w",
    /* U+01F8 */ "n", "n", "a", "a", "ae", "ae", "o", "o",
    /* U+0200 */ "a", "a", "a", "a", "e", "e", "e", "e",
    /* U+0208 */ "i", "i", "i", "i", "o", "o", "o", "o",
    /* U+0210 */ "r", "r", "r", "r", "u", "u", "u", "u",
    /* U+0218 */ "s", "s", "t", "t", "y", "y", "h", "h",
    /* U+0220 */ "[?]", "[?]", "ou", "ou", "z", "z", "a", "a",
    /* U+0228 */ "e", "e", "o", "o", "o", "o", "o", "o",
    /* U+0230 */ "o", "o", "y", "y",
};

static int names_is_alpha(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static int names_is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int names_is_word(unsigned char c) {
    return names_is_alpha(c) || names_is_digit(c) || c == '_';
}

int names_table_valid(const char *s, size_t n) {
    if (n == 0 || n > NAMES_TABLE_MAX || !names_is_alpha((unsigned char)s[0])) return 0;
    for (size_t i = 1; i < n; i++) {
        if (!names_is_word((unsigned char)s[i])) return 0;
    }
    return 1;
}

int names_identifier(const char *s, size_t n) {
    if (n == 0 || n > NAMES_TABLE_MAX) return 0;
    unsigned char c0 = (unsigned char)s[0];
    if (!names_is_alpha(c0) && c0 != '_') return 0;
    int only_underscores = c0 == '_';
    for (size_t i = 1; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!names_is_word(c)) return 0;
        if (c != '_') only_underscores = 0;
    }
    return !only_underscores;
}

int names_field_kept(const char *s, size_t n) {
    if (n > NAMES_FIELD_MAX) return 0;
    if (n > 0 && (s[0] == '$' || s[0] == '_')) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e) return 0;
    }
    return 1;
}

/* Slug output: writes at most cap bytes but counts them all, like snprintf. */
typedef struct names_slug {
    char *out;
    size_t cap;
    size_t len;
    int pending; /* a separator was seen since the last letter or digit */
} names_slug;

static void names_slug_char(names_slug *w, unsigned char c) {
    if (c >= 'A' && c <= 'Z') c = (unsigned char)(c | 0x20);
    if (!((c >= 'a' && c <= 'z') || names_is_digit(c))) {
        w->pending = 1;
        return;
    }
    if (w->pending && w->len > 0) {
        if (w->len < w->cap) w->out[w->len] = '_';
        w->len++;
    }
    w->pending = 0;
    if (w->len < w->cap) w->out[w->len] = (char)c;
    w->len++;
}

static int names_cont(const unsigned char *s, size_t n, size_t i) {
    return i < n && (s[i] & 0xc0) == 0x80;
}

/* Transliterates the character at s[i] into w; returns the bytes it used. */
static size_t names_slug_next(names_slug *w, const unsigned char *s, size_t n, size_t i) {
    unsigned char c = s[i];
    if (c < 0x80) {
        names_slug_char(w, c);
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf && names_cont(s, n, i + 1)) {
        uint32_t cp = ((uint32_t)(c & 0x1f) << 6) | (s[i + 1] & 0x3f);
        if (cp < NAMES_LATIN_END) {
            for (const char *t = names_latin[cp - NAMES_LATIN_FIRST]; *t; t++) {
                names_slug_char(w, (unsigned char)*t);
            }
        } else if (cp < 0x300 || cp >= 0x370) {
            w->pending = 1; /* beyond the table; combining accents just vanish */
        }
        return 2;
    }
    if (c >= 0xe0 && c <= 0xef && names_cont(s, n, i + 1) && names_cont(s, n, i + 2)) {
        int overlong = c == 0xe0 && s[i + 1] < 0xa0;
        int surrogate = c == 0xed && s[i + 1] >= 0xa0;
        w->pending = 1;
        return overlong || surrogate ? 1 : 3;
    }
    if (c >= 0xf0 && c <= 0xf4 && names_cont(s, n, i + 1) && names_cont(s, n, i + 2) &&
        names_cont(s, n, i + 3) && !(c == 0xf0 && s[i + 1] < 0x90) &&
        !(c == 0xf4 && s[i + 1] >= 0x90)) {
        return 4; /* outside unidecode's table: the reference drops it */
    }
    w->pending = 1;
    return 1;
}

/* Writes slug(raw) into out (at most cap bytes, no NUL); returns its full length. */
static size_t names_slug_write(const char *raw, size_t n, char *out, size_t cap) {
    names_slug w = {out, cap, 0, 0};
    const unsigned char *s = (const unsigned char *)raw;
    for (size_t i = 0; i < n;) i += names_slug_next(&w, s, n, i);
    return w.len;
}

/* Every input byte yields at most two slug bytes ("deg" comes from two bytes). */
static size_t names_slug_bound(size_t n) { return 2 * n; }

void names_source_slug(const char *raw, size_t n, buf *out) {
    size_t room = names_slug_bound(n);
    buf_reserve(out, NAMES_PREFIX_LEN + room);
    memcpy(out->p + out->len, NAMES_PREFIX, NAMES_PREFIX_LEN);
    out->len += NAMES_PREFIX_LEN;
    out->len += names_slug_write(raw, n, out->p + out->len, room);
    out->p[out->len] = '\0';
}

/* Length of a quotable prefix of s: at most NAMES_QUOTE_MAX bytes, cut between
 * characters so the message stays readable UTF-8. */
static int names_quote_len(const char *s, size_t n) {
    if (n <= NAMES_QUOTE_MAX) return (int)n;
    size_t cut = NAMES_QUOTE_MAX;
    while (cut > 0 && ((unsigned char)s[cut] & 0xc0) == 0x80) cut--;
    return (int)cut;
}

int names_table_rewrite(const char *raw, size_t n, char out[NAMES_TABLE_MAX + 1], tr_err *e) {
    if (names_table_valid(raw, n)) {
        memcpy(out, raw, n);
        out[n] = '\0';
        return 0;
    }
    char *slug = out + NAMES_PREFIX_LEN;
    size_t cap = NAMES_TABLE_MAX - NAMES_PREFIX_LEN;
    size_t len = names_slug_write(raw, n, slug, cap);
    memcpy(out, NAMES_PREFIX, NAMES_PREFIX_LEN);
    if (len > cap) {
        int q = names_quote_len(raw, n);
        out[NAMES_PREFIX_LEN + NAMES_QUOTE_MAX - 3] = '\0';
        return err_set(e, 400, "InvalidTableName",
                       "Invalid table name \"%.*s%s\": rewritten as \"%s...\" it is %zu "
                       "characters long (maximum %d).",
                       q, raw, (size_t)q < n ? "..." : "", out, NAMES_PREFIX_LEN + len,
                       NAMES_TABLE_MAX);
    }
    slug[len] = '\0';
    return 0;
}

void names_quote(const char *s, size_t n, size_t max, buf *out) {
    size_t q = n;
    if (q > max) {
        q = max;
        while (q > 0 && ((unsigned char)s[q] & 0xc0) == 0x80) q--;
    }
    buf_putc(out, '"');
    for (size_t i = 0; i < q; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            buf_putc(out, '\\');
            buf_putc(out, (char)c);
        } else if (c < 0x20 || c == 0x7f) {
            buf_printf(out, "\\u%04x", c);
        } else {
            buf_putc(out, (char)c);
        }
    }
    if (q < n) buf_puts(out, "...");
    buf_putc(out, '"');
}

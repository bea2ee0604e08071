/*
 * records.c — deterministic Airbyte-shaped records for the benchmark (see records.h).
 *
 * Values come from a splitmix64 stream seeded by (seed, j, version): cheap, portable and
 * identical in every program, so no record file has to be written or shared. The text is
 * produced with snprintf before any clock starts, so its speed does not matter.
 */
#include "records.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REC_KEY_BITS 40
#define REC_KEY_MASK ((UINT64_C(1) << REC_KEY_BITS) - 1)

void rec_spec_init(rec_spec *s) {
    s->seed = 1;
    s->first = 0;
    s->count = 0;
    s->stride = 1;
    s->version = 0;
    s->batch = 1000;
}

static int rec_parse_u64(const char *name, const char *value, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 10);
    if (errno || end == value || *end || value[0] == '-') {
        fprintf(stderr, "--%s: expected a non-negative integer, got '%s'\n", name, value);
        return -1;
    }
    *out = v;
    return 0;
}

int rec_spec_option(rec_spec *s, const char *name, const char *value) {
    uint64_t v;
    static const char *const names[] = {"seed", "first", "count", "stride", "version", "batch"};
    size_t k = 0;
    while (k < sizeof names / sizeof names[0] && strcmp(names[k], name) != 0) k++;
    if (k == sizeof names / sizeof names[0]) return 0;
    if (rec_parse_u64(name, value, &v) != 0) return -1;
    if ((k == 3 || k == 5) && v == 0) {
        fprintf(stderr, "--%s must be at least 1\n", name);
        return -1;
    }
    switch (k) {
    case 0: s->seed = v; break;
    case 1: s->first = v; break;
    case 2: s->count = v; break;
    case 3: s->stride = v; break;
    case 4: s->version = (unsigned)v; break;
    default: s->batch = (size_t)v; break;
    }
    return 1;
}

uint64_t rec_nbatches(const rec_spec *s) { return (s->count + s->batch - 1) / s->batch; }

void rec_batch_range(const rec_spec *s, uint64_t b, uint64_t *lo, uint64_t *hi) {
    *lo = b * s->batch;
    *hi = *lo + s->batch < s->count ? *lo + s->batch : s->count;
}

uint64_t rec_j(const rec_spec *s, uint64_t i) { return s->first + i * s->stride; }

uint64_t rec_key(uint64_t j) {
    /* odd multipliers and right xor-shifts are both bijections modulo 2^40 */
    uint64_t x = j & REC_KEY_MASK;
    x = (x * UINT64_C(0x9E3779B97F)) & REC_KEY_MASK;
    x ^= x >> 21;
    x = (x * UINT64_C(0xC2B2AE3D27)) & REC_KEY_MASK;
    x ^= x >> 19;
    return x;
}

static uint64_t rec_mix(uint64_t *state) {
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static uint64_t rec_stream(uint64_t seed, uint64_t j, unsigned version) {
    uint64_t st = seed;
    uint64_t a = rec_mix(&st);
    st = a ^ j;
    uint64_t b = rec_mix(&st);
    st = b ^ ((uint64_t)version << 32);
    return rec_mix(&st);
}

static unsigned rec_below(uint64_t *st, unsigned n) { return (unsigned)(rec_mix(st) % n); }

static double rec_unit(uint64_t *st) { return (double)(rec_mix(st) >> 11) / 9007199254740992.0; }

/* A lowercase word of 3..7 letters, written NUL-terminated into w (8 bytes). */
static void rec_word(uint64_t *st, char w[8]) {
    unsigned n = 3 + rec_below(st, 5);
    for (unsigned k = 0; k < n; k++) w[k] = (char)('a' + rec_below(st, 26));
    w[n] = 0;
}

size_t rec_json(char *out, uint64_t seed, uint64_t j, unsigned version) {
    static const char *const status[] = {"active", "trial", "churned", "paused"};
    static const char *const city[] = {"Lisbon", "Osaka", "Quito", "Tallinn",
                                       "Accra",  "Perth", "Bergen", "Cusco"};
    static const char *const tag[] = {"alpha", "beta", "gamma", "delta",
                                      "omega", "kappa", "sigma", "zeta"};
    uint64_t st = rec_stream(seed, j, version);
    char first[8], last[8], mail[8];
    rec_word(&st, first);
    rec_word(&st, last);
    rec_word(&st, mail);
    double balance = (double)rec_below(&st, 10000000) / 100.0;
    int active = rec_below(&st, 2);
    double lat = rec_unit(&st) * 180.0 - 90.0, lon = rec_unit(&st) * 360.0 - 180.0;
    unsigned zip = rec_below(&st, 100000), ntags = 1 + rec_below(&st, 3);
    unsigned mon = 1 + rec_below(&st, 12), day = 1 + rec_below(&st, 28);
    unsigned sec = rec_below(&st, 86400);
    int n = snprintf(out, REC_MAX,
                     "{\"id\":%llu,\"name\":\"%s %s\",\"email\":\"%s@%s.com\","
                     "\"status\":\"%s\",\"active\":%s,\"balance\":%.2f,"
                     "\"address\":{\"city\":\"%s\",\"zip\":\"%05u\","
                     "\"geo\":{\"lat\":%.5f,\"lon\":%.5f}},\"tags\":[",
                     (unsigned long long)rec_key(j), first, last, mail, last,
                     status[rec_below(&st, 4)], active ? "true" : "false", balance,
                     city[rec_below(&st, 8)], zip, lat, lon);
    for (unsigned k = 0; k < ntags; k++)
        n += snprintf(out + n, (size_t)(REC_MAX - n), "%s\"%s\"", k ? "," : "",
                      tag[rec_below(&st, 8)]);
    n += snprintf(out + n, (size_t)(REC_MAX - n),
                  "],\"updated_at\":\"2026-%02u-%02uT%02u:%02u:%02uZ\",\"version\":%u}", mon,
                  day, sec / 3600, sec / 60 % 60, sec % 60, version);
    return (size_t)n;
}

void rec_docid(uint64_t seed, uint64_t j, unsigned char out[16]) {
    uint64_t st = rec_stream(seed ^ UINT64_C(0xD0C1D), j, 0);
    uint64_t tail = rec_mix(&st);
    for (int b = 0; b < 8; b++) {
        out[b] = (unsigned char)(j >> (56 - 8 * b));
        out[8 + b] = (unsigned char)(tail >> (8 * b));
    }
}

void rec_keybytes(uint64_t j, unsigned char out[8]) {
    uint64_t k = rec_key(j);
    for (int b = 7; b >= 0; b--) {
        out[b] = (unsigned char)(k & 0xff);
        k >>= 8;
    }
}

double rec_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

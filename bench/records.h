/*
 * records.h — the benchmark's records, shared by the load generator and the baselines.
 *
 * Every program of the benchmark derives the same records from the same numbers, so the
 * server and the baselines write byte-identical data: record j of a run has primary key
 * rec_key(j) and a JSON text that depends only on (seed, j, version). A workload is the
 * arithmetic sequence j = first, first + stride, ... (count records) cut into batches,
 * which is enough to express every phase the driver needs (append, the pre-load of half
 * the keys, the batches that update half and insert half, filler rows).
 */
#ifndef BENCH_RECORDS_H
#define BENCH_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#define REC_MAX 512 /* longest JSON text rec_json can produce, with room to spare */

typedef struct rec_spec {
    uint64_t seed;
    uint64_t first;   /* j of the first record */
    uint64_t count;   /* number of records */
    uint64_t stride;  /* step between consecutive j */
    unsigned version; /* changes every value but not the key: updates of the same rows */
    size_t batch;     /* records per request / transaction */
} rec_spec;

/* The defaults every program starts from: seed 1, j = 0.., stride 1, version 0, batch 1000. */
void rec_spec_init(rec_spec *s);

/* Applies one of the shared command-line options (--seed --first --count --stride
 * --version --batch). Returns 1 when `name` was one of them, 0 when it is not, -1 (after
 * a message on stderr) when its value is invalid. */
int rec_spec_option(rec_spec *s, const char *name, const char *value);

/* Number of batches, the last one possibly short. */
uint64_t rec_nbatches(const rec_spec *s);

/* The record range [*lo, *hi) (indexes into the workload, not j) of batch b. */
void rec_batch_range(const rec_spec *s, uint64_t b, uint64_t *lo, uint64_t *hi);

/* j of the i-th record of the workload. */
uint64_t rec_j(const rec_spec *s, uint64_t i);

/* The primary key value of record j: a bijection of j onto [0, 2^40), so consecutive
 * records land at scattered places of a key index (as the updated rows of an incremental
 * sync do), while staying exact in a float64. */
uint64_t rec_key(uint64_t j);

/* Writes the record's JSON object (no NUL needed by callers; one is written) into out,
 * which holds at least REC_MAX bytes; returns its length. About 250 bytes: integers,
 * floats, strings, booleans, a nested object and a short array. */
size_t rec_json(char *out, uint64_t seed, uint64_t j, unsigned version);

/* A 16-byte identifier for record j, standing in for the document ID the server draws
 * for an appended record (the baselines' unique key in append mode): j big-endian, then
 * 8 pseudo-random bytes. Like the server's own IDs (a sequence number first), it grows
 * with every record, so the baseline's key index is appended to, not written at random
 * places; a random key would make the baseline, not the server, pay for its layout. */
void rec_docid(uint64_t seed, uint64_t j, unsigned char out[16]);

/* Big-endian bytes of rec_key(j): the baselines' unique key in dedup mode. */
void rec_keybytes(uint64_t j, unsigned char out[8]);

/* Monotonic clock in seconds. */
double rec_now(void);

#endif

/*
 * common.h — what the benchmark programs share besides the records (records.h): the
 * result line they all print, and the command line of the two baselines.
 *
 * bench/run.py reads one JSON object from each program, so the line is written in one
 * place; the baselines take the same options apart from where their database is.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stdint.h>

#include "records.h"

/* Prints {"requests", "records", "bytes", "seconds", "records_per_s", "p50_ms",
 * "p99_ms", "max_ms", <extra>} on one line. lat holds each request's (or transaction's)
 * seconds and is sorted in place; extra is more JSON members without braces. */
void bench_report(double *lat, uint64_t nreq, uint64_t records, uint64_t bytes, double secs,
                  const char *extra);

typedef struct bench_baseline_args {
    const char *target; /* the value of the program's own option (--db or --url) */
    int dedup;          /* --mode dedup */
    int lazy;           /* --lazy: build each batch just before writing it */
    rec_spec spec;      /* --seed --first --count --stride --version --batch */
} bench_baseline_args;

/* Parses a baseline's command line; `target_opt` names its database option ("db").
 * --help prints the usage and exits 0. Returns -1 (usage on stderr) when it is wrong. */
int bench_baseline_parse(int argc, char **argv, const char *prog, const char *target_opt,
                         bench_baseline_args *out);

#endif

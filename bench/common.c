/*
 * common.c — the result line and the baselines' command line (see common.h).
 */
#include "common.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[0..n). */
static double percentile(const double *v, uint64_t n, double p) {
    if (n == 0) return 0;
    uint64_t rank = (uint64_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return v[rank - 1];
}

void bench_report(double *lat, uint64_t nreq, uint64_t records, uint64_t bytes, double secs,
                  const char *extra) {
    qsort(lat, nreq, sizeof *lat, cmp_double);
    printf("{\"requests\":%llu,\"records\":%llu,\"bytes\":%llu,\"seconds\":%.6f,"
           "\"records_per_s\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,%s}\n",
           (unsigned long long)nreq, (unsigned long long)records, (unsigned long long)bytes,
           secs, secs > 0 ? (double)records / secs : 0, 1e3 * percentile(lat, nreq, 50),
           1e3 * percentile(lat, nreq, 99), 1e3 * (nreq ? lat[nreq - 1] : 0), extra);
}

static void usage(FILE *f, const char *prog, const char *target_opt) {
    fprintf(f, "Usage: %s --%s VALUE [--mode append|dedup] [--lazy]\n"
               "       [--seed --first --count --stride --version --batch]  (records.h)\n",
            prog, target_opt);
}

int bench_baseline_parse(int argc, char **argv, const char *prog, const char *target_opt,
                         bench_baseline_args *c) {
    const struct option opts[] = {
        {target_opt, 1, 0, 0}, {"mode", 1, 0, 0},  {"lazy", 0, 0, 0},
        {"seed", 1, 0, 0},     {"first", 1, 0, 0}, {"count", 1, 0, 0},
        {"stride", 1, 0, 0},   {"version", 1, 0, 0}, {"batch", 1, 0, 0},
        {"help", 0, 0, 0},     {0, 0, 0, 0}};
    *c = (bench_baseline_args){0};
    rec_spec_init(&c->spec);
    int idx, o;
    while ((o = getopt_long(argc, argv, "", opts, &idx)) == 0) {
        const char *n = opts[idx].name, *v = optarg;
        int shared = v ? rec_spec_option(&c->spec, n, v) : 0;
        if (shared < 0) return -1;
        if (shared) continue;
        if (!strcmp(n, "help")) {
            usage(stdout, prog, target_opt);
            exit(0);
        } else if (!strcmp(n, target_opt)) c->target = v;
        else if (!strcmp(n, "lazy")) c->lazy = 1;
        else if (!strcmp(n, "mode")) {
            if (strcmp(v, "append") && strcmp(v, "dedup")) {
                fprintf(stderr, "--mode: append or dedup, not '%s'\n", v);
                return -1;
            }
            c->dedup = !strcmp(v, "dedup");
        }
    }
    if (o != -1 || optind < argc || !c->target) {
        usage(stderr, prog, target_opt);
        return -1;
    }
    return 0;
}

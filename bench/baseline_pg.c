/*
 * baseline_pg.c — the PostgreSQL reference point: the benchmark's records and batches
 * written straight into PostgreSQL with libpq, no HTTP and no JSON parsing.
 *
 * The fastest durable path measured on these machines (DESIGN.md): per batch, one
 * transaction; append mode COPYs the batch straight into the documents table; dedup mode
 * COPYs it into a temporary stage table (emptied at commit) and then applies it with one
 * INSERT ... SELECT ... ON CONFLICT (key) DO UPDATE. The schema matches the SQLite
 * baseline: documents(id, key UNIQUE, value). Commits wait for the WAL flush (the server
 * defaults, synchronous_commit=on). The batches' COPY data is built before the clock
 * starts (unless --lazy, for the untimed pre-load).
 *
 * Prints the same JSON object as baseline_sqlite.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "records.h"

typedef struct pg_config {
    const char *url;
    int dedup;
    int lazy;
    rec_spec spec;
} pg_config;

static const char pg_schema[] =
    "CREATE TABLE IF NOT EXISTS documents("
    "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  key bytea NOT NULL UNIQUE,"
    "  value text NOT NULL);"
    "CREATE TEMP TABLE stage(key bytea NOT NULL, value text NOT NULL) ON COMMIT DELETE ROWS;";

static const char pg_upsert[] =
    "INSERT INTO documents(key, value) SELECT key, value FROM stage"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value";

typedef struct pg_buf {
    char *p;
    size_t len, cap;
} pg_buf;

static void pg_reserve(pg_buf *b, size_t more) {
    if (b->len + more <= b->cap) return;
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->len + more) cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p) {
        perror("realloc");
        exit(1);
    }
    b->cap = cap;
}

/* One COPY text-format line: \\x<hex key> TAB <escaped JSON> NL. */
static void pg_row(const pg_config *c, pg_buf *b, uint64_t j) {
    unsigned char key[16];
    size_t klen = 16;
    if (c->dedup) {
        rec_keybytes(j, key);
        klen = 8;
    } else {
        rec_docid(c->spec.seed, j, key);
    }
    char text[REC_MAX];
    size_t n = rec_json(text, c->spec.seed, j, c->spec.version);
    pg_reserve(b, 4 + 2 * klen + 2 * n + 2);
    static const char hex[] = "0123456789abcdef";
    memcpy(b->p + b->len, "\\\\x", 3);
    b->len += 3;
    for (size_t k = 0; k < klen; k++) {
        b->p[b->len++] = hex[key[k] >> 4];
        b->p[b->len++] = hex[key[k] & 15];
    }
    b->p[b->len++] = '\t';
    for (size_t k = 0; k < n; k++) {
        char ch = text[k];
        if (ch == '\\' || ch == '\t' || ch == '\n' || ch == '\r') {
            b->p[b->len++] = '\\';
            ch = ch == '\t' ? 't' : ch == '\n' ? 'n' : ch == '\r' ? 'r' : '\\';
        }
        b->p[b->len++] = ch;
    }
    b->p[b->len++] = '\n';
}

static void pg_build(const pg_config *c, uint64_t batch, pg_buf *b) {
    uint64_t lo, hi;
    rec_batch_range(&c->spec, batch, &lo, &hi);
    b->len = 0;
    for (uint64_t i = lo; i < hi; i++) pg_row(c, b, rec_j(&c->spec, i));
}

static void pg_fail(PGconn *db, const char *what) {
    fprintf(stderr, "baseline_pg: %s: %s", what, PQerrorMessage(db));
    exit(1);
}

static void pg_exec(PGconn *db, const char *sql, ExecStatusType want) {
    PGresult *r = PQexec(db, sql);
    if (PQresultStatus(r) != want) pg_fail(db, sql);
    PQclear(r);
}

static void pg_copy(PGconn *db, const char *sql, const pg_buf *b) {
    PGresult *r = PQexec(db, sql);
    if (PQresultStatus(r) != PGRES_COPY_IN) pg_fail(db, sql);
    PQclear(r);
    if (PQputCopyData(db, b->p, (int)b->len) != 1 || PQputCopyEnd(db, NULL) != 1)
        pg_fail(db, "COPY data");
    r = PQgetResult(db);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) pg_fail(db, "COPY");
    PQclear(r);
    while ((r = PQgetResult(db)) != NULL) PQclear(r);
}

static void pg_batch(const pg_config *c, PGconn *db, const pg_buf *b) {
    pg_exec(db, "BEGIN", PGRES_COMMAND_OK);
    if (c->dedup) {
        pg_copy(db, "COPY stage(key, value) FROM STDIN", b);
        pg_exec(db, pg_upsert, PGRES_COMMAND_OK);
    } else {
        pg_copy(db, "COPY documents(key, value) FROM STDIN", b);
    }
    pg_exec(db, "COMMIT", PGRES_COMMAND_OK);
}

static int pg_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pg_percentile(const double *v, uint64_t n, double p) {
    if (n == 0) return 0;
    uint64_t rank = (uint64_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return v[rank - 1];
}

static long long pg_count(PGconn *db) {
    PGresult *r = PQexec(db, "SELECT count(*) FROM documents");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) pg_fail(db, "count");
    long long n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return n;
}

static void pg_run(const pg_config *c) {
    PGconn *db = PQconnectdb(c->url);
    if (PQstatus(db) != CONNECTION_OK) pg_fail(db, "connect");
    pg_exec(db, pg_schema, PGRES_COMMAND_OK);
    const rec_spec *s = &c->spec;
    uint64_t nb = rec_nbatches(s);
    pg_buf *bufs = calloc(nb ? nb : 1, sizeof *bufs), lazy = {0};
    double *lat = calloc(nb ? nb : 1, sizeof *lat);
    if (!bufs || !lat) abort();
    uint64_t bytes = 0;
    for (uint64_t b = 0; !c->lazy && b < nb; b++) {
        pg_build(c, b, &bufs[b]);
        bytes += bufs[b].len;
    }

    double t0 = rec_now();
    for (uint64_t b = 0; b < nb; b++) {
        double tb = rec_now();
        if (c->lazy) pg_build(c, b, &lazy);
        pg_batch(c, db, c->lazy ? &lazy : &bufs[b]);
        lat[b] = rec_now() - tb;
    }
    double secs = rec_now() - t0;
    long long rows = pg_count(db);

    qsort(lat, nb, sizeof *lat, pg_cmp_double);
    printf("{\"requests\":%llu,\"records\":%llu,\"bytes\":%llu,\"seconds\":%.6f,"
           "\"records_per_s\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
           "\"rows\":%lld}\n",
           (unsigned long long)nb, (unsigned long long)s->count, (unsigned long long)bytes,
           secs, secs > 0 ? (double)s->count / secs : 0, 1e3 * pg_percentile(lat, nb, 50),
           1e3 * pg_percentile(lat, nb, 99), 1e3 * (nb ? lat[nb - 1] : 0), rows);
    PQfinish(db);
    for (uint64_t b = 0; b < nb; b++) free(bufs[b].p);
    free(bufs);
    free(lazy.p);
    free(lat);
}

static void pg_usage(FILE *f) {
    fprintf(f, "Usage: baseline_pg --url CONNINFO [--mode append|dedup] [--lazy]\n"
               "       [--seed --first --count --stride --version --batch]  (records.h)\n");
}

static int pg_parse(int argc, char **argv, pg_config *c) {
    static const struct option opts[] = {
        {"url", 1, 0, 0},   {"mode", 1, 0, 0},  {"lazy", 0, 0, 0},   {"seed", 1, 0, 0},
        {"first", 1, 0, 0}, {"count", 1, 0, 0}, {"stride", 1, 0, 0}, {"version", 1, 0, 0},
        {"batch", 1, 0, 0}, {"help", 0, 0, 0},  {0, 0, 0, 0}};
    *c = (pg_config){0};
    rec_spec_init(&c->spec);
    int idx, o;
    while ((o = getopt_long(argc, argv, "", opts, &idx)) == 0) {
        const char *n = opts[idx].name, *v = optarg;
        int shared = v ? rec_spec_option(&c->spec, n, v) : 0;
        if (shared < 0) return -1;
        if (shared) continue;
        if (!strcmp(n, "help")) {
            pg_usage(stdout);
            exit(0);
        } else if (!strcmp(n, "url")) c->url = v;
        else if (!strcmp(n, "lazy")) c->lazy = 1;
        else if (!strcmp(n, "mode")) {
            if (strcmp(v, "append") && strcmp(v, "dedup")) {
                fprintf(stderr, "--mode: append or dedup, not '%s'\n", v);
                return -1;
            }
            c->dedup = !strcmp(v, "dedup");
        }
    }
    if (o != -1 || optind < argc || !c->url) {
        pg_usage(stderr);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    pg_config cfg;
    if (pg_parse(argc, argv, &cfg) != 0) return 2;
    pg_run(&cfg);
    return 0;
}

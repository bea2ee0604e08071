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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common.h"
#include "util/buf.h"

typedef bench_baseline_args pg_config; /* target: the libpq connection string (--url) */

static const char pg_schema[] =
    "CREATE TABLE IF NOT EXISTS documents("
    "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  key bytea NOT NULL UNIQUE,"
    "  value text NOT NULL);"
    "CREATE TEMP TABLE stage(key bytea NOT NULL, value text NOT NULL) ON COMMIT DELETE ROWS;";

static const char pg_upsert[] =
    "INSERT INTO documents(key, value) SELECT key, value FROM stage"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/* One COPY text-format line: \\x<hex key> TAB <escaped JSON> NL. */
static void pg_row(const pg_config *c, buf *b, uint64_t j) {
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
    buf_reserve(b, 4 + 2 * klen + 2 * n + 2);
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

static void pg_build(const pg_config *c, uint64_t batch, buf *b) {
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

static void pg_copy(PGconn *db, const char *sql, const buf *b) {
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

static void pg_batch(const pg_config *c, PGconn *db, const buf *b) {
    pg_exec(db, "BEGIN", PGRES_COMMAND_OK);
    if (c->dedup) {
        pg_copy(db, "COPY stage(key, value) FROM STDIN", b);
        pg_exec(db, pg_upsert, PGRES_COMMAND_OK);
    } else {
        pg_copy(db, "COPY documents(key, value) FROM STDIN", b);
    }
    pg_exec(db, "COMMIT", PGRES_COMMAND_OK);
}

static long long pg_count(PGconn *db) {
    PGresult *r = PQexec(db, "SELECT count(*) FROM documents");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) pg_fail(db, "count");
    long long n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return n;
}

static void pg_run(const pg_config *c) {
    PGconn *db = PQconnectdb(c->target);
    if (PQstatus(db) != CONNECTION_OK) pg_fail(db, "connect");
    pg_exec(db, pg_schema, PGRES_COMMAND_OK);
    const rec_spec *s = &c->spec;
    uint64_t nb = rec_nbatches(s);
    buf *bufs = calloc(nb ? nb : 1, sizeof *bufs), lazy = {0};
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

    char extra[64];
    snprintf(extra, sizeof extra, "\"rows\":%lld", rows);
    bench_report(lat, nb, s->count, bytes, secs, extra);
    PQfinish(db);
    for (uint64_t b = 0; b < nb; b++) free(bufs[b].p);
    free(bufs);
    free(lazy.p);
    free(lat);
}

int main(int argc, char **argv) {
    pg_config cfg;
    if (bench_baseline_parse(argc, argv, "baseline_pg", "url", &cfg) != 0) return 2;
    pg_run(&cfg);
    return 0;
}

/*
 * baseline_sqlite.c — the benchmark's reference point: the same records and batches as
 * the load generator, written straight into SQLite, with no HTTP and no JSON parsing.
 *
 * It is the smallest program that gives the same guarantees as the server: WAL with
 * synchronous=FULL (a commit is on disk), one transaction per batch, prepared statements,
 * and a minimal schema — a documents table with a unique key index. In append mode the
 * key is a 16-byte identifier per record (the server draws a document ID); in dedup mode
 * it is the record's primary key and a batch upserts with ON CONFLICT DO UPDATE. The
 * records are applied in the order they are sent, as the server receives them. The mmap
 * size is the server writer's own and the page cache no smaller than its (32 MiB,
 * src/store/sqlite.c), so the comparison measures the server's work, not a different
 * SQLite tuning.
 *
 * Every record's JSON text is generated before the clock starts (unless --lazy, for the
 * untimed pre-load). Prints one JSON object like the load generator's (the latencies are
 * those of each batch's transaction) plus the table's row count afterwards.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "common.h"

typedef bench_baseline_args bl_config; /* target: the database file (--db) */

static const char bl_schema[] =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
    "PRAGMA cache_size = -65536; PRAGMA mmap_size = 2147418112;"
    "CREATE TABLE IF NOT EXISTS documents("
    "  id INTEGER PRIMARY KEY,"
    "  key BLOB NOT NULL UNIQUE,"
    "  value TEXT NOT NULL);";

static const char bl_append_sql[] = "INSERT INTO documents(key, value) VALUES (?1, ?2)";
static const char bl_upsert_sql[] = "INSERT INTO documents(key, value) VALUES (?1, ?2)"
                                    " ON CONFLICT(key) DO UPDATE SET value = excluded.value";

/* The records' texts, generated up front: text of record i is
 * texts + off[i] .. texts + off[i + 1]. */
typedef struct bl_records {
    char *texts;
    size_t *off;
} bl_records;

static void bl_generate(const rec_spec *s, bl_records *r) {
    r->off = malloc((s->count + 1) * sizeof *r->off);
    r->texts = malloc(s->count * REC_MAX + 1);
    if (!r->off || !r->texts) {
        perror("malloc");
        exit(1);
    }
    size_t at = 0;
    for (uint64_t i = 0; i < s->count; i++) {
        r->off[i] = at;
        at += rec_json(r->texts + at, s->seed, rec_j(s, i), s->version);
    }
    r->off[s->count] = at;
}

static void bl_check(sqlite3 *db, int rc, const char *what) {
    if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW) return;
    fprintf(stderr, "baseline_sqlite: %s: %s\n", what, sqlite3_errmsg(db));
    exit(1);
}

static void bl_exec(sqlite3 *db, const char *sql) {
    bl_check(db, sqlite3_exec(db, sql, NULL, NULL, NULL), sql);
}

/* One record through the prepared statement; text is the record's JSON. */
static void bl_write(const bl_config *c, sqlite3 *db, sqlite3_stmt *st, uint64_t j,
                     const char *text, size_t len) {
    unsigned char key[16];
    size_t klen = 16;
    if (c->dedup) {
        rec_keybytes(j, key);
        klen = 8;
    } else {
        rec_docid(c->spec.seed, j, key);
    }
    sqlite3_bind_blob(st, 1, key, (int)klen, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, text, (int)len, SQLITE_STATIC);
    bl_check(db, sqlite3_step(st), "insert");
    sqlite3_reset(st);
}

static void bl_run(const bl_config *c) {
    sqlite3 *db;
    if (sqlite3_open(c->target, &db) != SQLITE_OK) {
        fprintf(stderr, "baseline_sqlite: %s: %s\n", c->target, sqlite3_errmsg(db));
        exit(1);
    }
    bl_exec(db, bl_schema);
    sqlite3_stmt *st, *begin, *commit;
    bl_check(db, sqlite3_prepare_v2(db, c->dedup ? bl_upsert_sql : bl_append_sql, -1, &st, 0),
             "prepare");
    bl_check(db, sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, 0), "prepare");
    bl_check(db, sqlite3_prepare_v2(db, "COMMIT", -1, &commit, 0), "prepare");

    const rec_spec *s = &c->spec;
    bl_records recs = {0};
    char one[REC_MAX];
    if (!c->lazy) bl_generate(s, &recs);
    uint64_t nb = rec_nbatches(s);
    double *lat = calloc(nb ? nb : 1, sizeof *lat);
    if (!lat) abort();

    double t0 = rec_now();
    for (uint64_t b = 0; b < nb; b++) {
        double tb = rec_now();
        uint64_t lo, hi;
        rec_batch_range(s, b, &lo, &hi);
        bl_check(db, sqlite3_step(begin), "BEGIN");
        sqlite3_reset(begin);
        for (uint64_t i = lo; i < hi; i++) {
            uint64_t j = rec_j(s, i);
            if (c->lazy)
                bl_write(c, db, st, j, one, rec_json(one, s->seed, j, s->version));
            else
                bl_write(c, db, st, j, recs.texts + recs.off[i], recs.off[i + 1] - recs.off[i]);
        }
        bl_check(db, sqlite3_step(commit), "COMMIT");
        sqlite3_reset(commit);
        lat[b] = rec_now() - tb;
    }
    double secs = rec_now() - t0;
    sqlite3_stmt *count;
    bl_check(db, sqlite3_prepare_v2(db, "SELECT count(*) FROM documents", -1, &count, 0),
             "prepare");
    bl_check(db, sqlite3_step(count), "count");
    long long rows = sqlite3_column_int64(count, 0);
    sqlite3_finalize(count);

    char extra[64];
    snprintf(extra, sizeof extra, "\"rows\":%lld", rows);
    bench_report(lat, nb, s->count, recs.off ? recs.off[s->count] : 0, secs, extra);
    sqlite3_finalize(st);
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    bl_check(db, sqlite3_close(db), "close");
    free(lat);
    free(recs.texts);
    free(recs.off);
}

int main(int argc, char **argv) {
    bl_config cfg;
    if (bench_baseline_parse(argc, argv, "baseline_sqlite", "db", &cfg) != 0) return 2;
    bl_run(&cfg);
    return 0;
}

/*
 * pg_conn.c — the libpq plumbing of the PostgreSQL engine (pg_impl.h).
 *
 * Kept apart from pg.c and pg_read.c so that neither deals with wire formats: values go
 * out as binary parameters and come back as binary results (exact int8/float8/bytea, no
 * text escaping or parsing), bulk rows go in as text COPY (why text: see the COPY
 * section), statements can be sent ahead without waiting (pipeline mode), and every
 * failure becomes the store's error with one classification of what a retry may cure.
 */
#include "store/pg_impl.h"

#include <endian.h>
#include <stdio.h>
#include <string.h>

/* type oids (catalog/pg_type_d.h is not part of libpq-dev) */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25
#define OID_TID 27
#define OID_FLOAT8 701
#define OID_BOOL_ARRAY 1000
#define OID_BYTEA_ARRAY 1001
#define OID_TID_ARRAY 1010
#define OID_INT8_ARRAY 1016

/* COPY data goes out in messages of about this size. Small enough that PostgreSQL
 * inserts the first rows while the writer still builds the rest (a 1000-record job is
 * ~300 KB: with 1 MiB messages the two took turns, and appends ran 10-20% slower). */
#define PG_COPY_CHUNK (1 << 15)

static const char pg_session[] =
    "SET search_path = tributary; SET synchronous_commit = on;"
    " SET client_min_messages = warning; SET jit = off";

/* Connection-level failures: the server is gone, restarting, or refusing connections. */
static int retryable_state(const char *state) {
    if (!state) return 0;
    static const char *const codes[] = {"57P01", "57P02", "57P03", "53300", "40001",
                                        "40P01", "55P03", "25006", NULL};
    if (strncmp(state, "08", 2) == 0) return 1;
    for (int i = 0; codes[i]; i++)
        if (strcmp(state, codes[i]) == 0) return 1;
    return 0;
}

/* libpq messages span lines (ERROR, DETAIL, a caret under the statement); the store's
 * messages are one line: line breaks and tabs become spaces, trailing ones go. */
static void message(const char *m, char *out, size_t n) {
    snprintf(out, n, "%s", m && *m ? m : "unknown error");
    for (char *p = out; *p; p++)
        if (*p == '\n' || *p == '\t' || *p == '\r') *p = ' ';
    size_t len = strlen(out);
    while (len && out[len - 1] == ' ') out[--len] = 0;
}

int pg_error(PGconn *c, const PGresult *r, const char *what, tr_err *e) {
    char m[400];
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *text = r ? PQresultErrorMessage(r) : NULL;
    if (!text || !*text) text = c ? PQerrorMessage(c) : NULL;
    message(text, m, sizeof m);
    if (!c || PQstatus(c) != CONNECTION_OK || retryable_state(state))
        return err_set(e, 503, "DatabaseUnavailable", "PostgreSQL: %s: %s", what, m);
    return err_set(e, 500, "StorageError", "PostgreSQL: %s: %s", what, m);
}

PGconn *pg_connect(const char *url, tr_err *e) {
    /* Defaults first, the URL last: what the URL sets wins (libpq keeps the last value).
     * Keepalives make a dead peer on TCP show within about a minute instead of the
     * kernel's two hours. */
    static const char *const keys[] = {"connect_timeout", "keepalives_idle",
                                       "keepalives_interval", "keepalives_count",
                                       "dbname", NULL};
    const char *values[] = {"10", "30", "10", "3", url, NULL};
    PGconn *c = PQconnectdbParams(keys, values, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        char m[400];
        message(c ? PQerrorMessage(c) : "out of memory", m, sizeof m);
        err_set(e, 503, "DatabaseUnavailable", "Cannot connect to PostgreSQL: %s", m);
        PQfinish(c);
        return NULL;
    }
    if (pg_run(c, pg_session, NULL, e) != 0) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

int pg_alive(PGconn *c) {
    return c && PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) == PQTRANS_IDLE;
}

static void add(pg_params *p, const void *v, int len, int format, Oid type) {
    p->values[p->n] = v;
    p->lengths[p->n] = len;
    p->formats[p->n] = format;
    p->types[p->n] = type;
    p->n++;
}

void pgp_i64(pg_params *p, int64_t v) {
    uint64_t be = htobe64((uint64_t)v);
    memcpy(p->num[p->n], &be, 8);
    add(p, p->num[p->n], 8, 1, OID_INT8);
}

void pgp_f64(pg_params *p, double v) {
    uint64_t bits;
    memcpy(&bits, &v, 8);
    bits = htobe64(bits);
    memcpy(p->num[p->n], &bits, 8);
    add(p, p->num[p->n], 8, 1, OID_FLOAT8);
}

void pgp_bytes(pg_params *p, const void *v, size_t len) {
    add(p, v, (int)len, 1, OID_BYTEA);
}

void pgp_text(pg_params *p, const char *v, size_t len) {
    add(p, v, (int)len, 1, OID_TEXT);
}

/* ---- bytea[] parameters (the binary array format: dimensions, then items) ---- */

static void put32(buf *b, uint32_t v) {
    v = htobe32(v);
    buf_append(b, &v, 4);
}

void pg_array_start(buf *b, int kind, size_t n) {
    static const Oid elem[] = {[PG_ARRAY_BYTEA] = OID_BYTEA, [PG_ARRAY_TID] = OID_TID,
                               [PG_ARRAY_INT8] = OID_INT8, [PG_ARRAY_BOOL] = OID_BOOL};
    buf_reset(b);
    put32(b, 1);           /* dimensions */
    put32(b, 0);           /* no NULLs */
    put32(b, elem[kind]);  /* element type */
    put32(b, (uint32_t)n); /* length */
    put32(b, 1);           /* lower bound */
}

void pg_array_item(buf *b, const void *v, size_t len) {
    put32(b, (uint32_t)len);
    buf_append(b, v, len);
}

void pg_array_i64(buf *b, int64_t v) {
    uint64_t be = htobe64((uint64_t)v);
    pg_array_item(b, &be, 8);
}

void pg_array_bool(buf *b, int v) {
    unsigned char c = v != 0;
    pg_array_item(b, &c, 1);
}

void pgp_array(pg_params *p, const buf *b) {
    /* the element type, from the header pg_array_start wrote */
    uint32_t elem = (uint32_t)(unsigned char)b->p[8] << 24 |
                    (uint32_t)(unsigned char)b->p[9] << 16 |
                    (uint32_t)(unsigned char)b->p[10] << 8 | (unsigned char)b->p[11];
    Oid type = elem == OID_BOOL  ? OID_BOOL_ARRAY
               : elem == OID_TID  ? OID_TID_ARRAY
               : elem == OID_INT8 ? OID_INT8_ARRAY
                                  : OID_BYTEA_ARRAY;
    add(p, b->p, (int)b->len, 1, type);
}

/* ---- statements sent ahead (libpq pipeline mode) ----
 * The writer's statements each cost a round trip to the database, and on a busy machine
 * a round trip (waking the backend, waking the writer) takes 0.1-0.6 ms, against 3-5 ms
 * for a whole 1000-record job. A statement whose result the writer does not need at once
 * is sent ahead and rides with the next one it waits for. */

static void statement_name(const char *sql, char *what, size_t n) {
    snprintf(what, n, "%.60s", sql);
}

/* Sends `sql`, or the statement prepared as `name` when not NULL (then sql only names
 * it in errors), ahead; `prepare`: prepares it as `name` instead. */
static int send_query(PGconn *c, const char *name, const char *sql, const pg_params *p,
                      int prepare, tr_err *e) {
    char what[64];
    statement_name(sql, what, sizeof what);
    if (PQpipelineStatus(c) == PQ_PIPELINE_OFF && PQenterPipelineMode(c) != 1)
        return pg_error(c, NULL, what, e);
    int n = p ? p->n : 0;
    const Oid *types = n ? p->types : NULL;
    const char *const *values = n ? p->values : NULL;
    const int *lengths = n ? p->lengths : NULL, *formats = n ? p->formats : NULL;
    int ok = prepare ? PQsendPrepare(c, name, sql, n, types)
             : name  ? PQsendQueryPrepared(c, name, n, values, lengths, formats, 1)
                     : PQsendQueryParams(c, sql, n, types, values, lengths, formats, 1);
    return ok == 1 ? 0 : pg_error(c, NULL, what, e);
}

int pg_send(PGconn *c, const char *sql, const pg_params *p, tr_err *e) {
    return send_query(c, NULL, sql, p, 0, e);
}

int pg_prepare(PGconn *c, const pg_stmt *st, const pg_params *p, tr_err *e) {
    return send_query(c, st->name, st->sql, p, 1, e);
}

int pg_send_stmt(PGconn *c, const pg_stmt *st, const pg_params *p, tr_err *e) {
    return send_query(c, st->name, st->sql, p, 0, e);
}

PGresult *pg_exec_stmt(PGconn *c, const pg_stmt *st, const pg_params *p, tr_err *e) {
    PGresult *r;
    if (pg_send_stmt(c, st, p, e) != 0) return NULL;
    return pg_settle(c, &r, e) == 0 ? r : NULL;
}

int pg_sync(PGconn *c, tr_err *e) {
    return PQpipelineSync(c) == 1 ? 0 : pg_error(c, NULL, "pipeline sync", e);
}

/* pg_segment; *synced: whether the segment's sync came (not when the connection broke or
 * nothing more was to come). */
static int read_segment(PGconn *c, PGresult **last, tr_err *e, int *synced) {
    int rc = 0, separators = 0;
    PGresult *keep = NULL;
    *synced = 0;
    for (;;) {
        PGresult *r = PQgetResult(c);
        if (!r) {
            /* one NULL ends each statement's results; two in a row: nothing more comes */
            if (++separators > 1 || PQstatus(c) != CONNECTION_OK) {
                if (rc == 0) rc = pg_error(c, NULL, "pipelined statements", e);
                break;
            }
            continue;
        }
        separators = 0;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            *synced = 1;
            break;
        }
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
            PQclear(keep);
            keep = r;
            continue;
        }
        /* the first failure tells; the statements after it were skipped (ABORTED) */
        if (rc == 0) rc = pg_error(c, r, "pipelined statement", e);
        PQclear(r);
    }
    PQexitPipelineMode(c); /* fails, and stays in pipeline mode, while more is pending */
    if (rc != 0 || !last) {
        PQclear(keep);
        keep = NULL;
    }
    if (last) *last = keep;
    return rc;
}

int pg_segment(PGconn *c, PGresult **last, tr_err *e) {
    int synced;
    return read_segment(c, last, e, &synced);
}

int pg_settle(PGconn *c, PGresult **last, tr_err *e) {
    if (last) *last = NULL;
    if (PQpipelineStatus(c) == PQ_PIPELINE_OFF) return 0;
    int rc = pg_sync(c, e);
    tr_err later;
    int synced = 1;
    while (synced && PQpipelineStatus(c) != PQ_PIPELINE_OFF) {
        PGresult *r = NULL;
        if (read_segment(c, last ? &r : NULL, rc == 0 ? e : &later, &synced) != 0) rc = -1;
        if (r) { /* the segment this call's sync closed may be empty */
            PQclear(*last);
            *last = r;
        }
    }
    if (rc == 0 && PQpipelineStatus(c) != PQ_PIPELINE_OFF) rc = pg_error(c, NULL, "pipeline", e);
    if (rc != 0 && last) {
        PQclear(*last);
        *last = NULL;
    }
    return rc;
}

PGresult *pg_exec(PGconn *c, const char *sql, const pg_params *p, tr_err *e) {
    PGresult *r;
    if (PQpipelineStatus(c) != PQ_PIPELINE_OFF) {
        if ((!p || !p->n) && strchr(sql, ';')) { /* not pipelinable: wait, then run it */
            if (pg_settle(c, NULL, e) != 0) return NULL;
        } else {
            if (pg_send(c, sql, p, e) != 0) return NULL;
            return pg_settle(c, &r, e) == 0 ? r : NULL;
        }
    }
    if (p && p->n)
        r = PQexecParams(c, sql, p->n, p->types, p->values, p->lengths, p->formats, 1);
    else if (strchr(sql, ';'))
        r = PQexec(c, sql); /* several statements: simple protocol, text results */
    else
        r = PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 1);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) return r;
    char what[64];
    statement_name(sql, what, sizeof what);
    pg_error(c, r, what, e);
    PQclear(r);
    return NULL;
}

int pg_run(PGconn *c, const char *sql, const pg_params *p, tr_err *e) {
    PGresult *r = pg_exec(c, sql, p, e);
    PQclear(r);
    return r ? 0 : -1;
}

int pg_isnull(const PGresult *r, int row, int col) {
    return PQgetisnull(r, row, col);
}

int64_t pg_i64(const PGresult *r, int row, int col) {
    if (PQgetisnull(r, row, col)) return 0;
    const unsigned char *v = (const unsigned char *)PQgetvalue(r, row, col);
    int n = PQgetlength(r, row, col);
    int64_t x = 0;
    for (int i = 0; i < n && i < 8; i++) x = (int64_t)(((uint64_t)x << 8) | v[i]);
    if (n == 4) x = (int32_t)(uint32_t)x;
    else if (n == 2) x = (int16_t)(uint16_t)x;
    else if (n == 1) x = (int8_t)(uint8_t)x;
    return x;
}

double pg_f64(const PGresult *r, int row, int col) {
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8) return 0;
    uint64_t bits;
    memcpy(&bits, PQgetvalue(r, row, col), 8);
    bits = be64toh(bits);
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

const char *pg_val(const PGresult *r, int row, int col, size_t *len) {
    *len = (size_t)PQgetlength(r, row, col);
    return PQgetvalue(r, row, col);
}

/* ---- COPY, text format ----
 * Text rather than binary: PostgreSQL (15, at least) flushes COPY's multi-insert buffer
 * by the bytes of the text lines it holds, and counts a binary row as none, so a binary
 * COPY keeps 1000 rows and creates a tuple slot for each, whose resource-owner
 * bookkeeping grows quadratically; a text COPY flushes every 64 kB (docs/postgres.md). */

int pg_copy_open(PGconn *c, const char *sql, buf *b, tr_err *e) {
    if (pg_settle(c, NULL, e) != 0) return -1; /* COPY cannot be pipelined */
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COPY_IN;
    if (!ok) pg_error(c, r, "COPY", e);
    PQclear(r);
    if (!ok) return -1;
    buf_reset(b);
    return 0;
}

static int copy_put(PGconn *c, buf *b, tr_err *e) {
    int ok = b->len == 0 || PQputCopyData(c, b->p, (int)b->len) == 1;
    buf_reset(b);
    return ok ? 0 : pg_error(c, NULL, "COPY", e);
}

int pg_copy_flush(PGconn *c, buf *b, tr_err *e) {
    return b->len >= PG_COPY_CHUNK ? copy_put(c, b, e) : 0;
}

int pg_copy_close(PGconn *c, buf *b, int rc, tr_err *e) {
    if (rc == 0) rc = copy_put(c, b, e);
    buf_reset(b);
    int sent = PQputCopyEnd(c, rc == 0 ? NULL : "tributary: the rows could not be built") == 1;
    PGresult *r;
    while ((r = PQgetResult(c))) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK && rc == 0) rc = pg_error(c, r, "COPY", e);
        PQclear(r);
    }
    if (!sent && rc == 0) rc = pg_error(c, NULL, "COPY", e);
    return rc;
}

/* Every field ends with a tab; the row's last one becomes the line's end. */
void pg_copy_row_end(buf *b) {
    b->p[b->len - 1] = '\n';
}

void pg_copy_i64(buf *b, int64_t v) {
    char digits[24];
    size_t n = sizeof digits;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    digits[--n] = '\t';
    do {
        digits[--n] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) digits[--n] = '-';
    buf_append(b, digits + n, sizeof digits - n);
}

void pg_copy_f64(buf *b, double v) {
    buf_printf(b, "%.17g\t", v); /* 17 significant digits read back as the same double */
}

void pg_copy_null(buf *b) {
    buf_append(b, "\\N\t", 3);
}

void pg_copy_bytea(buf *b, const void *v, size_t len) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = v;
    buf_reserve(b, 3 + 2 * len + 1);
    char *o = b->p + b->len;
    *o++ = '\\'; /* the COPY escape of the backslash of bytea's "\x" */
    *o++ = '\\';
    *o++ = 'x';
    for (size_t i = 0; i < len; i++) {
        *o++ = hex[p[i] >> 4];
        *o++ = hex[p[i] & 15];
    }
    *o++ = '\t';
    b->len = (size_t)(o - b->p);
}

void pg_copy_text(buf *b, const char *v, size_t len) {
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        char c = v[i];
        if (c != '\\' && c != '\t' && c != '\n' && c != '\r') continue;
        buf_append(b, v + run, i - run);
        char esc[2] = {'\\', c == '\t' ? 't' : c == '\n' ? 'n' : c == '\r' ? 'r' : '\\'};
        buf_append(b, esc, 2);
        run = i + 1;
    }
    buf_append(b, v + run, len - run);
    buf_putc(b, '\t');
}

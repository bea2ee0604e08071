/*
 * loadgen.c — the benchmark's HTTP load generator for import_airbyte_records.
 *
 * Plain sockets and HTTP/1.1 keep-alive, one thread per connection, so the client costs
 * little next to the server it measures (both share the machine). Every request — header
 * and body — is built before the clock starts; a thread then only writes bytes, reads the
 * status line, Content-Length and body of the answer, and notes the latency. Threads take
 * batches from one shared counter, so a slow connection never holds back the others.
 *
 * With --lazy the requests are built just before they are sent instead (used for the
 * untimed pre-loads, which can be millions of records). With --fill BYTES the workload is
 * one request holding as many records as fit in BYTES (the large-request memory test).
 *
 * Prints one JSON object: requests, records, bytes, seconds, records_per_s, latencies,
 * and the inserted/replaced counts summed from the server's answers.
 * Exits 1 if any request did not get a 200.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "util/buf.h"

#define LG_PATH "/api/streaming_import/import_airbyte_records"
#define LG_REPLY_MAX (1 << 20)

typedef struct lg_config {
    const char *host;
    const char *port;
    const char *key;
    const char *table;
    int dedup;
    int conns;
    int lazy;
    size_t fill;
    rec_spec spec;
} lg_config;

typedef struct lg_request {
    char *data; /* header and body, inside alloc */
    size_t len;
    size_t records;
    char *alloc;
} lg_request;

typedef struct lg_run {
    const lg_config *cfg;
    uint64_t nreq;
    lg_request *reqs;          /* nreq pre-built requests, or NULL with --lazy */
    double *latency;           /* seconds, one per request */
    atomic_uint_fast64_t next; /* next request to send */
    atomic_int failures;
    atomic_uint_fast64_t inserted; /* from the answers' summaries, when they carry one */
    atomic_uint_fast64_t replaced;
    pthread_barrier_t start;
} lg_run;

/* ---- building requests ---- */

/* The HTTP header is written last, in front of the body, once its length is known;
 * LG_HEAD_ROOM bytes are kept free at the start for it. */
#define LG_HEAD_ROOM 512

static void lg_body_open(const lg_config *c, buf *b) {
    b->len = LG_HEAD_ROOM;
    buf_reserve(b, 0);
    buf_puts(b, "{\"tables\":{\"");
    buf_puts(b, c->table);
    buf_puts(b, c->dedup ? "\":{\"primaryKey\":[[\"id\"]],\"jsonSchema\":null}},\"messages\":["
                        : "\":{\"primaryKey\":null,\"jsonSchema\":null}},\"messages\":[");
}

static void lg_body_add(const lg_config *c, buf *b, uint64_t j, int first) {
    buf_reserve(b, REC_MAX + 64 + strlen(c->table));
    if (!first) b->p[b->len++] = ',';
    buf_puts(b, "{\"tableName\":\"");
    buf_puts(b, c->table);
    buf_puts(b, "\",\"data\":");
    b->len += rec_json(b->p + b->len, c->spec.seed, j, c->spec.version);
    b->p[b->len++] = '}';
}

/* Closes the body and writes the header in front of it; the request is then
 * r->data[0 .. r->len). */
static void lg_body_close(const lg_config *c, buf *b, lg_request *r) {
    buf_puts(b, "]}");
    char head[LG_HEAD_ROOM];
    size_t body = b->len - LG_HEAD_ROOM;
    int n = snprintf(head, sizeof head,
                     "POST " LG_PATH " HTTP/1.1\r\nHost: %s:%s\r\n"
                     "Authorization: Convex %s\r\nContent-Type: application/json\r\n"
                     "Convex-Client: tributary-bench-0.1.0\r\nContent-Length: %zu\r\n\r\n",
                     c->host, c->port, c->key, body);
    if (n < 0 || (size_t)n >= sizeof head) {
        fprintf(stderr, "loadgen: request header too long\n");
        exit(1);
    }
    memcpy(b->p + LG_HEAD_ROOM - n, head, (size_t)n);
    r->data = b->p + LG_HEAD_ROOM - n;
    r->len = body + (size_t)n;
    r->alloc = b->p;
}

/* Builds request `index` of the workload into b (reused across calls with --lazy). */
static void lg_build(const lg_config *c, uint64_t index, buf *b, lg_request *r) {
    uint64_t lo, hi;
    rec_batch_range(&c->spec, index, &lo, &hi);
    lg_body_open(c, b);
    for (uint64_t i = lo; i < hi; i++) lg_body_add(c, b, rec_j(&c->spec, i), i == lo);
    lg_body_close(c, b, r);
    r->records = (size_t)(hi - lo);
}

/* --fill: one request with as many records as fit in c->fill bytes of body. */
static void lg_build_fill(lg_config *c, lg_request *r) {
    buf b = {0};
    lg_body_open(c, &b);
    size_t n = 0;
    char rec[REC_MAX];
    for (;; n++) {
        uint64_t j = rec_j(&c->spec, n);
        size_t add = rec_json(rec, c->spec.seed, j, c->spec.version) + 32 + strlen(c->table);
        if (b.len - LG_HEAD_ROOM + add + 2 > c->fill) break;
        lg_body_add(c, &b, j, n == 0);
    }
    lg_body_close(c, &b, r);
    r->records = n;
    c->spec.count = n;
    c->spec.batch = n ? n : 1;
}

/* ---- one connection ---- */

typedef struct lg_conn {
    int fd;
    char *in;
    size_t have;
} lg_conn;

static int lg_connect(const lg_config *c, lg_conn *k) {
    struct addrinfo hints = {0}, *res;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(c->host, c->port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "loadgen: %s:%s: %s\n", c->host, c->port, gai_strerror(rc));
        return -1;
    }
    k->fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (k->fd < 0 || connect(k->fd, res->ai_addr, res->ai_addrlen) != 0) {
        fprintf(stderr, "loadgen: connect %s:%s: %s\n", c->host, c->port, strerror(errno));
        freeaddrinfo(res);
        if (k->fd >= 0) close(k->fd);
        k->fd = -1;
        return -1;
    }
    freeaddrinfo(res);
    int one = 1;
    setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    k->have = 0;
    return 0;
}

static int lg_send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Value of header `name` in the header block [h, end), or NULL. */
static const char *lg_header(const char *h, const char *end, const char *name) {
    size_t n = strlen(name);
    for (const char *line = h; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol) break;
        if ((size_t)(eol - line) > n && strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ' || *v == '\t') v++;
            return v;
        }
        line = eol + 1;
    }
    return NULL;
}

/* Reads one response; sets *status and *keep (0 when the server closes the connection).
 * The body is left in k->in for error messages. */
static int lg_read_reply(lg_conn *k, int *status, int *keep, size_t *body_off, size_t *body_len) {
    char *hend = NULL;
    for (;;) {
        if (k->have) {
            k->in[k->have] = 0;
            hend = strstr(k->in, "\r\n\r\n");
            if (hend) break;
        }
        if (k->have >= LG_REPLY_MAX - 1) return -1;
        ssize_t r = recv(k->fd, k->in + k->have, LG_REPLY_MAX - 1 - k->have, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        k->have += (size_t)r;
    }
    if (sscanf(k->in, "HTTP/1.%*d %d", status) != 1) return -1;
    const char *cl = lg_header(k->in, hend + 2, "Content-Length");
    const char *conn = lg_header(k->in, hend + 2, "Connection");
    *keep = !(conn && strncasecmp(conn, "close", 5) == 0);
    size_t len = cl ? strtoull(cl, NULL, 10) : 0;
    size_t off = (size_t)(hend + 4 - k->in);
    if (off + len >= LG_REPLY_MAX) return -1;
    while (k->have < off + len) {
        ssize_t r = recv(k->fd, k->in + k->have, LG_REPLY_MAX - 1 - k->have, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        k->have += (size_t)r;
    }
    *body_off = off;
    *body_len = len;
    return 0;
}

/* Adds the counts of a success summary ({"inserted":N,"replaced":N,...}) to the run's
 * totals, so the driver can check that a dedup batch really updated what it should. */
static void lg_count(lg_run *run, const char *body, size_t len) {
    char tmp[256];
    size_t n = len < sizeof tmp - 1 ? len : sizeof tmp - 1;
    memcpy(tmp, body, n);
    tmp[n] = 0;
    const char *p = strstr(tmp, "\"inserted\":");
    if (p) atomic_fetch_add(&run->inserted, strtoull(p + 11, NULL, 10));
    p = strstr(tmp, "\"replaced\":");
    if (p) atomic_fetch_add(&run->replaced, strtoull(p + 11, NULL, 10));
}

/* Sends one request and waits for its answer; returns 0 on a 200. */
static int lg_exchange(lg_run *run, lg_conn *k, const lg_request *r) {
    const lg_config *c = run->cfg;
    if (k->fd < 0 && lg_connect(c, k) != 0) return -1;
    int sent = lg_send_all(k->fd, r->data, r->len);
    int status = 0, keep = 0;
    size_t off = 0, len = 0;
    int got = lg_read_reply(k, &status, &keep, &off, &len);
    if (got == 0 && k->have > off + len) {
        fprintf(stderr, "loadgen: unexpected bytes after a response\n");
        got = -1;
    }
    if (got != 0 || !keep || sent != 0) {
        close(k->fd);
        k->fd = -1;
    }
    k->have = 0;
    if (got != 0) {
        fprintf(stderr, "loadgen: no complete response (%s)\n",
                sent ? strerror(errno) : "connection closed");
        return -1;
    }
    if (status != 200) {
        fprintf(stderr, "loadgen: HTTP %d: %.*s\n", status, (int)(len > 300 ? 300 : len),
                k->in + off);
        return -1;
    }
    lg_count(run, k->in + off, len);
    return 0;
}

static void *lg_worker(void *arg) {
    lg_run *run = arg;
    const lg_config *c = run->cfg;
    lg_conn k = {.fd = -1, .in = malloc(LG_REPLY_MAX)};
    buf lazy = {0};
    if (!k.in) abort();
    if (lg_connect(c, &k) != 0) atomic_fetch_add(&run->failures, 1);
    pthread_barrier_wait(&run->start);
    for (;;) {
        uint64_t i = atomic_fetch_add(&run->next, 1);
        if (i >= run->nreq || atomic_load(&run->failures) > 0) break;
        lg_request one, *r = &one;
        if (run->reqs)
            r = &run->reqs[i];
        else
            lg_build(c, i, &lazy, &one);
        double t0 = rec_now();
        if (lg_exchange(run, &k, r) != 0) atomic_fetch_add(&run->failures, 1);
        run->latency[i] = rec_now() - t0;
    }
    if (k.fd >= 0) close(k.fd);
    free(k.in);
    free(lazy.p);
    return NULL;
}

/* ---- results ---- */

static void lg_report(const lg_run *run, uint64_t records, uint64_t bytes, double secs) {
    char extra[96];
    snprintf(extra, sizeof extra, "\"inserted\":%llu,\"replaced\":%llu",
             (unsigned long long)atomic_load(&run->inserted),
             (unsigned long long)atomic_load(&run->replaced));
    bench_report(run->latency, run->nreq, records, bytes, secs, extra);
}

/* ---- command line ---- */

static void lg_usage(FILE *f) {
    fprintf(f,
            "Usage: loadgen --port P --key KEY [options]\n"
            "  --host H          server address (default 127.0.0.1)\n"
            "  --table T         table name (default t)\n"
            "  --mode M          append (primaryKey null) or dedup (primaryKey [[\"id\"]])\n"
            "  --conns N         connections, one thread each (default 2)\n"
            "  --seed --first --count --stride --version --batch   the workload (records.h)\n"
            "  --fill BYTES      one request of as many records as fit in BYTES of body\n"
            "  --lazy            build each request just before sending it (untimed loads)\n");
}

static int lg_parse(int argc, char **argv, lg_config *c) {
    static const struct option opts[] = {
        {"host", 1, 0, 0},  {"port", 1, 0, 0},    {"key", 1, 0, 0},    {"table", 1, 0, 0},
        {"mode", 1, 0, 0},  {"conns", 1, 0, 0},   {"fill", 1, 0, 0},   {"lazy", 0, 0, 0},
        {"seed", 1, 0, 0},  {"first", 1, 0, 0},   {"count", 1, 0, 0},  {"stride", 1, 0, 0},
        {"version", 1, 0, 0}, {"batch", 1, 0, 0}, {"help", 0, 0, 0},   {0, 0, 0, 0}};
    *c = (lg_config){.host = "127.0.0.1", .table = "t", .conns = 2};
    rec_spec_init(&c->spec);
    int idx, o;
    while ((o = getopt_long(argc, argv, "", opts, &idx)) == 0) {
        const char *n = opts[idx].name, *v = optarg;
        int shared = v ? rec_spec_option(&c->spec, n, v) : 0;
        if (shared < 0) return -1;
        if (shared) continue;
        if (!strcmp(n, "help")) {
            lg_usage(stdout);
            exit(0);
        } else if (!strcmp(n, "host")) c->host = v;
        else if (!strcmp(n, "port")) c->port = v;
        else if (!strcmp(n, "key")) c->key = v;
        else if (!strcmp(n, "table")) c->table = v;
        else if (!strcmp(n, "lazy")) c->lazy = 1;
        else if (!strcmp(n, "conns")) c->conns = atoi(v);
        else if (!strcmp(n, "fill")) c->fill = strtoull(v, NULL, 10);
        else if (!strcmp(n, "mode")) {
            if (strcmp(v, "append") && strcmp(v, "dedup")) {
                fprintf(stderr, "--mode: append or dedup, not '%s'\n", v);
                return -1;
            }
            c->dedup = !strcmp(v, "dedup");
        }
    }
    if (o != -1 || optind < argc || !c->port || !c->key || c->conns < 1 ||
        strlen(c->table) > 64) {
        lg_usage(stderr);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    lg_config cfg;
    if (lg_parse(argc, argv, &cfg) != 0) return 2;
    signal(SIGPIPE, SIG_IGN);
    lg_run run = {.cfg = &cfg};
    uint64_t bytes = 0;
    if (cfg.fill) {
        run.reqs = calloc(1, sizeof *run.reqs);
        lg_build_fill(&cfg, run.reqs);
        run.nreq = 1;
    } else {
        run.nreq = rec_nbatches(&cfg.spec);
        if (!cfg.lazy) {
            run.reqs = calloc(run.nreq ? run.nreq : 1, sizeof *run.reqs);
            for (uint64_t i = 0; i < run.nreq; i++) {
                buf b = {0};
                lg_build(&cfg, i, &b, &run.reqs[i]);
            }
        }
    }
    for (uint64_t i = 0; run.reqs && i < run.nreq; i++) bytes += run.reqs[i].len;
    run.latency = calloc(run.nreq ? run.nreq : 1, sizeof *run.latency);
    if (!run.latency) abort();
    pthread_barrier_init(&run.start, NULL, (unsigned)cfg.conns + 1);
    pthread_t *th = calloc((size_t)cfg.conns, sizeof *th);
    for (int t = 0; t < cfg.conns; t++) pthread_create(&th[t], NULL, lg_worker, &run);
    pthread_barrier_wait(&run.start);
    double t0 = rec_now();
    for (int t = 0; t < cfg.conns; t++) pthread_join(th[t], NULL);
    double secs = rec_now() - t0;
    int failures = atomic_load(&run.failures);
    if (failures > 0)
        fprintf(stderr, "loadgen: %d request(s) failed\n", failures);
    else
        lg_report(&run, cfg.spec.count, bytes, secs);
    pthread_barrier_destroy(&run.start);
    for (uint64_t i = 0; run.reqs && i < run.nreq; i++) free(run.reqs[i].alloc);
    free(run.reqs);
    free(run.latency);
    free(th);
    return failures > 0;
}

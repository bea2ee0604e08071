/*
 * server.c — libmicrohttpd glue (see server.h).
 *
 * MHD runs one thread per connection: an import request blocks its thread until its
 * transaction is durable, and with one thread per connection that wait never holds up
 * another client (and concurrent waiters can share one commit in the store).
 *
 * MHD calls the access handler first with the headers only, then once per body chunk,
 * then once more at the end. Every decision that needs only headers is taken on the first
 * call, where a response can be queued before any body byte is read (MHD then closes the
 * connection instead of reading the body). An error found inside the body is remembered
 * and the rest of the body is read and dropped (it is bounded by the size limit), because
 * MHD only lets a response be queued before or after the body.
 */
#include "http/server.h"
#include "api/stats.h"
#include "util/xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define INFLATE_CHUNK (64 * 1024)

struct http_server {
    struct MHD_Daemon *d;
    http_config c;
    atomic_int active; /* requests between their first call and completion */
};

typedef struct http_req {
    http_server *srv;
    const api_endpoint *ep;
    size_t ep_index;     /* ep's place in api_endpoints (past the end: none) */
    void *st;            /* endpoint state */
    api_request rq;
    struct timespec t0;
    char client[64];
    char method[16];
    char path[160];
    size_t limit;
    size_t raw_in;       /* body bytes as received */
    size_t decoded;      /* body bytes after decompression */
    int gzip;
    int z_ready;
    z_stream z;
    tr_err err;          /* first error; status 0 while none */
    int status;          /* response status, for the log */
    size_t out_bytes;
} http_req;

/* ---- responses ---- */

static double seconds_since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* The request's place in the counters (stats.h), taken once its status is decided and
 * before the client can see the answer: a client that has its answer finds it counted
 * in its next scrape of /metrics. */
static void count_request(http_req *r, int status) {
    r->status = status;
    if (r->srv->c.env->stats)
        api_stats_request(r->srv->c.env->stats, r->ep_index, status, seconds_since(&r->t0));
}

static enum MHD_Result send_body(struct MHD_Connection *c, http_req *r, int status,
                                 const char *type, buf *body, int close_conn) {
    size_t len = body->len;
    char *data = buf_steal(body);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (close_conn) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    count_request(r, status);
    r->out_bytes = len;
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, http_req *r, const tr_err *e,
                                  int close_conn) {
    buf body = BUF_INIT;
    api_error_json(e, &body);
    return send_body(c, r, e->status ? e->status : 500, "application/json", &body, close_conn);
}

/* ---- header checks ---- */

typedef struct header_count {
    int content_length;
    int transfer_encoding;
    char first_cl[32];
    int cl_differs;
} header_count;

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value) {
    (void)kind;
    header_count *h = cls;
    if (strcasecmp(key, "Content-Length") == 0) {
        if (h->content_length++ == 0)
            snprintf(h->first_cl, sizeof h->first_cl, "%s", value ? value : "");
        else if (strcmp(h->first_cl, value ? value : "") != 0)
            h->cl_differs = 1;
    } else if (strcasecmp(key, "Transfer-Encoding") == 0) {
        h->transfer_encoding++;
    }
    return MHD_YES;
}

/* Convex-Client: optional; a value with no '-' is refused (SPEC §1.2). */
static int check_client(struct MHD_Connection *c, http_req *r, tr_err *e) {
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Convex-Client");
    if (!v) return 0;
    snprintf(r->client, sizeof r->client, "%s", v);
    if (!strchr(v, '-'))
        return err_set(e, 400, "InvalidClientVersion",
                       "Failed to parse client version string: '%.100s'. Expected format is "
                       "{client_name}-{semver}, e.g. my-esolang-client-0.0.1",
                       v);
    return 0;
}

static int check_auth(struct MHD_Connection *c, const http_req *r, tr_err *e) {
    auth *a = r->srv->c.auth;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *key = NULL;
    if (h) {
        if (strncasecmp(h, "convex ", 7) == 0) key = h + 7;
        if (!key || !auth_check(a, key, strlen(key)))
            return err_set(e, 401, "BadAdminKey", "The provided admin key was invalid for this instance");
        return 0;
    }
    key = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "adminKey");
    if (key) {
        if (!auth_check(a, key, strlen(key)))
            return err_set(e, 401, "BadAdminKey", "The provided admin key was invalid for this instance");
        return 0;
    }
    if (r->ep->public_ok == API_PUBLIC ||
        (r->ep->public_ok == API_PUBLIC_METRICS && r->srv->c.env->public_metrics))
        return 0;
    return err_set(e, 403, "BadDeployKey",
                   "The provided deploy key was invalid for this deployment. Double check that the "
                   "environment this key was generated for matches the desired deployment.");
}

/* application/json, or application/<anything>+json; parameters allowed; absent = JSON. */
static int check_content_type(struct MHD_Connection *c, tr_err *e) {
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!v) return 0;
    while (*v == ' ' || *v == '\t') v++;
    size_t n = strcspn(v, ";");
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    const char *slash = memchr(v, '/', n);
    int ok = slash && (size_t)(slash - v) == 11 && strncasecmp(v, "application", 11) == 0;
    if (ok) {
        const char *sub = slash + 1;
        size_t sn = n - (size_t)(sub - v);
        ok = (sn == 4 && strncasecmp(sub, "json", 4) == 0) ||
             (sn > 5 && strncasecmp(sub + sn - 5, "+json", 5) == 0);
    }
    if (!ok)
        return err_set(e, 400, "BadJsonBody",
                       "Expected request with `Content-Type: application/json`, got `%.*s`",
                       (int)(n > 100 ? 100 : n), v);
    return 0;
}

static int check_body_headers(struct MHD_Connection *c, http_req *r, tr_err *e) {
    header_count h;
    memset(&h, 0, sizeof h);
    MHD_get_connection_values(c, MHD_HEADER_KIND, count_header, &h);
    if (h.cl_differs)
        return err_set(e, 400, "BadRequest", "two different Content-Length headers");
    if (h.content_length && h.transfer_encoding)
        return err_set(e, 400, "BadRequest", "both Content-Length and Transfer-Encoding");
    if (h.content_length) {
        char *end;
        errno = 0;
        unsigned long long cl = strtoull(h.first_cl, &end, 10);
        if (errno || end == h.first_cl || *end)
            return err_set(e, 400, "BadRequest", "bad Content-Length header");
        if (cl > r->limit)
            return err_set(e, 413, "RequestTooLarge",
                           "request body of %llu bytes is larger than the limit of %zu bytes", cl,
                           r->limit);
    }
    const char *enc = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Encoding");
    if (enc && strcasecmp(enc, "gzip") == 0) {
        r->gzip = 1;
    } else if (enc && *enc && strcasecmp(enc, "identity") != 0) {
        return err_set(e, 415, "UnsupportedContentEncoding",
                       "Content-Encoding `%.50s` is not supported (use gzip or none)", enc);
    }
    return check_content_type(c, e);
}

/* ---- body ---- */

static int feed_decoded(http_req *r, const char *p, size_t n) {
    r->decoded += n;
    if (r->decoded > r->limit)
        return err_set(&r->err, 413, "RequestTooLarge",
                       "decompressed request body is larger than the limit of %zu bytes", r->limit);
    return r->ep->feed(r->st, p, n, &r->err);
}

static int feed_gzip(http_req *r, const char *p, size_t n) {
    if (!r->z_ready) {
        memset(&r->z, 0, sizeof r->z);
        if (inflateInit2(&r->z, 16 + MAX_WBITS) != Z_OK)
            return err_set(&r->err, 500, "InternalError", "cannot start gzip decoder");
        r->z_ready = 1;
    }
    char out[INFLATE_CHUNK];
    r->z.next_in = (unsigned char *)p;
    r->z.avail_in = (unsigned)n;
    while (r->z.avail_in > 0) {
        r->z.next_out = (unsigned char *)out;
        r->z.avail_out = sizeof out;
        int rc = inflate(&r->z, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
            return err_set(&r->err, 400, "BadJsonBody", "gzip body is corrupt: %s",
                           r->z.msg ? r->z.msg : "inflate failed");
        size_t got = sizeof out - r->z.avail_out;
        if (got && feed_decoded(r, out, got) != 0) return -1;
        if (rc == Z_STREAM_END) {
            if (r->z.avail_in > 0)
                return err_set(&r->err, 400, "BadJsonBody", "data after the end of the gzip body");
            break;
        }
        if (rc == Z_BUF_ERROR && got == 0) break;
    }
    return 0;
}

static int finish_body(http_req *r) {
    if (r->gzip) {
        if (!r->z_ready || r->z.total_out == 0 || inflate(&r->z, Z_FINISH) != Z_STREAM_END)
            return err_set(&r->err, 400, "BadJsonBody", "gzip body is truncated");
    }
    return 0;
}

/* ---- MHD callbacks ---- */

static const char *query_value(void *conn, const char *name) {
    return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
}

/* The endpoint for url and method, its index in r->ep_index (past the end: none). */
static const api_endpoint *route(http_req *r, const char *url, const char *method,
                                 int *path_known) {
    *path_known = 0;
    size_t i = 0;
    for (; api_endpoints[i]; i++) {
        const api_endpoint *ep = api_endpoints[i];
        if (strcmp(ep->path, url) != 0) continue;
        *path_known = 1;
        if (strcmp(ep->method, method) == 0) break;
    }
    r->ep_index = i;
    return api_endpoints[i];
}

static enum MHD_Result first_call(http_server *s, struct MHD_Connection *c, http_req *r,
                                  const char *url, const char *method) {
    int known;
    tr_err e;
    err_clear(&e);
    r->ep_index = SIZE_MAX;
    if (check_client(c, r, &e) != 0) return send_error(c, r, &e, 1);
    r->ep = route(r, url, method, &known);
    if (!r->ep) {
        if (known)
            err_set(&e, 405, "MethodNotAllowed", "%s is not allowed on %s", method, url);
        else
            err_set(&e, 404, "NotFound", "no such endpoint: %s %s", method, url);
        return send_error(c, r, &e, 1);
    }
    r->limit = r->ep->big_body ? s->c.max_body : API_SMALL_BODY_LIMIT;
    if (check_auth(c, r, &e) != 0 || check_body_headers(c, r, &e) != 0)
        return send_error(c, r, &e, 1);
    r->rq.query = query_value;
    r->rq.conn = c;
    r->st = r->ep->open(s->c.env, &r->rq);
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    http_server *s = cls;
    http_req *r = *con_cls;
    if (!r) {
        r = xcalloc(1, sizeof *r);
        r->srv = s;
        clock_gettime(CLOCK_MONOTONIC, &r->t0);
        atomic_fetch_add(&s->active, 1);
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        *con_cls = r;
        return first_call(s, c, r, url, method);
    }
    if (!r->st) return MHD_NO; /* answered on the first call; MHD should not come back */
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        r->raw_in += n;
        if (r->err.status) {
            /* Already failed: drop the rest, but never more than the limit allows. Past
             * it (a chunked body with no Content-Length), MHD cannot answer in the middle
             * of a body, so the connection is closed without a response. */
            if (r->raw_in <= r->limit) return MHD_YES;
            count_request(r, r->err.status);
            return MHD_NO;
        }
        if (r->raw_in > r->limit)
            err_set(&r->err, 413, "RequestTooLarge",
                    "request body is larger than the limit of %zu bytes", r->limit);
        else if (r->gzip)
            feed_gzip(r, upload_data, n);
        else
            feed_decoded(r, upload_data, n);
        return MHD_YES;
    }
    if (!r->err.status && finish_body(r) == 0) {
        api_response resp = {200, "application/json", BUF_INIT};
        if (r->ep->finish(r->st, &resp, &r->err) == 0)
            return send_body(c, r, resp.status, resp.content_type, &resp.body, 0);
        buf_free(&resp.body);
    }
    if (!r->err.status) err_set(&r->err, 500, "InternalError", "request failed");
    return send_error(c, r, &r->err, 0);
}

/* The request's log line, written when MHD is done with it. */
static void log_request(const http_req *r,
                        enum MHD_RequestTerminationCode toe) {
    double ms = seconds_since(&r->t0) * 1e3;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "%s %s %s %d in=%zu out=%zu %.1fms client=%s%s\n", ts,
            r->method, r->path, r->status, r->raw_in,
            r->out_bytes, ms, r->client[0] ? r->client : "-",
            toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed early)");
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    http_server *s = cls;
    http_req *r = *con_cls;
    if (!r) return;
    (void)c;
    log_request(r, toe);
    if (r->st) r->ep->close(r->st);
    if (r->z_ready) inflateEnd(&r->z);
    free(r);
    *con_cls = NULL;
    atomic_fetch_sub(&s->active, 1);
}

/* ---- start and stop ---- */

/* Binds ourselves (instead of letting MHD do it) to report why a bind failed. */
static int listen_socket(const char *listen_addr, tr_err *e) {
    char host[256];
    const char *colon = strrchr(listen_addr, ':');
    if (!colon || colon == listen_addr || !colon[1])
        return err_set(e, 500, "BadConfig", "--listen must be ADDR:PORT, got '%s'", listen_addr);
    size_t hn = (size_t)(colon - listen_addr);
    const char *h = listen_addr;
    if (hn >= 2 && h[0] == '[' && h[hn - 1] == ']') {
        h++;
        hn -= 2;
    }
    if (hn >= sizeof host) return err_set(e, 500, "BadConfig", "--listen address too long");
    memcpy(host, h, hn);
    host[hn] = '\0';
    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0)
        return err_set(e, 500, "BadConfig", "cannot resolve --listen %s: %s", listen_addr,
                       gai_strerror(rc));
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        err_set(e, 500, "BadConfig", "cannot listen on %s: %s", listen_addr, strerror(errno));
        if (fd >= 0) close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    return fd;
}

int http_start(const http_config *c, http_server **out, tr_err *e) {
    int fd = listen_socket(c->listen, e);
    if (fd < 0) return -1;
    http_server *s = xcalloc(1, sizeof *s);
    s->c = *c;
    atomic_init(&s->active, 0);
    s->d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
            MHD_USE_ITC | MHD_USE_ERROR_LOG,
        0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_LIMIT,
        c->max_conns, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024), MHD_OPTION_END);
    if (!s->d) {
        close(fd);
        free(s);
        return err_set(e, 500, "BadConfig", "cannot start the HTTP server on %s", c->listen);
    }
    *out = s;
    return 0;
}

void http_stop(http_server *s, unsigned grace_ms) {
    if (!s) return;
    MHD_socket fd = MHD_quiesce_daemon(s->d);
    for (unsigned waited = 0; atomic_load(&s->active) > 0 && waited < grace_ms; waited += 10) {
        struct timespec t = {0, 10 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
    MHD_stop_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET) close(fd);
    free(s);
}

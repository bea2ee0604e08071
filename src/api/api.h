/*
 * api.h — the endpoints, as the HTTP layer sees them.
 *
 * The HTTP layer (http/server.c) owns sockets, headers, authentication, size limits and
 * decompression; an endpoint only sees an authenticated request's body bytes, chunk by
 * chunk, and answers with a JSON body or an error. That split keeps every endpoint
 * testable without a socket and keeps the network rules in one place.
 *
 * Life of a request: open() once the headers passed every check; feed() for each
 * (decompressed) body chunk; finish() at the end of the body, which writes the response;
 * close() always, also after an error or a dropped connection.
 */
#ifndef TR_API_H
#define TR_API_H

#include <stddef.h>

#include "store/store.h"
#include "util/buf.h"
#include "util/err.h"

#define API_SMALL_BODY_LIMIT (2u * 1024 * 1024) /* every endpoint but the import */

typedef struct api_stats api_stats; /* api/stats.h */

/* What endpoints share for the server's lifetime. */
typedef struct api_env {
    store *st;
    const char *version; /* server version string */
    const char *storage; /* where the data is, for the status page ("SQLite in ./data") */
    api_stats *stats;    /* the server's own counters */
    int public_metrics;  /* /metrics answers without credentials */
} api_env;

/* Read access to the request beyond its body. */
typedef struct api_request {
    const char *(*query)(void *conn, const char *name); /* decoded ?name=value, or NULL */
    void *conn;
} api_request;

typedef struct api_response {
    int status;               /* 200 unless set */
    const char *content_type; /* "application/json" unless set */
    buf body;
} api_response;

typedef struct api_endpoint {
    const char *method;
    const char *path;
    int public_ok;  /* API_PUBLIC: may be called without credentials (checked if
                     * present); API_PUBLIC_METRICS: so when env->public_metrics */
    int big_body;   /* 1: body limit is --max-body-size, else API_SMALL_BODY_LIMIT */
    void *(*open)(const api_env *env, const api_request *rq);
    int (*feed)(void *state, const char *p, size_t n, tr_err *e);
    int (*finish)(void *state, api_response *resp, tr_err *e);
    void (*close)(void *state);
} api_endpoint;

enum { API_ADMIN = 0, API_PUBLIC = 1, API_PUBLIC_METRICS = 2 };

/* The routing table, NULL-terminated. */
extern const api_endpoint *const api_endpoints[];

/* Endpoint families (one file each). */
extern const api_endpoint api_import_endpoint;      /* api/import.c */
extern const api_endpoint api_clear_endpoint;       /* api/tables.c */
extern const api_endpoint api_replace_endpoint;     /* api/tables.c */
extern const api_endpoint api_add_indexes_endpoint; /* api/indexes.c */
extern const api_endpoint api_ready_endpoint;       /* api/indexes.c */
extern const api_endpoint api_version_endpoint;     /* api/version.c */
extern const api_endpoint api_json_schemas_endpoint;       /* api/export.c */
extern const api_endpoint api_list_snapshot_get_endpoint;  /* api/export.c */
extern const api_endpoint api_list_snapshot_post_endpoint; /* api/export.c */
extern const api_endpoint api_deltas_get_endpoint;         /* api/export.c */
extern const api_endpoint api_deltas_post_endpoint;        /* api/export.c */
extern const api_endpoint api_export_probe_endpoint;       /* api/export.c */
extern const api_endpoint api_metrics_endpoint;            /* api/status.c */
extern const api_endpoint api_status_endpoint;             /* api/status.c */

/* Writes {"code": ..., "message": ...} for e into out. */
void api_error_json(const tr_err *e, buf *out);

#endif

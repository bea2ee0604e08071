/*
 * server.h — the HTTP server: libmicrohttpd glue around the endpoint table (api.h).
 *
 * Everything about the network lives here: routing (404/405), the Convex-Client header,
 * authentication from the headers before any body byte is read, Content-Type,
 * Content-Length and Transfer-Encoding rules, size limits (413 decided from
 * Content-Length when it is known), gzip bodies (the limit applies to the decompressed
 * size), JSON error bodies, and one log line per request.
 */
#ifndef TR_HTTP_SERVER_H
#define TR_HTTP_SERVER_H

#include <stddef.h>

#include "api/api.h"
#include "http/auth.h"
#include "util/err.h"

typedef struct http_server http_server;

typedef struct http_config {
    const char *listen;    /* "ADDR:PORT", ADDR an IPv4 address, [IPv6] or a host name */
    size_t max_body;       /* limit of the import endpoint (decompressed too) */
    unsigned max_conns;    /* connections served at once, one thread each */
    const api_env *env;
    auth *auth;
} http_config;

/* Binds and starts serving. Errors: 500 with a one-line reason ("port taken"...). */
int http_start(const http_config *c, http_server **out, tr_err *e);

/* Stops accepting, waits for requests in flight (up to `grace_ms`), then closes. */
void http_stop(http_server *s, unsigned grace_ms);

#endif

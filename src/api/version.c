/*
 * version.c — GET /version: the server version as plain text (SPEC §5). Health checks
 * and Airbyte's "check connection" call it; it needs no credentials.
 */
#include "api/small.h"

static int version(const api_env *env, const api_request *rq, val *body, arena *a,
                   api_response *resp, tr_err *e) {
    (void)rq, (void)body, (void)a, (void)e;
    resp->content_type = "text/plain; charset=utf-8";
    buf_printf(&resp->body, "%s\n", env->version);
    return 0;
}

API_SMALL_ENDPOINT(api_version_endpoint, "GET", "/version", 1, version);

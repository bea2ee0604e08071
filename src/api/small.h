/*
 * small.h — the shape shared by every endpoint with a small JSON body.
 *
 * Those bodies are at most 2 MiB, so the endpoint buffers the bytes, parses them whole
 * at the end and hands the tree to a handler function. API_SMALL_ENDPOINT defines the
 * api_endpoint for such a handler.
 */
#ifndef TR_API_SMALL_H
#define TR_API_SMALL_H

#include "api/api.h"
#include "model/value.h"
#include "util/arena.h"

/* body is NULL when the request had no body. Values live in `a` until close. */
typedef int (*api_small_fn)(const api_env *env, const api_request *rq, val *body, arena *a,
                            api_response *resp, tr_err *e);

void *api_small_open(const api_env *env, const api_request *rq, api_small_fn fn);
int api_small_feed(void *state, const char *p, size_t n, tr_err *e);
int api_small_finish(void *state, api_response *resp, tr_err *e);
void api_small_close(void *state);

#define API_SMALL_ENDPOINT(name, meth, route, public, fn)                                 \
    static void *name##_open(const api_env *env, const api_request *rq) {                 \
        return api_small_open(env, rq, fn);                                               \
    }                                                                                     \
    const api_endpoint name = {meth,           route,           public, 0, name##_open,   \
                               api_small_feed, api_small_finish, api_small_close}

/* Helpers for handlers: the body must be an object → field `key` (NULL if absent). */
int api_body_object(val *body, tr_err *e);
/* The array of table names at body.key (or ?query), each rewritten (names_table_rewrite)
 * into an arena array of strings. Errors name the field: "tableNames[2]: expected a string". */
int api_table_list(const val *list, const char *field, arena *a, const char ***out, size_t *n,
                   tr_err *e);

#endif

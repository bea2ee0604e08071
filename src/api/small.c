/*
 * small.c — buffered small-body endpoints (see small.h).
 */
#include "api/small.h"
#include "json/reader.h"
#include "model/names.h"
#include "util/xalloc.h"

#include <stdlib.h>

#define SMALL_MAX_DEPTH 128 /* the reference's serde recursion limit */

typedef struct small_state {
    const api_env *env;
    api_request rq;
    api_small_fn fn;
    buf body;
    arena *a;
} small_state;

void *api_small_open(const api_env *env, const api_request *rq, api_small_fn fn) {
    small_state *s = xcalloc(1, sizeof *s);
    s->env = env;
    s->rq = *rq;
    s->fn = fn;
    s->a = arena_new();
    return s;
}

int api_small_feed(void *state, const char *p, size_t n, tr_err *e) {
    (void)e;
    small_state *s = state;
    buf_append(&s->body, p, n);
    return 0;
}

int api_small_finish(void *state, api_response *resp, tr_err *e) {
    small_state *s = state;
    val *body = NULL;
    if (s->body.len > 0 &&
        json_parse(s->a, s->body.p, s->body.len, SMALL_MAX_DEPTH, 0, &body, e) != 0)
        return -1;
    return s->fn(s->env, &s->rq, body, s->a, resp, e);
}

void api_small_close(void *state) {
    small_state *s = state;
    if (!s) return;
    buf_free(&s->body);
    arena_free(s->a);
    free(s);
}

int api_body_object(val *body, tr_err *e) {
    if (!body) return err_set(e, 400, "BadJsonBody", "expected a JSON object as the request body");
    if (body->type != VAL_OBJECT)
        return err_set(e, 400, "BadJsonBody", "request body: expected an object, got %s",
                       val_type_name(body->type));
    return 0;
}

int api_table_list(const val *list, const char *field, arena *a, const char ***out, size_t *n,
                   tr_err *e) {
    if (!list) return err_set(e, 400, "BadJsonBody", "missing field `%s`", field);
    if (list->type != VAL_ARRAY)
        return err_set(e, 400, "BadJsonBody", "%s: expected an array of table names, got %s",
                       field, val_type_name(list->type));
    const char **names = arena_alloc(a, (list->u.a.n + 1) * sizeof *names);
    for (size_t i = 0; i < list->u.a.n; i++) {
        const val *v = list->u.a.items[i];
        if (v->type != VAL_STRING)
            return err_set(e, 400, "BadJsonBody", "%s[%zu]: expected a string, got %s", field, i,
                           val_type_name(v->type));
        char *name = arena_alloc(a, NAMES_TABLE_MAX + 1);
        if (names_table_rewrite(v->u.s.p, v->u.s.len, name, e) != 0)
            return err_prefix(e, "%s[%zu]: ", field, i);
        names[i] = name;
    }
    *out = names;
    *n = list->u.a.n;
    return 0;
}

/*
 * indexes.c — add_primary_key_indexes and primary_key_indexes_ready (SPEC §3.4, §3.5).
 *
 * The readiness poll takes its table list from a JSON body on the GET (what the Airbyte
 * connector sends) or, when there is no body, from ?tables=a,b (for curl users).
 */
#include "api/small.h"
#include "model/names.h"
#include "model/pkey.h"
#include "util/xalloc.h"

#include <stdlib.h>
#include <string.h>

static int add_indexes(const api_env *env, const api_request *rq, val *body, arena *a,
                       api_response *resp, tr_err *e) {
    (void)rq;
    if (api_body_object(body, e) != 0) return -1;
    val *indexes = val_get(body, "indexes");
    if (!indexes) return err_set(e, 400, "BadJsonBody", "missing field `indexes`");
    if (indexes->type != VAL_OBJECT)
        return err_set(e, 400, "BadJsonBody", "indexes: expected an object, got %s",
                       val_type_name(indexes->type));
    size_t n = indexes->u.o.n;
    store_index_req *reqs = arena_alloc(a, (n + 1) * sizeof *reqs);
    for (size_t i = 0; i < n; i++) {
        const val_field *f = &indexes->u.o.fields[i];
        if (names_table_rewrite(f->key, f->key_len, reqs[i].table, e) != 0)
            return err_prefix(e, "indexes: ");
        if (pkey_parse(f->v, PKEY_FROM_INDEX, &reqs[i].key, e) != 0)
            return err_prefix(e, "indexes.%s: ", reqs[i].table);
    }
    /* Two raw names that rewrite to the same table: the later entry wins, as in the
     * reference (a JSON object cannot repeat a key, but "a-b" and "a_b" collide). */
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        int later = 0;
        for (size_t j = i + 1; j < n && !later; j++)
            later = strcmp(reqs[i].table, reqs[j].table) == 0;
        if (!later) reqs[kept++] = reqs[i];
    }
    if (store_add_indexes(env->st, reqs, kept, e) != 0) return -1;
    buf_printf(&resp->body, "{\"indexes\":%zu}", kept);
    return 0;
}

/* ?tables=a,b,c → list of strings in a */
static val *tables_from_query(const char *q, arena *a) {
    size_t count = 1;
    for (const char *p = q; *p; p++) count += *p == ',';
    val *list = arena_alloc(a, sizeof *list);
    list->type = VAL_ARRAY;
    list->u.a.items = arena_alloc(a, count * sizeof(val *));
    list->u.a.n = 0;
    const char *start = q;
    for (;;) {
        const char *end = strchr(start, ',');
        size_t len = end ? (size_t)(end - start) : strlen(start);
        if (len > 0) {
            val *s = arena_alloc(a, sizeof *s);
            s->type = VAL_STRING;
            s->u.s.p = arena_strndup(a, start, len);
            s->u.s.len = len;
            list->u.a.items[list->u.a.n++] = s;
        }
        if (!end) break;
        start = end + 1;
    }
    return list;
}

static int indexes_ready(const api_env *env, const api_request *rq, val *body, arena *a,
                         api_response *resp, tr_err *e) {
    const val *list;
    const char *field = "tables";
    const char *q = rq->query(rq->conn, "tables");
    if (!body && q) {
        list = tables_from_query(q, a);
        field = "?tables";
    } else {
        if (!body)
            return err_set(e, 400, "BadJsonBody",
                           "expected a JSON body {\"tables\": [...]} or ?tables=t1,t2");
        if (api_body_object(body, e) != 0) return -1;
        list = val_get(body, "tables");
    }
    const char **names;
    size_t n;
    if (api_table_list(list, field, a, &names, &n, e) != 0) return -1;
    int ready = 0;
    if (store_indexes_ready(env->st, names, n, &ready, e) != 0) return -1;
    buf_printf(&resp->body, "{\"indexesReady\":%s}", ready ? "true" : "false");
    return 0;
}

API_SMALL_ENDPOINT(api_add_indexes_endpoint, "PUT",
                   "/api/streaming_import/add_primary_key_indexes", 0, add_indexes);
API_SMALL_ENDPOINT(api_ready_endpoint, "GET",
                   "/api/streaming_import/primary_key_indexes_ready", 0, indexes_ready);

/*
 * tables.c — clear_tables and the retired replace_tables (SPEC §3.2, §3.3).
 */
#include "api/small.h"

static int clear_tables(const api_env *env, const api_request *rq, val *body, arena *a,
                        api_response *resp, tr_err *e) {
    (void)rq;
    if (api_body_object(body, e) != 0) return -1;
    const char **names;
    size_t n;
    if (api_table_list(val_get(body, "tableNames"), "tableNames", a, &names, &n, e) != 0)
        return -1;
    uint64_t cleared = 0;
    if (store_clear_tables(env->st, names, n, &cleared, e) != 0) return -1;
    buf_printf(&resp->body, "{\"cleared\":%llu}", (unsigned long long)cleared);
    return 0;
}

static int replace_tables(const api_env *env, const api_request *rq, val *body, arena *a,
                          api_response *resp, tr_err *e) {
    (void)env, (void)rq, (void)body, (void)a, (void)resp;
    return err_set(e, 400, "OverwriteNotSupported",
                   "Overwrite sync mode is not supported. Please use a different sync mode.");
}

API_SMALL_ENDPOINT(api_clear_endpoint, "PUT", "/api/streaming_import/clear_tables", 0,
                   clear_tables);
API_SMALL_ENDPOINT(api_replace_endpoint, "POST", "/api/streaming_import/replace_tables", 0,
                   replace_tables);

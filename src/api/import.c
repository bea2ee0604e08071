/*
 * import.c — POST /api/streaming_import/import_airbyte_records (SPEC §3.1).
 *
 * The body goes chunk by chunk into the decoder (import_decode.h), which validates and
 * normalises every message as it arrives and keeps only stored bytes. Nothing is written
 * until the whole body has been read and every message passed; then the store applies
 * the batch in one transaction and the 200 goes out once it is durable.
 */
#include "api/api.h"
#include "api/import_decode.h"
#include "api/stats.h"
#include "util/xalloc.h"

#include <stdlib.h>

typedef struct import_state {
    const api_env *env;
    import_decoder *dec;
} import_state;

static void *import_open(const api_env *env, const api_request *rq) {
    (void)rq;
    import_state *s = xmalloc(sizeof *s);
    s->env = env;
    s->dec = import_decoder_new();
    return s;
}

static int import_feed(void *state, const char *p, size_t n, tr_err *e) {
    import_state *s = state;
    return import_decoder_feed(s->dec, p, n, e);
}

static int import_finish(void *state, api_response *resp, tr_err *e) {
    import_state *s = state;
    store_batch b;
    if (import_decoder_finish(s->dec, &b, e) != 0) return -1;
    store_import_result res = {0, 0, 0};
    if (b.nrecords > 0 && store_import(s->env->st, &b, &res, e) != 0) return -1;
    if (s->env->stats) api_stats_import(s->env->stats, b.nrecords, &res);
    buf_printf(&resp->body, "{\"messages\":%zu,\"inserted\":%zu,\"replaced\":%zu,\"deleted\":%zu}",
               b.nrecords, res.inserted, res.replaced, res.deleted);
    return 0;
}

static void import_close(void *state) {
    import_state *s = state;
    if (!s) return;
    import_decoder_free(s->dec);
    free(s);
}

const api_endpoint api_import_endpoint = {
    "POST",        "/api/streaming_import/import_airbyte_records", 0, 1, import_open, import_feed,
    import_finish, import_close,
};

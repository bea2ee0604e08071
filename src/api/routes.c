/*
 * routes.c — the routing table and the JSON error body, shared by every endpoint.
 */
#include "api/api.h"
#include "json/emit.h"

#include <string.h>

const api_endpoint *const api_endpoints[] = {
    &api_import_endpoint,      &api_clear_endpoint, &api_replace_endpoint,
    &api_add_indexes_endpoint, &api_ready_endpoint, &api_version_endpoint,
    &api_json_schemas_endpoint, &api_list_snapshot_get_endpoint,
    &api_list_snapshot_post_endpoint, &api_deltas_get_endpoint, &api_deltas_post_endpoint,
    &api_export_probe_endpoint, &api_metrics_endpoint, &api_status_endpoint,
    NULL,
};

void api_error_json(const tr_err *e, buf *out) {
    buf_puts(out, "{\"code\":");
    json_emit_string(e->code, strlen(e->code), out);
    buf_puts(out, ",\"message\":");
    json_emit_string(e->message, strlen(e->message), out);
    buf_putc(out, '}');
}

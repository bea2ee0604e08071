/*
 * status.c — GET /metrics (Prometheus text format) and GET / (the status page), SPEC §5.
 *
 * Both read the same two sources: the process's own counters (stats.h: requests per
 * endpoint, import totals and recent rates) and the tables as stored (document counts
 * and index states, one read transaction). /metrics is for monitoring, so it still
 * answers when the database does not: tributary_storage_up is 0 and the table metrics
 * are left out. The page is plain HTML with no script, refreshing itself every 5 s; the
 * admin key reaches it as ?adminKey= (a browser cannot send the Convex header).
 */
#include "api/small.h"
#include "api/stats.h"

#include <stdio.h>
#include <string.h>

/* ---- shared ---- */

typedef struct table_list {
    buf out; /* what the table callback renders */
    size_t n;
} table_list;

/* An endpoint's method and path for labels and the page; "other" for unmatched ones. */
static void endpoint_name(size_t i, const char **method, const char **path) {
    const api_endpoint *ep = api_endpoints[i];
    *method = ep ? ep->method : "";
    *path = ep ? ep->path : "other";
}

/* ---- /metrics ---- */

/* A label value: backslash, double quote and newline escaped. */
static void label(buf *out, const char *s) {
    buf_putc(out, '"');
    for (; *s; s++) {
        if (*s == '\\' || *s == '"') buf_putc(out, '\\');
        if (*s == '\n') buf_puts(out, "\\n");
        else buf_putc(out, *s);
    }
    buf_putc(out, '"');
}

static void metric_head(buf *out, const char *name, const char *type, const char *help) {
    buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void endpoint_labels(buf *out, size_t i) {
    const char *method, *path;
    endpoint_name(i, &method, &path);
    buf_puts(out, "method=");
    label(out, method);
    buf_puts(out, ",path=");
    label(out, path);
}

static void metrics_requests(buf *out, const stats_view *v) {
    metric_head(out, "tributary_http_requests_total", "counter",
                "HTTP requests answered, by endpoint and status class.");
    for (size_t i = 0; i <= v->nendpoints; i++)
        for (int c = 0; c < STATS_NCLASS; c++) {
            if (!v->endpoints[i].requests[c]) continue;
            buf_puts(out, "tributary_http_requests_total{");
            endpoint_labels(out, i);
            buf_printf(out, ",code=\"%s\"} %llu\n", stats_class_name[c],
                       (unsigned long long)v->endpoints[i].requests[c]);
        }
    metric_head(out, "tributary_http_request_duration_seconds", "histogram",
                "Time from a request's headers to its answer.");
    for (size_t i = 0; i <= v->nendpoints; i++) {
        const stats_endpoint *ep = &v->endpoints[i];
        if (!ep->le[STATS_NBUCKETS]) continue;
        for (size_t b = 0; b <= STATS_NBUCKETS; b++) {
            buf_puts(out, "tributary_http_request_duration_seconds_bucket{");
            endpoint_labels(out, i);
            if (b < STATS_NBUCKETS) buf_printf(out, ",le=\"%g\"", stats_bucket_le[b]);
            else buf_puts(out, ",le=\"+Inf\"");
            buf_printf(out, "} %llu\n", (unsigned long long)ep->le[b]);
        }
        buf_puts(out, "tributary_http_request_duration_seconds_sum{");
        endpoint_labels(out, i);
        buf_printf(out, "} %.6f\n", ep->seconds);
        buf_puts(out, "tributary_http_request_duration_seconds_count{");
        endpoint_labels(out, i);
        buf_printf(out, "} %llu\n", (unsigned long long)ep->le[STATS_NBUCKETS]);
    }
}

static void metrics_imports(buf *out, const stats_view *v) {
    metric_head(out, "tributary_import_records_total", "counter",
                "Records of successful import requests.");
    buf_printf(out, "tributary_import_records_total %llu\n", (unsigned long long)v->records);
    metric_head(out, "tributary_import_documents_total", "counter",
                "Documents written by imports, by what happened to them.");
    const char *what[] = {"inserted", "replaced", "deleted"};
    const uint64_t n[] = {v->inserted, v->replaced, v->deleted};
    for (int i = 0; i < 3; i++)
        buf_printf(out, "tributary_import_documents_total{action=\"%s\"} %llu\n", what[i],
                   (unsigned long long)n[i]);
}

static int table_metric(void *ctx, const store_table_stat *t, tr_err *e) {
    (void)e;
    table_list *l = ctx;
    buf_puts(&l->out, "tributary_table_documents{table=");
    label(&l->out, t->name);
    buf_printf(&l->out, "} %lld\n", (long long)t->documents);
    if (t->index) {
        buf_puts(&l->out, "tributary_table_index_ready{table=");
        label(&l->out, t->name);
        buf_printf(&l->out, "} %d\n", t->index_ready ? 1 : 0);
    }
    return 0;
}

static int metrics(const api_env *env, const api_request *rq, val *body, arena *a,
                   api_response *resp, tr_err *e) {
    (void)rq, (void)body, (void)a, (void)e;
    buf *out = &resp->body;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    stats_view v;
    api_stats_read(env->stats, &v);
    metric_head(out, "tributary_build_info", "gauge", "The running version.");
    buf_puts(out, "tributary_build_info{version=");
    label(out, env->version);
    buf_puts(out, "} 1\n");
    metric_head(out, "tributary_uptime_seconds", "gauge", "Seconds since the server started.");
    buf_printf(out, "tributary_uptime_seconds %.3f\n", v.uptime_s);
    metrics_requests(out, &v);
    metrics_imports(out, &v);
    api_stats_view_free(&v);

    table_list l = {BUF_INIT, 0};
    tr_err se;
    err_clear(&se);
    int up = store_table_stats(env->st, table_metric, &l, &se) == 0;
    metric_head(out, "tributary_storage_up", "gauge",
                "1 when the last read of the tables from storage succeeded.");
    buf_printf(out, "tributary_storage_up %d\n", up);
    if (up) {
        metric_head(out, "tributary_table_documents", "gauge", "Live documents per table.");
        metric_head(out, "tributary_table_index_ready", "gauge",
                    "1 when the table's primary key index is ready, 0 while it backfills.");
        buf_append(out, l.out.p, l.out.len);
    }
    buf_free(&l.out);
    return 0;
}

/* ---- the status page ---- */

static void html(buf *out, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': buf_puts(out, "&amp;"); break;
        case '<': buf_puts(out, "&lt;"); break;
        case '>': buf_puts(out, "&gt;"); break;
        case '"': buf_puts(out, "&quot;"); break;
        case '\'': buf_puts(out, "&#39;"); break;
        default: buf_putc(out, *s);
        }
    }
}

/* An index's canonical text ([["a"],["b","c"]]) as its fields read: "a, b.c". Field
 * names are identifiers (pkey.h), so the text has no escapes. */
static void index_fields(buf *out, const char *canon) {
    buf fields = BUF_INIT;
    int depth = 0;
    for (const char *p = canon; *p; p++) {
        if (*p == '[') depth++;
        else if (*p == ']') depth--;
        else if (*p == ',') buf_puts(&fields, depth == 1 ? ", " : ".");
        else if (*p != '"') buf_putc(&fields, *p);
    }
    html(out, fields.p ? fields.p : "");
    buf_free(&fields);
}

static int table_row(void *ctx, const store_table_stat *t, tr_err *e) {
    (void)e;
    table_list *l = ctx;
    buf_puts(&l->out, "<tr><td>");
    html(&l->out, t->name);
    buf_printf(&l->out, "</td><td class=n>%lld</td><td>", (long long)t->documents);
    if (t->index) {
        index_fields(&l->out, t->index);
        buf_puts(&l->out, t->index_ready ? "</td><td>ready" : "</td><td>backfilling");
    } else {
        buf_puts(&l->out, "</td><td>");
    }
    buf_puts(&l->out, "</td></tr>\n");
    l->n++;
    return 0;
}

static void page_uptime(buf *out, double s) {
    long long t = (long long)s;
    if (t >= 86400) buf_printf(out, "%lld d %02lld h", t / 86400, t % 86400 / 3600);
    else if (t >= 3600) buf_printf(out, "%lld h %02lld min", t / 3600, t % 3600 / 60);
    else buf_printf(out, "%lld min %02lld s", t / 60, t % 60);
}

static void page_imports(buf *out, const stats_view *v) {
    const stats_endpoint *imp = NULL;
    for (size_t i = 0; i < v->nendpoints; i++)
        if (api_endpoints[i] == &api_import_endpoint) imp = &v->endpoints[i];
    buf_printf(out,
               "<h2>Imports</h2>\n<table>\n"
               "<tr><th>records/s</th><td class=n>%.0f</td><td>last 10 s</td></tr>\n"
               "<tr><th></th><td class=n>%.0f</td><td>last minute</td></tr>\n"
               "<tr><th></th><td class=n>%.0f</td><td>last 5 minutes</td></tr>\n"
               "<tr><th>records</th><td class=n>%llu</td><td>since the start</td></tr>\n"
               "<tr><th>documents</th><td class=n>%llu</td><td>inserted</td></tr>\n"
               "<tr><th></th><td class=n>%llu</td><td>replaced</td></tr>\n"
               "<tr><th></th><td class=n>%llu</td><td>deleted</td></tr>\n",
               v->rate_10s, v->rate_1m, v->rate_5m, (unsigned long long)v->records,
               (unsigned long long)v->inserted, (unsigned long long)v->replaced,
               (unsigned long long)v->deleted);
    if (imp)
        buf_printf(out,
                   "<tr><th>requests</th><td class=n>%llu</td><td>succeeded</td></tr>\n"
                   "<tr><th></th><td class=n>%llu</td><td>refused (4xx)</td></tr>\n"
                   "<tr><th></th><td class=n>%llu</td><td>failed (5xx)</td></tr>\n",
                   (unsigned long long)imp->requests[STATS_2XX],
                   (unsigned long long)imp->requests[STATS_4XX],
                   (unsigned long long)imp->requests[STATS_5XX]);
    buf_puts(out, "</table>\n");
}

static int status_page(const api_env *env, const api_request *rq, val *body, arena *a,
                       api_response *resp, tr_err *e) {
    (void)rq, (void)body, (void)a, (void)e;
    buf *out = &resp->body;
    resp->content_type = "text/html; charset=utf-8";
    stats_view v;
    api_stats_read(env->stats, &v);
    buf_puts(out, "<!doctype html>\n<html><head><meta charset=utf-8>"
                  "<meta http-equiv=refresh content=5><title>tributary</title>\n"
                  "<style>body{font-family:sans-serif;margin:2em}"
                  "table{border-collapse:collapse}td,th{padding:.2em .8em;text-align:left}"
                  "td.n{text-align:right;font-variant-numeric:tabular-nums}"
                  "tr:nth-child(even){background:#f3f3f3}.err{color:#b00}</style>"
                  "</head><body>\n<h1>tributary</h1>\n<p>version ");
    html(out, env->version);
    buf_puts(out, " &middot; ");
    html(out, env->storage ? env->storage : "");
    buf_puts(out, " &middot; up ");
    page_uptime(out, v.uptime_s);
    buf_puts(out, "</p>\n");
    page_imports(out, &v);
    api_stats_view_free(&v);

    table_list l = {BUF_INIT, 0};
    tr_err se;
    err_clear(&se);
    buf_puts(out, "<h2>Tables</h2>\n");
    if (store_table_stats(env->st, table_row, &l, &se) != 0) {
        buf_puts(out, "<p class=err>The tables could not be read: ");
        html(out, se.message);
        buf_puts(out, "</p>\n");
    } else if (l.n == 0) {
        buf_puts(out, "<p>No tables yet.</p>\n");
    } else {
        buf_puts(out, "<table>\n<tr><th>table</th><th>documents</th>"
                      "<th>primary key index</th><th>index</th></tr>\n");
        buf_append(out, l.out.p, l.out.len);
        buf_puts(out, "</table>\n");
    }
    buf_free(&l.out);
    buf_puts(out, "</body></html>\n");
    return 0;
}

API_SMALL_ENDPOINT(api_metrics_endpoint, "GET", "/metrics", API_PUBLIC_METRICS, metrics);
API_SMALL_ENDPOINT(api_status_endpoint, "GET", "/", API_ADMIN, status_page);

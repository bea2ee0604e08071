/*
 * export.c — the Streaming Export endpoints (SPEC §4): json_schemas, list_snapshot,
 * document_deltas and the test_streaming_export_connection probe.
 *
 * GET takes its parameters from the query string, POST from a JSON body with the same
 * names (null counts as absent, as in the reference); everything after that is shared.
 * The store hands each value over with its stored fields as Convex JSON text. For
 * `convex_json` that text is already the wire encoding and is spliced into the value as
 * it is; for the clean `json` format it is parsed once and written again with
 * json_emit_clean.
 * The list_snapshot cursor is export_cursor.h's.
 */
#include "api/export_cursor.h"
#include "api/small.h"
#include "json/emit.h"
#include "json/reader.h"
#include "model/names.h"
#include "store/shape.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define EX_PAGE_DOCS 1000                   /* list_snapshot documents per page */
#define EX_PAGE_BYTES (8u * 1024 * 1024)   /* ... and stored bytes, so 1 MiB documents
                                              do not make gigabyte pages */
#define EX_DELTAS_PAGE 1000                 /* document_deltas values per page (whole
                                               commits; a bigger commit is one page) */
#define EX_MAX_DEPTH 64                     /* stored documents nest at most 16 deep */

/* ---- parameters ---- */

/* Where a request's parameters are: the query string (GET) or a JSON object (POST). */
typedef struct ex_src {
    const api_request *rq;
    const val *body; /* POST: the body object, NULL when there was no body */
    int post;
} ex_src;

static int ex_source(const api_request *rq, val *body, int post, ex_src *src, tr_err *e) {
    *src = (ex_src){rq, NULL, post};
    if (!post || !body) return 0;
    if (api_body_object(body, e) != 0) return -1;
    src->body = body;
    return 0;
}

/* The body field `name`, or NULL when absent or null. */
static const val *ex_field(const ex_src *src, const char *name) {
    const val *v = src->body ? val_get(src->body, name) : NULL;
    return v && v->type != VAL_NULL ? v : NULL;
}

/* A string parameter; *out = NULL when absent (an empty query value counts as absent,
 * which is how clients that build URLs from optional settings send "nothing"). */
static int ex_string(const ex_src *src, const char *name, const char **out, size_t *len,
                     tr_err *e) {
    *out = NULL;
    *len = 0;
    if (!src->post) {
        const char *q = src->rq->query(src->rq->conn, name);
        if (q && *q) {
            *out = q;
            *len = strlen(q);
        }
        return 0;
    }
    const val *v = ex_field(src, name);
    if (!v) return 0;
    if (v->type != VAL_STRING)
        return err_set(e, 400, "BadJsonBody", "%s: expected a string, got %s", name,
                       val_type_name(v->type));
    *out = v->u.s.p;
    *len = v->u.s.len;
    return 0;
}

/* -?[0-9]+ that fits in an int64. */
static int ex_parse_i64(const char *s, int64_t *out) {
    const char *p = s + (*s == '-');
    if (!*p) return -1;
    for (; *p; p++)
        if (*p < '0' || *p > '9') return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

/* An int64 parameter (timestamps): *has = 0 when absent. */
static int ex_int(const ex_src *src, const char *name, int *has, int64_t *out, tr_err *e) {
    *has = 0;
    if (!src->post) {
        const char *q = src->rq->query(src->rq->conn, name);
        if (!q || !*q) return 0;
        if (ex_parse_i64(q, out) != 0)
            return err_set(e, 400, "BadQueryArgs", "%s: expected an integer, got '%.40s'", name,
                           q);
        *has = 1;
        return 0;
    }
    const val *v = ex_field(src, name);
    if (!v) return 0;
    if (v->type == VAL_INT) {
        *out = v->u.i;
    } else if (v->type == VAL_FLOAT && v->u.f == floor(v->u.f) && fabs(v->u.f) < 9.2e18) {
        *out = (int64_t)v->u.f;
    } else {
        return err_set(e, 400, "BadJsonBody", "%s: expected an integer, got %s", name,
                       v->type == VAL_FLOAT ? "a fraction" : val_type_name(v->type));
    }
    *has = 1;
    return 0;
}

/* A boolean query parameter ("true" / "false"); absent is false. */
static int ex_bool(const ex_src *src, const char *name, int *out, tr_err *e) {
    const char *q = src->rq->query(src->rq->conn, name);
    *out = 0;
    if (!q || !*q || strcmp(q, "false") == 0) return 0;
    if (strcmp(q, "true") == 0) {
        *out = 1;
        return 0;
    }
    return err_set(e, 400, "BadQueryArgs", "%s: expected true or false, got '%.40s'", name, q);
}

/* `format`: *clean = 1 for the `json` format (the default), 0 for `convex_json`. */
static int ex_format(const ex_src *src, int *clean, tr_err *e) {
    const char *f;
    size_t n;
    if (ex_string(src, "format", &f, &n, e) != 0) return -1;
    *clean = 1;
    if (!f) return 0;
    if ((n == 4 && memcmp(f, "json", 4) == 0) || (n == 17 && memcmp(f, "convex_clean_json", 17) == 0))
        return 0;
    if ((n == 11 && memcmp(f, "convex_json", 11) == 0) ||
        (n == 19 && memcmp(f, "convex_encoded_json", 19) == 0)) {
        *clean = 0;
        return 0;
    }
    return err_set(e, 400, "BadFormat",
                   "format param must be one of [`json`, `convex_clean_json`, `convex_json`, "
                   "`convex_encoded_json`]. Got %.*s",
                   (int)(n > 64 ? 64 : n), f);
}

/* `tableName` (or `table_name`), rewritten like every table name (SPEC §2.1); *table =
 * NULL when absent. */
static int ex_table(const ex_src *src, char name_buf[NAMES_TABLE_MAX + 1], const char **table,
                    tr_err *e) {
    const char *name, *field = "tableName";
    size_t n;
    *table = NULL;
    if (ex_string(src, field, &name, &n, e) != 0) return -1;
    if (!name && ex_string(src, field = "table_name", &name, &n, e) != 0) return -1;
    if (!name) return 0;
    if (names_table_rewrite(name, n, name_buf, e) != 0) return err_prefix(e, "%s: ", field);
    *table = name_buf;
    return 0;
}

/* ---- values ---- */

typedef struct ex_out {
    buf *out;
    int clean;
    int deltas; /* document_deltas: every value says whether it is a deletion */
    size_t n;
    arena *a;   /* the parsed fields of one document (clean format) */
} ex_out;

/* The stored fields, spliced after "_creationTime" (convex_json: the stored text is
 * already this encoding). */
static int ex_fields_convex(const store_value *v, buf *out, tr_err *e) {
    const char *p = v->fields, *end = v->fields + v->fields_len;
    while (end > p && (end[-1] == ' ' || end[-1] == '\n' || end[-1] == '\r' || end[-1] == '\t'))
        end--;
    if (end - p < 2 || *p != '{' || end[-1] != '}')
        return err_set(e, 500, "StorageError", "Stored document %s is not a JSON object", v->id);
    p++;
    end--;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    if (p == end) return 0;
    buf_putc(out, ',');
    buf_append(out, p, (size_t)(end - p));
    return 0;
}

static int ex_fields_clean(ex_out *o, const store_value *v, tr_err *e) {
    val *doc;
    arena_reset(o->a);
    if (json_parse(o->a, v->fields, v->fields_len, EX_MAX_DEPTH, JSON_CONVEX, &doc, e) != 0 ||
        doc->type != VAL_OBJECT)
        return err_set(e, 500, "StorageError", "Stored document %s cannot be read", v->id);
    for (size_t i = 0; i < doc->u.o.n; i++) {
        const val_field *f = &doc->u.o.fields[i];
        buf_putc(o->out, ',');
        json_emit_string(f->key, f->key_len, o->out);
        buf_putc(o->out, ':');
        json_emit_clean(f->v, o->out);
    }
    return 0;
}

static int ex_value(void *ctx, const store_value *v, tr_err *e) {
    ex_out *o = ctx;
    buf *out = o->out;
    if (o->n++) buf_putc(out, ',');
    buf_puts(out, "{\"_id\":\"");
    buf_puts(out, v->id);
    buf_putc(out, '"');
    if (!v->deleted) {
        buf_puts(out, ",\"_creationTime\":");
        json_emit_double(v->creation_time, out);
        if ((o->clean ? ex_fields_clean(o, v, e) : ex_fields_convex(v, out, e)) != 0) return -1;
    }
    buf_puts(out, ",\"_table\":");
    json_emit_string(v->table, strlen(v->table), out);
    buf_printf(out, ",\"_ts\":%" PRId64 ",\"_component\":\"\"", v->ts);
    if (o->deltas) buf_puts(out, v->deleted ? ",\"_deleted\":true" : ",\"_deleted\":false");
    buf_putc(out, '}');
    return 0;
}

/* ---- endpoints ---- */

static int list_snapshot(const api_env *env, const api_request *rq, val *body, int post,
                         api_response *resp, tr_err *e) {
    ex_src src;
    char tbuf[NAMES_TABLE_MAX + 1];
    store_snapshot_req req = {.limit = EX_PAGE_DOCS, .max_bytes = EX_PAGE_BYTES};
    store_snapshot_pos cursor;
    const char *ctext;
    size_t clen;
    int clean;
    if (ex_source(rq, body, post, &src, e) != 0 || ex_format(&src, &clean, e) != 0 ||
        ex_table(&src, tbuf, &req.table, e) != 0 ||
        ex_int(&src, "snapshot", &req.has_snapshot, &req.snapshot, e) != 0 ||
        ex_string(&src, "cursor", &ctext, &clen, e) != 0)
        return -1;
    if (ctext) {
        if (export_cursor_decode(ctext, clen, &cursor, e) != 0) return -1;
        req.cursor = &cursor;
    }
    ex_out o = {.out = &resp->body, .clean = clean, .a = arena_new()};
    store_snapshot_page page;
    buf_puts(&resp->body, "{\"values\":[");
    int rc = store_list_snapshot(env->st, &req, ex_value, &o, &page, e);
    arena_free(o.a);
    if (rc != 0) return -1;
    buf_printf(&resp->body, "],\"snapshot\":%" PRId64 ",\"cursor\":", page.snapshot);
    if (page.has_more) export_cursor_encode(&page.next, &resp->body);
    else buf_puts(&resp->body, "null");
    buf_printf(&resp->body, ",\"hasMore\":%s}", page.has_more ? "true" : "false");
    return 0;
}

static int document_deltas(const api_env *env, const api_request *rq, val *body, int post,
                           api_response *resp, tr_err *e) {
    ex_src src;
    char tbuf[NAMES_TABLE_MAX + 1];
    store_deltas_req req = {.limit = EX_DELTAS_PAGE};
    int clean, has_cursor;
    if (ex_source(rq, body, post, &src, e) != 0 || ex_format(&src, &clean, e) != 0 ||
        ex_table(&src, tbuf, &req.table, e) != 0 ||
        ex_int(&src, "cursor", &has_cursor, &req.cursor, e) != 0)
        return -1;
    if (!has_cursor)
        return err_set(e, 400, "DocumentDeltasCursorRequired",
                       "/api/document_deltas requires a cursor (the snapshot of list_snapshot "
                       "or the cursor of the previous page)");
    ex_out o = {.out = &resp->body, .clean = clean, .deltas = 1, .a = arena_new()};
    store_deltas_page page;
    buf_puts(&resp->body, "{\"values\":[");
    int rc = store_document_deltas(env->st, &req, ex_value, &o, &page, e);
    arena_free(o.a);
    if (rc != 0) return -1;
    buf_printf(&resp->body, "],\"cursor\":%" PRId64 ",\"hasMore\":%s}", page.cursor,
               page.has_more ? "true" : "false");
    return 0;
}

typedef struct ex_schemas {
    buf *out;
    int delta, clean;
    size_t n;
} ex_schemas;

static int ex_schema(void *ctx, const char *table, const shape *sh, tr_err *e) {
    (void)e;
    ex_schemas *x = ctx;
    if (x->n++) buf_putc(x->out, ',');
    json_emit_string(table, strlen(table), x->out);
    buf_putc(x->out, ':');
    shape_json_schema(sh, table, x->delta, x->clean, x->out);
    return 0;
}

static int json_schemas(const api_env *env, const api_request *rq, val *body, arena *a,
                        api_response *resp, tr_err *e) {
    (void)body, (void)a;
    ex_src src = {rq, NULL, 0};
    ex_schemas x = {.out = &resp->body};
    int by_component;
    if (ex_format(&src, &x.clean, e) != 0 || ex_bool(&src, "deltaSchema", &x.delta, e) != 0 ||
        ex_bool(&src, "byComponent", &by_component, e) != 0)
        return -1;
    /* every table is in the root component, whose path is "" */
    buf_puts(&resp->body, by_component ? "{\"\":{" : "{");
    if (store_table_shapes(env->st, ex_schema, &x, e) != 0) return -1;
    buf_puts(&resp->body, by_component ? "}}" : "}");
    return 0;
}

/* The reference answers `null`; Fivetran's source reads the body as a unit value, so
 * anything else would fail its connection test. */
static int test_connection(const api_env *env, const api_request *rq, val *body, arena *a,
                           api_response *resp, tr_err *e) {
    (void)env, (void)rq, (void)body, (void)a, (void)e;
    buf_puts(&resp->body, "null");
    return 0;
}

static int list_snapshot_get(const api_env *env, const api_request *rq, val *body, arena *a,
                             api_response *resp, tr_err *e) {
    (void)a;
    return list_snapshot(env, rq, body, 0, resp, e);
}

static int list_snapshot_post(const api_env *env, const api_request *rq, val *body, arena *a,
                              api_response *resp, tr_err *e) {
    (void)a;
    return list_snapshot(env, rq, body, 1, resp, e);
}

static int document_deltas_get(const api_env *env, const api_request *rq, val *body, arena *a,
                               api_response *resp, tr_err *e) {
    (void)a;
    return document_deltas(env, rq, body, 0, resp, e);
}

static int document_deltas_post(const api_env *env, const api_request *rq, val *body,
                                arena *a, api_response *resp, tr_err *e) {
    (void)a;
    return document_deltas(env, rq, body, 1, resp, e);
}

API_SMALL_ENDPOINT(api_json_schemas_endpoint, "GET", "/api/json_schemas", 0, json_schemas);
API_SMALL_ENDPOINT(api_list_snapshot_get_endpoint, "GET", "/api/list_snapshot", 0,
                   list_snapshot_get);
API_SMALL_ENDPOINT(api_list_snapshot_post_endpoint, "POST", "/api/list_snapshot", 0,
                   list_snapshot_post);
API_SMALL_ENDPOINT(api_deltas_get_endpoint, "GET", "/api/document_deltas", 0,
                   document_deltas_get);
API_SMALL_ENDPOINT(api_deltas_post_endpoint, "POST", "/api/document_deltas", 0,
                   document_deltas_post);
API_SMALL_ENDPOINT(api_export_probe_endpoint, "GET", "/api/test_streaming_export_connection",
                   0, test_connection);

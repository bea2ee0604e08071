/*
 * import_decode.c — decoding an import_airbyte_records body (SPEC §2, §3.1).
 *
 * The body streams through the JSON reader: "tables" arrives as one small tree (usually
 * first), every element of "messages" as its own tree, which is validated, normalised,
 * keyed and turned into stored bytes at once, then forgotten. So a request costs about
 * its body size in memory (the stored bytes) and never a tree of the whole request.
 * Nothing is written until the whole body has been read and every message passed; then
 * the store applies the batch in one transaction.
 *
 * A client may send "messages" before "tables" (JSON objects are unordered). Such
 * messages are normalised as append records and kept with their raw table name; at the
 * end, those that belong to dedup streams are re-read from their stored bytes to drop
 * the CDC fields and compute the key. Only that unusual order pays the second pass.
 *
 * Each stream's shape (store/shape.h) is widened from the trees while they are at hand,
 * so the store need not re-read the texts for it; after that unusual order the batch
 * carries no shapes and the store builds them from the texts.
 */
#include "api/import_decode.h"
#include "json/emit.h"
#include "json/reader.h"
#include "model/doc.h"
#include "model/names.h"
#include "model/pkey.h"
#include "util/xalloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_PENDING UINT32_MAX /* record whose stream is not known yet */
#define TABLES_MAX_DEPTH 128

struct import_decoder {
    arena *root;  /* "tables" and other top-level fields */
    arena *elem;  /* one message at a time */
    json_reader *reader;

    store_stream *streams;
    size_t nstreams;
    int have_tables;

    store_record *recs;
    size_t nrecs, cap;
    buf docs;         /* stored document bytes of every record */
    buf keys;         /* encoded primary keys of dedup records */
    buf pending;      /* raw table names of records whose stream is pending, NUL-separated */
    size_t *pending_name; /* per record: offset into pending (only for pending records) */
    shape **shapes;       /* per stream: its written documents' shape (NULL: none yet) */
    int no_shapes;        /* a record came before "tables" */
};

typedef struct import_decoder import_state;

static const store_stream *find_stream(const import_state *s, const char *table, uint32_t *idx) {
    for (size_t i = 0; i < s->nstreams; i++) {
        if (strcmp(s->streams[i].table, table) == 0) {
            *idx = (uint32_t)i;
            return &s->streams[i];
        }
    }
    return NULL;
}

/* tables: {"<stream>": {"primaryKey": [[...]] | null | absent, "jsonSchema": any}} */
static int read_tables(import_state *s, val *tables, tr_err *e) {
    /* Messages already read were matched against the first one (and the dedup ones
     * stripped of their CDC fields): a second one cannot win as a duplicate key would. */
    if (s->have_tables)
        return err_set(e, 400, "BadJsonBody", "tables: the field appears twice in the body");
    if (tables->type != VAL_OBJECT)
        return err_set(e, 400, "BadJsonBody", "tables: expected an object, got %s",
                       val_type_name(tables->type));
    s->streams = arena_alloc(s->root, (tables->u.o.n + 1) * sizeof *s->streams);
    s->nstreams = 0;
    s->shapes = xcalloc(tables->u.o.n + 1, sizeof *s->shapes);
    for (size_t i = 0; i < tables->u.o.n; i++) {
        const val_field *f = &tables->u.o.fields[i];
        store_stream st;
        memset(&st, 0, sizeof st);
        if (names_table_rewrite(f->key, f->key_len, st.table, e) != 0)
            return err_prefix(e, "tables: ");
        if (f->v->type != VAL_OBJECT)
            return err_set(e, 400, "BadJsonBody", "tables.%s: expected an object, got %s",
                           st.table, val_type_name(f->v->type));
        if (!val_get(f->v, "jsonSchema"))
            return err_set(e, 400, "BadJsonBody", "tables.%s: missing field `jsonSchema`",
                           st.table);
        const val *pk = val_get(f->v, "primaryKey");
        if (pk && pk->type != VAL_NULL) {
            if (pkey_parse(pk, PKEY_FROM_STREAM, &st.key, e) != 0)
                return err_prefix(e, "tables.%s.primaryKey: ", st.table);
            st.dedup = 1;
        }
        /* Two raw names that rewrite to one table: the later entry wins. */
        uint32_t at;
        if (find_stream(s, st.table, &at))
            s->streams[at] = st;
        else
            s->streams[s->nstreams++] = st;
    }
    s->have_tables = 1;
    return 0;
}

static int on_root_field(void *ctx, const char *key, size_t key_len, val *value, tr_err *e) {
    import_state *s = ctx;
    if (key_len == 6 && memcmp(key, "tables", 6) == 0) return read_tables(s, value, e);
    return 0;
}

static store_record *new_record(import_state *s) {
    if (s->nrecs == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->recs = xrealloc(s->recs, s->cap * sizeof *s->recs);
        s->pending_name = xrealloc(s->pending_name, s->cap * sizeof *s->pending_name);
    }
    store_record *r = &s->recs[s->nrecs];
    memset(r, 0, sizeof *r);
    s->pending_name[s->nrecs] = SIZE_MAX;
    s->nrecs++;
    return r;
}

/* Normalises data for its stream and appends the record's stored bytes. */
static int add_record(import_state *s, store_record *r, const store_stream *st, val *data,
                      tr_err *e) {
    int deleted = 0;
    if (doc_normalize(s->elem, data, st && st->dedup ? DOC_DEDUP : DOC_APPEND, &deleted, e) != 0)
        return -1;
    if (st && st->dedup) {
        r->deleted = deleted;
        r->key_off = s->keys.len;
        if (pkey_encode_doc(&st->key, data, 1, &s->keys, e) != 0) return -1;
        r->key_len = s->keys.len - r->key_off;
    } else {
        r->deleted = 0;
    }
    r->doc_off = s->docs.len;
    json_emit_convex(data, &s->docs);
    r->doc_len = s->docs.len - r->doc_off;
    if (!st) s->no_shapes = 1;
    if (!s->no_shapes && !r->deleted) {
        if (!s->shapes[r->stream]) s->shapes[r->stream] = shape_new();
        int changed = 0;
        shape_add_val(s->shapes[r->stream], data, &changed);
    }
    return 0;
}

static int on_message(void *ctx, size_t index, val *msg, tr_err *e) {
    import_state *s = ctx;
    int rc = -1;
    if (msg->type != VAL_OBJECT) {
        err_set(e, 400, "BadJsonBody", "messages[%zu]: expected an object, got %s", index,
                val_type_name(msg->type));
        goto done;
    }
    const val *name = val_get(msg, "tableName");
    val *data = val_get(msg, "data");
    if (!name || name->type != VAL_STRING) {
        err_set(e, 400, "BadJsonBody", "messages[%zu].tableName: %s", index,
                name ? "expected a string" : "missing field `tableName`");
        goto done;
    }
    if (!data) {
        err_set(e, 400, "BadJsonBody", "messages[%zu]: missing field `data`", index);
        goto done;
    }
    if (data->type != VAL_OBJECT) {
        err_set(e, 400, "InvalidRecord", "messages[%zu].data: expected an object, got %s", index,
                val_type_name(data->type));
        goto done;
    }
    char table[NAMES_TABLE_MAX + 1];
    if (names_table_rewrite(name->u.s.p, name->u.s.len, table, e) != 0) {
        err_prefix(e, "messages[%zu].tableName: ", index);
        goto done;
    }
    store_record *r = new_record(s);
    const store_stream *st = NULL;
    if (s->have_tables) {
        st = find_stream(s, table, &r->stream);
        if (!st) {
            err_set(e, 400, "MissingStream", "messages[%zu]: Missing stream for table %s", index,
                    table);
            goto done;
        }
    } else {
        r->stream = STREAM_PENDING;
        s->pending_name[s->nrecs - 1] = s->pending.len;
        buf_append(&s->pending, table, strlen(table) + 1);
    }
    if (add_record(s, r, st, data, e) != 0) {
        err_prefix(e, "messages[%zu].data: ", index);
        goto done;
    }
    rc = 0;
done:
    arena_reset(s->elem);
    return rc;
}

/* Messages that came before "tables": find their streams now; dedup ones are re-read. */
static int resolve_pending(import_state *s, tr_err *e) {
    for (size_t i = 0; i < s->nrecs; i++) {
        store_record *r = &s->recs[i];
        if (r->stream != STREAM_PENDING) continue;
        const char *table = s->pending.p + s->pending_name[i];
        const store_stream *st = find_stream(s, table, &r->stream);
        if (!st)
            return err_set(e, 400, "MissingStream", "messages[%zu]: Missing stream for table %s",
                           i, table);
        if (!st->dedup) continue;
        val *data;
        if (json_parse(s->elem, s->docs.p + r->doc_off, r->doc_len, DOC_MAX_DEPTH + 1,
                       JSON_CONVEX, &data, e) != 0 ||
            add_record(s, r, st, data, e) != 0) {
            arena_reset(s->elem);
            return err_prefix(e, "messages[%zu].data: ", i);
        }
        arena_reset(s->elem);
    }
    return 0;
}

import_decoder *import_decoder_new(void) {
    import_state *s = xcalloc(1, sizeof *s);
    s->root = arena_new();
    s->elem = arena_new();
    json_reader_opts o = {
        .max_depth = TABLES_MAX_DEPTH,
        .stream_key = "messages",
        .element_max_depth = DOC_MAX_DEPTH + 1, /* the message object holds data */
        .element_max_fields = DOC_MAX_FIELDS,
        .element_max_array = DOC_MAX_ARRAY,
        .on_element = on_message,
        .on_root_field = on_root_field,
        .ctx = s,
    };
    s->reader = json_reader_new(&o, s->root, s->elem);
    return s;
}

int import_decoder_feed(import_decoder *s, const char *p, size_t n, tr_err *e) {
    return json_reader_feed(s->reader, p, n, e);
}

int import_decoder_finish(import_decoder *s, store_batch *out, tr_err *e) {
    val *root;
    if (json_reader_finish(s->reader, &root, e) != 0) return -1;
    if (!s->have_tables) return err_set(e, 400, "BadJsonBody", "missing field `tables`");
    if (!json_reader_streamed(s->reader))
        return err_set(e, 400, "BadJsonBody", "missing field `messages`");
    if (resolve_pending(s, e) != 0) return -1;
    out->streams = s->streams;
    out->nstreams = s->nstreams;
    out->records = s->recs;
    out->nrecords = s->nrecs;
    out->docs = s->docs.p;
    out->keys = (const unsigned char *)s->keys.p;
    out->shapes = s->no_shapes ? NULL : s->shapes;
    return 0;
}

void import_decoder_free(import_decoder *s) {
    if (!s) return;
    json_reader_free(s->reader);
    arena_free(s->root);
    arena_free(s->elem);
    buf_free(&s->docs);
    buf_free(&s->keys);
    buf_free(&s->pending);
    free(s->recs);
    free(s->pending_name);
    for (size_t i = 0; s->shapes && i < s->nstreams; i++) shape_free(s->shapes[i]);
    free(s->shapes);
    free(s);
}

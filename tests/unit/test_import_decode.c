/*
 * test_import_decode.c — the import body decoder: from request bytes to a store batch.
 */
#include "unit.h"

#include "api/import_decode.h"
#include "store/batch.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct decoded {
    import_decoder *d;
    store_batch b;
    tr_err e;
    int rc;
} decoded;

/* Feeds body in chunks of `chunk` bytes (0 = whole) and finishes. */
static decoded decode(const char *body, size_t chunk) {
    decoded r;
    memset(&r, 0, sizeof r);
    r.d = import_decoder_new();
    size_t n = strlen(body);
    if (chunk == 0) chunk = n ? n : 1;
    for (size_t off = 0; off < n && r.rc == 0; off += chunk) {
        size_t len = n - off < chunk ? n - off : chunk;
        r.rc = import_decoder_feed(r.d, body + off, len, &r.e);
    }
    if (r.rc == 0) r.rc = import_decoder_finish(r.d, &r.b, &r.e);
    return r;
}

static char *doc_text(const decoded *r, size_t i) {
    static char out[4096];
    const store_record *rec = &r->b.records[i];
    snprintf(out, sizeof out, "%.*s", (int)rec->doc_len, r->b.docs + rec->doc_off);
    return out;
}

static void expect_error(const char *body, int status, const char *code, const char *in_msg) {
    decoded r = decode(body, 0);
    if (r.rc == 0) fail_msg("expected %s for %s", code, body);
    assert_int_equal(r.e.status, status);
    assert_string_equal(r.e.code, code);
    if (in_msg && !strstr(r.e.message, in_msg))
        fail_msg("message '%s' does not contain '%s'", r.e.message, in_msg);
    import_decoder_free(r.d);
}

static void append_and_dedup_records(void **state) {
    (void)state;
    const char *body =
        "{\"tables\":{\"users\":{\"primaryKey\":[[\"id\"]],\"jsonSchema\":null},"
        "\"my-log\":{\"primaryKey\":null,\"jsonSchema\":{\"type\":\"object\"}}},"
        "\"messages\":["
        "{\"tableName\":\"users\",\"data\":{\"id\":1,\"name\":\"a\",\"_ab_cdc_lsn\":5}},"
        "{\"tableName\":\"my-log\",\"data\":{\"_id\":\"x\",\"_ab_cdc_deleted_at\":\"2024\"}},"
        "{\"tableName\":\"users\",\"data\":{\"id\":2,\"_ab_cdc_deleted_at\":\"2024\"}}]}";
    for (size_t chunk = 0; chunk < 40; chunk += 7) {
        decoded r = decode(body, chunk);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.b.nstreams, 2);
        assert_string_equal(r.b.streams[0].table, "users");
        assert_true(r.b.streams[0].dedup);
        assert_string_equal(r.b.streams[1].table, "source_my_log");
        assert_false(r.b.streams[1].dedup);
        assert_int_equal(r.b.nrecords, 3);
        /* dedup: CDC fields dropped, key present */
        assert_int_equal(r.b.records[0].stream, 0);
        assert_string_equal(doc_text(&r, 0), "{\"id\":1,\"name\":\"a\"}");
        assert_true(r.b.records[0].key_len > 0);
        assert_false(r.b.records[0].deleted);
        /* append: names rewritten, CDC fields kept, never a deletion */
        assert_int_equal(r.b.records[1].stream, 1);
        assert_string_equal(doc_text(&r, 1),
                            "{\"source_id\":\"x\",\"source_ab_cdc_deleted_at\":\"2024\"}");
        assert_false(r.b.records[1].deleted);
        /* dedup deletion */
        assert_true(r.b.records[2].deleted);
        assert_string_equal(doc_text(&r, 2), "{\"id\":2}");
        import_decoder_free(r.d);
    }
}

static void messages_before_tables(void **state) {
    (void)state;
    const char *body =
        "{\"messages\":["
        "{\"tableName\":\"t\",\"data\":{\"k\":\"a\",\"_ab_cdc_deleted_at\":1}},"
        "{\"tableName\":\"u\",\"data\":{\"k\":\"b\",\"_ab_cdc_lsn\":1}}],"
        "\"tables\":{\"t\":{\"primaryKey\":[[\"k\"]],\"jsonSchema\":null},"
        "\"u\":{\"jsonSchema\":null}}}";
    decoded r = decode(body, 5);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.b.nrecords, 2);
    assert_int_equal(r.b.records[0].stream, 0);
    assert_true(r.b.records[0].deleted);
    assert_string_equal(doc_text(&r, 0), "{\"k\":\"a\"}");
    assert_true(r.b.records[0].key_len > 0);
    assert_int_equal(r.b.records[1].stream, 1);
    assert_string_equal(doc_text(&r, 1), "{\"k\":\"b\",\"source_ab_cdc_lsn\":1}");
    import_decoder_free(r.d);
}

static void same_key_gives_same_bytes(void **state) {
    (void)state;
    const char *body =
        "{\"tables\":{\"t\":{\"primaryKey\":[[\"a\",\"b\"],[\"c\"]],\"jsonSchema\":null}},"
        "\"messages\":["
        "{\"tableName\":\"t\",\"data\":{\"a\":{\"b\":1},\"c\":null,\"x\":1}},"
        "{\"tableName\":\"t\",\"data\":{\"c\":null,\"a\":{\"b\":1.0},\"x\":2}},"
        "{\"tableName\":\"t\",\"data\":{\"a\":{\"b\":\"1\"},\"c\":null}}]}";
    decoded r = decode(body, 0);
    assert_int_equal(r.rc, 0);
    const store_record *x = &r.b.records[0], *y = &r.b.records[1], *z = &r.b.records[2];
    assert_int_equal(x->key_len, y->key_len);
    assert_memory_equal(r.b.keys + x->key_off, r.b.keys + y->key_off, x->key_len);
    assert_true(x->key_len != z->key_len ||
                memcmp(r.b.keys + x->key_off, r.b.keys + z->key_off, x->key_len) != 0);
    import_decoder_free(r.d);
}

static void empty_messages_are_fine(void **state) {
    (void)state;
    decoded r = decode("{\"tables\":{\"t\":{\"primaryKey\":null,\"jsonSchema\":null}},"
                       "\"messages\":[]}", 0);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.b.nrecords, 0);
    import_decoder_free(r.d);
}

static void errors_name_the_place(void **state) {
    (void)state;
    const char *tables = "{\"tables\":{\"t\":{\"primaryKey\":null,\"jsonSchema\":null}},";
    char body[512];
    snprintf(body, sizeof body, "%s\"messages\":[{\"tableName\":\"t\",\"data\":{}},"
             "{\"tableName\":\"t\",\"data\":[1]}]}", tables);
    expect_error(body, 400, "InvalidRecord", "messages[1].data");
    /* the messages read so far were matched against the first "tables" */
    expect_error("{\"tables\":{\"a\":{\"jsonSchema\":null}},\"messages\":[{\"tableName\":\"a\","
                 "\"data\":{}}],\"tables\":{\"b\":{\"jsonSchema\":null}}}",
                 400, "BadJsonBody", "tables: the field appears twice");
    snprintf(body, sizeof body, "%s\"messages\":[{\"tableName\":\"zz\",\"data\":{}}]}", tables);
    expect_error(body, 400, "MissingStream", "zz");
    snprintf(body, sizeof body, "%s\"messages\":[{\"data\":{}}]}", tables);
    expect_error(body, 400, "BadJsonBody", "messages[0].tableName");
    snprintf(body, sizeof body, "%s\"messages\":[{\"tableName\":\"t\"}]}", tables);
    expect_error(body, 400, "BadJsonBody", "messages[0]");
    snprintf(body, sizeof body, "%s\"messages\":{}}", tables);
    expect_error(body, 400, "BadJsonBody", "messages");
    expect_error("{\"messages\":[]}", 400, "BadJsonBody", "tables");
    expect_error("{\"tables\":{}}", 400, "BadJsonBody", "messages");
    expect_error("[]", 400, "BadJsonBody", NULL);
    expect_error("{\"tables\":{\"t\":{\"primaryKey\":null}},\"messages\":[]}", 400, "BadJsonBody",
                 "jsonSchema");
    expect_error("{\"tables\":{\"t\":{\"primaryKey\":[],\"jsonSchema\":null}},\"messages\":[]}",
                 400, "EmptyPrimaryKey", NULL);
    expect_error("{\"tables\":{\"t\":{\"primaryKey\":[[\"a b\"]],\"jsonSchema\":null}},"
                 "\"messages\":[]}", 400, "InvalidPrimaryKey", NULL);
    expect_error("{\"tables\":{\"t\":{\"primaryKey\":[[\"k\"]],\"jsonSchema\":null}},"
                 "\"messages\":[{\"tableName\":\"t\",\"data\":{\"j\":1}}]}",
                 400, "MissingPrimaryKeyValue", "messages[0].data");
    expect_error("{\"tables\":{\"t\":{\"primaryKey\":null,\"jsonSchema\":null}},"
                 "\"messages\":[{\"tableName\":\"t\",\"data\":{\"n\":1e400}}]}",
                 400, "BadJsonBody", NULL);
    expect_error("{\"tables\":{\"t\":{\"primaryKey\":null,\"jsonSchema\":null}},"
                 "\"messages\":[{\"tableName\":\"t\",\"data\":{\"n\":1}}", 400, "BadJsonBody", NULL);
    char longname[200];
    memset(longname, 'x', 80);
    longname[80] = '\0';
    snprintf(body, sizeof body,
             "{\"tables\":{\"%s\":{\"primaryKey\":null,\"jsonSchema\":null}},\"messages\":[]}",
             longname);
    expect_error(body, 400, "InvalidTableName", NULL);
}

/* The shapes the decoder hands the store: per stream, what scanning the stream's stored
 * texts gives (deletions and other streams' records left out); none after messages that
 * came before "tables", and the store then scans the texts. */
static void shape_texts(const shape *s, buf *out) {
    buf_reset(out);
    if (s) shape_write(s, out);
    else buf_puts(out, "none");
}

static void expect_shapes_as_texts(const decoded *r) {
    store_batch texts = r->b;
    texts.shapes = NULL;
    shape **want;
    tr_err e;
    assert_int_equal(batch_shapes(&texts, &want, &e), 0);
    buf x = BUF_INIT, y = BUF_INIT;
    for (size_t i = 0; i < r->b.nstreams; i++) {
        shape_texts(want[i], &x);
        shape_texts(r->b.shapes[i], &y);
        assert_string_equal(y.p, x.p);
    }
    buf_free(&x);
    buf_free(&y);
    batch_shapes_free(&texts, want);
}

static void shapes_from_the_trees(void **state) {
    (void)state;
    const char *messages =
        "\"messages\":["
        "{\"tableName\":\"users\",\"data\":{\"id\":1,\"tags\":[\"a\",2.5],\"q\\\"k\":null}},"
        "{\"tableName\":\"log\",\"data\":{\"n\":{\"$x\":-0.0},\"big\":123456789012345678}},"
        "{\"tableName\":\"users\",\"data\":{\"id\":2,\"_ab_cdc_deleted_at\":\"2024\",\"z\":1}},"
        "{\"tableName\":\"users\",\"data\":{\"id\":3,\"o\":{\"p\":{}}}}]";
    const char *tables = "\"tables\":{\"users\":{\"primaryKey\":[[\"id\"]],\"jsonSchema\":null},"
                         "\"log\":{\"jsonSchema\":null},\"unused\":{\"jsonSchema\":null}}";
    char body[2048];
    snprintf(body, sizeof body, "{%s,%s}", tables, messages);
    for (size_t chunk = 0; chunk < 30; chunk += 11) {
        decoded r = decode(body, chunk);
        assert_int_equal(r.rc, 0);
        assert_non_null(r.b.shapes);
        assert_null(r.b.shapes[2]); /* "unused" writes nothing */
        expect_shapes_as_texts(&r);
        import_decoder_free(r.d);
    }
    snprintf(body, sizeof body, "{%s,%s}", messages, tables);
    decoded r = decode(body, 0);
    assert_int_equal(r.rc, 0);
    assert_null(r.b.shapes);
    import_decoder_free(r.d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(append_and_dedup_records),
        cmocka_unit_test(messages_before_tables),
        cmocka_unit_test(same_key_gives_same_bytes),
        cmocka_unit_test(empty_messages_are_fine),
        cmocka_unit_test(errors_name_the_place),
        cmocka_unit_test(shapes_from_the_trees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

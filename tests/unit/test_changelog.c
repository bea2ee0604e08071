/*
 * test_changelog.c — a job's change-log entries: the last operation on a document wins,
 * a document created and deleted by the job leaves no trace, one row per generation in
 * tablet order with ids in id order.
 */
#include "unit.h"

#include "store/changelog.h"

typedef struct row {
    int64_t tablet;
    size_t n;
    char docs[256];    /* "<id byte><d|w>" per document, e.g. "3w7d" (the first 40) */
    uint8_t del[256];  /* deleted flag by the id's last byte */
} row;

typedef struct rows {
    row r[8];
    int n;
    int fail_at; /* callback number that returns an error (0: none) */
} rows;

static int collect(void *ctx, int64_t tablet, const buf *ids, const buf *deleted, size_t n,
                   tr_err *e) {
    rows *rs = ctx;
    if (++rs->n == rs->fail_at) return err_set(e, 500, "StorageError", "stop");
    row *r = &rs->r[rs->n - 1];
    r->tablet = tablet;
    r->n = n;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char last = (unsigned char)ids->p[i * DOCID_INTERNAL_LEN + 15];
        r->del[last] = (uint8_t)deleted->p[i];
        if (i < 40)
            k += (size_t)snprintf(r->docs + k, sizeof r->docs - k, "%d%c", last,
                                  deleted->p[i] ? 'd' : 'w');
    }
    return 0;
}

/* A document id whose last byte is `n` (ids compare as bytes). */
static const uint8_t *id(int n) {
    static uint8_t b[4][DOCID_INTERNAL_LEN];
    static int next;
    uint8_t *p = b[next++ % 4];
    memset(p, 0, DOCID_INTERNAL_LEN);
    p[15] = (uint8_t)n;
    return p;
}

static int resolve(chg_log *l, rows *rs) {
    buf ids = BUF_INIT, deleted = BUF_INIT;
    tr_err e;
    int rc = chg_rows(l, &ids, &deleted, collect, rs, &e);
    buf_free(&ids);
    buf_free(&deleted);
    return rc;
}

static void test_last_operation_wins(void **state) {
    (void)state;
    chg_log l = CHG_LOG_INIT;
    chg_put(&l, 7, id(5), 0);
    chg_put(&l, 7, id(2), 0);
    chg_put(&l, 7, id(5), 1);  /* written, then deleted */
    chg_put(&l, 7, id(9), 1);
    chg_put(&l, 7, id(9), 0);  /* deleted, then written again */
    chg_put(&l, 7, id(4), 0);
    chg_drop(&l, 7, id(4));    /* born and deleted in the job */
    rows rs = {0};
    assert_int_equal(resolve(&l, &rs), 0);
    assert_int_equal(rs.n, 1);
    assert_int_equal(rs.r[0].tablet, 7);
    assert_string_equal(rs.r[0].docs, "2w5d9w");
    chg_free(&l);
}

static void test_one_row_per_generation_in_order(void **state) {
    (void)state;
    chg_log l = CHG_LOG_INIT;
    chg_put(&l, 12, id(1), 0);
    chg_put(&l, 3, id(8), 1);
    chg_put(&l, 12, id(0), 0);
    chg_put(&l, 3, id(2), 0);
    chg_put(&l, 5, id(1), 0);
    chg_drop(&l, 5, id(1)); /* generation 5 ends up empty: no row */
    rows rs = {0};
    assert_int_equal(resolve(&l, &rs), 0);
    assert_int_equal(rs.n, 2);
    assert_int_equal(rs.r[0].tablet, 3);
    assert_string_equal(rs.r[0].docs, "2w8d");
    assert_int_equal(rs.r[1].tablet, 12);
    assert_string_equal(rs.r[1].docs, "0w1w");
    chg_free(&l);
}

/* An append job's entries arrive in id order (the sort is skipped then); one out of place
 * at the very end still has to be sorted in. */
static void test_in_order_and_nearly_in_order(void **state) {
    (void)state;
    chg_log l = CHG_LOG_INIT;
    for (int i = 1; i <= 5; i++) chg_put(&l, 4, id(i), 0);
    rows rs = {0};
    assert_int_equal(resolve(&l, &rs), 0);
    assert_int_equal(rs.n, 1);
    assert_string_equal(rs.r[0].docs, "1w2w3w4w5w");
    chg_put(&l, 4, id(0), 1);
    rs = (rows){0};
    assert_int_equal(resolve(&l, &rs), 0);
    assert_int_equal(rs.n, 1);
    assert_string_equal(rs.r[0].docs, "0d1w2w3w4w5w");
    chg_free(&l);
}

static void test_reset_and_errors(void **state) {
    (void)state;
    chg_log l = CHG_LOG_INIT;
    rows rs = {0};
    assert_int_equal(resolve(&l, &rs), 0); /* nothing logged: no row */
    assert_int_equal(rs.n, 0);
    chg_put(&l, 1, id(1), 0);
    chg_put(&l, 2, id(1), 0);
    chg_reset(&l);
    chg_put(&l, 4, id(3), 0);
    chg_put(&l, 6, id(3), 0);
    rs = (rows){.fail_at = 1};
    assert_int_not_equal(resolve(&l, &rs), 0); /* the first row's failure stops it */
    assert_int_equal(rs.n, 1);
    chg_reset(&l);
    /* many operations on few documents: each keeps its last */
    for (int i = 0; i < 5000; i++) chg_put(&l, 1, id(i % 200), i % 3 == 0);
    rs = (rows){0};
    assert_int_equal(resolve(&l, &rs), 0);
    assert_int_equal(rs.n, 1);
    assert_int_equal(rs.r[0].n, 200);
    for (int j = 0; j < 200; j++) assert_int_equal(rs.r[0].del[j], (4800 + j) % 3 == 0);
    chg_free(&l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_last_operation_wins),
        cmocka_unit_test(test_one_row_per_generation_in_order),
        cmocka_unit_test(test_in_order_and_nearly_in_order),
        cmocka_unit_test(test_reset_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

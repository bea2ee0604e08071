/*
 * test_export_cursor.c — list_snapshot cursors: round trip and strict decoding.
 */
#include "unit.h"

#include "api/export_cursor.h"

static void round_trip(void **state) {
    (void)state;
    store_snapshot_pos pos = {.snapshot = 1795805727256000123LL, .table_number = 10001};
    for (int i = 0; i < 16; i++) pos.id[i] = (uint8_t)(i * 17);
    buf out = BUF_INIT;
    export_cursor_encode(&pos, &out);
    assert_true(out.len > 2);
    assert_int_equal(out.p[0], '"');
    store_snapshot_pos back;
    tr_err e;
    assert_int_equal(export_cursor_decode(out.p + 1, out.len - 2, &back, &e), 0);
    assert_int_equal(back.snapshot, pos.snapshot);
    assert_int_equal(back.table_number, pos.table_number);
    assert_memory_equal(back.id, pos.id, 16);

    /* every one-character change is refused or decodes to another position */
    for (size_t i = 1; i + 1 < out.len; i++) {
        char saved = out.p[i];
        out.p[i] = saved == 'A' ? 'B' : 'A';
        store_snapshot_pos other;
        if (export_cursor_decode(out.p + 1, out.len - 2, &other, &e) == 0)
            assert_true(memcmp(&other, &pos, sizeof pos) != 0);
        else
            assert_string_equal(e.code, "InvalidListSnapshotCursor");
        out.p[i] = saved;
    }
    buf_free(&out);
}

static void garbage_is_refused(void **state) {
    (void)state;
    const char *bad[] = {"", "null", "abc", "AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "!!!!",
                         "eyJ0YWJsZXQiOjF9"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        store_snapshot_pos pos;
        tr_err e;
        assert_int_equal(export_cursor_decode(bad[i], strlen(bad[i]), &pos, &e), -1);
        assert_int_equal(e.status, 400);
        assert_string_equal(e.code, "InvalidListSnapshotCursor");
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(garbage_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

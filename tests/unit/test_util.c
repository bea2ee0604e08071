/*
 * test_util.c — buf, arena and err: the small pieces every other module builds on.
 */
#include "unit.h"

#include "util/arena.h"
#include "util/buf.h"
#include "util/err.h"

#include <stdlib.h>

static void buf_grows_and_stays_terminated(void **state) {
    (void)state;
    buf b = BUF_INIT;
    for (int i = 0; i < 10000; i++) buf_putc(&b, (char)('a' + i % 26));
    assert_int_equal(b.len, 10000);
    assert_int_equal(b.p[10000], '\0');
    assert_int_equal(b.p[9999], 'a' + 9999 % 26);
    buf_printf(&b, "%d-%s", 42, "x");
    assert_string_equal(b.p + 10000, "42-x");
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.p, "");
    buf_append(&b, "a\0b", 3);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.p, "a\0b", 3);
    char *s = buf_steal(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    free(s);
    buf_free(&b);
}

static void arena_aligns_and_resets(void **state) {
    (void)state;
    arena *a = arena_new();
    char *first = arena_alloc(a, 3);
    double *d = arena_alloc(a, sizeof(double));
    assert_int_equal((uintptr_t)d % 16, 0);
    *d = 1.5;
    memset(first, 'x', 3);
    char *big = arena_alloc(a, 1 << 20); /* larger than a chunk */
    memset(big, 1, 1 << 20);
    for (int i = 0; i < 10000; i++) memset(arena_alloc(a, 100), 2, 100);
    assert_true(arena_used(a) >= (1u << 20) + 10000 * 100);
    char *s = arena_strndup(a, "hello", 5);
    assert_string_equal(s, "hello");
    arena_reset(a);
    assert_int_equal(arena_used(a), 0);
    char *again = arena_alloc(a, 8);
    assert_non_null(again);
    arena_free(a);
}

static void err_prefix_names_the_place(void **state) {
    (void)state;
    tr_err e;
    err_clear(&e);
    assert_int_equal(e.status, 0);
    assert_int_equal(err_set(&e, 400, "BadJsonBody", "expected %s", "an object"), -1);
    assert_int_equal(err_prefix(&e, "messages[%d].data: ", 17), -1);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.code, "BadJsonBody");
    assert_string_equal(e.message, "messages[17].data: expected an object");
    assert_int_equal(err_set(NULL, 500, "X", "y"), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buf_grows_and_stays_terminated),
        cmocka_unit_test(arena_aligns_and_resets),
        cmocka_unit_test(err_prefix_names_the_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

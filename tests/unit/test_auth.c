/*
 * test_auth.c — admin key generation, storage as a hash, checking and rotation.
 */
#include "unit.h"

#include "http/auth.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>


static char *read_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    static char line[256];
    char *r = fgets(line, sizeof line, f);
    fclose(f);
    return r;
}

static void generated_key_is_printed_once_and_only_hash_is_kept(void **state) {
    (void)state;
    tr_err e;
    auth *a;
    char *key;
    assert_int_equal(auth_open(unit_dir, NULL, &key, &a, &e), 0);
    assert_non_null(key);
    assert_true(strlen(key) > 40);
    assert_true(auth_check(a, key, strlen(key)));
    assert_false(auth_check(a, "wrong", 5));
    assert_false(auth_check(a, key, strlen(key) - 1));

    char path[128];
    snprintf(path, sizeof path, "%s/admin_key", unit_dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    const char *content = read_file(path);
    assert_non_null(content);
    assert_null(strstr(content, key + 3)); /* the key itself is not on disk */

    /* a second start generates nothing and accepts the same key */
    auth *b;
    char *again;
    assert_int_equal(auth_open(unit_dir, NULL, &again, &b, &e), 0);
    assert_null(again);
    assert_true(auth_check(b, key, strlen(key)));
    auth_close(b);

    /* rotation: the running checker notices the new file at once */
    char *fresh = auth_rotate(unit_dir, &e);
    assert_non_null(fresh);
    assert_string_not_equal(fresh, key);
    assert_true(auth_check(a, fresh, strlen(fresh)));
    assert_false(auth_check(a, key, strlen(key)));
    free(fresh);
    free(key);
    auth_close(a);
}

static void given_key_wins_and_writes_nothing(void **state) {
    (void)state;
    char sub[128];
    snprintf(sub, sizeof sub, "%s/given", unit_dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    tr_err e;
    auth *a;
    char *key;
    assert_int_equal(auth_open(sub, "s3cret", &key, &a, &e), 0);
    assert_null(key);
    assert_true(auth_check(a, "s3cret", 6));
    assert_false(auth_check(a, "s3cre", 5));
    char path[160];
    snprintf(path, sizeof path, "%s/admin_key", sub);
    assert_int_not_equal(access(path, F_OK), 0);
    auth_close(a);
}

static void corrupt_key_file_is_an_error(void **state) {
    (void)state;
    char sub[128], path[160];
    snprintf(sub, sizeof sub, "%s/corrupt", unit_dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(path, sizeof path, "%s/admin_key", sub);
    FILE *f = fopen(path, "w");
    fputs("not a hash\n", f);
    fclose(f);
    tr_err e;
    auth *a = NULL;
    char *key;
    assert_int_equal(auth_open(sub, NULL, &key, &a, &e), -1);
    assert_int_equal(e.status, 500);
    assert_non_null(strstr(e.message, "admin key file"));
}

int main(void) {
    if (sodium_init() < 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(generated_key_is_printed_once_and_only_hash_is_kept),
        cmocka_unit_test(given_key_wins_and_writes_nothing),
        cmocka_unit_test(corrupt_key_file_is_an_error),
    };
    return cmocka_run_group_tests(tests, unit_make_dir, unit_remove_dir);
}

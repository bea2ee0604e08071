/*
 * test_snapcache.c — the snapshot walks' cache of old versions: rows come back in id
 * order after any cursor whatever order they were added in, later additions merge in
 * (a row seen twice is kept once, at the address the later update gave), a failed
 * update is forgotten, a walk whose rows do not fit gives up for good while the cache
 * goes on serving others, and entries are dropped least recently used first; a page's
 * take updates only when the entry is behind and keeps nothing of a failed update, and
 * the scan of current versions ends at the last cached row only when the page got all
 * the rows it asked for.
 */
#include "unit.h"

#include "store/snapcache.h"

#include <pthread.h>

static void id_of(uint32_t k, uint8_t id[SNAPCACHE_ID_LEN]) {
    memset(id, 0, SNAPCACHE_ID_LEN);
    id[0] = (uint8_t)(k >> 24); /* big-endian in front: ids sort as the numbers do */
    id[1] = (uint8_t)(k >> 16);
    id[2] = (uint8_t)(k >> 8);
    id[3] = (uint8_t)k;
}

static uint32_t num_of(const uint8_t id[SNAPCACHE_ID_LEN]) {
    return (uint32_t)id[0] << 24 | (uint32_t)id[1] << 16 | (uint32_t)id[2] << 8 | id[3];
}

/* Adds ids k = first, first + step, ... (count of them, in a scrambled order), each at
 * address 1000 + k + bias. */
static void add_range(snapcache *c, snapcache_entry *en, uint32_t first, uint32_t step,
                      uint32_t count, int64_t bias) {
    for (uint32_t i = 0; i < count; i++) {
        uint32_t k = first + step * ((i * 7919u) % count); /* 7919: prime, count not */
        uint8_t id[SNAPCACHE_ID_LEN];
        id_of(k, id);
        assert_int_equal(snapcache_add(c, en, id, 1000 + (int64_t)k + bias), 0);
    }
}

/* One finished update of the entry (tablet, snapshot): add_range's rows, then done up
 * to `seen`. */
static void update(snapcache *c, int64_t tablet, int64_t snapshot, uint32_t first, uint32_t step,
                   uint32_t count, int64_t bias, int64_t seen) {
    snapcache_entry *en = snapcache_open(c, tablet, snapshot);
    assert_non_null(en);
    add_range(c, en, first, step, count, bias);
    snapcache_done(c, en, seen);
    snapcache_close(c, en);
}

static void rows_after_a_cursor_come_in_id_order(void **state) {
    (void)state;
    snapcache *c = snapcache_new(100000);
    snapcache_entry *en = snapcache_open(c, 7, 500);
    assert_non_null(en);
    assert_int_equal(snapcache_seen(en), 500);
    add_range(c, en, 10, 10, 1000, 0); /* 10, 20, ..., 10000 */
    snapcache_done(c, en, 900);
    assert_int_equal(snapcache_seen(en), 900);

    snapcache_row out[64];
    assert_int_equal(snapcache_after(en, NULL, out, 3), 3);
    assert_int_equal(num_of(out[0].id), 10);
    assert_int_equal(num_of(out[2].id), 30);
    assert_int_equal(out[2].addr, 1030);
    uint8_t after[SNAPCACHE_ID_LEN];
    id_of(55, after); /* between two ids */
    assert_int_equal(snapcache_after(en, after, out, 64), 64);
    assert_int_equal(num_of(out[0].id), 60);
    for (int i = 1; i < 64; i++) assert_int_equal(num_of(out[i].id), 60 + 10 * i);
    id_of(60, after); /* on an id: the next one */
    assert_int_equal(snapcache_after(en, after, out, 1), 1);
    assert_int_equal(num_of(out[0].id), 70);
    id_of(9995, after);
    assert_int_equal(snapcache_after(en, after, out, 64), 1);
    id_of(10000, after);
    assert_int_equal(snapcache_after(en, after, out, 64), 0);
    snapcache_close(c, en);
    snapcache_free(c);
}

static void later_rows_merge_in_and_a_row_seen_twice_is_kept_once(void **state) {
    (void)state;
    snapcache *c = snapcache_new(100000);
    update(c, 7, 500, 2, 2, 100, 0, 600); /* even ids 2..200 */

    snapcache_entry *en = snapcache_open(c, 7, 500);
    assert_int_equal(snapcache_seen(en), 600);
    add_range(c, en, 1, 2, 100, 0);  /* odd ids 1..199 */
    add_range(c, en, 100, 2, 3, 77); /* 100, 102, 104 again, at new addresses */
    add_range(c, en, 105, 1, 1, 5);  /* 105 twice in one update */
    snapcache_done(c, en, 700);
    snapcache_close(c, en);
    en = snapcache_open(c, 7, 500);
    add_range(c, en, 103, 1, 1, 99); /* 103 again in a later update */
    snapcache_done(c, en, 800);
    snapcache_row out[300];
    size_t n = snapcache_after(en, NULL, out, 300);
    assert_int_equal(n, 200);
    for (size_t i = 0; i < n; i++) assert_int_equal(num_of(out[i].id), i + 1);
    assert_int_equal(out[98].addr, 1000 + 99);
    assert_int_equal(out[99].addr, 1000 + 100 + 77);
    assert_int_equal(out[101].addr, 1000 + 102 + 77);
    assert_int_equal(out[102].addr, 1000 + 103 + 99);
    assert_int_equal(out[103].addr, 1000 + 104 + 77);
    assert_int_equal(out[105].addr, 1000 + 106);
    snapcache_close(c, en);
    snapcache_free(c);
}

static void a_row_seen_twice_takes_room_once(void **state) {
    (void)state;
    snapcache *c = snapcache_new(100);
    update(c, 1, 10, 1, 1, 60, 0, 20);
    update(c, 1, 10, 1, 1, 30, 5, 30); /* the same 30 versions again, at new addresses */
    update(c, 2, 10, 1, 1, 40, 0, 20); /* fits next to a's 60 */
    snapcache_entry *a = snapcache_open(c, 1, 10);
    assert_int_equal(snapcache_seen(a), 30);
    snapcache_row out[100];
    assert_int_equal(snapcache_after(a, NULL, out, 100), 60);
    assert_int_equal(out[29].addr, 1000 + 30 + 5);
    assert_int_equal(out[30].addr, 1000 + 31);
    snapcache_close(c, a);
    snapcache_free(c);
}

static void an_update_not_done_is_forgotten(void **state) {
    (void)state;
    snapcache *c = snapcache_new(100000);
    update(c, 7, 500, 1, 1, 10, 0, 600);
    snapcache_entry *en = snapcache_open(c, 7, 500);
    add_range(c, en, 11, 1, 10, 0); /* the query failed half way: no snapcache_done */
    snapcache_close(c, en);
    en = snapcache_open(c, 7, 500);
    assert_int_equal(snapcache_seen(en), 600);
    snapcache_done(c, en, 650); /* the next update found nothing new */
    snapcache_row out[64];
    assert_int_equal(snapcache_after(en, NULL, out, 64), 10);
    snapcache_close(c, en);
    snapcache_free(c);
}

static void a_walk_that_does_not_fit_is_marked_and_others_make_room(void **state) {
    (void)state;
    snapcache *c = snapcache_new(100);
    update(c, 1, 10, 1, 1, 60, 0, 20);

    /* b needs 70: a, least recently used, is dropped to make room */
    update(c, 2, 10, 1, 1, 70, 0, 20);
    snapcache_entry *a = snapcache_open(c, 1, 10);
    assert_non_null(a);
    assert_int_equal(snapcache_seen(a), 10); /* empty again: starts over */
    snapcache_close(c, a);

    /* x alone needs more than the whole cache: it pushes b out as it grows, then gives
     * up, and stays given up */
    snapcache_entry *x = snapcache_open(c, 3, 10);
    int failed = 0;
    for (uint32_t k = 0; k < 200 && !failed; k++) {
        uint8_t id[SNAPCACHE_ID_LEN];
        id_of(k, id);
        failed = snapcache_add(c, x, id, k) != 0;
    }
    assert_true(failed);
    snapcache_close(c, x);
    assert_null(snapcache_open(c, 3, 10));
    snapcache_entry *b = snapcache_open(c, 2, 10);
    assert_non_null(b);
    assert_int_equal(snapcache_seen(b), 10); /* starts over */
    add_range(c, b, 1, 1, 99, 0);              /* in all the room x gave back */
    snapcache_done(c, b, 30);
    snapcache_row out[100];
    assert_int_equal(snapcache_after(b, NULL, out, 100), 99);
    snapcache_close(c, b);
    snapcache_free(c);
}

static void entries_are_dropped_least_recently_used_first(void **state) {
    (void)state;
    snapcache *c = snapcache_new(100000);
    for (int64_t t = 1; t <= 16; t++) { /* the table holds 16 */
        snapcache_entry *en = snapcache_open(c, t, 100);
        add_range(c, en, 1, 1, 5, 0);
        snapcache_done(c, en, 200);
        snapcache_close(c, en);
    }
    snapcache_entry *en = snapcache_open(c, 1, 100); /* 1 used again: 2 is the oldest */
    snapcache_close(c, en);
    en = snapcache_open(c, 17, 100);
    snapcache_close(c, en);
    en = snapcache_open(c, 1, 100);
    assert_int_equal(snapcache_seen(en), 200);
    snapcache_close(c, en);
    en = snapcache_open(c, 2, 100);
    assert_int_equal(snapcache_seen(en), 100); /* dropped */
    snapcache_close(c, en);
    en = snapcache_open(c, 1, 101); /* another snapshot of the same generation */
    assert_int_equal(snapcache_seen(en), 101);
    snapcache_close(c, en);
    snapcache_free(c);
}

/* Walkers on threads, each bringing its own entry up to date page after page while the
 * others do the same and push it out: what a walker reads back is always exactly what
 * it added since its entry was last made anew, in order, never an update it left
 * unfinished, never another walker's rows. */
#define WALKERS 8
#define WALKER_ROUNDS 300

typedef struct walker {
    snapcache *c;
    int64_t tablet;
    int ok;
} walker;

/* Adds ids first+1 .. first+7 (last first), at addresses tagged with the walker. */
static int add_seven(walker *w, snapcache_entry *en, uint32_t first) {
    for (uint32_t k = first + 7; k > first; k--) {
        uint8_t id[SNAPCACHE_ID_LEN];
        id_of(k, id);
        if (snapcache_add(w->c, en, id, w->tablet << 32 | k) != 0) return -1;
    }
    return 0;
}

static void *walk(void *arg) {
    walker *w = arg;
    w->ok = 1;
    uint32_t added = 0;
    snapcache_row *out = malloc(WALKER_ROUNDS * 7 * sizeof *out);
    for (int r = 0; r < WALKER_ROUNDS && w->ok; r++) {
        snapcache_entry *en = snapcache_open(w->c, w->tablet, 1);
        w->ok = en != NULL; /* a walk smaller than the cache never gives up */
        if (!en) break;
        if (snapcache_seen(en) == 1) added = 0; /* dropped meanwhile: made anew */
        if (r % 3 == 0) { /* an update that fails half way: forgotten at the close */
            w->ok = add_seven(w, en, added) == 0;
            snapcache_close(w->c, en);
            continue;
        }
        w->ok = add_seven(w, en, added) == 0;
        snapcache_done(w->c, en, 2 + r);
        added += 7;
        size_t n = snapcache_after(en, NULL, out, WALKER_ROUNDS * 7);
        w->ok = w->ok && n == added;
        for (size_t i = 0; w->ok && i < n; i++)
            w->ok = num_of(out[i].id) == i + 1 && out[i].addr == (w->tablet << 32 | (int64_t)(i + 1));
        snapcache_close(w->c, en);
    }
    free(out);
    return NULL;
}

static void walkers_on_threads_keep_their_own_rows(void **state) {
    (void)state;
    snapcache *c = snapcache_new(WALKERS * WALKER_ROUNDS * 7 / 3); /* they push each other out */
    pthread_t t[WALKERS];
    walker w[WALKERS];
    for (int i = 0; i < WALKERS; i++) {
        w[i] = (walker){.c = c, .tablet = i + 1};
        assert_int_equal(pthread_create(&t[i], NULL, walk, &w[i]), 0);
    }
    for (int i = 0; i < WALKERS; i++) {
        pthread_join(t[i], NULL);
        assert_true(w[i].ok);
    }
    snapcache_free(c);
}

/* An update for snapcache_take that adds ids from `next` on, `step` of them per call,
 * and records the `seen` it was called with; it fails on demand. */
typedef struct fake_update {
    uint32_t next, step;
    int calls, fail;
    int64_t seen;
} fake_update;

static int fake_ended(void *ctx, snapcache *c, snapcache_entry *en, int64_t seen, int *fits) {
    fake_update *f = ctx;
    f->calls++;
    f->seen = seen;
    for (uint32_t i = 0; i < f->step && *fits; i++) {
        uint8_t id[SNAPCACHE_ID_LEN];
        id_of(f->next + i, id);
        *fits = snapcache_add(c, en, id, f->next + i) == 0;
    }
    if (f->fail) return -1;
    f->next += f->step;
    return 0;
}

static void take_updates_only_when_behind_and_keeps_nothing_of_a_failed_update(void **state) {
    (void)state;
    snapcache *c = snapcache_new(100);
    fake_update f = {.next = 1, .step = 5};
    snapcache_row out[100];
    size_t n;
    assert_int_equal(snapcache_take(c, 7, 10, 20, fake_ended, &f, NULL, out, 100, &n), 0);
    assert_int_equal(n, 5);
    assert_int_equal(f.seen, 10); /* a new entry: from the snapshot on */
    assert_int_equal(snapcache_take(c, 7, 10, 20, fake_ended, &f, NULL, out, 100, &n), 0);
    assert_int_equal(f.calls, 1); /* not behind: no update */
    assert_int_equal(n, 5);
    uint8_t after[SNAPCACHE_ID_LEN];
    id_of(3, after);
    assert_int_equal(snapcache_take(c, 7, 10, 30, fake_ended, &f, after, out, 4, &n), 0);
    assert_int_equal(f.seen, 20);
    assert_int_equal(n, 4);
    assert_int_equal(num_of(out[0].id), 4);
    assert_int_equal(num_of(out[3].id), 7);

    f.fail = 1;
    assert_int_equal(snapcache_take(c, 7, 10, 40, fake_ended, &f, NULL, out, 100, &n), -1);
    f.fail = 0;
    assert_int_equal(snapcache_take(c, 7, 10, 40, fake_ended, &f, NULL, out, 100, &n), 0);
    assert_int_equal(f.seen, 30); /* the failed update did not count */
    assert_int_equal(n, 15);
    for (size_t i = 0; i < n; i++) assert_int_equal(num_of(out[i].id), i + 1);

    f.step = 200; /* more than the whole cache: the walk gives up for good */
    assert_int_equal(snapcache_take(c, 7, 10, 50, fake_ended, &f, NULL, out, 100, &n), 0);
    assert_int_equal(n, SIZE_MAX);
    int calls = f.calls;
    assert_int_equal(snapcache_take(c, 7, 10, 60, fake_ended, &f, NULL, out, 100, &n), 0);
    assert_int_equal(n, SIZE_MAX);
    assert_int_equal(f.calls, calls);
    snapcache_free(c);
}

static void the_scan_ends_at_the_last_row_only_when_the_page_got_all_it_asked(void **state) {
    (void)state;
    snapcache_row rows[3];
    for (uint32_t i = 0; i < 3; i++) id_of(10 * (i + 1), rows[i].id);
    size_t len;
    const uint8_t *end = snapcache_scan_end(rows, 3, 3, &len);
    assert_ptr_equal(end, rows[2].id);
    assert_int_equal(len, SNAPCACHE_ID_LEN);
    for (size_t n = 0; n < 3; n++) {
        end = snapcache_scan_end(rows, n, 3, &len);
        assert_int_equal(len, SNAPCACHE_ID_LEN + 1);
        for (size_t i = 0; i < len; i++) assert_int_equal(end[i], 0xff);
    }
    end = snapcache_scan_end(NULL, SIZE_MAX, 3, &len);
    assert_int_equal(len, SNAPCACHE_ID_LEN + 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rows_after_a_cursor_come_in_id_order),
        cmocka_unit_test(later_rows_merge_in_and_a_row_seen_twice_is_kept_once),
        cmocka_unit_test(a_row_seen_twice_takes_room_once),
        cmocka_unit_test(an_update_not_done_is_forgotten),
        cmocka_unit_test(a_walk_that_does_not_fit_is_marked_and_others_make_room),
        cmocka_unit_test(entries_are_dropped_least_recently_used_first),
        cmocka_unit_test(walkers_on_threads_keep_their_own_rows),
        cmocka_unit_test(take_updates_only_when_behind_and_keeps_nothing_of_a_failed_update),
        cmocka_unit_test(the_scan_ends_at_the_last_row_only_when_the_page_got_all_it_asked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

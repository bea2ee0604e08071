/*
 * test_stats.c — the server's own counters behind /metrics and the status page: requests
 * land in their endpoint's status class and latency bucket, the histogram reads
 * cumulative, unmatched requests have their own row, imports add up, and concurrent
 * threads lose no count.
 */
#include "unit.h"

#include "api/stats.h"

#include <pthread.h>

#define THREADS 8
#define PER_THREAD 1000

static void requests_land_in_class_and_bucket(void **state) {
    (void)state;
    api_stats *s = api_stats_new(2);
    api_stats_request(s, 0, 200, 0.003);  /* bucket le=0.005 */
    api_stats_request(s, 0, 400, 0.0005); /* le=0.001 */
    api_stats_request(s, 0, 503, 30);     /* past the last bound: +Inf only */
    api_stats_request(s, 1, 204, 0.001);  /* on a bound: that bucket */
    api_stats_request(s, 7, 404, 0.0001); /* no such endpoint: the last row */
    stats_view v;
    api_stats_read(s, &v);
    assert_int_equal(v.nendpoints, 2);
    const stats_endpoint *e0 = &v.endpoints[0];
    assert_int_equal(e0->requests[STATS_2XX], 1);
    assert_int_equal(e0->requests[STATS_4XX], 1);
    assert_int_equal(e0->requests[STATS_5XX], 1);
    assert_int_equal(e0->le[0], 1);              /* le=0.001 */
    assert_int_equal(e0->le[1], 1);              /* le=0.0025 */
    assert_int_equal(e0->le[2], 2);              /* le=0.005 */
    assert_int_equal(e0->le[STATS_NBUCKETS - 1], 2); /* le=10 */
    assert_int_equal(e0->le[STATS_NBUCKETS], 3);     /* +Inf */
    assert_true(e0->seconds > 30 && e0->seconds < 30.01);
    assert_int_equal(v.endpoints[1].requests[STATS_2XX], 1);
    assert_int_equal(v.endpoints[1].le[0], 1);
    assert_int_equal(v.endpoints[2].requests[STATS_4XX], 1);
    api_stats_view_free(&v);
    api_stats_free(s);
}

static void imports_add_up_with_a_rate(void **state) {
    (void)state;
    api_stats *s = api_stats_new(1);
    store_import_result a = {.inserted = 300, .replaced = 0, .deleted = 0};
    store_import_result b = {.inserted = 100, .replaced = 90, .deleted = 10};
    api_stats_import(s, 300, &a);
    api_stats_import(s, 200, &b);
    stats_view v;
    api_stats_read(s, &v);
    assert_int_equal(v.records, 500);
    assert_int_equal(v.inserted, 400);
    assert_int_equal(v.replaced, 90);
    assert_int_equal(v.deleted, 10);
    /* within the first second every window holds all 500 records, over one second */
    if (v.uptime_s < 1) {
        assert_true(v.rate_10s == 500 && v.rate_1m == 500 && v.rate_5m == 500);
    } else {
        assert_true(v.rate_10s > 0 && v.rate_10s <= 500);
        assert_true(v.rate_5m > 0 && v.rate_5m <= v.rate_10s);
    }
    api_stats_view_free(&v);
    api_stats_free(s);
}

static void *hammer(void *arg) {
    api_stats *s = arg;
    store_import_result r = {.inserted = 1, .replaced = 0, .deleted = 0};
    for (int i = 0; i < PER_THREAD; i++) {
        api_stats_request(s, (size_t)(i % 3), i % 2 ? 200 : 500, 0.002);
        api_stats_import(s, 2, &r);
    }
    return NULL;
}

static void concurrent_threads_lose_nothing(void **state) {
    (void)state;
    api_stats *s = api_stats_new(3);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) assert_int_equal(pthread_create(&t[i], NULL, hammer, s), 0);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    stats_view v;
    api_stats_read(s, &v);
    uint64_t total = 0;
    for (size_t i = 0; i <= v.nendpoints; i++)
        total += v.endpoints[i].requests[STATS_2XX] + v.endpoints[i].requests[STATS_5XX];
    assert_int_equal(total, THREADS * PER_THREAD);
    assert_int_equal(v.endpoints[0].le[STATS_NBUCKETS],
                     v.endpoints[0].requests[STATS_2XX] + v.endpoints[0].requests[STATS_5XX]);
    assert_int_equal(v.records, 2 * THREADS * PER_THREAD);
    assert_int_equal(v.inserted, THREADS * PER_THREAD);
    api_stats_view_free(&v);
    api_stats_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(requests_land_in_class_and_bucket),
        cmocka_unit_test(imports_add_up_with_a_rate),
        cmocka_unit_test(concurrent_threads_lose_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

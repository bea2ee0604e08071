/*
 * test_wqueue.c — the group-commit write queue: every job runs exactly once, gets its own
 * result, groups never overlap, jobs that wait together share a group, each attempt at a
 * group counts the jobs still to run, and a leader can tell whether jobs wait for the
 * next group.
 */
#include "unit.h"

#include "store/wqueue.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#define THREADS 8
#define JOBS_PER_THREAD 200

typedef struct fake_store {
    store base;
    wqueue q;
    pthread_mutex_t mu;
    int leading;     /* a group is running (must never be two at once) */
    int overlapped;  /* set if two groups ever ran at the same time */
    int groups;
    int largest;     /* most jobs in one group */
    int runs[THREADS * JOBS_PER_THREAD];
} fake_store;

typedef struct test_job {
    wq_job base;
    int id;
} test_job;

/* Even ids succeed, odd ids fail with their id in the message. */
static int run_job(store *st, wq_job *j, int64_t ts, tr_err *e) {
    (void)ts;
    fake_store *s = (fake_store *)st;
    int id = ((test_job *)j)->id;
    s->runs[id]++;
    if (id % 2) return err_set(e, 400, "Odd", "job %d", id);
    return 0;
}

static void group(store *st, wq_job *head) {
    fake_store *s = (fake_store *)st;
    pthread_mutex_lock(&s->mu);
    s->overlapped |= s->leading;
    s->leading = 1;
    pthread_mutex_unlock(&s->mu);
    int n = 0;
    for (wq_job *j = head; j; j = j->next, n++) j->rc = j->run(st, j, 0, &j->err);
    usleep(200); /* a commit: lets other jobs queue up meanwhile */
    pthread_mutex_lock(&s->mu);
    s->leading = 0;
    s->groups++;
    if (n > s->largest) s->largest = n;
    pthread_mutex_unlock(&s->mu);
}

typedef struct worker {
    fake_store *s;
    int first;
    int wrong; /* results that were not this job's own */
} worker;

static void *client(void *arg) {
    worker *w = arg;
    for (int i = 0; i < JOBS_PER_THREAD; i++) {
        test_job j = {.base = {.run = run_job}, .id = w->first + i};
        tr_err e;
        err_clear(&e);
        int rc = wq_run(&w->s->q, &w->s->base, group, &j.base, &e);
        char want[32];
        snprintf(want, sizeof want, "job %d", j.id);
        if (j.id % 2 ? rc != -1 || strcmp(e.message, want) != 0 : rc != 0) w->wrong++;
    }
    return NULL;
}

static void every_job_runs_once_with_its_own_result(void **state) {
    (void)state;
    fake_store *s = calloc(1, sizeof *s);
    wq_init(&s->q);
    pthread_mutex_init(&s->mu, NULL);
    pthread_t t[THREADS];
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){s, i * JOBS_PER_THREAD, 0};
        assert_int_equal(pthread_create(&t[i], NULL, client, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].wrong, 0);
    }
    for (int i = 0; i < THREADS * JOBS_PER_THREAD; i++) assert_int_equal(s->runs[i], 1);
    assert_false(s->overlapped);
    /* with 8 clients and a slow commit, waiting jobs must have shared groups */
    assert_true(s->groups < THREADS * JOBS_PER_THREAD);
    assert_true(s->largest > 1);
    pthread_mutex_destroy(&s->mu);
    wq_destroy(&s->q);
    free(s);
}

static void wq_fail_all_spares_jobs_already_failed(void **state) {
    (void)state;
    wq_job a = {.rc = 0}, b = {.rc = -1}, c = {.rc = 1};
    err_set(&b.err, 400, "Own", "its own error");
    a.next = &b;
    b.next = &c;
    tr_err commit;
    err_set(&commit, 503, "DatabaseUnavailable", "commit failed");
    wq_fail_all(&a, &commit);
    assert_int_equal(a.rc, -1);
    assert_string_equal(a.err.code, "DatabaseUnavailable");
    assert_string_equal(b.err.code, "Own");
    assert_int_equal(c.rc, -1);
    assert_string_equal(c.err.code, "DatabaseUnavailable");
}

static void wq_arm_counts_the_jobs_still_to_run(void **state) {
    (void)state;
    wq_job a = {.rc = 0}, b = {.rc = -1}, c = {.rc = 1};
    a.next = &b;
    b.next = &c;
    assert_int_equal(wq_arm(&a), 2);
    assert_int_equal(a.rc, 1);
    assert_int_equal(b.rc, -1);
    assert_int_equal(c.rc, 1);
}

/* wq_waiting, as a leader sees it: true while a job waits for the next group, false
 * when its group is the last. */
typedef struct waiting_store {
    store base;
    wqueue q;
    atomic_int leading_first; /* job 0's group has started */
    int saw_waiting;          /* job 0's group saw job 1 waiting */
    int saw_alone;            /* job 1's group saw nobody waiting */
} waiting_store;

static int succeed(store *st, wq_job *j, int64_t ts, tr_err *e) {
    (void)st, (void)j, (void)ts, (void)e;
    return 0;
}

static void waiting_group(store *st, wq_job *head) {
    waiting_store *s = (waiting_store *)st;
    for (wq_job *j = head; j; j = j->next) j->rc = j->run(st, j, 0, &j->err);
    if (((test_job *)head)->id == 0) {
        atomic_store(&s->leading_first, 1);
        for (int i = 0; i < 5000 && !wq_waiting(&s->q); i++) usleep(1000);
        s->saw_waiting = wq_waiting(&s->q);
    } else {
        s->saw_alone = !wq_waiting(&s->q);
    }
}

static void *run_first(void *arg) {
    waiting_store *s = arg;
    test_job j = {.base = {.run = succeed}, .id = 0};
    tr_err e;
    wq_run(&s->q, &s->base, waiting_group, &j.base, &e);
    return NULL;
}

static void wq_waiting_sees_the_next_group(void **state) {
    (void)state;
    waiting_store s = {0};
    wq_init(&s.q);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run_first, &s), 0);
    while (!atomic_load(&s.leading_first)) usleep(100);
    test_job j = {.base = {.run = succeed}, .id = 1};
    tr_err e;
    assert_int_equal(wq_run(&s.q, &s.base, waiting_group, &j.base, &e), 0);
    pthread_join(t, NULL);
    assert_true(s.saw_waiting);
    assert_true(s.saw_alone);
    wq_destroy(&s.q);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_job_runs_once_with_its_own_result),
        cmocka_unit_test(wq_fail_all_spares_jobs_already_failed),
        cmocka_unit_test(wq_arm_counts_the_jobs_still_to_run),
        cmocka_unit_test(wq_waiting_sees_the_next_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

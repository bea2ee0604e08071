/*
 * wqueue.h — the group-commit write queue both engines put their writes through.
 *
 * Every write (an import, a clear, an index change, a background step) is a job. A caller
 * enqueues its job and, if nobody leads, becomes the leader: it takes every job waiting
 * and hands the whole group to the engine's group function, which runs them in one
 * transaction and commits once, then wakes every caller with its own result. Jobs that
 * arrive meanwhile wait for the next leader. So one commit (one fsync) serves as many
 * requests as were waiting, and the engine's writer connection is only ever used by the
 * current leader. What a group does inside its transaction is the engine's business.
 * Internal to src/store.
 */
#ifndef TR_STORE_WQUEUE_H
#define TR_STORE_WQUEUE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store_impl.h"
#include "util/err.h"

typedef struct wq_job wq_job;

/* Runs inside the group's transaction; ts: the job's commit timestamp (0 when not
 * stamped). A job checks everything that can fail for a client reason before its first
 * write, so such a failure leaves nothing to undo. */
typedef int (*wq_job_fn)(store *s, wq_job *j, int64_t ts, tr_err *e);

struct wq_job {
    wq_job_fn run;
    int stamped; /* changes what readers see: gets a commit timestamp */
    int kick;    /* set by run: wake the background thread once this commits */
    int rc;      /* 0 ok, -1 failed, 1 not run yet in this transaction */
    tr_err err;
    int done;
    wq_job *next;
};

/* Runs a whole group (head, linked by next) and sets every job's rc and err. */
typedef void (*wq_group_fn)(store *s, wq_job *head);

typedef struct wqueue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    wq_job *head, *tail;
    int leading;
} wqueue;

void wq_init(wqueue *q);
void wq_destroy(wqueue *q);

/* Enqueues j and returns its rc once it has committed or failed (*e = its error); may
 * lead groups through `group` meanwhile. */
int wq_run(wqueue *q, store *s, wq_group_fn group, wq_job *j, tr_err *e);

/* Whether jobs are waiting for the next group (for the leader: its group will not be the
 * last one for a while). */
int wq_waiting(wqueue *q);

/* Marks every job of the group not already failed as still to run (rc = 1), at the start
 * of each attempt at the group's transaction, and returns how many there are. */
size_t wq_arm(wq_job *head);

/* Gives every job of the group not already failed the error *e (a failed commit). */
void wq_fail_all(wq_job *head, const tr_err *e);

#endif

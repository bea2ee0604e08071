/*
 * wqueue.c — the group-commit write queue (wqueue.h): leader election only; the engine's
 * group function does the transaction.
 */
#include "store/wqueue.h"

#include <stddef.h>

void wq_init(wqueue *q) {
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->head = q->tail = NULL;
    q->leading = 0;
}

void wq_destroy(wqueue *q) {
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
}

int wq_waiting(wqueue *q) {
    pthread_mutex_lock(&q->mu);
    int waiting = q->head != NULL;
    pthread_mutex_unlock(&q->mu);
    return waiting;
}

size_t wq_arm(wq_job *head) {
    size_t n = 0;
    for (wq_job *j = head; j; j = j->next) {
        if (j->rc == -1) continue;
        j->rc = 1;
        n++;
    }
    return n;
}

void wq_fail_all(wq_job *head, const tr_err *e) {
    for (wq_job *j = head; j; j = j->next) {
        if (j->rc == -1) continue;
        j->rc = -1;
        j->err = *e;
    }
}

int wq_run(wqueue *q, store *s, wq_group_fn group, wq_job *j, tr_err *e) {
    j->done = 0;
    j->next = NULL;
    pthread_mutex_lock(&q->mu);
    if (q->tail) q->tail->next = j;
    else q->head = j;
    q->tail = j;
    while (!j->done) {
        if (q->leading) {
            pthread_cond_wait(&q->cv, &q->mu);
            continue;
        }
        wq_job *head = q->head;
        q->head = q->tail = NULL;
        q->leading = 1;
        pthread_mutex_unlock(&q->mu);
        for (wq_job *g = head; g; g = g->next) g->rc = 1;
        group(s, head);
        pthread_mutex_lock(&q->mu);
        /* read next before done: a finished caller may free its job at once */
        for (wq_job *g = head, *next; g; g = next) {
            next = g->next;
            g->done = 1;
        }
        q->leading = 0;
        pthread_cond_broadcast(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    if (j->rc != 0 && e) *e = j->err;
    return j->rc;
}

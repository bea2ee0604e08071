/*
 * bgthread.c — the engines' background thread (bgthread.h).
 */
#include "store/bgthread.h"

#include <time.h>

void bgt_init(bgthread *b) {
    pthread_mutex_init(&b->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    b->kick = b->stop = b->running = 0;
}

static void *bgt_main(void *arg) {
    bgthread *b = arg;
    pthread_mutex_lock(&b->mu);
    while (!b->stop) {
        int kicked = b->kick;
        b->kick = 0;
        pthread_mutex_unlock(&b->mu);
        int more = b->round(b->ctx, kicked);
        pthread_mutex_lock(&b->mu);
        if (more || b->kick || b->stop) continue;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += b->interval_s;
        pthread_cond_timedwait(&b->cv, &b->mu, &until);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

int bgt_start(bgthread *b, bgt_round_fn round, void *ctx, int interval_s) {
    b->round = round;
    b->ctx = ctx;
    b->interval_s = interval_s;
    if (pthread_create(&b->thread, NULL, bgt_main, b) != 0) return -1;
    b->running = 1;
    return 0;
}

void bgt_kick(bgthread *b) {
    pthread_mutex_lock(&b->mu);
    b->kick = 1;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

void bgt_close(bgthread *b) {
    if (b->running) {
        pthread_mutex_lock(&b->mu);
        b->stop = 1;
        pthread_cond_signal(&b->cv);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->thread, NULL);
        b->running = 0;
    }
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
}

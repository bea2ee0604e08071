/*
 * bgthread.h — the background thread each engine runs for index backfill and space
 * reclaim: woken at once by a kick (a commit that left work), otherwise every interval,
 * and stopped cleanly on close. What a round does is the engine's; the waking, the
 * timed wait and the shutdown are the same for both engines, so they live here.
 * Internal to src/store.
 */
#ifndef TR_STORE_BGTHREAD_H
#define TR_STORE_BGTHREAD_H

#include <pthread.h>

/* One round of background work; kicked: a kick woke it. Returns whether more work is
 * waiting (the next round then starts at once). */
typedef int (*bgt_round_fn)(void *ctx, int kicked);

typedef struct bgthread {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* on CLOCK_MONOTONIC */
    int kick, stop, running;
    pthread_t thread;
    bgt_round_fn round;
    void *ctx;
    int interval_s;
} bgthread;

/* Before any other call; kicks before bgt_start are kept for the first round. */
void bgt_init(bgthread *b);
/* Starts the thread; its first round runs at once. Returns 0, or -1 if it cannot. */
int bgt_start(bgthread *b, bgt_round_fn round, void *ctx, int interval_s);
/* Wakes the thread for a round now (or right after the one in progress). */
void bgt_kick(bgthread *b);
/* Stops the thread after its round in progress, if it was started, and frees b. */
void bgt_close(bgthread *b);

#endif

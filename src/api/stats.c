/*
 * stats.c — the server's own counters (see stats.h).
 */
#include "api/stats.h"
#include "util/xalloc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RING_S 300 /* seconds of per-second import counts kept (the 5-minute rate) */

const char *const stats_class_name[STATS_NCLASS] = {"2xx", "4xx", "5xx"};

const double stats_bucket_le[STATS_NBUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                0.1,   0.25,   0.5,   1,    2.5,   10};

typedef struct ring_slot {
    int64_t sec; /* the second this slot counts (monotonic clock) */
    uint64_t records;
} ring_slot;

struct api_stats {
    pthread_mutex_t mu;
    struct timespec start;
    size_t nendpoints;
    stats_endpoint *endpoints; /* nendpoints + 1: the last counts unmatched requests */
    uint64_t records, inserted, replaced, deleted;
    ring_slot ring[RING_S];
};

static double since(const struct timespec *t0, const struct timespec *t1) {
    return (double)(t1->tv_sec - t0->tv_sec) + (double)(t1->tv_nsec - t0->tv_nsec) / 1e9;
}

api_stats *api_stats_new(size_t nendpoints) {
    api_stats *s = xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    clock_gettime(CLOCK_MONOTONIC, &s->start);
    s->nendpoints = nendpoints;
    s->endpoints = xcalloc(nendpoints + 1, sizeof *s->endpoints);
    for (size_t i = 0; i < RING_S; i++) s->ring[i].sec = -1;
    return s;
}

void api_stats_free(api_stats *s) {
    if (!s) return;
    pthread_mutex_destroy(&s->mu);
    free(s->endpoints);
    free(s);
}

void api_stats_request(api_stats *s, size_t endpoint, int status, double seconds) {
    int cls = status >= 200 && status < 300   ? STATS_2XX
              : status >= 400 && status < 500 ? STATS_4XX
                                              : STATS_5XX;
    size_t b = 0;
    while (b < STATS_NBUCKETS && seconds > stats_bucket_le[b]) b++;
    pthread_mutex_lock(&s->mu);
    stats_endpoint *ep = &s->endpoints[endpoint < s->nendpoints ? endpoint : s->nendpoints];
    ep->requests[cls]++;
    ep->le[b]++; /* made cumulative when read */
    ep->seconds += seconds;
    pthread_mutex_unlock(&s->mu);
}

void api_stats_import(api_stats *s, size_t records, const store_import_result *r) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    pthread_mutex_lock(&s->mu);
    s->records += records;
    s->inserted += r->inserted;
    s->replaced += r->replaced;
    s->deleted += r->deleted;
    ring_slot *slot = &s->ring[now.tv_sec % RING_S];
    if (slot->sec != now.tv_sec) {
        slot->sec = now.tv_sec;
        slot->records = 0;
    }
    slot->records += records;
    pthread_mutex_unlock(&s->mu);
}

/* Records per second over the last `window` seconds (the current one included), or over
 * the uptime while it is shorter, but never less than a second (right after the start a
 * few records would otherwise read as a huge rate). */
static double ring_rate(const api_stats *s, int64_t now_sec, double uptime, int window) {
    uint64_t n = 0;
    for (size_t i = 0; i < RING_S; i++)
        if (s->ring[i].sec > now_sec - window && s->ring[i].sec <= now_sec)
            n += s->ring[i].records;
    double span = uptime < window ? uptime : window;
    return (double)n / (span < 1 ? 1 : span);
}

void api_stats_read(api_stats *s, stats_view *v) {
    memset(v, 0, sizeof *v);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    v->uptime_s = since(&s->start, &now);
    v->nendpoints = s->nendpoints;
    v->endpoints = xcalloc(s->nendpoints + 1, sizeof *v->endpoints);
    pthread_mutex_lock(&s->mu);
    memcpy(v->endpoints, s->endpoints, (s->nendpoints + 1) * sizeof *v->endpoints);
    v->records = s->records;
    v->inserted = s->inserted;
    v->replaced = s->replaced;
    v->deleted = s->deleted;
    v->rate_10s = ring_rate(s, now.tv_sec, v->uptime_s, 10);
    v->rate_1m = ring_rate(s, now.tv_sec, v->uptime_s, 60);
    v->rate_5m = ring_rate(s, now.tv_sec, v->uptime_s, RING_S);
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i <= v->nendpoints; i++)
        for (size_t b = 1; b <= STATS_NBUCKETS; b++)
            v->endpoints[i].le[b] += v->endpoints[i].le[b - 1];
}

void api_stats_view_free(stats_view *v) {
    free(v->endpoints);
    v->endpoints = NULL;
}

/*
 * stats.h — what the server counts about its own work, for /metrics and the status page
 * (SPEC §5).
 *
 * One api_stats per server, shared by every connection thread: the HTTP layer reports
 * each finished request (endpoint, status, duration), the import endpoint what each
 * import wrote. Everything is kept in memory since the process started; nothing of it
 * is stored, and with several processes on one database each counts its own requests.
 * Import rates over the last seconds and minutes come from a ring of per-second
 * counters, so the status page shows what is happening now, not only the average since
 * the start. One mutex guards it all: it is taken once or twice per request, for
 * nanoseconds, next to requests that take milliseconds.
 */
#ifndef TR_API_STATS_H
#define TR_API_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

typedef struct api_stats api_stats;

/* Status classes counted per endpoint (1xx and 3xx, which tributary does not send, would
 * count as 5xx). */
enum { STATS_2XX, STATS_4XX, STATS_5XX, STATS_NCLASS };
extern const char *const stats_class_name[STATS_NCLASS]; /* "2xx", "4xx", "5xx" */

/* Upper bounds (seconds) of the request duration histogram's buckets; +Inf follows. */
#define STATS_NBUCKETS 12
extern const double stats_bucket_le[STATS_NBUCKETS];

/* The counters of one endpoint. */
typedef struct stats_endpoint {
    uint64_t requests[STATS_NCLASS];
    uint64_t le[STATS_NBUCKETS + 1]; /* requests that took at most stats_bucket_le[i]
                                      * (cumulative, as Prometheus wants; the last: all) */
    double seconds;                  /* their total duration */
} stats_endpoint;

/* A copy of everything counted (api_stats_read). */
typedef struct stats_view {
    double uptime_s;
    size_t nendpoints; /* endpoints[nendpoints] counts requests that matched none */
    stats_endpoint *endpoints;
    uint64_t records;  /* records of successful import requests */
    uint64_t inserted, replaced, deleted; /* what they did to documents */
    double rate_10s, rate_1m, rate_5m;    /* records per second over the last 10 s... */
} stats_view;

/* Counters for `nendpoints` endpoints (indexes into the routing table). */
api_stats *api_stats_new(size_t nendpoints);
void api_stats_free(api_stats *s);

/* A finished request: endpoint index (nendpoints or more: none matched), HTTP status
 * sent, seconds from its headers' arrival to its completion. */
void api_stats_request(api_stats *s, size_t endpoint, int status, double seconds);

/* A successful import of `records` records and what it did. */
void api_stats_import(api_stats *s, size_t records, const store_import_result *r);

/* Copies every counter into *v (free with api_stats_view_free). */
void api_stats_read(api_stats *s, stats_view *v);
void api_stats_view_free(stats_view *v);

#endif

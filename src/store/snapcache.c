/*
 * snapcache.c — the list_snapshot walks' old versions, per process (snapcache.h).
 *
 * A few entries, each one array: the sorted rows first, then the rows added since the
 * last snapcache_done, which sorts those and merges them in, backwards and in place,
 * copying only the new ones aside (later pages add few; the first, which adds them all,
 * merges nothing). Memory: the rows, in arrays that grow by doubling, so up to twice
 * the budget in the worst case. Eviction is least recently opened first, from a small
 * fixed table: walks that run at once are few, and a walk that was evicted only pays its
 * first page again.
 */
#include "store/snapcache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/xalloc.h"

#define SNAPCACHE_ENTRIES 16

struct snapcache_entry {
    int used;
    int too_big; /* its versions did not fit: walks of it use the plain query */
    int64_t tablet, snapshot, seen;
    uint64_t stamp; /* when last opened */
    snapcache_row *rows;
    size_t n;       /* rows[0..n) sorted by id */
    size_t pending; /* rows[n..n+pending) added since the last snapcache_done */
    size_t cap;
};

struct snapcache {
    pthread_mutex_t mu;
    size_t max_rows, total;
    uint64_t clock;
    snapcache_entry e[SNAPCACHE_ENTRIES];
};

snapcache *snapcache_new(size_t max_rows) {
    snapcache *c = xcalloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    c->max_rows = max_rows;
    return c;
}

static void entry_clear(snapcache *c, snapcache_entry *en) {
    c->total -= en->n + en->pending;
    free(en->rows);
    *en = (snapcache_entry){0};
}

void snapcache_free(snapcache *c) {
    if (!c) return;
    for (size_t i = 0; i < SNAPCACHE_ENTRIES; i++) entry_clear(c, &c->e[i]);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* The least recently opened entry other than `keep` (an unused one first); NULL if
 * there is none. `with_rows`: only entries that hold rows. */
static snapcache_entry *lru(snapcache *c, const snapcache_entry *keep, int with_rows) {
    snapcache_entry *best = NULL;
    for (size_t i = 0; i < SNAPCACHE_ENTRIES; i++) {
        snapcache_entry *en = &c->e[i];
        if (en == keep || (with_rows && !en->n && !en->pending)) continue;
        if (!en->used) return en; /* (holds no rows: only when !with_rows) */
        if (!best || en->stamp < best->stamp) best = en;
    }
    return best;
}

snapcache_entry *snapcache_open(snapcache *c, int64_t tablet, int64_t snapshot) {
    pthread_mutex_lock(&c->mu);
    snapcache_entry *en = NULL;
    for (size_t i = 0; i < SNAPCACHE_ENTRIES && !en; i++)
        if (c->e[i].used && c->e[i].tablet == tablet && c->e[i].snapshot == snapshot)
            en = &c->e[i];
    if (!en) {
        en = lru(c, NULL, 0);
        entry_clear(c, en);
        *en = (snapcache_entry){.used = 1, .tablet = tablet, .snapshot = snapshot,
                                .seen = snapshot};
    }
    en->stamp = ++c->clock;
    if (en->too_big) {
        pthread_mutex_unlock(&c->mu);
        return NULL;
    }
    return en;
}

int64_t snapcache_seen(const snapcache_entry *en) {
    return en->seen;
}

int snapcache_add(snapcache *c, snapcache_entry *en, const uint8_t id[SNAPCACHE_ID_LEN],
                  int64_t addr) {
    if (en->n + en->pending >= c->max_rows) { /* it alone fills the cache: others stay */
        c->total -= en->n + en->pending;
        free(en->rows);
        en->rows = NULL;
        en->n = en->pending = en->cap = 0;
        en->too_big = 1;
        return -1;
    }
    while (c->total >= c->max_rows) entry_clear(c, lru(c, en, 1));
    if (en->n + en->pending == en->cap) {
        en->cap = en->cap ? 2 * en->cap : 1024;
        en->rows = xrealloc(en->rows, en->cap * sizeof *en->rows);
    }
    snapcache_row *r = &en->rows[en->n + en->pending++];
    memcpy(r->id, id, SNAPCACHE_ID_LEN);
    r->addr = addr;
    c->total++;
    return 0;
}

static int row_cmp(const void *a, const void *b) {
    return memcmp(((const snapcache_row *)a)->id, ((const snapcache_row *)b)->id,
                  SNAPCACHE_ID_LEN);
}

/* Sorts rows[0..n) by id and keeps one row of each id; returns how many are left. */
static size_t sort_unique(snapcache_row *rows, size_t n) {
    qsort(rows, n, sizeof *rows, row_cmp);
    size_t u = 0;
    for (size_t i = 0; i < n; i++) {
        if (u && !row_cmp(&rows[u - 1], &rows[i])) rows[u - 1] = rows[i];
        else rows[u++] = rows[i];
    }
    return u;
}

void snapcache_done(snapcache *c, snapcache_entry *en, int64_t seen) {
    if (seen > en->seen) en->seen = seen;
    if (!en->pending) return;
    size_t n = en->n, p = sort_unique(en->rows + n, en->pending);
    if (n) {
        /* merge backwards into rows[0 .. n + p), the new rows from a copy: a slot is
         * written only after the old row in it was moved. A document has one version
         * valid at the snapshot, so an old row with a new row's id is the same version
         * seen twice: dropped for the new one (its latest address). */
        snapcache_row *add = xmalloc(p * sizeof *add);
        memcpy(add, en->rows + n, p * sizeof *add);
        size_t i = n, j = p, k = n + p;
        while (j > 0) {
            int cmp = i ? row_cmp(&en->rows[i - 1], &add[j - 1]) : -1;
            if (cmp > 0) {
                en->rows[--k] = en->rows[--i];
            } else {
                en->rows[--k] = add[--j];
                i -= cmp == 0;
            }
        }
        free(add);
        /* rows[0 .. i) never moved; the merged rest is rows[k .. n + p) */
        memmove(en->rows + i, en->rows + k, (n + p - k) * sizeof *en->rows);
        p = i + (n + p - k) - n;
    }
    c->total -= en->pending - p;
    en->n = n + p;
    en->pending = 0;
}

size_t snapcache_after(const snapcache_entry *en, const uint8_t *after, snapcache_row *out,
                       size_t max) {
    size_t lo = 0, hi = en->n;
    if (after) {
        while (lo < hi) { /* the first row with an id above `after` */
            size_t mid = lo + (hi - lo) / 2;
            if (memcmp(en->rows[mid].id, after, SNAPCACHE_ID_LEN) <= 0) lo = mid + 1;
            else hi = mid;
        }
    }
    size_t n = en->n - lo < max ? en->n - lo : max;
    if (n) memcpy(out, en->rows + lo, n * sizeof *out);
    return n;
}

void snapcache_close(snapcache *c, snapcache_entry *en) {
    c->total -= en->pending;
    en->pending = 0;
    pthread_mutex_unlock(&c->mu);
}

int snapcache_take(snapcache *c, int64_t tablet, int64_t snapshot, int64_t last,
                   snapcache_update_fn update, void *ctx, const uint8_t *after,
                   snapcache_row *out, size_t max, size_t *n) {
    *n = SIZE_MAX;
    snapcache_entry *en = snapcache_open(c, tablet, snapshot);
    if (!en) return 0;
    int fits = 1, rc = 0;
    if (en->seen < last && (rc = update(ctx, c, en, en->seen, &fits)) == 0 && fits)
        snapcache_done(c, en, last);
    if (rc == 0 && fits) *n = snapcache_after(en, after, out, max);
    snapcache_close(c, en);
    return rc;
}

const uint8_t *snapcache_scan_end(const snapcache_row *rows, size_t n, size_t max,
                                  size_t *len) {
    static const uint8_t above_all[SNAPCACHE_ID_LEN + 1] = {
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    if (n == max && max > 0) {
        *len = SNAPCACHE_ID_LEN;
        return rows[max - 1].id;
    }
    *len = sizeof above_all;
    return above_all;
}

/*
 * changelog.c — a job's change-log entries (see changelog.h).
 *
 * Entries are appended as operations happen and resolved once, at the end, by sorting on
 * (tablet, id, order of arrival): no hash table, and the sort also gives the id order
 * the rows are stored in. New ids grow with their sequence number, so an append job's
 * entries arrive sorted already and the sort is skipped. A job may touch a document more
 * than once only through dedup (written, then replaced or deleted, by later records of
 * the same batch).
 */
#include "store/changelog.h"

#include <stdlib.h>
#include <string.h>

#include "util/xalloc.h"

enum { CHG_WRITTEN, CHG_DELETED, CHG_DROPPED };

struct chg_entry {
    int64_t tablet;
    uint8_t id[DOCID_INTERNAL_LEN];
    uint32_t seq; /* arrival order: the last operation on a document wins */
    uint8_t op;
};

void chg_reset(chg_log *l) {
    l->n = 0;
}

void chg_free(chg_log *l) {
    free(l->e);
    *l = (chg_log)CHG_LOG_INIT;
}

static void chg_add(chg_log *l, int64_t tablet, const uint8_t *id, int op) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 1024;
        l->e = xrealloc(l->e, l->cap * sizeof *l->e);
    }
    chg_entry *c = &l->e[l->n];
    c->tablet = tablet;
    memcpy(c->id, id, DOCID_INTERNAL_LEN);
    c->seq = (uint32_t)l->n++;
    c->op = (uint8_t)op;
}

void chg_put(chg_log *l, int64_t tablet, const uint8_t id[DOCID_INTERNAL_LEN], int deleted) {
    chg_add(l, tablet, id, deleted ? CHG_DELETED : CHG_WRITTEN);
}

void chg_drop(chg_log *l, int64_t tablet, const uint8_t id[DOCID_INTERNAL_LEN]) {
    chg_add(l, tablet, id, CHG_DROPPED);
}

static int chg_cmp(const void *pa, const void *pb) {
    const chg_entry *a = pa, *b = pb;
    if (a->tablet != b->tablet) return a->tablet < b->tablet ? -1 : 1;
    int c = memcmp(a->id, b->id, DOCID_INTERNAL_LEN);
    if (c) return c;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int chg_sorted(const chg_log *l) {
    for (size_t i = 1; i < l->n; i++)
        if (chg_cmp(&l->e[i - 1], &l->e[i]) > 0) return 0;
    return 1;
}

int chg_rows(chg_log *l, buf *ids, buf *deleted, chg_row_fn fn, void *ctx, tr_err *e) {
    if (!l->n) return 0;
    if (!chg_sorted(l)) qsort(l->e, l->n, sizeof *l->e, chg_cmp);
    size_t i = 0;
    while (i < l->n) {
        int64_t tablet = l->e[i].tablet;
        size_t n = 0;
        buf_reset(ids);
        buf_reset(deleted);
        for (; i < l->n && l->e[i].tablet == tablet; i++) {
            const chg_entry *c = &l->e[i];
            int last = i + 1 == l->n || l->e[i + 1].tablet != tablet ||
                       memcmp(l->e[i + 1].id, c->id, DOCID_INTERNAL_LEN) != 0;
            if (!last || c->op == CHG_DROPPED) continue;
            buf_append(ids, c->id, DOCID_INTERNAL_LEN);
            buf_putc(deleted, c->op == CHG_DELETED);
            n++;
        }
        if (n) {
            int rc = fn(ctx, tablet, ids, deleted, n, e);
            if (rc) return rc;
        }
    }
    return 0;
}

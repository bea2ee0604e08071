/*
 * snapcache.h — per process, the old versions a list_snapshot walk needs, found once.
 *
 * A snapshot at S of a generation is its documents written by S plus the versions that
 * were valid at S and have been replaced or deleted since: history rows with
 * valid_from <= S < valid_to. `history` is indexed by valid_to only (an index by id would
 * cost every replace a random B-tree insert), so finding the ones after a walk's cursor
 * means reading every version ended since S, for every page: a walk costs pages ×
 * versions ended (docs/export.md). This cache keeps, per (generation, snapshot), the ids
 * of those versions sorted, each with the engine's address of its row (SQLite rowid,
 * PostgreSQL ctid). The first page of a walk finds them all; later pages add only the
 * versions ended since the last one looked (a short range of the valid_to index), and
 * then read just their own rows by address.
 *
 * The cache holds what some reader saw; a reader whose view is older than that may find
 * a row at an address missing from its view. Engines check every row they take from
 * the cache and fall back to the plain query for the page when one is not there.
 *
 * One lock for the whole cache, held from snapcache_open to snapcache_close: a walk's
 * update (a query the engine runs meanwhile) is short except the first.
 * Internal to src/store.
 */
#ifndef TR_STORE_SNAPCACHE_H
#define TR_STORE_SNAPCACHE_H

#include <stddef.h>
#include <stdint.h>

#define SNAPCACHE_ID_LEN 16

typedef struct snapcache_row {
    uint8_t id[SNAPCACHE_ID_LEN];
    int64_t addr;
} snapcache_row;

typedef struct snapcache snapcache;
typedef struct snapcache_entry snapcache_entry;

/* Pages of more documents than this (the API asks for 1000) use the plain query. */
#define SNAPCACHE_PAGE_MAX 100000

/* A cache of at most `max_rows` rows over all its entries (24 bytes each); entries past
 * a fixed number are dropped least recently used first. */
snapcache *snapcache_new(size_t max_rows);
void snapcache_free(snapcache *c);

/* Locks the cache and returns the entry of (tablet, snapshot), new and empty if there
 * was none; NULL (and not locked) when that walk's versions did not fit before. */
snapcache_entry *snapcache_open(snapcache *c, int64_t tablet, int64_t snapshot);
/* The commit timestamp up to which the entry holds every version ended (the snapshot
 * itself when new): the caller adds the versions valid at the snapshot whose valid_to
 * is after it, then calls snapcache_done with the timestamp its view goes up to. */
int64_t snapcache_seen(const snapcache_entry *en);
/* Adds one such version, in any order, dropping other entries (least recently used
 * first) when the cache is full. -1: this entry alone would fill it; it is then
 * emptied and marked as not fitting (what it pushed out while it grew stays out), and
 * the caller must only snapcache_close it. */
int snapcache_add(snapcache *c, snapcache_entry *en, const uint8_t id[SNAPCACHE_ID_LEN],
                  int64_t addr);
/* What was added since the last call is complete up to `seen`. Without this call,
 * snapcache_close forgets it (the caller's query failed half way). */
void snapcache_done(snapcache *c, snapcache_entry *en, int64_t seen);
/* Up to `max` rows with ids after `after` (NULL: from the first), in id order, copied
 * into `out`; returns how many. */
size_t snapcache_after(const snapcache_entry *en, const uint8_t *after, snapcache_row *out,
                       size_t max);
void snapcache_close(snapcache *c, snapcache_entry *en);

/* What an engine runs for snapcache_take: adds to `en` (snapcache_add) the versions of
 * the entry's generation valid at its snapshot that commits after `seen` ended, and
 * stops with *fits = 0 when snapcache_add fails. 0, or -1 when its query failed. */
typedef int (*snapcache_update_fn)(void *ctx, snapcache *c, snapcache_entry *en, int64_t seen,
                                   int *fits);
/* A page's part, all the above in one: brings the entry of (tablet, snapshot) up to the
 * reader's last commit `last` through `update` when it is behind, then copies up to `max`
 * rows after `after` into `out`. *n: how many, or SIZE_MAX when the walk's versions do
 * not fit the cache. 0, or -1 when `update` failed (nothing of it is kept). */
int snapcache_take(snapcache *c, int64_t tablet, int64_t snapshot, int64_t last,
                   snapcache_update_fn update, void *ctx, const uint8_t *after,
                   snapcache_row *out, size_t max, size_t *n);
/* Where the page's scan of current versions may stop, given the `n` rows snapcache_take
 * gave it of the `max` it asked for: at the last of them when it got them all (the page
 * fills before any id past it), else nowhere (an id above every 16-byte id; n may be
 * SIZE_MAX). *len: its length in bytes. */
const uint8_t *snapcache_scan_end(const snapcache_row *rows, size_t n, size_t max,
                                  size_t *len);

#endif

/*
 * keys.h — primary key index entries of stored documents, shared by both engines.
 *
 * An index is stored as the canonical text of its field paths (pkey_canonical); each
 * document's entry is the order-preserving encoding of those fields (pkey.h). Imports,
 * backfills and both engines must compute entries the same way, so they all go through
 * these two functions. Internal to src/store.
 */
#ifndef TR_STORE_KEYS_H
#define TR_STORE_KEYS_H

#include <stddef.h>

#include "model/pkey.h"
#include "util/arena.h"
#include "util/buf.h"
#include "util/err.h"

/* An index definition as stored (canonical text of its field paths) back into a pkey. */
int store_index_key(const char *fields, size_t n, arena *a, pkey *out, tr_err *e);

/* The index key of a stored document (Convex JSON) into *out: paths the document lacks
 * encode as undefined, so documents appended without the key still get exactly one
 * entry. */
int store_doc_key(const pkey *k, const char *doc, size_t n, arena *a, buf *out, tr_err *e);

#endif

/*
 * export_cursor.h — the list_snapshot cursor, opaque to clients.
 *
 * base64url (no padding) of a version byte, the snapshot, the table number and the last
 * document's internal id. Carrying the snapshot lets a call with a cursor alone continue
 * the same snapshot, and lets a cursor sent with another snapshot be refused instead of
 * silently mixing two views. A cursor comes back from clients, so decoding is strict and
 * has a fuzz target.
 */
#ifndef TR_EXPORT_CURSOR_H
#define TR_EXPORT_CURSOR_H

#include <stddef.h>

#include "store/store.h"
#include "util/buf.h"
#include "util/err.h"

/* Appends the cursor as a JSON string literal (with quotes). */
void export_cursor_encode(const store_snapshot_pos *pos, buf *out);

/* Parses the text of a cursor; anything else → 400 InvalidListSnapshotCursor. */
int export_cursor_decode(const char *s, size_t n, store_snapshot_pos *pos, tr_err *e);

#endif

/*
 * auth.h — the admin key: where it comes from, how it is kept, how a request's
 * credentials are checked (SPEC §1.1).
 *
 * The key is either given (--admin-key or TRIBUTARY_ADMIN_KEY) or generated on the first
 * start and printed once. On disk only a salted BLAKE2b hash is kept
 * (<data_dir>/admin_key, mode 0600). Checking hashes the presented key and compares in
 * constant time. `tributary admin-key` rewrites the file; a running server notices the
 * change (it re-reads the file when it changes) so the old key stops working at once.
 */
#ifndef TR_AUTH_H
#define TR_AUTH_H

#include <stddef.h>

#include "util/err.h"

typedef struct auth auth;

/* Sets up checking for data_dir. With `key` (non-NULL, non-empty) that key is the admin
 * key and nothing is written. Otherwise the stored hash is used; when there is none, a
 * new key is generated, its hash stored, and the key written to *generated (caller
 * frees) so it can be printed once. Errors: 500 with the reason (unreadable file...). */
int auth_open(const char *data_dir, const char *key, char **generated, auth **out, tr_err *e);
void auth_close(auth *a);

/* Whether `key` (len bytes) is the admin key. Constant time in the key's content. */
int auth_check(auth *a, const char *key, size_t len);

/* Generates a new key, stores its hash in data_dir (replacing the old one) and returns
 * the key (caller frees), or NULL with *e filled. */
char *auth_rotate(const char *data_dir, tr_err *e);

#endif

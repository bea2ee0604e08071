/*
 * keys.c — primary key index entries of stored documents (keys.h).
 *
 * Stored text was validated on the way in, so a parse failure here is a storage fault
 * (500), not a client error.
 */
#include "store/keys.h"

#include "json/reader.h"

int store_index_key(const char *fields, size_t n, arena *a, pkey *out, tr_err *e) {
    val *v;
    if (json_parse(a, fields, n, 0, 0, &v, e) != 0 || pkey_parse(v, PKEY_FROM_INDEX, out, e) != 0)
        return err_set(e, 500, "StorageError", "Stored index definition %.*s is unreadable: %s",
                       (int)(n > 200 ? 200 : n), fields, e->message);
    return 0;
}

int store_doc_key(const pkey *k, const char *doc, size_t n, arena *a, buf *out, tr_err *e) {
    val *v;
    /* no depth limit: stored documents were checked against it on the way in */
    if (json_parse(a, doc, n, 0, JSON_CONVEX, &v, e) != 0)
        return err_set(e, 500, "StorageError", "A stored document is unreadable: %s", e->message);
    buf_reset(out);
    return pkey_encode_doc(k, v, 0, out, e);
}

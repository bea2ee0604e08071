/*
 * pkey.h — primary keys: their field paths and the index key bytes.
 *
 * A primary key is 1..16 field paths, each 1..16 identifier components
 * (e.g. [["id"], ["address", "zip"]]). Its canonical text is the compact JSON of that
 * list of lists; the store keeps it in the index definition and compares it with the
 * key a stream declares.
 *
 * Index keys are an order-preserving, type-tagged byte encoding of the values at those
 * paths, one after the other, so memcmp order is value order and `1` (float64),
 * `1` (int64), `"1"` and `null` are all distinct keys. Tags (ascending):
 * undefined 0x01, null 0x03, int64 0x04, float64 0x0D, false 0x0E, true 0x0F,
 * string 0x10, array 0x12, object 0x13.
 */
#ifndef TR_PKEY_H
#define TR_PKEY_H

#include <stddef.h>

#include "model/value.h"
#include "util/buf.h"
#include "util/err.h"

#define PKEY_MAX_PATHS 16
#define PKEY_MAX_COMPONENTS 16

typedef struct pkey_path {
    size_t ncomp;
    char comp[PKEY_MAX_COMPONENTS][65]; /* identifiers, NUL-terminated */
} pkey_path;

typedef struct pkey {
    size_t npaths;
    pkey_path paths[PKEY_MAX_PATHS];
} pkey;

/* Where a key comes from: the two endpoints apply slightly different rules. */
typedef enum pkey_origin {
    PKEY_FROM_STREAM, /* tables.<t>.primaryKey of import_airbyte_records */
    PKEY_FROM_INDEX,  /* add_primary_key_indexes: also no component may start with '_' */
} pkey_origin;

/* Parses a JSON list of lists of strings into *out.
 * Errors (status 400): wrong JSON types (checked first) → BadJsonBody; [] →
 * EmptyPrimaryKey; an empty path, a non-identifier component, "_id", a repeated path,
 * more than 16 paths → InvalidPrimaryKey;
 * with PKEY_FROM_INDEX a component starting with '_' → IndexFieldNameReserved. */
int pkey_parse(const val *v, pkey_origin origin, pkey *out, tr_err *e);

/* Appends the canonical text of k (compact JSON, e.g. [["a"],["b","c"]]). */
void pkey_canonical(const pkey *k, buf *out);

/* Appends the encoded key of document `doc` to out.
 * If a path is missing or goes through a non-object:
 *   - require != 0: returns -1 with 400 MissingPrimaryKeyValue naming the path ("a.b");
 *   - require == 0: encodes that component as undefined (0x01) and succeeds
 *     (index backfill of documents appended without the key). */
int pkey_encode_doc(const pkey *k, const val *doc, int require, buf *out, tr_err *e);

/* Appends the order-preserving encoding of one value. */
void pkey_encode_value(const val *v, buf *out);

#endif

/*
 * shape.h — the inferred shape of a table's documents, and its JSON Schema (SPEC §4,
 * GET /api/json_schemas).
 *
 * A shape records what the stored documents of one table generation look like: for every
 * value position, which types were seen (null, boolean, float64 — with or without -0 and
 * NaN/±Inf —, int64, string, array, object); for arrays, the shape of every element seen;
 * for objects, each field with its shape and whether some object lacked it (optional).
 *
 * Every document stored widens the shape. shape_add_doc reads the stored Convex JSON text
 * directly, without building a value tree; shape_add_val walks the tree the import
 * decoder has anyway. Either runs on the request's own thread into a shape of the batch,
 * and the single writer only merges that small shape into the table's (shape_merge) and
 * persists the result when it changed. Shapes only widen: a document replaced or
 * deleted later does not narrow them, so the schema always accepts every stored document
 * and may also accept some that are gone. A table cleared with clear_tables starts a fresh
 * generation and so a fresh, empty shape.
 *
 * An object shape tracks at most SHAPE_MAX_FIELDS distinct fields; past that it is marked
 * open (additionalProperties: true) and new fields are no longer recorded, so documents
 * that use field names as data (one key per user, say) cannot grow a shape without bound.
 */
#ifndef TR_STORE_SHAPE_H
#define TR_STORE_SHAPE_H

#include <stddef.h>

#include "model/value.h"
#include "util/buf.h"
#include "util/err.h"

#define SHAPE_MAX_FIELDS 1024

typedef struct shape shape;

/* An empty shape: describes no document yet (a table without documents). */
shape *shape_new(void);
void shape_free(shape *s);

/* Widens s so that it also describes `doc`, a stored document (a Convex JSON object:
 * int64 as {"$integer": …}, NaN/±Inf/-0 as {"$float": …}). *changed is set to 1 when s
 * changed, and left alone otherwise. Returns -1 (s possibly half widened, still valid)
 * when doc is not such a text. */
int shape_add_doc(shape *s, const char *doc, size_t len, int *changed);

/* The same for a document's value tree: s widens exactly as shape_add_doc would on the
 * text json_emit_convex writes for doc. doc is a normalised document (doc_normalize: no
 * field name starts with '$'), as deep as the reader that built it allows. */
void shape_add_val(shape *s, const val *doc, int *changed);

/* Widens dst so that it also describes every document src describes, as if those
 * documents had been added to dst one by one (except which fields an object that
 * overflows SHAPE_MAX_FIELDS keeps). *changed as for shape_add_doc. */
void shape_merge(shape *dst, const shape *src, int *changed);

/* The persistent form (compact JSON, read back by shape_read). */
void shape_write(const shape *s, buf *out);

/* Reads what shape_write wrote. Errors: 500 StorageError naming what is wrong. */
int shape_read(const char *text, size_t len, shape **out, tr_err *e);

/* The draft-07 JSON Schema of a table's documents: "$schema", "type": "object",
 * "properties" (system fields `_id` and `_creationTime` first among them, in byte order
 * with the rest), "additionalProperties" and "required". With `delta`, the properties
 * also list `_table`, `_component`, `_ts` and `_deleted` (not required). `clean` selects
 * the `json` export format's encodings (int64 as a decimal string, NaN/±Inf as strings);
 * otherwise those of `convex_json` ({"$integer": …}, {"$float": …}). s may be NULL (no
 * documents). `table` names the table in the `_id` description "Id(<table>)". */
void shape_json_schema(const shape *s, const char *table, int delta, int clean, buf *out);

#endif

/*
 * doc.h — turning an imported record into a storable document (SPEC §2.2, §2.4, §2.6).
 *
 * doc_normalize rewrites field names at every depth, applies the document limits with
 * Convex's size measure (system fields included) and handles Airbyte's CDC fields. It
 * works in place on the tree, allocating new names from the arena.
 */
#ifndef TR_DOC_H
#define TR_DOC_H

#include <stddef.h>

#include "model/value.h"
#include "util/arena.h"
#include "util/err.h"

#define DOC_MAX_SIZE (1024 * 1024) /* Convex size of a whole document */
#define DOC_MAX_DEPTH 16           /* the document object itself is level 1 */
#define DOC_MAX_FIELDS 1024        /* per object */
#define DOC_MAX_ARRAY 8192         /* elements per array */
/* Convex size of the system fields every stored document carries:
 * "_id" (3+1+ 32+2) and "_creationTime" (13+1+9). */
#define DOC_SYSTEM_FIELDS_SIZE (3 + 1 + 34 + 13 + 1 + 9)

typedef enum doc_mode {
    DOC_APPEND, /* keep source_ab_cdc* fields (complete change history) */
    DOC_DEDUP,  /* drop top-level source_ab_cdc* fields after reading the deletion flag */
} doc_mode;

/* Normalises the `data` object of one record in place.
 * - Every key that names_field_kept() refuses becomes "source_" + slug(key); a rewritten
 *   key that collides with any other key of the same object (original or rewritten)
 *   gets another "source_" in front, up to three prefixes; then 400 InvalidFieldName.
 * - *deleted = 1 when the top level has source_ab_cdc_deleted_at (after rewriting)
 *   with a non-null value.
 * - Limits: depth > 16 → InvalidDocumentError; > 1024 fields → TooManyFieldsError;
 *   > 8192 elements → ArrayTooLong; Convex size with system fields > 1 MiB →
 *   ValueTooLargeError. All status 400; messages say which field where possible.
 * data must be an object (the caller checks, with InvalidRecord). */
int doc_normalize(arena *a, val *data, doc_mode mode, int *deleted, tr_err *e);

/* Convex size of a value (SPEC §2.4). */
size_t doc_size(const val *v);

#endif

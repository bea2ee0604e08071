/*
 * reader.h — JSON text in, value trees out, fed chunk by chunk (yajl push parser).
 *
 * A request body arrives from the network in chunks. The reader feeds each chunk to
 * yajl and builds values as they complete. For the one big endpoint it streams: every
 * element of one top-level array field (e.g. "messages") is built in the element arena,
 * handed to a callback, and forgotten (the caller resets the arena), so memory stays
 * near one element, never the whole request. Everything else in the body is built in
 * the root arena and returned by json_reader_finish, with the streamed field absent.
 *
 * Numbers follow SPEC §2.3: every number is a float64, except integer literals
 * (-?[0-9]+) with |n| > 2^53 that fit in int64, which are int64; a number outside the
 * float64 range is an error (400 BadJsonBody). Duplicate keys: the last one wins.
 */
#ifndef TR_JSON_READER_H
#define TR_JSON_READER_H

#include <stddef.h>

#include "model/value.h"
#include "util/arena.h"
#include "util/err.h"

typedef struct json_reader json_reader;

/* Called once per element of the streamed array, in order. Return 0 to go on, or -1
 * with *e filled to stop the whole parse with that error (an unfilled *e becomes a 500).
 * The callback may reset elem_arena: the reader keeps no pointer into it afterwards. */
typedef int (*json_element_fn)(void *ctx, size_t index, val *element, tr_err *e);

/* Called when a top-level field other than the streamed one is complete (streaming mode
 * only), with its value in root_arena, so a caller can use e.g. "tables" while the
 * "messages" after it are still arriving. The field is also in the root returned by
 * json_reader_finish. Return 0 to go on, or -1 with *e filled to stop. */
typedef int (*json_field_fn)(void *ctx, const char *key, size_t key_len, val *value, tr_err *e);

typedef struct json_reader_opts {
    size_t max_depth;        /* nesting limit outside streamed elements → 400 BadJsonBody;
                                here and below, 0 means no limit */
    const char *stream_key;  /* top-level key whose array elements are streamed, or NULL */
    /* Limits inside a streamed element, checked while it is built (so a huge element is
     * refused before it is held in memory). The element itself is depth 1; 0 = none.
     * Errors: depth → InvalidDocumentError, fields → TooManyFieldsError,
     * array length → ArrayTooLong (all 400, message names the element index). */
    size_t element_max_depth;
    size_t element_max_fields;
    size_t element_max_array;
    json_element_fn on_element;
    json_field_fn on_root_field; /* may be NULL */
    void *ctx;
} json_reader_opts;

/* root_arena holds the returned root; elem_arena holds each streamed element. */
json_reader *json_reader_new(const json_reader_opts *o, arena *root_arena, arena *elem_arena);
void json_reader_free(json_reader *r);

/* Longest single token (string with its opening quote and escapes as written, number,
 * literal) accepted; a longer one is refused with 400 ValueTooLargeError as soon as it
 * has grown past this, however it is split into chunks. */
#define JSON_TOKEN_MAX (8u * 1024 * 1024)

/* Feeds the next chunk. Syntax errors: 400 BadJsonBody with yajl's description. */
int json_reader_feed(json_reader *r, const void *p, size_t n, tr_err *e);

/* Ends the input. *root is the top-level value (for streaming mode, an object without the
 * streamed key; json_reader_streamed() tells whether that key was present). Errors:
 * truncated input, trailing garbage, or (streaming mode) a top level that is not an
 * object, or a streamed field that is not an array → 400 BadJsonBody. */
int json_reader_finish(json_reader *r, val **root, tr_err *e);

/* Whether the streamed key appeared (as an array) in the input. */
int json_reader_streamed(const json_reader *r);

/* Flags for json_parse. */
#define JSON_CONVEX 1 /* decode {"$integer": b64} and {"$float": b64} (stored documents) */

/* Parses one complete text into a tree allocated from a. */
int json_parse(arena *a, const char *p, size_t n, size_t max_depth, int flags, val **out,
               tr_err *e);

#endif

/*
 * emit.h — values out as JSON text.
 *
 * Two encodings (SPEC §4): the stored form and `convex_json` export (lossless:
 * int64 as {"$integer": base64 of 8 LE bytes}, NaN/±Inf/-0 as {"$float": base64}),
 * and the clean `json` export format (int64 as a decimal string, NaN/±Infinity as
 * strings, -0 as -0.0). Finite floats are written with the fewest digits that read
 * back to the same double.
 */
#ifndef TR_JSON_EMIT_H
#define TR_JSON_EMIT_H

#include <stddef.h>

#include "model/value.h"
#include "util/buf.h"

void json_emit_convex(const val *v, buf *out);
void json_emit_clean(const val *v, buf *out);

/* A JSON string literal with quotes; bytes that are not valid UTF-8 are replaced by
 * U+FFFD so the output is always valid JSON. */
void json_emit_string(const char *s, size_t n, buf *out);

/* Whether json_emit_string writes s[0, n) as it is between its quotes (nothing to
 * escape and nothing to check; some other texts come out unchanged too). */
int json_string_verbatim(const char *s, size_t n);

/* A finite double, shortest round-trip form ("1", "0.1", "1e+300"). */
void json_emit_double(double d, buf *out);
/* The same text for a float whose decimal form is known (val.dec, nonzero): what
 * json_emit_double prints, without printf (the import path's hottest call). */
void json_emit_decimal(int neg, uint64_t dec, buf *out);

#endif

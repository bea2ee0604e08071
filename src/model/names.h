/*
 * names.h — Convex's name rules and the streaming-import rewriting of bad names
 * (SPEC §2.1, §2.2).
 *
 * Streaming import never rejects a name that can be repaired: it becomes
 * "source_" + slug(name), where slug transliterates accented Latin letters to ASCII,
 * lowercases, trims spaces and '_' at both ends, collapses every run of characters
 * other than [a-z0-9] into one '_' and drops a trailing '_'.
 */
#ifndef TR_NAMES_H
#define TR_NAMES_H

#include <stddef.h>

#include "util/buf.h"
#include "util/err.h"

#define NAMES_TABLE_MAX 64    /* longest valid table name */
#define NAMES_FIELD_MAX 1024  /* longest field name kept as is */

/* A valid table name: ASCII letter first, then letters, digits, '_'; 1..64 chars. */
int names_table_valid(const char *s, size_t n);

/* Table name as streaming import uses it: kept when valid, else "source_" + slug.
 * Writes a NUL-terminated name into out. A name still invalid after rewriting
 * (longer than 64) fails with 400 InvalidTableName. */
int names_table_rewrite(const char *raw, size_t n, char out[NAMES_TABLE_MAX + 1], tr_err *e);

/* A field key kept as is: printable ASCII (0x20-0x7E), at most 1024 bytes, not starting
 * with '$' or '_'. Empty keys are kept. */
int names_field_kept(const char *s, size_t n);

/* Appends "source_" + slug(raw) to out (the rewritten form of a field key). */
void names_source_slug(const char *raw, size_t n, buf *out);

/* Appends s as a quoted, escaped name for an error message ("a \"b\""): quotes and
 * backslashes escaped, control bytes as \u00XX, cut at about `max` bytes (on a UTF-8
 * boundary) with "..." when longer. */
void names_quote(const char *s, size_t n, size_t max, buf *out);

/* An identifier, as primary-key path components must be: ASCII letter or '_' first,
 * then letters, digits, '_'; at most 64 chars; not only underscores. */
int names_identifier(const char *s, size_t n);

#endif

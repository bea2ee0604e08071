/*
 * docid.h — Convex document IDs (SPEC §2.5).
 *
 * Binary: varint(table number) ‖ 16-byte internal id ‖ 2-byte footer (Fletcher-16 of the
 * preceding bytes XOR version 0, little-endian). Text: lowercase Crockford base32, most
 * significant bits first, no padding. User tables are numbered from 10001, so their IDs
 * are 32 characters. Decoding is strict: bad characters, a bad checksum or a
 * non-canonical text all fail.
 */
#ifndef TR_DOCID_H
#define TR_DOCID_H

#include <stddef.h>
#include <stdint.h>

#define DOCID_INTERNAL_LEN 16
#define DOCID_TEXT_MAX 37       /* longest text form (5-byte varint) */
#define DOCID_FIRST_TABLE 10001 /* first user table number */

/* Writes the text form (NUL-terminated) into out; returns its length.
 * table_number must be >= 1. */
size_t docid_encode(uint32_t table_number, const uint8_t internal[DOCID_INTERNAL_LEN],
                    char out[DOCID_TEXT_MAX + 1]);

/* Parses a text ID; returns 0 and fills the outputs, or -1 when s is not a valid ID. */
int docid_decode(const char *s, size_t n, uint32_t *table_number,
                 uint8_t internal[DOCID_INTERNAL_LEN]);

/* A fresh internal id: 8 bytes of `seq` big-endian (so ids of one table sort in
 * insertion order and B-tree inserts stay at the right edge), 6 random bytes, then the
 * big-endian u16 count of days since the epoch for `unix_ms`. */
void docid_new_internal(uint64_t seq, int64_t unix_ms, uint8_t internal[DOCID_INTERNAL_LEN]);

#endif

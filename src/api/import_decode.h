/*
 * import_decode.h — an import_airbyte_records body in, a finished store batch out.
 *
 * The decoder is the part of the import endpoint that reads outside input: it is kept
 * apart from the endpoint glue so it can be fuzzed and unit-tested without a store or
 * a socket. Feed it the body chunk by chunk; finish() validates the end and hands out a
 * batch that stays valid until the decoder is freed.
 */
#ifndef TR_IMPORT_DECODE_H
#define TR_IMPORT_DECODE_H

#include <stddef.h>

#include "store/store.h"
#include "util/err.h"

typedef struct import_decoder import_decoder;

import_decoder *import_decoder_new(void);
void import_decoder_free(import_decoder *d);

/* Every error is a 4xx naming the place (e.g. "messages[17].data: ..."). */
int import_decoder_feed(import_decoder *d, const char *p, size_t n, tr_err *e);
int import_decoder_finish(import_decoder *d, store_batch *out, tr_err *e);

#endif

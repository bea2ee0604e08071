/*
 * err.h — the error value every layer hands upwards.
 *
 * An error is an HTTP status, a CamelCase code and a human sentence; it maps 1:1 onto
 * the JSON error body {"code": ..., "message": ...}. Functions that can fail take a
 * `tr_err *` and return -1 after filling it, so the innermost place that knows what
 * went wrong writes the code, and outer layers only add where (err_prefix).
 */
#ifndef TR_ERR_H
#define TR_ERR_H

#include <stddef.h>

typedef struct tr_err {
    int status;         /* HTTP status: 4xx for client mistakes, 5xx for server faults */
    char code[48];      /* e.g. "BadJsonBody" */
    char message[512];  /* one sentence, naming the bad message or field */
} tr_err;

/* Fills *e (if e is not NULL). Always returns -1 so callers can `return err_set(...)`. */
int err_set(tr_err *e, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Prepends context to the message: "messages[3].data: " + old message. Returns -1. */
int err_prefix(tr_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Resets to "no error" (status 0). */
void err_clear(tr_err *e);

#endif

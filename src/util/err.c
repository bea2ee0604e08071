/*
 * err.c — filling and prefixing tr_err values (see err.h).
 */
#include "util/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int err_set(tr_err *e, int status, const char *code, const char *fmt, ...) {
    if (!e) return -1;
    e->status = status;
    snprintf(e->code, sizeof e->code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

int err_prefix(tr_err *e, const char *fmt, ...) {
    if (!e) return -1;
    char head[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    /* truncation is fine: the head names the place, the tail says what is wrong */
    char old[sizeof e->message];
    memcpy(old, e->message, sizeof old);
    size_t hn = strlen(head), on = strnlen(old, sizeof old - 1);
    if (hn > sizeof e->message - 1) hn = sizeof e->message - 1;
    if (on > sizeof e->message - 1 - hn) on = sizeof e->message - 1 - hn;
    memcpy(e->message, head, hn);
    memcpy(e->message + hn, old, on);
    e->message[hn + on] = '\0';
    return -1;
}

void err_clear(tr_err *e) {
    if (!e) return;
    e->status = 0;
    e->code[0] = '\0';
    e->message[0] = '\0';
}

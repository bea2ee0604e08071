/*
 * unit.h — what every cmocka unit test program includes.
 *
 * cmocka needs these standard headers before its own; keeping them here means each test
 * file starts with its subject, not with include-order trivia.
 */
#ifndef TR_UNIT_H
#define TR_UNIT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

/* A fresh temporary directory for a test group: unit_dir holds its path. Use
 * unit_make_dir and unit_remove_dir as the group's setup and teardown. */
static char unit_dir[64];

static inline int unit_make_dir(void **state) {
    (void)state;
    snprintf(unit_dir, sizeof unit_dir, "/tmp/tributary_unit_XXXXXX");
    return mkdtemp(unit_dir) ? 0 : -1;
}

static inline int unit_remove_dir(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", unit_dir);
    return system(cmd) == 0 ? 0 : -1;
}

#endif

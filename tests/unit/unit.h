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

#endif

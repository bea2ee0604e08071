/*
 * version.h — the one place the release number lives (GET /version, --version).
 */
#ifndef TR_VERSION_H
#define TR_VERSION_H

#define TRIBUTARY_VERSION "0.1.0"

#endif

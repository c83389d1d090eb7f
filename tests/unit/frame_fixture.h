/*
 * Helpers shared by the tests of the tether.v1 codec (src/engine/frame.c):
 * frame_vectors, frame_roundtrip and frame_limits.
 */
#ifndef TETHER_TEST_FRAME_FIXTURE_H
#define TETHER_TEST_FRAME_FIXTURE_H

#include "harness.h"

#include "engine/frame.h"

#include <tether/tether.h>

#define MAX_PAYLOAD 1048576u /* the decoder limit the vector files assume */

/* The names of what tether__decode returns; kept here so the vectors are
 * checked against the header's codes, not against another table. */
const char *code_name(int rc);

/* Parses the hex field: whitespace-separated tokens of hex digit pairs, each
 * optionally followed by "*N" (the token's bytes repeated N times). Returns a
 * malloc'd buffer (never NULL on success) or NULL on a syntax error. */
uint8_t *parse_hex(const char *text, size_t *len);

int decode_buf(tether__decoder *d, tether__buf *b, tether__frame *f);

#endif

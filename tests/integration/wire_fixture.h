/*
 * Wire-level tests, shared by wire_client (a real tether client against a
 * scripted raw WebSocket server, tests/support/rawws.c) and wire_server (a real
 * tether server against a raw WebSocket client). Each test drives one
 * behaviour of the handshake, the frames or the connection life from
 * proto/PROTOCOL.md and docs/errors.md, and checks what the other side sees on
 * the wire and what the application is told.
 *
 * Loopback only, ports picked by the OS, every wait bounded.
 * TETHER_TEST_VERBOSE=1 prints every client state as it happens.
 */
#ifndef TETHER_TEST_WIRE_FIXTURE_H
#define TETHER_TEST_WIRE_FIXTURE_H

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/frame.h"
#include "harness.h"
#include "itest.h"
#include "rawws.h"
#include "statelog.h"

#define WAIT_MS 5000u /* bound for anything that should happen promptly */
#define READ_MS 3000u /* bound for one frame from the peer under test */

/* Prints a measurement when TETHER_TEST_VERBOSE is set. */
void note(const char *fmt, ...);

/* Reads the next binary message and decodes it. The frame points into *m,
 * which the caller frees. Returns the decode result, TETHER_ETIMEDOUT, or
 * TETHER_ECLOSED (a close frame or EOF first). A text message is skipped. */
int read_frame(rawws_conn *c, tether__decoder *d, rawws_msg *m, tether__frame *f,
               unsigned timeout_ms);

int send_buf(rawws_conn *c, tether__buf *b);

#endif

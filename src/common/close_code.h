/* Close codes and close reasons: the tether_reject_code sent for an error, and
 * the tether_err each side reports for a closed connection. */
#ifndef TETHER_CLOSE_CODE_H
#define TETHER_CLOSE_CODE_H

#include <stdint.h>

#include "engine/session.h"

/* The reject code to send for a decode or transport error. */
uint32_t tether__close_code(int err);

/* The error a client reports for the close event ev of its connection: the
 * engine's, except that a BYE(TOO_BIG) from the server becomes TETHER_ETOOBIG
 * (a message on one side exceeds the other's limit: retrying meets it again). */
int tether__close_client_error(const tether__engine_event *ev);

/* The error a server reports (on_session_close) for the close event ev: the
 * engine's, except that a graceful BYE(0) from the client is TETHER_OK. */
int tether__close_server_error(const tether__engine_event *ev);

#endif

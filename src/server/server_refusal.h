/* Refused handshakes reported to the application (server_refusal.c). */
#ifndef TETHER_SERVER_REFUSAL_H
#define TETHER_SERVER_REFUSAL_H

#include <stdint.h>

#include <tether/server.h>

#include "engine/handshake.h"

/* The rate limit's state; touched on the service thread only. */
typedef struct srv_refusals {
    uint64_t window_ms;  /* when the current 60 s window began (0: none yet) */
    uint32_t reported;   /* reports made in it */
    uint64_t suppressed; /* refusals not reported since the last report */
} srv_refusals;

/* Service thread: reports one refusal to on_refused, within the rate limit
 * (now_ms from tether__now_ms()). peer may be NULL (not known). */
void tether__srv_refused(tether_server *s, uint64_t now_ms, const char *peer, int error,
                         int http_status, uint32_t reject_code, const char *reason);

/* Service thread: reports a refusal decided by the handshake module (the
 * REJECT or BYE in out, the error it stands for), with the peer of conn. */
struct tether__conn;
void tether__srv_refused_hs(tether_server *s, struct tether__conn *conn,
                            const tether__hs_out *out);

#endif

/* The engine configuration the client and the server derive from their
 * public configs: defaults (defaults.h) and the limits they are checked against. */
#ifndef TETHER_ENGINE_CFG_H
#define TETHER_ENGINE_CFG_H

#include <stddef.h>
#include <stdint.h>

#include "engine/session.h"

#define TETHER__RUN_MAX_BYTES (64u << 10)        /* DATA runs are coalesced up to this */
#define TETHER__LIMIT_MAX_MESSAGE (256u << 20)   /* largest max_message_bytes accepted */
#define TETHER__LIMIT_WINDOW 1000000u            /* largest window_messages accepted */
#define TETHER__LIMIT_ACK_DELAY_MS 60000u        /* largest ack_delay_ms accepted */

/* Fills defaults and checks the common limits of a config; role-specific
 * parts are the caller's. Returns TETHER_OK or TETHER_ECONFIG (with
 * tether_errmsg() naming the field); a value over a limit is refused, never
 * clamped. */
int tether__engine_cfg_fill(tether__engine_cfg *ec, tether__store_role role, uint32_t max_message,
                            uint32_t window, uint32_t ack_every, uint32_t ack_delay_ms,
                            uint64_t outbox_max_messages, uint64_t outbox_max_bytes,
                            int manual_ack, size_t queue_max_bytes);

#endif

/* Engine configuration defaults and limits (engine_cfg.h). */
#include "engine_cfg.h"

#include "defaults.h"
#include "util.h"

int tether__engine_cfg_fill(tether__engine_cfg *ec, tether__store_role role, uint32_t max_message,
                            uint32_t window, uint32_t ack_every, uint32_t ack_delay_ms,
                            uint64_t outbox_max_messages, uint64_t outbox_max_bytes,
                            int manual_ack, size_t queue_max_bytes)
{
    ec->role = role;
    ec->max_message = max_message ? max_message : TETHER__DEFAULT_MAX_MESSAGE;
    ec->window = window ? window : TETHER__DEFAULT_WINDOW;
    /* by default ACK every 64, but at least twice per window */
    ec->ack_every = ack_every ? ack_every : TETHER__DEFAULT_ACK_EVERY;
    if (!ack_every && ec->ack_every > ec->window / 2) {
        ec->ack_every = ec->window / 2 ? ec->window / 2 : 1;
    }
    ec->ack_delay_ms = ack_delay_ms ? ack_delay_ms : TETHER__DEFAULT_ACK_DELAY_MS;
    ec->outbox_max_messages = outbox_max_messages;
    ec->outbox_max_bytes = outbox_max_bytes;
    ec->manual_ack = manual_ack ? 1 : 0;
    ec->run_max_bytes = TETHER__RUN_MAX_BYTES;
    ec->queue_max_bytes = queue_max_bytes;
    if (ec->max_message > TETHER__LIMIT_MAX_MESSAGE) {
        return tether__fail(TETHER_ECONFIG, "max_message_bytes %u is above the limit of %u",
                            ec->max_message, TETHER__LIMIT_MAX_MESSAGE);
    }
    if (ec->window > TETHER__LIMIT_WINDOW) {
        return tether__fail(TETHER_ECONFIG, "window_messages %u is above the limit of %u",
                            ec->window, TETHER__LIMIT_WINDOW);
    }
    if (ec->ack_every > ec->window) {
        return tether__fail(TETHER_ECONFIG,
                            "ack_every (%u) must not exceed window_messages (%u), or the sender "
                            "stalls until the ACK timer",
                            ec->ack_every, ec->window);
    }
    if (ec->ack_delay_ms > TETHER__LIMIT_ACK_DELAY_MS) {
        return tether__fail(TETHER_ECONFIG, "ack_delay_ms %u is above %u", ec->ack_delay_ms,
                            TETHER__LIMIT_ACK_DELAY_MS);
    }
    return TETHER_OK;
}

/* Close codes and close reasons (close_code.h). */
#include "close_code.h"

uint32_t tether__close_code(int err)
{
    switch (err) {
    case TETHER_EFRAME_OVERSIZE:
    case TETHER_ETOOBIG:
        return TETHER_REJECT_TOO_BIG;
    case TETHER_EMISMATCH:
        return TETHER_REJECT_MISMATCH;
    case TETHER_ESTORE:
    case TETHER_ESTORE_FULL:
    case TETHER_ESTORE_CORRUPT:
    case TETHER_ESTORE_READONLY:
    case TETHER_EFENCED:
        return TETHER_REJECT_STORE;
    default:
        return TETHER_REJECT_PROTOCOL;
    }
}

int tether__close_client_error(const tether__engine_event *ev)
{
    if (ev->peer_code == TETHER_REJECT_TOO_BIG) {
        return TETHER_ETOOBIG;
    }
    return ev->error ? ev->error : TETHER_EPEER_CLOSED;
}

int tether__close_server_error(const tether__engine_event *ev)
{
    if (ev->error == TETHER_EPEER_CLOSED && ev->peer_code == TETHER_REJECT_NONE) {
        return TETHER_OK;
    }
    return ev->error;
}

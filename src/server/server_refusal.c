/*
 * Refused handshakes, told to the application. Before, they showed only in
 * the handshakes_refused metric: a client with a wrong token, a full server
 * or a peer sending garbage were invisible to the operator. Each refusal on
 * the service thread goes through here to on_refused, at most
 * TETHER_REFUSAL_REPORTS_PER_MINUTE per 60 s window so that a flood of bad
 * peers cannot swamp the application (or its log); the refusals beyond are
 * counted and the count rides on the next report.
 */
#include "server_int.h"

#include "common/util.h"
#include "transport/transport.h"

#define WINDOW_MS 60000u

void tether__srv_refused(tether_server *s, uint64_t now_ms, const char *peer, int error,
                         int http_status, uint32_t reject_code, const char *reason)
{
    if (!s->cfg.cb.on_refused) {
        return;
    }
    srv_refusals *r = &s->refusals;
    if (r->window_ms == 0 || now_ms - r->window_ms >= WINDOW_MS || now_ms < r->window_ms) {
        r->window_ms = now_ms ? now_ms : 1;
        r->reported = 0;
    }
    if (r->reported >= TETHER_REFUSAL_REPORTS_PER_MINUTE) {
        r->suppressed++;
        return;
    }
    r->reported++;
    tether_refusal_info info;
    memset(&info, 0, sizeof info);
    info.error = error;
    info.http_status = http_status;
    info.reject_code = reject_code;
    info.peer = peer ? peer : "";
    info.reason = reason ? reason : "";
    info.suppressed = r->suppressed;
    r->suppressed = 0;
    s->cfg.cb.on_refused(s, &info, s->cfg.user);
}

void tether__srv_refused_hs(tether_server *s, struct tether__conn *conn, const tether__hs_out *out)
{
    if (!s->cfg.cb.on_refused) {
        return;
    }
    char peer[64] = "";
    if (conn) {
        tether__conn_peer(conn, peer, sizeof peer);
    }
    uint32_t code = 0;
    const char *reason = "";
    for (size_t i = 0; i < out->nframes; i++) {
        if (out->frames[i].type == TETHER__F_REJECT || out->frames[i].type == TETHER__F_BYE) {
            code = out->frames[i].code;
            reason = out->frames[i].reason;
            break;
        }
    }
    tether__srv_refused(s, tether__now_ms(), peer, out->error, 0, code, reason);
}

/*
 * The server's handshake decision (handshake.h): the checks of PROTOCOL.md
 * section 6, step 2, in their order, and the frames of every refusal.
 */
#include "handshake.h"

#include <stdio.h>
#include <string.h>

#include "common/util.h"

static tether__hs_frame *add(tether__hs_out *out, int type, uint32_t code, const char *reason)
{
    tether__hs_frame *f = &out->frames[out->nframes++];
    memset(f, 0, sizeof *f);
    f->type = type;
    f->code = code;
    snprintf(f->reason, sizeof f->reason, "%s", reason ? reason : "");
    return f;
}

void tether__hs_refuse(tether__hs_out *out, int bye, uint32_t code, int err, const char *reason)
{
    out->verdict = TETHER__HS_REFUSE;
    out->error = err;
    out->displace = 0;
    out->nframes = 0;
    out->next = 0;
    add(out, bye ? TETHER__F_BYE : TETHER__F_REJECT, code, reason);
}

static void reset(tether__hs_out *out)
{
    memset(out, 0, sizeof *out);
}

int tether__hs_first(tether__decoder *d, const uint8_t *buf, size_t len, int err, tether__hello *h,
                     tether__hs_out *out)
{
    char why[160];
    tether__frame f;

    reset(out);
    if (!err && len > TETHER__HS_FIRST_MAX) {
        snprintf(why, sizeof why, "a %zu-byte message before HELLO (the limit is %u)", len,
                 TETHER__HS_FIRST_MAX);
        tether__hs_refuse(out, 1, TETHER_REJECT_TOO_BIG, TETHER_EFRAME_OVERSIZE, why);
        return 0;
    }
    int rc = err ? err : tether__decode(d, buf, len, &f);
    if (rc != TETHER_OK) {
        tether__hs_refuse(out, 1,
                          rc == TETHER_EFRAME_OVERSIZE ? TETHER_REJECT_TOO_BIG
                                                       : TETHER_REJECT_PROTOCOL,
                          rc, tether_strerror(rc));
        return 0;
    }
    if (f.type != TETHER__F_HELLO) {
        tether__hs_refuse(out, 1, TETHER_REJECT_PROTOCOL, TETHER_EPROTO,
                          "the first frame must be HELLO");
        return 0;
    }
    *h = f.u.hello;
    return 1;
}

/* The HELLO claims a history the server has no record of (section 6, step 2.4). */
static void unknown_with_history(const tether__hello *h, const tether__hs_server *srv,
                                 tether__hs_out *out)
{
    tether_mismatch_info *mi = &out->mismatch;
    out->verdict = TETHER__HS_MISMATCH;
    out->error = TETHER_EMISMATCH;
    memcpy(mi->session.bytes, h->session_id, sizeof mi->session.bytes);
    mi->peer_knows_session = 1;
    mi->peer_out_last = h->out_last;
    mi->peer_recv_cursor = h->recv_cursor;
    if (srv->on_mismatch) {
        srv->on_mismatch(srv->arg, mi);
    }
    tether__welcome *w = &add(out, TETHER__F_WELCOME, 0, NULL)->welcome;
    memcpy(w->session_id, h->session_id, TETHER__ID_LEN);
    w->resumed = 0;
    w->max_message = srv->max_message;
    w->window = srv->window;
    add(out, TETHER__F_BYE, TETHER_REJECT_MISMATCH, "the server has no record of this session");
}

void tether__hs_decide(const tether__hello *h, const tether__hs_server *srv, tether__hs_out *out)
{
    reset(out);
    if (h->version != TETHER__PROTO_VERSION) {
        tether__hs_refuse(out, 0, TETHER_REJECT_VERSION, TETHER_EVERSION,
                          "unsupported protocol version");
        return;
    }
    if (srv->stopping) {
        tether__hs_refuse(out, 0, TETHER_REJECT_SHUTDOWN, TETHER_ECLOSED,
                          "the server is shutting down");
        return;
    }
    if (srv->at_cap && !srv->connected) {
        /* a session coming back on a new connection replaces its old one */
        tether__hs_refuse(out, 0, TETHER_REJECT_LIMIT, TETHER_ELIMIT, "too many sessions");
        return;
    }
    if (srv->hash_rc != TETHER_OK || !srv->token_hash) {
        tether__hs_refuse(out, 0, TETHER_REJECT_STORE,
                          srv->hash_rc != TETHER_OK ? srv->hash_rc : TETHER_EINVAL,
                          "server error");
        return;
    }
    int rc = srv->lookup(srv->arg, h->session_id, &out->rec);
    if (rc == TETHER_ENOTFOUND) {
        memset(&out->rec, 0, sizeof out->rec);
        if (h->resume || h->recv_cursor > 0) {
            unknown_with_history(h, srv, out);
            return;
        }
        memcpy(out->rec.id, h->session_id, TETHER__ID_LEN);
        memcpy(out->rec.token, srv->token_hash, TETHER__TOKEN_LEN);
        out->verdict = TETHER__HS_CREATE;
        out->displace = srv->connected;
        return;
    }
    if (rc != TETHER_OK) {
        tether__hs_refuse(out, 0, TETHER_REJECT_STORE, rc, "the server's store failed");
        return;
    }
    if (tether__ct_memcmp(out->rec.token, srv->token_hash, TETHER__TOKEN_LEN) != 0) {
        tether__hs_refuse(out, 0, TETHER_REJECT_TOKEN, TETHER_ETOKEN, "wrong resume token");
        return;
    }
    out->verdict = TETHER__HS_ACCEPT;
    out->displace = srv->connected;
}

int tether__hs_next_frame(tether__hs_out *out, tether__buf *b)
{
    if (out->next >= out->nframes) {
        return 0;
    }
    const tether__hs_frame *f = &out->frames[out->next];
    int rc;
    switch (f->type) {
    case TETHER__F_WELCOME:
        rc = tether__encode_welcome(b, &f->welcome);
        break;
    case TETHER__F_REJECT:
        rc = tether__encode_reject(b, f->code, f->reason);
        break;
    default:
        rc = tether__encode_bye(b, f->code, f->reason);
        break;
    }
    if (rc != TETHER_OK) {
        return rc;
    }
    out->next++;
    return 1;
}

int tether__hs_want_write(const tether__hs_out *out)
{
    return out->next < out->nframes;
}

/*
 * The session engine: lifecycle, the handshake (HELLO/WELCOME), control frames
 * (REJECT/BYE), the order in which frames are written, and the mismatch check.
 * Outgoing messages live in session_send.c, incoming ones in session_recv.c.
 */
#include "session_int.h"
#include "common/alloc.h"

#include "common/killpoint.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- control frames ---- */

static tether__ctl *ctl_push(tether__engine *e, int type)
{
    if (e->ctl_n == TETHER__CTL_MAX) {
        return NULL;
    }
    tether__ctl *c = &e->ctl[(e->ctl_head + e->ctl_n) % TETHER__CTL_MAX];
    e->ctl_n++;
    memset(c, 0, sizeof *c);
    c->type = type;
    return c;
}

/* Copies reason into a BYE, cut at a character boundary to fit the limit.
 * Out of memory, the BYE goes without its reason (its code still says why). */
static void set_reason(tether__ctl *c, const char *reason)
{
    size_t n = reason ? strlen(reason) : 0;
    if (n > TETHER__REASON_MAX) {
        n = TETHER__REASON_MAX;
        while (n > 0 && ((unsigned char)reason[n] & 0xC0) == 0x80) {
            n--;
        }
    }
    c->u.bye.reason = n > 0 ? tether__malloc(n + 1) : NULL;
    if (c->u.bye.reason) {
        memcpy(c->u.bye.reason, reason, n);
        c->u.bye.reason[n] = '\0';
    }
}

/* Frees what a waiting control frame holds. */
static void ctl_release(tether__ctl *c)
{
    if (c->type == TETHER__F_BYE) {
        tether__free(c->u.bye.reason);
        c->u.bye.reason = NULL;
    }
}

/* Drops every waiting control frame. */
static void ctl_clear(tether__engine *e)
{
    for (size_t i = 0; i < e->ctl_n; i++) {
        ctl_release(&e->ctl[(e->ctl_head + i) % TETHER__CTL_MAX]);
    }
    e->ctl_head = 0;
    e->ctl_n = 0;
}

static int push_bye(tether__engine *e, uint32_t code, const char *reason)
{
    tether__ctl *c = ctl_push(e, TETHER__F_BYE);
    if (!c) {
        return TETHER_ENOMEM;
    }
    c->u.bye.code = code;
    set_reason(c, reason);
    return TETHER_OK;
}

static int write_ctl(tether__engine *e, tether__buf *out)
{
    tether__ctl *c = &e->ctl[e->ctl_head];
    int r = TETHER_EINVAL;
    switch (c->type) {
    case TETHER__F_HELLO:
        r = tether__encode_hello(out, &c->u.hello);
        break;
    case TETHER__F_WELCOME:
        r = tether__encode_welcome(out, &c->u.welcome);
        break;
    case TETHER__F_ACK:
        r = tether__encode_ack(out, c->u.ack);
        break;
    case TETHER__F_BYE:
        r = tether__encode_bye(out, c->u.bye.code, c->u.bye.reason ? c->u.bye.reason : "");
        break;
    }
    if (r != TETHER_OK) {
        return r;
    }
    ctl_release(c);
    e->ctl_head = (e->ctl_head + 1) % TETHER__CTL_MAX;
    e->ctl_n--;
    return 1;
}

#define CLOSE_DETAIL sizeof(((tether__engine_event *)0)->detail)

/* The closing reason's words, allocated at the first close of a connection
 * (out of memory: none, the error code still says why). */
static void set_close_detail(tether__engine *e, const char *detail)
{
    if (!e->close_detail) {
        e->close_detail = tether__malloc(CLOSE_DETAIL);
    }
    if (e->close_detail) {
        snprintf(e->close_detail, CLOSE_DETAIL, "%s", detail);
    }
}

void tether__engine_shut(tether__engine *e, tether__engine_event *ev, int err, uint32_t code,
                         const char *fmt, ...)
{
    char detail[CLOSE_DETAIL];
    uint32_t peer_code = ev ? ev->peer_code : 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    e->close_err = err;
    e->close_peer_code = peer_code;
    set_close_detail(e, detail);
    e->closing = 1;
    if (code != TETHER__NO_BYE) {
        push_bye(e, code, detail);
    }
    if (ev) {
        memset(ev, 0, sizeof *ev);
        ev->close = 1;
        ev->error = err;
        ev->peer_code = peer_code;
        snprintf(ev->detail, sizeof ev->detail, "%s", detail);
    }
}

/* Drops everything that belongs to one transport connection. */
static void conn_reset(tether__engine *e)
{
    ctl_clear(e);
    e->hello_out = 0;
    e->live = 0;
    e->closing = 0;
    e->self_err = 0;
    e->after_welcome = 0;
    e->close_err = 0;
    e->close_peer_code = 0;
    tether__free(e->close_detail);
    e->close_detail = NULL;
    tether__engine_ack_sent(e);
}

/* The decoder for the next frame: the one lent, else the engine's own, whose
 * working memory is allocated on first use (an engine that never receives a
 * frame, or whose frames are decoded by a lent one, never holds any). NULL
 * when that allocation fails. */
static tether__decoder *decoder(tether__engine *e)
{
    if (e->lent) {
        return e->lent;
    }
    if (e->dec.max_payload == 0 && tether__decoder_init(&e->dec, e->cfg.max_message) != TETHER_OK) {
        return NULL;
    }
    return &e->dec;
}

/* ---- lifecycle ---- */

static int cfg_valid(const tether__engine_cfg *c)
{
    return (c->role == TETHER__ROLE_CLIENT || c->role == TETHER__ROLE_SERVER) &&
           c->max_message > 0 && c->window > 0 && c->ack_every > 0 && c->ack_delay_ms > 0 &&
           c->run_max_bytes > 0 && c->queue_max_bytes > 0;
}

int tether__engine_create(const tether__engine_cfg *cfg, tether__store *st,
                          const tether__session_rec *rec, const tether__engine_cb *cb,
                          tether__engine **out)
{
    if (!out) {
        return TETHER_EINVAL;
    }
    *out = NULL;
    if (!cfg || !st || !st->ops || !rec || !cfg_valid(cfg) || rec->peer_acked > rec->out_last) {
        return TETHER_EINVAL;
    }
    tether__engine *e = tether__calloc(1, sizeof *e);
    if (!e) {
        return TETHER_ENOMEM;
    }
    e->cfg = *cfg;
    e->st = st;
    e->rec = *rec;
    if (cb) {
        e->cb = *cb;
    }
    /* the decoder's working memory waits for the first frame (decoder()) */
    uint64_t count = 0;
    int r = st->ops->pending(st, rec->id, &count, &e->pend_bytes);
    if (r != TETHER_OK) {
        tether__free(e);
        return r;
    }
    /* Anything in the outbox may have been written by an earlier process. */
    e->resend_hwm = rec->out_last;
    e->next_send = rec->peer_acked + 1;
    e->delivered = rec->recv_cursor;
    e->last_ack = rec->recv_cursor;
    *out = e;
    return TETHER_OK;
}

void tether__engine_destroy(tether__engine *e)
{
    if (!e) {
        return;
    }
    ctl_clear(e);
    tether__engine_send_free(e);
    tether__decoder_free(&e->dec);
    tether__free(e->close_detail);
    tether__free(e);
}

void tether__engine_lend_decoder(tether__engine *e, tether__decoder *d)
{
    if (e) {
        e->lent = d;
    }
}

const tether__session_rec *tether__engine_rec(const tether__engine *e)
{
    return &e->rec;
}

void tether__engine_pending(const tether__engine *e, uint64_t *count, uint64_t *bytes)
{
    if (count) {
        *count = e->rec.out_last - e->rec.peer_acked;
    }
    if (bytes) {
        *bytes = e->pend_bytes;
    }
}

int tether__engine_live(const tether__engine *e)
{
    return e->live && !e->closing;
}

int tether__engine_close_event(const tether__engine *e, tether__engine_event *ev)
{
    if (!e->closing) {
        return 0;
    }
    if (ev) {
        memset(ev, 0, sizeof *ev);
        ev->close = 1;
        ev->error = e->close_err;
        ev->peer_code = e->close_peer_code;
        snprintf(ev->detail, sizeof ev->detail, "%s", e->close_detail ? e->close_detail : "");
    }
    return 1;
}

void tether__engine_debug_mem(const tether__engine *e, size_t *queue_bytes, size_t *queue_peak,
                              size_t *scratch_bytes)
{
    if (queue_bytes) {
        *queue_bytes = e->q_cost;
    }
    if (queue_peak) {
        *queue_peak = e->q_peak;
    }
    if (scratch_bytes) {
        *scratch_bytes = e->sc_cap + e->sc_lcap * sizeof(size_t);
    }
}

/* ---- mismatch ---- */

static void fill_info(const tether__session_rec *local, int peer_knows, uint64_t peer_out_last,
                      uint64_t peer_recv_cursor, tether_mismatch_info *info)
{
    memset(info, 0, sizeof *info);
    memcpy(info->session.bytes, local->id, sizeof info->session.bytes);
    info->peer_knows_session = peer_knows ? 1 : 0;
    info->local_out_last = local->out_last;
    info->local_peer_acked = local->peer_acked;
    info->local_recv_cursor = local->recv_cursor;
    info->peer_out_last = peer_out_last;
    info->peer_recv_cursor = peer_recv_cursor;
    if (peer_recv_cursor < local->peer_acked) {
        info->lost_acked = local->peer_acked - peer_recv_cursor;
    }
    if (peer_out_last < local->recv_cursor) {
        info->unknown_received = local->recv_cursor - peer_out_last;
    }
}

int tether__mismatch_check(const tether__session_rec *local, int peer_knows, int expect_history,
                           uint64_t peer_out_last, uint64_t peer_recv_cursor,
                           tether_mismatch_info *info)
{
    tether_mismatch_info tmp;
    if (!info) {
        info = &tmp;
    }
    fill_info(local, peer_knows, peer_out_last, peer_recv_cursor, info);
    return (expect_history && !peer_knows) || peer_recv_cursor < local->peer_acked ||
           peer_recv_cursor > local->out_last || peer_out_last < local->recv_cursor;
}

/* A sentence for the detail: the first contradiction found. */
static void mismatch_shut(tether__engine *e, tether__engine_event *ev,
                          const tether_mismatch_info *mi)
{
    if (!mi->peer_knows_session) {
        tether__engine_shut(e, ev, TETHER_EMISMATCH, TETHER_REJECT_MISMATCH,
                            "mismatch: the peer lost the session (%llu acked messages lost)",
                            (unsigned long long)mi->lost_acked);
    } else if (mi->lost_acked) {
        tether__engine_shut(e, ev, TETHER_EMISMATCH, TETHER_REJECT_MISMATCH,
                            "mismatch: the peer's cursor %llu is behind our acked %llu",
                            (unsigned long long)mi->peer_recv_cursor,
                            (unsigned long long)mi->local_peer_acked);
    } else if (mi->peer_recv_cursor > mi->local_out_last) {
        tether__engine_shut(e, ev, TETHER_EMISMATCH, TETHER_REJECT_MISMATCH,
                            "mismatch: the peer's cursor %llu is beyond our last seq %llu",
                            (unsigned long long)mi->peer_recv_cursor,
                            (unsigned long long)mi->local_out_last);
    } else {
        tether__engine_shut(e, ev, TETHER_EMISMATCH, TETHER_REJECT_MISMATCH,
                            "mismatch: we received %llu messages the peer never sent",
                            (unsigned long long)mi->unknown_received);
    }
}

/* ---- handshake ---- */

/* The peer's cursor and limits after a consistent HELLO or WELCOME: prunes what
 * it committed, resends from there, persists `established` and goes live. */
static int go_live(tether__engine *e, uint64_t peer_cursor, uint32_t peer_max,
                   uint32_t peer_window, tether__engine_event *ev)
{
    if (peer_cursor > e->rec.peer_acked) {
        int r = tether__engine_peer_acked(e, peer_cursor, ev);
        if (r != TETHER_OK) {
            return r;
        }
    }
    e->next_send = peer_cursor + 1;
    e->peer_max = peer_max;
    e->peer_window = peer_window;
    if (!e->rec.established) {
        TETHER__KILLPOINT_ROLE(e->cfg.role, "before_established");
        tether__session_rec rec = e->rec;
        rec.established = 1;
        int r = e->st->ops->session_put(e->st, &rec);
        if (r != TETHER_OK) {
            tether__engine_shut(e, ev, r, TETHER_REJECT_STORE, "store: cannot record the session: %s",
                                e->st->ops->errmsg(e->st));
            return r;
        }
        e->rec.established = 1;
    }
    e->live = 1;
    return TETHER_OK;
}

int tether__engine_connect(tether__engine *e, uint64_t now_ms)
{
    if (!e || e->cfg.role != TETHER__ROLE_CLIENT) {
        return TETHER_EINVAL;
    }
    tether__engine_disconnect(e);
    tether__ctl *c = ctl_push(e, TETHER__F_HELLO);
    tether__hello *h = &c->u.hello;
    h->version = TETHER__PROTO_VERSION;
    memcpy(h->session_id, e->rec.id, TETHER__ID_LEN);
    memcpy(h->token, e->rec.token, TETHER__TOKEN_LEN);
    h->resume = e->rec.established ? 1 : 0;
    h->recv_cursor = e->rec.recv_cursor;
    h->out_last = e->rec.out_last;
    h->max_message = e->cfg.max_message;
    h->window = e->cfg.window;
    e->hello_out = 1;
    e->last_ack = e->rec.recv_cursor;
    return TETHER_OK;
}

int tether__engine_hello_frame(tether__engine *e, tether__buf *out, uint64_t *cursor)
{
    if (!e || !out || e->cfg.role != TETHER__ROLE_CLIENT) {
        return TETHER_EINVAL;
    }
    tether__hello h;
    memset(&h, 0, sizeof h);
    h.version = TETHER__PROTO_VERSION;
    memcpy(h.session_id, e->rec.id, TETHER__ID_LEN);
    memcpy(h.token, e->rec.token, TETHER__TOKEN_LEN);
    h.resume = e->rec.established ? 1 : 0;
    h.recv_cursor = e->rec.recv_cursor;
    h.out_last = e->rec.out_last;
    h.max_message = e->cfg.max_message;
    h.window = e->cfg.window;
    tether__buf_reset(out);
    int r = tether__encode_hello(out, &h);
    if (r == TETHER_OK && cursor) {
        *cursor = h.recv_cursor;
    }
    return r;
}

int tether__engine_is_welcome(tether__engine *e, const uint8_t *buf, size_t len)
{
    tether__frame f;
    if (!e || tether__decode(&e->dec, buf, len, &f) != TETHER_OK) {
        return 0;
    }
    return f.type == TETHER__F_WELCOME &&
           memcmp(f.u.welcome.session_id, e->rec.id, TETHER__ID_LEN) == 0;
}

int tether__engine_adopt(tether__engine *e, uint64_t hello_cursor)
{
    if (!e || e->cfg.role != TETHER__ROLE_CLIENT || hello_cursor > e->rec.recv_cursor) {
        return TETHER_EINVAL;
    }
    tether__engine_disconnect(e);
    e->hello_out = 1;
    /* the peer was told hello_cursor: what arrived since on the old connection
     * is acknowledged again on this one (its resends are duplicates) */
    e->last_ack = hello_cursor;
    return TETHER_OK;
}

static void queue_welcome(tether__engine *e, int resumed)
{
    tether__ctl *c = ctl_push(e, TETHER__F_WELCOME);
    tether__welcome *w = &c->u.welcome;
    memcpy(w->session_id, e->rec.id, TETHER__ID_LEN);
    w->resumed = resumed;
    w->recv_cursor = e->rec.recv_cursor;
    w->out_last = e->rec.out_last;
    w->max_message = e->cfg.max_message;
    w->window = e->cfg.window;
    e->last_ack = e->rec.recv_cursor;
}

int tether__engine_accept(tether__engine *e, const tether__hello *h, uint64_t now_ms,
                          tether__engine_event *ev)
{
    tether__engine_event dummy;
    if (!ev) {
        ev = &dummy;
    }
    memset(ev, 0, sizeof *ev);
    if (!e || !h || e->cfg.role != TETHER__ROLE_SERVER ||
        memcmp(h->session_id, e->rec.id, TETHER__ID_LEN) != 0) {
        return TETHER_EINVAL;
    }
    tether__engine_disconnect(e);
    tether_mismatch_info mi;
    if (tether__mismatch_check(&e->rec, 1, h->resume, h->out_last, h->recv_cursor, &mi)) {
        if (e->cb.on_mismatch) {
            e->cb.on_mismatch(e->cb.arg, &mi);
        }
        queue_welcome(e, 1);
        mismatch_shut(e, ev, &mi);
        return ev->error;
    }
    /* WELCOME only once the session is recorded as established: a client
     * that got it records the session as established too, and would take a
     * later WELCOME "not resumed" for a server that lost it (EMISMATCH). */
    int resumed = e->rec.established ? 1 : 0;
    int r = go_live(e, h->recv_cursor, h->max_message, h->window, ev);
    if (r == TETHER_OK) {
        queue_welcome(e, resumed);
    }
    return r;
}

static int on_welcome(tether__engine *e, const tether__welcome *w, tether__engine_event *ev)
{
    if (memcmp(w->session_id, e->rec.id, TETHER__ID_LEN) != 0) {
        tether__engine_shut(e, ev, TETHER_EPROTO, TETHER_REJECT_PROTOCOL,
                            "protocol: WELCOME for another session id");
        return ev->error;
    }
    tether_mismatch_info mi;
    if (tether__mismatch_check(&e->rec, w->resumed, e->rec.established, w->out_last,
                               w->recv_cursor, &mi)) {
        if (e->cb.on_mismatch) {
            e->cb.on_mismatch(e->cb.arg, &mi);
        }
        mismatch_shut(e, ev, &mi);
        return ev->error;
    }
    e->hello_out = 0;
    int r = go_live(e, w->recv_cursor, w->max_message, w->window, ev);
    if (r != TETHER_OK) {
        return r;
    }
    e->welcome = *w;
    e->after_welcome = 1;
    ev->welcomed = 1;
    ev->resumed = w->resumed ? 1 : 0;
    return TETHER_OK;
}

/* ---- REJECT and BYE from the peer ---- */

static int reject_err(uint32_t code)
{
    switch (code) {
    case TETHER_REJECT_TOKEN:
        return TETHER_ETOKEN;
    case TETHER_REJECT_VERSION:
        return TETHER_EVERSION;
    case TETHER_REJECT_LIMIT:
        return TETHER_ELIMIT;
    case TETHER_REJECT_MISMATCH:
        return TETHER_EMISMATCH;
    default:
        return TETHER_EREJECTED;
    }
}

static int on_close(tether__engine *e, int type, const tether__close *c, int after_welcome,
                    tether__engine_event *ev)
{
    int reason_len = (int)c->reason.len;
    const char *reason = (const char *)c->reason.data;
    const char *what = type == TETHER__F_REJECT ? "REJECT" : "BYE";
    int err;
    ev->peer_code = c->code;
    if (type == TETHER__F_REJECT) {
        err = reject_err(c->code);
    } else if (c->code == TETHER_REJECT_MISMATCH) {
        err = TETHER_EMISMATCH;
    } else if (c->code == TETHER_REJECT_DISPLACED) {
        err = TETHER_EDISPLACED;
    } else {
        err = TETHER_EPEER_CLOSED;
    }
    if (err == TETHER_EMISMATCH && after_welcome && type == TETHER__F_BYE && e->cb.on_mismatch) {
        /* The server found a contradiction our side of the check cannot see. */
        tether_mismatch_info mi;
        fill_info(&e->rec, e->welcome.resumed, e->welcome.out_last, e->welcome.recv_cursor, &mi);
        e->cb.on_mismatch(e->cb.arg, &mi);
    }
    tether__engine_shut(e, ev, err, TETHER__NO_BYE, "peer sent %s %u%s%.*s", what,
                        (unsigned)c->code, reason_len > 0 ? ": " : "", reason_len,
                        reason ? reason : "");
    return err;
}

/* ---- frames in ---- */

static int on_ack(tether__engine *e, uint64_t n, tether__engine_event *ev)
{
    if (n > e->rec.out_last) {
        tether__engine_shut(e, ev, TETHER_EPROTO, TETHER_REJECT_PROTOCOL,
                            "protocol: ACK %llu beyond our last seq %llu", (unsigned long long)n,
                            (unsigned long long)e->rec.out_last);
        return ev->error;
    }
    if (n <= e->rec.peer_acked) {
        return TETHER_OK; /* stale: an older ACK overtaken by a newer one */
    }
    return tether__engine_peer_acked(e, n, ev);
}

static const char *type_name(int type)
{
    switch (type) {
    case TETHER__F_HELLO:
        return "HELLO";
    case TETHER__F_WELCOME:
        return "WELCOME";
    case TETHER__F_DATA:
        return "DATA";
    case TETHER__F_ACK:
        return "ACK";
    case TETHER__F_REJECT:
        return "REJECT";
    default:
        return "frame";
    }
}

int tether__engine_on_frame(tether__engine *e, const uint8_t *buf, size_t len, uint64_t now_ms,
                            tether__engine_event *ev)
{
    tether__engine_event dummy;
    if (!ev) {
        ev = &dummy;
    }
    memset(ev, 0, sizeof *ev);
    if (!e || (!buf && len > 0)) {
        return TETHER_EINVAL;
    }
    if (e->closing) {
        return TETHER_OK; /* the connection is closing: the rest is ignored */
    }
    int after_welcome = e->after_welcome;
    e->after_welcome = 0;
    tether__frame f;
    tether__decoder *d = decoder(e);
    int r = d ? tether__decode(d, buf, len, &f) : TETHER_ENOMEM;
    if (r != TETHER_OK) {
        uint32_t code = TETHER_REJECT_PROTOCOL;
        if (r == TETHER_EFRAME_OVERSIZE) {
            code = TETHER_REJECT_TOO_BIG;
        } else if (r == TETHER_ENOMEM) {
            code = TETHER_REJECT_NONE;
        }
        tether__engine_shut(e, ev, r, code, "cannot decode a %zu-byte frame: %s", len,
                            tether_strerror(r));
        return r;
    }
    switch (f.type) {
    case TETHER__F_WELCOME:
        if (e->cfg.role == TETHER__ROLE_CLIENT && e->hello_out) {
            return on_welcome(e, &f.u.welcome, ev);
        }
        break;
    case TETHER__F_REJECT:
        /* REJECT answers a HELLO: only a client still waiting for WELCOME takes it */
        if (e->cfg.role == TETHER__ROLE_CLIENT && e->hello_out && !e->live) {
            return on_close(e, f.type, &f.u.close, after_welcome, ev);
        }
        break;
    case TETHER__F_BYE:
        /* recv_lazy: what was delivered is committed before the peer's close is
         * taken, so a refused commit (TETHER_EFENCED) is the close's reason */
        if (e->cfg.recv_lazy && e->live && tether__engine_recv_flush(e, now_ms, 0) != TETHER_OK) {
            tether__engine_close_event(e, ev);
            return ev->error;
        }
        return on_close(e, f.type, &f.u.close, after_welcome, ev);
    case TETHER__F_DATA:
        if (e->live) {
            tether__engine_on_data(e, &f.u.data, now_ms, ev);
            return ev->close ? ev->error : TETHER_OK;
        }
        break;
    case TETHER__F_ACK:
        if (e->live) {
            return on_ack(e, f.u.ack, ev);
        }
        break;
    }
    tether__engine_shut(e, ev, TETHER_EPROTO, TETHER_REJECT_PROTOCOL,
                        "protocol: unexpected %s on the %s side%s", type_name(f.type),
                        e->cfg.role == TETHER__ROLE_CLIENT ? "client" : "server",
                        e->live ? "" : " before the session is live");
    return TETHER_EPROTO;
}

/* ---- frames out ---- */

int tether__engine_next_frame(tether__engine *e, uint64_t now_ms, tether__buf *out)
{
    if (!e || !out) {
        return TETHER_EINVAL;
    }
    if (!e->cfg.recv_lazy) {
        tether__engine_recv_flush(e, now_ms, 0); /* recv_group: before anything is written */
    }
    for (;;) {
        if (e->ctl_n > 0) {
            return write_ctl(e, out);
        }
        if (e->self_err) {
            return e->self_err;
        }
        if (!e->live || e->closing) {
            return 0;
        }
        if (tether__engine_ack_due(e, now_ms)) {
            int r = tether__encode_ack(out, e->rec.recv_cursor);
            if (r != TETHER_OK) {
                return r;
            }
            tether__engine_ack_sent(e);
            return 1;
        }
        int r = tether__engine_write_data(e, out);
        if (r != 2) {
            return r;
        }
        /* The engine closed itself: write the BYE, then report self_err. */
    }
}

int tether__engine_want_write(tether__engine *e, uint64_t now_ms)
{
    if (e->ctl_n > 0 || e->self_err) {
        return 1;
    }
    if (!e->live || e->closing) {
        return 0;
    }
    return tether__engine_ack_due(e, now_ms) || tether__engine_data_ready(e) ||
           tether__engine_recv_due(e);
}

uint64_t tether__engine_deadline(const tether__engine *e)
{
    if (!e->live || e->closing || !e->ack_timer) {
        return UINT64_MAX;
    }
    return e->ack_at;
}

void tether__engine_tick(tether__engine *e, uint64_t now_ms)
{
    if (e->ack_timer && now_ms >= e->ack_at &&
        (!e->cfg.recv_lazy || e->rec.recv_cursor > e->last_ack)) {
        e->ack_now = 1; /* recv_lazy: else the commit comes first (recv_lazy_due) */
    }
}

int tether__engine_close(tether__engine *e, int err, uint32_t code, const char *detail)
{
    if (!e) {
        return TETHER_EINVAL;
    }
    if (e->closing) {
        return TETHER_OK; /* the first reason stands */
    }
    if (code != TETHER__NO_BYE && (e->live || e->hello_out)) {
        if (e->live && e->rec.recv_cursor > e->last_ack) {
            /* Tell the peer what we committed before leaving. */
            tether__ctl *c = ctl_push(e, TETHER__F_ACK);
            if (c) {
                c->u.ack = e->rec.recv_cursor;
                tether__engine_ack_sent(e);
            }
        }
        if (push_bye(e, code, detail) != TETHER_OK) {
            return TETHER_ENOMEM;
        }
    }
    e->closing = 1;
    e->close_err = err;
    e->close_peer_code = 0;
    set_close_detail(e, detail ? detail : "");
    return TETHER_OK;
}

int tether__engine_bye(tether__engine *e, uint32_t code, const char *reason)
{
    if (!e) {
        return TETHER_EINVAL;
    }
    if (e->closing || (!e->live && !e->hello_out)) {
        return TETHER_OK; /* already closing, or no connection to close */
    }
    if (tether__engine_recv_flush(e, e->ack_at, 0) != TETHER_OK) {
        return TETHER_OK; /* closing already, with BYE(STORE) */
    }
    int r = tether__engine_close(e, TETHER_OK, code, reason);
    if (r == TETHER_OK) {
        char detail[CLOSE_DETAIL];
        snprintf(detail, sizeof detail, "closed by us with BYE %u", (unsigned)code);
        set_close_detail(e, detail);
    }
    return r;
}

void tether__engine_disconnect(tether__engine *e)
{
    if (!e) {
        return;
    }
    tether__engine_recv_flush(e, e->ack_at, 1); /* what was delivered counts as received */
    if (e->next_send > 0 && e->next_send - 1 > e->resend_hwm) {
        e->resend_hwm = e->next_send - 1;
    }
    e->next_send = e->rec.peer_acked + 1;
    conn_reset(e);
}

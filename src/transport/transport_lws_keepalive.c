/*
 * The server's liveness checks, part of the libwebsockets glue: a WebSocket
 * ping when no pong confirmed a connection for ping_interval_ms, and a
 * hang-up when pong_timeout_ms more pass without one.
 *
 * libwebsockets would do this itself (its "validity" timer, set through
 * retry_and_idle_policy), but it keeps every connection's timer in one
 * sorted list and re-inserts it, walking the list from its head, when the
 * connection opens, at every ping and at every pong. At 20,000 connections
 * that walk took ~80% of the server's CPU, most of it while idle, and new
 * connections waited behind it (docs/performance.md, "20,000 sessions").
 * Here every connection is in one of two FIFO queues (common/keepalive.h),
 * O(1) per connection, checked by one libuv timer on the service thread.
 * The client, with one connection, keeps lws's timer.
 */
#include "transport_lws_int.h"

#define KA_NODE_CONN(n) ((tether__conn *)((char *)(n)-offsetof(tether__conn, ka)))

/* The queues' resolution: a ping or hang-up is at most this late, ms. */
#define KA_TICK_MS 100

static void ka_ping(tether__ka_node *n, void *arg)
{
    tether__conn *c = KA_NODE_CONN(n);
    (void)arg;
    if (c->wsi && !c->ended) {
        c->ping_due = 1;
        lws_callback_on_writable(c->wsi);
    }
}

static void ka_dead(tether__ka_node *n, void *arg)
{
    tether__conn *c = KA_NODE_CONN(n);
    (void)arg;
    if (c->wsi && !c->ended) {
        /* closed now, whatever its send buffer holds (a dead peer may never
         * make it writable again); CLOSED reports it as our hang-up */
        c->ka_hup = 1;
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    }
}

static void ka_timer_cb(uv_timer_t *t)
{
    tether__tp *tp = t->data;
    if (atomic_load(&tp->stop)) {
        return;
    }
    tether__ka_advance(&tp->ka, tether__now_ms(), ka_ping, ka_dead, tp);
    if (tether__ka_count(&tp->ka) == 0) {
        uv_timer_stop(&tp->ka_timer); /* started again by the next connection */
    }
}

int tether__tp_ka_setup(tether__tp *tp)
{
    tether__ka_init(&tp->ka, tp->cfg.ping_interval_ms, tp->cfg.pong_timeout_ms);
    if (uv_timer_init(&tp->loop, &tp->ka_timer) != 0) {
        return -1;
    }
    tp->ka_timer.data = tp;
    tp->ka_on = 1;
    return 0;
}

void tether__tp_ka_start(tether__conn *c)
{
    tether__tp *tp = c->tp;
    if (!tp->ka_on) {
        return;
    }
    tether__ka_confirm(&tp->ka, &c->ka, tether__now_ms());
    if (!uv_is_active((uv_handle_t *)&tp->ka_timer)) {
        uv_timer_start(&tp->ka_timer, ka_timer_cb, KA_TICK_MS, KA_TICK_MS);
    }
}

void tether__tp_ka_pong(tether__conn *c)
{
    if (c->ka.q != TETHER__KA_NONE) {
        tether__ka_confirm(&c->tp->ka, &c->ka, tether__now_ms());
    }
}

void tether__tp_ka_stop(tether__conn *c)
{
    if (c->ka.q != TETHER__KA_NONE) {
        tether__ka_remove(&c->tp->ka, &c->ka);
    }
    c->ping_due = 0;
}

int tether__tp_ka_write(tether__conn *c)
{
    unsigned char buf[LWS_PRE + 8];
    if (!c->ping_due || !c->wsi) {
        return 0;
    }
    c->ping_due = 0;
    /* a payload (the time, 8 bytes), echoed by the pong: lws 4.1.6 reports an
     * empty pong to nobody (RECEIVE_PONG is skipped), so it would never count */
    uint64_t now = tether__now_ms();
    memcpy(buf + LWS_PRE, &now, sizeof now);
    if (lws_write(c->wsi, buf + LWS_PRE, sizeof now, LWS_WRITE_PING) < 0) {
        return -1;
    }
    /* one write per writable callback: the owner's frames get the next one */
    lws_callback_on_writable(c->wsi);
    return 1;
}

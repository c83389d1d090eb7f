/* The pump between a connection's frames and its transport connection (link.h). */
#include "link.h"

#include <stdint.h>
#include <string.h>

int tether__link_pump(const tether__link_src *src, const tether__link_sink *sink, tether__buf *b,
                      uint64_t now_ms)
{
    int rc = src->next(src->arg, now_ms, b);
    if (rc < 0) {
        sink->close(sink->arg);
        return rc;
    }
    if (rc == 1) {
        rc = sink->write(sink->arg, b);
        if (rc != TETHER_OK) {
            sink->close(sink->arg);
            return rc;
        }
        if (src->want(src->arg, now_ms) || src->closing(src->arg)) {
            sink->want_write(sink->arg);
        }
        return TETHER_OK;
    }
    if (src->closing(src->arg)) {
        sink->close(sink->arg);
    }
    return TETHER_OK;
}

/* ---- the engine as a source ---- */

static int eng_next(void *arg, uint64_t now_ms, tether__buf *out)
{
    return tether__engine_next_frame(arg, now_ms, out);
}

static int eng_want(void *arg, uint64_t now_ms)
{
    return tether__engine_want_write(arg, now_ms);
}

static int eng_closing(void *arg)
{
    return tether__engine_close_event(arg, NULL);
}

void tether__link_engine_src(tether__engine *e, tether__link_src *src)
{
    src->next = eng_next;
    src->want = eng_want;
    src->closing = eng_closing;
    src->arg = e;
}

/* ---- a handshake answer as a source ---- */

static int hs_next(void *arg, uint64_t now_ms, tether__buf *out)
{
    (void)now_ms;
    return tether__hs_next_frame(arg, out);
}

static int hs_want(void *arg, uint64_t now_ms)
{
    (void)now_ms;
    return tether__hs_want_write(arg);
}

static int hs_closing(void *arg)
{
    const tether__hs_out *hs = arg;
    return hs->nframes > 0; /* every answer that has frames ends the connection */
}

void tether__link_hs_src(tether__hs_out *hs, tether__link_src *src)
{
    src->next = hs_next;
    src->want = hs_want;
    src->closing = hs_closing;
    src->arg = hs;
}

/* ---- the transport connection as a sink ---- */

static int conn_write(void *arg, tether__buf *b)
{
    return tether__conn_write(arg, b);
}

static void conn_want(void *arg)
{
    tether__conn_want_write(arg);
}

static void conn_close(void *arg)
{
    tether__conn_close(arg);
}

void tether__link_conn_sink(tether__conn *c, tether__link_sink *sink)
{
    sink->write = conn_write;
    sink->want_write = conn_want;
    sink->close = conn_close;
    sink->arg = c;
}

int tether__link_pump_engine(tether__engine *e, tether__conn *c, tether__buf *b, uint64_t now_ms)
{
    tether__link_src src;
    tether__link_sink sink;
    tether__link_engine_src(e, &src);
    tether__link_conn_sink(c, &sink);
    int rc = tether__link_pump(&src, &sink, b, now_ms);
    if (rc != TETHER_OK) {
        /* no-op when the engine closed itself: its reason stands */
        tether__engine_close(e, rc, TETHER__NO_BYE, "writing to the connection failed");
    }
    return rc;
}

int tether__link_pump_hs(tether__hs_out *hs, tether__conn *c, tether__buf *b)
{
    tether__link_src src;
    tether__link_sink sink;
    tether__link_hs_src(hs, &src);
    tether__link_conn_sink(c, &sink);
    return tether__link_pump(&src, &sink, b, 0);
}

void tether__link_arm(tether__engine *e, tether__conn *c, uint64_t now_ms, uint64_t extra)
{
    uint64_t when = tether__engine_deadline(e);
    if (extra < when) {
        when = extra;
    }
    if (when == UINT64_MAX) {
        tether__conn_timer_cancel(c);
        return;
    }
    /* never 0: a deadline already due (an ACK waiting for the writable
       callback) re-armed at 0 from the timer callback would fire again at
       once and keep the loop from ever polling the socket */
    tether__conn_timer(c, when > now_ms ? when - now_ms : 1);
}

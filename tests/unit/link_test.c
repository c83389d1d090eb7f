/*
 * The common pieces between an engine and a connection, without sockets: the
 * pump (common/link.c) driven with a fake sink, back-pressure reports
 * (common/backpressure.c), the engine configuration limits
 * (common/engine_cfg.c) and the close-code mapping (common/close_code.c).
 */
#include "harness.h"

#include <tether/tether.h>

#include "common/backpressure.h"
#include "common/close_code.h"
#include "common/defaults.h"
#include "common/engine_cfg.h"
#include "common/link.h"
#include "store/store.h"

/* ---- a fake connection ---- */

typedef struct sink_rec {
    int writes;        /* frames written */
    int types[16];     /* their types, decoded */
    uint32_t codes[16]; /* BYE/REJECT codes */
    int want;          /* want_write calls */
    int closed;        /* close calls */
    int fail_write;    /* write returns this when non-zero */
    tether__decoder dec; /* decodes what is written */
} sink_rec;

static int s_write(void *arg, tether__buf *b)
{
    sink_rec *r = arg;
    tether__frame f;
    if (r->fail_write) {
        return r->fail_write;
    }
    CHECK_OK(tether__decode(&r->dec, tether__buf_frame(b), b->len, &f));
    if (r->writes < 16) {
        r->types[r->writes] = f.type;
        r->codes[r->writes] =
            f.type == TETHER__F_BYE || f.type == TETHER__F_REJECT ? f.u.close.code : 0;
    }
    r->writes++;
    return TETHER_OK;
}

static void s_want(void *arg)
{
    ((sink_rec *)arg)->want++;
}

static void s_close(void *arg)
{
    ((sink_rec *)arg)->closed++;
}

static void sink_init(sink_rec *r, tether__link_sink *k)
{
    memset(r, 0, sizeof *r);
    tether__decoder_init(&r->dec, 1 << 16);
    k->write = s_write;
    k->want_write = s_want;
    k->close = s_close;
    k->arg = r;
}

/* Runs the pump the way a transport does: once per requested writable call,
 * at most max times. Returns the first error, or TETHER_OK. */
static int drive(const tether__link_src *src, const tether__link_sink *k, sink_rec *r,
                 tether__buf *b, int max)
{
    int rc = TETHER_OK;
    for (int i = 0; i < max && !r->closed; i++) {
        int before = r->want;
        rc = tether__link_pump(src, k, b, 0);
        if (rc != TETHER_OK || r->want == before) {
            break;
        }
    }
    return rc;
}

/* ---- an engine on a memory store ---- */

typedef struct eng {
    tether__store *st; /* memory store */
    tether__engine *e; /* the engine */
} eng;

static void eng_open(eng *x, tether__store_role role, uint32_t window)
{
    tether__session_rec rec;
    tether__engine_cfg c;
    memset(&rec, 0, sizeof rec);
    memset(rec.id, 0x33, sizeof rec.id);
    CHECK_OK(tether__store_memory_open(role, &x->st));
    CHECK_OK(x->st->ops->session_put(x->st, &rec));
    CHECK_OK(tether__engine_cfg_fill(&c, role, 4096, window, 0, 0, 0, 0, 0, 1 << 16));
    CHECK_OK(tether__engine_create(&c, x->st, &rec, NULL, &x->e));
}

static void eng_close(eng *x)
{
    tether__engine_destroy(x->e);
    x->st->ops->close(x->st);
}

/* A live server engine: its WELCOME is still queued. */
static void eng_live(eng *x, uint32_t window)
{
    tether__hello h;
    tether__engine_event ev;
    eng_open(x, TETHER__ROLE_SERVER, window);
    memset(&h, 0, sizeof h);
    h.version = 1;
    memset(h.session_id, 0x33, sizeof h.session_id);
    h.max_message = 4096;
    h.window = 64;
    CHECK_OK(tether__engine_accept(x->e, &h, 0, &ev));
}

static void send_n(eng *x, int n)
{
    for (int i = 0; i < n; i++) {
        uint8_t p[8] = {(uint8_t)i};
        tether_msg m = {p, sizeof p};
        CHECK_OK(tether__engine_send(x->e, &m, 1, NULL));
    }
}

TEST(pump_writes_what_the_engine_has_and_stops)
{
    eng x;
    sink_rec r;
    tether__link_sink k;
    tether__link_src src;
    tether__buf b;
    eng_live(&x, 1024);
    send_n(&x, 3);
    sink_init(&r, &k);
    tether__link_engine_src(x.e, &src);
    tether__buf_init(&b, 0);
    CHECK_OK(drive(&src, &k, &r, &b, 32));
    CHECK(r.writes >= 2);
    CHECK_EQ_INT(r.types[0], TETHER__F_WELCOME);
    CHECK_EQ_INT(r.types[1], TETHER__F_DATA);
    CHECK_EQ_INT(r.closed, 0); /* not closing: the connection stays */
    CHECK(!tether__engine_want_write(x.e, 0));
    /* nothing to write: one more call writes nothing and asks for nothing */
    int w = r.writes, want = r.want;
    CHECK_OK(tether__link_pump(&src, &k, &b, 0));
    CHECK_EQ_INT(r.writes, w);
    CHECK_EQ_INT(r.want, want);
    tether__buf_free(&b);
    tether__decoder_free(&r.dec);
    eng_close(&x);
}

TEST(pump_closes_after_the_queued_bye)
{
    eng x;
    sink_rec r;
    tether__link_sink k;
    tether__link_src src;
    tether__buf b;
    eng_live(&x, 1024);
    CHECK_OK(tether__engine_close(x.e, TETHER_ECLOSED, TETHER_REJECT_SHUTDOWN, "bye"));
    sink_init(&r, &k);
    tether__link_engine_src(x.e, &src);
    tether__buf_init(&b, 0);
    CHECK_OK(drive(&src, &k, &r, &b, 32));
    CHECK_EQ_INT(r.writes, 2);
    CHECK_EQ_INT(r.types[0], TETHER__F_WELCOME);
    CHECK_EQ_INT(r.types[1], TETHER__F_BYE);
    CHECK_EQ_U64(r.codes[1], TETHER_REJECT_SHUTDOWN);
    CHECK_EQ_INT(r.closed, 1); /* closed only once everything was written */
    tether__buf_free(&b);
    tether__decoder_free(&r.dec);
    eng_close(&x);
}

TEST(pump_closes_when_the_engine_closes_itself)
{
    eng x;
    sink_rec r;
    tether__link_sink k;
    tether__link_src src;
    tether__buf b;
    tether__hello h;
    tether__engine_event ev;
    /* the peer accepts 4 bytes; the stored message has 8 */
    eng_open(&x, TETHER__ROLE_SERVER, 1024);
    send_n(&x, 1);
    memset(&h, 0, sizeof h);
    h.version = 1;
    memset(h.session_id, 0x33, sizeof h.session_id);
    h.max_message = 4;
    h.window = 64;
    CHECK_OK(tether__engine_accept(x.e, &h, 0, &ev));
    sink_init(&r, &k);
    tether__link_engine_src(x.e, &src);
    tether__buf_init(&b, 0);
    CHECK_ERR(drive(&src, &k, &r, &b, 32), TETHER_ETOOBIG);
    CHECK(r.writes >= 1);
    CHECK_EQ_INT(r.types[r.writes - 1], TETHER__F_BYE);
    CHECK_EQ_U64(r.codes[r.writes - 1], TETHER_REJECT_TOO_BIG);
    CHECK_EQ_INT(r.closed, 1);
    CHECK(tether__engine_close_event(x.e, &ev));
    CHECK_EQ_INT(ev.error, TETHER_ETOOBIG);
    tether__buf_free(&b);
    tether__decoder_free(&r.dec);
    eng_close(&x);
}

TEST(pump_closes_on_a_failed_write)
{
    eng x;
    sink_rec r;
    tether__link_sink k;
    tether__link_src src;
    tether__buf b;
    eng_live(&x, 1024);
    sink_init(&r, &k);
    r.fail_write = TETHER_ECONNECT;
    tether__link_engine_src(x.e, &src);
    tether__buf_init(&b, 0);
    CHECK_ERR(tether__link_pump(&src, &k, &b, 0), TETHER_ECONNECT);
    CHECK_EQ_INT(r.closed, 1);
    CHECK_EQ_INT(r.want, 0);
    tether__buf_free(&b);
    tether__decoder_free(&r.dec);
    eng_close(&x);
}

TEST(pump_writes_a_handshake_answer_then_closes)
{
    sink_rec r;
    tether__link_sink k;
    tether__link_src src;
    tether__buf b;
    tether__hs_out hs;
    memset(&hs, 0, sizeof hs);
    sink_init(&r, &k);
    tether__link_hs_src(&hs, &src);
    tether__buf_init(&b, 0);
    /* no answer yet (waiting for HELLO): nothing written, not closed */
    CHECK_OK(tether__link_pump(&src, &k, &b, 0));
    CHECK_EQ_INT(r.writes, 0);
    CHECK_EQ_INT(r.closed, 0);
    tether__hs_refuse(&hs, 0, TETHER_REJECT_LIMIT, TETHER_ELIMIT, "full");
    CHECK_OK(drive(&src, &k, &r, &b, 8));
    CHECK_EQ_INT(r.writes, 1);
    CHECK_EQ_INT(r.types[0], TETHER__F_REJECT);
    CHECK_EQ_U64(r.codes[0], TETHER_REJECT_LIMIT);
    CHECK_EQ_INT(r.closed, 1);
    tether__buf_free(&b);
    tether__decoder_free(&r.dec);
}

/* ---- back-pressure ---- */

TEST(backpressure_window_full_then_open)
{
    eng x;
    tether__bp bp;
    tether_backpressure_info bi[2];
    eng_open(&x, TETHER__ROLE_CLIENT, 4);
    memset(&bp, 0, sizeof bp);
    send_n(&x, 3);
    CHECK_EQ_INT(tether__bp_after_send(&bp, x.e, 4, TETHER_OK), 0);
    CHECK_EQ_INT(tether__bp_update(&bp, x.e, 4, 0, 0, bi), 0);
    send_n(&x, 1);
    CHECK_EQ_INT(tether__bp_after_send(&bp, x.e, 4, TETHER_OK), 1);
    CHECK_EQ_INT(tether__bp_update(&bp, x.e, 4, 0, 0, bi), 1);
    CHECK_EQ_INT(bi[0].kind, TETHER_BP_WINDOW_FULL);
    CHECK_EQ_U64(bi[0].pending_messages, 4);
    CHECK_EQ_U64(bi[0].pending_bytes, 32);
    /* reported once */
    CHECK_EQ_INT(tether__bp_update(&bp, x.e, 4, 0, 0, bi), 0);
    eng_close(&x);
}

TEST(backpressure_outbox_full_reported_once_and_opens_after_acks)
{
    eng x;
    tether__bp bp;
    tether_backpressure_info bi[2];
    tether__engine_event ev;
    tether__hello h;
    eng_open(&x, TETHER__ROLE_SERVER, 1024);
    memset(&bp, 0, sizeof bp);
    send_n(&x, 2);
    CHECK_EQ_INT(tether__bp_after_send(&bp, x.e, 1024, TETHER_EOUTBOX_FULL), 1);
    CHECK_EQ_INT(tether__bp_update(&bp, x.e, 1024, 2, 0, bi), 1);
    CHECK_EQ_INT(bi[0].kind, TETHER_BP_OUTBOX_FULL);
    CHECK_EQ_U64(bi[0].pending_messages, 2);
    /* a second refused send while already full is not reported again */
    CHECK_EQ_INT(tether__bp_after_send(&bp, x.e, 1024, TETHER_EOUTBOX_FULL), 0);
    CHECK_EQ_INT(tether__bp_update(&bp, x.e, 1024, 2, 0, bi), 0);
    /* the peer acknowledges 1: room again */
    memset(&h, 0, sizeof h);
    h.version = 1;
    memset(h.session_id, 0x33, sizeof h.session_id);
    h.max_message = 4096;
    h.window = 64;
    h.recv_cursor = 1;
    CHECK_OK(tether__engine_accept(x.e, &h, 0, &ev));
    CHECK_EQ_INT(tether__bp_update(&bp, x.e, 1024, 2, 0, bi), 1);
    CHECK_EQ_INT(bi[0].kind, TETHER_BP_OUTBOX_OPEN);
    CHECK_EQ_U64(bi[0].pending_messages, 1);
    eng_close(&x);
}

/* ---- engine configuration ---- */

TEST(engine_cfg_defaults_and_limits)
{
    tether__engine_cfg c;
    CHECK_OK(tether__engine_cfg_fill(&c, TETHER__ROLE_CLIENT, 0, 0, 0, 0, 0, 0, 0, 100));
    CHECK_EQ_U64(c.max_message, TETHER__DEFAULT_MAX_MESSAGE);
    CHECK_EQ_U64(c.window, TETHER__DEFAULT_WINDOW);
    CHECK_EQ_U64(c.ack_every, TETHER__DEFAULT_ACK_EVERY);
    CHECK_EQ_U64(c.ack_delay_ms, TETHER__DEFAULT_ACK_DELAY_MS);
    CHECK_EQ_U64(c.run_max_bytes, TETHER__RUN_MAX_BYTES);
    CHECK_EQ_U64(c.queue_max_bytes, 100);
    /* the default ACK count is at most half a small window, at least 1 */
    CHECK_OK(tether__engine_cfg_fill(&c, TETHER__ROLE_SERVER, 0, 10, 0, 0, 0, 0, 1, 100));
    CHECK_EQ_U64(c.ack_every, 5);
    CHECK_EQ_INT(c.manual_ack, 1);
    CHECK_OK(tether__engine_cfg_fill(&c, TETHER__ROLE_SERVER, 0, 1, 0, 0, 0, 0, 0, 100));
    CHECK_EQ_U64(c.ack_every, 1);
    /* at each limit: accepted; one above: refused, never clamped */
    CHECK_OK(tether__engine_cfg_fill(&c, TETHER__ROLE_CLIENT, TETHER__LIMIT_MAX_MESSAGE,
                                     TETHER__LIMIT_WINDOW, 0, TETHER__LIMIT_ACK_DELAY_MS, 0, 0, 0,
                                     100));
    CHECK_ERR(tether__engine_cfg_fill(&c, TETHER__ROLE_CLIENT, TETHER__LIMIT_MAX_MESSAGE + 1, 0,
                                      0, 0, 0, 0, 0, 100),
              TETHER_ECONFIG);
    CHECK(strstr(tether_errmsg(), "max_message_bytes") != NULL);
    CHECK_ERR(tether__engine_cfg_fill(&c, TETHER__ROLE_CLIENT, 0, TETHER__LIMIT_WINDOW + 1, 0, 0,
                                      0, 0, 0, 100),
              TETHER_ECONFIG);
    CHECK(strstr(tether_errmsg(), "window_messages") != NULL);
    CHECK_ERR(tether__engine_cfg_fill(&c, TETHER__ROLE_CLIENT, 0, 8, 9, 0, 0, 0, 0, 100),
              TETHER_ECONFIG);
    CHECK(strstr(tether_errmsg(), "ack_every") != NULL);
    CHECK_ERR(tether__engine_cfg_fill(&c, TETHER__ROLE_CLIENT, 0, 0, 0,
                                      TETHER__LIMIT_ACK_DELAY_MS + 1, 0, 0, 0, 100),
              TETHER_ECONFIG);
    CHECK(strstr(tether_errmsg(), "ack_delay_ms") != NULL);
}

/* ---- close codes ---- */

TEST(close_codes_for_errors)
{
    CHECK_EQ_U64(tether__close_code(TETHER_EFRAME_OVERSIZE), TETHER_REJECT_TOO_BIG);
    CHECK_EQ_U64(tether__close_code(TETHER_ETOOBIG), TETHER_REJECT_TOO_BIG);
    CHECK_EQ_U64(tether__close_code(TETHER_EMISMATCH), TETHER_REJECT_MISMATCH);
    CHECK_EQ_U64(tether__close_code(TETHER_ESTORE), TETHER_REJECT_STORE);
    CHECK_EQ_U64(tether__close_code(TETHER_ESTORE_FULL), TETHER_REJECT_STORE);
    CHECK_EQ_U64(tether__close_code(TETHER_ESTORE_CORRUPT), TETHER_REJECT_STORE);
    CHECK_EQ_U64(tether__close_code(TETHER_ESTORE_READONLY), TETHER_REJECT_STORE);
    CHECK_EQ_U64(tether__close_code(TETHER_EMALFORMED), TETHER_REJECT_PROTOCOL);
    CHECK_EQ_U64(tether__close_code(TETHER_EGAP), TETHER_REJECT_PROTOCOL);
}

TEST(close_errors_each_side_reports)
{
    tether__engine_event ev;
    memset(&ev, 0, sizeof ev);
    ev.close = 1;
    ev.error = TETHER_EPEER_CLOSED;
    CHECK_EQ_INT(tether__close_server_error(&ev), TETHER_OK); /* a graceful BYE(0) */
    CHECK_EQ_INT(tether__close_client_error(&ev), TETHER_EPEER_CLOSED);
    ev.peer_code = TETHER_REJECT_TOO_BIG;
    CHECK_EQ_INT(tether__close_server_error(&ev), TETHER_EPEER_CLOSED);
    CHECK_EQ_INT(tether__close_client_error(&ev), TETHER_ETOOBIG);
    ev.peer_code = TETHER_REJECT_DISPLACED;
    ev.error = TETHER_EDISPLACED;
    CHECK_EQ_INT(tether__close_client_error(&ev), TETHER_EDISPLACED);
    ev.peer_code = 0;
    ev.error = TETHER_ECLOSED;
    CHECK_EQ_INT(tether__close_server_error(&ev), TETHER_ECLOSED);
    ev.error = TETHER_OK; /* our own graceful close */
    CHECK_EQ_INT(tether__close_client_error(&ev), TETHER_EPEER_CLOSED);
}

int main(void)
{
    RUN(pump_writes_what_the_engine_has_and_stops);
    RUN(pump_closes_after_the_queued_bye);
    RUN(pump_closes_when_the_engine_closes_itself);
    RUN(pump_closes_on_a_failed_write);
    RUN(pump_writes_a_handshake_answer_then_closes);
    RUN(backpressure_window_full_then_open);
    RUN(backpressure_outbox_full_reported_once_and_opens_after_acks);
    RUN(engine_cfg_defaults_and_limits);
    RUN(close_codes_for_errors);
    RUN(close_errors_each_side_reports);
    return tt_finish();
}

/*
 * The handshake's corner cases on the wire (proto/PROTOCOL.md sections 4, 6,
 * 9 and 10): a real tether server against a raw WebSocket client, and real
 * clients against it.
 *
 * - a server-only frame (REJECT, WELCOME) from a client after WELCOME: BYE(4);
 * - an unknown session whose HELLO claims history through its receive cursor:
 *   WELCOME resumed=0, BYE(6), nothing created;
 * - a connection displaced by a newer HELLO of its session: BYE(9), and a
 *   displaced tether client stops instead of fighting back;
 * - a first message over 1024 bytes: BYE(7).
 *
 * Loopback only, ports picked by the OS, every wait bounded.
 */
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/frame.h"
#include "harness.h"
#include "itest.h"
#include "rawws.h"

#define WAIT_MS 5000u /* bound for anything that should happen promptly */
#define READ_MS 3000u /* bound for one frame from the server */

/* ---- the server under test ---- */

static atomic_int last_close_error; /* error of the last on_session_close */

static void s_close(tether_server *s, const tether_session_id *id, int error, void *user)
{
    recorder *r = user;
    (void)s;
    (void)id;
    atomic_store(&last_close_error, error);
    pthread_mutex_lock(&r->mu);
    r->closes++;
    pthread_mutex_unlock(&r->mu);
}

/* The shared test server (support/itest.h), with close errors recorded. */
static int hs_srv_start(srv *k)
{
    srv_init(k);
    k->cfg.cb.on_session_close = s_close;
    atomic_store(&last_close_error, INT_MIN);
    return srv_start(k);
}

static int srv_count(srv *k, const int *field)
{
    pthread_mutex_lock(&k->rec.mu);
    int n = *field;
    pthread_mutex_unlock(&k->rec.mu);
    return n;
}

/* ---- a raw client with a codec ---- */

typedef struct peer {
    rawws_conn c;        /* the connection */
    tether__decoder dec; /* decodes what the server sends */
    tether__buf out;     /* frame being sent */
    rawws_msg msg;       /* the last message read; f points into it */
    tether__frame f;     /* the last frame read */
} peer;

static int peer_open(peer *p, uint16_t port)
{
    memset(p, 0, sizeof *p);
    tether__decoder_init(&p->dec, 1u << 20);
    tether__buf_init(&p->out, 0);
    return rawws_open(&p->c, port);
}

static void peer_close(peer *p)
{
    rawws_msg_free(&p->msg);
    rawws_conn_close(&p->c);
    tether__decoder_free(&p->dec);
    tether__buf_free(&p->out);
}

/* The next binary frame: TETHER_OK, a decode error, TETHER_ETIMEDOUT or TETHER_ECLOSED. */
static int peer_read(peer *p)
{
    uint64_t end = rawws_now_ms() + READ_MS;
    rawws_msg_free(&p->msg);
    for (;;) {
        uint64_t now = rawws_now_ms();
        int r = rawws_read_msg(&p->c, &p->msg, now < end ? (unsigned)(end - now) : 0);
        if (r == 0) {
            return TETHER_ETIMEDOUT;
        }
        if (r < 0 || p->msg.opcode == RAWWS_CLOSE) {
            rawws_msg_free(&p->msg);
            return TETHER_ECLOSED;
        }
        if (p->msg.opcode == RAWWS_BINARY) {
            return tether__decode(&p->dec, p->msg.data, p->msg.len, &p->f);
        }
        rawws_msg_free(&p->msg);
    }
}

static int peer_send(peer *p)
{
    return rawws_send(&p->c, RAWWS_BINARY, tether__buf_frame(&p->out), p->out.len);
}

static void hello_init(tether__hello *h, uint8_t id_byte)
{
    memset(h, 0, sizeof *h);
    h->version = 1;
    memset(h->session_id, id_byte, sizeof h->session_id);
    memset(h->token, 0x5a, sizeof h->token);
    h->max_message = 1u << 20;
    h->window = 1024;
}

static int peer_hello(peer *p, const tether__hello *h)
{
    if (tether__encode_hello(&p->out, h) != TETHER_OK) {
        return -1;
    }
    return peer_send(p);
}

/* Reads the next frame and checks it is a BYE with code, then the server closes. */
static void expect_bye_then_eof(peer *p, uint32_t code)
{
    CHECK_OK(peer_read(p));
    CHECK_EQ_INT(p->f.type, TETHER__F_BYE);
    CHECK_EQ_U64(p->f.u.close.code, code);
    CHECK(rawws_wait_eof(&p->c, WAIT_MS));
}

/* A live raw session: HELLO (new session), WELCOME. */
static void peer_live(peer *p, srv *k, uint8_t id_byte)
{
    tether__hello h;
    hello_init(&h, id_byte);
    CHECK_EQ_INT(peer_open(p, k->port), 0);
    CHECK_EQ_INT(peer_hello(p, &h), 0);
    CHECK_OK(peer_read(p));
    CHECK_EQ_INT(p->f.type, TETHER__F_WELCOME);
}

/* ---- 5a: server-only frames from a client ---- */

static int closed_once(void *arg)
{
    srv *k = arg;
    return srv_count(k, &k->rec.closes) >= 1;
}


TEST(server_answers_reject_from_a_client_with_bye_4)
{
    srv k;
    peer p;
    CHECK_OK(hs_srv_start(&k));
    peer_live(&p, &k, 0x61);
    CHECK_OK(tether__encode_reject(&p.out, TETHER_REJECT_TOKEN, "a client has nothing to reject"));
    CHECK_EQ_INT(peer_send(&p), 0);
    expect_bye_then_eof(&p, TETHER_REJECT_PROTOCOL);
    CHECK(wait_until(closed_once, &k, WAIT_MS));
    CHECK_EQ_INT(srv_count(&k, &k.rec.closes), 1);
    CHECK_EQ_INT(atomic_load(&last_close_error), TETHER_EPROTO);
    peer_close(&p);
    srv_free(&k);
}

TEST(server_answers_welcome_from_a_client_with_bye_4)
{
    srv k;
    peer p;
    tether__welcome w;
    CHECK_OK(hs_srv_start(&k));
    peer_live(&p, &k, 0x62);
    memset(&w, 0, sizeof w);
    memset(w.session_id, 0x62, sizeof w.session_id);
    w.max_message = 1024;
    w.window = 16;
    CHECK_OK(tether__encode_welcome(&p.out, &w));
    CHECK_EQ_INT(peer_send(&p), 0);
    expect_bye_then_eof(&p, TETHER_REJECT_PROTOCOL);
    peer_close(&p);
    srv_free(&k);
}

/* ---- 5b: an unknown session claiming history through its cursor ---- */

TEST(unknown_session_with_a_receive_cursor_is_a_mismatch)
{
    srv k;
    peer p;
    tether__hello h;
    CHECK_OK(hs_srv_start(&k));
    CHECK_EQ_INT(peer_open(&p, k.port), 0);
    hello_init(&h, 0x63);
    h.resume = 0;
    h.recv_cursor = 5;
    h.out_last = 2;
    CHECK_EQ_INT(peer_hello(&p, &h), 0);
    CHECK_OK(peer_read(&p));
    CHECK_EQ_INT(p.f.type, TETHER__F_WELCOME);
    CHECK_EQ_INT(p.f.u.welcome.resumed, 0);
    CHECK_EQ_U64(p.f.u.welcome.recv_cursor, 0);
    CHECK_EQ_U64(p.f.u.welcome.out_last, 0);
    expect_bye_then_eof(&p, TETHER_REJECT_MISMATCH);
    pthread_mutex_lock(&k.rec.mu);
    CHECK_EQ_INT(k.rec.mismatches, 1);
    CHECK_EQ_U64(k.rec.mismatch.peer_recv_cursor, 5);
    CHECK_EQ_U64(k.rec.mismatch.peer_out_last, 2);
    pthread_mutex_unlock(&k.rec.mu);
    /* nothing was created */
    tether_session_id id;
    memcpy(id.bytes, h.session_id, 16);
    CHECK_ERR(tether_server_pending(k.s, &id, NULL, NULL), TETHER_ENOTFOUND);
    CHECK_EQ_INT(srv_count(&k, &k.rec.opens), 0);
    peer_close(&p);

    /* the same session with cursor 0 is new, and welcomed as such */
    CHECK_EQ_INT(peer_open(&p, k.port), 0);
    h.recv_cursor = 0;
    CHECK_EQ_INT(peer_hello(&p, &h), 0);
    CHECK_OK(peer_read(&p));
    CHECK_EQ_INT(p.f.type, TETHER__F_WELCOME);
    CHECK_EQ_INT(p.f.u.welcome.resumed, 0);
    CHECK_OK(tether_server_pending(k.s, &id, NULL, NULL));
    peer_close(&p);
    srv_free(&k);
}

/* ---- 5c: displaced connections ---- */

TEST(displaced_raw_connection_gets_bye_9)
{
    srv k;
    peer p1, p2;
    CHECK_OK(hs_srv_start(&k));
    peer_live(&p1, &k, 0x64);
    peer_live(&p2, &k, 0x64); /* the same session id and token */
    CHECK_EQ_INT(p2.f.u.welcome.resumed, 1);
    expect_bye_then_eof(&p1, TETHER_REJECT_DISPLACED);
    CHECK(wait_until(closed_once, &k, WAIT_MS));
    CHECK_EQ_INT(atomic_load(&last_close_error), TETHER_EDISPLACED);
    uint32_t n = 0;
    CHECK_OK(tether_server_connected(k.s, &n));
    CHECK_EQ_INT(n, 1); /* the newer connection carries on */
    peer_close(&p1);
    peer_close(&p2);
    srv_free(&k);
}

static int state_seen(recorder *r, int state, int error)
{
    int e = 0;
    return rec_saw_state(r, state, &e, NULL, NULL) > 0 && e == error;
}

typedef struct wait_state {
    recorder *r; /* whose states */
    int state;   /* which */
    int error;   /* with this error */
} wait_state;

static int ws_reached(void *arg)
{
    wait_state *w = arg;
    return state_seen(w->r, w->state, w->error);
}

static int wait_for(recorder *r, int state, int error)
{
    wait_state w = {r, state, error};
    return wait_until(ws_reached, &w, WAIT_MS);
}

static int make_client(recorder *r, const char *db, uint16_t port, tether_client **out)
{
    tether_client_config cfg;
    char url[64];
    tether_client_config_init(&cfg);
    rec_client_callbacks(&cfg, r);
    cfg.url = url_for(url, sizeof url, port);
    cfg.db_path = db;
    cfg.backoff_base_ms = 20;
    cfg.backoff_cap_ms = 50;
    return tether_client_create(&cfg, out);
}

static int copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = a ? fopen(to, "wb") : NULL;
    char buf[8192];
    size_t n;
    int rc = a && b ? 0 : -1;
    while (rc == 0 && (n = fread(buf, 1, sizeof buf, a)) > 0) {
        rc = fwrite(buf, 1, n, b) == n ? 0 : -1;
    }
    if (a) {
        fclose(a);
    }
    if (b && fclose(b) != 0) {
        rc = -1;
    }
    return rc;
}

TEST(displaced_client_stops_instead_of_fighting_back)
{
    srv k;
    recorder ra, rb;
    tether_client *a = NULL, *b = NULL;
    char pa[512], pb[512];
    CHECK_OK(hs_srv_start(&k));
    rec_init(&ra);
    rec_init(&rb);
    tt_path(pa, sizeof pa, "displaced_a.db");
    tt_path(pb, sizeof pb, "displaced_b.db");
    /* two stores holding one session identity */
    CHECK_OK(make_client(&ra, pa, k.port, &a));
    tether_client_destroy(a);
    CHECK_EQ_INT(copy_file(pa, pb), 0);
    CHECK_OK(make_client(&ra, pa, k.port, &a));
    CHECK_OK(make_client(&rb, pb, k.port, &b));
    CHECK_OK(tether_client_start(a));
    CHECK(wait_for(&ra, TETHER_STATE_CONNECTED, TETHER_OK));
    CHECK_OK(tether_client_start(b));
    CHECK(wait_for(&rb, TETHER_STATE_CONNECTED, TETHER_OK));
    /* a is displaced: it reports why and stops */
    CHECK(wait_for(&ra, TETHER_STATE_DISCONNECTED, TETHER_EDISPLACED));
    CHECK(wait_for(&ra, TETHER_STATE_STOPPED, TETHER_EDISPLACED));
    int reject = -1;
    rec_saw_state(&ra, TETHER_STATE_STOPPED, NULL, NULL, &reject);
    CHECK_EQ_INT(reject, TETHER_REJECT_DISPLACED);
    /* and does not come back: b stays connected, a connected once */
    sleep_ms(300);
    CHECK_EQ_INT(rec_saw_state(&ra, TETHER_STATE_CONNECTED, NULL, NULL, NULL), 1);
    CHECK_EQ_INT(rec_saw_state(&ra, TETHER_STATE_RECONNECTING, NULL, NULL, NULL), 0);
    CHECK_EQ_INT(rec_saw_state(&rb, TETHER_STATE_CONNECTED, NULL, NULL, NULL), 1);
    CHECK_EQ_INT(rec_saw_state(&rb, TETHER_STATE_DISCONNECTED, NULL, NULL, NULL), 0);
    uint32_t n = 0;
    CHECK_OK(tether_server_connected(k.s, &n));
    CHECK_EQ_INT(n, 1);
    tether_client_destroy(a);
    tether_client_destroy(b);
    rec_free(&ra);
    rec_free(&rb);
    srv_free(&k);
}

/* ---- 5d: a first message over the pre-HELLO limit ---- */

TEST(first_message_over_1024_bytes_gets_bye_7)
{
    srv k;
    peer p;
    uint8_t big[2000];
    CHECK_OK(hs_srv_start(&k));
    CHECK_EQ_INT(peer_open(&p, k.port), 0);
    memset(big, 0xc1, sizeof big); /* not even msgpack: the size decides first */
    CHECK_EQ_INT(rawws_send(&p.c, RAWWS_BINARY, big, sizeof big), 0);
    expect_bye_then_eof(&p, TETHER_REJECT_TOO_BIG);
    CHECK_EQ_INT(srv_count(&k, &k.rec.opens), 0);
    peer_close(&p);

    /* 1024 bytes are read (and refused as not a HELLO) */
    CHECK_EQ_INT(peer_open(&p, k.port), 0);
    CHECK_EQ_INT(rawws_send(&p.c, RAWWS_BINARY, big, 1024), 0);
    expect_bye_then_eof(&p, TETHER_REJECT_PROTOCOL);
    peer_close(&p);
    srv_free(&k);
}

int main(void)
{
    RUN(server_answers_reject_from_a_client_with_bye_4);
    RUN(server_answers_welcome_from_a_client_with_bye_4);
    RUN(unknown_session_with_a_receive_cursor_is_a_mismatch);
    RUN(displaced_raw_connection_gets_bye_9);
    RUN(displaced_client_stops_instead_of_fighting_back);
    RUN(first_message_over_1024_bytes_gets_bye_7);
    return tt_finish();
}

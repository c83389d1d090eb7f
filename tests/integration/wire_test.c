/*
 * Wire-level tests: a real tether client against a scripted raw WebSocket
 * server (tests/rawws.c), and a real tether server against a raw WebSocket
 * client. Each test drives one behaviour of the handshake, the frames or the
 * connection life from proto/PROTOCOL.md and docs/errors.md, and checks what
 * the other side sees on the wire and what the application is told.
 *
 * Loopback only, ports picked by the OS, every wait bounded.
 * TETHER_TEST_VERBOSE=1 prints every client state as it happens.
 */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/frame.h"
#include "harness.h"
#include "itest.h"
#include "rawws.h"
#include "statelog.h"

#define WELCOME_TIMEOUT_MS 500u
#define PING_MS 1000u
#define PONG_MS 1000u
#define HELLO_TIMEOUT_MS 300u
#define WAIT_MS 5000u /* bound for anything that should happen promptly */
#define READ_MS 3000u /* bound for one frame from the peer under test */
#define MAX_CONNS 8   /* connections one raw server script records */

/* Prints a measurement when TETHER_TEST_VERBOSE is set. */
static void note(const char *fmt, ...)
{
    va_list ap;
    if (!getenv("TETHER_TEST_VERBOSE")) {
        return;
    }
    fputs("  note: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ------------------------------------------------------------------------ */
/* The client under test (itest.h); states go to the state log (statelog.h)  */
/* ------------------------------------------------------------------------ */

/* A client with short timeouts and backoff to ws://127.0.0.1:port/. */
static void wire_cli_init(cli *k, uint16_t port)
{
    cli_init(k, "ws", "127.0.0.1", port);
    k->cfg.welcome_timeout_ms = WELCOME_TIMEOUT_MS;
    k->cfg.backoff_base_ms = 10;
    k->cfg.backoff_cap_ms = 50;
    k->cfg.ping_interval_ms = PING_MS;
    k->cfg.pong_timeout_ms = PONG_MS;
    k->cfg.random_seed = 7;
}

/* ------------------------------------------------------------------------ */
/* Raw server scripts for the client tests                                   */
/* ------------------------------------------------------------------------ */

enum script_mode {
    SCRIPT_STALL,          /* read HELLO, then say nothing, answer nothing */
    SCRIPT_SILENT_WELCOME, /* HELLO, WELCOME, then say nothing, never answer a ping */
    SCRIPT_REJECT_VERSION, /* HELLO, REJECT(1) */
    SCRIPT_GAP,            /* HELLO, WELCOME, DATA from seq 5; read the BYE */
    SCRIPT_GARBAGE,        /* HELLO, WELCOME, bytes that are not msgpack; read the BYE */
    SCRIPT_TEXT,           /* HELLO, WELCOME, a text message; read the BYE */
    SCRIPT_READ_HELLO,     /* read HELLO, then wait for the client to close */
    SCRIPT_BYE_TOO_BIG,    /* HELLO, WELCOME, BYE(7): a message exceeds our limit */
};

/* What the raw server saw on each connection. Written by the server thread;
 * read by the test only after rawws_server_done() counted the connection. */
typedef struct script_ctx {
    enum script_mode mode;
    int hello_rc[MAX_CONNS];          /* decode result of the first message */
    int hello_type[MAX_CONNS];        /* its frame type */
    tether__hello hello[MAX_CONNS];   /* the HELLO, when it was one */
    uint64_t upgraded_at[MAX_CONNS];  /* when the 101 went out */
    uint64_t welcomed_at[MAX_CONNS];  /* when the WELCOME went out */
    uint64_t closed_at[MAX_CONNS];    /* when the client's close frame or FIN came */
    int got_close[MAX_CONNS];         /* the client sent a close frame */
    int eof[MAX_CONNS];               /* the client closed the TCP connection */
    unsigned pings[MAX_CONNS];        /* pings from the client */
    int bye_code[MAX_CONNS];          /* code of the client's BYE, -1 when none came */
    int frames_before_bye[MAX_CONNS]; /* other frames the client sent after the trigger */
} script_ctx;

static void script_ctx_init(script_ctx *x, enum script_mode mode)
{
    memset(x, 0, sizeof *x);
    x->mode = mode;
    for (int i = 0; i < MAX_CONNS; i++) {
        x->hello_rc[i] = TETHER_ETIMEDOUT;
        x->bye_code[i] = -1;
    }
}

/* Reads the next binary message and decodes it. The frame points into *m,
 * which the caller frees. Returns the decode result, TETHER_ETIMEDOUT, or
 * TETHER_ECLOSED (a close frame or EOF first). A text message is skipped. */
static int read_frame(rawws_conn *c, tether__decoder *d, rawws_msg *m, tether__frame *f,
                      unsigned timeout_ms)
{
    uint64_t end = rawws_now_ms() + timeout_ms;
    for (;;) {
        uint64_t now = rawws_now_ms();
        int r = rawws_read_msg(c, m, now < end ? (unsigned)(end - now) : 0);
        if (r == 0) {
            return TETHER_ETIMEDOUT;
        }
        if (r < 0 || m->opcode == RAWWS_CLOSE) {
            rawws_msg_free(m);
            return TETHER_ECLOSED;
        }
        if (m->opcode == RAWWS_BINARY) {
            return tether__decode(d, m->data, m->len, f);
        }
        rawws_msg_free(m);
    }
}

static int send_buf(rawws_conn *c, tether__buf *b)
{
    return rawws_send(c, RAWWS_BINARY, tether__buf_frame(b), b->len);
}

/* Reads frames until the client's BYE; records its code and what came before. */
static void script_expect_bye(rawws_conn *c, tether__decoder *d, script_ctx *x, unsigned i)
{
    for (int k = 0; k < 16; k++) {
        rawws_msg m;
        tether__frame f;
        int rc = read_frame(c, d, &m, &f, READ_MS);
        if (rc == TETHER_ETIMEDOUT || rc == TETHER_ECLOSED) {
            return;
        }
        if (rc == TETHER_OK && f.type == TETHER__F_BYE) {
            x->bye_code[i] = (int)f.u.close.code;
            rawws_msg_free(&m);
            return;
        }
        x->frames_before_bye[i]++;
        rawws_msg_free(&m);
    }
}

static void client_script(rawws_conn *c, unsigned i, void *arg)
{
    script_ctx *x = arg;
    tether__decoder dec;
    tether__buf out;
    rawws_msg m;
    tether__frame f;

    if (i >= MAX_CONNS || tether__decoder_init(&dec, 1u << 20) != TETHER_OK) {
        return;
    }
    tether__buf_init(&out, 0);
    x->upgraded_at[i] = c->upgraded_at;
    if (x->mode == SCRIPT_STALL || x->mode == SCRIPT_SILENT_WELCOME) {
        /* a filtering proxy or a dead link: nothing comes back, not even a pong or a close */
        c->answer_pings = 0;
        c->answer_close = 0;
    }
    int rc = read_frame(c, &dec, &m, &f, READ_MS);
    x->hello_rc[i] = rc;
    if (rc == TETHER_OK) {
        x->hello_type[i] = f.type;
        if (f.type == TETHER__F_HELLO) {
            x->hello[i] = f.u.hello;
        }
    }
    if (rc != TETHER_ECLOSED && rc != TETHER_ETIMEDOUT) {
        rawws_msg_free(&m);
    }
    if (rc == TETHER_OK && x->hello_type[i] == TETHER__F_HELLO) {
        tether__welcome w;
        memset(&w, 0, sizeof w);
        memcpy(w.session_id, x->hello[i].session_id, TETHER__ID_LEN);
        w.resumed = x->hello[i].resume; /* it remembers the session; nothing was ever committed */
        w.max_message = 1u << 20;
        w.window = 1024;
        switch (x->mode) {
        case SCRIPT_STALL:
        case SCRIPT_READ_HELLO:
            break;
        case SCRIPT_REJECT_VERSION:
            tether__encode_reject(&out, TETHER_REJECT_VERSION, "protocol version 1 is retired");
            send_buf(c, &out);
            break;
        case SCRIPT_BYE_TOO_BIG:
            tether__encode_welcome(&out, &w);
            send_buf(c, &out);
            tether__encode_bye(&out, TETHER_REJECT_TOO_BIG, "message 1 exceeds the limit");
            send_buf(c, &out);
            break;
        default:
            tether__encode_welcome(&out, &w);
            send_buf(c, &out);
            x->welcomed_at[i] = rawws_now_ms();
            break;
        }
        if (x->mode == SCRIPT_GAP) {
            static const char p[] = "message five";
            tether__encode_data_begin(&out, 5, 0, 1);
            tether__encode_data_payload(&out, p, sizeof p - 1);
            tether__encode_data_end(&out);
            /* in WebSocket fragments with a ping between: reassembled before the gap is seen */
            rawws_send_fragmented(c, RAWWS_BINARY, tether__buf_frame(&out), out.len, 4, 1);
            script_expect_bye(c, &dec, x, i);
        } else if (x->mode == SCRIPT_GARBAGE) {
            static const uint8_t junk[] = {0xc1, 0xde, 0xad, 0xbe, 0xef};
            rawws_send(c, RAWWS_BINARY, junk, sizeof junk);
            script_expect_bye(c, &dec, x, i);
        } else if (x->mode == SCRIPT_TEXT) {
            rawws_send(c, RAWWS_TEXT, "hello, tether", 13);
            script_expect_bye(c, &dec, x, i);
        }
    }
    rawws_wait_eof(c, 8000);
    x->closed_at[i] = c->closed_at;
    x->got_close[i] = c->got_close;
    x->eof[i] = c->eof;
    x->pings[i] = c->pings;
    tether__buf_free(&out);
    tether__decoder_free(&dec);
}

typedef struct done_wait {
    rawws_server *s;
    unsigned n;
} done_wait;

static int done_reached(void *arg)
{
    done_wait *w = arg;
    return rawws_server_done(w->s) >= w->n;
}

/* Waits until n answered connections of the raw server have finished. */
static int wait_done(rawws_server *s, unsigned n, unsigned timeout_ms)
{
    done_wait w = {s, n};
    return wait_until(done_reached, &w, timeout_ms);
}

static rawws_server *raw_start(rawws_answer answer, int status, script_ctx *x, unsigned max_conns)
{
    rawws_server_cfg cfg;
    rawws_server *s = NULL;
    memset(&cfg, 0, sizeof cfg);
    cfg.answer = answer;
    cfg.status = status;
    cfg.script = x ? client_script : NULL;
    cfg.arg = x;
    cfg.max_conns = max_conns;
    cfg.lifetime_ms = 20000;
    if (rawws_server_start(&cfg, &s) != 0) {
        fprintf(stderr, "cannot start the raw server\n");
    }
    return s;
}

/* ------------------------------------------------------------------------ */
/* Client tests                                                              */
/* ------------------------------------------------------------------------ */

/* An HTTP status on the upgrade that must stop the client for good. */
static void check_permanent_status(int status)
{
    cli k;
    rawws_server *s = raw_start(RAWWS_HTTP, status, NULL, 5);
    CHECK(s != NULL);
    if (!s) {
        return;
    }
    wire_cli_init(&k, rawws_server_port(s));
    k.cfg.backoff_max_attempts = 3;
    CHECK_OK(cli_start(&k));
    CHECK(slog_wait(TETHER_STATE_STOPPED, ANY, 1, WAIT_MS));
    int d = slog_find(TETHER_STATE_DISCONNECTED, ANY, 0);
    CHECK(d >= 0);
    CHECK_EQ_INT(slog_error(d), TETHER_EHTTP);
    CHECK_EQ_INT(slog_http(d), status);
    CHECK_EQ_INT(slog_next_state(d), TETHER_STATE_STOPPED);
    int err = 0, http = 0;
    CHECK_EQ_INT(rec_saw_state(&k.rec, TETHER_STATE_STOPPED, &err, &http, NULL), 1);
    CHECK_EQ_INT(err, TETHER_EHTTP);
    CHECK_EQ_INT(http, status);
    sleep_ms(300); /* a retry would come within the 50 ms backoff cap */
    CHECK_EQ_INT(rec_saw_state(&k.rec, TETHER_STATE_RECONNECTING, NULL, NULL, NULL), 0);
    CHECK_EQ_INT(rawws_server_accepted(s), 1);
    cli_free(&k);
    rawws_server_stop(s);
}

TEST(http_403_is_permanent)
{
    check_permanent_status(403);
}

TEST(http_401_is_permanent)
{
    check_permanent_status(401);
}

TEST(http_401_is_retried_with_retry_permanent)
{
    cli k;
    rawws_server *s = raw_start(RAWWS_HTTP, 401, NULL, 5);
    CHECK(s != NULL);
    if (!s) {
        return;
    }
    wire_cli_init(&k, rawws_server_port(s));
    k.cfg.retry_permanent = 1;
    k.cfg.backoff_max_attempts = 2;
    CHECK_OK(cli_start(&k));
    CHECK(slog_wait(TETHER_STATE_STOPPED, ANY, 1, WAIT_MS));
    int r = slog_find(TETHER_STATE_RECONNECTING, ANY, 0);
    CHECK(r >= 0);
    CHECK_EQ_INT(slog_error(r), TETHER_EHTTP);
    CHECK_EQ_INT(slog_http(r), 401);
    CHECK_EQ_INT(slog_count(TETHER_STATE_RECONNECTING, TETHER_EHTTP), 2);
    CHECK_EQ_INT(slog_count(TETHER_STATE_DISCONNECTED, TETHER_EHTTP), 3);
    int err = 0;
    rec_saw_state(&k.rec, TETHER_STATE_STOPPED, &err, NULL, NULL);
    CHECK_EQ_INT(err, TETHER_EGIVEUP);
    CHECK_EQ_INT(rawws_server_accepted(s), 3);
    cli_free(&k);
    rawws_server_stop(s);
}

TEST(transient_http_statuses_are_retried)
{
    static const int statuses[] = {503, 404, 426, 429, 407, 502};
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        int status = statuses[i];
        cli k;
        rawws_server *s = raw_start(RAWWS_HTTP, status, NULL, 5);
        CHECK(s != NULL);
        if (!s) {
            return;
        }
        wire_cli_init(&k, rawws_server_port(s));
        k.cfg.backoff_max_attempts = 1;
        CHECK_OK(cli_start(&k));
        CHECK(slog_wait(TETHER_STATE_STOPPED, ANY, 1, WAIT_MS));
        for (unsigned n = 0; n < 2; n++) {
            int d = slog_find(TETHER_STATE_DISCONNECTED, ANY, n);
            CHECK(d >= 0);
            CHECK_EQ_INT(slog_error(d), TETHER_EHTTP);
            CHECK_EQ_INT(slog_http(d), status);
        }
        int r = slog_find(TETHER_STATE_RECONNECTING, ANY, 0);
        CHECK(r >= 0);
        CHECK_EQ_INT(slog_error(r), TETHER_EHTTP);
        CHECK_EQ_INT(slog_http(r), status);
        CHECK_EQ_INT(slog_next_state(slog_find(TETHER_STATE_DISCONNECTED, ANY, 0)),
                     TETHER_STATE_RECONNECTING);
        int err = 0;
        rec_saw_state(&k.rec, TETHER_STATE_STOPPED, &err, NULL, NULL);
        CHECK_EQ_INT(err, TETHER_EGIVEUP);
        CHECK_EQ_INT(rawws_server_accepted(s), 2);
        if (tt_failed_checks) {
            fprintf(stderr, "  (with HTTP %d)\n", status);
        }
        cli_free(&k);
        rawws_server_stop(s);
    }
}

/* A 101 that is not a valid tether.v1 upgrade: TETHER_EHANDSHAKE, retried. */
static void check_bad_101(rawws_answer answer)
{
    cli k;
    script_ctx x;
    script_ctx_init(&x, SCRIPT_READ_HELLO);
    rawws_server *s = raw_start(answer, 0, &x, 2);
    CHECK(s != NULL);
    if (!s) {
        return;
    }
    wire_cli_init(&k, rawws_server_port(s));
    k.cfg.backoff_max_attempts = 1;
    CHECK_OK(cli_start(&k));
    CHECK(slog_wait(TETHER_STATE_STOPPED, ANY, 1, WAIT_MS));
    int d = slog_find(TETHER_STATE_DISCONNECTED, ANY, 0);
    CHECK(d >= 0);
    CHECK_EQ_INT(slog_error(d), TETHER_EHANDSHAKE);
    CHECK_EQ_INT(slog_http(d), 0);
    CHECK_EQ_INT(slog_next_state(d), TETHER_STATE_RECONNECTING);
    CHECK_EQ_INT(slog_count(TETHER_STATE_DISCONNECTED, TETHER_EHANDSHAKE), 2);
    CHECK_EQ_INT(rec_saw_state(&k.rec, TETHER_STATE_CONNECTED, NULL, NULL, NULL), 0);
    cli_free(&k);
    CHECK(wait_done(s, 2, WAIT_MS));
    /* the upgrade was not valid, so the client must not have spoken tether on it */
    CHECK_EQ_INT(x.hello_rc[0], TETHER_ECLOSED);
    rawws_server_stop(s);
}

TEST(wrong_accept_key_is_a_handshake_error)
{
    check_bad_101(RAWWS_BAD_ACCEPT);
}

/*
 * KNOWN LIBRARY BUG, this test fails until it is fixed: libwebsockets 4.1.6
 * accepts a 101 without Sec-WebSocket-Protocol (it falls back to its first
 * protocol) and src/transport_lws.c does not check what the 101 selected, so
 * the client sends HELLO on a connection that never agreed to tether.v1 and
 * later reports TETHER_ESTALLED. PROTOCOL.md section 2: the client MUST fail.
 */
TEST(missing_subprotocol_is_a_handshake_error)
{
    check_bad_101(RAWWS_NO_PROTOCOL);
}

TEST(other_subprotocol_is_a_handshake_error)
{
    check_bad_101(RAWWS_OTHER_PROTOCOL);
}

TEST(silence_after_upgrade_is_reported_as_stalled)
{
    cli k;
    script_ctx x;
    tether_session_id id;
    script_ctx_init(&x, SCRIPT_STALL);
    rawws_server *s = raw_start(RAWWS_ACCEPT, 0, &x, 3);
    CHECK(s != NULL);
    if (!s) {
        return;
    }
    wire_cli_init(&k, rawws_server_port(s));
    k.cfg.backoff_max_attempts = 3;
    CHECK_OK(cli_start(&k));
    CHECK_OK(tether_client_session(k.c, &id));
    CHECK(slog_wait(TETHER_STATE_DISCONNECTED, TETHER_ESTALLED, 3, 3 * WAIT_MS));
    CHECK(wait_done(s, 3, WAIT_MS));
    for (unsigned i = 0; i < 3; i++) {
        CHECK_EQ_INT(x.hello_rc[i], TETHER_OK);
        CHECK_EQ_INT(x.hello_type[i], TETHER__F_HELLO);
        CHECK_EQ_INT(x.hello[i].version, 1);
        CHECK_EQ_INT(x.hello[i].resume, 0); /* never welcomed */
        CHECK_MEM(x.hello[i].session_id, id.bytes, TETHER__ID_LEN);
        CHECK_EQ_U64(x.hello[i].recv_cursor, 0);
        CHECK_EQ_U64(x.hello[i].out_last, 0);
        CHECK_EQ_U64(x.hello[i].max_message, 1u << 20);
        CHECK(x.hello[i].window >= 1);

        int d = slog_find(TETHER_STATE_DISCONNECTED, TETHER_ESTALLED, i);
        CHECK(d >= 0);
        CHECK_EQ_INT(slog_http(d), 0);
        CHECK_EQ_INT(slog_next_state(d), TETHER_STATE_RECONNECTING);
        /* reported after welcome_timeout_ms, within a margin, even though the
         * silent path never answers the close either */
        uint64_t took = slog_at(d) - x.upgraded_at[i];
        note("connection %u: TETHER_ESTALLED %llu ms after the 101, close seen after %llu ms "
             "(close frame %d)",
             i, (unsigned long long)took, (unsigned long long)(x.closed_at[i] - x.upgraded_at[i]),
             x.got_close[i]);
        if (took < WELCOME_TIMEOUT_MS - 20 || took > WELCOME_TIMEOUT_MS + 700) {
            tt_fail(__FILE__, __LINE__, "connection %u: stalled reported %llu ms after the 101", i,
                    (unsigned long long)took);
        }
        /* and the client closed that connection itself */
        CHECK(x.closed_at[i] != 0);
        CHECK(x.closed_at[i] - x.upgraded_at[i] >= WELCOME_TIMEOUT_MS - 20);
    }
    CHECK_EQ_INT(rec_saw_state(&k.rec, TETHER_STATE_CONNECTED, NULL, NULL, NULL), 0);
    cli_free(&k);
    rawws_server_stop(s);
}

TEST(unanswered_pings_are_reported_as_dead_link)
{
    cli k;
    script_ctx x;
    script_ctx_init(&x, SCRIPT_SILENT_WELCOME);
    rawws_server *s = raw_start(RAWWS_ACCEPT, 0, &x, 1);
    CHECK(s != NULL);
    if (!s) {
        return;
    }
    wire_cli_init(&k, rawws_server_port(s));
    k.cfg.backoff_max_attempts = 1;
    CHECK_OK(cli_start(&k));
    CHECK(slog_wait(TETHER_STATE_CONNECTED, ANY, 1, WAIT_MS));
    CHECK(slog_wait(TETHER_STATE_DISCONNECTED, ANY, 1, PING_MS + PONG_MS + 4000));
    CHECK(wait_done(s, 1, WAIT_MS));
    int c = slog_find(TETHER_STATE_CONNECTED, ANY, 0);
    int d = slog_find(TETHER_STATE_DISCONNECTED, ANY, 0);
    CHECK(d >= 0 && c >= 0);
    CHECK_EQ_INT(slog_error(d), TETHER_EPING);
    CHECK_EQ_INT(slog_next_state(d), TETHER_STATE_RECONNECTING);
    uint64_t took = slog_at(d) - x.welcomed_at[0];
    note("%s %llu ms after WELCOME, %u pings, EOF after %llu ms", tether_err_name(slog_error(d)),
         (unsigned long long)took, x.pings[0],
         (unsigned long long)(x.closed_at[0] - x.welcomed_at[0]));
    if (took < PING_MS || took > PING_MS + PONG_MS + 2000) {
        tt_fail(__FILE__, __LINE__, "dead link reported %llu ms after WELCOME (expected %u..%u)",
                (unsigned long long)took, PING_MS, PING_MS + PONG_MS + 2000);
    }
    CHECK(x.pings[0] >= 1); /* the client did ask */
    CHECK(x.eof[0]);        /* and then dropped the connection */
    cli_free(&k);
    rawws_server_stop(s);
}

/* The raw server answers with a permanent refusal: the client reports it once,
 * with the error and reject code, and never reconnects. connected: whether a
 * WELCOME came first. */
static void check_refusal_stops_the_client(enum script_mode mode, int error, int reject_code,
                                           int connected)
{
    cli k;
    script_ctx x;
    script_ctx_init(&x, mode);
    rawws_server *s = raw_start(RAWWS_ACCEPT, 0, &x, 3);
    CHECK(s != NULL);
    if (!s) {
        return;
    }
    wire_cli_init(&k, rawws_server_port(s));
    k.cfg.backoff_max_attempts = 3;
    CHECK_OK(cli_start(&k));
    CHECK(slog_wait(TETHER_STATE_STOPPED, ANY, 1, WAIT_MS));
    int err = 0, reject = 0;
    CHECK_EQ_INT(rec_saw_state(&k.rec, TETHER_STATE_STOPPED, &err, NULL, &reject), 1);
    CHECK_EQ_INT(err, error);
    CHECK_EQ_INT(reject, reject_code);
    int d = slog_find(TETHER_STATE_DISCONNECTED, ANY, 0);
    CHECK_EQ_INT(slog_error(d), error);
    CHECK_EQ_INT(slog_reject(d), reject_code);
    sleep_ms(300);
    CHECK_EQ_INT(rec_saw_state(&k.rec, TETHER_STATE_RECONNECTING, NULL, NULL, NULL), 0);
    CHECK_EQ_INT(rec_saw_state(&k.rec, TETHER_STATE_CONNECTED, NULL, NULL, NULL), connected);
    CHECK_EQ_INT(rawws_server_accepted(s), 1);
    cli_free(&k);
    rawws_server_stop(s);
}

/* A BYE(7) means a stored message can never pass: retrying would meet it again. */
TEST(bye_too_big_stops_the_client)
{
    check_refusal_stops_the_client(SCRIPT_BYE_TOO_BIG, TETHER_ETOOBIG, TETHER_REJECT_TOO_BIG, 1);
}

TEST(reject_version_stops_the_client)
{
    check_refusal_stops_the_client(SCRIPT_REJECT_VERSION, TETHER_EVERSION, TETHER_REJECT_VERSION,
                                   0);
}

/* After WELCOME the raw server sends something wrong; the client must answer
 * BYE(4), report error, deliver nothing and come back. */
static void check_bad_frame_from_server(enum script_mode mode, int error)
{
    cli k;
    script_ctx x;
    script_ctx_init(&x, mode);
    rawws_server *s = raw_start(RAWWS_ACCEPT, 0, &x, 2);
    CHECK(s != NULL);
    if (!s) {
        return;
    }
    wire_cli_init(&k, rawws_server_port(s));
    k.cfg.backoff_max_attempts = 1;
    CHECK_OK(cli_start(&k));
    CHECK(slog_wait(TETHER_STATE_STOPPED, ANY, 1, 2 * WAIT_MS));
    CHECK(wait_done(s, 2, WAIT_MS));
    for (unsigned i = 0; i < 2; i++) {
        int d = slog_find(TETHER_STATE_DISCONNECTED, ANY, i);
        CHECK(d >= 0);
        CHECK_EQ_INT(slog_error(d), error);
        CHECK_EQ_INT(x.bye_code[i], TETHER_REJECT_PROTOCOL);
        CHECK_EQ_INT(x.frames_before_bye[i], 0); /* in particular no ACK */
        CHECK(x.eof[i]);
    }
    CHECK_EQ_INT(slog_next_state(slog_find(TETHER_STATE_DISCONNECTED, ANY, 0)),
                 TETHER_STATE_RECONNECTING);
    CHECK_EQ_INT(rec_saw_state(&k.rec, TETHER_STATE_CONNECTED, NULL, NULL, NULL), 2);
    CHECK_EQ_U64(rec_count(&k.rec), 0); /* nothing reached on_message */
    cli_free(&k);
    rawws_server_stop(s);
}

TEST(data_gap_from_server_is_refused)
{
    check_bad_frame_from_server(SCRIPT_GAP, TETHER_EGAP);
}

TEST(garbage_from_server_is_refused)
{
    check_bad_frame_from_server(SCRIPT_GARBAGE, TETHER_EMALFORMED);
}

TEST(text_message_from_server_is_refused)
{
    /* docs/errors.md: a text message is reported as TETHER_EMALFORMED */
    check_bad_frame_from_server(SCRIPT_TEXT, TETHER_EMALFORMED);
}

/* ------------------------------------------------------------------------ */
/* The server under test, and a raw client speaking tether by hand           */
/* ------------------------------------------------------------------------ */

static atomic_int last_close_error; /* error of the last on_session_close */

static void s_close_err(tether_server *s, const tether_session_id *id, int error, void *user)
{
    recorder *r = user;
    atomic_store(&last_close_error, error);
    pthread_mutex_lock(&r->mu);
    r->closes++;
    pthread_mutex_unlock(&r->mu);
}

static void wire_srv_init(srv *k)
{
    srv_init(k);
    k->cfg.hello_timeout_ms = HELLO_TIMEOUT_MS;
    k->cfg.cb.on_session_close = s_close_err;
    atomic_store(&last_close_error, INT_MIN);
}

static int srv_closes(srv *k)
{
    pthread_mutex_lock(&k->rec.mu);
    int n = k->rec.closes;
    pthread_mutex_unlock(&k->rec.mu);
    return n;
}

static int srv_opens(srv *k)
{
    pthread_mutex_lock(&k->rec.mu);
    int n = k->rec.opens;
    pthread_mutex_unlock(&k->rec.mu);
    return n;
}

static int srv_closed_once(void *arg)
{
    return srv_closes(arg) >= 1;
}

/* A raw client with a codec. */
typedef struct peer {
    rawws_conn c;        /* the connection */
    tether__decoder dec; /* decodes what the server sends */
    tether__buf out;     /* frame being sent */
    rawws_msg msg;       /* the last message read; p->f points into it */
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

/* Reads and decodes the next frame: TETHER_OK, a decode error, TETHER_ETIMEDOUT, TETHER_ECLOSED. */
static int peer_read(peer *p, unsigned timeout_ms)
{
    rawws_msg_free(&p->msg);
    return read_frame(&p->c, &p->dec, &p->msg, &p->f, timeout_ms);
}

static int peer_send(peer *p)
{
    return send_buf(&p->c, &p->out);
}

static void hello_init(tether__hello *h, uint8_t id_byte, uint8_t token_byte)
{
    memset(h, 0, sizeof *h);
    h->version = 1;
    memset(h->session_id, id_byte, sizeof h->session_id);
    memset(h->token, token_byte, sizeof h->token);
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

/* HELLO, then the WELCOME it must get. 0 when welcomed as a new session. */
static int peer_handshake(peer *p, const tether__hello *h)
{
    if (peer_hello(p, h) != 0 || peer_read(p, READ_MS) != TETHER_OK ||
        p->f.type != TETHER__F_WELCOME) {
        return -1;
    }
    return 0;
}

/* A DATA run of count payloads from first_seq, each size bytes tagged with its
 * seq; sent as WebSocket fragments of piece bytes (0: one frame). */
static int peer_data(peer *p, uint64_t first_seq, uint32_t flags, size_t count, size_t size,
                     size_t piece)
{
    uint8_t *buf = malloc(size);
    int rc = -1;
    if (!buf || tether__encode_data_begin(&p->out, first_seq, flags, count) != TETHER_OK) {
        free(buf);
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        make_payload(buf, size, first_seq + i);
        tether__encode_data_payload(&p->out, buf, size);
    }
    if (tether__encode_data_end(&p->out) == TETHER_OK) {
        rc = piece ? rawws_send_fragmented(&p->c, RAWWS_BINARY, tether__buf_frame(&p->out),
                                           p->out.len, piece, 1)
                   : peer_send(p);
    }
    free(buf);
    return rc;
}

/* Reads until a BYE or REJECT; ACKs on the way must not pass max_ack.
 * Returns the frame type (its code in *code), or a negative tether_err. */
static int peer_expect_close(peer *p, uint64_t max_ack, uint32_t *code)
{
    for (int i = 0; i < 16; i++) {
        int rc = peer_read(p, READ_MS);
        if (rc != TETHER_OK) {
            return rc;
        }
        if (p->f.type == TETHER__F_BYE || p->f.type == TETHER__F_REJECT) {
            *code = p->f.u.close.code;
            return p->f.type;
        }
        if (p->f.type == TETHER__F_ACK && p->f.u.ack > max_ack) {
            tt_fail(__FILE__, __LINE__, "ACK %llu before the close, past %llu",
                    (unsigned long long)p->f.u.ack, (unsigned long long)max_ack);
        }
    }
    return TETHER_EPROTO;
}

/* ------------------------------------------------------------------------ */
/* Server tests                                                              */
/* ------------------------------------------------------------------------ */

TEST(server_closes_a_silent_upgrade_after_hello_timeout)
{
    srv k;
    peer p;
    wire_srv_init(&k);
    CHECK_OK(srv_start(&k));
    CHECK_EQ_INT(peer_open(&p, k.port), 0);
    p.c.answer_close = 0; /* silent: not even the close handshake */
    CHECK_EQ_INT(peer_read(&p, WAIT_MS), TETHER_ECLOSED);
    CHECK(p.c.closed_at != 0);
    uint64_t took = p.c.closed_at - p.c.upgraded_at;
    note("the server closed %llu ms after the upgrade (close frame %d)", (unsigned long long)took,
         p.c.got_close);
    if (took < 250 || took >= 5000) {
        tt_fail(__FILE__, __LINE__, "the server closed %llu ms after the upgrade",
                (unsigned long long)took);
    }
    /* the TCP connection goes too, even though we never answered the close */
    CHECK(rawws_wait_eof(&p.c, 7000));
    note("EOF %llu ms after the upgrade", (unsigned long long)(rawws_now_ms() - p.c.upgraded_at));
    CHECK_EQ_INT(srv_opens(&k), 0);
    peer_close(&p);
    srv_free(&k);
}

TEST(server_answers_data_before_hello_with_bye_4)
{
    srv k;
    peer p;
    uint32_t code = 99;
    wire_srv_init(&k);
    CHECK_OK(srv_start(&k));
    CHECK_EQ_INT(peer_open(&p, k.port), 0);
    CHECK_OK(peer_data(&p, 1, 0, 1, 16, 0));
    CHECK_EQ_INT(peer_expect_close(&p, 0, &code), TETHER__F_BYE);
    CHECK_EQ_INT(code, TETHER_REJECT_PROTOCOL);
    CHECK(rawws_wait_eof(&p.c, WAIT_MS));
    CHECK_EQ_U64(rec_count(&k.rec), 0);
    CHECK_EQ_INT(srv_opens(&k), 0);
    peer_close(&p);
    srv_free(&k);
}

TEST(server_rejects_version_2)
{
    srv k;
    peer p;
    tether__hello h;
    uint32_t code = 99;
    wire_srv_init(&k);
    CHECK_OK(srv_start(&k));
    CHECK_EQ_INT(peer_open(&p, k.port), 0);
    hello_init(&h, 0x12, 0x34);
    h.version = 2;
    CHECK_EQ_INT(peer_hello(&p, &h), 0);
    CHECK_EQ_INT(peer_expect_close(&p, 0, &code), TETHER__F_REJECT);
    CHECK_EQ_INT(code, TETHER_REJECT_VERSION);
    CHECK(rawws_wait_eof(&p.c, WAIT_MS));
    tether_session_id id;
    memcpy(id.bytes, h.session_id, 16);
    CHECK_ERR(tether_server_pending(k.s, &id, NULL, NULL), TETHER_ENOTFOUND);
    peer_close(&p);
    srv_free(&k);
}

TEST(server_delivers_acks_drops_duplicates_and_refuses_gaps)
{
    srv k;
    peer p;
    tether__hello h;
    uint32_t code = 99;
    wire_srv_init(&k);
    k.cfg.ack_delay_ms = 250;
    CHECK_OK(srv_start(&k));
    CHECK_EQ_INT(peer_open(&p, k.port), 0);
    hello_init(&h, 0x21, 0x43);
    CHECK_EQ_INT(peer_handshake(&p, &h), 0);
    CHECK_EQ_INT(p.f.type, TETHER__F_WELCOME);
    CHECK_MEM(p.f.u.welcome.session_id, h.session_id, 16);
    CHECK_EQ_INT(p.f.u.welcome.resumed, 0);
    CHECK_EQ_U64(p.f.u.welcome.recv_cursor, 0);
    CHECK_EQ_U64(p.f.u.welcome.out_last, 0);
    CHECK_EQ_U64(p.f.u.welcome.max_message, 1u << 20); /* the server's defaults */
    CHECK_EQ_U64(p.f.u.welcome.window, 1024);

    /* seq 1..3 in one run, in WebSocket fragments with a ping between them */
    uint64_t t0 = rawws_now_ms();
    CHECK_OK(peer_data(&p, 1, 0, 3, 40, 32));
    CHECK_OK(peer_read(&p, READ_MS));
    uint64_t took = rawws_now_ms() - t0;
    note("delayed ACK after %llu ms", (unsigned long long)took);
    CHECK_EQ_INT(p.f.type, TETHER__F_ACK);
    CHECK_EQ_U64(p.f.u.ack, 3);
    if (took < 200 || took > 250 + 750) {
        tt_fail(__FILE__, __LINE__, "delayed ACK came %llu ms after the run (ack_delay 250)",
                (unsigned long long)took);
    }
    rec_check_exact(&k.rec, 3, "server after the run");
    CHECK(p.c.pongs >= 1);

    /* seq 2 again: dropped, and ACK(3) at once */
    t0 = rawws_now_ms();
    CHECK_OK(peer_data(&p, 2, TETHER__DATA_FLAG_REDELIVERED, 1, 40, 0));
    CHECK_OK(peer_read(&p, READ_MS));
    took = rawws_now_ms() - t0;
    note("ACK for the duplicate after %llu ms", (unsigned long long)took);
    CHECK_EQ_INT(p.f.type, TETHER__F_ACK);
    CHECK_EQ_U64(p.f.u.ack, 3);
    if (took > 150) {
        tt_fail(__FILE__, __LINE__, "ACK for a duplicate came after %llu ms, not at once",
                (unsigned long long)took);
    }
    CHECK_EQ_U64(rec_count(&k.rec), 3);

    /* seq 9: a gap */
    CHECK_OK(peer_data(&p, 9, 0, 1, 40, 0));
    CHECK_EQ_INT(peer_expect_close(&p, 3, &code), TETHER__F_BYE);
    CHECK_EQ_INT(code, TETHER_REJECT_PROTOCOL);
    CHECK(rawws_wait_eof(&p.c, WAIT_MS));
    CHECK(wait_until(srv_closed_once, &k, WAIT_MS));
    CHECK_EQ_INT(atomic_load(&last_close_error), TETHER_EGAP);
    rec_check_exact(&k.rec, 3, "server after the gap");
    tether_session_id id;
    uint64_t pending = 99;
    memcpy(id.bytes, h.session_id, 16);
    CHECK_OK(tether_server_pending(k.s, &id, &pending, NULL));
    CHECK_EQ_U64(pending, 0);
    peer_close(&p);
    srv_free(&k);
}

TEST(server_rejects_a_wrong_token_and_keeps_the_session)
{
    srv k;
    peer p1, p2;
    tether__hello h;
    uint32_t code = 99;
    wire_srv_init(&k);
    k.cfg.ack_delay_ms = 5;
    CHECK_OK(srv_start(&k));
    CHECK_EQ_INT(peer_open(&p1, k.port), 0);
    hello_init(&h, 0x31, 0x77);
    CHECK_EQ_INT(peer_handshake(&p1, &h), 0);

    /* the same session id with another token, while the first is connected */
    CHECK_EQ_INT(peer_open(&p2, k.port), 0);
    tether__hello bad = h;
    bad.token[0] ^= 0x01;
    bad.resume = 1;
    CHECK_EQ_INT(peer_hello(&p2, &bad), 0);
    CHECK_EQ_INT(peer_expect_close(&p2, 0, &code), TETHER__F_REJECT);
    CHECK_EQ_INT(code, TETHER_REJECT_TOKEN);
    CHECK(rawws_wait_eof(&p2.c, WAIT_MS));

    /* the rightful connection was not disturbed */
    CHECK_OK(peer_data(&p1, 1, 0, 1, 16, 0));
    CHECK_OK(peer_read(&p1, READ_MS));
    CHECK_EQ_INT(p1.f.type, TETHER__F_ACK);
    CHECK_EQ_U64(p1.f.u.ack, 1);
    rec_check_exact(&k.rec, 1, "server");
    CHECK_EQ_INT(srv_opens(&k), 1);
    peer_close(&p2);
    peer_close(&p1);
    srv_free(&k);
}

TEST(server_reports_resume_of_unknown_session_as_mismatch)
{
    srv k;
    peer p;
    tether__hello h;
    uint32_t code = 99;
    wire_srv_init(&k);
    CHECK_OK(srv_start(&k));
    CHECK_EQ_INT(peer_open(&p, k.port), 0);
    hello_init(&h, 0x41, 0x99);
    h.resume = 1;
    h.recv_cursor = 7;
    h.out_last = 12;
    CHECK_EQ_INT(peer_hello(&p, &h), 0);
    CHECK_OK(peer_read(&p, READ_MS));
    CHECK_EQ_INT(p.f.type, TETHER__F_WELCOME);
    CHECK_MEM(p.f.u.welcome.session_id, h.session_id, 16);
    CHECK_EQ_INT(p.f.u.welcome.resumed, 0);
    CHECK_EQ_U64(p.f.u.welcome.recv_cursor, 0);
    CHECK_EQ_U64(p.f.u.welcome.out_last, 0);
    CHECK_EQ_INT(peer_expect_close(&p, 0, &code), TETHER__F_BYE);
    CHECK_EQ_INT(code, TETHER_REJECT_MISMATCH);
    CHECK(rawws_wait_eof(&p.c, WAIT_MS));
    pthread_mutex_lock(&k.rec.mu);
    CHECK_EQ_INT(k.rec.mismatches, 1);
    CHECK_MEM(k.rec.mismatch.session.bytes, h.session_id, 16);
    CHECK_EQ_U64(k.rec.mismatch.peer_recv_cursor, 7);
    CHECK_EQ_U64(k.rec.mismatch.peer_out_last, 12);
    pthread_mutex_unlock(&k.rec.mu);
    tether_session_id id;
    memcpy(id.bytes, h.session_id, 16);
    CHECK_ERR(tether_server_pending(k.s, &id, NULL, NULL), TETHER_ENOTFOUND);
    CHECK_EQ_INT(srv_opens(&k), 0);
    peer_close(&p);
    srv_free(&k);
}

TEST(server_refuses_a_message_over_max_message_bytes)
{
    /* 1025 bytes: past the codec's limit; 5000 bytes: past the transport's too */
    static const size_t sizes[] = {1025, 5000};
    srv k;
    wire_srv_init(&k);
    k.cfg.max_message_bytes = 1024;
    CHECK_OK(srv_start(&k));
    for (size_t i = 0; i < 2; i++) {
        peer p;
        tether__hello h;
        uint32_t code = 99;
        CHECK_EQ_INT(peer_open(&p, k.port), 0);
        hello_init(&h, (uint8_t)(0x51 + i), 0x11);
        CHECK_EQ_INT(peer_handshake(&p, &h), 0);
        CHECK_OK(peer_data(&p, 1, 0, 1, 1024, 0)); /* exactly the limit: fine */
        CHECK_OK(peer_data(&p, 2, 0, 1, sizes[i], 0));
        CHECK_EQ_INT(peer_expect_close(&p, 1, &code), TETHER__F_BYE);
        CHECK_EQ_INT(code, TETHER_REJECT_TOO_BIG);
        CHECK(rawws_wait_eof(&p.c, WAIT_MS));
        CHECK(wait_until(srv_closed_once, &k, WAIT_MS));
        CHECK_EQ_INT(atomic_load(&last_close_error), TETHER_EFRAME_OVERSIZE);
        pthread_mutex_lock(&k.rec.mu);
        k.rec.closes = 0;
        pthread_mutex_unlock(&k.rec.mu);
        if (tt_failed_checks) {
            fprintf(stderr, "  (with a %zu-byte message)\n", sizes[i]);
        }
        peer_close(&p);
    }
    /* only seq 1 of each session was delivered */
    CHECK_EQ_U64(rec_count(&k.rec), 2);
    pthread_mutex_lock(&k.rec.mu);
    CHECK_EQ_U64(k.rec.seqs[0], 1);
    CHECK_EQ_U64(k.rec.seqs[1], 1);
    pthread_mutex_unlock(&k.rec.mu);
    srv_free(&k);
}

TEST(server_rejects_sessions_over_max_sessions)
{
    srv k;
    peer p1, p2;
    tether__hello h1, h2;
    uint32_t code = 99;
    wire_srv_init(&k);
    k.cfg.max_sessions = 1;
    CHECK_OK(srv_start(&k));
    CHECK_EQ_INT(peer_open(&p1, k.port), 0);
    hello_init(&h1, 0x61, 0x01);
    CHECK_EQ_INT(peer_handshake(&p1, &h1), 0);
    CHECK_EQ_INT(peer_open(&p2, k.port), 0);
    hello_init(&h2, 0x62, 0x02);
    CHECK_EQ_INT(peer_hello(&p2, &h2), 0);
    CHECK_EQ_INT(peer_expect_close(&p2, 0, &code), TETHER__F_REJECT);
    CHECK_EQ_INT(code, TETHER_REJECT_LIMIT);
    CHECK(rawws_wait_eof(&p2.c, WAIT_MS));
    uint32_t n = 0;
    CHECK_OK(tether_server_connected(k.s, &n));
    CHECK_EQ_INT(n, 1);
    tether_session_id id;
    memcpy(id.bytes, h2.session_id, 16);
    CHECK_ERR(tether_server_pending(k.s, &id, NULL, NULL), TETHER_ENOTFOUND);
    peer_close(&p2);
    peer_close(&p1);
    srv_free(&k);
}

TEST(server_answers_plain_http_with_400)
{
    srv k;
    char resp[1024] = "";
    char req[256];
    wire_srv_init(&k);
    CHECK_OK(srv_start(&k));
    snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nAccept: */*\r\n\r\n",
             (unsigned)k.port);
    int status = rawws_http(k.port, req, resp, sizeof resp, WAIT_MS);
    CHECK_EQ_INT(status, 400);
    if (status != 400) {
        fprintf(stderr, "  answer: %s\n", resp);
    }
    srv_free(&k);
}

/*
 * KNOWN LIBRARY BUG, this test fails until it is fixed: src/server.c
 * on_message() records TETHER_OK for a BYE(0) (close_conn(sc, TETHER_OK)),
 * but on_closed() passes "sc->error ? sc->error : why->error" to detach(), so
 * the recorded 0 is taken for "no reason" and on_session_close gets
 * TETHER_EPEER_CLOSED. include/tether/server.h: TETHER_OK for a graceful close.
 */
TEST(server_reports_graceful_close_as_ok)
{
    srv k;
    peer p;
    tether__hello h;
    wire_srv_init(&k);
    CHECK_OK(srv_start(&k));
    CHECK_EQ_INT(peer_open(&p, k.port), 0);
    hello_init(&h, 0x71, 0x03);
    CHECK_EQ_INT(peer_handshake(&p, &h), 0);
    CHECK_OK(tether__encode_bye(&p.out, TETHER_REJECT_NONE, "done for today"));
    CHECK_EQ_INT(peer_send(&p), 0);
    CHECK_EQ_INT(rawws_send_close(&p.c, 1000), 0);
    CHECK(rawws_wait_eof(&p.c, WAIT_MS));
    CHECK(wait_until(srv_closed_once, &k, WAIT_MS));
    CHECK_EQ_INT(srv_closes(&k), 1);
    CHECK_EQ_INT(atomic_load(&last_close_error), TETHER_OK);
    peer_close(&p);
    srv_free(&k);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    /* client against the raw server */
    RUN(http_403_is_permanent);
    RUN(http_401_is_permanent);
    RUN(http_401_is_retried_with_retry_permanent);
    RUN(transient_http_statuses_are_retried);
    RUN(wrong_accept_key_is_a_handshake_error);
    RUN(missing_subprotocol_is_a_handshake_error);
    RUN(other_subprotocol_is_a_handshake_error);
    RUN(silence_after_upgrade_is_reported_as_stalled);
    RUN(unanswered_pings_are_reported_as_dead_link);
    RUN(reject_version_stops_the_client);
    RUN(bye_too_big_stops_the_client);
    RUN(data_gap_from_server_is_refused);
    RUN(garbage_from_server_is_refused);
    RUN(text_message_from_server_is_refused);
    /* server against the raw client */
    RUN(server_closes_a_silent_upgrade_after_hello_timeout);
    RUN(server_answers_data_before_hello_with_bye_4);
    RUN(server_rejects_version_2);
    RUN(server_delivers_acks_drops_duplicates_and_refuses_gaps);
    RUN(server_rejects_a_wrong_token_and_keeps_the_session);
    RUN(server_reports_resume_of_unknown_session_as_mismatch);
    RUN(server_refuses_a_message_over_max_message_bytes);
    RUN(server_rejects_sessions_over_max_sessions);
    RUN(server_answers_plain_http_with_400);
    RUN(server_reports_graceful_close_as_ok);
    return tt_finish();
}

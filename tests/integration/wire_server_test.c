/*
 * Wire-level tests of the server: a real tether server against a raw
 * WebSocket client speaking tether by hand. HELLO timeouts and order,
 * versions, delivery, ACKs, duplicates and gaps, tokens, resume mismatches,
 * limits, plain HTTP and graceful close. Shared helpers in wire_fixture.h.
 */
#include "wire_fixture.h"
#include "transport/proxy.h"

#define HELLO_TIMEOUT_MS 300u

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

TEST(server_answers_plain_http_with_426)
{
    srv k;
    char resp[1024] = "";
    char req[256];
    wire_srv_init(&k);
    CHECK_OK(srv_start(&k));
    snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nAccept: */*\r\n\r\n",
             (unsigned)k.port);
    int status = rawws_http(k.port, req, resp, sizeof resp, WAIT_MS);
    CHECK_EQ_INT(status, 426);
    if (status != 426) {
        fprintf(stderr, "  answer: %s\n", resp);
    }
    char up[64];
    CHECK(tether__http_header(resp, strlen(resp), "Upgrade", up, sizeof up) == 1);
    CHECK(strcmp(up, "websocket") == 0);
    srv_free(&k);
}

/*
 * A client's BYE(0) then a close is a graceful end: on_session_close gets
 * TETHER_OK (include/tether/server.h), not TETHER_EPEER_CLOSED.
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
    /* server against the raw client */
    RUN(server_closes_a_silent_upgrade_after_hello_timeout);
    RUN(server_answers_data_before_hello_with_bye_4);
    RUN(server_rejects_version_2);
    RUN(server_delivers_acks_drops_duplicates_and_refuses_gaps);
    RUN(server_rejects_a_wrong_token_and_keeps_the_session);
    RUN(server_reports_resume_of_unknown_session_as_mismatch);
    RUN(server_refuses_a_message_over_max_message_bytes);
    RUN(server_rejects_sessions_over_max_sessions);
    RUN(server_answers_plain_http_with_426);
    RUN(server_reports_graceful_close_as_ok);
    return tt_finish();
}

/*
 * The server's HTTP carriage (proto/HTTP.md) on the wire: a real tether
 * server against a raw HTTP client speaking the carriage by hand. Open,
 * send and poll; frame numbers and retries both ways; held polls; a newer
 * poll replacing an older one; expiry and resume; a session moving between
 * WebSocket and HTTP; every refusal status; Origin and CORS.
 */
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <unistd.h>

#include <tether/tether.h>

#include "harness.h"
#include "itest.h"
#include "rawhttp.h"
#include "rawws.h"
#include "engine/frame.h"
#include "engine/httpcarry.h"

#define HOLD_MS 300u  /* the servers' poll hold here */
#define IDLE_MS 400u  /* their idle bound */
#define WAIT_MS 5000u /* bound of every wait for something that must happen */
#define CT "Content-Type: application/vnd.tether.v1+frames\r\n"

/* ------------------------------------------------------------------------ */
/* A carriage client by hand                                                  */
/* ------------------------------------------------------------------------ */

/* One session's client side over the carriage. */
typedef struct hpeer {
    uint16_t port;           /* the server's */
    uint8_t sid[16];         /* session id */
    uint8_t token[32];       /* resume token */
    char id[64];             /* connection id of the open connection, "" when none */
    uint64_t up_next;        /* number of the next upstream frame */
    uint64_t received;       /* downstream frames received */
    uint64_t out_last;       /* highest seq sent */
    uint64_t cursor;         /* highest server seq received */
    const char *origin;      /* Origin header to send, or NULL */
    tether__decoder dec;     /* decodes answers */
    tether__buf fb;          /* one frame being encoded */
    tether__buf body;        /* a body being built */
    tether__frame f[8];      /* frames of the last answer (first 8) */
    uint8_t *fmem[8];        /* copies the frames' slices point into */
    size_t nf;               /* frames in the last answer */
    rawhttp_resp r;          /* the last answer */
} hpeer;

static void hp_init(hpeer *p, uint16_t port, uint8_t tag)
{
    memset(p, 0, sizeof *p);
    p->port = port;
    memset(p->sid, tag, sizeof p->sid);
    memset(p->token, (uint8_t)(tag + 1), sizeof p->token);
    p->up_next = 1;
    tether__decoder_init(&p->dec, 1u << 20);
    tether__buf_init(&p->fb, 0);
    tether__buf_init(&p->body, 0);
}

static void hp_clear_frames(hpeer *p)
{
    for (size_t i = 0; i < 8; i++) {
        free(p->fmem[i]);
        p->fmem[i] = NULL;
    }
    p->nf = 0;
}

static void hp_free(hpeer *p)
{
    hp_clear_frames(p);
    rawhttp_free(&p->r);
    tether__decoder_free(&p->dec);
    tether__buf_free(&p->fb);
    tether__buf_free(&p->body);
}

/* Headers of a request of p's connection, with extra lines appended. */
static const char *hp_headers(hpeer *p, char *buf, size_t len, const char *extra)
{
    int n = snprintf(buf, len, "%s", extra ? extra : "");
    if (p->id[0]) {
        n += snprintf(buf + n, len - (size_t)n, "Tether-Connection: %s\r\n", p->id);
    }
    if (p->origin) {
        snprintf(buf + n, len - (size_t)n, "Origin: %s\r\n", p->origin);
    }
    return buf;
}

/* Decodes the frames of the last answer (kind answer or poll) into p->f. */
static int hp_frames(hpeer *p, int kind)
{
    tether__hc_limits lim;
    size_t pos = 0;
    tether__slice s;
    hp_clear_frames(p);
    tether__hc_limits_for(&lim, kind, 1u << 20);
    if (tether__hc_check(&lim, p->r.body, p->r.len, NULL, NULL) != TETHER_OK) {
        return -1;
    }
    while (p->nf < 8 && tether__hc_next(p->r.body, p->r.len, &pos, &s)) {
        p->fmem[p->nf] = malloc(s.len);
        memcpy(p->fmem[p->nf], s.data, s.len);
        if (tether__decode(&p->dec, p->fmem[p->nf], s.len, &p->f[p->nf]) != TETHER_OK) {
            return -1;
        }
        if (p->f[p->nf].type == TETHER__F_DATA) {
            /* keep the payloads: the decoder reuses its slice array */
            tether__data *d = &p->f[p->nf].u.data;
            p->cursor = d->first_seq + d->count - 1;
            d->payloads = NULL;
        }
        p->nf++;
    }
    return 0;
}

static void hp_hello(hpeer *p, int resume)
{
    tether__hello h;
    memset(&h, 0, sizeof h);
    h.version = TETHER__PROTO_VERSION;
    memcpy(h.session_id, p->sid, 16);
    memcpy(h.token, p->token, 32);
    h.resume = resume;
    h.recv_cursor = p->cursor;
    h.out_last = p->out_last;
    h.max_message = 1u << 20;
    h.window = 1024;
    tether__encode_hello(&p->fb, &h);
}

/* Opens a connection: the answer's status (p->r, p->f), -1 when none came. */
static int hp_open(hpeer *p, int resume)
{
    char hdr[512];
    p->id[0] = '\0';
    hp_hello(p, resume);
    tether__buf_reset(&p->body);
    tether__hc_append(&p->body, tether__buf_frame(&p->fb), p->fb.len);
    if (rawhttp_do(p->port, "POST", "/.tether/v1/open", hp_headers(p, hdr, sizeof hdr, CT),
                   tether__buf_frame(&p->body), p->body.len, &p->r, WAIT_MS) != 0) {
        return -1;
    }
    if (p->r.status == 200 && hp_frames(p, TETHER__HC_ANSWER) == 0) {
        rawhttp_header(&p->r, "Tether-Connection", p->id, sizeof p->id);
        p->up_next = 1;
        p->received = 0;
    }
    return p->r.status;
}

/* Adds DATA seqs first..first+count-1 (payloads tagged with their seq) to p->body. */
static void hp_add_data(hpeer *p, uint64_t first, size_t count)
{
    uint8_t pl[16];
    tether__encode_data_begin(&p->fb, first, 0, count);
    for (size_t i = 0; i < count; i++) {
        make_payload(pl, sizeof pl, first + i);
        tether__encode_data_payload(&p->fb, pl, sizeof pl);
    }
    tether__encode_data_end(&p->fb);
    tether__hc_append(&p->body, tether__buf_frame(&p->fb), p->fb.len);
    if (first + count - 1 > p->out_last) {
        p->out_last = first + count - 1;
    }
}

/* POSTs p->body as frames numbered from first: the status. */
static int hp_send_body(hpeer *p, uint64_t first, size_t frames)
{
    char hdr[512], extra[128];
    snprintf(extra, sizeof extra, CT "Tether-First: %llu\r\n", (unsigned long long)first);
    if (rawhttp_do(p->port, "POST", "/.tether/v1/send", hp_headers(p, hdr, sizeof hdr, extra),
                   tether__buf_frame(&p->body), p->body.len, &p->r, WAIT_MS) != 0) {
        return -1;
    }
    if (p->r.status == 204 && first + frames > p->up_next) {
        p->up_next = first + frames;
    }
    return p->r.status;
}

/* Sends DATA first..first+count-1 in one frame. */
static int hp_send_data(hpeer *p, uint64_t first, size_t count)
{
    tether__buf_reset(&p->body);
    hp_add_data(p, first, count);
    return hp_send_body(p, p->up_next, 1);
}

static int hp_send_ack(hpeer *p, uint64_t seq)
{
    tether__buf_reset(&p->body);
    tether__encode_ack(&p->fb, seq);
    tether__hc_append(&p->body, tether__buf_frame(&p->fb), p->fb.len);
    return hp_send_body(p, p->up_next, 1);
}

/* Polls reporting received: the status; frames in p->f, p->received advanced. */
static int hp_poll_as(hpeer *p, uint64_t received, const char *extra_hdr)
{
    char hdr[512], extra[256];
    snprintf(extra, sizeof extra, "Tether-Received: %llu\r\n%s", (unsigned long long)received,
             extra_hdr ? extra_hdr : "");
    if (rawhttp_do(p->port, "GET", "/.tether/v1/poll", hp_headers(p, hdr, sizeof hdr, extra),
                   NULL, 0, &p->r, WAIT_MS) != 0) {
        return -1;
    }
    hp_clear_frames(p);
    if (p->r.status == 200) {
        char v[32];
        if (!rawhttp_header(&p->r, "Tether-First", v, sizeof v) || hp_frames(p, TETHER__HC_POLL)) {
            return -2;
        }
        uint64_t first = strtoull(v, NULL, 10);
        p->received = first + p->nf - 1;
    }
    return p->r.status;
}

static int hp_poll(hpeer *p)
{
    return hp_poll_as(p, p->received, NULL);
}

/* Polls until a frame of type comes (bounded): 1 if it did (its index in *at). */
static int hp_poll_for(hpeer *p, int type, size_t *at)
{
    uint64_t until = rawws_now_ms() + WAIT_MS;
    while (rawws_now_ms() < until) {
        int st = hp_poll(p);
        if (st != 200 && st != 204) {
            return 0;
        }
        for (size_t i = 0; i < p->nf; i++) {
            if (p->f[i].type == type) {
                if (at) {
                    *at = i;
                }
                return 1;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The server under test                                                      */
/* ------------------------------------------------------------------------ */

static void car_srv_init(srv *v)
{
    srv_init(v);
    v->cfg.http_poll_hold_ms = HOLD_MS;
    v->cfg.http_idle_ms = IDLE_MS;
}

static int srv_closes(srv *v)
{
    pthread_mutex_lock(&v->rec.mu);
    int n = v->rec.closes;
    pthread_mutex_unlock(&v->rec.mu);
    return n;
}

static int closed_once(void *arg)
{
    return srv_closes(arg) >= 1;
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                      */
/* ------------------------------------------------------------------------ */

TEST(open_send_poll_delivers_once_in_order_and_acks_come_back)
{
    srv v;
    hpeer p;
    car_srv_init(&v);
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x11);

    CHECK_EQ_INT(hp_open(&p, 0), 200);
    CHECK_EQ_INT(strlen(p.id), TETHER__HC_ID_CHARS);
    CHECK(tether__hc_id_valid(p.id, strlen(p.id)));
    CHECK_EQ_INT(p.nf, 1);
    CHECK_EQ_INT(p.f[0].type, TETHER__F_WELCOME);
    CHECK_EQ_INT(p.f[0].u.welcome.resumed, 0);

    CHECK_EQ_INT(hp_send_data(&p, 1, 1), 204);
    CHECK_EQ_INT(hp_send_data(&p, 2, 2), 204);
    CHECK_EQ_INT(hp_send_data(&p, 4, 1), 204);
    CHECK(rec_wait_count(&v.rec, 4, WAIT_MS));
    rec_check_exact(&v.rec, 4, "carriage delivery");

    /* the ACK comes down in a poll */
    uint64_t acked = 0;
    uint64_t until = rawws_now_ms() + WAIT_MS;
    while (acked < 4 && rawws_now_ms() < until) {
        int st = hp_poll(&p);
        CHECK(st == 200 || st == 204);
        for (size_t i = 0; i < p.nf; i++) {
            if (p.f[i].type == TETHER__F_ACK) {
                acked = p.f[i].u.ack;
            }
        }
    }
    CHECK_EQ_U64(acked, 4);
    hp_free(&p);
    srv_free(&v);
}

TEST(a_retried_send_is_not_delivered_twice)
{
    srv v;
    hpeer p;
    car_srv_init(&v);
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x12);
    CHECK_EQ_INT(hp_open(&p, 0), 200);

    tether__buf_reset(&p.body);
    hp_add_data(&p, 1, 1);
    hp_add_data(&p, 2, 1);
    CHECK_EQ_INT(hp_send_body(&p, 1, 2), 204);
    CHECK_EQ_INT(hp_send_body(&p, 1, 2), 204); /* the same body again: its 204 was "lost" */
    /* a retry that appends a new frame: only the new one is handled */
    hp_add_data(&p, 3, 1);
    CHECK_EQ_INT(hp_send_body(&p, 1, 3), 204);
    CHECK_EQ_INT(hp_send_data(&p, 4, 1), 204);
    CHECK(rec_wait_count(&v.rec, 4, WAIT_MS));
    rec_check_exact(&v.rec, 4, "retried sends");
    pthread_mutex_lock(&v.rec.mu);
    CHECK_EQ_U64(v.rec.n, 4);
    CHECK_EQ_U64(v.rec.redelivered, 0);
    pthread_mutex_unlock(&v.rec.mu);
    hp_free(&p);
    srv_free(&v);
}


TEST(a_poll_is_held_then_answered_204_and_server_data_comes_by_poll)
{
    srv v;
    hpeer p;
    tether_session_id sid;
    uint8_t pl[16];
    car_srv_init(&v);
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x13);
    memcpy(sid.bytes, p.sid, 16);
    CHECK_EQ_INT(hp_open(&p, 0), 200);

    /* nothing to send: held for the hold bound, then 204 (no frame, no number) */
    uint64_t t0 = rawws_now_ms();
    CHECK_EQ_INT(hp_poll(&p), 204);
    uint64_t held = rawws_now_ms() - t0;
    CHECK(held + 20 >= HOLD_MS);
    CHECK(held < HOLD_MS + 2000);
    CHECK_EQ_U64(p.received, 0);

    /* server -> client DATA travels in a poll, numbered from 1 */
    make_payload(pl, sizeof pl, 1);
    uint64_t seq = 0;
    CHECK_OK(tether_server_send(v.s, &sid, pl, sizeof pl, &seq));
    CHECK_EQ_U64(seq, 1);
    size_t at = 0;
    CHECK(hp_poll_for(&p, TETHER__F_DATA, &at));
    CHECK_EQ_U64(p.f[at].u.data.first_seq, 1);
    uint64_t got = p.received;
    CHECK(got >= 1);

    /* the answer "was lost": a poll reporting the old count gets the same frames again */
    CHECK_EQ_INT(hp_poll_as(&p, got - p.nf, NULL), 200);
    CHECK_EQ_U64(p.received, got);
    CHECK_EQ_INT(p.f[at].type, TETHER__F_DATA);

    /* the client acknowledges seq 1 upstream: on_acked */
    CHECK_EQ_INT(hp_send_ack(&p, 1), 204);
    uint64_t until = rawws_now_ms() + WAIT_MS;
    int acked = 0;
    while (!acked && rawws_now_ms() < until) {
        pthread_mutex_lock(&v.rec.mu);
        acked = v.rec.acked_hi >= 1;
        pthread_mutex_unlock(&v.rec.mu);
        sleep_ms(5);
    }
    CHECK(acked);
    /* a Tether-Hold shorter than the server's bound is honoured as a bound, not a wait */
    CHECK_EQ_INT(hp_poll_as(&p, p.received, "Tether-Hold: 1\r\n"), 204);
    hp_free(&p);
    srv_free(&v);
}

TEST(a_newer_poll_replaces_a_held_one)
{
    srv v;
    hpeer p;
    tether_session_id sid;
    uint8_t pl[16];
    rawhttp_resp ra, rb;
    char hdr[512];
    memset(&ra, 0, sizeof ra);
    memset(&rb, 0, sizeof rb);
    srv_init(&v);
    v.cfg.http_poll_hold_ms = 20000; /* held until something happens */
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x14);
    memcpy(sid.bytes, p.sid, 16);
    CHECK_EQ_INT(hp_open(&p, 0), 200);

    int a = rawhttp_connect(v.port), b = rawhttp_connect(v.port);
    CHECK(a >= 0 && b >= 0);
    CHECK_OK(rawhttp_send(a, "GET", "/.tether/v1/poll",
                          hp_headers(&p, hdr, sizeof hdr, "Tether-Received: 0\r\n"), NULL, 0));
    CHECK(rawhttp_quiet(a, 100)); /* held */
    CHECK_OK(rawhttp_send(b, "GET", "/.tether/v1/poll",
                          hp_headers(&p, hdr, sizeof hdr, "Tether-Received: 0\r\n"), NULL, 0));
    /* one of the two is answered 204 at once (the older); the other stays held */
    struct pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    CHECK_EQ_INT(poll(fds, 2, WAIT_MS), 1);
    int first = (fds[0].revents & POLLIN) ? a : b, other = first == a ? b : a;
    CHECK_OK(rawhttp_read(first, &ra, WAIT_MS));
    CHECK_EQ_INT(ra.status, 204);
    CHECK(rawhttp_quiet(other, 100));
    /* the held one carries the next frame */
    make_payload(pl, sizeof pl, 1);
    CHECK_OK(tether_server_send(v.s, &sid, pl, sizeof pl, NULL));
    CHECK_OK(rawhttp_read(other, &rb, WAIT_MS));
    CHECK_EQ_INT(rb.status, 200);
    char tf[16];
    CHECK(rawhttp_header(&rb, "Tether-First", tf, sizeof tf) != NULL);
    CHECK_EQ_STR(tf, "1");
    close(a);
    close(b);
    rawhttp_free(&ra);
    rawhttp_free(&rb);
    hp_free(&p);
    srv_free(&v);
}

static int online_is_zero(void *arg)
{
    srv *v = arg;
    tether_server_statistics st;
    return tether_server_stats(v->s, &st) == TETHER_OK && st.sessions_online == 0;
}

TEST(an_abandoned_connection_expires_and_the_session_resumes_over_http)
{
    srv v;
    hpeer p;
    tether_server_statistics st;
    car_srv_init(&v);
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x15);
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    CHECK_EQ_INT(hp_send_data(&p, 1, 3), 204);
    CHECK(rec_wait_count(&v.rec, 3, WAIT_MS));
    CHECK_OK(tether_server_stats(v.s, &st));
    CHECK_EQ_U64(st.sessions_online, 1);

    /* the client vanishes: after the idle bound the server ends the connection */
    char old_id[64];
    snprintf(old_id, sizeof old_id, "%s", p.id);
    CHECK(wait_until(closed_once, &v, WAIT_MS));
    CHECK(wait_until(online_is_zero, &v, WAIT_MS));
    CHECK_EQ_INT(hp_poll(&p), 404); /* its id is forgotten */

    /* a new HELLO resumes the session: the server committed 1..3 */
    CHECK_EQ_INT(hp_open(&p, 1), 200);
    CHECK(strcmp(p.id, old_id) != 0);
    CHECK_EQ_INT(p.f[0].type, TETHER__F_WELCOME);
    CHECK_EQ_INT(p.f[0].u.welcome.resumed, 1);
    CHECK_EQ_U64(p.f[0].u.welcome.recv_cursor, 3);
    CHECK_EQ_INT(hp_send_data(&p, 4, 1), 204);
    CHECK(rec_wait_count(&v.rec, 4, WAIT_MS));
    rec_check_exact(&v.rec, 4, "after expiry and resume");
    hp_free(&p);
    srv_free(&v);
}

/* A raw WebSocket HELLO for p's session; reads the WELCOME. 1 on success. */
static int ws_hello(rawws_conn *c, hpeer *p)
{
    rawws_msg m;
    tether__frame f;
    memset(&m, 0, sizeof m);
    if (rawws_open(c, p->port) != 0) {
        return 0;
    }
    hp_hello(p, 1);
    if (rawws_send(c, RAWWS_BINARY, tether__buf_frame(&p->fb), p->fb.len) != 0 ||
        rawws_read_msg(c, &m, WAIT_MS) != 1) {
        return 0;
    }
    int ok = tether__decode(&p->dec, m.data, m.len, &f) == TETHER_OK &&
             f.type == TETHER__F_WELCOME && f.u.welcome.resumed == 1;
    rawws_msg_free(&m);
    return ok;
}

TEST(the_last_hello_owns_the_session_across_websocket_and_http)
{
    srv v;
    hpeer p;
    rawws_conn ws;
    rawws_msg m;
    tether__frame f;
    memset(&m, 0, sizeof m);
    car_srv_init(&v);
    v.cfg.http_idle_ms = 20000;
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x16);
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    CHECK_EQ_INT(hp_send_data(&p, 1, 1), 204);
    CHECK(rec_wait_count(&v.rec, 1, WAIT_MS));

    /* HTTP -> WebSocket: the HTTP connection gets BYE(9) downstream */
    CHECK(ws_hello(&ws, &p));
    size_t at = 0;
    CHECK(hp_poll_for(&p, TETHER__F_BYE, &at));
    CHECK_EQ_INT(p.f[at].u.close.code, TETHER_REJECT_DISPLACED);
    CHECK_EQ_INT(hp_poll(&p), 204); /* confirms the BYE: that connection is over */
    CHECK_EQ_INT(hp_poll(&p), 404);

    /* DATA 2 over WebSocket */
    tether__buf_reset(&p.body);
    hp_add_data(&p, 2, 1);
    CHECK_OK(rawws_send(&ws, RAWWS_BINARY, tether__buf_frame(&p.fb), p.fb.len));
    CHECK(rec_wait_count(&v.rec, 2, WAIT_MS));

    /* WebSocket -> HTTP: the WebSocket gets BYE(9) and closes */
    CHECK_EQ_INT(hp_open(&p, 1), 200);
    CHECK_EQ_INT(p.f[0].u.welcome.recv_cursor, 2);
    int bye = 0;
    while (!bye && rawws_read_msg(&ws, &m, WAIT_MS) == 1) {
        if (m.opcode == RAWWS_BINARY && tether__decode(&p.dec, m.data, m.len, &f) == TETHER_OK &&
            f.type == TETHER__F_BYE) {
            bye = f.u.close.code == TETHER_REJECT_DISPLACED;
        }
        rawws_msg_free(&m);
    }
    CHECK(bye);
    CHECK_EQ_INT(hp_send_data(&p, 3, 1), 204);
    CHECK(rec_wait_count(&v.rec, 3, WAIT_MS));
    rec_check_exact(&v.rec, 3, "across carriages");
    rawws_conn_close(&ws);
    hp_free(&p);
    srv_free(&v);
}

TEST(a_client_bye_ends_the_connection_and_answers_the_held_poll)
{
    srv v;
    hpeer p;
    rawhttp_resp r;
    char hdr[512];
    memset(&r, 0, sizeof r);
    srv_init(&v);
    v.cfg.http_poll_hold_ms = 20000;
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x17);
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    int a = rawhttp_connect(v.port);
    CHECK(a >= 0);
    CHECK_OK(rawhttp_send(a, "GET", "/.tether/v1/poll",
                          hp_headers(&p, hdr, sizeof hdr, "Tether-Received: 0\r\n"), NULL, 0));
    CHECK(rawhttp_quiet(a, 50));
    tether__buf_reset(&p.body);
    tether__encode_bye(&p.fb, 0, "");
    tether__hc_append(&p.body, tether__buf_frame(&p.fb), p.fb.len);
    CHECK_EQ_INT(hp_send_body(&p, 1, 1), 204);
    CHECK_OK(rawhttp_read(a, &r, WAIT_MS));
    CHECK_EQ_INT(r.status, 204);
    CHECK(wait_until(closed_once, &v, WAIT_MS));
    CHECK_EQ_INT(hp_poll(&p), 404);
    close(a);
    rawhttp_free(&r);
    hp_free(&p);
    srv_free(&v);
}


/* A request on a fresh connection: its status (r filled). */
static int req(uint16_t port, const char *method, const char *path, const char *headers,
               const void *body, size_t len, rawhttp_resp *r)
{
    return rawhttp_do(port, method, path, headers, body, len, r, WAIT_MS) == 0 ? r->status : -1;
}

TEST(malformed_and_oversized_bodies_wrong_methods_and_unknown_ids_get_their_statuses)
{
    srv v;
    hpeer p;
    rawhttp_resp r;
    char hdr[512], v8[64];
    memset(&r, 0, sizeof r);
    car_srv_init(&v);
    v.cfg.http_idle_ms = 20000;
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x18);

    /* open: a record that claims 10 bytes and has 3 -> 400; one over 1024 -> 413 */
    const uint8_t trunc[] = {0, 0, 0, 10, 1, 2, 3};
    CHECK_EQ_INT(req(v.port, "POST", "/.tether/v1/open", CT, trunc, sizeof trunc, &r), 400);
    const uint8_t big[] = {0, 0, 4, 1, 1, 2, 3, 4};
    CHECK_EQ_INT(req(v.port, "POST", "/.tether/v1/open", CT, big, sizeof big, &r), 413);
    /* a Content-Length over the open limit is refused before the body is read */
    CHECK_EQ_INT(req(v.port, "POST", "/.tether/v1/open", CT "Content-Length: 2000\r\n", NULL, 0,
                     &r),
                 413);
    CHECK_EQ_INT(req(v.port, "POST", "/.tether/v1/open", "Content-Type: text/plain\r\n", trunc,
                     sizeof trunc, &r),
                 415);
    /* a well-formed body whose frame is not a HELLO: 200 with BYE(4), no id */
    tether__buf_reset(&p.body);
    tether__encode_ack(&p.fb, 1);
    tether__hc_append(&p.body, tether__buf_frame(&p.fb), p.fb.len);
    CHECK_EQ_INT(req(v.port, "POST", "/.tether/v1/open", CT, tether__buf_frame(&p.body),
                     p.body.len, &r),
                 200);
    CHECK(rawhttp_header(&r, "Tether-Connection", v8, sizeof v8) == NULL);
    rawhttp_free(&p.r);
    p.r = r;
    memset(&r, 0, sizeof r);
    CHECK_OK(hp_frames(&p, TETHER__HC_ANSWER));
    CHECK_EQ_INT(p.nf, 1);
    CHECK_EQ_INT(p.f[0].type, TETHER__F_BYE);
    CHECK_EQ_INT(p.f[0].u.close.code, 4);

    /* unknown operation under the marker, wrong methods */
    CHECK_EQ_INT(req(v.port, "GET", "/.tether/v1/frob", NULL, NULL, 0, &r), 404);
    CHECK_EQ_INT(req(v.port, "GET", "/.tether/v1/open", NULL, NULL, 0, &r), 405);
    CHECK_EQ_STR(rawhttp_header(&r, "Allow", v8, sizeof v8), "POST");
    CHECK_EQ_INT(req(v.port, "POST", "/.tether/v1/poll", CT, trunc, sizeof trunc, &r), 405);
    CHECK_EQ_STR(rawhttp_header(&r, "Allow", v8, sizeof v8), "GET");
    /* a path outside the carriage keeps the old answer */
    CHECK_EQ_INT(req(v.port, "GET", "/elsewhere", NULL, NULL, 0, &r), 400);

    /* ids: missing or malformed -> 400, unknown -> 404 */
    CHECK_EQ_INT(req(v.port, "GET", "/.tether/v1/poll", "Tether-Received: 0\r\n", NULL, 0, &r),
                 400);
    CHECK_EQ_INT(req(v.port, "GET", "/.tether/v1/poll",
                     "Tether-Received: 0\r\nTether-Connection: short!\r\n", NULL, 0, &r),
                 400);
    CHECK_EQ_INT(req(v.port, "GET", "/.tether/v1/poll",
                     "Tether-Received: 0\r\nTether-Connection: AAECAwQFBgcICQoLDA0ODxAREhMUFRYX\r\n",
                     NULL, 0, &r),
                 404);

    /* a send with an empty record: 400, and the connection is over */
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    const uint8_t empty[] = {0, 0, 0, 0};
    CHECK_EQ_INT(req(v.port, "POST", "/.tether/v1/send",
                     hp_headers(&p, hdr, sizeof hdr, CT "Tether-First: 1\r\n"), empty,
                     sizeof empty, &r),
                 400);
    CHECK_EQ_INT(hp_poll(&p), 404);
    /* a send record over the server's limit: 413 */
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    const uint8_t huge[] = {0x7f, 0, 0, 0, 1, 2, 3, 4};
    CHECK_EQ_INT(req(v.port, "POST", "/.tether/v1/send",
                     hp_headers(&p, hdr, sizeof hdr, CT "Tether-First: 1\r\n"), huge,
                     sizeof huge, &r),
                 413);
    CHECK_EQ_INT(hp_poll(&p), 404);
    /* a gap in Tether-First: 400 */
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    tether__buf_reset(&p.body);
    hp_add_data(&p, 1, 1);
    CHECK_EQ_INT(hp_send_body(&p, 3, 1), 400);
    CHECK_EQ_INT(hp_poll(&p), 404);
    /* Tether-First missing or 0, a wrong Content-Type */
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    CHECK_EQ_INT(req(v.port, "POST", "/.tether/v1/send", hp_headers(&p, hdr, sizeof hdr, CT),
                     tether__buf_frame(&p.body), p.body.len, &r),
                 400);
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    CHECK_EQ_INT(hp_send_body(&p, 0, 1), 400);
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    CHECK_EQ_INT(req(v.port, "POST", "/.tether/v1/send",
                     hp_headers(&p, hdr, sizeof hdr,
                                "Content-Type: text/plain\r\nTether-First: 1\r\n"),
                     tether__buf_frame(&p.body), p.body.len, &r),
                 415);
    CHECK_EQ_INT(hp_poll(&p), 404);
    /* Tether-Received above what was sent, a malformed Tether-Hold */
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    CHECK_EQ_INT(hp_poll_as(&p, 7, NULL), 400);
    CHECK_EQ_INT(hp_poll(&p), 404);
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    CHECK_EQ_INT(hp_poll_as(&p, 0, "Tether-Hold: 0\r\n"), 400);

    /* a second send while one is being received: 409 with Retry-After, nothing handled */
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    int a = rawhttp_connect(v.port);
    CHECK(a >= 0);
    CHECK_OK(rawhttp_send(a, "POST", "/.tether/v1/send",
                          hp_headers(&p, hdr, sizeof hdr,
                                     CT "Tether-First: 1\r\nContent-Length: 200\r\n"),
                          NULL, 0));
    CHECK(rawhttp_quiet(a, 50));
    int st = 0;
    for (int i = 0; i < 100 && st != 409; i++) { /* until the first send's head was read */
        st = req(v.port, "POST", "/.tether/v1/send",
                 hp_headers(&p, hdr, sizeof hdr, CT "Tether-First: 1\r\n"),
                 tether__buf_frame(&p.body), p.body.len, &r);
        CHECK(st == 409 || st == 204);
    }
    CHECK_EQ_INT(st, 409);
    CHECK_EQ_STR(rawhttp_header(&r, "Retry-After", v8, sizeof v8), "1");
    close(a);
    rawhttp_free(&r);
    hp_free(&p);
    srv_free(&v);
}

TEST(origins_and_cors)
{
    srv v;
    hpeer p;
    rawhttp_resp r;
    char b[256];
    const char *origins[] = {"https://app.example", NULL};
    memset(&r, 0, sizeof r);
    car_srv_init(&v);
    v.cfg.allowed_origins = origins;
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x19);

    /* open: no Origin or another one -> 403 without CORS headers, as for an upgrade */
    CHECK_EQ_INT(hp_open(&p, 0), 403);
    p.origin = "https://evil.example";
    CHECK_EQ_INT(hp_open(&p, 0), 403);
    CHECK(rawhttp_header(&p.r, "Access-Control-Allow-Origin", b, sizeof b) == NULL);
    p.origin = "https://app.example";
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    CHECK_EQ_STR(rawhttp_header(&p.r, "Access-Control-Allow-Origin", b, sizeof b),
                 "https://app.example");
    CHECK_EQ_STR(rawhttp_header(&p.r, "Access-Control-Allow-Credentials", b, sizeof b), "true");
    CHECK(rawhttp_header(&p.r, "Access-Control-Expose-Headers", b, sizeof b) &&
          strstr(b, "Tether-Connection") && strstr(b, "Tether-First"));
    CHECK_EQ_STR(rawhttp_header(&p.r, "Cache-Control", b, sizeof b), "no-store, no-transform");
    /* every request is checked, not only the open */
    p.origin = "https://evil.example";
    CHECK_EQ_INT(hp_poll(&p), 403);
    p.origin = "https://app.example";
    CHECK_EQ_INT(hp_send_data(&p, 1, 1), 204);
    CHECK(rec_wait_count(&v.rec, 1, WAIT_MS));

    /* preflight */
    CHECK_EQ_INT(req(v.port, "OPTIONS", "/.tether/v1/send",
                     "Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n"
                     "Access-Control-Request-Headers: content-type, tether-connection\r\n",
                     NULL, 0, &r),
                 204);
    CHECK_EQ_STR(rawhttp_header(&r, "Access-Control-Allow-Origin", b, sizeof b),
                 "https://app.example");
    CHECK_EQ_STR(rawhttp_header(&r, "Access-Control-Allow-Methods", b, sizeof b), "GET, POST");
    CHECK(rawhttp_header(&r, "Access-Control-Allow-Headers", b, sizeof b) &&
          strstr(b, "Tether-Connection") && strstr(b, "Tether-Hold"));
    CHECK_EQ_STR(rawhttp_header(&r, "Access-Control-Max-Age", b, sizeof b), "600");
    CHECK_EQ_STR(rawhttp_header(&r, "Vary", b, sizeof b), "Origin");
    CHECK_EQ_INT(req(v.port, "OPTIONS", "/.tether/v1/open",
                     "Origin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\n",
                     NULL, 0, &r),
                 403);
    CHECK(rawhttp_header(&r, "Access-Control-Allow-Origin", b, sizeof b) == NULL);
    rawhttp_free(&r);
    hp_free(&p);
    srv_free(&v);

    /* without an allow-list any origin is allowed, with "*" */
    car_srv_init(&v);
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x1a);
    p.origin = "https://any.example";
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    CHECK_EQ_STR(rawhttp_header(&p.r, "Access-Control-Allow-Origin", b, sizeof b), "*");
    CHECK(rawhttp_header(&p.r, "Access-Control-Allow-Credentials", b, sizeof b) == NULL);
    hp_free(&p);
    srv_free(&v);
}

static int refuse_hook(tether_server *s, tether_handshake *hs, void *user)
{
    (void)s;
    snprintf(user, 128, "%s", tether_handshake_path(hs));
    tether_handshake_reply_header(hs, "WWW-Authenticate", "Bearer");
    return 401;
}

TEST(the_admission_hook_sees_the_application_path_and_may_refuse)
{
    srv v;
    hpeer p;
    char path[128] = "", b[64];
    car_srv_init(&v);
    v.cfg.cb.on_handshake = refuse_hook;
    v.cfg.user = path;
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x1b);
    hp_hello(&p, 0);
    tether__buf_reset(&p.body);
    tether__hc_append(&p.body, tether__buf_frame(&p.fb), p.fb.len);
    CHECK_EQ_INT(req(v.port, "POST", "/chat/.tether/v1/open?room=7", CT,
                     tether__buf_frame(&p.body), p.body.len, &p.r),
                 401);
    CHECK_EQ_STR(rawhttp_header(&p.r, "WWW-Authenticate", b, sizeof b), "Bearer");
    CHECK_EQ_STR(path, "/chat?room=7");
    hp_free(&p);
    v.cfg.user = &v.rec;
    srv_free(&v);
}

TEST(destroy_frees_open_connections_and_held_polls)
{
    srv v;
    hpeer p, q;
    rawhttp_resp r;
    char hdr[512];
    memset(&r, 0, sizeof r);
    srv_init(&v);
    v.cfg.http_poll_hold_ms = 20000;
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x1c);
    hp_init(&q, v.port, 0x1d);
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    CHECK_EQ_INT(hp_open(&q, 0), 200);
    CHECK_EQ_INT(hp_send_data(&q, 1, 2), 204);
    CHECK(rec_wait_count(&v.rec, 2, WAIT_MS));
    int a = rawhttp_connect(v.port);
    CHECK(a >= 0);
    CHECK_OK(rawhttp_send(a, "GET", "/.tether/v1/poll",
                          hp_headers(&p, hdr, sizeof hdr, "Tether-Received: 0\r\n"), NULL, 0));
    CHECK(rawhttp_quiet(a, 50));
    tether_server_destroy(v.s);
    v.s = NULL;
    /* the held poll got the shutdown BYE(5), or its TCP connection closed */
    if (rawhttp_read(a, &r, WAIT_MS) == 0) {
        rawhttp_free(&p.r);
        p.r = r;
        memset(&r, 0, sizeof r);
        CHECK_EQ_INT(p.r.status, 200);
        CHECK_OK(hp_frames(&p, TETHER__HC_POLL));
        CHECK(p.nf >= 1 && p.f[p.nf - 1].type == TETHER__F_BYE &&
              p.f[p.nf - 1].u.close.code == TETHER_REJECT_SHUTDOWN);
    }
    close(a);
    hp_free(&p);
    hp_free(&q);
    srv_free(&v);
}

int main(void)
{
    RUN(open_send_poll_delivers_once_in_order_and_acks_come_back);
    RUN(a_retried_send_is_not_delivered_twice);
    RUN(a_poll_is_held_then_answered_204_and_server_data_comes_by_poll);
    RUN(a_newer_poll_replaces_a_held_one);
    RUN(an_abandoned_connection_expires_and_the_session_resumes_over_http);
    RUN(the_last_hello_owns_the_session_across_websocket_and_http);
    RUN(a_client_bye_ends_the_connection_and_answers_the_held_poll);
    RUN(malformed_and_oversized_bodies_wrong_methods_and_unknown_ids_get_their_statuses);
    RUN(origins_and_cors);
    RUN(the_admission_hook_sees_the_application_path_and_may_refuse);
    RUN(destroy_frees_open_connections_and_held_polls);
    return tt_finish();
}

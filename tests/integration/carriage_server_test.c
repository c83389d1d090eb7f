/*
 * The server's HTTP carriage (proto/HTTP.md) on the wire: a real tether
 * server against a raw HTTP client speaking the carriage by hand. Open,
 * send and poll; frame numbers and retries both ways; held polls; a newer
 * poll replacing an older one; expiry and resume; a session moving between
 * WebSocket and HTTP; streams; destroy with live connections. Statuses,
 * CORS and TLS are in carriage_status_test.c; the client and the server's
 * set-up in carriage_fixture.h.
 */
#include "carriage_fixture.h"

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
    CHECK(strncmp(p.r.head, "HTTP/1.1 204 No Content\r\n", 25) == 0); /* not "204 " */
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

    /* a body of many frames, read by the server in several pieces */
    tether__buf_reset(&p.body);
    for (uint64_t seq = 5; seq <= 1004; seq++) {
        hp_add_data(&p, seq, 1);
    }
    CHECK(p.body.len > 16384);
    CHECK_EQ_INT(hp_send_body(&p, p.up_next, 1000), 204);
    CHECK(rec_wait_count(&v.rec, 1004, WAIT_MS));
    rec_check_exact(&v.rec, 1004, "a body of 1000 frames");
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

    /* bytes_in counts the frames handed to the server core, before the 204 */
    tether_server_statistics st;
    CHECK_OK(tether_server_stats(v.s, &st));
    uint64_t in0 = st.bytes_in;
    tether__buf_reset(&p.body);
    hp_add_data(&p, 1, 1);
    hp_add_data(&p, 2, 1);
    size_t two = p.body.len - 2 * TETHER__HC_PREFIX;
    CHECK_EQ_INT(hp_send_body(&p, 1, 2), 204);
    CHECK_OK(tether_server_stats(v.s, &st));
    CHECK_EQ_U64(st.bytes_in, in0 + two);
    CHECK_EQ_INT(hp_send_body(&p, 1, 2), 204); /* the same body again: its 204 was "lost" */
    CHECK_OK(tether_server_stats(v.s, &st));
    CHECK_EQ_U64(st.bytes_in, in0 + two); /* skipped whole */
    /* a retry that appends a new frame: only the new one is handled */
    size_t before = p.body.len;
    hp_add_data(&p, 3, 1);
    size_t third = p.body.len - before - TETHER__HC_PREFIX;
    CHECK_EQ_INT(hp_send_body(&p, 1, 3), 204);
    CHECK_OK(tether_server_stats(v.s, &st));
    CHECK_EQ_U64(st.bytes_in, in0 + two + third);
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
    CHECK_EQ_INT(tether__srv_debug_carriage(v.s), 1);

    /* the client vanishes: after the idle bound the server ends the connection */
    char old_id[64];
    snprintf(old_id, sizeof old_id, "%s", p.id);
    CHECK(wait_until(closed_once, &v, WAIT_MS));
    CHECK(wait_until(online_is_zero, &v, WAIT_MS));
    CHECK(wait_until(no_carriage_conn, &v, WAIT_MS)); /* its record is freed */
    CHECK_EQ_INT(hp_poll(&p), 404);                   /* its id is forgotten */

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

/* Opens a stream on a new connection reporting received; reads its head and
 * the probe. The socket, or -1. */
static int stream_open(hpeer *p, uint64_t received, rawhttp_resp *r)
{
    char hdr[512], extra[64];
    uint8_t probe[8];
    snprintf(extra, sizeof extra, "Tether-Received: %llu\r\n", (unsigned long long)received);
    int fd = rawhttp_connect(p->port);
    if (fd < 0 ||
        rawhttp_send(fd, "GET", "/.tether/v1/stream", hp_headers(p, hdr, sizeof hdr, extra), NULL,
                     0) != 0 ||
        rawhttp_read(fd, r, WAIT_MS) != 0 || r->status != 200 ||
        rawhttp_read_chunk(fd, probe, sizeof probe, WAIT_MS) != 4 ||
        memcmp(probe, "\0\0\0\0", 4) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}

TEST(a_stream_sends_the_probe_at_once_then_frames_as_they_come_and_ends_at_its_bound)
{
    srv v;
    hpeer p;
    tether_session_id sid;
    uint8_t pl[16], buf[4096];
    rawhttp_resp r;
    char b[64];
    memset(&r, 0, sizeof r);
    car_srv_init(&v);
    v.cfg.http_poll_hold_ms = 1500; /* the stream bound */
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x1e);
    memcpy(sid.bytes, p.sid, 16);
    CHECK_EQ_INT(hp_open(&p, 0), 200);

    uint64_t t0 = rawws_now_ms();
    int fd = stream_open(&p, 0, &r);
    CHECK(fd >= 0);
    CHECK_EQ_STR(rawhttp_header(&r, "Tether-First", b, sizeof b), "1");
    CHECK_EQ_STR(rawhttp_header(&r, "Transfer-Encoding", b, sizeof b), "chunked");
    CHECK_EQ_STR(rawhttp_header(&r, "X-Accel-Buffering", b, sizeof b), "no");
    CHECK(rawhttp_header(&r, "Content-Length", b, sizeof b) == NULL);

    /* a message the server sends arrives in the open answer, as one record */
    make_payload(pl, sizeof pl, 1);
    CHECK_OK(tether_server_send(v.s, &sid, pl, sizeof pl, NULL));
    long n = rawhttp_read_chunk(fd, buf, sizeof buf, WAIT_MS);
    CHECK(n > 4);
    tether__frame f;
    uint32_t rec =
        n > 4 ? (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3]
              : 0;
    CHECK_EQ_U64(rec + 4, (uint64_t)n);
    CHECK(n > 4 && tether__decode(&p.dec, buf + 4, rec, &f) == TETHER_OK &&
          f.type == TETHER__F_DATA && f.u.data.first_seq == 1);
    /* then the stream bound ends it */
    CHECK_EQ_INT(rawhttp_read_chunk(fd, buf, sizeof buf, WAIT_MS), 0);
    CHECK(rawws_now_ms() - t0 + 20 >= 1500);

    /* the same TCP connection carries the next request; the frame was sent, so a poll
     * that confirms it waits, and one that does not gets it again */
    char hdr[512];
    CHECK_OK(rawhttp_send(fd, "GET", "/.tether/v1/poll",
                          hp_headers(&p, hdr, sizeof hdr, "Tether-Received: 0\r\n"), NULL, 0));
    CHECK_OK(rawhttp_read(fd, &r, WAIT_MS));
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_STR(rawhttp_header(&r, "Tether-First", b, sizeof b), "1");
    close(fd);

    /* a newer poll ends a stream */
    fd = stream_open(&p, 1, &r);
    CHECK(fd >= 0);
    p.received = 1;
    CHECK_EQ_INT(hp_poll_as(&p, 1, "Tether-Hold: 1\r\n"), 204);
    CHECK_EQ_INT(rawhttp_read_chunk(fd, buf, sizeof buf, WAIT_MS), 0);
    close(fd);

    /* a WebSocket HELLO displaces the connection: the stream carries BYE(9), then ends */
    fd = stream_open(&p, 1, &r);
    CHECK(fd >= 0);
    rawws_conn ws;
    CHECK(ws_hello(&ws, &p));
    n = rawhttp_read_chunk(fd, buf, sizeof buf, WAIT_MS);
    CHECK(n > 4);
    rec = n > 4 ? (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3]
                : 0;
    CHECK(n > 4 && tether__decode(&p.dec, buf + 4, rec, &f) == TETHER_OK &&
          f.type == TETHER__F_BYE && f.u.close.code == TETHER_REJECT_DISPLACED);
    CHECK_EQ_INT(rawhttp_read_chunk(fd, buf, sizeof buf, WAIT_MS), 0);
    close(fd);
    /* a stream that confirms that BYE gets the probe and the end at once; then 404 */
    fd = stream_open(&p, 2, &r);
    CHECK(fd >= 0);
    CHECK_EQ_INT(rawhttp_read_chunk(fd, buf, sizeof buf, WAIT_MS), 0);
    close(fd);
    p.received = 2;
    CHECK_EQ_INT(hp_poll(&p), 404);
    rawws_conn_close(&ws);
    rawhttp_free(&r);
    hp_free(&p);
    srv_free(&v);
}

TEST(a_held_poll_outlives_the_http_request_timeout)
{
    srv v;
    hpeer p;
    car_srv_init(&v);
    v.cfg.handshake_timeout_ms = 1000; /* lws's own request timeout: 1 s */
    v.cfg.http_poll_hold_ms = 2500;
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x1f);
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    uint64_t t0 = rawws_now_ms();
    CHECK_EQ_INT(hp_poll(&p), 204);
    CHECK(rawws_now_ms() - t0 + 20 >= 2500);
    hp_free(&p);
    srv_free(&v);
}

TEST(a_backlog_larger_than_one_body_arrives_whole_in_order_through_polls)
{
    srv v;
    hpeer p;
    tether_session_id sid;
    uint8_t pl[200];
    car_srv_init(&v);
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x24);
    p.max_message = 1024; /* bodies to this client: at most 64 KiB */
    memcpy(sid.bytes, p.sid, 16);
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    for (uint64_t i = 1; i <= 2000; i++) {
        make_payload(pl, sizeof pl, i);
        CHECK_OK(tether_server_send(v.s, &sid, pl, sizeof pl, NULL));
    }
    /* 400 KiB: the server keeps at most one body of it for the connection */
    uint64_t until = rawws_now_ms() + 4 * WAIT_MS;
    size_t largest = 0;
    while (p.cursor < 2000 && rawws_now_ms() < until) {
        int st = hp_poll(&p);
        CHECK(st == 200 || st == 204);
        if (st != 200 && st != 204) {
            break;
        }
        largest = p.r.len > largest ? p.r.len : largest;
        if (st == 200 && p.cursor > 0) {
            CHECK_EQ_INT(hp_send_ack(&p, p.cursor), 204); /* the window moves on */
        }
    }
    CHECK_EQ_U64(p.cursor, 2000);
    CHECK_EQ_INT(p.gaps, 0);
    CHECK(largest <= 65536);
    hp_free(&p);
    srv_free(&v);
}

TEST(one_tcp_connection_carries_open_send_and_polls_in_turn)
{
    srv v;
    hpeer p;
    char hdr[512], extra[128];
    car_srv_init(&v);
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x27);
    int fd = rawhttp_connect(v.port);
    CHECK(fd >= 0);
    hp_hello(&p, 0);
    tether__buf_reset(&p.body);
    tether__hc_append(&p.body, tether__buf_frame(&p.fb), p.fb.len);
    CHECK_OK(
        rawhttp_send(fd, "POST", "/.tether/v1/open", CT, tether__buf_frame(&p.body), p.body.len));
    CHECK_OK(rawhttp_read(fd, &p.r, WAIT_MS));
    CHECK_EQ_INT(p.r.status, 200);
    CHECK(rawhttp_header(&p.r, "Tether-Connection", p.id, sizeof p.id) != NULL);
    CHECK(rawhttp_header(&p.r, "Connection", extra, sizeof extra) == NULL ||
          strcasecmp(extra, "close") != 0);
    tether__buf_reset(&p.body);
    hp_add_data(&p, 1, 1);
    CHECK_OK(rawhttp_send(fd, "POST", "/.tether/v1/send",
                          hp_headers(&p, hdr, sizeof hdr, CT "Tether-First: 1\r\n"),
                          tether__buf_frame(&p.body), p.body.len));
    CHECK_OK(rawhttp_read(fd, &p.r, WAIT_MS));
    CHECK_EQ_INT(p.r.status, 204);
    CHECK(rec_wait_count(&v.rec, 1, WAIT_MS));
    /* the ACK (frame 1), then a held poll that ends 204, on the same connection */
    uint64_t received = 0;
    for (int i = 0; i < 2; i++) {
        snprintf(extra, sizeof extra, "Tether-Received: %llu\r\n", (unsigned long long)received);
        CHECK_OK(rawhttp_send(fd, "GET", "/.tether/v1/poll", hp_headers(&p, hdr, sizeof hdr, extra),
                              NULL, 0));
        CHECK_OK(rawhttp_read(fd, &p.r, WAIT_MS));
        CHECK_EQ_INT(p.r.status, i == 0 ? 200 : 204);
        received = 1;
    }
    close(fd);
    hp_free(&p);
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
    RUN(destroy_frees_open_connections_and_held_polls);
    RUN(a_stream_sends_the_probe_at_once_then_frames_as_they_come_and_ends_at_its_bound);
    RUN(a_held_poll_outlives_the_http_request_timeout);
    RUN(a_backlog_larger_than_one_body_arrives_whole_in_order_through_polls);
    RUN(one_tcp_connection_carries_open_send_and_polls_in_turn);
    return tt_finish();
}

/*
 * Each fault kind of the chaos relay (src/tools/chaos) against a recording
 * TCP peer: forwarding, cuts, stalls, blackholes, delay, rate, split writes,
 * buffering, refusals, timelines and upstream changes, and a tether client
 * that keeps retrying through it.
 */
#include "chaos_fixture.h"

/* ---------------------------------------------------------------- faults */

TEST(plain_forwarding_both_ways)
{
    peer p;
    peer_start(&p, 1);
    tether__chaos *c = relay_to(p.port, 1, NULL);
    int fd = dial(tether__chaos_port(c));
    CHECK(fd >= 0);
    enum { N = 200000 };
    uint8_t *out = malloc(N), *in = malloc(N);
    fill(out, N, 7);
    CHECK_EQ_INT(send(fd, out, N, 0), N);
    int end;
    CHECK_EQ_U64(recv_all(fd, in, N, 3000, &end), N);
    CHECK_MEM(in, out, N);
    tether__chaos_stats st;
    settled_stats(c, &st);
    CHECK_EQ_U64(st.bytes_up, N);
    CHECK_EQ_U64(st.bytes_down, N);
    CHECK_EQ_U64(st.accepted, 1);
    close(fd);
    sleep_ms(50);
    CHECK_EQ_INT(peer_get(&p, 0).eof, 1); /* the FIN went through */
    tether__chaos_stop(c);
    peer_stop(&p);
    free(out);
    free(in);
}

TEST(cut_now_with_rst_and_with_fin)
{
    peer p;
    peer_start(&p, 1);
    tether__chaos *c = relay_to(p.port, 2, NULL);
    uint8_t b[64];
    int end;
    for (int rst = 1; rst >= 0; rst--) {
        int fd = dial(tether__chaos_port(c));
        CHECK_EQ_INT(send(fd, "ping", 4, 0), 4);
        CHECK_EQ_U64(recv_all(fd, b, 4, 2000, &end), 4);
        cmd(c, rst ? "cut rst" : "cut fin");
        recv_all(fd, b, sizeof b, 2000, &end);
        CHECK_EQ_INT(end, rst ? -1 : 1); /* RST: ECONNRESET; FIN: EOF */
        close(fd);
    }
    tether__chaos_stats st;
    settled_stats(c, &st);
    CHECK_EQ_U64(st.cut_conns, 2);
    CHECK_EQ_U64(st.cut_rst, 1);
    CHECK_EQ_U64(st.faults[TETHER__CHAOS_CUT], 2);
    tether__chaos_stop(c);
    peer_stop(&p);
}

TEST(cut_after_exactly_n_bytes_each_direction)
{
    peer p;
    peer_start(&p, 1);
    tether__chaos *c = relay_to(p.port, 3, NULL);
    uint8_t out[100], in[100];
    int end;
    fill(out, sizeof out, 1);

    /* up: the peer gets exactly 10 bytes, then the connection is gone */
    int fd = dial(tether__chaos_port(c));
    cmd(c, "cut fin after 10 bytes up");
    CHECK_EQ_INT(send(fd, out, 100, 0), 100);
    sleep_ms(200);
    peer_conn pc = peer_get(&p, 0);
    CHECK_EQ_U64(pc.len, 10);
    CHECK_MEM(pc.data, out, 10);
    CHECK(pc.eof || pc.reset);
    close(fd);

    /* down: the client gets exactly 7 of the 100 echoed bytes */
    fd = dial(tether__chaos_port(c));
    cmd(c, "cut rst after 7 bytes down");
    CHECK_EQ_INT(send(fd, out, 100, 0), 100);
    size_t got = recv_all(fd, in, 100, 2000, &end);
    CHECK_EQ_U64(got, 7);
    CHECK_MEM(in, out, 7);
    CHECK_EQ_INT(end, -1);
    CHECK_EQ_U64(peer_wait(&p, 1, 100, 1000), 100);
    close(fd);
    tether__chaos_stop(c);
    peer_stop(&p);
}

TEST(cut_after_exactly_n_websocket_frames)
{
    peer p;
    peer_start(&p, 0);
    tether__chaos *c = relay_to(p.port, 4, NULL);
    uint8_t msg[4096];
    size_t len = 0, bounds[8];
    int nb = 0;
    memcpy(msg, http_get, strlen(http_get));
    len = strlen(http_get);
    len += ws_frame(msg + len, 2, 5);
    bounds[nb++] = len;                 /* frame 1 */
    len += ws_frame(msg + len, 9, 3);   /* a ping: not a data frame */
    len += ws_frame(msg + len, 2, 300); /* 16-bit length */
    bounds[nb++] = len;                 /* frame 2 */
    len += ws_frame(msg + len, 0, 0);   /* an empty continuation */
    bounds[nb++] = len;                 /* frame 3 */
    len += ws_frame(msg + len, 2, 40);
    bounds[nb++] = len;

    int fd = dial(tether__chaos_port(c));
    cmd(c, "cut rst after 3 frames up");
    for (size_t i = 0; i < len; i += 50) { /* in pieces: the boundary holds whatever the reads */
        size_t n = len - i < 50 ? len - i : 50;
        (void)!send(fd, msg + i, n, MSG_NOSIGNAL); /* fails once the cut happened */
        sleep_ms(1);
    }
    sleep_ms(200);
    peer_conn pc = peer_get(&p, 0);
    CHECK_EQ_U64(pc.len, bounds[2]);
    CHECK_MEM(pc.data, msg, bounds[2]);
    tether__chaos_stats st;
    settled_stats(c, &st);
    CHECK_EQ_U64(st.frames_up, 3);
    CHECK_EQ_U64(st.cut_rst, 1);
    close(fd);
    tether__chaos_stop(c);
    peer_stop(&p);
}

TEST(stall_one_direction_then_resume)
{
    peer p;
    peer_start(&p, 1);
    tether__chaos *c = relay_to(p.port, 5, NULL);
    uint8_t out[1000], in[1000];
    int end;
    fill(out, sizeof out, 3);
    int fd = dial(tether__chaos_port(c));
    cmd(c, "stall up");
    CHECK_EQ_INT(send(fd, out, 1000, 0), 1000);
    CHECK_EQ_U64(peer_wait(&p, 0, 1, 300), 0);
    CHECK_EQ_U64(recv_all(fd, in, 1, 100, &end), 0);
    CHECK_EQ_INT(end, 0); /* still open */
    cmd(c, "resume up");
    CHECK_EQ_U64(recv_all(fd, in, 1000, 2000, &end), 1000);
    CHECK_MEM(in, out, 1000);

    uint64_t t0 = now_ms(); /* before the command: the stall's 300 ms start after it */
    cmd(c, "stall down for 300ms"); /* the echo is held, then flows by itself */
    CHECK_EQ_INT(send(fd, out, 1000, 0), 1000);
    CHECK_EQ_U64(peer_wait(&p, 0, 2000, 1000), 2000);
    CHECK_EQ_U64(recv_all(fd, in, 1000, 2000, &end), 1000);
    CHECK(now_ms() - t0 >= 250);
    close(fd);
    tether__chaos_stop(c);
    peer_stop(&p);
}

TEST(stall_upgrade_passes_the_http_header_only)
{
    peer p;
    peer_start(&p, 1);
    tether__chaos *c = relay_to(p.port, 6, NULL);
    uint8_t msg[512], in[512];
    size_t hl = strlen(http_get), len = hl;
    int end;
    memcpy(msg, http_get, hl);
    len += ws_frame(msg + len, 2, 20);
    cmd(c, "stall-upgrade");
    int fd = dial(tether__chaos_port(c));
    CHECK_EQ_INT(send(fd, msg, len, 0), (int)len);
    sleep_ms(200);
    CHECK_EQ_U64(peer_get(&p, 0).len, hl);
    /* the echoed header comes back (the "101"), nothing after it */
    CHECK_EQ_U64(recv_all(fd, in, sizeof in, 300, &end), hl);
    CHECK_EQ_INT(end, 0);
    cmd(c, "stall-upgrade off"); /* that connection stays stalled; new ones are fine */
    CHECK_EQ_U64(peer_get(&p, 0).len, hl);
    int fd2 = dial(tether__chaos_port(c));
    CHECK_EQ_INT(send(fd2, msg, len, 0), (int)len);
    CHECK_EQ_U64(recv_all(fd2, in, len, 2000, &end), len);
    close(fd);
    close(fd2);
    tether__chaos_stop(c);
    peer_stop(&p);
}

TEST(stall_upgrade_after_bytes_lets_a_welcome_down_then_nothing_either_way)
{
    peer p;
    peer_start(&p, 1);
    tether__chaos *c = relay_to(p.port, 16, NULL);
    uint8_t msg[512], in[512], more[100];
    size_t hl = strlen(http_get), len = hl;
    int end;
    memcpy(msg, http_get, hl);
    len += ws_frame(msg + len, 2, 20); /* 22 bytes: the client's "HELLO" */
    memset(more, 0x82, sizeof more);
    cmd(c, "stall-upgrade after 10 bytes");
    int fd = dial(tether__chaos_port(c));
    CHECK_EQ_INT(send(fd, msg, len, 0), (int)len);
    /* upstream flows until the welcome's bytes went down: the header and the frame */
    CHECK_EQ_U64(peer_wait(&p, 0, len, 2000), len);
    /* the echoed header (the "101") and 10 bytes of the echoed frame, nothing more */
    CHECK_EQ_U64(recv_all(fd, in, sizeof in, 300, &end), hl + 10);
    CHECK_EQ_INT(end, 0);
    CHECK_MEM(in, msg, hl + 10);
    /* from then on nothing goes up either, and the connection stays open */
    CHECK_EQ_INT(send(fd, more, sizeof more, 0), (int)sizeof more);
    sleep_ms(200);
    CHECK_EQ_U64(peer_get(&p, 0).len, len);
    CHECK_EQ_U64(recv_all(fd, in, sizeof in, 100, &end), 0);
    CHECK_EQ_INT(end, 0);
    /* turned off: new connections pass in full, the stalled one stays stalled */
    cmd(c, "stall-upgrade off");
    int fd2 = dial(tether__chaos_port(c));
    CHECK_EQ_INT(send(fd2, msg, len, 0), (int)len);
    CHECK_EQ_U64(recv_all(fd2, in, len, 2000, &end), len);
    CHECK_MEM(in, msg, len);
    CHECK_EQ_U64(recv_all(fd, in, sizeof in, 100, &end), 0);
    close(fd);
    close(fd2);
    tether__chaos_stop(c);
    peer_stop(&p);
}

TEST(blackhole_swallows_and_never_closes)
{
    peer p;
    peer_start(&p, 1);
    tether__chaos *c = relay_to(p.port, 7, NULL);
    uint8_t out[1000], in[1000];
    int end;
    fill(out, sizeof out, 4);
    int fd = dial(tether__chaos_port(c));
    CHECK_EQ_INT(send(fd, out, 10, 0), 10);
    CHECK_EQ_U64(recv_all(fd, in, 10, 2000, &end), 10);
    cmd(c, "blackhole for 200ms");
    CHECK_EQ_INT(send(fd, out, 1000, 0), 1000);
    CHECK_EQ_U64(peer_wait(&p, 0, 11, 500), 10);
    CHECK_EQ_U64(recv_all(fd, in, 1, 300, &end), 0);
    CHECK_EQ_INT(end, 0); /* open, silent */
    /* the blackhole ended, but that connection stays dead */
    CHECK_EQ_INT(send(fd, out, 10, 0), 10);
    CHECK_EQ_U64(recv_all(fd, in, 1, 300, &end), 0);
    CHECK_EQ_INT(end, 0);
    CHECK_EQ_U64(peer_get(&p, 0).len, 10);
    /* a new connection works */
    int fd2 = dial(tether__chaos_port(c));
    CHECK_EQ_INT(send(fd2, out, 100, 0), 100);
    CHECK_EQ_U64(recv_all(fd2, in, 100, 2000, &end), 100);
    tether__chaos_stats st;
    settled_stats(c, &st);
    CHECK(st.swallowed >= 1010);
    CHECK_EQ_U64(st.open, 2);
    close(fd);
    close(fd2);
    tether__chaos_stop(c);
    peer_stop(&p);
}

TEST(delay_holds_bytes_for_the_delay)
{
    peer p;
    peer_start(&p, 1);
    tether__chaos *c = relay_to(p.port, 8, NULL);
    uint8_t in[16];
    int end;
    int fd = dial(tether__chaos_port(c));
    cmd(c, "delay 150ms up");
    uint64_t t0 = now_ms();
    CHECK_EQ_INT(send(fd, "0123456789", 10, 0), 10);
    CHECK_EQ_U64(recv_all(fd, in, 10, 2000, &end), 10);
    uint64_t rtt = now_ms() - t0;
    CHECK(rtt >= 145 && rtt < 1000);
    cmd(c, "delay off");
    t0 = now_ms();
    CHECK_EQ_INT(send(fd, "0123456789", 10, 0), 10);
    CHECK_EQ_U64(recv_all(fd, in, 10, 2000, &end), 10);
    CHECK(now_ms() - t0 < 100);
    close(fd);
    tether__chaos_stop(c);
    peer_stop(&p);
}

TEST(rate_limits_bandwidth)
{
    peer p;
    peer_start(&p, 0);
    tether__chaos *c = relay_to(p.port, 9, NULL);
    enum { N = 50000 };
    uint8_t *out = malloc(N);
    fill(out, N, 5);
    int fd = dial(tether__chaos_port(c));
    cmd(c, "rate 100k up");
    uint64_t t0 = now_ms();
    CHECK_EQ_INT(send(fd, out, N, 0), N);
    CHECK_EQ_U64(peer_wait(&p, 0, N, 5000), N);
    uint64_t ms = now_ms() - t0;
    CHECK(ms >= 400 && ms < 3000); /* 50000 / 102400 = 0.49 s */
    CHECK_MEM(peer_get(&p, 0).data, out, N);
    close(fd);
    tether__chaos_stop(c);
    peer_stop(&p);
    free(out);
}

TEST(split_writes_tiny_pieces)
{
    peer p;
    peer_start(&p, 0);
    tether__chaos *c = relay_to(p.port, 10, NULL);
    uint8_t out[60];
    fill(out, sizeof out, 6);
    int fd = dial(tether__chaos_port(c));
    cmd(c, "split 3 gap 15ms up");
    CHECK_EQ_INT(send(fd, out, 60, 0), 60);
    CHECK_EQ_U64(peer_wait(&p, 0, 60, 5000), 60);
    peer_conn pc = peer_get(&p, 0);
    CHECK(pc.max_read >= 1 && pc.max_read <= 3);
    CHECK_MEM(pc.data, out, 60);
    close(fd);
    tether__chaos_stop(c);
    peer_stop(&p);
}

TEST(buffer_accepts_everything_and_trickles)
{
    peer p;
    peer_start(&p, 0);
    p.paused = 1; /* the far end reads nothing */
    tether__chaos *c = relay_to(p.port, 11, NULL);
    enum { N = 6 << 20 };
    uint8_t *out = malloc(N);
    fill(out, N, 8);
    int fd = dial(tether__chaos_port(c));
    cmd(c, "buffer 64k up");
    struct timeval tv = {.tv_sec = 3, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ssize_t sent = 0;
    while (sent < N) {
        ssize_t w = send(fd, out + sent, (size_t)(N - sent), 0);
        if (w <= 0) {
            break;
        }
        sent += w;
    }
    CHECK_EQ_INT(sent, N); /* the "proxy" took it all */
    uint64_t end = now_ms() + 3000;
    tether__chaos_stats st;
    do {
        sleep_ms(20);
        settled_stats(c, &st);
    } while (st.read_up < (uint64_t)N - (1u << 20) && now_ms() < end);
    CHECK(st.read_up >= (uint64_t)N - (1u << 20)); /* at most the socket buffers are short */
    CHECK(st.bytes_up < (1u << 20));               /* but little went on */
    close(fd);
    tether__chaos_stop(c);
    peer_stop(&p);
    free(out);
}

TEST(refuse_resets_new_connections_for_a_while)
{
    peer p;
    peer_start(&p, 1);
    tether__chaos *c = relay_to(p.port, 12, NULL);
    uint8_t in[8];
    int end;
    cmd(c, "refuse for 400ms");
    int fd = dial(tether__chaos_port(c));
    if (fd >= 0) {
        (void)!send(fd, "x", 1, MSG_NOSIGNAL);
        recv_all(fd, in, 1, 1000, &end);
        CHECK(end != 0); /* reset (or closed) at once */
        close(fd);
    }
    CHECK_EQ_INT(peer_count(&p), 0);
    sleep_ms(500);
    fd = dial(tether__chaos_port(c));
    CHECK_EQ_INT(send(fd, "hello", 5, 0), 5);
    CHECK_EQ_U64(recv_all(fd, in, 5, 2000, &end), 5);
    tether__chaos_stats st;
    settled_stats(c, &st);
    CHECK_EQ_U64(st.refused, 1);
    CHECK_EQ_U64(st.faults[TETHER__CHAOS_REFUSE], 1);
    close(fd);
    tether__chaos_stop(c);
    peer_stop(&p);
}

TEST(timeline_and_upstream_change)
{
    peer p1, p2;
    peer_start(&p1, 1);
    peer_start(&p2, 1);
    tether__chaos_event tl[2];
    memset(tl, 0, sizeof tl);
    tl[0].at_ms = 0;
    tl[0].fault.kind = TETHER__CHAOS_STALL;
    tl[0].fault.dir = TETHER__CHAOS_BOTH;
    tl[1].at_ms = 300;
    tl[1].fault.kind = TETHER__CHAOS_STALL;
    tl[1].fault.dir = TETHER__CHAOS_BOTH;
    tl[1].fault.off = 1;
    tether__chaos_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.upstream_host = "127.0.0.1";
    cfg.upstream_port = p1.port;
    cfg.timeline = tl;
    cfg.timeline_n = 2;
    cfg.log = log_cb;
    tether__chaos *c = NULL;
    char err[200];
    CHECK_EQ_INT(tether__chaos_start(&cfg, &c, err, sizeof err), 0);
    uint64_t t0 = now_ms();
    uint8_t in[8];
    int end;
    int fd = dial(tether__chaos_port(c));
    CHECK_EQ_INT(send(fd, "abc", 3, 0), 3);
    CHECK_EQ_U64(recv_all(fd, in, 3, 2000, &end), 3);
    CHECK(now_ms() - t0 >= 250); /* held until the timeline resumed it */
    tether__chaos_cmd bad;
    CHECK_EQ_INT(tether__chaos_parse("upstream 127.0.0.1:0", &bad, err, sizeof err), -1);
    int fd2 = -1;
    char line[64];
    snprintf(line, sizeof line, "upstream 127.0.0.1:%u", (unsigned)p2.port);
    cmd(c, line);
    fd2 = dial(tether__chaos_port(c));
    CHECK_EQ_INT(send(fd2, "def", 3, 0), 3);
    CHECK_EQ_U64(recv_all(fd2, in, 3, 2000, &end), 3);
    CHECK_EQ_U64(peer_get(&p2, 0).len, 3);
    CHECK_EQ_INT(peer_count(&p1), 1);
    close(fd);
    close(fd2);
    tether__chaos_stop(c);
    peer_stop(&p1);
    peer_stop(&p2);
}

TEST(upstream_down_closes_the_client)
{
    peer p;
    peer_start(&p, 1);
    uint16_t dead = p.port;
    peer_stop(&p); /* nothing listens there now */
    tether__chaos *c = relay_to(dead, 13, NULL);
    uint8_t in[8];
    int end;
    int fd = dial(tether__chaos_port(c));
    CHECK(fd >= 0);
    recv_all(fd, in, 1, 2000, &end);
    CHECK(end != 0);
    tether__chaos_stats st;
    settled_stats(c, &st);
    CHECK_EQ_U64(st.upstream_failed, 1);
    CHECK_EQ_U64(st.open, 0);
    close(fd);
    tether__chaos_stop(c);
}

/*
 * Found by the scenario suite: when a relay resets every connection at once,
 * lws sometimes frees the client's attempt without a CONNECTION_ERROR (the
 * write of the upgrade request fails), and the client used to wait forever.
 * It must keep attempting.
 */
TEST(client_keeps_retrying_when_every_connection_is_reset)
{
    tether__chaos_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.upstream_host = "none";
    tether__chaos *c = NULL;
    char err[200], url[64];
    CHECK_EQ_INT(tether__chaos_start(&cfg, &c, err, sizeof err), 0);
    tether_client_config cc;
    tether_client_config_init(&cc);
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", (unsigned)tether__chaos_port(c));
    cc.url = url;
    cc.backoff_base_ms = 1;
    cc.backoff_cap_ms = 4;
    cc.connect_timeout_ms = 60000; /* longer than the test: only the fix can end a stuck attempt */
    tether_client *cl = NULL;
    CHECK_OK(tether_client_create(&cc, &cl));
    CHECK_OK(tether_client_start(cl));
    tether__chaos_stats a, b;
    for (int i = 0; i < 6; i++) {
        tether__chaos_get_stats(c, &a);
        sleep_ms(500);
        tether__chaos_get_stats(c, &b);
        if (b.upstream_failed <= a.upstream_failed) {
            tt_fail(__FILE__, __LINE__, "no attempt in 500 ms after %llu (client stuck)",
                    (unsigned long long)b.upstream_failed);
            break;
        }
    }
    CHECK(b.upstream_failed > 100);
    tether_client_destroy(cl);
    tether__chaos_stop(c);
}

int main(void)
{
    RUN(plain_forwarding_both_ways);
    RUN(cut_now_with_rst_and_with_fin);
    RUN(cut_after_exactly_n_bytes_each_direction);
    RUN(cut_after_exactly_n_websocket_frames);
    RUN(stall_one_direction_then_resume);
    RUN(stall_upgrade_passes_the_http_header_only);
    RUN(stall_upgrade_after_bytes_lets_a_welcome_down_then_nothing_either_way);
    RUN(blackhole_swallows_and_never_closes);
    RUN(delay_holds_bytes_for_the_delay);
    RUN(rate_limits_bandwidth);
    RUN(split_writes_tiny_pieces);
    RUN(buffer_accepts_everything_and_trickles);
    RUN(refuse_resets_new_connections_for_a_while);
    RUN(timeline_and_upstream_change);
    RUN(upstream_down_closes_the_client);
    RUN(client_keeps_retrying_when_every_connection_is_reset);
    return tt_finish();
}

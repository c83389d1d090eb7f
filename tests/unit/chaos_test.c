/*
 * Unit tests of the chaos relay (src/chaos.c, src/chaos_cmd.c): the command
 * language, the random schedule (same seed, same faults), and each fault kind
 * against a plain TCP peer in this process that records what it receives and
 * can echo it back.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tether/tether.h>

#include "chaos/chaos.h"
#include "common/killpoint.h"

/* ---------------------------------------------------------------- helpers */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

#define PEER_MAX_CONNS 16
#define PEER_BUF (8u << 20)

/* What the peer saw on one accepted connection. */
typedef struct peer_conn {
    int fd;          /* -1 once closed */
    uint8_t *data;   /* bytes received (first PEER_BUF) */
    size_t len;      /* bytes received */
    size_t max_read; /* largest single recv() */
    int eof;         /* read 0 */
    int reset;       /* recv failed (ECONNRESET) */
} peer_conn;

/* A TCP peer on 127.0.0.1: records every byte, echoes them when echo is set. */
typedef struct peer {
    int lfd;                         /* listening socket */
    uint16_t port;                   /* its port */
    int echo;                        /* send back what arrives */
    volatile int paused;             /* stop reading */
    volatile int stop;               /* the thread must finish */
    pthread_t thread;                /* the loop */
    pthread_mutex_t mu;              /* guards conns and n */
    peer_conn conns[PEER_MAX_CONNS]; /* in accept order */
    int n;                           /* accepted so far */
} peer;

static void *peer_run(void *arg)
{
    peer *p = arg;
    static uint8_t buf[65536];
    while (!p->stop) {
        struct pollfd pfd[1 + PEER_MAX_CONNS];
        int map[PEER_MAX_CONNS];
        int n = 0;
        pfd[n++] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
        pthread_mutex_lock(&p->mu);
        for (int i = 0; i < p->n; i++) {
            map[i] = -1;
            if (p->conns[i].fd >= 0 && !p->paused) {
                map[i] = n;
                pfd[n++] = (struct pollfd){.fd = p->conns[i].fd, .events = POLLIN};
            }
        }
        int count = p->n;
        pthread_mutex_unlock(&p->mu);
        if (poll(pfd, (nfds_t)n, 10) <= 0) {
            continue;
        }
        if (pfd[0].revents & POLLIN) {
            int fd = accept(p->lfd, NULL, NULL);
            pthread_mutex_lock(&p->mu);
            if (fd >= 0 && p->n < PEER_MAX_CONNS) {
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                peer_conn *c = &p->conns[p->n++];
                memset(c, 0, sizeof *c);
                c->fd = fd;
                c->data = malloc(PEER_BUF);
            } else if (fd >= 0) {
                close(fd);
            }
            pthread_mutex_unlock(&p->mu);
        }
        for (int i = 0; i < count; i++) {
            if (map[i] < 0 || !pfd[map[i]].revents) {
                continue;
            }
            pthread_mutex_lock(&p->mu);
            peer_conn *c = &p->conns[i];
            ssize_t r = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
            if (r > 0) {
                size_t keep = c->len + (size_t)r <= PEER_BUF ? (size_t)r : PEER_BUF - c->len;
                memcpy(c->data + c->len, buf, keep);
                c->len += (size_t)r;
                if ((size_t)r > c->max_read) {
                    c->max_read = (size_t)r;
                }
                if (p->echo) {
                    (void)!send(c->fd, buf, (size_t)r, MSG_NOSIGNAL);
                }
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                c->eof = r == 0;
                c->reset = r < 0;
                close(c->fd);
                c->fd = -1;
            }
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

static void peer_start(peer *p, int echo)
{
    memset(p, 0, sizeof *p);
    p->echo = echo;
    pthread_mutex_init(&p->mu, NULL);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(p->lfd, 16) != 0 || getsockname(p->lfd, (struct sockaddr *)&sa, &sl) != 0) {
        perror("peer");
        exit(2);
    }
    p->port = ntohs(sa.sin_port);
    pthread_create(&p->thread, NULL, peer_run, p);
}

static void peer_stop(peer *p)
{
    p->stop = 1;
    pthread_join(p->thread, NULL);
    close(p->lfd);
    for (int i = 0; i < p->n; i++) {
        if (p->conns[i].fd >= 0) {
            close(p->conns[i].fd);
        }
        free(p->conns[i].data);
    }
    pthread_mutex_destroy(&p->mu);
}

/* A copy of what connection i received so far. */
static peer_conn peer_get(peer *p, int i)
{
    peer_conn c;
    memset(&c, 0, sizeof c);
    c.fd = -1;
    pthread_mutex_lock(&p->mu);
    if (i < p->n) {
        c = p->conns[i];
    }
    pthread_mutex_unlock(&p->mu);
    return c;
}

static int peer_count(peer *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->n;
    pthread_mutex_unlock(&p->mu);
    return n;
}

/* Waits until connection i received at least want bytes (or ms pass); returns what it has. */
static size_t peer_wait(peer *p, int i, size_t want, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    for (;;) {
        peer_conn c = peer_get(p, i);
        if (c.len >= want || now_ms() >= end) {
            return c.len;
        }
        sleep_ms(2);
    }
}

/* Log lines captured from the relay. */
typedef struct logbuf {
    pthread_mutex_t mu;
    char lines[256][200];
    int n;
} logbuf;

static void log_cb(void *arg, const char *line)
{
    logbuf *l = arg;
    if (getenv("CHAOS_TEST_VERBOSE")) {
        fprintf(stderr, "  relay: %s\n", line);
    }
    if (!l) {
        return;
    }
    pthread_mutex_lock(&l->mu);
    if (l->n < 256) {
        snprintf(l->lines[l->n++], sizeof l->lines[0], "%s", line);
    }
    pthread_mutex_unlock(&l->mu);
}

static tether__chaos *relay_to(uint16_t port, uint64_t seed, logbuf *lb)
{
    tether__chaos_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.upstream_host = "127.0.0.1";
    cfg.upstream_port = port;
    cfg.seed = seed;
    cfg.log_conns = 1;
    cfg.log = log_cb;
    cfg.log_arg = lb;
    tether__chaos *c = NULL;
    char err[200];
    if (tether__chaos_start(&cfg, &c, err, sizeof err) != 0) {
        fprintf(stderr, "relay: %s\n", err);
        exit(2);
    }
    return c;
}

static void cmd(tether__chaos *c, const char *line)
{
    char err[200] = "";
    int rc = tether__chaos_command(c, line, err, sizeof err);
    if (rc != 0) {
        tt_fail(__FILE__, __LINE__, "command '%s': %s", line, err);
    }
    sleep_ms(20); /* the relay thread applies it */
}

/* The counters, once the relay thread has published what just happened. */
static void settled_stats(tether__chaos *c, tether__chaos_stats *st)
{
    sleep_ms(60);
    tether__chaos_get_stats(c, st);
}

/* A blocking client socket to the relay with a receive timeout. */
static int dial(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 0, .tv_usec = 300000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads until want bytes, EOF, an error or ms pass. Returns bytes read;
 * *end is 0 (still open), 1 (EOF) or -1 (error/reset). */
static size_t recv_all(int fd, uint8_t *buf, size_t want, unsigned ms, int *end)
{
    size_t got = 0;
    uint64_t deadline = now_ms() + ms;
    *end = 0;
    while (got < want && now_ms() < deadline) {
        ssize_t r = recv(fd, buf + got, want - got, 0);
        if (r > 0) {
            got += (size_t)r;
        } else if (r == 0) {
            *end = 1;
            break;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            *end = -1;
            break;
        }
    }
    return got;
}

static void fill(uint8_t *b, size_t n, unsigned salt)
{
    for (size_t i = 0; i < n; i++) {
        b[i] = (uint8_t)(i * 131 + salt);
    }
}

/* A WebSocket frame, client to server (masked), into out; returns its size. */
static size_t ws_frame(uint8_t *out, int opcode, size_t len)
{
    size_t h = 0;
    out[h++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        out[h++] = (uint8_t)(0x80 | len);
    } else {
        out[h++] = 0x80 | 126;
        out[h++] = (uint8_t)(len >> 8);
        out[h++] = (uint8_t)len;
    }
    memcpy(out + h, "\x01\x02\x03\x04", 4);
    h += 4;
    for (size_t i = 0; i < len; i++) {
        out[h + i] = (uint8_t)(i ^ 0x5a);
    }
    return h + len;
}

static const char http_get[] = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";

/* ---------------------------------------------------------------- language */

TEST(parse_and_format_round_trip)
{
    static const char *const lines[] = {
        "cut rst",
        "cut fin",
        "cut fin after 100 bytes up",
        "cut rst after 3 frames down",
        "cut rst after 7 frames both",
        "stall up for 500ms",
        "stall both",
        "stall off down",
        "stall-upgrade for 2000ms",
        "blackhole",
        "blackhole off",
        "delay 50ms jitter 20ms both for 1000ms",
        "rate 102400 up",
        "split 3 gap 2ms down",
        "buffer 65536 up for 3000ms",
        "buffer 1024 cap 2097152 both",
        "refuse for 1500ms",
        "refuse off",
        "clear",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        tether__chaos_cmd a, b;
        char err[200] = "", text[200];
        CHECK_EQ_INT(tether__chaos_parse(lines[i], &a, err, sizeof err), 0);
        CHECK_EQ_INT(a.op, TETHER__CHAOS_OP_FAULT);
        tether__chaos_format(&a.fault, text, sizeof text);
        CHECK_EQ_STR(text, lines[i]);
        CHECK_EQ_INT(tether__chaos_parse(text, &b, err, sizeof err), 0);
        CHECK_MEM(&a.fault, &b.fault, sizeof a.fault);
    }
}

TEST(parse_units_prefixes_and_errors)
{
    tether__chaos_cmd c;
    char err[200];
    CHECK_EQ_INT(tether__chaos_parse("at 1.5s cut fin  # a comment", &c, err, sizeof err), 0);
    CHECK_EQ_INT(c.when, 1);
    CHECK_EQ_U64(c.when_ms, 1500);
    CHECK_EQ_INT(c.fault.kind, TETHER__CHAOS_CUT);
    CHECK_EQ_INT(c.fault.rst, 0);
    CHECK_EQ_INT(tether__chaos_parse("in 250 rate 64k/s down", &c, err, sizeof err), 0);
    CHECK_EQ_INT(c.when, 2);
    CHECK_EQ_U64(c.when_ms, 250);
    CHECK_EQ_U64(c.fault.rate, 65536);
    CHECK_EQ_INT(c.fault.dir, TETHER__CHAOS_DOWN);
    CHECK_EQ_INT(tether__chaos_parse("resume up", &c, err, sizeof err), 0);
    CHECK(c.fault.kind == TETHER__CHAOS_STALL && c.fault.off && c.fault.dir == TETHER__CHAOS_UP);
    CHECK_EQ_INT(tether__chaos_parse("accept", &c, err, sizeof err), 0);
    CHECK(c.fault.kind == TETHER__CHAOS_REFUSE && c.fault.off);
    CHECK_EQ_INT(tether__chaos_parse("random 100:300 cut,stall plain", &c, err, sizeof err), 0);
    CHECK_EQ_INT(c.op, TETHER__CHAOS_OP_RANDOM);
    CHECK_EQ_INT(c.random.min_ms, 100);
    CHECK_EQ_INT(c.random.max_ms, 300);
    CHECK_EQ_INT(c.random.kinds, (1u << TETHER__CHAOS_CUT) | (1u << TETHER__CHAOS_STALL));
    CHECK_EQ_INT(c.random.plain_cuts, 1);
    CHECK_EQ_INT(tether__chaos_parse("upstream [::1]:9000", &c, err, sizeof err), 0);
    CHECK_EQ_STR(c.host, "::1");
    CHECK_EQ_INT(c.port, 9000);
    CHECK_EQ_INT(tether__chaos_parse("   ", &c, err, sizeof err), 0);
    CHECK_EQ_INT(c.op, TETHER__CHAOS_OP_NOP);

    static const char *const bad[] = {
        "explode",
        "cut after 0 bytes",
        "cut after 5 bananas",
        "cut after 5 bytes after 2 frames",
        "stall sideways",
        "delay",
        "delay soon",
        "rate",
        "split 100000",
        "random 5",
        "random 0:10",
        "random 10:5",
        "random 1:2 nuke",
        "upstream nowhere",
        "at cut",
        "in 5s",
        "clear now",
        "buffer cap 10",
        "stall for ever",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (tether__chaos_parse(bad[i], &c, err, sizeof err) != -1 || err[0] == '\0') {
            tt_fail(__FILE__, __LINE__, "'%s' should not parse", bad[i]);
        }
    }
}

TEST(timeline_sorted_with_seed_and_random)
{
    const char *text = "# a timeline\n"
                       "seed 77\n"
                       "at 2s stall up for 300ms\n"
                       "random 50:60 cut\n"
                       "at 500ms cut fin\n"
                       "\n"
                       "at 2s resume up\n"
                       "delay 10ms\n";
    tether__chaos_event *ev = NULL;
    size_t n = 0;
    uint64_t seed = 0;
    tether__chaos_random r;
    int ron = 0;
    char err[200];
    memset(&r, 0, sizeof r);
    CHECK_EQ_INT(tether__chaos_parse_timeline(text, &ev, &n, &seed, &r, &ron, err, sizeof err), 0);
    CHECK_EQ_U64(seed, 77);
    CHECK_EQ_INT(ron, 1);
    CHECK_EQ_INT(r.min_ms, 50);
    CHECK_EQ_U64(n, 4);
    if (n == 4) {
        CHECK_EQ_U64(ev[0].at_ms, 0);
        CHECK_EQ_INT(ev[0].fault.kind, TETHER__CHAOS_DELAY);
        CHECK_EQ_U64(ev[1].at_ms, 500);
        CHECK_EQ_INT(ev[1].fault.kind, TETHER__CHAOS_CUT);
        CHECK_EQ_U64(ev[2].at_ms, 2000);
        CHECK(ev[2].fault.kind == TETHER__CHAOS_STALL && !ev[2].fault.off);
        CHECK(ev[3].fault.kind == TETHER__CHAOS_STALL && ev[3].fault.off); /* file order kept */
    }
    free(ev);
    CHECK_EQ_INT(tether__chaos_parse_timeline("at 1s cut\nat 2s wobble\n", &ev, &n, NULL, NULL,
                                              NULL, err, sizeof err),
                 -1);
    CHECK(strstr(err, "line 2") != NULL);
    CHECK_EQ_INT(
        tether__chaos_parse_timeline("in 1s cut\n", &ev, &n, NULL, NULL, NULL, err, sizeof err),
        -1);
}

TEST(same_seed_same_schedule)
{
    tether__chaos_random r = {.min_ms = 100, .max_ms = 900};
    tether__chaos_event a[200], b[200], d[200];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    CHECK_EQ_INT(tether__chaos_plan(12345, &r, a, 200), 0);
    CHECK_EQ_INT(tether__chaos_plan(12345, &r, b, 200), 0);
    CHECK_MEM(a, b, sizeof a);
    CHECK_EQ_INT(tether__chaos_plan(12346, &r, d, 200), 0);
    CHECK(memcmp(a, d, sizeof a) != 0);
    int seen[TETHER__CHAOS_KINDS] = {0};
    uint64_t prev = 0;
    for (int i = 0; i < 200; i++) {
        uint64_t gap = a[i].at_ms - prev;
        CHECK(gap >= 100 && gap <= 900);
        prev = a[i].at_ms;
        CHECK(TETHER__CHAOS_RANDOM_DEFAULT & (1u << a[i].fault.kind));
        seen[a[i].fault.kind]++;
        /* every drawn fault reads back from its own text */
        char text[200], err[200];
        tether__chaos_cmd c;
        tether__chaos_format(&a[i].fault, text, sizeof text);
        CHECK_EQ_INT(tether__chaos_parse(text, &c, err, sizeof err), 0);
        CHECK_MEM(&c.fault, &a[i].fault, sizeof c.fault);
    }
    for (int k = 1; k < TETHER__CHAOS_KINDS; k++) {
        if (TETHER__CHAOS_RANDOM_DEFAULT & (1u << k)) {
            CHECK(seen[k] > 0);
        }
    }
    /* plain cuts: immediate, FIN then RST alternately */
    tether__chaos_random p = {
        .min_ms = 10, .max_ms = 20, .kinds = 1u << TETHER__CHAOS_CUT, .plain_cuts = 1};
    CHECK_EQ_INT(tether__chaos_plan(1, &p, a, 6), 0);
    for (int i = 0; i < 6; i++) {
        CHECK_EQ_INT(a[i].fault.rst, i % 2);
        CHECK(a[i].fault.after_bytes == 0 && a[i].fault.after_frames == 0);
    }
    tether__chaos_random bad = {.min_ms = 0, .max_ms = 10};
    CHECK_EQ_INT(tether__chaos_plan(1, &bad, a, 1), -1);
}

/* The relay applies exactly the planned schedule: its log names the same faults. */
TEST(relay_applies_the_planned_schedule)
{
    peer p;
    peer_start(&p, 1);
    logbuf *lb = calloc(1, sizeof *lb);
    pthread_mutex_init(&lb->mu, NULL);
    tether__chaos_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.upstream_host = "127.0.0.1";
    cfg.upstream_port = p.port;
    cfg.seed = 99;
    cfg.random_on = 1;
    cfg.random = (tether__chaos_random){.min_ms = 20, .max_ms = 40};
    cfg.log = log_cb;
    cfg.log_arg = lb;
    tether__chaos *c = NULL;
    char err[200];
    CHECK_EQ_INT(tether__chaos_start(&cfg, &c, err, sizeof err), 0);
    sleep_ms(700);
    tether__chaos_stop(c);
    tether__chaos_event plan[64];
    CHECK_EQ_INT(tether__chaos_plan(99, &cfg.random, plan, 64), 0);
    int matched = 0;
    for (int i = 0; i < lb->n; i++) {
        const char *hash = strstr(lb->lines[i], "random #");
        if (!hash) {
            continue;
        }
        int k = atoi(hash + 8);
        const char *colon = strstr(hash, ": ");
        char want[200];
        tether__chaos_format(&plan[k].fault, want, sizeof want);
        CHECK(colon && strncmp(colon + 2, want, strlen(want)) == 0);
        CHECK_EQ_INT(k, matched);
        matched++;
    }
    CHECK(matched >= 10); /* 700 ms at 20..40 ms each */
    peer_stop(&p);
    pthread_mutex_destroy(&lb->mu);
    free(lb);
}

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

    cmd(c, "stall down for 300ms"); /* the echo is held, then flows by itself */
    uint64_t t0 = now_ms();
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

/* ---------------------------------------------------------------- kill points */

/* Runs `hits` kill point hits in a child with TETHER_KILLPOINT=env (NULL: unset);
 * returns how many hits the child survived, or -1 if it survived them all. */
static int killpoint_child(const char *env, const char *name, int hits)
{
    int pfd[2];
    if (pipe(pfd) != 0) {
        return -2;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        if (env) {
            setenv("TETHER_KILLPOINT", env, 1);
        } else {
            unsetenv("TETHER_KILLPOINT");
        }
        for (int i = 0; i < hits; i++) {
            TETHER__KILLPOINT("test.other");
            TETHER__KILLPOINT(name);
            (void)!write(pfd[1], "x", 1);
        }
        _exit(0);
    }
    close(pfd[1]);
    int survived = 0, st = 0;
    char ch;
    while (read(pfd[0], &ch, 1) == 1) {
        survived++;
    }
    close(pfd[0]);
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) {
        return survived;
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? -1 : -3;
}

/* Must run before anything in this process reaches a kill point: the
 * variable is read once per process, and the children are forks. */
TEST(killpoint_kills_at_the_named_hit)
{
    CHECK_EQ_INT(atomic_load(&tether__killpoint_state), 0);
    CHECK_EQ_INT(killpoint_child("test.point", "test.point", 5), 0);    /* the first hit */
    CHECK_EQ_INT(killpoint_child("test.point:3", "test.point", 5), 2);  /* the third */
    CHECK_EQ_INT(killpoint_child("test.point:9", "test.point", 5), -1); /* never reached */
    CHECK_EQ_INT(killpoint_child(NULL, "test.point", 5), -1);           /* unset */
    CHECK_EQ_INT(killpoint_child("test.point:0", "test.point", 5), -1); /* malformed: ignored */
    CHECK_EQ_INT(killpoint_child("test.poin", "test.point", 5), -1);    /* names match whole */
    /* every name the library uses is listed, client and server alike */
    int n = 0;
    for (const char *const *k = tether__killpoint_names(); *k; k++) {
        CHECK(strncmp(*k, "client.", 7) == 0 || strncmp(*k, "server.", 7) == 0);
        n++;
    }
    CHECK_EQ_INT(n, 13);
}

int main(void)
{
    RUN(killpoint_kills_at_the_named_hit);
    RUN(parse_and_format_round_trip);
    RUN(parse_units_prefixes_and_errors);
    RUN(timeline_sorted_with_seed_and_random);
    RUN(same_seed_same_schedule);
    RUN(relay_applies_the_planned_schedule);
    RUN(plain_forwarding_both_ways);
    RUN(cut_now_with_rst_and_with_fin);
    RUN(cut_after_exactly_n_bytes_each_direction);
    RUN(cut_after_exactly_n_websocket_frames);
    RUN(stall_one_direction_then_resume);
    RUN(stall_upgrade_passes_the_http_header_only);
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

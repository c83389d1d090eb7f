/*
 * tether_manyconn: opens N tether sessions on raw WebSocket connections from
 * one process and, optionally, sends each session `rate` messages per second,
 * measuring how long the server takes to acknowledge them. A measuring tool
 * for the server's scale (docs/performance.md, "Many sessions"), not a test.
 *
 *   tether_manyconn PORT SESSIONS [RATE_PER_SESSION] [SECONDS]
 *
 * Prints the sessions welcomed, the messages sent and acknowledged, the ACK
 * latency p50/p99/max, and the connections the server closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/rand.h>

#include <tether/tether.h>

#include "engine/frame.h"
#include "rawws.h"

#define RING 256u /* send times kept per session, by seq */

typedef struct sess {
    rawws_conn c;          /* the connection */
    uint64_t seq;          /* last seq sent */
    uint64_t acked;        /* highest seq acknowledged */
    uint64_t sent_at[RING]; /* send time of seq, at seq % RING */
    uint8_t *in;           /* bytes read, not yet parsed */
    size_t in_len, in_cap; /* bytes at in, allocated */
    int dead;              /* the server closed it */
} sess;

static uint64_t *lat;      /* ack latencies, ms */
static size_t nlat, caplat; /* latencies kept, allocated */

static void note_latency(uint64_t ms)
{
    if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 4096;
        lat = realloc(lat, caplat * sizeof *lat);
        if (!lat) {
            exit(2);
        }
    }
    lat[nlat++] = ms;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int hello(sess *s, tether__decoder *dec)
{
    tether__hello h;
    tether__buf b;
    rawws_msg m;
    tether__frame f;
    memset(&h, 0, sizeof h);
    h.version = TETHER__PROTO_VERSION;
    if (RAND_bytes(h.session_id, sizeof h.session_id) != 1 ||
        RAND_bytes(h.token, sizeof h.token) != 1) {
        return -1;
    }
    h.max_message = 1u << 20;
    h.window = 1024;
    tether__buf_init(&b, 0);
    tether__encode_hello(&b, &h);
    int rc = rawws_send(&s->c, RAWWS_BINARY, tether__buf_frame(&b), b.len);
    tether__buf_free(&b);
    if (rc != 0 || rawws_read_msg(&s->c, &m, 10000) != 1) {
        return -1;
    }
    rc = tether__decode(dec, m.data, m.len, &f) == TETHER_OK && f.type == TETHER__F_WELCOME ? 0 : -1;
    rawws_msg_free(&m);
    return rc;
}

/* Parses whole server frames in s->in: pings answered, ACKs timed. */
static void parse(sess *s, tether__decoder *dec, uint64_t now)
{
    size_t off = 0;
    while (s->in_len - off >= 2) {
        uint8_t *p = s->in + off;
        int op = p[0] & 0x0f;
        uint64_t len = p[1] & 0x7f;
        size_t hdr = 2;
        if (len == 126) {
            if (s->in_len - off < 4) {
                break;
            }
            len = ((uint64_t)p[2] << 8) | p[3];
            hdr = 4;
        } else if (len == 127) {
            if (s->in_len - off < 10) {
                break;
            }
            len = 0;
            for (int i = 0; i < 8; i++) {
                len = (len << 8) | p[2 + i];
            }
            hdr = 10;
        }
        if (s->in_len - off < hdr + len) {
            break;
        }
        const uint8_t *pl = p + hdr;
        if (op == RAWWS_PING) {
            rawws_send(&s->c, RAWWS_PONG, pl, (size_t)len);
        } else if (op == RAWWS_CLOSE) {
            s->dead = 1;
        } else if (op == RAWWS_BINARY) {
            tether__frame f;
            if (tether__decode(dec, pl, (size_t)len, &f) == TETHER_OK) {
                if (f.type == TETHER__F_ACK) {
                    for (uint64_t q = s->acked + 1; q <= f.u.ack && q <= s->seq; q++) {
                        if (s->seq - q < RING) {
                            note_latency(now - s->sent_at[q % RING]);
                        }
                    }
                    if (f.u.ack > s->acked) {
                        s->acked = f.u.ack;
                    }
                } else if (f.type == TETHER__F_BYE || f.type == TETHER__F_REJECT) {
                    s->dead = 1;
                }
            }
        }
        off += hdr + (size_t)len;
    }
    memmove(s->in, s->in + off, s->in_len - off);
    s->in_len -= off;
}

static void readable(sess *s, tether__decoder *dec)
{
    for (;;) {
        if (s->in_cap - s->in_len < 4096) {
            s->in_cap = s->in_cap ? s->in_cap * 2 : 8192;
            s->in = realloc(s->in, s->in_cap);
            if (!s->in) {
                exit(2);
            }
        }
        ssize_t n = recv(s->c.fd, s->in + s->in_len, s->in_cap - s->in_len, MSG_DONTWAIT);
        if (n > 0) {
            s->in_len += (size_t)n;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            s->dead = 1;
        }
        break;
    }
    parse(s, dec, rawws_now_ms());
}

static void send_one(sess *s, uint64_t now)
{
    uint8_t payload[64];
    tether__buf b;
    memset(payload, 'x', sizeof payload);
    s->seq++;
    s->sent_at[s->seq % RING] = now;
    tether__buf_init(&b, 0);
    tether__encode_data_begin(&b, s->seq, 0, 1);
    tether__encode_data_payload(&b, payload, sizeof payload);
    tether__encode_data_end(&b);
    if (rawws_send(&s->c, RAWWS_BINARY, tether__buf_frame(&b), b.len) != 0) {
        s->dead = 1;
    }
    tether__buf_free(&b);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s PORT SESSIONS [RATE_PER_SESSION] [SECONDS]\n", argv[0]);
        return 2;
    }
    uint16_t port = (uint16_t)atoi(argv[1]);
    unsigned n = (unsigned)atoi(argv[2]);
    double rate = argc > 3 ? atof(argv[3]) : 0;
    unsigned secs = argc > 4 ? (unsigned)atoi(argv[4]) : 10;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    sess *ss = calloc(n, sizeof *ss);
    tether__decoder dec;
    if (!ss || tether__decoder_init(&dec, 1u << 20) != TETHER_OK) {
        return 2;
    }
    int ep = epoll_create1(0);
    struct epoll_event evs[256];
    uint64_t t0 = rawws_now_ms();
    unsigned up = 0;
    for (unsigned i = 0; i < n; i++) {
        if (rawws_open(&ss[i].c, port) != 0 || hello(&ss[i], &dec) != 0) {
            fprintf(stderr, "session %u: could not open\n", i);
            ss[i].dead = 1;
            continue;
        }
        up++;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, ss[i].c.fd, &ev);
        /* keep the sessions opened so far alive (pings) while opening more */
        int k = epoll_wait(ep, evs, 256, 0);
        for (int j = 0; j < k; j++) {
            readable(&ss[evs[j].data.u32], &dec);
        }
    }
    printf("opened %u of %u sessions in %llu ms\n", up, n,
           (unsigned long long)(rawws_now_ms() - t0));
    fflush(stdout);
    uint64_t start = rawws_now_ms(), end = start + (uint64_t)secs * 1000;
    uint64_t sent = 0;
    unsigned next = 0;
    while (rawws_now_ms() < end) {
        uint64_t now = rawws_now_ms();
        if (rate > 0) {
            /* spread the sends evenly: by now, (now-start)*rate*n messages are due */
            uint64_t due = (uint64_t)((double)(now - start) / 1000.0 * rate * n);
            while (sent < due) {
                sess *s = &ss[next];
                next = (next + 1) % n;
                if (!s->dead) {
                    send_one(s, now);
                }
                sent++;
            }
        }
        int k = epoll_wait(ep, evs, 256, 2);
        for (int i = 0; i < k; i++) {
            readable(&ss[evs[i].data.u32], &dec);
        }
    }
    unsigned dead = 0;
    uint64_t acked = 0, seqs = 0;
    for (unsigned i = 0; i < n; i++) {
        dead += ss[i].dead;
        acked += ss[i].acked;
        seqs += ss[i].seq;
    }
    qsort(lat, nlat, sizeof *lat, cmp_u64);
    printf("sent %llu acked %llu (%.0f msg/s offered) closed-by-server %u\n",
           (unsigned long long)seqs, (unsigned long long)acked, rate * n, dead);
    if (nlat) {
        printf("ack latency ms: p50 %llu p99 %llu max %llu\n",
               (unsigned long long)lat[nlat / 2], (unsigned long long)lat[nlat * 99 / 100],
               (unsigned long long)lat[nlat - 1]);
    }
    for (unsigned i = 0; i < n; i++) {
        free(ss[i].in);
        rawws_conn_close(&ss[i].c);
    }
    free(ss);
    free(lat);
    tether__decoder_free(&dec);
    return 0;
}

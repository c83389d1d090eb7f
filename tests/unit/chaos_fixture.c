/*
 * Helpers shared by the chaos relay's suites (chaos_fixture.h): a recording
 * TCP peer, a relay in front of it, and client sockets to the relay.
 */
#include "chaos_fixture.h"

/* ---------------------------------------------------------------- helpers */

uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

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

void peer_start(peer *p, int echo)
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

void peer_stop(peer *p)
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
peer_conn peer_get(peer *p, int i)
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

int peer_count(peer *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->n;
    pthread_mutex_unlock(&p->mu);
    return n;
}

/* Waits until connection i received at least want bytes (or ms pass); returns what it has. */
size_t peer_wait(peer *p, int i, size_t want, unsigned ms)
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

void log_cb(void *arg, const char *line)
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

tether__chaos *relay_to(uint16_t port, uint64_t seed, logbuf *lb)
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

void cmd(tether__chaos *c, const char *line)
{
    char err[200] = "";
    int rc = tether__chaos_command(c, line, err, sizeof err);
    if (rc != 0) {
        tt_fail(__FILE__, __LINE__, "command '%s': %s", line, err);
    }
    sleep_ms(20); /* the relay thread applies it */
}

/* The counters, once the relay thread has published what just happened. */
void settled_stats(tether__chaos *c, tether__chaos_stats *st)
{
    sleep_ms(60);
    tether__chaos_get_stats(c, st);
}

/* A blocking client socket to the relay with a receive timeout. */
int dial(uint16_t port)
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
size_t recv_all(int fd, uint8_t *buf, size_t want, unsigned ms, int *end)
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

void fill(uint8_t *b, size_t n, unsigned salt)
{
    for (size_t i = 0; i < n; i++) {
        b[i] = (uint8_t)(i * 131 + salt);
    }
}

/* A WebSocket frame, client to server (masked), into out; returns its size. */
size_t ws_frame(uint8_t *out, int opcode, size_t len)
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

const char http_get[] = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";

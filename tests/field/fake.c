#include "fake.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

static int listen_any(uint16_t *port, int backlog)
{
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, backlog) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

int fake_dial(uint16_t port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

uint16_t free_port(void)
{
    uint16_t port = 0;
    int fd = listen_any(&port, 1);
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

int wait_port(uint16_t port, unsigned timeout_ms)
{
    for (unsigned t = 0; t <= timeout_ms; t += 20) {
        int fd = fake_dial(port);
        if (fd >= 0) {
            close(fd);
            return 1;
        }
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* ---- the fake HTTP server ---- */

struct fake_server {
    fake_mode mode;
    int status;
    char extra[512];
    int lfd;
    uint16_t port;
    pthread_t thread;
    atomic_int stop;
    atomic_int accepted;
    pthread_mutex_t mu;
    char last[4096];
    int held[16]; /* connections kept open (silent modes) */
    int nheld;
};

static void accept_key(const char *key, char out[64])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char buf[256];
    unsigned char sha[SHA_DIGEST_LENGTH];
    snprintf(buf, sizeof buf, "%s%s", key, guid);
    SHA1((const unsigned char *)buf, strlen(buf), sha);
    EVP_EncodeBlock((unsigned char *)out, sha, SHA_DIGEST_LENGTH);
}

/* Reads a request head (up to the blank line) with a bounded wait. */
static int read_head(int fd, char *buf, size_t len)
{
    size_t n = 0;
    for (int i = 0; i < 300 && n + 1 < len; i++) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 10) <= 0) {
            continue;
        }
        ssize_t r = recv(fd, buf + n, len - 1 - n, 0);
        if (r <= 0) {
            break;
        }
        n += (size_t)r;
        buf[n] = '\0';
        if (strstr(buf, "\r\n\r\n")) {
            return (int)n;
        }
    }
    buf[n] = '\0';
    return (int)n;
}

static const char *header_value(const char *head, const char *name, char *out, size_t len)
{
    const char *p = head;
    size_t nl = strlen(name);
    out[0] = '\0';
    while ((p = strchr(p, '\n')) != NULL) {
        p++;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ') {
                v++;
            }
            size_t n = strcspn(v, "\r\n");
            snprintf(out, len, "%.*s", (int)(n < len ? n : len - 1), v);
            return out;
        }
    }
    return NULL;
}

static void serve_one(fake_server *f, int fd)
{
    char req[4096], key[128], acc[64], resp[2048];
    int keep = 0;

    if (f->mode == FAKE_NOT_TLS) {
        char junk[512];
        recv(fd, junk, sizeof junk, 0);
        const char *r = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        send(fd, r, strlen(r), MSG_NOSIGNAL);
        close(fd);
        return;
    }
    read_head(fd, req, sizeof req);
    pthread_mutex_lock(&f->mu);
    snprintf(f->last, sizeof f->last, "%s", req);
    pthread_mutex_unlock(&f->mu);
    header_value(req, "Sec-WebSocket-Key", key, sizeof key);
    accept_key(key, acc);
    switch (f->mode) {
    case FAKE_STATUS:
        snprintf(resp, sizeof resp,
                 "HTTP/1.1 %d Refused\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n%s"
                 "Connection: close\r\n\r\nno\n",
                 f->status, f->extra);
        break;
    case FAKE_BAD_ACCEPT:
        snprintf(resp, sizeof resp,
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n"
                 "Sec-WebSocket-Protocol: tether.v1\r\n\r\n");
        keep = 1;
        break;
    case FAKE_CONN_REWRITE:
        snprintf(resp, sizeof resp,
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
                 "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: tether.v1\r\n\r\n",
                 acc);
        keep = 1;
        break;
    case FAKE_NO_PROTOCOL:
    case FAKE_OTHER_PROTOCOL:
    case FAKE_UPGRADE_SILENT:
        snprintf(resp, sizeof resp,
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: %s\r\n%s\r\n",
                 acc,
                 f->mode == FAKE_NO_PROTOCOL      ? ""
                 : f->mode == FAKE_OTHER_PROTOCOL ? "Sec-WebSocket-Protocol: chat\r\n"
                                                  : "Sec-WebSocket-Protocol: tether.v1\r\n");
        keep = 1;
        break;
    case FAKE_SILENT:
    default:
        resp[0] = '\0';
        keep = 1;
        break;
    }
    if (resp[0]) {
        send(fd, resp, strlen(resp), MSG_NOSIGNAL);
    }
    if (keep && f->nheld < 16) {
        f->held[f->nheld++] = fd; /* closed by fake_stop */
    } else {
        shutdown(fd, SHUT_WR);
        char junk[256];
        for (int i = 0; i < 50; i++) { /* drain until the client closes, bounded */
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, 10) > 0 && recv(fd, junk, sizeof junk, 0) <= 0) {
                break;
            }
        }
        close(fd);
    }
}

static void *fake_main(void *arg)
{
    fake_server *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd p = {f->lfd, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0) {
            continue;
        }
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        atomic_fetch_add(&f->accepted, 1);
        serve_one(f, fd);
    }
    return NULL;
}

fake_server *fake_start(fake_mode mode, int status, const char *extra)
{
    fake_server *f = calloc(1, sizeof *f);
    if (!f) {
        return NULL;
    }
    f->mode = mode;
    f->status = status;
    snprintf(f->extra, sizeof f->extra, "%s", extra ? extra : "");
    pthread_mutex_init(&f->mu, NULL);
    f->lfd = listen_any(&f->port, 16);
    if (f->lfd < 0 || pthread_create(&f->thread, NULL, fake_main, f) != 0) {
        if (f->lfd >= 0) {
            close(f->lfd);
        }
        free(f);
        return NULL;
    }
    return f;
}

uint16_t fake_port(fake_server *f)
{
    return f->port;
}

int fake_accepted(fake_server *f)
{
    return atomic_load(&f->accepted);
}

void fake_last_request(fake_server *f, char *buf, size_t len)
{
    pthread_mutex_lock(&f->mu);
    snprintf(buf, len, "%s", f->last);
    pthread_mutex_unlock(&f->mu);
}

void fake_stop(fake_server *f)
{
    if (!f) {
        return;
    }
    atomic_store(&f->stop, 1);
    pthread_join(f->thread, NULL);
    for (int i = 0; i < f->nheld; i++) {
        close(f->held[i]);
    }
    close(f->lfd);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

int backlog_full_listener(uint16_t *port, int fds[4])
{
    /* backlog 0: the kernel queues one connection; the next SYNs are dropped */
    fds[0] = listen_any(port, 0);
    fds[1] = fds[2] = fds[3] = -1;
    if (fds[0] < 0) {
        return -1;
    }
    for (int i = 1; i < 4; i++) {
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(*port);
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        connect(fds[i], (struct sockaddr *)&a, sizeof a);
    }
    struct timespec ts = {0, 200 * 1000000L};
    nanosleep(&ts, NULL);
    return 0;
}

void backlog_close(int fds[4])
{
    for (int i = 0; i < 4; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
}

/* ---- the relay ---- */

#define RELAY_MAX 32

typedef struct rconn {
    int a, b;          /* client side, server side; -1 when unused */
    int head_done;     /* stall mode: the server's response head has passed */
    int stall;         /* this connection stalls after the upgrade */
    char tail[4];      /* last bytes of the server stream, to spot \r\n\r\n across reads */
} rconn;

struct relay {
    uint16_t upstream, port;
    int lfd;
    pthread_t thread;
    atomic_int stop, blackhole, stall, cut, nconn;
    rconn c[RELAY_MAX];
};

static void rclose(rconn *c)
{
    if (c->a >= 0) {
        close(c->a);
    }
    if (c->b >= 0) {
        close(c->b);
    }
    c->a = c->b = -1;
}

static void *relay_main(void *arg)
{
    relay *r = arg;
    char buf[65536];
    while (!atomic_load(&r->stop)) {
        struct pollfd p[1 + 2 * RELAY_MAX];
        int map[1 + 2 * RELAY_MAX], n = 1;
        if (atomic_exchange(&r->cut, 0)) {
            for (int i = 0; i < RELAY_MAX; i++) {
                rclose(&r->c[i]);
            }
        }
        p[0].fd = r->lfd;
        p[0].events = POLLIN;
        for (int i = 0; i < RELAY_MAX; i++) {
            if (r->c[i].a >= 0) {
                p[n].fd = r->c[i].a;
                p[n].events = POLLIN;
                map[n++] = i * 2;
                p[n].fd = r->c[i].b;
                p[n].events = POLLIN;
                map[n++] = i * 2 + 1;
            }
        }
        if (poll(p, (nfds_t)n, 20) <= 0) {
            continue;
        }
        if (p[0].revents & POLLIN) {
            int fd = accept(r->lfd, NULL, NULL);
            int up = fd >= 0 ? fake_dial(r->upstream) : -1;
            int slot = -1;
            for (int i = 0; i < RELAY_MAX && slot < 0; i++) {
                if (r->c[i].a < 0) {
                    slot = i;
                }
            }
            if (fd >= 0 && (up < 0 || slot < 0)) {
                close(fd);
                if (up >= 0) {
                    close(up);
                }
            } else if (fd >= 0) {
                memset(&r->c[slot], 0, sizeof r->c[slot]);
                r->c[slot].a = fd;
                r->c[slot].b = up;
                r->c[slot].stall = atomic_load(&r->stall);
                atomic_fetch_add(&r->nconn, 1);
            }
        }
        for (int k = 1; k < n; k++) {
            if (!(p[k].revents & (POLLIN | POLLHUP | POLLERR))) {
                continue;
            }
            rconn *c = &r->c[map[k] / 2];
            int from_server = map[k] % 2;
            if (c->a < 0) {
                continue;
            }
            ssize_t got = recv(p[k].fd, buf, sizeof buf, 0);
            if (got <= 0) {
                rclose(c);
                continue;
            }
            if (atomic_load(&r->blackhole)) {
                continue;
            }
            size_t off = 0, len = (size_t)got;
            if (from_server && c->stall) {
                if (c->head_done) {
                    continue;
                }
                /* pass the response head only */
                char *e = memmem(buf, len, "\r\n\r\n", 4);
                if (e) {
                    len = (size_t)(e - buf) + 4;
                    c->head_done = 1;
                }
            }
            int to = from_server ? c->a : c->b;
            while (off < len) {
                ssize_t w = send(to, buf + off, len - off, MSG_NOSIGNAL);
                if (w <= 0) {
                    rclose(c);
                    break;
                }
                off += (size_t)w;
            }
        }
    }
    for (int i = 0; i < RELAY_MAX; i++) {
        rclose(&r->c[i]);
    }
    return NULL;
}

relay *relay_start(uint16_t upstream)
{
    relay *r = calloc(1, sizeof *r);
    if (!r) {
        return NULL;
    }
    for (int i = 0; i < RELAY_MAX; i++) {
        r->c[i].a = r->c[i].b = -1;
    }
    r->upstream = upstream;
    r->lfd = listen_any(&r->port, 16);
    if (r->lfd < 0 || pthread_create(&r->thread, NULL, relay_main, r) != 0) {
        free(r);
        return NULL;
    }
    return r;
}

uint16_t relay_port(relay *r)
{
    return r->port;
}

void relay_blackhole(relay *r, int on)
{
    atomic_store(&r->blackhole, on);
}

void relay_stall_after_upgrade(relay *r, int on)
{
    atomic_store(&r->stall, on);
}

void relay_cut_all(relay *r)
{
    atomic_store(&r->cut, 1);
    struct timespec ts = {0, 60 * 1000000L};
    nanosleep(&ts, NULL);
}

int relay_connections(relay *r)
{
    return atomic_load(&r->nconn);
}

void relay_stop(relay *r)
{
    if (!r) {
        return;
    }
    atomic_store(&r->stop, 1);
    pthread_join(r->thread, NULL);
    close(r->lfd);
    free(r);
}

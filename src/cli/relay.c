/*
 * The demo's fault relay: a poll()-based loopback TCP proxy that cuts every
 * live connection at random moments (see relay.h).
 */
#include "relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"

#define MAX_CONNS 64
#define BUF_SIZE (64 * 1024)

/* Bytes read from one socket, waiting to be written to the other. */
typedef struct half {
    uint8_t buf[BUF_SIZE]; /* the bytes */
    size_t off;            /* start of the unwritten bytes */
    size_t len;            /* unwritten bytes */
    int eof;               /* the reading side sent FIN */
    int shut;              /* FIN passed on to the other side */
} half;

/* One relayed connection: fd[0] accepted from the client, fd[1] to the target. */
typedef struct conn {
    int fd[2];   /* the two sockets */
    half dir[2]; /* dir[i]: read from fd[i], written to fd[1 - i] */
} conn;

struct relay {
    int lfd;                /* listening socket */
    uint16_t port;          /* its port */
    uint16_t target;        /* where connections go */
    int wake[2];            /* pipe that wakes the thread for stop */
    pthread_t thread;       /* the poll loop */
    uint32_t cut_min;       /* shortest time between cuts, ms */
    uint32_t cut_max;       /* longest; 0 = never cut */
    uint64_t rng;           /* generator state for the cut moments */
    conn *conns[MAX_CONNS]; /* live connections (thread only) */
    relay_stats local;      /* counters (thread only) */
    pthread_mutex_t mu;     /* guards the three fields below */
    relay_stats shared;     /* counters as last published by the thread */
    int cutting;            /* cuts enabled */
    int stop;               /* the thread must exit */
};

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void close_rst(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

static void drop(relay *r, int i, int rst)
{
    conn *l = r->conns[i];
    for (int k = 0; k < 2; k++) {
        if (rst) {
            close_rst(l->fd[k]);
        } else {
            close(l->fd[k]);
        }
    }
    free(l);
    r->conns[i] = NULL;
}

static void cut_all(relay *r)
{
    int rst = (int)(r->local.cuts % 2); /* FIN, RST, FIN, ... */
    uint64_t n = 0;
    for (int i = 0; i < MAX_CONNS; i++) {
        if (r->conns[i] != NULL) {
            drop(r, i, rst);
            n++;
        }
    }
    if (n > 0) {
        r->local.cuts++;
        r->local.cuts_rst += (uint64_t)rst;
        r->local.cut_conns += n;
    }
}

static int connect_target(relay *r)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(r->target)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* A loopback connect completes (or is refused) at once. */
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        close(fd);
        return -1;
    }
    set_nodelay(fd);
    return fd;
}

static void accept_all(relay *r)
{
    for (;;) {
        int cfd = accept4(r->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            return;
        }
        int slot = -1;
        for (int i = 0; i < MAX_CONNS && slot < 0; i++) {
            slot = r->conns[i] == NULL ? i : -1;
        }
        int tfd = slot >= 0 ? connect_target(r) : -1;
        conn *l = tfd >= 0 ? calloc(1, sizeof *l) : NULL;
        if (l == NULL) {
            if (tfd >= 0) {
                close(tfd);
            }
            close_rst(cfd);
            continue;
        }
        set_nodelay(cfd);
        l->fd[0] = cfd;
        l->fd[1] = tfd;
        r->conns[slot] = l;
        r->local.accepted++;
    }
}

/* Moves bytes for one conn after poll(); returns -1 when the conn must close. */
static int pump(relay *r, conn *l, const short revents[2])
{
    for (int i = 0; i < 2; i++) {
        if (revents[i] & POLLERR) {
            return -1;
        }
        half *in = &l->dir[i];
        if ((revents[i] & (POLLIN | POLLHUP)) && !in->eof) {
            size_t space = BUF_SIZE - in->off - in->len;
            if (space > 0) {
                ssize_t n = recv(l->fd[i], in->buf + in->off + in->len, space, 0);
                if (n > 0) {
                    in->len += (size_t)n;
                    if (i == 0) {
                        r->local.bytes_up += (uint64_t)n;
                    } else {
                        r->local.bytes_down += (uint64_t)n;
                    }
                } else if (n == 0) {
                    in->eof = 1;
                } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                    return -1;
                }
            }
        } else if ((revents[i] & POLLHUP) && in->eof) {
            return -1; /* both directions of this socket are gone */
        }
    }
    for (int i = 0; i < 2; i++) {
        half *out = &l->dir[1 - i]; /* bytes to write to fd[i] */
        if ((revents[i] & POLLOUT) && out->len > 0) {
            ssize_t n = send(l->fd[i], out->buf + out->off, out->len, MSG_NOSIGNAL);
            if (n > 0) {
                out->off += (size_t)n;
                out->len -= (size_t)n;
            } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                return -1;
            }
        }
        if (out->len == 0) {
            out->off = 0;
        } else if (out->off + out->len == BUF_SIZE) {
            memmove(out->buf, out->buf + out->off, out->len);
            out->off = 0;
        }
    }
    for (int i = 0; i < 2; i++) {
        half *h = &l->dir[i];
        if (h->eof && h->len == 0 && !h->shut) {
            shutdown(l->fd[1 - i], SHUT_WR);
            h->shut = 1;
        }
    }
    return l->dir[0].shut && l->dir[1].shut ? -1 : 0;
}

static uint64_t next_cut_at(relay *r)
{
    return cli_now_ms() + cli_rand_range(&r->rng, r->cut_min, r->cut_max);
}

static void *run(void *arg)
{
    relay *r = arg;
    struct pollfd pfd[2 + 2 * MAX_CONNS];
    int idx[MAX_CONNS]; /* pfd index of each conn's first socket, -1 if none */
    uint64_t next_cut = next_cut_at(r);
    int was_cutting = 1;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        r->shared = r->local;
        int stop = r->stop, cutting = r->cutting && r->cut_max > 0;
        pthread_mutex_unlock(&r->mu);
        if (stop) {
            break;
        }
        uint64_t now = cli_now_ms();
        if (cutting && !was_cutting) {
            next_cut = next_cut_at(r);
        }
        was_cutting = cutting;
        if (cutting && now >= next_cut) {
            cut_all(r);
            next_cut = next_cut_at(r);
        }

        int n = 0;
        pfd[n++] = (struct pollfd){.fd = r->wake[0], .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = r->lfd, .events = POLLIN};
        for (int i = 0; i < MAX_CONNS; i++) {
            conn *l = r->conns[i];
            idx[i] = -1;
            if (l == NULL) {
                continue;
            }
            idx[i] = n;
            for (int k = 0; k < 2; k++) {
                short ev = 0;
                if (!l->dir[k].eof && l->dir[k].off + l->dir[k].len < BUF_SIZE) {
                    ev |= POLLIN;
                }
                if (l->dir[1 - k].len > 0) {
                    ev |= POLLOUT;
                }
                pfd[n++] = (struct pollfd){.fd = l->fd[k], .events = ev};
            }
        }
        int timeout = 1000;
        if (cutting) {
            now = cli_now_ms();
            timeout = next_cut <= now ? 0 : (int)(next_cut - now < 1000 ? next_cut - now : 1000);
        }
        if (poll(pfd, (nfds_t)n, timeout) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        if (pfd[0].revents) {
            char drain[64];
            while (read(r->wake[0], drain, sizeof drain) > 0) {
            }
        }
        for (int i = 0; i < MAX_CONNS; i++) {
            if (idx[i] < 0) {
                continue;
            }
            short rev[2] = {pfd[idx[i]].revents, pfd[idx[i] + 1].revents};
            if ((rev[0] || rev[1]) && pump(r, r->conns[i], rev) != 0) {
                drop(r, i, 0);
            }
        }
        if (pfd[1].revents & POLLIN) {
            accept_all(r);
        }
    }
    for (int i = 0; i < MAX_CONNS; i++) {
        if (r->conns[i] != NULL) {
            drop(r, i, 0);
        }
    }
    pthread_mutex_lock(&r->mu);
    r->shared = r->local;
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int relay_start(uint16_t target_port, uint32_t cut_min_ms, uint32_t cut_max_ms, uint64_t seed,
                relay **out, char *err, size_t errlen)
{
    relay *r = calloc(1, sizeof *r);
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->target = target_port;
    r->cut_min = cut_min_ms;
    r->cut_max = cut_max_ms;
    r->rng = seed;
    r->cutting = 1;
    r->wake[0] = r->wake[1] = -1;
    pthread_mutex_init(&r->mu, NULL);

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t salen = sizeof sa;
    r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (r->lfd < 0 || bind(r->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(r->lfd, 64) != 0 || getsockname(r->lfd, (struct sockaddr *)&sa, &salen) != 0 ||
        pipe2(r->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(err, errlen, "cannot listen on 127.0.0.1: %s", strerror(errno));
        goto fail;
    }
    r->port = ntohs(sa.sin_port);
    int rc = pthread_create(&r->thread, NULL, run, r);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the relay thread: %s", strerror(rc));
        goto fail;
    }
    *out = r;
    return 0;

fail:
    if (r->lfd >= 0) {
        close(r->lfd);
    }
    if (r->wake[0] >= 0) {
        close(r->wake[0]);
        close(r->wake[1]);
    }
    pthread_mutex_destroy(&r->mu);
    free(r);
    return -1;
}

uint16_t relay_port(const relay *r)
{
    return r->port;
}

void relay_set_cutting(relay *r, int on)
{
    pthread_mutex_lock(&r->mu);
    r->cutting = on;
    pthread_mutex_unlock(&r->mu);
    (void)!write(r->wake[1], "c", 1);
}

void relay_get_stats(relay *r, relay_stats *out)
{
    pthread_mutex_lock(&r->mu);
    *out = r->shared;
    pthread_mutex_unlock(&r->mu);
}

void relay_stop(relay *r)
{
    if (r == NULL) {
        return;
    }
    pthread_mutex_lock(&r->mu);
    r->stop = 1;
    pthread_mutex_unlock(&r->mu);
    (void)!write(r->wake[1], "s", 1);
    pthread_join(r->thread, NULL);
    close(r->lfd);
    close(r->wake[0]);
    close(r->wake[1]);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/*
 * The chaos relay's engine (see chaos.h): one thread, one poll() loop, every
 * connection a pair of sockets with a buffer per direction. This file holds
 * the loop, the sockets (accept, upstream connect, close with RST or FIN) and
 * the API; chaos_flow.c decides how bytes move, chaos_fault.c turns faults on
 * and off, chaos_cmd.c parses commands and draws the random schedule.
 */
#include "chaos.h"
#include "chaos_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_WAIT_MS 200 /* longest poll() */

uint64_t tether__chaos_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void tether__chaos_log(tether__chaos *c, const char *fmt, ...)
{
    if (!c->cfg.log) {
        return;
    }
    char line[512];
    uint64_t t = tether__chaos_now() - c->t0;
    int n = snprintf(line, sizeof line, "[%5llu.%03llu] ", (unsigned long long)(t / 1000),
                     (unsigned long long)(t % 1000));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    c->cfg.log(c->cfg.log_arg, line);
}

uint64_t tether__chaos_elapsed_ms(const tether__chaos *c)
{
    return tether__chaos_now() - c->t0;
}

/* ---- sockets ---- */

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

static void half_free(half *h)
{
    free(h->buf);
    free(h->m);
}

static void drop(tether__chaos *c, int i, int rst, const char *why)
{
    conn *k = c->conns[i];
    for (int s = 0; s < 2; s++) {
        if (k->fd[s] >= 0) {
            if (rst) {
                close_rst(k->fd[s]);
            } else {
                close(k->fd[s]);
            }
        }
    }
    if (c->cfg.log_conns && why) {
        tether__chaos_log(c, "conn %u closed: %s (up %llu bytes, down %llu bytes)", k->id, why,
                          (unsigned long long)k->h[0].wr, (unsigned long long)k->h[1].wr);
    }
    half_free(&k->h[0]);
    half_free(&k->h[1]);
    free(k);
    c->conns[i] = NULL;
    c->st.open--;
}

void tether__chaos_cut_all(tether__chaos *c, int rst, const char *what)
{
    uint64_t n = 0;
    for (int i = 0; i < MAX_CONNS; i++) {
        if (c->conns[i]) {
            drop(c, i, rst, NULL);
            n++;
        }
    }
    c->st.faults[TETHER__CHAOS_CUT]++;
    if (n > 0) {
        c->st.cut_events++;
        c->st.cut_conns += n;
        if (rst) {
            c->st.cut_rst += n;
            c->st.cut_events_rst++;
        }
    }
    tether__chaos_log(c, "%s: %llu connection%s closed with %s", what, (unsigned long long)n,
                      n == 1 ? "" : "s", rst ? "RST" : "FIN");
}

static int resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len,
                   int passive, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    char ps[8];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    snprintf(ps, sizeof ps, "%u", (unsigned)port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int same_endpoint(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family) {
        return 0;
    }
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return 0;
}

/* The upstream connect finished (POLLOUT or an error): 0 ok, -1 failed. */
static int connect_done(conn *k, char *why, size_t len)
{
    int e = 0;
    socklen_t el = sizeof e;
    if (getsockopt(k->fd[1], SOL_SOCKET, SO_ERROR, &e, &el) != 0) {
        e = errno;
    }
    if (e != 0) {
        snprintf(why, len, "%s", strerror(e));
        return -1;
    }
    /* Connecting to a free port of our own machine can connect to itself. */
    struct sockaddr_storage me, peer;
    socklen_t ml = sizeof me, pl = sizeof peer;
    if (getsockname(k->fd[1], (struct sockaddr *)&me, &ml) == 0 &&
        getpeername(k->fd[1], (struct sockaddr *)&peer, &pl) == 0 && same_endpoint(&me, &peer)) {
        snprintf(why, len, "connected to itself (nothing listens there)");
        return -1;
    }
    k->connecting = 0;
    set_nodelay(k->fd[1]);
    return 0;
}

static void accept_all(tether__chaos *c)
{
    for (;;) {
        int cfd = accept4(c->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            return;
        }
        if (c->refusing) {
            close_rst(cfd);
            c->st.refused++;
            if (c->cfg.log_conns) {
                tether__chaos_log(c, "refused a connection (reset)");
            }
            continue;
        }
        int slot = -1;
        for (int i = 0; i < MAX_CONNS && slot < 0; i++) {
            slot = c->conns[i] == NULL ? i : -1;
        }
        conn *k = slot >= 0 ? calloc(1, sizeof *k) : NULL;
        if (k) {
            k->h[0].m = malloc(MARKS * sizeof(mark));
            k->h[1].m = malloc(MARKS * sizeof(mark));
        }
        if (c->uplen == 0) { /* upstream none: as if nothing listened there */
            close_rst(cfd);
            c->st.upstream_failed++;
            if (k) {
                half_free(&k->h[0]);
                half_free(&k->h[1]);
                free(k);
            }
            if (c->cfg.log_conns) {
                tether__chaos_log(c, "closed a connection: no upstream");
            }
            continue;
        }
        int ufd = -1;
        if (k && k->h[0].m && k->h[1].m) {
            ufd = socket(c->up.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        }
        if (ufd < 0) {
            if (k) {
                half_free(&k->h[0]);
                half_free(&k->h[1]);
                free(k);
            }
            close_rst(cfd);
            tether__chaos_log(c, "dropped a connection: %s",
                              slot < 0 ? "too many connections" : "no memory");
            continue;
        }
        k->id = ++c->next_id;
        k->fd[0] = cfd;
        k->fd[1] = ufd;
        k->connecting = 1;
        k->poisoned = c->blackhole_mode;
        k->ustall = c->ustall_mode;
        k->ustall_after = c->ustall_after;
        set_nodelay(cfd);
        c->conns[slot] = k;
        c->st.open++;
        if (connect(ufd, (struct sockaddr *)&c->up, c->uplen) != 0 && errno != EINPROGRESS) {
            char why[128];
            snprintf(why, sizeof why, "%s", strerror(errno));
            c->st.upstream_failed++;
            if (c->cfg.log_conns) {
                tether__chaos_log(c, "conn %u: upstream %s failed: %s", k->id, c->upstream_name,
                                  why);
            }
            drop(c, slot, 1, NULL);
            continue;
        }
        c->st.accepted++;
        if (c->cfg.log_conns) {
            tether__chaos_log(c, "conn %u accepted%s%s", k->id, k->poisoned ? " (blackholed)" : "",
                              k->ustall ? " (stall after upgrade)" : "");
        }
    }
}

/* Handles poll()'s news for connection i; may drop it. Sets *fired when a cut
 * trigger was reached (the caller cuts). */
static void service(tether__chaos *c, int i, const short rev[2], uint64_t now, int *fired)
{
    conn *k = c->conns[i];
    char why[160];
    if (k->connecting && rev[1]) {
        if (connect_done(k, why, sizeof why) != 0) {
            c->st.upstream_failed++;
            if (c->cfg.log_conns) {
                tether__chaos_log(c, "conn %u: upstream %s failed: %s", k->id,
                                  c->upstream_name ? c->upstream_name : "?", why);
            }
            drop(c, i, 1, NULL);
            return;
        }
    }
    for (int s = 0; s < 2; s++) {
        half *h = &k->h[s];
        if (s == 1 && k->connecting) {
            continue;
        }
        if (rev[s] & POLLERR) {
            h->gone = h->eof = 1;
        } else if (rev[s] & (POLLIN | POLLHUP)) {
            if (tether__chaos_can_read(c, k, s)) {
                tether__chaos_read(c, k, s, now);
            }
            if (rev[s] & POLLHUP) {
                h->hup = 1;
                h->gone |= h->eof;
            }
        }
    }
    if (!k->connecting) {
        for (int s = 0; s < 2; s++) {
            if (tether__chaos_write(c, k, s, now) > 0) {
                *fired = 1;
                return;
            }
        }
        tether__chaos_pass_fin(c, k, 0);
        tether__chaos_pass_fin(c, k, 1);
    }
    const half *h0 = &k->h[0], *h1 = &k->h[1];
    const char *reason = NULL;
    if (h0->shut && h1->shut) {
        reason = "both sides finished";
    } else if (k->poisoned || k->ustall) {
        if ((h0->eof || h0->gone) && (h1->eof || h1->gone)) {
            reason = "both sides closed";
        }
    } else if (h0->gone && h0->len == 0) {
        reason = "the client is gone";
    } else if (h1->gone && h1->len == 0) {
        reason = "the upstream is gone";
    }
    if (reason) {
        drop(c, i, 0, reason);
    }
}

/* ---- the loop ---- */

static void *run(void *arg)
{
    tether__chaos *c = arg;
    struct pollfd pfd[2 + 2 * MAX_CONNS];
    int idx[MAX_CONNS];
    qcmd local[CMDQ];

    for (;;) {
        pthread_mutex_lock(&c->mu);
        c->shared = c->st;
        int stop = c->stop;
        size_t nq = c->qn;
        memcpy(local, c->q, nq * sizeof *local);
        c->qn = 0;
        pthread_mutex_unlock(&c->mu);
        if (stop) {
            break;
        }
        uint64_t now = tether__chaos_now();
        for (size_t i = 0; i < nq; i++) {
            tether__chaos_run_cmd(c, &local[i], now);
        }
        tether__chaos_run_timers(c, now);
        tether__chaos_run_random(c, now);

        /* what to wait for */
        uint64_t wake = now + MAX_WAIT_MS;
        for (size_t i = 0; i < c->ntimers; i++) {
            if (c->timers[i].at < wake) {
                wake = c->timers[i].at;
            }
        }
        if (c->random_on && c->random_base + c->random_next.at_ms < wake) {
            wake = c->random_base + c->random_next.at_ms;
        }
        int n = 0;
        pfd[n++] = (struct pollfd){.fd = c->wake[0], .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = c->lfd, .events = POLLIN};
        for (int i = 0; i < MAX_CONNS; i++) {
            conn *k = c->conns[i];
            idx[i] = -1;
            if (!k) {
                continue;
            }
            idx[i] = n;
            for (int s = 0; s < 2; s++) {
                short ev = 0;
                if (tether__chaos_can_read(c, k, s)) {
                    ev |= POLLIN;
                }
                if (s == 1 && k->connecting) {
                    ev |= POLLOUT;
                } else if (tether__chaos_allowance(c, k, 1 - s, now, &wake) > 0) {
                    ev |= POLLOUT;
                }
                int quiet = k->h[s].gone || (k->h[s].hup && !(ev & POLLIN));
                pfd[n++] = (struct pollfd){.fd = quiet ? -1 : k->fd[s], .events = ev};
            }
        }
        pthread_mutex_lock(&c->mu);
        c->shared = c->st;
        pthread_mutex_unlock(&c->mu);
        int timeout = wake <= now ? 0 : (int)(wake - now);
        if (poll(pfd, (nfds_t)n, timeout) < 0) {
            if (errno == EINTR) {
                continue;
            }
            tether__chaos_log(c, "poll failed: %s", strerror(errno));
            break;
        }
        if (pfd[0].revents) {
            char drain[64];
            while (read(c->wake[0], drain, sizeof drain) > 0) {
            }
        }
        now = tether__chaos_now();
        int fired = 0;
        for (int i = 0; i < MAX_CONNS && !fired; i++) {
            if (c->conns[i] && idx[i] >= 0) {
                short rev[2] = {pfd[idx[i]].revents, pfd[idx[i] + 1].revents};
                service(c, i, rev, now, &fired);
            }
        }
        if (fired) {
            char what[240];
            snprintf(what, sizeof what, "%s: fired", c->trig.desc);
            c->trig.armed = 0;
            tether__chaos_cut_all(c, c->trig.rst, what);
        }
        if (pfd[1].revents & POLLIN) {
            accept_all(c);
        }
    }
    for (int i = 0; i < MAX_CONNS; i++) {
        if (c->conns[i]) {
            drop(c, i, 0, "relay stopping");
        }
    }
    pthread_mutex_lock(&c->mu);
    c->shared = c->st;
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---- the API ---- */

int tether__chaos_start(const tether__chaos_cfg *cfg, tether__chaos **out, char *err, size_t errlen)
{
    *out = NULL;
    int none = cfg && cfg->upstream_host && strcmp(cfg->upstream_host, "none") == 0;
    if (!cfg || !cfg->upstream_host || (!cfg->upstream_port && !none)) {
        snprintf(err, errlen, "an upstream host and port are required");
        return -1;
    }
    if (cfg->random_on && !tether__chaos_random_valid(&cfg->random)) {
        snprintf(err, errlen, "random faults want 1 <= min_ms <= max_ms and known kinds");
        return -1;
    }
    tether__chaos *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->cfg = *cfg;
    c->cfg.timeline = NULL;
    c->cfg.timeline_n = 0;
    c->lfd = -1;
    c->wake[0] = c->wake[1] = -1;
    pthread_mutex_init(&c->mu, NULL);
    c->shape_rng = cfg->seed ^ 0x7368617065ull; /* "shape" */
    c->upstream_name = malloc(strlen(cfg->upstream_host) + 16);
    if (!c->upstream_name) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    sprintf(c->upstream_name, "%s:%u", cfg->upstream_host, (unsigned)cfg->upstream_port);
    if (!none &&
        resolve(cfg->upstream_host, cfg->upstream_port, &c->up, &c->uplen, 0, err, errlen) != 0) {
        goto fail;
    }
    struct sockaddr_storage la;
    socklen_t ll;
    const char *lh = cfg->listen_host && *cfg->listen_host ? cfg->listen_host : "127.0.0.1";
    if (resolve(lh, cfg->listen_port, &la, &ll, 1, err, errlen) != 0) {
        goto fail;
    }
    int one = 1;
    c->lfd = socket(la.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->lfd < 0 || setsockopt(c->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(c->lfd, (struct sockaddr *)&la, ll) != 0 || listen(c->lfd, 128) != 0 ||
        getsockname(c->lfd, (struct sockaddr *)&la, &ll) != 0 ||
        pipe2(c->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%u: %s", lh, (unsigned)cfg->listen_port,
                 strerror(errno));
        goto fail;
    }
    c->port = ntohs(la.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&la)->sin6_port
                                             : ((struct sockaddr_in *)&la)->sin_port);
    c->t0 = tether__chaos_now();
    for (size_t i = 0; i < cfg->timeline_n; i++) {
        tether__chaos_add_timer(c, c->t0 + cfg->timeline[i].at_ms, 0, 0, &cfg->timeline[i].fault);
    }
    if (cfg->timeline_n && c->ntimers != cfg->timeline_n) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    tether__chaos_log(c, "relay %s:%u -> %s, seed %llu", lh, (unsigned)c->port, c->upstream_name,
                      (unsigned long long)cfg->seed);
    if (cfg->random_on) {
        tether__chaos_start_random(c, &cfg->random, c->t0);
        tether__chaos_log(c, "random faults every %u..%u ms", (unsigned)cfg->random.min_ms,
                          (unsigned)cfg->random.max_ms);
    }
    int rc = pthread_create(&c->thread, NULL, run, c);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the relay thread: %s", strerror(rc));
        goto fail;
    }
    *out = c;
    return 0;

fail:
    if (c->lfd >= 0) {
        close(c->lfd);
    }
    if (c->wake[0] >= 0) {
        close(c->wake[0]);
        close(c->wake[1]);
    }
    free(c->timers);
    free(c->upstream_name);
    pthread_mutex_destroy(&c->mu);
    free(c);
    return -1;
}

uint16_t tether__chaos_port(const tether__chaos *c)
{
    return c->port;
}

int tether__chaos_apply(tether__chaos *c, const tether__chaos_cmd *cmd, char *err, size_t errlen)
{
    qcmd q;
    memset(&q, 0, sizeof q);
    q.cmd = *cmd;
    if (cmd->op == TETHER__CHAOS_OP_NOP) {
        return 0;
    }
    if (cmd->op == TETHER__CHAOS_OP_RANDOM && !tether__chaos_random_valid(&cmd->random)) {
        snprintf(err, errlen, "random faults want 1 <= min_ms <= max_ms and known kinds");
        return -1;
    }
    if (cmd->op == TETHER__CHAOS_OP_UPSTREAM && cmd->port != 0 &&
        resolve(cmd->host, cmd->port, &q.addr, &q.addrlen, 0, err, errlen) != 0) {
        return -1;
    }
    pthread_mutex_lock(&c->mu);
    int full = c->qn == CMDQ;
    if (!full) {
        c->q[c->qn++] = q;
    }
    pthread_mutex_unlock(&c->mu);
    if (full) {
        snprintf(err, errlen, "too many commands waiting");
        return -1;
    }
    (void)!write(c->wake[1], "c", 1);
    return 0;
}

int tether__chaos_command(tether__chaos *c, const char *line, char *err, size_t errlen)
{
    tether__chaos_cmd cmd;
    if (tether__chaos_parse(line, &cmd, err, errlen) != 0) {
        return -1;
    }
    return tether__chaos_apply(c, &cmd, err, errlen);
}

void tether__chaos_get_stats(tether__chaos *c, tether__chaos_stats *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->shared;
    pthread_mutex_unlock(&c->mu);
}

void tether__chaos_stop(tether__chaos *c)
{
    if (!c) {
        return;
    }
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_mutex_unlock(&c->mu);
    (void)!write(c->wake[1], "s", 1);
    pthread_join(c->thread, NULL);
    close(c->lfd);
    close(c->wake[0]);
    close(c->wake[1]);
    free(c->timers);
    free(c->upstream_name);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

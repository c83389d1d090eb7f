/*
 * tether scenario: the processes of one scenario (server, client, relay), their
 * starts, kills and restarts, the relay's commands, and the waits between the
 * steps of a scenario, watching that no process ends unexpectedly.
 */
#include "scenario.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chaos/chaos.h"

void scen_say(scen *sc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void scen_say(scen *sc, const char *fmt, ...)
{
    if (!sc->R->verbose) {
        return;
    }
    va_list ap;
    fprintf(stderr, "    [%s] ", sc->def->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int scen_fail(scen *sc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int scen_fail(scen *sc, const char *fmt, ...)
{
    if (sc->error[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(sc->error, sizeof sc->error, fmt, ap);
        va_end(ap);
    }
    return -1;
}

uint64_t scen_rnd(scen *sc, uint64_t lo, uint64_t hi)
{
    return tether__rng_range(&sc->rng, lo, hi);
}

/* Closes every descriptor from 3 up, in the child before exec. */
static void close_from_3(void)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3u, ~0u, 0u) == 0) {
        return;
    }
#endif
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); fd++) {
        close((int)fd);
    }
}

int scen_spawn(scen *sc, proc *p, char *const argv[], const char *kp, int in_fd, const char *log,
               const char *err_log)
{
#ifndef TETHER_KILLPOINTS
    if (kp) {
        return scen_fail(sc,
                         "kill point %s: this tether was built without kill points "
                         "(TETHER_KILLPOINTS=OFF), which this scenario needs",
                         kp);
    }
#endif
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        return scen_fail(sc, "cannot fork: %s", strerror(errno));
    }
    if (pid == 0) {
        /* Only async-signal-safe calls from here. Its own process group, so a
         * Ctrl-C reaches only the runner, which then stops it; and it dies
         * with the runner if the runner is killed. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        int in = in_fd >= 0 ? in_fd : open("/dev/null", O_RDONLY);
        int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int err = err_log ? open(err_log, O_WRONLY | O_CREAT | O_APPEND, 0600) : out;
        if (in < 0 || out < 0 || err < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 ||
            dup2(err, 2) < 0) {
            _exit(127);
        }
        close_from_3();
        if (kp) {
            setenv("TETHER_KILLPOINT", kp, 1);
        } else {
            unsetenv("TETHER_KILLPOINT");
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    p->pid = pid;
    p->kp = kp;
    p->starts++;
    return 0;
}

/* 1 when p has exited (status in p->status, pid cleared), 0 when it runs. */
int scen_reaped(proc *p)
{
    if (p->pid <= 0) {
        return 1;
    }
    int st;
    pid_t w = waitpid(p->pid, &st, WNOHANG);
    if (w == p->pid) {
        p->status = st;
        p->pid = 0;
        return 1;
    }
    return 0;
}

void scen_kill_proc(proc *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        while (waitpid(p->pid, &p->status, 0) < 0 && errno == EINTR) {
        }
        p->pid = 0;
    }
}

/* SIGTERM, then SIGKILL after ms. Returns the wait status. */
int scen_term_proc(proc *p, uint32_t ms)
{
    if (p->pid <= 0) {
        return p->status;
    }
    kill(p->pid, SIGTERM);
    uint64_t end = cli_now_ms() + ms;
    while (!scen_reaped(p)) {
        if (cli_now_ms() >= end) {
            scen_kill_proc(p);
            break;
        }
        cli_sleep_ms(5);
    }
    return p->status;
}

static int died_of_sigkill(const proc *p)
{
    return WIFSIGNALED(p->status) && WTERMSIG(p->status) == SIGKILL;
}

const char *scen_describe(const proc *p, char *buf, size_t len)
{
    if (WIFEXITED(p->status)) {
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(p->status));
    } else if (WIFSIGNALED(p->status)) {
        snprintf(buf, len, "died of signal %d", WTERMSIG(p->status));
    } else {
        snprintf(buf, len, "ended");
    }
    return buf;
}

static int read_port(const char *path, uint16_t *port)
{
    FILE *f = fopen(path, "r");
    unsigned v = 0;
    int ok = f && fscanf(f, "%u", &v) == 1 && v > 0 && v < 65536;
    if (f) {
        fclose(f);
    }
    if (ok) {
        *port = (uint16_t)v;
    }
    return ok ? 0 : -1;
}

static int wait_port(scen *sc, proc *p, const char *path, uint16_t *port)
{
    uint64_t end = cli_now_ms() + 15000;
    while (read_port(path, port) != 0) {
        char d[64];
        if (scen_reaped(p)) {
            return scen_fail(sc, "the %s %s before it was ready (see %s)", p->name,
                             scen_describe(p, d, sizeof d),
                             p == &sc->relay    ? sc->rlog
                             : p == &sc->server ? sc->slog
                                                : sc->clog);
        }
        if (cli_now_ms() >= end) {
            return scen_fail(sc, "the %s did not write its port", p->name);
        }
        cli_sleep_ms(5);
    }
    return 0;
}

void scen_arg(scen_args *a, const char *fmt, ...)
{
    if (a->n >= 63) {
        return;
    }
    char buf[PATH_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    a->v[a->n++] = strdup(buf);
    a->v[a->n] = NULL;
}

void scen_args_free(scen_args *a)
{
    for (int i = 0; i < a->n; i++) {
        free(a->v[i]);
    }
    a->n = 0;
}

const char *scen_dur_name(tether_durability d)
{
    return d == TETHER_DURABILITY_OFF ? "off" : d == TETHER_DURABILITY_FULL ? "full" : "normal";
}

/* ---------------------------------------------------------------- the relay */

void scen_relay_cmd(scen *sc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void scen_relay_cmd(scen *sc, const char *fmt, ...)
{
    if (sc->relay_in < 0) {
        return;
    }
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof line - 1) {
        return;
    }
    scen_say(sc, "relay: %s", line);
    line[n++] = '\n';
    if (write(sc->relay_in, line, (size_t)n) != n) {
        scen_fail(sc, "cannot write to the relay: %s", strerror(errno));
    }
}

/* Starts the relay (upstream none until a server is up); extra: more flags. */
int scen_relay_start(scen *sc, const char *extra1, const char *extra2)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        return scen_fail(sc, "pipe: %s", strerror(errno));
    }
    scen_args a = {.n = 0};
    scen_arg(&a, "tether");
    scen_arg(&a, "chaos");
    scen_arg(&a, "--upstream");
    scen_arg(&a, "none");
    scen_arg(&a, "--port-file");
    scen_arg(&a, "%s", sc->rport);
    scen_arg(&a, "--seed");
    scen_arg(&a, "%llu", (unsigned long long)sc->seed);
    scen_arg(&a, "--verbose");
    if (extra1) {
        scen_arg(&a, "%s", extra1);
    }
    if (extra2) {
        scen_arg(&a, "%s", extra2);
    }
    /* the child gets the read end as stdin: dup2 clears O_CLOEXEC on fd 0 */
    int rc = scen_spawn(sc, &sc->relay, a.v, NULL, pfd[0], sc->rlog, NULL);
    scen_args_free(&a);
    close(pfd[0]);
    if (rc != 0) {
        close(pfd[1]);
        return -1;
    }
    sc->relay_in = pfd[1];
    return wait_port(sc, &sc->relay, sc->rport, &sc->relay_port);
}

/* Reads "name=value" from the relay's summary line. */
static uint64_t value_in(const char *line, const char *name)
{
    char key[64];
    snprintf(key, sizeof key, " %s=", name);
    const char *p = strstr(line, key);
    return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

void scen_relay_stop(scen *sc)
{
    if (sc->relay_in >= 0) {
        (void)!write(sc->relay_in, "quit\n", 5);
        close(sc->relay_in);
        sc->relay_in = -1;
    }
    scen_term_proc(&sc->relay, 5000);
    FILE *f = fopen(sc->rlog, "r");
    char *line = NULL;
    size_t cap = 0;
    while (f && getline(&line, &cap, f) >= 0) {
        if (strncmp(line, "summary ", 8) == 0) {
            snprintf(sc->relay_summary, sizeof sc->relay_summary, "%s", line);
            for (int k = TETHER__CHAOS_CUT; k < TETHER__CHAOS_CLEAR; k++) {
                sc->t.faults[k] = value_in(line, tether__chaos_kind_name(k));
                sc->t.nfaults += sc->t.faults[k];
            }
        }
    }
    free(line);
    if (f) {
        fclose(f);
    }
}

uint64_t scen_relay_value(const scen *sc, const char *name)
{
    return value_in(sc->relay_summary, name);
}

/* ---------------------------------------------------------------- the peers */

int scen_server_start(scen *sc, const char *kp)
{
    unlink(sc->sport);
    scen_args a = {.n = 0};
    scen_arg(&a, "tether");
    scen_arg(&a, "scenario");
    scen_arg(&a, "peer");
    scen_arg(&a, "server");
    scen_arg(&a, "--db");
    scen_arg(&a, "%s", sc->sdb);
    scen_arg(&a, "--record");
    scen_arg(&a, "%s", sc->srec);
    scen_arg(&a, "--port-file");
    scen_arg(&a, "%s", sc->sport);
    scen_arg(&a, "--send");
    scen_arg(&a, "%llu", (unsigned long long)sc->m);
    scen_arg(&a, "--pace");
    scen_arg(&a, "%llu", (unsigned long long)sc->s_pace);
    scen_arg(&a, "--limit");
    scen_arg(&a, "%llu", (unsigned long long)sc->s_limit);
    scen_arg(&a, "--size");
    scen_arg(&a, "%llu", (unsigned long long)sc->size);
    scen_arg(&a, "--ping-ms");
    scen_arg(&a, "%llu", (unsigned long long)sc->ping_ms);
    scen_arg(&a, "--pong-ms");
    scen_arg(&a, "%llu", (unsigned long long)sc->pong_ms);
    scen_arg(&a, "--durability");
    scen_arg(&a, "%s", scen_dur_name(sc->R->durability));
    int rc = scen_spawn(sc, &sc->server, a.v, kp, -1, sc->slog, NULL);
    scen_args_free(&a);
    uint16_t port;
    if (rc != 0 || wait_port(sc, &sc->server, sc->sport, &port) != 0) {
        return -1;
    }
    scen_say(sc, "server started (pid %d, port %u%s%s)", (int)sc->server.pid, (unsigned)port,
             kp ? ", kill point " : "", kp ? kp : "");
    scen_relay_cmd(sc, "upstream 127.0.0.1:%u", (unsigned)port);
    return 0;
}

int scen_client_start(scen *sc, const char *kp)
{
    scen_args a = {.n = 0};
    scen_arg(&a, "tether");
    scen_arg(&a, "scenario");
    scen_arg(&a, "peer");
    scen_arg(&a, "client");
    scen_arg(&a, "--db");
    scen_arg(&a, "%s", sc->cdb);
    scen_arg(&a, "--record");
    scen_arg(&a, "%s", sc->crec);
    if (sc->fleet) {
        /* the serving instances, tried in turn; instance 0 only sends */
        for (int i = 1; i < sc->ninst; i++) {
            scen_arg(&a, "--url");
            scen_arg(&a, "ws://127.0.0.1:%u/", (unsigned)sc->iport[i]);
        }
    } else {
        scen_arg(&a, "--url");
        scen_arg(&a, "ws://127.0.0.1:%u/", (unsigned)sc->relay_port);
    }
    scen_arg(&a, "--send");
    scen_arg(&a, "%llu", (unsigned long long)sc->c_send);
    scen_arg(&a, "--expect");
    scen_arg(&a, "%llu", (unsigned long long)sc->c_expect);
    scen_arg(&a, "--rate");
    scen_arg(&a, "%llu", (unsigned long long)sc->rate);
    scen_arg(&a, "--max-pending");
    scen_arg(&a, "%llu", (unsigned long long)sc->max_pending);
    scen_arg(&a, "--size");
    scen_arg(&a, "%llu", (unsigned long long)sc->size);
    scen_arg(&a, "--ping-ms");
    scen_arg(&a, "%llu", (unsigned long long)sc->ping_ms);
    scen_arg(&a, "--pong-ms");
    scen_arg(&a, "%llu", (unsigned long long)sc->pong_ms);
    scen_arg(&a, "--welcome-ms");
    scen_arg(&a, "%llu", (unsigned long long)sc->welcome_ms);
    scen_arg(&a, "--timeout-ms");
    scen_arg(&a, "%llu",
             (unsigned long long)(sc->deadline > cli_now_ms() ? sc->deadline - cli_now_ms() : 1));
    scen_arg(&a, "--seed");
    scen_arg(&a, "%llu", (unsigned long long)(sc->seed + 7919u * (uint64_t)sc->client.starts));
    scen_arg(&a, "--durability");
    scen_arg(&a, "%s", scen_dur_name(sc->R->durability));
    if (sc->http) {
        scen_arg(&a, "--transport");
        scen_arg(&a, "http");
    }
    int rc = scen_spawn(sc, &sc->client, a.v, kp, -1, sc->clog, NULL);
    scen_args_free(&a);
    if (rc == 0) {
        sc->client_done = 0;
        scen_say(sc, "client started (pid %d%s%s)", (int)sc->client.pid, kp ? ", kill point " : "",
                 kp ? kp : "");
    }
    return rc;
}

void scen_server_kill(scen *sc)
{
    if (sc->server.pid > 0) {
        scen_kill_proc(&sc->server);
        sc->kills++;
        scen_say(sc, "SIGKILL the server");
    }
    scen_relay_cmd(sc, "upstream none");
}

void scen_client_kill(scen *sc)
{
    if (sc->client.pid > 0) {
        scen_kill_proc(&sc->client);
        sc->kills++;
        scen_say(sc, "SIGKILL the client");
    }
}

/*
 * Checks both peers. A peer that died at its armed kill point is counted (and
 * *client_died / *server_died set); a client that exited 0 is done. Anything
 * else is a failure. Returns 0 or -1.
 */
int scen_check_peers(scen *sc, int *client_died, int *server_died)
{
    char d[64];
    if (sc->fleet && scen_fleet_check(sc) != 0) {
        return -1;
    }
    if (sc->relay.pid > 0 && scen_reaped(&sc->relay)) {
        return scen_fail(sc, "the relay %s (see %s)", scen_describe(&sc->relay, d, sizeof d),
                         sc->rlog);
    }
    proc *ps[2] = {&sc->client, &sc->server};
    int *flags[2] = {client_died, server_died};
    for (int i = 0; i < 2; i++) {
        proc *p = ps[i];
        if (p->pid <= 0 || !scen_reaped(p)) {
            continue;
        }
        if (died_of_sigkill(p) && p->kp) {
            sc->killpoints++;
            scen_say(sc, "the %s died at kill point %s", p->name, p->kp);
            if (flags[i]) {
                *flags[i] = 1;
            }
            if (p == &sc->server) {
                scen_relay_cmd(sc, "upstream none");
            }
            continue;
        }
        if (p == &sc->client && WIFEXITED(p->status) && WEXITSTATUS(p->status) == 0) {
            sc->client_done = 1;
            continue;
        }
        if (p == &sc->client && sc->expect_stop && WIFEXITED(p->status) &&
            WEXITSTATUS(p->status) == PEER_STOPPED) {
            continue;
        }
        return scen_fail(sc, "the %s %s (see %s)", p->name, scen_describe(p, d, sizeof d),
                         p == &sc->client ? sc->clog : sc->slog);
    }
    return 0;
}

/* Waits up to ms for cond (polled with the record tails), watching the peers. */
int scen_wait_for(scen *sc, uint32_t ms, int (*cond)(scen *), const char *what)
{
    uint64_t end = cli_now_ms() + ms;
    for (;;) {
        scen_tail_poll(&sc->ct);
        scen_tail_poll(&sc->st);
        if (sc->fleet) {
            scen_fleet_poll(sc);
        }
        if (cond(sc)) {
            return 0;
        }
        if (scen_check_peers(sc, NULL, NULL) != 0) {
            return -1;
        }
        if (cli_stop_requested()) {
            return scen_fail(sc, "interrupted");
        }
        uint64_t now = cli_now_ms();
        if (now >= sc->deadline) {
            return scen_fail(sc, "timeout waiting for %s", what);
        }
        if (now >= end) {
            return 1;
        }
        cli_sleep_ms(5);
    }
}

static int never(scen *sc)
{
    return 0;
}

/* Sleeps ms while watching the peers. */
int scen_pause(scen *sc, uint32_t ms)
{
    int rc = scen_wait_for(sc, ms, never, "a pause");
    return rc < 0 ? -1 : 0;
}

static uint64_t progress_target;

static int reached(scen *sc)
{
    return sc->st.delivered >= progress_target || sc->client_done;
}

int scen_wait_progress_ms(scen *sc, uint64_t at, uint32_t ms)
{
    progress_target = at;
    int rc = scen_wait_for(sc, ms, reached, "progress");
    return rc < 0 ? -1 : 0;
}

int scen_wait_progress(scen *sc, uint64_t at)
{
    return scen_wait_progress_ms(sc, at, 600000);
}

int scen_client_gone(scen *sc)
{
    return sc->client.pid <= 0;
}

static int server_acked_all(scen *sc)
{
    return sc->st.acked >= sc->m;
}

/* Runs a peer life with kill point kp until it dies there (or max_ms pass, then
 * it is killed from outside). which: 0 client, 1 server. */
int scen_life_killpoint(scen *sc, int which, const char *kp, uint32_t max_ms)
{
    proc *p = which ? &sc->server : &sc->client;
    if (p->pid > 0) {
        if (which) {
            scen_server_kill(sc);
        } else {
            scen_client_kill(sc);
        }
    }
    if ((which ? scen_server_start(sc, kp) : scen_client_start(sc, kp)) != 0) {
        return -1;
    }
    uint64_t end = cli_now_ms() + max_ms;
    for (;;) {
        int cd = 0, sd = 0;
        scen_tail_poll(&sc->ct);
        scen_tail_poll(&sc->st);
        if (scen_check_peers(sc, &cd, &sd) != 0) {
            return -1;
        }
        if ((which && sd) || (!which && cd)) {
            return 0;
        }
        if (p->pid <= 0) {
            return 0; /* the client finished before reaching it */
        }
        if (cli_now_ms() >= end || cli_now_ms() >= sc->deadline) {
            scen_say(sc, "kill point %s not reached in %u ms: killing from outside", kp, max_ms);
            if (which) {
                scen_server_kill(sc);
            } else {
                scen_client_kill(sc);
            }
            return 0;
        }
        if (cli_stop_requested()) {
            return scen_fail(sc, "interrupted");
        }
        cli_sleep_ms(2);
    }
}

/*
 * The end of every scenario: faults off, both peers up until the client has
 * everything acked and delivered, the server told of the client's last ACK,
 * then everything stopped gracefully.
 */
int scen_finish(scen *sc)
{
    scen_relay_cmd(sc, "random off");
    scen_relay_cmd(sc, "clear");
    sc->c_send = sc->n;
    sc->c_expect = sc->m;
    if (sc->server.pid <= 0 && scen_server_start(sc, NULL) != 0) {
        return -1;
    }
    if (sc->client.pid <= 0 && !sc->client_done && scen_client_start(sc, NULL) != 0) {
        return -1;
    }
    for (int syncs = 0;; syncs++) {
        while (sc->client.pid > 0) {
            int cd = 0, sd = 0;
            scen_tail_poll(&sc->ct);
            scen_tail_poll(&sc->st);
            if (scen_check_peers(sc, &cd, &sd) != 0) {
                return -1;
            }
            if (sd && scen_server_start(sc, NULL) != 0) {
                return -1;
            }
            if (cd && scen_client_start(sc, NULL) != 0) {
                return -1;
            }
            if (cli_now_ms() >= sc->deadline) {
                return scen_fail(sc,
                                 "timeout: the client did not finish (server delivered %llu of "
                                 "%llu, client %llu of %llu)",
                                 (unsigned long long)sc->st.delivered, (unsigned long long)sc->n,
                                 (unsigned long long)sc->ct.delivered, (unsigned long long)sc->m);
            }
            if (cli_stop_requested()) {
                return scen_fail(sc, "interrupted");
            }
            cli_sleep_ms(5);
        }
        if (scen_wait_for(sc, 3000, server_acked_all, "the server's last ack") < 0) {
            return -1;
        }
        if (server_acked_all(sc)) {
            break;
        }
        if (syncs == 2) {
            return scen_fail(sc, "the server never learnt that the client has all %llu messages",
                             (unsigned long long)sc->m);
        }
        scen_say(sc, "the server's last ack is missing: one more client run to sync");
        if (scen_client_start(sc, NULL) != 0) {
            return -1;
        }
    }
    int st = scen_term_proc(&sc->server, 10000);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char d[64];
        return scen_fail(sc, "the server %s at shutdown (see %s)",
                         scen_describe(&sc->server, d, sizeof d), sc->slog);
    }
    return 0;
}

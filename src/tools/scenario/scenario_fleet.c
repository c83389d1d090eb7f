/*
 * tether scenario: the fleet scenarios. Several server instances (the peer
 * server of scenario_peer.c, each a tether server on one PostgreSQL
 * database, --pg URI) and one client that knows the URLs of the serving
 * ones and tries them in turn. Instance 0 serves no connection: it streams
 * the server's messages to the session from outside, wherever the session
 * is attached (a send to any session from any instance). The faults:
 *
 *   fleet-kill        the instance serving the session is SIGKILLed mid-stream,
 *                     twice: the session must move to another at once;
 *   fleet-pg-restart  PostgreSQL itself is stopped by its PID and started again
 *                     on the same port and data directory (--pg-data) mid-stream;
 *   fleet-fence       the serving instance is frozen with SIGSTOP until its
 *                     session moved (its lease lapsed), then continued: it must
 *                     close its connection (fenced or dropped) and write nothing
 *                     for the session.
 *
 * The verdict (scenario_fleet_check.c) is the same contract as for one
 * server: every message both ways exactly once and in order, from outside.
 */
#include "scenario.h"

#include "pgserver/pgserver.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int scen_is_fleet(const char *name)
{
    return strncmp(name, "fleet-", 6) == 0;
}

void scen_fleet_paths(scen *sc)
{
    static const char *const names[SCEN_FLEET_MAX] = {"instance 0 (sender)", "instance 1",
                                                      "instance 2", "instance 3"};
    for (int i = 0; i < SCEN_FLEET_MAX; i++) {
        snprintf(sc->irec[i], sizeof sc->irec[i], "%s/inst%d.rec", sc->dir, i);
        snprintf(sc->ilog[i], sizeof sc->ilog[i], "%s/inst%d.log", sc->dir, i);
        snprintf(sc->iportf[i], sizeof sc->iportf[i], "%s/inst%d.port", sc->dir, i);
        scen_tail_init(&sc->it[i], sc->irec[i]);
        sc->inst[i].name = names[i];
    }
}

void scen_fleet_poll(scen *sc)
{
    for (int i = 0; i < sc->ninst; i++) {
        scen_tail_poll(&sc->it[i]);
        if (sc->it[i].delivered > sc->st.delivered) {
            sc->st.delivered = sc->it[i].delivered;
        }
        if (sc->it[i].acked > sc->st.acked) {
            sc->st.acked = sc->it[i].acked;
        }
    }
}

int scen_fleet_check(scen *sc)
{
    for (int i = 0; i < sc->ninst; i++) {
        proc *p = &sc->inst[i];
        if (p->pid > 0 && scen_reaped(p)) {
            char d[64];
            return scen_fail(sc, "%s %s (see %s)", p->name, scen_describe(p, d, sizeof d),
                             sc->ilog[i]);
        }
    }
    return 0;
}

void scen_fleet_stop(scen *sc)
{
    for (int i = 0; i < sc->ninst; i++) {
        if (sc->inst[i].pid > 0) {
            kill(sc->inst[i].pid, SIGCONT); /* a frozen one too */
            scen_kill_proc(&sc->inst[i]);
        }
    }
}

/* Starts instance i on the fleet's database and waits for its port. */
static int inst_start(scen *sc, int i)
{
    unlink(sc->iportf[i]);
    /* the sender keeps pace with the client's stream: m messages in the time n take */
    uint64_t srate = sc->rate && sc->n ? (sc->m * sc->rate + sc->n - 1) / sc->n : 0;
    scen_args a = {.n = 0};
    scen_arg(&a, "tether");
    scen_arg(&a, "scenario");
    scen_arg(&a, "peer");
    scen_arg(&a, "server");
    scen_arg(&a, "--db");
    scen_arg(&a, "%s", sc->R->pg_uri);
    scen_arg(&a, "--record");
    scen_arg(&a, "%s", sc->irec[i]);
    scen_arg(&a, "--port-file");
    scen_arg(&a, "%s", sc->iportf[i]);
    scen_arg(&a, "--send");
    scen_arg(&a, "%llu", (unsigned long long)(i == 0 ? sc->m : 0));
    scen_arg(&a, "--rate");
    scen_arg(&a, "%llu", (unsigned long long)(i == 0 ? srate : 0));
    scen_arg(&a, "--size");
    scen_arg(&a, "%llu", (unsigned long long)sc->size);
    scen_arg(&a, "--ping-ms");
    scen_arg(&a, "%llu", (unsigned long long)sc->ping_ms);
    scen_arg(&a, "--pong-ms");
    scen_arg(&a, "%llu", (unsigned long long)sc->pong_ms);
    scen_arg(&a, "--lease-ms");
    scen_arg(&a, "%llu", (unsigned long long)sc->lease_ms);
    scen_arg(&a, "--durability");
    scen_arg(&a, "%s", scen_dur_name(sc->R->durability));
    int rc = scen_spawn(sc, &sc->inst[i], a.v, NULL, -1, sc->ilog[i], NULL);
    scen_args_free(&a);
    if (rc != 0) {
        return -1;
    }
    uint64_t end = cli_now_ms() + 15000;
    for (;;) {
        FILE *f = fopen(sc->iportf[i], "r");
        unsigned v = 0;
        int ok = f && fscanf(f, "%u", &v) == 1 && v > 0 && v < 65536;
        if (f) {
            fclose(f);
        }
        if (ok) {
            sc->iport[i] = (uint16_t)v;
            break;
        }
        char d[64];
        if (scen_reaped(&sc->inst[i])) {
            return scen_fail(sc, "%s %s before it was ready (see %s)", sc->inst[i].name,
                             scen_describe(&sc->inst[i], d, sizeof d), sc->ilog[i]);
        }
        if (cli_now_ms() >= end) {
            return scen_fail(sc, "%s did not write its port", sc->inst[i].name);
        }
        cli_sleep_ms(5);
    }
    scen_say(sc, "%s started (pid %d, port %u)", sc->inst[i].name, (int)sc->inst[i].pid,
             (unsigned)sc->iport[i]);
    return 0;
}

/* The database must hold no session before a fleet scenario: the verdict
 * counts on the client's session being the only one. */
static int check_empty(scen *sc)
{
    const char *role = NULL;
    cli_session_info si[2];
    size_t n = 0;
    char err[512];
    int rc = cli_store_read(sc->R->pg_uri, &role, si, 2, &n, err, sizeof err);
    if (rc == TETHER_ENOTFOUND) {
        return 0; /* no tether tables yet: the first instance creates them */
    }
    if (rc != TETHER_OK) {
        return scen_fail(sc, "cannot read the --pg database: %s", err);
    }
    if (n != 0) {
        return scen_fail(sc,
                         "the --pg database already holds %zu session(s): the fleet scenarios "
                         "need a database of their own (they delete their session at the end)",
                         n);
    }
    return 0;
}

static int fleet_start(scen *sc)
{
    if (check_empty(sc) != 0) {
        return -1;
    }
    sc->fleet_owns_db = 1; /* whatever session appears now is this scenario's */
    for (int i = 0; i < sc->ninst; i++) {
        if (inst_start(sc, i) != 0) {
            return -1;
        }
    }
    return scen_client_start(sc, NULL);
}

/* The serving instance whose session is open now (its last C line after its
 * last Z line, the latest of them), or -1. */
static int owner(scen *sc)
{
    int best = -1;
    for (int i = 1; i < sc->ninst; i++) {
        const scen_tail *t = &sc->it[i];
        if (sc->inst[i].pid > 0 && t->last_open > t->last_close &&
            (best < 0 || t->last_open > sc->it[best].last_open)) {
            best = i;
        }
    }
    return best;
}

static int have_owner(scen *sc)
{
    return owner(sc) >= 0 || sc->client_done;
}

static int wait_owner(scen *sc)
{
    if (scen_wait_for(sc, 15000, have_owner, "an instance serving the session") != 0) {
        return scen_fail(sc, "no instance served the session for 15 s");
    }
    return owner(sc);
}

static uint64_t moved_since;
static int moved_from;

/* The session opened on an instance other than moved_from after moved_since. */
static int moved(scen *sc)
{
    for (int i = 1; i < sc->ninst; i++) {
        if (i != moved_from && sc->it[i].last_open > moved_since) {
            return 1;
        }
    }
    return sc->client_done;
}

static int wait_moved(scen *sc, int from, uint64_t since, uint32_t ms)
{
    moved_from = from;
    moved_since = since;
    if (scen_wait_for(sc, ms, moved, "the session to move") != 0) {
        return scen_fail(sc, "the session did not move off %s within %u ms", sc->inst[from].name,
                         ms);
    }
    return 0;
}

static int client_gone(scen *sc)
{
    return sc->client.pid <= 0;
}

static int sender_acked_all(scen *sc)
{
    return sc->st.acked >= sc->m;
}

/* The end of a fleet scenario: the client runs until it has everything
 * acked and delivered, the instances learn its last ACK, then each one
 * stops gracefully (SIGTERM) and must exit 0. */
static int fleet_finish(scen *sc)
{
    for (int syncs = 0;; syncs++) {
        if (scen_wait_for(sc, 600000, client_gone, "the client to finish") != 0) {
            return -1;
        }
        if (!sc->client_done) {
            return scen_fail(sc, "the client did not finish (see %s)", sc->clog);
        }
        if (scen_wait_for(sc, 3000, sender_acked_all, "the last ack") < 0) {
            return -1;
        }
        if (sender_acked_all(sc)) {
            break;
        }
        if (syncs == 2) {
            return scen_fail(sc, "no instance learnt that the client has all %llu messages",
                             (unsigned long long)sc->m);
        }
        scen_say(sc, "the last ack is missing: one more client run to sync");
        if (scen_client_start(sc, NULL) != 0) {
            return -1;
        }
    }
    for (int i = 0; i < sc->ninst; i++) {
        if (sc->inst[i].pid <= 0) {
            continue;
        }
        int st = scen_term_proc(&sc->inst[i], 10000);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            char d[64];
            return scen_fail(sc, "%s %s at shutdown (see %s)", sc->inst[i].name,
                             scen_describe(&sc->inst[i], d, sizeof d), sc->ilog[i]);
        }
    }
    return 0;
}

int scen_fleet_kill(scen *sc)
{
    if (fleet_start(sc) != 0) {
        return -1;
    }
    /* two of the three serving instances die in turn, each while it serves */
    for (uint64_t k = 1; k <= 2 && !sc->client_done; k++) {
        if (scen_wait_progress(sc, sc->n * k / 3) != 0) {
            return -1;
        }
        int o = wait_owner(sc);
        if (o < 0 || sc->client_done) {
            return o < 0 ? -1 : fleet_finish(sc);
        }
        if (scen_pause(sc, (uint32_t)scen_rnd(sc, 0, 200)) != 0) {
            return -1;
        }
        uint64_t t = cli_now_ms();
        scen_kill_proc(&sc->inst[o]);
        sc->kills++;
        scen_say(sc, "SIGKILL %s, which serves the session", sc->inst[o].name);
        /* its database connection is gone, so its lease is free at once */
        if (wait_moved(sc, o, t, 10000) != 0) {
            return -1;
        }
    }
    return fleet_finish(sc);
}

/* ---------------------------------------------------------------- PostgreSQL */

static int pg_stop(scen *sc)
{
    pid_t pid = 0;
    int ready = 0;
    if (sc->R->pgs) { /* --pg auto: our child, stopped and reaped by its PID */
        pid = sc->R->pgs->pid;
        tether_pgs_stop(sc->R->pgs);
        scen_say(sc, "PostgreSQL (pid %d) stopped", (int)pid);
        return 0;
    }
    if (tether_pgs_pidfile(sc->R->pg_data, &pid, &ready) != 0) {
        return scen_fail(sc, "no running PostgreSQL in --pg-data %s (no postmaster.pid)",
                         sc->R->pg_data);
    }
    if (!tether_pgs_is_postmaster(pid, sc->R->pg_data)) {
        return scen_fail(sc, "--pg-data %s: its postmaster.pid names pid %d, which is not a "
                             "postgres running on that directory (stale file?)",
                         sc->R->pg_data, (int)pid);
    }
    if (kill(pid, SIGINT) != 0) { /* fast shutdown: every session ends */
        return scen_fail(sc, "cannot stop PostgreSQL (pid %d): %s", (int)pid, strerror(errno));
    }
    scen_say(sc, "PostgreSQL (pid %d) stopped", (int)pid);
    for (int i = 0; i < 3000 && tether_pgs_alive(pid); i++) {
        if (scen_pause(sc, 10) != 0) {
            return -1;
        }
    }
    if (tether_pgs_alive(pid)) {
        return scen_fail(sc, "PostgreSQL (pid %d) did not stop within 30 s", (int)pid);
    }
    return 0;
}

/* Splits DATA/postmaster.opts (the command line of the last start, each
 * argument after the first in double quotes) into argv. */
static int read_opts(const char *data, char *buf, size_t len, char **argv, int max)
{
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/postmaster.opts", data);
    FILE *f = fopen(p, "r");
    size_t n = f ? fread(buf, 1, len - 1, f) : 0;
    if (f) {
        fclose(f);
    }
    buf[n] = '\0';
    int argc = 0;
    for (char *s = buf; *s && argc < max - 1;) {
        while (*s == ' ' || *s == '\n') {
            s++;
        }
        if (!*s) {
            break;
        }
        char end = ' ';
        if (*s == '"') {
            end = '"';
            s++;
        }
        argv[argc++] = s;
        while (*s && *s != end && !(end == ' ' && *s == '\n')) {
            s++;
        }
        if (*s) {
            *s++ = '\0';
        }
    }
    argv[argc] = NULL;
    return argc;
}

static int pg_start(scen *sc)
{
    if (sc->R->pgs) {
        /* --pg auto: our direct child again, with the parent death signal,
         * so that a killed `tether scenario` leaves no server behind */
        char err[600];
        if (tether_pgs_restart(sc->R->pgs, err, sizeof err) != 0) {
            return scen_fail(sc, "PostgreSQL did not start again: %s (see %s)", err,
                             sc->R->pgs->log);
        }
        sc->pg_restarts++;
        scen_say(sc, "PostgreSQL started again (pid %d)", (int)sc->R->pgs->pid);
        return 0;
    }
    char buf[4096], *argv[64], log[PATH_MAX + 96];
    if (read_opts(sc->R->pg_data, buf, sizeof buf, argv, 64) < 1 || argv[0][0] != '/') {
        return scen_fail(sc, "cannot read %s/postmaster.opts to start PostgreSQL again",
                         sc->R->pg_data);
    }
    struct stat sb;
    if (stat(sc->R->pg_data, &sb) != 0) {
        return scen_fail(sc, "--pg-data %s: %s", sc->R->pg_data, strerror(errno));
    }
    snprintf(log, sizeof log, "%s/pg.log", sc->dir);
    pid_t child = fork();
    if (child < 0) {
        return scen_fail(sc, "cannot fork: %s", strerror(errno));
    }
    if (child == 0) {
        /* a user's own server (--pg-data): twice, so that it is nobody's
         * child here and outlives us as the one it replaces would have; as
         * the data directory's owner */
        setsid();
        if (fork() != 0) {
            _exit(0);
        }
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int in = open("/dev/null", O_RDONLY);
        if (fd < 0 || in < 0 || dup2(in, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
            _exit(127);
        }
        for (int i = 3; i < 1024; i++) {
            close(i);
        }
        if (geteuid() == 0 && sb.st_uid != 0 &&
            (setgroups(0, NULL) != 0 || setgid(sb.st_gid) != 0 || setuid(sb.st_uid) != 0)) {
            _exit(126);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {
    }
    pid_t pid = 0;
    int ready = 0;
    for (int i = 0; i < 3000; i++) {
        if (tether_pgs_pidfile(sc->R->pg_data, &pid, &ready) == 0 && ready &&
            tether_pgs_is_postmaster(pid, sc->R->pg_data)) {
            sc->pg_restarts++;
            scen_say(sc, "PostgreSQL started again (pid %d)", (int)pid);
            return 0;
        }
        if (scen_pause(sc, 10) != 0) {
            return -1;
        }
    }
    return scen_fail(sc, "PostgreSQL did not start again within 30 s (see %s)", log);
}

int scen_fleet_pg_restart(scen *sc)
{
    if (fleet_start(sc) != 0) {
        return -1;
    }
    uint64_t restarts = sc->R->soak ? 3 : 1;
    for (uint64_t k = 1; k <= restarts && !sc->client_done; k++) {
        if (scen_wait_progress(sc, sc->n * k / (restarts + 2)) != 0 || pg_stop(sc) != 0 ||
            scen_pause(sc, (uint32_t)scen_rnd(sc, 300, 1000)) != 0 || pg_start(sc) != 0) {
            return -1;
        }
    }
    return fleet_finish(sc);
}

/* ---------------------------------------------------------------- fencing */

static uint64_t woke_at;
static int woke_inst;

static int closed_after_wake(scen *sc)
{
    return sc->it[woke_inst].last_close > woke_at;
}

int scen_fleet_fence(scen *sc)
{
    if (fleet_start(sc) != 0 || scen_wait_progress(sc, sc->n / 3) != 0) {
        return -1;
    }
    int o = wait_owner(sc);
    if (o < 0) {
        return -1;
    }
    if (sc->client_done) {
        return scen_fail(sc, "the stream ended before the freeze");
    }
    /* frozen with its connection and its lease: the client notices by ping,
     * goes to the other instance, which is refused until the lease lapses */
    uint64_t t = cli_now_ms();
    kill(sc->inst[o].pid, SIGSTOP);
    scen_say(sc, "SIGSTOP %s, which serves the session", sc->inst[o].name);
    int rc = wait_moved(sc, o, t, 20000);
    uint64_t at = sc->st.delivered;
    if (rc == 0) {
        /* the stream goes on over there for a while */
        rc = scen_wait_progress_ms(sc, at + sc->n / 10, 5000);
    }
    woke_at = cli_now_ms();
    woke_inst = o;
    if (sc->inst[o].pid > 0) {
        kill(sc->inst[o].pid, SIGCONT);
    }
    scen_say(sc, "SIGCONT %s after %llu ms", sc->inst[o].name, (unsigned long long)(woke_at - t));
    if (rc != 0) {
        return -1;
    }
    /* awake, it must let go of the session: its renewal or its first write
     * is refused (TETHER_EFENCED), or it finds the connection gone */
    if (scen_wait_for(sc, 10000, closed_after_wake, "the woken instance to close") != 0) {
        return scen_fail(sc,
                         "%s did not close its connection within 10 s of waking up (neither "
                         "fenced nor dropped; see %s)",
                         sc->inst[o].name, sc->ilog[o]);
    }
    sc->fenced += sc->it[o].fenced > 0;
    scen_say(sc, "%s closed the session after it woke (%s)", sc->inst[o].name,
             sc->it[o].fenced ? "TETHER_EFENCED" : "the connection was gone");
    return fleet_finish(sc);
}

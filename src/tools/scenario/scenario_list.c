/*
 * tether scenario: the scenarios, each a sequence of steps (faults through the
 * relay, kills and restarts of the peers, waits on the stream's progress)
 * that ends with scen_finish(), and how large each one's streams are.
 */
#include "scenario.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int start_all(scen *sc, const char *relay1, const char *relay2)
{
    if (scen_relay_start(sc, relay1, relay2) != 0 || scen_server_start(sc, NULL) != 0 ||
        scen_client_start(sc, NULL) != 0) {
        return -1;
    }
    return 0;
}

static int sc_cuts(scen *sc)
{
    /* random cuts (now, after N bytes, after N frames; RST or FIN) every 100-400 ms */
    if (start_all(sc, NULL, NULL) != 0) {
        return -1;
    }
    scen_relay_cmd(sc, "random 100:400 cut");
    if (scen_wait_progress(sc, sc->n) != 0) {
        return -1;
    }
    return scen_finish(sc);
}

static int sc_http(scen *sc)
{
    /* the HTTP carriage only (proto/HTTP.md): immediate cuts (RST or FIN)
     * while polls are held and sends are in flight, and each side SIGKILLed
     * twice at random moments and restarted on its store */
    if (start_all(sc, NULL, NULL) != 0) {
        return -1;
    }
    scen_relay_cmd(sc, "random 150:500 cut plain");
    for (int i = 0; i < 2 && !sc->client_done; i++) {
        if (scen_pause(sc, (uint32_t)scen_rnd(sc, 300, 900)) != 0) {
            return -1;
        }
        scen_client_kill(sc);
        if (scen_pause(sc, (uint32_t)scen_rnd(sc, 0, 150)) != 0 ||
            scen_client_start(sc, NULL) != 0 ||
            scen_pause(sc, (uint32_t)scen_rnd(sc, 300, 900)) != 0) {
            return -1;
        }
        scen_server_kill(sc);
        if (scen_pause(sc, (uint32_t)scen_rnd(sc, 0, 150)) != 0 ||
            scen_server_start(sc, NULL) != 0) {
            return -1;
        }
    }
    if (scen_wait_progress(sc, sc->n) != 0) {
        return -1;
    }
    return scen_finish(sc);
}

static int sc_client_kill(scen *sc)
{
    static const char *const points[] = {
        "client.after_outbox_commit", "client.ack_before_prune",    "client.ack_after_prune",
        "client.after_deliver",       "client.after_cursor_commit",
    };
    char kp[96];
    if (scen_relay_start(sc, NULL, NULL) != 0 || scen_server_start(sc, NULL) != 0) {
        return -1;
    }
    /* the first life dies at its first WELCOME, before `established` is stored */
    if (scen_life_killpoint(sc, 0, "client.before_established", 10000) != 0) {
        return -1;
    }
    for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
        snprintf(kp, sizeof kp, "%s:%llu", points[i], (unsigned long long)scen_rnd(sc, 2, 40));
        if (scen_pause(sc, (uint32_t)scen_rnd(sc, 0, 100)) != 0 ||
            scen_life_killpoint(sc, 0, kp, 15000) != 0) {
            return -1;
        }
    }
    /* and at random moments from outside */
    uint64_t kills = sc->R->soak ? 6 : 3;
    for (uint64_t i = 0; i < kills && !sc->client_done; i++) {
        if (scen_client_start(sc, NULL) != 0 ||
            scen_pause(sc, (uint32_t)scen_rnd(sc, 150, 900)) != 0) {
            return -1;
        }
        scen_client_kill(sc);
        if (scen_pause(sc, (uint32_t)scen_rnd(sc, 0, 150)) != 0) {
            return -1;
        }
    }
    return scen_finish(sc);
}

static int sc_server_kill(scen *sc)
{
    static const char *const points[] = {
        "server.after_deliver",   "server.after_cursor_commit", "server.ack_before_prune",
        "server.ack_after_prune", "server.after_outbox_commit",
    };
    char kp[96];
    /* the first life dies right after storing the new session (at the first
     * HELLO), the second before marking it established */
    if (scen_relay_start(sc, NULL, NULL) != 0 ||
        scen_server_start(sc, "server.after_session_create") != 0 ||
        scen_client_start(sc, NULL) != 0) {
        return -1;
    }
    for (int tries = 0; tries < 2000 && sc->server.pid > 0; tries++) {
        if (scen_check_peers(sc, NULL, NULL) != 0) {
            return -1;
        }
        cli_sleep_ms(5);
    }
    if (sc->server.pid > 0) {
        return scen_fail(sc, "the server did not die at server.after_session_create");
    }
    if (scen_life_killpoint(sc, 1, "server.before_established", 10000) != 0) {
        return -1;
    }
    for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
        snprintf(kp, sizeof kp, "%s:%llu", points[i], (unsigned long long)scen_rnd(sc, 2, 30));
        if (scen_pause(sc, (uint32_t)scen_rnd(sc, 0, 300)) != 0 ||
            scen_life_killpoint(sc, 1, kp, 15000) != 0) {
            return -1;
        }
    }
    uint64_t kills = sc->R->soak ? 6 : 3;
    for (uint64_t i = 0; i < kills && !sc->client_done; i++) {
        if (scen_pause(sc, (uint32_t)scen_rnd(sc, 0, 300)) != 0 ||
            scen_server_start(sc, NULL) != 0 ||
            scen_pause(sc, (uint32_t)scen_rnd(sc, 200, 1000)) != 0) {
            return -1;
        }
        scen_server_kill(sc);
    }
    return scen_finish(sc);
}

static int sc_both_kill(scen *sc)
{
    /* first both die on their own, inside the library, each at its own point */
    char kc[96], ks[96];
    snprintf(kc, sizeof kc, "client.ack_before_prune:%llu",
             (unsigned long long)scen_rnd(sc, 5, 40));
    snprintf(ks, sizeof ks, "server.after_deliver:%llu", (unsigned long long)scen_rnd(sc, 5, 40));
    if (scen_relay_start(sc, NULL, NULL) != 0 || scen_server_start(sc, ks) != 0 ||
        scen_client_start(sc, kc) != 0) {
        return -1;
    }
    /* whichever dies first comes back without a kill point, so that the other
     * one can reach its own */
    int cdied = 0, sdied = 0;
    uint64_t end = cli_now_ms() + 15000;
    while ((!cdied || !sdied) && cli_now_ms() < end && !sc->client_done) {
        int cd = 0, sd = 0;
        scen_tail_poll(&sc->ct);
        scen_tail_poll(&sc->st);
        if (scen_check_peers(sc, &cd, &sd) != 0) {
            return -1;
        }
        if (sd && !sdied && scen_server_start(sc, NULL) != 0) {
            return -1;
        }
        if (cd && !cdied && scen_client_start(sc, NULL) != 0) {
            return -1;
        }
        cdied |= cd;
        sdied |= sd;
        cli_sleep_ms(5);
    }
    /* then both killed from outside at random moments, restarted in either order */
    uint64_t rounds = sc->R->soak ? 8 : 4;
    for (uint64_t i = 0; i < rounds && !sc->client_done; i++) {
        if (scen_pause(sc, (uint32_t)scen_rnd(sc, 300, 1200)) != 0) {
            return -1;
        }
        if (scen_rnd(sc, 0, 1)) {
            scen_server_kill(sc);
            scen_client_kill(sc);
        } else {
            scen_client_kill(sc);
            scen_server_kill(sc);
        }
        int client_again_first = (int)scen_rnd(sc, 0, 1);
        uint32_t gap = (uint32_t)scen_rnd(sc, 0, 500);
        scen_say(sc, "restart %s first, %u ms apart", client_again_first ? "client" : "server",
                 gap);
        if (client_again_first) {
            if (scen_client_start(sc, NULL) != 0 || scen_pause(sc, gap) != 0 ||
                scen_server_start(sc, NULL) != 0) {
                return -1;
            }
        } else {
            if (scen_server_start(sc, NULL) != 0 || scen_pause(sc, gap) != 0 ||
                scen_client_start(sc, NULL) != 0) {
                return -1;
            }
        }
    }
    return scen_finish(sc);
}

static int sc_stall_upgrade(scen *sc)
{
    if (start_all(sc, NULL, NULL) != 0 || scen_wait_progress(sc, sc->n / 4) != 0) {
        return -1;
    }
    /* a stall mid-stream: TCP stays open, nothing moves, then it all flows */
    scen_relay_cmd(sc, "stall both for 800ms");
    if (scen_wait_progress(sc, sc->n / 2) != 0) {
        return -1;
    }
    /* a filtering proxy: upgrades succeed, frames never pass */
    scen_relay_cmd(sc, "stall-upgrade for 2600ms");
    scen_relay_cmd(sc, "cut rst");
    if (scen_pause(sc, 2700) != 0) {
        return -1;
    }
    if (sc->ct.errors[1] == 0) {
        return scen_fail(sc,
                         "the client never reported TETHER_ESTALLED during the stalled upgrades");
    }
    return scen_finish(sc);
}

static int sc_blackhole(scen *sc)
{
    if (start_all(sc, NULL, NULL) != 0 || scen_wait_progress(sc, sc->n / 3) != 0) {
        return -1;
    }
    scen_relay_cmd(sc, "blackhole for 1500ms");
    uint64_t errors = sc->ct.errors[2] + sc->ct.errors[1];
    if (scen_pause(sc, 4500) != 0) {
        return -1;
    }
    if (sc->ct.errors[2] + sc->ct.errors[1] <= errors) {
        return scen_fail(sc, "the client did not notice the blackhole (no TETHER_EPING)");
    }
    return scen_finish(sc);
}

/* SIGSTOP a peer for ms, then SIGCONT: a process frozen (a VM paused, a long
 * GC), its sockets open, its peer left to notice by itself. */
static int freeze(scen *sc, proc *p, uint32_t ms)
{
    if (p->pid <= 0) {
        return 0;
    }
    scen_say(sc, "SIGSTOP the %s for %u ms", p->name, ms);
    kill(p->pid, SIGSTOP);
    int rc = scen_pause(sc, ms);
    if (p->pid > 0) {
        kill(p->pid, SIGCONT);
    }
    return rc;
}

static int sc_freeze(scen *sc)
{
    if (start_all(sc, NULL, NULL) != 0 || scen_wait_progress(sc, sc->n / 4) != 0) {
        return -1;
    }
    uint64_t errors = sc->ct.errors[0];
    if (freeze(sc, &sc->server, (uint32_t)scen_rnd(sc, 3500, 4500)) != 0) {
        return -1;
    }
    if (sc->ct.errors[0] == errors && !sc->client_done) {
        return scen_fail(sc, "the client did not notice the frozen server");
    }
    if (scen_wait_progress(sc, sc->n / 2) != 0 ||
        freeze(sc, &sc->client, (uint32_t)scen_rnd(sc, 3500, 4500)) != 0) {
        return -1;
    }
    return scen_finish(sc);
}

static int sc_slow_link(scen *sc)
{
    if (start_all(sc, NULL, NULL) != 0) {
        return -1;
    }
    scen_relay_cmd(sc, "delay 20ms jitter 30ms");
    scen_relay_cmd(sc, "rate 256k");
    if (scen_wait_progress(sc, sc->n / 4) != 0) {
        return -1;
    }
    scen_relay_cmd(sc, "split 7 up for 1500ms");
    scen_relay_cmd(sc, "split 3 down for 1000ms");
    if (scen_wait_progress(sc, sc->n / 2) != 0) {
        return -1;
    }
    scen_relay_cmd(sc, "cut fin");
    scen_relay_cmd(sc, "rate 32k down for 1500ms");
    if (scen_wait_progress(sc, sc->n * 3 / 4) != 0) {
        return -1;
    }
    scen_relay_cmd(sc, "cut rst after 3 frames down");
    if (scen_pause(sc, 500) != 0) {
        return -1;
    }
    /* keep the slow link to the end */
    if (scen_wait_progress(sc, sc->n) != 0) {
        return -1;
    }
    return scen_finish(sc);
}

static int sc_buffered(scen *sc)
{
    if (start_all(sc, NULL, NULL) != 0) {
        return -1;
    }
    /* a reverse proxy: takes everything at once, passes it on slowly */
    scen_relay_cmd(sc, "buffer 96k up");
    scen_relay_cmd(sc, "buffer 96k down");
    uint64_t cuts = sc->R->soak ? 5 : 3;
    for (uint64_t i = 1; i <= cuts; i++) {
        if (scen_wait_progress(sc, sc->n * i / (cuts + 1)) != 0) {
            return -1;
        }
        /* whatever the proxy held is gone: only ACKs tell what arrived */
        scen_relay_cmd(sc, "cut %s", scen_rnd(sc, 0, 1) ? "rst" : "fin");
    }
    if (scen_wait_progress(sc, sc->n) != 0) {
        return -1;
    }
    return scen_finish(sc);
}

static int sc_random(scen *sc)
{
    if (start_all(sc, NULL, NULL) != 0) {
        return -1;
    }
    scen_relay_cmd(sc, "random 250:1000 all");
    uint64_t rounds = sc->R->soak ? 6 : 2;
    for (uint64_t i = 0; i < rounds && !sc->client_done; i++) {
        if (scen_pause(sc, (uint32_t)scen_rnd(sc, 500, 1500)) != 0) {
            return -1;
        }
        if (scen_rnd(sc, 0, 1)) {
            scen_client_kill(sc);
            if (scen_pause(sc, (uint32_t)scen_rnd(sc, 0, 200)) != 0 ||
                scen_client_start(sc, NULL) != 0) {
                return -1;
            }
        } else {
            scen_server_kill(sc);
            if (scen_pause(sc, (uint32_t)scen_rnd(sc, 0, 200)) != 0 ||
                scen_server_start(sc, NULL) != 0) {
                return -1;
            }
        }
    }
    /* most of the stream under faults; if they leave too little room, the rest without */
    if (scen_wait_progress_ms(sc, sc->n * 9 / 10, sc->R->soak ? 120000 : 25000) != 0) {
        return -1;
    }
    return scen_finish(sc);
}

static int sc_timeline(scen *sc)
{
    char flag[PATH_MAX + 16];
    snprintf(flag, sizeof flag, "--scenario=%s", sc->R->timeline);
    if (start_all(sc, flag, NULL) != 0 || scen_wait_progress(sc, sc->n) != 0) {
        return -1;
    }
    return scen_finish(sc);
}

static int generated(scen *sc)
{
    return sc->ct.generated >= sc->n;
}

static int server_generated(scen *sc)
{
    return sc->st.generated >= sc->m;
}

static int sc_offline_backlog(scen *sc)
{
    uint64_t n1 = sc->n / 10, m1 = sc->m / 10;
    /* a short first session */
    sc->c_send = n1;
    sc->c_expect = m1;
    sc->s_pace = n1;
    sc->s_limit = m1;
    if (start_all(sc, NULL, NULL) != 0) {
        return -1;
    }
    if (scen_wait_for(sc, 60000, scen_client_gone, "the first client run") < 0) {
        return -1;
    }
    if (!sc->client_done) {
        return scen_fail(sc, "the first client run did not finish");
    }
    /* the client is away; the server piles up its whole backlog, then dies */
    scen_term_proc(&sc->server, 5000);
    scen_relay_cmd(sc, "upstream none");
    sc->s_pace = 0;
    sc->s_limit = 0;
    if (scen_server_start(sc, NULL) != 0 ||
        scen_wait_for(sc, 60000, server_generated, "the server's backlog") < 0) {
        return -1;
    }
    scen_server_kill(sc);
    /* the server is away; the client comes back and piles up its backlog */
    sc->c_send = sc->n;
    sc->c_expect = sc->m;
    uint64_t rate = sc->rate, maxp = sc->max_pending;
    sc->rate = 0;
    sc->max_pending = 0;
    int rc = scen_client_start(sc, NULL);
    sc->rate = rate;
    sc->max_pending = maxp;
    if (rc != 0 || scen_wait_for(sc, 60000, generated, "the client's backlog") < 0) {
        return -1;
    }
    scen_say(sc, "both backlogs stored (client %llu, server %llu): offline for a while",
             (unsigned long long)(sc->n - n1), (unsigned long long)(sc->m - m1));
    if (scen_pause(sc, sc->R->soak ? 5000 : 1500) != 0) {
        return -1;
    }
    sc->s_pace = sc->n;
    sc->s_limit = 0;
    return scen_finish(sc);
}

static int client_stopped(scen *sc)
{
    return sc->client.pid <= 0 || sc->ct.errors[3] > 0;
}

static int sc_lost_store(scen *sc)
{
    sc->lost_store = 1;
    sc->expect_stop = 1;
    if (start_all(sc, NULL, NULL) != 0 || scen_wait_progress(sc, sc->n / 3) != 0) {
        return -1;
    }
    scen_server_kill(sc);
    static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        char p[PATH_MAX + 128];
        snprintf(p, sizeof p, "%s%s", sc->sdb, sfx[i]);
        unlink(p);
    }
    scen_say(sc, "the server's store is gone");
    if (scen_server_start(sc, NULL) != 0) {
        return -1;
    }
    if (scen_wait_for(sc, 15000, client_stopped, "the client to report the mismatch") < 0) {
        return -1;
    }
    /* the client must stop by itself: give it a moment, then it is a failure */
    for (int i = 0; i < 400 && sc->client.pid > 0; i++) {
        if (scen_check_peers(sc, NULL, NULL) != 0) {
            return -1;
        }
        cli_sleep_ms(5);
    }
    if (sc->client.pid > 0) {
        scen_kill_proc(&sc->client);
        return scen_fail(sc, "the client did not stop after the mismatch");
    }
    if (!WIFEXITED(sc->client.status) || WEXITSTATUS(sc->client.status) != PEER_STOPPED) {
        char d[64];
        return scen_fail(sc, "the client %s; want exit status %d (stopped on the mismatch)",
                         scen_describe(&sc->client, d, sizeof d), PEER_STOPPED);
    }
    scen_term_proc(&sc->server, 5000);
    return 0;
}

const scen_def scen_defs[] = {
    {"cuts", sc_cuts,
     "random cuts every 100-400 ms (RST or FIN; at once, after N bytes or after N frames) "
     "during the whole stream"},
    {"http", sc_http,
     "the HTTP carriage only: immediate cuts every 150-500 ms during polls and sends, and "
     "client and server each SIGKILLed twice at random moments and restarted on their stores"},
    {"client-kill", sc_client_kill,
     "client killed at kill points (before `established`, after the outbox commit, between "
     "ACK and prune, after the prune, between delivery and cursor commit, after the cursor "
     "commit) and at random moments; restarted on its store"},
    {"server-kill", sc_server_kill,
     "server killed at kill points (after creating the session, before `established`, "
     "between delivery and cursor commit, after it, between ACK and prune, after it, after "
     "an outbox commit) and at random moments; restarted on its store, new port"},
    {"both-kill", sc_both_kill,
     "both die at kill points (client between ACK and prune, server between delivery and "
     "commit), then both are killed at random moments and restarted in either order"},
    {"stall-upgrade", sc_stall_upgrade,
     "a stall of both directions mid-stream, then upgrades that pass while frames never do: "
     "the client reports TETHER_ESTALLED and resumes once the path heals"},
    {"blackhole", sc_blackhole,
     "the live connection and every new one swallowed for 1.5 s, nothing closed: only "
     "ping/pong notices (TETHER_EPING), then resume"},
    {"freeze", sc_freeze,
     "the server, then the client, frozen with SIGSTOP for 3.5-4.5 s (a paused VM): the "
     "other side notices by ping, reconnects, and the frozen one catches up on SIGCONT"},
    {"slow-link", sc_slow_link,
     "delay and jitter, 256 KiB/s, writes split into 1-7 byte pieces, a 32 KiB/s downlink, "
     "a FIN cut and a cut after 3 frames"},
    {"buffered", sc_buffered,
     "a buffering reverse proxy (takes everything at once, trickles 96 KiB/s) cut mid-stream: "
     "what it held is lost, only ACKs tell"},
    {"lost-store", sc_lost_store,
     "the server loses its store: the client must report the mismatch (lost acked count) and "
     "stop, keeping its outbox; the server must create no new session"},
    {"offline-backlog", sc_offline_backlog,
     "a long offline period: the server piles up its backlog while the client is gone, then "
     "the client its own while the server is gone; both resume"},
    {"random", sc_random,
     "random faults of every kind (blackholes and stalled upgrades too), from the seed, with "
     "kills of either side"},
    {"timeline", sc_timeline, "the relay follows the --timeline file"},
    {"fleet-kill", scen_fleet_kill,
     "with --pg: three instances on one PostgreSQL database, the client tries their URLs in "
     "turn; the instance serving the session is SIGKILLed mid-stream, twice: the session moves "
     "at once"},
    {"fleet-pg-restart", scen_fleet_pg_restart,
     "with --pg and --pg-data: PostgreSQL is stopped by its PID mid-stream and started again "
     "on the same port and data directory; sessions close, clients reconnect"},
    {"fleet-fence", scen_fleet_fence,
     "with --pg: the serving instance is frozen (SIGSTOP) until its lease lapsed and the "
     "session moved, then continued: it must close its connection and write nothing more"},
};
const size_t scen_ndefs = sizeof scen_defs / sizeof scen_defs[0];

void scen_scale(scen *sc)
{
    int soak = sc->R->soak;
    sc->size = 0; /* sizes vary with the seq: 16 B to 2 KiB, now and then above 64 KiB */
    sc->n = soak ? 6000 : 2500;
    sc->m = soak ? 3000 : 1200;
    sc->rate = soak ? 1000 : 600;
    sc->max_pending = 2000;
    sc->ping_ms = 20000;
    sc->pong_ms = 10000;
    sc->welcome_ms = 3000;
    const char *name = sc->def->name;
    if (strcmp(name, "blackhole") == 0 || strcmp(name, "random") == 0 ||
        strcmp(name, "stall-upgrade") == 0 || strcmp(name, "freeze") == 0) {
        sc->ping_ms = 1000;
        sc->pong_ms = 1000;
        sc->welcome_ms = 1000;
    }
    if (strcmp(name, "slow-link") == 0 || strcmp(name, "buffered") == 0) {
        sc->size = 200;
        sc->n = soak ? 3000 : 1500;
        sc->m = soak ? 1500 : 800;
        sc->rate = 400;
    }
    if (strcmp(name, "http") == 0) {
        sc->http = 1;
        sc->n = soak ? 4000 : 1500;
        sc->m = soak ? 2000 : 700;
    }
    if (strcmp(name, "offline-backlog") == 0) {
        sc->n = soak ? 20000 : 5000;
        sc->m = soak ? 10000 : 3000;
    }
    if (scen_is_fleet(name)) {
        /* instance 0 sends, the others serve (three for the kills, two otherwise) */
        sc->fleet = 1;
        sc->ninst = strcmp(name, "fleet-kill") == 0 ? 4 : 3;
        sc->n = soak ? 4000 : 1200;
        sc->m = soak ? 2000 : 600;
        sc->rate = 400;
        sc->lease_ms = 1500;
        if (strcmp(name, "fleet-fence") == 0) {
            sc->ping_ms = 1000; /* the client notices the frozen instance by ping */
            sc->pong_ms = 1000;
            sc->welcome_ms = 1000;
        }
    }
    sc->c_send = sc->n;
    sc->c_expect = sc->m;
    sc->s_pace = sc->n;
    sc->s_limit = 0;
}

/*
 * The background WebSocket probe (client_probe.c) against a real server on
 * loopback: a client that fell back to the HTTP carriage probes WebSocket on
 * a second connection while HTTP carries on; failed probes change nothing
 * (and back off), and once WebSocket passes the session moves to it after
 * the probe's WELCOME, with messages in flight both ways: every message
 * exactly once, in order, in both directions; and the same through the
 * chaos relay (`tether chaos`'s engine, in process) stalling every frame
 * after the 101: ESTALLED, HTTP delivers, probes stall too, and once the
 * stall is lifted the client returns to WebSocket. Ports from the OS, memory
 * stores, bounded waits; a few seconds.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "chaos/chaos.h"
#include "harness.h"
#include "itest.h"

#define WAIT_MS 20000
#define MEMORY_MS 150u /* fallback_memory_ms: probes at 300, 600, 1200 ms ... */

static atomic_int g_refuse;   /* 1: upgrades are refused with 426 */
static atomic_int g_upgrades; /* upgrade requests seen */

typedef struct plog {
    pthread_mutex_t mu;
    int connected_http, connected_ws; /* CONNECTED reports per carriage */
    int back_to_ws;                   /* RECONNECTING "back to WebSocket", transport WEBSOCKET */
    int disconnected;                 /* DISCONNECTED reports */
    int stopped;                      /* STOPPED reports */
    void (*next)(tether_client *, const tether_state_info *, void *); /* the recorder's */
} plog;

static plog PL = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, 0, NULL};

static void pl_state(tether_client *c, const tether_state_info *in, void *user)
{
    pthread_mutex_lock(&PL.mu);
    if (in->state == TETHER_STATE_CONNECTED) {
        PL.connected_http += in->transport == TETHER_TRANSPORT_HTTP;
        PL.connected_ws += in->transport == TETHER_TRANSPORT_WEBSOCKET;
    } else if (in->state == TETHER_STATE_RECONNECTING && strstr(in->detail, "back to WebSocket")) {
        PL.back_to_ws += in->transport == TETHER_TRANSPORT_WEBSOCKET;
    } else if (in->state == TETHER_STATE_DISCONNECTED) {
        PL.disconnected++;
    } else if (in->state == TETHER_STATE_STOPPED) {
        PL.stopped++;
    }
    pthread_mutex_unlock(&PL.mu);
    if (PL.next) {
        PL.next(c, in, user);
    }
}

static int pl_get(int *field)
{
    pthread_mutex_lock(&PL.mu);
    int v = *field;
    pthread_mutex_unlock(&PL.mu);
    return v;
}

static int hook(tether_server *s, tether_handshake *hs, void *user)
{
    (void)s;
    (void)user;
    if (!tether_handshake_header(hs, "Upgrade")) {
        return 0;
    }
    atomic_fetch_add(&g_upgrades, 1);
    return atomic_load(&g_refuse) ? 426 : 0;
}

static int connected_http(void *arg)
{
    (void)arg;
    return pl_get(&PL.connected_http) > 0;
}

static int upgrades_at_least(void *arg)
{
    return atomic_load(&g_upgrades) >= *(int *)arg;
}

static int switched(void *arg)
{
    (void)arg;
    return pl_get(&PL.connected_ws) > 0 && pl_get(&PL.back_to_ws) > 0;
}

/* The first 300 server messages are out; both sides send 25 at a time while a
 * probe may win (at most rounds times), then 200 more over WebSocket: every
 * message exactly once in order on both sides, what naming the check. */
static void switch_back_with_traffic(srv *v, cli *k, int rounds, const char *what)
{
    char sw[96], cw[96];
    uint64_t down = 300; /* server messages sent so far */
    for (int round = 0; round < rounds && !switched(NULL); round++) {
        CHECK_OK(send_tagged(k->c, 25, 64));
        CHECK_OK(srv_send_tagged(v->s, k->c, down + 1, 25));
        down += 25;
        sleep_ms(50);
    }
    CHECK(wait_until(switched, NULL, WAIT_MS));
    CHECK_EQ_INT(tether_client_transport(k->c), TETHER_TRANSPORT_WEBSOCKET);
    uint64_t last = 0;
    CHECK_OK(tether_client_last_seq(k->c, &last));
    CHECK_OK(send_tagged(k->c, 200, 64));
    CHECK_OK(srv_send_tagged(v->s, k->c, down + 1, 200));
    CHECK_OK(tether_client_wait_acked(k->c, WAIT_MS));
    CHECK(rec_wait_count(&k->rec, down + 200, WAIT_MS));
    snprintf(sw, sizeof sw, "server %s", what);
    snprintf(cw, sizeof cw, "client %s", what);
    rec_check_exact(&v->rec, last + 200, sw);
    rec_check_exact(&k->rec, down + 200, cw);
}

TEST(probe_fails_while_blocked_then_switches_back_exactly_once)
{
    srv v;
    cli k;
    srv_init(&v);
    v.cfg.cb.on_handshake = hook;
    atomic_store(&g_refuse, 1);
    atomic_store(&g_upgrades, 0);
    CHECK_OK(srv_start(&v));
    cli_init(&k, "ws", "127.0.0.1", v.port);
    k.cfg.transport = TETHER_TRANSPORT_AUTO;
    k.cfg.fallback_memory_ms = MEMORY_MS;
    k.cfg.backoff_base_ms = 20;
    k.cfg.backoff_cap_ms = 200;
    PL.next = k.cfg.cb.on_state;
    k.cfg.cb.on_state = pl_state;
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(connected_http, NULL, WAIT_MS));

    /* on HTTP: traffic both ways while probes are refused */
    CHECK_OK(send_tagged(k.c, 300, 64));
    CHECK_OK(srv_send_tagged(v.s, k.c, 1, 300));
    int three = 3; /* the first upgrade, then two probes */
    CHECK(wait_until(upgrades_at_least, &three, WAIT_MS));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK(rec_wait_count(&k.rec, 300, WAIT_MS));
    CHECK_EQ_INT(pl_get(&PL.connected_ws), 0);
    CHECK_EQ_INT(pl_get(&PL.disconnected), 1); /* the first 426 only: probes do not disturb */
    CHECK_EQ_INT(tether_client_transport(k.c), TETHER_TRANSPORT_HTTP);

    /* WebSocket passes again: the next probe wins, with messages in flight */
    atomic_store(&g_refuse, 0);
    switch_back_with_traffic(&v, &k, 40, "across the switch back");
    CHECK_EQ_INT(pl_get(&PL.stopped), 0);
    CHECK_EQ_INT(pl_get(&PL.connected_http), 1);
    CHECK_EQ_INT(v.rec.opens >= 1, 1);
    cli_free(&k);
    srv_free(&v);
}

static int estalled_seen;

static void stall_state(tether_client *c, const tether_state_info *in, void *user)
{
    if (in->state == TETHER_STATE_DISCONNECTED && in->error == TETHER_ESTALLED) {
        pthread_mutex_lock(&PL.mu);
        estalled_seen++;
        pthread_mutex_unlock(&PL.mu);
    }
    pl_state(c, in, user);
}

TEST(stalled_after_101_falls_back_then_returns_when_the_stall_lifts)
{
    srv v;
    cli k;
    char err[200] = "", url[128];
    srv_init(&v);
    v.cfg.cb.on_handshake = hook;
    atomic_store(&g_refuse, 0);
    atomic_store(&g_upgrades, 0);
    CHECK_OK(srv_start(&v));
    tether__chaos_cfg rc;
    memset(&rc, 0, sizeof rc);
    rc.upstream_host = "127.0.0.1";
    rc.upstream_port = v.port;
    rc.seed = 11;
    tether__chaos *relay = NULL;
    CHECK_EQ_INT(tether__chaos_start(&rc, &relay, err, sizeof err), 0);
    if (!relay) {
        srv_free(&v);
        return;
    }
    /* every upgrade passes, then no frame in either direction; plain HTTP passes */
    CHECK_EQ_INT(tether__chaos_command(relay, "stall-upgrade", err, sizeof err), 0);
    cli_init(&k, "ws", "127.0.0.1", v.port);
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", (unsigned)tether__chaos_port(relay));
    k.cfg.url = url;
    k.cfg.transport = TETHER_TRANSPORT_AUTO;
    k.cfg.fallback_memory_ms = MEMORY_MS;
    k.cfg.welcome_timeout_ms = 300;
    k.cfg.backoff_base_ms = 20;
    k.cfg.backoff_cap_ms = 200;
    pthread_mutex_lock(&PL.mu);
    PL.connected_http = PL.connected_ws = PL.back_to_ws = PL.disconnected = PL.stopped = 0;
    estalled_seen = 0;
    pthread_mutex_unlock(&PL.mu);
    PL.next = k.cfg.cb.on_state;
    k.cfg.cb.on_state = stall_state;
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(connected_http, NULL, WAIT_MS));
    CHECK_EQ_INT(pl_get(&estalled_seen), 1);

    CHECK_OK(send_tagged(k.c, 300, 64));
    CHECK_OK(srv_send_tagged(v.s, k.c, 1, 300));
    int three = 3; /* the first upgrade and two stalled probes */
    CHECK(wait_until(upgrades_at_least, &three, WAIT_MS));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK(rec_wait_count(&k.rec, 300, WAIT_MS));
    CHECK_EQ_INT(pl_get(&PL.connected_ws), 0);
    CHECK_EQ_INT(tether_client_transport(k.c), TETHER_TRANSPORT_HTTP);

    /* the stall is lifted: the next probe passes and the session returns */
    CHECK_EQ_INT(tether__chaos_command(relay, "stall-upgrade off", err, sizeof err), 0);
    switch_back_with_traffic(&v, &k, 60, "through the relay");
    CHECK_EQ_INT(pl_get(&PL.stopped), 0);
    cli_free(&k);
    tether__chaos_stop(relay);
    srv_free(&v);
}

static int displaced_seen;

static void down_state(tether_client *c, const tether_state_info *in, void *user)
{
    if (in->state == TETHER_STATE_DISCONNECTED && in->error == TETHER_EDISPLACED &&
        strstr(in->detail, "probe's answer is awaited")) {
        pthread_mutex_lock(&PL.mu);
        displaced_seen++;
        pthread_mutex_unlock(&PL.mu);
    }
    pl_state(c, in, user);
}

static int displaced(void *arg)
{
    return pl_get(&displaced_seen) >= *(int *)arg;
}

/* The probe's HELLO reaches the server, its WELCOME never comes back: the
 * server displaced the HTTP connection; the client waits for the probe,
 * then opens HTTP again, and nothing is lost or doubled. */
TEST(a_probe_whose_welcome_is_lost_leaves_http_displaced_and_the_client_carries_on)
{
    srv v;
    cli k;
    char err[200] = "", url[128];
    srv_init(&v);
    v.cfg.cb.on_handshake = hook;
    atomic_store(&g_refuse, 1); /* the first upgrade is refused: HTTP from then on */
    atomic_store(&g_upgrades, 0);
    CHECK_OK(srv_start(&v));
    tether__chaos_cfg rc;
    memset(&rc, 0, sizeof rc);
    rc.upstream_host = "127.0.0.1";
    rc.upstream_port = v.port;
    rc.seed = 12;
    tether__chaos *relay = NULL;
    CHECK_EQ_INT(tether__chaos_start(&rc, &relay, err, sizeof err), 0);
    if (!relay) {
        srv_free(&v);
        return;
    }
    cli_init(&k, "ws", "127.0.0.1", v.port);
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", (unsigned)tether__chaos_port(relay));
    k.cfg.url = url;
    k.cfg.transport = TETHER_TRANSPORT_AUTO;
    k.cfg.fallback_memory_ms = MEMORY_MS;
    k.cfg.welcome_timeout_ms = 300;
    k.cfg.backoff_base_ms = 20;
    k.cfg.backoff_cap_ms = 200;
    pthread_mutex_lock(&PL.mu);
    PL.connected_http = PL.connected_ws = PL.back_to_ws = PL.disconnected = PL.stopped = 0;
    displaced_seen = 0;
    pthread_mutex_unlock(&PL.mu);
    PL.next = k.cfg.cb.on_state;
    k.cfg.cb.on_state = down_state;
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(connected_http, NULL, WAIT_MS));
    /* probes now pass the upgrade and their HELLO, but nothing comes back */
    CHECK_EQ_INT(tether__chaos_command(relay, "stall-upgrade down", err, sizeof err), 0);
    atomic_store(&g_refuse, 0);
    uint64_t down = 0, up = 0;
    int two = 2;
    for (int round = 0; round < 80 && !displaced(&two); round++) {
        CHECK_OK(send_tagged(k.c, 20, 64));
        up += 20;
        CHECK_OK(srv_send_tagged(v.s, k.c, down + 1, 20));
        down += 20;
        sleep_ms(50);
    }
    CHECK(wait_until(displaced, &two, WAIT_MS));
    CHECK_EQ_INT(pl_get(&PL.stopped), 0);
    CHECK_EQ_INT(pl_get(&PL.connected_ws), 0);
    CHECK(pl_get(&PL.connected_http) >= 2); /* HTTP again after each lost probe */
    CHECK_OK(send_tagged(k.c, 100, 64));
    up += 100;
    CHECK_OK(srv_send_tagged(v.s, k.c, down + 1, 100));
    down += 100;
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK(rec_wait_count(&k.rec, down, WAIT_MS));
    rec_check_exact(&v.rec, up, "server across lost probes");
    rec_check_exact(&k.rec, down, "client across lost probes");
    CHECK_EQ_INT(tether_client_transport(k.c), TETHER_TRANSPORT_HTTP);
    cli_free(&k);
    tether__chaos_stop(relay);
    srv_free(&v);
}

int main(void)
{
    RUN(probe_fails_while_blocked_then_switches_back_exactly_once);
    RUN(stalled_after_101_falls_back_then_returns_when_the_stall_lifts);
    RUN(a_probe_whose_welcome_is_lost_leaves_http_displaced_and_the_client_carries_on);
    return tt_finish();
}

/*
 * Two of issue 10's faults end to end, through the chaos relay (in process)
 * between a real client and a real server on loopback:
 *
 * - security software lets each WebSocket open and its WELCOME through, then
 *   stalls it (`stall-upgrade after N bytes`): an AUTO client with 1 s pings
 *   sees two WebSocket connections go silent before any ACK (TETHER_EPING,
 *   2 s each), falls back to the HTTP carriage, and every message is
 *   delivered exactly once, in order, both ways;
 * - a dead NAT entry while the HTTP carriage polls (`blackhole`): the client's
 *   polls ask for a hold of ping_interval (1 s) and the connection counts as
 *   dead after hold + pong_timeout (2 s) without an answer, so it notices
 *   within that bound, reconnects at once on a fresh TCP connection (curl's
 *   pooled ones died with the path), and delivers exactly once.
 *
 * Ports from the OS, memory stores, bounded waits; about 10 s in all.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chaos/chaos.h"
#include "harness.h"
#include "itest.h"
#include "engine/frame.h"

#define WAIT_MS 20000
#define MAX_MESSAGE (1u << 20) /* the server's, so its WELCOME's size is known */
#define WINDOW 1024u

/* The bytes of the server's WELCOME on the wire (a 2-byte WebSocket header and
 * its body) while no DATA has passed: exactly what the relay lets down after
 * the 101. One byte more would let a pong or an ACK's first byte through. */
static size_t welcome_wire_bytes(void)
{
    tether__welcome w;
    tether__buf b;
    memset(&w, 0, sizeof w);
    w.max_message = MAX_MESSAGE;
    w.window = WINDOW;
    tether__buf_init(&b, 0);
    CHECK_OK(tether__encode_welcome(&b, &w));
    size_t n = b.len;
    tether__buf_free(&b);
    CHECK(n < 126); /* a 2-byte header */
    return 2 + n;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

typedef struct llog {
    pthread_mutex_t mu;
    int connected_ws, connected_http; /* CONNECTED reports per carriage */
    int eping;                        /* DISCONNECTED with TETHER_EPING */
    int other_errors;                 /* DISCONNECTED with anything else */
    int switched_http;                /* a state report whose transport is HTTP after WS */
    int stopped;                      /* STOPPED reports */
    uint64_t eping_at;                /* when the last TETHER_EPING came, ms */
    char detail[256];                 /* its detail */
    void (*next)(tether_client *, const tether_state_info *, void *); /* the recorder's */
} llog;

static llog LL = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, 0, 0, 0, "", NULL};

static void ll_reset(void)
{
    pthread_mutex_lock(&LL.mu);
    LL.connected_ws = LL.connected_http = LL.eping = LL.other_errors = 0;
    LL.switched_http = LL.stopped = 0;
    LL.eping_at = 0;
    LL.detail[0] = '\0';
    pthread_mutex_unlock(&LL.mu);
}

static void ll_state(tether_client *c, const tether_state_info *in, void *user)
{
    pthread_mutex_lock(&LL.mu);
    if (in->state == TETHER_STATE_CONNECTED) {
        LL.connected_ws += in->transport == TETHER_TRANSPORT_WEBSOCKET;
        LL.connected_http += in->transport == TETHER_TRANSPORT_HTTP;
    } else if (in->state == TETHER_STATE_DISCONNECTED) {
        if (in->error == TETHER_EPING) {
            LL.eping++;
            LL.eping_at = mono_ms();
            snprintf(LL.detail, sizeof LL.detail, "%s", in->detail ? in->detail : "");
        } else {
            LL.other_errors++;
        }
    } else if (in->state == TETHER_STATE_STOPPED) {
        LL.stopped++;
    }
    pthread_mutex_unlock(&LL.mu);
    if (LL.next) {
        LL.next(c, in, user);
    }
}

static int ll_get(const int *field)
{
    pthread_mutex_lock(&LL.mu);
    int v = *field;
    pthread_mutex_unlock(&LL.mu);
    return v;
}

static int at_least(void *arg)
{
    const int *const *w = arg; /* {field, wanted} */
    return ll_get(w[0]) >= *w[1];
}

static tether__chaos *relay_for(uint16_t port, uint64_t seed)
{
    char err[200] = "";
    tether__chaos_cfg rc;
    memset(&rc, 0, sizeof rc);
    rc.upstream_host = "127.0.0.1";
    rc.upstream_port = port;
    rc.seed = seed;
    tether__chaos *relay = NULL;
    if (tether__chaos_start(&rc, &relay, err, sizeof err) != 0) {
        tt_fail(__FILE__, __LINE__, "the relay did not start: %s", err);
        return NULL;
    }
    return relay;
}

static void relay_cmd(tether__chaos *relay, const char *line)
{
    char err[200] = "";
    if (tether__chaos_command(relay, line, err, sizeof err) != 0) {
        tt_fail(__FILE__, __LINE__, "relay command '%s': %s", line, err);
    }
}

/* A client with 1 s pings through the relay. */
static void client_via(cli *k, srv *v, tether__chaos *relay, int transport)
{
    cli_init(k, "ws", "127.0.0.1", v->port);
    snprintf(k->url, sizeof k->url, "ws://127.0.0.1:%u/", (unsigned)tether__chaos_port(relay));
    k->cfg.url = k->url;
    k->cfg.transport = transport;
    k->cfg.ping_interval_ms = 1000;
    k->cfg.pong_timeout_ms = 1000;
    k->cfg.fallback_memory_ms = 600000; /* no WebSocket probe during the test */
    k->cfg.backoff_base_ms = 20;
    k->cfg.backoff_cap_ms = 200;
    ll_reset();
    LL.next = k->cfg.cb.on_state;
    k->cfg.cb.on_state = ll_state;
}

TEST(stalled_after_welcome_twice_falls_back_to_http_and_delivers_exactly_once)
{
    srv v;
    cli k;
    srv_init(&v);
    v.cfg.max_message_bytes = MAX_MESSAGE;
    v.cfg.window_messages = WINDOW;
    CHECK_OK(srv_start(&v));
    tether__chaos *relay = relay_for(v.port, 21);
    if (!relay) {
        srv_free(&v);
        return;
    }
    char line[64];
    snprintf(line, sizeof line, "stall-upgrade after %zu bytes", welcome_wire_bytes());
    relay_cmd(relay, line);
    client_via(&k, &v, relay, TETHER_TRANSPORT_AUTO);
    CHECK_OK(cli_start(&k));
    /* queued before the first WELCOME: stalled on WebSocket, carried by HTTP */
    CHECK_OK(send_tagged(k.c, 100, 64));
    int one = 1, two = 2;
    const int *w_http[2] = {&LL.connected_http, &one};
    CHECK(wait_until(at_least, w_http, WAIT_MS));
    /* two WebSocket connections were welcomed, then went silent (EPING), before HTTP */
    CHECK_EQ_INT(ll_get(&LL.connected_ws), 2);
    CHECK_EQ_INT(ll_get(&LL.eping), 2);
    CHECK_EQ_INT(tether_client_transport(k.c), TETHER_TRANSPORT_HTTP);
    const int *w_ping[2] = {&LL.eping, &two};
    CHECK(at_least(w_ping));

    CHECK_OK(srv_send_tagged(v.s, k.c, 1, 200));
    CHECK_OK(send_tagged(k.c, 150, 64));
    CHECK_OK(srv_send_tagged(v.s, k.c, 201, 100));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK(rec_wait_count(&k.rec, 300, WAIT_MS));
    rec_check_exact(&v.rec, 250, "server after the fallback");
    rec_check_exact(&k.rec, 300, "client after the fallback");
    CHECK_EQ_INT(ll_get(&LL.connected_ws), 2);
    CHECK_EQ_INT(ll_get(&LL.connected_http), 1);
    CHECK_EQ_INT(ll_get(&LL.stopped), 0);
    tether__chaos_stats st;
    tether__chaos_get_stats(relay, &st);
    CHECK_EQ_U64(st.faults[TETHER__CHAOS_STALL_UPGRADE], 1);
    cli_free(&k);
    tether__chaos_stop(relay);
    srv_free(&v);
}

TEST(blackholed_during_polls_is_noticed_within_the_bound_and_delivers_exactly_once)
{
    srv v;
    cli k;
    srv_init(&v);
    CHECK_OK(srv_start(&v));
    tether__chaos *relay = relay_for(v.port, 22);
    if (!relay) {
        srv_free(&v);
        return;
    }
    client_via(&k, &v, relay, TETHER_TRANSPORT_HTTP);
    CHECK_OK(cli_start(&k));
    int one = 1, two = 2;
    const int *w_http[2] = {&LL.connected_http, &one};
    CHECK(wait_until(at_least, w_http, WAIT_MS));
    CHECK_OK(send_tagged(k.c, 100, 64));
    CHECK_OK(srv_send_tagged(v.s, k.c, 1, 100));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK(rec_wait_count(&k.rec, 100, WAIT_MS));

    /* idle for longer than the bound: the polls are held 1 s (Tether-Hold), not
     * the server's 25 s, so answers keep the connection alive */
    sleep_ms(3000);
    CHECK_EQ_INT(ll_get(&LL.eping), 0);
    CHECK_EQ_INT(ll_get(&LL.other_errors), 0);
    CHECK_EQ_INT(ll_get(&LL.connected_http), 1);

    /* the NAT entry dies while a poll is held: nothing answers, nothing closes */
    uint64_t t0 = mono_ms();
    /* live connections stay swallowed for good; new ones pass again after 800 ms,
     * before the client can have noticed (at least 1 s after the last answer) */
    relay_cmd(relay, "blackhole for 800ms");
    sleep_ms(100);
    /* the server's messages wait; the client sends nothing, so the TCP connection
     * its last send used stays idle in curl's pool, swallowed too */
    CHECK_OK(srv_send_tagged(v.s, k.c, 101, 50));
    /* still blackholed, and before the client can have given up (at least 1 s
     * after t0, the last answer being at most a 1 s hold before it) */
    sleep_ms(400);
    CHECK(rec_count(&k.rec) == 100);
    CHECK_EQ_INT(ll_get(&LL.eping), 0);
    const int *w_ping[2] = {&LL.eping, &one};
    CHECK(wait_until(at_least, w_ping, WAIT_MS));
    pthread_mutex_lock(&LL.mu);
    uint64_t took = LL.eping_at - t0;
    int names_bound = strstr(LL.detail, "no downstream answer for 2000 ms") != NULL;
    pthread_mutex_unlock(&LL.mu);
    /* the bound is 1 s hold + 1 s pong_timeout from the last answer, before t0 */
    CHECK(took <= 3000);
    CHECK(names_bound);
    fprintf(stderr, "blackhole noticed after %llu ms\n", (unsigned long long)took);

    /* the path is back: a new connection resumes both streams at once (its open
     * must not reuse the dead pooled connection and wait welcome_timeout_ms) */
    const int *w_again[2] = {&LL.connected_http, &two};
    CHECK(wait_until(at_least, w_again, WAIT_MS));
    uint64_t back = mono_ms() - t0 - took;
    CHECK(back <= 1500);
    fprintf(stderr, "connected again %llu ms after the EPING\n", (unsigned long long)back);
    CHECK_OK(send_tagged(k.c, 50, 64));
    CHECK_OK(srv_send_tagged(v.s, k.c, 151, 50));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK(rec_wait_count(&k.rec, 200, WAIT_MS));
    rec_check_exact(&v.rec, 150, "server across the blackhole");
    rec_check_exact(&k.rec, 200, "client across the blackhole");
    CHECK_EQ_INT(ll_get(&LL.connected_ws), 0);
    CHECK_EQ_INT(ll_get(&LL.stopped), 0);
    tether__chaos_stats st;
    tether__chaos_get_stats(relay, &st);
    CHECK(st.swallowed > 0);
    cli_free(&k);
    tether__chaos_stop(relay);
    srv_free(&v);
}

int main(void)
{
    RUN(stalled_after_welcome_twice_falls_back_to_http_and_delivers_exactly_once);
    RUN(blackholed_during_polls_is_noticed_within_the_bound_and_delivers_exactly_once);
    return tt_finish();
}

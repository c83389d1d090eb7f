/*
 * Refused handshakes reach the server application (on_refused,
 * src/server/server_refusal.c): an upgrade refused with an HTTP status, a
 * first message that is garbage, a session over max_sessions; and the rate
 * limit that keeps a flood of them from swamping the application.
 */
#include <pthread.h>
#include <unistd.h>

#include <tether/tether.h>

#include "harness.h"
#include "itest.h"
#include "rawws.h"
#include "server/server_int.h"

/* What on_refused saw. */
typedef struct seen {
    pthread_mutex_t mu;
    int n;                   /* reports */
    uint64_t suppressed;     /* sum of their suppressed counts */
    tether_refusal_info last; /* the last one (peer and reason copied below) */
    char peer[64];           /* its peer */
    char reason[256];        /* its reason */
} seen;

static void on_refused(tether_server *s, const tether_refusal_info *info, void *user)
{
    (void)s;
    seen *w = user;
    pthread_mutex_lock(&w->mu);
    w->n++;
    w->suppressed += info->suppressed;
    w->last = *info;
    snprintf(w->peer, sizeof w->peer, "%s", info->peer ? info->peer : "(null)");
    snprintf(w->reason, sizeof w->reason, "%s", info->reason ? info->reason : "(null)");
    pthread_mutex_unlock(&w->mu);
}

static int seen_n(seen *w)
{
    pthread_mutex_lock(&w->mu);
    int n = w->n;
    pthread_mutex_unlock(&w->mu);
    return n;
}

/* Waits (bounded, 5 s) until at least n reports came. */
static int wait_seen(seen *w, int n)
{
    for (int i = 0; i < 500 && seen_n(w) < n; i++) {
        usleep(10000);
    }
    return seen_n(w) >= n;
}

static tether_server *start(seen *w, tether_server_config *cfg)
{
    pthread_mutex_init(&w->mu, NULL);
    cfg->listen_host = "127.0.0.1";
    cfg->cb.on_refused = on_refused;
    cfg->user = w;
    tether_server *s = NULL;
    CHECK_OK(server_create_start(cfg, &s));
    return s;
}

TEST(an_upgrade_refused_with_a_status_is_reported)
{
    seen w;
    memset(&w, 0, sizeof w);
    tether_server_config cfg;
    tether_server_config_init(&cfg);
    static const char *const origins[] = {"https://app.example", NULL};
    cfg.allowed_origins = origins;
    tether_server *s = start(&w, &cfg);
    if (!s) {
        return;
    }
    char req[512], resp[2048];
    snprintf(req, sizeof req,
             "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
             "Sec-WebSocket-Protocol: tether.v1\r\nOrigin: https://evil.example\r\n\r\n");
    CHECK_EQ_INT(rawws_http(tether_server_port(s), req, resp, sizeof resp, 5000), 403);
    CHECK(wait_seen(&w, 1));
    pthread_mutex_lock(&w.mu);
    CHECK_EQ_INT(w.last.error, TETHER_EHTTP);
    CHECK_EQ_INT(w.last.http_status, 403);
    CHECK_EQ_INT((int)w.last.reject_code, 0);
    CHECK(strcmp(w.peer, "127.0.0.1") == 0);
    CHECK(strstr(w.reason, "allowed_origins") != NULL);
    CHECK_EQ_U64(w.last.suppressed, 0);
    pthread_mutex_unlock(&w.mu);
    tether_server_destroy(s);
    pthread_mutex_destroy(&w.mu);
}

TEST(garbage_instead_of_hello_is_reported)
{
    seen w;
    memset(&w, 0, sizeof w);
    tether_server_config cfg;
    tether_server_config_init(&cfg);
    tether_server *s = start(&w, &cfg);
    if (!s) {
        return;
    }
    rawws_conn c;
    CHECK_EQ_INT(rawws_open(&c, tether_server_port(s)), 0);
    static const uint8_t junk[] = {0xc1, 0xc1, 0xc1};
    CHECK_EQ_INT(rawws_send(&c, RAWWS_BINARY, junk, sizeof junk), 0);
    CHECK(wait_seen(&w, 1));
    rawws_wait_eof(&c, 5000);
    rawws_conn_close(&c);
    pthread_mutex_lock(&w.mu);
    CHECK(w.last.error < 0 && w.last.error != TETHER_EHTTP);
    CHECK_EQ_INT((int)w.last.reject_code, TETHER_REJECT_PROTOCOL);
    CHECK_EQ_INT(w.last.http_status, 0);
    CHECK(strcmp(w.peer, "127.0.0.1") == 0);
    CHECK(w.reason[0] != '\0');
    pthread_mutex_unlock(&w.mu);
    tether_server_statistics st;
    CHECK_OK(tether_server_stats(s, &st));
    CHECK(st.handshakes_refused >= 1);
    tether_server_destroy(s);
    pthread_mutex_destroy(&w.mu);
}

TEST(a_session_over_max_sessions_is_reported)
{
    seen w;
    memset(&w, 0, sizeof w);
    tether_server_config cfg;
    tether_server_config_init(&cfg);
    cfg.max_sessions = 1;
    tether_server *s = start(&w, &cfg);
    if (!s) {
        return;
    }
    cli a, b;
    cli_init(&a, "ws", "127.0.0.1", tether_server_port(s));
    cli_init(&b, "ws", "127.0.0.1", tether_server_port(s));
    CHECK_OK(cli_start(&a));
    for (int i = 0; i < 500 && !rec_saw_state(&a.rec, TETHER_STATE_CONNECTED, NULL, NULL, NULL);
         i++) {
        usleep(10000);
    }
    CHECK_OK(cli_start(&b));
    CHECK(wait_seen(&w, 1));
    pthread_mutex_lock(&w.mu);
    CHECK_EQ_INT(w.last.error, TETHER_ELIMIT);
    CHECK_EQ_INT((int)w.last.reject_code, TETHER_REJECT_LIMIT);
    CHECK(strcmp(w.peer, "127.0.0.1") == 0);
    pthread_mutex_unlock(&w.mu);
    cli_free(&b);
    cli_free(&a);
    tether_server_destroy(s);
    pthread_mutex_destroy(&w.mu);
}

/* A flood: TETHER_REFUSAL_REPORTS_PER_MINUTE reports per 60 s window, the
 * rest counted and handed over with the first report of a later window.
 * Driven with a fake clock, from this thread: the server has no peer. */
TEST(a_flood_of_refusals_is_rate_limited)
{
    seen w;
    memset(&w, 0, sizeof w);
    tether_server_config cfg;
    tether_server_config_init(&cfg);
    tether_server *s = start(&w, &cfg);
    if (!s) {
        return;
    }
    uint64_t t = 5000;
    for (int i = 0; i < 250; i++) {
        tether__srv_refused(s, t + (uint64_t)i * 100, "192.0.2.7", TETHER_EHTTP, 401, 0, "x");
    }
    /* 250 refusals within 25 s: the first 10 reported */
    CHECK_EQ_INT(seen_n(&w), TETHER_REFUSAL_REPORTS_PER_MINUTE);
    CHECK_EQ_U64(w.suppressed, 0);
    /* the next window: one report carrying the 240 left out */
    tether__srv_refused(s, t + 60000, "192.0.2.8", TETHER_ETOKEN, 0, TETHER_REJECT_TOKEN, "y");
    CHECK_EQ_INT(seen_n(&w), TETHER_REFUSAL_REPORTS_PER_MINUTE + 1);
    CHECK_EQ_U64(w.last.suppressed, 240);
    CHECK(strcmp(w.peer, "192.0.2.8") == 0);
    tether__srv_refused(s, t + 60001, "192.0.2.9", TETHER_ETOKEN, 0, TETHER_REJECT_TOKEN, "z");
    CHECK_EQ_U64(w.last.suppressed, 0);
    /* a clock that went back starts a window too, never a stuck one */
    for (int i = 0; i < 20; i++) {
        tether__srv_refused(s, t + 60002, "192.0.2.9", TETHER_ETOKEN, 0, 0, "z");
    }
    CHECK_EQ_INT(seen_n(&w), 2 * TETHER_REFUSAL_REPORTS_PER_MINUTE);
    tether__srv_refused(s, 1000, "192.0.2.10", TETHER_ETOKEN, 0, 0, "z");
    CHECK_EQ_INT(seen_n(&w), 2 * TETHER_REFUSAL_REPORTS_PER_MINUTE + 1);
    CHECK_EQ_U64(w.last.suppressed, 12);
    tether_server_destroy(s);
    pthread_mutex_destroy(&w.mu);
}

int main(void)
{
    RUN(an_upgrade_refused_with_a_status_is_reported);
    RUN(garbage_instead_of_hello_is_reported);
    RUN(a_session_over_max_sessions_is_reported);
    RUN(a_flood_of_refusals_is_rate_limited);
    return tt_finish();
}

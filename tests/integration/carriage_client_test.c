/*
 * The client's HTTP carriage against a real server on loopback
 * (proto/HTTP.md; transport_curl.c): exactly once in order both ways over
 * HTTP, a client restart on the same store, AUTO falling back when the
 * upgrade is refused with 426, the 401/403 rule, and the transport reported
 * in the state callback. Ports from the OS, temporary stores, bounded waits.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "chaos/chaos.h"
#include "harness.h"
#include "itest.h"
#include "store/store.h"

#define WAIT_MS 30000
#define N_EACH 2000

/* What the state callback said about transports (any thread). */
typedef struct tlog {
    pthread_mutex_t mu;
    int connected_http;      /* CONNECTED reports with transport HTTP */
    int connected_ws;        /* ... with transport WEBSOCKET */
    int fell_back;           /* RECONNECTING reports whose detail says "falling back" */
    int fell_back_transport; /* the transport of the last such report */
    int fell_back_error;     /* ... and its error */
    int disc_ws_426;         /* DISCONNECTED reports of a 426 with transport WEBSOCKET */
    int stopped;             /* STOPPED reports */
    int http_attempts;       /* CONNECTING reports with transport HTTP */
    void (*next)(tether_client *, const tether_state_info *, void *); /* the recorder's */
} tlog;

static tlog TL = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, 0, 0, 0, 0, NULL};

static void tl_state(tether_client *c, const tether_state_info *in, void *user)
{
    pthread_mutex_lock(&TL.mu);
    if (in->state == TETHER_STATE_CONNECTED) {
        TL.connected_http += in->transport == TETHER_TRANSPORT_HTTP;
        TL.connected_ws += in->transport == TETHER_TRANSPORT_WEBSOCKET;
    } else if (in->state == TETHER_STATE_RECONNECTING && strstr(in->detail, "falling back")) {
        TL.fell_back++;
        TL.fell_back_transport = in->transport;
        TL.fell_back_error = in->error;
    } else if (in->state == TETHER_STATE_DISCONNECTED && in->http_status == 426) {
        TL.disc_ws_426 += in->transport == TETHER_TRANSPORT_WEBSOCKET;
    } else if (in->state == TETHER_STATE_STOPPED) {
        TL.stopped++;
    } else if (in->state == TETHER_STATE_CONNECTING && in->transport == TETHER_TRANSPORT_HTTP) {
        TL.http_attempts++;
    }
    pthread_mutex_unlock(&TL.mu);
    if (TL.next) {
        TL.next(c, in, user);
    }
}

static void tl_reset(void)
{
    pthread_mutex_lock(&TL.mu);
    TL.connected_http = TL.connected_ws = TL.fell_back = TL.fell_back_transport = 0;
    TL.fell_back_error = TL.disc_ws_426 = 0;
    TL.stopped = TL.http_attempts = 0;
    pthread_mutex_unlock(&TL.mu);
}

static int tl_get(int *field)
{
    pthread_mutex_lock(&TL.mu);
    int v = *field;
    pthread_mutex_unlock(&TL.mu);
    return v;
}

static int connected_http(void *arg)
{
    (void)arg;
    return tl_get(&TL.connected_http) > 0;
}

static int stopped(void *arg)
{
    (void)arg;
    return tl_get(&TL.stopped) > 0;
}

/* Admission hooks: refuse WebSocket upgrades (a request with Upgrade) with
 * the status in user, or every request including the carriage's open. */
static int refuse_upgrades(tether_server *s, tether_handshake *hs, void *user)
{
    (void)s;
    (void)user;
    return tether_handshake_header(hs, "Upgrade") ? 426 : 0;
}

static int refuse_upgrades_401(tether_server *s, tether_handshake *hs, void *user)
{
    (void)s;
    (void)user;
    return tether_handshake_header(hs, "Upgrade") ? 401 : 0;
}

static int refuse_all_403(tether_server *s, tether_handshake *hs, void *user)
{
    (void)s;
    (void)hs;
    (void)user;
    return 403;
}

static void client_setup(cli *k, srv *v, int transport, const char *db)
{
    cli_init(k, "ws", "127.0.0.1", v->port);
    k->cfg.transport = transport;
    k->cfg.db_path = db;
    k->cfg.backoff_base_ms = 20;
    k->cfg.backoff_cap_ms = 200;
    TL.next = k->cfg.cb.on_state;
    k->cfg.cb.on_state = tl_state;
    tl_reset();
}

TEST(http_both_directions_exactly_once_in_order)
{
    srv v;
    cli k;
    srv_init(&v);
    CHECK_OK(srv_start(&v));
    client_setup(&k, &v, TETHER_TRANSPORT_HTTP, NULL);
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(connected_http, NULL, WAIT_MS));
    CHECK_EQ_INT(tether_client_transport(k.c), TETHER_TRANSPORT_HTTP);
    CHECK_OK(send_tagged(k.c, N_EACH, 64));
    CHECK_OK(srv_send_tagged(v.s, k.c, 1, N_EACH));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK(rec_wait_count(&v.rec, N_EACH, WAIT_MS));
    CHECK(rec_wait_count(&k.rec, N_EACH, WAIT_MS));
    rec_check_exact(&v.rec, N_EACH, "server over HTTP");
    rec_check_exact(&k.rec, N_EACH, "client over HTTP");
    CHECK_EQ_INT(tl_get(&TL.connected_ws), 0);
    tether_state_info in;
    CHECK_OK(tether_client_last_state(k.c, &in, NULL, 0));
    CHECK_EQ_INT(in.transport, TETHER_TRANSPORT_HTTP);
    cli_free(&k);
    srv_free(&v);
}

TEST(http_large_messages)
{
    srv v;
    cli k;
    srv_init(&v);
    CHECK_OK(srv_start(&v));
    client_setup(&k, &v, TETHER_TRANSPORT_HTTP, NULL);
    CHECK_OK(cli_start(&k));
    /* two messages exceed the 64 KiB batch: one frame per send body */
    CHECK_OK(send_tagged(k.c, 20, 60000));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    rec_check_exact(&v.rec, 20, "server, large over HTTP");
    cli_free(&k);
    srv_free(&v);
}

TEST(http_client_restart_resends_the_backlog_once)
{
    char db[512];
    srv v;
    cli k;
    srv_init(&v);
    CHECK_OK(srv_start(&v));
    client_setup(&k, &v, TETHER_TRANSPORT_HTTP, tt_path(db, sizeof db, "restart-c.db"));
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, N_EACH, 64));
    CHECK(rec_wait_count(&v.rec, 200, WAIT_MS));
    /* the client stops mid-stream; a new one on the same store carries on */
    tether_client_destroy(k.c);
    k.c = NULL;
    tl_reset();
    CHECK_OK(client_create_start(&k.cfg, &k.c));
    CHECK(wait_until(connected_http, NULL, WAIT_MS));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK(rec_wait_count(&v.rec, N_EACH, WAIT_MS));
    rec_check_exact(&v.rec, N_EACH, "server across a client restart over HTTP");
    CHECK_EQ_INT(v.rec.last_open_resumed, 1);
    cli_free(&k);
    srv_free(&v);
}

TEST(auto_falls_back_to_http_on_426)
{
    srv v;
    cli k;
    srv_init(&v);
    v.cfg.cb.on_handshake = refuse_upgrades;
    CHECK_OK(srv_start(&v));
    client_setup(&k, &v, TETHER_TRANSPORT_AUTO, NULL);
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(connected_http, NULL, WAIT_MS));
    CHECK_EQ_INT(tl_get(&TL.fell_back), 1);
    CHECK_EQ_INT(tl_get(&TL.fell_back_transport), TETHER_TRANSPORT_HTTP);
    CHECK_EQ_INT(tether_client_transport(k.c), TETHER_TRANSPORT_HTTP);
    CHECK_EQ_INT(tl_get(&TL.disc_ws_426), 1); /* the failure, on the carriage that failed */
    CHECK_OK(send_tagged(k.c, 300, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    rec_check_exact(&v.rec, 300, "server after the fallback");
    cli_free(&k);
    srv_free(&v);
}

static int fell_back(void *arg)
{
    (void)arg;
    return tl_get(&TL.fell_back) > 0;
}

TEST(auto_falls_back_when_the_upgrade_stalls)
{
    /* a relay lets the 101 through, then forwards nothing: ESTALLED, then HTTP */
    srv v;
    cli k;
    char err[200] = "", url[128];
    srv_init(&v);
    CHECK_OK(srv_start(&v));
    tether__chaos_cfg rc;
    memset(&rc, 0, sizeof rc);
    rc.upstream_host = "127.0.0.1";
    rc.upstream_port = v.port;
    rc.seed = 5;
    tether__chaos *relay = NULL;
    CHECK_EQ_INT(tether__chaos_start(&rc, &relay, err, sizeof err), 0);
    if (!relay) {
        srv_free(&v);
        return;
    }
    CHECK_EQ_INT(tether__chaos_command(relay, "stall-upgrade", err, sizeof err), 0);
    client_setup(&k, &v, TETHER_TRANSPORT_AUTO, NULL);
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", (unsigned)tether__chaos_port(relay));
    k.cfg.url = url;
    k.cfg.welcome_timeout_ms = 1000;
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(fell_back, NULL, WAIT_MS));
    CHECK_EQ_STR(tether_err_name(tl_get(&TL.fell_back_error)), "TETHER_ESTALLED");
    CHECK_EQ_INT(tl_get(&TL.fell_back_transport), TETHER_TRANSPORT_HTTP);
    /* new connections pass from now on (the relay's stall was a byte-level one
     * that would hold HTTP bodies too): the carriage connects */
    CHECK_EQ_INT(tether__chaos_command(relay, "stall-upgrade off", err, sizeof err), 0);
    CHECK(wait_until(connected_http, NULL, WAIT_MS));
    CHECK_EQ_INT(tl_get(&TL.connected_ws), 0);
    CHECK_OK(send_tagged(k.c, 500, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    rec_check_exact(&v.rec, 500, "server after a stalled upgrade");
    cli_free(&k);
    tether__chaos_stop(relay);
    srv_free(&v);
}

TEST(websocket_mode_never_falls_back)
{
    srv v;
    cli k;
    srv_init(&v);
    v.cfg.cb.on_handshake = refuse_upgrades;
    CHECK_OK(srv_start(&v));
    client_setup(&k, &v, TETHER_TRANSPORT_WEBSOCKET, NULL);
    k.cfg.backoff_max_attempts = 2;
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(stopped, NULL, WAIT_MS)); /* EGIVEUP after the retries */
    CHECK_EQ_INT(tl_get(&TL.fell_back), 0);
    CHECK_EQ_INT(tl_get(&TL.http_attempts), 0);
    CHECK_EQ_INT(tether_client_transport(k.c), TETHER_TRANSPORT_WEBSOCKET);
    cli_free(&k);
    srv_free(&v);
}

TEST(auto_tries_http_once_after_401_and_stays_when_it_passes)
{
    srv v;
    cli k;
    srv_init(&v);
    v.cfg.cb.on_handshake = refuse_upgrades_401;
    CHECK_OK(srv_start(&v));
    client_setup(&k, &v, TETHER_TRANSPORT_AUTO, NULL);
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(connected_http, NULL, WAIT_MS));
    CHECK_EQ_INT(tl_get(&TL.stopped), 0);
    cli_free(&k);
    srv_free(&v);
}

TEST(auto_403_on_both_carriages_is_permanent)
{
    srv v;
    cli k;
    int err = 0, http = 0;
    srv_init(&v);
    v.cfg.cb.on_handshake = refuse_all_403;
    CHECK_OK(srv_start(&v));
    client_setup(&k, &v, TETHER_TRANSPORT_AUTO, NULL);
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(stopped, NULL, WAIT_MS));
    CHECK_EQ_INT(tl_get(&TL.http_attempts), 1); /* the one HTTP try */
    CHECK(rec_saw_state(&k.rec, TETHER_STATE_STOPPED, &err, &http, NULL) == 1);
    CHECK_EQ_STR(tether_err_name(err), "TETHER_EHTTP");
    CHECK_EQ_INT(http, 403);
    cli_free(&k);
    srv_free(&v);
}

TEST(transport_out_of_range_is_ECONFIG)
{
    tether_client_config cfg;
    tether_client *c = NULL;
    tether_client_config_init(&cfg);
    cfg.url = "ws://127.0.0.1:1/";
    cfg.transport = (tether_transport_mode)3;
    CHECK_EQ_STR(tether_err_name(tether_client_create(&cfg, &c)), "TETHER_ECONFIG");
    CHECK(strstr(tether_errmsg(), "transport 3") != NULL);
    cfg.transport = (tether_transport_mode)-1;
    CHECK_EQ_STR(tether_err_name(tether_client_create(&cfg, &c)), "TETHER_ECONFIG");
    CHECK(c == NULL);
    CHECK_EQ_INT(tether_client_transport(NULL), TETHER_EINVAL);
    cfg.transport = TETHER_TRANSPORT_HTTP;
    CHECK_OK(tether_client_create(&cfg, &c));
    CHECK_EQ_INT(tether_client_transport(c), TETHER_TRANSPORT_HTTP);
    tether_client_destroy(c);
}

TEST(http_open_refused_connection_is_reported)
{
    /* nothing listens on the port: the HTTP carriage reports ECONNREFUSED */
    srv v;
    cli k;
    int err = 0;
    srv_init(&v);
    CHECK_OK(srv_start(&v));
    uint16_t port = v.port;
    srv_free(&v);
    v.port = port;
    client_setup(&k, &v, TETHER_TRANSPORT_HTTP, NULL);
    k.cfg.backoff_max_attempts = 1;
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(stopped, NULL, WAIT_MS));
    CHECK(rec_saw_state(&k.rec, TETHER_STATE_DISCONNECTED, &err, NULL, NULL) >= 1);
    CHECK_EQ_STR(tether_err_name(err), "TETHER_ECONNREFUSED");
    cli_free(&k);
}

/* The verdict is remembered in the store per url and proxy: a restarted
 * client starts on HTTP at once (no WebSocket failure first); an expired
 * verdict starts on WebSocket again, and WebSocket passing forgets it. */
static atomic_int g_refuse_ws; /* refuse_upgrades_if: 1 refuses upgrades with 426 */

static int refuse_upgrades_if(tether_server *s, tether_handshake *hs, void *user)
{
    (void)s;
    (void)user;
    return atomic_load(&g_refuse_ws) && tether_handshake_header(hs, "Upgrade") ? 426 : 0;
}

static int connected_any(void *arg)
{
    (void)arg;
    return tl_get(&TL.connected_http) + tl_get(&TL.connected_ws) > 0;
}

/* The verdict kept in the client store at db for url: 1 with *v filled, 0 when none. */
static int stored_verdict(const char *db, const char *url, tether__verdict *v)
{
    char key[600], err[200];
    tether__store *st = NULL;
    CHECK_OK(tether__store_sqlite_open_readonly(db, &st, err, sizeof err));
    if (!st) {
        return -1;
    }
    snprintf(key, sizeof key, "%s|proxy=", url);
    int rc = st->ops->verdict_get(st, key, v);
    st->ops->close(st);
    return rc == TETHER_OK;
}

TEST(auto_remembers_the_verdict_across_a_restart)
{
    srv v;
    cli k;
    char db[512];
    tether__verdict vd;
    tt_path(db, sizeof db, "verdict-client.db");
    srv_init(&v);
    v.cfg.cb.on_handshake = refuse_upgrades_if;
    atomic_store(&g_refuse_ws, 1);
    CHECK_OK(srv_start(&v));
    client_setup(&k, &v, TETHER_TRANSPORT_AUTO, db);
    k.cfg.fallback_memory_ms = 600000;
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(connected_http, NULL, WAIT_MS));
    CHECK_EQ_INT(tl_get(&TL.fell_back), 1);
    CHECK_OK(send_tagged(k.c, 100, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    char url[128];
    snprintf(url, sizeof url, "%s", k.cfg.url);
    cli_free(&k);
    CHECK_EQ_INT(stored_verdict(db, url, &vd), 1);
    CHECK_EQ_U64(vd.probes_failed, 0);

    /* restarted: HTTP from the first attempt, no WebSocket failure */
    client_setup(&k, &v, TETHER_TRANSPORT_AUTO, db);
    k.cfg.fallback_memory_ms = 600000;
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(connected_http, NULL, WAIT_MS));
    CHECK_EQ_INT(tl_get(&TL.fell_back), 0);
    CHECK_EQ_INT(tl_get(&TL.disc_ws_426), 0);
    CHECK_OK(send_tagged(k.c, 100, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    rec_check_exact(&v.rec, 200, "server across a restart on the remembered verdict");
    cli_free(&k);

    /* WebSocket only: the verdict is not used (nor touched) */
    client_setup(&k, &v, TETHER_TRANSPORT_WEBSOCKET, db);
    k.cfg.backoff_max_attempts = 1;
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(stopped, NULL, WAIT_MS));
    CHECK_EQ_INT(tl_get(&TL.http_attempts), 0);
    cli_free(&k);
    CHECK_EQ_INT(stored_verdict(db, url, &vd), 1);

    /* an expired verdict: WebSocket first, and it passes: the verdict is forgotten */
    {
        char key[600], err[200];
        tether__store *st = NULL;
        CHECK_OK(tether__store_sqlite_open(db, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL, &st,
                                           err, sizeof err));
        snprintf(key, sizeof key, "%s|proxy=", url);
        tether__verdict old = {1000, 4};
        CHECK_OK(st->ops->verdict_put(st, key, &old));
        st->ops->close(st);
    }
    atomic_store(&g_refuse_ws, 0);
    client_setup(&k, &v, TETHER_TRANSPORT_AUTO, db);
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(connected_any, NULL, WAIT_MS));
    CHECK_EQ_INT(tl_get(&TL.connected_ws), 1);
    CHECK_EQ_INT(tl_get(&TL.http_attempts), 0);
    cli_free(&k);
    CHECK_EQ_INT(stored_verdict(db, url, &vd), 0);
    srv_free(&v);
}

int main(void)
{
    RUN(transport_out_of_range_is_ECONFIG);
    RUN(http_both_directions_exactly_once_in_order);
    RUN(http_large_messages);
    RUN(http_client_restart_resends_the_backlog_once);
    RUN(auto_falls_back_to_http_on_426);
    RUN(auto_falls_back_when_the_upgrade_stalls);
    RUN(websocket_mode_never_falls_back);
    RUN(auto_tries_http_once_after_401_and_stays_when_it_passes);
    RUN(auto_403_on_both_carriages_is_permanent);
    RUN(http_open_refused_connection_is_reported);
    RUN(auto_remembers_the_verdict_across_a_restart);
    return tt_finish();
}

/*
 * A client with several server urls (tether_client_config.urls): the first
 * url refused and the next one works, messages delivered exactly once; all
 * dead, the backoff applies between attempts (its documented sequence, from
 * the same seed) while the urls are tried in turn; a server that dies
 * mid-stream, and the client moves on to the next url, where a server on the
 * same store resumes the session. Configuration errors of the list. Loopback,
 * ports from the OS, temporary stores, bounded waits; about two seconds.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/backoff.h"
#include "harness.h"
#include "itest.h"

#define WAIT_MS 20000

/* A loopback port nothing listens on (bound, then closed). */
static unsigned dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ_INT(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    CHECK_EQ_INT(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* What the state callback saw (any thread). */
typedef struct ulog {
    pthread_mutex_t mu;
    char connecting[32][96]; /* the detail (url) of each CONNECTING, in order */
    int nconn;               /* CONNECTING reports */
    uint32_t retry[32];      /* retry_in_ms of each RECONNECTING */
    int nretry;              /* RECONNECTING reports */
    int stopped_err;         /* error of the STOPPED report, 0 before one */
    int connected;           /* CONNECTED reports */
    void (*next)(tether_client *, const tether_state_info *, void *);
} ulog;

static ulog UL;

static void ul_state(tether_client *c, const tether_state_info *in, void *user)
{
    pthread_mutex_lock(&UL.mu);
    if (in->state == TETHER_STATE_CONNECTING && UL.nconn < 32) {
        snprintf(UL.connecting[UL.nconn++], sizeof UL.connecting[0], "%s", in->detail);
    } else if (in->state == TETHER_STATE_RECONNECTING && UL.nretry < 32) {
        UL.retry[UL.nretry++] = in->retry_in_ms;
    } else if (in->state == TETHER_STATE_STOPPED) {
        UL.stopped_err = in->error ? in->error : 1;
    } else if (in->state == TETHER_STATE_CONNECTED) {
        UL.connected++;
    }
    pthread_mutex_unlock(&UL.mu);
    if (UL.next) {
        UL.next(c, in, user);
    }
}

static void ul_attach(cli *k)
{
    pthread_mutex_destroy(&UL.mu);
    memset(&UL, 0, sizeof UL);
    pthread_mutex_init(&UL.mu, NULL);
    UL.next = k->cfg.cb.on_state;
    k->cfg.cb.on_state = ul_state;
}

static int ul_stopped(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&UL.mu);
    int v = UL.stopped_err;
    pthread_mutex_unlock(&UL.mu);
    return v != 0;
}

static int ul_connected(void *arg)
{
    int want = *(int *)arg;
    pthread_mutex_lock(&UL.mu);
    int v = UL.connected;
    pthread_mutex_unlock(&UL.mu);
    return v >= want;
}

TEST(first_url_refused_the_next_delivers_exactly_once)
{
    srv v;
    cli k;
    char dead[64], live[64];
    srv_init(&v);
    CHECK_OK(srv_start(&v));
    cli_init(&k, "ws", "127.0.0.1", v.port);
    snprintf(dead, sizeof dead, "ws://127.0.0.1:%u/", dead_port());
    snprintf(live, sizeof live, "ws://127.0.0.1:%u/", (unsigned)v.port);
    const char *urls[] = {dead, live, NULL};
    k.cfg.url = NULL;
    k.cfg.urls = urls;
    k.cfg.backoff_base_ms = 20;
    k.cfg.backoff_cap_ms = 100;
    ul_attach(&k);
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, 500, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    rec_check_exact(&v.rec, 500, "server behind the second url");
    pthread_mutex_lock(&UL.mu);
    CHECK(UL.nconn >= 2);
    CHECK(strstr(UL.connecting[0], dead) != NULL);
    CHECK(strstr(UL.connecting[1], live) != NULL);
    pthread_mutex_unlock(&UL.mu);
    int err = 0;
    CHECK(rec_saw_state(&k.rec, TETHER_STATE_DISCONNECTED, &err, NULL, NULL) >= 1);
    CHECK_EQ_STR(tether_err_name(err), "TETHER_ECONNREFUSED");
    cli_free(&k);
    srv_free(&v);
}

TEST(all_dead_the_backoff_applies_while_the_urls_take_turns)
{
    cli k;
    char a[64], b[64];
    snprintf(a, sizeof a, "ws://127.0.0.1:%u/", dead_port());
    snprintf(b, sizeof b, "ws://127.0.0.1:%u/a", dead_port());
    const char *urls[] = {a, b, NULL};
    cli_init(&k, "ws", "127.0.0.1", 1);
    k.cfg.url = NULL;
    k.cfg.urls = urls;
    k.cfg.backoff_base_ms = 40;
    k.cfg.backoff_cap_ms = 160;
    k.cfg.backoff_max_attempts = 5;
    k.cfg.random_seed = 77;
    ul_attach(&k);
    CHECK_OK(cli_start(&k));
    CHECK(wait_until(ul_stopped, NULL, WAIT_MS));
    CHECK_EQ_STR(tether_err_name(UL.stopped_err), "TETHER_EGIVEUP");
    /* the delays are the backoff's own sequence for that seed */
    tether__backoff bo;
    tether__backoff_init(&bo, 40, 160, 5, 77);
    pthread_mutex_lock(&UL.mu);
    CHECK_EQ_INT(UL.nretry, 5); /* max_attempts delays, then EGIVEUP */
    for (int i = 0; i < UL.nretry; i++) {
        uint32_t d = 0;
        CHECK_OK(tether__backoff_next(&bo, &d));
        CHECK_EQ_U64(UL.retry[i], d);
    }
    /* six attempts, alternating a, b, a, b, a, b */
    CHECK_EQ_INT(UL.nconn, 6);
    for (int i = 0; i < UL.nconn; i++) {
        const char *want = i % 2 ? b : a;
        CHECK(strncmp(UL.connecting[i], want, strlen(want)) == 0 &&
              (UL.connecting[i][strlen(want)] == '\0'));
    }
    pthread_mutex_unlock(&UL.mu);
    cli_free(&k);
}

TEST(a_server_dying_mid_stream_moves_the_client_to_the_next_url)
{
    srv v1, v2;
    cli k;
    char db[512], u1[64], u2[64];
    tt_path(db, sizeof db, "urls-server.db");
    srv_init(&v1);
    v1.cfg.db_path = db;
    CHECK_OK(srv_start(&v1));
    unsigned p2 = dead_port();
    snprintf(u1, sizeof u1, "ws://127.0.0.1:%u/", (unsigned)v1.port);
    snprintf(u2, sizeof u2, "ws://127.0.0.1:%u/", p2);
    const char *urls[] = {u1, u2, NULL};
    cli_init(&k, "ws", "127.0.0.1", v1.port);
    k.cfg.url = NULL;
    k.cfg.urls = urls;
    k.cfg.backoff_base_ms = 20;
    k.cfg.backoff_cap_ms = 100;
    ul_attach(&k);
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, 200, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    rec_check_exact(&v1.rec, 200, "the first server");
    srv_free(&v1); /* dies; another instance on the same store takes the second url */
    srv_init(&v2);
    v2.cfg.db_path = db;
    v2.port = (uint16_t)p2;
    CHECK_OK(srv_start(&v2));
    int two = 2;
    CHECK(wait_until(ul_connected, &two, WAIT_MS));
    CHECK_OK(send_tagged(k.c, 200, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    pthread_mutex_lock(&v2.rec.mu);
    CHECK_EQ_U64(v2.rec.n, 200);
    for (uint64_t i = 0; i < v2.rec.n; i++) {
        if (v2.rec.seqs[i] != 201 + i || v2.rec.tags[i] != 201 + i) {
            CHECK_EQ_U64(v2.rec.seqs[i], 201 + i);
            break;
        }
    }
    pthread_mutex_unlock(&v2.rec.mu);
    CHECK_EQ_INT(v2.rec.last_open_resumed, 1);
    CHECK_EQ_INT(UL.stopped_err, 0);
    cli_free(&k);
    srv_free(&v2);
}

TEST(url_list_errors_are_ECONFIG)
{
    tether_client_config cfg;
    tether_client *c = NULL;
    const char *empty[] = {NULL};
    const char *bad[] = {"ws://127.0.0.1:1/", "http://x/", NULL};
    const char *many[18];
    for (int i = 0; i < 17; i++) {
        many[i] = "ws://127.0.0.1:1/";
    }
    many[17] = NULL;
    const char *one[] = {"ws://127.0.0.1:1/", NULL};
    tether_client_config_init(&cfg);
    cfg.urls = empty;
    CHECK_ERR(tether_client_create(&cfg, &c), TETHER_ECONFIG);
    CHECK(strstr(tether_errmsg(), "empty") != NULL);
    cfg.urls = bad;
    CHECK_ERR(tether_client_create(&cfg, &c), TETHER_ECONFIG);
    cfg.urls = many;
    CHECK_ERR(tether_client_create(&cfg, &c), TETHER_ECONFIG);
    CHECK(strstr(tether_errmsg(), "16") != NULL);
    cfg.urls = one;
    cfg.url = "ws://127.0.0.1:1/";
    CHECK_ERR(tether_client_create(&cfg, &c), TETHER_ECONFIG);
    CHECK(strstr(tether_errmsg(), "not both") != NULL);
    cfg.url = NULL;
    CHECK_OK(tether_client_create(&cfg, &c));
    tether_client_destroy(c);
}

int main(void)
{
    pthread_mutex_init(&UL.mu, NULL);
    RUN(url_list_errors_are_ECONFIG);
    RUN(first_url_refused_the_next_delivers_exactly_once);
    RUN(all_dead_the_backoff_applies_while_the_urls_take_turns);
    RUN(a_server_dying_mid_stream_moves_the_client_to_the_next_url);
    return tt_finish();
}

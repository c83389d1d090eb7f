/*
 * The blocking calls docs/threading.md forbids inside a callback, called from
 * one anyway on the handle's own service thread: tether_client_wait_acked()
 * returns TETHER_EINVAL at once instead of blocking that thread for its whole
 * timeout (the acks it waits for come from that very thread), and
 * tether_client_destroy() / tether_server_destroy() are refused (they would
 * join the thread they run on). The handle keeps working afterwards.
 */
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include <tether/tether.h>

#include "common/util.h"
#include "harness.h"
#include "itest.h"

#define WAIT_MS 10000u
#define LONG_TIMEOUT_MS 10000u /* what wait_acked is given inside the callback */
#define AT_ONCE_MS 2000u       /* generous bound for "returned at once" */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

/* What the client's on_state callback saw when it broke the rules. */
static struct {
    int done;              /* the callback ran its calls */
    int send_rc;           /* tether_client_send() from the callback */
    int wait_rc;           /* tether_client_wait_acked() from the callback */
    uint64_t wait_ms;      /* how long that took */
    char wait_msg[256];    /* tether_errmsg() after it */
    char destroy_msg[256]; /* tether_errmsg() after tether_client_destroy() */
} cs;

static void client_on_state(tether_client *c, const tether_state_info *in, void *user)
{
    pthread_mutex_lock(&mu);
    int first = in->state == TETHER_STATE_CONNECTED && !cs.done;
    pthread_mutex_unlock(&mu);
    if (!first) {
        return;
    }
    int send_rc = tether_client_send(c, "pending", 7, NULL);
    uint64_t t0 = tether__now_ms();
    int wait_rc = tether_client_wait_acked(c, LONG_TIMEOUT_MS);
    uint64_t t1 = tether__now_ms();
    pthread_mutex_lock(&mu);
    cs.send_rc = send_rc;
    cs.wait_rc = wait_rc;
    cs.wait_ms = t1 - t0;
    snprintf(cs.wait_msg, sizeof cs.wait_msg, "%s", tether_errmsg());
    pthread_mutex_unlock(&mu);
    tether_client_destroy(c); /* refused: c stays valid */
    pthread_mutex_lock(&mu);
    snprintf(cs.destroy_msg, sizeof cs.destroy_msg, "%s", tether_errmsg());
    cs.done = 1;
    pthread_mutex_unlock(&mu);
}

static int client_done(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    int d = cs.done;
    pthread_mutex_unlock(&mu);
    return d;
}

TEST(client_wait_acked_and_destroy_from_a_callback_fail_at_once)
{
    srv v;
    srv_init(&v);
    CHECK_OK(srv_start(&v));
    char url[64];
    tether_client_config cfg;
    tether_client *c = NULL;
    tether_client_config_init(&cfg);
    cfg.url = url_for(url, sizeof url, v.port);
    cfg.cb.on_state = client_on_state;
    memset(&cs, 0, sizeof cs);
    CHECK_OK(client_create_start(&cfg, &c));
    CHECK(wait_until(client_done, NULL, 2 * LONG_TIMEOUT_MS));
    pthread_mutex_lock(&mu);
    CHECK_OK(cs.send_rc);
    CHECK_ERR(cs.wait_rc, TETHER_EINVAL);
    if (cs.wait_ms >= AT_ONCE_MS) {
        tt_fail(__FILE__, __LINE__, "wait_acked from a callback took %llu ms",
                (unsigned long long)cs.wait_ms);
    }
    CHECK(strstr(cs.wait_msg, "tether_client_wait_acked() called from a callback") != NULL);
    CHECK(strstr(cs.destroy_msg, "tether_client_destroy() called from a callback") != NULL);
    pthread_mutex_unlock(&mu);
    /* the client still works: the message sent in the callback is acked */
    CHECK(rec_wait_count(&v.rec, 1, WAIT_MS));
    CHECK_OK(tether_client_wait_acked(c, WAIT_MS));
    CHECK_OK(send_tagged(c, 1, 16));
    CHECK_OK(tether_client_wait_acked(c, WAIT_MS));
    CHECK(rec_wait_count(&v.rec, 2, WAIT_MS));
    /* from another thread, wait_acked with nothing pending is still fine */
    CHECK_OK(tether_client_wait_acked(c, 0));
    tether_client_destroy(c);
    srv_free(&v);
}

/* What the server's on_message callback saw. */
static struct {
    int messages;          /* on_message calls */
    int refused;           /* destroy calls that came back */
    char destroy_msg[256]; /* tether_errmsg() after the first */
} ss;

static void server_on_message(tether_server *s, const tether_session_id *id, uint64_t seq,
                              const void *data, size_t len, int redelivered, void *user)
{
    tether_server_destroy(s); /* refused: s stays valid */
    pthread_mutex_lock(&mu);
    if (ss.refused++ == 0) {
        snprintf(ss.destroy_msg, sizeof ss.destroy_msg, "%s", tether_errmsg());
    }
    ss.messages++;
    pthread_mutex_unlock(&mu);
}

TEST(server_destroy_from_a_callback_is_refused)
{
    srv v;
    cli k;
    srv_init(&v);
    v.cfg.cb.on_message = server_on_message;
    memset(&ss, 0, sizeof ss);
    CHECK_OK(srv_start(&v));
    cli_init(&k, "ws", "127.0.0.1", v.port);
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, 3, 16));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS)); /* the server carried on */
    pthread_mutex_lock(&mu);
    CHECK_EQ_INT(ss.messages, 3);
    CHECK_EQ_INT(ss.refused, 3);
    CHECK(strstr(ss.destroy_msg, "tether_server_destroy() called from a callback") != NULL);
    pthread_mutex_unlock(&mu);
    CHECK_OK(send_tagged(k.c, 1, 16));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    cli_free(&k);
    srv_free(&v);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN(client_wait_acked_and_destroy_from_a_callback_fail_at_once);
    RUN(server_destroy_from_a_callback_is_refused);
    return tt_finish();
}

/*
 * The client's application callbacks run outside its lock
 * (src/client/client_events.c): a blocked on_message does not hold up other
 * threads' sends; the server hears no ACK for a message before its on_message
 * returned; callbacks may send and ack; events stay exactly once and in order,
 * also when the event queue cannot grow and they run in place.
 *
 * No timing is asserted: a blocked callback waits on a condition the test
 * releases, and the test only checks what had (not) happened at that point.
 */
#include "harness.h"
#include "itest.h"

#include "client/client_int.h"

#define WAIT_MS 20000
#define BLOCK_MS 5000 /* the blocked callback gives up after this (a failed test) */

/* What the test's own client callbacks share with the test. */
typedef struct ctl {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void (*next)(tether_client *, uint64_t, const void *, size_t, int, void *); /* recorder's */
    uint64_t block_seq;   /* on_message of this seq blocks until released (0: none) */
    int inside;           /* that callback is running and blocked */
    int released;         /* the test let it go */
    int reply;            /* 1: each on_message sends a reply and acks (manual mode) */
    uint64_t reply_bad;   /* replies whose seq was not the delivered seq, or failed */
    uint64_t ack_bad;     /* tether_client_ack() calls that failed */
} ctl;

static ctl g;

static void ctl_init(int reply)
{
    memset(&g, 0, sizeof g);
    pthread_mutex_init(&g.mu, NULL);
    pthread_cond_init(&g.cv, NULL);
    g.reply = reply;
}

static void ctl_free(void)
{
    pthread_cond_destroy(&g.cv);
    pthread_mutex_destroy(&g.mu);
}

static void on_message(tether_client *c, uint64_t seq, const void *data, size_t len,
                       int redelivered, void *user)
{
    g.next(c, seq, data, len, redelivered, user);
    pthread_mutex_lock(&g.mu);
    if (seq == g.block_seq) {
        g.inside = 1;
        pthread_cond_broadcast(&g.cv);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += BLOCK_MS / 1000;
        while (!g.released) {
            if (pthread_cond_timedwait(&g.cv, &g.mu, &until) != 0) {
                break;
            }
        }
        g.inside = 0;
    }
    pthread_mutex_unlock(&g.mu);
    if (g.reply) {
        uint8_t buf[32];
        uint64_t mine = 0;
        make_payload(buf, sizeof buf, seq);
        if (tether_client_send(c, buf, sizeof buf, &mine) != TETHER_OK || mine != seq) {
            g.reply_bad++;
        }
        if (tether_client_ack(c, seq) != TETHER_OK) {
            g.ack_bad++;
        }
    }
}

static void use_ctl(cli *k)
{
    g.next = k->cfg.cb.on_message;
    k->cfg.cb.on_message = on_message;
}

static int opened(void *arg)
{
    recorder *r = arg;
    pthread_mutex_lock(&r->mu);
    int n = r->opens;
    pthread_mutex_unlock(&r->mu);
    return n > 0;
}

/* A server and a started client on it, its session open on the server; the
 * client's session id in *id. */
static int pair_up(srv *v, cli *k, int manual, size_t evq_max, tether_session_id *id)
{
    srv_init(v);
    if (srv_start(v) != TETHER_OK) {
        return -1;
    }
    cli_init(k, "ws", "127.0.0.1", v->port);
    k->cfg.manual_ack = manual;
    use_ctl(k);
    if (tether_client_create(&k->cfg, &k->c) != TETHER_OK) {
        return -1;
    }
    tether__client_test_evq_max(k->c, evq_max);
    if (tether_client_start(k->c) != TETHER_OK || tether_client_session(k->c, id) != TETHER_OK) {
        return -1;
    }
    return wait_until(opened, &v->rec, WAIT_MS) ? 0 : -1;
}

static int server_send_tagged(tether_server *s, const tether_session_id *id, uint64_t from,
                              uint64_t n)
{
    uint8_t buf[48];
    for (uint64_t i = from; i < from + n; i++) {
        uint64_t seq = 0;
        make_payload(buf, sizeof buf, i);
        int rc = tether_server_send(s, id, buf, sizeof buf, &seq);
        if (rc != TETHER_OK || seq != i) {
            return rc != TETHER_OK ? rc : TETHER_EINVAL;
        }
    }
    return TETHER_OK;
}

static uint64_t server_acked(srv *v, const tether_session_id *id)
{
    uint64_t acked = 0;
    if (tether_server_acked(v->s, id, &acked) != TETHER_OK) {
        return UINT64_MAX;
    }
    return acked;
}

/* An application thread that sends one message while a callback blocks. */
typedef struct sender {
    tether_client *c;
    int rc;        /* its result */
    uint64_t seq;  /* the seq it got */
    int done;      /* it returned (guarded by g.mu) */
    int during;    /* the blocked callback was still inside when it returned */
} sender;

static void *send_main(void *arg)
{
    sender *s = arg;
    uint8_t buf[24];
    make_payload(buf, sizeof buf, 1);
    s->rc = tether_client_send(s->c, buf, sizeof buf, &s->seq);
    pthread_mutex_lock(&g.mu);
    s->done = 1;
    s->during = g.inside && !g.released;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    return NULL;
}

static int blocked_inside(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g.mu);
    int in = g.inside;
    pthread_mutex_unlock(&g.mu);
    return in;
}

static uint64_t acked_hi(recorder *r)
{
    pthread_mutex_lock(&r->mu);
    uint64_t a = r->acked_hi;
    pthread_mutex_unlock(&r->mu);
    return a;
}

/* on_acked is queued and runs after the lock is released, so it can trail
   tether_client_wait_acked() returning by a moment */
static int client_heard_ack_of_one(void *arg)
{
    return acked_hi(arg) >= 1;
}

static int server_got_one(void *arg)
{
    return rec_count(arg) >= 1;
}

/* ---- tests ---- */

TEST(send_from_another_thread_does_not_wait_for_a_blocked_on_message)
{
    srv v;
    cli k;
    tether_session_id id;
    ctl_init(0);
    g.block_seq = 1;
    CHECK(pair_up(&v, &k, 0, 0, &id) == 0);
    CHECK_OK(server_send_tagged(v.s, &id, 1, 50));
    CHECK(wait_until(blocked_inside, NULL, WAIT_MS));

    /* seq 1 is being handled: the server must not hear it acknowledged */
    sender s = {k.c, -1, 0, 0, 0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, send_main, &s) == 0);
    pthread_mutex_lock(&g.mu);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += BLOCK_MS / 1000 - 1;
    while (!s.done && pthread_cond_timedwait(&g.cv, &g.mu, &until) == 0) {
    }
    int done_while_blocked = s.done && s.during;
    g.released = 1;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    uint64_t acked_while_blocked = server_acked(&v, &id);
    pthread_join(t, NULL);
    CHECK(done_while_blocked);
    CHECK_OK(s.rc);
    CHECK_EQ_U64(s.seq, 1);
    CHECK_EQ_U64(acked_while_blocked, 0);

    /* everything arrives once, in order, and is acked after the callbacks ran */
    CHECK(rec_wait_count(&k.rec, 50, WAIT_MS));
    rec_check_exact(&k.rec, 50, "client");
    CHECK(wait_until(server_got_one, &v.rec, WAIT_MS));
    rec_check_exact(&v.rec, 1, "server");
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK(wait_until(client_heard_ack_of_one, &k.rec, WAIT_MS));
    CHECK_EQ_U64(acked_hi(&k.rec), 1);
    for (int i = 0; i < 2000 && server_acked(&v, &id) < 50; i++) {
        sleep_ms(5);
    }
    CHECK_EQ_U64(server_acked(&v, &id), 50);
    cli_free(&k);
    srv_free(&v);
    ctl_free();
}

TEST(callbacks_send_and_ack)
{
    srv v;
    cli k;
    tether_session_id id;
    ctl_init(1);
    CHECK(pair_up(&v, &k, 1, 0, &id) == 0);
    CHECK_OK(server_send_tagged(v.s, &id, 1, 300));
    CHECK(rec_wait_count(&k.rec, 300, WAIT_MS));
    rec_check_exact(&k.rec, 300, "client");
    CHECK(rec_wait_count(&v.rec, 300, WAIT_MS));
    rec_check_exact(&v.rec, 300, "server");
    CHECK_EQ_U64(g.reply_bad, 0);
    CHECK_EQ_U64(g.ack_bad, 0);
    for (int i = 0; i < 2000 && server_acked(&v, &id) < 300; i++) {
        sleep_ms(5);
    }
    CHECK_EQ_U64(server_acked(&v, &id), 300);
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    cli_free(&k);
    srv_free(&v);
    ctl_free();
}

TEST(events_run_in_place_when_the_queue_cannot_grow)
{
    srv v;
    cli k;
    tether_session_id id;
    ctl_init(1);
    /* one event queued at most: every second one runs under the lock, in order */
    CHECK(pair_up(&v, &k, 1, 1, &id) == 0);
    CHECK_OK(server_send_tagged(v.s, &id, 1, 200));
    CHECK(rec_wait_count(&k.rec, 200, WAIT_MS));
    rec_check_exact(&k.rec, 200, "client");
    CHECK(rec_wait_count(&v.rec, 200, WAIT_MS));
    rec_check_exact(&v.rec, 200, "server");
    CHECK_EQ_U64(g.reply_bad, 0);
    CHECK_EQ_U64(g.ack_bad, 0);
    CHECK(rec_saw_state(&k.rec, TETHER_STATE_CONNECTED, NULL, NULL, NULL) == 1);
    lock(k.c);
    unsigned long inl = k.c->evq.inline_runs;
    unlock(k.c);
    CHECK(inl > 0);
    cli_free(&k);
    srv_free(&v);
    ctl_free();
}

int main(void)
{
    RUN(send_from_another_thread_does_not_wait_for_a_blocked_on_message);
    RUN(callbacks_send_and_ack);
    RUN(events_run_in_place_when_the_queue_cannot_grow);
    return tt_finish();
}

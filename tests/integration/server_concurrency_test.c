/*
 * The server's threads: a session whose on_message blocks holds up only
 * itself (other sessions are delivered and acknowledged, and
 * tether_server_send() returns meanwhile); closed sessions are evicted from
 * memory and reloaded when needed; a client the server hangs up on is
 * reported as the server's doing; the server's limits are range-checked.
 * Loopback only, OS ports, bounded waits; nothing is timed.
 */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "itest.h"
#include "rawws.h"
#include "engine/frame.h"
#include "server/server_int.h"

#define WAIT_MS 20000
#define MAXD 256

/* What the server's callbacks saw, and the gate that blocks session A. */
typedef struct world {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tether_session_id a;    /* the session whose on_message blocks */
    int have_a;             /* a is set */
    int gate_open;          /* A's on_message may return */
    int a_blocked;          /* A's on_message is waiting at the gate */
    uint64_t a_seqs[MAXD];  /* A's deliveries, in order */
    int na;                 /* how many */
    uint64_t b_seqs[MAXD];  /* everyone else's deliveries, in order */
    int nb;                 /* how many */
    int closes;             /* on_session_close calls */
    int last_close_err;     /* the error of the last one */
} world;

static world W;

static void w_init(void)
{
    memset(&W, 0, sizeof W);
    pthread_mutex_init(&W.mu, NULL);
    pthread_cond_init(&W.cv, NULL);
}

static void w_free(void)
{
    pthread_mutex_destroy(&W.mu);
    pthread_cond_destroy(&W.cv);
}

static void on_message(tether_server *s, const tether_session_id *id, uint64_t seq,
                       const void *data, size_t len, int redelivered, void *user)
{
    (void)s, (void)data, (void)len, (void)redelivered, (void)user;
    pthread_mutex_lock(&W.mu);
    if (W.have_a && memcmp(id, &W.a, sizeof W.a) == 0) {
        uint64_t give_up = rawws_now_ms() + WAIT_MS;
        while (!W.gate_open && rawws_now_ms() < give_up) {
            W.a_blocked = 1;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 10 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&W.cv, &W.mu, &ts);
        }
        if (W.na < MAXD) {
            W.a_seqs[W.na++] = seq;
        }
    } else if (W.nb < MAXD) {
        W.b_seqs[W.nb++] = seq;
    }
    pthread_mutex_unlock(&W.mu);
}

static void on_close(tether_server *s, const tether_session_id *id, int error, void *user)
{
    (void)s, (void)id, (void)user;
    pthread_mutex_lock(&W.mu);
    W.closes++;
    W.last_close_err = error;
    pthread_mutex_unlock(&W.mu);
}

static int a_is_blocked(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&W.mu);
    int b = W.a_blocked;
    pthread_mutex_unlock(&W.mu);
    return b;
}

static int closed_once(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&W.mu);
    int c = W.closes > 0;
    pthread_mutex_unlock(&W.mu);
    return c;
}

static int start_server(tether_server_config *cfg, const char *db, tether_server **s)
{
    tether_server_config_init(cfg);
    cfg->db_path = db;
    cfg->cb.on_message = on_message;
    cfg->cb.on_session_close = on_close;
    cfg->delivery_threads = 2;
    return server_create_start(cfg, s);
}

static int start_client(const char *db, uint16_t port, char *url, size_t url_len, tether_client **c)
{
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.url = url_for(url, url_len, port);
    cfg.db_path = db;
    cfg.backoff_base_ms = 20;
    cfg.backoff_cap_ms = 200;
    return client_create_start(&cfg, c);
}

TEST(a_blocked_session_stalls_nobody_else)
{
    char sdb[512], adb[512], bdb[512], ua[64], ub[64];
    tether_server_config scfg;
    tether_server *s = NULL;
    tether_client *a = NULL, *b = NULL;
    w_init();
    CHECK_OK(start_server(&scfg, tt_path(sdb, sizeof sdb, "conc-s.db"), &s));
    uint16_t port = tether_server_port(s);
    CHECK_OK(start_client(tt_path(adb, sizeof adb, "conc-a.db"), port, ua, sizeof ua, &a));
    CHECK_OK(start_client(tt_path(bdb, sizeof bdb, "conc-b.db"), port, ub, sizeof ub, &b));
    tether_session_id ida, idb;
    CHECK_OK(tether_client_session(a, &ida));
    CHECK_OK(tether_client_session(b, &idb));
    pthread_mutex_lock(&W.mu);
    W.a = ida;
    W.have_a = 1;
    pthread_mutex_unlock(&W.mu);

    /* A's first message blocks its on_message */
    CHECK_OK(send_tagged(a, 3, 16));
    CHECK(wait_until(a_is_blocked, NULL, WAIT_MS));

    /* meanwhile B is delivered and acknowledged, and sends return */
    CHECK_OK(send_tagged(b, 40, 16));
    CHECK_OK(tether_client_wait_acked(b, WAIT_MS));
    CHECK_OK(tether_server_send(s, &ida, "to-a", 4, NULL));
    CHECK_OK(tether_server_send(s, &idb, "to-b", 4, NULL));
    uint64_t pending = 0, acked = 0;
    CHECK_OK(tether_server_pending(s, &ida, &pending, NULL));
    CHECK_EQ_U64(pending, 1);
    /* nothing of A's is acknowledged before its on_message returned */
    CHECK_OK(tether_client_pending(a, &pending, NULL));
    CHECK_EQ_U64(pending, 3);
    CHECK_OK(tether_client_acked(a, &acked));
    CHECK_EQ_U64(acked, 0);
    pthread_mutex_lock(&W.mu);
    CHECK_EQ_INT(W.na, 0);
    CHECK_EQ_INT(W.nb, 40);
    for (int i = 0; i < W.nb && i < 40; i++) {
        CHECK_EQ_U64(W.b_seqs[i], (uint64_t)i + 1);
    }
    W.gate_open = 1;
    pthread_cond_broadcast(&W.cv);
    pthread_mutex_unlock(&W.mu);

    /* A resumes: its messages in order, exactly once, then acknowledged */
    CHECK_OK(tether_client_wait_acked(a, WAIT_MS));
    pthread_mutex_lock(&W.mu);
    CHECK_EQ_INT(W.na, 3);
    for (int i = 0; i < W.na && i < 3; i++) {
        CHECK_EQ_U64(W.a_seqs[i], (uint64_t)i + 1);
    }
    pthread_mutex_unlock(&W.mu);
    tether_client_destroy(a);
    tether_client_destroy(b);
    tether_server_destroy(s);
    w_free();
}

static tether_server *evict_srv;

static int nothing_loaded(void *arg)
{
    (void)arg;
    return tether__srv_debug_loaded(evict_srv) == 0;
}

/* A client's own recorder for what the server sends it. */
static recorder crec;

/* The client of store cdb resumes on port and gets seqs 1..n from the server,
 * in order, once. */
static void resume_gets(const char *cdb, uint16_t port, uint64_t n, const char *what)
{
    char url[64];
    tether_client *c = NULL;
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.url = url_for(url, sizeof url, port);
    cfg.db_path = cdb;
    rec_init(&crec);
    rec_client_callbacks(&cfg, &crec);
    CHECK_OK(client_create_start(&cfg, &c));
    CHECK(rec_wait_count(&crec, n, WAIT_MS));
    rec_check_exact(&crec, n, what);
    tether_client_destroy(c);
    rec_free(&crec);
}

TEST(closed_sessions_are_evicted_and_reloaded)
{
    char sdb[512], cdb[512], url[64];
    tether_server_config scfg;
    tether_server *s = NULL;
    tether_client *c = NULL;
    w_init();
    CHECK_OK(start_server(&scfg, tt_path(sdb, sizeof sdb, "evict-s.db"), &s));
    evict_srv = s;
    uint16_t port = tether_server_port(s);
    CHECK_OK(start_client(tt_path(cdb, sizeof cdb, "evict-c.db"), port, url, sizeof url, &c));
    tether_session_id id;
    CHECK_OK(tether_client_session(c, &id));
    CHECK_OK(send_tagged(c, 2, 16));
    CHECK_OK(tether_client_wait_acked(c, WAIT_MS));
    CHECK_EQ_INT((int)tether__srv_debug_loaded(s), 1);

    /* the connection closes: the session leaves memory */
    tether_client_destroy(c);
    c = NULL;
    CHECK(wait_until(nothing_loaded, NULL, WAIT_MS));

    /* sending to the evicted session loads it, stores, and lets it go again */
    uint8_t buf[16];
    for (uint64_t i = 1; i <= 3; i++) {
        make_payload(buf, sizeof buf, i);
        CHECK_OK(tether_server_send(s, &id, buf, sizeof buf, NULL));
    }
    CHECK_EQ_INT((int)tether__srv_debug_loaded(s), 0);
    uint64_t pending = 0;
    CHECK_OK(tether_server_pending(s, &id, &pending, NULL));
    CHECK_EQ_U64(pending, 3);
    tether_session_id unknown;
    memset(&unknown, 0x5a, sizeof unknown);
    CHECK_ERR(tether_server_send(s, &unknown, "x", 1, NULL), TETHER_ENOTFOUND);
    CHECK_EQ_INT((int)tether__srv_debug_loaded(s), 0);

    /* the client resumes and gets them, in order, once */
    resume_gets(cdb, port, 3, "client after its session was evicted");
    tether_server_destroy(s);
    w_free();
}

/* The race of a load with an eviction: the first load of the session read
 * from the store pauses (a test hook) until the main thread has loaded the
 * session itself, stored a message to it and let it go from memory. */
typedef struct load_race {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;    /* loads seen by the hook */
    int paused;   /* the first one waits */
    int released; /* and may go on */
    tether_server *s;
    tether_session_id id;
    uint64_t pending; /* what the paused load's tether_server_pending() said */
    int rc;
} load_race;

static load_race LR = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void pause_first_load(tether_server *s, void *arg)
{
    (void)s;
    load_race *r = arg;
    pthread_mutex_lock(&r->mu);
    if (r->calls++ == 0) {
        r->paused = 1;
        pthread_cond_broadcast(&r->cv);
        uint64_t give_up = rawws_now_ms() + WAIT_MS;
        while (!r->released && rawws_now_ms() < give_up) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 10000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        }
    }
    pthread_mutex_unlock(&r->mu);
}

static void *pending_thread(void *arg)
{
    load_race *r = arg;
    uint64_t n = 0;
    int rc = tether_server_pending(r->s, &r->id, &n, NULL);
    pthread_mutex_lock(&r->mu);
    r->rc = rc;
    r->pending = n;
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static int load_paused(void *arg)
{
    load_race *r = arg;
    pthread_mutex_lock(&r->mu);
    int p = r->paused;
    pthread_mutex_unlock(&r->mu);
    return p;
}

TEST(a_load_that_raced_an_eviction_reads_the_store_again)
{
    char sdb[512], cdb[512], url[64];
    tether_server_config scfg;
    tether_server *s = NULL;
    tether_client *c = NULL;
    w_init();
    CHECK_OK(start_server(&scfg, tt_path(sdb, sizeof sdb, "race-s.db"), &s));
    evict_srv = s;
    uint16_t port = tether_server_port(s);
    CHECK_OK(start_client(tt_path(cdb, sizeof cdb, "race-c.db"), port, url, sizeof url, &c));
    CHECK_OK(tether_client_session(c, &LR.id));
    CHECK_OK(send_tagged(c, 1, 16));
    CHECK_OK(tether_client_wait_acked(c, WAIT_MS));
    tether_client_destroy(c);
    CHECK(wait_until(nothing_loaded, NULL, WAIT_MS));

    /* a query loads the session from the store and pauses before keeping it */
    LR.s = s;
    tether__srv_test_on_load(s, pause_first_load, &LR);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, pending_thread, &LR) == 0);
    CHECK(wait_until(load_paused, &LR, WAIT_MS));
    /* meanwhile a send loads it too, stores seq 1, and lets it go */
    uint64_t seq = 0;
    uint8_t buf[16];
    make_payload(buf, sizeof buf, 1);
    CHECK_OK(tether_server_send(s, &LR.id, buf, sizeof buf, &seq));
    CHECK_EQ_U64(seq, 1);
    CHECK_EQ_INT((int)tether__srv_debug_loaded(s), 0);
    /* the paused load goes on: what it read is older than the send */
    pthread_mutex_lock(&LR.mu);
    LR.released = 1;
    pthread_cond_broadcast(&LR.cv);
    pthread_mutex_unlock(&LR.mu);
    pthread_join(t, NULL);
    CHECK_OK(LR.rc);
    CHECK_EQ_U64(LR.pending, 1); /* a stale copy kept would say 0, and never send seq 1 */
    CHECK(LR.calls >= 3);        /* the paused load, the send's, the paused one's second read */
    tether__srv_test_on_load(s, NULL, NULL);
    make_payload(buf, sizeof buf, 2);
    CHECK_OK(tether_server_send(s, &LR.id, buf, sizeof buf, &seq));
    CHECK_EQ_U64(seq, 2);

    /* the client resumes and gets both */
    resume_gets(cdb, port, 2, "client after the raced load");
    tether_server_destroy(s);
    w_free();
}

/* A raw client with session id byte idb: upgrade, HELLO, WELCOME. */
static void open_session(tether_server *s, rawws_conn *rc, uint8_t idb)
{
    tether__hello h;
    tether__buf b;
    rawws_msg m;
    CHECK_EQ_INT(rawws_open(rc, tether_server_port(s)), 0);
    memset(&h, 0, sizeof h);
    h.version = TETHER__PROTO_VERSION;
    memset(h.session_id, idb, sizeof h.session_id);
    memset(h.token, 0x22, sizeof h.token);
    h.max_message = 1024;
    h.window = 16;
    tether__buf_init(&b, 0);
    tether__encode_hello(&b, &h);
    CHECK_EQ_INT(rawws_send(rc, RAWWS_BINARY, tether__buf_frame(&b), b.len), 0);
    tether__buf_free(&b);
    CHECK_EQ_INT(rawws_read_msg(rc, &m, 5000), 1); /* WELCOME */
    rawws_msg_free(&m);
}

/* The server's own keepalive (transport_lws_keepalive.c): a ping after
 * ping_interval_ms without a pong, the hang-up pong_timeout_ms after it,
 * never earlier, reported as the server's doing. */
TEST(a_silent_client_is_dropped_by_the_server)
{
    tether_server_config scfg;
    tether_server *s = NULL;
    rawws_conn rc;
    w_init();
    tether_server_config_init(&scfg);
    scfg.cb.on_session_close = on_close;
    scfg.ping_interval_ms = 1000;
    scfg.pong_timeout_ms = 1000;
    CHECK_OK(server_create_start(&scfg, &s));
    uint64_t t0 = rawws_now_ms(); /* before the connection opens */
    open_session(s, &rc, 0x11);
    rc.answer_pings = 0; /* goes silent after HELLO */
    CHECK_EQ_INT(rawws_wait_eof(&rc, WAIT_MS), 1);
    CHECK(wait_until(closed_once, NULL, WAIT_MS));
    fprintf(stderr, "  pings %u, hung up %llu ms after the connect\n", rc.pings,
         (unsigned long long)(rc.closed_at - t0));
    CHECK(rc.pings >= 1);                  /* asked before hanging up */
    CHECK(rc.closed_at - t0 >= 1000 + 1000); /* never early */
    pthread_mutex_lock(&W.mu);
    CHECK_EQ_STR(tether_err_name(W.last_close_err), "TETHER_EDROPPED");
    pthread_mutex_unlock(&W.mu);
    rawws_conn_close(&rc);
    tether_server_destroy(s);
    w_free();
}

/* A client that answers the pings keeps its connection for several ping
 * intervals, pinged once per interval; a silent one beside it is dropped. */
TEST(a_client_that_answers_pings_stays_connected)
{
    tether_server_config scfg;
    tether_server *s = NULL;
    rawws_conn live, silent;
    rawws_msg m;
    w_init();
    tether_server_config_init(&scfg);
    scfg.cb.on_session_close = on_close;
    scfg.ping_interval_ms = 1000;
    scfg.pong_timeout_ms = 1000;
    CHECK_OK(server_create_start(&scfg, &s));
    open_session(s, &live, 0x31);
    open_session(s, &silent, 0x32);
    silent.answer_pings = 0;
    /* 3.5 s: pings about 1, 2 and 3 s in, each answered at once */
    CHECK_EQ_INT(rawws_read_msg(&live, &m, 3500), 0);
    CHECK_EQ_INT(rawws_wait_eof(&silent, WAIT_MS), 1);
    fprintf(stderr, "  live client: %u pings in 3.5 s\n", live.pings);
    CHECK(live.pings >= 2);
    CHECK(live.pings <= 4);
    CHECK(!live.eof);
    pthread_mutex_lock(&W.mu);
    CHECK_EQ_INT(W.closes, 1); /* the silent one only */
    pthread_mutex_unlock(&W.mu);
    rawws_conn_close(&live);
    rawws_conn_close(&silent);
    tether_server_destroy(s);
    w_free();
}

TEST(server_limits_are_range_checked)
{
    tether_server_config cfg;
    tether_server *s = NULL;
    struct {
        uint32_t *field;
        uint32_t bad;
        const char *name;
    } cases[] = {
        {&cfg.delivery_threads, 65, "delivery_threads"},
        {&cfg.max_sessions, 1000001, "max_sessions"},
        {&cfg.max_pending_handshakes, 1000001, "max_pending_handshakes"},
        {&cfg.hello_timeout_ms, 3600001, "hello_timeout_ms"},
        {&cfg.rx_buffer_bytes, 127, "rx_buffer_bytes"},
        {&cfg.rx_buffer_bytes, 65537, "rx_buffer_bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tether_server_config_init(&cfg);
        *cases[i].field = cases[i].bad;
        CHECK_ERR(tether_server_create(&cfg, &s), TETHER_ECONFIG);
        CHECK(strstr(tether_errmsg(), cases[i].name) != NULL);
        CHECK(s == NULL);
    }
    tether_server_config_init(&cfg);
    cfg.delivery_threads = 64;
    cfg.max_sessions = 1000000;
    cfg.rx_buffer_bytes = 128;
    CHECK_OK(tether_server_create(&cfg, &s));
    tether_server_destroy(s);
}

int main(void)
{
    RUN(a_blocked_session_stalls_nobody_else);
    RUN(closed_sessions_are_evicted_and_reloaded);
    RUN(a_load_that_raced_an_eviction_reads_the_store_again);
    RUN(a_silent_client_is_dropped_by_the_server);
    RUN(a_client_that_answers_pings_stays_connected);
    RUN(server_limits_are_range_checked);
    return tt_finish();
}

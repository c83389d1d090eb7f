/*
 * Integration tests on loopback: a real server and client in one process,
 * ports picked by the OS, temporary stores, bounded waits.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "itest.h"
#include "store/store.h"

#define WAIT_MS 20000

typedef struct pair {
    recorder srec;             /* what the server saw */
    recorder crec;             /* what the client saw */
    tether_server_config scfg; /* server config (db_path may be set) */
    tether_client_config ccfg; /* client config (url filled by start_pair) */
    tether_server *s;
    tether_client *c;
    char url[64];
    uint16_t port;
} pair;

static void pair_init(pair *p, const char *sdb, const char *cdb)
{
    memset(p, 0, sizeof *p);
    rec_init(&p->srec);
    rec_init(&p->crec);
    tether_server_config_init(&p->scfg);
    p->scfg.db_path = sdb;
    rec_server_callbacks(&p->scfg, &p->srec);
    tether_client_config_init(&p->ccfg);
    p->ccfg.db_path = cdb;
    p->ccfg.backoff_base_ms = 20;
    p->ccfg.backoff_cap_ms = 200;
    p->ccfg.random_seed = 7;
    rec_client_callbacks(&p->ccfg, &p->crec);
}

static int start_server(pair *p)
{
    p->scfg.port = p->port; /* a restart reuses the first port */
    int rc = server_create_start(&p->scfg, &p->s);
    if (p->s && !p->port) {
        p->port = tether_server_port(p->s);
    }
    return rc;
}

static int start_client(pair *p)
{
    p->ccfg.url = url_for(p->url, sizeof p->url, p->port);
    return client_create_start(&p->ccfg, &p->c);
}

static void pair_free(pair *p)
{
    tether_client_destroy(p->c);
    tether_server_destroy(p->s);
    rec_free(&p->srec);
    rec_free(&p->crec);
}


typedef struct state_wait {
    recorder *r;
    int state;
} state_wait;

static int saw_state(void *arg)
{
    state_wait *w = arg;
    return rec_saw_state(w->r, w->state, NULL, NULL, NULL) > 0;
}

static int wait_state(recorder *r, int state)
{
    state_wait w = {r, state};
    return wait_until(saw_state, &w, WAIT_MS);
}

/* ---- tests ---- */

TEST(both_directions_exactly_once_in_order)
{
    pair p;
    pair_init(&p, NULL, NULL);
    CHECK_OK(start_server(&p));
    CHECK_OK(start_client(&p));
    CHECK_OK(send_tagged(p.c, 5000, 64));
    CHECK_OK(tether_client_wait_acked(p.c, WAIT_MS));
    CHECK(rec_wait_count(&p.srec, 5000, WAIT_MS));
    rec_check_exact(&p.srec, 5000, "server");

    /* server to client on the same session */
    tether_session_id id;
    CHECK_OK(tether_client_session(p.c, &id));
    uint8_t buf[100];
    for (uint64_t i = 1; i <= 3000; i++) {
        uint64_t seq = 0;
        make_payload(buf, sizeof buf, i);
        CHECK_OK(tether_server_send(p.s, &id, buf, sizeof buf, &seq));
        CHECK_EQ_U64(seq, i);
    }
    CHECK(rec_wait_count(&p.crec, 3000, WAIT_MS));
    rec_check_exact(&p.crec, 3000, "client");
    uint64_t acked = 0, count = 1;
    for (unsigned i = 0; i < WAIT_MS / 5 && acked < 3000; i++) {
        CHECK_OK(tether_server_acked(p.s, &id, &acked));
        sleep_ms(5);
    }
    CHECK_EQ_U64(acked, 3000);
    CHECK_OK(tether_server_pending(p.s, &id, &count, NULL));
    CHECK_EQ_U64(count, 0);
    CHECK_OK(tether_client_acked(p.c, &acked));
    CHECK_EQ_U64(acked, 5000);
    CHECK_EQ_INT(p.srec.opens, 1);
    CHECK_EQ_INT(p.srec.last_open_resumed, 0);
    pair_free(&p);
}

/* An idle client acknowledges the server's messages after the ACK delay
 * (20 ms by default), not at its next ping: pings are an hour apart here, so
 * only the ACK timer can send it. The same the other way round. */
TEST(idle_peers_acknowledge_after_the_ack_delay_not_at_the_next_ping)
{
    pair p;
    pair_init(&p, NULL, NULL);
    p.ccfg.ping_interval_ms = 3600000;
    p.scfg.ping_interval_ms = 3600000;
    CHECK_OK(start_server(&p));
    CHECK_OK(start_client(&p));
    CHECK_OK(send_tagged(p.c, 1, 64)); /* connected: the first message is acknowledged */
    CHECK_OK(tether_client_wait_acked(p.c, WAIT_MS));
    tether_session_id id;
    CHECK_OK(tether_client_session(p.c, &id));
    uint8_t buf[64];
    for (uint64_t i = 1; i <= 5; i++) {
        make_payload(buf, sizeof buf, i);
        CHECK_OK(tether_server_send(p.s, &id, buf, sizeof buf, NULL));
    }
    CHECK(rec_wait_count(&p.crec, 5, WAIT_MS));
    uint64_t acked = 0;
    for (unsigned i = 0; i < 5000 / 5 && acked < 5; i++) { /* 5 s: far above 20 ms */
        CHECK_OK(tether_server_acked(p.s, &id, &acked));
        sleep_ms(5);
    }
    CHECK_EQ_U64(acked, 5);
    /* and an idle server acknowledges a lone client message the same way */
    CHECK_OK(send_tagged(p.c, 3, 64));
    CHECK_OK(tether_client_wait_acked(p.c, 5000));
    pair_free(&p);
}

TEST(large_messages_are_reassembled)
{
    pair p;
    pair_init(&p, NULL, NULL);
    CHECK_OK(start_server(&p));
    CHECK_OK(start_client(&p));
    CHECK_OK(send_tagged(p.c, 50, 60000));
    CHECK_OK(tether_client_wait_acked(p.c, WAIT_MS));
    rec_check_exact(&p.srec, 50, "server");
    pair_free(&p);
}

TEST(server_restart_resumes_without_loss)
{
    char sdb[512], cdb[512];
    pair p;
    pair_init(&p, tt_path(sdb, sizeof sdb, "restart-s.db"), tt_path(cdb, sizeof cdb, "restart-c.db"));
    CHECK_OK(start_server(&p));
    CHECK_OK(start_client(&p));
    CHECK_OK(send_tagged(p.c, 3000, 64));
    CHECK(rec_wait_count(&p.srec, 500, WAIT_MS));
    /* stop the server mid-stream, keep sending while it is down, restart it */
    tether_server_destroy(p.s);
    p.s = NULL;
    CHECK_OK(send_tagged(p.c, 2000, 64));
    sleep_ms(100);
    CHECK_OK(start_server(&p));
    CHECK_OK(tether_client_wait_acked(p.c, WAIT_MS));
    rec_check_exact(&p.srec, 5000, "server across restart");
    CHECK(rec_saw_state(&p.crec, TETHER_STATE_RECONNECTING, NULL, NULL, NULL) >= 1);
    CHECK_EQ_INT(p.srec.last_open_resumed, 1);
    pair_free(&p);
}

TEST(offline_client_gets_server_messages_on_resume)
{
    char sdb[512], cdb[512];
    pair p;
    tether_session_id id;
    pair_init(&p, tt_path(sdb, sizeof sdb, "offline-s.db"), tt_path(cdb, sizeof cdb, "offline-c.db"));
    CHECK_OK(start_server(&p));
    CHECK_OK(start_client(&p));
    CHECK_OK(send_tagged(p.c, 10, 64));
    CHECK_OK(tether_client_wait_acked(p.c, WAIT_MS));
    CHECK_OK(tether_client_session(p.c, &id));
    tether_client_destroy(p.c);
    p.c = NULL;
    uint8_t buf[64];
    for (uint64_t i = 1; i <= 1000; i++) {
        make_payload(buf, sizeof buf, i);
        CHECK_OK(tether_server_send(p.s, &id, buf, sizeof buf, NULL));
    }
    uint64_t pending = 0;
    CHECK_OK(tether_server_pending(p.s, &id, &pending, NULL));
    CHECK_EQ_U64(pending, 1000);
    CHECK_OK(start_client(&p));
    CHECK(rec_wait_count(&p.crec, 1000, WAIT_MS));
    rec_check_exact(&p.crec, 1000, "client after resume");
    tether_session_id unknown;
    memset(&unknown, 0xab, sizeof unknown);
    CHECK_ERR(tether_server_send(p.s, &unknown, buf, sizeof buf, NULL), TETHER_ENOTFOUND);
    pair_free(&p);
}

TEST(wrong_resume_token_is_rejected_and_not_retried)
{
    char sdb[512], cdb[512];
    pair p;
    pair_init(&p, tt_path(sdb, sizeof sdb, "token-s.db"), tt_path(cdb, sizeof cdb, "token-c.db"));
    CHECK_OK(start_server(&p));
    CHECK_OK(start_client(&p));
    CHECK_OK(send_tagged(p.c, 5, 64));
    CHECK_OK(tether_client_wait_acked(p.c, WAIT_MS));
    tether_client_destroy(p.c);
    p.c = NULL;

    /* tamper with the client's stored token */
    tether__store *st = NULL;
    tether__session_rec rec;
    tether_session_id id;
    CHECK_OK(tether__store_sqlite_open(cdb, TETHER__ROLE_CLIENT, TETHER_DURABILITY_NORMAL, &st,
                                       NULL, 0));
    if (st) {
        memcpy(id.bytes, p.srec.last_session.bytes, 16);
        CHECK_OK(st->ops->session_get(st, id.bytes, &rec));
        rec.token[0] ^= 0xff;
        CHECK_OK(st->ops->session_put(st, &rec));
        st->ops->close(st);
    }
    CHECK_OK(start_client(&p));
    CHECK(wait_state(&p.crec, TETHER_STATE_STOPPED));
    int err = 0, reject = 0;
    CHECK(rec_saw_state(&p.crec, TETHER_STATE_STOPPED, &err, NULL, &reject) == 1);
    CHECK_EQ_INT(err, TETHER_ETOKEN);
    CHECK_EQ_INT(reject, TETHER_REJECT_TOKEN);
    CHECK_EQ_INT(rec_saw_state(&p.crec, TETHER_STATE_RECONNECTING, NULL, NULL, NULL), 0);
    CHECK_ERR(tether_client_wait_acked(p.c, 100), TETHER_OK); /* nothing pending */
    pair_free(&p);
}

TEST(server_that_lost_its_store_is_reported_as_mismatch)
{
    char cdb[512];
    pair p;
    pair_init(&p, NULL, tt_path(cdb, sizeof cdb, "lost-c.db"));
    CHECK_OK(start_server(&p));
    CHECK_OK(start_client(&p));
    CHECK_OK(send_tagged(p.c, 100, 64));
    CHECK_OK(tether_client_wait_acked(p.c, WAIT_MS));
    tether_client_destroy(p.c);
    p.c = NULL;
    /* a new server with an empty memory store on the same port */
    tether_server_destroy(p.s);
    p.s = NULL;
    recorder fresh;
    rec_init(&fresh);
    p.scfg.user = &fresh;
    CHECK_OK(start_server(&p));
    CHECK_OK(start_client(&p));
    CHECK_OK(send_tagged(p.c, 10, 64)); /* queued: must not be sent into a new session */
    CHECK(wait_state(&p.crec, TETHER_STATE_STOPPED));
    int err = 0;
    rec_saw_state(&p.crec, TETHER_STATE_STOPPED, &err, NULL, NULL);
    CHECK_EQ_INT(err, TETHER_EMISMATCH);
    CHECK_EQ_INT(p.crec.mismatches, 1);
    CHECK_EQ_INT(p.crec.mismatch.peer_knows_session, 0);
    CHECK_EQ_U64(p.crec.mismatch.local_peer_acked, 100);
    CHECK_EQ_U64(p.crec.mismatch.lost_acked, 100);
    CHECK_EQ_INT(fresh.mismatches, 1);
    CHECK_EQ_U64(rec_count(&fresh), 0);
    uint64_t pending = 0;
    CHECK_OK(tether_client_pending(p.c, &pending, NULL));
    CHECK_EQ_U64(pending, 10);

    /* the application decides: a new session carrying the 10 unacked messages */
    pthread_mutex_lock(&p.crec.mu);
    p.crec.acked_hi = 0; /* acks count from 1 again in the new session */
    pthread_mutex_unlock(&p.crec.mu);
    CHECK_OK(tether_client_reset_session(p.c));
    CHECK_OK(tether_client_wait_acked(p.c, WAIT_MS));
    CHECK(rec_wait_count(&fresh, 10, WAIT_MS));
    pthread_mutex_lock(&fresh.mu);
    for (uint64_t i = 0; i < 10 && i < fresh.n; i++) {
        CHECK_EQ_U64(fresh.seqs[i], i + 1);   /* renumbered from 1 */
        CHECK_EQ_U64(fresh.tags[i], 101 + i); /* the same messages, in order */
    }
    pthread_mutex_unlock(&fresh.mu);
    pair_free(&p);
    rec_free(&fresh);
}

TEST(client_sigkill_and_restart_loses_nothing)
{
    char sdb[512], cdb[512];
    pair p;
    pair_init(&p, tt_path(sdb, sizeof sdb, "kill-s.db"), tt_path(cdb, sizeof cdb, "kill-c.db"));
    CHECK_OK(start_server(&p));
    p.ccfg.url = url_for(p.url, sizeof p.url, p.port);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* a fresh process image: this test binary in its child-sender role */
        execl("/proc/self/exe", "client_server_test", "--child-send", p.url, cdb, (char *)NULL);
        _exit(127);
    }
    CHECK(pid > 0);
    CHECK(rec_wait_count(&p.srec, 3000, WAIT_MS));
    kill(pid, SIGKILL);
    int status = 0;
    CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
    CHECK(WIFSIGNALED(status));

    /* restart on the same store: finishes the backlog, exactly once */
    CHECK_OK(start_client(&p));
    uint64_t last = 0;
    CHECK_OK(tether_client_last_seq(p.c, &last));
    CHECK(last >= 3000);
    CHECK_OK(tether_client_wait_acked(p.c, WAIT_MS));
    rec_check_exact(&p.srec, last, "server after client SIGKILL");
    pair_free(&p);
}

TEST(config_and_store_errors)
{
    tether_client_config cfg;
    tether_client *c = NULL;
    char path[512];

    tether_client_config_init(&cfg);
    CHECK_ERR(tether_client_create(&cfg, &c), TETHER_ECONFIG); /* no url */
    CHECK(c == NULL);
    cfg.url = "http://127.0.0.1:1/";
    CHECK_ERR(tether_client_create(&cfg, &c), TETHER_ECONFIG);
    cfg.url = "ws://127.0.0.1:1/";
    cfg.durability = (tether_durability)9;
    CHECK_ERR(tether_client_create(&cfg, &c), TETHER_ECONFIG);
    cfg.durability = TETHER_DURABILITY_FULL;
    cfg.window_messages = 8;
    cfg.ack_every = 16;
    CHECK_ERR(tether_client_create(&cfg, &c), TETHER_ECONFIG);
    cfg.ack_every = 0;
    cfg.ping_interval_ms = 10;
    CHECK_ERR(tether_client_create(&cfg, &c), TETHER_ECONFIG);
    CHECK(strlen(tether_errmsg()) > 10);
    cfg.ping_interval_ms = 0;
    CHECK_ERR(tether_client_create(NULL, &c), TETHER_EINVAL);
    CHECK_ERR(tether_client_create(&cfg, NULL), TETHER_EINVAL);

    /* a garbage file where the database should be */
    tt_path(path, sizeof path, "garbage.db");
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        for (int i = 0; i < 4096; i++) {
            fputc(i * 7 % 251, f);
        }
        fclose(f);
    }
    cfg.db_path = path;
    CHECK_ERR(tether_client_create(&cfg, &c), TETHER_ESTORE_CORRUPT);
    CHECK(strstr(tether_errmsg(), "garbage.db") != NULL);

    /* a server database opened by a client */
    tether_server_config scfg;
    tether_server *s = NULL;
    tether_server_config_init(&scfg);
    scfg.db_path = tt_path(path, sizeof path, "role-s.db");
    CHECK_OK(tether_server_create(&scfg, &s));
    tether_server_destroy(s);
    cfg.db_path = path;
    CHECK_ERR(tether_client_create(&cfg, &c), TETHER_ESTORE_SCHEMA);

    /* a port that is taken */
    tether_server *s1 = NULL, *s2 = NULL;
    tether_server_config_init(&scfg);
    CHECK_OK(tether_server_create(&scfg, &s1));
    scfg.port = tether_server_port(s1);
    CHECK_ERR(tether_server_create(&scfg, &s2), TETHER_ESYS);
    tether_server_destroy(s1);

    /* send and queries on a client that never started */
    cfg.db_path = NULL;
    CHECK_OK(tether_client_create(&cfg, &c));
    uint64_t seq = 0;
    CHECK_OK(tether_client_send(c, "x", 1, &seq));
    CHECK_EQ_U64(seq, 1);
    CHECK_ERR(tether_client_send(c, NULL, 1, &seq), TETHER_EINVAL);
    CHECK_ERR(tether_client_wait_acked(c, 10), TETHER_ECLOSED);
    static uint8_t big[(1u << 20) + 1];
    CHECK_ERR(tether_client_send(c, big, sizeof big, &seq), TETHER_ETOOBIG);
    tether_client_destroy(c);
    tether_client_destroy(NULL);
    tether_server_destroy(NULL);
}

TEST(outbox_cap_is_reported_and_stores_nothing)
{
    tether_client_config cfg;
    tether_client *c = NULL;
    tether_client_config_init(&cfg);
    cfg.url = "ws://127.0.0.1:1/";
    cfg.outbox_max_messages = 3;
    CHECK_OK(tether_client_create(&cfg, &c));
    for (int i = 0; i < 3; i++) {
        CHECK_OK(tether_client_send(c, "abc", 3, NULL));
    }
    CHECK_ERR(tether_client_send(c, "abc", 3, NULL), TETHER_EOUTBOX_FULL);
    uint64_t n = 0, b = 0;
    CHECK_OK(tether_client_pending(c, &n, &b));
    CHECK_EQ_U64(n, 3);
    CHECK_EQ_U64(b, 9);
    tether_client_destroy(c);
}

typedef struct bp_log {
    pthread_mutex_t mu;
    int kinds[16];     /* reports in order */
    uint64_t pending[16]; /* pending messages with each */
    int n;
} bp_log;

static void s_backpressure(tether_server *s, const tether_session_id *id,
                           const tether_backpressure_info *bi, void *user)
{
    bp_log *l = ((recorder *)user)->user2;
    pthread_mutex_lock(&l->mu);
    if (l->n < 16) {
        l->kinds[l->n] = bi->kind;
        l->pending[l->n] = bi->pending_messages;
        l->n++;
    }
    pthread_mutex_unlock(&l->mu);
}

static int bp_count(void *arg)
{
    bp_log *l = arg;
    pthread_mutex_lock(&l->mu);
    int n = l->n;
    pthread_mutex_unlock(&l->mu);
    return n;
}

static int bp_at_least_2(void *arg)
{
    return bp_count(arg) >= 2;
}

/* A send to an offline session over its outbox cap fails with a distinct
 * error, the application is told OUTBOX_FULL, and OUTBOX_OPEN once the client
 * came back and acknowledged. */
TEST(server_backpressure_outbox_full_then_open)
{
    pair p;
    bp_log log;
    tether_session_id id;
    uint8_t buf[32];
    char cdb[512];

    memset(&log, 0, sizeof log);
    pthread_mutex_init(&log.mu, NULL);
    pair_init(&p, NULL, tt_path(cdb, sizeof cdb, "bp-c.db"));
    p.srec.user2 = &log;
    p.scfg.cb.on_backpressure = s_backpressure;
    p.scfg.outbox_max_messages = 4;
    CHECK_OK(start_server(&p));
    CHECK_OK(start_client(&p));
    CHECK_OK(send_tagged(p.c, 1, 64));
    CHECK_OK(tether_client_wait_acked(p.c, WAIT_MS));
    CHECK_OK(tether_client_session(p.c, &id));
    tether_client_destroy(p.c); /* offline; its store keeps the session */
    p.c = NULL;
    for (int i = 0; i < 4; i++) {
        make_payload(buf, sizeof buf, (uint64_t)i + 1);
        CHECK_OK(tether_server_send(p.s, &id, buf, sizeof buf, NULL));
    }
    make_payload(buf, sizeof buf, 5);
    CHECK_ERR(tether_server_send(p.s, &id, buf, sizeof buf, NULL), TETHER_EOUTBOX_FULL);
    CHECK(wait_until(bp_count, &log, WAIT_MS));
    pthread_mutex_lock(&log.mu);
    CHECK_EQ_INT(log.n, 1);
    CHECK_EQ_INT(log.kinds[0], TETHER_BP_OUTBOX_FULL);
    CHECK_EQ_U64(log.pending[0], 4);
    pthread_mutex_unlock(&log.mu);
    /* a second refused send is not reported again */
    CHECK_ERR(tether_server_send(p.s, &id, buf, sizeof buf, NULL), TETHER_EOUTBOX_FULL);
    sleep_ms(50);
    CHECK_EQ_INT(bp_count(&log), 1);
    /* the client comes back, takes the 4 and acknowledges them: room again */
    CHECK_OK(start_client(&p));
    CHECK(rec_wait_count(&p.crec, 4, WAIT_MS));
    CHECK(wait_until(bp_at_least_2, &log, WAIT_MS));
    pthread_mutex_lock(&log.mu);
    CHECK_EQ_INT(log.kinds[1], TETHER_BP_OUTBOX_OPEN);
    CHECK_EQ_U64(log.pending[1], 0);
    pthread_mutex_unlock(&log.mu);
    CHECK_OK(tether_server_send(p.s, &id, buf, sizeof buf, NULL));
    pair_free(&p);
    pthread_mutex_destroy(&log.mu);
}

TEST(refused_connection_is_reported_and_retried)
{
    recorder r;
    tether_client_config cfg;
    tether_client *c = NULL;
    tether_server *s = NULL;
    tether_server_config scfg;
    char url[64];

    /* a port that was just free: bind, read the port, close */
    tether_server_config_init(&scfg);
    CHECK_OK(tether_server_create(&scfg, &s));
    uint16_t port = tether_server_port(s);
    tether_server_destroy(s);

    rec_init(&r);
    tether_client_config_init(&cfg);
    cfg.url = url_for(url, sizeof url, port);
    cfg.backoff_base_ms = 10;
    cfg.backoff_cap_ms = 20;
    cfg.backoff_max_attempts = 3;
    rec_client_callbacks(&cfg, &r);
    CHECK_OK(tether_client_create(&cfg, &c));
    CHECK_OK(tether_client_start(c));
    CHECK(wait_state(&r, TETHER_STATE_STOPPED));
    int err = 0;
    CHECK_EQ_INT(rec_saw_state(&r, TETHER_STATE_RECONNECTING, NULL, NULL, NULL), 3);
    rec_saw_state(&r, TETHER_STATE_DISCONNECTED, &err, NULL, NULL);
    CHECK(err == TETHER_ECONNREFUSED || err == TETHER_ECONNECT);
    rec_saw_state(&r, TETHER_STATE_STOPPED, &err, NULL, NULL);
    CHECK_EQ_INT(err, TETHER_EGIVEUP);
    tether_client_destroy(c);
    rec_free(&r);
}

/* The child of client_sigkill_and_restart_loses_nothing: sends until killed. */
static int child_send(const char *url, const char *db)
{
    tether_client *c = NULL;
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.url = url;
    cfg.db_path = db;
    if (client_create_start(&cfg, &c) != TETHER_OK) {
        return 3;
    }
    send_tagged(c, 200000, 64);
    sleep(60); /* the parent kills us long before this */
    return 4;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc == 4 && strcmp(argv[1], "--child-send") == 0) {
        return child_send(argv[2], argv[3]);
    }
    RUN(both_directions_exactly_once_in_order);
    RUN(idle_peers_acknowledge_after_the_ack_delay_not_at_the_next_ping);
    RUN(large_messages_are_reassembled);
    RUN(server_restart_resumes_without_loss);
    RUN(offline_client_gets_server_messages_on_resume);
    RUN(wrong_resume_token_is_rejected_and_not_retried);
    RUN(server_that_lost_its_store_is_reported_as_mismatch);
    RUN(client_sigkill_and_restart_loses_nothing);
    RUN(config_and_store_errors);
    RUN(outbox_cap_is_reported_and_stores_nothing);
    RUN(refused_connection_is_reported_and_retried);
    RUN(server_backpressure_outbox_full_then_open);
    return tt_finish();
}

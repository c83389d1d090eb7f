/*
 * Server operations over loopback: counters that match a known run exactly,
 * the idle expiry (with a fake clock and sweeps run on demand), session
 * deletion and listing, and the GET /metrics page read with a raw TCP GET.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "itest.h"
#include "server/server_admin.h"
#include "server/server_int.h"

#define WAIT_MS 20000

/* ---- helpers ---- */

/* A fake clock the server reads for idle times. */
static _Atomic uint64_t fake_now = 1000000;

static uint64_t fake_clock(void *arg)
{
    (void)arg;
    return atomic_load(&fake_now);
}

/* What the operations callbacks saw; kept in recorder.user2. */
typedef struct ops_seen {
    atomic_int expired;               /* on_session_expired calls */
    _Atomic uint64_t expired_pending; /* pending_messages of the last one */
    tether_session_id expired_id;     /* its session (written before expired is raised) */
    atomic_int delete_rc;             /* what a delete from on_session_close returned */
    atomic_int delete_calls;          /* deletes tried from on_session_close */
} ops_seen;

static void on_expired(tether_server *s, const tether_session_id *id, uint64_t pending, void *user)
{
    ops_seen *o = ((recorder *)user)->user2;
    o->expired_id = *id;
    atomic_store(&o->expired_pending, pending);
    atomic_fetch_add(&o->expired, 1);
}

/* Creates a server with the fake clock, then starts it. */
static int start_faked(srv *v)
{
    v->cfg.port = v->port;
    int rc = tether_server_create(&v->cfg, &v->s);
    if (rc != TETHER_OK) {
        return rc;
    }
    tether__server_set_clock(v->s, fake_clock, NULL);
    rc = tether_server_start(v->s);
    v->port = tether_server_port(v->s);
    return rc;
}

static int opens_at_least(recorder *r, int n)
{
    pthread_mutex_lock(&r->mu);
    int ok = r->opens >= n;
    pthread_mutex_unlock(&r->mu);
    return ok;
}

typedef struct count_wait {
    recorder *r; /* whose counter */
    int n;       /* at least this */
} count_wait;

static int closes_reached(void *arg)
{
    count_wait *w = arg;
    pthread_mutex_lock(&w->r->mu);
    int ok = w->r->closes >= w->n;
    pthread_mutex_unlock(&w->r->mu);
    return ok;
}

static int opens_reached(void *arg)
{
    count_wait *w = arg;
    return opens_at_least(w->r, w->n);
}

static int wait_closes(recorder *r, int n)
{
    count_wait w = {r, n};
    return wait_until(closes_reached, &w, WAIT_MS);
}

static int wait_opens(recorder *r, int n)
{
    count_wait w = {r, n};
    return wait_until(opens_reached, &w, WAIT_MS);
}

/* GET path over a raw TCP connection; the whole answer into buf. Returns its length or -1. */
static long http_get(uint16_t port, const char *path, char *buf, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    size_t used = 0;
    for (;;) {
        ssize_t r = read(fd, buf + used, len - 1 - used);
        if (r <= 0) {
            break;
        }
        used += (size_t)r;
        if (used == len - 1) {
            break;
        }
    }
    buf[used] = '\0';
    close(fd);
    return (long)used;
}

/* The value of metric name in a Prometheus page, or -1 when absent. */
static long long metric(const char *page, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = page; (p = strstr(p, name)) != NULL; p += n) {
        if ((p == page || p[-1] == '\n') && p[n] == ' ') {
            return atoll(p + n + 1);
        }
    }
    return -1;
}

/* ---- counters ---- */

typedef struct bytes_wait {
    tether_client *c; /* the client */
    tether_server *s; /* the server */
} bytes_wait;

static int wire_balanced(void *arg)
{
    bytes_wait *w = arg;
    tether_client_statistics cs;
    tether_server_statistics ss;
    tether_client_stats(w->c, &cs);
    tether_server_stats(w->s, &ss);
    return cs.bytes_out == ss.bytes_in && ss.bytes_out == cs.bytes_in && ss.messages_acked == 10;
}

static int refused_once(void *arg)
{
    tether_server_statistics ss;
    tether_server_stats(arg, &ss);
    return ss.handshakes_refused >= 1;
}

/* A known run: 100 messages up, 10 down; every counter is exact. */
static void known_run(srv *v, cli *k)
{
    CHECK_OK(cli_start(k));
    CHECK_OK(send_tagged(k->c, 100, 64));
    CHECK_OK(tether_client_wait_acked(k->c, WAIT_MS));
    CHECK(rec_wait_count(&v->rec, 100, WAIT_MS));
    tether_session_id id;
    CHECK_OK(tether_client_session(k->c, &id));
    uint8_t buf[32];
    for (uint64_t i = 1; i <= 10; i++) {
        make_payload(buf, sizeof buf, i);
        CHECK_OK(tether_server_send(v->s, &id, buf, sizeof buf, NULL));
    }
    CHECK(rec_wait_count(&k->rec, 10, WAIT_MS));
    bytes_wait w = {k->c, v->s};
    CHECK(wait_until(wire_balanced, &w, WAIT_MS));
}

TEST(stats_match_a_known_run)
{
    srv v;
    cli k;
    srv_init(&v);
    CHECK_OK(srv_start(&v));
    cli_init(&k, "ws", "127.0.0.1", v.port);
    known_run(&v, &k);

    tether_client_statistics cs;
    tether_server_statistics ss;
    CHECK_OK(tether_client_stats(k.c, &cs));
    CHECK_OK(tether_server_stats(v.s, &ss));
    CHECK_EQ_U64(cs.messages_sent, 100);
    CHECK_EQ_U64(cs.messages_acked, 100);
    CHECK_EQ_U64(cs.pending_messages, 0);
    CHECK_EQ_U64(cs.pending_bytes, 0);
    CHECK_EQ_U64(cs.messages_delivered, 10);
    CHECK_EQ_U64(cs.messages_redelivered, 0);
    CHECK_EQ_U64(cs.connects, 1);
    CHECK_EQ_U64(cs.reconnects, 0);
    CHECK(cs.bytes_out > 100 * 64);
    CHECK(cs.bytes_in > 10 * 32);
    CHECK_EQ_U64(ss.messages_sent, 10);
    CHECK_EQ_U64(ss.messages_acked, 10);
    CHECK_EQ_U64(ss.messages_delivered, 100);
    CHECK_EQ_U64(ss.messages_redelivered, 0);
    CHECK_EQ_U64(ss.pending_messages, 0);
    CHECK_EQ_U64(ss.bytes_in, cs.bytes_out);
    CHECK_EQ_U64(ss.bytes_out, cs.bytes_in);
    CHECK_EQ_U64(ss.sessions, 1);
    CHECK_EQ_U64(ss.sessions_online, 1);
    CHECK_EQ_U64(ss.sessions_offline, 0);
    CHECK_EQ_U64(ss.sessions_opened, 1);
    CHECK_EQ_U64(ss.handshakes_refused, 0);

    /* a second connection of the same session is a reconnect */
    tether_server_destroy(v.s);
    v.s = NULL;
    CHECK_OK(srv_start(&v)); /* memory store: the session is unknown now */
    CHECK(wait_until(refused_once, v.s, WAIT_MS));
    CHECK_OK(tether_server_stats(v.s, &ss));
    CHECK_EQ_U64(ss.sessions_opened, 0);
    CHECK(ss.handshakes_refused >= 1); /* the resumed HELLO of an unknown session */
    CHECK_OK(tether_client_stats(k.c, &cs));
    CHECK(cs.reconnects >= 1);
    CHECK_EQ_U64(cs.connects, 1);
    CHECK_ERR(tether_client_stats(k.c, NULL), TETHER_EINVAL);
    CHECK_ERR(tether_server_stats(NULL, &ss), TETHER_EINVAL);
    cli_free(&k);
    srv_free(&v);
}

/* ---- expiry ---- */

TEST(idle_expiry_config_is_checked)
{
    tether_server_config cfg;
    tether_server *s = NULL;
    tether_server_config_init(&cfg);
    cfg.session_idle_expiry_ms = 999;
    CHECK_ERR(tether_server_create(&cfg, &s), TETHER_ECONFIG);
    CHECK(strstr(tether_errmsg(), "session_idle_expiry_ms") != NULL);
    CHECK(s == NULL);
    cfg.session_idle_expiry_ms = 1000;
    CHECK_OK(tether_server_create(&cfg, &s));
    tether_server_destroy(s);
}

TEST(offline_session_expires_after_the_idle_time_and_resume_is_a_mismatch)
{
    char cdb[512];
    srv v;
    cli k;
    ops_seen o;
    memset(&o, 0, sizeof o);
    srv_init(&v);
    v.rec.user2 = &o;
    v.cfg.session_idle_expiry_ms = 60000;
    v.cfg.cb.on_session_expired = on_expired;
    CHECK_OK(start_faked(&v));
    cli_init(&k, "ws", "127.0.0.1", v.port);
    k.cfg.db_path = tt_path(cdb, sizeof cdb, "expiry-c.db");
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, 5, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    tether_session_id id;
    CHECK_OK(tether_client_session(k.c, &id));

    /* online: never expires, however long */
    atomic_fetch_add(&fake_now, 10 * 60000);
    tether__server_sweep(v.s);
    CHECK_EQ_INT(atomic_load(&o.expired), 0);

    tether_client_destroy(k.c);
    k.c = NULL;
    CHECK(wait_closes(&v.rec, 1));
    uint8_t buf[16];
    for (uint64_t i = 1; i <= 4; i++) {
        make_payload(buf, sizeof buf, i);
        CHECK_OK(tether_server_send(v.s, &id, buf, sizeof buf, NULL));
    }
    atomic_fetch_add(&fake_now, 59999);
    tether__server_sweep(v.s);
    CHECK_EQ_INT(atomic_load(&o.expired), 0);
    uint64_t pending = 0;
    CHECK_OK(tether_server_pending(v.s, &id, &pending, NULL));
    CHECK_EQ_U64(pending, 4);

    atomic_fetch_add(&fake_now, 1);
    tether__server_sweep(v.s);
    CHECK_EQ_INT(atomic_load(&o.expired), 1);
    CHECK_EQ_U64(atomic_load(&o.expired_pending), 4);
    CHECK_MEM(o.expired_id.bytes, id.bytes, 16);
    CHECK_ERR(tether_server_pending(v.s, &id, &pending, NULL), TETHER_ENOTFOUND);
    tether_server_statistics ss;
    CHECK_OK(tether_server_stats(v.s, &ss));
    CHECK_EQ_U64(ss.sessions_expired, 1);
    CHECK_EQ_U64(ss.messages_dropped, 4);
    CHECK_EQ_U64(ss.sessions, 0);
    CHECK_EQ_U64(ss.pending_messages, 0);
    tether__server_sweep(v.s);
    CHECK_EQ_INT(atomic_load(&o.expired), 1); /* once */

    /* the client resumes a session the server no longer knows: a mismatch */
    CHECK_OK(cli_start(&k));
    int err = 0;
    for (int i = 0; i < 2000 && !rec_saw_state(&k.rec, TETHER_STATE_STOPPED, &err, NULL, NULL);
         i++) {
        sleep_ms(10);
    }
    CHECK_EQ_INT(err, TETHER_EMISMATCH);
    CHECK(k.rec.mismatches >= 1);
    CHECK_EQ_INT(k.rec.mismatch.peer_knows_session, 0);
    CHECK(v.rec.mismatches >= 1);
    cli_free(&k);
    srv_free(&v);
}

TEST(sessions_left_by_an_earlier_run_expire_from_the_start)
{
    char sdb[512];
    srv v;
    cli k;
    ops_seen o;
    memset(&o, 0, sizeof o);
    srv_init(&v);
    v.cfg.db_path = tt_path(sdb, sizeof sdb, "expiry-s.db");
    CHECK_OK(srv_start(&v));
    cli_init(&k, "ws", "127.0.0.1", v.port);
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, 3, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    tether_session_id id;
    CHECK_OK(tether_client_session(k.c, &id));
    cli_free(&k);
    CHECK(wait_closes(&v.rec, 1));
    uint8_t buf[16] = {0};
    for (int i = 0; i < 7; i++) {
        CHECK_OK(tether_server_send(v.s, &id, buf, sizeof buf, NULL));
    }
    tether_server_destroy(v.s);
    v.s = NULL;

    /* the next run never loads the session; its idle time starts at create */
    v.rec.user2 = &o;
    v.cfg.session_idle_expiry_ms = 5000;
    v.cfg.cb.on_session_expired = on_expired;
    CHECK_OK(start_faked(&v));
    tether_server_statistics ss;
    CHECK_OK(tether_server_stats(v.s, &ss));
    CHECK_EQ_U64(ss.sessions, 1);
    CHECK_EQ_U64(ss.sessions_offline, 1);
    CHECK_EQ_U64(ss.pending_messages, 7);
    CHECK_EQ_U64(ss.pending_bytes, 7 * 16);
    atomic_fetch_add(&fake_now, 4999);
    tether__server_sweep(v.s);
    CHECK_EQ_INT(atomic_load(&o.expired), 0);
    atomic_fetch_add(&fake_now, 1);
    tether__server_sweep(v.s);
    CHECK_EQ_INT(atomic_load(&o.expired), 1);
    CHECK_EQ_U64(atomic_load(&o.expired_pending), 7);
    CHECK_OK(tether_server_stats(v.s, &ss));
    CHECK_EQ_U64(ss.sessions, 0);
    CHECK_EQ_U64(ss.pending_messages, 0);
    CHECK_EQ_U64(ss.messages_dropped, 7);
    CHECK_ERR(tether_server_acked(v.s, &id, &ss.messages_acked), TETHER_ENOTFOUND);
    srv_free(&v);
}

static int none_loaded(void *arg)
{
    return tether__srv_debug_loaded(arg) == 0;
}

TEST(an_evicted_session_expires_and_a_racing_resume_keeps_it_whole)
{
    char cdb[512];
    srv v;
    cli k;
    ops_seen o;
    memset(&o, 0, sizeof o);
    srv_init(&v);
    v.rec.user2 = &o;
    v.cfg.session_idle_expiry_ms = 60000;
    v.cfg.cb.on_session_expired = on_expired;
    CHECK_OK(start_faked(&v));
    cli_init(&k, "ws", "127.0.0.1", v.port);
    k.cfg.db_path = tt_path(cdb, sizeof cdb, "evict-expiry-c.db");
    CHECK_OK(cli_start(&k));
    CHECK_OK(send_tagged(k.c, 3, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    tether_session_id id;
    CHECK_OK(tether_client_session(k.c, &id));
    tether_client_destroy(k.c);
    k.c = NULL;
    CHECK(wait_closes(&v.rec, 1));

    /* offline and evicted from memory: only the store and its offline time remain */
    CHECK(wait_until(none_loaded, v.s, WAIT_MS));
    atomic_fetch_add(&fake_now, 59999);
    tether__server_sweep(v.s);
    CHECK_EQ_INT(atomic_load(&o.expired), 0);
    CHECK(wait_until(none_loaded, v.s, WAIT_MS)); /* the sweep's look let it go again */
    atomic_fetch_add(&fake_now, 1);
    tether__server_sweep(v.s);
    CHECK_EQ_INT(atomic_load(&o.expired), 1);
    CHECK_MEM(o.expired_id.bytes, id.bytes, 16);
    CHECK_EQ_INT((int)tether__srv_debug_loaded(v.s), 0);
    uint64_t pending = 0;
    CHECK_ERR(tether_server_pending(v.s, &id, &pending, NULL), TETHER_ENOTFOUND);
    cli_free(&k);
    srv_free(&v);

    /* a delete racing a resuming HELLO: either the delete wins (the resume is
     * a mismatch, no open) or the resume does (EONLINE, the session stays) */
    srv_init(&v);
    CHECK_OK(srv_start(&v));
    int opens = 0, closes = 0, deleted = 0, kept = 0;
    for (int i = 0; i < 12; i++) {
        char db[64], path[512];
        snprintf(db, sizeof db, "race-%d-c.db", i);
        cli_init(&k, "ws", "127.0.0.1", v.port);
        k.cfg.db_path = tt_path(path, sizeof path, db);
        CHECK_OK(cli_start(&k));
        CHECK(wait_opens(&v.rec, ++opens));
        /* the client has stored its session (the server opens it before the
         * WELCOME reaches the client): one message acknowledged shows it */
        CHECK_OK(send_tagged(k.c, 1, 64));
        CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
        CHECK_OK(tether_client_session(k.c, &id));
        tether_client_destroy(k.c);
        k.c = NULL;
        CHECK(wait_closes(&v.rec, ++closes));
        cli_free(&k);

        cli_init(&k, "ws", "127.0.0.1", v.port);
        k.cfg.db_path = path;
        CHECK_OK(cli_start(&k));
        sleep_ms((unsigned)(i % 4)); /* 0 to 3 ms: before, at or after the HELLO */
        int rc = tether_server_session_delete(v.s, &id, NULL);
        CHECK(rc == TETHER_OK || rc == TETHER_EONLINE);
        if (rc == TETHER_OK) {
            int err = 0;
            deleted++;
            for (int j = 0; j < 2000 && !rec_saw_state(&k.rec, TETHER_STATE_STOPPED, &err, NULL,
                                                       NULL);
                 j++) {
                sleep_ms(5);
            }
            CHECK_EQ_INT(err, TETHER_EMISMATCH);
            CHECK(!opens_at_least(&v.rec, opens + 1)); /* never opened after it was deleted */
            CHECK_ERR(tether_server_pending(v.s, &id, &pending, NULL), TETHER_ENOTFOUND);
        } else {
            kept++;
            CHECK(wait_opens(&v.rec, ++opens));
            CHECK_OK(tether_server_pending(v.s, &id, &pending, NULL));
            tether_client_destroy(k.c);
            k.c = NULL;
            CHECK(wait_closes(&v.rec, ++closes));
        }
        cli_free(&k);
    }
    CHECK_EQ_INT(deleted + kept, 12);
    srv_free(&v);
}

/* ---- delete and list ---- */

typedef struct listing {
    int n;                              /* sessions seen */
    int online;                         /* of those online */
    tether_server_session_info info[4]; /* the first four */
    int stop_after;                     /* return 1 after this many (0: never) */
} listing;

static int list_cb(tether_server *s, const tether_server_session_info *in, void *user)
{
    listing *l = user;
    if (l->n < 4) {
        l->info[l->n] = *in;
    }
    l->n++;
    l->online += in->online;
    return l->stop_after && l->n >= l->stop_after;
}

static const tether_server_session_info *find_info(const listing *l, const tether_session_id *id)
{
    for (int i = 0; i < l->n && i < 4; i++) {
        if (memcmp(l->info[i].id.bytes, id->bytes, 16) == 0) {
            return &l->info[i];
        }
    }
    return NULL;
}

static void close_deletes(tether_server *s, const tether_session_id *id, int error, void *user)
{
    recorder *r = user;
    ops_seen *o = r->user2;
    atomic_store(&o->delete_rc, tether_server_session_delete(s, id, NULL));
    atomic_fetch_add(&o->delete_calls, 1);
    pthread_mutex_lock(&r->mu);
    r->closes++;
    pthread_mutex_unlock(&r->mu);
}

TEST(sessions_are_listed_and_deleted)
{
    char sdb[512];
    srv v;
    cli a, b;
    srv_init(&v);
    v.cfg.db_path = tt_path(sdb, sizeof sdb, "list-s.db");
    CHECK_OK(srv_start(&v));
    cli_init(&a, "ws", "127.0.0.1", v.port);
    cli_init(&b, "ws", "127.0.0.1", v.port);
    CHECK_OK(cli_start(&a));
    CHECK_OK(cli_start(&b));
    CHECK_OK(send_tagged(a.c, 3, 64));
    CHECK_OK(send_tagged(b.c, 5, 64));
    CHECK_OK(tether_client_wait_acked(a.c, WAIT_MS));
    CHECK_OK(tether_client_wait_acked(b.c, WAIT_MS));
    tether_session_id ia, ib;
    CHECK_OK(tether_client_session(a.c, &ia));
    CHECK_OK(tether_client_session(b.c, &ib));

    listing l;
    memset(&l, 0, sizeof l);
    CHECK_OK(tether_server_sessions(v.s, list_cb, &l));
    CHECK_EQ_INT(l.n, 2);
    CHECK_EQ_INT(l.online, 2);
    const tether_server_session_info *in = find_info(&l, &ib);
    CHECK(in != NULL);
    if (in) {
        CHECK_EQ_U64(in->recv_cursor, 5);
        CHECK_EQ_INT(in->established, 1);
        CHECK_EQ_U64(in->idle_ms, 0);
    }
    memset(&l, 0, sizeof l);
    l.stop_after = 1;
    CHECK_OK(tether_server_sessions(v.s, list_cb, &l));
    CHECK_EQ_INT(l.n, 1);

    /* a connected session is not deleted */
    uint64_t dropped = 99;
    CHECK_ERR(tether_server_session_delete(v.s, &ia, &dropped), TETHER_EONLINE);
    CHECK_EQ_U64(dropped, 0);

    cli_free(&a);
    CHECK(wait_closes(&v.rec, 1));
    uint8_t buf[10] = {0};
    CHECK_OK(tether_server_send(v.s, &ia, buf, sizeof buf, NULL));
    CHECK_OK(tether_server_send(v.s, &ia, buf, sizeof buf, NULL));
    memset(&l, 0, sizeof l);
    CHECK_OK(tether_server_sessions(v.s, list_cb, &l));
    CHECK_EQ_INT(l.online, 1);
    in = find_info(&l, &ia);
    CHECK(in != NULL);
    if (in) {
        CHECK_EQ_INT(in->online, 0);
        CHECK_EQ_U64(in->pending_messages, 2);
        CHECK_EQ_U64(in->pending_bytes, 20);
        CHECK_EQ_U64(in->out_last, 2);
        CHECK_EQ_U64(in->recv_cursor, 3);
    }
    CHECK_OK(tether_server_session_delete(v.s, &ia, &dropped));
    CHECK_EQ_U64(dropped, 2);
    CHECK_ERR(tether_server_session_delete(v.s, &ia, &dropped), TETHER_ENOTFOUND);
    CHECK_ERR(tether_server_send(v.s, &ia, buf, sizeof buf, NULL), TETHER_ENOTFOUND);
    tether_session_id unknown;
    memset(&unknown, 0x5a, sizeof unknown);
    CHECK_ERR(tether_server_session_delete(v.s, &unknown, NULL), TETHER_ENOTFOUND);
    CHECK_ERR(tether_server_session_delete(NULL, &unknown, NULL), TETHER_EINVAL);
    CHECK_ERR(tether_server_session_delete(v.s, NULL, NULL), TETHER_EINVAL);
    CHECK_ERR(tether_server_sessions(v.s, NULL, NULL), TETHER_EINVAL);
    memset(&l, 0, sizeof l);
    CHECK_OK(tether_server_sessions(v.s, list_cb, &l));
    CHECK_EQ_INT(l.n, 1);
    tether_server_statistics ss;
    CHECK_OK(tether_server_stats(v.s, &ss));
    CHECK_EQ_U64(ss.sessions_deleted, 1);
    CHECK_EQ_U64(ss.messages_dropped, 2);
    CHECK_EQ_U64(ss.sessions, 1);

    /* a session only in the store (after a restart) is deleted too */
    cli_free(&b);
    CHECK(wait_closes(&v.rec, 2));
    tether_server_destroy(v.s);
    v.s = NULL;
    CHECK_OK(srv_start(&v));
    CHECK_OK(tether_server_session_delete(v.s, &ib, &dropped));
    CHECK_EQ_U64(dropped, 0);
    memset(&l, 0, sizeof l);
    CHECK_OK(tether_server_sessions(v.s, list_cb, &l));
    CHECK_EQ_INT(l.n, 0);
    srv_free(&v);
}

TEST(delete_from_a_callback_or_during_destroy_is_refused)
{
    srv v;
    cli k;
    ops_seen o;
    memset(&o, 0, sizeof o);
    srv_init(&v);
    v.rec.user2 = &o;
    v.cfg.cb.on_session_close = close_deletes;
    CHECK_OK(srv_start(&v));
    cli_init(&k, "ws", "127.0.0.1", v.port);
    CHECK_OK(cli_start(&k));
    CHECK(wait_opens(&v.rec, 1));
    cli_free(&k);
    CHECK(wait_closes(&v.rec, 1));
    CHECK_EQ_INT(atomic_load(&o.delete_rc), TETHER_EINVAL);

    cli_init(&k, "ws", "127.0.0.1", v.port);
    CHECK_OK(cli_start(&k));
    CHECK(wait_opens(&v.rec, 2));
    tether_server_destroy(v.s); /* its closes see a server shutting down */
    v.s = NULL;
    CHECK_EQ_INT(atomic_load(&o.delete_calls), 2);
    CHECK_EQ_INT(atomic_load(&o.delete_rc), TETHER_ECLOSED);
    cli_free(&k);
    srv_free(&v);
}

/* ---- GET /metrics ---- */

TEST(metrics_page_shows_the_counters)
{
    srv v;
    cli k;
    char page[16384];
    srv_init(&v);
    v.cfg.metrics_http = 1;
    CHECK_OK(srv_start(&v));
    cli_init(&k, "ws", "127.0.0.1", v.port);
    known_run(&v, &k);
    tether_server_statistics ss;
    CHECK_OK(tether_server_stats(v.s, &ss));

    CHECK(http_get(v.port, "/metrics", page, sizeof page) > 0);
    CHECK(strncmp(page, "HTTP/1.1 200", 12) == 0);
    CHECK(strstr(page, "text/plain; version=0.0.4") != NULL);
    CHECK(strstr(page, "# TYPE tether_messages_delivered_total counter\n") != NULL);
    CHECK(strstr(page, "# HELP tether_messages_delivered_total ") != NULL);
    CHECK(strstr(page, "# TYPE tether_sessions_online gauge\n") != NULL);
    CHECK_EQ_INT(metric(page, "tether_messages_delivered_total"), 100);
    CHECK_EQ_INT(metric(page, "tether_messages_sent_total"), 10);
    CHECK_EQ_INT(metric(page, "tether_messages_acked_total"), 10);
    CHECK_EQ_INT(metric(page, "tether_messages_redelivered_total"), 0);
    CHECK_EQ_INT(metric(page, "tether_sessions"), 1);
    CHECK_EQ_INT(metric(page, "tether_sessions_online"), 1);
    CHECK_EQ_INT(metric(page, "tether_sessions_offline"), 0);
    CHECK_EQ_INT(metric(page, "tether_sessions_opened_total"), 1);
    CHECK_EQ_INT(metric(page, "tether_outbox_pending_messages"), 0);
    CHECK_EQ_INT(metric(page, "tether_received_bytes_total"), (long long)ss.bytes_in);
    CHECK_EQ_INT(metric(page, "tether_sent_bytes_total"), (long long)ss.bytes_out);
    CHECK_EQ_INT(metric(page, "tether_handshakes_refused_total"), 0);
    /* every metric has its HELP and TYPE, and every name is tether_ */
    int samples = 0;
    for (const char *p = strstr(page, "\r\n\r\n"); p && *p; p = strchr(p, '\n')) {
        p += *p == '\n' ? 1 : 4;
        if (*p && *p != '#') {
            samples++;
            CHECK(strncmp(p, "tether_", 7) == 0);
        }
    }
    CHECK_EQ_INT(samples, 16);

    /* other paths keep the 426 (not an upgrade, not the carriage) */
    CHECK(http_get(v.port, "/other", page, sizeof page) > 0);
    CHECK(strncmp(page, "HTTP/1.1 426", 12) == 0);
    cli_free(&k);
    srv_free(&v);

    /* off by default */
    srv_init(&v);
    CHECK_OK(srv_start(&v));
    CHECK(http_get(v.port, "/metrics", page, sizeof page) > 0);
    CHECK(strncmp(page, "HTTP/1.1 426", 12) == 0);
    srv_free(&v);
}

TEST(metrics_render_reports_the_needed_length)
{
    tether_server_statistics st;
    memset(&st, 0, sizeof st);
    st.messages_sent = 12345;
    size_t need = tether__srv_metrics_render(&st, NULL, 0);
    char small[64];
    CHECK_EQ_U64(tether__srv_metrics_render(&st, small, sizeof small), need);
    char *big = malloc(need + 1);
    CHECK(big != NULL);
    if (big) {
        CHECK_EQ_U64(tether__srv_metrics_render(&st, big, need + 1), need);
        CHECK_EQ_INT(metric(big, "tether_messages_sent_total"), 12345);
        free(big);
    }
}

/* A reply sent from on_message while the server is being destroyed is
 * stored: the message it answers is committed as delivered, so losing the
 * reply would lose it for good (tether serve --echo at SIGTERM). */
static struct {
    tether_server *s;
    _Atomic int inside, rc;
} drain;

static void on_msg_drain(tether_server *s, const tether_session_id *id, uint64_t seq,
                         const void *data, size_t len, int redelivered, void *user)
{
    (void)seq, (void)redelivered, (void)user;
    atomic_store(&drain.inside, 1);
    for (int i = 0; i < 4000 && !atomic_load(&s->stopping); i++) {
        sleep_ms(5); /* until destroy() began */
    }
    atomic_store(&drain.rc, tether_server_send(s, id, data, len, NULL));
}

static void *destroy_it(void *arg)
{
    tether_server_destroy(arg);
    return NULL;
}

TEST(a_reply_from_on_message_during_destroy_is_stored)
{
    srv v;
    cli k;
    char sdb[512], cdb[512];
    srv_init(&v);
    v.cfg.db_path = tt_path(sdb, sizeof sdb, "drain-s.db");
    v.cfg.cb.on_message = on_msg_drain;
    atomic_store(&drain.rc, -1000);
    CHECK_OK(srv_start(&v));
    cli_init(&k, "ws", "127.0.0.1", v.port);
    k.cfg.db_path = tt_path(cdb, sizeof cdb, "drain-c.db");
    CHECK_OK(cli_start(&k));
    tether_session_id id;
    CHECK_OK(tether_client_session(k.c, &id));
    CHECK_OK(send_tagged(k.c, 1, 64));
    for (int i = 0; i < 4000 && !atomic_load(&drain.inside); i++) {
        sleep_ms(5);
    }
    CHECK(atomic_load(&drain.inside));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, destroy_it, v.s) == 0);
    pthread_join(t, NULL);
    v.s = NULL;
    CHECK_EQ_INT(atomic_load(&drain.rc), TETHER_OK);
    cli_free(&k);
    /* the reply waits in the session's outbox */
    v.cfg.cb.on_message = NULL;
    rec_server_callbacks(&v.cfg, &v.rec);
    CHECK_OK(srv_start(&v));
    uint64_t pending = 0;
    CHECK_OK(tether_server_pending(v.s, &id, &pending, NULL));
    CHECK_EQ_U64(pending, 1);
    srv_free(&v);
}

int main(void)
{
    RUN(stats_match_a_known_run);
    RUN(idle_expiry_config_is_checked);
    RUN(offline_session_expires_after_the_idle_time_and_resume_is_a_mismatch);
    RUN(sessions_left_by_an_earlier_run_expire_from_the_start);
    RUN(an_evicted_session_expires_and_a_racing_resume_keeps_it_whole);
    RUN(sessions_are_listed_and_deleted);
    RUN(delete_from_a_callback_or_during_destroy_is_refused);
    RUN(metrics_page_shows_the_counters);
    RUN(metrics_render_reports_the_needed_length);
    RUN(a_reply_from_on_message_during_destroy_is_stored);
    return tt_finish();
}

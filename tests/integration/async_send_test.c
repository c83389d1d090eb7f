/*
 * The client's send path: group commit across threads, asynchronous sends
 * with on_stored and flush, waiting for room, destroy while a sender waits,
 * store failures, and a SIGKILL between an asynchronous send and its commit.
 *
 * Commits are counted with the client's own counter (tether__client_commits);
 * to make sharing deterministic a test holds the client's lock while senders
 * stage their messages, so that one commit must take them all.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "itest.h"

#include "client/client_int.h"
#include "store/store_testhooks.h"

#define WAIT_MS 20000
#define MAX_RANGES 64

/* What on_stored / on_store_failed reported. */
typedef struct ranges {
    pthread_mutex_t mu;
    uint64_t first[MAX_RANGES]; /* each range's first seq */
    uint64_t last[MAX_RANGES];  /* ... and last */
    int n;                      /* ranges stored */
    uint64_t failed_first;      /* the last failed range */
    uint64_t failed_last;
    int failed_err;             /* its error */
    int failed_n;               /* failed ranges */
    int fd;                     /* > 0: write each stored last seq here (child) */
} ranges;

static void on_stored(tether_client *c, uint64_t first, uint64_t last, void *user)
{
    ranges *r = user;
    pthread_mutex_lock(&r->mu);
    if (r->n < MAX_RANGES) {
        r->first[r->n] = first;
        r->last[r->n] = last;
    }
    r->n++;
    pthread_mutex_unlock(&r->mu);
    if (r->fd > 0) {
        /* non-blocking: a full pipe loses reports, which only weakens the check */
        ssize_t w = write(r->fd, &last, sizeof last);
        (void)w;
    }
}

static void on_store_failed(tether_client *c, uint64_t first, uint64_t last, int err, void *user)
{
    ranges *r = user;
    pthread_mutex_lock(&r->mu);
    r->failed_first = first;
    r->failed_last = last;
    r->failed_err = err;
    r->failed_n++;
    pthread_mutex_unlock(&r->mu);
}

static void cfg_offline(tether_client_config *cfg, const char *db, ranges *r)
{
    tether_client_config_init(cfg);
    cfg->url = "ws://127.0.0.1:9/";
    cfg->db_path = db;
    cfg->cb.on_stored = on_stored;
    cfg->cb.on_store_failed = on_store_failed;
    cfg->user = r;
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
}

static uint64_t inflight(tether_client *c)
{
    pthread_mutex_lock(&c->sq.mu);
    uint64_t n = c->sq.inflight_n;
    pthread_mutex_unlock(&c->sq.mu);
    return n;
}

typedef struct staged_wait {
    tether_client *c;
    uint64_t n;
} staged_wait;

static int staged_reached(void *arg)
{
    staged_wait *w = arg;
    return inflight(w->c) >= w->n;
}

/* ---- group commit across threads ---- */

#define THREADS 6

typedef struct sender {
    tether_client *c;
    int rc;
    uint64_t seq;
} sender;

static void *send_one(void *arg)
{
    sender *s = arg;
    uint8_t p[16];
    make_payload(p, sizeof p, 0);
    s->rc = tether_client_send(s->c, p, sizeof p, &s->seq);
    return NULL;
}

TEST(concurrent_sends_share_one_commit)
{
    char db[512];
    ranges r;
    tether_client_config cfg;
    tether_client *c = NULL;
    cfg_offline(&cfg, tt_path(db, sizeof db, "group.db"), &r);
    CHECK_OK(tether_client_create(&cfg, &c));
    CHECK_OK(tether_client_send(c, "a", 1, NULL));
    unsigned long before = tether__client_commits(c);

    /* While we hold the client's lock, every sender stages its message and
     * waits to commit; the first to get the lock commits them all. */
    pthread_t th[THREADS];
    sender s[THREADS];
    lock(c);
    for (int i = 0; i < THREADS; i++) {
        s[i] = (sender){c, 99, 0};
        CHECK_OK(pthread_create(&th[i], NULL, send_one, &s[i]));
    }
    staged_wait w = {c, THREADS};
    CHECK(wait_until(staged_reached, &w, WAIT_MS));
    unlock(c);
    int seen[THREADS + 2] = {0};
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        CHECK_OK(s[i].rc);
        CHECK(s[i].seq >= 2 && s[i].seq <= THREADS + 1);
        if (s[i].seq >= 2 && s[i].seq <= THREADS + 1) {
            seen[s[i].seq]++;
        }
    }
    for (int i = 2; i <= THREADS + 1; i++) {
        CHECK_EQ_INT(seen[i], 1);
    }
    CHECK_EQ_U64(tether__client_commits(c) - before, 1);
    uint64_t pending = 0, last = 0;
    CHECK_OK(tether_client_pending(c, &pending, NULL));
    CHECK_EQ_U64(pending, THREADS + 1);
    CHECK_OK(tether_client_last_seq(c, &last));
    CHECK_EQ_U64(last, THREADS + 1);
    /* on_stored: the first send, then the shared commit */
    CHECK_EQ_INT(r.n, 2);
    CHECK_EQ_U64(r.first[1], 2);
    CHECK_EQ_U64(r.last[1], THREADS + 1);
    tether_client_destroy(c);

    /* the store holds them all after a reopen */
    CHECK_OK(tether_client_create(&cfg, &c));
    CHECK_OK(tether_client_pending(c, &pending, NULL));
    CHECK_EQ_U64(pending, THREADS + 1);
    tether_client_destroy(c);
}

/* ---- asynchronous sends ---- */

TEST(async_sends_stored_in_groups_ranges_exact)
{
    char db[512];
    ranges r;
    tether_client_config cfg;
    tether_client *c = NULL;
    cfg_offline(&cfg, tt_path(db, sizeof db, "async.db"), &r);
    cfg.commit_max_messages = 10;
    cfg.commit_delay_us = 1000000; /* only full groups and flush commit */
    CHECK_OK(tether_client_create(&cfg, &c));
    unsigned long before = tether__client_commits(c);

    lock(c); /* nothing commits until we let go */
    for (uint64_t i = 1; i <= 25; i++) {
        uint8_t p[12];
        make_payload(p, sizeof p, i);
        uint64_t seq = 0;
        CHECK_OK(tether_client_send_async(c, p, sizeof p, &seq));
        CHECK_EQ_U64(seq, i);
    }
    uint64_t last = 0;
    CHECK_OK(tether_client_last_seq(c, &last));
    CHECK_EQ_U64(last, 25);
    CHECK_EQ_INT(r.n, 0);
    unlock(c);
    CHECK_OK(tether_client_flush(c, WAIT_MS));
    /* one round took all 25, in transactions of at most 10 */
    CHECK_EQ_U64(tether__client_commits(c) - before, 3);
    CHECK_EQ_INT(r.n, 3);
    uint64_t want_first[] = {1, 11, 21}, want_last[] = {10, 20, 25};
    for (int i = 0; i < 3 && i < r.n; i++) {
        CHECK_EQ_U64(r.first[i], want_first[i]);
        CHECK_EQ_U64(r.last[i], want_last[i]);
    }
    /* a synchronous send after them continues the numbering */
    uint64_t seq = 0;
    CHECK_OK(tether_client_send(c, "z", 1, &seq));
    CHECK_EQ_U64(seq, 26);
    CHECK_EQ_INT(r.n, 4);
    uint64_t pending = 0;
    CHECK_OK(tether_client_pending(c, &pending, NULL));
    CHECK_EQ_U64(pending, 26);
    /* flush with nothing waiting returns at once */
    CHECK_OK(tether_client_flush(c, 0));
    tether_client_destroy(c);
}

TEST(destroy_commits_what_waits)
{
    char db[512];
    ranges r;
    tether_client_config cfg;
    tether_client *c = NULL;
    cfg_offline(&cfg, tt_path(db, sizeof db, "destroy.db"), &r);
    cfg.commit_delay_us = 1000000;
    CHECK_OK(tether_client_create(&cfg, &c));
    for (int i = 0; i < 5; i++) {
        CHECK_OK(tether_client_send_async(c, "m", 1, NULL));
    }
    tether_client_destroy(c);
    CHECK_EQ_INT(r.n, 1);
    CHECK_EQ_U64(r.first[0], 1);
    CHECK_EQ_U64(r.last[0], 5);
    CHECK_OK(tether_client_create(&cfg, &c));
    uint64_t pending = 0;
    CHECK_OK(tether_client_pending(c, &pending, NULL));
    CHECK_EQ_U64(pending, 5);
    CHECK_ERR(tether_client_send_async(NULL, "m", 1, NULL), TETHER_EINVAL);
    CHECK_ERR(tether_client_send_async(c, NULL, 1, NULL), TETHER_EINVAL);
    CHECK_ERR(tether_client_send_wait(c, NULL, 1, NULL, 10), TETHER_EINVAL);
    CHECK_ERR(tether_client_flush(NULL, 10), TETHER_EINVAL);
    tether_client_destroy(c);
}

/* ---- caps, waiting for room, destroy while waiting ---- */

TEST(send_wait_times_out_at_the_cap)
{
    char db[512];
    ranges r;
    tether_client_config cfg;
    tether_client *c = NULL;
    cfg_offline(&cfg, tt_path(db, sizeof db, "cap.db"), &r);
    cfg.outbox_max_messages = 3;
    CHECK_OK(tether_client_create(&cfg, &c));
    CHECK_OK(tether_client_send_async(c, "1", 1, NULL));
    CHECK_OK(tether_client_send(c, "2", 1, NULL));
    CHECK_OK(tether_client_send_async(c, "3", 1, NULL));
    /* staged and stored messages both count against the cap */
    CHECK_ERR(tether_client_send_async(c, "4", 1, NULL), TETHER_EOUTBOX_FULL);
    CHECK_ERR(tether_client_send(c, "4", 1, NULL), TETHER_EOUTBOX_FULL);
    uint64_t seq = 77;
    CHECK_ERR(tether_client_send_wait(c, "4", 1, &seq, 50), TETHER_ETIMEDOUT);
    CHECK_EQ_U64(seq, 77);
    CHECK_OK(tether_client_flush(c, WAIT_MS));
    uint64_t last = 0;
    CHECK_OK(tether_client_last_seq(c, &last));
    CHECK_EQ_U64(last, 3);
    tether_client_destroy(c);
}

typedef struct waiter {
    tether_client *c;
    int rc;
} waiter;

static void *wait_send(void *arg)
{
    waiter *w = arg;
    w->rc = tether_client_send_wait(w->c, "x", 1, NULL, 60000);
    return NULL;
}

static int room_waiting(void *arg)
{
    tether_client *c = arg;
    pthread_mutex_lock(&c->sq.mu);
    int n = c->sq.room_waiting;
    pthread_mutex_unlock(&c->sq.mu);
    return n > 0;
}

TEST(destroy_wakes_a_waiting_sender_with_eclosed)
{
    char db[512];
    ranges r;
    tether_client_config cfg;
    tether_client *c = NULL;
    cfg_offline(&cfg, tt_path(db, sizeof db, "wake.db"), &r);
    cfg.wait_max_pending = 2;
    CHECK_OK(tether_client_create(&cfg, &c));
    CHECK_OK(tether_client_send(c, "1", 1, NULL));
    CHECK_OK(tether_client_send(c, "2", 1, NULL));
    /* no cap is set: the async form goes on, the waiting form waits */
    CHECK_OK(tether_client_send_async(c, "3", 1, NULL));
    waiter w = {c, 99};
    pthread_t th;
    CHECK_OK(pthread_create(&th, NULL, wait_send, &w));
    CHECK(wait_until(room_waiting, c, WAIT_MS));
    tether_client_destroy(c);
    pthread_join(th, NULL);
    CHECK_EQ_INT(w.rc, TETHER_ECLOSED);
    CHECK(w.rc != TETHER_ETIMEDOUT);
    CHECK_OK(tether_client_create(&cfg, &c));
    uint64_t pending = 0;
    CHECK_OK(tether_client_pending(c, &pending, NULL));
    CHECK_EQ_U64(pending, 3);
    tether_client_destroy(c);
}

TEST(group_commit_config_out_of_range_is_refused)
{
    tether_client_config cfg;
    tether_client *c = NULL;
    tether_client_config_init(&cfg);
    cfg.url = "ws://127.0.0.1:9/";
    cfg.commit_delay_us = 1000001;
    CHECK_ERR(tether_client_create(&cfg, &c), TETHER_ECONFIG);
    cfg.commit_delay_us = 0;
    cfg.commit_max_messages = 65537;
    CHECK_ERR(tether_client_create(&cfg, &c), TETHER_ECONFIG);
    cfg.commit_max_messages = 0;
    cfg.commit_max_bytes = (64u << 20) + 1;
    CHECK_ERR(tether_client_create(&cfg, &c), TETHER_ECONFIG);
    cfg.commit_max_bytes = 64u << 20;
    cfg.commit_max_messages = 65536;
    cfg.commit_delay_us = 1000000;
    CHECK_OK(tether_client_create(&cfg, &c));
    tether_client_destroy(c);
}

/* ---- a store failure ---- */

TEST(failed_async_commit_is_reported_and_numbers_reused)
{
    char db[512];
    ranges r;
    tether_client_config cfg;
    tether_client *c = NULL;
    cfg_offline(&cfg, tt_path(db, sizeof db, "full.db"), &r);
    cfg.commit_delay_us = 1000000;
    CHECK_OK(tether_client_create(&cfg, &c));
    CHECK_OK(tether_client_send(c, "a", 1, NULL));
    /* the database may not grow: a large message cannot be stored */
    lock(c);
    CHECK_OK(tether__store_sqlite_set_max_pages(c->store, 1));
    unlock(c);
    static uint8_t big[200000];
    uint64_t s1 = 0, s2 = 0;
    lock(c);
    CHECK_OK(tether_client_send_async(c, big, sizeof big, &s1));
    CHECK_OK(tether_client_send_async(c, "b", 1, &s2));
    unlock(c);
    CHECK_EQ_U64(s1, 2);
    CHECK_EQ_U64(s2, 3);
    int rc = tether_client_flush(c, WAIT_MS);
    CHECK(rc == TETHER_ESTORE_FULL || rc == TETHER_ESTORE);
    CHECK_EQ_INT(r.failed_n, 1);
    CHECK_EQ_U64(r.failed_first, 2);
    CHECK_EQ_U64(r.failed_last, 3);
    CHECK_EQ_INT(r.failed_err, rc);
    /* reported once */
    CHECK_OK(tether_client_flush(c, WAIT_MS));
    uint64_t last = 0;
    CHECK_OK(tether_client_last_seq(c, &last));
    CHECK_EQ_U64(last, 1);
    /* a synchronous send in a failing commit gets the error itself */
    CHECK(tether_client_send(c, big, sizeof big, NULL) < 0);
    lock(c);
    CHECK_OK(tether__store_sqlite_set_max_pages(c->store, 1000000));
    unlock(c);
    uint64_t seq = 0;
    CHECK_OK(tether_client_send(c, "c", 1, &seq));
    CHECK_EQ_U64(seq, 2);
    tether_client_destroy(c);
}

/* ---- over the network ---- */

typedef struct net {
    recorder srec;
    tether_server *s;
    char url[64];
    uint16_t port;
} net;

static void net_start(net *n, const char *sdb)
{
    tether_server_config scfg;
    memset(n, 0, sizeof *n);
    rec_init(&n->srec);
    tether_server_config_init(&scfg);
    scfg.db_path = sdb;
    rec_server_callbacks(&scfg, &n->srec);
    CHECK_OK(tether_server_create(&scfg, &n->s));
    n->port = tether_server_port(n->s);
    CHECK_OK(tether_server_start(n->s));
    url_for(n->url, sizeof n->url, n->port);
}

static void net_free(net *n)
{
    tether_server_destroy(n->s);
    rec_free(&n->srec);
}

TEST(send_wait_unblocks_when_acks_arrive)
{
    char db[512], sdb[512];
    ranges r;
    net n;
    net_start(&n, tt_path(sdb, sizeof sdb, "wait-s.db"));
    tether_client_config cfg;
    tether_client *c = NULL;
    cfg_offline(&cfg, tt_path(db, sizeof db, "wait-c.db"), &r);
    cfg.url = n.url;
    cfg.outbox_max_messages = 4;
    CHECK_OK(tether_client_create(&cfg, &c));
    for (uint64_t i = 1; i <= 4; i++) {
        uint8_t p[16];
        make_payload(p, sizeof p, i);
        CHECK_OK(tether_client_send_async(c, p, sizeof p, NULL));
    }
    /* not started: no ack can come */
    CHECK_ERR(tether_client_send_wait(c, "x", 1, NULL, 20), TETHER_ETIMEDOUT);
    CHECK_OK(tether_client_start(c));
    /* 200 more through a 4-message outbox: each waits for acks */
    for (uint64_t i = 5; i <= 200; i++) {
        uint8_t p[16];
        make_payload(p, sizeof p, i);
        uint64_t seq = 0;
        CHECK_OK(tether_client_send_wait(c, p, sizeof p, &seq, WAIT_MS));
        CHECK_EQ_U64(seq, i);
    }
    CHECK_OK(tether_client_flush(c, WAIT_MS));
    CHECK_OK(tether_client_wait_acked(c, WAIT_MS));
    rec_check_exact(&n.srec, 200, "server, send_wait through a small outbox");
    tether_client_destroy(c);
    net_free(&n);
}

/* Child: sends asynchronously without end, reporting each on_stored last
 * seq on fd; payloads are tagged with their seq. */
static int child_async(const char *url, const char *db, int fd)
{
    ranges r;
    tether_client_config cfg;
    tether_client *c = NULL;
    cfg_offline(&cfg, db, &r);
    r.fd = fd;
    cfg.url = url;
    cfg.durability = TETHER_DURABILITY_NORMAL;
    if (tether_client_create(&cfg, &c) != TETHER_OK || tether_client_start(c) != TETHER_OK) {
        return 2;
    }
    for (uint64_t i = 1;; i++) {
        uint8_t p[32];
        make_payload(p, sizeof p, i);
        uint64_t seq = 0;
        if (tether_client_send_wait(c, p, sizeof p, &seq, 60000) != TETHER_OK || seq != i) {
            return 4;
        }
    }
}

static uint64_t max_delivered(recorder *rec)
{
    pthread_mutex_lock(&rec->mu);
    uint64_t hi = 0;
    for (uint64_t i = 0; i < rec->n; i++) {
        hi = rec->seqs[i] > hi ? rec->seqs[i] : hi;
    }
    pthread_mutex_unlock(&rec->mu);
    return hi;
}

TEST(sigkill_during_async_sends_loses_only_unstored_and_reuses_no_seq)
{
    char db[512], sdb[512];
    net n;
    net_start(&n, tt_path(sdb, sizeof sdb, "kill-s.db"));
    tt_path(db, sizeof db, "kill-c.db");
    int fds[2];
    CHECK_OK(pipe(fds));
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        if (fds[1] != 3) {
            dup2(fds[1], 3);
            close(fds[1]);
        }
        fcntl(3, F_SETFL, O_NONBLOCK);
        execl("/proc/self/exe", "async_send_test", "--child-async", n.url, db, "3",
              (char *)NULL);
        _exit(127);
    }
    CHECK(pid > 0);
    close(fds[1]);
    CHECK(rec_wait_count(&n.srec, 2000, WAIT_MS));
    kill(pid, SIGKILL);
    int status = 0;
    CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
    CHECK(WIFSIGNALED(status));
    uint64_t stored_hi = 0, v;
    while (read(fds[0], &v, sizeof v) == sizeof v) {
        CHECK(v > stored_hi);
        stored_hi = v;
    }
    close(fds[0]);
    uint64_t delivered_hi = max_delivered(&n.srec);
    CHECK(stored_hi >= 2000);

    /* restart on the same store: what on_stored reported, and everything the
     * server saw, is there; the numbering goes on after it */
    ranges r;
    tether_client_config cfg;
    tether_client *c = NULL;
    cfg_offline(&cfg, db, &r);
    cfg.url = n.url;
    CHECK_OK(tether_client_create(&cfg, &c));
    uint64_t last = 0;
    CHECK_OK(tether_client_last_seq(c, &last));
    CHECK(last >= stored_hi);
    CHECK(last >= delivered_hi);
    CHECK_OK(tether_client_start(c));
    CHECK_OK(send_tagged(c, 100, 24));
    CHECK_OK(tether_client_wait_acked(c, WAIT_MS));
    /* every seq once, in order, each with the payload made for it */
    rec_check_exact(&n.srec, last + 100, "server after a SIGKILL during async sends");
    tether_client_destroy(c);
    net_free(&n);
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--child-async") == 0) {
        return child_async(argv[2], argv[3], atoi(argv[4]));
    }
    RUN(concurrent_sends_share_one_commit);
    RUN(async_sends_stored_in_groups_ranges_exact);
    RUN(destroy_commits_what_waits);
    RUN(send_wait_times_out_at_the_cap);
    RUN(destroy_wakes_a_waiting_sender_with_eclosed);
    RUN(group_commit_config_out_of_range_is_refused);
    RUN(failed_async_commit_is_reported_and_numbers_reused);
    RUN(send_wait_unblocks_when_acks_arrive);
    RUN(sigkill_during_async_sends_loses_only_unstored_and_reuses_no_seq);
    return tt_finish();
}

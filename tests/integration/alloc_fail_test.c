/*
 * Out of memory everywhere: one whole life of a server and a client over
 * loopback (create, start, the client sends, the server sends back, both
 * wait for the acks, destroy), run again and again with the k-th allocation
 * failing (common/alloc.h counts tether's own allocations and, routed
 * through it, SQLite's), for the memory stores and for SQLite stores.
 *
 * For every k until a run completes without reaching its k-th allocation:
 * - an API call that hit the failure returns TETHER_ENOMEM, and a failed send
 *   stored nothing; the same call made again succeeds (the failure is
 *   one-shot);
 * - a failure on a service thread may cost a connection, never a message:
 *   every message is delivered in order, once, except for redeliveries the
 *   receiver is told about (the documented window between delivery and the
 *   cursor commit), and every message is acknowledged;
 * - with SQLite, the stores reopened afterwards hold exactly what was
 *   committed (all sent, all acked);
 * - nothing crashes, and under ASan/LSan nothing leaks.
 *
 * Coverage: a first run with nothing failing counts the allocations up to
 * the end of tether_client_create() (SQLite: about 3600, nearly all of them
 * SQLite preparing its statements; memory: 14). The walk then fails every k
 * from 1 to DENSE_HEAD, every STRIDE-th k up to that count, and every k after
 * it (start, sends, the service threads, destroy) until a run completes
 * without reaching k. The summary line per store says what was run.
 */
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <tether/tether.h>

#include "common/alloc.h"
#include "common/util.h"
#include "harness.h"
#include "itest.h"
#include "store/store_testhooks.h"

#define CLIENT_MSGS 5u     /* client -> server messages per run */
#define SERVER_MSGS 3u     /* server -> client messages per run */
#define RUN_WAIT_MS 20000u /* bound for one run's deliveries and acks */
#define DENSE_HEAD 100u    /* every k up to here */
#define STRIDE 47u         /* then every STRIDE-th until the client is created */
#define K_MAX 200000u      /* a walk longer than this is a failure */

/* What one run saw, written by the callbacks. */
typedef struct seen {
    pthread_mutex_t mu;
    uint64_t srv_next;    /* next seq the server application expects */
    uint64_t cli_next;    /* next seq the client application expects */
    uint64_t redelivered; /* flagged repeats of earlier deliveries */
    int bad;              /* deliveries out of order, unflagged repeats, wrong payloads */
    char why[200];        /* the first of them */
    int opened;           /* the server saw the session open */
    tether_session_id id; /* which */
    char last_state[200]; /* the client's last state report, for a failure's message */
} seen;

static seen sn = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void payload(char *buf, size_t len, char who, uint64_t seq)
{
    snprintf(buf, len, "%c%08llu", who, (unsigned long long)seq);
}

/* Lock held. */
static void deliver(uint64_t *next, char who, uint64_t seq, const void *data, size_t len,
                    int redelivered)
{
    char want[16];
    payload(want, sizeof want, who, seq);
    if (len != strlen(want) || memcmp(data, want, len) != 0) {
        if (!sn.bad++) {
            snprintf(sn.why, sizeof sn.why, "%c seq %llu has the wrong payload", who,
                     (unsigned long long)seq);
        }
    } else if (seq == *next) {
        (*next)++;
    } else if (seq < *next && redelivered) {
        sn.redelivered++;
    } else if (!sn.bad++) {
        snprintf(sn.why, sizeof sn.why, "%c seq %llu delivered when %llu was due (redelivered %d)",
                 who, (unsigned long long)seq, (unsigned long long)*next, redelivered);
    }
}

static void s_message(tether_server *s, const tether_session_id *id, uint64_t seq, const void *data,
                      size_t len, int redelivered, void *user)
{
    pthread_mutex_lock(&sn.mu);
    deliver(&sn.srv_next, 'c', seq, data, len, redelivered);
    pthread_mutex_unlock(&sn.mu);
}

static void s_open(tether_server *s, const tether_session_id *id, int resumed, void *user)
{
    pthread_mutex_lock(&sn.mu);
    sn.opened = 1;
    sn.id = *id;
    pthread_mutex_unlock(&sn.mu);
}

static void c_message(tether_client *c, uint64_t seq, const void *data, size_t len, int redelivered,
                      void *user)
{
    pthread_mutex_lock(&sn.mu);
    deliver(&sn.cli_next, 's', seq, data, len, redelivered);
    pthread_mutex_unlock(&sn.mu);
}

/* With TETHER_TEST_VERBOSE set, the client's states on stderr. */
static void c_state(tether_client *c, const tether_state_info *in, void *user)
{
    pthread_mutex_lock(&sn.mu);
    snprintf(sn.last_state, sizeof sn.last_state, "state %d %s reject %d: %s", in->state,
             tether_err_name(in->error), in->reject_code, in->detail);
    pthread_mutex_unlock(&sn.mu);
    if (getenv("TETHER_TEST_VERBOSE")) {
        fprintf(stderr, "    client state %d %s reject %d: %s\n", in->state,
                tether_err_name(in->error), in->reject_code, in->detail);
    }
}

static void s_close(tether_server *s, const tether_session_id *id, int error, void *user)
{
    if (getenv("TETHER_TEST_VERBOSE")) {
        fprintf(stderr, "    server session closed: %s\n", tether_err_name(error));
    }
}

/* One run's bookkeeping of API failures. */
typedef struct run {
    uint64_t k;        /* the allocation that fails */
    int sqlite;        /* SQLite stores (else memory) */
    int api_failures;  /* API calls that returned an error */
    const char *where; /* the call that failed, for the summary */
    int broken;        /* a check failed: stop the walk */
    uint64_t allocs;   /* allocations the run numbered */
    uint64_t created;  /* allocations numbered when the client was created */
} run;

#define RUN_FAIL(r, ...)                                                                           \
    do {                                                                                           \
        tt_fail(__FILE__, __LINE__, __VA_ARGS__);                                                  \
        (r)->broken = 1;                                                                           \
    } while (0)

/* An API call returned rc != OK: it must be the injected failure, reported
 * as TETHER_ENOMEM, once per run. Returns 1 to retry the call. */
static int api_failed(run *r, int rc, const char *what)
{
    if (rc != TETHER_ENOMEM) {
        RUN_FAIL(r, "%s k=%llu: %s returned %s (%s), not TETHER_ENOMEM",
                 r->sqlite ? "sqlite" : "memory", (unsigned long long)r->k, what,
                 tether_err_name(rc), tether_errmsg());
        return 0;
    }
    if (tether__alloc_failures() != 1 || r->api_failures++ > 0) {
        RUN_FAIL(r, "%s k=%llu: %s returned TETHER_ENOMEM without an injected failure (%s)",
                 r->sqlite ? "sqlite" : "memory", (unsigned long long)r->k, what, tether_errmsg());
        return 0;
    }
    r->where = what;
    return 1;
}

/* Calls expr until it succeeds; the one failure allowed is the injected one. */
#define API(r, what, expr)                                                                         \
    do {                                                                                           \
        int api_rc_;                                                                               \
        while ((api_rc_ = (expr)) != TETHER_OK) {                                                  \
            if (!api_failed((r), api_rc_, (what))) {                                               \
                goto out;                                                                          \
            }                                                                                      \
        }                                                                                          \
    } while (0)

typedef struct pair {
    tether_client *c;
    tether_server *s;
} pair;

static int all_done(void *arg)
{
    pair *p = arg;
    uint64_t cn = 1, sn_ = 1;
    pthread_mutex_lock(&sn.mu);
    int delivered = sn.srv_next == CLIENT_MSGS + 1 && sn.cli_next == SERVER_MSGS + 1;
    tether_session_id id = sn.id;
    pthread_mutex_unlock(&sn.mu);
    if (!delivered || tether_client_pending(p->c, &cn, NULL) != TETHER_OK ||
        tether_server_pending(p->s, &id, &sn_, NULL) != TETHER_OK) {
        return 0;
    }
    return cn == 0 && sn_ == 0;
}

static int opened(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&sn.mu);
    int o = sn.opened;
    pthread_mutex_unlock(&sn.mu);
    return o;
}

static void configs(run *r, tether_server_config *scfg, tether_client_config *ccfg, char *url,
                    size_t url_len, uint16_t port)
{
    static char sdb[512], cdb[512];
    tt_path(sdb, sizeof sdb, "server.db");
    tt_path(cdb, sizeof cdb, "client.db");
    tether_server_config_init(scfg);
    scfg->db_path = r->sqlite ? sdb : NULL;
    scfg->durability = TETHER_DURABILITY_OFF; /* no fsync: the walk is about memory */
    scfg->cb.on_message = s_message;
    scfg->cb.on_session_open = s_open;
    scfg->cb.on_session_close = s_close;
    scfg->port = port;
    tether_client_config_init(ccfg);
    ccfg->url = url_for(url, url_len, port);
    ccfg->db_path = r->sqlite ? cdb : NULL;
    ccfg->durability = TETHER_DURABILITY_OFF;
    ccfg->backoff_base_ms = 5;
    ccfg->backoff_cap_ms = 50;
    ccfg->cb.on_message = c_message;
    ccfg->cb.on_state = c_state;
}

static void remove_stores(void)
{
    const char *names[] = {"server.db", "server.db-wal", "server.db-shm",
                           "client.db", "client.db-wal", "client.db-shm"};
    char path[512];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        unlink(tt_path(path, sizeof path, names[i]));
    }
}

/* After a SQLite run, with nothing failing: the stores hold what was committed. */
static void check_stores(run *r, tether_session_id id)
{
    tether_server_config scfg;
    tether_client_config ccfg;
    tether_client *c = NULL;
    tether_server *s = NULL;
    char url[64];
    uint64_t v = 0, n = 1, b = 1;
    configs(r, &scfg, &ccfg, url, sizeof url, 1);
    if (tether_client_create(&ccfg, &c) != TETHER_OK) {
        RUN_FAIL(r, "sqlite k=%llu: the client store does not reopen: %s", (unsigned long long)r->k,
                 tether_errmsg());
        return;
    }
    if (tether_client_last_seq(c, &v) != TETHER_OK || v != CLIENT_MSGS ||
        tether_client_acked(c, &v) != TETHER_OK || v != CLIENT_MSGS ||
        tether_client_pending(c, &n, &b) != TETHER_OK || n != 0 || b != 0) {
        RUN_FAIL(r, "sqlite k=%llu: the client store lost its commits", (unsigned long long)r->k);
    }
    tether_client_destroy(c);
    scfg.port = 0;
    if (tether_server_create(&scfg, &s) != TETHER_OK) {
        RUN_FAIL(r, "sqlite k=%llu: the server store does not reopen: %s", (unsigned long long)r->k,
                 tether_errmsg());
        return;
    }
    if (tether_server_acked(s, &id, &v) != TETHER_OK || v != SERVER_MSGS ||
        tether_server_pending(s, &id, &n, &b) != TETHER_OK || n != 0 || b != 0) {
        RUN_FAIL(r, "sqlite k=%llu: the server store lost its commits", (unsigned long long)r->k);
    }
    tether_server_destroy(s);
}

/* One life with allocation k failing. Returns 1 when the k-th allocation was
 * reached (and the run still ended well), 0 when the run never got that far;
 * r->broken when a check failed. */
static int walk_once(run *r)
{
    tether_server_config scfg;
    tether_client_config ccfg;
    pair p = {NULL, NULL};
    char url[64], buf[16];
    uint16_t port = 0;
    int hit = 0;

    remove_stores();
    pthread_mutex_lock(&sn.mu);
    sn.srv_next = sn.cli_next = 1;
    sn.redelivered = 0;
    sn.bad = 0;
    sn.opened = 0;
    sn.last_state[0] = '\0';
    pthread_mutex_unlock(&sn.mu);
    configs(r, &scfg, &ccfg, url, sizeof url, 0);

    tether__alloc_fail_at(r->k);
    API(r, "tether_server_create", tether_server_create(&scfg, &p.s));
    port = tether_server_port(p.s);
    API(r, "tether_server_start", tether_server_start(p.s));
    configs(r, &scfg, &ccfg, url, sizeof url, port);
    API(r, "tether_client_create", tether_client_create(&ccfg, &p.c));
    r->created = tether__alloc_count();
    for (uint64_t i = 1; i <= CLIENT_MSGS; i++) {
        uint64_t before = 0, after = 0, seq = 0;
        payload(buf, sizeof buf, 'c', i);
        tether_client_last_seq(p.c, &before);
        int rc;
        while ((rc = tether_client_send(p.c, buf, strlen(buf), &seq)) != TETHER_OK) {
            tether_client_last_seq(p.c, &after);
            if (after != before) {
                RUN_FAIL(r, "memory k=%llu: a failed send stored a message",
                         (unsigned long long)r->k);
                goto out;
            }
            if (!api_failed(r, rc, "tether_client_send")) {
                goto out;
            }
        }
        if (seq != i) {
            RUN_FAIL(r, "k=%llu: send %llu got seq %llu", (unsigned long long)r->k,
                     (unsigned long long)i, (unsigned long long)seq);
            goto out;
        }
        if (i == 2) {
            API(r, "tether_client_start", tether_client_start(p.c));
        }
    }
    if (!wait_until(opened, NULL, RUN_WAIT_MS)) {
        RUN_FAIL(r, "%s k=%llu: the session never opened", r->sqlite ? "sqlite" : "memory",
                 (unsigned long long)r->k);
        goto out;
    }
    pthread_mutex_lock(&sn.mu);
    tether_session_id id = sn.id;
    pthread_mutex_unlock(&sn.mu);
    for (uint64_t i = 1; i <= SERVER_MSGS; i++) {
        payload(buf, sizeof buf, 's', i);
        API(r, "tether_server_send", tether_server_send(p.s, &id, buf, strlen(buf), NULL));
    }
    if (!wait_until(all_done, &p, RUN_WAIT_MS)) {
        uint64_t cn = 0, sp = 0;
        int crc = tether_client_pending(p.c, &cn, NULL);
        char cerr[160];
        snprintf(cerr, sizeof cerr, "%s", crc == TETHER_OK ? "" : tether_errmsg());
        int src = tether_server_pending(p.s, &id, &sp, NULL);
        char serr[160];
        snprintf(serr, sizeof serr, "%s", src == TETHER_OK ? "" : tether_errmsg());
        tether_client_statistics cst;
        tether_server_statistics sst;
        memset(&cst, 0, sizeof cst);
        memset(&sst, 0, sizeof sst);
        tether_client_stats(p.c, &cst);
        tether_server_stats(p.s, &sst);
        pthread_mutex_lock(&sn.mu);
        RUN_FAIL(r,
                 "%s k=%llu: not done within %u ms: server got %llu of %u, client %llu of %u, "
                 "pending client %llu (%s%s) server %llu (%s%s); client: delivered %llu, acked "
                 "%llu, connects %llu, last %s; server: sent %llu, acked %llu, delivered %llu, "
                 "online %llu, opened %llu, refused %llu",
                 r->sqlite ? "sqlite" : "memory", (unsigned long long)r->k, RUN_WAIT_MS,
                 (unsigned long long)sn.srv_next - 1, CLIENT_MSGS,
                 (unsigned long long)sn.cli_next - 1, SERVER_MSGS, (unsigned long long)cn,
                 tether_err_name(crc), cerr, (unsigned long long)sp, tether_err_name(src), serr,
                 (unsigned long long)cst.messages_delivered, (unsigned long long)cst.messages_acked,
                 (unsigned long long)cst.connects, sn.last_state,
                 (unsigned long long)sst.messages_sent, (unsigned long long)sst.messages_acked,
                 (unsigned long long)sst.messages_delivered, (unsigned long long)sst.sessions_online,
                 (unsigned long long)sst.sessions_opened, (unsigned long long)sst.handshakes_refused);
        pthread_mutex_unlock(&sn.mu);
    }
out:
    tether_client_destroy(p.c);
    tether_server_destroy(p.s);
    hit = tether__alloc_failures() > 0;
    r->allocs = tether__alloc_count();
    tether__alloc_fail_at(0);
    pthread_mutex_lock(&sn.mu);
    if (sn.bad) {
        RUN_FAIL(r, "%s k=%llu: %d bad deliveries; first: %s", r->sqlite ? "sqlite" : "memory",
                 (unsigned long long)r->k, sn.bad, sn.why);
    }
    tether_session_id sid = sn.id;
    int was_opened = sn.opened;
    pthread_mutex_unlock(&sn.mu);
    if (!r->broken && r->sqlite && was_opened) {
        check_stores(r, sid);
    }
    return hit;
}

static void walk(int sqlite)
{
    run r;
    uint64_t runs = 0, api = 0, k = 1, full = 0, allocs = 0, created;
    /* to replay one run: ALLOC_FAIL_K=k (0: nothing fails) */
    const char *only = getenv("ALLOC_FAIL_K");
    if (only && *only) {
        memset(&r, 0, sizeof r);
        r.k = strtoull(only, NULL, 10);
        r.sqlite = sqlite;
        int hit = walk_once(&r);
        printf("  %s stores, k=%llu: %s, %llu allocations, %d API failures (%s)\n",
               sqlite ? "SQLite" : "memory", (unsigned long long)r.k, hit ? "hit" : "not reached",
               (unsigned long long)r.allocs, r.api_failures, r.where ? r.where : "-");
        return;
    }
    memset(&r, 0, sizeof r);
    r.sqlite = sqlite;
    walk_once(&r); /* nothing fails: where does the client exist? */
    created = r.created;
    if (r.broken || !created) {
        tt_fail(__FILE__, __LINE__, "the run without failures failed");
        return;
    }
    /* to resume a walk further on: ALLOC_FAIL_FROM=k */
    const char *from = getenv("ALLOC_FAIL_FROM");
    if (from && *from) {
        k = strtoull(from, NULL, 10);
    }
    /* ALLOC_FAIL_SPARSE=n (the sanitizer run of quickstart.sh): after the dense
     * head, every n-th k of the tail too, and n times the stride before it */
    uint64_t sparse = 1;
    const char *sp = getenv("ALLOC_FAIL_SPARSE");
    if (sp && *sp) {
        sparse = strtoull(sp, NULL, 10);
        sparse = sparse ? sparse : 1;
    }
    for (;;) {
        memset(&r, 0, sizeof r);
        r.k = k;
        r.sqlite = sqlite;
        int hit = walk_once(&r);
        runs++;
        api += r.api_failures;
        if (r.broken) {
            break;
        }
        if (!hit) {
            full = k;
            allocs = r.allocs;
            break;
        }
        if (k >= K_MAX) {
            tt_fail(__FILE__, __LINE__, "the walk passed k=%u without ending", K_MAX);
            break;
        }
        k += k < DENSE_HEAD ? 1 : k >= created ? sparse : STRIDE * sparse;
    }
    printf("  %s stores: %llu runs: k = 1..%u, every %llu-th to %llu (client created), then "
           "every %llu-th k; a run of %llu allocations completed untouched at k=%llu; %llu API "
           "calls returned TETHER_ENOMEM, the other failures hit service threads\n",
           sqlite ? "SQLite" : "memory", (unsigned long long)runs, DENSE_HEAD,
           (unsigned long long)(STRIDE * sparse), (unsigned long long)created,
           (unsigned long long)sparse, (unsigned long long)allocs, (unsigned long long)full,
           (unsigned long long)api);
    CHECK(full > 0);
}

TEST(every_allocation_fails_once_memory_stores)
{
    walk(0);
}

TEST(every_allocation_fails_once_sqlite_stores)
{
    walk(1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    /* before any store is opened: SQLite's allocator can only change before
     * SQLite initialises */
    if (tether__store_sqlite_route_alloc() != TETHER_OK) {
        fprintf(stderr, "cannot route SQLite's allocations: %s\n", tether_errmsg());
        return 1;
    }
    RUN(every_allocation_fails_once_memory_stores);
    RUN(every_allocation_fails_once_sqlite_stores);
    return tt_finish();
}

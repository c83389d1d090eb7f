/*
 * Session ownership in the PostgreSQL store (src/store/store_pg_lease.c):
 * two instances (two server stores on one database) racing for one session,
 * the loser's writes refused with TETHER_EFENCED and nothing changed; a
 * takeover at once when the owner's connection is gone (its backend
 * terminated, as when a process dies with -9) or it released the lease, and
 * only after the lease lapsed while it is merely silent; renewal; a fenced
 * instance that reconnects stays fenced; the upgrade of a schema 1 database;
 * and the single-instance leases of the memory and SQLite stores.
 */
#include "store_fixture.h"

#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "pgtest.h"
#include "store/store_testhooks.h"

static tether__store *open_db(const char *db)
{
    char ci[256], err[512];
    tether__store *st = NULL;
    int rc = tether__store_pg_open(pgt_conninfo(db, ci, sizeof ci), TETHER__ROLE_SERVER,
                                   TETHER_DURABILITY_NORMAL, &st, err, sizeof err);
    if (rc != TETHER_OK) {
        fprintf(stderr, "  open %s: %s\n", db, err);
        exit(1);
    }
    return st;
}

static void fresh(char *db, size_t len)
{
    if (pgt_createdb("lease", db, len) != 0) {
        fprintf(stderr, "  cannot create a database\n");
        exit(1);
    }
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* lease_take, retried for up to 2 s while a closed connection's backend ends. */
static int take_within(tether__store *st, const uint8_t id[16], int *stale)
{
    int rc = st->ops->lease_take(st, id, 600000, stale);
    for (int i = 0; i < 100 && rc == TETHER_EFENCED; i++) {
        sleep_ms(20);
        rc = st->ops->lease_take(st, id, 600000, stale);
    }
    return rc;
}

typedef struct racer {
    tether__store *st;        /* one instance */
    const uint8_t *id;        /* the session */
    pthread_barrier_t *start; /* both take at once */
    int rc;                   /* what lease_take said */
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    int stale = -1;
    pthread_barrier_wait(r->start);
    r->rc = r->st->ops->lease_take(r->st, r->id, 10000, &stale);
    return NULL;
}

TEST(two_instances_race_and_exactly_one_owns)
{
    char db[64];
    fresh(db, sizeof db);
    tether__store *a = open_db(db), *b = open_db(db);
    tether__session_rec rec = mkrec(1);
    CHECK_OK(a->ops->session_put(a, &rec));
    for (int round = 0; round < 5; round++) {
        /* a fresh session per round: nobody holds it */
        rec = mkrec((uint8_t)(10 + round));
        CHECK_OK(a->ops->session_put(a, &rec));
        app(a, rec.id, "one");
        app(a, rec.id, "two");
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, 2);
        racer ra = {a, rec.id, &start, 1}, rb = {b, rec.id, &start, 1};
        pthread_t ta, tb;
        pthread_create(&ta, NULL, race, &ra);
        pthread_create(&tb, NULL, race, &rb);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&start);
        CHECK((ra.rc == TETHER_OK) != (rb.rc == TETHER_OK));
        CHECK(ra.rc == TETHER_EFENCED || rb.rc == TETHER_EFENCED);
        tether__store *won = ra.rc == TETHER_OK ? a : b, *lost = ra.rc == TETHER_OK ? b : a;
        uint64_t before = digest(won);
        /* the loser can neither ACK, move its cursor, rewrite nor delete the session */
        CHECK_ERR(lost->ops->ack(lost, rec.id, 1), TETHER_EFENCED);
        CHECK(strstr(lost->ops->errmsg(lost), "taken by another instance") != NULL);
        CHECK_ERR(lost->ops->set_cursor(lost, rec.id, 7), TETHER_EFENCED);
        tether__session_rec other = get(won, rec.id);
        other.recv_cursor = 9;
        CHECK_ERR(lost->ops->session_put(lost, &other), TETHER_EFENCED);
        CHECK_ERR(lost->ops->session_delete(lost, rec.id), TETHER_EFENCED);
        CHECK_EQ_U64(digest(won), before);
        /* the owner can */
        CHECK_OK(won->ops->ack(won, rec.id, 1));
        CHECK_OK(won->ops->set_cursor(won, rec.id, 3));
        tether__session_rec now = get(won, rec.id);
        CHECK_EQ_U64(now.peer_acked, 1);
        CHECK_EQ_U64(now.recv_cursor, 3);
        /* anyone may append (send to any session from any instance) */
        uint64_t seq = app(lost, rec.id, "three");
        CHECK_EQ_U64(seq, 3);
    }
    a->ops->close(a);
    b->ops->close(b);
}

TEST(owner_connection_gone_means_takeover_at_once)
{
    char db[64];
    fresh(db, sizeof db);
    tether__store *a = open_db(db), *b = open_db(db);
    tether__session_rec rec = mkrec(2);
    CHECK_OK(a->ops->session_put(a, &rec));
    int stale = -1;
    CHECK_OK(a->ops->lease_take(a, rec.id, 600000, &stale));
    CHECK_EQ_INT(stale, 1); /* never held before: read the record again */
    CHECK_ERR(b->ops->lease_take(b, rec.id, 600000, &stale), TETHER_EFENCED);
    CHECK(strstr(b->ops->errmsg(b), "another live instance") != NULL);
    /* a's backend ends (its process killed: PostgreSQL drops its connection) */
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)", tether__store_pg_backend_pid(a));
    CHECK(pgt_exec(db, sql, 0) == 0);
    CHECK_OK(take_within(b, rec.id, &stale)); /* the backend ends asynchronously, its locks too */
    CHECK_EQ_INT(stale, 1);
    CHECK_OK(b->ops->lease_take(b, rec.id, 600000, &stale)); /* b's own again: not stale */
    CHECK_EQ_INT(stale, 0);
    CHECK_OK(b->ops->set_cursor(b, rec.id, 5));
    /* a comes back (reconnects on its next operation) and is fenced */
    CHECK(a->ops->set_cursor(a, rec.id, 6) != TETHER_OK); /* meets the lost connection */
    CHECK_ERR(a->ops->set_cursor(a, rec.id, 6), TETHER_EFENCED);
    CHECK_ERR(a->ops->ack(a, rec.id, 0), TETHER_EFENCED);
    CHECK_EQ_U64(get(b, rec.id).recv_cursor, 5);
    /* and b's store closing (a clean exit) frees it too */
    b->ops->close(b);
    CHECK_OK(take_within(a, rec.id, &stale));
    CHECK_EQ_INT(stale, 1);
    CHECK_OK(a->ops->set_cursor(a, rec.id, 6));
    a->ops->close(a);
}

static int nlost;
static uint8_t lost_id[16];
static void on_lost(void *arg, const uint8_t id[16])
{
    (void)arg;
    nlost++;
    memcpy(lost_id, id, 16);
}

TEST(silent_owner_is_fenced_after_its_lease_lapses)
{
    char db[64];
    fresh(db, sizeof db);
    tether__store *a = open_db(db), *b = open_db(db);
    tether__session_rec rec = mkrec(3), keep = mkrec(4);
    CHECK_OK(a->ops->session_put(a, &rec));
    CHECK_OK(a->ops->session_put(a, &keep));
    int stale;
    CHECK_OK(a->ops->lease_take(a, rec.id, 400, &stale));
    CHECK_OK(a->ops->lease_take(a, keep.id, 400, &stale));
    /* renewed: it holds past its first term */
    for (int i = 0; i < 5; i++) {
        sleep_ms(120);
        nlost = 0;
        CHECK_OK(a->ops->lease_renew(a, 400, on_lost, NULL, NULL));
        CHECK_EQ_INT(nlost, 0);
        CHECK_ERR(b->ops->lease_take(b, rec.id, 400, &stale), TETHER_EFENCED);
    }
    /* a pauses (connected, silent): after the term b takes it */
    sleep_ms(500);
    CHECK_OK(b->ops->lease_take(b, rec.id, 60000, &stale));
    CHECK_EQ_INT(stale, 1);
    CHECK_OK(b->ops->set_cursor(b, rec.id, 2));
    /* a wakes up: it cannot ACK or write; its renewal reports the loss, and
     * keeps the lease nobody took */
    CHECK_ERR(a->ops->set_cursor(a, rec.id, 8), TETHER_EFENCED);
    CHECK_ERR(a->ops->ack(a, rec.id, 0), TETHER_EFENCED);
    nlost = 0;
    CHECK_OK(a->ops->lease_renew(a, 400, on_lost, NULL, NULL));
    CHECK_EQ_INT(nlost, 1);
    CHECK(memcmp(lost_id, rec.id, 16) == 0);
    CHECK_OK(a->ops->set_cursor(a, keep.id, 1));
    CHECK_ERR(b->ops->lease_take(b, keep.id, 400, &stale), TETHER_EFENCED);
    CHECK_EQ_U64(get(b, rec.id).recv_cursor, 2);
    /* released: b takes it at once */
    CHECK_OK(a->ops->lease_release(a, keep.id));
    CHECK_OK(b->ops->lease_take(b, keep.id, 400, &stale));
    CHECK_ERR(b->ops->lease_take(b, (const uint8_t *)"0123456789abcdef", 400, &stale),
              TETHER_ENOTFOUND);
    CHECK_ERR(b->ops->lease_take(b, rec.id, 0, &stale), TETHER_EINVAL);
    a->ops->close(a);
    b->ops->close(b);
}

TEST(schema_1_is_upgraded_and_readers_say_so)
{
    char db[64], ci[256], err[512];
    fresh(db, sizeof db);
    CHECK(pgt_exec(db,
                   "CREATE TABLE tether_meta(key text PRIMARY KEY, value text NOT NULL);"
                   "CREATE TABLE tether_sessions(role smallint NOT NULL, id bytea NOT NULL, token "
                   "bytea NOT NULL, out_last bigint NOT NULL, peer_acked bigint NOT NULL, "
                   "recv_cursor bigint NOT NULL, established boolean NOT NULL, pending_count "
                   "bigint NOT NULL, pending_bytes bigint NOT NULL, last_op bigint NOT NULL "
                   "DEFAULT 0, PRIMARY KEY (role, id));"
                   "CREATE TABLE tether_outbox(role smallint NOT NULL, session bytea NOT NULL, "
                   "seq bigint NOT NULL, payload bytea NOT NULL, PRIMARY KEY (role, session, "
                   "seq));"
                   "INSERT INTO tether_meta VALUES ('schema_version', '1');",
                   0) == 0);
    tether__store *ro = NULL;
    CHECK_ERR(tether__store_pg_open_readonly(pgt_conninfo(db, ci, sizeof ci), &ro, err, sizeof err),
              TETHER_ESTORE_SCHEMA);
    CHECK(strstr(err, "upgrades it to 2") != NULL);
    tether__store *a = open_db(db);
    long long v = 0;
    CHECK(pgt_query_int(db, "SELECT value::int FROM tether_meta WHERE key = 'schema_version'",
                        &v) == 0);
    CHECK_EQ_INT(v, 2);
    tether__session_rec rec = mkrec(5);
    CHECK_OK(a->ops->session_put(a, &rec));
    int stale;
    CHECK_OK(a->ops->lease_take(a, rec.id, 1000, &stale));
    a->ops->close(a);
    CHECK_OK(tether__store_pg_open_readonly(pgt_conninfo(db, ci, sizeof ci), &ro, err, sizeof err));
    CHECK_ERR(ro->ops->lease_take(ro, rec.id, 1000, &stale), TETHER_EINVAL);
    ro->ops->close(ro);
}

TEST(single_instance_stores_always_grant)
{
    tether__store *m = NULL, *q = NULL;
    char path[512], err[256];
    CHECK_OK(tether__store_memory_open(TETHER__ROLE_SERVER, &m));
    CHECK_OK(tether__store_sqlite_open(tt_path(path, sizeof path, "lease.db"), TETHER__ROLE_SERVER,
                                       TETHER_DURABILITY_NORMAL, &q, err, sizeof err));
    tether__store *both[2] = {m, q};
    for (int i = 0; i < 2; i++) {
        tether__store *st = both[i];
        tether__session_rec rec = mkrec(6);
        CHECK_OK(st->ops->session_put(st, &rec));
        int stale = -1;
        CHECK_OK(st->ops->lease_take(st, rec.id, 1000, &stale));
        CHECK_EQ_INT(stale, 0);
        CHECK_OK(st->ops->lease_take(st, rec.id, 1000, &stale));
        CHECK_OK(st->ops->set_cursor(st, rec.id, 1));
        CHECK_OK(st->ops->lease_renew(st, 1000, on_lost, NULL, NULL));
        CHECK_OK(st->ops->lease_release(st, rec.id));
        CHECK_ERR(st->ops->lease_take(st, rec.id, 0, &stale), TETHER_EINVAL);
        st->ops->close(st);
    }
}

int main(void)
{
    RUN(single_instance_stores_always_grant);
    pgt_start(); /* exits with a clear message when PostgreSQL is missing */
    RUN(two_instances_race_and_exactly_one_owns);
    RUN(owner_connection_gone_means_takeover_at_once);
    RUN(silent_owner_is_fenced_after_its_lease_lapses);
    RUN(schema_1_is_upgraded_and_readers_say_so);
    return tt_finish();
}

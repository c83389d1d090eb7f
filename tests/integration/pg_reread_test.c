/*
 * A session that comes back to an instance after another one served it
 * (tests/support/pgtest.h, two in-process servers on one database): the
 * instance must not use what it still holds in memory for the session (its
 * receive cursor, its outbox's out_last and peer_acked, its lease epoch) but
 * read the session again from the database (server_lease.c: the lease's
 * epoch is not its own previous one + 1, so the engine is made again).
 *
 * Instance a runs in manual-ack mode and leaves 6..10 unacknowledged, so its
 * session stays in memory when the client leaves (a session holding
 * messages its application has not acknowledged is not evicted). Instance b
 * then serves the session: it receives 6..20 and sends 6..10. When the
 * client comes back to a, a's stale engine would answer HELLO with cursor 5
 * and out_last 5 — a mismatch, or 6..20 delivered again; read again, it
 * answers with 20 and 10, and everything goes on exactly once both ways.
 */
#include <string.h>

#include "harness.h"
#include "itest.h"
#include "pgtest.h"

#define WAIT_MS 20000

/* Deliveries are exactly seqs first..last in order, each tagged with its seq. */
static int range_is(recorder *r, uint64_t from, uint64_t first, uint64_t last)
{
    pthread_mutex_lock(&r->mu);
    int ok = r->n >= from + (last - first + 1);
    for (uint64_t i = 0; ok && i <= last - first; i++) {
        ok = r->seqs[from + i] == first + i && r->tags[from + i] == first + i;
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static void client_on(cli *k, unsigned port, const char *db, recorder *crec)
{
    cli_init(k, "ws", "127.0.0.1", port);
    k->cfg.db_path = db;
    k->cfg.backoff_base_ms = 20;
    k->cfg.backoff_cap_ms = 200;
    rec_client_callbacks(&k->cfg, crec);
    CHECK_OK(cli_start(k));
}

static int acked_at_least(tether_client *c, uint64_t want)
{
    uint64_t acked = 0;
    for (int i = 0; i < WAIT_MS / 10; i++) {
        if (tether_client_acked(c, &acked) == TETHER_OK && acked >= want) {
            return 1;
        }
        sleep_ms(10);
    }
    return 0;
}

TEST(session_back_on_an_instance_is_read_again_from_the_database)
{
    char db[64], uri[256], cdb[512];
    CHECK(pgt_createdb("reread", db, sizeof db) == 0);
    pgt_uri(db, uri, sizeof uri);
    tt_path(cdb, sizeof cdb, "reread-c.db");
    srv a, b;
    srv_init(&a);
    srv_init(&b);
    a.cfg.db_path = b.cfg.db_path = uri;
    a.cfg.lease_ms = b.cfg.lease_ms = 1000;
    a.cfg.manual_ack = 1;
    CHECK_OK(srv_start(&a));
    CHECK_OK(srv_start(&b));
    recorder crec; /* the client's deliveries across its three connections */
    rec_init(&crec);
    tether_session_id id;

    /* on a: 1..10 up, only 1..5 acknowledged by a's application; 1..5 down */
    cli k;
    client_on(&k, a.port, cdb, &crec);
    CHECK_OK(send_tagged(k.c, 10, 64));
    CHECK(rec_wait_count(&a.rec, 10, WAIT_MS));
    CHECK_OK(tether_client_session(k.c, &id));
    CHECK_OK(tether_server_ack(a.s, &id, 5));
    CHECK(acked_at_least(k.c, 5));
    CHECK_OK(srv_send_range(a.s, &id, 1, 5));
    CHECK(rec_wait_count(&crec, 5, WAIT_MS));
    sleep_ms(100); /* the client's ACK of 1..5 reaches a */
    cli_free(&k);  /* BYE: a releases the lease, keeps the session in memory */

    /* on b: 6..10 again (flagged) and 11..20 up, 6..10 down, all acknowledged */
    client_on(&k, b.port, cdb, &crec);
    CHECK_OK(send_tagged(k.c, 10, 64));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    CHECK_OK(srv_send_range(b.s, &id, 6, 5));
    CHECK(rec_wait_count(&crec, 10, WAIT_MS));
    sleep_ms(100);
    cli_free(&k);
    CHECK(range_is(&b.rec, 0, 6, 20));
    CHECK_EQ_U64(b.rec.n, 15);
    CHECK_EQ_U64(b.rec.redelivered, 5); /* the client sent 6..10 again */

    /* a still holds its old view in memory, not read from the store: the
     * client acknowledged 1..5 to it (b's 6..10 since, in the database) */
    uint64_t seen = 0;
    CHECK_OK(tether_server_acked(a.s, &id, &seen));
    CHECK_EQ_U64(seen, 5);

    /* back on a: HELLO finds the session moved on; a reads it again */
    client_on(&k, a.port, cdb, &crec);
    CHECK_OK(send_tagged(k.c, 10, 64));
    CHECK(rec_wait_count(&a.rec, 20, WAIT_MS));
    CHECK(range_is(&a.rec, 0, 1, 10));
    CHECK(range_is(&a.rec, 10, 21, 30));
    CHECK_EQ_U64(a.rec.n, 20);
    CHECK_OK(tether_server_ack(a.s, &id, 30));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    /* a's next message is 11: b's 6..10 counted, none sent twice */
    CHECK_OK(srv_send_range(a.s, &id, 11, 5));
    CHECK(rec_wait_count(&crec, 15, WAIT_MS));
    sleep_ms(200); /* a late repeat would show now */
    cli_free(&k);  /* its last ACK, then BYE */
    for (int i = 0; i < WAIT_MS / 10 && seen < 15; i++) {
        CHECK_OK(tether_server_acked(a.s, &id, &seen));
        sleep_ms(10);
    }
    CHECK_EQ_U64(seen, 15); /* the client's acks of 11..15 reached a, and were recorded */
    rec_check_exact(&crec, 15, "client: 1..5 from a, 6..10 from b, 11..15 from a");
    CHECK_EQ_INT(crec.mismatches + a.rec.mismatches + b.rec.mismatches, 0);
    long long cursor = -1, out_last = -1;
    CHECK(pgt_query_int(db, "SELECT recv_cursor FROM tether_sessions WHERE role = 2", &cursor) ==
          0);
    CHECK(pgt_query_int(db, "SELECT out_last FROM tether_sessions WHERE role = 2", &out_last) == 0);
    long long peer_acked = -1;
    CHECK(pgt_query_int(db, "SELECT peer_acked FROM tether_sessions WHERE role = 2", &peer_acked) ==
          0);
    CHECK_EQ_INT(cursor, 30);
    CHECK_EQ_INT(out_last, 15);
    CHECK_EQ_INT(peer_acked, 15);
    rec_free(&crec);
    srv_free(&a);
    srv_free(&b);
}

int main(void)
{
    pgt_start(); /* exits with a clear message when PostgreSQL is missing */
    RUN(session_back_on_an_instance_is_read_again_from_the_database);
    return tt_finish();
}

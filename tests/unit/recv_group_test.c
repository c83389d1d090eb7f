/*
 * The receiver's group commit (engine cfg.recv_group): DATA frames handled
 * one after another share one cursor commit, made before the next frame is
 * written, and an ACK never claims more than was committed. With
 * cfg.recv_lazy (the server below FULL) the commit waits until an ACK needs
 * it: ack_every delivered, the ACK delay run out, or the last commit older
 * than a quarter of that delay; the next write does not commit.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#include "engine/session.h"

static const tether__store_ops *inner_ops; /* the memory store's own table */
static int cursor_commits;                  /* set_cursor calls seen */
static int cursor_fail;                     /* 1: set_cursor fails */

static int counting_set_cursor(tether__store *st, const uint8_t id[16], uint64_t cursor)
{
    cursor_commits++;
    if (cursor_fail) {
        return TETHER_ESTORE;
    }
    return inner_ops->set_cursor(st, id, cursor);
}

static tether__store *open_counting(tether__store_role role)
{
    static tether__store_ops ops;
    tether__store *st = NULL;
    if (tether__store_memory_open(role, &st) != TETHER_OK) {
        exit(2);
    }
    inner_ops = st->ops;
    ops = *st->ops;
    ops.set_cursor = counting_set_cursor;
    st->ops = &ops;
    return st;
}

static int delivered;
static int defer; /* 1: the server engine runs with defer_delivery */
static int lazy;  /* 1: the server engine runs with recv_lazy */

static void on_message(void *arg, uint64_t seq, const uint8_t *data, size_t len, int redelivered)
{
    delivered++;
}

static tether__engine_cfg cfg_of(tether__store_role role)
{
    tether__engine_cfg c;
    memset(&c, 0, sizeof c);
    c.role = role;
    c.max_message = 4096;
    c.window = 64;
    c.ack_every = 2;
    c.ack_delay_ms = 10;
    c.run_max_bytes = 1024;
    c.queue_max_bytes = 1 << 16;
    c.recv_group = role == TETHER__ROLE_SERVER;
    c.defer_delivery = defer && role == TETHER__ROLE_SERVER;
    if (lazy && role == TETHER__ROLE_SERVER) {
        c.recv_lazy = 1;
        c.ack_every = 4;
        c.ack_delay_ms = 20; /* commits at once after 5 ms without one */
    }
    return c;
}

typedef struct pair {
    tether__store *cst, *sst; /* client's and server's stores */
    tether__engine *c, *s;    /* the engines */
    tether__session_rec rec;  /* the session */
    tether__buf b;            /* frame buffer */
} pair;

static void frame_to(tether__engine *to, tether__buf *b)
{
    tether__engine_event ev;
    CHECK_OK(tether__engine_on_frame(to, tether__buf_frame(b), b->len, 0, &ev));
}

static void pair_live(pair *p)
{
    memset(p, 0, sizeof *p);
    tether__engine_cb cb = {on_message, NULL, NULL, NULL};
    tether__engine_cfg cc = cfg_of(TETHER__ROLE_CLIENT), sc = cfg_of(TETHER__ROLE_SERVER);
    memset(p->rec.id, 7, 16);
    p->cst = open_counting(TETHER__ROLE_CLIENT);
    p->sst = open_counting(TETHER__ROLE_SERVER);
    CHECK_OK(p->cst->ops->session_put(p->cst, &p->rec));
    CHECK_OK(p->sst->ops->session_put(p->sst, &p->rec));
    CHECK_OK(tether__engine_create(&cc, p->cst, &p->rec, &cb, &p->c));
    CHECK_OK(tether__engine_create(&sc, p->sst, &p->rec, &cb, &p->s));
    tether__buf_init(&p->b, 0);
    CHECK_OK(tether__engine_connect(p->c, 0));
    CHECK_EQ_INT(tether__engine_next_frame(p->c, 0, &p->b), 1);
    tether__decoder d;
    tether__frame f;
    tether__engine_event ev;
    CHECK_OK(tether__decoder_init(&d, 4096));
    CHECK_OK(tether__decode(&d, tether__buf_frame(&p->b), p->b.len, &f));
    CHECK_OK(tether__engine_accept(p->s, &f.u.hello, 0, &ev));
    tether__decoder_free(&d);
    CHECK_EQ_INT(tether__engine_next_frame(p->s, 0, &p->b), 1);
    frame_to(p->c, &p->b);
    CHECK(tether__engine_live(p->c) && tether__engine_live(p->s));
}

static void pair_free(pair *p)
{
    tether__engine_destroy(p->c);
    tether__engine_destroy(p->s);
    p->cst->ops->close(p->cst);
    p->sst->ops->close(p->sst);
    tether__buf_free(&p->b);
}

static uint64_t stored_cursor(pair *p)
{
    tether__session_rec r;
    CHECK_OK(p->sst->ops->session_get(p->sst, p->rec.id, &r));
    return r.recv_cursor;
}

TEST(frames_handled_together_share_one_commit)
{
    pair p;
    pair_live(&p);
    /* three DATA frames, one message each, reach the server back to back */
    for (int i = 0; i < 3; i++) {
        tether_msg m = {"abc", 3};
        CHECK_OK(tether__engine_send(p.c, &m, 1, NULL));
        CHECK_EQ_INT(tether__engine_next_frame(p.c, 0, &p.b), 1);
        frame_to(p.s, &p.b);
    }
    CHECK_EQ_INT(cursor_commits, 0);
    CHECK_EQ_U64(stored_cursor(&p), 0);
    CHECK_EQ_U64(tether__engine_rec(p.s)->recv_cursor, 0);
    /* the server wants to write: the commit comes first, once, then the ACK */
    CHECK(tether__engine_want_write(p.s, 0));
    CHECK_EQ_INT(tether__engine_next_frame(p.s, 0, &p.b), 1);
    CHECK_EQ_INT(cursor_commits, 1);
    CHECK_EQ_U64(stored_cursor(&p), 3);
    frame_to(p.c, &p.b);
    uint64_t n = 0;
    tether__engine_pending(p.c, &n, NULL);
    CHECK_EQ_U64(n, 0);
    CHECK(!tether__engine_want_write(p.s, 0));
    pair_free(&p);
}

TEST(disconnect_commits_what_was_delivered)
{
    pair p;
    pair_live(&p);
    cursor_commits = 0;
    tether_msg m = {"x", 1};
    CHECK_OK(tether__engine_send(p.c, &m, 1, NULL));
    CHECK_EQ_INT(tether__engine_next_frame(p.c, 0, &p.b), 1);
    frame_to(p.s, &p.b);
    CHECK_EQ_U64(stored_cursor(&p), 0);
    tether__engine_disconnect(p.s);
    CHECK_EQ_INT(cursor_commits, 1);
    CHECK_EQ_U64(stored_cursor(&p), 1);
    pair_free(&p);
}

TEST(failed_group_commit_closes_with_bye_store_and_acks_nothing)
{
    pair p;
    pair_live(&p);
    tether_msg m = {"x", 1};
    CHECK_OK(tether__engine_send(p.c, &m, 1, NULL));
    CHECK_EQ_INT(tether__engine_next_frame(p.c, 0, &p.b), 1);
    frame_to(p.s, &p.b);
    cursor_fail = 1;
    CHECK_EQ_INT(tether__engine_next_frame(p.s, 0, &p.b), 1);
    cursor_fail = 0;
    tether__decoder d;
    tether__frame f;
    CHECK_OK(tether__decoder_init(&d, 4096));
    CHECK_OK(tether__decode(&d, tether__buf_frame(&p.b), p.b.len, &f));
    CHECK_EQ_INT(f.type, TETHER__F_BYE);
    CHECK_EQ_INT(f.u.close.code, TETHER_REJECT_STORE);
    tether__decoder_free(&d);
    tether__engine_event ev;
    CHECK(tether__engine_close_event(p.s, &ev));
    CHECK_EQ_INT(ev.error, TETHER_ESTORE);
    CHECK_EQ_U64(stored_cursor(&p), 0);
    pair_free(&p);
}

/* One message to the server, then a DATA frame that skips a seq. Returns the
 * cursor commits seen when the gap closed the connection. */
static int gap_after_one(pair *p)
{
    tether_msg m = {"abc", 3};
    CHECK_OK(tether__engine_send(p->c, &m, 1, NULL));
    CHECK_EQ_INT(tether__engine_next_frame(p->c, 0, &p->b), 1);
    frame_to(p->s, &p->b);
    tether__buf_reset(&p->b);
    CHECK_OK(tether__encode_data_begin(&p->b, 3, 0, 1));
    CHECK_OK(tether__encode_data_payload(&p->b, "x", 1));
    CHECK_OK(tether__encode_data_end(&p->b));
    tether__engine_event ev;
    CHECK_ERR(tether__engine_on_frame(p->s, tether__buf_frame(&p->b), p->b.len, 0, &ev),
              TETHER_EGAP);
    return cursor_commits;
}

TEST(gap_commits_at_once_unless_delivery_is_deferred)
{
    pair p;
    cursor_commits = 0;
    defer = 0;
    pair_live(&p);
    /* callbacks ran inside on_frame: the delivered message is committed before the close */
    CHECK_EQ_INT(gap_after_one(&p), 1);
    CHECK_EQ_U64(stored_cursor(&p), 1);
    pair_free(&p);

    cursor_commits = 0;
    defer = 1;
    pair_live(&p);
    /* deferred: the adapter has not run the callback yet, so nothing is committed
     * inside on_frame; disconnect (after the callbacks) commits it */
    CHECK_EQ_INT(gap_after_one(&p), 0);
    CHECK_EQ_U64(stored_cursor(&p), 0);
    tether__engine_disconnect(p.s);
    CHECK_EQ_INT(cursor_commits, 1);
    CHECK_EQ_U64(stored_cursor(&p), 1);
    pair_free(&p);
    defer = 0;
}

/* A live pair whose server runs recv_lazy, counts cleared. */
static void lazy_begin(pair *p)
{
    lazy = 1;
    delivered = 0;
    pair_live(p);
    cursor_commits = 0;
}

static void lazy_end(pair *p)
{
    pair_free(p);
    lazy = 0;
    delivered = 0;
}

/* Seq seq to the server as a DATA frame of its own at now_ms (a resend when
 * flags says so). */
static void data_to_server(pair *p, uint64_t seq, uint64_t now_ms, uint32_t flags)
{
    tether__buf_reset(&p->b);
    CHECK_OK(tether__encode_data_begin(&p->b, seq, flags, 1));
    CHECK_OK(tether__encode_data_payload(&p->b, "m", 1));
    CHECK_OK(tether__encode_data_end(&p->b));
    tether__engine_event ev;
    CHECK_OK(tether__engine_on_frame(p->s, tether__buf_frame(&p->b), p->b.len, now_ms, &ev));
}

/* The server's next frame must be an ACK of seq. */
static void expect_ack(pair *p, uint64_t now_ms, uint64_t seq)
{
    CHECK(tether__engine_want_write(p->s, now_ms));
    CHECK_EQ_INT(tether__engine_next_frame(p->s, now_ms, &p->b), 1);
    tether__decoder d;
    tether__frame f;
    CHECK_OK(tether__decoder_init(&d, 4096));
    CHECK_OK(tether__decode(&d, tether__buf_frame(&p->b), p->b.len, &f));
    CHECK_EQ_INT(f.type, TETHER__F_ACK);
    CHECK_EQ_U64(f.u.ack, seq);
    tether__decoder_free(&d);
}

TEST(lazy_commits_once_per_ack_every)
{
    pair p;
    lazy_begin(&p);
    for (uint64_t s = 1; s <= 3; s++) {
        data_to_server(&p, s, 1, 0);
        CHECK_OK(tether__engine_recv_commit(p.s, 1));
    }
    /* three of ack_every 4, 1 ms after the last commit, the delay not run out */
    CHECK_EQ_INT(cursor_commits, 0);
    CHECK(!tether__engine_recv_lazy_due(p.s, 1));
    CHECK(!tether__engine_want_write(p.s, 1));
    CHECK_EQ_INT(tether__engine_next_frame(p.s, 1, &p.b), 0); /* and a write does not commit */
    CHECK_EQ_INT(cursor_commits, 0);
    CHECK_EQ_INT(delivered, 3);
    data_to_server(&p, 4, 2, 0);
    CHECK(tether__engine_recv_lazy_due(p.s, 2));
    CHECK_OK(tether__engine_recv_commit(p.s, 2));
    CHECK_EQ_INT(cursor_commits, 1);
    CHECK_EQ_U64(stored_cursor(&p), 4);
    expect_ack(&p, 2, 4);
    CHECK(!tether__engine_want_write(p.s, 2));
    lazy_end(&p);
}

TEST(lazy_deadline_asks_for_the_commit_before_the_ack)
{
    pair p;
    lazy_begin(&p);
    data_to_server(&p, 1, 1, 0);
    CHECK_OK(tether__engine_recv_commit(p.s, 1));
    CHECK_EQ_INT(cursor_commits, 0);
    /* the ACK delay runs from the delivery */
    CHECK_EQ_U64(tether__engine_deadline(p.s), 21);
    CHECK(!tether__engine_recv_lazy_due(p.s, 20));
    CHECK(tether__engine_recv_lazy_due(p.s, 21));
    /* at the deadline nothing is written before the commit: no ACK of the old cursor */
    tether__engine_tick(p.s, 21);
    CHECK(!tether__engine_want_write(p.s, 21));
    CHECK_OK(tether__engine_recv_commit(p.s, 21));
    CHECK_EQ_INT(cursor_commits, 1);
    CHECK_EQ_U64(stored_cursor(&p), 1);
    expect_ack(&p, 21, 1);
    CHECK_EQ_U64(tether__engine_deadline(p.s), UINT64_MAX);
    lazy_end(&p);
}

TEST(lazy_commits_at_once_after_a_quiet_spell)
{
    pair p;
    lazy_begin(&p);
    /* no commit for 100 ms (the engine's last at 0): a session that receives
     * seldom commits each batch at once */
    data_to_server(&p, 1, 100, 0);
    CHECK(!tether__engine_recv_lazy_due(p.s, 100)); /* the ACK itself is not due yet */
    CHECK_OK(tether__engine_recv_commit(p.s, 100));
    CHECK_EQ_INT(cursor_commits, 1);
    CHECK_EQ_U64(stored_cursor(&p), 1);
    /* the next, 2 ms later, waits */
    data_to_server(&p, 2, 102, 0);
    CHECK_OK(tether__engine_recv_commit(p.s, 102));
    CHECK_EQ_INT(cursor_commits, 1);
    /* the ACK at the first one's deadline claims only what is committed */
    tether__engine_tick(p.s, 120);
    expect_ack(&p, 120, 1);
    /* the second keeps its deadline (the ACK went out without it) */
    CHECK(tether__engine_recv_lazy_due(p.s, 120));
    CHECK_OK(tether__engine_recv_commit(p.s, 120));
    CHECK_EQ_U64(stored_cursor(&p), 2);
    expect_ack(&p, 120, 2);
    lazy_end(&p);
}

TEST(lazy_resend_is_reacked_and_the_pending_commit_keeps_its_deadline)
{
    pair p;
    lazy_begin(&p);
    for (uint64_t s = 1; s <= 4; s++) {
        data_to_server(&p, s, 1, 0);
    }
    CHECK_OK(tether__engine_recv_commit(p.s, 1));
    expect_ack(&p, 1, 4);
    data_to_server(&p, 5, 2, 0); /* delivered, not committed; deadline 22 */
    CHECK_OK(tether__engine_recv_commit(p.s, 2));
    CHECK_EQ_INT(cursor_commits, 1);
    /* the peer resends 2: it is told at once what is committed, and the
     * commit of 5 is asked for */
    data_to_server(&p, 2, 3, TETHER__DATA_FLAG_REDELIVERED);
    CHECK_EQ_INT(delivered, 5);
    CHECK(tether__engine_recv_lazy_due(p.s, 3));
    expect_ack(&p, 3, 4);
    CHECK_EQ_U64(tether__engine_deadline(p.s), 22);
    CHECK(tether__engine_recv_lazy_due(p.s, 22));
    CHECK_OK(tether__engine_recv_commit(p.s, 22));
    CHECK_EQ_U64(stored_cursor(&p), 5);
    expect_ack(&p, 22, 5);
    lazy_end(&p);
}

/* Seq 1 delivered (not committed), then the client's BYE; returns what
 * on_frame() said about the BYE. */
static int bye_after_one(pair *p)
{
    data_to_server(p, 1, 1, 0);
    CHECK_OK(tether__engine_recv_commit(p->s, 1));
    CHECK_EQ_INT(cursor_commits, 0);
    CHECK_OK(tether__engine_bye(p->c, 0, "done"));
    CHECK_EQ_INT(tether__engine_next_frame(p->c, 2, &p->b), 1);
    tether__engine_event ev;
    return tether__engine_on_frame(p->s, tether__buf_frame(&p->b), p->b.len, 2, &ev);
}

TEST(lazy_commit_comes_before_the_peers_bye_and_a_refusal_is_the_reason)
{
    pair p;
    lazy_begin(&p);
    bye_after_one(&p);
    CHECK_EQ_INT(cursor_commits, 1);
    CHECK_EQ_U64(stored_cursor(&p), 1);
    pair_free(&p);

    pair_live(&p);
    cursor_commits = 0;
    cursor_fail = 1;
    CHECK_EQ_INT(bye_after_one(&p), TETHER_ESTORE);
    cursor_fail = 0;
    tether__engine_event ev;
    CHECK(tether__engine_close_event(p.s, &ev));
    CHECK_EQ_INT(ev.error, TETHER_ESTORE);
    CHECK_EQ_U64(stored_cursor(&p), 0);
    lazy_end(&p);
}

int main(void)
{
    RUN(frames_handled_together_share_one_commit);
    RUN(disconnect_commits_what_was_delivered);
    RUN(failed_group_commit_closes_with_bye_store_and_acks_nothing);
    RUN(gap_commits_at_once_unless_delivery_is_deferred);
    RUN(lazy_commits_once_per_ack_every);
    RUN(lazy_deadline_asks_for_the_commit_before_the_ack);
    RUN(lazy_commits_at_once_after_a_quiet_spell);
    RUN(lazy_resend_is_reacked_and_the_pending_commit_keeps_its_deadline);
    RUN(lazy_commit_comes_before_the_peers_bye_and_a_refusal_is_the_reason);
    return tt_finish();
}

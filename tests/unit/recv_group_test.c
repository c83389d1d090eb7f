/*
 * The receiver's group commit (engine cfg.recv_group): DATA frames handled
 * one after another share one cursor commit, made before the next frame is
 * written, and an ACK never claims more than was committed.
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

int main(void)
{
    RUN(frames_handled_together_share_one_commit);
    RUN(disconnect_commits_what_was_delivered);
    RUN(failed_group_commit_closes_with_bye_store_and_acks_nothing);
    RUN(gap_commits_at_once_unless_delivery_is_deferred);
    return tt_finish();
}

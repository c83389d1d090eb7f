/*
 * The session engine without sockets: a client and a server engine, each on
 * its own memory store, joined by a scripted wire that carries the frames one
 * produces to the other. A disconnect drops what is in flight. Time is a
 * counter the tests advance.
 */
#include "harness.h"

#include "engine/frame.h"
#include "engine/session.h"
#include "store/store.h"

static uint64_t now; /* the fake clock, ms */

/* ------------------------------------------------------------------------ */
/* A store that wraps the memory store and can be told to fail.              */
/* ------------------------------------------------------------------------ */

typedef struct fstore {
    tether__store base;    /* what the engine sees; first member */
    tether__store *inner;  /* the memory store doing the work */
    int fail_set_cursor;   /* error set_cursor returns, 0: pass through */
    int fail_ack;          /* error ack returns, 0: pass through */
    size_t loads;          /* load calls */
} fstore;

static tether__store *in(tether__store *st)
{
    return ((fstore *)st)->inner;
}

static int f_get(tether__store *st, const uint8_t id[16], tether__session_rec *out)
{
    return in(st)->ops->session_get(in(st), id, out);
}

static int f_put(tether__store *st, const tether__session_rec *rec)
{
    return in(st)->ops->session_put(in(st), rec);
}

static int f_delete(tether__store *st, const uint8_t id[16])
{
    return in(st)->ops->session_delete(in(st), id);
}

static int f_list(tether__store *st, tether__list_cb cb, void *arg)
{
    return in(st)->ops->session_list(in(st), cb, arg);
}

static int f_append(tether__store *st, const uint8_t id[16], const tether_msg *msgs, size_t n,
                    uint64_t max_count, uint64_t max_bytes, uint64_t *first_seq)
{
    return in(st)->ops->append(in(st), id, msgs, n, max_count, max_bytes, first_seq);
}

static int f_load(tether__store *st, const uint8_t id[16], uint64_t from_seq, size_t max_count,
                  tether__load_cb cb, void *arg)
{
    ((fstore *)st)->loads++;
    return in(st)->ops->load(in(st), id, from_seq, max_count, cb, arg);
}

static int f_ack(tether__store *st, const uint8_t id[16], uint64_t seq)
{
    if (((fstore *)st)->fail_ack) {
        return ((fstore *)st)->fail_ack;
    }
    return in(st)->ops->ack(in(st), id, seq);
}

static int f_set_cursor(tether__store *st, const uint8_t id[16], uint64_t cursor)
{
    if (((fstore *)st)->fail_set_cursor) {
        return ((fstore *)st)->fail_set_cursor;
    }
    return in(st)->ops->set_cursor(in(st), id, cursor);
}

static int f_pending(tether__store *st, const uint8_t id[16], uint64_t *count, uint64_t *bytes)
{
    return in(st)->ops->pending(in(st), id, count, bytes);
}

static int f_rebase(tether__store *st, const uint8_t old_id[16], const tether__session_rec *rec,
                    uint64_t skip)
{
    return in(st)->ops->rebase(in(st), old_id, rec, skip);
}

static const char *f_errmsg(tether__store *st)
{
    fstore *f = (fstore *)st;
    if (f->fail_set_cursor || f->fail_ack) {
        return "injected failure";
    }
    return in(st)->ops->errmsg(in(st));
}

static void f_close(tether__store *st)
{
    in(st)->ops->close(in(st));
    free(st);
}

static const tether__store_ops fstore_ops = {
    f_get,     f_put,        f_delete,  f_list,   f_append, f_load,
    f_ack,     f_set_cursor, f_pending, f_rebase, f_errmsg, f_close,
    NULL, /* inspect: the engine never calls it */
};

static fstore *fstore_open(tether__store_role role)
{
    fstore *f = calloc(1, sizeof *f);
    if (!f || tether__store_memory_open(role, &f->inner) != TETHER_OK) {
        fprintf(stderr, "cannot open a memory store\n");
        exit(2);
    }
    f->base.ops = &fstore_ops;
    return f;
}

/* ------------------------------------------------------------------------ */
/* Payloads that say which seq and direction they belong to.                 */
/* ------------------------------------------------------------------------ */

#define PAY_MAX 48

static size_t mkpay(uint64_t seq, int dir, uint8_t *buf)
{
    size_t len = 8 + (size_t)((seq * 13 + (uint64_t)dir) % 40);
    for (int i = 0; i < 8; i++) {
        buf[i] = (uint8_t)(seq >> (8 * i));
    }
    for (size_t i = 8; i < len; i++) {
        buf[i] = (uint8_t)(seq + i + (uint64_t)dir * 101);
    }
    return len;
}

static int paycheck(uint64_t seq, int dir, const uint8_t *data, size_t len)
{
    uint8_t want[PAY_MAX];
    size_t n = mkpay(seq, dir, want);
    return n == len && memcmp(want, data, n) == 0;
}

/* ------------------------------------------------------------------------ */
/* Two sides and the wire between them.                                      */
/* ------------------------------------------------------------------------ */

typedef struct wframe {
    uint8_t *p; /* frame bytes */
    size_t len; /* their length */
} wframe;

typedef struct datalog {
    uint64_t first;  /* first seq of a DATA frame written */
    size_t count;    /* payloads in it */
    uint32_t flags;  /* its flags */
} datalog;

typedef struct side {
    const char *name;         /* "client" or "server" */
    int server;               /* 1 for the server side */
    int dir;                  /* payload direction tag of what this side sends */
    fstore *fs;               /* its store */
    tether__engine_cfg cfg;   /* its engine configuration */
    tether__engine *e;        /* its engine */
    int accepted;             /* server: HELLO handled on this connection */
    wframe *inbox;            /* frames in flight towards this side */
    size_t in_head, in_n, in_cap; /* inbox ring-less vector: first unread, used, allocated */

    uint64_t next_expect;     /* next seq on_message must bring */
    uint64_t got;             /* on_message calls */
    uint64_t order_err;       /* on_message calls out of order or repeated */
    uint64_t pay_err;         /* payloads with the wrong content */
    uint64_t redelivered;     /* on_message calls with the flag */
    uint8_t *flags;           /* redelivered flag per seq (1 + flag), when tracked */
    size_t flags_cap;         /* seqs tracked in flags */
    int manual_auto_ack;      /* manual mode: ack each message at once (random test) */
    uint64_t acked;           /* highest seq on_acked reported */
    uint64_t acked_err;       /* on_acked ranges that were not contiguous */
    int mismatch_n;           /* on_mismatch calls */
    tether_mismatch_info mi;  /* the last one */
    int mismatch_before_close; /* on_mismatch ran before the close event */
    int welcomed;             /* ev->welcomed seen */
    int resumed;              /* ev->resumed with it */
    int closes;               /* events with close */
    tether__engine_event ev;  /* the last of them */
    int self_err;             /* a negative next_frame return */

    size_t out_frames[8];     /* frames written, by type */
    uint64_t last_ack_out;    /* the last ACK written */
    uint32_t last_bye_out;    /* the code of the last BYE written, or UINT32_MAX */
    datalog *data;            /* every DATA frame written */
    size_t data_n, data_cap;  /* DATA frames logged / allocated */
    uint64_t window_err;      /* DATA frames that passed the window */
} side;

typedef struct world {
    side c;               /* the client */
    side s;               /* the server */
    tether__decoder spy;  /* decodes every frame for the counters */
    tether__buf buf;      /* next_frame's output */
} world;

static const uint8_t ID[16] = {0x5e, 0x55, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};

static void on_message(void *arg, uint64_t seq, const uint8_t *data, size_t len, int redelivered)
{
    side *x = arg;
    x->got++;
    if (seq != x->next_expect) {
        x->order_err++;
    } else {
        x->next_expect++;
    }
    if (!paycheck(seq, !x->dir, data, len)) {
        x->pay_err++;
    }
    if (redelivered) {
        x->redelivered++;
    }
    if (seq < x->flags_cap) {
        x->flags[seq] = (uint8_t)(1 + redelivered);
    }
    if (x->manual_auto_ack) {
        CHECK_OK(tether__engine_ack(x->e, seq, now));
    }
}

static void on_acked(void *arg, uint64_t first, uint64_t last)
{
    side *x = arg;
    if (first != x->acked + 1 || last < first) {
        x->acked_err++;
    }
    x->acked = last;
}

static void on_mismatch(void *arg, const tether_mismatch_info *info)
{
    side *x = arg;
    x->mismatch_n++;
    x->mi = *info;
    x->mismatch_before_close = x->closes == 0;
}

static tether__engine_cfg base_cfg(tether__store_role role)
{
    tether__engine_cfg c;
    memset(&c, 0, sizeof c);
    c.role = role;
    c.max_message = 4096;
    c.window = 64;
    c.ack_every = 16;
    c.ack_delay_ms = 10;
    c.run_max_bytes = 1024;
    c.queue_max_bytes = 1 << 16;
    return c;
}

static void engine_open(side *x, const tether__session_rec *rec)
{
    tether__engine_cb cb = {on_message, on_acked, on_mismatch, x};
    int rc = tether__engine_create(&x->cfg, &x->fs->base, rec, &cb, &x->e);
    CHECK_OK(rc);
    if (rc != TETHER_OK) {
        exit(2);
    }
}

static void side_init(side *x, int server, const tether__engine_cfg *cfg)
{
    memset(x, 0, sizeof *x);
    x->name = server ? "server" : "client";
    x->server = server;
    x->dir = server;
    x->cfg = *cfg;
    x->fs = fstore_open(server ? TETHER__ROLE_SERVER : TETHER__ROLE_CLIENT);
    x->next_expect = 1;
    x->last_bye_out = UINT32_MAX;
    tether__session_rec rec;
    memset(&rec, 0, sizeof rec);
    memcpy(rec.id, ID, 16);
    memset(rec.token, 0x7a, 32);
    CHECK_OK(x->fs->base.ops->session_put(&x->fs->base, &rec));
    engine_open(x, &rec);
}

/* The process restarts: a new engine from what the store holds. */
static void side_restart(side *x)
{
    tether__session_rec rec;
    tether__engine_destroy(x->e);
    x->e = NULL;
    x->accepted = 0;
    CHECK_OK(x->fs->base.ops->session_get(&x->fs->base, ID, &rec));
    engine_open(x, &rec);
}

static void inbox_clear(side *x)
{
    for (size_t i = x->in_head; i < x->in_n; i++) {
        free(x->inbox[i].p);
    }
    x->in_head = x->in_n = 0;
}

static void side_free(side *x)
{
    tether__engine_destroy(x->e);
    x->fs->base.ops->close(&x->fs->base);
    inbox_clear(x);
    free(x->inbox);
    free(x->data);
    free(x->flags);
}

static void track_flags(side *x, size_t n)
{
    x->flags = calloc(n + 1, 1);
    x->flags_cap = n + 1;
}

static void world_init(world *w, const tether__engine_cfg *cc, const tether__engine_cfg *sc)
{
    now = 1000;
    side_init(&w->c, 0, cc);
    side_init(&w->s, 1, sc);
    CHECK_OK(tether__decoder_init(&w->spy, 1u << 30));
    tether__buf_init(&w->buf, 16);
}

static void world_free(world *w)
{
    side_free(&w->c);
    side_free(&w->s);
    tether__decoder_free(&w->spy);
    tether__buf_free(&w->buf);
}

static void push(side *to, const uint8_t *p, size_t len)
{
    if (to->in_n == to->in_cap) {
        if (to->in_head > 0) {
            memmove(to->inbox, to->inbox + to->in_head, (to->in_n - to->in_head) * sizeof(wframe));
            to->in_n -= to->in_head;
            to->in_head = 0;
        } else {
            to->in_cap = to->in_cap ? to->in_cap * 2 : 64;
            to->inbox = realloc(to->inbox, to->in_cap * sizeof(wframe));
        }
    }
    wframe *f = &to->inbox[to->in_n++];
    f->p = malloc(len ? len : 1);
    memcpy(f->p, p, len);
    f->len = len;
}

/* Counts a frame a side wrote and checks DATA against its window. */
static void spy(world *w, side *from, const uint8_t *p, size_t len)
{
    tether__frame f;
    int rc = tether__decode(&w->spy, p, len, &f);
    CHECK_OK(rc);
    if (rc != TETHER_OK) {
        return;
    }
    from->out_frames[f.type & 7]++;
    if (f.type == TETHER__F_ACK) {
        from->last_ack_out = f.u.ack;
    } else if (f.type == TETHER__F_BYE) {
        from->last_bye_out = f.u.close.code;
    } else if (f.type == TETHER__F_DATA) {
        if (from->data_n == from->data_cap) {
            from->data_cap = from->data_cap ? from->data_cap * 2 : 64;
            from->data = realloc(from->data, from->data_cap * sizeof *from->data);
        }
        datalog *d = &from->data[from->data_n++];
        d->first = f.u.data.first_seq;
        d->count = f.u.data.count;
        d->flags = f.u.data.flags;
        uint64_t last = d->first + d->count - 1;
        if (last - tether__engine_rec(from->e)->peer_acked > from->cfg.window) {
            from->window_err++;
        }
    }
}

static void note(side *x, int rc, const tether__engine_event *ev)
{
    if (ev->welcomed) {
        x->welcomed++;
        x->resumed = ev->resumed;
    }
    if (ev->close) {
        x->closes++;
        x->ev = *ev;
        CHECK_EQ_INT(rc, ev->error);
    } else {
        CHECK_OK(rc);
    }
}

/* Hands one frame to a side, as its transport would. */
static void feed(world *w, side *to, const uint8_t *p, size_t len)
{
    tether__engine_event ev;
    int rc;
    if (to->server && !to->accepted) {
        tether__frame f;
        rc = tether__decode(&w->spy, p, len, &f);
        CHECK(rc == TETHER_OK && f.type == TETHER__F_HELLO);
        if (rc != TETHER_OK || f.type != TETHER__F_HELLO) {
            return;
        }
        to->accepted = 1;
        rc = tether__engine_accept(to->e, &f.u.hello, now, &ev);
    } else {
        rc = tether__engine_on_frame(to->e, p, len, now, &ev);
    }
    note(to, rc, &ev);
}

/* Lets a side write at most max frames onto the wire. Returns frames written. */
static size_t write_some(world *w, side *from, side *to, size_t max)
{
    size_t n = 0;
    while (n < max && !from->self_err && tether__engine_want_write(from->e, now)) {
        int rc = tether__engine_next_frame(from->e, now, &w->buf);
        if (rc < 0) {
            from->self_err = rc;
            break;
        }
        if (rc == 0) {
            break;
        }
        CHECK_EQ_INT(rc, 1);
        const uint8_t *p = tether__buf_frame(&w->buf);
        spy(w, from, p, w->buf.len);
        push(to, p, w->buf.len);
        n++;
    }
    return n;
}

/* Delivers at most max frames waiting for a side. Returns frames delivered. */
static size_t deliver_some(world *w, side *to, size_t max)
{
    size_t n = 0;
    while (n < max && to->in_head < to->in_n) {
        wframe f = to->inbox[to->in_head++];
        feed(w, to, f.p, f.len);
        free(f.p);
        n++;
    }
    return n;
}

/* Runs the wire until neither side has anything to write or deliver. */
static void pump(world *w)
{
    for (int i = 0; i < 1000000; i++) {
        size_t moved = write_some(w, &w->c, &w->s, SIZE_MAX);
        moved += write_some(w, &w->s, &w->c, SIZE_MAX);
        moved += deliver_some(w, &w->s, SIZE_MAX);
        moved += deliver_some(w, &w->c, SIZE_MAX);
        if (moved == 0) {
            return;
        }
    }
    CHECK(!"pump did not settle");
}

/* Time passes: both engines are ticked. */
static void advance(world *w, uint64_t ms)
{
    now += ms;
    tether__engine_tick(w->c.e, now);
    tether__engine_tick(w->s.e, now);
}

/* Pumps, letting the ACK timers run, until nothing is left to do. */
static void settle(world *w)
{
    for (int i = 0; i < 20; i++) {
        pump(w);
        advance(w, 1000);
    }
    pump(w);
}

/* The connection drops: frames in flight are lost. */
static void drop(world *w)
{
    inbox_clear(&w->c);
    inbox_clear(&w->s);
    tether__engine_disconnect(w->c.e);
    tether__engine_disconnect(w->s.e);
    w->s.accepted = 0;
    w->c.self_err = 0;
    w->s.self_err = 0;
}

static void conn(world *w)
{
    CHECK_OK(tether__engine_connect(w->c.e, now));
}

/* Sends k messages from a side, each carrying its seq. */
static int send_k(side *x, size_t k)
{
    static uint8_t bufs[64][PAY_MAX];
    tether_msg m[64];
    uint64_t seq = tether__engine_rec(x->e)->out_last + 1;
    if (k > 64) {
        k = 64;
    }
    for (size_t i = 0; i < k; i++) {
        m[i].data = bufs[i];
        m[i].len = mkpay(seq + i, x->dir, bufs[i]);
    }
    uint64_t first = 0;
    int rc = tether__engine_send(x->e, m, k, &first);
    if (rc == TETHER_OK) {
        CHECK_EQ_U64(first, seq);
    }
    return rc;
}

static void send_n(side *x, size_t n)
{
    while (n > 0) {
        size_t k = n > 64 ? 64 : n;
        CHECK_OK(send_k(x, k));
        n -= k;
    }
}

/* Frames injected by a test. */
static void inject_data(world *w, side *to, uint64_t first, size_t count, uint32_t flags, int dir)
{
    uint8_t pay[PAY_MAX];
    tether__buf b;
    tether__buf_init(&b, 0);
    CHECK_OK(tether__encode_data_begin(&b, first, flags, count));
    for (size_t i = 0; i < count; i++) {
        size_t len = mkpay(first + i, dir, pay);
        CHECK_OK(tether__encode_data_payload(&b, pay, len));
    }
    CHECK_OK(tether__encode_data_end(&b));
    feed(w, to, tether__buf_frame(&b), b.len);
    tether__buf_free(&b);
}

static void inject_ack(world *w, side *to, uint64_t seq)
{
    tether__buf b;
    tether__buf_init(&b, 0);
    CHECK_OK(tether__encode_ack(&b, seq));
    feed(w, to, tether__buf_frame(&b), b.len);
    tether__buf_free(&b);
}

static void inject_close(world *w, side *to, int reject, uint32_t code, const char *reason)
{
    tether__buf b;
    tether__buf_init(&b, 0);
    if (reject) {
        CHECK_OK(tether__encode_reject(&b, code, reason));
    } else {
        CHECK_OK(tether__encode_bye(&b, code, reason));
    }
    feed(w, to, tether__buf_frame(&b), b.len);
    tether__buf_free(&b);
}

/* A world whose session is live. */
static void live_world(world *w, const tether__engine_cfg *cc, const tether__engine_cfg *sc)
{
    world_init(w, cc, sc);
    conn(w);
    pump(w);
    CHECK(tether__engine_live(w->c.e));
    CHECK(tether__engine_live(w->s.e));
}

static void live_default(world *w)
{
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    live_world(w, &cc, &sc);
}

static uint64_t committed(const side *x)
{
    return tether__engine_rec(x->e)->recv_cursor;
}

static uint64_t stored_cursor(side *x)
{
    tether__session_rec rec;
    CHECK_OK(x->fs->base.ops->session_get(&x->fs->base, ID, &rec));
    return rec.recv_cursor;
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                     */
/* ------------------------------------------------------------------------ */

TEST(hello_welcome_first_data)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    world_init(&w, &cc, &sc);
    CHECK(!tether__engine_live(w.c.e));
    CHECK(!tether__engine_want_write(w.c.e, now));
    conn(&w);
    CHECK(tether__engine_want_write(w.c.e, now));
    CHECK_EQ_U64(write_some(&w, &w.c, &w.s, SIZE_MAX), 1);
    CHECK_EQ_U64(w.c.out_frames[TETHER__F_HELLO], 1);
    deliver_some(&w, &w.s, SIZE_MAX);
    CHECK(tether__engine_live(w.s.e));
    CHECK_EQ_INT(w.s.closes, 0);
    CHECK_EQ_U64(write_some(&w, &w.s, &w.c, SIZE_MAX), 1);
    CHECK_EQ_U64(w.s.out_frames[TETHER__F_WELCOME], 1);
    deliver_some(&w, &w.c, SIZE_MAX);
    CHECK_EQ_INT(w.c.welcomed, 1);
    CHECK_EQ_INT(w.c.resumed, 0);
    CHECK(tether__engine_live(w.c.e));
    CHECK_EQ_INT(tether__engine_rec(w.c.e)->established, 1);
    CHECK_EQ_INT(tether__engine_rec(w.s.e)->established, 1);
    tether__session_rec rec;
    CHECK_OK(w.c.fs->base.ops->session_get(&w.c.fs->base, ID, &rec));
    CHECK_EQ_INT(rec.established, 1);

    CHECK_OK(send_k(&w.c, 1));
    CHECK_OK(send_k(&w.s, 1));
    pump(&w);
    CHECK_EQ_U64(w.s.got, 1);
    CHECK_EQ_U64(w.c.got, 1);
    CHECK_EQ_U64(w.s.pay_err + w.c.pay_err, 0);
    CHECK_EQ_U64(w.s.redelivered + w.c.redelivered, 0);
    CHECK_EQ_U64(committed(&w.s), 1);
    CHECK_EQ_U64(stored_cursor(&w.s), 1);
    /* The ACKs wait for their timer. */
    CHECK_EQ_U64(w.c.acked, 0);
    uint64_t count = 9, bytes = 9;
    tether__engine_pending(w.c.e, &count, &bytes);
    CHECK_EQ_U64(count, 1);
    CHECK(bytes > 0);
    advance(&w, 10);
    pump(&w);
    CHECK_EQ_U64(w.c.acked, 1);
    CHECK_EQ_U64(w.s.acked, 1);
    tether__engine_pending(w.c.e, &count, &bytes);
    CHECK_EQ_U64(count, 0);
    CHECK_EQ_U64(bytes, 0);
    CHECK_EQ_INT(w.c.closes + w.s.closes, 0);
    world_free(&w);
}

static void pending_agrees(side *x)
{
    uint64_t c1, b1, c2, b2;
    tether__engine_pending(x->e, &c1, &b1);
    CHECK_OK(x->fs->base.ops->pending(&x->fs->base, ID, &c2, &b2));
    CHECK_EQ_U64(c1, c2);
    CHECK_EQ_U64(b1, b2);
}

/* One run of the random exchange. manual: both sides in manual-ack mode;
 * restarts: engines are sometimes recreated from their store; qmax: the
 * client's queue bound (small: most of its messages spill to the store). */
static void random_exchange(uint32_t seed, int manual, int restarts, size_t qmax)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    cc.window = 32;
    sc.window = 100;
    sc.ack_every = 40;
    cc.run_max_bytes = 300;
    cc.queue_max_bytes = qmax;
    cc.manual_ack = sc.manual_ack = manual;
    world_init(&w, &cc, &sc);
    w.c.manual_auto_ack = w.s.manual_auto_ack = manual;
    const uint64_t N = 10000;
    uint64_t x = seed ? seed : 1;
    uint64_t drops = 0, rounds = 0;
    conn(&w);
    for (;;) {
        uint64_t out_c = tether__engine_rec(w.c.e)->out_last;
        uint64_t out_s = tether__engine_rec(w.s.e)->out_last;
        if (out_c == N && out_s == N && w.c.acked == N && w.s.acked == N) {
            break;
        }
        if (++rounds > 2000000) {
            CHECK(!"the exchange did not finish");
            break;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint32_t r = (uint32_t)(x >> 11);
        if (out_c < N && r % 3 == 0) {
            size_t k = 1 + (r >> 3) % 40;
            CHECK_OK(send_k(&w.c, k > N - out_c ? (size_t)(N - out_c) : k));
        }
        if (out_s < N && (r >> 2) % 3 == 0) {
            size_t k = 1 + (r >> 5) % 40;
            CHECK_OK(send_k(&w.s, k > N - out_s ? (size_t)(N - out_s) : k));
        }
        write_some(&w, &w.c, &w.s, 1 + (r >> 9) % 4);
        write_some(&w, &w.s, &w.c, 1 + (r >> 11) % 4);
        deliver_some(&w, &w.s, (r >> 13) % 4);
        deliver_some(&w, &w.c, (r >> 15) % 4);
        advance(&w, (r >> 17) % 4);
        /* Never acknowledged past what the receiver committed. */
        CHECK(tether__engine_rec(w.c.e)->peer_acked <= committed(&w.s));
        CHECK(tether__engine_rec(w.s.e)->peer_acked <= committed(&w.c));
        /* The engine's pending bytes stay equal to what the store holds. */
        if (rounds % 16 == 0) {
            pending_agrees(&w.c);
            pending_agrees(&w.s);
        }
        if ((r >> 19) % 100 < 2) {
            drop(&w);
            drops++;
            if (restarts && (r >> 26) % 4 == 0) {
                side_restart((r >> 28) & 1 ? &w.c : &w.s);
            }
            conn(&w);
        }
    }
    CHECK(drops > 10);
    side *sides[2] = {&w.c, &w.s};
    for (int i = 0; i < 2; i++) {
        side *a = sides[i];
        side *b = sides[1 - i];
        CHECK_EQ_U64(a->got, N);
        CHECK_EQ_U64(a->order_err, 0);
        CHECK_EQ_U64(a->pay_err, 0);
        CHECK_EQ_U64(a->next_expect, N + 1);
        CHECK_EQ_U64(a->acked, N);
        CHECK_EQ_U64(a->acked_err, 0);
        CHECK_EQ_U64(a->window_err, 0);
        CHECK_EQ_U64(committed(b), a->acked);
        CHECK_EQ_U64(stored_cursor(b), N);
        CHECK_EQ_INT(a->mismatch_n, 0);
        CHECK_EQ_INT(a->closes, 0);
        uint64_t count, bytes;
        tether__engine_pending(a->e, &count, &bytes);
        CHECK_EQ_U64(count, 0);
        CHECK_EQ_U64(bytes, 0);
        CHECK_OK(a->fs->base.ops->pending(&a->fs->base, ID, &count, &bytes));
        CHECK_EQ_U64(count, 0);
    }
    /* Some messages were resent after a drop, and were flagged. */
    CHECK(w.c.redelivered + w.s.redelivered > 0 || !restarts);
    world_free(&w);
}

TEST(exactly_once_random_disconnects)
{
    random_exchange(12345, 0, 0, 1 << 20);
    random_exchange(777, 0, 1, 1 << 20);
    random_exchange(31337, 0, 1, 2000);
}

TEST(exactly_once_manual_ack_random)
{
    random_exchange(4242, 1, 1, 2000);
}

TEST(coalescing)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    cc.window = 2000;
    cc.run_max_bytes = 64 * 1024;
    sc.max_message = 64 * 1024; /* the run is bounded by the peer's max_message too */
    sc.ack_every = 2000;
    world_init(&w, &cc, &sc);
    static uint8_t small[1000][10];
    tether_msg m[1000];
    for (int i = 0; i < 1000; i++) {
        memset(small[i], 'a' + i % 26, 10);
        m[i].data = small[i];
        m[i].len = 10;
    }
    CHECK_OK(tether__engine_send(w.c.e, m, 1000, NULL));
    conn(&w);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 1000);
    CHECK_EQ_U64(w.c.out_frames[TETHER__F_DATA], 1);
    CHECK_EQ_U64(w.c.data[0].count, 1000);

    /* With runs of at most 100 bytes: ten messages per frame. */
    world_free(&w);
    cc.run_max_bytes = 100;
    world_init(&w, &cc, &sc);
    CHECK_OK(tether__engine_send(w.c.e, m, 1000, NULL));
    conn(&w);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 1000);
    CHECK_EQ_U64(w.c.out_frames[TETHER__F_DATA], 100);
    for (size_t i = 0; i < w.c.data_n; i++) {
        CHECK_EQ_U64(w.c.data[i].count, 10);
        CHECK_EQ_U64(w.c.data[i].first, 1 + 10 * i);
    }
    /* A message larger than run_max_bytes still goes, alone. */
    static uint8_t big[500];
    tether_msg b[3] = {{small[0], 10}, {big, sizeof big}, {small[1], 10}};
    CHECK_OK(tether__engine_send(w.c.e, b, 3, NULL));
    size_t before = w.c.data_n;
    pump(&w);
    CHECK_EQ_U64(w.s.got, 1003);
    CHECK_EQ_U64(w.c.data_n - before, 3);
    world_free(&w);
}

TEST(window_limit)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    cc.window = 8;
    cc.run_max_bytes = 100; /* about two messages a frame */
    sc.manual_ack = 1;      /* the server acknowledges only when told */
    live_world(&w, &cc, &sc);
    send_n(&w.c, 100);
    pump(&w);
    advance(&w, 1000);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 8);
    CHECK(!tether__engine_want_write(w.c.e, now));
    CHECK_EQ_U64(w.c.out_frames[TETHER__F_DATA], 3); /* 21+34, 47+20+33, 46+19+32 bytes */
    CHECK_OK(tether__engine_ack(w.s.e, 5, now));
    pump(&w);
    advance(&w, 10);
    pump(&w);
    CHECK_EQ_U64(w.c.acked, 5);
    CHECK_EQ_U64(w.s.got, 13);
    CHECK_EQ_U64(w.c.window_err, 0);
    for (int i = 0; i < 40; i++) {
        CHECK_OK(tether__engine_ack(w.s.e, w.s.got, now));
        advance(&w, 10);
        pump(&w);
    }
    CHECK_EQ_U64(w.s.got, 100);
    CHECK_EQ_U64(w.c.acked, 100);
    CHECK_EQ_U64(w.c.window_err, 0);
    CHECK_EQ_U64(w.s.order_err, 0);
    world_free(&w);
}

TEST(ack_every_k)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    sc.ack_every = 10;
    sc.ack_delay_ms = 1000;
    live_world(&w, &cc, &sc);
    for (int i = 0; i < 25; i++) {
        CHECK_OK(send_k(&w.c, 1));
        pump(&w);
    }
    CHECK_EQ_U64(w.s.got, 25);
    CHECK_EQ_U64(w.s.out_frames[TETHER__F_ACK], 2);
    CHECK_EQ_U64(w.c.acked, 20);
    advance(&w, 999);
    pump(&w);
    CHECK_EQ_U64(w.c.acked, 20);
    advance(&w, 1);
    pump(&w);
    CHECK_EQ_U64(w.c.acked, 25);
    CHECK_EQ_U64(w.s.out_frames[TETHER__F_ACK], 3);
    world_free(&w);
}

TEST(ack_by_timer)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    sc.ack_every = 100;
    sc.ack_delay_ms = 50;
    live_world(&w, &cc, &sc);
    CHECK_EQ_U64(tether__engine_deadline(w.s.e), UINT64_MAX);
    uint64_t t0 = now;
    send_n(&w.c, 3);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 3);
    CHECK_EQ_U64(tether__engine_deadline(w.s.e), t0 + 50);
    CHECK(!tether__engine_want_write(w.s.e, now));
    advance(&w, 49);
    CHECK(!tether__engine_want_write(w.s.e, now));
    pump(&w);
    CHECK_EQ_U64(w.s.out_frames[TETHER__F_ACK], 0);
    /* The timer runs from the first unacked message, not the latest. */
    send_n(&w.c, 2);
    pump(&w);
    CHECK_EQ_U64(tether__engine_deadline(w.s.e), t0 + 50);
    advance(&w, 1);
    CHECK(tether__engine_want_write(w.s.e, now));
    pump(&w);
    CHECK_EQ_U64(w.s.out_frames[TETHER__F_ACK], 1);
    CHECK_EQ_U64(w.s.last_ack_out, 5);
    CHECK_EQ_U64(w.c.acked, 5);
    CHECK_EQ_U64(tether__engine_deadline(w.s.e), UINT64_MAX);
    world_free(&w);
}

TEST(ack_when_peer_window_full)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    cc.window = 4;
    sc.ack_every = 100;
    sc.ack_delay_ms = 1000;
    live_world(&w, &cc, &sc);
    send_n(&w.c, 10);
    pump(&w); /* no time passes */
    CHECK_EQ_U64(w.s.got, 10);
    CHECK_EQ_U64(w.c.acked, 8);
    CHECK(w.s.out_frames[TETHER__F_ACK] >= 2);
    CHECK_EQ_U64(w.c.window_err, 0);
    world_free(&w);
}

TEST(duplicate_reacked_not_redelivered)
{
    world w;
    live_default(&w);
    send_n(&w.c, 3);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 3);
    CHECK(!tether__engine_want_write(w.s.e, now));
    inject_data(&w, &w.s, 2, 2, 0, 0);
    CHECK_EQ_U64(w.s.got, 3);
    CHECK_EQ_INT(w.s.closes, 0);
    CHECK(tether__engine_want_write(w.s.e, now));
    CHECK_EQ_U64(write_some(&w, &w.s, &w.c, SIZE_MAX), 1);
    CHECK_EQ_U64(w.s.last_ack_out, 3);
    /* A run that overlaps: the new part is delivered, once. */
    inject_data(&w, &w.s, 3, 2, 0, 0);
    CHECK_EQ_U64(w.s.got, 4);
    CHECK_EQ_U64(w.s.order_err, 0);
    CHECK_EQ_U64(committed(&w.s), 4);
    CHECK(tether__engine_want_write(w.s.e, now));
    write_some(&w, &w.s, &w.c, SIZE_MAX);
    CHECK_EQ_U64(w.s.last_ack_out, 4);
    world_free(&w);
}

TEST(gap_is_protocol_error)
{
    world w;
    live_default(&w);
    send_n(&w.c, 3);
    pump(&w);
    inject_data(&w, &w.s, 4, 1, 0, 0);
    CHECK_EQ_U64(w.s.got, 4);
    inject_data(&w, &w.s, 6, 2, 0, 0);
    CHECK_EQ_U64(w.s.got, 4);
    CHECK_EQ_INT(w.s.closes, 1);
    CHECK_EQ_INT(w.s.ev.error, TETHER_EGAP);
    CHECK_EQ_STR(w.s.ev.detail, "gap: expected seq 5, got 6");
    CHECK(!tether__engine_live(w.s.e));
    CHECK_EQ_U64(committed(&w.s), 4);
    tether__engine_event ce;
    CHECK(tether__engine_close_event(w.s.e, &ce));
    CHECK_EQ_INT(ce.error, TETHER_EGAP);
    /* Only the BYE goes out: no ACK, and nothing past what was committed. */
    advance(&w, 1000);
    CHECK_EQ_U64(write_some(&w, &w.s, &w.c, SIZE_MAX), 1);
    CHECK_EQ_INT(w.s.last_bye_out, TETHER_REJECT_PROTOCOL);
    CHECK_EQ_U64(w.s.out_frames[TETHER__F_ACK], 0);
    CHECK(!tether__engine_want_write(w.s.e, now));
    /* Later frames are ignored until the connection is gone. */
    inject_data(&w, &w.s, 5, 1, 0, 0);
    CHECK_EQ_U64(w.s.got, 4);
    CHECK_EQ_INT(w.s.closes, 1);
    deliver_some(&w, &w.c, SIZE_MAX);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EPEER_CLOSED);
    CHECK_EQ_INT(w.c.ev.peer_code, TETHER_REJECT_PROTOCOL);
    CHECK(w.c.acked <= 4);
    world_free(&w);
}

TEST(ack_beyond_out_last)
{
    world w;
    live_default(&w);
    send_n(&w.c, 5);
    inject_ack(&w, &w.c, 6);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EPROTO);
    CHECK_EQ_U64(w.c.acked, 0);
    write_some(&w, &w.c, &w.s, SIZE_MAX);
    CHECK_EQ_INT(w.c.last_bye_out, TETHER_REJECT_PROTOCOL);
    CHECK_EQ_U64(w.c.out_frames[TETHER__F_DATA], 0);
    world_free(&w);

    /* A stale ACK is ignored. */
    live_default(&w);
    send_n(&w.c, 5);
    inject_ack(&w, &w.c, 3);
    CHECK_EQ_U64(w.c.acked, 3);
    inject_ack(&w, &w.c, 2);
    inject_ack(&w, &w.c, 3);
    CHECK_EQ_U64(w.c.acked, 3);
    CHECK_EQ_U64(w.c.acked_err, 0);
    CHECK_EQ_INT(w.c.closes, 0);
    world_free(&w);
}

TEST(malformed_bytes)
{
    static const uint8_t junk[][4] = {{0xc1}, {0x93, 0x04}, {0x91, 0x63}, {0x92, 0x05, 0x00}};
    static const size_t lens[] = {1, 2, 2, 3};
    for (int i = 0; i < 4; i++) {
        world w;
        live_default(&w);
        tether__frame f;
        int want = tether__decode(&w.spy, junk[i], lens[i], &f);
        CHECK(want < 0);
        feed(&w, &w.s, junk[i], lens[i]);
        CHECK_EQ_INT(w.s.closes, 1);
        CHECK_EQ_INT(w.s.ev.error, want);
        write_some(&w, &w.s, &w.c, SIZE_MAX);
        CHECK_EQ_INT(w.s.last_bye_out, TETHER_REJECT_PROTOCOL);
        world_free(&w);
    }
    /* A payload beyond our max_message: BYE 7. */
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    sc.max_message = 16;
    live_world(&w, &cc, &sc);
    inject_data(&w, &w.s, 1, 1, 0, 0); /* 8 + 13 bytes */
    CHECK_EQ_INT(w.s.ev.error, TETHER_EFRAME_OVERSIZE);
    write_some(&w, &w.s, &w.c, SIZE_MAX);
    CHECK_EQ_INT(w.s.last_bye_out, TETHER_REJECT_TOO_BIG);
    CHECK_EQ_U64(w.s.got, 0);
    world_free(&w);
}

TEST(redelivered_flag)
{
    world w;
    live_default(&w);
    track_flags(&w.s, 20);
    send_n(&w.c, 5);
    write_some(&w, &w.c, &w.s, SIZE_MAX); /* written, then lost */
    drop(&w);
    send_n(&w.c, 2);
    conn(&w);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 7);
    for (int s = 1; s <= 5; s++) {
        CHECK_EQ_INT(w.s.flags[s], 2);
    }
    CHECK_EQ_INT(w.s.flags[6], 1);
    CHECK_EQ_INT(w.s.flags[7], 1);
    /* Runs never mix flagged and unflagged messages. */
    size_t n = w.c.data_n;
    CHECK(n >= 3);
    CHECK_EQ_U64(w.c.data[n - 2].first, 1);
    CHECK_EQ_U64(w.c.data[n - 2].count, 5);
    CHECK_EQ_INT(w.c.data[n - 2].flags, TETHER__DATA_FLAG_REDELIVERED);
    CHECK_EQ_U64(w.c.data[n - 1].first, 6);
    CHECK_EQ_INT(w.c.data[n - 1].flags, 0);
    /* Fresh messages on a fresh connection are not flagged. */
    send_n(&w.c, 1);
    pump(&w);
    CHECK_EQ_INT(w.s.flags[8], 1);
    world_free(&w);
}

TEST(resume_after_restart)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    cc.run_max_bytes = 1; /* one message per DATA frame */
    sc.ack_delay_ms = 1000;
    live_world(&w, &cc, &sc);
    track_flags(&w.s, 20);
    send_n(&w.c, 10);
    write_some(&w, &w.c, &w.s, SIZE_MAX);
    deliver_some(&w, &w.s, 4); /* 1..4 arrive and are committed, unacked */
    CHECK_EQ_U64(w.s.got, 4);
    CHECK_EQ_U64(committed(&w.s), 4);
    drop(&w);
    side_restart(&w.c);
    uint64_t count;
    tether__engine_pending(w.c.e, &count, NULL);
    CHECK_EQ_U64(count, 10);
    conn(&w);
    pump(&w);
    CHECK_EQ_INT(w.c.resumed, 1);
    CHECK_EQ_U64(w.c.acked, 4); /* from the WELCOME's cursor */
    CHECK_EQ_U64(w.s.got, 10);
    CHECK_EQ_U64(w.s.order_err, 0);
    for (int s = 1; s <= 4; s++) {
        CHECK_EQ_INT(w.s.flags[s], 1);
    }
    for (int s = 5; s <= 10; s++) {
        CHECK_EQ_INT(w.s.flags[s], 2);
    }
    CHECK_EQ_U64(w.c.data[w.c.data_n - 6].first, 5);

    /* The server restarts: what it committed is not delivered again. */
    send_n(&w.c, 2);
    write_some(&w, &w.c, &w.s, SIZE_MAX);
    deliver_some(&w, &w.s, SIZE_MAX);
    CHECK_EQ_U64(w.s.got, 12);
    drop(&w);
    side_restart(&w.s);
    conn(&w);
    settle(&w);
    CHECK_EQ_U64(w.s.got, 12);
    CHECK_EQ_U64(w.c.acked, 12);
    CHECK_EQ_INT(w.c.mismatch_n + w.s.mismatch_n, 0);
    CHECK_EQ_INT(w.c.closes + w.s.closes, 0);
    world_free(&w);
}

TEST(spilled_backlog_streams_from_store)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    cc.queue_max_bytes = 256;
    cc.run_max_bytes = 512;
    cc.window = 100;
    world_init(&w, &cc, &sc);
    size_t qb, peak, scratch;
    for (int i = 0; i < 5000; i++) {
        CHECK_OK(send_k(&w.c, 1));
        tether__engine_debug_mem(w.c.e, &qb, NULL, NULL);
        CHECK(qb <= 256);
    }
    tether__engine_debug_mem(w.c.e, &qb, &peak, NULL);
    CHECK(qb > 0);
    conn(&w);
    size_t max_scratch = 0;
    for (int i = 0; i < 100000 && w.c.acked < 5000; i++) {
        write_some(&w, &w.c, &w.s, 1);
        deliver_some(&w, &w.s, SIZE_MAX);
        write_some(&w, &w.s, &w.c, SIZE_MAX);
        deliver_some(&w, &w.c, SIZE_MAX);
        if (i % 7 == 0) {
            advance(&w, 10);
        }
        tether__engine_debug_mem(w.c.e, &qb, &peak, &scratch);
        if (scratch > max_scratch) {
            max_scratch = scratch;
        }
    }
    CHECK_EQ_U64(w.s.got, 5000);
    CHECK_EQ_U64(w.s.order_err + w.s.pay_err, 0);
    CHECK_EQ_U64(w.c.acked, 5000);
    CHECK(peak <= 256);
    CHECK(w.c.fs->loads > 10);
    /* One run's payloads (512 bytes) and their lengths, rounded up. */
    CHECK(max_scratch <= 8192);
    /* Once the backlog is gone, new messages are kept in memory again. */
    size_t loads = w.c.fs->loads;
    send_n(&w.c, 3);
    settle(&w);
    CHECK_EQ_U64(w.s.got, 5003);
    CHECK_EQ_U64(w.c.fs->loads, loads);
    world_free(&w);
}

TEST(large_backlog_bounded_memory)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    cc.queue_max_bytes = 4096;
    cc.run_max_bytes = 16384;
    cc.window = 1024;
    sc.ack_every = 512;
    world_init(&w, &cc, &sc);
    const size_t N = 200000;
    send_n(&w.c, N);
    size_t qb, peak, scratch;
    conn(&w);
    pump(&w);
    settle(&w);
    tether__engine_debug_mem(w.c.e, &qb, &peak, &scratch);
    CHECK_EQ_U64(w.s.got, N);
    CHECK_EQ_U64(w.s.order_err + w.s.pay_err, 0);
    CHECK_EQ_U64(w.c.acked, N);
    CHECK(peak <= 4096);
    CHECK(scratch <= 16384 * 2 + 8 * 1024 * 2);
    world_free(&w);
}

TEST(manual_ack)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    sc.manual_ack = 1;
    live_world(&w, &cc, &sc);
    CHECK_ERR(tether__engine_ack(w.c.e, 1, now), TETHER_EINVAL); /* not manual */
    send_n(&w.c, 5);
    pump(&w);
    advance(&w, 5000);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 5);
    CHECK_EQ_U64(committed(&w.s), 0);
    CHECK_EQ_U64(stored_cursor(&w.s), 0);
    CHECK_EQ_U64(w.s.out_frames[TETHER__F_ACK], 0);
    CHECK_EQ_U64(w.c.acked, 0);
    CHECK_ERR(tether__engine_ack(w.s.e, 6, now), TETHER_EINVAL);
    CHECK_ERR(tether__engine_ack(w.s.e, 0, now), TETHER_EINVAL);
    CHECK_OK(tether__engine_ack(w.s.e, 3, now));
    CHECK_EQ_U64(stored_cursor(&w.s), 3);
    CHECK_OK(tether__engine_ack(w.s.e, 2, now)); /* behind the cursor: nothing to do */
    CHECK_EQ_U64(committed(&w.s), 3);
    pump(&w);
    CHECK_EQ_U64(w.c.acked, 0); /* the ACK waits for its timer */
    advance(&w, 10);
    pump(&w);
    CHECK_EQ_U64(w.c.acked, 3);
    /* After a reconnect the uncommitted ones come again but are not
     * delivered twice in this process. */
    drop(&w);
    conn(&w);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 5);
    CHECK_OK(tether__engine_ack(w.s.e, 5, now));
    advance(&w, 10);
    pump(&w);
    CHECK_EQ_U64(w.c.acked, 5);
    /* After a restart they are delivered again, flagged. */
    send_n(&w.c, 2);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 7);
    drop(&w);
    side_restart(&w.s);
    w.s.next_expect = 6;
    conn(&w);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 9);
    CHECK_EQ_U64(w.s.redelivered, 2);
    CHECK_EQ_U64(w.s.order_err, 0);
    world_free(&w);
}

/* Sets up a client that has 7 acked and 3 unacked messages on a live session. */
static void history(world *w)
{
    live_default(w);
    send_n(&w->c, 7);
    settle(w);
    CHECK_EQ_U64(w->c.acked, 7);
    send_n(&w->c, 3);
    drop(w);
}

TEST(mismatch_server_lost_session)
{
    world w;
    history(&w);
    /* The server lost its store: a new record under the same id. */
    tether__engine_destroy(w.s.e);
    w.s.fs->base.ops->close(&w.s.fs->base);
    w.s.fs = fstore_open(TETHER__ROLE_SERVER);
    tether__session_rec rec;
    memset(&rec, 0, sizeof rec);
    memcpy(rec.id, ID, 16);
    CHECK_OK(w.s.fs->base.ops->session_put(&w.s.fs->base, &rec));
    engine_open(&w.s, &rec);
    uint64_t got = w.s.got;
    conn(&w);
    pump(&w);
    CHECK_EQ_INT(w.s.mismatch_n, 0);
    CHECK_EQ_INT(w.c.mismatch_n, 1);
    CHECK(w.c.mismatch_before_close);
    CHECK_EQ_INT(w.c.mi.peer_knows_session, 0);
    CHECK_EQ_U64(w.c.mi.lost_acked, 7);
    CHECK_EQ_U64(w.c.mi.local_peer_acked, 7);
    CHECK_EQ_U64(w.c.mi.local_out_last, 10);
    CHECK_MEM(w.c.mi.session.bytes, ID, 16);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EMISMATCH);
    CHECK_EQ_INT(w.c.welcomed, 1); /* only the first connection */
    CHECK_EQ_INT(w.c.last_bye_out, TETHER_REJECT_MISMATCH);
    CHECK_EQ_INT(w.s.ev.error, TETHER_EMISMATCH);
    CHECK_EQ_U64(w.s.got, got);
    CHECK(!tether__engine_live(w.c.e));
    world_free(&w);
}

TEST(mismatch_server_cursor_behind)
{
    world w;
    history(&w);
    /* The server's store went back in time (a restored backup). */
    tether__session_rec rec;
    CHECK_OK(w.s.fs->base.ops->session_get(&w.s.fs->base, ID, &rec));
    rec.recv_cursor = 5;
    tether__engine_destroy(w.s.e);
    w.s.fs->base.ops->close(&w.s.fs->base);
    w.s.fs = fstore_open(TETHER__ROLE_SERVER);
    CHECK_OK(w.s.fs->base.ops->session_put(&w.s.fs->base, &rec));
    engine_open(&w.s, &rec);
    conn(&w);
    pump(&w);
    CHECK_EQ_INT(w.c.mismatch_n, 1);
    CHECK_EQ_INT(w.c.mi.peer_knows_session, 1);
    CHECK_EQ_U64(w.c.mi.peer_recv_cursor, 5);
    CHECK_EQ_U64(w.c.mi.lost_acked, 2);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EMISMATCH);
    CHECK_EQ_U64(w.c.acked, 7);
    world_free(&w);
}

TEST(mismatch_client_cursor_beyond_server)
{
    world w;
    live_default(&w);
    send_n(&w.s, 9);
    settle(&w);
    CHECK_EQ_U64(committed(&w.c), 9);
    drop(&w);
    /* The server forgot its last messages: out_last 4 < the client's cursor 9. */
    tether__session_rec rec;
    CHECK_OK(w.s.fs->base.ops->session_get(&w.s.fs->base, ID, &rec));
    rec.out_last = 4;
    rec.peer_acked = 4;
    tether__engine_destroy(w.s.e);
    w.s.fs->base.ops->close(&w.s.fs->base);
    w.s.fs = fstore_open(TETHER__ROLE_SERVER);
    CHECK_OK(w.s.fs->base.ops->session_put(&w.s.fs->base, &rec));
    engine_open(&w.s, &rec);
    conn(&w);
    write_some(&w, &w.c, &w.s, SIZE_MAX);
    deliver_some(&w, &w.s, SIZE_MAX);
    CHECK_EQ_INT(w.s.mismatch_n, 1);
    CHECK(w.s.mismatch_before_close);
    CHECK_EQ_INT(w.s.ev.error, TETHER_EMISMATCH);
    CHECK_EQ_U64(w.s.mi.peer_recv_cursor, 9);
    CHECK_EQ_U64(w.s.mi.local_out_last, 4);
    CHECK(!tether__engine_live(w.s.e));
    write_some(&w, &w.s, &w.c, SIZE_MAX);
    CHECK_EQ_U64(w.s.out_frames[TETHER__F_WELCOME], 2);
    CHECK_EQ_INT(w.s.last_bye_out, TETHER_REJECT_MISMATCH);
    deliver_some(&w, &w.c, SIZE_MAX);
    /* The client sees it in the WELCOME itself: one report, not two. */
    CHECK_EQ_INT(w.c.mismatch_n, 1);
    CHECK_EQ_U64(w.c.mi.unknown_received, 5);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EMISMATCH);
    world_free(&w);
}

TEST(mismatch_only_server_sees)
{
    world w;
    live_default(&w);
    send_n(&w.s, 8);
    settle(&w);
    CHECK_EQ_U64(w.s.acked, 8);
    drop(&w);
    /* The client's store went back: its cursor 4 is behind the server's acked 8. */
    tether__session_rec rec;
    CHECK_OK(w.c.fs->base.ops->session_get(&w.c.fs->base, ID, &rec));
    rec.recv_cursor = 4;
    tether__engine_destroy(w.c.e);
    w.c.fs->base.ops->close(&w.c.fs->base);
    w.c.fs = fstore_open(TETHER__ROLE_CLIENT);
    CHECK_OK(w.c.fs->base.ops->session_put(&w.c.fs->base, &rec));
    engine_open(&w.c, &rec);
    conn(&w);
    pump(&w);
    CHECK_EQ_INT(w.s.mismatch_n, 1);
    CHECK_EQ_U64(w.s.mi.lost_acked, 4);
    /* The WELCOME was consistent for the client; the BYE 6 after it is reported
     * with the WELCOME's numbers. */
    CHECK_EQ_INT(w.c.mismatch_n, 1);
    CHECK_EQ_INT(w.c.mi.peer_knows_session, 1);
    CHECK_EQ_U64(w.c.mi.peer_out_last, 8);
    CHECK_EQ_U64(w.c.mi.local_recv_cursor, 4);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EMISMATCH);
    CHECK_EQ_INT(w.c.ev.peer_code, TETHER_REJECT_MISMATCH);
    world_free(&w);
}

TEST(mismatch_check_pure)
{
    tether__session_rec r;
    tether_mismatch_info mi;
    memset(&r, 0, sizeof r);
    memcpy(r.id, ID, 16);
    /* Fresh on both sides, even with a backlog. */
    r.out_last = 50;
    CHECK_EQ_INT(tether__mismatch_check(&r, 0, 0, 0, 0, &mi), 0);
    CHECK_EQ_INT(tether__mismatch_check(&r, 1, 0, 0, 0, &mi), 0);
    /* We expect history; the peer has none. */
    CHECK_EQ_INT(tether__mismatch_check(&r, 0, 1, 0, 0, &mi), 1);
    CHECK_EQ_INT(mi.peer_knows_session, 0);
    r.peer_acked = 20;
    r.recv_cursor = 30;
    /* Consistent: the peer's cursor between our acked and out_last, its
     * out_last at or beyond our cursor. */
    CHECK_EQ_INT(tether__mismatch_check(&r, 1, 1, 30, 20, &mi), 0);
    CHECK_EQ_INT(tether__mismatch_check(&r, 1, 1, 99, 50, &mi), 0);
    CHECK_EQ_INT(tether__mismatch_check(&r, 1, 1, 30, 19, &mi), 1);
    CHECK_EQ_U64(mi.lost_acked, 1);
    CHECK_EQ_INT(tether__mismatch_check(&r, 1, 1, 30, 51, &mi), 1);
    CHECK_EQ_U64(mi.lost_acked, 0);
    CHECK_EQ_INT(tether__mismatch_check(&r, 1, 1, 25, 20, &mi), 1);
    CHECK_EQ_U64(mi.unknown_received, 5);
    CHECK_MEM(mi.session.bytes, ID, 16);
    CHECK_EQ_U64(mi.local_out_last, 50);
    CHECK_EQ_U64(mi.local_peer_acked, 20);
    CHECK_EQ_U64(mi.local_recv_cursor, 30);
    CHECK_EQ_U64(mi.peer_out_last, 25);
    CHECK_EQ_U64(mi.peer_recv_cursor, 20);
    CHECK_EQ_INT(mi.peer_knows_session, 1);
}

TEST(outbox_caps)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    cc.outbox_max_messages = 3;
    sc.outbox_max_bytes = 100;
    world_init(&w, &cc, &sc);
    CHECK_OK(send_k(&w.c, 3));
    CHECK_ERR(send_k(&w.c, 1), TETHER_EOUTBOX_FULL);
    uint64_t count, bytes;
    tether__engine_pending(w.c.e, &count, NULL);
    CHECK_EQ_U64(count, 3);
    CHECK_EQ_U64(tether__engine_rec(w.c.e)->out_last, 3);
    CHECK_OK(w.c.fs->base.ops->pending(&w.c.fs->base, ID, &count, &bytes));
    CHECK_EQ_U64(count, 3);
    static uint8_t b60[60], b50[50];
    tether_msg m = {b60, sizeof b60};
    CHECK_OK(tether__engine_send(w.s.e, &m, 1, NULL));
    m.data = b50;
    m.len = sizeof b50;
    CHECK_ERR(tether__engine_send(w.s.e, &m, 1, NULL), TETHER_EOUTBOX_FULL);
    tether__engine_pending(w.s.e, &count, &bytes);
    CHECK_EQ_U64(count, 1);
    CHECK_EQ_U64(bytes, 60);
    /* Acknowledged messages make room. */
    conn(&w);
    settle(&w);
    CHECK_EQ_U64(w.c.acked, 3);
    CHECK_OK(send_k(&w.c, 3));
    CHECK_OK(tether__engine_send(w.s.e, &m, 1, NULL));
    world_free(&w);
}

TEST(send_arguments)
{
    world w;
    live_default(&w);
    static uint8_t big[4097];
    tether_msg m = {big, sizeof big};
    CHECK_ERR(tether__engine_send(w.c.e, &m, 1, NULL), TETHER_ETOOBIG);
    tether_msg two[2] = {{big, 10}, {big, sizeof big}};
    CHECK_ERR(tether__engine_send(w.c.e, two, 2, NULL), TETHER_ETOOBIG);
    CHECK_EQ_U64(tether__engine_rec(w.c.e)->out_last, 0);
    uint64_t count, bytes;
    CHECK_OK(w.c.fs->base.ops->pending(&w.c.fs->base, ID, &count, &bytes));
    CHECK_EQ_U64(count, 0);
    CHECK_ERR(tether__engine_send(w.c.e, &m, 0, NULL), TETHER_EINVAL);
    tether_msg null = {NULL, 3};
    CHECK_ERR(tether__engine_send(w.c.e, &null, 1, NULL), TETHER_EINVAL);
    /* Empty messages are messages. */
    tether_msg empty = {NULL, 0};
    uint64_t seq = 0;
    CHECK_OK(tether__engine_send(w.c.e, &empty, 1, &seq));
    CHECK_EQ_U64(seq, 1);
    m.len = 4096;
    CHECK_OK(tether__engine_send(w.c.e, &m, 1, &seq));
    CHECK_EQ_U64(seq, 2);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 2);
    world_free(&w);
}

TEST(message_larger_than_peer_accepts)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    sc.max_message = 100;
    live_world(&w, &cc, &sc);
    static uint8_t pay[3][PAY_MAX + 500];
    tether_msg m[3];
    for (int i = 0; i < 3; i++) {
        m[i].len = mkpay((uint64_t)i + 1, 0, pay[i]);
        m[i].data = pay[i];
    }
    m[1].len = 500; /* seq 2 is too big for the server */
    CHECK_OK(tether__engine_send(w.c.e, m, 3, NULL));
    pump(&w);
    CHECK_EQ_U64(w.s.got, 1);
    CHECK_EQ_INT(w.c.self_err, TETHER_ETOOBIG);
    CHECK_EQ_INT(w.c.last_bye_out, TETHER_REJECT_TOO_BIG);
    tether__engine_event ce;
    CHECK(tether__engine_close_event(w.c.e, &ce));
    CHECK_EQ_INT(ce.error, TETHER_ETOOBIG);
    CHECK(strstr(ce.detail, "message 2 ") != NULL);
    CHECK(tether__engine_want_write(w.c.e, now));
    CHECK_EQ_INT(tether__engine_next_frame(w.c.e, now, &w.buf), TETHER_ETOOBIG);
    CHECK_EQ_INT(w.s.ev.error, TETHER_EPEER_CLOSED);
    CHECK_EQ_INT(w.s.ev.peer_code, TETHER_REJECT_TOO_BIG);
    /* Not skipped: the next connection stops at the same message. */
    drop(&w);
    conn(&w);
    pump(&w);
    CHECK_EQ_U64(w.s.got, 1);
    CHECK_EQ_INT(w.c.self_err, TETHER_ETOOBIG);
    CHECK_EQ_U64(w.c.acked, 1);
    world_free(&w);
}

TEST(reject_and_bye_received)
{
    static const struct {
        int reject;
        uint32_t code;
        int err;
    } cases[] = {
        {1, TETHER_REJECT_TOKEN, TETHER_ETOKEN},
        {1, TETHER_REJECT_VERSION, TETHER_EVERSION},
        {1, TETHER_REJECT_LIMIT, TETHER_ELIMIT},
        {1, TETHER_REJECT_MISMATCH, TETHER_EMISMATCH},
        {1, TETHER_REJECT_SHUTDOWN, TETHER_EREJECTED},
        {1, 42, TETHER_EREJECTED},
        {0, TETHER_REJECT_NONE, TETHER_EPEER_CLOSED},
        {0, TETHER_REJECT_SHUTDOWN, TETHER_EPEER_CLOSED},
        {0, TETHER_REJECT_MISMATCH, TETHER_EMISMATCH},
        {0, TETHER_REJECT_STORE, TETHER_EPEER_CLOSED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        world w;
        tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
        tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
        world_init(&w, &cc, &sc);
        conn(&w);
        if (cases[i].reject) {
            write_some(&w, &w.c, &w.s, SIZE_MAX); /* HELLO out, no answer yet */
        } else {
            send_n(&w.s, 1); /* so that the BYE does not follow the WELCOME */
            pump(&w);
        }
        inject_close(&w, &w.c, cases[i].reject, cases[i].code, "go away");
        CHECK_EQ_INT(w.c.closes, 1);
        CHECK_EQ_INT(w.c.ev.error, cases[i].err);
        CHECK_EQ_INT(w.c.ev.peer_code, cases[i].code);
        CHECK(strstr(w.c.ev.detail, "go away") != NULL);
        char num[16];
        snprintf(num, sizeof num, "%u", (unsigned)cases[i].code);
        CHECK(strstr(w.c.ev.detail, num) != NULL);
        CHECK(!tether__engine_live(w.c.e));
        CHECK_EQ_INT(w.c.mismatch_n, 0); /* not right after a WELCOME */
        /* Nothing is sent back. */
        CHECK_EQ_U64(write_some(&w, &w.c, &w.s, SIZE_MAX), 0);
        world_free(&w);
    }
}

TEST(graceful_bye)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    sc.ack_delay_ms = 1000;
    live_world(&w, &cc, &sc);
    send_n(&w.c, 3);
    send_n(&w.s, 2);
    pump(&w);
    CHECK_EQ_U64(w.c.acked, 0);
    CHECK_OK(tether__engine_bye(w.s.e, TETHER_REJECT_SHUTDOWN, "bye now"));
    CHECK(!tether__engine_live(w.s.e));
    send_n(&w.s, 1); /* stored, but not written on a closing connection */
    pump(&w);
    CHECK_EQ_U64(w.c.acked, 3); /* the commit was flushed before the BYE */
    CHECK_EQ_U64(w.c.got, 2);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EPEER_CLOSED);
    CHECK_EQ_INT(w.c.ev.peer_code, TETHER_REJECT_SHUTDOWN);
    CHECK_EQ_INT(w.s.last_bye_out, TETHER_REJECT_SHUTDOWN);
    drop(&w);
    conn(&w);
    settle(&w);
    CHECK_EQ_U64(w.c.got, 3);
    CHECK_EQ_U64(w.s.acked, 3);
    world_free(&w);
}

TEST(protocol_errors)
{
    world w;
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);

    /* DATA before the WELCOME. */
    world_init(&w, &cc, &sc);
    conn(&w);
    inject_data(&w, &w.c, 1, 1, 0, 1);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EPROTO);
    CHECK_EQ_U64(w.c.got, 0);
    write_some(&w, &w.c, &w.s, SIZE_MAX);
    CHECK_EQ_INT(w.c.last_bye_out, TETHER_REJECT_PROTOCOL);
    world_free(&w);

    /* ACK before the WELCOME. */
    world_init(&w, &cc, &sc);
    conn(&w);
    inject_ack(&w, &w.c, 1);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EPROTO);
    world_free(&w);

    /* A second WELCOME, a HELLO to the client, a WELCOME to the server. */
    live_world(&w, &cc, &sc);
    tether__buf b;
    tether__buf_init(&b, 0);
    tether__welcome wel;
    memset(&wel, 0, sizeof wel);
    memcpy(wel.session_id, ID, 16);
    wel.max_message = wel.window = 100;
    CHECK_OK(tether__encode_welcome(&b, &wel));
    feed(&w, &w.c, tether__buf_frame(&b), b.len);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EPROTO);
    feed(&w, &w.s, tether__buf_frame(&b), b.len);
    CHECK_EQ_INT(w.s.ev.error, TETHER_EPROTO);
    world_free(&w);

    live_world(&w, &cc, &sc);
    tether__hello h;
    memset(&h, 0, sizeof h);
    h.version = 1;
    memcpy(h.session_id, ID, 16);
    h.max_message = h.window = 100;
    CHECK_OK(tether__encode_hello(&b, &h));
    feed(&w, &w.c, tether__buf_frame(&b), b.len);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EPROTO);
    feed(&w, &w.s, tether__buf_frame(&b), b.len); /* a second HELLO */
    CHECK_EQ_INT(w.s.ev.error, TETHER_EPROTO);
    world_free(&w);

    /* A WELCOME for another session. */
    world_init(&w, &cc, &sc);
    conn(&w);
    wel.session_id[0] ^= 1;
    CHECK_OK(tether__encode_welcome(&b, &wel));
    feed(&w, &w.c, tether__buf_frame(&b), b.len);
    CHECK_EQ_INT(w.c.ev.error, TETHER_EPROTO);
    CHECK_EQ_INT(w.c.welcomed, 0);
    world_free(&w);
    tether__buf_free(&b);
}

TEST(store_failure_on_commit)
{
    world w;
    live_default(&w);
    send_n(&w.c, 3);
    w.s.fs->fail_set_cursor = TETHER_ESTORE_FULL;
    write_some(&w, &w.c, &w.s, SIZE_MAX);
    deliver_some(&w, &w.s, SIZE_MAX);
    CHECK_EQ_U64(w.s.got, 3); /* handed over, but not committed */
    CHECK_EQ_INT(w.s.ev.error, TETHER_ESTORE_FULL);
    CHECK_EQ_U64(committed(&w.s), 0);
    advance(&w, 1000);
    pump(&w);
    CHECK_EQ_INT(w.s.last_bye_out, TETHER_REJECT_STORE);
    CHECK_EQ_U64(w.s.out_frames[TETHER__F_ACK], 0);
    CHECK_EQ_U64(w.c.acked, 0);
    CHECK_EQ_INT(w.c.ev.peer_code, TETHER_REJECT_STORE);
    /* The store recovers: the resent messages are committed, not redelivered. */
    w.s.fs->fail_set_cursor = 0;
    drop(&w);
    conn(&w);
    settle(&w);
    CHECK_EQ_U64(w.s.got, 3);
    CHECK_EQ_U64(committed(&w.s), 3);
    CHECK_EQ_U64(w.c.acked, 3);
    world_free(&w);
}

TEST(store_failure_on_ack)
{
    world w;
    live_default(&w);
    send_n(&w.c, 3);
    w.c.fs->fail_ack = TETHER_ESTORE;
    settle(&w);
    CHECK_EQ_U64(w.s.got, 3);
    CHECK_EQ_INT(w.c.ev.error, TETHER_ESTORE);
    CHECK_EQ_INT(w.c.last_bye_out, TETHER_REJECT_STORE);
    CHECK_EQ_U64(w.c.acked, 0);
    CHECK_EQ_U64(tether__engine_rec(w.c.e)->peer_acked, 0);
    uint64_t count;
    tether__engine_pending(w.c.e, &count, NULL);
    CHECK_EQ_U64(count, 3);
    w.c.fs->fail_ack = 0;
    drop(&w);
    conn(&w);
    settle(&w);
    CHECK_EQ_U64(w.c.acked, 3);
    CHECK_EQ_U64(w.s.got, 3);
    tether__engine_pending(w.c.e, &count, NULL);
    CHECK_EQ_U64(count, 0);
    world_free(&w);
}

TEST(create_arguments)
{
    fstore *fs = fstore_open(TETHER__ROLE_CLIENT);
    tether__session_rec rec;
    memset(&rec, 0, sizeof rec);
    memcpy(rec.id, ID, 16);
    CHECK_OK(fs->base.ops->session_put(&fs->base, &rec));
    tether__engine_cfg cfg = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine *e = (tether__engine *)&rec;
    cfg.window = 0;
    CHECK_ERR(tether__engine_create(&cfg, &fs->base, &rec, NULL, &e), TETHER_EINVAL);
    CHECK(e == NULL);
    cfg = base_cfg(TETHER__ROLE_CLIENT);
    CHECK_ERR(tether__engine_create(&cfg, NULL, &rec, NULL, &e), TETHER_EINVAL);
    CHECK_OK(tether__engine_create(&cfg, &fs->base, &rec, NULL, &e));
    /* A client engine does not accept, a server engine does not connect. */
    tether__hello h;
    memset(&h, 0, sizeof h);
    memcpy(h.session_id, ID, 16);
    tether__engine_event ev;
    CHECK_ERR(tether__engine_accept(e, &h, 0, &ev), TETHER_EINVAL);
    CHECK_EQ_U64(tether__engine_deadline(e), UINT64_MAX);
    tether__engine_destroy(e);
    tether__engine_destroy(NULL);
    fs->base.ops->close(&fs->base);
}

int main(void)
{
    RUN(hello_welcome_first_data);
    RUN(exactly_once_random_disconnects);
    RUN(exactly_once_manual_ack_random);
    RUN(coalescing);
    RUN(window_limit);
    RUN(ack_every_k);
    RUN(ack_by_timer);
    RUN(ack_when_peer_window_full);
    RUN(duplicate_reacked_not_redelivered);
    RUN(gap_is_protocol_error);
    RUN(ack_beyond_out_last);
    RUN(malformed_bytes);
    RUN(redelivered_flag);
    RUN(resume_after_restart);
    RUN(spilled_backlog_streams_from_store);
    RUN(large_backlog_bounded_memory);
    RUN(manual_ack);
    RUN(mismatch_server_lost_session);
    RUN(mismatch_server_cursor_behind);
    RUN(mismatch_client_cursor_beyond_server);
    RUN(mismatch_only_server_sees);
    RUN(mismatch_check_pure);
    RUN(outbox_caps);
    RUN(send_arguments);
    RUN(message_larger_than_peer_accepts);
    RUN(reject_and_bye_received);
    RUN(graceful_bye);
    RUN(protocol_errors);
    RUN(store_failure_on_commit);
    RUN(store_failure_on_ack);
    RUN(create_arguments);
    return tt_finish();
}

/*
 * The session engine's test world (session_fixture.h): a client and a server
 * engine, each on its own memory store, joined by a scripted wire that carries
 * the frames one produces to the other.
 */
#include "session_fixture.h"

uint64_t now; /* the fake clock, ms */

/* ------------------------------------------------------------------------ */
/* A store that wraps the memory store and can be told to fail.              */
/* ------------------------------------------------------------------------ */

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
    if (((fstore *)st)->fail_put) {
        return ((fstore *)st)->fail_put;
    }
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
    if (f->fail_set_cursor || f->fail_ack || f->fail_put) {
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
    NULL, /* verdict_get: nor the verdicts */
    NULL, /* verdict_put */
    NULL, /* lease_take: nor the leases (the server's store does) */
    NULL, /* lease_release */
    NULL, /* lease_renew */
    NULL, /* wake */
    NULL, /* wait_wakes */
};

fstore *fstore_open(tether__store_role role)
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

size_t mkpay(uint64_t seq, int dir, uint8_t *buf)
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

const uint8_t ID[16] = {0x5e, 0x55, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};

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

tether__engine_cfg base_cfg(tether__store_role role)
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

void engine_open(side *x, const tether__session_rec *rec)
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
void side_restart(side *x)
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

void track_flags(side *x, size_t n)
{
    x->flags = calloc(n + 1, 1);
    x->flags_cap = n + 1;
}

void world_init(world *w, const tether__engine_cfg *cc, const tether__engine_cfg *sc)
{
    now = 1000;
    side_init(&w->c, 0, cc);
    side_init(&w->s, 1, sc);
    CHECK_OK(tether__decoder_init(&w->spy, 1u << 30));
    tether__buf_init(&w->buf, 16);
}

void world_free(world *w)
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
void feed(world *w, side *to, const uint8_t *p, size_t len)
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
size_t write_some(world *w, side *from, side *to, size_t max)
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
size_t deliver_some(world *w, side *to, size_t max)
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
void pump(world *w)
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
void advance(world *w, uint64_t ms)
{
    now += ms;
    tether__engine_tick(w->c.e, now);
    tether__engine_tick(w->s.e, now);
}

/* Pumps, letting the ACK timers run, until nothing is left to do. */
void settle(world *w)
{
    for (int i = 0; i < 20; i++) {
        pump(w);
        advance(w, 1000);
    }
    pump(w);
}

/* The connection drops: frames in flight are lost. */
void drop(world *w)
{
    inbox_clear(&w->c);
    inbox_clear(&w->s);
    tether__engine_disconnect(w->c.e);
    tether__engine_disconnect(w->s.e);
    w->s.accepted = 0;
    w->c.self_err = 0;
    w->s.self_err = 0;
}

void conn(world *w)
{
    CHECK_OK(tether__engine_connect(w->c.e, now));
}

/* Sends k messages from a side, each carrying its seq. */
int send_k(side *x, size_t k)
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

void send_n(side *x, size_t n)
{
    while (n > 0) {
        size_t k = n > 64 ? 64 : n;
        CHECK_OK(send_k(x, k));
        n -= k;
    }
}

/* Frames injected by a test. */
void inject_data(world *w, side *to, uint64_t first, size_t count, uint32_t flags, int dir)
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

void inject_ack(world *w, side *to, uint64_t seq)
{
    tether__buf b;
    tether__buf_init(&b, 0);
    CHECK_OK(tether__encode_ack(&b, seq));
    feed(w, to, tether__buf_frame(&b), b.len);
    tether__buf_free(&b);
}

void inject_close(world *w, side *to, int reject, uint32_t code, const char *reason)
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
void live_world(world *w, const tether__engine_cfg *cc, const tether__engine_cfg *sc)
{
    world_init(w, cc, sc);
    conn(w);
    pump(w);
    CHECK(tether__engine_live(w->c.e));
    CHECK(tether__engine_live(w->s.e));
}

void live_default(world *w)
{
    tether__engine_cfg cc = base_cfg(TETHER__ROLE_CLIENT);
    tether__engine_cfg sc = base_cfg(TETHER__ROLE_SERVER);
    live_world(w, &cc, &sc);
}

uint64_t committed(const side *x)
{
    return tether__engine_rec(x->e)->recv_cursor;
}

uint64_t stored_cursor(side *x)
{
    tether__session_rec rec;
    CHECK_OK(x->fs->base.ops->session_get(&x->fs->base, ID, &rec));
    return rec.recv_cursor;
}

/*
 * Fuzz target: the server side of the session engine (engine/session.h) over
 * a memory store, fed a fuzzed HELLO and then a fuzzed script of frames,
 * application sends, clock ticks, manual ACKs, BYEs, write-outs and
 * reconnects.
 *
 * Input: 8 bytes of configuration (below), a HELLO (u16 length + bytes; the
 * input is dropped unless it decodes as a HELLO), then operations, each one
 * byte followed by its arguments (see run_op).
 *
 * Properties checked on every step:
 *   - on_message sees seqs strictly consecutive from the stored cursor
 *     (in order, exactly once), within our max_message;
 *   - on_acked sees consecutive ranges, never past what was sent;
 *   - every frame the engine writes decodes, within the peer's max_message,
 *     and is one a server may send: WELCOME (echoing the session and our
 *     record), DATA (seqs that were assigned, the bytes the application sent,
 *     within our window), ACK (never past the committed cursor) or BYE;
 *   - the engine's pending count and bytes agree with the store's.
 */
#include <stdlib.h>
#include <string.h>

#include <tether/tether.h>

#include "engine/frame.h"
#include "engine/session.h"
#include "store/store.h"
#include "fuzz_util.h"

#define MAX_SEQS 4096 /* messages the model remembers; sends stop beyond */
#define MAX_OPS 512
#define MAX_PUMP 256

typedef struct model {
    tether__engine *e;
    tether__store *st;
    tether__engine_cfg cfg;
    tether__hello hello;       /* the HELLO of the current connection */
    tether__decoder dec;       /* decodes what the engine writes, at the peer's limit */
    int dec_ok;                /* dec is initialised */
    uint64_t delivered;        /* highest seq on_message handed over */
    uint64_t acked;            /* highest seq on_acked reported */
    uint64_t out_last;         /* highest seq the application was given */
    uint16_t len[MAX_SEQS + 1]; /* payload length of each seq we sent */
    uint64_t accept_cursor;    /* our recv_cursor when the HELLO was accepted */
    uint64_t accept_out_last;  /* our out_last then */
    int welcomed;              /* a WELCOME was written on this connection */
    int closing;               /* a BYE was written on this connection */
} model;

static void payload_fill(uint8_t *p, uint64_t seq, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        p[i] = (uint8_t)(seq * 31u + i);
    }
}

static int payload_ok(const tether__slice *s, uint64_t seq, size_t len)
{
    if (s->len != len) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (s->data[i] != (uint8_t)(seq * 31u + i)) {
            return 0;
        }
    }
    return 1;
}

static void on_message(void *arg, uint64_t seq, const uint8_t *data, size_t len, int redelivered)
{
    model *m = arg;
    FUZZ_CHECK(seq == m->delivered + 1);
    FUZZ_CHECK(len <= m->cfg.max_message);
    FUZZ_CHECK(len == 0 || data != NULL);
    m->delivered = seq;
}

static void on_acked(void *arg, uint64_t first, uint64_t last)
{
    model *m = arg;
    FUZZ_CHECK(first == m->acked + 1);
    FUZZ_CHECK(last >= first);
    FUZZ_CHECK(last <= m->out_last);
    m->acked = last;
}

static void on_mismatch(void *arg, const tether_mismatch_info *info)
{
    model *m = arg;
    FUZZ_CHECK(memcmp(info->session.bytes, m->hello.session_id, TETHER__ID_LEN) == 0);
}

static void check_pending(model *m)
{
    uint64_t ec = 0, eb = 0, sc = 0, sb = 0;
    tether__engine_pending(m->e, &ec, &eb);
    FUZZ_CHECK(m->st->ops->pending(m->st, m->hello.session_id, &sc, &sb) == TETHER_OK);
    FUZZ_CHECK(ec == sc);
    FUZZ_CHECK(eb == sb);
    const tether__session_rec *r = tether__engine_rec(m->e);
    FUZZ_CHECK(r->out_last == m->out_last);
    FUZZ_CHECK(r->peer_acked == m->acked);
    FUZZ_CHECK(r->recv_cursor <= m->delivered);
}

static void check_written(model *m, tether__buf *b)
{
    tether__frame f;
    const tether__session_rec *r = tether__engine_rec(m->e);
    FUZZ_CHECK(!m->closing); /* nothing after a BYE */
    FUZZ_CHECK(tether__decode(&m->dec, tether__buf_frame(b), b->len, &f) == TETHER_OK);
    switch (f.type) {
    case TETHER__F_WELCOME:
        FUZZ_CHECK(!m->welcomed);
        m->welcomed = 1;
        FUZZ_CHECK(!memcmp(f.u.welcome.session_id, m->hello.session_id, TETHER__ID_LEN));
        /* the record as it was when the HELLO was accepted */
        FUZZ_CHECK(f.u.welcome.recv_cursor == m->accept_cursor);
        FUZZ_CHECK(f.u.welcome.out_last == m->accept_out_last);
        FUZZ_CHECK(f.u.welcome.max_message == m->cfg.max_message);
        FUZZ_CHECK(f.u.welcome.window == m->cfg.window);
        break;
    case TETHER__F_DATA: {
        FUZZ_CHECK(m->welcomed);
        const tether__data *d = &f.u.data;
        uint64_t last = d->first_seq + (d->count - 1);
        FUZZ_CHECK(last >= d->first_seq);
        FUZZ_CHECK(last <= m->out_last);
        FUZZ_CHECK(last <= r->peer_acked + m->cfg.window);
        for (size_t i = 0; i < d->count; i++) {
            uint64_t seq = d->first_seq + i;
            FUZZ_CHECK(seq <= MAX_SEQS && payload_ok(&d->payloads[i], seq, m->len[seq]));
        }
        break;
    }
    case TETHER__F_ACK:
        FUZZ_CHECK(m->welcomed);
        FUZZ_CHECK(f.u.ack <= r->recv_cursor);
        break;
    case TETHER__F_BYE:
        m->closing = 1;
        break;
    default:
        FUZZ_CHECK(!"a server engine wrote a HELLO or REJECT");
    }
}

/* Writes out what the engine has, as a writable connection would. */
static void pump(model *m, uint64_t now, tether__buf *b)
{
    for (int i = 0; i < MAX_PUMP; i++) {
        int want = tether__engine_want_write(m->e, now);
        int r = tether__engine_next_frame(m->e, now, b);
        if (r == 0) {
            FUZZ_CHECK(!want);
            return;
        }
        if (r < 0) {
            tether__engine_event ev;
            FUZZ_CHECK(tether__engine_close_event(m->e, &ev) == 1);
            FUZZ_CHECK(ev.close);
            return;
        }
        FUZZ_CHECK(r == 1);
        check_written(m, b);
    }
}

static int accept_hello(model *m, uint64_t now)
{
    tether__engine_event ev;
    tether__decoder_free(&m->dec);
    m->dec_ok = tether__decoder_init(&m->dec, m->hello.max_message) == TETHER_OK;
    FUZZ_CHECK(m->dec_ok);
    m->welcomed = 0;
    m->closing = 0;
    m->accept_cursor = tether__engine_rec(m->e)->recv_cursor;
    m->accept_out_last = tether__engine_rec(m->e)->out_last;
    int rc = tether__engine_accept(m->e, &m->hello, now, &ev);
    FUZZ_CHECK(rc == TETHER_OK || (ev.close && rc == ev.error));
    return rc;
}

static void run_op(model *m, tfuzz_in *in, uint64_t *now, tether__buf *b)
{
    tether__engine_event ev;
    uint8_t op = tfuzz_u8(in);
    switch (op % 8) {
    case 0:
    case 1: { /* a frame from the client */
        size_t len;
        const uint8_t *p = tfuzz_bytes(in, tfuzz_u16(in) % 4096, &len);
        memset(&ev, 0, sizeof ev);
        int rc = tether__engine_on_frame(m->e, p, len, *now, &ev);
        FUZZ_CHECK(rc == TETHER_OK || (ev.close && rc == ev.error));
        break;
    }
    case 2: /* time passes */
        *now += (uint64_t)tfuzz_u8(in) * 4;
        tether__engine_tick(m->e, *now);
        break;
    case 3: { /* the application sends 1..4 messages */
        static uint8_t bufs[4][600];
        tether_msg msgs[4];
        size_t n = 1 + tfuzz_u8(in) % 4;
        uint64_t first = 0;
        if (m->out_last + n > MAX_SEQS) {
            break;
        }
        for (size_t i = 0; i < n; i++) {
            size_t len = (size_t)tfuzz_u8(in) * 2;
            payload_fill(bufs[i], m->out_last + 1 + i, len);
            msgs[i].data = bufs[i];
            msgs[i].len = len;
        }
        int rc = tether__engine_send(m->e, msgs, n, &first);
        if (rc == TETHER_OK) {
            FUZZ_CHECK(first == m->out_last + 1);
            for (size_t i = 0; i < n; i++) {
                m->len[first + i] = (uint16_t)msgs[i].len;
            }
            m->out_last += n;
        } else {
            FUZZ_CHECK(rc == TETHER_ETOOBIG);
        }
        break;
    }
    case 4:
        pump(m, *now, b);
        break;
    case 5: { /* the connection drops and the client comes back */
        uint8_t how = tfuzz_u8(in);
        const tether__session_rec *r = tether__engine_rec(m->e);
        tether__engine_disconnect(m->e);
        m->hello.resume = how & 1;
        if (how & 2) {
            m->hello.recv_cursor = tfuzz_u64(in);
            m->hello.out_last = tfuzz_u64(in);
        } else { /* a consistent client: it saw some of what we sent */
            m->hello.recv_cursor = r->peer_acked + tfuzz_u8(in) % 8;
            m->hello.out_last = r->recv_cursor + tfuzz_u8(in) % 8;
        }
        accept_hello(m, *now);
        break;
    }
    case 6: { /* manual ACK */
        uint64_t back = tfuzz_u8(in) % 3; /* the latest delivered, or one or two before */
        uint64_t seq = m->delivered > back ? m->delivered - back : 0;
        int rc = tether__engine_ack(m->e, seq, *now);
        FUZZ_CHECK(rc == TETHER_OK || rc == TETHER_EINVAL);
        FUZZ_CHECK(rc == TETHER_OK || !m->cfg.manual_ack || seq == 0);
        break;
    }
    default: { /* a graceful close asked for by the application */
        int rc = tether__engine_bye(m->e, tfuzz_u8(in), "bye");
        (void)rc;
        break;
    }
    }
}

/* Creates the session in the store, optionally with history. */
static int make_session(model *m, const uint8_t cfgb[8], tether__session_rec *rec)
{
    memset(rec, 0, sizeof *rec);
    memcpy(rec->id, m->hello.session_id, TETHER__ID_LEN);
    if (m->st->ops->session_put(m->st, rec) != TETHER_OK) {
        return -1;
    }
    if (cfgb[0] & 2) { /* a session with history: sent, acked, received */
        static uint8_t bufs[16][64];
        tether_msg msgs[16];
        size_t n = cfgb[5] % 16;
        uint64_t first;
        for (size_t i = 0; i < n; i++) {
            m->len[1 + i] = (uint16_t)((cfgb[6] + i * 7) % 64);
            payload_fill(bufs[i], 1 + i, m->len[1 + i]);
            msgs[i].data = bufs[i];
            msgs[i].len = m->len[1 + i];
        }
        if (n && m->st->ops->append(m->st, rec->id, msgs, n, 0, 0, &first) != TETHER_OK) {
            return -1;
        }
        uint64_t acked = n ? cfgb[6] % (n + 1) : 0;
        if (acked && m->st->ops->ack(m->st, rec->id, acked) != TETHER_OK) {
            return -1;
        }
        if (cfgb[7] && m->st->ops->set_cursor(m->st, rec->id, cfgb[7]) != TETHER_OK) {
            return -1;
        }
        if (m->st->ops->session_get(m->st, rec->id, rec) != TETHER_OK) {
            return -1;
        }
        rec->established = 1;
        if (m->st->ops->session_put(m->st, rec) != TETHER_OK) {
            return -1;
        }
    }
    m->out_last = rec->out_last;
    m->acked = rec->peer_acked;
    m->delivered = rec->recv_cursor;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tether__decoder hello_dec;
    static int init;
    static model m;
    tfuzz_in in = {data, size};
    uint8_t cfgb[8];
    tether__frame f;
    tether__session_rec rec;
    tether__buf b;
    uint64_t now = 1000;

    if (!init) {
        init = tether__decoder_init(&hello_dec, 1024) == TETHER_OK;
        FUZZ_CHECK(init);
    }
    if (size < sizeof cfgb + 2) {
        return 0;
    }
    for (size_t i = 0; i < sizeof cfgb; i++) {
        cfgb[i] = tfuzz_u8(&in);
    }
    size_t hlen;
    const uint8_t *hp = tfuzz_bytes(&in, tfuzz_u16(&in), &hlen);
    if (tether__decode(&hello_dec, hp, hlen, &f) != TETHER_OK || f.type != TETHER__F_HELLO) {
        return 0;
    }

    memset(&m, 0, sizeof m);
    m.hello = f.u.hello;
    m.cfg.role = TETHER__ROLE_SERVER;
    m.cfg.manual_ack = cfgb[0] & 1;
    m.cfg.ack_every = 1 + ((cfgb[0] >> 2) & 7);
    m.cfg.ack_delay_ms = 20;
    m.cfg.window = 1 + cfgb[1] % 32;
    m.cfg.max_message = 1 + (uint32_t)cfgb[2] * 4;
    m.cfg.run_max_bytes = 1 + (size_t)cfgb[3] * 8;
    m.cfg.queue_max_bytes = 1 + (size_t)cfgb[4] * 16;
    FUZZ_CHECK(tether__store_memory_open(TETHER__ROLE_SERVER, &m.st) == TETHER_OK);
    tether__buf_init(&b, 16);
    if (make_session(&m, cfgb, &rec) == 0) {
        tether__engine_cb cb = {on_message, on_acked, on_mismatch, &m};
        FUZZ_CHECK(tether__engine_create(&m.cfg, m.st, &rec, &cb, &m.e) == TETHER_OK);
        accept_hello(&m, now);
        check_pending(&m);
        for (int i = 0; i < MAX_OPS && in.left; i++) {
            run_op(&m, &in, &now, &b);
            check_pending(&m);
        }
        pump(&m, now, &b);
        check_pending(&m);
        tether__engine_destroy(m.e);
    }
    if (m.dec_ok) {
        tether__decoder_free(&m.dec);
    }
    tether__buf_free(&b);
    m.st->ops->close(m.st);
    return 0;
}

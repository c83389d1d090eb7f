/*
 * The server's handshake decision (engine/handshake.c), every outcome, without
 * sockets; and the engine's side of the handshake corner cases: a REJECT or
 * WELCOME sent to a server is a protocol error answered with BYE(4), a
 * BYE(DISPLACED) ends a client's connection with TETHER_EDISPLACED, and
 * tether__engine_close() keeps the first reason.
 */
#include "harness.h"

#include <tether/tether.h>

#include "common/util.h"
#include "engine/handshake.h"
#include "engine/session.h"
#include "store/store.h"

/* ---- a fake server situation ---- */

typedef struct fake {
    int lookups;                /* lookup calls */
    int lookup_rc;              /* what lookup returns */
    tether__session_rec rec;    /* what it finds with TETHER_OK */
    int mismatches;             /* on_mismatch calls */
    tether_mismatch_info mi;    /* the last one */
} fake;

static int f_lookup(void *arg, const uint8_t id[16], tether__session_rec *rec)
{
    fake *f = arg;
    f->lookups++;
    if (f->lookup_rc == TETHER_OK) {
        *rec = f->rec;
        CHECK_MEM(rec->id, id, 16);
    }
    return f->lookup_rc;
}

static void f_mismatch(void *arg, const tether_mismatch_info *mi)
{
    fake *f = arg;
    f->mismatches++;
    f->mi = *mi;
}

static uint8_t good_hash[32]; /* SHA-256 of the token 0x22 x 32 */

static void hello_init(tether__hello *h)
{
    memset(h, 0, sizeof *h);
    h->version = 1;
    memset(h->session_id, 0x11, sizeof h->session_id);
    memset(h->token, 0x22, sizeof h->token);
    h->max_message = 4096;
    h->window = 64;
}

static void env_init(tether__hs_server *env, fake *f)
{
    memset(f, 0, sizeof *f);
    f->lookup_rc = TETHER_ENOTFOUND;
    memset(f->rec.id, 0x11, sizeof f->rec.id);
    memcpy(f->rec.token, good_hash, 32);
    memset(env, 0, sizeof *env);
    env->hash_rc = TETHER_OK;
    env->token_hash = good_hash;
    env->max_message = 8192;
    env->window = 128;
    env->lookup = f_lookup;
    env->on_mismatch = f_mismatch;
    env->arg = f;
}

/* Encodes every frame of out and decodes it back into f[] (at most 2). */
static size_t frames_of(tether__hs_out *out, tether__frame f[2], tether__buf bufs[2],
                        tether__decoder *d)
{
    size_t n = 0;
    while (n < 2 && tether__hs_want_write(out)) {
        CHECK_EQ_INT(tether__hs_next_frame(out, &bufs[n]), 1);
        CHECK_OK(tether__decode(d, tether__buf_frame(&bufs[n]), bufs[n].len, &f[n]));
        n++;
    }
    CHECK_EQ_INT(tether__hs_next_frame(out, &bufs[0]), 0); /* nothing more */
    return n;
}

/* A refusal: one frame of type with code, and the error for the application. */
static void check_refused(tether__hs_out *out, int type, uint32_t code, int err)
{
    tether__decoder d;
    tether__buf b[2];
    tether__frame f[2];
    tether__decoder_init(&d, 1 << 16);
    tether__buf_init(&b[0], 0);
    tether__buf_init(&b[1], 0);
    CHECK_EQ_INT(out->verdict, TETHER__HS_REFUSE);
    CHECK_EQ_INT(out->error, err);
    CHECK_EQ_INT(frames_of(out, f, b, &d), 1);
    CHECK_EQ_INT(f[0].type, type);
    CHECK_EQ_U64(f[0].u.close.code, code);
    CHECK(f[0].u.close.reason.len > 0);
    tether__buf_free(&b[0]);
    tether__buf_free(&b[1]);
    tether__decoder_free(&d);
}

TEST(version_is_checked_first)
{
    tether__hs_server env;
    tether__hs_out out;
    tether__hello h;
    fake f;
    env_init(&env, &f);
    hello_init(&h);
    h.version = 2;
    env.stopping = 1; /* later checks do not matter */
    env.at_cap = 1;
    tether__hs_decide(&h, &env, &out);
    check_refused(&out, TETHER__F_REJECT, TETHER_REJECT_VERSION, TETHER_EVERSION);
    CHECK_EQ_INT(f.lookups, 0);
}

TEST(shutting_down_is_refused_with_5)
{
    tether__hs_server env;
    tether__hs_out out;
    tether__hello h;
    fake f;
    env_init(&env, &f);
    hello_init(&h);
    env.stopping = 1;
    env.at_cap = 1;
    tether__hs_decide(&h, &env, &out);
    check_refused(&out, TETHER__F_REJECT, TETHER_REJECT_SHUTDOWN, TETHER_ECLOSED);
    CHECK_EQ_INT(f.lookups, 0);
}

TEST(session_cap_is_refused_unless_the_session_is_connected)
{
    tether__hs_server env;
    tether__hs_out out;
    tether__hello h;
    fake f;
    env_init(&env, &f);
    hello_init(&h);
    env.at_cap = 1;
    tether__hs_decide(&h, &env, &out);
    check_refused(&out, TETHER__F_REJECT, TETHER_REJECT_LIMIT, TETHER_ELIMIT);
    CHECK_EQ_INT(f.lookups, 0);

    /* the same session coming back replaces its older connection */
    env.connected = 1;
    f.lookup_rc = TETHER_OK;
    tether__hs_decide(&h, &env, &out);
    CHECK_EQ_INT(out.verdict, TETHER__HS_ACCEPT);
    CHECK_EQ_INT(out.displace, 1);
    CHECK(!tether__hs_want_write(&out));
}

TEST(token_hash_failure_is_refused_with_8)
{
    tether__hs_server env;
    tether__hs_out out;
    tether__hello h;
    fake f;
    env_init(&env, &f);
    hello_init(&h);
    env.hash_rc = TETHER_ENOMEM;
    tether__hs_decide(&h, &env, &out);
    check_refused(&out, TETHER__F_REJECT, TETHER_REJECT_STORE, TETHER_ENOMEM);
    CHECK_EQ_INT(f.lookups, 0);
}

TEST(store_failure_on_lookup_is_refused_with_8)
{
    tether__hs_server env;
    tether__hs_out out;
    tether__hello h;
    fake f;
    env_init(&env, &f);
    hello_init(&h);
    f.lookup_rc = TETHER_ESTORE_CORRUPT;
    tether__hs_decide(&h, &env, &out);
    check_refused(&out, TETHER__F_REJECT, TETHER_REJECT_STORE, TETHER_ESTORE_CORRUPT);
    CHECK_EQ_INT(f.lookups, 1);
    CHECK_EQ_INT(f.mismatches, 0);
}

TEST(unknown_session_without_history_is_created)
{
    tether__hs_server env;
    tether__hs_out out;
    tether__hello h;
    fake f;
    env_init(&env, &f);
    hello_init(&h);
    h.out_last = 5; /* messages queued before the first connection: no history */
    tether__hs_decide(&h, &env, &out);
    CHECK_EQ_INT(out.verdict, TETHER__HS_CREATE);
    CHECK_MEM(out.rec.id, h.session_id, 16);
    CHECK_MEM(out.rec.token, good_hash, 32); /* the digest, never the token */
    CHECK_EQ_U64(out.rec.out_last, 0);
    CHECK_EQ_U64(out.rec.recv_cursor, 0);
    CHECK_EQ_INT(out.rec.established, 0);
    CHECK(!tether__hs_want_write(&out));
    CHECK_EQ_INT(f.mismatches, 0);
}

/* An unknown session whose HELLO claims history: WELCOME resumed=0 with zero
 * cursors and the server's limits, then BYE(6); reported; nothing created. */
static void check_unknown_with_history(int resume, uint64_t recv_cursor)
{
    tether__hs_server env;
    tether__hs_out out;
    tether__hello h;
    fake f;
    tether__decoder d;
    tether__buf b[2];
    tether__frame fr[2];
    env_init(&env, &f);
    hello_init(&h);
    h.resume = resume;
    h.recv_cursor = recv_cursor;
    h.out_last = 12;
    tether__hs_decide(&h, &env, &out);
    CHECK_EQ_INT(out.verdict, TETHER__HS_MISMATCH);
    CHECK_EQ_INT(out.error, TETHER_EMISMATCH);
    CHECK_EQ_INT(f.mismatches, 1);
    CHECK_MEM(f.mi.session.bytes, h.session_id, 16);
    CHECK_EQ_U64(f.mi.peer_recv_cursor, recv_cursor);
    CHECK_EQ_U64(f.mi.peer_out_last, 12);
    CHECK_EQ_U64(f.mi.local_out_last, 0);
    CHECK_EQ_U64(f.mi.lost_acked, 0);
    tether__decoder_init(&d, 1 << 16);
    tether__buf_init(&b[0], 0);
    tether__buf_init(&b[1], 0);
    CHECK_EQ_INT(frames_of(&out, fr, b, &d), 2);
    CHECK_EQ_INT(fr[0].type, TETHER__F_WELCOME);
    CHECK_MEM(fr[0].u.welcome.session_id, h.session_id, 16);
    CHECK_EQ_INT(fr[0].u.welcome.resumed, 0);
    CHECK_EQ_U64(fr[0].u.welcome.recv_cursor, 0);
    CHECK_EQ_U64(fr[0].u.welcome.out_last, 0);
    CHECK_EQ_U64(fr[0].u.welcome.max_message, 8192);
    CHECK_EQ_U64(fr[0].u.welcome.window, 128);
    CHECK_EQ_INT(fr[1].type, TETHER__F_BYE);
    CHECK_EQ_U64(fr[1].u.close.code, TETHER_REJECT_MISMATCH);
    tether__buf_free(&b[0]);
    tether__buf_free(&b[1]);
    tether__decoder_free(&d);
}

TEST(unknown_session_with_resume_is_a_mismatch)
{
    check_unknown_with_history(1, 0);
    check_unknown_with_history(1, 7);
}

TEST(unknown_session_with_a_receive_cursor_is_a_mismatch)
{
    /* resume=false but the client committed server messages: it claims history */
    check_unknown_with_history(0, 1);
    check_unknown_with_history(0, 7);
}

TEST(known_session_with_wrong_token_is_refused_with_2)
{
    tether__hs_server env;
    tether__hs_out out;
    tether__hello h;
    fake f;
    env_init(&env, &f);
    hello_init(&h);
    f.lookup_rc = TETHER_OK;
    f.rec.token[31] ^= 1;
    env.connected = 1; /* a wrong token displaces nothing */
    tether__hs_decide(&h, &env, &out);
    check_refused(&out, TETHER__F_REJECT, TETHER_REJECT_TOKEN, TETHER_ETOKEN);
    CHECK_EQ_INT(out.displace, 0);
}

TEST(known_session_with_right_token_is_accepted)
{
    tether__hs_server env;
    tether__hs_out out;
    tether__hello h;
    fake f;
    env_init(&env, &f);
    hello_init(&h);
    f.lookup_rc = TETHER_OK;
    f.rec.out_last = 9;
    f.rec.established = 1;
    h.resume = 1;
    h.recv_cursor = 3;
    tether__hs_decide(&h, &env, &out);
    CHECK_EQ_INT(out.verdict, TETHER__HS_ACCEPT);
    CHECK_EQ_INT(out.displace, 0);
    CHECK_EQ_U64(out.rec.out_last, 9); /* the record found, for the caller */
    CHECK(!tether__hs_want_write(&out));
    CHECK_EQ_INT(f.mismatches, 0); /* a known session's cursors are its engine's to check */
}

TEST(store_failure_after_the_decision_becomes_reject_8)
{
    tether__hs_server env;
    tether__hs_out out;
    tether__hello h;
    fake f;
    env_init(&env, &f);
    hello_init(&h);
    tether__hs_decide(&h, &env, &out);
    CHECK_EQ_INT(out.verdict, TETHER__HS_CREATE);
    tether__hs_refuse(&out, 0, TETHER_REJECT_STORE, TETHER_ESTORE_FULL, "the server's store failed");
    check_refused(&out, TETHER__F_REJECT, TETHER_REJECT_STORE, TETHER_ESTORE_FULL);
}

TEST(displaced_connection_gets_bye_9)
{
    tether__hs_out out;
    memset(&out, 0, sizeof out);
    tether__hs_refuse(&out, 1, TETHER_REJECT_DISPLACED, TETHER_EDISPLACED, "taken over");
    check_refused(&out, TETHER__F_BYE, TETHER_REJECT_DISPLACED, TETHER_EDISPLACED);
}

/* ---- the first message of a connection ---- */

static void first_of(const uint8_t *buf, size_t len, int err, tether__hs_out *out, int *got)
{
    tether__decoder d;
    tether__hello h;
    tether__decoder_init(&d, 1 << 20);
    *got = tether__hs_first(&d, buf, len, err, &h, out);
    tether__decoder_free(&d);
}

TEST(first_message_hello_is_taken)
{
    tether__buf b;
    tether__hello h, back;
    tether__decoder d;
    tether__hs_out out;
    tether__buf_init(&b, 0);
    tether__decoder_init(&d, 1 << 20);
    hello_init(&h);
    h.recv_cursor = 4;
    CHECK_OK(tether__encode_hello(&b, &h));
    CHECK_EQ_INT(tether__hs_first(&d, tether__buf_frame(&b), b.len, 0, &back, &out), 1);
    CHECK_MEM(back.session_id, h.session_id, 16);
    CHECK_EQ_U64(back.recv_cursor, 4);
    CHECK(!tether__hs_want_write(&out));
    tether__decoder_free(&d);
    tether__buf_free(&b);
}

TEST(first_message_other_than_hello_gets_bye_4)
{
    tether__buf b;
    tether__hs_out out;
    int got = -1;
    tether__buf_init(&b, 0);
    CHECK_OK(tether__encode_ack(&b, 3));
    first_of(tether__buf_frame(&b), b.len, 0, &out, &got);
    CHECK_EQ_INT(got, 0);
    check_refused(&out, TETHER__F_BYE, TETHER_REJECT_PROTOCOL, TETHER_EPROTO);

    const uint8_t junk[3] = {0xc1, 0x00, 0x00};
    first_of(junk, sizeof junk, 0, &out, &got);
    CHECK_EQ_INT(got, 0);
    check_refused(&out, TETHER__F_BYE, TETHER_REJECT_PROTOCOL, TETHER_EMALFORMED);

    /* a text message, refused by the transport */
    first_of(NULL, 0, TETHER_EMALFORMED, &out, &got);
    CHECK_EQ_INT(got, 0);
    check_refused(&out, TETHER__F_BYE, TETHER_REJECT_PROTOCOL, TETHER_EMALFORMED);
    tether__buf_free(&b);
}

TEST(first_message_over_1024_bytes_gets_bye_7)
{
    tether__buf b;
    tether__hs_out out;
    int got = -1;
    tether__buf_init(&b, 0);
    /* a well-formed DATA frame of 1027 bytes: refused for its size, not decoded */
    uint8_t payload[1020];
    memset(payload, 'x', sizeof payload);
    CHECK_OK(tether__encode_data_begin(&b, 1, 0, 1));
    CHECK_OK(tether__encode_data_payload(&b, payload, sizeof payload));
    CHECK_OK(tether__encode_data_end(&b));
    CHECK(b.len > TETHER__HS_FIRST_MAX);
    first_of(tether__buf_frame(&b), b.len, 0, &out, &got);
    CHECK_EQ_INT(got, 0);
    check_refused(&out, TETHER__F_BYE, TETHER_REJECT_TOO_BIG, TETHER_EFRAME_OVERSIZE);

    /* exactly at the limit it is decoded (and refused as not a HELLO) */
    first_of(tether__buf_frame(&b), TETHER__HS_FIRST_MAX, 0, &out, &got);
    CHECK_EQ_INT(got, 0);
    CHECK(out.frames[0].code != TETHER_REJECT_TOO_BIG);

    /* the transport's own size refusal */
    first_of(NULL, 0, TETHER_EFRAME_OVERSIZE, &out, &got);
    check_refused(&out, TETHER__F_BYE, TETHER_REJECT_TOO_BIG, TETHER_EFRAME_OVERSIZE);
    tether__buf_free(&b);
}

/* ---- the engine's side ---- */

static tether__engine_cfg cfg_of(tether__store_role role)
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

typedef struct side {
    tether__store *st;   /* memory store */
    tether__engine *e;   /* the engine */
    tether__buf out;     /* frames it wrote */
    tether__decoder dec; /* decodes them */
} side;

static void side_open(side *s, tether__store_role role)
{
    tether__session_rec rec;
    memset(&rec, 0, sizeof rec);
    memset(rec.id, 0x11, sizeof rec.id);
    memcpy(rec.token, good_hash, 32);
    CHECK_OK(tether__store_memory_open(role, &s->st));
    CHECK_OK(s->st->ops->session_put(s->st, &rec));
    tether__engine_cfg c = cfg_of(role);
    CHECK_OK(tether__engine_create(&c, s->st, &rec, NULL, &s->e));
    tether__buf_init(&s->out, 0);
    tether__decoder_init(&s->dec, 1 << 16);
}

static void side_close(side *s)
{
    tether__engine_destroy(s->e);
    s->st->ops->close(s->st);
    tether__buf_free(&s->out);
    tether__decoder_free(&s->dec);
}

/* The next frame the engine writes, decoded into *f; 0 when none. */
static int side_next(side *s, tether__frame *f)
{
    int rc = tether__engine_next_frame(s->e, 0, &s->out);
    if (rc != 1) {
        return rc;
    }
    CHECK_OK(tether__decode(&s->dec, tether__buf_frame(&s->out), s->out.len, f));
    return 1;
}

/* A live server engine: HELLO accepted, WELCOME written. */
static void live_server(side *s)
{
    tether__hello h;
    tether__engine_event ev;
    tether__frame f;
    side_open(s, TETHER__ROLE_SERVER);
    hello_init(&h);
    CHECK_OK(tether__engine_accept(s->e, &h, 0, &ev));
    CHECK_EQ_INT(side_next(s, &f), 1);
    CHECK_EQ_INT(f.type, TETHER__F_WELCOME);
    CHECK(tether__engine_live(s->e));
}

static void feed(side *s, tether__buf *b, tether__engine_event *ev)
{
    tether__engine_on_frame(s->e, tether__buf_frame(b), b->len, 0, ev);
}

TEST(server_answers_a_reject_after_welcome_with_bye_4)
{
    side s;
    tether__buf b;
    tether__engine_event ev;
    tether__frame f;
    live_server(&s);
    tether__buf_init(&b, 0);
    CHECK_OK(tether__encode_reject(&b, TETHER_REJECT_TOKEN, "not yours"));
    feed(&s, &b, &ev);
    CHECK_EQ_INT(ev.close, 1);
    CHECK_EQ_INT(ev.error, TETHER_EPROTO);
    CHECK(strstr(ev.detail, "REJECT") != NULL);
    CHECK_EQ_INT(side_next(&s, &f), 1);
    CHECK_EQ_INT(f.type, TETHER__F_BYE);
    CHECK_EQ_U64(f.u.close.code, TETHER_REJECT_PROTOCOL);
    CHECK(tether__engine_close_event(s.e, NULL));
    tether__buf_free(&b);
    side_close(&s);
}

TEST(server_answers_a_welcome_with_bye_4)
{
    side s;
    tether__buf b;
    tether__engine_event ev;
    tether__frame f;
    tether__welcome w;
    live_server(&s);
    tether__buf_init(&b, 0);
    memset(&w, 0, sizeof w);
    memset(w.session_id, 0x11, sizeof w.session_id);
    w.max_message = 100;
    w.window = 10;
    CHECK_OK(tether__encode_welcome(&b, &w));
    feed(&s, &b, &ev);
    CHECK_EQ_INT(ev.error, TETHER_EPROTO);
    CHECK_EQ_INT(side_next(&s, &f), 1);
    CHECK_EQ_INT(f.type, TETHER__F_BYE);
    CHECK_EQ_U64(f.u.close.code, TETHER_REJECT_PROTOCOL);
    tether__buf_free(&b);
    side_close(&s);
}

TEST(live_client_answers_a_reject_with_bye_4)
{
    side s;
    tether__buf b;
    tether__engine_event ev;
    tether__frame f;
    tether__welcome w;
    side_open(&s, TETHER__ROLE_CLIENT);
    CHECK_OK(tether__engine_connect(s.e, 0));
    CHECK_EQ_INT(side_next(&s, &f), 1);
    CHECK_EQ_INT(f.type, TETHER__F_HELLO);
    tether__buf_init(&b, 0);
    memset(&w, 0, sizeof w);
    memset(w.session_id, 0x11, sizeof w.session_id);
    w.max_message = 4096;
    w.window = 64;
    CHECK_OK(tether__encode_welcome(&b, &w));
    feed(&s, &b, &ev);
    CHECK_EQ_INT(ev.welcomed, 1);
    /* REJECT answers a HELLO; after WELCOME it is out of place */
    CHECK_OK(tether__encode_reject(&b, TETHER_REJECT_LIMIT, "late"));
    feed(&s, &b, &ev);
    CHECK_EQ_INT(ev.error, TETHER_EPROTO);
    CHECK_EQ_U64(ev.peer_code, 0);
    CHECK_EQ_INT(side_next(&s, &f), 1);
    CHECK_EQ_INT(f.type, TETHER__F_BYE);
    CHECK_EQ_U64(f.u.close.code, TETHER_REJECT_PROTOCOL);
    tether__buf_free(&b);
    side_close(&s);
}

TEST(client_takes_bye_9_as_displaced)
{
    side s;
    tether__buf b;
    tether__engine_event ev;
    tether__frame f;
    side_open(&s, TETHER__ROLE_CLIENT);
    CHECK_OK(tether__engine_connect(s.e, 0));
    CHECK_EQ_INT(side_next(&s, &f), 1);
    tether__buf_init(&b, 0);
    CHECK_OK(tether__encode_bye(&b, TETHER_REJECT_DISPLACED, "taken over"));
    feed(&s, &b, &ev);
    CHECK_EQ_INT(ev.close, 1);
    CHECK_EQ_INT(ev.error, TETHER_EDISPLACED);
    CHECK_EQ_U64(ev.peer_code, TETHER_REJECT_DISPLACED);
    CHECK_EQ_INT(side_next(&s, &f), 0); /* nothing is sent back */
    tether__buf_free(&b);
    side_close(&s);
}

TEST(engine_close_keeps_the_first_reason)
{
    side s;
    tether__engine_event ev;
    tether__frame f;
    live_server(&s);
    CHECK(!tether__engine_close_event(s.e, &ev));
    CHECK_OK(tether__engine_close(s.e, TETHER_ECLOSED, TETHER_REJECT_SHUTDOWN, "going down"));
    CHECK_OK(tether__engine_close(s.e, TETHER_EPROTO, TETHER_REJECT_PROTOCOL, "second"));
    CHECK_EQ_INT(tether__engine_close_event(s.e, &ev), 1);
    CHECK_EQ_INT(ev.error, TETHER_ECLOSED);
    CHECK_EQ_STR(ev.detail, "going down");
    CHECK(!tether__engine_live(s.e));
    CHECK_EQ_INT(side_next(&s, &f), 1);
    CHECK_EQ_INT(f.type, TETHER__F_BYE);
    CHECK_EQ_U64(f.u.close.code, TETHER_REJECT_SHUTDOWN);
    CHECK_EQ_INT(side_next(&s, &f), 0); /* one BYE only */
    /* a new connection starts without a reason */
    tether__engine_disconnect(s.e);
    CHECK(!tether__engine_close_event(s.e, NULL));
    CHECK_ERR(tether__engine_close(NULL, TETHER_ECLOSED, 0, ""), TETHER_EINVAL);
    side_close(&s);
}

TEST(engine_close_without_bye_writes_nothing)
{
    side s;
    tether__engine_event ev;
    tether__frame f;
    side_open(&s, TETHER__ROLE_CLIENT);
    CHECK_OK(tether__engine_connect(s.e, 0));
    CHECK_EQ_INT(side_next(&s, &f), 1); /* HELLO */
    CHECK_OK(tether__engine_close(s.e, TETHER_ESTALLED, TETHER__NO_BYE, "blocked"));
    CHECK_EQ_INT(tether__engine_close_event(s.e, &ev), 1);
    CHECK_EQ_INT(ev.error, TETHER_ESTALLED);
    CHECK(!tether__engine_want_write(s.e, 0));
    CHECK_EQ_INT(side_next(&s, &f), 0);
    side_close(&s);
}

int main(void)
{
    uint8_t token[32];
    memset(token, 0x22, sizeof token);
    if (tether__sha256(token, sizeof token, good_hash) != TETHER_OK) {
        return 1;
    }
    RUN(version_is_checked_first);
    RUN(shutting_down_is_refused_with_5);
    RUN(session_cap_is_refused_unless_the_session_is_connected);
    RUN(token_hash_failure_is_refused_with_8);
    RUN(store_failure_on_lookup_is_refused_with_8);
    RUN(unknown_session_without_history_is_created);
    RUN(unknown_session_with_resume_is_a_mismatch);
    RUN(unknown_session_with_a_receive_cursor_is_a_mismatch);
    RUN(known_session_with_wrong_token_is_refused_with_2);
    RUN(known_session_with_right_token_is_accepted);
    RUN(store_failure_after_the_decision_becomes_reject_8);
    RUN(displaced_connection_gets_bye_9);
    RUN(first_message_hello_is_taken);
    RUN(first_message_other_than_hello_gets_bye_4);
    RUN(first_message_over_1024_bytes_gets_bye_7);
    RUN(server_answers_a_reject_after_welcome_with_bye_4);
    RUN(server_answers_a_welcome_with_bye_4);
    RUN(live_client_answers_a_reject_with_bye_4);
    RUN(client_takes_bye_9_as_displaced);
    RUN(engine_close_keeps_the_first_reason);
    RUN(engine_close_without_bye_writes_nothing);
    return tt_finish();
}

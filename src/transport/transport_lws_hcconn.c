/*
 * The server's HTTP carriage, part of the libwebsockets glue: connection
 * records. Each holds what the server core wrote on it (the open answer, then
 * the numbered downstream frames until the client confirms them, HTTP.md
 * section 8.2), its id in a hash table, and its idle and hold deadlines on a
 * timer wheel driven by one loop timer. The core's writable calls and its
 * closes run from a deferred-work list on the next loop turn, never inside
 * the core's own call (it may hold a session's lock there).
 */
#include <stddef.h>

#include "common/alloc.h"
#include "transport_lws_car.h"

/* ---- the id table ---- */

static size_t hash_id(const char *id)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < TETHER__HC_ID_CHARS; i++) {
        h = (h ^ (unsigned char)id[i]) * 1099511628211ull;
    }
    return (size_t)h;
}

hc_conn *tether__hc_find(tether__car *car, const char *id)
{
    for (hc_conn *hc = car->table[hash_id(id) & (car->nbuckets - 1)]; hc; hc = hc->next_id) {
        if (memcmp(hc->id, id, TETHER__HC_ID_CHARS) == 0) {
            return hc;
        }
    }
    return NULL;
}

static void grow(tether__car *car)
{
    if (car->count < 2 * car->nbuckets) {
        return;
    }
    size_t n = car->nbuckets * 2;
    hc_conn **t = tether__calloc(n, sizeof *t);
    if (!t) {
        return; /* the chains get longer, nothing else */
    }
    for (size_t b = 0; b < car->nbuckets; b++) {
        for (hc_conn *hc = car->table[b], *next; hc; hc = next) {
            next = hc->next_id;
            size_t nb = hash_id(hc->id) & (n - 1);
            hc->next_id = t[nb];
            t[nb] = hc;
        }
    }
    tether__free(car->table);
    car->table = t;
    car->nbuckets = n;
}

/* Gives hc a new id and puts it in the table: TETHER_OK or TETHER_ESYS. */
static int issue_id(hc_conn *hc)
{
    tether__car *car = hc->car;
    do {
        if (tether__hc_id_new(hc->id) != TETHER_OK) {
            return TETHER_ESYS;
        }
    } while (tether__hc_find(car, hc->id)); /* never twice, however unlikely */
    size_t b = hash_id(hc->id) & (car->nbuckets - 1);
    hc->next_id = car->table[b];
    car->table[b] = hc;
    hc->in_table = 1;
    car->count++;
    grow(car);
    return TETHER_OK;
}

static void unlist(hc_conn *hc)
{
    tether__car *car = hc->car;
    if (!hc->in_table) {
        return;
    }
    hc_conn **pp = &car->table[hash_id(hc->id) & (car->nbuckets - 1)];
    while (*pp && *pp != hc) {
        pp = &(*pp)->next_id;
    }
    if (*pp) {
        *pp = hc->next_id;
        car->count--;
    }
    hc->in_table = 0;
}

/* ---- timers ---- */

static void tick_cb(uv_timer_t *t);

static void arm(hc_timer *t, uint64_t due)
{
    tether__car *car = t->hc->car;
    tether__tw_arm(&car->wheel, &t->node, due);
    if (!car->ticking) {
        car->ticking = 1;
        uv_timer_start(&car->tick, tick_cb, HC_TICK_MS, 0);
    }
}

void tether__hc_arm_hold(hc_conn *hc, uint32_t ms)
{
    arm(&hc->t_hold, tether__now_ms() + ms);
}

void tether__hc_idle_update(hc_conn *hc)
{
    if (hc->phase == HC_OPEN && !hc->open && !hc->up && !hc->down) {
        arm(&hc->t_idle, tether__now_ms() + hc->car->idle_ms);
    } else {
        tether__tw_disarm(&hc->car->wheel, &hc->t_idle.node);
    }
}

static void fire(tether__tw_node *node, void *arg)
{
    hc_timer *t = (hc_timer *)((char *)node - offsetof(hc_timer, node));
    hc_conn *hc = t->hc;
    (void)arg;
    if (t->hold) {
        if (hc->down && hc->down->stream) {
            tether__car_stream_end(hc->down); /* the stream bound */
            tether__hc_idle_update(hc);
        } else if (hc->down) {
            hc_req *r = hc->down;
            hc->down = NULL;
            r->hc = NULL;
            tether__car_answer_down(hc, r); /* nothing came: 204 */
            tether__hc_idle_update(hc);
        }
        return;
    }
    /* idle for the whole bound: over, as a WebSocket whose TCP connection died */
    tether__hc_end(hc, TETHER_EDROPPED,
                   "the HTTP carriage connection had no request for the "
                   "idle bound: the server ended it");
    tether__hc_release(hc);
}

static void tick_cb(uv_timer_t *t)
{
    tether__car *car = t->data;
    car->ticking = 0;
    tether__tw_advance(&car->wheel, tether__now_ms(), fire, car);
    if (tether__tw_count(&car->wheel) > 0 && !car->ticking) {
        car->ticking = 1;
        uv_timer_start(&car->tick, tick_cb, HC_TICK_MS, 0);
    }
}

/* ---- records ---- */

hc_conn *tether__hc_new(tether__car *car)
{
    hc_conn *hc = tether__calloc(1, sizeof *hc);
    if (!hc) {
        return NULL;
    }
    hc->car = car;
    hc->conn.tp = car->tp;
    hc->conn.hc = hc;
    hc->conn.established = 1;
    hc->conn.last_rx_ms = tether__now_ms();
    hc->phase = HC_OPENING;
    hc->t_idle.hc = hc;
    hc->t_hold.hc = hc;
    hc->t_hold.hold = 1;
    tether__buf_init(&hc->ans, 0);
    tether__hc_limits_for(&hc->down_lim, TETHER__HC_POLL, 1);
    tether__hc_limits_for(&hc->up_lim, TETHER__HC_SEND, 1);
    atomic_fetch_add(&car->live, 1);
    hc->next_all = car->all;
    if (car->all) {
        car->all->prev_all = hc;
    }
    car->all = hc;
    return hc;
}

static void hc_free(hc_conn *hc)
{
    tether__car *car = hc->car;
    tether__tw_disarm(&car->wheel, &hc->t_idle.node);
    tether__tw_disarm(&car->wheel, &hc->t_hold.node);
    unlist(hc);
    if (hc->prev_all) {
        hc->prev_all->next_all = hc->next_all;
    } else {
        car->all = hc->next_all;
    }
    if (hc->next_all) {
        hc->next_all->prev_all = hc->prev_all;
    }
    atomic_fetch_sub(&car->live, 1);
    tether__buf_free(&hc->ans);
    tether__free(hc->q);
    tether__free(hc->qoff);
    tether__free(hc);
}

void tether__hc_report(hc_conn *hc, int error, const char *detail)
{
    if (hc->core_done) {
        return;
    }
    hc->core_done = 1;
    hc->want = 0;
    tether__tp_close why;
    memset(&why, 0, sizeof why);
    why.error = error;
    snprintf(why.detail, sizeof why.detail, "%s", detail);
    tether__tp_conn_end(&hc->conn, &why);
}

void tether__hc_end(hc_conn *hc, int error, const char *detail)
{
    tether__hc_report(hc, error, detail);
    unlist(hc);
    hc->phase = HC_OVER;
    tether__tw_disarm(&hc->car->wheel, &hc->t_idle.node);
    tether__tw_disarm(&hc->car->wheel, &hc->t_hold.node);
    if (hc->down && hc->down->stream) {
        tether__car_stream_end(hc->down);
    } else if (hc->down) {
        hc_req *r = hc->down;
        hc->down = NULL;
        r->hc = NULL;
        tether__car_answer(r, 204, NULL, NULL, 0, NULL, 0);
    }
}

void tether__hc_release(hc_conn *hc)
{
    if (hc->core_done && hc->phase == HC_OVER && !hc->open && !hc->up && !hc->down && !hc->kicked) {
        hc_free(hc);
        return;
    }
    tether__hc_idle_update(hc);
}

/* ---- the downstream queue ---- */

int tether__hc_has_room(const hc_conn *hc)
{
    const tether__hc_limits *l = &hc->down_lim;
    return hc->nq < l->max_frames && hc->qlen + TETHER__HC_PREFIX + l->record_max <= l->body_max;
}

static int q_append(hc_conn *hc, const uint8_t *frame, size_t len)
{
    size_t need = hc->qlen + TETHER__HC_PREFIX + len;
    if (need > hc->qcap) {
        size_t cap = hc->qcap ? hc->qcap : 4096;
        while (cap < need) {
            cap *= 2;
        }
        uint8_t *p = tether__realloc(hc->q, cap);
        if (!p) {
            return TETHER_ENOMEM;
        }
        hc->q = p;
        hc->qcap = cap;
    }
    if (hc->nq == hc->qoffcap) {
        size_t cap = hc->qoffcap ? hc->qoffcap * 2 : 64;
        uint32_t *p = tether__realloc(hc->qoff, cap * sizeof *p);
        if (!p) {
            return TETHER_ENOMEM;
        }
        hc->qoff = p;
        hc->qoffcap = cap;
    }
    uint8_t *w = hc->q + hc->qlen;
    w[0] = (uint8_t)(len >> 24);
    w[1] = (uint8_t)(len >> 16);
    w[2] = (uint8_t)(len >> 8);
    w[3] = (uint8_t)len;
    memcpy(w + TETHER__HC_PREFIX, frame, len);
    hc->qoff[hc->nq++] = (uint32_t)hc->qlen;
    hc->qlen = need;
    return TETHER_OK;
}

int tether__hc_confirm(hc_conn *hc, uint64_t received)
{
    if (received > hc->sent) {
        return TETHER_EINVAL;
    }
    if (received <= hc->confirmed) {
        return TETHER_OK; /* a late request: confirms nothing new */
    }
    size_t k = (size_t)(received - hc->confirmed);
    size_t cut = k < hc->nq ? hc->qoff[k] : hc->qlen;
    memmove(hc->q, hc->q + cut, hc->qlen - cut);
    hc->qlen -= cut;
    for (size_t i = k; i < hc->nq; i++) {
        hc->qoff[i - k] = hc->qoff[i] - (uint32_t)cut;
    }
    hc->nq -= k;
    hc->confirmed = received;
    if (hc->want && !hc->core_done) {
        tether__hc_kick(hc); /* room again for what the core has to write */
    }
    return TETHER_OK;
}

void tether__hc_serve_down(hc_conn *hc)
{
    if (hc->down && hc->down->stream) {
        if (hc->down->s_next <= hc->confirmed + hc->nq || hc->core_done) {
            lws_callback_on_writable(hc->down->wsi); /* new frames, or the end after BYE */
        }
        return;
    }
    if (hc->down && hc->nq > 0) {
        hc_req *r = hc->down;
        hc->down = NULL;
        r->hc = NULL;
        tether__tw_disarm(&hc->car->wheel, &hc->t_hold.node);
        tether__car_answer_down(hc, r);
        tether__hc_idle_update(hc);
    }
}

/* ---- what the server core does with the connection ---- */

static void kick_cb(uv_timer_t *t);

void tether__hc_kick(hc_conn *hc)
{
    if (hc->kicked) {
        return;
    }
    hc->kicked = 1;
    hc->next_kick = hc->car->kick_head;
    hc->car->kick_head = hc;
    uv_timer_start(&hc->car->kick, kick_cb, 0, 0);
}

void tether__car_want_write(tether__conn *c)
{
    hc_conn *hc = c->hc;
    if (hc->core_done) {
        return;
    }
    hc->want = 1;
    if (!hc->draining) {
        tether__hc_kick(hc);
    }
}

void tether__car_close(tether__conn *c)
{
    hc_conn *hc = c->hc;
    if (hc->core_done || hc->close_req) {
        return;
    }
    hc->close_req = 1;
    if (!hc->draining) {
        tether__hc_kick(hc);
    }
}

static int frame_type(tether__car *car, const uint8_t *f, size_t len, tether__frame *out)
{
    if (tether__decode(&car->dec, f, len, out) != TETHER_OK) {
        return 0;
    }
    return out->type;
}

/* The open is answered: from now on frames are numbered downstream. */
static void promote(hc_conn *hc)
{
    if (issue_id(hc) != TETHER_OK) {
        tether__hc_end(hc, TETHER_ESYS, "no secure random source for a connection id");
        return;
    }
    hc->phase = HC_OPEN;
    tether__car_answer_open(hc);
    tether__hc_idle_update(hc);
}

int tether__car_write(tether__conn *c, tether__buf *b)
{
    hc_conn *hc = c->hc;
    const uint8_t *f = tether__buf_frame(b);
    tether__frame fr;

    if (hc->core_done || hc->phase == HC_OVER) {
        return TETHER_ECONNECT;
    }
    if (hc->phase == HC_OPENING) {
        int t = hc->nans < 2 ? frame_type(hc->car, f, b->len, &fr) : 0;
        if (hc->nans == 0 || (hc->nans == 1 && hc->ans_welcome && t == TETHER__F_BYE)) {
            if (tether__hc_append(&hc->ans, f, b->len) != TETHER_OK) {
                return tether__fail(TETHER_ENOMEM, "out of memory");
            }
            if (hc->nans++ == 0 && t == TETHER__F_WELCOME) {
                hc->ans_welcome = 1;
                tether__hc_limits_for(&hc->up_lim, TETHER__HC_SEND, fr.u.welcome.max_message);
            }
            tether__stat_add(hc->car->tp->cfg.stats, TETHER__ST_BYTES_OUT, b->len);
            return TETHER_OK;
        }
        promote(hc); /* WELCOME, then a frame that is not BYE: it goes downstream */
        if (hc->phase != HC_OPEN) {
            return TETHER_ECONNECT;
        }
    }
    if (q_append(hc, f, b->len) != TETHER_OK) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    tether__stat_add(hc->car->tp->cfg.stats, TETHER__ST_BYTES_OUT, b->len);
    return TETHER_OK;
}

/* The deferred work of one connection: the core's writes while there is
 * room, then what they decided (the open answer, a close, a held poll). */
static void drain(hc_conn *hc)
{
    tether__tp *tp = hc->car->tp;
    hc->draining = 1;
    for (unsigned guard = 0; hc->want && !hc->close_req && !hc->core_done &&
                             (hc->phase == HC_OPENING || tether__hc_has_room(hc)) && guard < 8192;
         guard++) {
        hc->want = 0;
        if (tp->cb.writable) {
            tp->cb.writable(tp->owner, &hc->conn);
        }
    }
    hc->draining = 0;
    if (hc->phase == HC_OPENING) {
        if (hc->nans > 0 && (hc->close_req || !hc->ans_welcome || hc->nans == 2)) {
            /* refused (REJECT, BYE(4), WELCOME and BYE(6)): answered without an id */
            tether__hc_report(hc, TETHER_EDROPPED, "closed by the server");
            tether__car_answer_open(hc);
            tether__hc_end(hc, TETHER_EDROPPED, "closed by the server");
        } else if (hc->nans > 0) {
            promote(hc);
        } else if (hc->close_req) {
            /* closed with nothing to say: the HELLO came too late, or out of memory */
            tether__hc_report(hc, TETHER_EDROPPED, "closed by the server");
            tether__car_answer_open(hc);
            tether__hc_end(hc, TETHER_EDROPPED, "closed by the server");
        }
    } else if (hc->phase == HC_OPEN && hc->close_req && !hc->core_done) {
        /* the core is done (it wrote BYE, or gave up): the record stays until
         * the client confirms what is left, or the idle bound */
        tether__hc_report(hc, TETHER_EDROPPED, "closed by the server");
        if (hc->nq == 0) {
            tether__hc_end(hc, TETHER_EDROPPED, "closed by the server");
        }
    }
    if (hc->phase == HC_OPEN) {
        tether__hc_serve_down(hc);
    }
}

static void kick_cb(uv_timer_t *t)
{
    tether__car *car = t->data;
    while (car->kick_head) {
        hc_conn *hc = car->kick_head;
        car->kick_head = hc->next_kick;
        hc->next_kick = NULL;
        hc->kicked = 0;
        drain(hc);
        tether__hc_release(hc);
    }
}

/* ---- the carriage of a transport ---- */

size_t tether__tp_carriage_conns(tether__tp *tp)
{
    return tp && tp->car ? atomic_load(&tp->car->live) : 0;
}

int tether__car_create(tether__tp *tp)
{
    tether__car *car = tether__calloc(1, sizeof *car);
    if (!car) {
        return TETHER_ENOMEM;
    }
    car->tp = tp;
    car->hold_ms = tp->cfg.carriage_hold_ms ? tp->cfg.carriage_hold_ms : HC_HOLD_DEFAULT_MS;
    car->idle_ms = tp->cfg.carriage_idle_ms ? tp->cfg.carriage_idle_ms : HC_IDLE_DEFAULT_MS;
    car->nbuckets = HC_BUCKETS_MIN;
    car->table = tether__calloc(car->nbuckets, sizeof *car->table);
    if (!car->table ||
        tether__tw_init(&car->wheel, HC_TICK_MS, HC_WHEEL_SLOTS, tether__now_ms()) != 0) {
        tether__free(car->table);
        tether__free(car);
        return TETHER_ENOMEM;
    }
    if (tether__decoder_init(&car->dec, tp->cfg.max_rx ? tp->cfg.max_rx : 1) != TETHER_OK) {
        tether__tw_free(&car->wheel);
        tether__free(car->table);
        tether__free(car);
        return TETHER_ENOMEM;
    }
    uv_timer_init(&tp->loop, &car->kick);
    uv_timer_init(&tp->loop, &car->tick);
    car->kick.data = car;
    car->tick.data = car;
    car->handles = 2;
    tp->car = car;
    return TETHER_OK;
}

static void handle_closed(uv_handle_t *h)
{
    tether__car *car = h->data;
    car->handles--;
}

void tether__car_destroy(tether__tp *tp)
{
    tether__car *car = tp->car;
    if (!car) {
        return;
    }
    /* lws_context_destroy has closed every HTTP request (their records let
     * go); what remains are connections nothing was asking about */
    while (car->all) {
        hc_conn *hc = car->all;
        hc->kicked = 0;
        hc->open = hc->up = hc->down = NULL;
        tether__hc_report(hc, TETHER_ECLOSED, "the server is shutting down");
        hc_free(hc);
    }
    car->kick_head = NULL;
    uv_timer_stop(&car->kick);
    uv_timer_stop(&car->tick);
    uv_close((uv_handle_t *)&car->kick, handle_closed);
    uv_close((uv_handle_t *)&car->tick, handle_closed);
    while (car->handles > 0 && uv_run(&tp->loop, UV_RUN_NOWAIT)) {
    }
    tether__decoder_free(&car->dec);
    tether__tw_free(&car->wheel);
    tether__free(car->table);
    tether__free(car);
    tp->car = NULL;
}

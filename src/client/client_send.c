/*
 * The client's send path: staging, group commit, the committer thread,
 * asynchronous sends, waiting for room, flush.
 *
 * Every send copies its messages into the staging buffer (c->sq.cur) and gets
 * their seqs there, under sq.mu only. Then someone takes the committer role
 * (sq.committing) and stores everything staged, in as few transactions as
 * commit_max_messages/_bytes allow, under c->lock:
 *   - tether_client_send()/_batch(): the sender itself when nobody commits,
 *     otherwise it waits for the running commit, which took its messages or
 *     leaves them for the next round; so concurrent senders share commits;
 *   - the committer thread (started by the first asynchronous send), after
 *     commit_delay_us or at once when a group is full;
 *   - flush() and destroy(), which do not wait for the delay.
 * A message reaches the engine, and so the network, only once stored. A seq
 * is handed out once: the staged seqs follow the store's out_last, and a
 * failed commit drops everything staged after it too, so those seqs return
 * to the pool without ever having been stored or sent.
 */
#include "client_int.h"
#include "common/alloc.h"

#include <limits.h>

#define COMMIT_DELAY_MAX_US 1000000u
#define COMMIT_MESSAGES_MAX 65536u
#define COMMIT_BYTES_MAX (64u << 20)

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static struct timespec ts_of_us(uint64_t us)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(us / 1000000u);
    ts.tv_nsec = (long)(us % 1000000u) * 1000L;
    return ts;
}

int tether__client_send_check(tether_client_config *k)
{
    if (k->commit_delay_us > COMMIT_DELAY_MAX_US) {
        return tether__fail(TETHER_ECONFIG, "commit_delay_us %u is above %u", k->commit_delay_us,
                            COMMIT_DELAY_MAX_US);
    }
    if (k->commit_max_messages > COMMIT_MESSAGES_MAX) {
        return tether__fail(TETHER_ECONFIG, "commit_max_messages %u is above %u",
                            k->commit_max_messages, COMMIT_MESSAGES_MAX);
    }
    if (k->commit_max_bytes > COMMIT_BYTES_MAX) {
        return tether__fail(TETHER_ECONFIG, "commit_max_bytes %u is above %u", k->commit_max_bytes,
                            COMMIT_BYTES_MAX);
    }
    uint64_t window = k->window_messages ? k->window_messages : TETHER__DEFAULT_WINDOW;
    k->commit_delay_us = k->commit_delay_us ? k->commit_delay_us : TETHER__DEFAULT_COMMIT_DELAY_US;
    k->commit_max_messages =
        k->commit_max_messages ? k->commit_max_messages : TETHER__DEFAULT_COMMIT_MAX_MESSAGES;
    k->commit_max_bytes = k->commit_max_bytes ? k->commit_max_bytes : TETHER__DEFAULT_COMMIT_MAX_BYTES;
    k->async_max_bytes = k->async_max_bytes ? k->async_max_bytes : TETHER__DEFAULT_ASYNC_MAX_BYTES;
    k->wait_max_pending = k->wait_max_pending ? k->wait_max_pending : 4 * window;
    return TETHER_OK;
}

/* ---- staging buffers ---- */

static void stage_free(tether__stage *s)
{
    tether__free(s->buf);
    tether__free(s->lens);
    tether__free(s->res);
    tether__free(s->head);
    memset(s, 0, sizeof *s);
}

/* Room for n more messages of bytes in total. */
static int stage_reserve(tether__stage *s, size_t n, uint64_t bytes)
{
    if (s->n + n > s->mcap) {
        size_t cap = s->mcap ? s->mcap * 2 : 64;
        while (cap < s->n + n) {
            cap *= 2;
        }
        size_t *lens = tether__realloc(s->lens, cap * sizeof *lens);
        if (lens) {
            s->lens = lens;
        }
        tether__sendw **res = tether__realloc(s->res, cap * sizeof *res);
        if (res) {
            s->res = res;
        }
        uint8_t *head = tether__realloc(s->head, cap);
        if (head) {
            s->head = head;
        }
        if (!lens || !res || !head) {
            return TETHER_ENOMEM;
        }
        s->mcap = cap;
    }
    if (bytes > SIZE_MAX - s->len) {
        return TETHER_ENOMEM;
    }
    if (s->len + bytes > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + bytes) {
            cap *= 2;
        }
        uint8_t *buf = tether__realloc(s->buf, cap);
        if (!buf) {
            return TETHER_ENOMEM;
        }
        s->buf = buf;
        s->cap = cap;
    }
    return TETHER_OK;
}

/* ---- set up and tear down ---- */

int tether__client_sendq_init(tether_client *c)
{
    tether__sendq *q = &c->sq;
    pthread_condattr_t ca;
    memset(q, 0, sizeof *q);
    if (pthread_condattr_init(&ca) != 0) {
        return tether__fail(TETHER_ESYS, "cannot set up the send path");
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->done, &ca);
    pthread_cond_init(&q->kick, &ca);
    pthread_condattr_destroy(&ca);
    q->next_seq = tether__engine_rec(c->engine)->out_last + 1;
    tether__engine_pending(c->engine, &q->pend_n, &q->pend_b);
    return TETHER_OK;
}

void tether__client_sendq_free(tether_client *c)
{
    tether__sendq *q = &c->sq;
    stage_free(&q->cur);
    stage_free(&q->spare);
    tether__free(q->mv);
    pthread_cond_destroy(&q->done);
    pthread_cond_destroy(&q->kick);
    pthread_mutex_destroy(&q->mu);
}

void tether__client_wake(tether_client *c)
{
    if (c->tp && !atomic_exchange(&c->wake_pending, 1)) {
        tether__tp_wake(c->tp);
    }
}

/* ---- committing ---- */

/* The end of the messages of set from i on that form one transaction: whole
 * batches, at most commit_max_messages and commit_max_bytes unless the first
 * batch alone is larger. *bytes gets their payload size. */
static size_t chunk_end(const tether_client *c, const tether__stage *set, size_t i,
                        uint64_t *bytes)
{
    size_t j = i + 1;
    uint64_t b = set->lens[i];
    while (j < set->n && !set->head[j]) {
        b += set->lens[j++];
    }
    while (j < set->n) {
        size_t l = j + 1;
        uint64_t b2 = set->lens[j];
        while (l < set->n && !set->head[l]) {
            b2 += set->lens[l++];
        }
        if (l - i > c->cfg.commit_max_messages || b + b2 > c->cfg.commit_max_bytes) {
            break;
        }
        j = l;
        b += b2;
    }
    *bytes = b;
    return j;
}

/* Reports the asynchronous messages of set[i, j) (numbered from first) as failed. */
static void report_failed(tether_client *c, const tether__stage *set, size_t i, size_t j,
                          uint64_t first, int rc)
{
    while (i < j && c->cfg.cb.on_store_failed) {
        while (i < j && set->res[i]) {
            i++;
        }
        size_t k = i;
        while (k < j && !set->res[k]) {
            k++;
        }
        if (k > i) {
            c->cfg.cb.on_store_failed(c, first + i, first + k - 1, rc, c->cfg.user);
        }
        i = k;
    }
}

/* Settles the waiting senders of set[i, j): rc, and each batch's first seq. */
static void settle_locked(tether__stage *set, size_t i, size_t j, uint64_t first, int rc)
{
    for (size_t k = i; k < j; k++) {
        if (set->res[k] && set->head[k]) {
            set->res[k]->rc = rc;
            set->res[k]->first = first + k - i;
        }
    }
}

/*
 * A commit failed with rc (mu held): set[i..] and everything staged since are
 * dropped, their seqs given back. The caller reports set's part; the staged
 * part is moved to *dropped for it to report.
 */
static void drop_locked(tether_client *c, tether__stage *set, size_t i, uint64_t seq_i, int rc,
                        tether__stage *dropped, uint64_t *dropped_first)
{
    tether__sendq *q = &c->sq;
    uint64_t n = set->n - i, b = 0;
    for (size_t k = i; k < set->n; k++) {
        b += set->lens[k];
    }
    settle_locked(set, i, set->n, seq_i, rc);
    *dropped = q->cur;
    *dropped_first = q->cur_first;
    memset(&q->cur, 0, sizeof q->cur);
    n += dropped->n;
    b += dropped->len;
    settle_locked(dropped, 0, dropped->n, *dropped_first, rc);
    q->inflight_n -= n;
    q->inflight_b -= b;
    q->finished += n;
    q->next_seq = seq_i;
    int async = 0;
    for (size_t k = i; k < set->n && !async; k++) {
        async = set->res[k] == NULL;
    }
    for (size_t k = 0; k < dropped->n && !async; k++) {
        async = dropped->res[k] == NULL;
    }
    if (async) {
        q->fail_err = rc;
    }
}

/* Stores set (first seq: first), one transaction per chunk, and reports it.
 * The caller holds c->lock and the committer role, not mu. Returns 1 when the
 * service thread should be woken. Leaves the set empty. */
static int commit_set(tether_client *c, tether__stage *set, uint64_t first)
{
    tether__sendq *q = &c->sq;
    size_t i = 0, off = 0;
    int wake = 0;
    while (i < set->n) {
        uint64_t bytes;
        size_t j = chunk_end(c, set, i, &bytes);
        if (j - i > q->mv_cap) {
            tether_msg *mv = tether__realloc(q->mv, (j - i) * sizeof *mv);
            if (mv) {
                q->mv = mv;
                q->mv_cap = j - i;
            }
        }
        int rc = j - i > q->mv_cap ? TETHER_ENOMEM : TETHER_OK;
        for (size_t k = i; k < j && rc == TETHER_OK; k++) {
            q->mv[k - i].data = set->lens[k] ? set->buf + off : NULL;
            q->mv[k - i].len = set->lens[k];
            off += set->lens[k];
        }
        uint64_t got = 0, pn = 0, pb = 0;
        if (rc == TETHER_OK) {
            rc = tether__engine_send(c->engine, q->mv, j - i, &got);
        }
        wake |= tether__bp_after_send(&c->bp, c->engine, c->ecfg.window, rc);
        wake |= rc == TETHER_OK && tether__engine_live(c->engine);
        tether__engine_pending(c->engine, &pn, &pb);
        tether__stage dropped;
        uint64_t dropped_first = 0;
        memset(&dropped, 0, sizeof dropped);
        pthread_mutex_lock(&q->mu);
        q->commits++;
        if (rc == TETHER_OK) {
            if (got != first + i) {
                /* the session was reset meanwhile: everything is renumbered */
                uint64_t delta = got - (first + i); /* modulo 2^64: a shift either way */
                first += delta;
                q->next_seq += delta;
                q->cur_first += delta;
            }
            settle_locked(set, i, j, first + i, TETHER_OK);
            tether__stat_add(&c->stats, TETHER__ST_SENT, j - i);
            q->inflight_n -= j - i;
            q->inflight_b -= bytes;
            q->finished += j - i;
            q->pend_n = pn;
            q->pend_b = pb;
        } else {
            drop_locked(c, set, i, first + i, rc, &dropped, &dropped_first);
        }
        pthread_cond_broadcast(&q->done);
        pthread_mutex_unlock(&q->mu);
        if (rc != TETHER_OK) {
            pthread_cond_broadcast(&c->cond); /* room waiters: the dropped freed some */
            report_failed(c, set, i, set->n, first + i, rc);
            report_failed(c, &dropped, 0, dropped.n, dropped_first, rc);
            stage_free(&dropped);
            break;
        }
        if (c->cfg.cb.on_stored) {
            c->cfg.cb.on_stored(c, first + i, first + j - 1, c->cfg.user);
        }
        i = j;
    }
    set->n = 0;
    set->len = 0;
    return wake;
}

/*
 * One round of committing: takes c->lock, then the committer role (unless
 * another thread holds it: then it returns), and stores all that is staged.
 * The role is only ever held with c->lock, so a thread that already holds
 * c->lock (a callback that sends) never waits for it. mu not held on entry
 * or exit.
 */
static void lead(tether_client *c)
{
    tether__sendq *q = &c->sq;
    lock_send(c);
    pthread_mutex_lock(&q->mu);
    if (q->committing || q->cur.n == 0) {
        pthread_mutex_unlock(&q->mu);
        unlock(c);
        return;
    }
    q->committing = 1;
    tether__stage taken = q->cur;
    q->cur = q->spare;
    q->cur.n = 0;
    q->cur.len = 0;
    uint64_t first = q->cur_first;
    pthread_mutex_unlock(&q->mu);
    int wake = commit_set(c, &taken, first);
    pthread_mutex_lock(&q->mu);
    q->spare = taken;
    q->committing = 0;
    pthread_cond_broadcast(&q->done);
    if (q->cur.n > 0 && q->ck_idle) {
        pthread_cond_signal(&q->kick);
    }
    pthread_mutex_unlock(&q->mu);
    unlock(c);
    if (wake) {
        tether__client_wake(c);
    }
}

/* lead() from a thread holding mu: returns with mu held again. */
static void lead_locked(tether_client *c)
{
    pthread_mutex_unlock(&c->sq.mu);
    lead(c);
    pthread_mutex_lock(&c->sq.mu);
}

static void *ck_main(void *arg)
{
    tether_client *c = arg;
    tether__sendq *q = &c->sq;
    pthread_mutex_lock(&q->mu);
    while (!q->ck_stop) {
        if (q->cur.n == 0 || q->committing) {
            q->ck_idle = 1;
            pthread_cond_wait(&q->kick, &q->mu);
            q->ck_idle = 0;
            continue;
        }
        int full = q->cur.n >= c->cfg.commit_max_messages || q->cur.len >= c->cfg.commit_max_bytes;
        uint64_t due = q->cur_t0 + c->cfg.commit_delay_us;
        if (!full && now_us() < due) {
            struct timespec ts = ts_of_us(due);
            q->ck_idle = 1;
            pthread_cond_timedwait(&q->kick, &q->mu, &ts);
            q->ck_idle = 0;
            continue;
        }
        lead_locked(c);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

/* ---- handing messages over ---- */

/* Whether n messages of bytes fit under the caps with what is stored and
 * staged; max_pending (0: none) bounds the unacked count too (mu held). */
static int room_locked(const tether_client *c, size_t n, uint64_t bytes, uint64_t max_pending)
{
    const tether__sendq *q = &c->sq;
    uint64_t have_n = q->pend_n + q->inflight_n, have_b = q->pend_b + q->inflight_b;
    uint64_t cap_n = c->cfg.outbox_max_messages, cap_b = c->cfg.outbox_max_bytes;
    if (cap_n && (n > cap_n || have_n > cap_n - n)) {
        return 0;
    }
    if (cap_b && (bytes > cap_b || have_b > cap_b - bytes)) {
        return 0;
    }
    return !max_pending || have_n == 0 || have_n + n <= max_pending;
}

/* Reads the engine's pending totals into the mirror (c->lock held). */
static void refresh_locked(tether_client *c)
{
    uint64_t n = 0, b = 0;
    tether__engine_pending(c->engine, &n, &b);
    pthread_mutex_lock(&c->sq.mu);
    c->sq.pend_n = n;
    c->sq.pend_b = b;
    pthread_mutex_unlock(&c->sq.mu);
}

/* Copies msgs in as one batch with the next seqs (mu held). */
static int stage_locked(tether_client *c, const tether_msg *msgs, size_t n, uint64_t bytes,
                        tether__sendw *w, uint64_t *first)
{
    tether__sendq *q = &c->sq;
    tether__stage *s = &q->cur;
    if (n > UINT64_MAX - q->next_seq) {
        return tether__fail(TETHER_EINVAL, "sequence numbers exhausted");
    }
    if (stage_reserve(s, n, bytes) != TETHER_OK) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    if (s->n == 0) {
        q->cur_first = q->next_seq;
        q->cur_t0 = w ? 0 : now_us();
    }
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].len) {
            memcpy(s->buf + s->len, msgs[i].data, msgs[i].len);
        }
        s->len += msgs[i].len;
        s->lens[s->n] = msgs[i].len;
        s->res[s->n] = w;
        s->head[s->n] = i == 0;
        s->n++;
    }
    *first = q->next_seq;
    q->next_seq += n;
    q->handed += n;
    q->inflight_n += n;
    q->inflight_b += bytes;
    return TETHER_OK;
}

/* Checks messages; sums their bytes. */
static int check_msgs(tether_client *c, const tether_msg *msgs, size_t n, uint64_t *bytes)
{
    if (!c || (!msgs && n)) {
        return tether__fail(TETHER_EINVAL, "client or messages NULL");
    }
    if (n == 0) {
        return tether__fail(TETHER_EINVAL, "no messages to send");
    }
    uint64_t b = 0;
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].data && msgs[i].len) {
            return tether__fail(TETHER_EINVAL, "message %zu has no data", i);
        }
        if (msgs[i].len > c->ecfg.max_message) {
            return tether__fail(TETHER_ETOOBIG, "message %zu is %zu bytes; max_message_bytes is %u",
                                i, msgs[i].len, c->ecfg.max_message);
        }
        b += msgs[i].len;
    }
    *bytes = b;
    return TETHER_OK;
}

/* The outbox cap refused a send: reported as back-pressure, like a store refusal. */
static int outbox_full(tether_client *c, size_t n)
{
    lock(c);
    int bp = tether__bp_after_send(&c->bp, c->engine, c->ecfg.window, TETHER_EOUTBOX_FULL);
    unlock(c);
    if (bp) {
        tether__client_wake(c);
    }
    return tether__fail(TETHER_EOUTBOX_FULL, "send failed: %s (%zu more would pass a cap)",
                        tether_strerror(TETHER_EOUTBOX_FULL), n);
}

/* Waits on c->cond (c->lock held) until msgs fit, then stages them (mu taken
 * and released inside). until: absolute, CLOCK_MONOTONIC. */
static int wait_room(tether_client *c, const tether_msg *msgs, size_t n, uint64_t bytes,
                     const struct timespec *until, uint64_t *first)
{
    tether__sendq *q = &c->sq;
    int rc;
    lock(c);
    pthread_mutex_lock(&q->mu);
    q->room_waiting++;
    pthread_mutex_unlock(&q->mu);
    for (;;) {
        refresh_locked(c);
        pthread_mutex_lock(&q->mu);
        if (q->closed) {
            rc = tether__fail(TETHER_ECLOSED, "the client is being destroyed");
            break;
        }
        if (room_locked(c, n, bytes, c->cfg.wait_max_pending)) {
            rc = stage_locked(c, msgs, n, bytes, NULL, first);
            break;
        }
        pthread_mutex_unlock(&q->mu);
        if (pthread_cond_timedwait(&c->cond, &c->lock, until) == ETIMEDOUT) {
            pthread_mutex_lock(&q->mu);
            rc = q->closed ? tether__fail(TETHER_ECLOSED, "the client is being destroyed")
                           : tether__fail(TETHER_ETIMEDOUT, "no room in the outbox in time");
            if (rc == TETHER_ETIMEDOUT && room_locked(c, n, bytes, c->cfg.wait_max_pending)) {
                rc = stage_locked(c, msgs, n, bytes, NULL, first);
            }
            break;
        }
    }
    q->room_waiting--;
    pthread_cond_broadcast(&q->done);
    /* mu is held here */
    unlock(c);
    return rc;
}

static int start_committer_locked(tether_client *c)
{
    tether__sendq *q = &c->sq;
    if (q->ck_started) {
        return TETHER_OK;
    }
    if (pthread_create(&q->ck, NULL, ck_main, c) != 0) {
        return tether__fail(TETHER_ESYS, "cannot start the committer thread");
    }
    q->ck_started = 1;
    return TETHER_OK;
}

/* Asynchronous sends: stages msgs and leaves the commit to the committer
 * thread. wait: block for room (until) instead of failing. */
static int send_async(tether_client *c, const tether_msg *msgs, size_t n, int wait,
                      const struct timespec *until, uint64_t *first)
{
    uint64_t bytes, seq = 0;
    int rc = check_msgs(c, msgs, n, &bytes);
    if (rc != TETHER_OK) {
        return rc;
    }
    tether__sendq *q = &c->sq;
    pthread_mutex_lock(&q->mu);
    rc = start_committer_locked(c);
    /* memory: at most async_max_bytes wait for their commit */
    while (rc == TETHER_OK && !q->closed && q->inflight_b > 0 &&
           q->inflight_b + bytes > c->cfg.async_max_bytes) {
        if (q->ck_idle) {
            pthread_cond_signal(&q->kick);
        }
        if (until && pthread_cond_timedwait(&q->done, &q->mu, until) == ETIMEDOUT) {
            rc = tether__fail(TETHER_ETIMEDOUT, "the commits did not catch up in time");
        } else if (!until) {
            pthread_cond_wait(&q->done, &q->mu);
        }
    }
    if (rc == TETHER_OK && q->closed) {
        rc = tether__fail(TETHER_ECLOSED, "the client is shutting down");
    }
    int refreshed = 0;
    while (rc == TETHER_OK && !room_locked(c, n, bytes, wait ? c->cfg.wait_max_pending : 0)) {
        pthread_mutex_unlock(&q->mu);
        if (!refreshed) {
            lock(c);
            refresh_locked(c);
            unlock(c);
            refreshed = 1;
            pthread_mutex_lock(&q->mu);
            continue;
        }
        if (!wait) {
            return outbox_full(c, n);
        }
        rc = wait_room(c, msgs, n, bytes, until, &seq);
        if (rc == TETHER_OK) {
            goto staged; /* mu held */
        }
        pthread_mutex_unlock(&q->mu);
        return rc;
    }
    if (rc == TETHER_OK) {
        rc = stage_locked(c, msgs, n, bytes, NULL, &seq);
    }
    if (rc != TETHER_OK) {
        pthread_mutex_unlock(&q->mu);
        return rc;
    }
staged:
    if (q->ck_idle &&
        (q->cur.n == n || q->cur.n >= c->cfg.commit_max_messages ||
         q->cur.len >= c->cfg.commit_max_bytes)) {
        pthread_cond_signal(&q->kick);
    }
    pthread_mutex_unlock(&q->mu);
    if (first) {
        *first = seq;
    }
    return TETHER_OK;
}

/* ---- public API ---- */

int tether_client_send_batch(tether_client *c, const tether_msg *msgs, size_t n,
                             uint64_t *first_seq)
{
    tether__sendq *q;
    tether__sendw w = {TETHER__SEND_PENDING, 0};
    uint64_t bytes, seq;
    int rc = check_msgs(c, msgs, n, &bytes);
    if (rc != TETHER_OK) {
        return rc;
    }
    q = &c->sq;
    pthread_mutex_lock(&q->mu);
    if (q->closed) {
        pthread_mutex_unlock(&q->mu);
        return tether__fail(TETHER_ECLOSED, "the client is shutting down");
    }
    if (!room_locked(c, n, bytes, 0)) {
        pthread_mutex_unlock(&q->mu);
        lock(c);
        refresh_locked(c);
        unlock(c);
        pthread_mutex_lock(&q->mu);
        if (!room_locked(c, n, bytes, 0)) {
            pthread_mutex_unlock(&q->mu);
            return outbox_full(c, n);
        }
    }
    rc = stage_locked(c, msgs, n, bytes, &w, &seq);
    if (rc != TETHER_OK) {
        pthread_mutex_unlock(&q->mu);
        return rc;
    }
    q->sync_waiting++;
    while (w.rc == TETHER__SEND_PENDING) {
        if (!q->committing) {
            lead_locked(c);
        } else {
            pthread_cond_wait(&q->done, &q->mu);
        }
    }
    q->sync_waiting--;
    if (q->closed) {
        pthread_cond_broadcast(&q->done);
    }
    pthread_mutex_unlock(&q->mu);
    if (w.rc != TETHER_OK) {
        lock(c);
        tether__fail(w.rc, "send failed: %s (%s)", tether_strerror(w.rc),
                     c->store->ops->errmsg(c->store));
        unlock(c);
        return w.rc;
    }
    if (first_seq) {
        *first_seq = w.first;
    }
    return TETHER_OK;
}

int tether_client_send(tether_client *c, const void *data, size_t len, uint64_t *seq)
{
    tether_msg m = {data, len};
    if (!data && len) {
        return tether__fail(TETHER_EINVAL, "data is NULL");
    }
    return tether_client_send_batch(c, &m, 1, seq);
}

int tether_client_send_async(tether_client *c, const void *data, size_t len, uint64_t *seq)
{
    tether_msg m = {data, len};
    if (!data && len) {
        return tether__fail(TETHER_EINVAL, "data is NULL");
    }
    return send_async(c, &m, 1, 0, NULL, seq);
}

static struct timespec deadline(uint32_t timeout_ms)
{
    return ts_of_us(now_us() + (uint64_t)timeout_ms * 1000u);
}

int tether_client_send_wait(tether_client *c, const void *data, size_t len, uint64_t *seq,
                            uint32_t timeout_ms)
{
    tether_msg m = {data, len};
    if (!data && len) {
        return tether__fail(TETHER_EINVAL, "data is NULL");
    }
    struct timespec until = deadline(timeout_ms);
    return send_async(c, &m, 1, 1, &until, seq);
}

int tether_client_flush(tether_client *c, uint32_t timeout_ms)
{
    if (!c) {
        return tether__fail(TETHER_EINVAL, "client is NULL");
    }
    tether__sendq *q = &c->sq;
    struct timespec until = deadline(timeout_ms);
    int rc = TETHER_OK;
    pthread_mutex_lock(&q->mu);
    uint64_t target = q->handed;
    while (q->finished < target) {
        if (!q->committing) {
            lead_locked(c); /* no delay: flush wants it now */
        } else if (pthread_cond_timedwait(&q->done, &q->mu, &until) == ETIMEDOUT &&
                   q->finished < target) {
            rc = tether__fail(TETHER_ETIMEDOUT, "%llu messages not yet stored after %u ms",
                              (unsigned long long)(target - q->finished), timeout_ms);
            break;
        }
    }
    if (rc == TETHER_OK && q->fail_err) {
        rc = tether__fail(q->fail_err, "an asynchronous commit failed: %s",
                          tether_strerror(q->fail_err));
        q->fail_err = 0;
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

void tether__client_sendq_close(tether_client *c)
{
    tether__sendq *q = &c->sq;
    lock(c);
    pthread_mutex_lock(&q->mu);
    q->closed = 1;
    pthread_mutex_unlock(&q->mu);
    pthread_cond_broadcast(&c->cond);
    unlock(c);
    pthread_mutex_lock(&q->mu);
    while (q->room_waiting > 0 || q->sync_waiting > 0 || q->committing) {
        pthread_cond_wait(&q->done, &q->mu);
    }
    q->ck_stop = 1;
    pthread_cond_signal(&q->kick);
    pthread_mutex_unlock(&q->mu);
    if (q->ck_started) {
        pthread_join(q->ck, NULL);
        q->ck_started = 0;
    }
    pthread_mutex_lock(&q->mu);
    while (q->cur.n > 0) {
        lead_locked(c);
    }
    pthread_mutex_unlock(&q->mu);
}

unsigned long tether__client_commits(tether_client *c)
{
    pthread_mutex_lock(&c->sq.mu);
    unsigned long n = c->sq.commits;
    pthread_mutex_unlock(&c->sq.mu);
    return n;
}

uint64_t tether__client_next_seq_locked(tether_client *c)
{
    pthread_mutex_lock(&c->sq.mu);
    uint64_t last = c->sq.inflight_n || c->sq.committing ? c->sq.next_seq - 1
                                                          : tether__engine_rec(c->engine)->out_last;
    pthread_mutex_unlock(&c->sq.mu);
    return last;
}

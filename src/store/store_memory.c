/*
 * The memory store: the store interface (store.h) kept in process memory.
 *
 * Sessions live in an array of pointers sorted by id: lookups are a binary
 * search and list() walks the array in order. Adding or removing a session
 * moves pointers (a memmove), which stays cheap for the tens of thousands of
 * sessions a server holds.
 *
 * Each outbox is a ring of pointers to entries, oldest first; an entry holds
 * its seq and a copy of the payload in one allocation. append() pushes at the
 * tail and ack() pops from the head, both O(1) amortised (the ring doubles
 * when full and halves when a quarter full); load() finds its first entry by
 * binary search on seq.
 *
 * Semantics match store_sqlite.c exactly, checks included: every operation
 * validates and allocates everything it needs before it changes anything, so
 * a failure, TETHER_ENOMEM included, leaves the store as it was. Sequence
 * numbers and cursors are limited to INT64_MAX, as SQLite integers are.
 *
 * Callbacks of load() and list() must not call back into the store.
 */
#include "store.h"
#include "common/alloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_testhooks.h"
#include "common/util.h"

#define SEQ_MAX ((uint64_t)INT64_MAX) /* highest seq or cursor a store accepts */
#define RING_MIN 16                   /* smallest ring, in slots */

typedef struct entry {
    uint64_t seq;         /* sequence number */
    size_t len;           /* payload length in bytes */
    unsigned char data[]; /* the payload copy */
} entry;

typedef struct msess {
    tether__session_rec rec; /* the session's record */
    entry **ring;            /* outbox entries in seq order from head; NULL when cap is 0 */
    size_t cap;              /* ring slots: 0 or a power of two */
    size_t head;             /* slot of the oldest entry */
    size_t count;            /* entries in the outbox */
    uint64_t bytes;          /* payload bytes in the outbox */
} msess;

typedef struct mstore {
    tether__store base;      /* the interface; must come first */
    tether__store_role role; /* client or server */
    msess **sess;            /* sessions sorted by id */
    size_t nsess;            /* sessions held */
    size_t capsess;          /* slots in sess */
    long budget;             /* test hook: allocations left before they fail, -1 = no limit */
    char msg[256];           /* the last failure's message */
    struct mverdict *verdicts; /* fallback verdicts kept, a list in no order */
} mstore;

/* One fallback verdict (verdict_put). */
typedef struct mverdict {
    struct mverdict *next; /* the next verdict of the list */
    tether__verdict v;     /* the verdict */
    char key[];            /* its key, NUL-terminated */
} mverdict;

static const tether__store_ops memory_ops;

static int fail(mstore *m, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(mstore *m, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->msg, sizeof m->msg, fmt, ap);
    va_end(ap);
    return tether__fail(code, "%s", m->msg);
}

/* malloc, failing when the test budget is spent. */
static void *xmalloc(mstore *m, size_t n)
{
    if (m->budget == 0) {
        return NULL;
    }
    if (m->budget > 0) {
        m->budget--;
    }
    return tether__malloc(n ? n : 1);
}

/* ---- sessions ---- */

/* Index of the first session whose id is >= id. */
static size_t lower(const mstore *m, const uint8_t id[16])
{
    size_t lo = 0, hi = m->nsess;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (memcmp(m->sess[mid]->rec.id, id, 16) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static msess *find(const mstore *m, const uint8_t id[16], size_t *pos)
{
    size_t i = lower(m, id);
    if (pos) {
        *pos = i;
    }
    if (i < m->nsess && memcmp(m->sess[i]->rec.id, id, 16) == 0) {
        return m->sess[i];
    }
    return NULL;
}

static void remove_at(mstore *m, size_t pos)
{
    memmove(&m->sess[pos], &m->sess[pos + 1], (m->nsess - pos - 1) * sizeof m->sess[0]);
    m->nsess--;
}

/* Inserts s at pos; the caller made room (nsess < capsess). */
static void insert_at(mstore *m, size_t pos, msess *s)
{
    memmove(&m->sess[pos + 1], &m->sess[pos], (m->nsess - pos) * sizeof m->sess[0]);
    m->sess[pos] = s;
    m->nsess++;
}

/* Makes room for one more session. */
static int grow_sessions(mstore *m)
{
    if (m->nsess < m->capsess) {
        return TETHER_OK;
    }
    size_t cap = m->capsess ? m->capsess * 2 : 8;
    if (cap > SIZE_MAX / sizeof m->sess[0]) {
        return TETHER_ENOMEM;
    }
    msess **a = xmalloc(m, cap * sizeof a[0]);
    if (!a) {
        return TETHER_ENOMEM;
    }
    if (m->nsess) {
        memcpy(a, m->sess, m->nsess * sizeof a[0]);
    }
    tether__free(m->sess);
    m->sess = a;
    m->capsess = cap;
    return TETHER_OK;
}

/* ---- outbox ring ---- */

static entry **slot(const msess *s, size_t i)
{
    return &s->ring[(s->head + i) & (s->cap - 1)];
}

static entry *at(const msess *s, size_t i)
{
    return *slot(s, i);
}

/* Moves the ring into a new array of cap slots (cap >= count). */
static int resize(mstore *m, msess *s, size_t cap)
{
    entry **r = xmalloc(m, cap * sizeof r[0]);
    if (!r) {
        return TETHER_ENOMEM;
    }
    for (size_t i = 0; i < s->count; i++) {
        r[i] = at(s, i);
    }
    tether__free(s->ring);
    s->ring = r;
    s->cap = cap;
    s->head = 0;
    return TETHER_OK;
}

/* Makes room for extra more entries; on failure nothing observable changed. */
static int reserve(mstore *m, msess *s, size_t extra)
{
    if (extra > SIZE_MAX / 2 / sizeof(entry *) - s->count) {
        return TETHER_ENOMEM;
    }
    size_t need = s->count + extra;
    if (need <= s->cap) {
        return TETHER_OK;
    }
    size_t cap = s->cap ? s->cap : RING_MIN;
    while (cap < need) {
        cap *= 2;
    }
    return resize(m, s, cap);
}

/* Gives memory back once the ring is a quarter full; failure is harmless. */
static void shrink(mstore *m, msess *s)
{
    if (s->cap <= RING_MIN || s->count > s->cap / 4) {
        return;
    }
    size_t cap = s->cap;
    while (cap > RING_MIN && s->count <= cap / 4) {
        cap /= 2;
    }
    if (s->count == 0) {
        tether__free(s->ring);
        s->ring = NULL;
        s->cap = 0;
        s->head = 0;
        return;
    }
    (void)resize(m, s, cap);
}

/* Removes the oldest entry. */
static void pop(msess *s)
{
    entry *e = at(s, 0);
    s->bytes -= e->len;
    tether__free(e);
    s->head = (s->head + 1) & (s->cap - 1);
    s->count--;
}

/* Index of the first entry whose seq is >= seq. */
static size_t first_from(const msess *s, uint64_t seq)
{
    size_t lo = 0, hi = s->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (at(s, mid)->seq < seq) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static void free_session(msess *s)
{
    while (s->count) {
        pop(s);
    }
    tether__free(s->ring);
    tether__free(s);
}

/* ---- operations ---- */

static int rec_invalid(const tether__session_rec *rec)
{
    return rec->out_last > SEQ_MAX || rec->peer_acked > SEQ_MAX || rec->recv_cursor > SEQ_MAX ||
           rec->peer_acked > rec->out_last;
}

static int m_get(tether__store *st, const uint8_t id[16], tether__session_rec *out)
{
    mstore *m = (mstore *)st;
    if (!id || !out) {
        return fail(m, TETHER_EINVAL, "session_get: invalid argument");
    }
    msess *s = find(m, id, NULL);
    if (!s) {
        return fail(m, TETHER_ENOTFOUND, "session_get: no such session");
    }
    *out = s->rec;
    return TETHER_OK;
}

static int m_put(tether__store *st, const tether__session_rec *rec)
{
    mstore *m = (mstore *)st;
    if (!rec || rec_invalid(rec)) {
        return fail(m, TETHER_EINVAL, "session_put: invalid record");
    }
    size_t pos;
    msess *s = find(m, rec->id, &pos);
    if (s) {
        if (s->count && at(s, s->count - 1)->seq > rec->out_last) {
            return fail(
                m, TETHER_EINVAL, "session_put: out_last %llu is below the outbox's last seq %llu",
                (unsigned long long)rec->out_last, (unsigned long long)at(s, s->count - 1)->seq);
        }
    } else {
        s = xmalloc(m, sizeof *s);
        if (!s) {
            return fail(m, TETHER_ENOMEM, "session_put: out of memory");
        }
        if (grow_sessions(m) != TETHER_OK) {
            tether__free(s);
            return fail(m, TETHER_ENOMEM, "session_put: out of memory");
        }
        memset(s, 0, sizeof *s);
        insert_at(m, pos, s);
    }
    s->rec = *rec;
    s->rec.established = rec->established != 0;
    return TETHER_OK;
}

static int m_delete(tether__store *st, const uint8_t id[16])
{
    mstore *m = (mstore *)st;
    if (!id) {
        return fail(m, TETHER_EINVAL, "session_delete: invalid argument");
    }
    size_t pos;
    msess *s = find(m, id, &pos);
    if (!s) {
        return fail(m, TETHER_ENOTFOUND, "session_delete: no such session");
    }
    remove_at(m, pos);
    free_session(s);
    return TETHER_OK;
}

static int m_list(tether__store *st, tether__list_cb cb, void *arg)
{
    mstore *m = (mstore *)st;
    if (!cb) {
        return fail(m, TETHER_EINVAL, "session_list: invalid argument");
    }
    for (size_t i = 0; i < m->nsess; i++) {
        if (cb(arg, &m->sess[i]->rec) != 0) {
            break;
        }
    }
    return TETHER_OK;
}

static int m_append(tether__store *st, const uint8_t id[16], const tether_msg *msgs, size_t n,
                    uint64_t max_count, uint64_t max_bytes, uint64_t *first_seq)
{
    mstore *m = (mstore *)st;
    if (!id || !first_seq || (n && !msgs)) {
        return fail(m, TETHER_EINVAL, "append: invalid argument");
    }
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].data && msgs[i].len) {
            return fail(m, TETHER_EINVAL, "append: message %zu has no data", i);
        }
        total = msgs[i].len > UINT64_MAX - total ? UINT64_MAX : total + msgs[i].len;
    }
    msess *s = find(m, id, NULL);
    if (!s) {
        return fail(m, TETHER_ENOTFOUND, "append: no such session");
    }
    if (n == 0) {
        *first_seq = s->rec.out_last + 1;
        return TETHER_OK;
    }
    if (n > SEQ_MAX - s->rec.out_last) {
        return fail(m, TETHER_EINVAL, "append: sequence numbers exhausted");
    }
    if (max_count && (n > max_count || s->count > max_count - n)) {
        return fail(m, TETHER_EOUTBOX_FULL,
                    "append: the outbox holds %zu messages, %zu more would pass the cap of %llu",
                    s->count, n, (unsigned long long)max_count);
    }
    if (max_bytes && (total > max_bytes || s->bytes > max_bytes - total)) {
        return fail(m, TETHER_EOUTBOX_FULL,
                    "append: the outbox holds %llu bytes, %llu more would pass the cap of %llu",
                    (unsigned long long)s->bytes, (unsigned long long)total,
                    (unsigned long long)max_bytes);
    }
    if (reserve(m, s, n) != TETHER_OK) {
        return fail(m, TETHER_ENOMEM, "append: out of memory");
    }
    /* Fill the free slots after the tail; count moves only once all are made. */
    for (size_t i = 0; i < n; i++) {
        entry *e = msgs[i].len > SIZE_MAX - sizeof *e ? NULL : xmalloc(m, sizeof *e + msgs[i].len);
        if (!e) {
            for (size_t j = 0; j < i; j++) {
                tether__free(*slot(s, s->count + j));
            }
            return fail(m, TETHER_ENOMEM, "append: out of memory");
        }
        e->seq = s->rec.out_last + 1 + i;
        e->len = msgs[i].len;
        if (e->len) {
            memcpy(e->data, msgs[i].data, e->len);
        }
        *slot(s, s->count + i) = e;
    }
    *first_seq = s->rec.out_last + 1;
    s->count += n;
    s->bytes += total;
    s->rec.out_last += n;
    return TETHER_OK;
}

static int m_load(tether__store *st, const uint8_t id[16], uint64_t from_seq, size_t max_count,
                  tether__load_cb cb, void *arg)
{
    mstore *m = (mstore *)st;
    if (!id || !cb) {
        return fail(m, TETHER_EINVAL, "load: invalid argument");
    }
    msess *s = find(m, id, NULL);
    if (!s) {
        return fail(m, TETHER_ENOTFOUND, "load: no such session");
    }
    size_t done = 0;
    for (size_t i = first_from(s, from_seq); i < s->count && done < max_count; i++, done++) {
        entry *e = at(s, i);
        if (cb(arg, e->seq, e->data, e->len) != 0) {
            break;
        }
    }
    return TETHER_OK;
}

static int m_ack(tether__store *st, const uint8_t id[16], uint64_t seq)
{
    mstore *m = (mstore *)st;
    if (!id || seq > SEQ_MAX) {
        return fail(m, TETHER_EINVAL, "ack: invalid argument");
    }
    msess *s = find(m, id, NULL);
    if (!s) {
        return fail(m, TETHER_ENOTFOUND, "ack: no such session");
    }
    if (seq > s->rec.out_last) {
        return fail(m, TETHER_EINVAL, "ack: seq %llu was never sent (out_last %llu)",
                    (unsigned long long)seq, (unsigned long long)s->rec.out_last);
    }
    while (s->count && at(s, 0)->seq <= seq) {
        pop(s);
    }
    shrink(m, s);
    if (seq > s->rec.peer_acked) {
        s->rec.peer_acked = seq;
    }
    return TETHER_OK;
}

static int m_set_cursor(tether__store *st, const uint8_t id[16], uint64_t cursor)
{
    mstore *m = (mstore *)st;
    if (!id || cursor > SEQ_MAX) {
        return fail(m, TETHER_EINVAL, "set_cursor: invalid argument");
    }
    msess *s = find(m, id, NULL);
    if (!s) {
        return fail(m, TETHER_ENOTFOUND, "set_cursor: no such session");
    }
    if (cursor > s->rec.recv_cursor) {
        s->rec.recv_cursor = cursor;
    }
    return TETHER_OK;
}

static int m_pending(tether__store *st, const uint8_t id[16], uint64_t *count, uint64_t *bytes)
{
    mstore *m = (mstore *)st;
    if (!id || !count || !bytes) {
        return fail(m, TETHER_EINVAL, "pending: invalid argument");
    }
    msess *s = find(m, id, NULL);
    if (!s) {
        return fail(m, TETHER_ENOTFOUND, "pending: no such session");
    }
    *count = s->count;
    *bytes = s->bytes;
    return TETHER_OK;
}

static int m_rebase(tether__store *st, const uint8_t old_id[16], const tether__session_rec *new_rec,
                    uint64_t skip)
{
    mstore *m = (mstore *)st;
    if (!old_id || !new_rec || rec_invalid(new_rec) || memcmp(old_id, new_rec->id, 16) == 0) {
        return fail(m, TETHER_EINVAL, "rebase: invalid argument");
    }
    size_t pos;
    msess *s = find(m, old_id, &pos);
    if (!s) {
        return fail(m, TETHER_ENOTFOUND, "rebase: no such session");
    }
    if (skip > s->rec.out_last || new_rec->out_last != s->rec.out_last - skip) {
        return fail(m, TETHER_EINVAL, "rebase: new out_last %llu is not %llu - %llu",
                    (unsigned long long)new_rec->out_last, (unsigned long long)s->rec.out_last,
                    (unsigned long long)skip);
    }
    if (find(m, new_rec->id, NULL)) {
        return fail(m, TETHER_EINVAL, "rebase: the new session id is already in use");
    }
    /* Nothing below allocates, so nothing can fail. */
    while (s->count && at(s, 0)->seq <= skip) {
        pop(s);
    }
    for (size_t i = 0; i < s->count; i++) {
        at(s, i)->seq -= skip;
    }
    shrink(m, s);
    remove_at(m, pos);
    s->rec = *new_rec;
    s->rec.established = new_rec->established != 0;
    insert_at(m, lower(m, s->rec.id), s);
    return TETHER_OK;
}

/* The memory store has no file, so TETHER__INSPECT_CHECK has nothing to
 * verify: every operation keeps the counts exact or fails without a change. */
static int m_inspect(tether__store *st, unsigned flags, tether__store_info *out)
{
    mstore *m = (mstore *)st;
    if (!out || (flags & ~TETHER__INSPECT_CHECK) != 0) {
        return fail(m, TETHER_EINVAL, "inspect: invalid argument");
    }
    memset(out, 0, sizeof *out);
    out->role = m->role;
    out->sessions = m->nsess;
    for (size_t i = 0; i < m->nsess; i++) {
        out->pending += m->sess[i]->count;
        out->pending_bytes += m->sess[i]->bytes;
    }
    return TETHER_OK;
}

/* ---- fallback verdicts ---- */

int tether__verdict_check(const char *key, const tether__verdict *v)
{
    if (!key || !key[0] || strlen(key) > TETHER__VERDICT_KEY_MAX) {
        return tether__fail(TETHER_EINVAL, "verdict: the key must be 1 to %d bytes",
                            TETHER__VERDICT_KEY_MAX);
    }
    if (v && (v->until_ms == 0 || v->until_ms > (uint64_t)INT64_MAX)) {
        return tether__fail(TETHER_EINVAL, "verdict: until_ms %llu is out of range",
                            (unsigned long long)v->until_ms);
    }
    return TETHER_OK;
}

static mverdict **m_vfind(mstore *m, const char *key)
{
    mverdict **p = &m->verdicts;
    while (*p && strcmp((*p)->key, key) != 0) {
        p = &(*p)->next;
    }
    return p;
}

static int m_verdict_get(tether__store *st, const char *key, tether__verdict *out)
{
    mstore *m = (mstore *)st;
    int rc = tether__verdict_check(key, NULL);
    if (rc != TETHER_OK || !out) {
        return fail(m, TETHER_EINVAL, "verdict_get: invalid argument");
    }
    mverdict *v = *m_vfind(m, key);
    if (!v) {
        return fail(m, TETHER_ENOTFOUND, "verdict_get: no verdict kept for this key");
    }
    *out = v->v;
    return TETHER_OK;
}

static int m_verdict_put(tether__store *st, const char *key, const tether__verdict *v)
{
    mstore *m = (mstore *)st;
    if (tether__verdict_check(key, v) != TETHER_OK) {
        return fail(m, TETHER_EINVAL, "verdict_put: %s", tether_errmsg());
    }
    mverdict **p = m_vfind(m, key);
    if (!v) {
        if (*p) {
            mverdict *gone = *p;
            *p = gone->next;
            tether__free(gone);
        }
        return TETHER_OK;
    }
    if (*p) {
        (*p)->v = *v;
        return TETHER_OK;
    }
    size_t len = strlen(key);
    mverdict *n = xmalloc(m, sizeof *n + len + 1);
    if (!n) {
        return fail(m, TETHER_ENOMEM, "verdict_put: out of memory");
    }
    n->next = NULL;
    n->v = *v;
    memcpy(n->key, key, len + 1);
    *p = n;
    return TETHER_OK;
}

static const char *m_errmsg(tether__store *st)
{
    mstore *m = (mstore *)st;
    return m->msg[0] ? m->msg : "no error";
}

static void m_close(tether__store *st)
{
    mstore *m = (mstore *)st;
    if (!m) {
        return;
    }
    for (size_t i = 0; i < m->nsess; i++) {
        free_session(m->sess[i]);
    }
    tether__free(m->sess);
    while (m->verdicts) {
        mverdict *next = m->verdicts->next;
        tether__free(m->verdicts);
        m->verdicts = next;
    }
    tether__free(m);
}

/* ---- leases: one instance uses this store, so it always owns every session ---- */

int tether__lease_single_take(tether__store *st, const uint8_t id[16], uint32_t ttl_ms, int *stale)
{
    (void)st;
    if (!id || ttl_ms == 0 || ttl_ms > INT32_MAX || !stale) {
        return TETHER_EINVAL;
    }
    *stale = 0;
    return TETHER_OK;
}

int tether__lease_single_release(tether__store *st, const uint8_t id[16])
{
    (void)st;
    return id ? TETHER_OK : TETHER_EINVAL;
}

int tether__lease_single_renew(tether__store *st, uint32_t ttl_ms,
                               void (*lost)(void *arg, const uint8_t id[16]),
                               void (*kept)(void *arg, const uint8_t id[16], uint64_t out_last),
                               void *arg)
{
    (void)st;
    (void)lost;
    (void)kept;
    (void)arg;
    return ttl_ms == 0 || ttl_ms > INT32_MAX ? TETHER_EINVAL : TETHER_OK;
}

int tether__wake_single(tether__store *st, const uint8_t id[16])
{
    (void)st;
    return id ? TETHER_OK : TETHER_EINVAL;
}

int tether__wait_wakes_single(tether__store *st, uint32_t timeout_ms,
                              void (*cb)(void *arg, const uint8_t id[16]), void *arg)
{
    (void)st;
    (void)timeout_ms;
    (void)cb;
    (void)arg;
    return TETHER_OK;
}

static const tether__store_ops memory_ops = {
    .session_get = m_get,
    .session_put = m_put,
    .session_delete = m_delete,
    .session_list = m_list,
    .append = m_append,
    .load = m_load,
    .ack = m_ack,
    .set_cursor = m_set_cursor,
    .pending = m_pending,
    .rebase = m_rebase,
    .errmsg = m_errmsg,
    .close = m_close,
    .inspect = m_inspect,
    .verdict_get = m_verdict_get,
    .verdict_put = m_verdict_put,
    .lease_take = tether__lease_single_take,
    .lease_release = tether__lease_single_release,
    .lease_renew = tether__lease_single_renew,
    .wake = tether__wake_single,
    .wait_wakes = tether__wait_wakes_single,
};

int tether__store_memory_open(tether__store_role role, tether__store **out)
{
    if (!out) {
        return tether__fail(TETHER_EINVAL, "store_memory_open: invalid argument");
    }
    *out = NULL;
    if (role != TETHER__ROLE_CLIENT && role != TETHER__ROLE_SERVER) {
        return tether__fail(TETHER_EINVAL, "store_memory_open: unknown role %d", (int)role);
    }
    mstore *m = tether__calloc(1, sizeof *m);
    if (!m) {
        return tether__fail(TETHER_ENOMEM, "store_memory_open: out of memory");
    }
    m->base.ops = &memory_ops;
    m->role = role;
    m->budget = -1;
    *out = &m->base;
    return TETHER_OK;
}

void tether__store_memory_fail_after(tether__store *st, long allocs)
{
    if (st && st->ops == &memory_ops) {
        ((mstore *)st)->budget = allocs < 0 ? -1 : allocs;
    }
}

/*
 * Helpers shared by the store suites (store_fixture.h): records, appends,
 * loads, lists and a fingerprint of everything a store holds.
 */
#include "store_fixture.h"

tether__session_rec mkrec(uint8_t tag)
{
    tether__session_rec r;
    memset(&r, 0, sizeof r);
    for (int i = 0; i < 16; i++) {
        r.id[i] = (uint8_t)(tag + i);
    }
    for (int i = 0; i < 32; i++) {
        r.token[i] = (uint8_t)(tag ^ (0x5a + i));
    }
    return r;
}

int rec_eq(const tether__session_rec *a, const tether__session_rec *b)
{
    return memcmp(a->id, b->id, 16) == 0 && memcmp(a->token, b->token, 32) == 0 &&
           a->out_last == b->out_last && a->peer_acked == b->peer_acked &&
           a->recv_cursor == b->recv_cursor && a->established == b->established;
}

tether__session_rec get(tether__store *st, const uint8_t id[16])
{
    tether__session_rec r;
    memset(&r, 0xee, sizeof r);
    CHECK_OK(st->ops->session_get(st, id, &r));
    return r;
}

/* Appends one text message and returns its seq. */
uint64_t app(tether__store *st, const uint8_t id[16], const char *text)
{
    tether_msg m = {text, strlen(text)};
    uint64_t seq = 0;
    CHECK_OK(st->ops->append(st, id, &m, 1, 0, 0, &seq));
    return seq;
}

void check_pending(tether__store *st, const uint8_t id[16], uint64_t count, uint64_t bytes)
{
    uint64_t c = 99999, b = 99999;
    CHECK_OK(st->ops->pending(st, id, &c, &b));
    CHECK_EQ_U64(c, count);
    CHECK_EQ_U64(b, bytes);
}

int on_load(void *arg, uint64_t seq, const void *data, size_t len)
{
    got *g = arg;
    if (!data) {
        g->null_data = 1;
    }
    if (g->n < 64) {
        g->seq[g->n] = seq;
        g->len[g->n] = len;
        size_t k = len < 63 ? len : 63;
        if (data && k) {
            memcpy(g->data[g->n], data, k);
        }
        g->data[g->n][k] = '\0';
    }
    g->n++;
    return g->stop_after && g->n >= g->stop_after;
}

got load(tether__store *st, const uint8_t id[16], uint64_t from, size_t max)
{
    got g;
    memset(&g, 0, sizeof g);
    CHECK_OK(st->ops->load(st, id, from, max, on_load, &g));
    return g;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ b[i]) * 1099511628211ull;
    }
    return h;
}

int on_list(void *arg, const tether__session_rec *r)
{
    idlist *l = arg;
    if (l->n < 512) {
        memcpy(l->id[l->n], r->id, 16);
    }
    l->n++;
    uint64_t v[4] = {r->out_last, r->peer_acked, r->recv_cursor, (uint64_t)r->established};
    l->hash = fnv(l->hash, r->id, 16);
    l->hash = fnv(l->hash, r->token, 32);
    l->hash = fnv(l->hash, v, sizeof v);
    return l->stop_after && l->n >= l->stop_after;
}

idlist *list(tether__store *st)
{
    static idlist l;
    memset(&l, 0, sizeof l);
    l.hash = 14695981039346656037ull;
    CHECK_OK(st->ops->session_list(st, on_list, &l));
    return &l;
}

static int on_hash(void *arg, uint64_t seq, const void *data, size_t len)
{
    uint64_t *h = arg;
    *h = fnv(*h, &seq, sizeof seq);
    *h = fnv(*h, &len, sizeof len);
    *h = fnv(*h, data, len);
    return 0;
}

/* A fingerprint of everything the store holds: records, pending totals, messages. */
uint64_t digest(tether__store *st)
{
    idlist *l = list(st);
    uint64_t h = l->hash;
    size_t n = l->n < 512 ? l->n : 512;
    uint8_t(*ids)[16] = malloc(n * 16 + 1);
    memcpy(ids, l->id, n * 16);
    for (size_t i = 0; i < n; i++) {
        uint64_t c = 0, b = 0;
        CHECK_OK(st->ops->pending(st, ids[i], &c, &b));
        h = fnv(h, &c, sizeof c);
        h = fnv(h, &b, sizeof b);
        CHECK_OK(st->ops->load(st, ids[i], 0, (size_t)-1, on_hash, &h));
    }
    free(ids);
    return h;
}

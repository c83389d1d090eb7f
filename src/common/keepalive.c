/* Ping and hang-up deadlines in two FIFO queues (keepalive.h). */
#include "common/keepalive.h"

static void unlink_node(tether__ka *k, tether__ka_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
    n->q = TETHER__KA_NONE;
    k->count--;
}

static void append(tether__ka *k, tether__ka_node *head, tether__ka_node *n, uint64_t due,
                   uint8_t q)
{
    n->due = due;
    n->q = q;
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
    k->count++;
}

static uint64_t clamp_now(tether__ka *k, uint64_t now)
{
    if (now > k->last) {
        k->last = now;
    }
    return k->last;
}

void tether__ka_init(tether__ka *k, uint32_t ping_ms, uint32_t pong_ms)
{
    k->waiting.prev = k->waiting.next = &k->waiting;
    k->pinged.prev = k->pinged.next = &k->pinged;
    k->waiting.q = k->pinged.q = TETHER__KA_NONE;
    k->ping_ms = ping_ms ? ping_ms : 1; /* 0 would ping again within the same advance */
    k->pong_ms = pong_ms ? pong_ms : 1;
    k->last = 0;
    k->count = 0;
}

void tether__ka_confirm(tether__ka *k, tether__ka_node *n, uint64_t now)
{
    now = clamp_now(k, now);
    if (n->q != TETHER__KA_NONE) {
        unlink_node(k, n);
    }
    append(k, &k->waiting, n, now + k->ping_ms, TETHER__KA_WAITING);
}

void tether__ka_remove(tether__ka *k, tether__ka_node *n)
{
    if (n->q != TETHER__KA_NONE) {
        unlink_node(k, n);
    }
}

size_t tether__ka_advance(tether__ka *k, uint64_t now, void (*ping)(tether__ka_node *n, void *arg),
                          void (*dead)(tether__ka_node *n, void *arg), void *arg)
{
    size_t ran = 0;
    now = clamp_now(k, now);
    /* the heads are read afresh each time: a callback may move or remove any node */
    while (k->pinged.next != &k->pinged && k->pinged.next->due <= now) {
        tether__ka_node *n = k->pinged.next;
        unlink_node(k, n);
        dead(n, arg);
        ran++;
    }
    while (k->waiting.next != &k->waiting && k->waiting.next->due <= now) {
        tether__ka_node *n = k->waiting.next;
        unlink_node(k, n);
        append(k, &k->pinged, n, now + k->pong_ms, TETHER__KA_PINGED);
        ping(n, arg);
        ran++;
    }
    return ran;
}

uint64_t tether__ka_next_due(const tether__ka *k)
{
    uint64_t a = k->waiting.next != &k->waiting ? k->waiting.next->due : UINT64_MAX;
    uint64_t b = k->pinged.next != &k->pinged ? k->pinged.next->due : UINT64_MAX;
    return a < b ? a : b;
}

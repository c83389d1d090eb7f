/* A hashed timer wheel (timerwheel.h). */
#include "timerwheel.h"
#include "common/alloc.h"

#include <stdlib.h>

int tether__tw_init(tether__tw *w, uint32_t tick_ms, size_t nslots, uint64_t now_ms)
{
    size_t n = 1;
    if (tick_ms == 0 || nslots == 0 || nslots > ((size_t)1 << 24)) {
        return -1;
    }
    while (n < nslots) {
        n <<= 1;
    }
    w->slots = tether__calloc(n, sizeof *w->slots);
    if (!w->slots) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        w->slots[i].prev = w->slots[i].next = &w->slots[i];
    }
    w->nslots = n;
    w->tick_ms = tick_ms;
    w->cur = now_ms / tick_ms;
    w->armed = 0;
    return 0;
}

void tether__tw_free(tether__tw *w)
{
    tether__free(w->slots);
    w->slots = NULL;
    w->nslots = 0;
    w->armed = 0;
}

static void unlink_node(tether__tw *w, tether__tw_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
    n->armed = 0;
    w->armed--;
}

void tether__tw_arm(tether__tw *w, tether__tw_node *n, uint64_t due_ms)
{
    if (n->armed) {
        unlink_node(w, n);
    }
    /* the first tick at or after due: every node in a slot being fired is due */
    uint64_t t = due_ms / w->tick_ms + (due_ms % w->tick_ms != 0);
    if (t <= w->cur) {
        t = w->cur + 1; /* already due: the next advance looks at this slot first */
    }
    tether__tw_node *head = &w->slots[t & (w->nslots - 1)];
    n->due = due_ms;
    n->next = head;
    n->prev = head->prev;
    head->prev->next = n;
    head->prev = n;
    n->armed = 1;
    w->armed++;
}

void tether__tw_disarm(tether__tw *w, tether__tw_node *n)
{
    if (n->armed) {
        unlink_node(w, n);
    }
}

/* Fires the due nodes of one slot. The slot's nodes move to a private list
 * first; each is then either fired or put back. fire() may disarm or re-arm
 * any node, including those still on the private list (they are on a valid
 * list either way), and a re-armed node never joins the private list. */
static size_t fire_slot(tether__tw *w, tether__tw_node *head, uint64_t now_ms,
                        void (*fire)(tether__tw_node *, void *), void *arg)
{
    tether__tw_node tmp;
    size_t fired = 0;
    if (head->next == head) {
        return 0;
    }
    tmp.next = head->next;
    tmp.prev = head->prev;
    tmp.next->prev = &tmp;
    tmp.prev->next = &tmp;
    head->next = head->prev = head;
    while (tmp.next != &tmp) {
        tether__tw_node *n = tmp.next;
        tmp.next = n->next;
        n->next->prev = &tmp;
        if (n->due <= now_ms) {
            n->prev = n->next = NULL;
            n->armed = 0;
            w->armed--;
            fire(n, arg);
            fired++;
        } else {
            /* a later turn of the wheel */
            n->next = head;
            n->prev = head->prev;
            head->prev->next = n;
            head->prev = n;
        }
    }
    return fired;
}

size_t tether__tw_advance(tether__tw *w, uint64_t now_ms, void (*fire)(tether__tw_node *, void *),
                          void *arg)
{
    uint64_t target = now_ms / w->tick_ms;
    size_t fired = 0;
    if (target <= w->cur) {
        return 0;
    }
    /* past a whole turn every slot is visited once */
    uint64_t from = target - w->cur > w->nslots ? target - w->nslots + 1 : w->cur + 1;
    for (uint64_t t = from; t <= target; t++) {
        w->cur = t;
        fired += fire_slot(w, &w->slots[t & (w->nslots - 1)], now_ms, fire, arg);
    }
    return fired;
}

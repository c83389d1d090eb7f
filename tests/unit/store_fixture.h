/*
 * Helpers shared by the tests of the store interface (src/store/store.h):
 * store_contract (both implementations), store_sqlite and store_memory.
 */
#ifndef TETHER_TEST_STORE_FIXTURE_H
#define TETHER_TEST_STORE_FIXTURE_H

#include "harness.h"

#include "store/store.h"

/* What load() handed over. */
typedef struct got {
    size_t n;          /* messages received */
    size_t stop_after; /* return non-zero after this many (0: never) */
    uint64_t seq[64];  /* their seqs (the first 64) */
    size_t len[64];    /* their lengths */
    char data[64][64]; /* their payloads, NUL-terminated, cut at 63 bytes */
    int null_data;     /* a callback received data == NULL */
} got;

/* Ids collected by list(). */
typedef struct idlist {
    size_t n;            /* sessions seen */
    size_t stop_after;   /* return non-zero after this many (0: never) */
    uint8_t id[512][16]; /* their ids (the first 512) */
    uint64_t hash;       /* FNV-1a over every record seen */
} idlist;

tether__session_rec mkrec(uint8_t tag);

int rec_eq(const tether__session_rec *a, const tether__session_rec *b);

tether__session_rec get(tether__store *st, const uint8_t id[16]);

/* Appends one text message and returns its seq. */
uint64_t app(tether__store *st, const uint8_t id[16], const char *text);

void check_pending(tether__store *st, const uint8_t id[16], uint64_t count, uint64_t bytes);

int on_load(void *arg, uint64_t seq, const void *data, size_t len);

got load(tether__store *st, const uint8_t id[16], uint64_t from, size_t max);

int on_list(void *arg, const tether__session_rec *r);

idlist *list(tether__store *st);

/* A fingerprint of everything the store holds: records, pending totals, messages. */
uint64_t digest(tether__store *st);

#endif

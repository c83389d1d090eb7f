/*
 * tether's own heap allocations all go through these wrappers (everything in
 * src/ outside src/tools/). Lower layers allocate on their own: msgpack-c
 * (its zones and unpacker), libwebsockets and OpenSSL use the C library
 * directly; SQLite does too unless a test routes it here
 * (store/store_sqlite_alloc.h).
 *
 * The shipped library maps them straight onto the C library (static inline, no
 * state, no cost). The internal build that tests and tools link
 * (tether_internal, TETHER_ALLOC_HOOKS) makes them real functions that count
 * every allocation and can fail one of them on purpose, so that a test can walk
 * every out-of-memory path (tests/unit/alloc_fail_test.c).
 */
#ifndef TETHER_ALLOC_H
#define TETHER_ALLOC_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef TETHER_ALLOC_HOOKS

void *tether__malloc(size_t n);
void *tether__calloc(size_t n, size_t size);
void *tether__realloc(void *p, size_t n);
char *tether__strdup(const char *s);
void tether__free(void *p);

/*
 * Test controls, any thread. Allocations are numbered from 1 across all
 * threads (tether's own, and SQLite's once routed here) from the last
 * tether__alloc_fail_at() call. With k > 0 the k-th fails (returns NULL with
 * errno ENOMEM) and every other one succeeds; k = 0 disarms.
 */
void tether__alloc_fail_at(uint64_t k);
/* Allocations numbered since the last tether__alloc_fail_at(). */
uint64_t tether__alloc_count(void);
/* Allocations failed on purpose since the last tether__alloc_fail_at(). */
uint64_t tether__alloc_failures(void);
/* Takes the next number; 1 when this allocation must fail. For wrappers of
 * other allocators (SQLite's). */
int tether__alloc_should_fail(void);

#else

static inline void *tether__malloc(size_t n)
{
    return malloc(n);
}

static inline void *tether__calloc(size_t n, size_t size)
{
    return calloc(n, size);
}

static inline void *tether__realloc(void *p, size_t n)
{
    return realloc(p, n);
}

static inline char *tether__strdup(const char *s)
{
    return strdup(s);
}

static inline void tether__free(void *p)
{
    free(p);
}

#endif

#endif

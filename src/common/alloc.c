/* The counting allocator of the internal build (see alloc.h). Compiled into
 * tether_internal only, with TETHER_ALLOC_HOOKS. */
#include "alloc.h"

#include <errno.h>
#include <execinfo.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

static atomic_uint_fast64_t numbered; /* allocations numbered since arming */
static atomic_uint_fast64_t fail_k;   /* the number that fails; 0: none */
static atomic_uint_fast64_t failed;   /* allocations failed on purpose */

void tether__alloc_fail_at(uint64_t k)
{
    atomic_store(&fail_k, 0);
    atomic_store(&numbered, 0);
    atomic_store(&failed, 0);
    atomic_store(&fail_k, k);
}

uint64_t tether__alloc_count(void)
{
    return atomic_load(&numbered);
}

uint64_t tether__alloc_failures(void)
{
    return atomic_load(&failed);
}

int tether__alloc_should_fail(void)
{
    uint64_t n = atomic_fetch_add(&numbered, 1) + 1;
    uint64_t k = atomic_load(&fail_k);
    if (k != 0 && n == k) {
        atomic_fetch_add(&failed, 1);
        if (getenv("TETHER_ALLOC_FAIL_TRACE")) {
            /* where the injected failure hit, on stderr (replaying one k) */
            void *frames[32];
            int depth = backtrace(frames, 32);
            backtrace_symbols_fd(frames, depth, STDERR_FILENO);
        }
        errno = ENOMEM;
        return 1;
    }
    return 0;
}

void *tether__malloc(size_t n)
{
    return tether__alloc_should_fail() ? NULL : malloc(n);
}

void *tether__calloc(size_t n, size_t size)
{
    return tether__alloc_should_fail() ? NULL : calloc(n, size);
}

void *tether__realloc(void *p, size_t n)
{
    return tether__alloc_should_fail() ? NULL : realloc(p, n);
}

char *tether__strdup(const char *s)
{
    return tether__alloc_should_fail() ? NULL : strdup(s);
}

void tether__free(void *p)
{
    free(p);
}

/*
 * Kill points: named places in the library where a test can make the process
 * die at once, deterministically, instead of hoping a SIGKILL from outside
 * lands there by timing luck.
 *
 *   TETHER_KILLPOINT=client.after_outbox_commit      dies at the first hit
 *   TETHER_KILLPOINT=server.after_deliver:25         dies at the 25th hit
 *
 * The variable is read once, at the first kill point the process reaches.
 * When it is unset every later hit costs one relaxed atomic load and a branch.
 * A hit on the named point, on its n-th occurrence, writes one line to stderr
 * ("tether: kill point NAME hit N times: SIGKILL") and raises SIGKILL, so
 * nothing after it runs: no destructor, no flush, no atexit handler.
 *
 * Every name the library uses is listed in docs/chaos.md (section "Kill
 * points"); tether__killpoint_names() returns them for tools.
 */
#ifndef TETHER_KILLPOINT_H
#define TETHER_KILLPOINT_H

/*
 * Kill points exist only in builds made with TETHER_KILLPOINTS (the library
 * the tools and tests link); in the installed library the macros below
 * compile to nothing, so it holds neither the names nor the code.
 */
#ifdef TETHER_KILLPOINTS
#include <stdatomic.h>

/* 0 = not read yet, 1 = armed, -1 = off for the life of the process. */
extern atomic_int tether__killpoint_state;

/* Slow path of TETHER__KILLPOINT: reads the environment once, counts, dies. */
void tether__killpoint_hit(const char *name);

/* The names of every kill point in the library, NULL-terminated. */
const char *const *tether__killpoint_names(void);

#define TETHER__KILLPOINT(name)                                                                    \
    do {                                                                                           \
        if (atomic_load_explicit(&tether__killpoint_state, memory_order_relaxed) >= 0) {           \
            tether__killpoint_hit(name);                                                           \
        }                                                                                          \
    } while (0)

#else
#define TETHER__KILLPOINT(name) ((void)0)
#endif

/* The same, named "client.<what>" or "server.<what>" after a tether__store_role
 * (1 client, 2 server), for code the two sides share. */
#define TETHER__KILLPOINT_ROLE(role, what)                                                         \
    TETHER__KILLPOINT((role) == 1 ? "client." what : "server." what)

#endif

/*
 * Kill points (see killpoint.h): TETHER_KILLPOINT=name[:n] makes the n-th hit
 * of the named point (default the first) kill the process with SIGKILL.
 */
#include "killpoint.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

atomic_int tether__killpoint_state = 0;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char target[128];       /* the armed point's name */
static unsigned long target_n; /* the hit that kills, >= 1 */
static atomic_ulong hits;      /* hits of the armed point so far */

static const char *const names[] = {
    "client.after_outbox_commit", /* send: the batch is committed, nothing written yet */
    "server.after_outbox_commit",
    "client.ack_before_prune", /* an ACK (or the peer's cursor) arrived, the outbox not pruned */
    "server.ack_before_prune",
    "client.ack_after_prune", /* the outbox is pruned, the application not told */
    "server.ack_after_prune",
    "client.after_deliver", /* on_message returned, the receive cursor not committed */
    "server.after_deliver",
    "client.after_cursor_commit", /* the cursor is committed, the ACK not written */
    "server.after_cursor_commit",
    "client.before_established", /* first WELCOME handled, `established` not yet stored */
    "server.before_established",
    "server.after_session_create", /* a new session is stored, WELCOME not yet queued */
    NULL,
};

const char *const *tether__killpoint_names(void)
{
    return names;
}

static void init(void)
{
    const char *v = getenv("TETHER_KILLPOINT");
    if (v == NULL || *v == '\0') {
        atomic_store(&tether__killpoint_state, -1);
        return;
    }
    const char *colon = strrchr(v, ':');
    size_t len = colon ? (size_t)(colon - v) : strlen(v);
    unsigned long n = 1;
    if (colon) {
        char *end = NULL;
        n = strtoul(colon + 1, &end, 10);
        if (end == colon + 1 || *end != '\0' || n == 0) {
            n = 0;
        }
    }
    if (len == 0 || len >= sizeof target || n == 0) {
        fprintf(stderr,
                "tether: ignoring malformed TETHER_KILLPOINT='%s' (want name[:n], n >= 1)\n", v);
        atomic_store(&tether__killpoint_state, -1);
        return;
    }
    memcpy(target, v, len);
    target[len] = '\0';
    target_n = n;
    atomic_store(&tether__killpoint_state, 1);
}

void tether__killpoint_hit(const char *name)
{
    pthread_once(&once, init);
    if (atomic_load(&tether__killpoint_state) <= 0 || strcmp(name, target) != 0) {
        return;
    }
    unsigned long n = atomic_fetch_add(&hits, 1) + 1;
    if (n != target_n) {
        return;
    }
    char line[256];
    int len =
        snprintf(line, sizeof line, "tether: kill point %s hit %lu times: SIGKILL\n", name, n);
    if (len > 0) {
        (void)!write(2, line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
    }
    raise(SIGKILL);
    _exit(137); /* not reached */
}

/*
 * The log of client state reports (statelog.h).
 */
#include "statelog.h"

#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "itest.h"

#define SLOG_MAX 512

static pthread_mutex_t slog_mu = PTHREAD_MUTEX_INITIALIZER; /* guards the three below */
static slog_ent slog[SLOG_MAX];                             /* the reports, in order */
static unsigned slog_n;                                     /* reports made (at most SLOG_MAX kept) */
/* the configuration's own on_state, called after ours */
static void (*slog_next)(tether_client *, const tether_state_info *, void *);

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void slog_state(tether_client *c, const tether_state_info *in, void *user)
{
    pthread_mutex_lock(&slog_mu);
    if (slog_n < SLOG_MAX) {
        slog_ent *e = &slog[slog_n++];
        e->state = in->state;
        e->error = in->error;
        e->http = in->http_status;
        e->proxy = in->proxy_status;
        e->reject = in->reject_code;
        e->retry_in = in->retry_in_ms;
        e->retry_after = in->retry_after_ms;
        e->at_ms = now_ms();
        snprintf(e->detail, sizeof e->detail, "%s", in->detail ? in->detail : "(null)");
    }
    pthread_mutex_unlock(&slog_mu);
    if (slog_next) {
        slog_next(c, in, user);
    }
}

void slog_attach(tether_client_config *cfg)
{
    slog_next = cfg->cb.on_state;
    cfg->cb.on_state = slog_state;
    slog_reset();
}

void slog_reset(void)
{
    pthread_mutex_lock(&slog_mu);
    slog_n = 0;
    pthread_mutex_unlock(&slog_mu);
}

int slog_find(int state, int error, unsigned nth)
{
    int found = -1;
    pthread_mutex_lock(&slog_mu);
    for (unsigned i = 0; i < slog_n; i++) {
        if (slog[i].state == state && (error == ANY || slog[i].error == error)) {
            if (nth == 0) {
                found = (int)i;
                break;
            }
            nth--;
        }
    }
    pthread_mutex_unlock(&slog_mu);
    return found;
}

int slog_get(int state, unsigned nth, slog_ent *out)
{
    int i = slog_find(state, ANY, nth);
    if (i < 0) {
        return 0;
    }
    pthread_mutex_lock(&slog_mu);
    *out = slog[i];
    pthread_mutex_unlock(&slog_mu);
    return 1;
}

unsigned slog_count(int state, int error)
{
    unsigned n = 0;
    pthread_mutex_lock(&slog_mu);
    for (unsigned i = 0; i < slog_n; i++) {
        n += slog[i].state == state && (error == ANY || slog[i].error == error);
    }
    pthread_mutex_unlock(&slog_mu);
    return n;
}

typedef struct slog_wanted {
    int state;      /* state to count */
    int error;      /* its error, or ANY */
    unsigned count; /* how many are needed */
} slog_wanted;

static int slog_reached(void *arg)
{
    slog_wanted *w = arg;
    return slog_count(w->state, w->error) >= w->count;
}

int slog_wait(int state, int error, unsigned count, unsigned timeout_ms)
{
    slog_wanted w = {state, error, count};
    return wait_until(slog_reached, &w, timeout_ms);
}

/* Entry i read under the lock (a zeroed one with INT_MIN fields when i < 0). */
static slog_ent slog_at_index(int i)
{
    slog_ent e = {.state = 0, .error = INT_MIN, .http = INT_MIN, .reject = INT_MIN};
    pthread_mutex_lock(&slog_mu);
    if (i >= 0) {
        e = slog[i];
    }
    pthread_mutex_unlock(&slog_mu);
    return e;
}

int slog_error(int i)
{
    return slog_at_index(i).error;
}

int slog_http(int i)
{
    return slog_at_index(i).http;
}

int slog_reject(int i)
{
    return slog_at_index(i).reject;
}

uint64_t slog_at(int i)
{
    return slog_at_index(i).at_ms;
}

int slog_next_state(int i)
{
    pthread_mutex_lock(&slog_mu);
    int v = i >= 0 && (unsigned)i + 1 < slog_n ? slog[i + 1].state : 0;
    pthread_mutex_unlock(&slog_mu);
    return v;
}

void slog_dump(const char *why)
{
    pthread_mutex_lock(&slog_mu);
    fprintf(stderr, "  client states (%s):\n", why);
    for (unsigned i = 0; i < slog_n && i < SLOG_MAX; i++) {
        fprintf(stderr, "    +%4llu ms state %d %-20s http %3d proxy %3d reject %d: %s\n",
                (unsigned long long)(slog[i].at_ms - slog[0].at_ms), slog[i].state,
                tether_err_name(slog[i].error), slog[i].http, slog[i].proxy, slog[i].reject,
                slog[i].detail);
    }
    pthread_mutex_unlock(&slog_mu);
}

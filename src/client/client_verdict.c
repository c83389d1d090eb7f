/*
 * The fallback verdict kept in the client's store (store.h, verdict_get and
 * verdict_put): a client that fell back to the HTTP carriage remembers it per
 * server url and proxy, so that a restart behind the same proxy starts on
 * HTTP at once instead of failing WebSocket first, until the memory expires
 * (docs/decisions.md, "The remembered fallback verdict"). With several urls
 * each has its own verdict and carriage choice. The store keeps the
 * wall clock (a restart loses the monotonic one); the carriage choice
 * (engine/fallback.c) keeps the monotonic clock.
 *
 * A verdict is an optimisation: a store that cannot read or write it costs at
 * most one failed WebSocket attempt, so its failures never stop the client;
 * the last one is kept in c->verdict_err and told once, in the detail of the
 * next CONNECTING report (client_conn.c).
 */
#include "client_int.h"

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void tether__client_verdict_key(const tether_client *c, const char *url, char *buf, size_t len)
{
    if (c->proxy.host[0]) {
        snprintf(buf, len, "%s|proxy=%s:%d", url, c->proxy.host, c->proxy.port);
    } else {
        snprintf(buf, len, "%s|proxy=", url);
    }
}

void tether__client_verdict_load(tether_client *c)
{
    char key[TETHER__VERDICT_KEY_MAX + 1];
    tether__verdict v;
    if (c->cfg.transport != TETHER_TRANSPORT_AUTO) {
        return;
    }
    tether__client_verdict_key(c, c->url, key, sizeof key);
    int rc = c->store->ops->verdict_get(c->store, key, &v);
    if (rc == TETHER_OK) {
        uint64_t now = wall_ms();
        if (v.until_ms > now) {
            c->verdict_restored =
                tether__fb_restore(&c->fb, tether__now_ms(), v.until_ms - now, v.probes_failed);
        } else if (c->store->ops->verdict_put(c->store, key, NULL) != TETHER_OK) {
            /* expired: forgotten; a store that cannot forget it is only told */
            snprintf(c->verdict_err, sizeof c->verdict_err,
                     "cannot forget the expired fallback verdict: %s",
                     c->store->ops->errmsg(c->store));
        }
    } else if (rc != TETHER_ENOTFOUND) {
        snprintf(c->verdict_err, sizeof c->verdict_err, "cannot read the fallback verdict: %s",
                 c->store->ops->errmsg(c->store));
    }
    c->verdict_seen = c->fb.changes;
}

void tether__client_verdict_save_locked(tether_client *c)
{
    char key[TETHER__VERDICT_KEY_MAX + 1];
    if (c->fb.changes == c->verdict_seen || c->cfg.transport != TETHER_TRANSPORT_AUTO) {
        return;
    }
    c->verdict_seen = c->fb.changes;
    tether__client_verdict_key(c, c->url, key, sizeof key);
    int rc;
    if (tether__fb_keep(&c->fb)) {
        uint64_t now = tether__now_ms();
        tether__verdict v = {wall_ms() + (c->fb.http_until > now ? c->fb.http_until - now : 0),
                             c->fb.probes_failed};
        rc = c->store->ops->verdict_put(c->store, key, &v);
    } else {
        rc = c->store->ops->verdict_put(c->store, key, NULL);
    }
    if (rc != TETHER_OK) {
        snprintf(c->verdict_err, sizeof c->verdict_err, "cannot store the fallback verdict: %s",
                 c->store->ops->errmsg(c->store));
    }
}

void tether__client_next_url_locked(tether_client *c)
{
    if (c->nurls < 2) {
        return;
    }
    c->fb_other[c->url_idx] = c->fb;
    c->fb_seen[c->url_idx] = 1;
    c->url_idx = (c->url_idx + 1) % c->nurls;
    c->url = c->url_list[c->url_idx];
    if (c->fb_seen[c->url_idx]) {
        c->fb = c->fb_other[c->url_idx];
        c->verdict_seen = c->fb.changes;
        return;
    }
    /* first visit: WebSocket or what the store remembers for this url */
    tether__fb_init(&c->fb, c->cfg.transport, c->cfg.fallback_memory_ms);
    tether__client_verdict_load(c);
}

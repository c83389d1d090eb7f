/* Choosing the carriage: WebSocket or HTTP (fallback.h). */
#include "fallback.h"

#include <stdio.h>
#include <string.h>

#include <tether/tether.h>

#define FB_MEMORY_MAX_FACTOR 12u /* a failed probe doubles the wait up to this many times memory   \
                                  */

void tether__fb_init(tether__fb *f, int mode, uint32_t memory_ms)
{
    memset(f, 0, sizeof *f);
    f->mode = mode;
    f->memory_ms = memory_ms ? memory_ms : 1;
    f->http = mode == TETHER_TRANSPORT_HTTP;
}

int tether__fb_restore(tether__fb *f, uint64_t now_ms, uint64_t remaining_ms,
                       uint32_t probes_failed)
{
    if (f->mode != TETHER_TRANSPORT_AUTO || remaining_ms == 0) {
        return 0;
    }
    uint64_t most = (uint64_t)f->memory_ms * FB_MEMORY_MAX_FACTOR;
    f->http = 1;
    f->probing = 0;
    f->auth_try = 0;
    f->probes_failed = probes_failed;
    f->http_until = now_ms + (remaining_ms < most ? remaining_ms : most);
    snprintf(f->why, sizeof f->why,
             "starting on the HTTP carriage: an earlier run found WebSocket blocked on this path "
             "(%u failed probe(s) since); WebSocket is probed again in %llu ms",
             probes_failed, (unsigned long long)(f->http_until - now_ms));
    return 1;
}

int tether__fb_keep(const tether__fb *f)
{
    return f->mode == TETHER_TRANSPORT_AUTO && f->http && !f->auth_try;
}

const char *tether__fb_name(int http)
{
    return http ? "http" : "websocket";
}

int tether__fb_before_attempt(tether__fb *f, uint64_t now_ms)
{
    if (f->mode != TETHER_TRANSPORT_AUTO || !f->http || f->auth_try || now_ms < f->http_until) {
        return 0;
    }
    f->http = 0;
    f->probing = 1;
    snprintf(f->why, sizeof f->why,
             "probing WebSocket again after %u failed probe(s): the HTTP fallback's time is up",
             f->probes_failed);
    return 1;
}

void tether__fb_welcomed(tether__fb *f)
{
    if (f->http) {
        f->auth_try = 0; /* HTTP passes where the upgrade was refused: keep it */
        return;
    }
    if (f->probing) {
        f->probing = 0;
        f->probes_failed = 0;
        f->changes++; /* WebSocket passes again: nothing to remember */
    }
}

/* A WebSocket failure that points at the path, not the server; its reason or NULL. */
static const char *path_blocks_ws(const tether__fb_event *ev)
{
    if (ev->welcomed) {
        return NULL;
    }
    switch (ev->error) {
    case TETHER_ESTALLED:
        return "the WebSocket opened but no WELCOME came through";
    case TETHER_EHTTP:
        return ev->http_status == 426 ? "the upgrade was answered 426 (a proxy strips Upgrade)"
                                      : NULL;
    case TETHER_EHANDSHAKE:
        return ev->http_status == 101 ? "a 101 without a valid Upgrade (a proxy mangles it)" : NULL;
    case TETHER_EPROXY:
        return ev->proxy_status == 403 && !ev->tls
                   ? "the proxy refuses CONNECT (403); the http:// carriage needs none"
                   : NULL;
    default:
        return NULL;
    }
}

static void to_http(tether__fb *f, uint64_t now_ms, uint32_t factor, const char *why)
{
    f->http = 1;
    f->probing = 0;
    f->early_deaths = 0;
    f->http_until = now_ms + (uint64_t)f->memory_ms * factor;
    f->changes++;
    snprintf(f->why, sizeof f->why, "falling back to the HTTP carriage: %s", why);
}

/* A probe failed: HTTP again for memory_ms times 2^probes_failed, at most 12 times. */
static void probe_failed(tether__fb *f, uint64_t now_ms, const char *why)
{
    uint32_t factor = 1;
    f->probes_failed++;
    for (uint32_t i = 0; i < f->probes_failed && factor < FB_MEMORY_MAX_FACTOR; i++) {
        factor *= 2;
    }
    factor = factor > FB_MEMORY_MAX_FACTOR ? FB_MEMORY_MAX_FACTOR : factor;
    uint32_t failed = f->probes_failed;
    to_http(f, now_ms, factor, why);
    f->probes_failed = failed;
}

int tether__fb_probe_due(const tether__fb *f, uint64_t now_ms)
{
    return f->mode == TETHER_TRANSPORT_AUTO && f->http && !f->auth_try && now_ms >= f->http_until;
}

void tether__fb_probe_won(tether__fb *f)
{
    f->http = 0;
    f->probing = 0;
    f->early_deaths = 0;
    snprintf(f->why, sizeof f->why,
             "back to WebSocket: a probe beside the HTTP carriage got its WELCOME after %u "
             "failed probe(s)",
             f->probes_failed);
    f->probes_failed = 0;
    f->changes++;
}

void tether__fb_probe_lost(tether__fb *f, uint64_t now_ms, const char *why)
{
    probe_failed(f, now_ms, "the background WebSocket probe failed");
    snprintf(f->why, sizeof f->why,
             "staying on the HTTP carriage: the WebSocket probe failed (%.70s); the next in %llu ms",
             why ? why : "", (unsigned long long)(f->http_until - now_ms));
}

int tether__fb_after_close(tether__fb *f, const tether__fb_event *ev, uint64_t now_ms)
{
    if (f->mode != TETHER_TRANSPORT_AUTO) {
        return TETHER__FB_SAME;
    }
    if (f->http) {
        if (f->auth_try && !ev->welcomed) {
            /* refused on HTTP too (or HTTP failed): the refusal stands */
            f->auth_try = 0;
            f->http = 0;
            snprintf(f->why, sizeof f->why,
                     "the upgrade was refused (401/403) and the HTTP carriage did not pass "
                     "either: back to WebSocket");
            return TETHER__FB_PERMANENT;
        }
        return TETHER__FB_SAME;
    }
    if (!ev->welcomed && (ev->error == TETHER_EHTTP) &&
        (ev->http_status == 401 || ev->http_status == 403) && !f->probing) {
        to_http(f, now_ms, 1, "the upgrade was refused with 401/403: trying the HTTP open once");
        f->auth_try = 1;
        return TETHER__FB_SWITCHED;
    }
    if (f->probing && !ev->welcomed) {
        probe_failed(f, now_ms, "the WebSocket probe did not reach WELCOME");
        return TETHER__FB_SWITCHED;
    }
    const char *why = path_blocks_ws(ev);
    if (why) {
        to_http(f, now_ms, 1, why);
        return TETHER__FB_SWITCHED;
    }
    if (ev->welcomed && !ev->acked && ev->error == TETHER_EPING) {
        if (++f->early_deaths >= 2) {
            to_http(f, now_ms, 1,
                    "two WebSocket connections in a row went silent before any ACK came back");
            return TETHER__FB_SWITCHED;
        }
    } else if (ev->welcomed && ev->acked) {
        f->early_deaths = 0;
    }
    return TETHER__FB_SAME;
}

/* Choosing the carriage (engine/fallback.h): every rule with made-up events
 * and a made-up clock, so the documented behaviour (docs/connectivity.md,
 * "HTTP fallback") and the code cannot drift. */
#include <string.h>

#include "harness.h"

#include <tether/tether.h>

#include "engine/fallback.h"

#define MEM 1000u /* fallback_memory_ms in these tests */

static tether__fb_event ev(int error, int http, int proxy, int welcomed, int acked)
{
    tether__fb_event e = {error, http, proxy, welcomed, acked, 0};
    return e;
}

/* Feeds one failed WebSocket attempt to a fresh AUTO chooser; returns the action. */
static int one(tether__fb *f, tether__fb_event e)
{
    tether__fb_init(f, TETHER_TRANSPORT_AUTO, MEM);
    CHECK_EQ_INT(tether__fb_before_attempt(f, 0), 0);
    CHECK_EQ_INT(f->http, 0);
    return tether__fb_after_close(f, &e, 100);
}

TEST(path_failures_fall_back_at_once)
{
    tether__fb f;
    CHECK_EQ_INT(one(&f, ev(TETHER_ESTALLED, 0, 0, 0, 0)), TETHER__FB_SWITCHED);
    CHECK_EQ_INT(f.http, 1);
    CHECK(strstr(f.why, "falling back") != NULL);
    CHECK_EQ_U64(f.http_until, 100 + MEM);
    CHECK_EQ_INT(one(&f, ev(TETHER_EHTTP, 426, 0, 0, 0)), TETHER__FB_SWITCHED);
    CHECK_EQ_INT(one(&f, ev(TETHER_EHANDSHAKE, 101, 0, 0, 0)), TETHER__FB_SWITCHED);
    CHECK_EQ_INT(one(&f, ev(TETHER_EPROXY, 0, 403, 0, 0)), TETHER__FB_SWITCHED);
}

TEST(failures_http_would_meet_too_do_not_fall_back)
{
    tether__fb f;
    CHECK_EQ_INT(one(&f, ev(TETHER_EDNS, 0, 0, 0, 0)), TETHER__FB_SAME);
    CHECK_EQ_INT(one(&f, ev(TETHER_ECONNREFUSED, 0, 0, 0, 0)), TETHER__FB_SAME);
    CHECK_EQ_INT(one(&f, ev(TETHER_ETLS, 0, 0, 0, 0)), TETHER__FB_SAME);
    CHECK_EQ_INT(one(&f, ev(TETHER_EHTTP, 503, 0, 0, 0)), TETHER__FB_SAME);
    CHECK_EQ_INT(one(&f, ev(TETHER_EHANDSHAKE, 200, 0, 0, 0)), TETHER__FB_SAME);
    CHECK_EQ_INT(one(&f, ev(TETHER_EPROXY_AUTH, 0, 407, 0, 0)), TETHER__FB_SAME);
    CHECK_EQ_INT(one(&f, ev(TETHER_ETOKEN, 0, 0, 0, 0)), TETHER__FB_SAME);
    CHECK_EQ_INT(f.http, 0);
}

TEST(proxy_403_falls_back_only_for_ws_urls)
{
    tether__fb f;
    tether__fb_event e = ev(TETHER_EPROXY, 0, 403, 0, 0);
    e.tls = 1; /* https:// needs CONNECT too */
    CHECK_EQ_INT(one(&f, e), TETHER__FB_SAME);
}

TEST(stalled_after_welcome_twice_falls_back)
{
    tether__fb f;
    tether__fb_event dead = ev(TETHER_EPING, 0, 0, 1, 0);
    tether__fb_init(&f, TETHER_TRANSPORT_AUTO, MEM);
    CHECK_EQ_INT(tether__fb_after_close(&f, &dead, 10), TETHER__FB_SAME);
    CHECK_EQ_INT(tether__fb_after_close(&f, &dead, 20), TETHER__FB_SWITCHED);
    CHECK_EQ_INT(f.http, 1);
    /* an ACK round trip in between resets the count */
    tether__fb_event healthy = ev(TETHER_EPING, 0, 0, 1, 1);
    tether__fb_init(&f, TETHER_TRANSPORT_AUTO, MEM);
    CHECK_EQ_INT(tether__fb_after_close(&f, &dead, 10), TETHER__FB_SAME);
    CHECK_EQ_INT(tether__fb_after_close(&f, &healthy, 20), TETHER__FB_SAME);
    CHECK_EQ_INT(tether__fb_after_close(&f, &dead, 30), TETHER__FB_SAME);
    CHECK_EQ_INT(f.http, 0);
}

TEST(auth_refusal_tries_http_once)
{
    tether__fb f;
    tether__fb_event refused = ev(TETHER_EHTTP, 401, 0, 0, 0);
    CHECK_EQ_INT(one(&f, refused), TETHER__FB_SWITCHED);
    CHECK_EQ_INT(f.auth_try, 1);
    /* refused over HTTP too: permanent, back on WebSocket */
    tether__fb_event refused_http = ev(TETHER_EHTTP, 403, 0, 0, 0);
    CHECK_EQ_INT(tether__fb_after_close(&f, &refused_http, 200), TETHER__FB_PERMANENT);
    CHECK_EQ_INT(f.http, 0);
    /* welcomed over HTTP: it stays there, the verdict is remembered */
    CHECK_EQ_INT(one(&f, ev(TETHER_EHTTP, 403, 0, 0, 0)), TETHER__FB_SWITCHED);
    tether__fb_welcomed(&f);
    CHECK_EQ_INT(f.auth_try, 0);
    tether__fb_event lost = ev(TETHER_EPEER_CLOSED, 0, 0, 1, 1);
    CHECK_EQ_INT(tether__fb_after_close(&f, &lost, 300), TETHER__FB_SAME);
    CHECK_EQ_INT(f.http, 1);
}

TEST(verdict_expires_then_websocket_is_probed_and_wins_only_with_welcome)
{
    tether__fb f;
    CHECK_EQ_INT(one(&f, ev(TETHER_ESTALLED, 0, 0, 0, 0)), TETHER__FB_SWITCHED);
    /* before the verdict expires, attempts stay on HTTP */
    CHECK_EQ_INT(tether__fb_before_attempt(&f, 100 + MEM - 1), 0);
    CHECK_EQ_INT(f.http, 1);
    /* then the next attempt probes WebSocket */
    CHECK_EQ_INT(tether__fb_before_attempt(&f, 100 + MEM), 1);
    CHECK_EQ_INT(f.http, 0);
    CHECK(strstr(f.why, "probing WebSocket") != NULL);
    /* the probe fails: HTTP again, for twice as long */
    tether__fb_event failed = ev(TETHER_ECONNREFUSED, 0, 0, 0, 0);
    uint64_t t = 100 + MEM;
    CHECK_EQ_INT(tether__fb_after_close(&f, &failed, t), TETHER__FB_SWITCHED);
    CHECK_EQ_INT(f.http, 1);
    CHECK_EQ_U64(f.http_until, t + 2 * MEM);
    /* each failed probe doubles, up to 12 times the memory */
    for (int i = 0; i < 6; i++) {
        CHECK_EQ_INT(tether__fb_before_attempt(&f, f.http_until), 1);
        t = f.http_until;
        CHECK_EQ_INT(tether__fb_after_close(&f, &failed, t), TETHER__FB_SWITCHED);
    }
    CHECK_EQ_U64(f.http_until, t + 12 * MEM);
    /* a probe welcomed: WebSocket again, counts reset */
    CHECK_EQ_INT(tether__fb_before_attempt(&f, f.http_until), 1);
    tether__fb_welcomed(&f);
    CHECK_EQ_INT(f.http, 0);
    CHECK_EQ_INT(f.probing, 0);
    CHECK_EQ_INT(f.probes_failed, 0);
}

/* A verdict from the store: AUTO starts on HTTP, capped at 12 times the
 * memory; other modes ignore it; what to keep follows the changes. */
TEST(restored_verdict_starts_on_http_until_it_expires)
{
    tether__fb f;
    tether__fb_init(&f, TETHER_TRANSPORT_AUTO, MEM);
    CHECK_EQ_INT(tether__fb_keep(&f), 0);
    CHECK_EQ_INT(tether__fb_restore(&f, 5000, 0, 0), 0); /* nothing left */
    CHECK_EQ_INT(f.http, 0);
    CHECK_EQ_INT(tether__fb_restore(&f, 5000, 2500, 1), 1);
    CHECK_EQ_INT(f.http, 1);
    CHECK_EQ_U64(f.http_until, 7500);
    CHECK_EQ_INT(f.probes_failed, 1);
    CHECK(strstr(f.why, "earlier run") != NULL);
    CHECK_EQ_INT(tether__fb_keep(&f), 1);
    CHECK_EQ_INT(tether__fb_before_attempt(&f, 7499), 0);
    uint32_t ch = f.changes;
    CHECK_EQ_INT(tether__fb_before_attempt(&f, 7500), 1); /* the probe */
    CHECK_EQ_INT(f.http, 0);
    tether__fb_event fail = ev(TETHER_ESTALLED, 0, 0, 0, 0);
    CHECK_EQ_INT(tether__fb_after_close(&f, &fail, 8000), TETHER__FB_SWITCHED);
    CHECK(f.changes != ch); /* a failed probe extends the verdict: to be stored */
    CHECK_EQ_INT(f.probes_failed, 2);
    CHECK_EQ_U64(f.http_until, 8000 + 4 * MEM);
    CHECK_EQ_INT(tether__fb_keep(&f), 1);
    ch = f.changes;
    CHECK_EQ_INT(tether__fb_before_attempt(&f, 8000 + 4 * MEM), 1);
    tether__fb_welcomed(&f);
    CHECK(f.changes != ch); /* WebSocket passes: nothing to keep */
    CHECK_EQ_INT(tether__fb_keep(&f), 0);

    /* capped at 12 times the memory */
    tether__fb_init(&f, TETHER_TRANSPORT_AUTO, MEM);
    CHECK_EQ_INT(tether__fb_restore(&f, 0, 1000000, 9), 1);
    CHECK_EQ_U64(f.http_until, 12 * MEM);
    /* fixed modes ignore it */
    tether__fb_init(&f, TETHER_TRANSPORT_WEBSOCKET, MEM);
    CHECK_EQ_INT(tether__fb_restore(&f, 0, 500, 0), 0);
    CHECK_EQ_INT(f.http, 0);
    CHECK_EQ_INT(tether__fb_keep(&f), 0);
    tether__fb_init(&f, TETHER_TRANSPORT_HTTP, MEM);
    CHECK_EQ_INT(tether__fb_restore(&f, 0, 500, 0), 0);
    CHECK_EQ_INT(tether__fb_keep(&f), 0);
    /* the one HTTP try after a 401 is not a verdict to keep */
    tether__fb_init(&f, TETHER_TRANSPORT_AUTO, MEM);
    tether__fb_event auth = ev(TETHER_EHTTP, 401, 0, 0, 0);
    CHECK_EQ_INT(tether__fb_after_close(&f, &auth, 0), TETHER__FB_SWITCHED);
    CHECK_EQ_INT(tether__fb_keep(&f), 0);
}

/* The background probe's schedule (fake clock): due when the verdict's time
 * is up; a failed one waits 2, 4, 8, then 12 times the memory; a won one
 * returns to WebSocket and leaves nothing to keep. */
TEST(background_probe_schedule_backs_off_and_wins)
{
    tether__fb f;
    tether__fb_init(&f, TETHER_TRANSPORT_AUTO, MEM);
    CHECK_EQ_INT(tether__fb_probe_due(&f, 1000000), 0); /* on WebSocket: nothing to probe */
    tether__fb_event stall = ev(TETHER_ESTALLED, 0, 0, 0, 0);
    CHECK_EQ_INT(tether__fb_after_close(&f, &stall, 0), TETHER__FB_SWITCHED);
    CHECK_EQ_INT(tether__fb_probe_due(&f, MEM - 1), 0);
    CHECK_EQ_INT(tether__fb_probe_due(&f, MEM), 1);
    static const uint32_t factor[] = {2, 4, 8, 12, 12};
    uint64_t now = MEM;
    for (size_t i = 0; i < sizeof factor / sizeof factor[0]; i++) {
        uint32_t ch = f.changes;
        tether__fb_probe_lost(&f, now, "no WELCOME");
        CHECK(f.changes != ch);
        CHECK_EQ_INT(f.http, 1);
        CHECK_EQ_INT(f.probes_failed, (int)i + 1);
        CHECK_EQ_U64(f.http_until, now + (uint64_t)factor[i] * MEM);
        CHECK(strstr(f.why, "staying on the HTTP carriage") != NULL);
        CHECK(strstr(f.why, "no WELCOME") != NULL);
        CHECK_EQ_INT(tether__fb_keep(&f), 1);
        CHECK_EQ_INT(tether__fb_probe_due(&f, f.http_until - 1), 0);
        now = f.http_until;
        CHECK_EQ_INT(tether__fb_probe_due(&f, now), 1);
    }
    uint32_t ch = f.changes;
    tether__fb_probe_won(&f);
    CHECK(f.changes != ch);
    CHECK_EQ_INT(f.http, 0);
    CHECK_EQ_INT(f.probes_failed, 0);
    CHECK(strncmp(f.why, "back to WebSocket", 17) == 0);
    CHECK_EQ_INT(tether__fb_keep(&f), 0);
    CHECK_EQ_INT(tether__fb_probe_due(&f, now + 100000), 0);
    /* fixed modes never probe */
    tether__fb_init(&f, TETHER_TRANSPORT_HTTP, MEM);
    CHECK_EQ_INT(tether__fb_probe_due(&f, 1000000), 0);
}

TEST(fixed_modes_never_switch)
{
    tether__fb f;
    tether__fb_event stalled = ev(TETHER_ESTALLED, 0, 0, 0, 0);
    tether__fb_init(&f, TETHER_TRANSPORT_WEBSOCKET, MEM);
    CHECK_EQ_INT(tether__fb_after_close(&f, &stalled, 1), TETHER__FB_SAME);
    CHECK_EQ_INT(f.http, 0);
    tether__fb_init(&f, TETHER_TRANSPORT_HTTP, MEM);
    CHECK_EQ_INT(f.http, 1);
    CHECK_EQ_INT(tether__fb_before_attempt(&f, UINT64_MAX), 0);
    CHECK_EQ_INT(tether__fb_after_close(&f, &stalled, 1), TETHER__FB_SAME);
    CHECK_EQ_INT(f.http, 1);
    CHECK_EQ_STR(tether__fb_name(1), "http");
    CHECK_EQ_STR(tether__fb_name(0), "websocket");
}

int main(void)
{
    RUN(path_failures_fall_back_at_once);
    RUN(failures_http_would_meet_too_do_not_fall_back);
    RUN(proxy_403_falls_back_only_for_ws_urls);
    RUN(stalled_after_welcome_twice_falls_back);
    RUN(auth_refusal_tries_http_once);
    RUN(verdict_expires_then_websocket_is_probed_and_wins_only_with_welcome);
    RUN(fixed_modes_never_switch);
    RUN(restored_verdict_starts_on_http_until_it_expires);
    RUN(background_probe_schedule_backs_off_and_wins);
    return tt_finish();
}

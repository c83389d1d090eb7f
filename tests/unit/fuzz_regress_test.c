/*
 * Regressions for bugs the fuzz targets (tests/fuzz/) found, one test each,
 * named after the target that found it.
 */
#include <string.h>

#include <tether/tether.h>

#include "harness.h"
#include "transport/proxy.h"
#include "transport/transport.h"

/* handshake_fuzz: tether__tp_check_url accepted urls that lws_parse_uri splits
 * wrongly, so the client failed later with a misleading DNS error or, for an
 * out-of-range port, connected to that port modulo 65536. */
TEST(handshake_url_host_and_port)
{
    static const char *const bad[] = {
        "ws://[::1/x",        /* unclosed '[': the host became "::1/x" */
        "ws://[::Origin0/",   /* the fuzzer's input */
        "ws://h:99999/",      /* would have connected to port 34463 */
        "ws://h:0/",
        "ws://h:-1/",
        "ws://h:abc/",        /* port 0 */
        "ws://h?x=1",         /* the query became part of the host */
        "ws://h#f",
        "ws://user@h/",       /* user info is not supported: it became the host */
        "wss:// h/",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (tether__tp_check_url(bad[i]) != TETHER_ECONFIG) {
            tt_fail(__FILE__, __LINE__, "accepted %s", bad[i]);
        }
    }
    static const char *const good[] = {
        "ws://127.0.0.1:9000/", "wss://example.com/chat?room=7", "ws://[::1]:65535/x",
        "ws://h:1", "wss://h",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (tether__tp_check_url(good[i]) != TETHER_OK) {
            tt_fail(__FILE__, __LINE__, "refused %s: %s", good[i], tether_errmsg());
        }
    }
    char host[64];
    int tls = 0;
    CHECK_OK(tether__tp_url_host("wss://[::1]:9000/x", &tls, host, sizeof host));
    CHECK(tls == 1);
    CHECK(strcmp(host, "::1") == 0);
}

/* proxy_fuzz: a %-encoded ':' in the proxy's user name was accepted, and the
 * Basic credentials "a:b:pw" then read as user "a", password "b:pw". */
TEST(proxy_user_with_colon)
{
    tether__proxy p;
    CHECK(tether__proxy_parse("http://a%3Ab:pw@proxy:3128", &p) == TETHER_ECONFIG);
    CHECK(tether__proxy_parse("http://a%3ab@proxy:3128", &p) == TETHER_ECONFIG);
    /* a ':' in the password is fine: Basic splits at the first one */
    CHECK_OK(tether__proxy_parse("http://a:b%3Apw@proxy:3128", &p));
    CHECK(strcmp(p.user, "a") == 0);
    CHECK(strcmp(p.pass, "b:pw") == 0);
}

int main(void)
{
    RUN(handshake_url_host_and_port);
    RUN(proxy_user_with_colon);
    return tt_finish();
}

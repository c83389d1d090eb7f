/*
 * src/transport/proxy.c: proxy settings from the config and the environment,
 * no_proxy, credentials, the CONNECT response parser and Retry-After, with
 * every error path.
 */
#include <time.h>

#include <tether/tether.h>

#include "harness.h"
#include "transport/proxy.h"

static int msg_has(const char *s)
{
    if (strstr(tether_errmsg(), s)) {
        return 1;
    }
    fprintf(stderr, "  errmsg \"%s\" lacks \"%s\"\n", tether_errmsg(), s);
    return 0;
}

TEST(parse_accepts_the_documented_forms)
{
    tether__proxy p;
    CHECK_OK(tether__proxy_parse("http://proxy.example:3128", &p));
    CHECK_EQ_STR(p.host, "proxy.example");
    CHECK_EQ_INT(p.port, 3128);
    CHECK_EQ_STR(p.user, "");
    CHECK_EQ_INT(p.from_env, 0);
    CHECK_OK(tether__proxy_parse("HTTP://proxy/", &p)); /* scheme case, trailing slash */
    CHECK_EQ_STR(p.host, "proxy");
    CHECK_EQ_INT(p.port, 80);
    CHECK_OK(tether__proxy_parse("proxy:8080", &p)); /* no scheme */
    CHECK_EQ_INT(p.port, 8080);
    CHECK_OK(tether__proxy_parse("http://[::1]:3128", &p));
    CHECK_EQ_STR(p.host, "::1");
    CHECK_EQ_INT(p.port, 3128);
    CHECK_OK(tether__proxy_parse("[fe80::1]", &p));
    CHECK_EQ_STR(p.host, "fe80::1");
    CHECK_EQ_INT(p.port, 80);
    CHECK_OK(tether__proxy_parse("http://proxy:1", &p));
    CHECK_EQ_INT(p.port, 1);
    CHECK_OK(tether__proxy_parse("http://proxy:65535", &p));
    CHECK_EQ_INT(p.port, 65535);
}

TEST(parse_decodes_credentials)
{
    tether__proxy p;
    CHECK_OK(tether__proxy_parse("http://al%40ice:p%3As%2fs@10.0.0.1:8080/", &p));
    CHECK_EQ_STR(p.user, "al@ice");
    CHECK_EQ_STR(p.pass, "p:s/s");
    CHECK_EQ_STR(p.host, "10.0.0.1");
    CHECK_OK(tether__proxy_parse("http://bob@proxy", &p)); /* user without password */
    CHECK_EQ_STR(p.user, "bob");
    CHECK_EQ_STR(p.pass, "");
    CHECK_OK(tether__proxy_parse("http://a@b:c@proxy:1", &p)); /* the last '@' ends them */
    CHECK_EQ_STR(p.user, "a@b");
    CHECK_EQ_STR(p.pass, "c");
    CHECK_EQ_STR(p.host, "proxy");
}

TEST(parse_refuses_malformed_proxies)
{
    tether__proxy p;
    CHECK_ERR(tether__proxy_parse(NULL, &p), TETHER_ECONFIG);
    CHECK(msg_has("empty"));
    CHECK_ERR(tether__proxy_parse("", &p), TETHER_ECONFIG);
    CHECK_ERR(tether__proxy_parse("https://proxy:443", &p), TETHER_ECONFIG);
    CHECK(msg_has("only http://"));
    CHECK_ERR(tether__proxy_parse("socks5://proxy:1080", &p), TETHER_ECONFIG);
    CHECK_ERR(tether__proxy_parse("http://proxy:80/path", &p), TETHER_ECONFIG);
    CHECK(msg_has("no path"));
    CHECK_ERR(tether__proxy_parse("http://proxy?x", &p), TETHER_ECONFIG);
    CHECK_ERR(tether__proxy_parse("http://[::1:80", &p), TETHER_ECONFIG);
    CHECK(msg_has("unclosed '['"));
    CHECK_ERR(tether__proxy_parse("http://:80", &p), TETHER_ECONFIG);
    CHECK(msg_has("host is missing"));
    CHECK_ERR(tether__proxy_parse("http://[]:80", &p), TETHER_ECONFIG);
    char longhost[300];
    memset(longhost, 'h', sizeof longhost - 1);
    longhost[sizeof longhost - 1] = '\0';
    CHECK_ERR(tether__proxy_parse(longhost, &p), TETHER_ECONFIG);
    CHECK(msg_has("too long"));
    CHECK_ERR(tether__proxy_parse("[::1]x", &p), TETHER_ECONFIG);
    CHECK(msg_has("does not parse"));
    memset(&p, 0x55, sizeof p);
    CHECK_ERR(tether__proxy_parse("http://proxy:0", &p), TETHER_ECONFIG);
    CHECK(msg_has("port is invalid"));
    CHECK_EQ_STR(p.host, "proxy"); /* out was reset, not left half-filled with junk */
    CHECK_ERR(tether__proxy_parse("http://proxy:65536", &p), TETHER_ECONFIG);
    CHECK_ERR(tether__proxy_parse("http://proxy:99999", &p), TETHER_ECONFIG);
    CHECK_ERR(tether__proxy_parse("http://proxy:-1", &p), TETHER_ECONFIG);
    CHECK_ERR(tether__proxy_parse("http://proxy:", &p), TETHER_ECONFIG);
    CHECK_ERR(tether__proxy_parse("http://proxy:80x", &p), TETHER_ECONFIG);
}

TEST(parse_refuses_bad_credentials)
{
    tether__proxy p;
    CHECK_ERR(tether__proxy_parse("http://u:%zz@proxy:80", &p), TETHER_ECONFIG);
    CHECK(msg_has("credentials are malformed"));
    CHECK_ERR(tether__proxy_parse("http://u%4@proxy", &p), TETHER_ECONFIG); /* cut short */
    CHECK_ERR(tether__proxy_parse("http://u%00@proxy", &p), TETHER_ECONFIG); /* NUL */
    char spec[400];
    char user[120];
    memset(user, 'u', sizeof user - 1);
    user[sizeof user - 1] = '\0';
    snprintf(spec, sizeof spec, "http://%s@proxy", user); /* longer than the field */
    CHECK_ERR(tether__proxy_parse(spec, &p), TETHER_ECONFIG);
    user[50] = '\0';
    snprintf(spec, sizeof spec, "http://%s:%s@proxy", user, user); /* 101 bytes together */
    CHECK_ERR(tether__proxy_parse(spec, &p), TETHER_ECONFIG);
    CHECK(msg_has("exceed 94 bytes"));
    user[47] = '\0';
    snprintf(spec, sizeof spec, "http://%s:%s@proxy", user, user); /* 94 + ':' fits */
    CHECK_OK(tether__proxy_parse(spec, &p));
}

TEST(no_proxy_matching)
{
    CHECK_EQ_INT(tether__no_proxy_match(NULL, "h"), 0);
    CHECK_EQ_INT(tether__no_proxy_match("h", NULL), 0);
    CHECK_EQ_INT(tether__no_proxy_match("", "h"), 0);
    CHECK_EQ_INT(tether__no_proxy_match("*", "anything.example"), 1);
    CHECK_EQ_INT(tether__no_proxy_match("example.com", "example.com"), 1);
    CHECK_EQ_INT(tether__no_proxy_match("example.com", "api.example.com"), 1);
    CHECK_EQ_INT(tether__no_proxy_match(".example.com", "api.example.com"), 1);
    CHECK_EQ_INT(tether__no_proxy_match(".example.com", "example.com"), 1);
    CHECK_EQ_INT(tether__no_proxy_match("example.com", "notexample.com"), 0);
    CHECK_EQ_INT(tether__no_proxy_match("api.example.com", "example.com"), 0);
    CHECK_EQ_INT(tether__no_proxy_match("EXAMPLE.com", "Api.Example.COM"), 1);
    CHECK_EQ_INT(tether__no_proxy_match("example.com:8080", "example.com"), 1); /* port ignored */
    CHECK_EQ_INT(tether__no_proxy_match("a.test, b.test\tc.test", "c.test"), 1);
    CHECK_EQ_INT(tether__no_proxy_match("a.test,,b.test", "b.test"), 1);
    CHECK_EQ_INT(tether__no_proxy_match("10.0.0.7", "10.0.0.7"), 1);
    CHECK_EQ_INT(tether__no_proxy_match("10.0.0.7", "10.0.0.70"), 0);
    CHECK_EQ_INT(tether__no_proxy_match("[::1]", "::1"), 1);
    CHECK_EQ_INT(tether__no_proxy_match("[::1]:80", "[::1]"), 1);
    CHECK_EQ_INT(tether__no_proxy_match("::1", "::1"), 1); /* bare IPv6: no port to strip */
    CHECK_EQ_INT(tether__no_proxy_match("...", "x"), 0);    /* dots only: nothing to match */
    char big[400];
    memset(big, 'a', 300);
    snprintf(big + 300, sizeof big - 300, ",h.test");
    CHECK_EQ_INT(tether__no_proxy_match(big, "h.test"), 1); /* an overlong item is skipped */
}

/* A fake environment: up to 8 variables. */
static const char *env_vals[8][2];

static const char *fake_getenv(const char *name)
{
    for (int i = 0; i < 8; i++) {
        if (env_vals[i][0] && strcmp(env_vals[i][0], name) == 0) {
            return env_vals[i][1];
        }
    }
    return NULL;
}

/* Sets (or, with value NULL, unsets) a fake variable. */
static void env_put(const char *name, const char *value)
{
    int slot = -1;
    for (int i = 0; i < 8; i++) {
        if (env_vals[i][0] && strcmp(env_vals[i][0], name) == 0) {
            slot = i;
            break;
        }
        if (!env_vals[i][0] && slot < 0) {
            slot = i;
        }
    }
    CHECK(slot >= 0);
    if (slot >= 0) {
        env_vals[slot][0] = value ? name : NULL;
        env_vals[slot][1] = value;
    }
}

TEST(environment_rules)
{
    tether__proxy p;
    env_put("https_proxy", "http://tls-proxy:3128");
    env_put("HTTPS_PROXY", "http://upper:1");
    env_put("http_proxy", "http://plain-proxy:8080");
    env_put("HTTP_PROXY", "http://cgi-header:1");
    CHECK_EQ_INT(tether__proxy_from_env(1, "srv", fake_getenv, &p), 1);
    CHECK_EQ_STR(p.host, "tls-proxy"); /* lower case first */
    CHECK_EQ_INT(p.from_env, 1);
    CHECK_EQ_STR(p.env_name, "https_proxy");
    CHECK_EQ_INT(tether__proxy_from_env(0, "srv", fake_getenv, &p), 1);
    CHECK_EQ_STR(p.host, "plain-proxy");
    CHECK_EQ_STR(p.env_name, "http_proxy");

    env_put("https_proxy", ""); /* empty counts as unset */
    CHECK_EQ_INT(tether__proxy_from_env(1, "srv", fake_getenv, &p), 1);
    CHECK_EQ_STR(p.env_name, "HTTPS_PROXY");

    env_put("http_proxy", NULL); /* HTTP_PROXY alone is ignored, as curl does */
    CHECK_EQ_INT(tether__proxy_from_env(0, "srv", fake_getenv, &p), 0);
    CHECK_EQ_STR(p.host, "");

    /* no_proxy, then NO_PROXY when the lower case one is empty */
    env_put("https_proxy", "http://tls-proxy:3128");
    env_put("no_proxy", "srv,.corp");
    CHECK_EQ_INT(tether__proxy_from_env(1, "srv", fake_getenv, &p), 0);
    CHECK_EQ_INT(tether__proxy_from_env(1, "a.corp", fake_getenv, &p), 0);
    CHECK_EQ_INT(tether__proxy_from_env(1, "other", fake_getenv, &p), 1);
    env_put("no_proxy", "");
    env_put("NO_PROXY", "other");
    CHECK_EQ_INT(tether__proxy_from_env(1, "other", fake_getenv, &p), 0);
    CHECK_EQ_INT(tether__proxy_from_env(1, "srv", fake_getenv, &p), 1);

    /* a malformed variable is an error naming it, unless no_proxy applies */
    env_put("https_proxy", "socks5://x:1");
    env_put("NO_PROXY", "skip.me");
    CHECK_ERR(tether__proxy_from_env(1, "srv", fake_getenv, &p), TETHER_ECONFIG);
    CHECK(msg_has("environment variable https_proxy"));
    CHECK(msg_has("only http://"));
    CHECK_EQ_INT(tether__proxy_from_env(1, "skip.me", fake_getenv, &p), 0);
    env_put("http_proxy", "http://p:0");
    CHECK_ERR(tether__proxy_from_env(0, "srv", fake_getenv, &p), TETHER_ECONFIG);
    CHECK(msg_has("http_proxy"));
    CHECK(msg_has("port is invalid"));
}

TEST(credentials_for_lws_and_basic)
{
    tether__proxy p;
    char out[200];
    CHECK_OK(tether__proxy_parse("http://proxy", &p));
    tether__proxy_auth(&p, out, sizeof out);
    CHECK_EQ_STR(out, "");
    CHECK_OK(tether__proxy_parse("http://alice:s%3Acret@proxy", &p));
    tether__proxy_auth(&p, out, sizeof out);
    CHECK_EQ_STR(out, "alice:s:cret");
    CHECK_OK(tether__proxy_parse("http://bob@proxy", &p));
    tether__proxy_auth(&p, out, sizeof out);
    CHECK_EQ_STR(out, "bob:");

    char b64[32];
    CHECK_EQ_INT(tether__base64("alice:secret", 12, b64, sizeof b64), 0);
    CHECK_EQ_STR(b64, "YWxpY2U6c2VjcmV0");
    CHECK_EQ_INT(tether__base64("ab", 2, b64, sizeof b64), 0);
    CHECK_EQ_STR(b64, "YWI=");
    CHECK_EQ_INT(tether__base64("a", 1, b64, sizeof b64), 0);
    CHECK_EQ_STR(b64, "YQ==");
    CHECK_EQ_INT(tether__base64("", 0, b64, sizeof b64), 0);
    CHECK_EQ_STR(b64, "");
    CHECK_EQ_INT(tether__base64("abc", 3, b64, 4), -1); /* needs 5 bytes */
    CHECK_EQ_INT(tether__base64("abc", 3, b64, 5), 0);
    CHECK_EQ_STR(b64, "YWJj");
}

TEST(retry_after_values)
{
    time_t now = 784111747; /* Sun, 06 Nov 1994 08:49:07 GMT */
    CHECK_EQ_U64(tether__retry_after_ms(NULL, now), 0);
    CHECK_EQ_U64(tether__retry_after_ms("120", now), 120000);
    CHECK_EQ_U64(tether__retry_after_ms(" \t2 ", now), 2000);
    CHECK_EQ_U64(tether__retry_after_ms("0", now), 0);
    CHECK_EQ_U64(tether__retry_after_ms("2x", now), 0);
    CHECK_EQ_U64(tether__retry_after_ms("-5", now), 0);
    CHECK_EQ_U64(tether__retry_after_ms("soon", now), 0);
    CHECK_EQ_U64(tether__retry_after_ms("", now), 0);
    CHECK_EQ_U64(tether__retry_after_ms("4294967", now), 4294967000u);
    CHECK_EQ_U64(tether__retry_after_ms("4294968", now), UINT32_MAX); /* saturates */
    CHECK_EQ_U64(tether__retry_after_ms("99999999999999999999999", now), UINT32_MAX);
    CHECK_EQ_U64(tether__retry_after_ms("Sun, 06 Nov 1994 08:50:07 GMT", now), 60000);
    CHECK_EQ_U64(tether__retry_after_ms("Sun, 06 Nov 1994 08:49:07 GMT", now), 0); /* now */
    CHECK_EQ_U64(tether__retry_after_ms("Sun, 06 Nov 1994 08:49:00 GMT", now), 0); /* past */
    CHECK_EQ_U64(tether__retry_after_ms("Sun, 06 Nov 2094 08:49:07 GMT", now), UINT32_MAX);
    CHECK_EQ_U64(tether__retry_after_ms("Sun, 06 Nov 1994 08:50:07", now), 0); /* no GMT */
}

TEST(connect_response_status)
{
    const char *ok = "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n";
    CHECK_EQ_INT(tether__http_status(ok, strlen(ok)), 407);
    CHECK_EQ_INT(tether__http_status("HTTP/1.0 200 OK\r\n", 17), 200);
    CHECK_EQ_INT(tether__http_status("HTTP/1.1 403", 12), 403); /* exactly a status line */
    CHECK_EQ_INT(tether__http_status("HTTP/1.1 40", 11), 0);    /* not yet */
    CHECK_EQ_INT(tether__http_status("", 0), 0);
    CHECK_EQ_INT(tether__http_status("HTTP/2 200 OK\r\n\r\n", 17), 0);
    CHECK_EQ_INT(tether__http_status("HTTP/1.1 4x7 Bad\r\n", 18), 0);
    CHECK_EQ_INT(tether__http_status("HTTP/1.1  407 Two\r\n", 19), 0);
    CHECK_EQ_INT(tether__http_status("HTTP/1.1 099 Low\r\n", 18), 0);
    CHECK_EQ_INT(tether__http_status("SSH-2.0-OpenSSH\r\n", 17), 0);
}

TEST(connect_response_headers)
{
    const char *r = "HTTP/1.1 407 Proxy Authentication Required\r\n"
                    "Server: squid\r\n"
                    "proxy-authenticate:   Basic realm=\"corp\"  \r\n"
                    "Retry-After:\t30\r\n"
                    "X-Empty:\r\n"
                    "\r\n"
                    "Late: after the head\r\n";
    size_t n = strlen(r);
    char v[64];
    CHECK_EQ_INT(tether__http_header(r, n, "Proxy-Authenticate", v, sizeof v), 1);
    CHECK_EQ_STR(v, "Basic realm=\"corp\"");
    CHECK_EQ_INT(tether__http_header(r, n, "retry-after", v, sizeof v), 1);
    CHECK_EQ_STR(v, "30");
    CHECK_EQ_INT(tether__http_header(r, n, "X-Empty", v, sizeof v), 1); /* present, empty */
    CHECK_EQ_STR(v, "");
    CHECK_EQ_INT(tether__http_header(r, n, "Late", v, sizeof v), 0);    /* the body */
    CHECK_EQ_INT(tether__http_header(r, n, "Server-Name", v, sizeof v), 0);
    CHECK_EQ_INT(tether__http_header(r, n, "Serv", v, sizeof v), 0); /* a prefix is no match */
    char small[6];
    CHECK_EQ_INT(tether__http_header(r, n, "Server", small, sizeof small), 1);
    CHECK_EQ_STR(small, "squid");
    char tiny[4];
    CHECK_EQ_INT(tether__http_header(r, n, "Server", tiny, sizeof tiny), 1);
    CHECK_EQ_STR(tiny, "squ"); /* truncated, terminated */
    CHECK_EQ_INT(tether__http_header(r, n, "Server", NULL, 0), 1);
    /* no line break at all, LF-only lines, a head cut short */
    CHECK_EQ_INT(tether__http_header("HTTP/1.1 200 OK", 15, "Server", v, sizeof v), 0);
    const char *lf = "HTTP/1.1 403 Forbidden\nServer: x\n\n";
    CHECK_EQ_INT(tether__http_header(lf, strlen(lf), "Server", v, sizeof v), 1);
    CHECK_EQ_STR(v, "x");
    const char *cut = "HTTP/1.1 403 Forbidden\r\nServer: cu";
    CHECK_EQ_INT(tether__http_header(cut, strlen(cut), "Server", v, sizeof v), 1);
    CHECK_EQ_STR(v, "cu");
}

TEST(header_lists)
{
    CHECK_EQ_INT(tether__http_list_has("Upgrade", "upgrade"), 1);
    CHECK_EQ_INT(tether__http_list_has("keep-alive, Upgrade", "upgrade"), 1);
    CHECK_EQ_INT(tether__http_list_has(" other ,\ttether.v1 ", "tether.v1"), 1);
    CHECK_EQ_INT(tether__http_list_has("tether.v10", "tether.v1"), 0);
    CHECK_EQ_INT(tether__http_list_has("xtether.v1", "tether.v1"), 0);
    CHECK_EQ_INT(tether__http_list_has("keep-alive", "upgrade"), 0);
    CHECK_EQ_INT(tether__http_list_has(",,", "upgrade"), 0);
    CHECK_EQ_INT(tether__http_list_has("", "upgrade"), 0);
    CHECK_EQ_INT(tether__http_list_has(NULL, "upgrade"), 0);
    CHECK_EQ_INT(tether__http_list_has("a,,b", ""), 0);
}

int main(void)
{
    RUN(parse_accepts_the_documented_forms);
    RUN(parse_decodes_credentials);
    RUN(parse_refuses_malformed_proxies);
    RUN(parse_refuses_bad_credentials);
    RUN(no_proxy_matching);
    RUN(environment_rules);
    RUN(credentials_for_lws_and_basic);
    RUN(retry_after_values);
    RUN(connect_response_status);
    RUN(connect_response_headers);
    RUN(header_lists);
    return tt_finish();
}

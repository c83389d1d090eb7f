/*
 * The server's HTTP carriage (proto/HTTP.md) on the wire, the answers that
 * are not the happy path: malformed, oversized, unknown and wrong requests
 * and their statuses; refused HELLOs; admission and the hook's application
 * path; Origin and CORS; the hello timeout; Expect: 100-continue; HTTP/1.1
 * chosen over TLS. The client and the server's set-up are in
 * carriage_fixture.h.
 */
#include "carriage_fixture.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

TEST(malformed_and_oversized_bodies_wrong_methods_and_unknown_ids_get_their_statuses)
{
    srv v;
    hpeer p;
    rawhttp_resp r;
    char hdr[512], v8[64];
    memset(&r, 0, sizeof r);
    car_srv_init(&v);
    v.cfg.http_idle_ms = 20000;
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x18);

    /* open: a record that claims 10 bytes and has 3 -> 400; one over 1024 -> 413 */
    const uint8_t trunc[] = {0, 0, 0, 10, 1, 2, 3};
    CHECK_EQ_INT(req(v.port, "POST", "/.tether/v1/open", CT, trunc, sizeof trunc, &r), 400);
    const uint8_t big[] = {0, 0, 4, 1, 1, 2, 3, 4};
    CHECK_EQ_INT(req(v.port, "POST", "/.tether/v1/open", CT, big, sizeof big, &r), 413);
    /* a Content-Length over the open limit is refused before the body is read */
    CHECK_EQ_INT(
        req(v.port, "POST", "/.tether/v1/open", CT "Content-Length: 2000\r\n", NULL, 0, &r), 413);
    CHECK_EQ_INT(req(v.port, "POST", "/.tether/v1/open", "Content-Type: text/plain\r\n", trunc,
                     sizeof trunc, &r),
                 415);
    /* a well-formed body whose frame is not a HELLO: 200 with BYE(4), no id */
    tether__buf_reset(&p.body);
    tether__encode_ack(&p.fb, 1);
    tether__hc_append(&p.body, tether__buf_frame(&p.fb), p.fb.len);
    CHECK_EQ_INT(
        req(v.port, "POST", "/.tether/v1/open", CT, tether__buf_frame(&p.body), p.body.len, &r),
        200);
    CHECK(rawhttp_header(&r, "Tether-Connection", v8, sizeof v8) == NULL);
    rawhttp_free(&p.r);
    p.r = r;
    memset(&r, 0, sizeof r);
    CHECK_OK(hp_frames(&p, TETHER__HC_ANSWER));
    CHECK_EQ_INT(p.nf, 1);
    CHECK_EQ_INT(p.f[0].type, TETHER__F_BYE);
    CHECK_EQ_INT(p.f[0].u.close.code, 4);

    /* unknown operation under the marker, wrong methods */
    CHECK_EQ_INT(req(v.port, "GET", "/.tether/v1/frob", NULL, NULL, 0, &r), 404);
    CHECK_EQ_INT(req(v.port, "GET", "/.tether/v1/open", NULL, NULL, 0, &r), 405);
    CHECK_EQ_STR(rawhttp_header(&r, "Allow", v8, sizeof v8), "POST");
    CHECK_EQ_INT(req(v.port, "POST", "/.tether/v1/poll", CT, trunc, sizeof trunc, &r), 405);
    CHECK_EQ_STR(rawhttp_header(&r, "Allow", v8, sizeof v8), "GET");
    /* a path outside the carriage, not an upgrade: 426 (HTTP.md section 2.3) */
    CHECK_EQ_INT(req(v.port, "GET", "/elsewhere", NULL, NULL, 0, &r), 426);
    CHECK_EQ_STR(rawhttp_header(&r, "Upgrade", v8, sizeof v8), "websocket");

    /* ids: missing or malformed -> 400, unknown -> 404 */
    CHECK_EQ_INT(req(v.port, "GET", "/.tether/v1/poll", "Tether-Received: 0\r\n", NULL, 0, &r),
                 400);
    CHECK_EQ_INT(req(v.port, "GET", "/.tether/v1/poll",
                     "Tether-Received: 0\r\nTether-Connection: short!\r\n", NULL, 0, &r),
                 400);
    CHECK_EQ_INT(
        req(v.port, "GET", "/.tether/v1/poll",
            "Tether-Received: 0\r\nTether-Connection: AAECAwQFBgcICQoLDA0ODxAREhMUFRYX\r\n", NULL,
            0, &r),
        404);

    /* a send with an empty record: 400, and the connection is over */
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    const uint8_t empty[] = {0, 0, 0, 0};
    CHECK_EQ_INT(req(v.port, "POST", "/.tether/v1/send",
                     hp_headers(&p, hdr, sizeof hdr, CT "Tether-First: 1\r\n"), empty, sizeof empty,
                     &r),
                 400);
    CHECK_EQ_INT(hp_poll(&p), 404);
    /* a send record over the server's limit: 413 */
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    const uint8_t huge[] = {0x7f, 0, 0, 0, 1, 2, 3, 4};
    CHECK_EQ_INT(req(v.port, "POST", "/.tether/v1/send",
                     hp_headers(&p, hdr, sizeof hdr, CT "Tether-First: 1\r\n"), huge, sizeof huge,
                     &r),
                 413);
    CHECK_EQ_INT(hp_poll(&p), 404);
    /* a gap in Tether-First: 400 */
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    tether__buf_reset(&p.body);
    hp_add_data(&p, 1, 1);
    CHECK_EQ_INT(hp_send_body(&p, 3, 1), 400);
    CHECK_EQ_INT(hp_poll(&p), 404);
    /* Tether-First missing or 0, a wrong Content-Type */
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    CHECK_EQ_INT(req(v.port, "POST", "/.tether/v1/send", hp_headers(&p, hdr, sizeof hdr, CT),
                     tether__buf_frame(&p.body), p.body.len, &r),
                 400);
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    CHECK_EQ_INT(hp_send_body(&p, 0, 1), 400);
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    CHECK_EQ_INT(
        req(v.port, "POST", "/.tether/v1/send",
            hp_headers(&p, hdr, sizeof hdr, "Content-Type: text/plain\r\nTether-First: 1\r\n"),
            tether__buf_frame(&p.body), p.body.len, &r),
        415);
    CHECK_EQ_INT(hp_poll(&p), 404);
    /* Tether-Received above what was sent (poll, then send), a malformed Tether-Hold */
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    CHECK_EQ_INT(
        req(v.port, "POST", "/.tether/v1/send",
            hp_headers(&p, hdr, sizeof hdr, CT "Tether-First: 1\r\nTether-Received: 3\r\n"),
            tether__buf_frame(&p.body), p.body.len, &r),
        400);
    CHECK_EQ_INT(hp_poll(&p), 404);
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    CHECK_EQ_INT(hp_poll_as(&p, 7, NULL), 400);
    CHECK_EQ_INT(hp_poll(&p), 404);
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    CHECK_EQ_INT(hp_poll_as(&p, 0, "Tether-Hold: 0\r\n"), 400);

    /* a second send while one is being received: 409 with Retry-After, nothing handled */
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    int a = rawhttp_connect(v.port);
    CHECK(a >= 0);
    CHECK_OK(rawhttp_send(
        a, "POST", "/.tether/v1/send",
        hp_headers(&p, hdr, sizeof hdr, CT "Tether-First: 1\r\nContent-Length: 200\r\n"), NULL, 0));
    CHECK(rawhttp_quiet(a, 50));
    int st = 0;
    for (int i = 0; i < 100 && st != 409; i++) { /* until the first send's head was read */
        st = req(v.port, "POST", "/.tether/v1/send",
                 hp_headers(&p, hdr, sizeof hdr, CT "Tether-First: 1\r\n"),
                 tether__buf_frame(&p.body), p.body.len, &r);
        CHECK(st == 409 || st == 204);
    }
    CHECK_EQ_INT(st, 409);
    CHECK_EQ_STR(rawhttp_header(&r, "Retry-After", v8, sizeof v8), "1");
    close(a);
    rawhttp_free(&r);
    hp_free(&p);
    srv_free(&v);
}

TEST(origins_and_cors)
{
    srv v;
    hpeer p;
    rawhttp_resp r;
    char b[256];
    const char *origins[] = {"https://app.example", NULL};
    memset(&r, 0, sizeof r);
    car_srv_init(&v);
    v.cfg.allowed_origins = origins;
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x19);

    /* open: no Origin or another one -> 403 without CORS headers, as for an upgrade */
    CHECK_EQ_INT(hp_open(&p, 0), 403);
    p.origin = "https://evil.example";
    CHECK_EQ_INT(hp_open(&p, 0), 403);
    CHECK(rawhttp_header(&p.r, "Access-Control-Allow-Origin", b, sizeof b) == NULL);
    p.origin = "https://app.example";
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    CHECK_EQ_STR(rawhttp_header(&p.r, "Access-Control-Allow-Origin", b, sizeof b),
                 "https://app.example");
    CHECK_EQ_STR(rawhttp_header(&p.r, "Access-Control-Allow-Credentials", b, sizeof b), "true");
    CHECK(rawhttp_header(&p.r, "Access-Control-Expose-Headers", b, sizeof b) &&
          strstr(b, "Tether-Connection") && strstr(b, "Tether-First"));
    CHECK_EQ_STR(rawhttp_header(&p.r, "Cache-Control", b, sizeof b), "no-store, no-transform");
    /* every request is checked, not only the open */
    p.origin = "https://evil.example";
    CHECK_EQ_INT(hp_poll(&p), 403);
    p.origin = "https://app.example";
    CHECK_EQ_INT(hp_send_data(&p, 1, 1), 204);
    CHECK(rec_wait_count(&v.rec, 1, WAIT_MS));

    /* preflight */
    CHECK_EQ_INT(req(v.port, "OPTIONS", "/.tether/v1/send",
                     "Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n"
                     "Access-Control-Request-Headers: content-type, tether-connection\r\n",
                     NULL, 0, &r),
                 204);
    CHECK_EQ_STR(rawhttp_header(&r, "Access-Control-Allow-Origin", b, sizeof b),
                 "https://app.example");
    CHECK_EQ_STR(rawhttp_header(&r, "Access-Control-Allow-Methods", b, sizeof b), "GET, POST");
    CHECK(rawhttp_header(&r, "Access-Control-Allow-Headers", b, sizeof b) &&
          strstr(b, "Tether-Connection") && strstr(b, "Tether-Hold"));
    CHECK_EQ_STR(rawhttp_header(&r, "Access-Control-Max-Age", b, sizeof b), "600");
    CHECK_EQ_STR(rawhttp_header(&r, "Vary", b, sizeof b), "Origin");
    CHECK_EQ_INT(req(v.port, "OPTIONS", "/.tether/v1/open",
                     "Origin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\n",
                     NULL, 0, &r),
                 403);
    CHECK(rawhttp_header(&r, "Access-Control-Allow-Origin", b, sizeof b) == NULL);
    rawhttp_free(&r);
    hp_free(&p);
    srv_free(&v);

    /* without an allow-list any origin is allowed, with "*" */
    car_srv_init(&v);
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x1a);
    p.origin = "https://any.example";
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    CHECK_EQ_STR(rawhttp_header(&p.r, "Access-Control-Allow-Origin", b, sizeof b), "*");
    CHECK(rawhttp_header(&p.r, "Access-Control-Allow-Credentials", b, sizeof b) == NULL);
    hp_free(&p);
    srv_free(&v);
}

TEST(configured_cors_headers_join_the_preflight_and_bad_names_are_config_errors)
{
    srv v;
    rawhttp_resp r;
    char b[512];
    memset(&r, 0, sizeof r);
    static const char *const extra[] = {"Authorization", "X-Api-Key", NULL};
    car_srv_init(&v);
    v.cfg.http_cors_headers = extra;
    CHECK_OK(srv_start(&v));
    CHECK_EQ_INT(req(v.port, "OPTIONS", "/.tether/v1/open",
                     "Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n"
                     "Access-Control-Request-Headers: authorization, content-type\r\n",
                     NULL, 0, &r),
                 204);
    CHECK_EQ_STR(rawhttp_header(&r, "Access-Control-Allow-Headers", b, sizeof b),
                 "Content-Type, Tether-Connection, Tether-First, Tether-Received, Tether-Hold, "
                 "Authorization, X-Api-Key");
    rawhttp_free(&r);
    srv_free(&v);

    /* names: empty, too long, not a token, one too many -> TETHER_ECONFIG, nothing started */
    char longname[70];
    memset(longname, 'a', 65);
    longname[65] = '\0';
    const char *many[18];
    for (int i = 0; i < 17; i++) {
        many[i] = "X-A";
    }
    many[17] = NULL;
    const char *const bad1[] = {"", NULL}, *const bad2[] = {longname, NULL},
                      *const bad3[] = {"X-A: 1", NULL}, *const bad4[] = {"X\r\nY", NULL};
    const char *const *const bads[] = {bad1, bad2, bad3, bad4, many};
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        tether_server_config cfg;
        tether_server *s = NULL;
        tether_server_config_init(&cfg);
        cfg.listen_host = "127.0.0.1";
        cfg.http_cors_headers = bads[i];
        CHECK_EQ_INT(tether_server_create(&cfg, &s), TETHER_ECONFIG);
        CHECK(strstr(tether_errmsg(), "http_cors_headers: entry") != NULL);
        CHECK(s == NULL);
    }
    CHECK(strstr(tether_errmsg(), "entry 17 is one too many") != NULL);
}

static int refuse_hook(tether_server *s, tether_handshake *hs, void *user)
{
    (void)s;
    snprintf(user, 128, "%s", tether_handshake_path(hs));
    tether_handshake_reply_header(hs, "WWW-Authenticate", "Bearer");
    return 401;
}

TEST(the_admission_hook_sees_the_application_path_and_may_refuse)
{
    srv v;
    hpeer p;
    char path[128] = "", b[64];
    car_srv_init(&v);
    v.cfg.cb.on_handshake = refuse_hook;
    v.cfg.user = path;
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x1b);
    hp_hello(&p, 0);
    tether__buf_reset(&p.body);
    tether__hc_append(&p.body, tether__buf_frame(&p.fb), p.fb.len);
    CHECK_EQ_INT(req(v.port, "POST", "/chat/.tether/v1/open?room=7", CT, tether__buf_frame(&p.body),
                     p.body.len, &p.r),
                 401);
    CHECK_EQ_STR(rawhttp_header(&p.r, "WWW-Authenticate", b, sizeof b), "Bearer");
    CHECK_EQ_STR(path, "/chat?room=7");
    hp_free(&p);
    v.cfg.user = &v.rec;
    srv_free(&v);
}

TEST(an_open_whose_body_does_not_come_within_the_hello_timeout_gets_408)
{
    srv v;
    rawhttp_resp r;
    memset(&r, 0, sizeof r);
    car_srv_init(&v);
    v.cfg.hello_timeout_ms = 300;
    CHECK_OK(srv_start(&v));
    int a = rawhttp_connect(v.port);
    CHECK(a >= 0);
    const uint8_t part[] = {0, 0, 0, 66, 0x99, 1};
    CHECK_OK(rawhttp_send(a, "POST", "/.tether/v1/open", CT "Content-Length: 70\r\n", part,
                          sizeof part));
    CHECK_OK(rawhttp_read(a, &r, WAIT_MS));
    CHECK_EQ_INT(r.status, 408);
    CHECK(rawhttp_closed(a, WAIT_MS));
    CHECK(wait_until(no_carriage_conn, &v, WAIT_MS));
    close(a);
    rawhttp_free(&r);
    srv_free(&v);
}

TEST(refused_hellos_are_answered_200_without_an_id)
{
    srv v;
    hpeer p, q;
    char b[64];
    car_srv_init(&v);
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x21);
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    CHECK(p.id[0] != '\0');

    /* the same session with another token: REJECT(2) */
    hp_init(&q, v.port, 0x21);
    memset(q.token, 0x77, sizeof q.token);
    CHECK_EQ_INT(hp_open(&q, 1), 200);
    CHECK(rawhttp_header(&q.r, "Tether-Connection", b, sizeof b) == NULL);
    CHECK_EQ_INT(q.nf, 1);
    CHECK_EQ_INT(q.f[0].type, TETHER__F_REJECT);
    CHECK_EQ_INT(q.f[0].u.close.code, TETHER_REJECT_TOKEN);
    hp_free(&q);

    /* a session the server does not know, claiming history: WELCOME then BYE(6) */
    hp_init(&q, v.port, 0x22);
    q.cursor = 5;
    CHECK_EQ_INT(hp_open(&q, 1), 200);
    CHECK(rawhttp_header(&q.r, "Tether-Connection", b, sizeof b) == NULL);
    CHECK_EQ_INT(q.nf, 2);
    CHECK_EQ_INT(q.f[0].type, TETHER__F_WELCOME);
    CHECK_EQ_INT(q.f[1].type, TETHER__F_BYE);
    CHECK_EQ_INT(q.f[1].u.close.code, TETHER_REJECT_MISMATCH);
    hp_free(&q);

    /* the first connection was not disturbed, and no record is left of the refused ones */
    CHECK_EQ_INT(hp_send_data(&p, 1, 1), 204);
    CHECK(rec_wait_count(&v.rec, 1, WAIT_MS));
    CHECK_EQ_INT(tether__srv_debug_carriage(v.s), 1);
    hp_free(&p);
    srv_free(&v);
}

TEST(a_send_that_expects_100_continue_gets_it_before_its_body)
{
    srv v;
    hpeer p;
    rawhttp_resp r;
    char hdr[512], ex[256];
    memset(&r, 0, sizeof r);
    car_srv_init(&v);
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x23);
    CHECK_EQ_INT(hp_open(&p, 0), 200);
    tether__buf_reset(&p.body);
    hp_add_data(&p, 1, 1);
    snprintf(ex, sizeof ex, CT "Tether-First: 1\r\nExpect: 100-continue\r\nContent-Length: %zu\r\n",
             p.body.len);
    int fd = rawhttp_connect(v.port);
    CHECK(fd >= 0);
    CHECK_OK(
        rawhttp_send(fd, "POST", "/.tether/v1/send", hp_headers(&p, hdr, sizeof hdr, ex), NULL, 0));
    CHECK_OK(rawhttp_read(fd, &r, WAIT_MS));
    CHECK_EQ_INT(r.status, 100);
    CHECK_OK(rawhttp_send_raw(fd, tether__buf_frame(&p.body), p.body.len));
    CHECK_OK(rawhttp_read(fd, &r, WAIT_MS));
    CHECK_EQ_INT(r.status, 204);
    CHECK(rec_wait_count(&v.rec, 1, WAIT_MS));
    close(fd);
    rawhttp_free(&r);
    hp_free(&p);
    srv_free(&v);
}

/* A self-signed certificate for 127.0.0.1 and its key, as PEM files: 0 or -1. */
static int make_cert(const char *cert_path, const char *key_path)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    int rc = -1;
    if (pk && x) {
        X509_set_version(x, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
        X509_gmtime_adj(X509_getm_notBefore(x), 0);
        X509_gmtime_adj(X509_getm_notAfter(x), 3600);
        X509_set_pubkey(x, pk);
        X509_NAME *n = X509_get_subject_name(x);
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"127.0.0.1", -1,
                                   -1, 0);
        X509_set_issuer_name(x, n);
        FILE *fc = fopen(cert_path, "w"), *fk = fopen(key_path, "w");
        if (X509_sign(x, pk, EVP_sha256()) > 0 && fc && fk && PEM_write_X509(fc, x) &&
            PEM_write_PrivateKey(fk, pk, NULL, NULL, 0, NULL, NULL)) {
            rc = 0;
        }
        if (fc) {
            fclose(fc);
        }
        if (fk) {
            fclose(fk);
        }
    }
    X509_free(x);
    EVP_PKEY_free(pk);
    return rc;
}

/* Reads an answer's head over TLS into buf: 0 or -1. */
static int tls_read_head(SSL *ssl, char *buf, size_t cap)
{
    size_t have = 0;
    while (have + 1 < cap) {
        int n = SSL_read(ssl, buf + have, 1);
        if (n <= 0) {
            return -1;
        }
        have++;
        buf[have] = '\0';
        if (have >= 4 && memcmp(buf + have - 4, "\r\n\r\n", 4) == 0) {
            return 0;
        }
    }
    return -1;
}

TEST(over_tls_the_server_chooses_http_1_1_and_carries_the_carriage)
{
    srv v;
    hpeer p;
    char cert[512], key[512], head[4096] = "", req_head[512];
    CHECK_OK(make_cert(tt_path(cert, sizeof cert, "carriage_cert.pem"),
                       tt_path(key, sizeof key, "carriage_key.pem")));
    car_srv_init(&v);
    v.cfg.tls_cert_file = cert;
    v.cfg.tls_key_file = key;
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x25);
    hp_hello(&p, 0);
    tether__buf_reset(&p.body);
    tether__hc_append(&p.body, tether__buf_frame(&p.fb), p.fb.len);

    int fd = rawhttp_connect(v.port);
    CHECK(fd >= 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    CHECK(ssl != NULL);
    if (ssl && fd >= 0) {
        /* offers h2 first, as libcurl does by default over https */
        static const unsigned char alpn[] = "\x02h2\x08http/1.1";
        SSL_set_alpn_protos(ssl, alpn, sizeof alpn - 1);
        SSL_set_fd(ssl, fd);
        CHECK_EQ_INT(SSL_connect(ssl), 1);
        const unsigned char *sel = NULL;
        unsigned sel_len = 0;
        SSL_get0_alpn_selected(ssl, &sel, &sel_len);
        CHECK(sel_len == 8 && memcmp(sel, "http/1.1", 8) == 0);
        int n = snprintf(req_head, sizeof req_head,
                         "POST /.tether/v1/open HTTP/1.1\r\nHost: 127.0.0.1\r\n" CT
                         "Content-Length: %zu\r\n\r\n",
                         p.body.len);
        CHECK_EQ_INT(SSL_write(ssl, req_head, n), n);
        CHECK_EQ_INT(SSL_write(ssl, tether__buf_frame(&p.body), (int)p.body.len), (int)p.body.len);
        CHECK_OK(tls_read_head(ssl, head, sizeof head));
        CHECK(strncmp(head, "HTTP/1.1 200", 12) == 0);
        CHECK(strcasestr(head, "\r\nTether-Connection: ") != NULL);
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    if (fd >= 0) {
        close(fd);
    }
    hp_free(&p);
    srv_free(&v);
}

TEST(opens_beyond_the_pending_cap_get_503_with_retry_after)
{
    srv v;
    hpeer p;
    rawhttp_resp r;
    char b[32];
    memset(&r, 0, sizeof r);
    car_srv_init(&v);
    v.cfg.max_pending_handshakes = 1;
    v.cfg.busy_retry_after_s = 3;
    CHECK_OK(srv_start(&v));
    hp_init(&p, v.port, 0x26);
    /* an open whose body has not come yet holds the one pending place */
    int a = rawhttp_connect(v.port);
    CHECK(a >= 0);
    const uint8_t part[] = {0, 0, 0, 66};
    CHECK_OK(rawhttp_send(a, "POST", "/.tether/v1/open", CT "Content-Length: 70\r\n", part,
                          sizeof part));
    int st = 0;
    for (int i = 0; i < 100 && st != 503; i++) { /* until the first open's head was read */
        st = hp_open(&p, 0);
        CHECK(st == 503 || st == 200);
    }
    CHECK_EQ_INT(st, 503);
    CHECK_EQ_STR(rawhttp_header(&p.r, "Retry-After", b, sizeof b), "3");
    CHECK_EQ_STR(rawhttp_header(&p.r, "Connection", b, sizeof b), "close");
    close(a);
    rawhttp_free(&r);
    hp_free(&p);
    srv_free(&v);
}

int main(void)
{
    RUN(malformed_and_oversized_bodies_wrong_methods_and_unknown_ids_get_their_statuses);
    RUN(origins_and_cors);
    RUN(configured_cors_headers_join_the_preflight_and_bad_names_are_config_errors);
    RUN(the_admission_hook_sees_the_application_path_and_may_refuse);
    RUN(an_open_whose_body_does_not_come_within_the_hello_timeout_gets_408);
    RUN(refused_hellos_are_answered_200_without_an_id);
    RUN(a_send_that_expects_100_continue_gets_it_before_its_body);
    RUN(over_tls_the_server_chooses_http_1_1_and_carries_the_carriage);
    RUN(opens_beyond_the_pending_cap_get_503_with_retry_after);
    return tt_finish();
}

/*
 * The server's HTTP carriage, part of the libwebsockets glue: the requests
 * (proto/HTTP.md). A request whose path ends in the marker and an operation
 * is the carriage's; everything else keeps the plain HTTP handling of
 * transport_lws.c. Open goes through the same admission as an upgrade and
 * creates a connection record (transport_lws_hcconn.c) that the server core
 * sees as a new connection whose first message is the HELLO; send hands the
 * body's new frames to the core one by one; poll answers with the frames the
 * core wrote, or holds until some come. Every answer is written from the
 * request's writable callback, except early refusals, which close the TCP
 * connection after answering.
 */
#include "common/alloc.h"
#include "transport_lws_car.h"

#define HEAD_ROOM 3072 /* status line and headers of an answer (CORS lists included) */

/* ---- answers ---- */

static int add_lines(struct lws *wsi, const char *lines, unsigned char **p, unsigned char *end)
{
    while (lines && *lines) {
        const char *colon = strchr(lines, ':'), *eol = strstr(lines, "\r\n");
        if (!colon || !eol || colon > eol) {
            return 0;
        }
        char name[80];
        const char *v = colon + 1;
        snprintf(name, sizeof name, "%.*s:", (int)(colon - lines), lines);
        while (*v == ' ') {
            v++;
        }
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)name, (const unsigned char *)v,
                                        (int)(eol - v), p, end)) {
            return -1;
        }
        lines = eol + 2;
    }
    return 0;
}

uint8_t *tether__car_compose(struct lws *wsi, int status, const char *cors, const char *extra,
                             const uint8_t *body, size_t blen, const char *type, int flags,
                             size_t *out_len)
{
    char text[96];
    if (!body && status >= 400) {
        blen = (size_t)snprintf(text, sizeof text, "tether: HTTP carriage request refused (%d)\n",
                                status);
        body = (const uint8_t *)text;
        type = "text/plain";
    }
    uint8_t *buf = tether__malloc(LWS_PRE + HEAD_ROOM + blen);
    if (!buf) {
        return NULL;
    }
    unsigned char *start = buf + LWS_PRE, *p = start, *end = start + HEAD_ROOM;
    char clen[24];
    snprintf(clen, sizeof clen, "%zu", blen);
    if (tether__tp_add_status(wsi, (unsigned int)status, &p, end) ||
        add_lines(wsi, "Cache-Control: no-store, no-transform\r\nPragma: no-cache\r\n", &p, end) ||
        add_lines(wsi, cors, &p, end) || add_lines(wsi, extra, &p, end) ||
        ((flags & HC_CLOSE) && add_lines(wsi, "Connection: close\r\n", &p, end)) ||
        (type &&
         lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, (const unsigned char *)type,
                                      (int)strlen(type), &p, end)) ||
        (status != 204 && !(flags & HC_CHUNKED) &&
         lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH,
                                      (const unsigned char *)clen, (int)strlen(clen), &p, end)) ||
        lws_finalize_http_header(wsi, &p, end)) {
        tether__free(buf);
        return NULL;
    }
    if (blen) {
        memcpy(p, body, blen);
        p += blen;
    }
    *out_len = (size_t)(p - start);
    return buf;
}

void tether__car_answer(hc_req *req, int status, const char *extra, const uint8_t *body,
                        size_t blen, const char *type, int close_after)
{
    if (req->resp) {
        return; /* answered already */
    }
    req->resp = tether__car_compose(req->wsi, status, req->cors, extra, body, blen, type,
                                    close_after ? HC_CLOSE : 0, &req->resp_len);
    req->close_after = close_after || !req->resp;
    lws_callback_on_writable(req->wsi);
}

/* Answers at once from LWS_CALLBACK_HTTP and closes: returns -1 for the callback. */
static int refuse_now(hc_req *req, int status, const char *extra)
{
    size_t n = 0;
    uint8_t *buf =
        tether__car_compose(req->wsi, status, req->cors, extra, NULL, 0, NULL, HC_CLOSE, &n);
    if (buf) {
        lws_write(req->wsi, buf + LWS_PRE, n, LWS_WRITE_HTTP_HEADERS);
        tether__free(buf);
    }
    tether__car_req_free(req);
    return -1;
}

void tether__car_answer_open(hc_conn *hc)
{
    hc_req *req = hc->open;
    if (!req) {
        return; /* the client went away: an id it never learns expires */
    }
    hc->open = NULL;
    req->hc = NULL;
    if (hc->nans == 0) {
        /* closed before the HELLO was answered: the hello timeout, or the server failed */
        tether__car_answer(req, req->body_len < req->body_max ? 408 : 503, NULL, NULL, 0, NULL, 1);
    } else if (hc->phase == HC_OPEN) {
        char extra[80];
        snprintf(extra, sizeof extra, "Tether-Connection: %s\r\n", hc->id);
        tether__car_answer(req, 200, extra, tether__buf_frame(&hc->ans), hc->ans.len,
                           TETHER__HC_CONTENT_TYPE, 0);
    } else {
        tether__car_answer(req, 200, NULL, tether__buf_frame(&hc->ans), hc->ans.len,
                           TETHER__HC_CONTENT_TYPE, 0);
    }
}

void tether__car_answer_down(hc_conn *hc, hc_req *req)
{
    if (hc->nq == 0) {
        tether__car_answer(req, 204, NULL, NULL, 0, NULL, 0);
        return;
    }
    char extra[64];
    snprintf(extra, sizeof extra, "Tether-First: %llu\r\n", (unsigned long long)hc->confirmed + 1);
    tether__car_answer(req, 200, extra, hc->q, hc->qlen, TETHER__HC_CONTENT_TYPE, 0);
    if (hc->confirmed + hc->nq > hc->sent) {
        hc->sent = hc->confirmed + hc->nq;
    }
}

/* ---- requests ---- */

void tether__car_req_free(hc_req *req)
{
    hc_conn *hc = req->hc;
    if (hc) {
        req->hc = NULL;
        if (hc->open == req) {
            hc->open = NULL;
            if (!hc->hello_given) {
                /* the client left before its HELLO was read: as a WebSocket closed before HELLO */
                tether__hc_end(hc, TETHER_EPEER_CLOSED, "the open request was abandoned");
            }
        }
        if (hc->up == req) {
            hc->up = NULL;
        }
        if (hc->down == req) {
            hc->down = NULL;
            tether__tw_disarm(&hc->car->wheel, &hc->t_hold.node);
        }
        tether__hc_release(hc);
    }
    if (req->pss && req->pss->req == req) {
        req->pss->req = NULL;
    }
    tether__free(req->body);
    tether__free(req->resp);
    tether__free(req);
}

/* Sets req->cors for an allowed Origin; 403 for one that is not allowed. */
static int origin_check(tether__tp *tp, hc_req *req)
{
    char origin[256];
    int n = lws_hdr_copy(req->wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN);
    const char *expose = "Vary: Origin\r\nAccess-Control-Expose-Headers: Tether-Connection, "
                         "Tether-First, Retry-After\r\n";
    if (!tp->cfg.allowed_origins) {
        if (n > 0) {
            snprintf(req->cors, sizeof req->cors, "Access-Control-Allow-Origin: *\r\n%s", expose);
        }
        return 0;
    }
    for (const char *const *o = tp->cfg.allowed_origins; n > 0 && *o; o++) {
        if (strcasecmp(*o, origin) == 0) {
            snprintf(
                req->cors, sizeof req->cors,
                "Access-Control-Allow-Origin: %s\r\nAccess-Control-Allow-Credentials: true\r\n%s",
                origin, expose);
            return 0;
        }
    }
    return 403;
}

static const char *header(struct lws *wsi, const char *name, char *buf, size_t len)
{
    tether__tp_hs hs = {wsi, NULL};
    return tether__tp_hs_header(&hs, name, buf, len);
}

/* Content-Length: 1 and *n set, or 0 when absent or malformed. */
static int content_length(struct lws *wsi, uint64_t *n)
{
    char v[32];
    if (lws_hdr_copy(wsi, v, sizeof v, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0) {
        return 0;
    }
    return tether__hc_parse_count(v, n) == TETHER_OK;
}

static int content_type_ok(struct lws *wsi)
{
    char v[128];
    return lws_hdr_copy(wsi, v, sizeof v, WSI_TOKEN_HTTP_CONTENT_TYPE) > 0 &&
           tether__hc_content_type_ok(v);
}

/* The connection a request names: NULL with *status 400 (missing or
 * malformed id) or 404 (unknown). */
static hc_conn *named(tether__car *car, struct lws *wsi, int *status)
{
    char id[64];
    if (!header(wsi, "Tether-Connection", id, sizeof id) || !tether__hc_id_valid(id, strlen(id))) {
        *status = 400;
        return NULL;
    }
    hc_conn *hc = tether__hc_find(car, id);
    *status = hc ? 0 : 404;
    return hc;
}

/* lws does not answer "Expect: 100-continue" itself, and a client (libcurl
 * for bodies over 1 KiB) would wait a second before sending the body. */
static void continue_if_expected(hc_req *req)
{
    char v[64];
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (header(req->wsi, "Expect", v, sizeof v) && strcasecmp(v, "100-continue") == 0) {
        uint8_t buf[LWS_PRE + sizeof cont];
        memcpy(buf + LWS_PRE, cont, sizeof cont - 1);
        lws_write(req->wsi, buf + LWS_PRE, sizeof cont - 1, LWS_WRITE_HTTP_HEADERS);
    }
}

/* An error that ends a connection (HTTP.md section 6.2): answered, then closed. */
static int end_and_refuse(hc_req *req, hc_conn *hc, int status, const char *why)
{
    tether__hc_end(hc, TETHER_EMALFORMED, why);
    tether__hc_release(hc);
    return refuse_now(req, status, NULL);
}

static int open_start(tether__tp *tp, hc_req *req, const char *app)
{
    uint64_t cl;
    if (tp->cb.admit) {
        char extra[640] = "";
        tether__tp_hs hs = {req->wsi, app};
        int st = tp->cb.admit(tp->owner, &hs, extra, sizeof extra);
        if (st) {
            return refuse_now(req, st, extra);
        }
    }
    if (!content_type_ok(req->wsi)) {
        return refuse_now(req, 415, NULL);
    }
    if (!content_length(req->wsi, &cl) || cl == 0) {
        return refuse_now(req, 400, NULL); /* no chunked bodies; an empty one has no HELLO */
    }
    if (cl > TETHER__HC_OPEN_RECORD_MAX + TETHER__HC_PREFIX) {
        return refuse_now(req, 413, NULL);
    }
    req->body = tether__malloc((size_t)cl);
    hc_conn *hc = req->body ? tether__hc_new(tp->car) : NULL;
    if (!hc) {
        return refuse_now(req, 503, NULL);
    }
    req->body_max = (size_t)cl;
    req->hc = hc;
    hc->open = req;
    if (tp->cb.open) {
        tp->cb.open(tp->owner, &hc->conn);
    }
    continue_if_expected(req);
    return 0;
}

static int send_start(tether__tp *tp, hc_req *req)
{
    int st;
    uint64_t cl;
    char v[64];
    hc_conn *hc = named(tp->car, req->wsi, &st);
    if (!hc) {
        return refuse_now(req, st, NULL);
    }
    if (hc->up) {
        return refuse_now(req, 409, "Retry-After: 1\r\n");
    }
    if (!content_type_ok(req->wsi)) {
        return end_and_refuse(req, hc, 415, "a send without the carriage's Content-Type");
    }
    if (!header(req->wsi, "Tether-First", v, sizeof v) ||
        tether__hc_parse_count(v, &req->first) != TETHER_OK || req->first == 0) {
        return end_and_refuse(req, hc, 400, "a send without a valid Tether-First");
    }
    if (header(req->wsi, "Tether-Received", v, sizeof v)) {
        if (tether__hc_parse_count(v, &req->received) != TETHER_OK) {
            return end_and_refuse(req, hc, 400, "a malformed Tether-Received");
        }
        req->has_received = 1;
    }
    if (!content_length(req->wsi, &cl) || cl == 0) {
        return end_and_refuse(req, hc, 400, "a send without a body or its Content-Length");
    }
    if (cl > hc->up_lim.body_max) {
        return end_and_refuse(req, hc, 413, "a send body over its limit");
    }
    req->body = tether__malloc((size_t)cl);
    if (!req->body) {
        return refuse_now(req, 503, NULL);
    }
    req->body_max = (size_t)cl;
    req->hc = hc;
    hc->up = req;
    tether__hc_idle_update(hc);
    continue_if_expected(req);
    return 0;
}

/* A poll or a stream (req->stream). */
static int poll_start(tether__tp *tp, hc_req *req)
{
    int st;
    uint64_t hold = 0;
    char v[64];
    hc_conn *hc = named(tp->car, req->wsi, &st);
    if (!hc) {
        return refuse_now(req, st, NULL);
    }
    if (!header(req->wsi, "Tether-Received", v, sizeof v) ||
        tether__hc_parse_count(v, &req->received) != TETHER_OK) {
        return end_and_refuse(req, hc, 400, "a poll without a valid Tether-Received");
    }
    if (header(req->wsi, "Tether-Hold", v, sizeof v) &&
        (tether__hc_parse_count(v, &hold) != TETHER_OK || hold < 1 || hold > 25)) {
        return end_and_refuse(req, hc, 400, "a malformed Tether-Hold");
    }
    if (tether__hc_confirm(hc, req->received) != TETHER_OK) {
        return end_and_refuse(req, hc, 400, "a Tether-Received above the frames sent");
    }
    if (hc->down) {
        /* the newer downstream request wins (HTTP.md section 7.4) */
        hc_req *old = hc->down;
        if (old->stream) {
            tether__car_stream_end(old);
        } else {
            hc->down = NULL;
            old->hc = NULL;
            tether__car_answer(old, 204, NULL, NULL, 0, NULL, 0);
        }
    }
    req->hold_ms = tp->car->hold_ms;
    if (hold && hold * 1000 < req->hold_ms) {
        req->hold_ms = (uint32_t)hold * 1000;
    }
    if (hc->core_done && hc->nq == 0 && !req->stream) {
        /* the server's BYE arrived: the connection is over */
        tether__car_answer(req, 204, NULL, NULL, 0, NULL, 0);
        tether__hc_end(hc, TETHER_EDROPPED, "closed by the server");
        tether__hc_release(hc);
        return 0;
    }
    req->hc = hc;
    hc->down = req;
    lws_set_timeout(req->wsi, NO_PENDING_TIMEOUT, 0);
    if (req->stream) {
        tether__car_stream_start(hc, req);
        if (hc->core_done && hc->nq == 0) {
            /* the server's BYE arrived: the probe, the end, and the connection is over */
            tether__hc_end(hc, TETHER_EDROPPED, "closed by the server");
            tether__hc_release(hc);
        }
    } else if (hc->nq > 0) {
        tether__hc_serve_down(hc);
    } else {
        tether__hc_arm_hold(hc, req->hold_ms);
        tether__hc_idle_update(hc);
    }
    return 0;
}

static void open_body(tether__tp *tp, hc_req *req)
{
    hc_conn *hc = req->hc;
    tether__hc_limits lim;
    int why = 0;
    size_t pos = 0;
    tether__slice f;
    tether__frame fr;

    if (!hc) {
        return; /* answered already (the hello timeout) */
    }
    tether__hc_limits_for(&lim, TETHER__HC_OPEN, 1);
    if (tether__hc_check(&lim, req->body, req->body_len, &why, NULL) != TETHER_OK) {
        hc->open = NULL;
        req->hc = NULL;
        tether__hc_end(hc, TETHER_EMALFORMED, "a malformed open body");
        tether__hc_release(hc);
        tether__car_answer(req, tether__hc_why_status(why), NULL, NULL, 0, NULL, 1);
        return;
    }
    tether__hc_next(req->body, req->body_len, &pos, &f);
    if (tether__decode(&tp->car->dec, f.data, f.len, &fr) == TETHER_OK &&
        fr.type == TETHER__F_HELLO) {
        tether__hc_limits_for(&hc->down_lim, TETHER__HC_POLL, fr.u.hello.max_message);
    }
    hc->hello_given = 1;
    hc->conn.last_rx_ms = tether__now_ms();
    tether__stat_add(tp->cfg.stats, TETHER__ST_BYTES_IN, f.len);
    tp->cb.message(tp->owner, &hc->conn, f.data, f.len, 0);
}

static void send_body(tether__tp *tp, hc_req *req)
{
    hc_conn *hc = req->hc;
    int why = 0;
    size_t k = 0, pos = 0;
    tether__slice f;

    if (!hc) {
        tether__car_answer(req, 404, NULL, NULL, 0, NULL, 1); /* it ended meanwhile */
        return;
    }
    hc->up = NULL;
    req->hc = NULL;
    if (req->has_received && req->received > hc->sent) {
        tether__hc_end(hc, TETHER_EMALFORMED, "a Tether-Received above the frames sent");
        tether__car_answer(req, 400, NULL, NULL, 0, NULL, 1);
    } else if (tether__hc_check(&hc->up_lim, req->body, req->body_len, &why, &k) != TETHER_OK) {
        tether__hc_end(hc, TETHER_EMALFORMED, "a malformed send body");
        tether__car_answer(req, tether__hc_why_status(why), NULL, NULL, 0, NULL, 1);
    } else if (req->first > hc->up_done + 1) {
        tether__hc_end(hc, TETHER_EMALFORMED, "a gap in the upstream frame numbers");
        tether__car_answer(req, 400, NULL, NULL, 0, NULL, 1);
    } else {
        uint64_t n = req->first;
        if (req->has_received) {
            tether__hc_confirm(hc, req->received); /* <= sent: checked above */
        }
        while (tether__hc_next(req->body, req->body_len, &pos, &f)) {
            if (n > hc->up_done && !hc->core_done && !hc->close_req) {
                hc->conn.last_rx_ms = tether__now_ms();
                tether__stat_add(tp->cfg.stats, TETHER__ST_BYTES_IN, f.len);
                tp->cb.message(tp->owner, &hc->conn, f.data, f.len, 0);
            }
            n++;
        }
        if (req->first + k - 1 > hc->up_done) {
            hc->up_done = req->first + k - 1;
        }
        tether__car_answer(req, 204, NULL, NULL, 0, NULL, 0);
        tether__hc_serve_down(hc);
    }
    tether__hc_release(hc);
}

/* LWS_CALLBACK_HTTP: 1 when the request is the carriage's (ret set). */
static int on_request(tether__tp *tp, struct lws *wsi, tp_pss *pss, const char *path, int *ret)
{
    char target[1400], app[1400];
    int n = snprintf(target, sizeof target, "%s", path);
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS) > 0 && n > 0 &&
        (size_t)n + 2 < sizeof target) {
        target[n++] = '?';
        lws_hdr_copy(wsi, target + n, (int)(sizeof target - (size_t)n), WSI_TOKEN_HTTP_URI_ARGS);
    }
    int op = tether__hc_route(target, app, sizeof app);
    if (op == 0 || !pss) {
        return 0;
    }
    hc_req *req = tether__calloc(1, sizeof *req);
    if (!req) {
        lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "out of memory");
        *ret = -1;
        return 1;
    }
    if (pss->req) {
        tether__car_req_free(pss->req); /* a request the client abandoned on this connection */
    }
    req->wsi = wsi;
    req->pss = pss;
    req->op = op;
    pss->req = req;
    int get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
    int post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
    int options = lws_hdr_total_length(wsi, WSI_TOKEN_OPTIONS_URI) > 0;
    if (origin_check(tp, req)) {
        *ret = refuse_now(req, 403, NULL);
    } else if (options && header(wsi, "Access-Control-Request-Method", target, sizeof target)) {
        char allow[TETHER__HC_CORS_MAX];
        snprintf(allow, sizeof allow,
                 "Access-Control-Allow-Methods: GET, POST\r\n"
                 "Access-Control-Allow-Headers: %s\r\n"
                 "Access-Control-Max-Age: 600\r\n",
                 tp->cfg.cors_headers ? tp->cfg.cors_headers : TETHER__HC_CORS_HEADERS);
        tether__car_answer(req, 204, allow, NULL, 0, NULL, 0);
        *ret = 0;
    } else if (op < 0) {
        *ret = refuse_now(req, 404, NULL);
    } else if (op == TETHER__HC_OP_OPEN || op == TETHER__HC_OP_SEND ? !post : !get) {
        *ret =
            refuse_now(req, 405, op >= TETHER__HC_OP_POLL ? "Allow: GET\r\n" : "Allow: POST\r\n");
    } else if (op == TETHER__HC_OP_OPEN) {
        *ret = open_start(tp, req, app);
    } else if (op == TETHER__HC_OP_SEND) {
        *ret = send_start(tp, req);
    } else {
        req->stream = op == TETHER__HC_OP_STREAM;
        *ret = poll_start(tp, req);
    }
    return 1;
}

int tether__car_http(tether__tp *tp, struct lws *wsi, int reason, tp_pss *pss, void *in, size_t len,
                     int *ret)
{
    hc_req *req = pss ? pss->req : NULL;
    *ret = 0;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return in ? on_request(tp, wsi, pss, in, ret) : 0;

    case LWS_CALLBACK_HTTP_BODY:
        if (!req || !req->body) {
            return 0;
        }
        if (len > req->body_max - req->body_len) {
            len = req->body_max - req->body_len; /* lws reads no more than Content-Length */
        }
        memcpy(req->body + req->body_len, in, len);
        req->body_len += len;
        return 1;

    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (!req || !req->body) {
            return 0;
        }
        if (req->op == TETHER__HC_OP_OPEN) {
            open_body(tp, req);
        } else {
            send_body(tp, req);
        }
        return 1;

    case LWS_CALLBACK_HTTP_WRITEABLE: {
        if (!req) {
            return 0;
        }
        if (req->stream) {
            *ret = tether__car_stream_writable(req);
            return 1;
        }
        if (!req->resp) {
            *ret = req->close_after ? -1 : 0;
            return 1;
        }
        int n = lws_write(wsi, req->resp + LWS_PRE, req->resp_len, LWS_WRITE_HTTP_HEADERS);
        int close = req->close_after || n < 0;
        tether__car_req_free(req);
        *ret = close || lws_http_transaction_completed(wsi) ? -1 : 0;
        return 1;
    }

    case LWS_CALLBACK_CLOSED_HTTP:
        if (req) {
            tether__car_req_free(req);
        }
        return 0;

    default:
        return 0;
    }
}

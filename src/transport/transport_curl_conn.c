/*
 * One connection of the client's HTTP carriage (transport_curl_int.h): the
 * open request carrying the HELLO, sends of numbered frames retried whole,
 * one poll at a time, deadlines, and the end reported once.
 */
#include "transport_curl_int.h"

/* ---- the connection ---- */

static void kick(tether__cc *cc, uint64_t delay_ms);

static void cc_handle_closed(uv_handle_t *h)
{
    tether__cc *cc = h->data;
    if (--cc->handles == 0) {
        tether__conn *c = cc->c;
        tether__free(cc->q);
        tether__free(cc->fl);
        tether__free(cc);
        tether__tp_conn_free(c);
    }
}

/* Ends the connection: cancels its requests, reports closed() once, frees it
 * once its timers are closed. */
void tether__cc_end(tether__cc *cc, int error, int http_status, int proxy_status,
                    uint32_t retry_after_ms, const char *fmt, ...)
{
    tether__tp_close why;
    va_list ap;
    if (cc->ended) {
        return;
    }
    cc->ended = 1;
    tether__cc_req_free(cc->cu, cc->open);
    tether__cc_req_free(cc->cu, cc->send);
    tether__cc_req_free(cc->cu, cc->poll);
    cc->open = cc->send = cc->poll = NULL;
    if (cc->cu->cur == cc) {
        cc->cu->cur = NULL;
    }
    if (error == TETHER_EPING || error == TETHER_ESTALLED) {
        /* the path went dead: the idle pooled connections are dead too, and
         * the next open reusing one would wait for its own timeout; dropped
         * when that open starts (never from inside curl's callbacks) */
        cc->cu->drop_pool = 1;
    }
    memset(&why, 0, sizeof why);
    why.error = error;
    why.http_status = http_status;
    why.proxy_status = proxy_status;
    why.retry_after_ms = retry_after_ms;
    va_start(ap, fmt);
    vsnprintf(why.detail, sizeof why.detail, fmt, ap);
    va_end(ap);
    uv_timer_stop(&cc->kick);
    uv_timer_stop(&cc->ctimer);
    tether__tp_conn_end(cc->c, &why);
    uv_close((uv_handle_t *)&cc->kick, cc_handle_closed);
    uv_close((uv_handle_t *)&cc->ctimer, cc_handle_closed);
}

/* The tether error for a failed request (curl's code; the proxy's status). */
static int curl_error(CURLcode rc, long proxy_status, int via_proxy)
{
    if (proxy_status == 407) {
        return TETHER_EPROXY_AUTH;
    }
    if (proxy_status && proxy_status != 200) {
        return TETHER_EPROXY;
    }
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
        return TETHER_EDNS;
    case CURLE_COULDNT_RESOLVE_PROXY:
        return TETHER_EPROXY;
    case CURLE_COULDNT_CONNECT:
        return via_proxy ? TETHER_EPROXY : TETHER_ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return TETHER_ECONNECT_TIMEOUT;
    case CURLE_PEER_FAILED_VERIFICATION:
        return TETHER_ETLS_UNTRUSTED;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
        return TETHER_ETLS;
    default:
        return TETHER_ECONNECT;
    }
}

/* The text/plain body of a refusal, for the detail (humans only; never parsed). */
static const char *hint(cc_req *r, char *buf, size_t len)
{
    size_t n = 0;
    if (r->rx_len && strncasecmp(r->ctype, "text/plain", 10) == 0) {
        buf[n++] = ':';
        buf[n++] = ' ';
        for (size_t i = 0; i < r->rx_len && n + 1 < len; i++) {
            buf[n++] = r->rx[i] >= 32 && r->rx[i] < 127 ? (char)r->rx[i] : ' ';
        }
    }
    buf[n] = '\0';
    return buf;
}

static uint32_t retry_delay(uint32_t fails, const char *retry_after)
{
    uint32_t d = CC_RETRY_MIN_MS;
    for (uint32_t i = 1; i < fails && d < CC_RETRY_MAX_MS; i++) {
        d *= 2;
    }
    d = d > CC_RETRY_MAX_MS ? CC_RETRY_MAX_MS : d;
    if (retry_after && retry_after[0]) {
        uint32_t ra = tether__retry_after_ms(retry_after, time(NULL));
        d = ra > d ? (ra < 30000 ? ra : 30000) : d;
    }
    return fails <= 1 && !(retry_after && retry_after[0]) ? 0 : d;
}

/* Delivers the frames of a well-formed body numbered from first; drops those
 * already received. */
static void deliver(tether__cc *cc, const uint8_t *body, size_t len, uint64_t first, int numbered)
{
    tether__tp *tp = cc->c->tp;
    const tether__tp_cb *cb = &tp->cb;
    size_t pos = 0;
    tether__slice f;
    uint64_t n = first;
    while (!cc->ended && tether__hc_next(body, len, &pos, &f)) {
        if (numbered) {
            if (n++ <= cc->received) {
                continue;
            }
            cc->received++;
        }
        tether__stat_add(tp->cfg.stats, TETHER__ST_BYTES_IN, f.len);
        cb->message(tp->owner, cc->c, f.data, f.len, 0);
    }
}

/* A body of kind in r checked: 1 when well-formed, else the connection ended. */
static int body_ok(tether__cc *cc, cc_req *r, int kind, const char *what)
{
    tether__hc_limits lim;
    int why = 0;
    tether__hc_limits_for(&lim, kind, cc->max_rx);
    if (!tether__hc_content_type_ok(r->ctype)) {
        tether__cc_end(cc, r->op == TETHER__HC_OP_OPEN ? TETHER_EHTTP : TETHER_EMALFORMED, 200, 0,
                       0,
                       "the %s answer is 200 but not the carriage's (Content-Type '%s'): a captive "
                       "portal or a proxy's page?",
                       what, r->ctype);
        return 0;
    }
    if (tether__hc_check(&lim, r->rx, r->rx_len, &why, NULL) != TETHER_OK) {
        tether__cc_end(cc, TETHER_EMALFORMED, 0, 0, 0, "the %s answer's body is malformed (%s)",
                       what, tether__hc_why_name(why));
        return 0;
    }
    return 1;
}

static void open_done(tether__cc *cc, cc_req *r, long status)
{
    cc->last_down_ms = tether__now_ms();
    if (status != 200) {
        uint32_t ra = r->retry_after[0] ? tether__retry_after_ms(r->retry_after, time(NULL)) : 0;
        char hb[120];
        tether__cc_end(cc, TETHER_EHTTP, (int)status, 0, ra,
                       "the server answered the carriage's open with HTTP %ld%s", status,
                       hint(r, hb, sizeof hb));
        return;
    }
    if (!body_ok(cc, r, TETHER__HC_ANSWER, "open")) {
        return;
    }
    if (r->id[0]) {
        if (!tether__hc_id_valid(r->id, strlen(r->id))) {
            tether__cc_end(cc, TETHER_EMALFORMED, 0, 0, 0,
                           "the open answer's Tether-Connection is malformed");
            return;
        }
        snprintf(cc->id, sizeof cc->id, "%s", r->id);
        cc->phase = CC_OPEN;
    } else {
        cc->phase = CC_OVER; /* refused: the frames say why */
    }
    deliver(cc, r->rx, r->rx_len, 0, 0);
}

static void send_done(tether__cc *cc, cc_req *r, CURLcode rc, long status, long pstatus)
{
    uint64_t now = tether__now_ms();
    if (rc == CURLE_OK && status == 204) {
        tether__free(cc->fl);
        cc->fl = NULL;
        cc->fl_len = cc->fl_frames = 0;
        cc->send_fails = 0;
        cc->send_failing_since = 0;
        return;
    }
    if (rc == CURLE_OK && status == 404) {
        tether__cc_end(cc, TETHER_EPEER_CLOSED, 404, 0, 0,
                       "the server no longer knows the HTTP connection (404 to a send)");
        return;
    }
    if (rc == CURLE_OK && status != 409 && status != 408 && status != 429 && status < 500) {
        char hb[120];
        tether__cc_end(cc, TETHER_EHTTP, (int)status, 0, 0,
                       "the server answered a send with HTTP %ld%s", status,
                       hint(r, hb, sizeof hb));
        return;
    }
    if (!cc->send_failing_since) {
        cc->send_failing_since = now;
    }
    if (now - cc->send_failing_since >= CC_SEND_GIVEUP_MS) {
        int err = rc == CURLE_OK ? TETHER_EHTTP : curl_error(rc, pstatus, 0);
        tether__cc_end(cc, err, (int)status, (int)pstatus, 0,
                       "a send failed for %u ms (last: %s): the connection is over",
                       CC_SEND_GIVEUP_MS,
                       rc == CURLE_OK ? "an HTTP status"
                       : r->err[0]    ? r->err
                                      : curl_easy_strerror(rc));
        return;
    }
    cc->send_fails++;
    cc->send_at = now + retry_delay(cc->send_fails + 1, r->retry_after);
}

static void poll_done(tether__cc *cc, cc_req *r, CURLcode rc, long status)
{
    uint64_t now = tether__now_ms();
    uint64_t first = 0;
    if (rc == CURLE_OK && (status == 200 || status == 204)) {
        cc->last_down_ms = now;
        cc->poll_fails = 0;
        cc->poll_at = 0;
        if (status == 204) {
            return;
        }
        if (!body_ok(cc, r, TETHER__HC_POLL, "poll")) {
            return;
        }
        if (tether__hc_parse_count(r->first, &first) != TETHER_OK || first == 0 ||
            first > cc->received + 1) {
            tether__cc_end(
                cc, TETHER_EMALFORMED, 0, 0, 0,
                "a poll answer's Tether-First '%s' is missing or beyond the %llu frames received",
                r->first, (unsigned long long)cc->received);
            return;
        }
        deliver(cc, r->rx, r->rx_len, first, 1);
        return;
    }
    if (rc == CURLE_OK && status == 404) {
        tether__cc_end(cc, TETHER_EPEER_CLOSED, 404, 0, 0,
                       "the server no longer knows the HTTP connection (404 to a poll)");
        return;
    }
    if (rc == CURLE_OK &&
        (status == 400 || status == 413 || status == 401 || status == 403 || status == 405)) {
        char hb[120];
        tether__cc_end(cc, TETHER_EHTTP, (int)status, 0, 0,
                       "the server answered a poll with HTTP %ld%s", status,
                       hint(r, hb, sizeof hb));
        return;
    }
    /* a proxy killed the held poll, or the network failed: poll again, at once first */
    cc->poll_fails++;
    cc->poll_at = now + retry_delay(cc->poll_fails, r->retry_after);
}

/* Handles the requests curl finished. */
void tether__cc_done(tether__curl *cu)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(cu->multi, &left))) {
        if (m->msg != CURLMSG_DONE) {
            continue;
        }
        cc_req *r = NULL;
        long status = 0, pstatus = 0;
        CURLcode rc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(m->easy_handle, CURLINFO_HTTP_CONNECTCODE, &pstatus);
        tether__cc *cc = r->cc;
        if (r == cc->open) {
            cc->open = NULL;
        } else if (r == cc->send) {
            cc->send = NULL;
        } else if (r == cc->poll) {
            cc->poll = NULL;
        }
        if (rc == CURLE_OK && status == 407) {
            pstatus = 407;
        }
        if (rc != CURLE_OK && r->op == TETHER__HC_OP_OPEN) {
            const tether__proxy *px = &cu->tp->proxy;
            tether__cc_end(cc, curl_error(rc, pstatus, px && px->host[0]), 0, (int)pstatus, 0,
                           "the carriage's open request failed: %s",
                           r->err[0] ? r->err : curl_easy_strerror(rc));
        } else if (rc == CURLE_OK && pstatus == 407) {
            tether__cc_end(cc, TETHER_EPROXY_AUTH, 0, 407, 0, "the proxy wants credentials (407)");
        } else if (r->op == TETHER__HC_OP_OPEN) {
            open_done(cc, r, status);
        } else if (r->op == TETHER__HC_OP_SEND) {
            send_done(cc, r, r->rx_over ? CURLE_WRITE_ERROR : rc, status, pstatus);
        } else if (r->rx_over) {
            tether__cc_end(cc, TETHER_EMALFORMED, 0, 0, 0, "a poll answer exceeds the body limit");
        } else {
            poll_done(cc, r, rc, status);
        }
        int op = r->op;
        tether__cc_req_free(cu, r);
        if (op == TETHER__HC_OP_OPEN) {
            tether__free(cc->fl); /* the open body: sends use fl from now on */
            cc->fl = NULL;
            cc->fl_len = 0;
        }
        if (!cc->ended) {
            kick(cc, 0);
        }
    }
}

/* Moves queued records into a new send body (at most 64 KiB or one frame, and
 * TETHER__HC_MAX_FRAMES frames) and starts it; or retries the one in flight. */
static void pump_send(tether__cc *cc, uint64_t now)
{
    if (cc->phase != CC_OPEN || cc->send || now < cc->send_at) {
        return;
    }
    if (!cc->fl && cc->q_len) {
        size_t pos = 0, frames = 0;
        while (pos < cc->q_len && frames < TETHER__HC_MAX_FRAMES) {
            uint32_t n = (uint32_t)cc->q[pos] << 24 | (uint32_t)cc->q[pos + 1] << 16 |
                         (uint32_t)cc->q[pos + 2] << 8 | cc->q[pos + 3];
            if (frames && pos + 4 + n > TETHER__HC_BODY_FLOOR) {
                break;
            }
            pos += 4 + n;
            frames++;
        }
        cc->fl = tether__malloc(pos);
        if (!cc->fl) {
            cc->send_at = now + CC_RETRY_MIN_MS;
            return;
        }
        memcpy(cc->fl, cc->q, pos);
        cc->fl_len = pos;
        cc->fl_frames = frames;
        cc->fl_first = cc->up_numbered + 1;
        cc->up_numbered += frames;
        memmove(cc->q, cc->q + pos, cc->q_len - pos);
        cc->q_len -= pos;
        cc->q_frames -= frames;
    }
    if (cc->fl) {
        cc->send = tether__cc_req_start(cc, TETHER__HC_OP_SEND, cc->fl, cc->fl_len, cc->fl_first);
        if (!cc->send) {
            cc->send_at = now + CC_RETRY_MIN_MS;
        }
    }
}

/* Deferred work: open(), writable() while wanted, requests, deadlines. */
static void cc_run(tether__cc *cc)
{
    tether__tp *tp = cc->c->tp;
    const tether__tp_cb *cb = &tp->cb;
    void *owner = tp->owner;
    uint64_t now = tether__now_ms();
    uint32_t dead_ms = cc_dead_ms(&tp->cfg);

    if (!cc->opened_cb) {
        cc->opened_cb = 1;
        cc->c->established = 1;
        cb->open(owner, cc->c);
    }
    for (int i = 0; i < 256 && cc->want_write && !cc->ended; i++) {
        cc->want_write = 0;
        cb->writable(owner, cc->c);
    }
    if (cc->ended) {
        return;
    }
    if (cc->phase == CC_OVER && !cc->closing) {
        tether__cc_end(cc, TETHER_EPEER_CLOSED, 0, 0, 0,
                       "the open answer carried no connection id");
        return;
    }
    if (cc->closing) {
        if (cc->phase != CC_OPEN || (!cc->q_len && !cc->fl) || now >= cc->close_by) {
            tether__cc_end(cc, TETHER_EPEER_CLOSED, 0, 0, 0, "closed by us");
            return;
        }
    } else if (cc->phase == CC_OPEN && now - cc->last_down_ms >= dead_ms) {
        tether__cc_end(cc, TETHER_EPING, 0, 0, 0,
                       "no downstream answer for %u ms (poll hold %u s + pong_timeout): the "
                       "HTTP connection is dead",
                       dead_ms, cc_hold_s(&cc->c->tp->cfg));
        return;
    }
    pump_send(cc, now);
    if (cc->phase == CC_OPEN && !cc->closing && !cc->poll && now >= cc->poll_at) {
        cc->poll = tether__cc_req_start(cc, TETHER__HC_OP_POLL, NULL, 0, 0);
        if (!cc->poll) {
            cc->poll_at = now + CC_RETRY_MIN_MS;
        }
    }
    /* wake again for the earliest retry or deadline */
    uint64_t next = cc->phase == CC_OPEN ? cc->last_down_ms + dead_ms : UINT64_MAX;
    if (cc->closing) {
        next = cc->close_by;
    }
    if (!cc->send && (cc->fl || cc->q_len) && cc->send_at > now && cc->send_at < next) {
        next = cc->send_at;
    }
    if (!cc->poll && cc->poll_at > now && cc->poll_at < next) {
        next = cc->poll_at;
    }
    if (cc->want_write) {
        next = now; /* writable() still wanted: come back at once */
    }
    if (next != UINT64_MAX) {
        kick(cc, next > now ? next - now : 0);
    }
}

static void kick_cb(uv_timer_t *t)
{
    cc_run(t->data);
}

static void kick(tether__cc *cc, uint64_t delay_ms)
{
    if (!cc->ended) {
        uv_timer_start(&cc->kick, kick_cb, delay_ms, 0);
    }
}

static void ctimer_cb(uv_timer_t *t)
{
    tether__cc *cc = t->data;
    tether__tp *tp = cc->c->tp;
    if (!cc->ended) {
        tp->cb.timer(tp->owner, cc->c);
    }
}

int tether__curl_connect(tether__curl *cu, tether__conn *c, const char *ws_url, uint32_t max_rx)
{
    tether__cc *cc = tether__calloc(1, sizeof *cc);
    if (!cc) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    static const int ops[3] = {TETHER__HC_OP_OPEN, TETHER__HC_OP_SEND, TETHER__HC_OP_POLL};
    for (int i = 0; i < 3; i++) {
        if (tether__hc_url(ws_url, ops[i], cc->url[i], sizeof cc->url[i]) != TETHER_OK) {
            tether__free(cc);
            return tether__fail(TETHER_ECONFIG, "cannot derive the carriage's urls from '%s'",
                                ws_url);
        }
    }
    cc->c = c;
    cc->cu = cu;
    cc->max_rx = max_rx ? max_rx : 1;
    uv_timer_init(cu->loop, &cc->kick);
    uv_timer_init(cu->loop, &cc->ctimer);
    cc->kick.data = cc->ctimer.data = cc;
    cc->handles = 2;
    c->cc = cc;
    cu->cur = cc;
    kick(cc, 0); /* open() from the loop, not from inside the caller */
    return TETHER_OK;
}

/* ---- tether__conn_* on a carriage connection ---- */

void tether__cc_want_write(tether__cc *cc)
{
    if (!cc->ended) {
        cc->want_write = 1;
        kick(cc, 0);
    }
}

int tether__cc_write(tether__cc *cc, tether__buf *b)
{
    uint64_t now = tether__now_ms();
    if (cc->ended) {
        return TETHER_ECONNECT;
    }
    if (cc->phase == CC_NEW) {
        /* the HELLO: the open request */
        tether__buf body;
        tether__buf_init(&body, 0);
        if (tether__hc_append(&body, tether__buf_frame(b), b->len) != TETHER_OK) {
            tether__buf_free(&body);
            return tether__fail(TETHER_ENOMEM, "out of memory");
        }
        tether__free(cc->fl);
        cc->fl = body.data; /* kept alive until the open answer */
        cc->fl_len = body.len;
        cc->open = tether__cc_req_start(cc, TETHER__HC_OP_OPEN, cc->fl, cc->fl_len, 0);
        if (!cc->open) {
            return tether__fail(TETHER_ENOMEM, "cannot start the open request");
        }
        cc->phase = CC_OPENING;
        cc->last_down_ms = now;
        tether__stat_add(cc->c->tp->cfg.stats, TETHER__ST_BYTES_OUT, b->len);
        return TETHER_OK;
    }
    if (cc->q_len + 4 + b->len > cc->q_cap) {
        size_t cap = cc->q_cap ? cc->q_cap : 4096;
        while (cap < cc->q_len + 4 + b->len) {
            cap *= 2;
        }
        uint8_t *nq = tether__realloc(cc->q, cap);
        if (!nq) {
            return tether__fail(TETHER_ENOMEM, "out of memory");
        }
        cc->q = nq;
        cc->q_cap = cap;
    }
    uint8_t *p = cc->q + cc->q_len;
    p[0] = (uint8_t)(b->len >> 24);
    p[1] = (uint8_t)(b->len >> 16);
    p[2] = (uint8_t)(b->len >> 8);
    p[3] = (uint8_t)b->len;
    memcpy(p + 4, tether__buf_frame(b), b->len);
    cc->q_len += 4 + b->len;
    cc->q_frames++;
    tether__stat_add(cc->c->tp->cfg.stats, TETHER__ST_BYTES_OUT, b->len);
    kick(cc, 0);
    return TETHER_OK;
}

int tether__cc_busy(tether__cc *cc)
{
    return cc->q_len > CC_QUEUE_MAX;
}

void tether__cc_close(tether__cc *cc)
{
    if (!cc->ended && !cc->closing) {
        cc->closing = 1;
        cc->close_by = tether__now_ms() + CC_CLOSE_FLUSH_MS;
        kick(cc, 0);
    }
}

void tether__cc_timer(tether__cc *cc, uint64_t delay_ms)
{
    if (!cc->ended) {
        uv_timer_start(&cc->ctimer, ctimer_cb, delay_ms, 0);
    }
}

void tether__cc_timer_cancel(tether__cc *cc)
{
    if (!cc->ended) {
        uv_timer_stop(&cc->ctimer);
    }
}

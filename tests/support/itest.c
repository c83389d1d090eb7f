#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "statelog.h"

void rec_init(recorder *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    r->seqs = calloc(REC_MAX, sizeof *r->seqs);
    r->tags = calloc(REC_MAX, sizeof *r->tags);
    if (!r->seqs || !r->tags) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
}

void rec_free(recorder *r)
{
    free(r->seqs);
    free(r->tags);
    pthread_mutex_destroy(&r->mu);
}

uint64_t rec_count(recorder *r)
{
    pthread_mutex_lock(&r->mu);
    uint64_t n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static uint64_t tag_of(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t t = 0;
    if (len < 8) {
        return UINT64_MAX;
    }
    for (int i = 0; i < 8; i++) {
        t = t << 8 | p[i];
    }
    return t;
}

void make_payload(uint8_t *buf, size_t len, uint64_t tag)
{
    for (int i = 7; i >= 0; i--) {
        buf[i] = (uint8_t)tag;
        tag >>= 8;
    }
    for (size_t i = 8; i < len; i++) {
        buf[i] = (uint8_t)('a' + i % 26);
    }
}

static void record(recorder *r, uint64_t seq, const void *data, size_t len, int redelivered)
{
    pthread_mutex_lock(&r->mu);
    if (r->n < REC_MAX) {
        r->seqs[r->n] = seq;
        r->tags[r->n] = tag_of(data, len);
    }
    r->n++;
    r->redelivered += redelivered ? 1 : 0;
    pthread_mutex_unlock(&r->mu);
}

void rec_check_exact(recorder *r, uint64_t n, const char *what)
{
    pthread_mutex_lock(&r->mu);
    if (r->n != n) {
        tt_fail(__FILE__, __LINE__, "%s: %llu deliveries, expected %llu", what,
                (unsigned long long)r->n, (unsigned long long)n);
    }
    uint64_t lim = r->n < n ? r->n : n;
    for (uint64_t i = 0; i < lim && i < REC_MAX; i++) {
        if (r->seqs[i] != i + 1 || r->tags[i] != i + 1) {
            tt_fail(__FILE__, __LINE__, "%s: delivery %llu has seq %llu tag %llu", what,
                    (unsigned long long)i, (unsigned long long)r->seqs[i],
                    (unsigned long long)r->tags[i]);
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
}

int rec_saw_state(recorder *r, int state, int *error, int *http, int *reject)
{
    int count = 0;
    pthread_mutex_lock(&r->mu);
    unsigned first = r->nstates > 64 ? r->nstates - 64 : 0;
    for (unsigned i = first; i < r->nstates; i++) {
        if (r->states[i % 64] == state) {
            count++;
            if (error) {
                *error = r->errors[i % 64];
            }
            if (http) {
                *http = r->http[i % 64];
            }
            if (reject) {
                *reject = r->rejects[i % 64];
            }
        }
    }
    pthread_mutex_unlock(&r->mu);
    return count;
}

static void c_message(tether_client *c, uint64_t seq, const void *data, size_t len,
                      int redelivered, void *user)
{
    record(user, seq, data, len, redelivered);
}

static void c_acked(tether_client *c, uint64_t first, uint64_t last, void *user)
{
    recorder *r = user;
    pthread_mutex_lock(&r->mu);
    if (first != r->acked_hi + 1 && r->acked_hi) {
        tt_fail(__FILE__, __LINE__, "acked range %llu..%llu does not follow %llu",
                (unsigned long long)first, (unsigned long long)last,
                (unsigned long long)r->acked_hi);
    }
    r->acked_hi = last;
    pthread_mutex_unlock(&r->mu);
}

static void c_state(tether_client *c, const tether_state_info *in, void *user)
{
    recorder *r = user;
    pthread_mutex_lock(&r->mu);
    unsigned i = r->nstates++ % 64;
    r->states[i] = in->state;
    r->errors[i] = in->error;
    r->http[i] = in->http_status;
    r->rejects[i] = in->reject_code;
    pthread_mutex_unlock(&r->mu);
    if (getenv("TETHER_TEST_VERBOSE")) {
        fprintf(stderr, "  state %d error %s http %d reject %d retry %u: %s\n", in->state,
                tether_err_name(in->error), in->http_status, in->reject_code, in->retry_in_ms,
                in->detail);
    }
}

static void c_mismatch(tether_client *c, const tether_mismatch_info *mi, void *user)
{
    recorder *r = user;
    pthread_mutex_lock(&r->mu);
    r->mismatches++;
    r->mismatch = *mi;
    pthread_mutex_unlock(&r->mu);
}

void rec_client_callbacks(tether_client_config *cfg, recorder *r)
{
    cfg->cb.on_message = c_message;
    cfg->cb.on_acked = c_acked;
    cfg->cb.on_state = c_state;
    cfg->cb.on_mismatch = c_mismatch;
    cfg->user = r;
}

static void s_open(tether_server *s, const tether_session_id *id, int resumed, void *user)
{
    recorder *r = user;
    pthread_mutex_lock(&r->mu);
    r->opens++;
    r->last_open_resumed = resumed;
    r->last_session = *id;
    pthread_mutex_unlock(&r->mu);
}

static void s_close(tether_server *s, const tether_session_id *id, int error, void *user)
{
    recorder *r = user;
    pthread_mutex_lock(&r->mu);
    r->closes++;
    pthread_mutex_unlock(&r->mu);
}

static void s_message(tether_server *s, const tether_session_id *id, uint64_t seq,
                      const void *data, size_t len, int redelivered, void *user)
{
    record(user, seq, data, len, redelivered);
}

static void s_acked(tether_server *s, const tether_session_id *id, uint64_t first,
                    uint64_t last, void *user)
{
    recorder *r = user;
    pthread_mutex_lock(&r->mu);
    r->acked_hi = last;
    pthread_mutex_unlock(&r->mu);
}

static void s_mismatch(tether_server *s, const tether_mismatch_info *mi, void *user)
{
    recorder *r = user;
    pthread_mutex_lock(&r->mu);
    r->mismatches++;
    r->mismatch = *mi;
    pthread_mutex_unlock(&r->mu);
}

void rec_server_callbacks(tether_server_config *cfg, recorder *r)
{
    cfg->cb.on_session_open = s_open;
    cfg->cb.on_session_close = s_close;
    cfg->cb.on_message = s_message;
    cfg->cb.on_acked = s_acked;
    cfg->cb.on_mismatch = s_mismatch;
    cfg->user = r;
}

void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int wait_until(int (*cond)(void *), void *arg, unsigned timeout_ms)
{
    for (unsigned waited = 0; waited <= timeout_ms; waited += 5) {
        if (cond(arg)) {
            return 1;
        }
        sleep_ms(5);
    }
    return cond(arg);
}

typedef struct count_at_least {
    recorder *r; /* the recorder to watch */
    uint64_t n;  /* deliveries wanted */
} count_at_least;

static int reached(void *arg)
{
    count_at_least *w = arg;
    return rec_count(w->r) >= w->n;
}

int rec_wait_count(recorder *r, uint64_t n, unsigned timeout_ms)
{
    count_at_least w = {r, n};
    return wait_until(reached, &w, timeout_ms);
}

const char *url_for(char *buf, size_t len, unsigned port)
{
    snprintf(buf, len, "ws://127.0.0.1:%u/", port);
    return buf;
}

int send_tagged(tether_client *c, uint64_t count, size_t size)
{
    uint8_t buf[65536];
    uint64_t last;
    if (size > sizeof buf || size < 8) {
        return TETHER_EINVAL;
    }
    tether_client_last_seq(c, &last);
    for (uint64_t i = 1; i <= count; i++) {
        uint64_t seq = 0;
        make_payload(buf, size, last + i);
        int rc = tether_client_send(c, buf, size, &seq);
        if (rc != TETHER_OK) {
            return rc;
        }
        if (seq != last + i) {
            tt_fail(__FILE__, __LINE__, "send returned seq %llu, expected %llu",
                    (unsigned long long)seq, (unsigned long long)(last + i));
            return TETHER_EINVAL;
        }
    }
    return TETHER_OK;
}

int srv_send_range(tether_server *s, const tether_session_id *id, uint64_t first, uint64_t count)
{
    uint8_t buf[64];
    int rc = TETHER_OK;
    for (uint64_t i = first; rc == TETHER_OK && i < first + count; i++) {
        uint64_t seq = 0;
        make_payload(buf, sizeof buf, i);
        rc = tether_server_send(s, id, buf, sizeof buf, &seq);
        if (rc == TETHER_OK && seq != i) {
            tt_fail(__FILE__, __LINE__, "server send returned seq %llu, expected %llu",
                    (unsigned long long)seq, (unsigned long long)i);
            rc = TETHER_EINVAL;
        }
    }
    return rc;
}

int srv_send_tagged(tether_server *s, tether_client *c, uint64_t first, uint64_t count)
{
    tether_session_id id;
    int rc = tether_client_session(c, &id);
    return rc == TETHER_OK ? srv_send_range(s, &id, first, count) : rc;
}

int client_create_start(const tether_client_config *cfg, tether_client **out)
{
    int rc = tether_client_create(cfg, out);
    if (rc != TETHER_OK) {
        fprintf(stderr, "client: %s: %s\n", tether_err_name(rc), tether_errmsg());
        return rc;
    }
    return tether_client_start(*out);
}

int server_create_start(const tether_server_config *cfg, tether_server **out)
{
    int rc = tether_server_create(cfg, out);
    if (rc != TETHER_OK) {
        fprintf(stderr, "server: %s: %s\n", tether_err_name(rc), tether_errmsg());
        return rc;
    }
    return tether_server_start(*out);
}

void cli_init(cli *k, const char *scheme, const char *host, unsigned port)
{
    memset(k, 0, sizeof *k);
    rec_init(&k->rec);
    tether_client_config_init(&k->cfg);
    snprintf(k->url, sizeof k->url, "%s://%s:%u/", scheme, host, port);
    k->cfg.url = k->url;
    /* the suites built on this helper check the WebSocket path's failures one
     * by one (426, 401/403, stalls, proxies); in AUTO some of them would now
     * move to the HTTP carriage, which has its own suites (carriage_client,
     * carriage_retry, field_carriage) */
    k->cfg.transport = TETHER_TRANSPORT_WEBSOCKET;
    rec_client_callbacks(&k->cfg, &k->rec);
    slog_attach(&k->cfg);
}

int cli_start(cli *k)
{
    return client_create_start(&k->cfg, &k->c);
}

void cli_free(cli *k)
{
    tether_client_destroy(k->c);
    k->c = NULL;
    if (tt_failed_checks) {
        slog_dump("the test failed");
    }
    rec_free(&k->rec);
}

void srv_init(srv *v)
{
    memset(v, 0, sizeof *v);
    rec_init(&v->rec);
    tether_server_config_init(&v->cfg);
    rec_server_callbacks(&v->cfg, &v->rec);
}

int srv_start(srv *v)
{
    v->cfg.port = v->port;
    int rc = server_create_start(&v->cfg, &v->s);
    if (v->s) {
        v->port = tether_server_port(v->s);
    }
    return rc;
}

void srv_free(srv *v)
{
    tether_server_destroy(v->s);
    v->s = NULL;
    rec_free(&v->rec);
}

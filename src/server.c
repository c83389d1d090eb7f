/*
 * The tether server object: sessions by id, each with its own engine and
 * outbox, connections that become sessions on HELLO, and the public server API.
 *
 * Locking: s->lock (recursive) guards the session table and every engine; the
 * service thread takes it in each transport callback, application threads in
 * each API call. Engines of offline sessions stay loaded, so a send to an
 * offline session only touches the store and memory.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <tether/tether.h>

#include "killpoint.h"
#include "link.h"
#include "session.h"
#include "store.h"
#include "transport.h"
#include "defaults.h"
#include "util.h"

#define SESSION_QUEUE_BYTES (1u << 20)
#define BUCKETS 4096u
#define SHUTDOWN_WAIT_MS 500

typedef struct srv_conn srv_conn;

typedef struct srv_session {
    tether_session_id id;     /* the session id */
    tether__engine *engine;   /* its engine */
    srv_conn *conn;           /* the connection it lives on, or NULL when offline */
    int dirty;                /* on the wake list: new messages to write */
    struct srv_session *next; /* hash chain */
    struct srv_session *next_dirty; /* wake list */
} srv_session;

struct srv_conn {
    tether__conn *conn;       /* the transport connection */
    srv_session *sess;        /* the session after HELLO, else NULL */
    uint64_t hello_deadline;  /* HELLO must arrive by then */
    int closing;              /* close after the queued frames */
    int opened;               /* on_session_open was reported for this connection */
    int pending;              /* counted in tether_server.pending (upgraded, no HELLO yet) */
    int error;                /* why we close it, for on_session_close */
    tether__buf pre[2];       /* frames queued before a session exists (REJECT, WELCOME+BYE) */
    int npre;                 /* frames in pre */
    int ipre;                 /* next frame of pre to write */
};

struct tether_server {
    tether_server_config cfg; /* copy of the configuration, defaults filled */
    char *host;               /* owned listen host */
    char *db_path;            /* owned db path or NULL */
    pthread_mutex_t lock;     /* recursive; guards everything below */
    tether__store *store;     /* sessions and outboxes */
    tether__engine_cfg ecfg;  /* engine configuration shared by all sessions */
    tether__tp *tp;           /* transport */
    tether__decoder dec;      /* decodes HELLO before a session exists */
    tether__buf out;          /* frame being written */
    srv_session *table[BUCKETS]; /* sessions by id */
    srv_session *dirty;       /* sessions with something new to write */
    uint32_t connected;       /* sessions live now */
    uint32_t pending;         /* upgraded connections that have not sent HELLO */
    char *strs;               /* owned copies of the TLS file names and allowed origins */
    const char **origins;     /* owned copy of cfg.allowed_origins (pointers into strs) */
    int started;              /* the service thread runs */
    int stopping;             /* destroy() in progress */
};

static void lock(tether_server *s)
{
    pthread_mutex_lock(&s->lock);
}

static void unlock(tether_server *s)
{
    pthread_mutex_unlock(&s->lock);
}

static unsigned bucket(const uint8_t id[16])
{
    unsigned h = 2166136261u;
    for (int i = 0; i < 16; i++) {
        h = (h ^ id[i]) * 16777619u;
    }
    return h % BUCKETS;
}

/* ---- engine events ---- */

static tether_server *srv_of(srv_session *ss);

static void ev_message(void *arg, uint64_t seq, const uint8_t *data, size_t len, int redelivered)
{
    srv_session *ss = arg;
    tether_server *s = srv_of(ss);
    if (s->cfg.cb.on_message) {
        s->cfg.cb.on_message(s, &ss->id, seq, data, len, redelivered, s->cfg.user);
    }
}

static void ev_acked(void *arg, uint64_t first, uint64_t last)
{
    srv_session *ss = arg;
    tether_server *s = srv_of(ss);
    if (s->cfg.cb.on_acked) {
        s->cfg.cb.on_acked(s, &ss->id, first, last, s->cfg.user);
    }
}

static void ev_mismatch(void *arg, const tether_mismatch_info *info)
{
    srv_session *ss = arg;
    tether_server *s = srv_of(ss);
    if (s->cfg.cb.on_mismatch) {
        s->cfg.cb.on_mismatch(s, info, s->cfg.user);
    }
}

/* Sessions find their server through this allocation layout. */
typedef struct srv_session_alloc {
    srv_session sess;     /* must come first */
    tether_server *srv;   /* owner */
} srv_session_alloc;

static tether_server *srv_of(srv_session *ss)
{
    return ((srv_session_alloc *)ss)->srv;
}

/* ---- the session table (lock held) ---- */

static srv_session *find(tether_server *s, const uint8_t id[16])
{
    for (srv_session *ss = s->table[bucket(id)]; ss; ss = ss->next) {
        if (memcmp(ss->id.bytes, id, 16) == 0) {
            return ss;
        }
    }
    return NULL;
}

static int add_session(tether_server *s, const tether__session_rec *rec, srv_session **out)
{
    srv_session_alloc *a = calloc(1, sizeof *a);
    if (!a) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    a->srv = s;
    memcpy(a->sess.id.bytes, rec->id, 16);
    tether__engine_cb cb = {ev_message, ev_acked, ev_mismatch, &a->sess};
    int rc = tether__engine_create(&s->ecfg, s->store, rec, &cb, &a->sess.engine);
    if (rc != TETHER_OK) {
        free(a);
        return rc;
    }
    unsigned b = bucket(rec->id);
    a->sess.next = s->table[b];
    s->table[b] = &a->sess;
    *out = &a->sess;
    return TETHER_OK;
}

/* Finds a session in memory or loads it from the store: TETHER_OK, TETHER_ENOTFOUND, error. */
static int lookup(tether_server *s, const uint8_t id[16], srv_session **out)
{
    tether__session_rec rec;
    *out = find(s, id);
    if (*out) {
        return TETHER_OK;
    }
    int rc = s->store->ops->session_get(s->store, id, &rec);
    if (rc == TETHER_ENOTFOUND) {
        return tether__fail(rc, "no such session");
    }
    if (rc != TETHER_OK) {
        return tether__fail(rc, "cannot read the session: %s", s->store->ops->errmsg(s->store));
    }
    return add_session(s, &rec, out);
}

static void mark_dirty(tether_server *s, srv_session *ss)
{
    if (!ss->dirty) {
        ss->dirty = 1;
        ss->next_dirty = s->dirty;
        s->dirty = ss;
    }
}

/* ---- connections (service thread, lock held) ---- */

static void close_conn(srv_conn *sc, int error)
{
    if (!sc->closing) {
        sc->closing = 1;
        sc->error = error;
    }
    tether__conn_want_write(sc->conn);
}

/* Queues a frame for a connection that has no session yet. */
static int queue_pre(srv_conn *sc, int (*encode)(tether__buf *, uint32_t, const char *),
                     uint32_t code, const char *reason)
{
    if (sc->npre >= 2) {
        return TETHER_EINVAL;
    }
    tether__buf *b = &sc->pre[sc->npre];
    int rc = encode(b, code, reason);
    if (rc == TETHER_OK) {
        sc->npre++;
    }
    return rc;
}

static void reject(tether_server *s, srv_conn *sc, uint32_t code, int error, const char *reason)
{
    queue_pre(sc, tether__encode_reject, code, reason);
    close_conn(sc, error);
}

static void detach(tether_server *s, srv_session *ss, int error)
{
    srv_conn *old = ss->conn;
    if (!old) {
        return;
    }
    tether__engine_disconnect(ss->engine);
    ss->conn = NULL;
    old->sess = NULL;
    s->connected--;
    if (old->opened && s->cfg.cb.on_session_close) {
        s->cfg.cb.on_session_close(s, &ss->id, error, s->cfg.user);
    }
}

static void handle_hello(tether_server *s, srv_conn *sc, const tether__hello *h, uint64_t now)
{
    srv_session *ss = NULL;
    uint8_t hash[32];
    tether__engine_event ev;
    int rc;

    if (h->version != TETHER__PROTO_VERSION) {
        reject(s, sc, TETHER_REJECT_VERSION, TETHER_EVERSION, "unsupported protocol version");
        return;
    }
    if (s->stopping) {
        reject(s, sc, TETHER_REJECT_SHUTDOWN, TETHER_ECLOSED, "the server is shutting down");
        return;
    }
    srv_session *known = find(s, h->session_id);
    if (s->connected >= s->cfg.max_sessions && !(known && known->conn)) {
        /* a session coming back on a new connection replaces its old one */
        reject(s, sc, TETHER_REJECT_LIMIT, TETHER_ELIMIT, "too many sessions");
        return;
    }
    if (tether__sha256(h->token, sizeof h->token, hash) != TETHER_OK) {
        reject(s, sc, TETHER_REJECT_STORE, TETHER_ENOMEM, "server error");
        return;
    }
    rc = lookup(s, h->session_id, &ss);
    if (rc == TETHER_ENOTFOUND) {
        if (h->resume) {
            /* the client was welcomed before, but we have no record: never paper over it */
            tether_mismatch_info mi;
            tether__welcome w;
            memset(&mi, 0, sizeof mi);
            memcpy(mi.session.bytes, h->session_id, 16);
            mi.peer_knows_session = 1;
            mi.peer_out_last = h->out_last;
            mi.peer_recv_cursor = h->recv_cursor;
            mi.unknown_received = 0;
            if (s->cfg.cb.on_mismatch) {
                s->cfg.cb.on_mismatch(s, &mi, s->cfg.user);
            }
            memset(&w, 0, sizeof w);
            memcpy(w.session_id, h->session_id, 16);
            w.max_message = s->ecfg.max_message;
            w.window = s->ecfg.window;
            if (tether__encode_welcome(&sc->pre[0], &w) == TETHER_OK) {
                sc->npre = 1;
            }
            queue_pre(sc, tether__encode_bye, TETHER_REJECT_MISMATCH,
                      "the server has no record of this session");
            close_conn(sc, TETHER_EMISMATCH);
            return;
        }
        tether__session_rec rec;
        memset(&rec, 0, sizeof rec);
        memcpy(rec.id, h->session_id, 16);
        memcpy(rec.token, hash, 32);
        rc = s->store->ops->session_put(s->store, &rec);
        TETHER__KILLPOINT("server.after_session_create");
        if (rc == TETHER_OK) {
            rc = add_session(s, &rec, &ss);
        }
    }
    if (rc != TETHER_OK) {
        reject(s, sc, TETHER_REJECT_STORE, rc, "the server's store failed");
        return;
    }
    if (tether__ct_memcmp(tether__engine_rec(ss->engine)->token, hash, 32) != 0) {
        reject(s, sc, TETHER_REJECT_TOKEN, TETHER_ETOKEN, "wrong resume token");
        return;
    }
    if (ss->conn) {
        /* the client came back before we noticed its old connection die */
        srv_conn *old = ss->conn;
        detach(s, ss, TETHER_EPEER_CLOSED);
        close_conn(old, TETHER_EPEER_CLOSED);
    }
    int resumed = tether__engine_rec(ss->engine)->established;
    memset(&ev, 0, sizeof ev);
    rc = tether__engine_accept(ss->engine, h, now, &ev);
    ss->conn = sc;
    sc->sess = ss;
    s->connected++;
    tether__conn_timer_cancel(sc->conn);
    if (ev.close || rc != TETHER_OK) {
        close_conn(sc, ev.error ? ev.error : rc);
        return;
    }
    sc->opened = 1;
    if (s->cfg.cb.on_session_open) {
        s->cfg.cb.on_session_open(s, &ss->id, resumed, s->cfg.user);
    }
    tether__conn_want_write(sc->conn);
}

static void on_open(void *owner, tether__conn *conn)
{
    tether_server *s = owner;
    srv_conn *sc = calloc(1, sizeof *sc);
    if (!sc) {
        tether__conn_close(conn);
        return;
    }
    lock(s);
    sc->conn = conn;
    tether__buf_init(&sc->pre[0], tether__tp_headroom());
    tether__buf_init(&sc->pre[1], tether__tp_headroom());
    sc->hello_deadline = tether__now_ms() + s->cfg.hello_timeout_ms;
    sc->pending = 1;
    s->pending++;
    tether__conn_set_user(conn, sc);
    tether__conn_timer(conn, s->cfg.hello_timeout_ms);
    unlock(s);
}

static void on_message(void *owner, tether__conn *conn, const uint8_t *buf, size_t len, int err)
{
    tether_server *s = owner;
    srv_conn *sc = tether__conn_user(conn);
    uint64_t now = tether__now_ms();
    tether__frame f;
    tether__engine_event ev;

    if (!sc) {
        return;
    }
    lock(s);
    if (sc->closing) {
        unlock(s);
        return;
    }
    if (sc->sess) {
        tether__engine *e = sc->sess->engine;
        if (err) {
            tether__engine_bye(e, tether__link_close_code(err), tether_strerror(err));
            close_conn(sc, err);
        } else {
            memset(&ev, 0, sizeof ev);
            tether__engine_on_frame(e, buf, len, now, &ev);
            if (ev.close) {
                int graceful = ev.error == TETHER_EPEER_CLOSED && ev.peer_code == TETHER_REJECT_NONE;
                close_conn(sc, graceful ? TETHER_OK : ev.error);
            } else if (tether__engine_want_write(e, now)) {
                tether__conn_want_write(conn);
            }
            tether__link_arm(e, conn, now, UINT64_MAX);
        }
        unlock(s);
        return;
    }
    /* no session yet: the first frame must be HELLO */
    if (sc->pending) {
        sc->pending = 0;
        s->pending--;
    }
    int rc = err ? err : tether__decode(&s->dec, buf, len, &f);
    if (rc != TETHER_OK) {
        queue_pre(sc, tether__encode_bye, tether__link_close_code(rc), tether_strerror(rc));
        close_conn(sc, rc);
    } else if (f.type != TETHER__F_HELLO) {
        queue_pre(sc, tether__encode_bye, TETHER_REJECT_PROTOCOL, "the first frame must be HELLO");
        close_conn(sc, TETHER_EPROTO);
    } else {
        handle_hello(s, sc, &f.u.hello, now);
    }
    unlock(s);
}

static void on_writable(void *owner, tether__conn *conn)
{
    tether_server *s = owner;
    srv_conn *sc = tether__conn_user(conn);
    if (!sc) {
        return;
    }
    lock(s);
    if (sc->ipre < sc->npre) {
        if (tether__conn_write(conn, &sc->pre[sc->ipre++]) != TETHER_OK) {
            tether__conn_close(conn);
        } else {
            tether__conn_want_write(conn);
        }
    } else if (sc->sess) {
        tether__engine_event why;
        if (tether__link_pump(sc->sess->engine, conn, &s->out, tether__now_ms(), sc->closing,
                              &why) != TETHER_OK &&
            !sc->closing) {
            sc->closing = 1;
            sc->error = why.error;
        }
    } else if (sc->closing) {
        tether__conn_close(conn);
    }
    unlock(s);
}

static void on_closed(void *owner, tether__conn *conn, const tether__tp_close *why)
{
    tether_server *s = owner;
    srv_conn *sc = tether__conn_user(conn);
    if (!sc) {
        return;
    }
    lock(s);
    if (sc->pending) {
        sc->pending = 0;
        s->pending--;
    }
    if (sc->sess && sc->sess->conn == sc) {
        /* when we chose to close, our reason stands (TETHER_OK for a BYE(0) from the client) */
        detach(s, sc->sess, sc->closing ? sc->error : why->error);
    }
    tether__conn_set_user(conn, NULL);
    tether__buf_free(&sc->pre[0]);
    tether__buf_free(&sc->pre[1]);
    free(sc);
    unlock(s);
}

static void on_wake(void *owner)
{
    tether_server *s = owner;
    uint64_t now = tether__now_ms();
    lock(s);
    srv_session *ss = s->dirty;
    s->dirty = NULL;
    while (ss) {
        srv_session *next = ss->next_dirty;
        ss->dirty = 0;
        ss->next_dirty = NULL;
        if (ss->conn && (ss->conn->closing || tether__engine_want_write(ss->engine, now))) {
            tether__conn_want_write(ss->conn->conn);
        }
        ss = next;
    }
    unlock(s);
}

static void on_timer(void *owner, tether__conn *conn)
{
    tether_server *s = owner;
    uint64_t now = tether__now_ms();
    if (!conn) {
        return;
    }
    srv_conn *sc = tether__conn_user(conn);
    if (!sc) {
        return;
    }
    lock(s);
    if (!sc->sess) {
        if (now >= sc->hello_deadline && !sc->closing) {
            sc->closing = 1;
            sc->error = TETHER_ETIMEDOUT;
            tether__conn_close(conn);
        }
    } else {
        tether__engine_tick(sc->sess->engine, now);
        if (tether__engine_want_write(sc->sess->engine, now)) {
            tether__conn_want_write(conn);
        }
        tether__link_arm(sc->sess->engine, conn, now, UINT64_MAX);
    }
    unlock(s);
}

/* ---- public API ---- */

void tether_server_config_init(tether_server_config *cfg)
{
    if (cfg) {
        memset(cfg, 0, sizeof *cfg);
    }
}

static int check_config(tether_server_config *k)
{
    if (k->durability < TETHER_DURABILITY_DEFAULT || k->durability > TETHER_DURABILITY_FULL) {
        return tether__fail(TETHER_ECONFIG, "durability %d is not one of the tether_durability values",
                            (int)k->durability);
    }
    k->listen_host = k->listen_host && *k->listen_host ? k->listen_host : TETHER__DEFAULT_HOST;
    k->max_sessions = k->max_sessions ? k->max_sessions : TETHER__DEFAULT_MAX_SESSIONS;
    k->hello_timeout_ms = k->hello_timeout_ms ? k->hello_timeout_ms : TETHER__DEFAULT_HELLO_TIMEOUT_MS;
    k->ping_interval_ms = k->ping_interval_ms ? k->ping_interval_ms : TETHER__DEFAULT_PING_INTERVAL_MS;
    k->pong_timeout_ms = k->pong_timeout_ms ? k->pong_timeout_ms : TETHER__DEFAULT_PONG_TIMEOUT_MS;
    if (k->ping_interval_ms < 1000 || k->pong_timeout_ms < 1000) {
        return tether__fail(TETHER_ECONFIG,
                            "ping_interval_ms and pong_timeout_ms must be at least 1000");
    }
    k->max_pending_handshakes = k->max_pending_handshakes ? k->max_pending_handshakes
                                                          : TETHER__DEFAULT_MAX_PENDING_HANDSHAKES;
    k->handshake_timeout_ms =
        k->handshake_timeout_ms ? k->handshake_timeout_ms : TETHER__DEFAULT_HANDSHAKE_TIMEOUT_MS;
    k->busy_retry_after_s =
        k->busy_retry_after_s ? k->busy_retry_after_s : TETHER__DEFAULT_BUSY_RETRY_AFTER_S;
    const char *files[][2] = {{"tls_cert_file", k->tls_cert_file},
                              {"tls_key_file", k->tls_key_file},
                              {"tls_client_ca_file", k->tls_client_ca_file}};
    for (size_t i = 0; i < 3; i++) {
        if (files[i][1] && access(files[i][1], R_OK) != 0) {
            return tether__fail(TETHER_ECONFIG, "cannot read %s '%s': %s", files[i][0], files[i][1],
                                strerror(errno));
        }
    }
    if (!k->tls_cert_file != !k->tls_key_file ||
        (k->tls_client_ca_file && !k->tls_cert_file)) {
        return tether__fail(TETHER_ECONFIG, "tls_cert_file and tls_key_file go together, and "
                                            "tls_client_ca_file needs them");
    }
    for (const char *const *o = k->allowed_origins; o && *o; o++) {
        if (!**o || strpbrk(*o, "\r\n")) {
            return tether__fail(TETHER_ECONFIG, "allowed_origins holds an empty or multi-line entry");
        }
    }
    return TETHER_OK;
}

/* Copies the TLS file names and the Origin allow-list into s->strs. */
static int copy_strings(tether_server *s)
{
    const char **fields[] = {&s->cfg.tls_cert_file, &s->cfg.tls_key_file,
                             &s->cfg.tls_client_ca_file};
    size_t need = 1, no = 0, off = 0;
    for (size_t i = 0; i < 3; i++) {
        need += *fields[i] ? strlen(*fields[i]) + 1 : 0;
    }
    for (const char *const *o = s->cfg.allowed_origins; o && *o; o++) {
        need += strlen(*o) + 1;
        no++;
    }
    s->strs = malloc(need);
    s->origins = s->cfg.allowed_origins ? calloc(no + 1, sizeof *s->origins) : NULL;
    if (!s->strs || (s->cfg.allowed_origins && !s->origins)) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < 3; i++) {
        if (*fields[i]) {
            size_t n = strlen(*fields[i]) + 1;
            memcpy(s->strs + off, *fields[i], n);
            *fields[i] = s->strs + off;
            off += n;
        }
    }
    for (size_t i = 0; i < no; i++) {
        size_t n = strlen(s->cfg.allowed_origins[i]) + 1;
        memcpy(s->strs + off, s->cfg.allowed_origins[i], n);
        s->origins[i] = s->strs + off;
        off += n;
    }
    if (s->origins) {
        s->cfg.allowed_origins = s->origins;
    }
    return TETHER_OK;
}

/* ---- admission (service thread) ---- */

struct tether_handshake {
    tether__tp_hs *t;         /* the transport's request */
    char arena[4096];         /* copies of the header values handed out */
    size_t used;              /* bytes of arena in use */
    char path[1024];          /* the request path */
    char peer[64];            /* the peer's address */
    char reply[512];          /* extra refusal headers, "Name: value\r\n" lines */
    int nreply;               /* headers in reply */
};

const char *tether_handshake_header(const tether_handshake *hs, const char *name)
{
    tether_handshake *h = (tether_handshake *)hs;
    if (!h || !name || !*name || h->used + 2 >= sizeof h->arena) {
        return NULL;
    }
    const char *v = tether__tp_hs_header(h->t, name, h->arena + h->used,
                                         sizeof h->arena - h->used);
    if (v) {
        h->used += strlen(v) + 1;
    }
    return v;
}

const char *tether_handshake_path(const tether_handshake *hs)
{
    return hs ? hs->path : "";
}

const char *tether_handshake_peer(const tether_handshake *hs)
{
    return hs ? hs->peer : "";
}

int tether_handshake_reply_header(tether_handshake *hs, const char *name, const char *value)
{
    if (!hs || !name || !value || !*name || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n") ||
        hs->nreply >= 4) {
        return tether__fail(TETHER_EINVAL, "bad header, or 4 headers already");
    }
    size_t n = strlen(hs->reply);
    int w = snprintf(hs->reply + n, sizeof hs->reply - n, "%s: %s\r\n", name, value);
    if (w < 0 || (size_t)w >= sizeof hs->reply - n) {
        hs->reply[n] = '\0';
        return tether__fail(TETHER_EINVAL, "no room for the header");
    }
    hs->nreply++;
    return TETHER_OK;
}

/* The transport's admit callback: Origin allow-list, handshake cap, the app's hook. */
static int admit(void *owner, tether__tp_hs *t, char *reply, size_t reply_len)
{
    tether_server *s = owner;
    tether_handshake *hs = calloc(1, sizeof *hs);
    int st = 0;

    if (!hs) {
        return 503;
    }
    hs->t = t;
    tether__tp_hs_path(t, hs->path, sizeof hs->path);
    tether__tp_hs_peer(t, hs->peer, sizeof hs->peer);
    lock(s);
    if (s->stopping) {
        st = 503;
    } else if (s->cfg.allowed_origins) {
        const char *origin = tether_handshake_header(hs, "Origin");
        st = 403;
        for (const char *const *o = s->cfg.allowed_origins; origin && *o; o++) {
            if (strcasecmp(*o, origin) == 0) {
                st = 0;
                break;
            }
        }
    }
    if (!st && s->pending >= s->cfg.max_pending_handshakes) {
        /* a slow-loris peer cannot hold more than the cap; tell clients when to come back */
        st = 503;
        snprintf(reply, reply_len, "Retry-After: %u\r\n", s->cfg.busy_retry_after_s);
    } else if (!st && s->cfg.cb.on_handshake) {
        st = s->cfg.cb.on_handshake(s, hs, s->cfg.user);
        if (st && (st < 400 || st > 599)) {
            st = 403;
        }
        if (st) {
            snprintf(reply, reply_len, "%s", hs->reply);
        }
    }
    unlock(s);
    free(hs);
    return st;
}

int tether_server_create(const tether_server_config *cfg, tether_server **out)
{
    static const tether__tp_cb cb = {on_open,  on_message, on_writable, on_closed,
                                     on_wake,  on_timer,   admit};
    tether_server *s;
    pthread_mutexattr_t ma;
    tether__tp_cfg tc;
    int rc;

    if (!out) {
        return tether__fail(TETHER_EINVAL, "out is NULL");
    }
    *out = NULL;
    if (!cfg) {
        return tether__fail(TETHER_EINVAL, "cfg is NULL");
    }
    s = calloc(1, sizeof *s);
    if (!s) {
        return tether__fail(TETHER_ENOMEM, "out of memory");
    }
    s->cfg = *cfg;
    rc = check_config(&s->cfg);
    if (rc == TETHER_OK) {
        rc = tether__link_engine_cfg(&s->ecfg, TETHER__ROLE_SERVER, cfg->max_message_bytes,
                                     cfg->window_messages, cfg->ack_every, cfg->ack_delay_ms,
                                     cfg->outbox_max_messages, cfg->outbox_max_bytes,
                                     cfg->manual_ack, SESSION_QUEUE_BYTES);
    }
    if (rc == TETHER_OK) {
        rc = copy_strings(s);
    }
    if (rc != TETHER_OK) {
        free(s->strs);
        free(s->origins);
        free(s);
        return rc;
    }
    s->host = strdup(s->cfg.listen_host);
    s->db_path = cfg->db_path ? strdup(cfg->db_path) : NULL;
    if (!s->host || (cfg->db_path && !s->db_path)) {
        rc = tether__fail(TETHER_ENOMEM, "out of memory");
        goto fail;
    }
    s->cfg.listen_host = s->host;
    s->cfg.db_path = s->db_path;
    if (s->db_path) {
        char err[256] = "";
        rc = tether__store_sqlite_open(s->db_path, TETHER__ROLE_SERVER, s->cfg.durability,
                                       &s->store, err, sizeof err);
        if (rc != TETHER_OK) {
            tether__fail(rc, "cannot open the store %s: %s", s->db_path, err);
            goto fail;
        }
    } else if ((rc = tether__store_memory_open(TETHER__ROLE_SERVER, &s->store)) != TETHER_OK) {
        tether__fail(rc, "cannot create the memory store");
        goto fail;
    }
    if ((rc = tether__decoder_init(&s->dec, s->ecfg.max_message)) != TETHER_OK) {
        tether__fail(rc, "out of memory");
        goto fail;
    }
    tether__buf_init(&s->out, tether__tp_headroom());
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&s->lock, &ma);
    pthread_mutexattr_destroy(&ma);

    memset(&tc, 0, sizeof tc);
    tc.listen_host = s->host;
    tc.listen_port = s->cfg.port;
    tc.max_rx = s->ecfg.max_message + 1024;
    tc.ping_interval_ms = s->cfg.ping_interval_ms;
    tc.pong_timeout_ms = s->cfg.pong_timeout_ms;
    tc.connect_timeout_ms = s->cfg.handshake_timeout_ms;
    tc.tls_server_cert = s->cfg.tls_cert_file;
    tc.tls_server_key = s->cfg.tls_key_file;
    tc.tls_client_ca = s->cfg.tls_client_ca_file;
    rc = tether__tp_create(&tc, &cb, s, &s->tp);
    if (rc != TETHER_OK) {
        pthread_mutex_destroy(&s->lock);
        tether__decoder_free(&s->dec);
        tether__buf_free(&s->out);
        goto fail;
    }
    *out = s;
    return TETHER_OK;

fail:
    if (s->store) {
        s->store->ops->close(s->store);
    }
    free(s->host);
    free(s->db_path);
    free(s->strs);
    free(s->origins);
    free(s);
    return rc;
}

uint16_t tether_server_port(tether_server *s)
{
    return s ? (uint16_t)tether__tp_port(s->tp) : 0;
}

int tether_server_start(tether_server *s)
{
    if (!s) {
        return tether__fail(TETHER_EINVAL, "server is NULL");
    }
    lock(s);
    int rc = s->started ? tether__fail(TETHER_EINVAL, "the server is already started")
                        : tether__tp_start(s->tp);
    if (rc == TETHER_OK) {
        s->started = 1;
    }
    unlock(s);
    return rc;
}

int tether_server_send_batch(tether_server *s, const tether_session_id *id,
                             const tether_msg *msgs, size_t n, uint64_t *first_seq)
{
    srv_session *ss;
    int rc, live;
    if (!s || !id || (!msgs && n) || n == 0) {
        return tether__fail(TETHER_EINVAL, "server, id or messages missing");
    }
    lock(s);
    if (s->stopping) {
        unlock(s);
        return tether__fail(TETHER_ECLOSED, "the server is shutting down");
    }
    rc = lookup(s, id->bytes, &ss);
    if (rc == TETHER_OK) {
        rc = tether__engine_send(ss->engine, msgs, n, first_seq);
        if (rc != TETHER_OK) {
            tether__fail(rc, "send failed: %s", tether_strerror(rc));
        }
    }
    live = rc == TETHER_OK && ss->conn != NULL;
    if (live) {
        mark_dirty(s, ss);
    }
    unlock(s);
    if (live) {
        tether__tp_wake(s->tp);
    }
    return rc;
}

int tether_server_send(tether_server *s, const tether_session_id *id, const void *data,
                       size_t len, uint64_t *seq)
{
    tether_msg m = {data, len};
    if (!data && len) {
        return tether__fail(TETHER_EINVAL, "data is NULL");
    }
    return tether_server_send_batch(s, id, &m, 1, seq);
}

int tether_server_ack(tether_server *s, const tether_session_id *id, uint64_t seq)
{
    srv_session *ss;
    if (!s || !id) {
        return tether__fail(TETHER_EINVAL, "server or id is NULL");
    }
    lock(s);
    int rc = lookup(s, id->bytes, &ss);
    if (rc == TETHER_OK) {
        rc = tether__engine_ack(ss->engine, seq, tether__now_ms());
        if (rc == TETHER_OK && ss->conn) {
            mark_dirty(s, ss);
        }
    }
    unlock(s);
    if (rc == TETHER_OK) {
        tether__tp_wake(s->tp);
    }
    return rc;
}

int tether_server_acked(tether_server *s, const tether_session_id *id, uint64_t *seq)
{
    srv_session *ss;
    if (!s || !id || !seq) {
        return tether__fail(TETHER_EINVAL, "server, id or seq is NULL");
    }
    lock(s);
    int rc = lookup(s, id->bytes, &ss);
    if (rc == TETHER_OK) {
        *seq = tether__engine_rec(ss->engine)->peer_acked;
    }
    unlock(s);
    return rc;
}

int tether_server_pending(tether_server *s, const tether_session_id *id, uint64_t *count,
                          uint64_t *bytes)
{
    srv_session *ss;
    uint64_t n = 0, b = 0;
    if (!s || !id) {
        return tether__fail(TETHER_EINVAL, "server or id is NULL");
    }
    lock(s);
    int rc = lookup(s, id->bytes, &ss);
    if (rc == TETHER_OK) {
        tether__engine_pending(ss->engine, &n, &b);
    }
    unlock(s);
    if (count) {
        *count = n;
    }
    if (bytes) {
        *bytes = b;
    }
    return rc;
}

int tether_server_connected(tether_server *s, uint32_t *count)
{
    if (!s || !count) {
        return tether__fail(TETHER_EINVAL, "server or count is NULL");
    }
    lock(s);
    *count = s->connected;
    unlock(s);
    return TETHER_OK;
}

void tether_server_destroy(tether_server *s)
{
    if (!s) {
        return;
    }
    lock(s);
    s->stopping = 1;
    int live = 0;
    if (s->started) {
        for (unsigned b = 0; b < BUCKETS; b++) {
            for (srv_session *ss = s->table[b]; ss; ss = ss->next) {
                if (ss->conn && !ss->conn->closing) {
                    tether__engine_bye(ss->engine, TETHER_REJECT_SHUTDOWN, "server shutting down");
                    ss->conn->closing = 1;
                    ss->conn->error = TETHER_ECLOSED;
                    mark_dirty(s, ss);
                    live++;
                }
            }
        }
    }
    unlock(s);
    if (live) {
        /* let the BYEs go out: bounded, the clients will resume anyway */
        tether__tp_wake(s->tp);
        for (int i = 0; i < SHUTDOWN_WAIT_MS / 5; i++) {
            uint32_t n;
            tether_server_connected(s, &n);
            if (n == 0) {
                break;
            }
            struct timespec ts = {0, 5 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    /* joins the service thread; connections still open report closed from here */
    tether__tp_destroy(s->tp);
    for (unsigned b = 0; b < BUCKETS; b++) {
        srv_session *ss = s->table[b];
        while (ss) {
            srv_session *next = ss->next;
            tether__engine_destroy(ss->engine);
            free(ss); /* the allocation starts with the session */
            ss = next;
        }
    }
    tether__decoder_free(&s->dec);
    tether__buf_free(&s->out);
    s->store->ops->close(s->store);
    pthread_mutex_destroy(&s->lock);
    free(s->host);
    free(s->db_path);
    free(s->strs);
    free(s->origins);
    free(s);
}

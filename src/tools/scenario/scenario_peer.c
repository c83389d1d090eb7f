/*
 * The scenario suite's peers: `tether scenario peer client ...` and
 * `tether scenario peer server ...`. Each runs a real tether client or server on
 * a SQLite store, generates its side of a known stream (payloads derived from
 * the seq), checks every message it receives, and appends every event to its
 * record file (format in scenario.h). They are started, killed and restarted
 * by the runner; restarted on the same store they go on where the store says.
 *
 * In the fleet scenarios (scenario_fleet.c) the servers are instances of one
 * PostgreSQL database (--db postgresql://...): every instance records what it
 * delivers, and only the one given --send streams the server's messages, to
 * the session wherever it is attached (it finds the session in the database).
 */
#include "scenario.h"

#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

size_t scen_size(size_t base, uint64_t seq, int tag)
{
    if (base >= PAYLOAD_MIN) {
        return base;
    }
    uint64_t h = seq * 2 + (tag == TAG_S2C);
    h = tether__rng_next(&h);
    if (h % 400 == 7) {
        return 66000 + (size_t)(h >> 20) % 12000;
    }
    return PAYLOAD_MIN + (size_t)(h >> 20) % 2048;
}

void scen_payload(uint8_t *p, size_t size, uint64_t seq, int tag)
{
    cli_put_be64(p, seq);
    p[8] = (uint8_t)tag;
    for (size_t i = 9; i < size; i++) {
        p[i] = (uint8_t)(seq * 131u + i * 7u + (unsigned)tag);
    }
}

int scen_payload_ok(const uint8_t *p, size_t len, size_t size, uint64_t seq, int tag)
{
    if (len != size || len < PAYLOAD_MIN || cli_get_be64(p) != seq || p[8] != (uint8_t)tag) {
        return 0;
    }
    for (size_t i = 9; i < size; i++) {
        if (p[i] != (uint8_t)(seq * 131u + i * 7u + (unsigned)tag)) {
            return 0;
        }
    }
    return 1;
}

/* ---- options ---- */

typedef struct peer_opts {
    int server;            /* role */
    const char *db;        /* --db */
    const char *record;    /* --record */
    const char *urls[17];  /* --url, repeatable (client): tried in turn, NULL-terminated */
    int nurls;             /* how many */
    const char *port_file; /* --port-file (server) */
    uint64_t send;         /* --send: messages this side sends in total */
    uint64_t expect;       /* --expect: messages the peer sends in total */
    uint64_t pace;  /* server --pace: send in step with this many client messages; 0 at once */
    uint64_t limit; /* server --limit: send at most this many for now */
    uint64_t rate;  /* --rate: messages per second, 0 as fast as possible (server: besides pace) */
    uint64_t lease_ms;    /* server --lease-ms: PostgreSQL lease (0: the library's default) */
    uint64_t max_pending; /* client --max-pending: pause while this many unacked, 0 none */
    uint64_t size;        /* --size */
    uint64_t ping_ms;     /* --ping-ms */
    uint64_t pong_ms;     /* --pong-ms */
    uint64_t welcome_ms;  /* --welcome-ms (client) */
    uint64_t timeout_ms;  /* --timeout-ms: give up (client) */
    uint64_t seed;        /* --seed (client backoff jitter) */
    tether_durability durability;    /* --durability */
    tether_transport_mode transport; /* --transport auto|websocket|http (client) */
} peer_opts;

/* What the callbacks share with the main thread. */
typedef struct peer_state {
    pthread_mutex_t mu;        /* guards the fields below */
    uint64_t delivered;        /* highest seq received (from the store cursor at start) */
    int connected;             /* connected at least once in this process */
    int stopped;               /* the client stopped for good */
    int have_session;          /* server: the session id is known */
    tether_session_id session; /* server: the client's session */
    size_t size;               /* payload size */
    int tag;                   /* tag of the messages we receive */
} peer_state;

static peer_state ps = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void got_message(uint64_t seq, const void *data, size_t len, int redelivered)
{
    int ok = scen_payload_ok(data, len, scen_size(ps.size, seq, ps.tag), seq, ps.tag);
    scen_record("D %llu %d %d", (unsigned long long)seq, redelivered ? 1 : 0, ok);
    pthread_mutex_lock(&ps.mu);
    if (seq > ps.delivered) {
        ps.delivered = seq;
    }
    pthread_mutex_unlock(&ps.mu);
}

/* client callbacks */

static void c_message(tether_client *c, uint64_t seq, const void *data, size_t len, int redelivered,
                      void *user)
{
    got_message(seq, data, len, redelivered);
}

static void c_acked(tether_client *c, uint64_t first, uint64_t last, void *user)
{
    scen_record("A %llu %llu", (unsigned long long)first, (unsigned long long)last);
}

static void c_state(tether_client *c, const tether_state_info *si, void *user)
{
    if (si->state == TETHER_STATE_CONNECTED) {
        scen_record("C %d", si->resumed ? 1 : 0);
        pthread_mutex_lock(&ps.mu);
        ps.connected = 1;
        pthread_mutex_unlock(&ps.mu);
    } else if ((si->state == TETHER_STATE_DISCONNECTED || si->state == TETHER_STATE_STOPPED) &&
               si->error) {
        scen_record("X %s %s", cli_state_name(si->state), tether_err_name(si->error));
        fprintf(stderr, "peer client: %s %s: %s\n", cli_state_name(si->state),
                tether_err_name(si->error), si->detail);
    }
    if (si->state == TETHER_STATE_STOPPED) {
        pthread_mutex_lock(&ps.mu);
        ps.stopped = 1;
        pthread_mutex_unlock(&ps.mu);
    }
}

static void c_mismatch(tether_client *c, const tether_mismatch_info *mi, void *user)
{
    scen_record_mismatch(mi);
}

/* server callbacks */

static void s_open(tether_server *s, const tether_session_id *id, int resumed, void *user)
{
    scen_record("C %d", resumed ? 1 : 0);
    pthread_mutex_lock(&ps.mu);
    if (!ps.have_session) {
        ps.session = *id;
        ps.have_session = 1;
    }
    ps.connected = 1;
    pthread_mutex_unlock(&ps.mu);
}

static void s_message(tether_server *s, const tether_session_id *id, uint64_t seq, const void *data,
                      size_t len, int redelivered, void *user)
{
    got_message(seq, data, len, redelivered);
}

static void s_acked(tether_server *s, const tether_session_id *id, uint64_t first, uint64_t last,
                    void *user)
{
    scen_record("A %llu %llu", (unsigned long long)first, (unsigned long long)last);
}

static void s_mismatch(tether_server *s, const tether_mismatch_info *mi, void *user)
{
    scen_record_mismatch(mi);
}

static void s_close(tether_server *s, const tether_session_id *id, int error, void *user)
{
    scen_record("Z %s", error ? tether_err_name(error) : "-");
}

/* A PostgreSQL store (a fleet instance)? */
static int is_pg(const char *db)
{
    return strncmp(db, "postgresql://", 13) == 0 || strncmp(db, "postgres://", 11) == 0;
}

/* The one session a fleet's database holds, with its out_last: 1 found, 0 none
 * yet, -1 the database cannot be read now (it restarts). */
static int pg_session(const char *db, cli_session_info *si)
{
    const char *role = NULL;
    cli_session_info all[2];
    size_t n = 0;
    char err[512];
    if (cli_store_read(db, &role, all, 2, &n, err, sizeof err) != TETHER_OK) {
        return -1;
    }
    if (n == 1) {
        *si = all[0];
    }
    return n == 1;
}

/* What the store held when this life started. */
typedef struct start_info {
    int have;            /* the store holds exactly one session */
    cli_session_info si; /* it */
} start_info;

/* Appends the S line; 0 or -1. */
static int read_start(const char *db, start_info *out)
{
    memset(out, 0, sizeof *out);
    int rc = scen_record_start(db, &out->si);
    out->have = rc == 1;
    return rc < 0 ? -1 : 0;
}

/* ---- the client ---- */

static int run_client(const peer_opts *o)
{
    start_info st;
    if (read_start(o->db, &st) != 0) {
        return CLI_FAIL;
    }
    ps.delivered = st.have ? st.si.recv_cursor : 0;

    tether_client_config cfg;
    tether_client_config_init(&cfg);
    if (o->nurls == 1) {
        cfg.url = o->urls[0];
    } else {
        cfg.urls = o->urls;
    }
    cfg.db_path = o->db;
    cfg.durability = o->durability;
    cfg.backoff_base_ms = 10;
    cfg.backoff_cap_ms = 200;
    cfg.backoff_reset_ms = 100;
    cfg.connect_timeout_ms = 3000;
    cfg.welcome_timeout_ms = (uint32_t)o->welcome_ms;
    cfg.ping_interval_ms = (uint32_t)o->ping_ms;
    cfg.pong_timeout_ms = (uint32_t)o->pong_ms;
    cfg.random_seed = o->seed;
    cfg.transport = o->transport;
    cfg.cb.on_message = c_message;
    cfg.cb.on_acked = c_acked;
    cfg.cb.on_state = c_state;
    cfg.cb.on_mismatch = c_mismatch;
    tether_client *c = NULL;
    int rc = tether_client_create(&cfg, &c);
    if (rc != TETHER_OK) {
        scen_record("F create %s", tether_err_name(rc));
        fprintf(stderr, "peer client: %s: %s\n", tether_err_name(rc), tether_errmsg());
        return CLI_FAIL;
    }
    rc = tether_client_start(c);
    if (rc != TETHER_OK) {
        scen_record("F start %s", tether_err_name(rc));
        tether_client_destroy(c);
        return CLI_FAIL;
    }
    uint64_t t0 = cli_now_ms(), deadline = t0 + o->timeout_ms;
    uint64_t last = 0, sent_here = 0;
    tether_client_last_seq(c, &last);
    size_t slot = o->size ? (size_t)o->size : SCEN_SIZE_MAX;
    uint8_t *buf = malloc(64 * slot);
    tether_msg msgs[64];
    int status = -1, generated = 0;
    while (status < 0) {
        uint64_t now = cli_now_ms();
        if (cli_stop_requested()) {
            status = PEER_SIGNALED;
            break;
        }
        if (now >= deadline) {
            scen_record("F timeout");
            status = CLI_FAIL;
            break;
        }
        pthread_mutex_lock(&ps.mu);
        int stopped = ps.stopped, connected = ps.connected;
        uint64_t delivered = ps.delivered;
        pthread_mutex_unlock(&ps.mu);
        if (stopped) {
            status = PEER_STOPPED;
            break;
        }
        uint64_t pending = 0, acked = 0;
        tether_client_pending(c, &pending, NULL);
        tether_client_acked(c, &acked);
        if (last < o->send) {
            /* pace: at most rate messages per second since this process started */
            uint64_t allowed = o->rate ? o->rate * (now - t0) / 1000 + 1 : UINT64_MAX;
            uint64_t n = o->send - last;
            if (n > 64) {
                n = 64;
            }
            if (allowed <= sent_here) {
                n = 0;
            } else if (allowed - sent_here < n) {
                n = allowed - sent_here;
            }
            if (o->max_pending && pending >= o->max_pending) {
                n = 0;
            }
            if (n > 0) {
                for (uint64_t i = 0; i < n; i++) {
                    size_t sz = scen_size((size_t)o->size, last + 1 + i, TAG_C2S);
                    scen_payload(buf + i * slot, sz, last + 1 + i, TAG_C2S);
                    msgs[i].data = buf + i * slot;
                    msgs[i].len = sz;
                }
                uint64_t first = 0;
                rc = tether_client_send_batch(c, msgs, (size_t)n, &first);
                if (rc != TETHER_OK) {
                    scen_record("F send %s", tether_err_name(rc));
                    fprintf(stderr, "peer client: send: %s: %s\n", tether_err_name(rc),
                            tether_errmsg());
                    status = CLI_FAIL;
                    break;
                }
                if (first != last + 1) {
                    scen_record("F numbered %llu, expected %llu", (unsigned long long)first,
                                (unsigned long long)(last + 1));
                    status = CLI_FAIL;
                    break;
                }
                last += n;
                sent_here += n;
                continue;
            }
        } else if (!generated) {
            scen_record("G %llu", (unsigned long long)last);
            generated = 1;
        }
        if (last >= o->send && acked >= o->send && delivered >= o->expect && connected) {
            scen_record("E done");
            status = CLI_OK;
            break;
        }
        cli_sleep_ms(2);
    }
    free(buf);
    tether_client_destroy(c); /* graceful: flushes the last ACK, then BYE */
    return status;
}

/* ---- the server ---- */

typedef struct gen_ctx {
    tether_server *srv; /* the server */
    const peer_opts *o; /* options */
    uint64_t out_last;  /* highest seq we assigned (from the store at start) */
    volatile int stop;  /* the thread must finish */
    int failed;         /* a send failed */
} gen_ctx;

/* The longest a fleet sender retries sends the database refuses
 * (TETHER_ESTORE: a restart) before it fails. */
#define STORE_OUTAGE_MS 60000

static void *generate(void *arg)
{
    gen_ctx *g = arg;
    const peer_opts *o = g->o;
    size_t slot = o->size ? (size_t)o->size : SCEN_SIZE_MAX;
    uint8_t *buf = malloc(64 * slot);
    tether_msg msgs[64];
    int announced = 0, pg = is_pg(o->db);
    uint64_t cap = o->limit && o->limit < o->send ? o->limit : o->send;
    uint64_t t0 = cli_now_ms(), base = g->out_last, lookups = 0;
    uint64_t failing_since = 0; /* first send refused by the database of this outage, 0: none */
    while (!g->stop && buf) {
        pthread_mutex_lock(&ps.mu);
        int have = ps.have_session;
        tether_session_id id = ps.session;
        uint64_t delivered = ps.delivered;
        pthread_mutex_unlock(&ps.mu);
        if (!have && pg && o->send > 0 && lookups++ % 30 == 0) {
            /* a fleet's sender: the session is attached elsewhere; the
             * database knows it once its client said HELLO somewhere */
            cli_session_info si;
            if (pg_session(o->db, &si) == 1) {
                pthread_mutex_lock(&ps.mu);
                ps.session = si.id;
                ps.have_session = 1;
                pthread_mutex_unlock(&ps.mu);
                g->out_last = base = si.out_last;
                t0 = cli_now_ms();
                continue;
            }
        }
        uint64_t target = cap;
        if (o->pace && delivered < o->pace) {
            target = o->send * delivered / o->pace;
            target = target < cap ? target : cap;
        }
        if (o->rate) {
            uint64_t allowed = base + o->rate * (cli_now_ms() - t0) / 1000 + 1;
            target = target < allowed ? target : allowed;
        }
        if (!have || g->out_last >= target) {
            if (have && g->out_last >= cap && !announced) {
                scen_record("G %llu", (unsigned long long)g->out_last);
                announced = 1;
            }
            cli_sleep_ms(3);
            continue;
        }
        uint64_t n = target - g->out_last < 64 ? target - g->out_last : 64;
        for (uint64_t i = 0; i < n; i++) {
            size_t sz = scen_size((size_t)o->size, g->out_last + 1 + i, TAG_S2C);
            scen_payload(buf + i * slot, sz, g->out_last + 1 + i, TAG_S2C);
            msgs[i].data = buf + i * slot;
            msgs[i].len = sz;
        }
        uint64_t first = 0;
        int rc = tether_server_send_batch(g->srv, &id, msgs, (size_t)n, &first);
        if (rc == TETHER_ESTORE && pg && !g->stop &&
            (!failing_since || cli_now_ms() - failing_since < STORE_OUTAGE_MS)) {
            /* the database is away (a restart): whether that batch committed
             * is unknown, so go on from what the database says once it is
             * back (the payloads follow from the seq, so either way the
             * stream stays the same); for STORE_OUTAGE_MS at most */
            fprintf(stderr, "peer server: send: %s: %s; retrying\n", tether_err_name(rc),
                    tether_errmsg());
            failing_since = failing_since ? failing_since : cli_now_ms();
            cli_sleep_ms(100);
            cli_session_info si;
            int back = 0;
            while (!g->stop && !(back = pg_session(o->db, &si) == 1) &&
                   cli_now_ms() - failing_since < STORE_OUTAGE_MS) {
                cli_sleep_ms(50);
            }
            if (back) {
                g->out_last = si.out_last;
            }
            continue;
        }
        if (rc != TETHER_OK || first != g->out_last + 1) {
            scen_record("F server send %s first %llu expected %llu", tether_err_name(rc),
                        (unsigned long long)first, (unsigned long long)(g->out_last + 1));
            g->failed = 1;
            break;
        }
        g->out_last += n;
        failing_since = 0;
    }
    free(buf);
    return NULL;
}

static int run_server(const peer_opts *o)
{
    start_info st;
    if (read_start(o->db, &st) != 0) {
        return CLI_FAIL;
    }
    if (st.have) {
        ps.session = st.si.id;
        ps.have_session = 1;
        ps.delivered = st.si.recv_cursor;
    }
    tether_server_config cfg;
    tether_server_config_init(&cfg);
    cfg.listen_host = "127.0.0.1";
    cfg.port = 0;
    cfg.db_path = o->db;
    cfg.durability = o->durability;
    cfg.ping_interval_ms = (uint32_t)o->ping_ms;
    cfg.pong_timeout_ms = (uint32_t)o->pong_ms;
    cfg.cb.on_session_open = s_open;
    cfg.cb.on_message = s_message;
    cfg.cb.on_acked = s_acked;
    cfg.cb.on_mismatch = s_mismatch;
    cfg.cb.on_session_close = s_close;
    cfg.lease_ms = (uint32_t)o->lease_ms;
    tether_server *srv = NULL;
    int rc = tether_server_create(&cfg, &srv);
    if (rc == TETHER_OK) {
        rc = tether_server_start(srv);
    }
    if (rc != TETHER_OK) {
        scen_record("F server %s", tether_err_name(rc));
        fprintf(stderr, "peer server: %s: %s\n", tether_err_name(rc), tether_errmsg());
        tether_server_destroy(srv);
        return CLI_FAIL;
    }
    if (cli_write_port_file(o->port_file, tether_server_port(srv)) != 0) {
        scen_record("F cannot write the port file");
        tether_server_destroy(srv);
        return CLI_FAIL;
    }
    gen_ctx g = {.srv = srv, .o = o, .out_last = st.have ? st.si.out_last : 0};
    pthread_t th;
    int have_thread = pthread_create(&th, NULL, generate, &g) == 0;
    while (!cli_stop_requested() && !g.failed) {
        cli_sleep_ms(20);
    }
    g.stop = 1;
    if (have_thread) {
        pthread_join(th, NULL);
    }
    tether_server_destroy(srv);
    return g.failed ? CLI_FAIL : CLI_OK;
}

int scen_peer_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},         {"record", required_argument, NULL, 'r'},
        {"url", required_argument, NULL, 'u'},        {"port-file", required_argument, NULL, 'p'},
        {"send", required_argument, NULL, 'n'},       {"expect", required_argument, NULL, 'e'},
        {"pace", required_argument, NULL, 'P'},       {"limit", required_argument, NULL, 'L'},
        {"rate", required_argument, NULL, 'R'},       {"max-pending", required_argument, NULL, 'm'},
        {"size", required_argument, NULL, 's'},       {"ping-ms", required_argument, NULL, 'i'},
        {"pong-ms", required_argument, NULL, 'o'},    {"welcome-ms", required_argument, NULL, 'w'},
        {"timeout-ms", required_argument, NULL, 't'}, {"seed", required_argument, NULL, 'S'},
        {"durability", required_argument, NULL, 'D'}, {"transport", required_argument, NULL, 'T'},
        {"lease-ms", required_argument, NULL, 'l'},   {NULL, 0, NULL, 0},
    };
    peer_opts o = {
        .size = 64, .ping_ms = 20000, .pong_ms = 10000, .welcome_ms = 10000, .timeout_ms = 120000};
    if (argc < 2 || (strcmp(argv[1], "client") != 0 && strcmp(argv[1], "server") != 0)) {
        return cli_usage_error("scenario", "peer wants 'client' or 'server'");
    }
    o.server = strcmp(argv[1], "server") == 0;
    argc--;
    argv++;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        uint64_t *num = NULL;
        uint64_t lo = 0, hi = UINT64_MAX;
        switch (c) {
        case 'd':
            o.db = optarg;
            break;
        case 'r':
            o.record = optarg;
            break;
        case 'u':
            if (o.nurls >= 16) {
                return cli_usage_error("scenario", "peer: at most 16 --url");
            }
            o.urls[o.nurls++] = optarg;
            break;
        case 'p':
            o.port_file = optarg;
            break;
        case 'D':
            if (cli_parse_durability(optarg, &o.durability) != 0) {
                return cli_usage_error("scenario", "--durability must be off, normal or full");
            }
            break;
        case 'T':
            if (strcmp(optarg, "auto") == 0) {
                o.transport = TETHER_TRANSPORT_AUTO;
            } else if (strcmp(optarg, "websocket") == 0) {
                o.transport = TETHER_TRANSPORT_WEBSOCKET;
            } else if (strcmp(optarg, "http") == 0) {
                o.transport = TETHER_TRANSPORT_HTTP;
            } else {
                return cli_usage_error("scenario", "--transport must be auto, websocket or http");
            }
            break;
        case 'n':
            num = &o.send;
            break;
        case 'e':
            num = &o.expect;
            break;
        case 'P':
            num = &o.pace;
            break;
        case 'L':
            num = &o.limit;
            break;
        case 'R':
            num = &o.rate;
            break;
        case 'm':
            num = &o.max_pending;
            break;
        case 's':
            num = &o.size;
            hi = 1 << 20; /* 0: sizes vary (scen_size) */
            break;
        case 'i':
            num = &o.ping_ms;
            lo = 1000;
            hi = 600000;
            break;
        case 'o':
            num = &o.pong_ms;
            lo = 1000;
            hi = 600000;
            break;
        case 'w':
            num = &o.welcome_ms;
            lo = 100;
            hi = 600000;
            break;
        case 't':
            num = &o.timeout_ms;
            lo = 1;
            break;
        case 'S':
            num = &o.seed;
            break;
        case 'l':
            num = &o.lease_ms;
            lo = 1000;
            hi = 600000;
            break;
        default:
            return CLI_USAGE;
        }
        if (num && cli_parse_u64(optarg, lo, hi, num) != 0) {
            return cli_usage_error("scenario", "peer: bad number '%s'", optarg);
        }
    }
    if (!o.db || !o.record || (o.server ? !o.port_file : !o.nurls)) {
        return cli_usage_error("scenario", "peer %s wants --db, --record and %s",
                               o.server ? "server" : "client", o.server ? "--port-file" : "--url");
    }
    if (scen_record_open(o.record) != 0) {
        return cli_fail("scenario", "cannot open %s: %s", o.record, strerror(errno));
    }
    ps.size = (size_t)o.size;
    ps.tag = o.server ? TAG_C2S : TAG_S2C;
    cli_signals_install();
    int status = o.server ? run_server(&o) : run_client(&o);
    scen_record_close();
    return status;
}

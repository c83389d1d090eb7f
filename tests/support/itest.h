/*
 * Helpers for integration tests: a thread-safe recorder of deliveries and
 * states, a client and a server under test wired to recorders, bounded waits,
 * and deterministic payloads.
 */
#ifndef TETHER_TEST_ITEST_H
#define TETHER_TEST_ITEST_H

#include <pthread.h>
#include <stdint.h>

#include <tether/tether.h>

#define REC_MAX 200000

/* What one side saw. Every field is guarded by mu. */
typedef struct recorder {
    pthread_mutex_t mu;
    uint64_t *seqs;          /* delivered seqs in delivery order */
    uint64_t *tags;          /* the tag embedded in each payload */
    uint64_t n;              /* deliveries so far */
    uint64_t redelivered;    /* deliveries flagged redelivered */
    uint64_t acked_hi;       /* highest seq reported by on_acked */
    int states[64];          /* last states seen (ring) */
    int errors[64];          /* their error codes */
    int http[64];            /* their HTTP statuses */
    int rejects[64];         /* their reject codes */
    unsigned nstates;        /* states seen in all */
    int mismatches;          /* on_mismatch calls */
    tether_mismatch_info mismatch; /* the last one */
    int opens, closes;       /* server: session open/close events */
    int last_open_resumed;   /* server: resumed flag of the last open */
    tether_session_id last_session; /* server: id of the last open */
    void *user2;             /* free for a test's own callbacks */
} recorder;

void rec_init(recorder *r);
void rec_free(recorder *r);
uint64_t rec_count(recorder *r);

/* Checks that the deliveries are exactly seqs 1..n in order, each payload
 * carrying its own seq as tag; reports failures through the harness. */
void rec_check_exact(recorder *r, uint64_t n, const char *what);

/* Counts the states of a kind; the last state of a kind and its error. */
int rec_saw_state(recorder *r, int state, int *error, int *http, int *reject);

/* A payload of len bytes (len >= 8) starting with tag, big-endian. */
void make_payload(uint8_t *buf, size_t len, uint64_t tag);

/* Callback sets wired to a recorder. */
void rec_client_callbacks(tether_client_config *cfg, recorder *r);
void rec_server_callbacks(tether_server_config *cfg, recorder *r);

/* Creates and starts a client (a server); on failure prints the error and its
 * message to stderr and returns the code. */
int client_create_start(const tether_client_config *cfg, tether_client **out);
int server_create_start(const tether_server_config *cfg, tether_server **out);

/* A client under test: what it saw, its configuration and the handle. */
typedef struct cli {
    recorder rec;             /* what the client saw */
    tether_client_config cfg; /* its configuration */
    tether_client *c;         /* the client, once started */
    char url[128];            /* scheme://host:port/ */
} cli;

/* Zeroes k, opens its recorder and fills a default configuration for
 * scheme://host:port/ with the recorder's callbacks and the state log
 * (statelog.h) in front of them; empties the state log. */
void cli_init(cli *k, const char *scheme, const char *host, unsigned port);
int cli_start(cli *k);
/* Destroys the client and its recorder; prints the state log if the test failed. */
void cli_free(cli *k);

/* A server under test: what it saw, its configuration, the handle, its port. */
typedef struct srv {
    recorder rec;             /* what the server saw */
    tether_server_config cfg; /* its configuration */
    tether_server *s;         /* the server, once started */
    uint16_t port;            /* where it listens (0 before the first start: any) */
} srv;

/* Zeroes v, opens its recorder and fills a default configuration wired to it. */
void srv_init(srv *v);
/* Starts on v->port (0: one the OS picks, stored in v->port). */
int srv_start(srv *v);
void srv_free(srv *v);

/* Waits (bounded) until the recorder holds at least n deliveries; 1 if it does. */
int rec_wait_count(recorder *r, uint64_t n, unsigned timeout_ms);

/* Sleeps in small steps until cond(arg) returns non-zero or timeout_ms passes. */
int wait_until(int (*cond)(void *), void *arg, unsigned timeout_ms);
void sleep_ms(unsigned ms);

/* ws://127.0.0.1:port/ into buf. */
const char *url_for(char *buf, size_t len, unsigned port);

/* Sends count messages tagged with their seq (from the client's last seq + 1). */
int send_tagged(tether_client *c, uint64_t count, size_t size);

/* The server sends count 64-byte messages to c's session, tagged with the
 * seqs they must get, first .. first+count-1: TETHER_OK, the send's error, or
 * TETHER_EINVAL (the test fails, saying which) when a seq is not the tag. */
int srv_send_tagged(tether_server *s, tether_client *c, uint64_t first, uint64_t count);

/* The same to session id (online or not). */
int srv_send_range(tether_server *s, const tether_session_id *id, uint64_t first, uint64_t count);

#endif

/*
 * A tiny raw WebSocket peer on plain loopback sockets, for wire-level tests:
 * a scripted server that answers the upgrade however a test wants (a correct
 * 101, a wrong accept key, a missing subprotocol, any HTTP status) and a
 * client that speaks RFC 6455 by hand.
 *
 * Nothing here can hang: every socket has SO_RCVTIMEO and SO_SNDTIMEO, every
 * loop has a deadline, and the server thread has a bounded lifetime.
 */
#ifndef TETHER_TEST_RAWWS_H
#define TETHER_TEST_RAWWS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define RAWWS_CONT 0x0
#define RAWWS_TEXT 0x1
#define RAWWS_BINARY 0x2
#define RAWWS_CLOSE 0x8
#define RAWWS_PING 0x9
#define RAWWS_PONG 0xa

#define RAWWS_HEAD_MAX 8192 /* longest HTTP head kept, bytes */

/* One WebSocket connection, either role. */
typedef struct rawws_conn {
    int fd;                    /* the socket, -1 when closed */
    int mask;                  /* 1: frames we write are masked (the client role) */
    int answer_pings;          /* 1: each ping gets a pong [1]; 0: go silent */
    int answer_close;          /* 1: a close frame is answered with a close frame [1] */
    const atomic_int *stop;    /* reads give up once this is non-zero (NULL: never) */
    uint64_t give_up_at;       /* reads give up at this time, ms (0: no limit) */
    uint8_t *in;               /* bytes received and not yet parsed */
    size_t in_len;             /* bytes at in */
    size_t in_cap;             /* bytes allocated at in */
    uint8_t *frag;             /* the fragmented data message being assembled */
    size_t frag_len;           /* bytes at frag */
    int frag_op;               /* its opcode, 0 when none is in progress */
    unsigned pings;            /* pings received */
    unsigned pongs;            /* pongs received */
    int sent_close;            /* we wrote a close frame */
    int got_close;             /* a close frame arrived */
    int close_status;          /* its status code, -1 when it had none */
    int eof;                   /* the peer closed the TCP connection (or it reset) */
    uint64_t closed_at;        /* when the close frame or the EOF came first, ms (0: not yet) */
    uint64_t upgraded_at;      /* when the 101 was sent or received, ms */
    int status;                /* the HTTP status of the head read (client role) */
    char head[RAWWS_HEAD_MAX]; /* the HTTP head read: request (server) or response (client) */
} rawws_conn;

/* One whole message (data messages reassembled from their fragments). */
typedef struct rawws_msg {
    int opcode;    /* RAWWS_TEXT, RAWWS_BINARY or RAWWS_CLOSE */
    uint8_t *data; /* the payload, malloc'd, followed by a NUL not counted in len */
    size_t len;    /* payload bytes */
} rawws_msg;

/* Monotonic milliseconds. */
uint64_t rawws_now_ms(void);

/* Sets up c around a connected socket (the server's accept, or rawws_connect). */
void rawws_conn_init(rawws_conn *c, int fd, int mask);
/* Closes the socket and frees the buffers. Safe to call twice. */
void rawws_conn_close(rawws_conn *c);

/* Client: opens a TCP connection to 127.0.0.1:port into c. 0 or -1. */
int rawws_connect(rawws_conn *c, uint16_t port);
/* Client: sends an upgrade request offering protocol (NULL: none) and reads the
 * answer into c->head and c->status. Returns 0 for a 101 with the correct
 * Sec-WebSocket-Accept that selects protocol; -1 otherwise. */
int rawws_upgrade(rawws_conn *c, uint16_t port, const char *protocol, unsigned timeout_ms);
/* rawws_connect and rawws_upgrade with "tether.v1". */
int rawws_open(rawws_conn *c, uint16_t port);

/* Writes one whole frame (FIN set). 0 or -1. */
int rawws_send(rawws_conn *c, int opcode, const void *data, size_t len);
/* Writes a data message as fragments of at most piece bytes, with a ping
 * between the first two fragments when ping_between is set. 0 or -1. */
int rawws_send_fragmented(rawws_conn *c, int opcode, const void *data, size_t len, size_t piece,
                          int ping_between);
/* Writes raw bytes, as they are. 0 or -1. */
int rawws_send_raw(rawws_conn *c, const void *data, size_t len);
/* Writes a close frame with this status (-1: no status). 0 or -1. */
int rawws_send_close(rawws_conn *c, int status);

/*
 * Reads the next data or close message, answering pings (if answer_pings) and
 * close frames (if answer_close) on the way. Returns 1 with *m filled (free it
 * with rawws_msg_free), 0 when timeout_ms passed first, -1 when the connection
 * ended (EOF, or a close frame already returned) or the peer broke the framing.
 */
int rawws_read_msg(rawws_conn *c, rawws_msg *m, unsigned timeout_ms);
void rawws_msg_free(rawws_msg *m);

/* Reads and discards everything until the peer closes the TCP connection.
 * Returns 1 on EOF within timeout_ms, else 0. */
int rawws_wait_eof(rawws_conn *c, unsigned timeout_ms);

/* Copies the value of header name (case-insensitive) from an HTTP head.
 * Returns 1 when found. */
int rawws_header(const char *head, const char *name, char *out, size_t out_len);

/* Sends a plain HTTP request and reads the head of the answer into resp.
 * Returns the status, or -1. */
int rawws_http(uint16_t port, const char *request, char *resp, size_t resp_len,
               unsigned timeout_ms);

/* ---- the scripted server ---- */

/* How the raw server answers an upgrade request. */
typedef enum rawws_answer {
    RAWWS_ACCEPT = 0,         /* a correct 101 selecting tether.v1 */
    RAWWS_BAD_ACCEPT = 1,     /* a 101 with a wrong Sec-WebSocket-Accept */
    RAWWS_NO_PROTOCOL = 2,    /* a 101 without Sec-WebSocket-Protocol */
    RAWWS_OTHER_PROTOCOL = 3, /* a 101 selecting "chat.v9" */
    RAWWS_HTTP = 4,           /* an HTTP status with a body, then close */
} rawws_answer;

/* Runs on the server thread after a 101, once per scripted connection;
 * index counts them from 0. It must be bounded (the reads are). */
typedef void (*rawws_script)(rawws_conn *c, unsigned index, void *arg);

typedef struct rawws_server_cfg {
    rawws_answer answer;  /* what the upgrade gets */
    int status;           /* RAWWS_HTTP: the status code */
    const char *body;     /* RAWWS_HTTP: the body [a sentence with the status] */
    rawws_script script;  /* after a 101 (NULL: wait for the peer to close) */
    void *arg;            /* passed to script */
    unsigned max_conns;   /* connections answered; later ones are closed at once [1] */
    unsigned lifetime_ms; /* the thread ends after this, ms [10000] */
} rawws_server_cfg;

typedef struct rawws_server rawws_server;

/* Listens on 127.0.0.1, port 0, and starts the thread. 0 or -1. */
int rawws_server_start(const rawws_server_cfg *cfg, rawws_server **out);
uint16_t rawws_server_port(const rawws_server *s);
/* TCP connections accepted so far (including those closed at once). */
unsigned rawws_server_accepted(rawws_server *s);
/* Answered connections finished (script returned, socket closed). */
unsigned rawws_server_done(rawws_server *s);
/* Stops the thread (scripts see stop), joins it, closes and frees. NULL: nothing. */
void rawws_server_stop(rawws_server *s);

#endif

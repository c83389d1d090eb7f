/*
 * The `tether` command line: shared declarations. cli.c holds main(), the
 * dispatch and the helpers below; each subcommand lives in its own file.
 */
#ifndef TETHER_CLI_H
#define TETHER_CLI_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <tether/tether.h>

#include "common/rng.h" /* tether__rng_next, tether__rng_range: seeded random moments */

/* Exit statuses shared by every subcommand. */
#define CLI_OK 0    /* the job succeeded */
#define CLI_FAIL 1  /* the job failed */
#define CLI_USAGE 2 /* the command line was wrong */

#define CLI_EXIT_HELP "Exit status: 0 the job succeeded, 1 the job failed, 2 usage error.\n"

/* Subcommands: argv[0] is "tether <name>"; they return the exit status. */
int cli_serve(int argc, char **argv);
int cli_send(int argc, char **argv);
int cli_status(int argc, char **argv);
int cli_demo(int argc, char **argv);
int cli_chaos(int argc, char **argv);    /* chaos.c */
int cli_scenario(int argc, char **argv); /* scenario.c */

/* Prints "tether <cmd>: <message>" and a pointer to --help on stderr; returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "tether <cmd>: <message>" on stderr; returns CLI_FAIL. */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Strict number parsing: the whole string, decimal, within [min, max]. 0 or -1. */
int cli_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* "off", "normal" or "full". 0 or -1. */
int cli_parse_durability(const char *s, tether_durability *out);

/* "MIN:MAX" milliseconds, MIN <= MAX. 0 or -1. */
int cli_parse_range(const char *s, uint32_t *min, uint32_t *max);

/* Signals: SIGINT and SIGTERM set the stop flag (and nothing else); SIGPIPE is ignored. */
void cli_signals_install(void);
int cli_stop_requested(void);
/* Which signal asked to stop (0 if none). */
int cli_stop_signal(void);

/* Milliseconds from a monotonic clock. */
uint64_t cli_now_ms(void);
/* Sleeps ms milliseconds (returns early when a signal arrives). */
void cli_sleep_ms(uint32_t ms);

/* A growable byte buffer for building output lines. */
typedef struct cli_buf {
    char *data; /* the bytes, NUL-terminated when len < cap */
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated */
} cli_buf;

int cli_buf_add(cli_buf *b, const void *data, size_t len);
int cli_buf_printf(cli_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends a JSON string literal (quotes included) for valid UTF-8 text. */
int cli_buf_json_str(cli_buf *b, const char *s, size_t len);
void cli_buf_free(cli_buf *b);

/* 1 when data is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
int cli_utf8_valid(const void *data, size_t len);

/* Base64 (RFC 4648, padded) of data appended to b. */
int cli_buf_base64(cli_buf *b, const void *data, size_t len);

/*
 * Writes one received message as a JSON line on out and flushes it:
 * {"session":"<hex>","seq":N,"redelivered":false,"text":"..."} when the payload
 * is valid UTF-8, with "base64":"..." in place of "text" otherwise.
 */
void cli_print_message(FILE *out, const tether_session_id *id, uint64_t seq, const void *data,
                       size_t len, int redelivered);

/* Writes 8 bytes big-endian / reads them. */
void cli_put_be64(uint8_t *p, uint64_t v);
uint64_t cli_get_be64(const uint8_t *p);

/* tether send --help (send_help.c). */
extern const char cli_send_help[];

/* Writes "<port>\n" to path through a temporary file and a rename, so a
 * reader never sees a half-written file. 0, or -1 with errno set. */
int cli_write_port_file(const char *path, uint16_t port);

/* Name of a client state ("CONNECTED"). */
const char *cli_state_name(int state);

/*
 * status.c: reads a tether SQLite store (client or server role) through the
 * store interface, opened read-only. The file must exist.
 */
typedef struct cli_session_info {
    tether_session_id id;   /* session id */
    uint64_t out_last;      /* highest seq assigned to an outgoing message */
    uint64_t peer_acked;    /* highest outgoing seq the peer acknowledged */
    uint64_t recv_cursor;   /* highest incoming seq committed */
    uint64_t pending;       /* unacked outgoing messages stored */
    uint64_t pending_bytes; /* their payload bytes */
    int established;        /* 1 once the session was welcomed */
} cli_session_info;

/* Fills *role ("client", "server", or "none" for an empty store) and up to
 * max sessions into out, their number in *count. With check, first runs the
 * store's integrity check. Returns TETHER_OK or the store's error code
 * (tether__store_sqlite_open_readonly) with the detail in err. */
int cli_store_inspect(const char *path, int check, const char **role, cli_session_info *out,
                      size_t max, size_t *count, char *err, size_t errlen);
/* cli_store_inspect() without the check. */
int cli_store_read(const char *path, const char **role, cli_session_info *out, size_t max,
                   size_t *count, char *err, size_t errlen);

#endif

/*
 * The store: sessions and their outboxes, behind a small interface.
 *
 * Rule for every operation: it either succeeds completely or returns an error
 * and leaves the store exactly as it was (one transaction per call).
 *
 * Stores are not thread-safe; the client and server serialise calls with their
 * own lock. Three implementations: store_sqlite.c (durable, one file),
 * store_pg.c (durable, a PostgreSQL database) and store_memory.c.
 */
#ifndef TETHER_STORE_H
#define TETHER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <tether/tether.h>

#define TETHER__STORE_SCHEMA_VERSION 1 /* PostgreSQL's schema (store_pg_open.c) */
/* SQLite's schema: 2 added the table of fallback verdicts (store_sqlite_verdict.c);
 * a schema-1 file is brought to 2 at its first read-write open. */
#define TETHER__STORE_SQLITE_SCHEMA_VERSION 2

/* Longest key of a fallback verdict, bytes (the client's server url and proxy). */
#define TETHER__VERDICT_KEY_MAX 1024

/* A remembered fallback verdict (client): for one server url + proxy, the HTTP
 * carriage is used instead of WebSocket until until_ms. */
typedef struct tether__verdict {
    uint64_t until_ms;      /* wall-clock ms since the Unix epoch; 1..INT64_MAX */
    uint32_t probes_failed; /* WebSocket probes failed since the fallback */
} tether__verdict;

typedef enum tether__store_role {
    TETHER__ROLE_NONE = 0,   /* inspect() only: an empty store no side has initialised */
    TETHER__ROLE_CLIENT = 1, /* one session; the token is kept as is */
    TETHER__ROLE_SERVER = 2, /* many sessions; the token is kept as its SHA-256 */
} tether__store_role;

/* One session's durable state. */
typedef struct tether__session_rec {
    uint8_t id[16];      /* session id */
    uint8_t token[32];   /* client: the resume token; server: SHA-256 of it */
    uint64_t out_last;   /* highest seq assigned to an outgoing message (0: none) */
    uint64_t peer_acked; /* highest outgoing seq the peer acknowledged */
    uint64_t recv_cursor; /* highest incoming seq committed */
    int established;     /* 1 once the session was welcomed by / welcomed the peer */
} tether__session_rec;

typedef struct tether__store tether__store;

/* What inspect() reports about a whole store. */
typedef struct tether__store_info {
    tether__store_role role; /* whose store it is; TETHER__ROLE_NONE: empty, never initialised */
    uint64_t sessions;       /* sessions recorded */
    uint64_t pending;        /* unacked messages in all outboxes */
    uint64_t pending_bytes;  /* their payload bytes */
} tether__store_info;

/* Flags of inspect(). */
#define TETHER__INSPECT_CHECK 1u /* also verify the whole file (SQLite: PRAGMA integrity_check) */

/* Called by load() for each message; data is valid during the call only.
 * Return 0 to go on, non-zero to stop early (not an error). */
typedef int (*tether__load_cb)(void *arg, uint64_t seq, const void *data, size_t len);

/* Called by list() for each session. Return 0 to go on. */
typedef int (*tether__list_cb)(void *arg, const tether__session_rec *rec);

typedef struct tether__store_ops {
    /* Fetches one session: TETHER_OK, TETHER_ENOTFOUND, or an error. */
    int (*session_get)(tether__store *st, const uint8_t id[16], tether__session_rec *out);
    /* Inserts or replaces a session's record (not its outbox). */
    int (*session_put)(tether__store *st, const tether__session_rec *rec);
    /* Removes a session and its outbox. TETHER_ENOTFOUND if absent. */
    int (*session_delete)(tether__store *st, const uint8_t id[16]);
    /* Calls cb for every session, in id order. */
    int (*session_list)(tether__store *st, tether__list_cb cb, void *arg);
    /*
     * Appends n messages to a session's outbox with seqs rec.out_last+1 ..
     * out_last+n and raises out_last, in one transaction. The session must exist.
     * Checks the caps (0 = none) against what the outbox holds and returns
     * TETHER_EOUTBOX_FULL, storing nothing, if the batch would exceed either.
     */
    int (*append)(tether__store *st, const uint8_t id[16], const tether_msg *msgs, size_t n,
                  uint64_t max_count, uint64_t max_bytes, uint64_t *first_seq);
    /* Calls cb for outbox messages with seq >= from_seq in order, at most
     * max_count of them; stops early when cb returns non-zero. */
    int (*load)(tether__store *st, const uint8_t id[16], uint64_t from_seq, size_t max_count,
                tether__load_cb cb, void *arg);
    /* Records that the peer acknowledged up to seq: sets peer_acked = seq (never
     * lowers it) and deletes outbox rows with seq <= it, in one transaction. */
    int (*ack)(tether__store *st, const uint8_t id[16], uint64_t seq);
    /* Sets the receive cursor (never lowers it). */
    int (*set_cursor)(tether__store *st, const uint8_t id[16], uint64_t cursor);
    /* Unacked messages and payload bytes in a session's outbox. */
    int (*pending)(tether__store *st, const uint8_t id[16], uint64_t *count, uint64_t *bytes);
    /*
     * Replaces session old_id by new_rec (a new id and token) and moves the
     * outbox rows with seq > skip to the new session renumbered as seq - skip,
     * in one transaction. new_rec->out_last must equal the old out_last - skip.
     */
    int (*rebase)(tether__store *st, const uint8_t old_id[16], const tether__session_rec *new_rec,
                  uint64_t skip);
    /* The message of the last failure, from the lower layer. Never NULL. */
    const char *(*errmsg)(tether__store *st);
    /* Closes and frees the store. */
    void (*close)(tether__store *st);
    /*
     * Fills *out with the store's role and totals. With TETHER__INSPECT_CHECK
     * it first verifies the store: for SQLite every page and index (integrity
     * check), TETHER_ESTORE_CORRUPT with the first problem in errmsg() when one
     * fails; the memory store has no file and nothing to verify. Changes nothing.
     */
    int (*inspect)(tether__store *st, unsigned flags, tether__store_info *out);
    /*
     * The fallback verdict kept for key (a non-empty string of at most
     * TETHER__VERDICT_KEY_MAX bytes): TETHER_OK with *out filled,
     * TETHER_ENOTFOUND when none is kept, TETHER_EINVAL for a bad key, or an
     * error. Expired verdicts are returned as they are: the caller compares.
     */
    int (*verdict_get)(tether__store *st, const char *key, tether__verdict *out);
    /*
     * Records v as key's verdict, replacing any (v NULL: forgets key's verdict;
     * none kept is not an error). TETHER_EINVAL for a bad key or until_ms
     * outside 1..INT64_MAX.
     */
    int (*verdict_put)(tether__store *st, const char *key, const tether__verdict *v);

    /* ---- session ownership (leases; docs/guarantees.md, "A fleet of servers") ----
     * A store shared by several server instances (PostgreSQL) lets one of them
     * own a session at a time. lease_take() gives this store's connection the
     * session's lease with a new epoch; from then on every write of this store
     * for the session (put, ack, set_cursor, delete) checks, in its own
     * statement, that the epoch is still the session's, and is refused with
     * TETHER_EFENCED, changing nothing, once another instance took it. append
     * is not fenced: any instance may add to any session's outbox (the seqs
     * are assigned by the database). SQLite and memory stores serve one
     * instance: their leases are always granted and never lost. */
    /* Takes the session's lease for ttl_ms (1..INT32_MAX). TETHER_OK with
     * *stale 1 when another instance may have changed the session since this
     * store last held it (the caller reads the record again), 0 when not;
     * TETHER_EFENCED when a live instance holds it; TETHER_ENOTFOUND. */
    int (*lease_take)(tether__store *st, const uint8_t id[16], uint32_t ttl_ms, int *stale);
    /* Gives the lease up (the client left): another instance may take the
     * session at once. Later writes of this store still pass until another
     * instance takes it. TETHER_OK also when it was lost already. */
    int (*lease_release)(tether__store *st, const uint8_t id[16]);
    /* Renews every lease this store holds for ttl_ms and calls lost() for
     * each one another instance took meanwhile (or that lapsed and was
     * taken), kept() with the out_last of each one it still holds (the
     * periodic check behind wake-ups); either may be NULL. Both run under
     * the store's lock: they must not call the store. */
    int (*lease_renew)(tether__store *st, uint32_t ttl_ms,
                       void (*lost)(void *arg, const uint8_t id[16]),
                       void (*kept)(void *arg, const uint8_t id[16], uint64_t out_last),
                       void *arg);
    /* Tells whichever instance serves the session that its outbox grew (a
     * wake-up only: the rows are the truth). Single-instance stores: nothing. */
    int (*wake)(tether__store *st, const uint8_t id[16]);
    /* Waits up to timeout_ms for wake-ups and calls cb for each session
     * named. Runs on a connection of its own, so it is the one operation
     * that may run while another thread uses the store, and only one thread
     * may call it. Single-instance stores: returns at once. */
    int (*wait_wakes)(tether__store *st, uint32_t timeout_ms,
                      void (*cb)(void *arg, const uint8_t id[16]), void *arg);
} tether__store_ops;

/* The leases of a single-instance store (SQLite, memory): granted, never stale. */
int tether__lease_single_take(tether__store *st, const uint8_t id[16], uint32_t ttl_ms, int *stale);
int tether__lease_single_release(tether__store *st, const uint8_t id[16]);
int tether__lease_single_renew(tether__store *st, uint32_t ttl_ms,
                               void (*lost)(void *arg, const uint8_t id[16]),
                               void (*kept)(void *arg, const uint8_t id[16], uint64_t out_last),
                               void *arg);
int tether__wake_single(tether__store *st, const uint8_t id[16]);
int tether__wait_wakes_single(tether__store *st, uint32_t timeout_ms,
                              void (*cb)(void *arg, const uint8_t id[16]), void *arg);

struct tether__store {
    const tether__store_ops *ops; /* the implementation */
};

/* Opens or creates a SQLite store at path (file mode 0600), WAL, with the
 * given durability. A database without tables (a zero-byte file included) is
 * a new store and gets the schema, as a missing file does (docs/config.md).
 * Checks the schema version and role recorded in the file: another role, a
 * newer or unknown schema, or tables of something else is
 * TETHER_ESTORE_SCHEMA; a file that is not a database, or whose -wal file was
 * removed while it held commits (see tether__store_sqlite_open_readonly), is
 * TETHER_ESTORE_CORRUPT; a file or directory that cannot be written is
 * TETHER_ESTORE_READONLY. On error *out is NULL and errbuf (may be NULL)
 * receives the detail. */
int tether__store_sqlite_open(const char *path, tether__store_role role,
                              tether_durability durability, tether__store **out, char *errbuf,
                              size_t errlen);

/* Flags of tether__store_sqlite_open_flags(). */
#define TETHER__SQLITE_READONLY 1u /* open with SQLITE_OPEN_READONLY */
/* locking_mode=EXCLUSIVE: the file is locked once for the connection's life
 * (no file locks per transaction, the WAL index in heap memory, no other
 * process can read it meanwhile); the writer checkpoints the WAL itself, from
 * its WAL hook, once it holds hard_pages; no checkpoint thread. */
#define TETHER__SQLITE_EXCLUSIVE 2u

/* tether__store_sqlite_open() with flags. TETHER__SQLITE_READONLY lets tests
 * reach the "cannot write" path at open: running as root, chmod cannot make a
 * file unwritable. Such an open fails with TETHER_ESTORE_READONLY. */
int tether__store_sqlite_open_flags(const char *path, tether__store_role role,
                                    tether_durability durability, unsigned flags,
                                    tether__store **out, char *errbuf, size_t errlen);

/* What tether__store_sqlite_open_opts() takes beyond the path, role and
 * durability; all zero is tether__store_sqlite_open(). */
typedef struct tether__sqlite_opts {
    unsigned flags;     /* TETHER__SQLITE_* */
    uint32_t page_size; /* SQLite page size, bytes, of a database this open creates: 0 for
                           SQLite's default, else tether__store_page_size_ok(); a database
                           that already has pages keeps its own */
} tether__sqlite_opts;

/* The page sizes SQLite accepts (docs/config.md, store_page_size). */
#define TETHER__PAGE_SIZE_MIN 512u
#define TETHER__PAGE_SIZE_MAX 65536u

/* 1 when n is a page size SQLite accepts: a power of two from
 * TETHER__PAGE_SIZE_MIN to TETHER__PAGE_SIZE_MAX; 0 otherwise (0 included). */
int tether__store_page_size_ok(uint32_t n);

/* tether__store_sqlite_open() with options (opts may be NULL: none). A
 * page_size that tether__store_page_size_ok() refuses is TETHER_EINVAL. */
int tether__store_sqlite_open_opts(const char *path, tether__store_role role,
                                   tether_durability durability, const tether__sqlite_opts *opts,
                                   tether__store **out, char *errbuf, size_t errlen);

/*
 * Opens an existing SQLite store of either role for reading only: it never
 * creates, initialises or converts the file, starts no checkpointer, and
 * every write fails with TETHER_ESTORE_READONLY. It may be used while a
 * client or server has the store open. Returns:
 *   TETHER_ENOTFOUND        no file at path;
 *   TETHER_ESTORE_SCHEMA    not a tether store: not a regular file, a SQLite
 *                           database with other tables, or a newer or unknown
 *                           schema;
 *   TETHER_ESTORE_CORRUPT   not a SQLite database, or a -shm file says its -wal
 *                           held commits not yet in the database and the -wal
 *                           is gone (deleted after a crash);
 *   TETHER_ESTORE_READONLY  the store cannot be read without writing (its WAL
 *                           must be recovered, on a read-only file system);
 *   TETHER_ESTORE, TETHER_ENOMEM otherwise.
 * A database without tables (a zero-byte file included) opens as an empty
 * store: inspect() gives TETHER__ROLE_NONE, list() no session, get()
 * TETHER_ENOTFOUND. On error *out is NULL and errbuf gets the detail.
 */
int tether__store_sqlite_open_readonly(const char *path, tether__store **out, char *errbuf,
                                       size_t errlen);

/*
 * Opens a PostgreSQL store through libpq. conninfo is any libpq connection
 * string: a URI (postgresql://user@host:port/db?sslmode=...) or keyword=value
 * pairs; without a connect_timeout in it, connecting gives up after 10 s. The
 * schema (tables tether_meta, tether_sessions, tether_outbox in the
 * connection's search_path) is created at the first open. Sessions are kept
 * per role, so a client's and a server's store may share one database.
 * Durability OFF sets synchronous_commit = off on the connection; the others
 * keep the server's setting. Returns:
 *   TETHER_ECONFIG        conninfo is not a valid connection string;
 *   TETHER_ESTORE         the server cannot be reached or refused the login
 *                         (the message names host, port, database and user,
 *                         never the password), or a query failed;
 *   TETHER_ESTORE_SCHEMA  a newer or unknown schema version, or tables named
 *                         like tether's without tether_meta;
 *   TETHER_ESTORE_READONLY the server is a read-only standby;
 *   TETHER_EINVAL, TETHER_ENOMEM.
 * On error *out is NULL, nothing was created, and errbuf (may be NULL) gets
 * the detail. After a lost connection the operation that met it fails with
 * TETHER_ESTORE and the next one reconnects (docs/decisions.md).
 */
int tether__store_pg_open(const char *conninfo, tether__store_role role,
                          tether_durability durability, tether__store **out, char *errbuf,
                          size_t errlen);

/*
 * Opens the server sessions of a PostgreSQL store for reading only (`tether
 * status`): it never creates the schema, and its connection runs every
 * transaction read-only, so a write fails with TETHER_ESTORE_READONLY.
 * TETHER_ENOTFOUND when the database holds no tether store (no tether
 * tables); otherwise as tether__store_pg_open().
 */
int tether__store_pg_open_readonly(const char *conninfo, tether__store **out, char *errbuf,
                                   size_t errlen);

/* 1 when path is a PostgreSQL URI (postgresql:// or postgres://): the server
 * opens such a db_path with tether__store_pg_open(). */
int tether__store_pg_is_uri(const char *path);

/* Where a connection string points, for messages: "host:port/db as user
 * name", never the password. */
void tether__store_pg_describe(const char *conninfo, char *buf, size_t len);

/* What tether__store_pg_probe() found. */
#define TETHER__PG_PROBE_PIDS 256
typedef struct tether__pg_probe {
    uint64_t wal_lsn;                 /* pg_current_wal_lsn() in bytes from 0/0 */
    int local;                        /* 1: the server is on this machine (Unix socket or
                                         loopback), so pids are this machine's processes */
    int npids;                        /* entries in pids */
    int pids[TETHER__PG_PROBE_PIDS];  /* its processes (pg_stat_activity: backends and
                                         background workers), without the probe's own */
} tether__pg_probe;

/* For measurements (`tether bench`): connects to conninfo, reads the WAL
 * position and, when the server runs on this machine, its process ids, and
 * disconnects. TETHER_OK, TETHER_EINVAL, or TETHER_ESTORE with PostgreSQL's
 * message in errbuf (a failed connection, a standby: no WAL position). */
int tether__store_pg_probe(const char *conninfo, tether__pg_probe *out, char *errbuf,
                           size_t errlen);

/* The server owning st is shutting down (st a PostgreSQL store; anything
 * else: nothing happens). From now on a lost connection is tried again once,
 * for at most PG_CLOSING_CONNECT_MS (1 s), and after that operations fail at
 * once instead of waiting for a database that does not answer. A reconnect
 * already under way gives up within the same bound from this call when the
 * conninfo names one host (it is polled); with several hosts it is libpq's
 * blocking PQreset, which ends only after up to connect_timeout (10 s
 * unless the conninfo sets it) per host. Any thread, any time. */
void tether__store_pg_closing(tether__store *st);

/* Checks a verdict key and value (v may be NULL) for verdict_put/get:
 * TETHER_OK or TETHER_EINVAL with the reason (store_memory.c). */
int tether__verdict_check(const char *key, const tether__verdict *v);

/* A store in memory: everything is lost when it is closed. */
int tether__store_memory_open(tether__store_role role, tether__store **out);

#endif

/*
 * A private PostgreSQL server for the tests of the PostgreSQL store.
 *
 * pgt_start() runs initdb in a fresh temporary directory and starts
 * `postgres` on a loopback port the system picked, as the user postgres when
 * the test runs as root (PostgreSQL refuses to run as root), and waits
 * (bounded) until it accepts connections. The server is stopped by its PID
 * at exit, also when a test fails, and the directory removed; should the test
 * process be killed outright, the server gets SIGQUIT from the kernel (parent
 * death signal) and ends; only its directory, /tmp/tether-pg-*, stays. Missing PostgreSQL binaries are a failure with a clear
 * message, never a silent skip.
 *
 * The binaries are looked for in $TETHER_PG_BINDIR, then
 * /usr/lib/postgresql/15/bin (Debian's postgresql-15), then the highest
 * version under /usr/lib/postgresql.
 */
#ifndef TETHER_TEST_PGTEST_H
#define TETHER_TEST_PGTEST_H

#include <stddef.h>

/* Before pgt_start(): run the server with fsync on (a measurement's
 * setting); the tests run with fsync=off, which only costs durability
 * across a crash of the machine, which no test makes. */
void pgt_set_fsync(int on);

/* Starts the server; exits the process with status 1 and a message when it
 * cannot. Calling it again while it runs does nothing. */
void pgt_start(void);

/* The connection string of database db on the running server (keyword form). */
const char *pgt_conninfo(const char *db, char *buf, size_t len);

/* The same as a postgresql:// URI. */
const char *pgt_uri(const char *db, char *buf, size_t len);

/* The password of the user postgres over TCP (random, made by pgt_start();
 * libpq finds it in PGPASSWORD, so the conninfo and URI above carry none). */
const char *pgt_password(void);

/* The server's port (0 when it does not run). */
int pgt_port(void);

/* Creates a database with a fresh name (prefix and a counter) into name.
 * 0, or -1 with a message on stderr. */
int pgt_createdb(const char *prefix, char *name, size_t len);

/* Runs sql (one or more statements) on a new connection to database db.
 * 0, or -1 with PostgreSQL's message on stderr unless quiet. */
int pgt_exec(const char *db, const char *sql, int quiet);

/* Runs a query returning one integer (first row, first column) on database
 * db into *out. 0, or -1 with a message on stderr. */
int pgt_query_int(const char *db, const char *sql, long long *out);

/* Stops the server by its PID (fast shutdown, SIGKILL after 20 s) and waits
 * for it. The directory stays, so pgt_restart() can start it again. */
void pgt_stop(void);

/* Starts the stopped server again on the same directory and port. 0 or -1. */
int pgt_restart(void);

/* The server's data directory (for a program that stops and starts it by
 * itself, as `tether scenario --pg-data` does). */
const char *pgt_data_dir(void);

/* After such a program restarted the server: takes the PID of the one
 * running now from its postmaster.pid, so that pgt_stop() (and the exit)
 * stops it by that PID. 0, or -1 when no server runs on the directory. */
int pgt_adopt(void);

#endif

/*
 * Internal hooks of the stores, for tests and measurements only. Nothing in
 * the library's normal path calls them; the store interface is store.h.
 * Only the stores themselves (for the prototypes) and tests include this
 * file. It names SQLite's connection type without including sqlite3.h, so
 * the memory store stays independent of SQLite.
 */
#ifndef TETHER_STORE_TESTHOOKS_H
#define TETHER_STORE_TESTHOOKS_H

#include "store.h"

struct sqlite3;

/* The writing connection (for reading pragmas in tests). NULL if st is not a
 * SQLite store. */
struct sqlite3 *tether__store_sqlite_handle(tether__store *st);

/* PRAGMA max_page_count on the writing connection, so tests reach SQLITE_FULL
 * deterministically. SQLite never sets it below the current page count, so a
 * small value means "no growth". Lasts until the store is closed. */
int tether__store_sqlite_set_max_pages(tether__store *st, unsigned pages);

/* Closes the writing connection and opens it again with SQLITE_OPEN_READONLY:
 * every later write fails with SQLITE_READONLY as on a read-only file or
 * file system (which tests running as root cannot arrange). */
int tether__store_sqlite_reopen_readonly(tether__store *st);

/* Checkpointer tuning (see store_sqlite.c): the thread checkpoints each time
 * the WAL grew by soft_pages, and otherwise period_ms after a commit; from
 * hard_pages on the writer checkpoints itself after its commits. */
void tether__store_sqlite_set_checkpoint(tether__store *st, unsigned soft_pages,
                                         unsigned hard_pages, unsigned period_ms);

/* Checkpoints the background thread has completed so far (an exclusive
 * store: the writer's own checkpoints). */
unsigned long tether__store_sqlite_checkpoints(tether__store *st);

/* The WAL pre-sync of an exclusive store at NORMAL (store_sqlite_flush.c):
 * syncs completed, syncs failed and the last failure's message (err may be
 * NULL). Returns 0, with nothing filled, when st has no pre-sync thread. */
int tether__store_sqlite_flushes(tether__store *st, unsigned long *done, unsigned long *failed,
                                 char *err, size_t errlen);

/* Pre-sync tuning: every pages of WAL growth (0: hard_pages / 4), and the
 * file it syncs (NULL: keep; tests point it at a missing file to make every
 * sync fail). No effect when st has no pre-sync thread. */
void tether__store_sqlite_set_flush(tether__store *st, unsigned pages, const char *wal_path);

/* PostgreSQL store (store_pg_open.c): the process id of the server backend
 * serving the store's connection (for pg_terminate_backend() from a second
 * connection); 0 if st is not a PostgreSQL store. */
int tether__store_pg_backend_pid(tether__store *st);

/* PostgreSQL store: the value of setting name on the store's connection
 * (SHOW name) into buf. TETHER_OK, TETHER_EINVAL if st is not a PostgreSQL
 * store, or the query's error. */
int tether__store_pg_show(tether__store *st, const char *name, char *buf, size_t len);

/* Memory store (store_memory.c): after allocs more allocations, every
 * allocation fails until this is called again; allocs < 0 removes the limit. */
void tether__store_memory_fail_after(tether__store *st, long allocs);

/* Internal build only (TETHER_ALLOC_HOOKS, store_sqlite_alloc.c): routes
 * SQLite's own allocations through common/alloc.h, so that
 * tether__alloc_fail_at() reaches them too. SQLite's allocator is
 * process-wide and can only be replaced before SQLite initialises, so a test
 * calls this first thing in main(), before any store is opened. TETHER_OK, or
 * TETHER_ESTORE when SQLite was already initialised (nothing changed). The
 * shipped library never calls it: it would change the allocator of every
 * other SQLite user in the process. */
int tether__store_sqlite_route_alloc(void);

#endif

/*
 * The floor of a synchronous send: what SQLite alone does on this file
 * system when every row is its own transaction. The table looks like the
 * outbox (a 16-byte session, a seq, the payload; WITHOUT ROWID) and the file
 * is opened the way a client opens its store: WAL, synchronous NORMAL,
 * locking_mode EXCLUSIVE. SQLite's automatic checkpoint stays on (the client
 * checkpoints from its WAL hook at the same 1000 pages). --page-size sets
 * the file's page size as store_page_size does. One JSON line out.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "bench.h"

static int fail(sqlite3 *db, const char *what)
{
    bench_json j;
    char why[300];
    snprintf(why, sizeof why, "sqlite: %s: %s", what, db ? sqlite3_errmsg(db) : "cannot open");
    bj_begin(&j);
    bj_str(&j, "role", "sqlite");
    bj_int(&j, "ok", 0);
    bj_str(&j, "error", why);
    bj_emit(&j);
    sqlite3_close(db);
    return 1;
}

int bench_peer_sqlite(const bench_peer_opts *o)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *ins = NULL;
    if (!o->db) {
        return fail(NULL, "--db is required");
    }
    unlink(o->db);
    if (sqlite3_open(o->db, &db) != SQLITE_OK) {
        return fail(db, "open");
    }
    /* as the client sets store_page_size: before WAL mode writes the first page */
    char ps[48];
    snprintf(ps, sizeof ps, "PRAGMA page_size = %u", o->page_size);
    if (o->page_size && sqlite3_exec(db, ps, NULL, NULL, NULL) != SQLITE_OK) {
        return fail(db, "page_size");
    }
    if (sqlite3_exec(db,
                     "PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL;"
                     "PRAGMA synchronous = NORMAL;"
                     "CREATE TABLE outbox(session BLOB NOT NULL, seq INTEGER NOT NULL,"
                     " payload BLOB NOT NULL, PRIMARY KEY(session, seq)) WITHOUT ROWID;",
                     NULL, NULL, NULL) != SQLITE_OK) {
        return fail(db, "schema");
    }
    if (sqlite3_prepare_v2(db, "INSERT INTO outbox(session, seq, payload) VALUES (?1, ?2, ?3)",
                           -1, &ins, NULL) != SQLITE_OK) {
        return fail(db, "prepare");
    }
    static const uint8_t session[16] = {1};
    uint8_t *payload = malloc(o->size);
    if (!payload) {
        return fail(db, "out of memory");
    }
    memset(payload, 'x', o->size);
    double cpu0, cpu1;
    bench_rusage(&cpu0, NULL);
    uint64_t t0 = bench_now_ns();
    int ok = 1;
    for (uint64_t i = 1; i <= o->count && ok; i++) {
        sqlite3_bind_blob(ins, 1, session, sizeof session, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 2, (sqlite3_int64)i);
        sqlite3_bind_blob(ins, 3, payload, (int)o->size, SQLITE_STATIC);
        ok = sqlite3_step(ins) == SQLITE_DONE;
        sqlite3_reset(ins);
    }
    uint64_t t1 = bench_now_ns();
    bench_rusage(&cpu1, NULL);
    free(payload);
    if (!ok) {
        sqlite3_finalize(ins);
        return fail(db, "insert");
    }
    sqlite3_finalize(ins);
    sqlite3_close(db);
    bench_json j;
    bj_begin(&j);
    bj_str(&j, "role", "sqlite");
    bj_int(&j, "ok", 1);
    bj_int(&j, "n", o->count);
    bj_num(&j, "secs", (double)(t1 - t0) / 1e9);
    bj_num(&j, "rows_s", t1 > t0 ? (double)o->count / ((double)(t1 - t0) / 1e9) : 0);
    bj_num(&j, "cpu_s", cpu1 - cpu0);
    bj_emit(&j);
    return 0;
}

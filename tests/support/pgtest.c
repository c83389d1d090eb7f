/*
 * A private PostgreSQL server for tests (pgtest.h): initdb in a temporary
 * directory, postgres on a loopback port, stopped by PID at exit. Starting
 * and stopping it is src/tools/pgserver (shared with `tether bench --pg
 * auto`); this file adds what tests want: one server per process, failures
 * that end the test with the server's log, and libpq helpers.
 */
#include "pgtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "pgserver/pgserver.h"

static struct {
    tether_pgs srv; /* the server */
    int fsync;      /* 1: fsync=on (pgt_set_fsync) */
    int atexit_set; /* cleanup is registered */
    int dbs;        /* databases created, for names */
} pg;

void pgt_set_fsync(int on)
{
    pg.fsync = on;
}

static void cleanup(void)
{
    tether_pgs_remove(&pg.srv);
}

static void fail_with(const char *what, const char *err)
{
    tether_pgs_show_why(&pg.srv, "pgtest");
    fprintf(stderr, "pgtest: FAIL: %s%s%s\n", err, pg.srv.why_log[0] ? "; its log is above" : "",
            what);
    exit(1);
}

const char *pgt_conninfo(const char *db, char *buf, size_t len)
{
    snprintf(buf, len, "host=127.0.0.1 port=%d user=postgres dbname=%s connect_timeout=10",
             pg.srv.port, db);
    return buf;
}

const char *pgt_uri(const char *db, char *buf, size_t len)
{
    return tether_pgs_uri(&pg.srv, db, buf, len);
}

const char *pgt_password(void)
{
    return pg.srv.password;
}

int pgt_port(void)
{
    return pg.srv.pid ? pg.srv.port : 0;
}

void pgt_start(void)
{
    if (pg.srv.pid) {
        return;
    }
    if (!pg.atexit_set) {
        atexit(cleanup);
        pg.atexit_set = 1;
    }
    char err[600];
    if (tether_pgs_start(&pg.srv, pg.fsync, err, sizeof err) != 0) {
        fail_with(strstr(err, "not found") ? "; the PostgreSQL store's tests need a real server" : "",
                  err);
    }
}

int pgt_restart(void)
{
    char err[600];
    if (tether_pgs_restart(&pg.srv, err, sizeof err) != 0) {
        tether_pgs_show_why(&pg.srv, "pgtest");
        fprintf(stderr, "pgtest: restart: %s\n", err);
        return -1;
    }
    return 0;
}

const char *pgt_data_dir(void)
{
    return pg.srv.data;
}

int pgt_adopt(void)
{
    return tether_pgs_adopt(&pg.srv);
}

void pgt_stop(void)
{
    tether_pgs_stop(&pg.srv);
}

int pgt_exec(const char *db, const char *sql, int quiet)
{
    char ci[256];
    PGconn *c = PQconnectdb(pgt_conninfo(db, ci, sizeof ci));
    int rc = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        ExecStatusType st = PQresultStatus(r);
        rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
        PQclear(r);
    }
    if (rc != 0 && !quiet) {
        fprintf(stderr, "pgtest: %s: %s", sql, PQerrorMessage(c));
    }
    PQfinish(c);
    return rc;
}

int pgt_createdb(const char *prefix, char *name, size_t len)
{
    snprintf(name, len, "%s_%d_%d", prefix, (int)getpid(), ++pg.dbs);
    char sql[256];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    return pgt_exec("postgres", sql, 0);
}

int pgt_query_int(const char *db, const char *sql, long long *out)
{
    char ci[256];
    PGconn *c = PQconnectdb(pgt_conninfo(db, ci, sizeof ci));
    int rc = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)) {
            *out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            rc = 0;
        }
        PQclear(r);
    }
    if (rc != 0) {
        fprintf(stderr, "pgtest: %s: %s", sql, PQerrorMessage(c));
    }
    PQfinish(c);
    return rc;
}

#include "harness.h"

#include <execinfo.h>
#include <sqlite3.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

int tt_failed_checks;
static int passed, failed;
static const char *current = "";
static char tmpdir[256];

void tt_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: [%s] FAILED: ", file, line, current);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    tt_failed_checks++;
}

/* An abort() deep in a library (a failed mutex call, a library's own check)
 * ends a test binary with no word of where; under ctest that is all a flaky
 * run leaves. So the test's name and the aborting thread's stack go to stderr
 * first (resolve the +0x offsets with addr2line -f -i -e <binary>). Only
 * SIGABRT: the sanitizers own SIGSEGV and SIGBUS, and say more. */
static void on_abort(int sig)
{
    static const char head[] = "\n*** SIGABRT in test ";
    void *frames[48];
    (void)!write(STDERR_FILENO, head, sizeof head - 1);
    (void)!write(STDERR_FILENO, current, strlen(current));
    (void)!write(STDERR_FILENO, "; stack:\n", 9);
    int n = backtrace(frames, 48);
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
    signal(sig, SIG_DFL);
    raise(sig);
}

__attribute__((constructor)) static void catch_abort(void)
{
    void *frames[1];
    backtrace(frames, 1); /* loads libgcc now: the handler must not allocate */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_abort;
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGABRT, &sa, NULL);
}

void tt_run(const char *name, void (*fn)(void))
{
    const char *only = getenv("TT_ONLY"), *skip = getenv("TT_SKIP");
    if (only && *only && !strstr(name, only)) {
        return;
    }
    if (skip && *skip && strstr(name, skip)) {
        printf("skip %s\n", name);
        return;
    }
    current = name;
    tt_failed_checks = 0;
    fn();
    if (tt_failed_checks) {
        failed++;
        printf("FAIL %s\n", name);
    } else {
        passed++;
        printf("ok   %s\n", name);
    }
    fflush(stdout);
}

const char *tt_tmpdir(void)
{
    if (!tmpdir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/tether-test-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            exit(2);
        }
    }
    return tmpdir;
}

const char *tt_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", tt_tmpdir(), name);
    return buf;
}

int tt_finish(void)
{
    if (tmpdir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) {
            fprintf(stderr, "could not remove %s\n", tmpdir);
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

long long tt_sqlite_int(const char *path, const char *sql)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *q = NULL;
    long long v = -1;
    if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(h, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW) {
        v = sqlite3_column_int64(q, 0);
    } else {
        fprintf(stderr, "  %s on %s: %s\n", sql, path, h ? sqlite3_errmsg(h) : "cannot open");
    }
    sqlite3_finalize(q);
    sqlite3_close(h);
    return v;
}

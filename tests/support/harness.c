#include "harness.h"

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

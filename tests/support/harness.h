/*
 * tether's small test harness. A suite is one executable:
 *
 *   TEST(name) { CHECK(x == 1); CHECK_EQ_U64(a, b); CHECK_OK(call()); }
 *   int main(void) { RUN(name); return tt_finish(); }
 *
 * A failed CHECK prints file:line and the expression and fails the test; the
 * test goes on so one run shows every failure. tt_finish() prints the summary
 * line "N passed, N failed" and returns the exit status.
 * TT_ONLY=substring in the environment runs only the tests whose name has it;
 * TT_SKIP=substring skips those whose name has it.
 */
#ifndef TETHER_TEST_HARNESS_H
#define TETHER_TEST_HARNESS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int tt_failed_checks; /* failures in the running test */

void tt_fail(const char *file, int line, const char *fmt, ...);
void tt_run(const char *name, void (*fn)(void));
int tt_finish(void);

/* A fresh temporary directory for this process (removed by tt_finish()). */
const char *tt_tmpdir(void);
/* tt_tmpdir()/name into buf. */
const char *tt_path(char *buf, size_t len, const char *name);
/* One integer read from the SQLite file path by sql, through a read-only
 * connection of its own (not tether's); -1, with the reason on stderr, when
 * that fails. */
long long tt_sqlite_int(const char *path, const char *sql);

#define TEST(name) static void test_##name(void)
#define RUN(name) tt_run(#name, test_##name)

#define CHECK(cond)                                                                             \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            tt_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                                    \
        }                                                                                       \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                      \
    do {                                                                                        \
        long long tt_a = (long long)(a), tt_b = (long long)(b);                                \
        if (tt_a != tt_b) {                                                                     \
            tt_fail(__FILE__, __LINE__, "%s == %s (%lld != %lld)", #a, #b, tt_a, tt_b);         \
        }                                                                                       \
    } while (0)

#define CHECK_EQ_U64(a, b)                                                                      \
    do {                                                                                        \
        unsigned long long tt_a = (unsigned long long)(a), tt_b = (unsigned long long)(b);     \
        if (tt_a != tt_b) {                                                                     \
            tt_fail(__FILE__, __LINE__, "%s == %s (%llu != %llu)", #a, #b, tt_a, tt_b);         \
        }                                                                                       \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                      \
    do {                                                                                        \
        const char *tt_a = (a), *tt_b = (b);                                                    \
        if (tt_a == NULL || tt_b == NULL || strcmp(tt_a, tt_b) != 0) {                          \
            tt_fail(__FILE__, __LINE__, "%s == %s (\"%s\" != \"%s\")", #a, #b,                  \
                    tt_a ? tt_a : "(null)", tt_b ? tt_b : "(null)");                            \
        }                                                                                       \
    } while (0)

#define CHECK_MEM(a, b, n) CHECK(memcmp((a), (b), (n)) == 0)

/* A call returning a tether_err must return TETHER_OK. */
#define CHECK_OK(call) CHECK_EQ_INT((call), 0)
/* A call must return the given tether_err. */
#define CHECK_ERR(call, code) CHECK_EQ_INT((call), (code))

#endif

/*
 * A very small test harness: each test file defines test functions, lists
 * them in main via WD_RUN, and returns wd_test_finish(). Checks record a
 * failure with file:line and keep going, so one run reports every mismatch.
 * Exit 0 when all passed, 1 otherwise, 77 when the test skipped itself.
 */
#ifndef WD_TEST_H
#define WD_TEST_H

#include <math.h>
#include <stdio.h>

extern int wd_test_failures;
extern int wd_test_checks;

void wd_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prints "N passed, N failed" for the test functions run and returns the exit code. */
int wd_test_finish(void);
void wd_test_run(const char *name, void (*fn)(void));
/* Path of a file in the source tree (uses WD_SOURCE_DIR set by CTest); static buffer. */
const char *wd_test_src(const char *rel);
/* Path of a built binary (uses WD_BIN_DIR set by CTest); static buffer. */
const char *wd_test_bin(const char *name);
/* Runs a shell command, captures up to cap-1 bytes of stdout+stderr in out; returns exit code. */
int wd_test_sh(const char *cmd, char *out, size_t cap);
/* A loopback TCP port nobody listens on now (the kernel picks it), or -1. */
int wd_test_free_port(void);

#define WD_RUN(fn) wd_test_run(#fn, fn)

#define WD_EXPECT(cond)                                                                            \
    do {                                                                                           \
        wd_test_checks++;                                                                          \
        if (!(cond))                                                                               \
            wd_test_fail(__FILE__, __LINE__, "expected %s", #cond);                                \
    } while (0)

#define WD_EXPECT_MSG(cond, ...)                                                                   \
    do {                                                                                           \
        wd_test_checks++;                                                                          \
        if (!(cond))                                                                               \
            wd_test_fail(__FILE__, __LINE__, __VA_ARGS__);                                         \
    } while (0)

#define WD_EXPECT_EQ_INT(a, b)                                                                     \
    do {                                                                                           \
        long long wd_a_ = (long long)(a), wd_b_ = (long long)(b);                                  \
        wd_test_checks++;                                                                          \
        if (wd_a_ != wd_b_)                                                                        \
            wd_test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, wd_a_, wd_b_);      \
    } while (0)

#define WD_EXPECT_NEAR(a, b, tol)                                                                  \
    do {                                                                                           \
        double wd_a_ = (double)(a), wd_b_ = (double)(b);                                           \
        wd_test_checks++;                                                                          \
        if (!(fabs(wd_a_ - wd_b_) <= (tol)))                                                       \
            wd_test_fail(__FILE__, __LINE__, "%s ~ %s: %.9g vs %.9g (tol %g)", #a, #b, wd_a_,      \
                         wd_b_, (double)(tol));                                                    \
    } while (0)

#endif

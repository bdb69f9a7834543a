/* The harness behind wd_test.h. */
#include "tests/unit/wd_test.h"

#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int wd_test_failures;
int wd_test_checks;
static int g_passed, g_failed, g_fail_before;

void wd_test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    wd_test_failures++;
}

void wd_test_run(const char *name, void (*fn)(void))
{
    g_fail_before = wd_test_failures;
    fn();
    if (wd_test_failures == g_fail_before) {
        g_passed++;
        printf("ok   %s\n", name);
    } else {
        g_failed++;
        printf("FAIL %s\n", name);
    }
    fflush(stdout);
}

int wd_test_finish(void)
{
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}

const char *wd_test_src(const char *rel)
{
    static char buf[4096];
    const char *root = getenv("WD_SOURCE_DIR");
    snprintf(buf, sizeof(buf), "%s/%s", root ? root : ".", rel);
    return buf;
}

const char *wd_test_bin(const char *name)
{
    static char buf[4096];
    const char *root = getenv("WD_BIN_DIR");
    snprintf(buf, sizeof(buf), "%s/%s", root ? root : "./bin", name);
    return buf;
}

int wd_test_sh(const char *cmd, char *out, size_t cap)
{
    char full[8192];
    snprintf(full, sizeof(full), "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p)
        return -1;
    size_t n = 0;
    if (out && cap) {
        n = fread(out, 1, cap - 1, p);
        out[n] = 0;
    }
    char sink[4096];
    while (fread(sink, 1, sizeof(sink), p) > 0) {
    }
    int rc = pclose(p);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

int wd_test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(sa.sin_port);
}

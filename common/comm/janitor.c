/*
 * Launch janitor (see janitor.h for why). The janitor process closes every descriptor it
 * inherited but its two ends and stderr (so it never holds the rendezvous port, a caller's
 * socket or a pipe a shell waits on), then blocks in read() until the launcher is gone.
 */
#include "common/comm/janitor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/comm/shm_segment.h"
#include "common/util/log.h"

/* How long the janitor waits for the last process of the launch after the launcher died
 * (ranks die at once of PR_SET_PDEATHSIG; this bounds a helper that left the group). */
#define JANITOR_WAIT_MS 10000

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void close_other_fds(int keep_a, int keep_b)
{
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd >= 0) {
        dup2(null_fd, 0);
        dup2(null_fd, 1);
        close(null_fd);
    }
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int fd = atoi(de->d_name);
        if (fd > 2 && fd != dirfd(d) && fd != keep_a && fd != keep_b)
            close(fd);
    }
    closedir(d);
}

/* Returns once every writer of fd closed it (or after timeout_ms). */
static void wait_eof(int fd, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return;
        char buf[64];
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            return;
    }
}

/* The janitor process: never returns. */
static void janitor_main(int launcher_r, int alive_r, const char *prefix)
{
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    close_other_fds(launcher_r, alive_r);
    pid_t pgid = 0;
    for (;;) {
        int32_t v;
        ssize_t n = read(launcher_r, &v, sizeof(v));
        if (n == (ssize_t)sizeof(v))
            pgid = v;
        else if (n < 0 && errno == EINTR)
            continue;
        else if (n <= 0)
            break; /* end of file: the launcher is gone */
    }
    if (pgid > 0)
        kill(-pgid, SIGKILL);
    wait_eof(alive_r, JANITOR_WAIT_MS);
    int n = wd_shm_segment_remove_prefix(prefix);
    if (n > 0)
        wd_log(WD_LOG_WARN, "launch", "launcher gone: removed %d shm segment(s) /%s*", n, prefix);
    _exit(0);
}

enum wd_status wd_janitor_init(struct wd_janitor *j, const char *prefix, struct wd_error *err)
{
    memset(j, 0, sizeof(*j));
    j->launcher_fd = j->alive_fd = -1;
    snprintf(j->prefix, sizeof(j->prefix), "%s", prefix);
    int sv[2], pv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return wd_error_set(err, WD_ERR_IO, "launch: janitor socket: %s", strerror(errno));
    if (pipe2(pv, O_CLOEXEC) != 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        return wd_error_set(err, WD_ERR_IO, "launch: janitor pipe: %s", strerror(e));
    }
    fflush(NULL); /* the child must not inherit (and repeat) buffered output */
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        close(pv[0]);
        close(pv[1]);
        return wd_error_set(err, WD_ERR_IO, "launch: fork of the janitor failed: %s", strerror(e));
    }
    if (pid == 0)
        janitor_main(sv[1], pv[0], j->prefix);
    close(sv[1]);
    close(pv[0]);
    j->pid = pid;
    j->launcher_fd = sv[0];
    j->alive_fd = pv[1];
    return WD_OK;
}

void wd_janitor_set_group(struct wd_janitor *j, pid_t pgid)
{
    int32_t v = (int32_t)pgid;
    if (j->launcher_fd >= 0 &&
        send(j->launcher_fd, &v, sizeof(v), MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)sizeof(v))
        wd_log(WD_LOG_WARN, "launch", "could not tell the janitor the rank group: %s",
               strerror(errno));
}

void wd_janitor_detach(struct wd_janitor *j)
{
    if (j->launcher_fd >= 0)
        close(j->launcher_fd);
    j->launcher_fd = -1;
    j->alive_fd = -1; /* stays open in this process on purpose */
    j->pid = 0;
}

void wd_janitor_cleanup(struct wd_janitor *j)
{
    if (j->pid <= 0)
        return; /* never started, failed to start, detached or already stopped */
    kill(j->pid, SIGKILL);
    while (waitpid(j->pid, NULL, 0) < 0 && errno == EINTR) {
    }
    close(j->launcher_fd);
    close(j->alive_fd);
    j->pid = 0;
    j->launcher_fd = j->alive_fd = -1;
}

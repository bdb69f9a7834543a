/*
 * Launch janitor: a small process the launcher forks before its ranks, whose only job is
 * to remove the launch's shm segments when the launcher dies without doing it itself
 * (SIGKILL, an unhandled SIGTERM or SIGINT, a crash). Ranks create their window segments
 * long before every peer has mapped them and their names can go, so a launcher killed in
 * that window used to leave them in /dev/shm: its ranks die with it (PR_SET_PDEATHSIG) and
 * nobody else knows the names.
 *
 * Two descriptors tell the janitor what happened, with no pid polling and no signal
 * handlers: a socket only the launcher holds (end of file = the launcher is gone; it also
 * carries the ranks' process group id) and a pipe every rank inherits (end of file = no
 * process of the launch is left that could still create a segment). It then kills the
 * ranks' process group (helpers the ranks forked), waits for the pipe (bounded), sweeps
 * /dev/shm for the launch's prefix and exits. It ignores SIGINT, SIGTERM and SIGHUP so that
 * a Ctrl-C or a signal to the launcher's process group does not take it along; a SIGKILL
 * to that whole group still does (then the operator's kill took the cleanup too). On a
 * normal end the launcher cleans up itself and stops the janitor. Launcher thread only.
 */
#ifndef WD_COMM_JANITOR_H
#define WD_COMM_JANITOR_H

#include <sys/types.h>

#include "common/util/status.h"

struct wd_janitor {
    pid_t pid;       /* 0: not running */
    int launcher_fd; /* launcher's end of the socket whose end of file means "launcher gone" */
    int alive_fd;    /* write end of the pipe every process of the launch holds */
    char prefix[48]; /* segment names "/<prefix>..." it sweeps */
};

/* Forks the janitor for segments named "/<prefix>...". Call before forking any rank. */
enum wd_status wd_janitor_init(struct wd_janitor *j, const char *prefix, struct wd_error *err);
/* Tells the janitor the ranks' process group (killed once the launcher is gone); 0 once
 * every rank was reaped, so a group id the kernel may hand out again is never killed. */
void wd_janitor_set_group(struct wd_janitor *j, pid_t pgid);
/* In a rank process right after fork: lets go of the launcher's end, keeps the pipe end
 * for the rest of the process's life, and forgets the janitor (this process never stops
 * it). */
void wd_janitor_detach(struct wd_janitor *j);
/* Launcher, after it removed the segments itself: kills and reaps the janitor, closes the
 * descriptors. Idempotent; a zeroed struct is fine. */
void wd_janitor_cleanup(struct wd_janitor *j);

#endif

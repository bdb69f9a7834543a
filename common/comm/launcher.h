/*
 * Rank launcher: forks one process per local rank of this node, hosts the rendezvous
 * store on node 0, watches the ranks, and tears the whole tree down when one fails.
 *
 * Global rank = node_rank * ranks_per_node + local rank, ranks_per_node = world / nnodes.
 * The launcher (the calling process) stays the parent: it polls the rendezvous server and
 * reaps ranks. When a rank exits non-zero or dies by a signal, its failure is published in
 * a control page every local rank maps (so a peer waiting on it fails at once with
 * WD_ERR_PEER naming it) and, through the rendezvous, to the launchers of other nodes.
 * After settle_ms the survivors get SIGTERM, after kill_grace_ms SIGKILL. Ranks live in one
 * process group of their own (so helpers they fork are killed too) and have
 * PR_SET_PDEATHSIG(SIGKILL), so a launcher that dies takes them along. Every shared-memory
 * segment of a launch is named "/wd-<launch_id>-..." and the launcher unlinks them all at
 * the end, whether the ranks finished, crashed or were killed; when the launcher itself
 * dies first (SIGKILL, SIGTERM), a janitor process it forked before the ranks does
 * (common/comm/janitor.h).
 *
 * Joining a job: the launcher of node k > 0 presents the job's token (every connection to
 * the rendezvous must, ranks included), checks that node 0 runs the same world size over
 * the same number of nodes, and claims its node rank, which only the first launcher for
 * it gets. A second launcher for a node rank that joined, or one with another token or
 * shape, fails wd_launcher_start with a clear error before it forks anything and without
 * touching the running job, which goes on (node 0 logs the refusal).
 *
 * The launcher is single-threaded and must be started from a single-threaded process
 * (fork). PR_SET_PDEATHSIG follows the thread that forked, so keep it alive while ranks run.
 */
#ifndef WD_COMM_LAUNCHER_H
#define WD_COMM_LAUNCHER_H

#include <stddef.h>

#include "common/comm/rendezvous.h"
#include "common/util/status.h"

struct wd_layout;

struct wd_launch_config {
    int world_size; /* ranks over all nodes */
    int nnodes, node_rank;
    char dist_init_addr[256]; /* "host:port" of the rendezvous (node 0 binds it); "" with one
                                 node picks a free 127.0.0.1 port */
    char dist_init_token[WD_RDZV_MAX_TOKEN + 1]; /* job identity every launcher of the job
                                                    presents at the rendezvous; default "" */
    int timeout_ms;     /* setup waits of the ranks (rendezvous, barriers); default 60000 */
    int settle_ms;      /* after a failure, time the others get to fail by themselves before
                           SIGTERM; default 2000 */
    int kill_grace_ms;  /* SIGTERM -> SIGKILL; default 2000 */
    int run_timeout_ms; /* 0: none; else the ranks are stopped and the run fails after it */
};

/* Defaults: one rank on one node, automatic address, the timeouts above. */
void wd_launch_config_init(struct wd_launch_config *cfg);
/* world, nnodes, node_rank and the address from a layout (keeps the timeouts). */
void wd_launch_config_from_layout(struct wd_launch_config *cfg, const struct wd_layout *layout);

struct wd_rank_ctl; /* the shared control page: per-rank state, written by launchers */

/* What a rank process knows about itself and its launch. */
struct wd_rank_info {
    int rank, world_size;
    int nnodes, node_rank, ranks_per_node, local_rank;
    char rdzv_host[256];
    int rdzv_port;
    char launch_id[24];                     /* names every shm segment of this node's launch */
    char rdzv_token[WD_RDZV_MAX_TOKEN + 1]; /* presented when connecting to the rendezvous */
    int timeout_ms;                         /* setup timeout from the launch config */
    struct wd_rank_ctl *ctl;
};

/* rank_main runs in each rank process; its return value is the process exit status
 * (0 = success; values outside 0..255 become 1). */
typedef int (*wd_rank_main_fn)(void *ctx, const struct wd_rank_info *ri);

struct wd_launcher;

/* Validates cfg, binds the rendezvous (node 0) or connects to it and joins the job (other
 * nodes), and forks the local ranks. Returns in the launcher only; children never return
 * from here. WD_ERR_INVALID "launch token mismatch", "node rank N already joined this job"
 * or naming the job's shape when another node's launcher is refused. */
enum wd_status wd_launcher_start(const struct wd_launch_config *cfg, wd_rank_main_fn rank_main,
                                 void *ctx, struct wd_launcher **l_p, struct wd_error *err);
/* Serves the rendezvous and reaps ranks for up to timeout_ms (< 0: until the end).
 * WD_OK: every rank of every node finished with status 0. WD_ERR_TIMEOUT: still running.
 * WD_ERR_PEER: a rank failed (the message names it and its status or signal, plus the
 * rank's own error line when it reported one); by then every local rank is reaped and the
 * shm segments are gone. Other errors: the launcher itself failed (ranks are stopped). */
enum wd_status wd_launcher_wait(struct wd_launcher *l, int timeout_ms, struct wd_error *err);
/* The rendezvous port (node 0: the bound one). */
int wd_launcher_rdzv_port(const struct wd_launcher *l);
/* Stops whatever still runs (SIGTERM, then SIGKILL), reaps it, removes the launch's shm
 * segments, frees l. NULL-safe. */
void wd_launcher_destroy(struct wd_launcher *l);

/* start + wait(-1) + destroy. */
enum wd_status wd_launcher_run(const struct wd_launch_config *cfg, wd_rank_main_fn rank_main,
                               void *ctx, struct wd_error *err);

/* ---- called from rank processes ---- */

/* Node that runs a global rank. */
int wd_rank_node_of(const struct wd_rank_info *ri, int rank);
/* WD_OK while rank is running or not known to have stopped; WD_ERR_PEER naming it and how it
 * ended (exit status, signal, its node's failure) once its launcher saw it stop. */
enum wd_status wd_rank_check(const struct wd_rank_info *ri, int rank, struct wd_error *err);
/* WD_ERR_PEER for the first rank of the whole launch known to have failed, else WD_OK. */
enum wd_status wd_rank_check_all(const struct wd_rank_info *ri, struct wd_error *err);
/* Records this rank's error line for the launcher's failure message (the rank should then
 * return non-zero from rank_main). */
void wd_rank_report(const struct wd_rank_info *ri, const struct wd_error *e);
/* "/wd-<launch_id>-<what>" into buf; what uses [A-Za-z0-9_.-]. */
void wd_rank_shm_name(const struct wd_rank_info *ri, const char *what, char *buf, size_t cap);

#endif

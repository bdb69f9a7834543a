/*
 * Rank launcher with real processes: rank identity, and every way a rank can fail (exit
 * early with an error or with success, die by a signal, stall, die during bring-up,
 * leave a helper process or a shm segment behind, overrun the run timeout), and the
 * launcher itself killed while its ranks hold segments; and launchers of strangers
 * pointed at a running two-node job, which must be refused while the job goes on. For each:
 * the surviving ranks fail within their timeout with an error naming the culprit, the
 * launcher returns an error naming it and how it ended, and afterwards no rank or helper
 * process is alive and /dev/shm holds nothing of the launch. Ranks record what they saw
 * in a shared anonymous mapping the test reads after the launcher returns.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/comm/collectives.h"
#include "common/comm/comm.h"
#include "common/comm/comm_group.h"
#include "common/comm/launcher.h"
#include "tests/unit/wd_test.h"

#define MAX_RANKS 8

struct rank_result {
    int is_set;
    int pid, helper_pid;
    int rank, world, local_rank, node_rank, rpn, nnodes;
    char launch_id[24];
    int is_ready; /* body_hold: segment and helper are there */
    int status;
    char msg[WD_ERROR_LEN];
    long elapsed_ms;
};

struct scenario;
typedef enum wd_status (*body_fn)(const struct scenario *sc, const struct wd_rank_info *ri,
                                  struct rank_result *res, struct wd_error *err);

struct scenario {
    body_fn body;
    int culprit;
    int timeout_ms;
    struct rank_result *res; /* [MAX_RANKS] in a MAP_SHARED mapping */
};

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int rank_main(void *ctx, const struct wd_rank_info *ri)
{
    const struct scenario *sc = ctx;
    struct rank_result *res = &sc->res[ri->rank];
    res->pid = getpid();
    res->rank = ri->rank;
    res->world = ri->world_size;
    res->local_rank = ri->local_rank;
    res->node_rank = ri->node_rank;
    res->rpn = ri->ranks_per_node;
    res->nnodes = ri->nnodes;
    snprintf(res->launch_id, sizeof(res->launch_id), "%s", ri->launch_id);
    res->is_set = 1;
    struct wd_error err = {0};
    long t0 = now_ms();
    enum wd_status st = sc->body(sc, ri, res, &err);
    res->elapsed_ms = now_ms() - t0;
    res->status = st;
    snprintf(res->msg, sizeof(res->msg), "%s", st == WD_OK ? "" : err.msg);
    if (st != WD_OK) {
        wd_rank_report(ri, &err);
        return 1;
    }
    return 0;
}

static enum wd_status launch(struct scenario *sc, int world, int run_timeout_ms, long *elapsed,
                             struct wd_error *err)
{
    memset(sc->res, 0, MAX_RANKS * sizeof(*sc->res));
    struct wd_launch_config cfg;
    wd_launch_config_init(&cfg);
    cfg.world_size = world;
    cfg.timeout_ms = 8000;
    cfg.settle_ms = 300;
    cfg.kill_grace_ms = 1000;
    cfg.run_timeout_ms = run_timeout_ms;
    long t0 = now_ms();
    enum wd_status st = wd_launcher_run(&cfg, rank_main, sc, err);
    *elapsed = now_ms() - t0;
    return st;
}

/* A process is gone when it no longer exists or is a zombie nobody reaped yet. */
static int is_gone(int pid)
{
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 1;
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *close = strrchr(buf, ')');
    return close && close[1] == ' ' && (close[2] == 'Z' || close[2] == 'X');
}

static int shm_entries(const char *launch_id)
{
    char prefix[64];
    int plen = snprintf(prefix, sizeof(prefix), "wd-%s-", launch_id);
    DIR *d = opendir("/dev/shm");
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        n += strncmp(de->d_name, prefix, (size_t)plen) == 0;
    if (d)
        closedir(d);
    return n;
}

/* No rank or helper process alive, nothing of the launch left in /dev/shm. */
static void expect_clean(const struct scenario *sc, int world)
{
    for (int r = 0; r < world; r++) {
        const struct rank_result *res = &sc->res[r];
        if (!res->is_set)
            continue;
        WD_EXPECT_MSG(is_gone(res->pid), "rank %d (pid %d) still alive", r, res->pid);
        if (res->helper_pid) {
            int gone = 0;
            for (int i = 0; i < 200 && !(gone = is_gone(res->helper_pid)); i++)
                usleep(10000);
            WD_EXPECT_MSG(gone, "helper of rank %d (pid %d) still alive", r, res->helper_pid);
        }
        WD_EXPECT_MSG(shm_entries(res->launch_id) == 0, "shm segments of launch %s left",
                      res->launch_id);
    }
}

/* ---------------------------------------------------------------- bodies */

static enum wd_status body_info(const struct scenario *sc, const struct wd_rank_info *ri,
                                struct rank_result *res, struct wd_error *err)
{
    return WD_OK;
}

/* Brings up one group of all ranks; the culprit leaves (how depends on sc->culprit's mode,
 * chosen by the caller through body variants); the others all-reduce and must fail. */
static enum wd_status run_group(const struct scenario *sc, const struct wd_rank_info *ri,
                                void (*culprit_action)(const struct wd_rank_info *ri),
                                struct wd_error *err)
{
    struct wd_comm *comm;
    WD_CHECK(wd_comm_create(ri, &comm, err));
    int members[MAX_RANKS];
    for (int i = 0; i < ri->world_size; i++)
        members[i] = i;
    struct wd_comm_group *g;
    enum wd_status st = wd_comm_group_create(comm, "all", members, ri->world_size, 4096, &g, err);
    if (st == WD_OK) {
        if (ri->rank == sc->culprit)
            culprit_action(ri);
        float x[256];
        for (int i = 0; i < 256; i++)
            x[i] = (float)(ri->rank + i);
        st = wd_coll_all_reduce_f32(g->coll, x, 256, sc->timeout_ms, err);
        wd_comm_group_destroy(g);
    }
    wd_comm_destroy(comm);
    return st;
}

static void exit_3(const struct wd_rank_info *ri)
{
    fflush(NULL);
    _exit(3);
}

static void exit_0(const struct wd_rank_info *ri)
{
    fflush(NULL);
    _exit(0);
}

static void die_sigkill(const struct wd_rank_info *ri)
{
    raise(SIGKILL);
}

static void stall(const struct wd_rank_info *ri)
{
    sleep(20); /* the launcher kills it long before */
    _exit(0);
}

static enum wd_status body_exit3(const struct scenario *sc, const struct wd_rank_info *ri,
                                 struct rank_result *res, struct wd_error *err)
{
    return run_group(sc, ri, exit_3, err);
}

static enum wd_status body_exit0(const struct scenario *sc, const struct wd_rank_info *ri,
                                 struct rank_result *res, struct wd_error *err)
{
    return run_group(sc, ri, exit_0, err);
}

static enum wd_status body_sigkill(const struct scenario *sc, const struct wd_rank_info *ri,
                                   struct rank_result *res, struct wd_error *err)
{
    return run_group(sc, ri, die_sigkill, err);
}

static enum wd_status body_stall(const struct scenario *sc, const struct wd_rank_info *ri,
                                 struct rank_result *res, struct wd_error *err)
{
    return run_group(sc, ri, stall, err);
}

/* The culprit dies before it publishes anything: the others are still in bring-up. */
static enum wd_status body_setup_death(const struct scenario *sc, const struct wd_rank_info *ri,
                                       struct rank_result *res, struct wd_error *err)
{
    if (ri->rank == sc->culprit)
        exit_3(ri);
    return run_group(sc, ri, exit_3, err);
}

/* A sleeping helper process in the rank's process group; its pid goes to res. */
static void start_helper(struct rank_result *res)
{
    pid_t p = fork();
    if (p == 0) {
        sleep(30);
        _exit(0);
    }
    res->helper_pid = p;
}

/* Creates the launch's segment "<what>-<rank>" and leaves it (no unlink). */
static enum wd_status leave_segment(const struct wd_rank_info *ri, const char *what,
                                    struct wd_error *err)
{
    char seg[32], name[128];
    snprintf(seg, sizeof(seg), "%s-%d", what, ri->rank);
    wd_rank_shm_name(ri, seg, name, sizeof(name));
    int fd = shm_open(name, O_CREAT | O_RDWR, 0600);
    if (fd < 0)
        return wd_error_set(err, WD_ERR_IO, "shm_open %s: %s", name, strerror(errno));
    close(fd);
    return WD_OK;
}

/* Rank 0 leaves a sleeping helper in the rank's process group; the culprit (if any)
 * fails. */
static enum wd_status body_helper(const struct scenario *sc, const struct wd_rank_info *ri,
                                  struct rank_result *res, struct wd_error *err)
{
    if (ri->rank == 0)
        start_helper(res);
    if (ri->rank == sc->culprit)
        return wd_error_set(err, WD_ERR_INVALID, "rank %d gives up", ri->rank);
    return WD_OK;
}

/* Every rank leaves a named segment of the launch behind; the culprit is killed. */
static enum wd_status body_leak(const struct scenario *sc, const struct wd_rank_info *ri,
                                struct rank_result *res, struct wd_error *err)
{
    WD_CHECK(leave_segment(ri, "leak", err));
    if (ri->rank == sc->culprit)
        raise(SIGKILL);
    return WD_OK;
}

/* Every rank holds a named segment of the launch and rank 0 a helper, then waits for the
 * launcher to be killed (it takes them along). */
static enum wd_status body_hold(const struct scenario *sc, const struct wd_rank_info *ri,
                                struct rank_result *res, struct wd_error *err)
{
    WD_CHECK(leave_segment(ri, "hold", err));
    if (ri->rank == 0)
        start_helper(res);
    __atomic_store_n(&res->is_ready, 1, __ATOMIC_RELEASE);
    sleep(20);
    return WD_OK;
}

static enum wd_status body_sleep(const struct scenario *sc, const struct wd_rank_info *ri,
                                 struct rank_result *res, struct wd_error *err)
{
    sleep(20);
    return WD_OK;
}

/* ---------------------------------------------------------------- tests */

static struct rank_result *g_res;

/* Two-node launches with strangers: what each launcher returned, and the ranks' go. */
struct node_outcome {
    int is_set;
    int status;
    char msg[WD_ERROR_LEN];
};
struct join_state {
    int go; /* atomic: the ranks of the job may finish */
    struct node_outcome node1, stranger[4];
};
static struct join_state *g_join;

/* Every rank of the job connects, waits for the test's go, then meets all the others at a
 * world barrier (so a stranger's rank taking a place would show). */
static enum wd_status body_join(const struct scenario *sc, const struct wd_rank_info *ri,
                                struct rank_result *res, struct wd_error *err)
{
    struct wd_comm *comm;
    WD_CHECK(wd_comm_create(ri, &comm, err));
    enum wd_status st = WD_OK;
    long t0 = now_ms();
    while (st == WD_OK && !__atomic_load_n(&g_join->go, __ATOMIC_ACQUIRE)) {
        if (now_ms() - t0 > 15000)
            st = wd_error_set(err, WD_ERR_TIMEOUT, "rank %d: no go from the test", ri->rank);
        usleep(5000);
    }
    if (st == WD_OK)
        st = wd_comm_barrier_world(comm, "joined", err);
    wd_comm_destroy(comm);
    return st;
}

static struct scenario make(body_fn body, int culprit, int timeout_ms)
{
    struct scenario sc = {body, culprit, timeout_ms, g_res};
    return sc;
}

static void test_info(void)
{
    struct scenario sc = make(body_info, -1, 0);
    struct wd_error err = {0};
    long el;
    enum wd_status st = launch(&sc, 4, 0, &el, &err);
    WD_EXPECT_MSG(st == WD_OK, "launch: %s", err.msg);
    for (int r = 0; r < 4; r++) {
        const struct rank_result *res = &sc.res[r];
        WD_EXPECT(res->is_set);
        WD_EXPECT_EQ_INT(res->rank, r);
        WD_EXPECT_EQ_INT(res->local_rank, r);
        WD_EXPECT_EQ_INT(res->world, 4);
        WD_EXPECT_EQ_INT(res->rpn, 4);
        WD_EXPECT_EQ_INT(res->nnodes, 1);
        WD_EXPECT_EQ_INT(res->node_rank, 0);
        WD_EXPECT(res->pid != getpid());
        /* "<launcher pid>x<12 hex digits>" */
        char pid_prefix[32];
        snprintf(pid_prefix, sizeof(pid_prefix), "%dx", (int)getpid());
        WD_EXPECT(strncmp(res->launch_id, pid_prefix, strlen(pid_prefix)) == 0);
        WD_EXPECT(strlen(res->launch_id) == strlen(pid_prefix) + 12);
        WD_EXPECT(strcmp(res->launch_id, sc.res[0].launch_id) == 0);
        for (int q = 0; q < r; q++)
            WD_EXPECT(res->pid != sc.res[q].pid);
    }
    expect_clean(&sc, 4);
}

/* The culprit leaves in some way; every other rank must fail naming it. */
static void expect_named(const struct scenario *sc, int world, enum wd_status want_rank_st,
                         const char *want_launcher, const struct wd_error *err, enum wd_status st,
                         long elapsed, long limit_ms)
{
    char who[32];
    snprintf(who, sizeof(who), "rank %d", sc->culprit);
    WD_EXPECT_MSG(st == WD_ERR_PEER, "launcher status %s: %s", wd_status_str(st), err->msg);
    WD_EXPECT_MSG(strstr(err->msg, want_launcher) != NULL, "launcher error '%s' lacks '%s'",
                  err->msg, want_launcher);
    WD_EXPECT_MSG(strstr(err->msg, who) != NULL, "launcher error '%s' does not name %s", err->msg,
                  who);
    for (int r = 0; r < world; r++) {
        const struct rank_result *res = &sc->res[r];
        if (r == sc->culprit)
            continue;
        WD_EXPECT_MSG(res->is_set, "rank %d never ran", r);
        WD_EXPECT_MSG(res->status == (int)want_rank_st, "rank %d: status %s (%s)", r,
                      wd_status_str(res->status), res->msg);
        WD_EXPECT_MSG(strstr(res->msg, who) != NULL, "rank %d's error '%s' does not name %s", r,
                      res->msg, who);
    }
    WD_EXPECT_MSG(elapsed < limit_ms, "took %ld ms", elapsed);
    expect_clean(sc, world);
}

static void test_exit_early(void)
{
    struct scenario sc = make(body_exit3, 2, 6000);
    struct wd_error err = {0};
    long el;
    enum wd_status st = launch(&sc, 4, 0, &el, &err);
    expect_named(&sc, 4, WD_ERR_PEER, "rank 2 exited with status 3", &err, st, el, 4000);
}

static void test_exit_zero_early(void)
{
    struct scenario sc = make(body_exit0, 1, 6000);
    struct wd_error err = {0};
    long el;
    enum wd_status st = launch(&sc, 2, 0, &el, &err);
    expect_named(&sc, 2, WD_ERR_PEER, "rank 1 exited with status 0", &err, st, el, 4000);
}

static void test_killed(void)
{
    struct scenario sc = make(body_sigkill, 1, 6000);
    struct wd_error err = {0};
    long el;
    enum wd_status st = launch(&sc, 4, 0, &el, &err);
    expect_named(&sc, 4, WD_ERR_PEER, "rank 1 killed by signal 9", &err, st, el, 4000);
}

static void test_stall(void)
{
    struct scenario sc = make(body_stall, 1, 700);
    struct wd_error err = {0};
    long el;
    enum wd_status st = launch(&sc, 4, 0, &el, &err);
    /* The first rank to give up is the one the launcher names; its line names rank 1. */
    expect_named(&sc, 4, WD_ERR_TIMEOUT, "timed out after 700 ms", &err, st, el, 5000);
    for (int r = 0; r < 4; r++)
        if (r != 1)
            WD_EXPECT_MSG(sc.res[r].elapsed_ms < 4000, "rank %d waited %ld ms", r,
                          sc.res[r].elapsed_ms);
}

static void test_setup_death(void)
{
    struct scenario sc = make(body_setup_death, 3, 6000);
    struct wd_error err = {0};
    long el;
    enum wd_status st = launch(&sc, 4, 0, &el, &err);
    expect_named(&sc, 4, WD_ERR_PEER, "rank 3 exited with status 3", &err, st, el, 4000);
}

static void test_helper_swept(void)
{
    for (int variant = 0; variant < 2; variant++) {
        struct scenario sc = make(body_helper, variant ? 1 : -1, 0);
        struct wd_error err = {0};
        long el;
        enum wd_status st = launch(&sc, 2, 0, &el, &err);
        if (variant) {
            WD_EXPECT_MSG(st == WD_ERR_PEER, "%s", err.msg);
            WD_EXPECT_MSG(strstr(err.msg, "rank 1 exited with status 1: rank 1 gives up"), "%s",
                          err.msg);
        } else {
            WD_EXPECT_MSG(st == WD_OK, "%s", err.msg);
        }
        WD_EXPECT(sc.res[0].helper_pid > 0);
        expect_clean(&sc, 2);
    }
}

static void test_shm_swept(void)
{
    for (int variant = 0; variant < 2; variant++) {
        struct scenario sc = make(body_leak, variant ? 1 : -1, 0);
        struct wd_error err = {0};
        long el;
        enum wd_status st = launch(&sc, 2, 0, &el, &err);
        WD_EXPECT_MSG(variant ? st == WD_ERR_PEER : st == WD_OK, "%s", err.msg);
        WD_EXPECT(sc.res[0].is_set && sc.res[0].status == WD_OK);
        expect_clean(&sc, 2);
    }
}

static void test_run_timeout(void)
{
    struct scenario sc = make(body_sleep, -1, 0);
    struct wd_error err = {0};
    long el;
    enum wd_status st = launch(&sc, 2, 300, &el, &err);
    WD_EXPECT(st == WD_ERR_PEER);
    WD_EXPECT_MSG(strstr(err.msg, "run timeout of 300 ms"), "%s", err.msg);
    WD_EXPECT_MSG(el < 3000, "took %ld ms", el);
    expect_clean(&sc, 2);
}

/* The launcher process itself dies (SIGKILL: no cleanup of its own can run; SIGTERM: not
 * handled) while its ranks hold named segments: the janitor removes them, and the ranks
 * and rank 0's helper die too. */
static void test_launcher_killed(void)
{
    static const int sigs[] = {SIGKILL, SIGTERM};
    for (int v = 0; v < 2; v++) {
        struct scenario sc = make(body_hold, -1, 0);
        memset(sc.res, 0, MAX_RANKS * sizeof(*sc.res));
        fflush(NULL);
        pid_t launcher = fork();
        if (launcher == 0) {
            struct wd_error err;
            long el;
            launch(&sc, 2, 0, &el, &err);
            _exit(0);
        }
        int is_ready = 0;
        for (int i = 0; i < 500 && !is_ready; i++) {
            is_ready = __atomic_load_n(&sc.res[0].is_ready, __ATOMIC_ACQUIRE) &&
                       __atomic_load_n(&sc.res[1].is_ready, __ATOMIC_ACQUIRE);
            usleep(10000);
        }
        WD_EXPECT_MSG(is_ready, "signal %d: ranks never got ready", sigs[v]);
        WD_EXPECT(shm_entries(sc.res[0].launch_id) == 2);
        kill(launcher, sigs[v]);
        waitpid(launcher, NULL, 0);
        int is_clean = 0;
        for (int i = 0; i < 500 && !is_clean; i++) {
            is_clean = shm_entries(sc.res[0].launch_id) == 0 && is_gone(sc.res[0].pid) &&
                       is_gone(sc.res[1].pid) && is_gone(sc.res[0].helper_pid);
            if (!is_clean)
                usleep(10000);
        }
        WD_EXPECT_MSG(is_clean, "signal %d: %d segment(s) left, rank 0 %s, rank 1 %s, helper %s",
                      sigs[v], shm_entries(sc.res[0].launch_id),
                      is_gone(sc.res[0].pid) ? "gone" : "alive",
                      is_gone(sc.res[1].pid) ? "gone" : "alive",
                      is_gone(sc.res[0].helper_pid) ? "gone" : "alive");
        if (!is_clean) { /* do not leave them to the next test */
            kill(sc.res[0].pid, SIGKILL);
            kill(sc.res[1].pid, SIGKILL);
            kill(sc.res[0].helper_pid, SIGKILL);
        }
    }
}

static void node_config(struct wd_launch_config *cfg, int world, int node, int port,
                        const char *token)
{
    wd_launch_config_init(cfg);
    cfg->world_size = world;
    cfg->nnodes = 2;
    cfg->node_rank = node;
    snprintf(cfg->dist_init_addr, sizeof(cfg->dist_init_addr), "127.0.0.1:%d", port);
    snprintf(cfg->dist_init_token, sizeof(cfg->dist_init_token), "%s", token);
    cfg->timeout_ms = 8000;
    cfg->settle_ms = 300;
    cfg->kill_grace_ms = 1000;
}

/* A launcher of one node in a child process (another "machine"); its outcome lands in out. */
static pid_t spawn_node(struct scenario *sc, int world, int node, int port, const char *token,
                        struct node_outcome *out)
{
    fflush(NULL);
    pid_t p = fork();
    if (p == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        struct wd_launch_config cfg;
        node_config(&cfg, world, node, port, token);
        struct wd_error err = {0};
        enum wd_status st = wd_launcher_run(&cfg, rank_main, sc, &err);
        out->status = st;
        snprintf(out->msg, sizeof(out->msg), "%s", st == WD_OK ? "" : err.msg);
        __atomic_store_n(&out->is_set, 1, __ATOMIC_RELEASE);
        fflush(NULL);
        _exit(0);
    }
    return p;
}

/* Serves node 0 (l) until child exits or ms pass; returns 1 when it exited. */
static int serve_until_exit(struct wd_launcher *l, pid_t child, int ms)
{
    long t0 = now_ms();
    while (now_ms() - t0 < ms) {
        if (waitpid(child, NULL, WNOHANG) == child)
            return 1;
        if (wd_launcher_wait(l, 20, NULL) != WD_ERR_TIMEOUT)
            return waitpid(child, NULL, WNOHANG) == child;
    }
    return 0;
}

/* A running two-node job (node 0 here, node 1 in a child), then launchers for node 1 that
 * must be refused without touching the job: one with the job's token (node rank 1 has
 * joined), one with another token, one with none, one with another world size. Then the job
 * finishes normally, with node 1's ranks the ones the first node-1 launcher forked. */
static void test_stranger_refused(void)
{
    memset(g_join, 0, sizeof(*g_join));
    struct scenario sc = make(body_join, -1, 0);
    memset(sc.res, 0, MAX_RANKS * sizeof(*sc.res));
    int port = wd_test_free_port();
    struct wd_launch_config c0;
    node_config(&c0, 4, 0, port, "job-a");
    struct wd_launcher *l = NULL;
    struct wd_error err = {0};
    WD_EXPECT_MSG(wd_launcher_start(&c0, rank_main, &sc, &l, &err) == WD_OK, "%s", err.msg);
    if (!l)
        return;
    pid_t n1 = spawn_node(&sc, 4, 1, port, "job-a", &g_join->node1);
    long t0 = now_ms();
    while (!(sc.res[2].is_set && sc.res[3].is_set) && now_ms() - t0 < 8000)
        wd_launcher_wait(l, 20, NULL);
    WD_EXPECT_MSG(sc.res[2].is_set && sc.res[3].is_set, "node 1's ranks never started");
    static const struct {
        int world;
        const char *token, *want;
    } strangers[] = {
        {4, "job-a", "node rank 1 already joined this job"},
        {4, "job-b", "launch token mismatch"},
        {4, "", "launch token mismatch"},
        {6, "job-a", "runs 4 rank(s) over 2 node(s), this launcher was started for 6 over 2"},
    };
    for (int i = 0; i < 4; i++) {
        struct node_outcome *o = &g_join->stranger[i];
        pid_t p = spawn_node(&sc, strangers[i].world, 1, port, strangers[i].token, o);
        int is_done = serve_until_exit(l, p, 6000);
        if (!is_done) {
            kill(p, SIGKILL);
            waitpid(p, NULL, 0);
        }
        WD_EXPECT_MSG(is_done && o->is_set && o->status == WD_ERR_INVALID &&
                          strstr(o->msg, strangers[i].want) && strstr(o->msg, "launch node 1"),
                      "stranger %d: %s (%s)", i, o->is_set ? o->msg : "no outcome",
                      o->is_set ? wd_status_str(o->status) : "");
    }
    __atomic_store_n(&g_join->go, 1, __ATOMIC_RELEASE);
    enum wd_status st = wd_launcher_wait(l, 15000, &err);
    WD_EXPECT_MSG(st == WD_OK, "node 0: %s", err.msg);
    wd_launcher_destroy(l);
    int is_done = 0;
    for (int i = 0; i < 500 && !(is_done = waitpid(n1, NULL, WNOHANG) == n1); i++)
        usleep(10000);
    if (!is_done) {
        kill(n1, SIGKILL);
        waitpid(n1, NULL, 0);
    }
    WD_EXPECT_MSG(g_join->node1.is_set && g_join->node1.status == WD_OK, "node 1: %s",
                  g_join->node1.msg);
    char n1_prefix[32];
    snprintf(n1_prefix, sizeof(n1_prefix), "%dx", (int)n1);
    for (int r = 0; r < 4; r++) {
        WD_EXPECT_MSG(sc.res[r].is_set && sc.res[r].status == WD_OK, "rank %d: %s", r,
                      sc.res[r].msg);
        if (r >= 2)
            WD_EXPECT_MSG(strncmp(sc.res[r].launch_id, n1_prefix, strlen(n1_prefix)) == 0,
                          "rank %d belongs to launch %s, not node 1's (%s...)", r,
                          sc.res[r].launch_id, n1_prefix);
    }
    WD_EXPECT_MSG(!sc.res[4].is_set && !sc.res[5].is_set, "a stranger's ranks ran");
    expect_clean(&sc, 6);
}

static void test_bad_config(void)
{
    struct scenario sc = make(body_info, -1, 0);
    struct wd_launch_config cfg;
    struct wd_error err = {0};
    wd_launch_config_init(&cfg);
    cfg.world_size = 3;
    cfg.nnodes = 2;
    snprintf(cfg.dist_init_addr, sizeof(cfg.dist_init_addr), "127.0.0.1:1");
    WD_EXPECT(wd_launcher_run(&cfg, rank_main, &sc, &err) == WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "multiple of nnodes 2") != NULL);
    cfg.world_size = 4;
    cfg.node_rank = 2;
    WD_EXPECT(wd_launcher_run(&cfg, rank_main, &sc, &err) == WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "node rank 2") != NULL);
    cfg.node_rank = 0;
    cfg.dist_init_addr[0] = 0;
    WD_EXPECT(wd_launcher_run(&cfg, rank_main, &sc, &err) == WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "--dist-init-addr") != NULL);
    snprintf(cfg.dist_init_addr, sizeof(cfg.dist_init_addr), "no-port-here");
    WD_EXPECT(wd_launcher_run(&cfg, rank_main, &sc, &err) == WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "no-port-here") != NULL);
    /* A node other than 0 with nobody listening gives up after its timeout. */
    snprintf(cfg.dist_init_addr, sizeof(cfg.dist_init_addr), "127.0.0.1:1");
    cfg.node_rank = 1;
    cfg.timeout_ms = 200;
    WD_EXPECT(wd_launcher_run(&cfg, rank_main, &sc, &err) == WD_ERR_TIMEOUT);
    WD_EXPECT_MSG(strstr(err.msg, "launch node 1") != NULL, "%s", err.msg);
}

int main(void)
{
    g_res = mmap(NULL, MAX_RANKS * sizeof(*g_res), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    g_join = mmap(NULL, sizeof(*g_join), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_res == MAP_FAILED || g_join == MAP_FAILED)
        return 1;
    WD_RUN(test_info);
    WD_RUN(test_exit_early);
    WD_RUN(test_exit_zero_early);
    WD_RUN(test_killed);
    WD_RUN(test_stall);
    WD_RUN(test_setup_death);
    WD_RUN(test_helper_swept);
    WD_RUN(test_shm_swept);
    WD_RUN(test_run_timeout);
    WD_RUN(test_launcher_killed);
    WD_RUN(test_stranger_refused);
    WD_RUN(test_bad_config);
    munmap(g_join, sizeof(*g_join));
    munmap(g_res, MAX_RANKS * sizeof(*g_res));
    return wd_test_finish();
}

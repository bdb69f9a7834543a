/*
 * Rank launcher: fork, watch, tear down. The parent loop runs every ~20 ms: serve the
 * rendezvous (node 0) or sleep, reap exited ranks with waitpid(WNOHANG), look for failures
 * other nodes posted ("wd/nfail" counter, "wd/fail/<node>" text), escalate signals, and
 * finish once no local rank runs (node 0 also waits for every other node's "done").
 * Polling instead of a SIGCHLD handler keeps the launcher free of signal-handler state
 * and costs nothing next to ranks that run for seconds.
 */
#include "common/comm/launcher.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/comm/janitor.h"
#include "common/comm/rendezvous.h"
#include "common/comm/shm_segment.h"
#if defined(__SANITIZE_ADDRESS__)
#define WD_HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WD_HAVE_LSAN 1
#endif
#endif
#ifdef WD_HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif
#include "common/layout/layout.h"
#include "common/util/log.h"

enum { RANK_RUNNING = 0, RANK_EXITED = 1, RANK_FAILED = 2 };

struct wd_rank_slot {
    uint32_t state; /* RANK_*: stored last (release), read first (acquire) */
    int32_t pid;
    uint32_t seq; /* order in which the launcher learned of failures: 1, 2, ... */
    uint32_t pad;
    char why[248];    /* the launcher's words once state != RANK_RUNNING */
    char report[256]; /* the rank's own error line (wd_rank_report) */
};

struct wd_rank_ctl {
    uint32_t world;
    uint32_t n_failed; /* launcher-side counter behind slot.seq */
    struct wd_rank_slot slot[];
};

struct local_rank {
    pid_t pid;
    int is_reaped;
};

struct wd_launcher {
    struct wd_launch_config cfg;
    int rpn;
    char host[256];
    int port;
    char launch_id[24];
    struct wd_rank_ctl *ctl;
    size_t ctl_bytes;
    struct wd_rdzv_server *srv; /* node 0 */
    struct wd_rdzv *client;     /* other nodes */
    struct wd_janitor janitor;  /* removes the segments if this process dies first */
    pid_t pgid;
    struct local_rank *ranks; /* [rpn] */
    int n_running;
    int64_t start_ms, local_done_ms, next_remote_ms;
    int is_failed;
    struct wd_error failure;
    int64_t fail_ms, term_ms;
    int is_term_sent, is_kill_sent;
    int is_finished;
    int64_t n_refused; /* node 0: launchers refused for a node rank that had joined, logged */
    enum wd_status final_status;
    struct wd_error final_err;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void wd_launch_config_init(struct wd_launch_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->world_size = 1;
    cfg->nnodes = 1;
    cfg->timeout_ms = 60000;
    cfg->settle_ms = 2000;
    cfg->kill_grace_ms = 2000;
}

void wd_launch_config_from_layout(struct wd_launch_config *cfg, const struct wd_layout *layout)
{
    cfg->world_size = layout->world_size;
    cfg->nnodes = layout->nnodes;
    cfg->node_rank = layout->node_rank;
    cfg->dist_init_addr[0] = 0;
    if (layout->dist_init_host[0]) {
        int is_v6 = strchr(layout->dist_init_host, ':') != NULL;
        snprintf(cfg->dist_init_addr, sizeof(cfg->dist_init_addr), is_v6 ? "[%s]:%d" : "%s:%d",
                 layout->dist_init_host, layout->dist_init_port);
    }
}

/* ---------------------------------------------------------------- rank side */

int wd_rank_node_of(const struct wd_rank_info *ri, int rank)
{
    return rank / ri->ranks_per_node;
}

/* The failed slot the launcher learned of first (NULL when none). */
static const struct wd_rank_slot *first_failure(const struct wd_rank_ctl *ctl)
{
    const struct wd_rank_slot *first = NULL;
    for (uint32_t r = 0; r < ctl->world; r++) {
        const struct wd_rank_slot *s = &ctl->slot[r];
        if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) == RANK_FAILED &&
            (!first || s->seq < first->seq))
            first = s;
    }
    return first;
}

/* A rank that failed after another usually gave up on it: name the first one too. */
enum wd_status wd_rank_check(const struct wd_rank_info *ri, int rank, struct wd_error *err)
{
    if (!ri || !ri->ctl || rank < 0 || rank >= (int)ri->ctl->world)
        return WD_OK;
    const struct wd_rank_slot *s = &ri->ctl->slot[rank];
    if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) == RANK_RUNNING)
        return WD_OK;
    const struct wd_rank_slot *first = first_failure(ri->ctl);
    if (first && first != s)
        return wd_error_set(err, WD_ERR_PEER, "%s (first failure: %s)", s->why, first->why);
    return wd_error_set(err, WD_ERR_PEER, "%s", s->why);
}

/* The earliest failure is the cause; later ones are usually ranks that gave up on it. */
enum wd_status wd_rank_check_all(const struct wd_rank_info *ri, struct wd_error *err)
{
    if (!ri || !ri->ctl)
        return WD_OK;
    const struct wd_rank_slot *first = first_failure(ri->ctl);
    return first ? wd_error_set(err, WD_ERR_PEER, "%s", first->why) : WD_OK;
}

void wd_rank_report(const struct wd_rank_info *ri, const struct wd_error *e)
{
    if (!ri || !ri->ctl || !e)
        return;
    struct wd_rank_slot *s = &ri->ctl->slot[ri->rank];
    snprintf(s->report, sizeof(s->report), "%s", e->msg);
}

void wd_rank_shm_name(const struct wd_rank_info *ri, const char *what, char *buf, size_t cap)
{
    snprintf(buf, cap, "/wd-%s-%s", ri->launch_id, what);
}

/* ---------------------------------------------------------------- launcher side */

/* Publishes rank's end in the control page (first writer wins). */
static void mark_rank(struct wd_launcher *l, int rank, uint32_t state, const char *why)
{
    struct wd_rank_slot *s = &l->ctl->slot[rank];
    if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != RANK_RUNNING)
        return;
    snprintf(s->why, sizeof(s->why), "%s", why);
    if (state == RANK_FAILED)
        s->seq = ++l->ctl->n_failed;
    __atomic_store_n(&s->state, state, __ATOMIC_RELEASE);
}

static void describe_status(int st, char *buf, size_t cap)
{
    if (WIFEXITED(st))
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, cap, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        snprintf(buf, cap, "ended with wait status 0x%x", st);
}

/* Counter helpers on the store node 0 hosts (the same encoding a client add produces). */
static int64_t local_counter(const struct wd_rdzv_server *srv, const char *key)
{
    const void *v;
    size_t len;
    if (!wd_rdzv_server_lookup(srv, key, &v, &len) || len != 8)
        return 0;
    const uint8_t *p = v;
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--)
        x = x << 8 | p[i];
    return (int64_t)x;
}

static void local_counter_add(struct wd_rdzv_server *srv, const char *key, int64_t delta)
{
    uint64_t x = (uint64_t)local_counter(srv, key) + (uint64_t)delta;
    uint8_t p[8];
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(x >> (8 * i));
    wd_rdzv_server_set(srv, key, p, 8, NULL);
}

/* Records the first failure, tells the other nodes, and starts the settle clock. */
static void launcher_fail(struct wd_launcher *l, const char *text, int is_local)
{
    wd_log(WD_LOG_ERROR, "launch", "%s", text);
    if (l->is_failed)
        return;
    l->is_failed = 1;
    l->fail_ms = now_ms();
    wd_error_set(&l->failure, WD_ERR_PEER, "%s", text);
    if (!is_local || l->cfg.nnodes == 1)
        return;
    char key[64];
    snprintf(key, sizeof(key), "wd/fail/%d", l->cfg.node_rank);
    if (l->srv) {
        wd_rdzv_server_set(l->srv, key, text, strlen(text), NULL);
        local_counter_add(l->srv, "wd/nfail", 1);
    } else if (l->client) {
        struct wd_error e;
        if (wd_rdzv_set(l->client, key, text, strlen(text), &e) != WD_OK ||
            wd_rdzv_add(l->client, "wd/nfail", 1, NULL, &e) != WD_OK)
            wd_log(WD_LOG_WARN, "launch", "could not tell the other nodes: %s", e.msg);
    }
}

static void reap(struct wd_launcher *l)
{
    for (int i = 0; i < l->rpn; i++) {
        struct local_rank *r = &l->ranks[i];
        if (r->is_reaped)
            continue;
        int st;
        pid_t p = waitpid(r->pid, &st, WNOHANG);
        if (p == 0 || (p < 0 && errno == EINTR))
            continue;
        r->is_reaped = 1;
        if (--l->n_running == 0) /* the group id is free now: the janitor must not kill it */
            wd_janitor_set_group(&l->janitor, 0);
        int rank = l->cfg.node_rank * l->rpn + i;
        char how[96], why[248];
        if (p < 0)
            snprintf(how, sizeof(how), "vanished (waitpid: %s)", strerror(errno));
        else
            describe_status(st, how, sizeof(how));
        snprintf(why, sizeof(why), "rank %d %s", rank, how);
        int is_ok = p > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
        mark_rank(l, rank, is_ok ? RANK_EXITED : RANK_FAILED, why);
        if (is_ok)
            continue;
        const char *report = l->ctl->slot[rank].report;
        char text[WD_ERROR_LEN];
        snprintf(text, sizeof(text), "%s%s%s", why, report[0] ? ": " : "", report);
        launcher_fail(l, text, 1);
    }
}

/* Reads the failure text node j posted (node 0 from its own store). */
static int remote_failure(struct wd_launcher *l, int j, char *text, size_t cap)
{
    char key[64];
    snprintf(key, sizeof(key), "wd/fail/%d", j);
    const void *v = NULL;
    void *owned = NULL;
    size_t len = 0;
    if (l->srv) {
        if (!wd_rdzv_server_lookup(l->srv, key, &v, &len))
            return 0;
    } else if (wd_rdzv_get(l->client, key, 0, &owned, &len, NULL) == WD_OK) {
        v = owned;
    } else {
        return 0;
    }
    snprintf(text, cap, "node %d failed: %.*s", j, (int)(len < 400 ? len : 400), (const char *)v);
    free(owned);
    return 1;
}

static void mark_node(struct wd_launcher *l, int j, const char *text)
{
    char why[248];
    for (int r = j * l->rpn; r < (j + 1) * l->rpn; r++) {
        snprintf(why, sizeof(why), "rank %d stopped: %s", r, text);
        mark_rank(l, r, RANK_FAILED, why);
    }
}

/* Node 0: logs the launchers join_job refused because their node rank had joined (each
 * one left a count in "wd/join/<k>"). */
static void note_refused(struct wd_launcher *l)
{
    int64_t n = 0;
    for (int j = 1; j < l->cfg.nnodes; j++) {
        char key[64];
        snprintf(key, sizeof(key), "wd/join/%d", j);
        int64_t c = local_counter(l->srv, key);
        n += c > 1 ? c - 1 : 0;
    }
    if (n > l->n_refused)
        wd_log(WD_LOG_WARN, "launch",
               "refused %lld launcher(s) for a node rank that had already joined this job",
               (long long)(n - l->n_refused));
    l->n_refused = n;
}

/* Looks for failures of other nodes; a non-zero node that loses the store treats node 0
 * as failed. */
static void check_remote(struct wd_launcher *l)
{
    if (l->cfg.nnodes == 1 || now_ms() < l->next_remote_ms)
        return;
    l->next_remote_ms = now_ms() + 100;
    int64_t n_fail = 0;
    if (l->srv) {
        note_refused(l);
        n_fail = local_counter(l->srv, "wd/nfail");
    } else {
        struct wd_error e;
        if (wd_rdzv_add(l->client, "wd/nfail", 0, &n_fail, &e) != WD_OK) {
            char text[WD_ERROR_LEN];
            snprintf(text, sizeof(text), "lost the rendezvous on node 0: %s", e.msg);
            mark_node(l, 0, text);
            launcher_fail(l, text, 0);
            return;
        }
    }
    if (n_fail <= 0)
        return;
    for (int j = 0; j < l->cfg.nnodes; j++) {
        char text[512];
        if (j == l->cfg.node_rank || !remote_failure(l, j, text, sizeof(text)))
            continue;
        mark_node(l, j, text);
        launcher_fail(l, text, 0);
    }
}

static void signal_ranks(struct wd_launcher *l, int sig)
{
    if (l->pgid > 0)
        kill(-l->pgid, sig);
    for (int i = 0; i < l->rpn; i++) /* in case a rank left the group */
        if (!l->ranks[i].is_reaped && l->ranks[i].pid > 0)
            kill(l->ranks[i].pid, sig);
}

static void remove_segments(const char *launch_id)
{
    char prefix[48];
    snprintf(prefix, sizeof(prefix), "wd-%s-", launch_id);
    wd_shm_segment_remove_prefix(prefix);
}

static void finish(struct wd_launcher *l, enum wd_status st, const struct wd_error *e)
{
    if (l->pgid > 0)
        kill(-l->pgid, SIGKILL); /* helpers the ranks left behind */
    remove_segments(l->launch_id);
    wd_janitor_cleanup(&l->janitor); /* nothing left for it to do */
    l->is_finished = 1;
    l->final_status = st;
    if (e)
        l->final_err = *e;
}

/* Everything local is reaped: decide the outcome (node 0 waits for the other nodes). */
static void conclude(struct wd_launcher *l)
{
    struct wd_error e;
    if (l->is_failed) {
        finish(l, l->failure.status, &l->failure);
        return;
    }
    if (l->cfg.nnodes == 1) {
        finish(l, WD_OK, NULL);
        return;
    }
    if (l->client) {
        char key[64];
        snprintf(key, sizeof(key), "wd/done/%d", l->cfg.node_rank);
        if (wd_rdzv_set(l->client, key, "1", 1, &e) != WD_OK ||
            wd_rdzv_add(l->client, "wd/ndone", 1, NULL, &e) != WD_OK) {
            wd_error_prefix(&e, "node %d finished but could not tell node 0", l->cfg.node_rank);
            finish(l, e.status, &e);
            return;
        }
        finish(l, WD_OK, NULL);
        return;
    }
    if (l->local_done_ms == 0)
        l->local_done_ms = now_ms();
    if (local_counter(l->srv, "wd/ndone") >= l->cfg.nnodes - 1) {
        finish(l, WD_OK, NULL);
    } else if (now_ms() - l->local_done_ms > l->cfg.timeout_ms) {
        wd_error_set(
            &e, WD_ERR_TIMEOUT, "node 0 finished but %lld other node(s) did not within %d ms",
            (long long)(l->cfg.nnodes - 1 - local_counter(l->srv, "wd/ndone")), l->cfg.timeout_ms);
        finish(l, e.status, &e);
    }
}

static void step(struct wd_launcher *l)
{
    if (l->srv) {
        struct wd_error e;
        if (wd_rdzv_server_poll(l->srv, 20, &e) != WD_OK)
            launcher_fail(l, e.msg, 1);
    } else {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    reap(l);
    if (!l->is_failed)
        check_remote(l);
    int64_t now = now_ms();
    if (!l->is_failed && l->cfg.run_timeout_ms > 0 && l->n_running > 0 &&
        now - l->start_ms > l->cfg.run_timeout_ms) {
        char text[128];
        snprintf(text, sizeof(text), "ranks still running after the run timeout of %d ms",
                 l->cfg.run_timeout_ms);
        launcher_fail(l, text, 1);
    }
    if (l->is_failed && l->n_running > 0) {
        if (!l->is_term_sent && now - l->fail_ms >= l->cfg.settle_ms) {
            signal_ranks(l, SIGTERM);
            l->is_term_sent = 1;
            l->term_ms = now;
        } else if (l->is_term_sent && !l->is_kill_sent &&
                   now - l->term_ms >= l->cfg.kill_grace_ms) {
            signal_ranks(l, SIGKILL);
            l->is_kill_sent = 1;
        }
    }
    if (l->n_running == 0)
        conclude(l);
}

enum wd_status wd_launcher_wait(struct wd_launcher *l, int timeout_ms, struct wd_error *err)
{
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : now_ms() + timeout_ms;
    while (!l->is_finished) {
        step(l);
        if (!l->is_finished && now_ms() >= deadline)
            return wd_error_set(err, WD_ERR_TIMEOUT, "ranks still running");
    }
    if (err && l->final_status != WD_OK)
        *err = l->final_err;
    return l->final_status;
}

int wd_launcher_rdzv_port(const struct wd_launcher *l)
{
    return l->port;
}

static void free_launcher(struct wd_launcher *l)
{
    wd_janitor_cleanup(&l->janitor);
    wd_rdzv_server_destroy(l->srv);
    wd_rdzv_destroy(l->client);
    if (l->ctl)
        munmap(l->ctl, l->ctl_bytes);
    free(l->ranks);
    free(l);
}

void wd_launcher_destroy(struct wd_launcher *l)
{
    if (!l)
        return;
    if (!l->is_finished && l->n_running > 0) {
        signal_ranks(l, SIGTERM);
        int64_t deadline = now_ms() + l->cfg.kill_grace_ms;
        while (l->n_running > 0 && now_ms() < deadline) {
            struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL);
            reap(l);
        }
        if (l->n_running > 0)
            signal_ranks(l, SIGKILL);
        for (int i = 0; i < l->rpn; i++)
            if (!l->ranks[i].is_reaped && l->ranks[i].pid > 0)
                while (waitpid(l->ranks[i].pid, NULL, 0) < 0 && errno == EINTR) {
                }
    }
    if (!l->is_finished)
        finish(l, WD_OK, NULL);
    free_launcher(l);
}

static void make_launch_id(char *buf, size_t cap)
{
    uint64_t x;
    if (getrandom(&x, sizeof(x), GRND_NONBLOCK) != (ssize_t)sizeof(x)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        x = ((uint64_t)getpid() << 40) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20);
    }
    /* The launcher's pid first: a test (or an operator) can find one launch's segments. */
    snprintf(buf, cap, "%dx%012llx", (int)getpid(), (unsigned long long)(x & 0xffffffffffffull));
}

/* The child side of fork: never returns. */
static void rank_process(struct wd_launcher *l, int local, pid_t parent, wd_rank_main_fn fn,
                         void *ctx)
{
    setpgid(0, l->pgid);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) /* the launcher died before the line above */
        _exit(1);
    signal(SIGTERM, SIG_DFL);
    struct wd_rank_info ri;
    memset(&ri, 0, sizeof(ri));
    ri.rank = l->cfg.node_rank * l->rpn + local;
    ri.world_size = l->cfg.world_size;
    ri.nnodes = l->cfg.nnodes;
    ri.node_rank = l->cfg.node_rank;
    ri.ranks_per_node = l->rpn;
    ri.local_rank = local;
    snprintf(ri.rdzv_host, sizeof(ri.rdzv_host), "%s", l->host);
    ri.rdzv_port = l->port;
    snprintf(ri.launch_id, sizeof(ri.launch_id), "%s", l->launch_id);
    snprintf(ri.rdzv_token, sizeof(ri.rdzv_token), "%s", l->cfg.dist_init_token);
    ri.timeout_ms = l->cfg.timeout_ms;
    ri.ctl = l->ctl;
    /* The launcher's sockets and bookkeeping are copies here: drop them, keep the ctl page
     * and the janitor's pipe (its end of file tells the janitor this rank is gone). */
    l->ctl = NULL;
    wd_janitor_detach(&l->janitor);
    free_launcher(l);
    int rc = fn(ctx, &ri);
    fflush(NULL);
#ifdef WD_HAVE_LSAN
    /* _exit skips LeakSanitizer's exit check: run it here, and let a leak fail the rank. */
    if (__lsan_do_recoverable_leak_check() && rc == 0)
        rc = 1;
#endif
    _exit(rc < 0 || rc > 255 ? 1 : rc);
}

static enum wd_status check_config(const struct wd_launch_config *c, struct wd_error *err)
{
    if (c->world_size < 1 || c->world_size > WD_LAYOUT_MAX_WORLD || c->nnodes < 1 ||
        c->world_size % c->nnodes != 0)
        return wd_error_set(err, WD_ERR_INVALID,
                            "launch: world size %d must be a positive multiple of nnodes %d",
                            c->world_size, c->nnodes);
    if (c->node_rank < 0 || c->node_rank >= c->nnodes)
        return wd_error_set(err, WD_ERR_INVALID, "launch: node rank %d out of range [0, %d)",
                            c->node_rank, c->nnodes);
    if (c->nnodes > 1 && !c->dist_init_addr[0])
        return wd_error_set(err, WD_ERR_INVALID,
                            "launch: --dist-init-addr is required with --nnodes %d", c->nnodes);
    if (c->timeout_ms <= 0 || c->settle_ms < 0 || c->kill_grace_ms < 0 || c->run_timeout_ms < 0)
        return wd_error_set(err, WD_ERR_INVALID, "launch: timeouts must be positive");
    if (!memchr(c->dist_init_token, 0, sizeof(c->dist_init_token)))
        return wd_error_set(err, WD_ERR_INVALID, "launch: token longer than %d bytes",
                            WD_RDZV_MAX_TOKEN);
    return WD_OK;
}

/* Node 0: the job's shape, for joining launchers to compare with their own. */
static enum wd_status publish_job(struct wd_launcher *l, struct wd_error *err)
{
    char job[64];
    int n = snprintf(job, sizeof(job), "%d %d", l->cfg.world_size, l->cfg.nnodes);
    return wd_rdzv_server_set(l->srv, "wd/job", job, (size_t)n, err);
}

/* Node k > 0 (its token already accepted): node 0 must run this launcher's shape, and node
 * rank k must still be free. The first launcher for it holds it for good, so a second one
 * (an operator's retry, a stale script) is refused here, before it forks a rank or writes
 * a key of the job. */
static enum wd_status join_job(struct wd_launcher *l, struct wd_error *err)
{
    const struct wd_launch_config *c = &l->cfg;
    void *v;
    size_t len;
    WD_CHECK(wd_rdzv_get(l->client, "wd/job", c->timeout_ms, &v, &len, err));
    char job[64];
    snprintf(job, sizeof(job), "%.*s", (int)(len < sizeof(job) ? len : sizeof(job) - 1),
             (const char *)v);
    free(v);
    int world = 0, nnodes = 0;
    if (sscanf(job, "%d %d", &world, &nnodes) != 2 || world != c->world_size || nnodes != c->nnodes)
        return wd_error_set(err, WD_ERR_INVALID,
                            "the job at %s:%d runs %d rank(s) over %d node(s), this launcher was "
                            "started for %d over %d",
                            l->host, l->port, world, nnodes, c->world_size, c->nnodes);
    char key[64];
    snprintf(key, sizeof(key), "wd/join/%d", c->node_rank);
    int64_t n = 0;
    WD_CHECK(wd_rdzv_add(l->client, key, 1, &n, err));
    if (n != 1)
        return wd_error_set(err, WD_ERR_INVALID,
                            "node rank %d already joined this job at %s:%d; a second launcher "
                            "for it is refused (the running job is not affected)",
                            c->node_rank, l->host, l->port);
    return WD_OK;
}

enum wd_status wd_launcher_start(const struct wd_launch_config *cfg, wd_rank_main_fn rank_main,
                                 void *ctx, struct wd_launcher **l_p, struct wd_error *err)
{
    WD_CHECK(check_config(cfg, err));
    struct wd_launcher *l = calloc(1, sizeof(*l));
    if (!l)
        return wd_error_set(err, WD_ERR_NOMEM, "launch: out of memory");
    l->cfg = *cfg;
    l->rpn = cfg->world_size / cfg->nnodes;
    l->start_ms = now_ms();
    make_launch_id(l->launch_id, sizeof(l->launch_id));
    l->ranks = calloc((size_t)l->rpn, sizeof(*l->ranks));
    l->ctl_bytes =
        sizeof(struct wd_rank_ctl) + (size_t)cfg->world_size * sizeof(struct wd_rank_slot);
    void *ctl = mmap(NULL, l->ctl_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (!l->ranks || ctl == MAP_FAILED) {
        if (ctl != MAP_FAILED)
            munmap(ctl, l->ctl_bytes);
        free_launcher(l);
        return wd_error_set(err, WD_ERR_NOMEM, "launch: out of memory for %d ranks",
                            cfg->world_size);
    }
    l->ctl = ctl;
    l->ctl->world = (uint32_t)cfg->world_size;

    enum wd_status st = WD_OK;
    if (cfg->dist_init_addr[0])
        st = wd_rdzv_parse_addr(cfg->dist_init_addr, l->host, sizeof(l->host), &l->port, err);
    else
        snprintf(l->host, sizeof(l->host), "127.0.0.1");
    if (st == WD_OK && cfg->node_rank == 0) {
        st = wd_rdzv_server_create(l->host, l->port, cfg->dist_init_token, &l->srv, err);
        if (st == WD_OK) {
            l->port = wd_rdzv_server_port(l->srv);
            st = publish_job(l, err);
        }
    } else if (st == WD_OK) {
        st = wd_rdzv_create(l->host, l->port, cfg->dist_init_token, cfg->timeout_ms, &l->client,
                            err);
        if (st == WD_OK)
            st = join_job(l, err);
    }
    if (st != WD_OK) {
        free_launcher(l);
        wd_error_prefix(err, "launch node %d", cfg->node_rank);
        return st;
    }

    /* The janitor before any rank: from the first rank on there can be segments. */
    char prefix[48];
    snprintf(prefix, sizeof(prefix), "wd-%s-", l->launch_id);
    st = wd_janitor_init(&l->janitor, prefix, err);
    if (st != WD_OK) {
        free_launcher(l);
        return st;
    }
    fflush(NULL); /* children must not inherit (and repeat) buffered output */
    pid_t parent = getpid();
    for (int i = 0; i < l->rpn; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            wd_error_set(err, WD_ERR_IO, "launch: fork of local rank %d failed: %s", i,
                         strerror(errno));
            wd_launcher_destroy(l);
            return WD_ERR_IO;
        }
        if (pid == 0)
            rank_process(l, i, parent, rank_main, ctx);
        if (l->pgid == 0) {
            l->pgid = pid;
            wd_janitor_set_group(&l->janitor, pid);
        }
        setpgid(pid, l->pgid); /* both sides set it, so no signal can miss the group */
        l->ranks[i].pid = pid;
        l->ctl->slot[cfg->node_rank * l->rpn + i].pid = pid;
        l->n_running++;
    }
    wd_log(WD_LOG_INFO, "launch", "node %d/%d: %d rank(s) started, rendezvous %s:%d",
           cfg->node_rank, cfg->nnodes, l->rpn, l->host, l->port);
    *l_p = l;
    return WD_OK;
}

enum wd_status wd_launcher_run(const struct wd_launch_config *cfg, wd_rank_main_fn rank_main,
                               void *ctx, struct wd_error *err)
{
    struct wd_launcher *l;
    WD_CHECK(wd_launcher_start(cfg, rank_main, ctx, &l, err));
    enum wd_status st = wd_launcher_wait(l, -1, err);
    wd_launcher_destroy(l);
    return st;
}

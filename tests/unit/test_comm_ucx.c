/*
 * Two "nodes" x two ranks on one machine: two launchers (--nnodes 2, --node-rank 0 and 1)
 * sharing a rendezvous on 127.0.0.1 at a port the test picks, UCX restricted to tcp
 * (UCX_TLS=tcp,self) so the inter-node path is the one a machine without RDMA devices
 * would take. Checked: the per-peer routing (same node shm, other node ucx, the kind of
 * each group), put/signal/wait with self-describing payloads across and within nodes, a
 * pure-UCX group, a shm-only group in processes that also run UCX, all-reduce bit-exact
 * against the rank-order sum and all-gather over the mixed group, and a rank of node 1
 * exiting early: every other rank on both nodes fails naming it, both launchers fail, no
 * process or shm segment is left.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "common/comm/collectives.h"
#include "common/comm/comm.h"
#include "common/comm/comm_group.h"
#include "common/comm/launcher.h"
#include "tests/unit/wd_test.h"

#define WORLD 4

struct rank_result {
    int is_set;
    int pid;
    char launch_id[24];
    int status;
    char msg[WD_ERROR_LEN];
    int n_bad;
    char first_bad[256];
    long n_checked;
    char kind_all[16], kind_cross[16], kind_local[16];
};

struct node_result {
    int is_set;
    int status;
    char msg[WD_ERROR_LEN];
};

struct shared {
    struct rank_result rank[WORLD];
    struct node_result node[2];
};

struct scenario;
typedef enum wd_status (*body_fn)(const struct scenario *sc, const struct wd_rank_info *ri,
                                  struct rank_result *res, struct wd_error *err);

struct scenario {
    body_fn body;
    int culprit;
    struct shared *sh;
};

static void bad(struct rank_result *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void bad(struct rank_result *res, const char *fmt, ...)
{
    if (res->n_bad++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(res->first_bad, sizeof(res->first_bad), fmt, ap);
        va_end(ap);
    }
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int rank_main(void *ctx, const struct wd_rank_info *ri)
{
    const struct scenario *sc = ctx;
    struct rank_result *res = &sc->sh->rank[ri->rank];
    res->pid = getpid();
    snprintf(res->launch_id, sizeof(res->launch_id), "%s", ri->launch_id);
    res->is_set = 1;
    struct wd_error err = {0};
    enum wd_status st = sc->body(sc, ri, res, &err);
    res->status = st;
    snprintf(res->msg, sizeof(res->msg), "%s", st == WD_OK ? "" : err.msg);
    if (st != WD_OK)
        wd_rank_report(ri, &err);
    return st != WD_OK || res->n_bad ? 1 : 0;
}

static void node_run(const struct scenario *sc, int node, int port)
{
    struct wd_launch_config cfg;
    wd_launch_config_init(&cfg);
    cfg.world_size = WORLD;
    cfg.nnodes = 2;
    cfg.node_rank = node;
    snprintf(cfg.dist_init_addr, sizeof(cfg.dist_init_addr), "127.0.0.1:%d", port);
    cfg.timeout_ms = 10000;
    cfg.settle_ms = 300;
    cfg.kill_grace_ms = 1000;
    cfg.run_timeout_ms = 12000;
    struct wd_error err = {0};
    enum wd_status st = wd_launcher_run(&cfg, rank_main, (void *)sc, &err);
    struct node_result *nr = &sc->sh->node[node];
    nr->status = st;
    snprintf(nr->msg, sizeof(nr->msg), "%s", st == WD_OK ? "" : err.msg);
    nr->is_set = 1;
}

/* Node 1's launcher runs in a child process (another "machine"), node 0's in this one. */
static long launch_two_nodes(const struct scenario *sc)
{
    memset(sc->sh, 0, sizeof(*sc->sh));
    int port = wd_test_free_port();
    WD_EXPECT(port > 0);
    long t0 = now_ms();
    fflush(NULL);
    pid_t other = fork();
    if (other == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        node_run(sc, 1, port);
        fflush(NULL);
        _exit(0);
    }
    node_run(sc, 0, port);
    int st = 0;
    pid_t p = 0;
    for (int i = 0; i < 1500 && (p = waitpid(other, &st, WNOHANG)) == 0; i++)
        usleep(10000);
    if (p == 0) {
        WD_EXPECT_MSG(0, "node 1's launcher did not finish");
        kill(other, SIGKILL);
        waitpid(other, &st, 0);
    }
    WD_EXPECT(sc->sh->node[0].is_set && sc->sh->node[1].is_set);
    return now_ms() - t0;
}

static int is_gone(int pid)
{
    return kill(pid, 0) != 0 && errno == ESRCH;
}

static void expect_clean(const struct scenario *sc)
{
    for (int r = 0; r < WORLD; r++) {
        const struct rank_result *res = &sc->sh->rank[r];
        if (!res->is_set)
            continue;
        WD_EXPECT_MSG(is_gone(res->pid), "rank %d (pid %d) still alive", r, res->pid);
        char prefix[64];
        int plen = snprintf(prefix, sizeof(prefix), "wd-%s-", res->launch_id);
        DIR *d = opendir("/dev/shm");
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL)
            WD_EXPECT_MSG(strncmp(de->d_name, prefix, (size_t)plen) != 0, "left in /dev/shm: %s",
                          de->d_name);
        if (d)
            closedir(d);
    }
}

/* ---------------------------------------------------------------- bodies */

#define ROUNDS 4
#define SLOT 8192

static uint8_t payload_byte(int src, int dst, int round, size_t k)
{
    return (uint8_t)(src * 131 + dst * 17 + round * 7 + k * 3 + (k >> 8));
}

static size_t payload_len(int src, int round)
{
    return 16 + (size_t)(round * 2977 + src * 1313) % (SLOT - 16);
}

/* Every member sends every other one a message per round into its own slot. */
static enum wd_status exchange(struct wd_transport *t, const int *members, struct rank_result *res,
                               struct wd_error *err)
{
    int n = t->n_ranks, me = t->rank;
    size_t sig_area = 64 * 8;
    uint8_t msg[SLOT];
    enum wd_status st = WD_OK;
    for (int r = 0; r < ROUNDS && st == WD_OK; r++) {
        for (int s = 1; s < n && st == WD_OK; s++) {
            int d = (me + s) % n;
            size_t len = payload_len(members[me], r);
            uint32_t hdr[4] = {(uint32_t)members[me], (uint32_t)members[d], (uint32_t)r,
                               (uint32_t)len};
            memcpy(msg, hdr, 16);
            for (size_t k = 16; k < len; k++)
                msg[k] = payload_byte(members[me], members[d], r, k);
            size_t off = sig_area + ((size_t)r * (size_t)n + (size_t)me) * SLOT;
            st = wd_transport_put(t, d, off, msg, len, err);
            if (st == WD_OK)
                st = wd_transport_signal(t, d, (size_t)me * 8, 1, err);
        }
        for (int j = 0; j < n && st == WD_OK; j++) {
            if (j == me)
                continue;
            st = wd_transport_wait(t, (size_t)j * 8, (uint64_t)r + 1, j, 8000, err);
            const uint8_t *m = t->window + sig_area + ((size_t)r * (size_t)n + (size_t)j) * SLOT;
            uint32_t hdr[4];
            memcpy(hdr, m, 16);
            if (st == WD_OK && (hdr[0] != (uint32_t)members[j] || hdr[1] != (uint32_t)members[me] ||
                                hdr[2] != (uint32_t)r || hdr[3] != payload_len(members[j], r))) {
                bad(res, "round %d from rank %d: header %u %u %u %u", r, members[j], hdr[0], hdr[1],
                    hdr[2], hdr[3]);
                continue;
            }
            for (size_t k = 16; st == WD_OK && k < hdr[3]; k++)
                if (m[k] != payload_byte(members[j], members[me], r, k)) {
                    bad(res, "round %d from rank %d: byte %zu", r, members[j], k);
                    break;
                }
            res->n_checked++;
        }
    }
    return st;
}

static float input(int r, int c, size_t k)
{
    uint32_t h = (uint32_t)(r * 2654435761u) ^ (uint32_t)(c * 40503u) ^ (uint32_t)(k * 2246822519u);
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    static const float scale[4] = {1e-2f, 1.0f, 7.0f, 1e3f};
    return ((float)(h & 0xffff) / 65536.0f - 0.5f) * scale[(h >> 16) % 4];
}

static enum wd_status collectives(struct wd_comm_group *g, int me, struct rank_result *res,
                                  struct wd_error *err)
{
    static const size_t sizes[] = {1, 5, 1000, 5000};
    enum wd_status st = WD_OK;
    for (int c = 0; c < 4 && st == WD_OK; c++) {
        size_t n = sizes[c];
        float *x = malloc(n * sizeof(float));
        for (size_t k = 0; k < n; k++)
            x[k] = input(me, c, k);
        st = wd_coll_all_reduce_f32(g->coll, x, n, 8000, err);
        for (size_t k = 0; st == WD_OK && k < n; k++) {
            float want = input(0, c, k);
            for (int r = 1; r < WORLD; r++)
                want += input(r, c, k);
            if (memcmp(&want, &x[k], 4)) {
                bad(res, "all_reduce %zu floats: element %zu %.9g, want %.9g", n, k, x[k], want);
                break;
            }
        }
        free(x);
        res->n_checked++;
        size_t bytes = sizes[c] * 3;
        uint8_t *src = malloc(bytes), *dst = malloc(bytes * WORLD);
        for (size_t k = 0; k < bytes; k++)
            src[k] = (uint8_t)(me * 59 + c + k * 3);
        if (st == WD_OK)
            st = wd_coll_all_gather(g->coll, src, bytes, dst, 8000, err);
        for (int r = 0; st == WD_OK && r < WORLD; r++)
            for (size_t k = 0; k < bytes; k++)
                if (dst[(size_t)r * bytes + k] != (uint8_t)(r * 59 + c + k * 3)) {
                    bad(res, "all_gather %zu bytes: block %d byte %zu", bytes, r, k);
                    r = WORLD;
                    break;
                }
        free(src);
        free(dst);
        res->n_checked++;
    }
    return st;
}

static enum wd_status body_basic(const struct scenario *sc, const struct wd_rank_info *ri,
                                 struct rank_result *res, struct wd_error *err)
{
    int all[WORLD] = {0, 1, 2, 3};
    int cross[2] = {ri->rank % 2, ri->rank % 2 + 2}; /* {0,2} and {1,3}: one rank per node */
    int local[2] = {ri->rank / 2 * 2, ri->rank / 2 * 2 + 1}; /* {0,1} and {2,3}: one node */
    size_t bytes = 64 * 8 + (size_t)ROUNDS * WORLD * SLOT;
    struct wd_comm *comm;
    WD_CHECK(wd_comm_create(ri, &comm, err));
    struct wd_transport *t_all = NULL, *t_cross = NULL, *t_local = NULL;
    struct wd_comm_group *g = NULL;
    char name[16], lname[16];
    snprintf(name, sizeof(name), "cross%d", ri->rank % 2);
    snprintf(lname, sizeof(lname), "local%d", ri->rank / 2);
    enum wd_status st = wd_comm_transport_create(comm, "all", all, WORLD, bytes, &t_all, err);
    if (st == WD_OK)
        st = wd_comm_transport_create(comm, name, cross, 2, bytes, &t_cross, err);
    if (st == WD_OK)
        st = wd_comm_transport_create(comm, lname, local, 2, bytes, &t_local, err);
    if (st == WD_OK)
        st = wd_comm_group_create(comm, "coll", all, WORLD, 4096, &g, err);
    if (st == WD_OK) {
        snprintf(res->kind_local, sizeof(res->kind_local), "%s", t_local->kind);
        snprintf(res->kind_all, sizeof(res->kind_all), "%s", t_all->kind);
        snprintf(res->kind_cross, sizeof(res->kind_cross), "%s", t_cross->kind);
        int same = ri->rank ^ 1; /* the other rank of this node */
        if (!t_all->ops->peer_window(t_all, same) ||
            t_all->ops->peer_window(t_all, (ri->rank + 2) % 4))
            bad(res, "direct windows: shm peer %d, ucx peer %d", same, (ri->rank + 2) % 4);
        st = exchange(t_all, all, res, err);
    }
    if (st == WD_OK)
        st = exchange(t_cross, cross, res, err);
    if (st == WD_OK) /* shm only, in a process whose UCX worker must keep progressing */
        st = exchange(t_local, local, res, err);
    if (st == WD_OK)
        st = collectives(g, ri->rank, res, err);
    wd_comm_group_destroy(g);
    wd_transport_destroy(t_local);
    wd_transport_destroy(t_cross);
    wd_transport_destroy(t_all);
    wd_comm_destroy(comm);
    return st;
}

static enum wd_status body_fail(const struct scenario *sc, const struct wd_rank_info *ri,
                                struct rank_result *res, struct wd_error *err)
{
    int all[WORLD] = {0, 1, 2, 3};
    struct wd_comm *comm;
    WD_CHECK(wd_comm_create(ri, &comm, err));
    struct wd_comm_group *g = NULL;
    enum wd_status st = wd_comm_group_create(comm, "coll", all, WORLD, 4096, &g, err);
    if (st == WD_OK && ri->rank == sc->culprit) {
        fflush(NULL);
        _exit(5);
    }
    float x[64] = {0};
    if (st == WD_OK)
        st = wd_coll_all_reduce_f32(g->coll, x, 64, 8000, err);
    wd_comm_group_destroy(g);
    wd_comm_destroy(comm);
    return st;
}

/* ---------------------------------------------------------------- tests */

static struct shared *g_sh;

static void test_two_nodes(void)
{
    struct scenario sc = {body_basic, -1, g_sh};
    long el = launch_two_nodes(&sc);
    for (int node = 0; node < 2; node++)
        WD_EXPECT_MSG(g_sh->node[node].status == WD_OK, "node %d: %s", node, g_sh->node[node].msg);
    for (int r = 0; r < WORLD; r++) {
        const struct rank_result *res = &g_sh->rank[r];
        WD_EXPECT_MSG(res->is_set && res->status == WD_OK, "rank %d: %s", r, res->msg);
        WD_EXPECT_MSG(res->n_bad == 0, "rank %d: %d mismatches, first: %s", r, res->n_bad,
                      res->first_bad);
        WD_EXPECT_MSG(res->n_checked == ROUNDS * 3 + 2 * ROUNDS + 8, "rank %d checked %ld", r,
                      res->n_checked);
        WD_EXPECT_MSG(strcmp(res->kind_all, "shm+ucx") == 0, "rank %d: %s", r, res->kind_all);
        WD_EXPECT_MSG(strcmp(res->kind_cross, "ucx") == 0, "rank %d: %s", r, res->kind_cross);
        WD_EXPECT_MSG(strcmp(res->kind_local, "shm") == 0, "rank %d: %s", r, res->kind_local);
    }
    WD_EXPECT(strcmp(g_sh->rank[0].launch_id, g_sh->rank[2].launch_id) != 0);
    WD_EXPECT_MSG(el < 12000, "took %ld ms", el);
    expect_clean(&sc);
}

static void test_remote_rank_exits(void)
{
    struct scenario sc = {body_fail, 3, g_sh};
    long el = launch_two_nodes(&sc);
    WD_EXPECT_MSG(g_sh->node[1].status == WD_ERR_PEER &&
                      strstr(g_sh->node[1].msg, "rank 3 exited with status 5"),
                  "node 1: %s", g_sh->node[1].msg);
    WD_EXPECT_MSG(g_sh->node[0].status == WD_ERR_PEER &&
                      strstr(g_sh->node[0].msg, "rank 3 exited with status 5"),
                  "node 0: %s", g_sh->node[0].msg);
    for (int r = 0; r < 3; r++) {
        const struct rank_result *res = &g_sh->rank[r];
        WD_EXPECT_MSG(res->is_set && res->status != WD_OK && strstr(res->msg, "rank 3"),
                      "rank %d: %s", r, res->msg);
    }
    WD_EXPECT_MSG(el < 6000, "took %ld ms", el);
    expect_clean(&sc);
}

int main(void)
{
    /* The inter-node path without RDMA devices: tcp between the "nodes" (WD_TEST_UCX_TLS
     * picks another set, e.g. "all" to let UCX choose). */
    const char *tls = getenv("WD_TEST_UCX_TLS");
    if (!tls || strcmp(tls, "all") != 0)
        setenv("UCX_TLS", tls ? tls : "tcp,self", 1);
    g_sh = mmap(NULL, sizeof(*g_sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_sh == MAP_FAILED)
        return 1;
    WD_RUN(test_two_nodes);
    WD_RUN(test_remote_rank_exits);
    munmap(g_sh, sizeof(*g_sh));
    return wd_test_finish();
}

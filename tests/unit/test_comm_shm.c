/*
 * Group transports and collectives between real rank processes on one node (shm), 2 and 4
 * ranks: put/signal/wait with self-describing payloads (each message carries its source,
 * destination, round and length, and every byte is a function of them), the contract's
 * argument errors, all-reduce checked bit for bit against a sum in rank order computed
 * independently by every rank (sizes around the piece and chunk edges, including fewer
 * elements than ranks), all-gather of self-describing blocks, back-to-back mixed rounds,
 * members that disagree on the window size or publish garbage for their record, and the
 * groups of a layout (tp4 ep2; tp4 dp2 with DP attention) with per-group sums.
 * Ranks count their own mismatches in a shared mapping the test reads afterwards.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/comm/collectives.h"
#include "common/comm/comm.h"
#include "common/comm/comm_group.h"
#include "common/comm/launcher.h"
#include "common/comm/rendezvous.h"
#include "common/layout/layout.h"
#include "tests/unit/wd_test.h"

#define MAX_RANKS 8

struct rank_result {
    int is_set;
    int status;
    char msg[WD_ERROR_LEN];
    int n_bad;           /* value mismatches seen by the rank */
    char first_bad[256]; /* the first of them */
    long n_checked;
    char kind[16];
};

struct scenario;
typedef enum wd_status (*body_fn)(const struct scenario *sc, const struct wd_rank_info *ri,
                                  struct rank_result *res, struct wd_error *err);

struct scenario {
    body_fn body;
    const struct wd_layout *layout;
    struct rank_result *res; /* [MAX_RANKS], MAP_SHARED */
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

static int rank_main(void *ctx, const struct wd_rank_info *ri)
{
    const struct scenario *sc = ctx;
    struct rank_result *res = &sc->res[ri->rank];
    res->is_set = 1;
    struct wd_error err = {0};
    enum wd_status st = sc->body(sc, ri, res, &err);
    res->status = st;
    snprintf(res->msg, sizeof(res->msg), "%s", st == WD_OK ? "" : err.msg);
    if (st != WD_OK)
        wd_rank_report(ri, &err);
    return st != WD_OK || res->n_bad ? 1 : 0;
}

static struct rank_result *g_res;

static void run(body_fn body, const struct wd_layout *layout, int world)
{
    struct scenario sc = {body, layout, g_res};
    memset(g_res, 0, MAX_RANKS * sizeof(*g_res));
    struct wd_launch_config cfg;
    wd_launch_config_init(&cfg);
    cfg.world_size = world;
    cfg.timeout_ms = 10000;
    cfg.settle_ms = 300;
    cfg.run_timeout_ms = 12000;
    struct wd_error err = {0};
    enum wd_status st = wd_launcher_run(&cfg, rank_main, &sc, &err);
    WD_EXPECT_MSG(st == WD_OK, "world %d: %s", world, err.msg);
    for (int r = 0; r < world; r++) {
        const struct rank_result *res = &g_res[r];
        WD_EXPECT_MSG(res->is_set && res->status == WD_OK, "rank %d: %s", r, res->msg);
        WD_EXPECT_MSG(res->n_bad == 0, "rank %d: %d mismatches, first: %s", r, res->n_bad,
                      res->first_bad);
        WD_EXPECT_MSG(res->n_checked > 0, "rank %d checked nothing", r);
    }
}

/* ---------------------------------------------------------------- put / signal / wait */

#define ROUNDS 6
#define SLOT 4096

static uint8_t payload_byte(int src, int dst, int round, size_t k)
{
    return (uint8_t)(src * 131 + dst * 17 + round * 7 + k * 3 + (k >> 8));
}

static size_t payload_len(int src, int round)
{
    return 16 + (size_t)(round * 977 + src * 131) % (SLOT - 16);
}

static enum wd_status body_putsig(const struct scenario *sc, const struct wd_rank_info *ri,
                                  struct rank_result *res, struct wd_error *err)
{
    int n = ri->world_size, me = ri->rank;
    int members[MAX_RANKS];
    for (int i = 0; i < n; i++)
        members[i] = i;
    struct wd_comm *comm;
    WD_CHECK(wd_comm_create(ri, &comm, err));
    struct wd_transport *t = NULL;
    size_t sig_area = 64 * 8; /* word j: rounds received from j; word 63: self test */
    size_t bytes = sig_area + (size_t)ROUNDS * (size_t)n * SLOT;
    enum wd_status st = wd_comm_transport_create(comm, "ps", members, n, bytes, &t, err);
    uint8_t msg[SLOT];
    if (st == WD_OK) {
        snprintf(res->kind, sizeof(res->kind), "%s", t->kind);
        if (t->rank != me || t->n_ranks != n || t->window_bytes != bytes)
            bad(res, "transport rank %d of %d", t->rank, t->n_ranks);
        for (size_t k = 0; k < bytes; k++)
            if (t->window[k]) {
                bad(res, "window not zeroed at %zu", k);
                break;
            }
        for (int p = 0; p < n; p++)
            if (!t->ops->peer_window(t, p))
                bad(res, "no direct window for shm peer %d", p);
        /* Peers write as soon as they are up: look at the fresh window first. */
        st = wd_comm_barrier_world(comm, "ps-zero", err);
    }
    for (int r = 0; r < ROUNDS && st == WD_OK; r++) {
        for (int s = 1; s < n && st == WD_OK; s++) {
            int d = (me + s) % n;
            size_t len = payload_len(me, r);
            uint32_t hdr[4] = {(uint32_t)me, (uint32_t)d, (uint32_t)r, (uint32_t)len};
            memcpy(msg, hdr, 16);
            for (size_t k = 16; k < len; k++)
                msg[k] = payload_byte(me, d, r, k);
            size_t off = sig_area + ((size_t)r * (size_t)n + (size_t)me) * SLOT;
            st = wd_transport_put(t, d, off, msg, len, err);
            if (st == WD_OK)
                st = wd_transport_signal(t, d, (size_t)me * 8, 1, err);
        }
        for (int j = 0; j < n && st == WD_OK; j++) {
            if (j == me)
                continue;
            st = wd_transport_wait(t, (size_t)j * 8, (uint64_t)r + 1, j, 5000, err);
            const uint8_t *m = t->window + sig_area + ((size_t)r * (size_t)n + (size_t)j) * SLOT;
            uint32_t hdr[4];
            memcpy(hdr, m, 16);
            if (st == WD_OK && (hdr[0] != (uint32_t)j || hdr[1] != (uint32_t)me ||
                                hdr[2] != (uint32_t)r || hdr[3] != payload_len(j, r)))
                bad(res, "round %d from %d: header %u %u %u %u", r, j, hdr[0], hdr[1], hdr[2],
                    hdr[3]);
            for (size_t k = 16; st == WD_OK && k < hdr[3] && k < SLOT; k++)
                if (m[k] != payload_byte(j, me, r, k)) {
                    bad(res, "round %d from %d: byte %zu", r, j, k);
                    break;
                }
            res->n_checked++;
        }
    }
    if (st == WD_OK) {
        /* The self peer, an already-reached target, and the contract's argument errors. */
        struct wd_error e;
        uint64_t v = 0x1122334455667788ull;
        if (wd_transport_put(t, me, sig_area, &v, 8, &e) != WD_OK ||
            wd_transport_signal(t, me, 63 * 8, 5, &e) != WD_OK ||
            wd_transport_wait(t, 63 * 8, 5, me, 0, &e) != WD_OK ||
            memcmp(t->window + sig_area, &v, 8))
            bad(res, "self put/signal: %s", e.msg);
        if (wd_transport_wait(t, 63 * 8, 6, (me + 1) % n, 0, &e) != WD_ERR_TIMEOUT ||
            !strstr(e.msg, "from rank"))
            bad(res, "wait for an unreached target: %s", e.msg);
        if (wd_transport_put(t, (me + 1) % n, bytes - 4, &v, 8, &e) != WD_ERR_INVALID)
            bad(res, "put past the window accepted");
        if (wd_transport_put(t, n, 0, &v, 8, &e) != WD_ERR_INVALID)
            bad(res, "put to peer %d accepted", n);
        if (wd_transport_signal(t, (me + 1) % n, 4, 1, &e) != WD_ERR_INVALID)
            bad(res, "misaligned signal accepted");
        if (wd_transport_signal(t, -1, 0, 1, &e) != WD_ERR_INVALID)
            bad(res, "signal to peer -1 accepted");
        res->n_checked++;
    }
    /* Nobody unmaps before everyone finished reading. */
    if (st == WD_OK)
        st = wd_comm_barrier_world(comm, "ps-done", err);
    wd_transport_destroy(t);
    wd_comm_destroy(comm);
    return st;
}

static void test_putsig_2(void)
{
    run(body_putsig, NULL, 2);
    WD_EXPECT(strcmp(g_res[0].kind, "shm") == 0);
}

static void test_putsig_4(void)
{
    run(body_putsig, NULL, 4);
}

/* ---------------------------------------------------------------- collectives */

/* Rank r's input element k for test case c: varied signs and magnitudes, so a different
 * summation order would change low bits. */
static float input(int r, int c, size_t k)
{
    uint32_t h = (uint32_t)(r * 2654435761u) ^ (uint32_t)(c * 40503u) ^ (uint32_t)(k * 2246822519u);
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    float mant = (float)(h & 0xffff) / 65536.0f - 0.5f;
    static const float scale[6] = {1e-3f, 1e-1f, 1.0f, 3.0f, 1e2f, 1e4f};
    return mant * scale[(h >> 16) % 6];
}

static uint8_t block_byte(int r, int c, size_t k)
{
    return (uint8_t)(r * 37 + c * 11 + k * 5 + (k >> 9));
}

static void check_all_reduce(struct wd_coll *coll, int me, int n, int c, size_t count,
                             struct rank_result *res, enum wd_status *st, struct wd_error *err)
{
    float *x = malloc((count ? count : 1) * sizeof(float));
    for (size_t k = 0; k < count; k++)
        x[k] = input(me, c, k);
    *st = wd_coll_all_reduce_f32(coll, x, count, 5000, err);
    for (size_t k = 0; *st == WD_OK && k < count; k++) {
        float want = input(0, c, k);
        for (int r = 1; r < n; r++)
            want += input(r, c, k);
        if (memcmp(&want, &x[k], sizeof(float)) != 0) {
            bad(res, "all_reduce case %d (%zu floats): element %zu is %.9g, want %.9g", c, count, k,
                x[k], want);
            break;
        }
    }
    res->n_checked++;
    free(x);
}

static void check_all_gather(struct wd_coll *coll, int me, int n, int c, size_t bytes,
                             struct rank_result *res, enum wd_status *st, struct wd_error *err)
{
    uint8_t *src = malloc(bytes ? bytes : 1), *dst = malloc((size_t)n * bytes + 1);
    for (size_t k = 0; k < bytes; k++)
        src[k] = block_byte(me, c, k);
    memset(dst, 0xee, (size_t)n * bytes + 1);
    *st = wd_coll_all_gather(coll, src, bytes, dst, 5000, err);
    for (int r = 0; *st == WD_OK && r < n; r++)
        for (size_t k = 0; k < bytes; k++)
            if (dst[(size_t)r * bytes + k] != block_byte(r, c, k)) {
                bad(res, "all_gather case %d (%zu bytes): block %d byte %zu", c, bytes, r, k);
                r = n;
                break;
            }
    if (dst[(size_t)n * bytes] != 0xee)
        bad(res, "all_gather case %d wrote past its output", c);
    res->n_checked++;
    free(src);
    free(dst);
}

static enum wd_status body_coll(const struct scenario *sc, const struct wd_rank_info *ri,
                                struct rank_result *res, struct wd_error *err)
{
    int n = ri->world_size, me = ri->rank;
    int members[MAX_RANKS];
    for (int i = 0; i < n; i++)
        members[i] = i;
    struct wd_comm *comm;
    WD_CHECK(wd_comm_create(ri, &comm, err));
    struct wd_comm_group *g = NULL;
    /* A small piece: 1024 floats, so the larger cases go through several rounds. */
    enum wd_status st = wd_comm_group_create(comm, "coll", members, n, 4096, &g, err);
    static const size_t ar_sizes[] = {0, 1, 3, 4, 5, 255, 1023, 1024, 1025, 10007};
    static const size_t ag_sizes[] = {0, 1, 7, 4095, 4096, 4097, 20000};
    int c = 0;
    for (int pass = 0; pass < 2 && st == WD_OK; pass++) {
        for (size_t i = 0; i < sizeof(ar_sizes) / sizeof(ar_sizes[0]) && st == WD_OK; i++) {
            check_all_reduce(g->coll, me, n, c++, ar_sizes[i], res, &st, err);
            if (st == WD_OK && i < sizeof(ag_sizes) / sizeof(ag_sizes[0]))
                check_all_gather(g->coll, me, n, c++, ag_sizes[i], res, &st, err);
        }
    }
    /* Many small rounds back to back: buffer reuse without acknowledgements. */
    for (int i = 0; i < 40 && st == WD_OK; i++) {
        check_all_reduce(g->coll, me, n, c++, 7 + (size_t)i % 5, res, &st, err);
        if (st == WD_OK)
            check_all_gather(g->coll, me, n, c++, 33, res, &st, err);
        if (st == WD_OK && i % 10 == 0)
            st = wd_coll_barrier(g->coll, 5000, err);
    }
    wd_comm_group_destroy(g);
    wd_comm_destroy(comm);
    return st;
}

static void test_coll_2(void)
{
    run(body_coll, NULL, 2);
}

static void test_coll_4(void)
{
    run(body_coll, NULL, 4);
}

/* ---------------------------------------------------------------- bad peer records */

/* Members asking different window sizes both refuse, naming the sizes; a record that is
 * not one (garbage a rank wrote under the key the group reads) is a format error naming
 * the rank. Each rank succeeds when it saw exactly the expected error. */
static enum wd_status body_bad_records(const struct scenario *sc, const struct wd_rank_info *ri,
                                       struct rank_result *res, struct wd_error *err)
{
    int members[2] = {0, 1};
    struct wd_comm *comm;
    WD_CHECK(wd_comm_create(ri, &comm, err));
    struct wd_transport *t = NULL;
    struct wd_error e = {0};
    size_t mine = ri->rank ? 8192 : 4096;
    if (wd_comm_transport_create(comm, "sizes", members, 2, mine, &t, &e) != WD_ERR_INVALID ||
        !strstr(e.msg, "8192-byte") || !strstr(e.msg, "4096-byte"))
        bad(res, "window size mismatch: %s", e.msg);
    wd_transport_destroy(t);
    t = NULL;
    res->n_checked++;
    enum wd_status st = wd_comm_barrier_world(comm, "sizes-done", err);
    if (st == WD_OK && ri->rank == 1) {
        st = wd_rdzv_set(wd_comm_rdzv(comm), "g/garbage.0/1", "not a record", 12, err);
    } else if (st == WD_OK) {
        if (wd_comm_transport_create(comm, "garbage", members, 2, 4096, &t, &e) != WD_ERR_FORMAT ||
            !strstr(e.msg, "malformed record from rank 1"))
            bad(res, "garbage record: %s", e.msg);
        wd_transport_destroy(t);
    }
    res->n_checked++;
    wd_comm_destroy(comm);
    return st;
}

static void test_bad_records(void)
{
    run(body_bad_records, NULL, 2);
}

/* ---------------------------------------------------------------- layout groups */

/* Each rank contributes (rank + 1) * 1000 + k; a group's sum is checked against its
 * members as the layout lists them. */
static void check_group(const struct wd_comm_group *g, const struct wd_group_set *set, int index,
                        int me, const char *what, struct rank_result *res, enum wd_status *st,
                        struct wd_error *err)
{
    const int *m = wd_group_set_members(set, index);
    if (g->t->n_ranks != set->group_size || m[g->t->rank] != me) {
        bad(res, "%s: rank %d of %d, layout says group %d of size %d", what, g->t->rank,
            g->t->n_ranks, index, set->group_size);
        return;
    }
    float x[5];
    for (int k = 0; k < 5; k++)
        x[k] = (float)((me + 1) * 1000 + k);
    *st = wd_coll_all_reduce_f32(g->coll, x, 5, 5000, err);
    for (int k = 0; *st == WD_OK && k < 5; k++) {
        float want = 0;
        for (int i = 0; i < set->group_size; i++)
            want += (float)((m[i] + 1) * 1000 + k);
        if (x[k] != want)
            bad(res, "%s: sum %g, want %g", what, x[k], want);
    }
    res->n_checked++;
}

static enum wd_status body_groups(const struct scenario *sc, const struct wd_rank_info *ri,
                                  struct rank_result *res, struct wd_error *err)
{
    const struct wd_layout *l = sc->layout;
    const struct wd_rank_layout *rl = &l->ranks[ri->rank];
    struct wd_comm *comm;
    WD_CHECK(wd_comm_create(ri, &comm, err));
    struct wd_comm_groups *g = NULL;
    enum wd_status st = wd_comm_groups_create(comm, l, 1024, 8192, &g, err);
    if (st == WD_OK)
        check_group(g->tp, &l->tp_groups, 0, ri->rank, "tp", res, &st, err);
    if (st == WD_OK)
        check_group(g->attn_tp, &l->attn_tp_groups, rl->attn_dp_rank, ri->rank, "attn_tp", res, &st,
                    err);
    if (st == WD_OK)
        check_group(g->moe_ep, &l->moe_ep_groups, rl->moe_tp_rank, ri->rank, "moe_ep", res, &st,
                    err);
    if (st == WD_OK)
        check_group(g->moe_tp, &l->moe_tp_groups, rl->moe_ep_rank, ri->rank, "moe_tp", res, &st,
                    err);
    if (st == WD_OK && (!g->ep || g->ep->n_ranks != l->moe_ep_size ||
                        g->ep->rank != rl->moe_ep_rank || g->ep->window_bytes != 8192))
        bad(res, "ep window: rank %d of %d", g->ep ? g->ep->rank : -1, g->ep ? g->ep->n_ranks : -1);
    wd_comm_groups_destroy(g);
    wd_comm_destroy(comm);
    return st;
}

static void test_layout_groups(void)
{
    static const int cases[][4] = {{4, 1, 2, 0}, {4, 2, 4, 1}, {2, 1, 2, 0}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct wd_parallel_args a;
        wd_parallel_args_init(&a);
        a.tp_size = cases[i][0];
        a.dp_size = cases[i][1];
        a.ep_size = cases[i][2];
        a.enable_dp_attention = cases[i][3];
        struct wd_layout *l = NULL;
        struct wd_error err = {0};
        if (wd_layout_create(&a, NULL, &l, &err) != WD_OK) {
            WD_EXPECT_MSG(0, "layout: %s", err.msg);
            continue;
        }
        run(body_groups, l, l->world_size);
        wd_layout_destroy(l);
    }
}

int main(void)
{
    g_res = mmap(NULL, MAX_RANKS * sizeof(*g_res), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_res == MAP_FAILED)
        return 1;
    WD_RUN(test_putsig_2);
    WD_RUN(test_putsig_4);
    WD_RUN(test_coll_2);
    WD_RUN(test_coll_4);
    WD_RUN(test_bad_records);
    WD_RUN(test_layout_groups);
    munmap(g_res, MAX_RANKS * sizeof(*g_res));
    return wd_test_finish();
}

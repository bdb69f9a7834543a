/* Low-latency dispatch/combine (SPEC-EP 5, 6, 11 items 5-8) over the in-process
 * transport with R in {1, 2, 3, 4, 8} rank threads: per-expert counts, layout
 * ranges tiling the slab, set equality of rows per (expert, source) with src_info
 * and src_slot, combine with identity and real experts against a dense reference,
 * the double-buffer rules, hook mode, mixed normal/LL use, timeouts. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/sampling.h"
#include "common/comm/transport_inproc.h"
#include "common/ep/ep_buffer.h"
#include "common/ep/ep_ll.h"
#include "common/ep/ep_moe.h"
#include "common/ep/ep_normal.h"
#include "tests/unit/wd_test.h"

#define MAXR 8

struct world {
    int R, H, K, E, L, M;
    struct wd_ep_config cfg;
    struct wd_inproc_group *g;
    struct wd_ep_buffer *b[MAXR];
    int n[MAXR];
    float *x[MAXR], *x2[MAXR], *w[MAXR];
    int32_t *idx[MAXR], *idx2[MAXR];
    int st[MAXR];
    char msg[MAXR][WD_ERROR_LEN];
    struct wd_ep_ll_recv rv[MAXR], rv2[MAXR];
    float *out[MAXR], *out2[MAXR];
    int32_t stats[MAXR][64];
    int64_t cost[MAXR][MAXR];
    int flag[MAXR]; /* test-specific observations */
};

static void fill_routing(uint64_t *s, int n, int K, int E, int32_t *idx, float *w)
{
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < K; k++) {
            w[(size_t)i * K + k] = (float)(1 + wd_splitmix64(s) % 8) / 8.0f;
            if (k >= E) {
                idx[(size_t)i * K + k] = -1;
                continue;
            }
            int32_t v;
            int dup;
            do {
                v = (int32_t)(wd_splitmix64(s) % (uint64_t)E);
                dup = 0;
                for (int q = 0; q < k; q++)
                    dup |= idx[(size_t)i * K + q] == v;
            } while (dup);
            idx[(size_t)i * K + k] = v;
        }
        for (int k = 0; k < K; k++)
            if (i % 7 == 2 || wd_splitmix64(s) % 4 == 0)
                idx[(size_t)i * K + k] = -1;
    }
}

/* zero_rank gets no tokens; rank 0 (when not the zero rank) gets all M. */
static void world_create(struct world *wd, int R, int H, int K, int E, int M, int N_normal,
                         uint64_t seed, int zero_rank)
{
    memset(wd, 0, sizeof(*wd));
    *wd = (struct world){.R = R, .H = H, .K = K, .E = E, .L = E / R, .M = M};
    wd->cfg = (struct wd_ep_config){.n_ranks = R,
                                    .hidden = H,
                                    .top_k = K,
                                    .n_experts = E,
                                    .max_tokens = N_normal,
                                    .ll_max_tokens = M,
                                    .timeout_ms = 5000};
    WD_EXPECT_EQ_INT(wd_inproc_group_create(R, wd_ep_window_bytes(&wd->cfg), &wd->g, NULL), WD_OK);
    uint64_t s = seed;
    for (int r = 0; r < R; r++) {
        WD_EXPECT_EQ_INT(
            wd_ep_buffer_create(&wd->cfg, wd_inproc_group_transport(wd->g, r), &wd->b[r], NULL),
            WD_OK);
        int n = r == zero_rank ? 0 : r == 0 ? M : (int)(wd_splitmix64(&s) % (uint64_t)(M + 1));
        wd->n[r] = n;
        size_t nh = (size_t)n * H + 1, nk = (size_t)n * K + 1;
        wd->x[r] = malloc(sizeof(float) * nh);
        wd->x2[r] = malloc(sizeof(float) * nh);
        wd->out[r] = malloc(sizeof(float) * nh);
        wd->out2[r] = malloc(sizeof(float) * nh);
        wd->w[r] = malloc(sizeof(float) * nk);
        wd->idx[r] = malloc(sizeof(int32_t) * nk);
        wd->idx2[r] = malloc(sizeof(int32_t) * nk);
        for (int i = 0; i < n; i++)
            for (int c = 0; c < H; c++) {
                float v = c == 0   ? (float)r
                          : c == 1 ? (float)i
                                   : (float)((r * 29 + i * 13 + c * 7) % 41 - 20);
                wd->x[r][(size_t)i * H + c] = v;
                wd->x2[r][(size_t)i * H + c] = 3.0f * v - 1.0f;
            }
        fill_routing(&s, n, K, E, wd->idx[r], wd->w[r]);
        float *tmpw = malloc(sizeof(float) * nk);
        fill_routing(&s, n, K, E, wd->idx2[r], tmpw);
        free(tmpw);
    }
}

static void world_destroy(struct world *wd)
{
    for (int r = 0; r < wd->R; r++) {
        wd_ep_buffer_destroy(wd->b[r]);
        free(wd->x[r]);
        free(wd->x2[r]);
        free(wd->out[r]);
        free(wd->out2[r]);
        free(wd->w[r]);
        free(wd->idx[r]);
        free(wd->idx2[r]);
    }
    wd_inproc_group_destroy(wd->g);
}

static void note(struct world *wd, int r, enum wd_status st, const struct wd_error *err)
{
    if (st != WD_OK && wd->st[r] == WD_OK) {
        wd->st[r] = st;
        snprintf(wd->msg[r], sizeof(wd->msg[r]), "%s", err->msg);
    }
}

static void expect_all_ok(const struct world *wd)
{
    for (int r = 0; r < wd->R; r++)
        WD_EXPECT_MSG(wd->st[r] == WD_OK, "R=%d rank %d: %s", wd->R, r, wd->msg[r]);
}

/* Checks rank r's LL result against every rank's (x, idx): counts, range tiling, each
 * (source, token, slot) present exactly once in the right block with the right bytes. */
static void check_ll_recv(const struct world *wd, int r, const struct wd_ep_ll_recv *rv,
                          const struct wd_ep_payload *p, float *const *xs, int32_t *const *idxs)
{
    int R = wd->R, K = wd->K, L = wd->L, M = wd->M;
    struct wd_ep_payload pp = *p;
    pp.hidden = wd->H;
    size_t row = wd_ep_payload_row_bytes(&pp);
    uint8_t *want = malloc(row);
    char *seen = calloc((size_t)M * K + 1, 1);
    WD_EXPECT(rv->is_done);
    WD_EXPECT_EQ_INT(rv->max_rows, R * M);
    WD_EXPECT_EQ_INT(rv->row_bytes, row);
    for (int l = 0; l < L; l++) {
        int e = r * L + l, total = 0, bad = 0;
        char *covered = calloc((size_t)R * M + 1, 1);
        for (int s = 0; s < R; s++) {
            int expect_n = 0;
            for (int i = 0; i < wd->n[s]; i++)
                for (int k = 0; k < K; k++)
                    expect_n += idxs[s][(size_t)i * K + k] == e;
            int64_t rg = rv->layout_range[(size_t)l * R + s];
            int begin = (int)(rg >> 32), n = (int)(rg & 0xffffffff);
            WD_EXPECT_EQ_INT(n, expect_n);
            total += n;
            memset(seen, 0, (size_t)M * K);
            for (int j = begin; j < begin + n && j < R * M; j++) {
                bad += covered[j]++ != 0; /* blocks disjoint */
                size_t at = (size_t)l * R * M + (size_t)j;
                int i = rv->src_info[at], k = rv->src_slot[at];
                if (i < 0 || i >= wd->n[s] || k < 0 || k >= K || idxs[s][(size_t)i * K + k] != e ||
                    seen[i * K + k]++) {
                    bad++;
                    continue;
                }
                wd_ep_payload_encode(&pp, xs[s] + (size_t)i * wd->H, want);
                bad += memcmp(want, rv->x + at * row, row) != 0;
            }
        }
        WD_EXPECT_EQ_INT(rv->count[l], total);
        for (int j = 0; j < total; j++)
            bad += !covered[j]; /* blocks tile [0, count) */
        WD_EXPECT_MSG(bad == 0, "R=%d rank %d expert %d: %d bad rows", R, r, l, bad);
        free(covered);
    }
    free(seen);
    free(want);
}

/* ---- dispatch: counts, ranges, set equality, stats ---- */

static struct wd_ep_payload g_payload;
static enum wd_ep_payload_kind g_comb;

static void rank_dispatch(int r, void *arg)
{
    struct world *wd = arg;
    struct wd_error err = {0};
    struct wd_ep_ll_dispatch_args a = {.x = wd->x[r],
                                       .n_tokens = wd->n[r],
                                       .topk_idx = wd->idx[r],
                                       .payload = g_payload,
                                       .cumulative_recv_stats = wd->stats[r],
                                       .wait_recv_cost_ns = wd->cost[r]};
    note(wd, r, wd_ep_ll_dispatch(wd->b[r], &a, &wd->rv[r], &err), &err);
}

static void dispatch_case(int R, int E, int K, int M, enum wd_ep_payload_kind kind, uint64_t seed)
{
    struct world wd;
    world_create(&wd, R, 16, K, E, M, 0, seed, R > 2 ? R - 1 : -1);
    if (R > 2) /* rank R-2 receives nothing */
        for (int r = 0; r < R; r++)
            for (int i = 0; i < wd.n[r] * K; i++)
                if (wd.idx[r][i] >= 0 && wd.idx[r][i] / wd.L == R - 2)
                    wd.idx[r][i] = -1;
    g_payload = (struct wd_ep_payload){.kind = kind};
    WD_EXPECT_EQ_INT(wd_inproc_group_run(wd.g, rank_dispatch, &wd, NULL), WD_OK);
    expect_all_ok(&wd);
    for (int r = 0; r < R; r++) {
        if (wd.st[r] != WD_OK)
            continue;
        check_ll_recv(&wd, r, &wd.rv[r], &g_payload, wd.x, wd.idx);
        for (int l = 0; l < wd.L; l++)
            WD_EXPECT_EQ_INT(wd.stats[r][l], wd.rv[r].count[l]);
        for (int s = 0; s < R; s++)
            WD_EXPECT(wd.cost[r][s] >= 0);
        WD_EXPECT(wd.rv[r].scales == NULL);
    }
    world_destroy(&wd);
}

static void test_ll_dispatch_layout(void)
{
    static const int ranks[] = {1, 2, 3, 4, 8};
    for (int q = 0; q < 5; q++) {
        int R = ranks[q];
        dispatch_case(R, 2 * R, 3, 12, WD_EP_PAYLOAD_F32, 10 + q);
        dispatch_case(R, 4 * R, 4, 9, WD_EP_PAYLOAD_BF16, 20 + q);
    }
    dispatch_case(2, 2, 2, 16, WD_EP_PAYLOAD_F32, 30); /* one expert per rank: blocks pile up */
}

/* ---- combine: identity experts and a dense reference ---- */

static void rank_identity(int r, void *arg)
{
    struct world *wd = arg;
    struct wd_error err = {0};
    struct wd_ep_ll_dispatch_args a = {
        .x = wd->x[r], .n_tokens = wd->n[r], .topk_idx = wd->idx[r], .payload = g_payload};
    struct wd_ep_ll_recv rv;
    enum wd_status st = wd_ep_ll_dispatch(wd->b[r], &a, &rv, &err);
    float *back = NULL;
    if (st == WD_OK) {
        size_t rows = (size_t)wd->L * rv.max_rows;
        back = malloc(sizeof(float) * (rows * wd->H + 1));
        for (int l = 0; l < wd->L; l++)
            for (int j = 0; j < rv.count[l]; j++) {
                size_t at = (size_t)l * rv.max_rows + (size_t)j;
                wd_ep_payload_decode(&rv.payload, rv.x + at * rv.row_bytes, back + at * wd->H);
            }
        struct wd_ep_ll_combine_args c = {.x = back,
                                          .n_tokens = wd->n[r],
                                          .topk_idx = wd->idx[r],
                                          .topk_w = wd->w[r],
                                          .payload = g_comb};
        st = wd_ep_ll_combine(wd->b[r], &rv, &c, wd->out[r], &err);
    }
    note(wd, r, st, &err);
    free(back);
}

static void test_ll_combine_identity(void)
{
    static const int ranks[] = {1, 2, 3, 4, 8};
    for (int q = 0; q < 5; q++) {
        for (int v = 0; v < 2; v++) {
            struct world wd;
            int R = ranks[q];
            world_create(&wd, R, 16, 4, 2 * R, 10, 0, 40 + q * 2 + v, R > 1 ? 1 : -1);
            g_payload = (struct wd_ep_payload){.kind = v ? WD_EP_PAYLOAD_BF16 : WD_EP_PAYLOAD_F32};
            g_comb = g_payload.kind;
            WD_EXPECT_EQ_INT(wd_inproc_group_run(wd.g, rank_identity, &wd, NULL), WD_OK);
            expect_all_ok(&wd);
            for (int r = 0; r < R; r++) {
                int bad = 0;
                for (int i = 0; i < wd.n[r]; i++) {
                    float sw = 0; /* exact: multiples of 1/8 times small integers */
                    for (int k = 0; k < wd.K; k++)
                        if (wd.idx[r][(size_t)i * wd.K + k] >= 0)
                            sw += wd.w[r][(size_t)i * wd.K + k];
                    for (int c = 0; c < wd.H; c++) {
                        float o = wd.out[r][(size_t)i * wd.H + c];
                        bad += o != wd.x[r][(size_t)i * wd.H + c] * sw || isnan(o);
                    }
                }
                WD_EXPECT_MSG(bad == 0, "R=%d rank %d: %d values differ from x * sum(w)", R, r,
                              bad);
            }
            world_destroy(&wd);
        }
    }
}

struct experts_ctx {
    const float *W; /* [E, H, H] */
    int H, first;
};

static void expert_ref(const struct experts_ctx *c, int e, const float *x, float *y)
{
    for (int o = 0; o < c->H; o++) {
        float acc = 0.01f * (float)(e - o);
        for (int j = 0; j < c->H; j++)
            acc += c->W[((size_t)e * c->H + o) * c->H + j] * x[j];
        y[o] = acc / (1.0f + fabsf(acc)); /* softsign: nonlinear */
    }
}

static enum wd_status expert_run(void *ctx, int l, const float *x, int n, float *y,
                                 struct wd_error *err)
{
    const struct experts_ctx *c = ctx;
    for (int i = 0; i < n; i++)
        expert_ref(c, c->first + l, x + (size_t)i * c->H, y + (size_t)i * c->H);
    return WD_OK;
}

static float *g_W;
static int g_mixed; /* also run normal-mode layers around the LL one */

static void rank_moe(int r, void *arg)
{
    struct world *wd = arg;
    struct wd_error err = {0};
    struct wd_ep_moe *m = NULL;
    struct wd_ep_handle *h = NULL;
    struct experts_ctx ec = {g_W, wd->H, r * wd->L};
    struct wd_ep_experts ex = {expert_run, &ec};
    struct wd_ep_moe_args a = {.x = wd->x[r],
                               .n_tokens = wd->n[r],
                               .topk_idx = wd->idx[r],
                               .topk_w = wd->w[r],
                               .dispatch_payload = g_payload,
                               .combine_payload = g_comb};
    enum wd_status st = wd_ep_moe_create(wd->b[r], &m, &err);
    if (st == WD_OK && g_mixed)
        st = wd_ep_handle_create(wd->b[r], &h, &err);
    if (st == WD_OK && g_mixed) /* prefill-like normal layer first (auto mode) */
        st = wd_ep_moe_normal(m, wd->b[r], h, &a, &ex, wd->out2[r], &err);
    if (st == WD_OK)
        st = wd_ep_moe_ll(m, wd->b[r], &a, &ex, wd->out[r], &err);
    if (st == WD_OK) /* a second LL layer on the other half */
        st = wd_ep_moe_ll(m, wd->b[r], &a, &ex, wd->out[r], &err);
    if (st == WD_OK && g_mixed) {
        float *again = malloc(sizeof(float) * ((size_t)wd->n[r] * wd->H + 1));
        st = wd_ep_moe_normal(m, wd->b[r], h, &a, &ex, again, &err);
        if (st == WD_OK && memcmp(again, wd->out2[r], sizeof(float) * (size_t)wd->n[r] * wd->H))
            wd->flag[r] = 1;
        free(again);
    }
    note(wd, r, st, &err);
    wd_ep_handle_destroy(h);
    wd_ep_moe_destroy(m);
}

static void moe_case(int R, int E, int K, enum wd_ep_payload_kind dk, enum wd_ep_payload_kind ck,
                     double tol, int mixed, uint64_t seed)
{
    struct world wd;
    world_create(&wd, R, 16, K, E, 12, mixed ? 12 : 0, seed, R > 1 ? R / 2 : -1);
    uint64_t s = seed * 3 + 7;
    g_W = malloc(sizeof(float) * (size_t)E * 16 * 16);
    for (size_t q = 0; q < (size_t)E * 16 * 16; q++)
        g_W[q] = ((float)(wd_splitmix64(&s) % 2001) - 1000.0f) / 4000.0f;
    g_payload = (struct wd_ep_payload){.kind = dk};
    g_comb = ck;
    g_mixed = mixed;
    WD_EXPECT_EQ_INT(wd_inproc_group_run(wd.g, rank_moe, &wd, NULL), WD_OK);
    expect_all_ok(&wd);
    struct experts_ctx ec = {g_W, 16, 0};
    float y[16];
    for (int r = 0; r < R; r++) {
        double max_err = 0, max_err_normal = 0;
        for (int i = 0; i < wd.n[r]; i++) {
            double ref[16] = {0};
            for (int k = 0; k < K; k++) {
                int32_t e = wd.idx[r][(size_t)i * K + k];
                if (e < 0)
                    continue;
                expert_ref(&ec, e, wd.x[r] + (size_t)i * 16, y);
                for (int c = 0; c < 16; c++)
                    ref[c] += (double)wd.w[r][(size_t)i * K + k] * y[c];
            }
            for (int c = 0; c < 16; c++) {
                double d = fabs(wd.out[r][(size_t)i * 16 + c] - ref[c]);
                max_err = d > max_err ? d : max_err;
                if (mixed) {
                    d = fabs(wd.out2[r][(size_t)i * 16 + c] - ref[c]);
                    max_err_normal = d > max_err_normal ? d : max_err_normal;
                }
            }
        }
        WD_EXPECT_MSG(max_err <= tol, "R=%d rank %d: LL max error %g (tol %g)", R, r, max_err, tol);
        WD_EXPECT_MSG(max_err_normal <= tol, "R=%d rank %d: normal max error %g", R, r,
                      max_err_normal);
        WD_EXPECT_MSG(!wd.flag[r], "R=%d rank %d: normal layer differs after LL use", R, r);
    }
    free(g_W);
    world_destroy(&wd);
}

static void test_ll_moe_dense_reference(void)
{
    static const int ranks[] = {1, 2, 3, 4, 8};
    for (int q = 0; q < 5; q++) {
        int R = ranks[q];
        moe_case(R, R * (q % 2 + 1) * 2, 4, WD_EP_PAYLOAD_F32, WD_EP_PAYLOAD_F32, 1e-5, 0, 60 + q);
        moe_case(R, 2 * R, 3, WD_EP_PAYLOAD_BF16, WD_EP_PAYLOAD_BF16, 2e-2, 0, 70 + q);
    }
    moe_case(4, 8, 4, WD_EP_PAYLOAD_F32, WD_EP_PAYLOAD_F32, 1e-5, 1, 80); /* auto: normal + LL */
    moe_case(3, 6, 2, WD_EP_PAYLOAD_BF16, WD_EP_PAYLOAD_F32, 2e-2, 1, 81);
}

/* ---- double buffering: two results held at once, the third dispatch on a half ---- */

static int g_step;

static void combine_identity(struct world *wd, int r, const struct wd_ep_ll_recv *rv,
                             const int32_t *idx, float *out, int hook, struct wd_error *err,
                             enum wd_status *st)
{
    size_t rows = (size_t)wd->L * rv->max_rows;
    float *back = calloc(rows * wd->H + 1, sizeof(float));
    for (int l = 0; l < wd->L; l++)
        for (int j = 0; j < rv->count[l]; j++) {
            size_t at = (size_t)l * rv->max_rows + (size_t)j;
            wd_ep_payload_decode(&rv->payload, rv->x + at * rv->row_bytes, back + at * wd->H);
        }
    struct wd_ep_ll_combine_args c = {.x = back,
                                      .n_tokens = wd->n[r],
                                      .topk_idx = idx,
                                      .topk_w = wd->w[r],
                                      .payload = WD_EP_PAYLOAD_F32,
                                      .return_recv_hook = hook};
    *st = wd_ep_ll_combine(wd->b[r], rv, &c, out, err);
    /* In hook mode the send phase has read back already: freeing it now is fine. */
    free(back);
}

static void rank_double_buffer(int r, void *arg)
{
    struct world *wd = arg;
    struct wd_error err = {0};
    enum wd_status st = WD_OK;
    struct wd_ep_ll_dispatch_args a1 = {
        .x = wd->x[r], .n_tokens = wd->n[r], .topk_idx = wd->idx[r], .payload = g_payload};
    struct wd_ep_ll_dispatch_args a2 = {
        .x = wd->x2[r], .n_tokens = wd->n[r], .topk_idx = wd->idx2[r], .payload = g_payload};
    switch (g_step) {
    case 0: /* D1, D2: both results outstanding */
        st = wd_ep_ll_dispatch(wd->b[r], &a1, &wd->rv[r], &err);
        if (st == WD_OK)
            st = wd_ep_ll_dispatch(wd->b[r], &a2, &wd->rv2[r], &err);
        break;
    case 1: /* C1, C2 with the two handles (the two-batch-overlap order) */
        combine_identity(wd, r, &wd->rv[r], wd->idx[r], wd->out[r], 0, &err, &st);
        if (st == WD_OK)
            combine_identity(wd, r, &wd->rv2[r], wd->idx2[r], wd->out2[r], 0, &err, &st);
        break;
    case 2: { /* D3 lands on D1's half; D2's result must survive */
        static struct wd_ep_ll_recv rv3[MAXR];
        st = wd_ep_ll_dispatch(wd->b[r], &a1, &rv3[r], &err);
        break;
    }
    case 3: /* D1's handle is stale now: refused, not silently wrong */
        combine_identity(wd, r, &wd->rv[r], wd->idx[r], wd->out[r], 0, &err, &st);
        wd->flag[r] = st == WD_ERR_INVALID && strstr(err.msg, "overwrote") != NULL;
        st = WD_OK;
        break;
    }
    note(wd, r, st, &err);
}

static void check_identity_out(const struct world *wd, int r, const int32_t *idx, const float *x,
                               const float *out)
{
    int bad = 0;
    for (int i = 0; i < wd->n[r]; i++) {
        float sw = 0;
        for (int k = 0; k < wd->K; k++)
            if (idx[(size_t)i * wd->K + k] >= 0)
                sw += wd->w[r][(size_t)i * wd->K + k];
        for (int c = 0; c < wd->H; c++)
            bad += out[(size_t)i * wd->H + c] != x[(size_t)i * wd->H + c] * sw;
    }
    WD_EXPECT_MSG(bad == 0, "rank %d: %d combined values wrong", r, bad);
}

static void test_ll_double_buffer(void)
{
    for (int R = 1; R <= 4; R++) {
        struct world wd;
        world_create(&wd, R, 16, 3, 2 * R, 8, 0, 90 + R, -1);
        g_payload = (struct wd_ep_payload){.kind = WD_EP_PAYLOAD_F32};
        for (g_step = 0; g_step < 4; g_step++) {
            WD_EXPECT_EQ_INT(wd_inproc_group_run(wd.g, rank_double_buffer, &wd, NULL), WD_OK);
            expect_all_ok(&wd);
            for (int r = 0; r < R; r++) {
                if (g_step == 0) {
                    WD_EXPECT(wd.rv[r].half != wd.rv2[r].half);
                    check_ll_recv(&wd, r, &wd.rv[r], &g_payload, wd.x, wd.idx);
                    check_ll_recv(&wd, r, &wd.rv2[r], &g_payload, wd.x2, wd.idx2);
                } else if (g_step == 1) {
                    check_identity_out(&wd, r, wd.idx[r], wd.x[r], wd.out[r]);
                    check_identity_out(&wd, r, wd.idx2[r], wd.x2[r], wd.out2[r]);
                } else if (g_step == 2) {
                    check_ll_recv(&wd, r, &wd.rv2[r], &g_payload, wd.x2, wd.idx2);
                } else {
                    WD_EXPECT_MSG(wd.flag[r], "rank %d: a stale LL handle was accepted", r);
                }
            }
        }
        world_destroy(&wd);
    }
}

/* The hazard double buffering exists for: a fast rank's next dispatch on a half must not
 * land while a slow rank still holds its result there. Rank 1 keeps reading its D1 result
 * after C1 (allowed: it stays valid until its next dispatch on that half) while the other
 * ranks run straight into D3 on the same half; they must wait for rank 1 to enter D3. */
static void rank_slow_reader(int r, void *arg)
{
    struct world *wd = arg;
    struct wd_error err = {0};
    enum wd_status st;
    struct wd_ep_ll_dispatch_args a = {
        .x = wd->x[r], .n_tokens = wd->n[r], .topk_idx = wd->idx[r], .payload = g_payload};
    struct wd_ep_ll_dispatch_args a3 = a;
    a3.x = wd->x2[r];
    st = wd_ep_ll_dispatch(wd->b[r], &a, &wd->rv[r], &err);
    struct wd_ep_ll_recv *rv = &wd->rv[r];
    size_t bytes = (size_t)wd->L * rv->max_rows * rv->row_bytes;
    uint8_t *copy = NULL;
    if (st == WD_OK) {
        copy = malloc(bytes + 1);
        memcpy(copy, rv->x, bytes);
        combine_identity(wd, r, rv, wd->idx[r], wd->out[r], 0, &err, &st);
    }
    if (st == WD_OK && r == 1) {
        struct timespec ts = {0, 60 * 1000 * 1000};
        nanosleep(&ts, NULL); /* the others are in D3 by now */
        for (int l = 0; l < wd->L; l++)
            if (memcmp(copy + (size_t)l * rv->max_rows * rv->row_bytes,
                       rv->x + (size_t)l * rv->max_rows * rv->row_bytes,
                       (size_t)rv->count[l] * rv->row_bytes) != 0)
                wd->flag[r] = 1;
    }
    if (st == WD_OK)
        st = wd_ep_ll_dispatch(wd->b[r], &a3, &wd->rv2[r], &err);
    note(wd, r, st, &err);
    free(copy);
}

static void test_ll_result_survives_fast_peer(void)
{
    struct world wd;
    world_create(&wd, 3, 16, 3, 6, 8, 0, 130, -1);
    g_payload = (struct wd_ep_payload){.kind = WD_EP_PAYLOAD_F32};
    WD_EXPECT_EQ_INT(wd_inproc_group_run(wd.g, rank_slow_reader, &wd, NULL), WD_OK);
    expect_all_ok(&wd);
    WD_EXPECT_MSG(!wd.flag[1], "a peer overwrote rank 1's held LL result");
    for (int r = 0; r < 3; r++) {
        check_identity_out(&wd, r, wd.idx[r], wd.x[r], wd.out[r]);
        check_ll_recv(&wd, r, &wd.rv2[r], &g_payload, wd.x2, wd.idx);
    }
    world_destroy(&wd);
}

/* ---- hook mode: send phases first, receives later, same results ---- */

static void rank_hook(int r, void *arg)
{
    struct world *wd = arg;
    struct wd_error err = {0};
    enum wd_status st;
    struct wd_ep_ll_dispatch_args a1 = {.x = wd->x[r],
                                        .n_tokens = wd->n[r],
                                        .topk_idx = wd->idx[r],
                                        .payload = g_payload,
                                        .cumulative_recv_stats = wd->stats[r],
                                        .return_recv_hook = 1};
    struct wd_ep_ll_dispatch_args a2 = a1;
    a2.x = wd->x2[r];
    a2.topk_idx = wd->idx2[r];
    a2.cumulative_recv_stats = NULL;
    memset(&wd->rv[r], 0, sizeof(wd->rv[r]));
    st = wd_ep_ll_dispatch(wd->b[r], &a1, &wd->rv[r], &err);
    /* The send phase alone produced no result. */
    if (wd->rv[r].is_done || wd->rv[r].x != NULL || wd->stats[r][0] != 0)
        wd->flag[r] |= 1;
    if (st == WD_OK)
        st = wd_ep_ll_dispatch(wd->b[r], &a2, &wd->rv2[r], &err);
    if (wd_ep_ll_n_outstanding(wd->b[r]) != 2)
        wd->flag[r] |= 2;
    if (st == WD_OK)
        st = wd_ep_ll_complete(wd->b[r], &err);
    if (!wd->rv[r].is_done || wd->rv2[r].is_done)
        wd->flag[r] |= 4; /* completions run in call order */
    if (st == WD_OK)
        st = wd_ep_ll_complete(wd->b[r], &err);
    if (st == WD_OK) /* combines, both in hook mode too */
        combine_identity(wd, r, &wd->rv[r], wd->idx[r], wd->out[r], 1, &err, &st);
    if (st == WD_OK)
        combine_identity(wd, r, &wd->rv2[r], wd->idx2[r], wd->out2[r], 1, &err, &st);
    if (st == WD_OK)
        st = wd_ep_ll_complete(wd->b[r], &err);
    if (st == WD_OK)
        st = wd_ep_ll_complete(wd->b[r], &err);
    if (wd_ep_ll_n_outstanding(wd->b[r]) != 0)
        wd->flag[r] |= 8;
    note(wd, r, st, &err);
}

static void test_ll_hook_mode(void)
{
    for (int R = 1; R <= 4; R++) {
        struct world wd;
        world_create(&wd, R, 16, 3, 3 * R, 8, 0, 100 + R, R == 4 ? 2 : -1);
        g_payload = (struct wd_ep_payload){.kind = WD_EP_PAYLOAD_BF16};
        WD_EXPECT_EQ_INT(wd_inproc_group_run(wd.g, rank_hook, &wd, NULL), WD_OK);
        expect_all_ok(&wd);
        for (int r = 0; r < R; r++) {
            WD_EXPECT_MSG(wd.flag[r] == 0, "rank %d: hook flags 0x%x", r, wd.flag[r]);
            check_ll_recv(&wd, r, &wd.rv[r], &g_payload, wd.x, wd.idx);
            check_ll_recv(&wd, r, &wd.rv2[r], &g_payload, wd.x2, wd.idx2);
            for (int l = 0; l < wd.L; l++)
                WD_EXPECT_EQ_INT(wd.stats[r][l], wd.rv[r].count[l]);
            check_identity_out(&wd, r, wd.idx[r], wd.x[r], wd.out[r]);
            check_identity_out(&wd, r, wd.idx2[r], wd.x2[r], wd.out2[r]);
        }
        world_destroy(&wd);
    }
}

static void rank_three_outstanding(int r, void *arg)
{
    struct world *wd = arg;
    struct wd_error err = {0};
    struct wd_ep_ll_dispatch_args a = {
        .x = wd->x[r], .n_tokens = wd->n[r], .topk_idx = wd->idx[r], .return_recv_hook = 1};
    struct wd_ep_ll_recv rv3;
    enum wd_status st = wd_ep_ll_dispatch(wd->b[r], &a, &wd->rv[r], &err);
    if (st == WD_OK)
        st = wd_ep_ll_dispatch(wd->b[r], &a, &wd->rv2[r], &err);
    if (st == WD_OK)
        st = wd_ep_ll_dispatch(wd->b[r], &a, &rv3, &err);
    wd->st[r] = st;
    snprintf(wd->msg[r], sizeof(wd->msg[r]), "%s", err.msg);
}

static void test_ll_misuse(void)
{
    struct world wd;
    world_create(&wd, 2, 16, 2, 4, 4, 0, 110, -1);
    WD_EXPECT_EQ_INT(wd_inproc_group_run(wd.g, rank_three_outstanding, &wd, NULL), WD_OK);
    for (int r = 0; r < 2; r++) {
        WD_EXPECT_EQ_INT(wd.st[r], WD_ERR_INVALID);
        WD_EXPECT_MSG(strstr(wd.msg[r], "wd_ep_ll_complete") != NULL, "message: %s", wd.msg[r]);
    }
    world_destroy(&wd);

    world_create(&wd, 1, 16, 2, 4, 4, 0, 111, -1);
    struct wd_error err = {0};
    WD_EXPECT_EQ_INT(wd_ep_ll_complete(wd.b[0], &err), WD_ERR_INVALID);
    /* Too many tokens, and an expert over its M-row block (a token naming it twice). */
    int32_t idx[10] = {0, 0, 0, 0, 0, 0, 1, 1, 2, 2};
    float x[5 * 16] = {0};
    struct wd_ep_ll_dispatch_args a = {.x = x, .n_tokens = 5, .topk_idx = idx};
    struct wd_ep_ll_recv rv;
    WD_EXPECT_EQ_INT(wd_ep_ll_dispatch(wd.b[0], &a, &rv, &err), WD_ERR_INVALID);
    world_destroy(&wd);
    world_create(&wd, 1, 16, 2, 4, 4, 0, 112, -1);
    a.n_tokens = 3;
    WD_EXPECT_EQ_INT(wd_ep_ll_dispatch(wd.b[0], &a, &rv, &err), WD_ERR_INVALID);
    WD_EXPECT_MSG(strstr(err.msg, "twice") != NULL, "message: %s", err.msg);
    world_destroy(&wd);
}

/* ---- a rank that never calls, a rank that dies ---- */

static int g_kill;

static void rank_silent_last(int r, void *arg)
{
    struct world *wd = arg;
    if (r == wd->R - 1) {
        if (g_kill)
            wd_inproc_group_kill(wd->g, r);
        return;
    }
    struct wd_error err = {0};
    struct wd_ep_ll_dispatch_args a = {.x = wd->x[r], .n_tokens = wd->n[r], .topk_idx = wd->idx[r]};
    wd->st[r] = wd_ep_ll_dispatch(wd->b[r], &a, &wd->rv[r], &err);
    snprintf(wd->msg[r], sizeof(wd->msg[r]), "%s", err.msg);
}

static void test_ll_timeout_and_dead_peer(void)
{
    for (g_kill = 0; g_kill < 2; g_kill++) {
        struct world wd;
        world_create(&wd, 3, 16, 2, 6, 6, 0, 120 + g_kill, -1);
        wd.cfg.timeout_ms = g_kill ? 10000 : 150; /* a dead peer must not need the timeout */
        for (int r = 0; r < 3; r++) {
            wd_ep_buffer_destroy(wd.b[r]);
            WD_EXPECT_EQ_INT(
                wd_ep_buffer_create(&wd.cfg, wd_inproc_group_transport(wd.g, r), &wd.b[r], NULL),
                WD_OK);
        }
        WD_EXPECT_EQ_INT(wd_inproc_group_run(wd.g, rank_silent_last, &wd, NULL), WD_OK);
        for (int r = 0; r < 2; r++) {
            WD_EXPECT_EQ_INT(wd.st[r], g_kill ? WD_ERR_PEER : WD_ERR_TIMEOUT);
            WD_EXPECT_MSG(strstr(wd.msg[r], "rank 2") != NULL, "rank %d: %s", r, wd.msg[r]);
        }
        world_destroy(&wd);
    }
}

int main(void)
{
    WD_RUN(test_ll_dispatch_layout);
    WD_RUN(test_ll_combine_identity);
    WD_RUN(test_ll_moe_dense_reference);
    WD_RUN(test_ll_double_buffer);
    WD_RUN(test_ll_result_survives_fast_peer);
    WD_RUN(test_ll_hook_mode);
    WD_RUN(test_ll_misuse);
    WD_RUN(test_ll_timeout_and_dead_peer);
    return wd_test_finish();
}

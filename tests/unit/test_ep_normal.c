/* Normal-mode dispatch/combine (SPEC-EP 3, 4, 11 items 2-4) over the in-process
 * transport, R in {1, 2, 3, 4, 8} rank threads. Payload rows describe themselves
 * (column 0 = source rank, column 1 = source token), so every placement is checked
 * exactly against an expected receive buffer built here from all ranks' inputs. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/sampling.h"
#include "common/comm/transport_inproc.h"
#include "common/ep/ep_buffer.h"
#include "common/ep/ep_layout.h"
#include "common/ep/ep_moe.h"
#include "common/ep/ep_normal.h"
#include "kernels/dtype.h"
#include "tests/unit/wd_test.h"

#define MAXR 8

/* A world: R ranks, their buffers and one handle each (two for overlap tests). */
struct world {
    int R;
    struct wd_ep_config cfg;
    struct wd_inproc_group *g;
    struct wd_ep_buffer *b[MAXR];
    struct wd_ep_handle *h[MAXR], *h2[MAXR];
    /* inputs */
    int n[MAXR];
    float *x[MAXR], *x2[MAXR], *w[MAXR], *bias[MAXR];
    int32_t *idx[MAXR];
    /* what each rank thread saw */
    int st[MAXR];
    char msg[MAXR][WD_ERROR_LEN];
    struct wd_ep_recv rv[MAXR], rv2[MAXR];
    float *out[MAXR], *out2[MAXR], *out_w[MAXR];
    double elapsed_ms[MAXR];
};

static void world_create(struct world *wd, int R, int H, int K, int E, int N, uint64_t seed,
                         int zero_rank)
{
    memset(wd, 0, sizeof(*wd));
    wd->R = R;
    wd->cfg = (struct wd_ep_config){
        .n_ranks = R, .hidden = H, .top_k = K, .n_experts = E, .max_tokens = N, .timeout_ms = 5000};
    WD_EXPECT_EQ_INT(wd_inproc_group_create(R, wd_ep_window_bytes(&wd->cfg), &wd->g, NULL), WD_OK);
    uint64_t s = seed;
    for (int r = 0; r < R; r++) {
        WD_EXPECT_EQ_INT(
            wd_ep_buffer_create(&wd->cfg, wd_inproc_group_transport(wd->g, r), &wd->b[r], NULL),
            WD_OK);
        WD_EXPECT_EQ_INT(wd_ep_handle_create(wd->b[r], &wd->h[r], NULL), WD_OK);
        WD_EXPECT_EQ_INT(wd_ep_handle_create(wd->b[r], &wd->h2[r], NULL), WD_OK);
        int n = r == zero_rank ? 0 : (int)(wd_splitmix64(&s) % (uint64_t)(N + 1));
        if (r == 0 && zero_rank != 0)
            n = N; /* one full rank */
        wd->n[r] = n;
        size_t nh = (size_t)n * H + 1, nk = (size_t)n * K + 1;
        wd->x[r] = malloc(sizeof(float) * nh);
        wd->x2[r] = malloc(sizeof(float) * nh);
        wd->bias[r] = malloc(sizeof(float) * nh);
        wd->out[r] = malloc(sizeof(float) * nh);
        wd->out2[r] = malloc(sizeof(float) * nh);
        wd->w[r] = malloc(sizeof(float) * nk);
        wd->out_w[r] = malloc(sizeof(float) * nk);
        wd->idx[r] = malloc(sizeof(int32_t) * nk);
        for (int i = 0; i < n; i++) {
            /* Self-describing, small integers: exact in bf16 too (i < 256). */
            for (int c = 0; c < H; c++)
                wd->x[r][(size_t)i * H + c] = c == 0 ? (float)r
                                              : c == 1
                                                  ? (float)i
                                                  : (float)((r * 37 + i * 11 + c * 5) % 61 - 30);
            for (int c = 0; c < H; c++) {
                wd->x2[r][(size_t)i * H + c] = -2.0f * wd->x[r][(size_t)i * H + c] + 1.0f;
                wd->bias[r][(size_t)i * H + c] = (float)((i + c) % 5) * 0.25f;
            }
            /* Distinct experts per token; about one slot in four masked; every 9th token
             * with nothing valid. Experts are drawn from the lower half more often, so
             * some ranks hold several of a token's experts and the top ranks get few. */
            for (int k = 0; k < K; k++) {
                int32_t v;
                int dup;
                wd->w[r][(size_t)i * K + k] = (float)(1 + wd_splitmix64(&s) % 8) / 8.0f;
                if (k >= E) { /* fewer experts than slots: the rest select nothing */
                    wd->idx[r][(size_t)i * K + k] = -1;
                    continue;
                }
                do {
                    uint64_t u = wd_splitmix64(&s);
                    v = (int32_t)(u % 3 ? (u >> 8) % (uint64_t)(E / 2 > 0 ? E / 2 : 1)
                                        : (u >> 8) % (uint64_t)E);
                    dup = 0;
                    for (int q = 0; q < k; q++)
                        dup |= wd->idx[r][(size_t)i * K + q] == v;
                } while (dup);
                wd->idx[r][(size_t)i * K + k] = v;
            }
            for (int k = 0; k < K; k++)
                if (i % 9 == 4 || wd_splitmix64(&s) % 4 == 0)
                    wd->idx[r][(size_t)i * K + k] = -1;
        }
    }
}

static void world_destroy(struct world *wd)
{
    for (int r = 0; r < wd->R; r++) {
        wd_ep_buffer_destroy(wd->b[r]);
        wd_ep_handle_destroy(wd->h[r]);
        wd_ep_handle_destroy(wd->h2[r]);
        free(wd->x[r]);
        free(wd->x2[r]);
        free(wd->bias[r]);
        free(wd->out[r]);
        free(wd->out2[r]);
        free(wd->w[r]);
        free(wd->out_w[r]);
        free(wd->idx[r]);
    }
    wd_inproc_group_destroy(wd->g);
}

/* No token selects an expert of rank q: q receives nothing (it still sends). */
static void mask_experts_of_rank(struct world *wd, int q)
{
    int L = wd->cfg.n_experts / wd->R, K = wd->cfg.top_k;
    for (int r = 0; r < wd->R; r++)
        for (int i = 0; i < wd->n[r] * K; i++)
            if (wd->idx[r][i] >= 0 && wd->idx[r][i] / L == q)
                wd->idx[r][i] = -1;
}

static void world_run(struct world *wd, void (*fn)(int, void *))
{
    WD_EXPECT_EQ_INT(wd_inproc_group_run(wd->g, fn, wd, NULL), WD_OK);
}

static int is_local(int32_t e, int r, int L)
{
    return e >= 0 && e / L == r;
}

static int token_to_rank(const struct world *wd, int s, int i, int r)
{
    int L = wd->cfg.n_experts / wd->R, K = wd->cfg.top_k;
    for (int k = 0; k < K; k++)
        if (is_local(wd->idx[s][(size_t)i * K + k], r, L))
            return 1;
    return 0;
}

/* Checks rank r's received rows against the expected (source rank, token) order, the
 * rewritten ids and weights, the per-expert counts and the handle. */
static void check_dispatch(const struct world *wd, int r, const struct wd_ep_payload *p, int align,
                           const float *const *xs, int cached)
{
    int R = wd->R, K = wd->cfg.top_k, H = wd->cfg.hidden, L = wd->cfg.n_experts / R;
    const struct wd_ep_recv *rv = cached ? &wd->rv2[r] : &wd->rv[r];
    const struct wd_ep_handle *h = wd->h[r];
    struct wd_ep_payload pp = *p;
    pp.hidden = H;
    size_t row = wd_ep_payload_row_bytes(&pp);
    WD_EXPECT_EQ_INT(rv->row_bytes, row);
    uint8_t *want = malloc(row);
    int k_row = 0, bad_row = 0, bad_meta = 0;
    int32_t per_expert[64] = {0};
    for (int s = 0; s < R; s++) {
        int block_begin = k_row;
        for (int i = 0; i < wd->n[s]; i++) {
            if (!token_to_rank(wd, s, i, r))
                continue;
            if (k_row >= rv->n_recv) {
                k_row++;
                continue;
            }
            wd_ep_payload_encode(&pp, xs[s] + (size_t)i * H, want);
            bad_row += memcmp(want, rv->x + (size_t)k_row * row, row) != 0;
            bad_meta += rv->src_idx[k_row] != i;
            if (!cached) {
                for (int k = 0; k < K; k++) {
                    int32_t e = wd->idx[s][(size_t)i * K + k];
                    int32_t want_idx = is_local(e, r, L) ? e - r * L : -1;
                    float want_w = want_idx >= 0 ? wd->w[s][(size_t)i * K + k] : 0.0f;
                    bad_meta += rv->topk_idx[(size_t)k_row * K + k] != want_idx;
                    bad_meta += rv->topk_w[(size_t)k_row * K + k] != want_w;
                    if (want_idx >= 0)
                        per_expert[want_idx]++;
                }
            }
            k_row++;
        }
        /* DeepEP's own check: the block of source s is exactly P[s-1][r]..P[s][r]. */
        int p0 = s ? h->rank_prefix[(s - 1) * R + r] : 0;
        WD_EXPECT_EQ_INT(p0, block_begin);
        WD_EXPECT_EQ_INT(h->rank_prefix[s * R + r], k_row);
    }
    WD_EXPECT_EQ_INT(rv->n_recv, k_row);
    WD_EXPECT_EQ_INT(h->n_recv, k_row);
    WD_EXPECT_MSG(bad_row == 0, "rank %d: %d rows misplaced", r, bad_row);
    WD_EXPECT_MSG(bad_meta == 0, "rank %d: %d metadata mismatches", r, bad_meta);
    if (!cached)
        for (int l = 0; l < L; l++)
            WD_EXPECT_EQ_INT(rv->num_recv_tokens_per_expert[l],
                             (per_expert[l] + align - 1) / align * align);
    /* The full prefix matrix, recomputed from every rank's routing, on every rank. */
    for (int i = 0; i < R; i++)
        for (int j = 0; j < R; j++) {
            int sum = 0;
            for (int i2 = 0; i2 <= i; i2++)
                for (int t = 0; t < wd->n[i2]; t++)
                    sum += token_to_rank(wd, i2, t, j);
            WD_EXPECT_EQ_INT(h->rank_prefix[i * R + j], sum);
        }
    /* Sender side: is_token_in_rank and send positions of this rank's tokens. */
    for (int j = 0; j < R; j++) {
        int pos = 0;
        for (int i = 0; i < wd->n[r]; i++) {
            int in = token_to_rank(wd, r, i, j);
            WD_EXPECT_EQ_INT(h->is_token_in_rank[(size_t)i * R + j], in);
            WD_EXPECT_EQ_INT(h->send_pos[(size_t)i * R + j], in ? pos++ : -1);
        }
    }
    free(want);
}

/* ---- dispatch placement, cached dispatch ---- */

static struct wd_ep_payload g_payload;
static int g_align, g_given_layout;

static void rank_dispatch_twice(int r, void *arg)
{
    struct world *wd = arg;
    struct wd_error err = {0};
    int R = wd->R;
    int32_t per_rank[MAXR], per_expert[64];
    uint8_t *in_rank = malloc((size_t)wd->n[r] * R + 1);
    struct wd_ep_dispatch_args a = {.x = wd->x[r],
                                    .n_tokens = wd->n[r],
                                    .topk_idx = wd->idx[r],
                                    .topk_w = wd->w[r],
                                    .payload = g_payload,
                                    .expert_alignment = g_align};
    if (g_given_layout) {
        wd_ep_get_dispatch_layout(wd->idx[r], wd->n[r], wd->cfg.top_k, wd->cfg.n_experts, R, 1,
                                  per_rank, NULL, per_expert, in_rank, NULL);
        a.num_tokens_per_rank = per_rank;
        a.num_tokens_per_expert = per_expert;
        a.is_token_in_rank = in_rank;
    }
    wd->st[r] = wd_ep_dispatch(wd->b[r], &a, wd->h[r], &wd->rv[r], &err);
    if (wd->st[r] == WD_OK) {
        /* Copy what the first dispatch returned: the cached one reuses the region. */
        struct wd_ep_recv *rv = &wd->rv[r];
        size_t xb = rv->row_bytes * (size_t)rv->n_recv, kb = 4 * (size_t)rv->n_recv * wd->cfg.top_k;
        uint8_t *keep = malloc(xb + 2 * kb + 1);
        memcpy(keep, rv->x, xb);
        memcpy(keep + xb, rv->topk_idx, kb);
        memcpy(keep + xb + kb, rv->topk_w, kb);
        rv->x = keep;
        rv->topk_idx = (const int32_t *)(void *)(keep + xb);
        rv->topk_w = (const float *)(void *)(keep + xb + kb);
        struct wd_ep_dispatch_args c = {.x = wd->x2[r], .n_tokens = wd->n[r], .payload = g_payload};
        wd->st[r] = wd_ep_dispatch(wd->b[r], &c, wd->h[r], &wd->rv2[r], &err);
    }
    if (wd->st[r] != WD_OK)
        snprintf(wd->msg[r], sizeof(wd->msg[r]), "%s", err.msg);
    free(in_rank);
}

static void dispatch_case(int R, int H, int K, int E, int N, enum wd_ep_payload_kind kind,
                          int align, int given, uint64_t seed, int zero_rank)
{
    struct world wd;
    world_create(&wd, R, H, K, E, N, seed, zero_rank);
    if (R > 2)
        mask_experts_of_rank(&wd, R - 2);
    g_payload = (struct wd_ep_payload){.kind = kind};
    g_align = align;
    g_given_layout = given;
    world_run(&wd, rank_dispatch_twice);
    const float *xs[MAXR], *x2s[MAXR];
    for (int r = 0; r < R; r++) {
        xs[r] = wd.x[r];
        x2s[r] = wd.x2[r];
    }
    for (int r = 0; r < R; r++) {
        WD_EXPECT_MSG(wd.st[r] == WD_OK, "R=%d rank %d: %s", R, r, wd.msg[r]);
        if (wd.st[r] != WD_OK)
            continue;
        check_dispatch(&wd, r, &g_payload, align < 1 ? 1 : align, xs, 0);
        check_dispatch(&wd, r, &g_payload, 1, x2s, 1);
        WD_EXPECT(wd.rv2[r].topk_idx == NULL && wd.rv2[r].num_recv_tokens_per_expert == NULL);
        free((void *)wd.rv[r].x);
    }
    world_destroy(&wd);
}

static void test_dispatch_order_and_handle(void)
{
    static const int ranks[] = {1, 2, 3, 4, 8};
    for (int q = 0; q < 5; q++) {
        int R = ranks[q];
        dispatch_case(R, 16, 4, 2 * R * (q % 2 + 1), 24, WD_EP_PAYLOAD_F32, 1, 0, 100 + q, -1);
        dispatch_case(R, 12, 3, 4 * R, 17, WD_EP_PAYLOAD_BF16, 4, q % 2, 200 + q, R - 1);
    }
    dispatch_case(4, 8, 1, 4, 9, WD_EP_PAYLOAD_F32, 3, 1, 300, 2); /* top-1, one expert per rank */
}

/* ---- combine: identity experts, weights round trip, bias, determinism ---- */

static enum wd_ep_payload_kind g_comb_kind;

static int g_zero_copy; /* first combine through wd_ep_combine_in_place_rows */

static void rank_identity_combine(int r, void *arg)
{
    struct world *wd = arg;
    struct wd_error err = {0};
    int H = wd->cfg.hidden;
    struct wd_ep_dispatch_args a = {.x = wd->x[r],
                                    .n_tokens = wd->n[r],
                                    .topk_idx = wd->idx[r],
                                    .topk_w = wd->w[r],
                                    .payload = g_payload};
    struct wd_ep_recv rv;
    float *back = NULL;
    wd->st[r] = wd_ep_dispatch(wd->b[r], &a, wd->h[r], &rv, &err);
    if (wd->st[r] == WD_OK) {
        back = malloc(sizeof(float) * ((size_t)rv.n_recv * H + 1));
        for (int k = 0; k < rv.n_recv; k++)
            wd_ep_payload_decode(&rv.payload, rv.x + (size_t)k * rv.row_bytes,
                                 back + (size_t)k * H);
        struct wd_ep_combine_args c = {.x = back,
                                       .topk_w = rv.topk_w,
                                       .bias0 = wd->bias[r],
                                       .bias1 = wd->x2[r],
                                       .payload = g_comb_kind};
        float **rows = NULL;
        if (g_zero_copy) {
            /* Zero-copy: write the rows where combine will read them, send nothing. */
            rows = malloc(sizeof(float *) * ((size_t)rv.n_recv + 1));
            wd->st[r] = wd_ep_combine_in_place_rows(wd->b[r], wd->h[r], rows, &err);
            for (int k = 0; wd->st[r] == WD_OK && k < rv.n_recv; k++)
                memcpy(rows[k], back + (size_t)k * H, sizeof(float) * (size_t)H);
            c.x_in_place = 1;
        }
        if (wd->st[r] == WD_OK)
            wd->st[r] = wd_ep_combine(wd->b[r], wd->h[r], &c, wd->out[r], wd->out_w[r], &err);
        free(rows);
        /* The same combine again, right after a combine (the n_sync path; copying the rows
         * even when the first was zero-copy), must give the same bits. */
        c.topk_w = NULL;
        c.x_in_place = 0;
        if (wd->st[r] == WD_OK)
            wd->st[r] = wd_ep_combine(wd->b[r], wd->h[r], &c, wd->out2[r], NULL, &err);
    }
    if (wd->st[r] != WD_OK)
        snprintf(wd->msg[r], sizeof(wd->msg[r]), "%s", err.msg);
    free(back);
}

static void combine_case(int R, enum wd_ep_payload_kind dkind, enum wd_ep_payload_kind ckind,
                         uint64_t seed)
{
    struct world wd;
    int H = 16, K = 3, E = 3 * R;
    world_create(&wd, R, H, K, E, 20, seed, R > 2 ? 1 : -1);
    g_payload = (struct wd_ep_payload){.kind = dkind};
    g_comb_kind = ckind;
    world_run(&wd, rank_identity_combine);
    for (int r = 0; r < R; r++) {
        WD_EXPECT_MSG(wd.st[r] == WD_OK, "R=%d rank %d: %s", R, r, wd.msg[r]);
        if (wd.st[r] != WD_OK)
            continue;
        int bad = 0, bad_w = 0;
        for (int i = 0; i < wd.n[r]; i++) {
            int ranks = 0;
            for (int j = 0; j < R; j++)
                ranks += token_to_rank(&wd, r, i, j);
            /* Small integers: every sum is exact in f32 and each row exact in bf16. */
            for (int c = 0; c < H; c++) {
                size_t at = (size_t)i * H + c;
                float want = wd.x[r][at] * (float)ranks + wd.bias[r][at] + wd.x2[r][at];
                bad += wd.out[r][at] != want;
            }
            for (int k = 0; k < K; k++) {
                size_t at = (size_t)i * K + k;
                bad_w += wd.out_w[r][at] != (wd.idx[r][at] >= 0 ? wd.w[r][at] : 0.0f);
            }
        }
        WD_EXPECT_MSG(bad == 0, "R=%d rank %d: %d values differ from x * #ranks + bias", R, r, bad);
        WD_EXPECT_MSG(bad_w == 0, "R=%d rank %d: %d weights not returned", R, r, bad_w);
        WD_EXPECT(memcmp(wd.out[r], wd.out2[r], sizeof(float) * (size_t)wd.n[r] * H) == 0);
    }
    world_destroy(&wd);
}

static void test_combine_zero_copy(void)
{
    g_zero_copy = 1;
    for (int R = 1; R <= 4; R++)
        combine_case(R, WD_EP_PAYLOAD_F32, WD_EP_PAYLOAD_F32, 900 + R);
    combine_case(3, WD_EP_PAYLOAD_BF16, WD_EP_PAYLOAD_F32, 77);
    g_zero_copy = 0;
}

static void test_combine_identity(void)
{
    static const int ranks[] = {1, 2, 3, 4, 8};
    for (int q = 0; q < 5; q++) {
        combine_case(ranks[q], WD_EP_PAYLOAD_F32, WD_EP_PAYLOAD_F32, 400 + q);
        combine_case(ranks[q], WD_EP_PAYLOAD_BF16, WD_EP_PAYLOAD_BF16, 500 + q);
    }
}

/* ---- end to end MoE against a dense single-process reference ---- */

struct experts_ctx {
    const float *W;  /* [E, H, H] */
    const float *bv; /* [E, H] */
    int H, first;    /* first = rank * L: global id of local expert 0 */
};

static void expert_ref(const struct experts_ctx *c, int e, const float *x, float *y)
{
    int H = c->H;
    for (int o = 0; o < H; o++) {
        float acc = c->bv[(size_t)e * H + o];
        for (int j = 0; j < H; j++)
            acc += c->W[((size_t)e * H + o) * H + j] * x[j];
        y[o] = acc > 0 ? acc : 0.1f * acc; /* leaky: a nonlinear expert */
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

static float *g_W, *g_bv;

static void rank_moe(int r, void *arg)
{
    struct world *wd = arg;
    struct wd_error err = {0};
    struct wd_ep_moe *m = NULL;
    struct experts_ctx ec = {g_W, g_bv, wd->cfg.hidden, r * (wd->cfg.n_experts / wd->R)};
    struct wd_ep_experts ex = {expert_run, &ec};
    struct wd_ep_moe_args a = {.x = wd->x[r],
                               .n_tokens = wd->n[r],
                               .topk_idx = wd->idx[r],
                               .topk_w = wd->w[r],
                               .dispatch_payload = g_payload,
                               .combine_payload = g_comb_kind};
    wd->st[r] = wd_ep_moe_create(wd->b[r], &m, &err);
    /* Two layers back to back through the same buffer and handle. */
    if (wd->st[r] == WD_OK)
        wd->st[r] = wd_ep_moe_normal(m, wd->b[r], wd->h[r], &a, &ex, wd->out2[r], &err);
    if (wd->st[r] == WD_OK)
        wd->st[r] = wd_ep_moe_normal(m, wd->b[r], wd->h[r], &a, &ex, wd->out[r], &err);
    if (wd->st[r] != WD_OK)
        snprintf(wd->msg[r], sizeof(wd->msg[r]), "%s", err.msg);
    wd_ep_moe_destroy(m);
}

static void moe_case(int R, int E, enum wd_ep_payload_kind dkind, enum wd_ep_payload_kind ckind,
                     double tol, uint64_t seed)
{
    struct world wd;
    int H = 16, K = 4;
    world_create(&wd, R, H, K, E, 30, seed, R > 1 ? R / 2 : -1);
    if (R > 2)
        mask_experts_of_rank(&wd, R - 1);
    uint64_t s = seed * 7 + 1;
    g_W = malloc(sizeof(float) * (size_t)E * H * H);
    g_bv = malloc(sizeof(float) * (size_t)E * H);
    for (size_t q = 0; q < (size_t)E * H * H; q++)
        g_W[q] = ((float)(wd_splitmix64(&s) % 2001) - 1000.0f) / 8000.0f;
    for (size_t q = 0; q < (size_t)E * H; q++)
        g_bv[q] = ((float)(wd_splitmix64(&s) % 201) - 100.0f) / 100.0f;
    g_payload = (struct wd_ep_payload){.kind = dkind};
    g_comb_kind = ckind;
    world_run(&wd, rank_moe);
    struct experts_ctx ec = {g_W, g_bv, H, 0};
    float *y = malloc(sizeof(float) * H);
    double *ref = malloc(sizeof(double) * H);
    for (int r = 0; r < R; r++) {
        WD_EXPECT_MSG(wd.st[r] == WD_OK, "R=%d rank %d: %s", R, r, wd.msg[r]);
        if (wd.st[r] != WD_OK)
            continue;
        double max_err = 0;
        for (int i = 0; i < wd.n[r]; i++) {
            memset(ref, 0, sizeof(double) * H);
            for (int k = 0; k < K; k++) {
                int32_t e = wd.idx[r][(size_t)i * K + k];
                if (e < 0)
                    continue;
                expert_ref(&ec, e, wd.x[r] + (size_t)i * H, y);
                for (int c = 0; c < H; c++)
                    ref[c] += (double)wd.w[r][(size_t)i * K + k] * y[c];
            }
            for (int c = 0; c < H; c++) {
                double d = fabs(wd.out[r][(size_t)i * H + c] - ref[c]) / (1.0 + fabs(ref[c]));
                max_err = d > max_err ? d : max_err;
            }
        }
        WD_EXPECT_MSG(max_err <= tol, "R=%d rank %d: max rel error %g (tol %g)", R, r, max_err,
                      tol);
        WD_EXPECT(memcmp(wd.out[r], wd.out2[r], sizeof(float) * (size_t)wd.n[r] * H) == 0);
    }
    free(y);
    free(ref);
    free(g_W);
    free(g_bv);
    world_destroy(&wd);
}

static void test_moe_end_to_end(void)
{
    static const int ranks[] = {1, 2, 3, 4, 8};
    for (int q = 0; q < 5; q++) {
        int R = ranks[q];
        moe_case(R, R * (q % 3 + 1), WD_EP_PAYLOAD_F32, WD_EP_PAYLOAD_F32, 1e-5, 600 + q);
        moe_case(R, 2 * R, WD_EP_PAYLOAD_BF16, WD_EP_PAYLOAD_BF16, 2e-2, 700 + q);
    }
}

/* ---- two dispatches outstanding (two-batch overlap): D(A) D(B) C(A) C(B) ---- */

static void rank_overlap(int r, void *arg)
{
    struct world *wd = arg;
    struct wd_error err = {0};
    int H = wd->cfg.hidden, n = wd->n[r];
    int h0 = n / 2; /* micro-batch A = tokens [0, h0), B = [h0, n) */
    struct wd_ep_dispatch_args a = {.x = wd->x[r],
                                    .n_tokens = h0,
                                    .topk_idx = wd->idx[r],
                                    .topk_w = wd->w[r],
                                    .payload = g_payload};
    struct wd_ep_dispatch_args bb = {.x = wd->x[r] + (size_t)h0 * H,
                                     .n_tokens = n - h0,
                                     .topk_idx = wd->idx[r] + (size_t)h0 * wd->cfg.top_k,
                                     .topk_w = wd->w[r] + (size_t)h0 * wd->cfg.top_k,
                                     .payload = g_payload};
    struct wd_ep_recv ra, rb;
    float *xa = NULL, *xb = NULL;
    enum wd_status st = wd_ep_dispatch(wd->b[r], &a, wd->h[r], &ra, &err);
    if (st == WD_OK) {
        /* A's views die at the next dispatch: take the rows now, as an engine gathering
         * per expert would. */
        xa = malloc(sizeof(float) * ((size_t)ra.n_recv * H + 1));
        for (int k = 0; k < ra.n_recv; k++)
            wd_ep_payload_decode(&ra.payload, ra.x + (size_t)k * ra.row_bytes, xa + (size_t)k * H);
        st = wd_ep_dispatch(wd->b[r], &bb, wd->h2[r], &rb, &err);
    }
    if (st == WD_OK) {
        xb = malloc(sizeof(float) * ((size_t)rb.n_recv * H + 1));
        for (int k = 0; k < rb.n_recv; k++)
            wd_ep_payload_decode(&rb.payload, rb.x + (size_t)k * rb.row_bytes, xb + (size_t)k * H);
        struct wd_ep_combine_args c = {.x = xa, .payload = WD_EP_PAYLOAD_F32};
        st = wd_ep_combine(wd->b[r], wd->h[r], &c, wd->out[r], NULL, &err);
    }
    if (st == WD_OK) {
        struct wd_ep_combine_args c = {.x = xb, .payload = WD_EP_PAYLOAD_F32};
        st = wd_ep_combine(wd->b[r], wd->h2[r], &c, wd->out[r] + (size_t)h0 * H, NULL, &err);
    }
    wd->st[r] = st;
    if (st != WD_OK)
        snprintf(wd->msg[r], sizeof(wd->msg[r]), "%s", err.msg);
    free(xa);
    free(xb);
}

static void test_two_outstanding_dispatches(void)
{
    for (int R = 2; R <= 4; R++) {
        struct world wd;
        world_create(&wd, R, 8, 2, 2 * R, 16, 800 + R, -1);
        g_payload = (struct wd_ep_payload){.kind = WD_EP_PAYLOAD_F32};
        world_run(&wd, rank_overlap);
        for (int r = 0; r < R; r++) {
            WD_EXPECT_MSG(wd.st[r] == WD_OK, "rank %d: %s", r, wd.msg[r]);
            if (wd.st[r] != WD_OK)
                continue;
            int bad = 0;
            for (int i = 0; i < wd.n[r]; i++) {
                int ranks = 0;
                for (int j = 0; j < R; j++)
                    ranks += token_to_rank(&wd, r, i, j);
                for (int c = 0; c < 8; c++)
                    bad += wd.out[r][(size_t)i * 8 + c] != wd.x[r][(size_t)i * 8 + c] * ranks;
            }
            WD_EXPECT_EQ_INT(bad, 0);
        }
        world_destroy(&wd);
    }
}

/* Views stay valid until this rank's next dispatch even when the other ranks run ahead:
 * rank 1 reads its received rows again after its combine, while the others are already
 * in the next dispatch (they must wait for rank 1's counts before writing its region). */
static void rank_slow_reader(int r, void *arg)
{
    struct world *wd = arg;
    struct wd_error err = {0};
    int H = wd->cfg.hidden;
    struct wd_ep_dispatch_args a = {.x = wd->x[r],
                                    .n_tokens = wd->n[r],
                                    .topk_idx = wd->idx[r],
                                    .topk_w = wd->w[r],
                                    .payload = g_payload};
    struct wd_ep_recv rv;
    uint8_t *copy = NULL;
    float *back = NULL;
    enum wd_status st = wd_ep_dispatch(wd->b[r], &a, wd->h[r], &rv, &err);
    if (st == WD_OK) {
        copy = malloc(rv.row_bytes * (size_t)rv.n_recv + 1);
        memcpy(copy, rv.x, rv.row_bytes * (size_t)rv.n_recv);
        back = malloc(sizeof(float) * ((size_t)rv.n_recv * H + 1));
        for (int k = 0; k < rv.n_recv; k++)
            wd_ep_payload_decode(&rv.payload, rv.x + (size_t)k * rv.row_bytes,
                                 back + (size_t)k * H);
        struct wd_ep_combine_args c = {.x = back, .payload = WD_EP_PAYLOAD_F32};
        st = wd_ep_combine(wd->b[r], wd->h[r], &c, wd->out[r], NULL, &err);
    }
    if (st == WD_OK && r == 1) {
        struct timespec ts = {0, 60 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (memcmp(copy, rv.x, rv.row_bytes * (size_t)rv.n_recv) != 0)
            wd->elapsed_ms[r] = -1; /* overwritten */
    }
    if (st == WD_OK) {
        a.x = wd->x2[r];
        st = wd_ep_dispatch(wd->b[r], &a, wd->h2[r], &wd->rv2[r], &err);
    }
    wd->st[r] = st;
    if (st != WD_OK)
        snprintf(wd->msg[r], sizeof(wd->msg[r]), "%s", err.msg);
    free(copy);
    free(back);
}

static void test_views_survive_fast_peers(void)
{
    struct world wd;
    world_create(&wd, 3, 8, 2, 6, 12, 910, -1);
    g_payload = (struct wd_ep_payload){.kind = WD_EP_PAYLOAD_F32};
    world_run(&wd, rank_slow_reader);
    for (int r = 0; r < 3; r++)
        WD_EXPECT_MSG(wd.st[r] == WD_OK, "rank %d: %s", r, wd.msg[r]);
    WD_EXPECT_MSG(wd.elapsed_ms[1] == 0, "rank 1's received rows changed under it");
    world_destroy(&wd);
}

/* ---- failures: a silent rank, mismatched options, bad arguments ---- */

static void rank_all_but_last(int r, void *arg)
{
    struct world *wd = arg;
    if (r == wd->R - 1)
        return; /* never calls dispatch */
    struct wd_error err = {0};
    struct wd_ep_dispatch_args a = {
        .x = wd->x[r], .n_tokens = wd->n[r], .topk_idx = wd->idx[r], .topk_w = wd->w[r]};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    wd->st[r] = wd_ep_dispatch(wd->b[r], &a, wd->h[r], &wd->rv[r], &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    wd->elapsed_ms[r] = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    snprintf(wd->msg[r], sizeof(wd->msg[r]), "%s", err.msg);
    /* The buffer now refuses further calls instead of hanging or mixing rounds. */
    if (wd_ep_dispatch(wd->b[r], &a, wd->h[r], &wd->rv[r], &err) != WD_ERR_PEER)
        wd->st[r] = -1;
}

static void test_timeout_names_silent_rank(void)
{
    struct world wd;
    world_create(&wd, 3, 8, 2, 6, 8, 900, -1);
    for (int r = 0; r < 3; r++) {
        wd_ep_buffer_destroy(wd.b[r]);
        wd.cfg.timeout_ms = 150;
        WD_EXPECT_EQ_INT(
            wd_ep_buffer_create(&wd.cfg, wd_inproc_group_transport(wd.g, r), &wd.b[r], NULL),
            WD_OK);
    }
    world_run(&wd, rank_all_but_last);
    for (int r = 0; r < 2; r++) {
        WD_EXPECT_EQ_INT(wd.st[r], WD_ERR_TIMEOUT);
        WD_EXPECT_MSG(strstr(wd.msg[r], "rank 2") != NULL, "rank %d message: %s", r, wd.msg[r]);
        WD_EXPECT_MSG(wd.elapsed_ms[r] < 3000, "rank %d took %.0f ms", r, wd.elapsed_ms[r]);
    }
    world_destroy(&wd);
}

static void rank_mismatch(int r, void *arg)
{
    struct world *wd = arg;
    struct wd_error err = {0};
    struct wd_ep_dispatch_args a = {
        .x = wd->x[r], .n_tokens = wd->n[r], .topk_idx = wd->idx[r], .topk_w = wd->w[r]};
    a.payload.kind = r == 1 ? WD_EP_PAYLOAD_BF16 : WD_EP_PAYLOAD_F32;
    wd->st[r] = wd_ep_dispatch(wd->b[r], &a, wd->h[r], &wd->rv[r], &err);
    snprintf(wd->msg[r], sizeof(wd->msg[r]), "%s", err.msg);
}

static void rank_combine_mismatch(int r, void *arg)
{
    struct world *wd = arg;
    struct wd_error err = {0};
    int H = wd->cfg.hidden;
    struct wd_ep_dispatch_args a = {
        .x = wd->x[r], .n_tokens = wd->n[r], .topk_idx = wd->idx[r], .topk_w = wd->w[r]};
    struct wd_ep_recv rv;
    float *back = NULL;
    wd->st[r] = wd_ep_dispatch(wd->b[r], &a, wd->h[r], &rv, &err);
    if (wd->st[r] == WD_OK) {
        back = calloc((size_t)rv.n_recv * H + 1, sizeof(float));
        /* Rank 1 returns weights, the others do not. */
        struct wd_ep_combine_args c = {.x = back, .topk_w = r == 1 ? rv.topk_w : NULL};
        wd->st[r] =
            wd_ep_combine(wd->b[r], wd->h[r], &c, wd->out[r], r == 1 ? wd->out_w[r] : NULL, &err);
    }
    snprintf(wd->msg[r], sizeof(wd->msg[r]), "%s", err.msg);
    free(back);
}

static void test_mismatched_options(void)
{
    struct world wd;
    world_create(&wd, 3, 8, 2, 6, 8, 901, -1);
    world_run(&wd, rank_mismatch);
    for (int r = 0; r < 3; r++)
        WD_EXPECT_MSG(wd.st[r] == WD_ERR_INVALID, "rank %d: %d %s", r, wd.st[r], wd.msg[r]);
    WD_EXPECT_MSG(strstr(wd.msg[0], "rank 1") != NULL, "message: %s", wd.msg[0]);
    world_destroy(&wd);

    world_create(&wd, 3, 8, 2, 6, 8, 902, -1);
    world_run(&wd, rank_combine_mismatch);
    for (int r = 0; r < 3; r++)
        WD_EXPECT_MSG(wd.st[r] == WD_ERR_INVALID, "rank %d: %d %s", r, wd.st[r], wd.msg[r]);
    WD_EXPECT_MSG(strstr(wd.msg[2], "rank 1") != NULL, "message: %s", wd.msg[2]);
    world_destroy(&wd);
}

static void test_bad_arguments(void)
{
    struct world wd;
    world_create(&wd, 1, 8, 2, 4, 8, 902, -1);
    struct wd_error err = {0};
    struct wd_ep_recv rv;
    float x[9 * 8] = {0}, w[18] = {0};
    int32_t idx[18] = {0};
    struct wd_ep_dispatch_args a = {.x = x, .n_tokens = 9, .topk_idx = idx, .topk_w = w};
    WD_EXPECT_EQ_INT(wd_ep_dispatch(wd.b[0], &a, wd.h[0], &rv, &err), WD_ERR_INVALID);
    WD_EXPECT_MSG(strstr(err.msg, "9 tokens") != NULL, "message: %s", err.msg);
    WD_EXPECT_EQ_INT(wd_ep_dispatch(wd.b[0], &a, wd.h[0], &rv, &err), WD_ERR_PEER);
    world_destroy(&wd);

    world_create(&wd, 1, 8, 2, 4, 8, 903, -1);
    a.n_tokens = 2;
    idx[3] = 4;
    WD_EXPECT_EQ_INT(wd_ep_dispatch(wd.b[0], &a, wd.h[0], &rv, &err), WD_ERR_INVALID);
    WD_EXPECT_MSG(strstr(err.msg, "token 1 slot 1") != NULL, "message: %s", err.msg);
    world_destroy(&wd);

    world_create(&wd, 1, 8, 2, 4, 8, 904, -1);
    idx[3] = 0;
    a.payload.kind = WD_EP_PAYLOAD_FP8; /* hidden 8 is not a multiple of 128 */
    WD_EXPECT_EQ_INT(wd_ep_dispatch(wd.b[0], &a, wd.h[0], &rv, &err), WD_ERR_INVALID);
    world_destroy(&wd);

    world_create(&wd, 1, 8, 2, 4, 8, 905, -1);
    struct wd_ep_combine_args c = {.payload = WD_EP_PAYLOAD_F32};
    float out[16];
    /* Combine before any dispatch: the handle is not valid. */
    WD_EXPECT_EQ_INT(wd_ep_combine(wd.b[0], wd.h[0], &c, out, NULL, &err), WD_ERR_INVALID);
    world_destroy(&wd);

    struct wd_ep_config bad = {
        .n_ranks = 3, .hidden = 8, .top_k = 2, .n_experts = 4, .max_tokens = 4};
    WD_EXPECT_EQ_INT(wd_ep_config_check(&bad, &err), WD_ERR_INVALID);
    WD_EXPECT_EQ_INT(wd_ep_window_bytes(&bad), 0);
    bad.n_experts = 6;
    bad.max_tokens = 0;
    WD_EXPECT_EQ_INT(wd_ep_config_check(&bad, &err), WD_ERR_INVALID);
}

/* The window gets smaller with a narrower max_payload, and a wider call is refused. */
static void test_sizing(void)
{
    struct wd_ep_config c = {.n_ranks = 4,
                             .hidden = 256,
                             .top_k = 8,
                             .n_experts = 16,
                             .max_tokens = 64,
                             .ll_max_tokens = 8};
    size_t f32 = wd_ep_window_bytes(&c);
    c.max_payload = WD_EP_PAYLOAD_BF16;
    size_t bf16 = wd_ep_window_bytes(&c);
    c.max_payload = WD_EP_PAYLOAD_FP8;
    size_t fp8 = wd_ep_window_bytes(&c);
    WD_EXPECT(f32 > bf16 && bf16 > fp8 && fp8 > 0);
    /* The receive rows alone: R * N rows of 4H bytes must fit. */
    WD_EXPECT(f32 > (size_t)4 * 64 * 256 * 4);
    c.ll_max_tokens = 0;
    WD_EXPECT(wd_ep_window_bytes(&c) < fp8);

    struct world wd;
    world_create(&wd, 1, 8, 2, 4, 8, 906, -1);
    wd_ep_buffer_destroy(wd.b[0]);
    wd.cfg.max_payload = WD_EP_PAYLOAD_BF16;
    WD_EXPECT_EQ_INT(
        wd_ep_buffer_create(&wd.cfg, wd_inproc_group_transport(wd.g, 0), &wd.b[0], NULL), WD_OK);
    struct wd_error err = {0};
    struct wd_ep_recv rv;
    struct wd_ep_dispatch_args a = {
        .x = wd.x[0], .n_tokens = wd.n[0], .topk_idx = wd.idx[0], .topk_w = wd.w[0]};
    WD_EXPECT_EQ_INT(wd_ep_dispatch(wd.b[0], &a, wd.h[0], &rv, &err), WD_ERR_INVALID);
    WD_EXPECT_MSG(strstr(err.msg, "max_payload") != NULL, "message: %s", err.msg);
    world_destroy(&wd);
}

int main(void)
{
    WD_RUN(test_dispatch_order_and_handle);
    WD_RUN(test_combine_identity);
    WD_RUN(test_combine_zero_copy);
    WD_RUN(test_moe_end_to_end);
    WD_RUN(test_two_outstanding_dispatches);
    WD_RUN(test_views_survive_fast_peers);
    WD_RUN(test_timeout_names_silent_rank);
    WD_RUN(test_mismatched_options);
    WD_RUN(test_bad_arguments);
    WD_RUN(test_sizing);
    return wd_test_finish();
}

/*
 * MoE through EP (ep_moe.h): gather per local expert, run, scatter weighted,
 * combine. An expert failure returns at once; the other ranks then fail their
 * combine by timeout naming this rank, as with any rank that stops.
 */
#include "common/ep/ep_moe.h"

#include <stdlib.h>
#include <string.h>

struct wd_ep_moe {
    int H, K, L;
    size_t rows;     /* rows a gather may hold: max(R * N, R * M) */
    float *in;       /* [rows, H] */
    float *y;        /* [rows, H] */
    float *comb;     /* [R * N, H] normal: weighted partial per received row */
    float **comb_at; /* [R * N] where each received row's partial goes (zero-copy: the
                        source's window; else rows of comb) */
    float *ll_x;     /* [L, R * M, H] LL: expert outputs in the slab layout */
    int32_t *row_of; /* [rows] */
    float *w_of;     /* [rows] */
};

enum wd_status wd_ep_moe_create(const struct wd_ep_buffer *b, struct wd_ep_moe **m_p,
                                struct wd_error *err)
{
    const struct wd_ep_config *c = wd_ep_buffer_config(b);
    size_t R = (size_t)c->n_ranks, H = (size_t)c->hidden, L = (size_t)(c->n_experts / c->n_ranks);
    size_t rn = R * (size_t)c->max_tokens, rm = R * (size_t)c->ll_max_tokens;
    struct wd_ep_moe *m = calloc(1, sizeof(*m));
    if (!m)
        return wd_error_set(err, WD_ERR_NOMEM, "ep moe: no memory");
    m->H = c->hidden;
    m->K = c->top_k;
    m->L = (int)L;
    /* A received row may select several local experts, but each gather is one expert:
     * at most one entry per received row. */
    m->rows = rn > rm ? rn : rm;
    m->in = malloc(sizeof(float) * (m->rows * H + 1));
    m->y = malloc(sizeof(float) * (m->rows * H + 1));
    m->comb = malloc(sizeof(float) * (rn * H + 1));
    m->ll_x = malloc(sizeof(float) * (L * rm * H + 1));
    m->row_of = malloc(sizeof(int32_t) * (m->rows + 1));
    m->comb_at = malloc(sizeof(float *) * (rn + 1));
    m->w_of = malloc(sizeof(float) * (m->rows + 1));
    if (!m->in || !m->y || !m->comb || !m->ll_x || !m->row_of || !m->w_of || !m->comb_at) {
        wd_ep_moe_destroy(m);
        return wd_error_set(err, WD_ERR_NOMEM, "ep moe: no memory for %zu rows", m->rows);
    }
    *m_p = m;
    return WD_OK;
}

void wd_ep_moe_destroy(struct wd_ep_moe *m)
{
    if (!m)
        return;
    free(m->in);
    free(m->y);
    free(m->comb);
    free(m->ll_x);
    free(m->row_of);
    free(m->w_of);
    free(m->comb_at);
    free(m);
}

enum wd_status wd_ep_moe_normal(struct wd_ep_moe *m, struct wd_ep_buffer *b, struct wd_ep_handle *h,
                                const struct wd_ep_moe_args *a, const struct wd_ep_experts *ex,
                                float *out, struct wd_error *err)
{
    struct wd_ep_dispatch_args da = {
        .x = a->x,
        .n_tokens = a->n_tokens,
        .topk_idx = a->topk_idx,
        .topk_w = a->topk_w,
        .payload = a->dispatch_payload,
    };
    struct wd_ep_recv rv;
    WD_CHECK(wd_ep_dispatch(b, &da, h, &rv, err));
    int H = m->H, K = m->K;
    /* Zero-copy combine when the windows are mapped and the combine travels as f32: the
     * weighted expert outputs are summed straight into the source ranks' windows. */
    int in_place = a->combine_payload == WD_EP_PAYLOAD_F32 &&
                   wd_ep_combine_in_place_rows(b, h, m->comb_at, NULL) == WD_OK;
    if (!in_place)
        for (int r = 0; r < rv.n_recv; r++)
            m->comb_at[r] = m->comb + (size_t)r * H;
    for (int r = 0; r < rv.n_recv; r++)
        memset(m->comb_at[r], 0, sizeof(float) * (size_t)H);
    for (int l = 0; l < m->L; l++) {
        int n = 0;
        for (int r = 0; r < rv.n_recv; r++) {
            /* One entry per row; slots naming l twice (routers never do) add weights. */
            float w = 0.0f;
            int hit = 0;
            for (int k = 0; k < K; k++) {
                if (rv.topk_idx[(size_t)r * K + k] == l) {
                    w += rv.topk_w[(size_t)r * K + k];
                    hit = 1;
                }
            }
            if (!hit)
                continue;
            m->row_of[n] = r;
            m->w_of[n] = w;
            wd_ep_payload_decode(&rv.payload, rv.x + (size_t)r * rv.row_bytes,
                                 m->in + (size_t)n * H);
            n++;
        }
        if (n == 0)
            continue;
        WD_CHECK(ex->run(ex->ctx, l, m->in, n, m->y, err));
        for (int q = 0; q < n; q++) {
            float *c = m->comb_at[m->row_of[q]];
            const float *y = m->y + (size_t)q * H;
            for (int j = 0; j < H; j++)
                c[j] += m->w_of[q] * y[j];
        }
    }
    struct wd_ep_combine_args ca = {
        .x = m->comb, .payload = a->combine_payload, .x_in_place = in_place};
    return wd_ep_combine(b, h, &ca, out, NULL, err);
}

enum wd_status wd_ep_moe_ll(struct wd_ep_moe *m, struct wd_ep_buffer *b,
                            const struct wd_ep_moe_args *a, const struct wd_ep_experts *ex,
                            float *out, struct wd_error *err)
{
    struct wd_ep_ll_dispatch_args da = {
        .x = a->x,
        .n_tokens = a->n_tokens,
        .topk_idx = a->topk_idx,
        .payload = a->dispatch_payload,
    };
    struct wd_ep_ll_recv rv;
    WD_CHECK(wd_ep_ll_dispatch(b, &da, &rv, err));
    int H = m->H;
    for (int l = 0; l < m->L; l++) {
        int n = rv.count[l];
        if (n == 0)
            continue;
        for (int j = 0; j < n; j++)
            wd_ep_payload_decode(&rv.payload,
                                 rv.x + ((size_t)l * rv.max_rows + (size_t)j) * rv.row_bytes,
                                 m->in + (size_t)j * H);
        WD_CHECK(ex->run(ex->ctx, l, m->in, n, m->ll_x + (size_t)l * rv.max_rows * H, err));
    }
    struct wd_ep_ll_combine_args ca = {
        .x = m->ll_x,
        .n_tokens = a->n_tokens,
        .topk_idx = a->topk_idx,
        .topk_w = a->topk_w,
        .payload = a->combine_payload,
    };
    return wd_ep_ll_combine(b, &rv, &ca, out, err);
}

/*
 * Normal-mode dispatch and combine over the transport contract (ep_normal.h).
 *
 * dispatch, on every rank:
 *   1. layout (unless given or cached) and the send positions;
 *   2. put a counts message into every rank's slot, signal n_count;
 *   3. wait for every rank's counts: this is also the proof that each rank has
 *      entered this dispatch, so its receive region is free to overwrite;
 *   4. build the prefix matrix, put each destination its rows (runs of
 *      consecutive tokens as one put) at rows P[rank-1][d] + position, then the
 *      metadata, signal n_data;
 *   5. wait for every rank's n_data; the receive region now holds the result.
 * combine puts each source's block of rows back into that source's n_cx block,
 * signals n_comb, waits, and reduces in rank order. Two combines in a row first
 * exchange n_sync, since no dispatch in between proved the peers done reading.
 * Destinations are visited starting after this rank, so ranks do not all write
 * to rank 0 first.
 */
#include "common/ep/ep_normal.h"

#include <stdlib.h>
#include <string.h>

#include "common/ep/ep_internal.h"
#include "common/ep/ep_layout.h"

#define FLAG_CACHED 1
#define FLAG_COMBINE 2
#define FLAG_WEIGHTS 4

static size_t sig_at(size_t base, int s)
{
    return base + 8 * (size_t)s;
}

enum wd_status wd_ep_handle_create(const struct wd_ep_buffer *b, struct wd_ep_handle **h_p,
                                   struct wd_error *err)
{
    if (b->N <= 0)
        return wd_error_set(err, WD_ERR_INVALID,
                            "ep handle: the buffer has no normal mode "
                            "(max_tokens 0)");
    size_t R = (size_t)b->R, N = (size_t)b->N;
    struct wd_ep_handle *h = calloc(1, sizeof(*h));
    if (!h)
        return wd_error_set(err, WD_ERR_NOMEM, "ep handle: no memory");
    h->n_ranks = b->R;
    h->max_tokens = b->N;
    h->top_k = b->K;
    h->rank_prefix = calloc(R * R, sizeof(int32_t));
    h->is_token_in_rank = calloc(N * R, 1);
    h->send_pos = calloc(N * R, sizeof(int32_t));
    h->recv_src_idx = calloc(N * R, sizeof(int32_t));
    if (!h->rank_prefix || !h->is_token_in_rank || !h->send_pos || !h->recv_src_idx) {
        wd_ep_handle_destroy(h);
        return wd_error_set(err, WD_ERR_NOMEM, "ep handle: no memory for %zu tokens", N);
    }
    *h_p = h;
    return WD_OK;
}

void wd_ep_handle_destroy(struct wd_ep_handle *h)
{
    if (!h)
        return;
    free(h->rank_prefix);
    free(h->is_token_in_rank);
    free(h->send_pos);
    free(h->recv_src_idx);
    free(h);
}

/* Everything that can be refused before talking to anyone. */
static enum wd_status dispatch_check(struct wd_ep_buffer *b, const struct wd_ep_dispatch_args *a,
                                     const struct wd_ep_handle *h, struct wd_ep_payload *p,
                                     struct wd_error *err)
{
    if (!a)
        return wd_error_set(err, WD_ERR_INVALID, "no arguments");
    if (b->N <= 0)
        return wd_error_set(err, WD_ERR_INVALID, "the buffer has no normal mode (max_tokens 0)");
    if (!h || h->n_ranks != b->R || h->max_tokens != b->N || h->top_k != b->K)
        return wd_error_set(err, WD_ERR_INVALID, "the handle was not made for this buffer");
    int n = a->n_tokens;
    if (n < 0 || n > b->N)
        return wd_error_set(err, WD_ERR_INVALID, "%d tokens (the buffer takes 0..%d)", n, b->N);
    if (n > 0 && !a->x)
        return wd_error_set(err, WD_ERR_INVALID, "no x for %d tokens", n);
    *p = a->payload;
    p->hidden = b->H;
    WD_CHECK(wd_ep_payload_check(p, err));
    size_t row = wd_ep_payload_row_bytes(p);
    if (row > b->reg.row_bytes)
        return wd_error_set(err, WD_ERR_INVALID,
                            "%s rows take %zu bytes, the buffer holds %zu (raise max_payload)",
                            wd_ep_payload_name(p->kind), row, b->reg.row_bytes);
    if (!a->topk_idx) {
        if (!h->is_valid || h->n_tokens != n)
            return wd_error_set(err, WD_ERR_INVALID,
                                "cached dispatch (no topk_idx) needs the handle of an earlier "
                                "dispatch of the same %d tokens",
                                n);
        return WD_OK;
    }
    if (n > 0 && !a->topk_w)
        return wd_error_set(err, WD_ERR_INVALID, "topk_idx without topk_w");
    int given = !!a->num_tokens_per_rank + !!a->num_tokens_per_expert + !!a->is_token_in_rank;
    if (given != 0 && given != 3)
        return wd_error_set(err, WD_ERR_INVALID, "pass all three layout arrays or none");
    for (int64_t i = 0; i < (int64_t)n * b->K; i++)
        if (a->topk_idx[i] < -1 || a->topk_idx[i] >= b->E)
            return wd_error_set(
                err, WD_ERR_INVALID, "token %lld slot %lld selects expert %d (want -1 or 0..%d)",
                (long long)(i / b->K), (long long)(i % b->K), a->topk_idx[i], b->E - 1);
    return WD_OK;
}

/* Layout and send positions into the handle (tokens_per_rank / _expert into b). */
static enum wd_status dispatch_layout(struct wd_ep_buffer *b, const struct wd_ep_dispatch_args *a,
                                      struct wd_ep_handle *h, struct wd_error *err)
{
    int R = b->R, n = a->n_tokens;
    if (a->num_tokens_per_rank) {
        memcpy(b->tokens_per_rank, a->num_tokens_per_rank, sizeof(int32_t) * (size_t)R);
        memcpy(b->tokens_per_expert, a->num_tokens_per_expert, sizeof(int32_t) * (size_t)b->E);
        memcpy(h->is_token_in_rank, a->is_token_in_rank, (size_t)n * (size_t)R);
    } else {
        WD_CHECK(wd_ep_get_dispatch_layout(a->topk_idx, n, b->K, b->E, R, 1, b->tokens_per_rank,
                                           NULL, b->tokens_per_expert, h->is_token_in_rank, err));
    }
    for (int d = 0; d < R; d++) {
        int32_t pos = 0;
        for (int i = 0; i < n; i++)
            h->send_pos[(size_t)i * R + d] = h->is_token_in_rank[(size_t)i * R + d] ? pos++ : -1;
        if (pos != b->tokens_per_rank[d])
            return wd_error_set(err, WD_ERR_INVALID,
                                "the given layout says %d tokens for rank %d, is_token_in_rank "
                                "says %d",
                                b->tokens_per_rank[d], d, pos);
    }
    return WD_OK;
}

/* Builds the prefix matrix and per-expert totals from the counts in the window. */
static enum wd_status dispatch_prefix(struct wd_ep_buffer *b, struct wd_ep_handle *h, int align,
                                      struct wd_error *err)
{
    int R = b->R, L = b->L;
    size_t msg_ints = EP_HDR_INTS + (size_t)R + (size_t)L;
    const int32_t *slots = (const int32_t *)(const void *)(b->t->window + b->reg.n_counts);
    for (int s = 0; s < R; s++) {
        const int32_t *cnt = slots + (size_t)s * msg_ints + EP_HDR_INTS;
        for (int j = 0; j < R; j++) {
            if (cnt[j] < 0 || cnt[j] > b->N)
                return wd_error_set(err, WD_ERR_PEER,
                                    "rank %d sends %d tokens to rank %d "
                                    "(max %d)",
                                    s, cnt[j], j, b->N);
            h->rank_prefix[s * R + j] = (s ? h->rank_prefix[(s - 1) * R + j] : 0) + cnt[j];
        }
    }
    for (int l = 0; l < L; l++) {
        int64_t sum = 0;
        for (int s = 0; s < R; s++)
            sum += slots[(size_t)s * msg_ints + EP_HDR_INTS + R + l];
        sum = (sum + align - 1) / align * align;
        b->recv_per_expert[l] = (int32_t)sum;
    }
    h->n_recv = h->rank_prefix[(R - 1) * R + b->rank];
    return WD_OK;
}

/* Whether this rank maps every peer's window (shm, in-process executors). */
static int all_mapped(struct wd_transport *t)
{
    for (int d = 0; d < t->n_ranks; d++)
        if (!t->ops->peer_window || !t->ops->peer_window(t, d))
            return 0;
    return 1;
}

#define ROW_BLOCK_BYTES ((size_t)256 << 10) /* dispatch rows copied per block: fits L2 */

/* Rows into every destination's window when all are mapped: block by block, each block
 * encoded once into the first rows of stage_x (f32 rows are read from x), then copied to
 * each destination while it is still in cache. Staging the whole batch first and putting
 * it per destination streams the staged rows from memory once per destination instead:
 * about a third more memory traffic in total (wideep-bench ep). */
static void dispatch_rows_mapped(struct wd_ep_buffer *b, const struct wd_ep_dispatch_args *a,
                                 const struct wd_ep_handle *h, const struct wd_ep_payload *p,
                                 size_t row)
{
    int R = b->R, rank = b->rank, n = a->n_tokens;
    int block = (int)(ROW_BLOCK_BYTES / row) < 1 ? 1 : (int)(ROW_BLOCK_BYTES / row);
    for (int i0 = 0; i0 < n; i0 += block) {
        int i1 = n - i0 > block ? i0 + block : n;
        const uint8_t *src = (const uint8_t *)(a->x + (size_t)i0 * b->H);
        if (p->kind != WD_EP_PAYLOAD_F32) {
            for (int i = i0; i < i1; i++)
                wd_ep_payload_encode(p, a->x + (size_t)i * b->H,
                                     b->stage_x + (size_t)(i - i0) * row);
            src = b->stage_x;
        }
        for (int j = 0; j < R; j++) {
            int d = (rank + 1 + j) % R;
            int32_t base = rank ? h->rank_prefix[(rank - 1) * R + d] : 0;
            uint8_t *dst = (uint8_t *)b->t->ops->peer_window(b->t, d) + b->reg.n_x;
            for (int i = i0; i < i1;) {
                int32_t pos0 = h->send_pos[(size_t)i * R + d];
                if (pos0 < 0) {
                    i++;
                    continue;
                }
                int first = i;
                while (i < i1 && h->send_pos[(size_t)i * R + d] >= 0)
                    i++;
                memcpy(dst + ((size_t)base + (size_t)pos0) * row, src + (size_t)(first - i0) * row,
                       (size_t)(i - first) * row);
            }
        }
    }
}

/* Sends this rank's rows (unless xsrc is NULL: already in place) and metadata (unless
 * cached) to destination d. */
static enum wd_status dispatch_send(struct wd_ep_buffer *b, const struct wd_ep_dispatch_args *a,
                                    const struct wd_ep_handle *h, int d, const uint8_t *xsrc,
                                    size_t row, struct wd_error *err)
{
    int R = b->R, K = b->K, L = b->L, rank = b->rank, n = a->n_tokens;
    struct wd_transport *t = b->t;
    int32_t base = rank ? h->rank_prefix[(rank - 1) * R + d] : 0;
    int32_t cnt = h->rank_prefix[rank * R + d] - base;
    for (int i = 0; xsrc && i < n;) {
        int32_t pos0 = h->send_pos[(size_t)i * R + d];
        if (pos0 < 0) {
            i++;
            continue;
        }
        int i0 = i;
        while (i < n && h->send_pos[(size_t)i * R + d] >= 0)
            i++;
        WD_CHECK(wd_transport_put(t, d, b->reg.n_x + ((size_t)base + (size_t)pos0) * row,
                                  xsrc + (size_t)i0 * row, (size_t)(i - i0) * row, err));
    }
    if (a->topk_idx && cnt > 0) {
        int32_t *src = b->stage_src + (size_t)d * b->N;
        int32_t *idx = b->stage_idx + (size_t)d * b->N * K;
        float *w = b->stage_w + (size_t)d * b->N * K;
        for (int i = 0; i < n; i++) {
            int32_t pos = h->send_pos[(size_t)i * R + d];
            if (pos < 0)
                continue;
            src[pos] = i;
            for (int k = 0; k < K; k++) {
                int32_t e = a->topk_idx[(size_t)i * K + k];
                int mine = e >= d * L && e < (d + 1) * L;
                idx[(size_t)pos * K + k] = mine ? e - d * L : -1;
                w[(size_t)pos * K + k] = mine ? a->topk_w[(size_t)i * K + k] : 0.0f;
            }
        }
        WD_CHECK(
            wd_transport_put(t, d, b->reg.n_src + 4 * (size_t)base, src, 4 * (size_t)cnt, err));
        WD_CHECK(wd_transport_put(t, d, b->reg.n_idx + 4 * (size_t)base * K, idx,
                                  4 * (size_t)cnt * K, err));
        WD_CHECK(
            wd_transport_put(t, d, b->reg.n_w + 4 * (size_t)base * K, w, 4 * (size_t)cnt * K, err));
    }
    return wd_transport_signal(t, d, sig_at(b->reg.sig_n_data, rank), 1, err);
}

static enum wd_status dispatch_impl(struct wd_ep_buffer *b, const struct wd_ep_dispatch_args *a,
                                    struct wd_ep_handle *h, struct wd_ep_recv *out,
                                    struct wd_error *err)
{
    struct wd_ep_payload p;
    WD_CHECK(dispatch_check(b, a, h, &p, err));
    if (!out)
        return wd_error_set(err, WD_ERR_INVALID, "no result struct");
    int R = b->R, L = b->L, rank = b->rank, n = a->n_tokens;
    int cached = a->topk_idx == NULL;
    int align = a->expert_alignment > 1 ? a->expert_alignment : 1;
    size_t row = wd_ep_payload_row_bytes(&p);
    struct wd_transport *t = b->t;
    if (!cached) {
        h->is_valid = 0;
        WD_CHECK(dispatch_layout(b, a, h, err));
    }
    uint64_t round = ++b->n_dispatches;
    b->last_was_combine = 0;

    /* Counts to everyone; everyone's counts here. */
    size_t msg_ints = EP_HDR_INTS + (size_t)R + (size_t)L;
    int32_t want[EP_HDR_INTS];
    ep_header_fill(want, &p, b->K, round, cached ? FLAG_CACHED : 0);
    for (int j = 0; j < R; j++) {
        int d = (rank + 1 + j) % R;
        int32_t *m = b->counts_msg + (size_t)d * msg_ints;
        memcpy(m, want, sizeof(want));
        if (!cached) {
            memcpy(m + EP_HDR_INTS, b->tokens_per_rank, sizeof(int32_t) * (size_t)R);
            memcpy(m + EP_HDR_INTS + R, b->tokens_per_expert + (size_t)d * L,
                   sizeof(int32_t) * (size_t)L);
        }
        size_t len = 4 * (cached ? EP_HDR_INTS : msg_ints);
        WD_CHECK(
            wd_transport_put(t, d, b->reg.n_counts + 4 * (size_t)rank * msg_ints, m, len, err));
        WD_CHECK(wd_transport_signal(t, d, sig_at(b->reg.sig_n_count, rank), 1, err));
    }
    const int32_t *slots = (const int32_t *)(const void *)(t->window + b->reg.n_counts);
    for (int s = 0; s < R; s++) {
        WD_CHECK(wd_transport_wait(t, sig_at(b->reg.sig_n_count, s), round, s, b->timeout_ms, err));
        WD_CHECK(ep_header_check(slots + (size_t)s * msg_ints, want, s, err));
    }
    if (!cached) {
        WD_CHECK(dispatch_prefix(b, h, align, err));
        h->n_tokens = n;
    }

    /* Rows out, encoded once for all destinations. */
    const uint8_t *xsrc = (const uint8_t *)a->x;
    if (all_mapped(t)) {
        dispatch_rows_mapped(b, a, h, &p, row);
        xsrc = NULL; /* in place: dispatch_send adds the metadata and the signal */
    } else if (p.kind != WD_EP_PAYLOAD_F32) {
        for (int i = 0; i < n; i++)
            wd_ep_payload_encode(&p, a->x + (size_t)i * b->H, b->stage_x + (size_t)i * row);
        xsrc = b->stage_x;
    }
    for (int j = 0; j < R; j++)
        WD_CHECK(dispatch_send(b, a, h, (rank + 1 + j) % R, xsrc, row, err));
    for (int s = 0; s < R; s++)
        WD_CHECK(wd_transport_wait(t, sig_at(b->reg.sig_n_data, s), round, s, b->timeout_ms, err));

    const uint8_t *w = t->window;
    if (!cached)
        memcpy(h->recv_src_idx, w + b->reg.n_src, 4 * (size_t)h->n_recv);
    *out = (struct wd_ep_recv){
        .n_recv = h->n_recv,
        .payload = p,
        .row_bytes = row,
        .x = w + b->reg.n_x,
        .topk_idx = cached ? NULL : (const int32_t *)(const void *)(w + b->reg.n_idx),
        .topk_w = cached ? NULL : (const float *)(const void *)(w + b->reg.n_w),
        .src_idx = h->recv_src_idx,
        .num_recv_tokens_per_expert = cached ? NULL : b->recv_per_expert,
    };
    h->is_valid = 1;
    return WD_OK;
}

enum wd_status wd_ep_dispatch(struct wd_ep_buffer *b, const struct wd_ep_dispatch_args *a,
                              struct wd_ep_handle *h, struct wd_ep_recv *out, struct wd_error *err)
{
    struct wd_error local;
    if (!err)
        err = &local;
    WD_CHECK(ep_check_usable(b, "ep normal dispatch", err));
    if (dispatch_impl(b, a, h, out, err) != WD_OK)
        return ep_fail(b, "ep normal dispatch", err);
    return WD_OK;
}

static enum wd_status combine_check(struct wd_ep_buffer *b, const struct wd_ep_handle *h,
                                    const struct wd_ep_combine_args *a, const float *out,
                                    const float *out_topk_w, struct wd_error *err)
{
    if (!a)
        return wd_error_set(err, WD_ERR_INVALID, "no arguments");
    if (b->N <= 0)
        return wd_error_set(err, WD_ERR_INVALID, "the buffer has no normal mode (max_tokens 0)");
    if (!h || h->n_ranks != b->R || h->max_tokens != b->N || h->top_k != b->K || !h->is_valid)
        return wd_error_set(err, WD_ERR_INVALID, "the handle is not a dispatch of this buffer");
    if (a->payload != WD_EP_PAYLOAD_F32 && a->payload != WD_EP_PAYLOAD_BF16)
        return wd_error_set(err, WD_ERR_INVALID, "combine payload %s (f32 or bf16 only)",
                            wd_ep_payload_name(a->payload));
    struct wd_ep_payload p = {.kind = a->payload, .hidden = b->H};
    if (wd_ep_payload_row_bytes(&p) > b->reg.crow_bytes)
        return wd_error_set(err, WD_ERR_INVALID,
                            "f32 combine rows do not fit a buffer sized "
                            "for max_payload below f32");
    if ((h->n_recv > 0 && !a->x && !a->x_in_place) || (h->n_tokens > 0 && !out))
        return wd_error_set(err, WD_ERR_INVALID, "combine without x or out");
    if (a->x_in_place && (a->payload != WD_EP_PAYLOAD_F32 || !all_mapped(b->t)))
        return wd_error_set(err, WD_ERR_INVALID,
                            "zero-copy combine needs an f32 payload and mapped peer windows");
    if (!a->topk_w != !out_topk_w)
        return wd_error_set(err, WD_ERR_INVALID, "topk_w and out_topk_w go together");
    return WD_OK;
}

/* Rows [begin, begin + cnt) of the combine input, encoded straight into mapped rank d's
 * block for this rank: one pass over the rows instead of encoding them into staging and
 * copying that, a third of the memory traffic of a bf16 combine (wideep-bench ep). */
static void combine_rows_mapped(struct wd_ep_buffer *b, const float *x,
                                const struct wd_ep_payload *p, int d, int32_t begin, int32_t cnt)
{
    size_t H = (size_t)b->H, crow = wd_ep_payload_row_bytes(p);
    uint8_t *to = (uint8_t *)b->t->ops->peer_window(b->t, d) + b->reg.n_cx +
                  (size_t)b->rank * (size_t)b->N * crow;
    for (int32_t r = 0; r < cnt; r++)
        wd_ep_payload_encode(p, x + (size_t)(begin + r) * H, to + (size_t)r * crow);
}

enum wd_status wd_ep_combine_in_place_rows(struct wd_ep_buffer *b, const struct wd_ep_handle *h,
                                           float **rows, struct wd_error *err)
{
    if (!all_mapped(b->t))
        return wd_error_set(
            err, WD_ERR_UNSUPPORTED,
            "zero-copy combine needs mapped peer windows (the %s executor has none)",
            b->t->kind ? b->t->kind : "current");
    if (!h || !h->is_valid || b->last_was_combine)
        return wd_error_set(err, WD_ERR_INVALID, "zero-copy combine rows need a fresh dispatch");
    struct wd_ep_payload p = {.kind = WD_EP_PAYLOAD_F32, .hidden = b->H};
    size_t crow = wd_ep_payload_row_bytes(&p);
    if (crow > b->reg.crow_bytes)
        return wd_error_set(err, WD_ERR_INVALID,
                            "f32 combine rows do not fit a buffer sized for max_payload below f32");
    int R = b->R, N = b->N, rank = b->rank;
    for (int d = 0; d < R; d++) {
        int32_t begin = d ? h->rank_prefix[(d - 1) * R + rank] : 0;
        int32_t cnt = h->rank_prefix[d * R + rank] - begin;
        uint8_t *to = (uint8_t *)b->t->ops->peer_window(b->t, d) + b->reg.n_cx +
                      (size_t)rank * (size_t)N * crow;
        for (int32_t r = 0; r < cnt; r++)
            rows[begin + r] = (float *)(void *)(to + (size_t)r * crow);
    }
    return WD_OK;
}

static enum wd_status combine_impl(struct wd_ep_buffer *b, const struct wd_ep_handle *h,
                                   const struct wd_ep_combine_args *a, float *out,
                                   float *out_topk_w, struct wd_error *err)
{
    WD_CHECK(combine_check(b, h, a, out, out_topk_w, err));
    int R = b->R, K = b->K, H = b->H, N = b->N, rank = b->rank;
    struct wd_transport *t = b->t;
    if (b->last_was_combine) {
        /* No dispatch since the last combine: make sure every rank is done reading. */
        uint64_t sround = ++b->n_syncs;
        for (int j = 0; j < R; j++)
            WD_CHECK(wd_transport_signal(t, (rank + 1 + j) % R, sig_at(b->reg.sig_n_sync, rank), 1,
                                         err));
        for (int s = 0; s < R; s++)
            WD_CHECK(
                wd_transport_wait(t, sig_at(b->reg.sig_n_sync, s), sround, s, b->timeout_ms, err));
    }
    uint64_t round = ++b->n_combines;
    b->last_was_combine = 1;
    struct wd_ep_payload p = {.kind = a->payload, .hidden = H};
    size_t crow = wd_ep_payload_row_bytes(&p);
    /* Every rank's header says what it sends, so a rank that passes other options (payload,
     * topk_w or not) fails the call for all instead of being summed as garbage. */
    int32_t want[EP_HDR_INTS];
    ep_header_fill(want, &p, K, round, FLAG_COMBINE | (a->topk_w ? FLAG_WEIGHTS : 0));
    const uint8_t *xsrc = (const uint8_t *)a->x;
    int is_mapped = all_mapped(t); /* then rows go straight into the peers' windows */
    if (p.kind != WD_EP_PAYLOAD_F32 && !is_mapped && !a->x_in_place) {
        for (int r = 0; r < h->n_recv; r++)
            wd_ep_payload_encode(&p, a->x + (size_t)r * H, b->stage_cx + (size_t)r * crow);
        xsrc = b->stage_cx;
    }
    for (int j = 0; j < R; j++) {
        int d = (rank + 1 + j) % R; /* the source rank these rows came from */
        int32_t begin = d ? h->rank_prefix[(d - 1) * R + rank] : 0;
        int32_t cnt = h->rank_prefix[d * R + rank] - begin;
        if (cnt > 0) {
            if (a->x_in_place)
                ; /* the experts wrote the rows into d's window already */
            else if (is_mapped)
                combine_rows_mapped(b, a->x, &p, d, begin, cnt);
            else
                WD_CHECK(wd_transport_put(t, d, b->reg.n_cx + (size_t)rank * N * crow,
                                          xsrc + (size_t)begin * crow, (size_t)cnt * crow, err));
            if (a->topk_w)
                WD_CHECK(wd_transport_put(t, d, b->reg.n_cw + 4 * (size_t)rank * N * K,
                                          a->topk_w + (size_t)begin * K, 4 * (size_t)cnt * K, err));
        }
        WD_CHECK(wd_transport_put(t, d, b->reg.n_chdr + sizeof(want) * (size_t)rank, want,
                                  sizeof(want), err));
        WD_CHECK(wd_transport_signal(t, d, sig_at(b->reg.sig_n_comb, rank), 1, err));
    }
    const int32_t *hdrs = (const int32_t *)(const void *)(t->window + b->reg.n_chdr);
    for (int s = 0; s < R; s++) {
        WD_CHECK(wd_transport_wait(t, sig_at(b->reg.sig_n_comb, s), round, s, b->timeout_ms, err));
        WD_CHECK(ep_header_check(hdrs + (size_t)s * EP_HDR_INTS, want, s, err));
    }

    const uint8_t *cx = t->window + b->reg.n_cx;
    const float *cw = (const float *)(const void *)(t->window + b->reg.n_cw);
    for (int i = 0; i < h->n_tokens; i++) {
        float *o = out + (size_t)i * H;
        int first = 1;
        if (out_topk_w)
            memset(out_topk_w + (size_t)i * K, 0, sizeof(float) * (size_t)K);
        for (int j = 0; j < R; j++) {
            int32_t pos = h->send_pos[(size_t)i * R + j];
            if (pos < 0)
                continue;
            /* The first contribution is decoded straight into the row (0 + x == x exactly),
             * saving a zeroing pass and a read-modify-write of the output. */
            const uint8_t *row = cx + ((size_t)j * N + (size_t)pos) * crow;
            if (first)
                wd_ep_payload_decode(&p, row, o);
            else
                wd_ep_payload_axpy(&p, 1.0f, row, o);
            first = 0;
            if (out_topk_w)
                for (int k = 0; k < K; k++)
                    out_topk_w[(size_t)i * K + k] += cw[((size_t)j * N + (size_t)pos) * K + k];
        }
        if (first) /* no rank sent anything for this token */
            memset(o, 0, sizeof(float) * (size_t)H);
        /* Tested once per row, not per element: without biases this is no pass at all. */
        if (a->bias0)
            for (int c = 0; c < H; c++)
                o[c] += a->bias0[(size_t)i * H + c];
        if (a->bias1)
            for (int c = 0; c < H; c++)
                o[c] += a->bias1[(size_t)i * H + c];
    }
    return WD_OK;
}

enum wd_status wd_ep_combine(struct wd_ep_buffer *b, const struct wd_ep_handle *h,
                             const struct wd_ep_combine_args *a, float *out, float *out_topk_w,
                             struct wd_error *err)
{
    struct wd_error local;
    if (!err)
        err = &local;
    WD_CHECK(ep_check_usable(b, "ep normal combine", err));
    if (combine_impl(b, h, a, out, out_topk_w, err) != WD_OK)
        return ep_fail(b, "ep normal combine", err);
    return WD_OK;
}

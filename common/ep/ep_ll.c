/*
 * Low-latency dispatch and combine over the transport contract (ep_ll.h).
 *
 * Every LL call c starts by signalling ll_enter to all ranks; before the first
 * write into rank r's half c % 2, a sender waits until r's enter count shows it
 * entered call c (r's earlier results on that half are released then). The
 * send phase puts each message straight into its final slab slot, block
 * (expert l, source s) at rows s * M.., then per destination one counts message
 * (header + count per local expert), the token/slot arrays of each non-empty
 * block, and one ll_data signal. The receive phase waits for the sources in
 * rank order and packs each arrived block down in place (memmove) so blocks
 * tile [0, count): a block never moves over a block still being written, since
 * block s lands at or below s * M and ends at or below (s + 1) * M.
 */
#include "common/ep/ep_ll.h"

#include <string.h>
#include <time.h>

#include "common/ep/ep_internal.h"

#define FLAG_DISPATCH 0x10
#define FLAG_COMBINE 0x20

static size_t sig_at(size_t base, int s)
{
    return base + 8 * (size_t)s;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Waits (once per call and rank) until rank r has entered LL call `call`. */
static enum wd_status ensure_entered(struct wd_ep_buffer *b, int r, uint64_t call,
                                     struct wd_error *err)
{
    if (b->ll_enter_seen[r] >= call + 1)
        return WD_OK;
    WD_CHECK(
        wd_transport_wait(b->t, sig_at(b->reg.sig_ll_enter, r), call + 1, r, b->timeout_ms, err));
    b->ll_enter_seen[r] = call + 1;
    return WD_OK;
}

/* Refuses a call that would reuse the half of a call whose receive has not run. */
static enum wd_status check_outstanding(const struct wd_ep_buffer *b, struct wd_error *err)
{
    uint64_t c = b->ll_calls;
    for (int q = 0; q < b->n_pending; q++) {
        const struct ep_ll_pending *p = &b->pending[(b->pending_head + q) % 2];
        if (p->call + 2 <= c)
            return wd_error_set(err, WD_ERR_INVALID,
                                "LL call %llu would reuse the buffer half of call %llu, whose "
                                "receive has not run (call wd_ep_ll_complete first)",
                                (unsigned long long)c, (unsigned long long)p->call);
    }
    return WD_OK;
}

/* Takes the next call number and tells every rank this rank entered it. */
static enum wd_status ll_enter(struct wd_ep_buffer *b, uint64_t *call_p, struct wd_error *err)
{
    uint64_t call = b->ll_calls++;
    for (int j = 0; j < b->R; j++)
        WD_CHECK(wd_transport_signal(b->t, (b->rank + 1 + j) % b->R,
                                     sig_at(b->reg.sig_ll_enter, b->rank), 1, err));
    *call_p = call;
    return WD_OK;
}

static enum wd_status dispatch_check(struct wd_ep_buffer *b, const struct wd_ep_ll_dispatch_args *a,
                                     struct wd_ep_ll_recv *out, struct wd_ep_payload *p,
                                     struct wd_error *err)
{
    if (!a)
        return wd_error_set(err, WD_ERR_INVALID, "no arguments");
    if (b->M <= 0)
        return wd_error_set(err, WD_ERR_INVALID, "the buffer has no LL mode (ll_max_tokens 0)");
    if (a->n_tokens < 0 || a->n_tokens > b->M)
        return wd_error_set(err, WD_ERR_INVALID, "%d tokens (LL takes 0..%d)", a->n_tokens, b->M);
    if (a->n_tokens > 0 && (!a->x || !a->topk_idx))
        return wd_error_set(err, WD_ERR_INVALID, "no x or topk_idx for %d tokens", a->n_tokens);
    if (!out)
        return wd_error_set(err, WD_ERR_INVALID, "no result struct");
    *p = a->payload;
    p->hidden = b->H;
    WD_CHECK(wd_ep_payload_check(p, err));
    size_t row = wd_ep_payload_row_bytes(p);
    if (row > b->reg.row_bytes)
        return wd_error_set(err, WD_ERR_INVALID,
                            "%s rows take %zu bytes, the buffer holds %zu (raise max_payload)",
                            wd_ep_payload_name(p->kind), row, b->reg.row_bytes);
    /* Count messages per expert: ids in range and no expert over its M-row block (only
     * possible when a token names one expert in two slots). */
    memset(b->ll_cnt, 0, sizeof(int32_t) * (size_t)b->E);
    for (int64_t i = 0; i < (int64_t)a->n_tokens * b->K; i++) {
        int32_t e = a->topk_idx[i];
        if (e < -1 || e >= b->E)
            return wd_error_set(err, WD_ERR_INVALID,
                                "token %lld slot %lld selects expert %d (want -1 or 0..%d)",
                                (long long)(i / b->K), (long long)(i % b->K), e, b->E - 1);
        if (e >= 0 && ++b->ll_cnt[e] > b->M)
            return wd_error_set(err, WD_ERR_INVALID,
                                "more than %d messages for expert %d (a token selects it twice)",
                                b->M, e);
    }
    return check_outstanding(b, err);
}

static enum wd_status dispatch_send(struct wd_ep_buffer *b, const struct wd_ep_ll_dispatch_args *a,
                                    const struct wd_ep_payload *p, uint64_t call,
                                    struct wd_error *err)
{
    int R = b->R, L = b->L, K = b->K, M = b->M, rank = b->rank, half = (int)(call & 1);
    struct wd_transport *t = b->t;
    size_t row = wd_ep_payload_row_bytes(p);
    const uint8_t *xsrc = (const uint8_t *)a->x;
    if (p->kind != WD_EP_PAYLOAD_F32) {
        for (int i = 0; i < a->n_tokens; i++)
            wd_ep_payload_encode(p, a->x + (size_t)i * b->H, b->ll_stage_x + (size_t)i * row);
        xsrc = b->ll_stage_x;
    }
    memset(b->ll_cnt, 0, sizeof(int32_t) * (size_t)b->E);
    for (int i = 0; i < a->n_tokens; i++) {
        for (int k = 0; k < K; k++) {
            int32_t e = a->topk_idx[(size_t)i * K + k];
            if (e < 0)
                continue;
            int d = e / L, l = e % L;
            int32_t n = b->ll_cnt[e]++;
            b->ll_stage_src[(size_t)e * M + n] = i;
            b->ll_stage_slot[(size_t)e * M + n] = k;
            WD_CHECK(ensure_entered(b, d, call, err));
            size_t dst = b->reg.ll_x[half] + (((size_t)l * R + rank) * M + (size_t)n) * row;
            WD_CHECK(wd_transport_put(t, d, dst, xsrc + (size_t)i * row, row, err));
        }
    }
    size_t msg_ints = EP_HDR_INTS + (size_t)L;
    for (int j = 0; j < R; j++) {
        int d = (rank + 1 + j) % R;
        WD_CHECK(ensure_entered(b, d, call, err));
        int32_t *msg = b->ll_counts_msg + (size_t)d * msg_ints;
        ep_header_fill(msg, p, K, call, FLAG_DISPATCH);
        memcpy(msg + EP_HDR_INTS, b->ll_cnt + (size_t)d * L, sizeof(int32_t) * (size_t)L);
        WD_CHECK(wd_transport_put(t, d, b->reg.ll_counts[half] + 4 * (size_t)rank * msg_ints, msg,
                                  4 * msg_ints, err));
        for (int l = 0; l < L; l++) {
            int32_t n = b->ll_cnt[(size_t)d * L + l];
            if (n == 0)
                continue;
            size_t e = (size_t)d * L + (size_t)l;
            size_t at = 4 * (((size_t)l * R + rank) * M);
            WD_CHECK(wd_transport_put(t, d, b->reg.ll_src[half] + at, b->ll_stage_src + e * M,
                                      4 * (size_t)n, err));
            WD_CHECK(wd_transport_put(t, d, b->reg.ll_slot[half] + at, b->ll_stage_slot + e * M,
                                      4 * (size_t)n, err));
        }
        WD_CHECK(wd_transport_signal(t, d, sig_at(b->reg.sig_ll_data[half], rank), 1, err));
    }
    return WD_OK;
}

static enum wd_status dispatch_recv(struct wd_ep_buffer *b, const struct ep_ll_pending *pd,
                                    struct wd_error *err)
{
    int R = b->R, L = b->L, M = b->M, half = (int)(pd->call & 1);
    uint64_t target = (pd->call >> 1) + 1;
    struct wd_transport *t = b->t;
    size_t row = wd_ep_payload_row_bytes(&pd->payload), msg_ints = EP_HDR_INTS + (size_t)L;
    int32_t *count = b->ll_count[half];
    int64_t *range = b->ll_range[half];
    uint8_t *x = t->window + b->reg.ll_x[half];
    int32_t *src = (int32_t *)(void *)(t->window + b->reg.ll_src[half]);
    int32_t *slot = (int32_t *)(void *)(t->window + b->reg.ll_slot[half]);
    const int32_t *msgs = (const int32_t *)(const void *)(t->window + b->reg.ll_counts[half]);
    int32_t want[EP_HDR_INTS];
    ep_header_fill(want, &pd->payload, b->K, pd->call, FLAG_DISPATCH);
    memset(count, 0, sizeof(int32_t) * (size_t)L);
    for (int s = 0; s < R; s++) {
        int64_t t0 = pd->wait_recv_cost_ns ? now_ns() : 0;
        WD_CHECK(wd_transport_wait(t, sig_at(b->reg.sig_ll_data[half], s), target, s, b->timeout_ms,
                                   err));
        if (pd->wait_recv_cost_ns)
            pd->wait_recv_cost_ns[s] += now_ns() - t0;
        const int32_t *msg = msgs + (size_t)s * msg_ints;
        WD_CHECK(ep_header_check(msg, want, s, err));
        for (int l = 0; l < L; l++) {
            int32_t n = msg[EP_HDR_INTS + l];
            if (n < 0 || n > M)
                return wd_error_set(err, WD_ERR_PEER,
                                    "rank %d sent %d rows for local expert %d "
                                    "(max %d)",
                                    s, n, l, M);
            int32_t begin = count[l];
            size_t from = (size_t)l * R * M + (size_t)s * M, to = (size_t)l * R * M + begin;
            if (n > 0 && from != to) {
                memmove(x + to * row, x + from * row, (size_t)n * row);
                memmove(src + to, src + from, 4 * (size_t)n);
                memmove(slot + to, slot + from, 4 * (size_t)n);
            }
            range[(size_t)l * R + s] = ((int64_t)begin << 32) | (int64_t)(uint32_t)n;
            count[l] += n;
        }
    }
    if (pd->cumulative_recv_stats)
        for (int l = 0; l < L; l++)
            pd->cumulative_recv_stats[l] += count[l];
    *pd->recv = (struct wd_ep_ll_recv){
        .is_done = 1,
        .n_local_experts = L,
        .max_rows = R * M,
        .payload = pd->payload,
        .row_bytes = row,
        .x = x,
        .scales = pd->payload.kind == WD_EP_PAYLOAD_FP8 ? x + pd->payload.hidden : NULL,
        .count = count,
        .src_info = src,
        .src_slot = slot,
        .layout_range = range,
        .call = pd->call,
        .half = half,
    };
    b->ll_last_dispatch[half] = pd->call + 1;
    return WD_OK;
}

static enum wd_status combine_check(struct wd_ep_buffer *b, const struct wd_ep_ll_recv *h,
                                    const struct wd_ep_ll_combine_args *a, const float *out,
                                    struct wd_error *err)
{
    if (!a)
        return wd_error_set(err, WD_ERR_INVALID, "no arguments");
    if (b->M <= 0)
        return wd_error_set(err, WD_ERR_INVALID, "the buffer has no LL mode (ll_max_tokens 0)");
    if (!h || !h->is_done || h->half < 0 || h->half > 1 ||
        b->ll_last_dispatch[h->half] != h->call + 1)
        return wd_error_set(err, WD_ERR_INVALID,
                            "the LL handle is not a completed dispatch still held by this buffer "
                            "(a later dispatch on the same half overwrote it)");
    if (a->payload != WD_EP_PAYLOAD_F32 && a->payload != WD_EP_PAYLOAD_BF16)
        return wd_error_set(err, WD_ERR_INVALID, "combine payload %s (f32 or bf16 only)",
                            wd_ep_payload_name(a->payload));
    struct wd_ep_payload p = {.kind = a->payload, .hidden = b->H};
    if (wd_ep_payload_row_bytes(&p) > b->reg.crow_bytes)
        return wd_error_set(err, WD_ERR_INVALID,
                            "f32 combine rows do not fit a buffer sized "
                            "for max_payload below f32");
    if (a->n_tokens < 0 || a->n_tokens > b->M)
        return wd_error_set(err, WD_ERR_INVALID, "%d tokens (LL takes 0..%d)", a->n_tokens, b->M);
    if (a->n_tokens > 0 && (!a->topk_idx || !a->topk_w || !out))
        return wd_error_set(err, WD_ERR_INVALID, "combine without topk_idx, topk_w or out");
    int any = 0;
    for (int l = 0; l < b->L; l++)
        any |= h->count[l] > 0;
    if (any && !a->x)
        return wd_error_set(err, WD_ERR_INVALID, "combine without x");
    return check_outstanding(b, err);
}

static enum wd_status combine_send(struct wd_ep_buffer *b, const struct wd_ep_ll_recv *h,
                                   const struct wd_ep_ll_combine_args *a, uint64_t call,
                                   struct wd_error *err)
{
    int R = b->R, L = b->L, K = b->K, M = b->M, H = b->H, rank = b->rank;
    int half = (int)(call & 1);
    size_t rows = (size_t)R * M;
    struct wd_transport *t = b->t;
    struct wd_ep_payload p = {.kind = a->payload, .hidden = H};
    size_t crow = wd_ep_payload_row_bytes(&p);
    for (int l = 0; l < L; l++) {
        for (int s = 0; s < R; s++) {
            int64_t rg = h->layout_range[(size_t)l * R + s];
            int32_t begin = (int32_t)(rg >> 32), n = (int32_t)(rg & 0xffffffff);
            if (n > 0)
                WD_CHECK(ensure_entered(b, s, call, err));
            for (int32_t j = begin; j < begin + n; j++) {
                size_t at = (size_t)l * rows + (size_t)j;
                int32_t i = h->src_info[at], k = h->src_slot[at];
                if (i < 0 || i >= M || k < 0 || k >= K)
                    return wd_error_set(err, WD_ERR_PEER,
                                        "row %d of local expert %d names token "
                                        "%d slot %d of rank %d",
                                        j, l, i, k, s);
                const uint8_t *src = (const uint8_t *)(a->x + at * H);
                if (p.kind != WD_EP_PAYLOAD_F32) {
                    wd_ep_payload_encode(&p, a->x + at * H, b->ll_stage_cx + at * crow);
                    src = b->ll_stage_cx + at * crow;
                }
                WD_CHECK(wd_transport_put(t, s, b->reg.ll_cx[half] + ((size_t)i * K + k) * crow,
                                          src, crow, err));
            }
        }
    }
    size_t msg_ints = EP_HDR_INTS + (size_t)L;
    for (int j = 0; j < R; j++) {
        int d = (rank + 1 + j) % R;
        WD_CHECK(ensure_entered(b, d, call, err));
        int32_t *msg = b->ll_counts_msg + (size_t)d * msg_ints;
        ep_header_fill(msg, &p, K, call, FLAG_COMBINE);
        WD_CHECK(wd_transport_put(t, d, b->reg.ll_counts[half] + 4 * (size_t)rank * msg_ints, msg,
                                  4 * EP_HDR_INTS, err));
        WD_CHECK(wd_transport_signal(t, d, sig_at(b->reg.sig_ll_data[half], rank), 1, err));
    }
    return WD_OK;
}

static enum wd_status combine_recv(struct wd_ep_buffer *b, const struct ep_ll_pending *pd,
                                   struct wd_error *err)
{
    int R = b->R, K = b->K, H = b->H, L = b->L, half = (int)(pd->call & 1);
    uint64_t target = (pd->call >> 1) + 1;
    struct wd_transport *t = b->t;
    size_t crow = wd_ep_payload_row_bytes(&pd->payload), msg_ints = EP_HDR_INTS + (size_t)L;
    const int32_t *msgs = (const int32_t *)(const void *)(t->window + b->reg.ll_counts[half]);
    int32_t want[EP_HDR_INTS];
    ep_header_fill(want, &pd->payload, K, pd->call, FLAG_COMBINE);
    for (int s = 0; s < R; s++) {
        WD_CHECK(wd_transport_wait(t, sig_at(b->reg.sig_ll_data[half], s), target, s, b->timeout_ms,
                                   err));
        WD_CHECK(ep_header_check(msgs + (size_t)s * msg_ints, want, s, err));
    }
    const uint8_t *cx = t->window + b->reg.ll_cx[half];
    for (int i = 0; i < pd->n_tokens; i++) {
        float *o = pd->out + (size_t)i * H;
        memset(o, 0, sizeof(float) * (size_t)H);
        for (int k = 0; k < K; k++) {
            if (pd->topk_idx[(size_t)i * K + k] < 0)
                continue;
            wd_ep_payload_axpy(&pd->payload, pd->topk_w[(size_t)i * K + k],
                               cx + ((size_t)i * K + k) * crow, o);
        }
    }
    return WD_OK;
}

static enum wd_status run_recv(struct wd_ep_buffer *b, const struct ep_ll_pending *pd,
                               struct wd_error *err)
{
    return pd->is_combine ? combine_recv(b, pd, err) : dispatch_recv(b, pd, err);
}

/* Either runs the receive now or queues it for wd_ep_ll_complete. */
static enum wd_status finish_or_queue(struct wd_ep_buffer *b, const struct ep_ll_pending *pd,
                                      int hook, struct wd_error *err)
{
    if (!hook)
        return run_recv(b, pd, err);
    WD_ASSERT(b->n_pending < 2); /* check_outstanding refused a third */
    b->pending[(b->pending_head + b->n_pending) % 2] = *pd;
    b->n_pending++;
    return WD_OK;
}

static enum wd_status ll_dispatch_impl(struct wd_ep_buffer *b,
                                       const struct wd_ep_ll_dispatch_args *a,
                                       struct wd_ep_ll_recv *out, struct wd_error *err)
{
    struct ep_ll_pending pd = {0};
    WD_CHECK(dispatch_check(b, a, out, &pd.payload, err));
    out->is_done = 0;
    WD_CHECK(ll_enter(b, &pd.call, err));
    WD_CHECK(dispatch_send(b, a, &pd.payload, pd.call, err));
    pd.recv = out;
    pd.cumulative_recv_stats = a->cumulative_recv_stats;
    pd.wait_recv_cost_ns = a->wait_recv_cost_ns;
    return finish_or_queue(b, &pd, a->return_recv_hook, err);
}

enum wd_status wd_ep_ll_dispatch(struct wd_ep_buffer *b, const struct wd_ep_ll_dispatch_args *a,
                                 struct wd_ep_ll_recv *out, struct wd_error *err)
{
    struct wd_error local;
    if (!err)
        err = &local;
    WD_CHECK(ep_check_usable(b, "ep ll dispatch", err));
    if (ll_dispatch_impl(b, a, out, err) != WD_OK)
        return ep_fail(b, "ep ll dispatch", err);
    return WD_OK;
}

static enum wd_status ll_combine_impl(struct wd_ep_buffer *b, const struct wd_ep_ll_recv *h,
                                      const struct wd_ep_ll_combine_args *a, float *out,
                                      struct wd_error *err)
{
    WD_CHECK(combine_check(b, h, a, out, err));
    struct ep_ll_pending pd = {.is_combine = 1};
    WD_CHECK(ll_enter(b, &pd.call, err));
    WD_CHECK(combine_send(b, h, a, pd.call, err));
    pd.payload = (struct wd_ep_payload){.kind = a->payload, .hidden = b->H};
    pd.topk_idx = a->topk_idx;
    pd.topk_w = a->topk_w;
    pd.n_tokens = a->n_tokens;
    pd.out = out;
    return finish_or_queue(b, &pd, a->return_recv_hook, err);
}

enum wd_status wd_ep_ll_combine(struct wd_ep_buffer *b, const struct wd_ep_ll_recv *h,
                                const struct wd_ep_ll_combine_args *a, float *out,
                                struct wd_error *err)
{
    struct wd_error local;
    if (!err)
        err = &local;
    WD_CHECK(ep_check_usable(b, "ep ll combine", err));
    if (ll_combine_impl(b, h, a, out, err) != WD_OK)
        return ep_fail(b, "ep ll combine", err);
    return WD_OK;
}

enum wd_status wd_ep_ll_complete(struct wd_ep_buffer *b, struct wd_error *err)
{
    struct wd_error local;
    if (!err)
        err = &local;
    WD_CHECK(ep_check_usable(b, "ep ll complete", err));
    if (b->n_pending == 0)
        return wd_error_set(err, WD_ERR_INVALID, "ep ll complete: no hook-mode call outstanding");
    struct ep_ll_pending pd = b->pending[b->pending_head];
    b->pending_head = (b->pending_head + 1) % 2;
    b->n_pending--;
    if (run_recv(b, &pd, err) != WD_OK)
        return ep_fail(b, pd.is_combine ? "ep ll combine (hook)" : "ep ll dispatch (hook)", err);
    return WD_OK;
}

int wd_ep_ll_n_outstanding(const struct wd_ep_buffer *b)
{
    return b->n_pending;
}

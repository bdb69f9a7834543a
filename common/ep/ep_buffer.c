/*
 * Buffer creation: the window layout of ep_buffer.h computed from the config in
 * one place (the sizing function and the protocols read the same offsets), and
 * the private staging arrays carved from one allocation.
 */
#include "common/ep/ep_buffer.h"

#include <stdlib.h>
#include <string.h>

#include "common/ep/ep_fp8.h"
#include "common/ep/ep_internal.h"

#define EP_ALIGN 64

/* A running size with overflow tracking. */
struct sizer {
    size_t at;
    int overflow;
};

static size_t mul3(struct sizer *s, size_t a, size_t b, size_t c)
{
    size_t ab, abc;
    if (__builtin_mul_overflow(a, b, &ab) || __builtin_mul_overflow(ab, c, &abc)) {
        s->overflow = 1;
        return 0;
    }
    return abc;
}

/* Reserves bytes at the next aligned offset and returns that offset. */
static size_t reserve(struct sizer *s, size_t bytes)
{
    size_t off = (s->at + EP_ALIGN - 1) & ~(size_t)(EP_ALIGN - 1);
    if (off < s->at || __builtin_add_overflow(off, bytes, &s->at))
        s->overflow = 1;
    return off;
}

static size_t row_bytes_of(enum wd_ep_payload_kind kind, int hidden)
{
    struct wd_ep_payload p = {.kind = kind, .hidden = hidden};
    if (kind == WD_EP_PAYLOAD_FP8 && hidden % WD_EP_FP8_GROUP != 0)
        p.kind = WD_EP_PAYLOAD_BF16; /* fp8 impossible for this hidden: size for bf16 */
    return wd_ep_payload_row_bytes(&p);
}

size_t ep_regions_compute(const struct wd_ep_config *cfg, struct ep_regions *reg)
{
    struct sizer s = {0};
    size_t R = (size_t)cfg->n_ranks, L = (size_t)(cfg->n_experts / cfg->n_ranks);
    size_t K = (size_t)cfg->top_k, N = (size_t)cfg->max_tokens, M = (size_t)cfg->ll_max_tokens;
    memset(reg, 0, sizeof(*reg));
    reg->row_bytes = row_bytes_of(cfg->max_payload, cfg->hidden);
    reg->crow_bytes =
        row_bytes_of(cfg->max_payload == WD_EP_PAYLOAD_F32 ? WD_EP_PAYLOAD_F32 : WD_EP_PAYLOAD_BF16,
                     cfg->hidden);
    reg->sig_n_count = reserve(&s, 8 * R);
    reg->sig_n_data = reserve(&s, 8 * R);
    reg->sig_n_comb = reserve(&s, 8 * R);
    reg->sig_n_sync = reserve(&s, 8 * R);
    reg->sig_ll_enter = reserve(&s, 8 * R);
    reg->sig_ll_data[0] = reserve(&s, 8 * R);
    reg->sig_ll_data[1] = reserve(&s, 8 * R);
    if (N > 0) {
        reg->n_counts = reserve(&s, mul3(&s, R, EP_HDR_INTS + R + L, 4));
        reg->n_x = reserve(&s, mul3(&s, R, N, reg->row_bytes));
        reg->n_src = reserve(&s, mul3(&s, R, N, 4));
        reg->n_idx = reserve(&s, mul3(&s, R * N, K, 4));
        reg->n_w = reserve(&s, mul3(&s, R * N, K, 4));
        reg->n_cx = reserve(&s, mul3(&s, R, N, reg->crow_bytes));
        reg->n_cw = reserve(&s, mul3(&s, R * N, K, 4));
        reg->n_chdr = reserve(&s, mul3(&s, R, EP_HDR_INTS, 4));
    }
    if (M > 0) {
        for (int b = 0; b < 2; b++) {
            reg->ll_counts[b] = reserve(&s, mul3(&s, R, EP_HDR_INTS + L, 4));
            reg->ll_src[b] = reserve(&s, mul3(&s, L, R * M, 4));
            reg->ll_slot[b] = reserve(&s, mul3(&s, L, R * M, 4));
            reg->ll_x[b] = reserve(&s, mul3(&s, L * R, M, reg->row_bytes));
            reg->ll_cx[b] = reserve(&s, mul3(&s, M, K, reg->crow_bytes));
        }
    }
    reg->total = reserve(&s, 0);
    return s.overflow ? 0 : reg->total;
}

enum wd_status wd_ep_config_check(const struct wd_ep_config *cfg, struct wd_error *err)
{
    if (cfg->n_ranks < 1 || cfg->hidden < 1 || cfg->top_k < 1 || cfg->n_experts < 1)
        return wd_error_set(err, WD_ERR_INVALID,
                            "ep config: ranks %d, hidden %d, top_k %d, experts %d (each must be "
                            ">= 1)",
                            cfg->n_ranks, cfg->hidden, cfg->top_k, cfg->n_experts);
    if (cfg->n_experts % cfg->n_ranks != 0)
        return wd_error_set(err, WD_ERR_INVALID,
                            "ep config: %d experts do not split evenly over %d ranks",
                            cfg->n_experts, cfg->n_ranks);
    if (cfg->max_tokens < 0 || cfg->ll_max_tokens < 0 ||
        (cfg->max_tokens == 0 && cfg->ll_max_tokens == 0))
        return wd_error_set(err, WD_ERR_INVALID,
                            "ep config: max_tokens %d, ll_max_tokens %d (want one mode > 0)",
                            cfg->max_tokens, cfg->ll_max_tokens);
    if (cfg->max_payload != WD_EP_PAYLOAD_F32 && cfg->max_payload != WD_EP_PAYLOAD_BF16 &&
        cfg->max_payload != WD_EP_PAYLOAD_FP8)
        return wd_error_set(err, WD_ERR_INVALID, "ep config: unknown max_payload %d",
                            (int)cfg->max_payload);
    if (cfg->timeout_ms < 0)
        return wd_error_set(err, WD_ERR_INVALID, "ep config: timeout %d ms", cfg->timeout_ms);
    /* Row indices and counts travel as int32. */
    if ((int64_t)cfg->n_ranks * cfg->max_tokens > INT32_MAX / 2 ||
        (int64_t)cfg->n_ranks * cfg->ll_max_tokens > INT32_MAX / 2)
        return wd_error_set(err, WD_ERR_INVALID, "ep config: ranks x tokens overflow int32");
    struct ep_regions reg;
    if (ep_regions_compute(cfg, &reg) == 0)
        return wd_error_set(err, WD_ERR_INVALID, "ep config: window size overflows");
    return WD_OK;
}

size_t wd_ep_window_bytes(const struct wd_ep_config *cfg)
{
    struct ep_regions reg;
    if (wd_ep_config_check(cfg, NULL) != WD_OK)
        return 0;
    return ep_regions_compute(cfg, &reg);
}

/* Private arrays: sizes first, then one allocation carved in the same order. */
struct carve {
    uint8_t *base;
    struct sizer s;
};

static void *carve(struct carve *c, size_t n, size_t elem)
{
    size_t off = reserve(&c->s, mul3(&c->s, n, elem, 1));
    return c->base ? c->base + off : NULL;
}

static void carve_all(struct wd_ep_buffer *b, struct carve *c)
{
    size_t R = (size_t)b->R, L = (size_t)b->L, K = (size_t)b->K, E = (size_t)b->E;
    size_t N = (size_t)b->N, M = (size_t)b->M, H = (size_t)b->H;
    size_t bf16_row = (2 * H + 3) & ~(size_t)3;
    b->tokens_per_rank = carve(c, R, 4);
    b->tokens_per_expert = carve(c, E, 4);
    b->counts_msg = carve(c, R * (EP_HDR_INTS + R + L), 4);
    b->all_counts = carve(c, R * (EP_HDR_INTS + R + L), 4);
    b->recv_per_expert = carve(c, L, 4);
    b->stage_x = carve(c, N, b->reg.row_bytes);
    b->stage_src = carve(c, R * N, 4);
    b->stage_idx = carve(c, R * N * K, 4);
    b->stage_w = carve(c, R * N * K, 4);
    b->stage_cx = carve(c, R * N, bf16_row);
    b->ll_enter_seen = carve(c, R, 8);
    b->ll_cnt = carve(c, E, 4);
    b->ll_stage_src = carve(c, E * M, 4);
    b->ll_stage_slot = carve(c, E * M, 4);
    b->ll_counts_msg = carve(c, R * (EP_HDR_INTS + L), 4);
    b->ll_stage_x = carve(c, M, b->reg.row_bytes);
    b->ll_stage_cx = carve(c, L * R * M, bf16_row);
    for (int h = 0; h < 2; h++) {
        b->ll_count[h] = carve(c, L, 4);
        b->ll_range[h] = carve(c, L * R, 8);
    }
}

enum wd_status wd_ep_buffer_create(const struct wd_ep_config *cfg, struct wd_transport *t,
                                   struct wd_ep_buffer **b_p, struct wd_error *err)
{
    WD_CHECK(wd_ep_config_check(cfg, err));
    if (!t || t->n_ranks != cfg->n_ranks)
        return wd_error_set(err, WD_ERR_INVALID, "ep buffer: transport has %d ranks, config %d",
                            t ? t->n_ranks : 0, cfg->n_ranks);
    size_t need = wd_ep_window_bytes(cfg);
    if (t->window_bytes < need)
        return wd_error_set(err, WD_ERR_INVALID,
                            "ep buffer: window of %zu bytes, the config needs %zu", t->window_bytes,
                            need);
    struct wd_ep_buffer *b = calloc(1, sizeof(*b));
    if (!b)
        return wd_error_set(err, WD_ERR_NOMEM, "ep buffer: no memory");
    b->cfg = *cfg;
    b->t = t;
    b->rank = t->rank;
    b->R = cfg->n_ranks;
    b->E = cfg->n_experts;
    b->L = cfg->n_experts / cfg->n_ranks;
    b->K = cfg->top_k;
    b->H = cfg->hidden;
    b->N = cfg->max_tokens;
    b->M = cfg->ll_max_tokens;
    b->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : WD_EP_DEFAULT_TIMEOUT_MS;
    ep_regions_compute(cfg, &b->reg);

    struct carve c = {0};
    carve_all(b, &c);
    size_t bytes = reserve(&c.s, 0);
    if (c.s.overflow || !(c.base = calloc(1, bytes ? bytes : 1))) {
        free(b);
        return wd_error_set(err, WD_ERR_NOMEM, "ep buffer: no memory for %zu bytes of staging",
                            bytes);
    }
    c.s = (struct sizer){0};
    carve_all(b, &c);
    b->mem = c.base;
    *b_p = b;
    return WD_OK;
}

void wd_ep_buffer_destroy(struct wd_ep_buffer *b)
{
    if (!b)
        return;
    free(b->mem);
    free(b);
}

const struct wd_ep_config *wd_ep_buffer_config(const struct wd_ep_buffer *b)
{
    return &b->cfg;
}

int wd_ep_buffer_rank(const struct wd_ep_buffer *b)
{
    return b->rank;
}

int wd_ep_buffer_n_local_experts(const struct wd_ep_buffer *b)
{
    return b->L;
}

enum wd_status ep_check_usable(const struct wd_ep_buffer *b, const char *op, struct wd_error *err)
{
    if (b->broken)
        return wd_error_set(err, WD_ERR_PEER,
                            "%s: ep buffer unusable after an earlier failure "
                            "(%s)",
                            op, b->broken_msg);
    return WD_OK;
}

enum wd_status ep_fail(struct wd_ep_buffer *b, const char *op, struct wd_error *err)
{
    wd_error_prefix(err, "%s (rank %d)", op, b->rank);
    if (!b->broken) {
        b->broken = 1;
        snprintf(b->broken_msg, sizeof(b->broken_msg), "%s", err->msg);
    }
    return err->status;
}

void ep_header_fill(int32_t *hdr, const struct wd_ep_payload *p, int top_k, uint64_t round,
                    int flags)
{
    hdr[EP_HDR_KIND] = (int32_t)p->kind | (p->round_scale ? 0x100 : 0) | (p->use_ue8m0 ? 0x200 : 0);
    hdr[EP_HDR_TOPK] = top_k;
    hdr[EP_HDR_ROUND] = (int32_t)(uint32_t)round;
    hdr[EP_HDR_FLAGS] = flags;
}

enum wd_status ep_header_check(const int32_t *got, const int32_t *want, int src,
                               struct wd_error *err)
{
    if (got[EP_HDR_ROUND] != want[EP_HDR_ROUND])
        return wd_error_set(err, WD_ERR_PEER,
                            "rank %d is at round %d, this rank at %d (the ranks called different "
                            "sequences of operations)",
                            src, got[EP_HDR_ROUND], want[EP_HDR_ROUND]);
    if (got[EP_HDR_KIND] != want[EP_HDR_KIND] || got[EP_HDR_TOPK] != want[EP_HDR_TOPK] ||
        got[EP_HDR_FLAGS] != want[EP_HDR_FLAGS])
        return wd_error_set(err, WD_ERR_INVALID,
                            "rank %d sent payload 0x%x top_k %d flags 0x%x, this rank expects "
                            "0x%x, %d, 0x%x (all ranks must pass the same options)",
                            src, got[EP_HDR_KIND], got[EP_HDR_TOPK], got[EP_HDR_FLAGS],
                            want[EP_HDR_KIND], want[EP_HDR_TOPK], want[EP_HDR_FLAGS]);
    return WD_OK;
}

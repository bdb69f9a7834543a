/*
 * Low-latency (LL) dispatch and combine, DeepEP V1 semantics (SPEC-EP 5 and
 * 6), for decode-sized batches: fixed-size buffers, no layout pass, no count
 * exchange before the data.
 *
 * dispatch: every valid (token, slot) pair is one message to the rank holding
 * the expert (no dedup: a token with two experts on a rank goes there twice).
 * On the receiving rank each local expert l has a slab of R * M rows; the rows
 * from source s form one contiguous block [begin, begin + count) and the blocks
 * tile [0, count[l]). layout_range[l][s] packs (begin << 32) | count. Blocks are
 * in source-rank order and rows inside a block in (token, slot) order on the
 * source: deterministic here, though DeepEP only promises set equality per
 * (expert, source). src_info gives each row's token index on its source and
 * src_slot its top-k slot.
 *
 * combine: each expert rank sends every row it received back to its source,
 * into the slot (token, k) the row came from; the source then computes
 * out[i] = sum over k with topk_idx[i][k] >= 0 of topk_w[i][k] * row(i, k), in fp32,
 * in slot order: the weights are applied here, by the source, as in DeepEP.
 *
 * Double buffering: LL call number c (dispatches and combines counted together)
 * uses window half c % 2. A dispatch result lives in its half and stays valid
 * until this rank starts its next dispatch on the same half: with dispatch,
 * combine, dispatch, ... that is the next dispatch; with two micro-batches
 * (dispatch A, dispatch B, combine A, combine B) both results are held at once
 * and each lives until its micro-batch's next dispatch. wd_ep_ll_combine refuses
 * a handle that was overwritten. Before writing into rank r's half, a sender
 * waits for r's "entered call c" signal, which is what makes the overwrite
 * safe: r entering call c is what releases the results c overwrites, so a fast
 * rank never writes over a slow rank's held result.
 *
 * Hook mode (return_recv_hook): the call does only the send phase and returns
 * (out is not filled yet); wd_ep_ll_complete runs the receive phase of the
 * oldest outstanding call (waits for the counts, packs, or reduces). Hooked
 * receives complete in call order, and a new call is refused while the call two
 * before it still waits for its receive (its half is about to be reused).
 *
 * Deviations from DeepEP: fp32 activations (payload f32, bf16 or fp8 on the
 * wire); combine payload f32 or bf16 (no LogFMT); no zero-copy combine (the
 * send reads the caller's rows directly, there is no extra copy to save); FP8
 * scales are stored row-major beside each row's e4m3 bytes instead of
 * column-major for TMA; hidden need only be a multiple of 128 for FP8 (UE8M0
 * pads the last word); no shrink/mask mode (a dead peer fails the call);
 * one count word per (source, half) instead of per (expert, source).
 */
#ifndef WD_EP_LL_H
#define WD_EP_LL_H

#include <stdint.h>

#include "common/ep/ep_buffer.h"
#include "common/ep/ep_payload.h"
#include "common/util/status.h"

struct wd_ep_ll_dispatch_args {
    const float *x;                 /* [n_tokens, hidden] f32 */
    int n_tokens;                   /* 0..ll_max_tokens */
    const int32_t *topk_idx;        /* [n_tokens, top_k] global expert ids, -1 = none */
    struct wd_ep_payload payload;   /* .hidden is set from the config */
    int32_t *cumulative_recv_stats; /* [L] or NULL: += rows received per local expert */
    int64_t *wait_recv_cost_ns;     /* [R] or NULL: += ns spent waiting for each source */
    int return_recv_hook;           /* send phase only; wd_ep_ll_complete finishes */
};

/* Result of an LL dispatch, and the handle its combine needs. Every pointer is a
 * view into this rank's buffer (valid as described above). Row j of local expert
 * l is at x + (l * max_rows + j) * row_bytes. */
struct wd_ep_ll_recv {
    int is_done;                  /* the receive phase has run */
    int n_local_experts;          /* L */
    int max_rows;                 /* R * M rows per expert slab */
    struct wd_ep_payload payload; /* decode with wd_ep_payload_decode */
    size_t row_bytes;
    const uint8_t *x; /* [L, R * M] encoded rows */
    /* FP8 only: the scales of row (l, j) start hidden bytes into the row: [hidden / 128]
     * f32 scale_inv, or packed UE8M0 uint32 words; NULL otherwise. Same strides as x. */
    const uint8_t *scales;
    const int32_t *count;        /* [L] valid rows per expert (packed_recv_count) */
    const int32_t *src_info;     /* [L, R * M] token index on the source rank */
    const int32_t *src_slot;     /* [L, R * M] top-k slot on the source rank */
    const int64_t *layout_range; /* [L, R] (begin << 32) | count per (expert, source) */
    uint64_t call;               /* LL call number that produced it */
    int half;
};

/*
 * LL dispatch; collective (every rank calls it, same payload options). out is filled
 * when the receive phase runs: at once, or by wd_ep_ll_complete in hook mode (out must
 * stay alive until then). Errors: WD_ERR_INVALID (n_tokens over ll_max_tokens, bad ids,
 * payload wider than the buffer, two calls already outstanding), WD_ERR_TIMEOUT /
 * WD_ERR_PEER naming the rank that did not signal; any failure makes the buffer
 * unusable.
 */
enum wd_status wd_ep_ll_dispatch(struct wd_ep_buffer *b, const struct wd_ep_ll_dispatch_args *a,
                                 struct wd_ep_ll_recv *out, struct wd_error *err);

struct wd_ep_ll_combine_args {
    /* [L, R * M, hidden] f32: expert outputs in the dispatch's layout; rows
     * [0, count[l]) of each expert are read. */
    const float *x;
    int n_tokens;                    /* this rank's tokens of the dispatch */
    const int32_t *topk_idx;         /* [n_tokens, top_k] the same routing as the dispatch */
    const float *topk_w;             /* [n_tokens, top_k] f32 */
    enum wd_ep_payload_kind payload; /* F32 or BF16 on the wire */
    int return_recv_hook;
};

/*
 * LL combine; collective. h is this rank's result of the matching dispatch (complete
 * and not yet overwritten). out: [n_tokens, hidden] f32, filled by the receive phase
 * (at once or by wd_ep_ll_complete); tokens with no valid slot get zeros.
 */
enum wd_status wd_ep_ll_combine(struct wd_ep_buffer *b, const struct wd_ep_ll_recv *h,
                                const struct wd_ep_ll_combine_args *a, float *out,
                                struct wd_error *err);

/* The recv hook: runs the receive phase of the oldest outstanding hook-mode call.
 * WD_ERR_INVALID when none is outstanding. */
enum wd_status wd_ep_ll_complete(struct wd_ep_buffer *b, struct wd_error *err);

/* Calls whose receive phase is outstanding (0..2). */
int wd_ep_ll_n_outstanding(const struct wd_ep_buffer *b);

#endif

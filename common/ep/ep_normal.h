/*
 * Normal (high-throughput) dispatch and combine, DeepEP V1 semantics
 * (SPEC-EP sections 3 and 4), for prefill-sized batches.
 *
 * dispatch: every token goes once to each rank that holds at least one of its
 * experts (deduplicated per rank). Rank r receives its rows ordered by (source
 * rank, source token): source s occupies rows [P[s-1][r], P[s][r]) where P is
 * the inclusive prefix matrix over source ranks of the per-rank token counts
 * (handle->rank_prefix), inside which tokens keep their order on s. Each row comes
 * with the sender's top-k ids rewritten to local ids (e - r * L, -1 for experts
 * of other ranks), its weights zeroed where the id is -1, and its source token
 * index. The rows are NOT grouped by expert: the caller gathers them per local
 * expert (ep_moe.h does). The "CPU sync" is the count exchange at the start:
 * every rank sends its per-rank and per-expert counts to every rank and waits
 * for all of them (timeout naming the rank whose counts did not come).
 *
 * combine: the inverse. Each rank passes, for every row it received and in the
 * same order, the already-weighted sum of its local experts' outputs for that row;
 * each source rank sums, per original token, the rows that come back from the
 * ranks it was sent to, in ascending rank order, in fp32 (no weights: the
 * receiving ranks applied them), then adds the optional bias once.
 *
 * Results are views into this rank's window: valid until this rank's next
 * normal dispatch on the buffer (every other rank waits until it has entered
 * that dispatch before writing there). Copy them out to keep them longer, e.g.
 * for two-batch overlap.
 *
 * Deviations from DeepEP: activations and combine output are fp32 (the CPU
 * engine's dtype) and the wire carries f32, bf16 or fp8 rows (ep_payload.h; fp8
 * is quantized by dispatch itself rather than passed in pre-quantized); one flat
 * hop (no NVLink/RDMA two-level forwarding: the transport reaches every rank);
 * worst-case receive regions instead of chunked ring buffers; DeepEP's num_worst_tokens
 * option is left out (the count exchange is cheap and the receive rows are
 * views anyway); topk ids are int32 as the router produces them.
 */
#ifndef WD_EP_NORMAL_H
#define WD_EP_NORMAL_H

#include <stdint.h>

#include "common/ep/ep_buffer.h"
#include "common/ep/ep_payload.h"
#include "common/util/status.h"

/* What combine (and a cached dispatch) needs of a dispatch: DeepEP's handle. Owned by
 * the caller; one handle per outstanding dispatch (two for two-batch overlap). */
struct wd_ep_handle {
    int n_ranks, max_tokens, top_k;
    int is_valid;              /* filled by a successful dispatch */
    int n_tokens;              /* tokens this rank dispatched */
    int n_recv;                /* rows this rank received = rank_prefix[R-1][rank] */
    int32_t *rank_prefix;      /* [R, R] P[i][j] = sum over i' <= i of tokens i' sent to j */
    uint8_t *is_token_in_rank; /* [n_tokens, R] sender side routing */
    int32_t *send_pos;         /* [n_tokens, R] row of token i in the block it was sent
                                 * to rank j (its offset after P[rank-1][j]), -1 if not sent */
    int32_t *recv_src_idx;     /* [n_recv] source token index of each received row */
};

/* Allocates a handle sized for b's config. */
enum wd_status wd_ep_handle_create(const struct wd_ep_buffer *b, struct wd_ep_handle **h_p,
                                   struct wd_error *err);
void wd_ep_handle_destroy(struct wd_ep_handle *h); /* NULL-safe */

struct wd_ep_dispatch_args {
    const float *x; /* [n_tokens, hidden] f32 */
    int n_tokens;   /* 0..max_tokens; may differ between ranks */
    /* [n_tokens, top_k] global expert ids, -1 = none. NULL = cached dispatch: reuse the
     * routing of the handle passed in (same n_tokens), send rows only. */
    const int32_t *topk_idx;
    const float *topk_w; /* [n_tokens, top_k] f32; required with topk_idx */
    /* Optional, all three or none: the layout of these topk_idx from
     * wd_ep_get_dispatch_layout ([R], [E], [n_tokens, R]); computed here when NULL. */
    const int32_t *num_tokens_per_rank;
    const int32_t *num_tokens_per_expert;
    const uint8_t *is_token_in_rank;
    struct wd_ep_payload payload; /* wire encoding of x rows; .hidden is set from the config */
    int expert_alignment;         /* round each local expert's count up to this; 0 or 1 = none */
};

/* The received rows, views into this rank's window (see the validity rule above). */
struct wd_ep_recv {
    int n_recv;
    struct wd_ep_payload payload; /* how to decode x (wd_ep_payload_decode) */
    size_t row_bytes;
    const uint8_t *x;        /* [n_recv] rows of row_bytes, encoded */
    const int32_t *topk_idx; /* [n_recv, top_k] local expert ids or -1; NULL if cached */
    const float *topk_w;     /* [n_recv, top_k] 0 where topk_idx is -1; NULL if cached */
    const int32_t *src_idx;  /* [n_recv] source token index (the handle's copy) */
    /* [L] received (row, slot) pairs per local expert, rounded up to expert_alignment;
     * NULL after a cached dispatch. */
    const int32_t *num_recv_tokens_per_expert;
};

/*
 * Dispatches this rank's tokens; collective: every rank of the group calls it with the
 * same payload options (checked: a mismatch fails all ranks naming the one that
 * differs). Fills h (for combine / cached dispatch) and out. Errors: WD_ERR_INVALID for
 * bad arguments (n_tokens over max_tokens, ids out of range, payload wider than the
 * config allows), WD_ERR_TIMEOUT / WD_ERR_PEER naming the rank that did not signal.
 * Any failure makes the buffer unusable (the other ranks fail too, by timeout).
 */
enum wd_status wd_ep_dispatch(struct wd_ep_buffer *b, const struct wd_ep_dispatch_args *a,
                              struct wd_ep_handle *h, struct wd_ep_recv *out, struct wd_error *err);

struct wd_ep_combine_args {
    /* [n_recv, hidden] f32 in the dispatch's receive order: per row, the sum over this
     * rank's experts of weight * expert output (weights from the dispatch's recv topk_w). */
    const float *x;
    /* [n_recv, top_k] f32 or NULL: summed back like x into out_topk_w (DeepEP's
     * combined_topk_weights; passing the dispatch's recv topk_w returns the originals). */
    const float *topk_w;
    const float *bias0;              /* [n_tokens, hidden] f32 or NULL, added once per token */
    const float *bias1;              /* [n_tokens, hidden] f32 or NULL */
    enum wd_ep_payload_kind payload; /* F32 or BF16 on the wire */
    /* Zero-copy: the rows are already in place (written through the pointers from
     * wd_ep_combine_in_place_rows); x is ignored and nothing is copied to send them. */
    int x_in_place;
};

/*
 * Zero-copy combine (DeepEP's zero_copy): rows[r] ([n_recv] pointers, each [hidden] f32) is
 * where combine places received row r's result in its source rank's window, so the experts
 * can write their weighted outputs there directly and combine skips the sending pass. Only
 * when every peer's window is mapped (shm) and with an F32 combine payload; the pointers are
 * valid from this rank's dispatch until its combine (pass x_in_place = 1). Peers only read
 * those rows after that combine's signal, and write them only after this rank's next
 * dispatch, so nothing races. WD_ERR_UNSUPPORTED on an executor without mapped windows.
 */
enum wd_status wd_ep_combine_in_place_rows(struct wd_ep_buffer *b, const struct wd_ep_handle *h,
                                           float **rows, struct wd_error *err);

/*
 * Combines; collective, with the handle of this rank's matching dispatch. out:
 * [n_tokens, hidden] f32, out[i] = sum over ranks j (ascending) that token i went to of
 * the row j returned, then + bias0[i] + bias1[i]; tokens sent nowhere get the bias
 * (zeros without). out_topk_w: [n_tokens, top_k] f32, required iff args->topk_w.
 * Every rank passes topk_w or none does, with the same payload (checked). Errors as
 * dispatch.
 */
enum wd_status wd_ep_combine(struct wd_ep_buffer *b, const struct wd_ep_handle *h,
                             const struct wd_ep_combine_args *a, float *out, float *out_topk_w,
                             struct wd_error *err);

#endif

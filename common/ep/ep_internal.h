/*
 * Private to common/ep: the buffer's fields, the window offsets of the regions
 * listed in ep_buffer.h, and the helpers the normal and LL protocols share.
 */
#ifndef WD_EP_INTERNAL_H
#define WD_EP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/ep/ep_buffer.h"

struct wd_ep_ll_recv;

/* Counts messages start with this header: a mismatch means the ranks called
 * different operations or disagree on the payload. */
#define EP_HDR_INTS 4
enum { EP_HDR_KIND = 0, EP_HDR_TOPK, EP_HDR_ROUND, EP_HDR_FLAGS };

/* Byte offsets into the window (see ep_buffer.h for what each holds). */
struct ep_regions {
    size_t sig_n_count, sig_n_data, sig_n_comb, sig_n_sync, sig_ll_enter, sig_ll_data[2];
    size_t n_counts, n_x, n_src, n_idx, n_w, n_cx, n_cw, n_chdr;
    size_t ll_counts[2], ll_src[2], ll_slot[2], ll_x[2], ll_cx[2];
    size_t row_bytes;  /* widest encoded dispatch row */
    size_t crow_bytes; /* widest encoded combine row */
    size_t total;
};

/* An LL call whose receive phase has not run yet (return_recv_hook). */
struct ep_ll_pending {
    int is_combine;
    uint64_t call;
    struct wd_ep_payload payload;
    /* dispatch */
    struct wd_ep_ll_recv *recv;
    int32_t *cumulative_recv_stats;
    int64_t *wait_recv_cost_ns;
    /* combine */
    const int32_t *topk_idx;
    const float *topk_w;
    int n_tokens;
    float *out;
};

struct wd_ep_buffer {
    struct wd_ep_config cfg;
    struct wd_transport *t;
    struct ep_regions reg;
    int rank, R, L, K, H, E, N, M;
    int timeout_ms;
    int broken;
    char broken_msg[WD_ERROR_LEN];
    void *mem; /* every private array below is carved from this one block */

    /* normal mode */
    uint64_t n_dispatches, n_combines, n_syncs;
    int last_was_combine;
    int32_t *tokens_per_rank;   /* [R] this rank's layout, when not given */
    int32_t *tokens_per_expert; /* [E] */
    int32_t *counts_msg;        /* [R][4 + R + L] one message per destination */
    int32_t *all_counts;        /* [R][4 + R + L] what every source sent here */
    uint8_t *stage_x;           /* [N][row] encoded rows (non-f32 payloads) */
    int32_t *stage_src;         /* [R][N] per destination: source token ids */
    int32_t *stage_idx;         /* [R][N][K] per destination: rewritten top-k ids */
    float *stage_w;             /* [R][N][K] per destination: masked weights */
    uint8_t *stage_cx;          /* [R * N][2H] combine rows encoded as bf16 */
    int32_t *recv_per_expert;   /* [L] */

    /* low-latency mode */
    uint64_t ll_calls;
    uint64_t *ll_enter_seen;      /* [R] highest enter value seen from each rank */
    int32_t *ll_cnt;              /* [E] messages this call sends to each expert */
    int32_t *ll_stage_src;        /* [E][M] token of each message, per expert */
    int32_t *ll_stage_slot;       /* [E][M] top-k slot of each message */
    int32_t *ll_counts_msg;       /* [R][4 + L] */
    uint8_t *ll_stage_x;          /* [M][row] encoded rows */
    uint8_t *ll_stage_cx;         /* [L][R * M][2H] combine rows encoded as bf16 */
    int32_t *ll_count[2];         /* per half [L] */
    int64_t *ll_range[2];         /* per half [L][R] */
    uint64_t ll_last_dispatch[2]; /* per half: 1 + call number of its last dispatch, 0 none */
    struct ep_ll_pending pending[2];
    int n_pending, pending_head;
};

/* Fills the offsets for cfg; 0 when a size overflows. */
size_t ep_regions_compute(const struct wd_ep_config *cfg, struct ep_regions *reg);

/* Common entry check: WD_ERR_PEER when an earlier call failed. */
enum wd_status ep_check_usable(const struct wd_ep_buffer *b, const char *op, struct wd_error *err);

/* Records a failure of a collective call: prefixes err with op, marks the buffer
 * unusable, returns the status. */
enum wd_status ep_fail(struct wd_ep_buffer *b, const char *op, struct wd_error *err);

/* Writes the 4-int header of a counts message. */
void ep_header_fill(int32_t *hdr, const struct wd_ep_payload *p, int top_k, uint64_t round,
                    int flags);

/* Checks a received header against the one this rank would send; WD_ERR_INVALID
 * naming the source rank and the disagreement. */
enum wd_status ep_header_check(const int32_t *got, const int32_t *want, int src,
                               struct wd_error *err);

#endif

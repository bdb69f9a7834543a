/*
 * wd_ep_buffer: one rank's side of DeepEP-semantics expert-parallel
 * dispatch/combine (SPEC-EP), written once against the transport contract
 * (common/comm/transport.h) so the in-process, shm and UCX executors all run the
 * same protocol over the same window layout.
 *
 * The config fixes the sizes; wd_ep_window_bytes says how large the symmetric
 * window of every rank must be, and the caller creates the transport with at
 * least that. Normal mode (ep_normal.h) and low-latency mode (ep_ll.h) use
 * disjoint regions and signal words of the same window, so one buffer serves
 * both (SGLang's deepep-mode auto) with no cleaning between them.
 *
 * Window layout (each region starts 64-byte aligned; R ranks, L = E / R local
 * experts, K top-k, N = max_tokens, M = ll_max_tokens, row = the widest encoded
 * row max_payload allows: 4H for f32, 2H for bf16, H + 4 * H / 128 for fp8;
 * crow = the combine row: 4H, or 2H when max_payload is narrower than f32):
 *   signals (u64, each only grows; a wait targets the count of rounds so far):
 *     n_count[R]  normal dispatch: counts from rank s landed (one per dispatch)
 *     n_data[R]   normal dispatch: rows and metadata from rank s landed
 *     n_comb[R]   normal combine: partial results from rank s landed
 *     n_sync[R]   normal: rank s entered a combine that follows a combine
 *     ll_enter[R] LL: rank s entered its LL call number c (value c + 1)
 *     ll_data[2][R] LL half b: rank s's messages (and counts) for the call landed
 *   normal region (N > 0):
 *     n_counts [R][4 + R + L] i32  from each source: header, its num_tokens_per_rank,
 *                                  its num_tokens_per_expert for this rank's experts
 *     n_x      [R * N][row]        received rows in (source rank, source token) order
 *     n_src    [R * N] i32         source token index of each received row
 *     n_idx    [R * N][K] i32      top-k ids rewritten to local ids, -1 elsewhere
 *     n_w      [R * N][K] f32      top-k weights, 0 where the id is -1
 *     n_cx     [R][N][crow]        combine: partial rows back from each expert rank
 *     n_cw     [R][N][K] f32       combine: top-k weights back from each rank
 *     n_chdr   [R][4] i32          combine: each rank's header (round, payload, flags)
 *   LL region (M > 0), two identical halves b = 0, 1 (LL call c uses half c % 2):
 *     ll_counts [R][4 + L] i32     from each source: header, tokens per local expert
 *     ll_src    [L][R * M] i32     source token index of each received message
 *     ll_slot   [L][R * M] i32     its top-k slot (combine's return address)
 *     ll_x      [L][R * M][row]    received rows, block (l, s) at rows s * M ..
 *     ll_cx     [M][K][crow]       combine: expert outputs back, slot (token, k)
 * The normal receive region holds the worst case (every source sends all N tokens)
 * instead of DeepEP's chunked ring buffers; LL combine returns into a [M][K] grid
 * addressed by (token, slot) instead of DeepEP's [E][M] one, K/E of the memory.
 *
 * Flow control, the reason no region is overwritten while its owner still reads
 * it: a sender writes into rank r's region only after r has announced that it
 * entered the call (normal dispatch: r's counts arrived, which the sender needs
 * anyway; LL: r's enter signal), and entering a call is what releases the
 * results of earlier calls (see the validity rules in ep_normal.h, ep_ll.h).
 * Every wait has the config's timeout and a timeout names the rank that did not
 * signal. A failed call leaves the signal counts of the ranks out of step, so
 * the buffer refuses further calls (WD_ERR_PEER with the first failure's text).
 *
 * Assumption on the transport: the source memory of a put may be reused once a
 * later signal to the same peer has returned. The protocol writes each staging
 * byte once per call, before its put.
 *
 * Threading: one thread per rank; a buffer is driven by its rank's thread only.
 */
#ifndef WD_EP_BUFFER_H
#define WD_EP_BUFFER_H

#include <stddef.h>
#include <stdint.h>

#include "common/comm/transport.h"
#include "common/ep/ep_payload.h"
#include "common/util/status.h"

#define WD_EP_DEFAULT_TIMEOUT_MS 100000 /* DeepEP's CPU-side receive timeout is 100 s */

struct wd_ep_config {
    int n_ranks;       /* R: ranks of the EP group */
    int hidden;        /* H */
    int top_k;         /* K: slots per token; every call uses exactly this many */
    int n_experts;     /* E: physical experts, E % R == 0; expert e lives on rank e / (E / R) */
    int max_tokens;    /* normal mode: most tokens one rank passes to one dispatch; 0 = none */
    int ll_max_tokens; /* LL: M = num_max_dispatch_tokens_per_rank, same on all ranks; 0 = none */
    /* The widest row encoding calls will use (F32 allows all three); narrower means a
     * smaller window. */
    enum wd_ep_payload_kind max_payload;
    int timeout_ms; /* every wait; 0 = WD_EP_DEFAULT_TIMEOUT_MS */
};

struct wd_ep_buffer;

/* WD_ERR_INVALID with the reason unless the sizes are sane (R >= 1, H >= 1, K >= 1,
 * E % R == 0, at least one mode, nothing overflows). */
enum wd_status wd_ep_config_check(const struct wd_ep_config *cfg, struct wd_error *err);

/* Bytes of the symmetric window cfg needs on every rank (layout above), or 0 when
 * cfg does not pass wd_ep_config_check. */
size_t wd_ep_window_bytes(const struct wd_ep_config *cfg);

/*
 * Creates the buffer of rank t->rank. Borrows t (it must outlive the buffer, have
 * t->n_ranks == cfg->n_ranks and a window of at least wd_ep_window_bytes). Every
 * rank of the group creates its own buffer with the same config before the first
 * call; the windows must be zero at creation (fresh transports are). Allocates
 * the private staging memory here, once: calls do not allocate.
 */
enum wd_status wd_ep_buffer_create(const struct wd_ep_config *cfg, struct wd_transport *t,
                                   struct wd_ep_buffer **b_p, struct wd_error *err);

void wd_ep_buffer_destroy(struct wd_ep_buffer *b); /* NULL-safe */

/* The config the buffer was created with. */
const struct wd_ep_config *wd_ep_buffer_config(const struct wd_ep_buffer *b);

/* This rank, and its local experts [rank * L, (rank + 1) * L). */
int wd_ep_buffer_rank(const struct wd_ep_buffer *b);
int wd_ep_buffer_n_local_experts(const struct wd_ep_buffer *b);

#endif

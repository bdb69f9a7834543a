/*
 * The MoE layer through expert parallelism, end to end on one rank:
 * combine(weighted local experts(dispatch(x))), in normal or low-latency mode,
 * with the experts as a callback. It is the reference composition of the
 * dispatch/combine contract (and what the tests check against a dense
 * single-process MoE); an engine may call it directly or copy its pattern.
 *
 * Normal mode: the received rows (not grouped by expert) are gathered per local
 * expert from recv topk_idx, decoded to fp32, run, and scattered back weighted
 * by recv topk_w into one row per received token; combine sums the ranks.
 * LL mode: each expert's slab rows [0, count) are decoded and run in place of
 * the slab; combine applies the weights on the source rank.
 * Workspace is allocated once at create; the calls do not allocate.
 */
#ifndef WD_EP_MOE_H
#define WD_EP_MOE_H

#include <stdint.h>

#include "common/ep/ep_buffer.h"
#include "common/ep/ep_ll.h"
#include "common/ep/ep_normal.h"
#include "common/util/status.h"

struct wd_ep_experts {
    /* y = expert local_expert applied to each row of x. x, y: [n, hidden] f32 (n >= 1).
     * Called on the rank's own thread. */
    enum wd_status (*run)(void *ctx, int local_expert, const float *x, int n, float *y,
                          struct wd_error *err);
    void *ctx;
};

struct wd_ep_moe_args {
    const float *x; /* [n_tokens, hidden] f32 */
    int n_tokens;
    const int32_t *topk_idx; /* [n_tokens, top_k] global expert ids, -1 = none */
    const float *topk_w;     /* [n_tokens, top_k] f32 */
    struct wd_ep_payload dispatch_payload;
    enum wd_ep_payload_kind combine_payload;
};

struct wd_ep_moe;

/* Workspace for b's config (both modes it has). */
enum wd_status wd_ep_moe_create(const struct wd_ep_buffer *b, struct wd_ep_moe **m_p,
                                struct wd_error *err);
void wd_ep_moe_destroy(struct wd_ep_moe *m); /* NULL-safe */

/* out: [n_tokens, hidden] f32 = sum_k w[i,k] * Expert_{idx[i,k]}(x[i]). Collective.
 * Normal mode: h is the handle to fill (owned by the caller). */
enum wd_status wd_ep_moe_normal(struct wd_ep_moe *m, struct wd_ep_buffer *b, struct wd_ep_handle *h,
                                const struct wd_ep_moe_args *a, const struct wd_ep_experts *ex,
                                float *out, struct wd_error *err);
enum wd_status wd_ep_moe_ll(struct wd_ep_moe *m, struct wd_ep_buffer *b,
                            const struct wd_ep_moe_args *a, const struct wd_ep_experts *ex,
                            float *out, struct wd_error *err);

#endif

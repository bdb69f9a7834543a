/*
 * The CPU backend's SwiGLU MLP over groups of rows: the routed experts of a MoE
 * layer (each expert with the tokens routed to it), a shared expert or a dense
 * layer (one group). All groups run in two thread-pool passes: gate and up rows
 * of every group with silu(gate) * up applied as each slice finishes, then down.
 * A decode step thus wakes the pool twice per MoE layer instead of three times
 * per expert, and the threads share the experts' rows instead of queueing behind
 * one small matrix at a time. Each output element is summed in the fixed order
 * of wd_linear_cpu, so the result of a row does not depend on the other rows or
 * groups of the call (bit-identical alone or batched).
 */
#ifndef WD_KERNELS_MLP_CPU_H
#define WD_KERNELS_MLP_CPU_H

#include <stdint.h>

#include "kernels/mlp.h"
#include "kernels/threadpool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Runs every group (borrowed; tp may be NULL). No allocation. */
void wd_mlp_cpu(const struct wd_mlp_group *groups, int n_groups, struct wd_threadpool *tp);

#ifdef __cplusplus
}
#endif

#endif

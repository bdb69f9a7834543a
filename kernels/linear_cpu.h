/*
 * The CPU backend's linear layer: y = x @ W^T with W in its checkpoint dtype.
 *
 * Decode is a matrix-vector product whose cost is reading W, so the op reads
 * each weight byte once per call whatever the number of tokens: rows are cut
 * into tiles, and each tile is used for all n tokens while it sits in L1.
 * Batch-1 BF16/F16 rows are widened in registers (AVX2 + F16C when the CPU has
 * them, picked at run time; portable C otherwise); for more tokens, tiles are
 * widened (F8_E4M3: dequantized with their block scales) into a small stack
 * buffer and run through a GEMM micro-kernel. Rows are split over the threads
 * of an optional wd_threadpool. Results equal wd_linear_ref up to the order of
 * the fp32 additions, and that order is fixed per output element: a token's
 * results are bit-identical whatever else is in the batch and however many
 * threads run it.
 */
#ifndef WD_KERNELS_LINEAR_CPU_H
#define WD_KERNELS_LINEAR_CPU_H

#include <stdint.h>

#include "kernels/linear.h"
#include "kernels/threadpool.h"
#include "kernels/weight.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y[t][r] = sum_c x[t][c] * W[r][c].
 * w: [rows, cols] F32/F16/BF16/F8_E4M3; x: [n, cols] f32; y: [n, rows] f32 (must not alias x).
 * tp may be NULL (single-threaded). No allocation; n may be 0. */
void wd_linear_cpu(const struct wd_weight *w, const float *x, int64_t n, float *y,
                   struct wd_threadpool *tp);

/* The same with row strides: token t reads x + t * ldx and writes y + t * ldy
 * (ldx >= cols, ldy >= rows), e.g. one head's slice of a [n, heads, dim] tensor. */
void wd_linear_cpu_strided(const struct wd_weight *w, const float *x, int64_t ldx, int64_t n,
                           float *y, int64_t ldy, struct wd_threadpool *tp);

/* Every item's linear in one pool pass (their tasks claimed from one queue): the same bits
 * as one wd_linear_cpu call per item, one wait for the threads instead of n_items. */
void wd_linear_cpu_many(const struct wd_linear_item *items, int n_items, struct wd_threadpool *tp);

/* Rows [r0, r1) of the strided op, on the calling thread: the building block of fused ops
 * that schedule their own tasks (kernels/mlp_cpu.c). Any split of the rows gives the same
 * bits as wd_linear_cpu. */
void wd_linear_cpu_rows(const struct wd_weight *w, const float *x, int64_t ldx, int64_t n, float *y,
                        int64_t ldy, int64_t r0, int64_t r1);

/* The same op forced onto the portable C kernels (tests compare both paths on any CPU). */
void wd_linear_cpu_portable(const struct wd_weight *w, const float *x, int64_t n, float *y,
                            struct wd_threadpool *tp);

/* 1 when the AVX2/FMA/F16C kernels are in use on this CPU (for logs and benchmarks). */
int wd_linear_cpu_has_avx2(void);

/* Tests only: is_portable 1 makes every CPU op of kernels/ (linear, MLP, attention, vec)
 * take its portable path from now on, 0 gives the CPU's choice back. Not thread-safe
 * against ops running at the same time. */
void wd_cpu_force_portable(int is_portable);

#ifdef __cplusplus
}
#endif

#endif

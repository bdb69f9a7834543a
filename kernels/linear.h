/*
 * Linear layer without bias: y = x @ W^T, activations fp32, W in its checkpoint
 * dtype (see weight.h). The _ref version is the oracle: plain loops, fp32
 * accumulation, one element widened at a time. The fast CPU path is in
 * linear_cpu.h and must agree with it to float rounding.
 */
#ifndef WD_KERNELS_LINEAR_H
#define WD_KERNELS_LINEAR_H

#include <stdint.h>

#include "kernels/weight.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y[t][r] = sum_c x[t][c] * W[r][c].
 * w: [rows, cols] any weight dtype; x: [n, cols] f32; y: [n, rows] f32 (must not alias x).
 * n may be 0. Single-threaded, no allocation. */
void wd_linear_ref(const struct wd_weight *w, const float *x, int64_t n, float *y);

/* One linear of a group run together (several projections of the same input: q, k and v):
 * y = x @ w^T over n tokens, as wd_linear_ref. */
struct wd_linear_item {
    const struct wd_weight *w;
    const float *x; /* [n, w->cols], token rows ldx floats apart */
    int64_t n;
    float *y;         /* [n, w->rows], token rows ldy floats apart, aliasing no item's x */
    int64_t ldx, ldy; /* 0: dense (w->cols, w->rows); else >= them (one head of [n, heads, d]) */
};

#ifdef __cplusplus
}
#endif

#endif

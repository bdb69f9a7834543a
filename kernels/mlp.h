/*
 * The SwiGLU feed-forward block shared by dense layers, shared experts and
 * routed experts: y = down(silu(gate(x)) * up(x)).
 */
#ifndef WD_KERNELS_MLP_H
#define WD_KERNELS_MLP_H

#include <stdint.h>

#include "kernels/weight.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One SwiGLU MLP applied to a group of rows: a MoE layer's expert with the tokens routed to
 * it, a shared expert or a dense layer. The backends' grouped MLP op takes an array. */
struct wd_mlp_group {
    const struct wd_weight *gate, *up, *down; /* [I, H], [I, H], [H, I]; any weight dtype */
    const float *x;                           /* [n, H] f32 */
    int64_t n;                                /* rows; 0 is allowed */
    float *tmp; /* [n, 2 * I] f32 scratch: gate activations then up (must not alias x or y) */
    float *y;   /* [n, H] f32 = down(silu(gate x) * up x); may alias x */
};

/* out[i] = silu(gate[i]) * up[i] with silu(g) = g / (1 + exp(-g)) (PyTorch's formula).
 * gate, up, out: [n] f32; out may alias gate or up. */
void wd_silu_mul_ref(const float *gate, const float *up, int64_t n, float *out);

/*
 * y = down(silu(gate(x)) * up(x)).
 * gate, up: [inter, hidden]; down: [hidden, inter] (any weight dtype);
 * x: [n, hidden] f32; scratch: [2 * n * inter] f32; y: [n, hidden] f32 (may alias x).
 */
void wd_mlp_ref(const struct wd_weight *gate, const struct wd_weight *up,
                const struct wd_weight *down, const float *x, int64_t n, float *scratch, float *y);

#ifdef __cplusplus
}
#endif

#endif

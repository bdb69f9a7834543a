/*
 * Element-wise helpers of the CPU backend's fast ops (MLP, attention): exp and
 * SwiGLU over arrays, vectorized with AVX2 when the CPU has it (picked at run
 * time, like kernels/linear_cpu.c). The AVX2 exp is a degree-6 polynomial after
 * range reduction (about 1 ulp from expf) and a value's result never depends on
 * where it sits in the array: a partial last vector goes through the same code
 * padded. So a token's activations are the same bits whatever its batch.
 */
#ifndef WD_KERNELS_VEC_CPU_H
#define WD_KERNELS_VEC_CPU_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out[i] = silu(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i].
 * gate, up, out: [n] f32; out may alias gate or up. */
void wd_vec_silu_mul(const float *gate, const float *up, int64_t n, float *out);

/* s[i] = exp(s[i] - m) for i < n; returns their sum, added in a fixed order for a given n.
 * s: [n] f32, m finite. */
float wd_vec_exp_sum(float *s, int n, float m);

/* sum_i exp((double)x[i] - (double)m) for i < n, in double: each exp within a few ulp of
 * libm's exp (AVX2: a degree-12 polynomial after range reduction, four lanes), added in a
 * fixed order for a given n. For log-sum-exp normalisers that must stay within 1e-12 of a
 * libm-and-double reference at a fraction of its cost. x: [n] f32 (not written), x[i] <= m
 * (m finite); arguments below -708 count as exp(-708). */
double wd_vec_exp_sum_f64(const float *x, int n, float m);

/* The largest of x[0..n) (n >= 1, finite values: the result does not depend on the order
 * the comparisons run in). */
float wd_vec_max(const float *x, int n);

/* One exp, the same function as the arrays use (for rescaling factors). */
float wd_vec_exp(float x);

#ifdef __cplusplus
}
#endif

#endif

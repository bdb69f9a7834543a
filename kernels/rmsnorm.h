/*
 * RMSNorm as Qwen3MoeRMSNorm / DeepseekV3RMSNorm compute it in fp32:
 * y = gamma * (x * rsqrt(mean(x^2) + eps)), row by row.
 */
#ifndef WD_KERNELS_RMSNORM_H
#define WD_KERNELS_RMSNORM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* x: [n, dim] f32; gamma: [dim] f32; y: [n, dim] f32. y == x (in place) is allowed.
 * n may be 0; dim >= 1. */
void wd_rmsnorm_ref(const float *x, const float *gamma, int64_t n, int64_t dim, float eps,
                    float *y);

#ifdef __cplusplus
}
#endif

#endif

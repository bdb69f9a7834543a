/* Reference RMSNorm. */
#include "kernels/rmsnorm.h"

#include <math.h>

void wd_rmsnorm_ref(const float *x, const float *gamma, int64_t n, int64_t dim, float eps, float *y)
{
    for (int64_t t = 0; t < n; t++) {
        const float *xt = x + t * dim;
        float *yt = y + t * dim;
        /* The sum of squares is kept in double: PyTorch reduces with pairwise fp32 sums,
         * which is close to exact; a naive fp32 loop drifts further on wide rows. */
        double ss = 0.0;
        for (int64_t i = 0; i < dim; i++)
            ss += (double)xt[i] * xt[i];
        float var = (float)(ss / (double)dim);
        float inv = 1.0f / sqrtf(var + eps);
        for (int64_t i = 0; i < dim; i++)
            yt[i] = gamma[i] * (xt[i] * inv);
    }
}

/* Reference linear layer: the readable oracle for linear_cpu.c and linear.cu. */
#include "kernels/linear.h"

void wd_linear_ref(const struct wd_weight *w, const float *x, int64_t n, float *y)
{
    for (int64_t t = 0; t < n; t++) {
        const float *xt = x + t * w->cols;
        for (int64_t r = 0; r < w->rows; r++) {
            float acc = 0.0f;
            for (int64_t c = 0; c < w->cols; c++)
                acc += xt[c] * wd_weight_get(w, r, c);
            y[t * w->rows + r] = acc;
        }
    }
}

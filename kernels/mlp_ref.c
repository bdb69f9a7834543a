/* Reference SwiGLU MLP built from the reference linear layer. */
#include "kernels/mlp.h"

#include <math.h>

#include "common/util/status.h"
#include "kernels/linear.h"

void wd_silu_mul_ref(const float *gate, const float *up, int64_t n, float *out)
{
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void wd_mlp_ref(const struct wd_weight *gate, const struct wd_weight *up,
                const struct wd_weight *down, const float *x, int64_t n, float *scratch, float *y)
{
    int64_t inter = gate->rows;
    WD_ASSERT(up->rows == inter && up->cols == gate->cols);
    WD_ASSERT(down->cols == inter && down->rows == gate->cols);
    float *g = scratch, *u = scratch + n * inter;
    wd_linear_ref(gate, x, n, g);
    wd_linear_ref(up, x, n, u);
    wd_silu_mul_ref(g, u, n * inter, g);
    wd_linear_ref(down, g, n, y);
}

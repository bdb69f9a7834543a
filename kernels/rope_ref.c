/* Reference RoPE application (rotate_half and DeepSeek's interleaved layout). */
#include "kernels/rope.h"

#include <math.h>

#include "common/util/status.h"

void wd_rope_apply_ref(const struct wd_rope *rope, float *x, int64_t n_tokens, int n_heads,
                       int head_stride, int off, const int32_t *pos)
{
    int half = rope->rot_dim / 2;
    float cs[WD_ROPE_MAX_DIM / 2], sn[WD_ROPE_MAX_DIM / 2], tmp[WD_ROPE_MAX_DIM];
    WD_ASSERT(rope->rot_dim % 2 == 0 && rope->rot_dim <= WD_ROPE_MAX_DIM);
    WD_ASSERT(off >= 0 && off + rope->rot_dim <= head_stride);

    for (int64_t t = 0; t < n_tokens; t++) {
        float p = (float)pos[t];
        for (int i = 0; i < half; i++) {
            float f = p * rope->inv_freq[i]; /* fp32 product, as HF forms freqs */
            cs[i] = cosf(f) * rope->attention_scaling;
            sn[i] = sinf(f) * rope->attention_scaling;
        }
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (t * n_heads + h) * (int64_t)head_stride + off;
            if (rope->is_interleaved) {
                /* Pair (2i, 2i+1) rotates by angle i; results land at i and half + i. */
                for (int i = 0; i < half; i++) {
                    float a = v[2 * i], b = v[2 * i + 1];
                    tmp[i] = a * cs[i] - b * sn[i];
                    tmp[half + i] = b * cs[i] + a * sn[i];
                }
                for (int i = 0; i < rope->rot_dim; i++)
                    v[i] = tmp[i];
            } else {
                /* rotate_half: x * cos + (-x2, x1) * sin. */
                for (int i = 0; i < half; i++) {
                    float a = v[i], b = v[half + i];
                    v[i] = a * cs[i] - b * sn[i];
                    v[half + i] = b * cs[i] + a * sn[i];
                }
            }
        }
    }
}

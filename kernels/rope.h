/*
 * Rotary position embedding (RoPE) as transformers 5.x computes it.
 *
 * wd_rope_init reproduces ROPE_INIT_FUNCTIONS for "default" and "yarn" (the
 * inverse frequencies are computed in fp32 like the torch code, so they match
 * it to an ulp). wd_rope_apply_ref rotates q or k in place:
 *  - non-interleaved (Qwen3): HF rotate_half, pairs (i, i + rot_dim/2);
 *  - interleaved (DeepSeek-V3 rope_interleave): pairs (2i, 2i+1), and the output
 *    is written de-interleaved (rotated evens, then rotated odds), exactly the
 *    layout of HF apply_rotary_pos_emb_interleave, so values compare 1:1.
 * cos/sin are computed per token in fp32 from pos * inv_freq and multiplied by
 * attention_scaling (YaRN's attention factor), as HF's rotary embedding does.
 */
#ifndef WD_KERNELS_ROPE_H
#define WD_KERNELS_ROPE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Largest rot_dim the ops accept (they keep per-token cos/sin on the stack). */
#define WD_ROPE_MAX_DIM 1024

struct wd_rope {
    int rot_dim;             /* rotated channels per head, even */
    int is_interleaved;      /* DeepSeek-V3 rope_interleave */
    const float *inv_freq;   /* [rot_dim / 2] f32 (device memory for the CUDA op) */
    float attention_scaling; /* multiplies cos and sin (YaRN attention factor) */
};

/*
 * Fills inv_freq and the attention scaling exactly as transformers' "default"
 * (is_yarn = 0: only rot_dim and theta are used, scaling 1) and "yarn" init functions do.
 * Yarn arguments follow config.rope_parameters: factor; original_max_pos =
 * original_max_position_embeddings; beta_fast / beta_slow (0 = the defaults 32 / 1);
 * mscale / mscale_all_dim (0 = absent); attention_factor (0 = derive from factor and
 * the mscales); truncate (transformers' default is 1).
 * inv_freq: [rot_dim / 2] f32 out.
 */
void wd_rope_init(int rot_dim, double theta, int is_yarn, double factor, int original_max_pos,
                  double beta_fast, double beta_slow, double mscale, double mscale_all_dim,
                  double attention_factor, int truncate, float *inv_freq,
                  float *attention_scaling_p);

/*
 * YaRN's mscale: 0.1 * mscale * ln(scale) + 1 when scale > 1, else 1.
 * DeepSeek-V3's softmax scale (HF DeepseekV3Attention via yarn_apply_mscale) is
 * qk_head_dim^-0.5 * m * m with m = wd_yarn_get_mscale(factor, mscale_all_dim), applied
 * only when the rope type is not "default" and mscale_all_dim is non-zero.
 */
float wd_yarn_get_mscale(double scale, double mscale);

/*
 * Rotates x in place: for each token t and head h, the rot_dim channels starting at
 * channel `off` of x[t][h] are rotated by the angles pos[t] * inv_freq.
 * x: [n_tokens, n_heads, head_stride] f32; pos: [n_tokens] i32 (>= 0).
 * Requires off + rot_dim <= head_stride and rot_dim <= WD_ROPE_MAX_DIM.
 */
void wd_rope_apply_ref(const struct wd_rope *rope, float *x, int64_t n_tokens, int n_heads,
                       int head_stride, int off, const int32_t *pos);

#ifdef __cplusplus
}
#endif

#endif

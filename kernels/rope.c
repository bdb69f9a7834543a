/*
 * RoPE parameter set-up (transformers' "default" and "yarn" init functions).
 * The arithmetic deliberately mirrors the torch code's precision: the
 * frequency tables are fp32 tensors there, the correction range and the
 * attention factor are Python doubles.
 */
#include "kernels/rope.h"

#include <math.h>

#include "common/util/status.h"

float wd_yarn_get_mscale(double scale, double mscale)
{
    if (scale <= 1.0)
        return 1.0f;
    return (float)(0.1 * mscale * log(scale) + 1.0);
}

/* Dimension index at which the wavelength makes num_rot full turns over max_pos. */
static double correction_dim(double num_rot, int dim, double base, int max_pos)
{
    return (dim * log(max_pos / (num_rot * 2.0 * M_PI))) / (2.0 * log(base));
}

static double yarn_mscale_d(double scale, double mscale)
{
    return scale <= 1.0 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

void wd_rope_init(int rot_dim, double theta, int is_yarn, double factor, int original_max_pos,
                  double beta_fast, double beta_slow, double mscale, double mscale_all_dim,
                  double attention_factor, int truncate, float *inv_freq,
                  float *attention_scaling_p)
{
    int half = rot_dim / 2;
    float base = (float)theta, dim_f = (float)rot_dim;
    WD_ASSERT(rot_dim > 0 && rot_dim % 2 == 0);
    if (!is_yarn) {
        for (int i = 0; i < half; i++)
            inv_freq[i] = 1.0f / powf(base, (float)(2 * i) / dim_f);
        *attention_scaling_p = 1.0f;
        return;
    }

    if (attention_factor == 0.0) {
        if (mscale != 0.0 && mscale_all_dim != 0.0)
            attention_factor =
                yarn_mscale_d(factor, mscale) / yarn_mscale_d(factor, mscale_all_dim);
        else
            attention_factor = yarn_mscale_d(factor, 1.0);
    }
    if (beta_fast == 0.0)
        beta_fast = 32.0;
    if (beta_slow == 0.0)
        beta_slow = 1.0;

    double low = correction_dim(beta_fast, rot_dim, theta, original_max_pos);
    double high = correction_dim(beta_slow, rot_dim, theta, original_max_pos);
    if (truncate) {
        low = floor(low);
        high = ceil(high);
    }
    if (low < 0.0)
        low = 0.0;
    if (high > rot_dim - 1)
        high = rot_dim - 1;
    if (low == high)
        high += 0.001; /* the torch code's guard against a zero-width ramp */

    float ffactor = (float)factor, flow = (float)low, fspan = (float)(high - low);
    for (int i = 0; i < half; i++) {
        float pos_freq = powf(base, (float)(2 * i) / dim_f);
        float extrap = 1.0f / pos_freq;
        float interp = 1.0f / (ffactor * pos_freq);
        float ramp = ((float)i - flow) / fspan;
        ramp = ramp < 0.0f ? 0.0f : (ramp > 1.0f ? 1.0f : ramp);
        float extrap_factor = 1.0f - ramp;
        inv_freq[i] = interp * (1.0f - extrap_factor) + extrap * extrap_factor;
    }
    *attention_scaling_p = (float)attention_factor;
}

/*
 * The SPEC-EP 5.4 FP8 cast. ceil(log2(v)) is read from v's bits (exponent, plus
 * one when any mantissa bit is set), which is exact for every normal float; v =
 * amax / 448 >= 1e-4 / 448 is always normal.
 */
#include "common/ep/ep_fp8.h"

#include <math.h>
#include <string.h>

#include "kernels/dtype.h"

static int log2_ceil(float v)
{
    uint32_t bits;
    memcpy(&bits, &v, 4);
    int exp = (int)((bits >> 23) & 0xff) - 127;
    return exp + ((bits & 0x7fffffu) != 0);
}

void wd_ep_fp8_quantize(const float *x, int hidden, int round_scale, uint8_t *q, float *scale_inv)
{
    for (int g = 0; g < hidden / WD_EP_FP8_GROUP; g++) {
        const float *xg = x + (size_t)g * WD_EP_FP8_GROUP;
        uint8_t *qg = q + (size_t)g * WD_EP_FP8_GROUP;
        float amax = WD_EP_FP8_AMAX_MIN;
        for (int j = 0; j < WD_EP_FP8_GROUP; j++)
            amax = fmaxf(amax, fabsf(xg[j]));
        float s, s_inv;
        if (round_scale) {
            int e = log2_ceil(amax / WD_EP_FP8_MAX);
            s_inv = ldexpf(1.0f, e);
            s = ldexpf(1.0f, -e);
        } else {
            s_inv = amax / WD_EP_FP8_MAX;
            s = WD_EP_FP8_MAX / amax;
        }
        scale_inv[g] = s_inv;
        for (int j = 0; j < WD_EP_FP8_GROUP; j++)
            qg[j] = wd_f32_to_e4m3(xg[j] * s);
    }
}

void wd_ep_fp8_pack_ue8m0(const float *scale_inv, int n_groups, uint32_t *packed)
{
    for (int w = 0; w < (n_groups + 3) / 4; w++) {
        uint32_t word = 0;
        for (int b = 0; b < 4 && 4 * w + b < n_groups; b++) {
            uint32_t bits;
            memcpy(&bits, &scale_inv[4 * w + b], 4);
            word |= ((bits >> 23) & 0xffu) << (8 * b);
        }
        packed[w] = word;
    }
}

float wd_ep_fp8_ue8m0_scale(uint8_t e)
{
    return ldexpf(1.0f, (int)e - 127);
}

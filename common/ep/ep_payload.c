/*
 * Row encodings of dispatch/combine (see ep_payload.h). The decode of an FP8
 * row multiplies each e4m3 value by its group's scale_inv in fp32, which is the
 * dequantization DeepEP's consumers (DeepGEMM) apply.
 */
#include "common/ep/ep_payload.h"

#include <string.h>

#include "common/ep/ep_fp8.h"
#include "kernels/dtype.h"

enum wd_status wd_ep_payload_check(const struct wd_ep_payload *p, struct wd_error *err)
{
    if (p->hidden < 1)
        return wd_error_set(err, WD_ERR_INVALID, "ep payload: hidden size %d", p->hidden);
    if (p->kind != WD_EP_PAYLOAD_F32 && p->kind != WD_EP_PAYLOAD_BF16 &&
        p->kind != WD_EP_PAYLOAD_FP8)
        return wd_error_set(err, WD_ERR_INVALID, "ep payload: unknown kind %d", (int)p->kind);
    if (p->kind == WD_EP_PAYLOAD_FP8 && p->hidden % WD_EP_FP8_GROUP != 0)
        return wd_error_set(err, WD_ERR_INVALID,
                            "ep payload: fp8 needs hidden %% %d == 0, hidden is %d",
                            WD_EP_FP8_GROUP, p->hidden);
    if (p->use_ue8m0 && (p->kind != WD_EP_PAYLOAD_FP8 || !p->round_scale))
        return wd_error_set(err, WD_ERR_INVALID,
                            "ep payload: ue8m0 scales need fp8 with "
                            "round_scale");
    return WD_OK;
}

size_t wd_ep_payload_row_bytes(const struct wd_ep_payload *p)
{
    size_t h = (size_t)p->hidden;
    switch (p->kind) {
    case WD_EP_PAYLOAD_F32:
        return 4 * h;
    case WD_EP_PAYLOAD_BF16:
        return (2 * h + 3) & ~(size_t)3;
    case WD_EP_PAYLOAD_FP8: {
        size_t groups = h / WD_EP_FP8_GROUP;
        return h + (p->use_ue8m0 ? 4 * ((groups + 3) / 4) : 4 * groups);
    }
    }
    return 0;
}

void wd_ep_payload_encode(const struct wd_ep_payload *p, const float *x, uint8_t *row)
{
    int h = p->hidden;
    switch (p->kind) {
    case WD_EP_PAYLOAD_F32:
        memcpy(row, x, 4 * (size_t)h);
        break;
    case WD_EP_PAYLOAD_BF16:
        for (int j = 0; j < h; j++) {
            uint16_t v = wd_f32_to_bf16(x[j]);
            memcpy(row + 2 * (size_t)j, &v, 2);
        }
        if (h & 1)
            memset(row + 2 * (size_t)h, 0, 2); /* padding to 4 bytes: keep it defined */
        break;
    case WD_EP_PAYLOAD_FP8: {
        int groups = h / WD_EP_FP8_GROUP;
        float scales[64];
        /* Quantize group by group so any hidden size works with a small stack array. */
        for (int g0 = 0; g0 < groups; g0 += 64) {
            int ng = groups - g0 < 64 ? groups - g0 : 64;
            wd_ep_fp8_quantize(x + (size_t)g0 * WD_EP_FP8_GROUP, ng * WD_EP_FP8_GROUP,
                               p->round_scale, row + (size_t)g0 * WD_EP_FP8_GROUP, scales);
            if (p->use_ue8m0) {
                /* g0 is a multiple of 64, hence of 4: whole words. */
                uint32_t packed[16];
                wd_ep_fp8_pack_ue8m0(scales, ng, packed);
                memcpy(row + h + (size_t)g0, packed, 4 * (size_t)((ng + 3) / 4));
            } else {
                memcpy(row + h + 4 * (size_t)g0, scales, 4 * (size_t)ng);
            }
        }
        break;
    }
    }
}

/* The scale_inv of group g of an encoded FP8 row. */
static float fp8_row_scale(const struct wd_ep_payload *p, const uint8_t *row, int g)
{
    if (p->use_ue8m0)
        return wd_ep_fp8_ue8m0_scale(row[p->hidden + g]); /* byte g of the packed words */
    float s;
    memcpy(&s, row + p->hidden + 4 * (size_t)g, 4);
    return s;
}

void wd_ep_payload_decode(const struct wd_ep_payload *p, const uint8_t *row, float *x)
{
    memset(x, 0, sizeof(float) * (size_t)p->hidden);
    wd_ep_payload_axpy(p, 1.0f, row, x);
}

void wd_ep_payload_axpy(const struct wd_ep_payload *p, float w, const uint8_t *restrict row,
                        float *restrict x)
{
    int h = p->hidden;
    switch (p->kind) {
    case WD_EP_PAYLOAD_F32: {
        /* Rows start 4-byte aligned (row sizes are multiples of 4 in 64-aligned regions);
         * restrict lets the compiler vectorize the combine's hot loop. */
        const float *restrict v = (const float *)(const void *)row;
        for (int j = 0; j < h; j++)
            x[j] += w * v[j];
        break;
    }
    case WD_EP_PAYLOAD_BF16: {
        const uint16_t *restrict v = (const uint16_t *)(const void *)row;
        for (int j = 0; j < h; j++)
            x[j] += w * wd_bf16_to_f32(v[j]);
        break;
    }
    case WD_EP_PAYLOAD_FP8:
        for (int g = 0; g < h / WD_EP_FP8_GROUP; g++) {
            float s = fp8_row_scale(p, row, g);
            for (int j = g * WD_EP_FP8_GROUP; j < (g + 1) * WD_EP_FP8_GROUP; j++)
                x[j] += w * (wd_e4m3_to_f32(row[j]) * s);
        }
        break;
    }
}

const char *wd_ep_payload_name(enum wd_ep_payload_kind kind)
{
    switch (kind) {
    case WD_EP_PAYLOAD_F32:
        return "f32";
    case WD_EP_PAYLOAD_BF16:
        return "bf16";
    case WD_EP_PAYLOAD_FP8:
        return "fp8";
    }
    return "?";
}

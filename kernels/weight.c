/* Dequantization of one row or element of a checkpoint-dtype weight (the plain reference). */
#include "kernels/weight.h"

#include "common/util/status.h"

float wd_weight_scale(const struct wd_weight *w, int64_t r, int64_t c)
{
    if (w->dtype != WD_DTYPE_F8_E4M3 || !w->scale_inv)
        return 1.0f;
    int64_t n_col_blocks = (w->cols + w->block_cols - 1) / w->block_cols;
    return w->scale_inv[(r / w->block_rows) * n_col_blocks + c / w->block_cols];
}

float wd_weight_get(const struct wd_weight *w, int64_t r, int64_t c)
{
    int64_t i = r * w->cols + c;
    switch (w->dtype) {
    case WD_DTYPE_F32:
        return ((const float *)w->data)[i];
    case WD_DTYPE_F16:
        return wd_f16_to_f32(((const uint16_t *)w->data)[i]);
    case WD_DTYPE_BF16:
        return wd_bf16_to_f32(((const uint16_t *)w->data)[i]);
    case WD_DTYPE_F8_E4M3:
        return wd_e4m3_to_f32(((const uint8_t *)w->data)[i]) * wd_weight_scale(w, r, c);
    default:
        WD_ASSERT(!"weight dtype must be F32, F16, BF16 or F8_E4M3");
        return 0.0f;
    }
}

void wd_weight_row_f32(const struct wd_weight *w, int64_t r, float *out)
{
    size_t esz = wd_dtype_size(w->dtype);
    const char *row = (const char *)w->data + (size_t)(r * w->cols) * esz;
    WD_ASSERT(w->dtype == WD_DTYPE_F32 || w->dtype == WD_DTYPE_F16 || w->dtype == WD_DTYPE_BF16 ||
              w->dtype == WD_DTYPE_F8_E4M3);
    wd_dtype_to_f32(w->dtype, row, out, (size_t)w->cols);
    if (w->dtype == WD_DTYPE_F8_E4M3 && w->scale_inv) {
        for (int64_t c0 = 0; c0 < w->cols; c0 += w->block_cols) {
            float s = wd_weight_scale(w, r, c0);
            int64_t c1 = c0 + w->block_cols < w->cols ? c0 + w->block_cols : w->cols;
            for (int64_t c = c0; c < c1; c++)
                out[c] *= s;
        }
    }
}

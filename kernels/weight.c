/* Dequantization of one row or element of a checkpoint-dtype weight (the plain reference). */
#include "kernels/weight.h"

#include "common/util/status.h"

struct wd_weight wd_weight_slice_rows(const struct wd_weight *w, int64_t r0, int64_t n)
{
    WD_ASSERT(r0 >= 0 && n >= 0 && r0 + n <= w->rows);
    struct wd_weight v = *w;
    v.ld = wd_weight_ld(w);
    if (!v.scale_cols && w->scale_inv)
        v.scale_cols = (w->cols + w->block_cols - 1) / w->block_cols;
    v.data = (const char *)w->data + (size_t)(r0 * v.ld) * wd_dtype_size(w->dtype);
    v.rows = n;
    v.row0 = w->row0 + r0;
    return v;
}

struct wd_weight wd_weight_slice_cols(const struct wd_weight *w, int64_t c0, int64_t n)
{
    WD_ASSERT(c0 >= 0 && n >= 0 && c0 + n <= w->cols);
    struct wd_weight v = *w;
    v.ld = wd_weight_ld(w);
    if (!v.scale_cols && w->scale_inv)
        v.scale_cols = (w->cols + w->block_cols - 1) / w->block_cols;
    v.data = (const char *)w->data + (size_t)c0 * wd_dtype_size(w->dtype);
    v.cols = n;
    v.col0 = w->col0 + c0;
    return v;
}

float wd_weight_scale(const struct wd_weight *w, int64_t r, int64_t c)
{
    if (w->dtype != WD_DTYPE_F8_E4M3 || !w->scale_inv)
        return 1.0f;
    int64_t n_col_blocks =
        w->scale_cols ? w->scale_cols : (w->cols + w->block_cols - 1) / w->block_cols;
    return w
        ->scale_inv[((w->row0 + r) / w->block_rows) * n_col_blocks + (w->col0 + c) / w->block_cols];
}

float wd_weight_get(const struct wd_weight *w, int64_t r, int64_t c)
{
    int64_t i = r * wd_weight_ld(w) + c;
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
    const char *row = (const char *)w->data + (size_t)(r * wd_weight_ld(w)) * esz;
    WD_ASSERT(w->dtype == WD_DTYPE_F32 || w->dtype == WD_DTYPE_F16 || w->dtype == WD_DTYPE_BF16 ||
              w->dtype == WD_DTYPE_F8_E4M3);
    wd_dtype_to_f32(w->dtype, row, out, (size_t)w->cols);
    if (w->dtype == WD_DTYPE_F8_E4M3 && w->scale_inv) {
        /* Runs of columns sharing a scale, in full-matrix block coordinates. */
        for (int64_t c0 = 0; c0 < w->cols;) {
            float s = wd_weight_scale(w, r, c0);
            int64_t end = ((w->col0 + c0) / w->block_cols + 1) * w->block_cols - w->col0;
            int64_t c1 = end < w->cols ? end : w->cols;
            for (int64_t c = c0; c < c1; c++)
                out[c] *= s;
            c0 = c1;
        }
    }
}

/*
 * wd_weight: a 2-D weight matrix viewed in its checkpoint dtype.
 *
 * The engine keeps weights exactly as the checkpoint stores them (F32, F16,
 * BF16, or F8_E4M3 with DeepSeek-V3 block scales) and the ops widen them to
 * fp32 as they read, so a bf16 model streams half the bytes of an fp32 copy.
 * This struct only borrows the memory (usually an mmap of the safetensors
 * file); it never owns or frees it. Row-major, rows = out_features.
 */
#ifndef WD_KERNELS_WEIGHT_H
#define WD_KERNELS_WEIGHT_H

#include <stdint.h>

#include "kernels/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

struct wd_weight {
    enum wd_dtype dtype; /* F32, F16, BF16 or F8_E4M3 */
    const void *data;    /* [rows, cols] in dtype */
    int64_t rows, cols;  /* rows = out_features, cols = in_features */
    /* F8_E4M3 only: [ceil(rows / block_rows), ceil(cols / block_cols)] f32 that multiplies
     * the fp8 value (DeepSeek-V3 weight_scale_inv semantics); NULL for other dtypes. */
    const float *scale_inv;
    int block_rows, block_cols;
    /* A view may be a slice of a larger checkpoint matrix (tensor parallelism): ld is the
     * distance in elements between rows (0 = cols); row0/col0 place the view inside the
     * full matrix and scale_cols is the full matrix's count of column blocks (0 = derive
     * from cols), so FP8 scales are looked up in full-matrix coordinates. */
    int64_t ld;
    int64_t row0, col0, scale_cols;
};

/* Row stride of w in elements (inline: the linear kernels ask once per row). */
static inline int64_t wd_weight_ld(const struct wd_weight *w)
{
    return w->ld ? w->ld : w->cols;
}

/* Views of rows [r0, r0 + n) or columns [c0, c0 + n) of w (borrowing w's memory). */
struct wd_weight wd_weight_slice_rows(const struct wd_weight *w, int64_t r0, int64_t n);
struct wd_weight wd_weight_slice_cols(const struct wd_weight *w, int64_t c0, int64_t n);

/* Dequantizes row r (0 <= r < rows) into out. out: [cols] f32. */
void wd_weight_row_f32(const struct wd_weight *w, int64_t r, float *out);

/* One dequantized element (r, c); slow, for reference loops that need a single value. */
float wd_weight_get(const struct wd_weight *w, int64_t r, int64_t c);

/* Scale that multiplies element (r, c) of an F8_E4M3 weight; 1 for other dtypes. */
float wd_weight_scale(const struct wd_weight *w, int64_t r, int64_t c);

#ifdef __cplusplus
}
#endif

#endif

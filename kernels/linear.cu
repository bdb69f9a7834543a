/*
 * CUDA linear layer y = x @ W^T, a simple correct kernel: one warp per weight row,
 * lanes stride over the columns (coalesced weight reads), and each weight element
 * read from memory serves up to TOKENS tokens at once before the warp moves on to
 * the next group of tokens. Any weight dtype (F8_E4M3 with block scales).
 * Not tuned: a tensor-core GEMM replaces it for large batches later.
 */
#include "kernels/cuda_check.h"
#include "kernels/cuda_common.cuh"
#include "kernels/cuda_ops.h"

#define WARPS 8  /* rows per block */
#define TOKENS 8 /* tokens per pass over a row */

static __global__ void linear_kernel(struct wd_weight w, const float *x, int64_t n, float *y)
{
    int64_t r = (int64_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= w.rows)
        return;
    for (int64_t t0 = 0; t0 < n; t0 += TOKENS) {
        int nt = n - t0 < TOKENS ? (int)(n - t0) : TOKENS;
        float acc[TOKENS] = {0.0f};
        for (int64_t c = lane; c < w.cols; c += 32) {
            float wv = wd_dev_weight(w, r, c);
#pragma unroll
            for (int t = 0; t < TOKENS; t++)
                if (t < nt)
                    acc[t] += wv * x[(t0 + t) * w.cols + c];
        }
#pragma unroll
        for (int t = 0; t < TOKENS; t++) {
            float s = wd_dev_warp_sum(acc[t]);
            if (lane == 0 && t < nt)
                y[(t0 + t) * w.rows + r] = s;
        }
    }
}

extern "C" enum wd_status wd_cuda_linear(const struct wd_weight *w, const float *d_x, int64_t n,
                                         float *d_y, void *stream)
{
    if (n <= 0 || w->rows <= 0)
        return WD_OK;
    if (w->dtype != WD_DTYPE_F32 && w->dtype != WD_DTYPE_F16 && w->dtype != WD_DTYPE_BF16 &&
        w->dtype != WD_DTYPE_F8_E4M3)
        return WD_ERR_UNSUPPORTED;
    int64_t blocks = (w->rows + WARPS - 1) / WARPS;
    if (blocks > 0x7fffffff)
        return WD_ERR_INVALID;
    linear_kernel<<<(unsigned)blocks, WARPS * 32, 0, (cudaStream_t)stream>>>(*w, d_x, n, d_y);
    WD_CUDA_CHECK(cudaGetLastError());
    return WD_OK;
}

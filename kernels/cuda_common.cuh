/*
 * Device-side helpers shared by the .cu kernels: dtype widening identical to
 * kernels/dtype.h (bit-exact), the wd_weight element read, and warp/block
 * sums. Inline device functions live in this header because the kernels are
 * compiled without relocatable device code (one translation unit each).
 */
#ifndef WD_KERNELS_CUDA_COMMON_CUH
#define WD_KERNELS_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/weight.h"

static __device__ __forceinline__ float wd_dev_bf16(uint16_t h)
{
    return __uint_as_float((uint32_t)h << 16);
}

static __device__ __forceinline__ float wd_dev_f16(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 31)
        return __uint_as_float(sign | 0x7f800000u | (man << 13));
    if (exp == 0) { /* zero or subnormal: man * 2^-24, exact in fp32 */
        float f = (float)man * 5.9604644775390625e-8f;
        return sign ? -f : f;
    }
    return __uint_as_float(sign | ((exp + 112) << 23) | (man << 13));
}

static __device__ __forceinline__ float wd_dev_e4m3(uint8_t v)
{
    uint32_t exp = (v >> 3) & 0xf, man = v & 7;
    if (exp == 0xf && man == 7)
        return __int_as_float(0x7fc00000);
    float f = exp == 0 ? (float)man * 0.001953125f /* man * 2^-9 */
                       : __uint_as_float(((exp + 120) << 23) | (man << 20));
    return (v & 0x80) ? -f : f;
}

/* Element (r, c) of w, widened and (fp8) scaled exactly as wd_weight_get does. */
static __device__ __forceinline__ float wd_dev_weight(const struct wd_weight &w, int64_t r,
                                                      int64_t c)
{
    int64_t i = r * (w.ld ? w.ld : w.cols) + c;
    switch (w.dtype) {
    case WD_DTYPE_F32:
        return ((const float *)w.data)[i];
    case WD_DTYPE_F16:
        return wd_dev_f16(((const uint16_t *)w.data)[i]);
    case WD_DTYPE_BF16:
        return wd_dev_bf16(((const uint16_t *)w.data)[i]);
    default: {
        float v = wd_dev_e4m3(((const uint8_t *)w.data)[i]);
        if (!w.scale_inv)
            return v;
        /* Scales in full-matrix coordinates: a view may be a tensor-parallel slice. */
        int64_t n_col_blocks =
            w.scale_cols ? w.scale_cols : (w.cols + w.block_cols - 1) / w.block_cols;
        return v * w.scale_inv[((w.row0 + r) / w.block_rows) * n_col_blocks +
                               (w.col0 + c) / w.block_cols];
    }
    }
}

static __device__ __forceinline__ float wd_dev_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets it. */
static __device__ __forceinline__ float wd_dev_block_sum(float v)
{
    __shared__ float part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = wd_dev_warp_sum(v);
    __syncthreads(); /* part[] may still be read by a previous call */
    if (lane == 0)
        part[warp] = v;
    __syncthreads();
    v = lane < n_warps ? part[lane] : 0.0f;
    return wd_dev_warp_sum(v);
}

#endif

/* CUDA RMSNorm: one block per row, block-wide sum of squares, then the scaled write. */
#include "kernels/cuda_check.h"
#include "kernels/cuda_common.cuh"
#include "kernels/cuda_ops.h"

#define THREADS 256

static __global__ void rmsnorm_kernel(const float *x, const float *gamma, int64_t dim, float eps,
                                      float *y)
{
    const float *xr = x + (int64_t)blockIdx.x * dim;
    float *yr = y + (int64_t)blockIdx.x * dim;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
        ss += xr[i] * xr[i];
    ss = wd_dev_block_sum(ss); /* all reads of x finish before any write (in place is safe) */
    float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
        yr[i] = gamma[i] * (xr[i] * inv);
}

extern "C" enum wd_status wd_cuda_rmsnorm(const float *d_x, const float *d_gamma, int64_t n,
                                          int64_t dim, float eps, float *d_y, void *stream)
{
    if (n <= 0)
        return WD_OK;
    if (dim <= 0 || n > 0x7fffffff)
        return WD_ERR_INVALID;
    rmsnorm_kernel<<<(unsigned)n, THREADS, 0, (cudaStream_t)stream>>>(d_x, d_gamma, dim, eps, d_y);
    WD_CUDA_CHECK(cudaGetLastError());
    return WD_OK;
}

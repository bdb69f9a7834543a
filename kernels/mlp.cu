/* CUDA silu(gate) * up, elementwise with a grid-stride loop. */
#include "kernels/cuda_check.h"
#include "kernels/cuda_ops.h"

static __global__ void silu_mul_kernel(const float *gate, const float *up, int64_t n, float *out)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

extern "C" enum wd_status wd_cuda_silu_mul(const float *d_gate, const float *d_up, int64_t n,
                                           float *d_out, void *stream)
{
    if (n <= 0)
        return WD_OK;
    int64_t blocks = (n + 255) / 256;
    if (blocks > 65535)
        blocks = 65535;
    silu_mul_kernel<<<(unsigned)blocks, 256, 0, (cudaStream_t)stream>>>(d_gate, d_up, n, d_out);
    WD_CUDA_CHECK(cudaGetLastError());
    return WD_OK;
}

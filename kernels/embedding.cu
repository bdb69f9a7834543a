/* CUDA embedding lookup: one block per token, threads over the hidden dimension. */
#include "kernels/cuda_check.h"
#include "kernels/cuda_common.cuh"
#include "kernels/cuda_ops.h"

static __global__ void embedding_kernel(struct wd_weight table, const int32_t *ids, float *out)
{
    int64_t t = blockIdx.x, id = ids[t];
    for (int64_t c = threadIdx.x; c < table.cols; c += blockDim.x)
        out[t * table.cols + c] = wd_dev_weight(table, id, c);
}

extern "C" enum wd_status wd_cuda_embedding(const struct wd_weight *table, const int32_t *d_ids,
                                            int64_t n, float *d_out, void *stream)
{
    if (n <= 0)
        return WD_OK;
    if (n > 0x7fffffff)
        return WD_ERR_INVALID;
    embedding_kernel<<<(unsigned)n, 256, 0, (cudaStream_t)stream>>>(*table, d_ids, d_out);
    WD_CUDA_CHECK(cudaGetLastError());
    return WD_OK;
}

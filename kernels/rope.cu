/*
 * CUDA RoPE: one block per (token, head), one thread per rotated pair. Each thread
 * reads its pair into registers before a barrier and writes after it, because the
 * interleaved layout writes pair i to channels i and half + i, which other threads
 * read from.
 */
#include "kernels/cuda_check.h"
#include "kernels/cuda_ops.h"

static __global__ void rope_kernel(struct wd_rope rope, float *x, int n_heads, int head_stride,
                                   int off, const int32_t *pos)
{
    int64_t t = blockIdx.x / n_heads;
    int h = blockIdx.x % n_heads, half = rope.rot_dim / 2, i = threadIdx.x;
    float *v = x + (t * n_heads + h) * (int64_t)head_stride + off;
    float a = 0.0f, b = 0.0f, c = 0.0f, s = 0.0f;
    if (i < half) {
        float f = (float)pos[t] * rope.inv_freq[i];
        c = cosf(f) * rope.attention_scaling;
        s = sinf(f) * rope.attention_scaling;
        a = rope.is_interleaved ? v[2 * i] : v[i];
        b = rope.is_interleaved ? v[2 * i + 1] : v[half + i];
    }
    __syncthreads();
    if (i < half) {
        v[i] = a * c - b * s;
        v[half + i] = b * c + a * s;
    }
}

extern "C" enum wd_status wd_cuda_rope_apply(const struct wd_rope *rope, float *d_x,
                                             int64_t n_tokens, int n_heads, int head_stride,
                                             int off, const int32_t *d_pos, void *stream)
{
    if (n_tokens <= 0 || n_heads <= 0)
        return WD_OK;
    int half = rope->rot_dim / 2;
    if (rope->rot_dim <= 0 || rope->rot_dim % 2 || rope->rot_dim > WD_ROPE_MAX_DIM || off < 0 ||
        off + rope->rot_dim > head_stride || n_tokens * n_heads > 0x7fffffff)
        return WD_ERR_INVALID;
    int threads = (half + 31) / 32 * 32;
    rope_kernel<<<(unsigned)(n_tokens * n_heads), threads, 0, (cudaStream_t)stream>>>(
        *rope, d_x, n_heads, head_stride, off, d_pos);
    WD_CUDA_CHECK(cudaGetLastError());
    return WD_OK;
}

/*
 * Host API of the CUDA twins of the reference ops (the *.cu files in kernels/).
 *
 * Every op takes device pointers (d_*) with the same shapes, layouts and
 * semantics as its _ref counterpart, plus a cudaStream_t passed as void * so
 * that C code can call them without CUDA headers (NULL = the default stream).
 * Ops only enqueue work: results are ready after wd_cuda_stream_sync. Launch
 * errors come back as a wd_status, logged once where they happen. Structs
 * that carry pointers (wd_weight data/scale_inv, wd_rope inv_freq) must carry
 * device pointers here. Compiled only when nvcc is present (libwideep_cuda).
 */
#ifndef WD_KERNELS_CUDA_OPS_H
#define WD_KERNELS_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "common/util/status.h"
#include "kernels/rope.h"
#include "kernels/weight.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest top_k / n_group / n_experts the gate kernels accept (per-thread arrays). */
#define WD_CUDA_GATE_MAX_TOPK 32
#define WD_CUDA_GATE_MAX_EXPERTS 1024

/* Number of visible CUDA devices; 0 (and WD_OK) when there is no device or no driver. */
enum wd_status wd_cuda_device_count(int *n_p);
enum wd_status wd_cuda_alloc(size_t bytes, void **d_p);
void wd_cuda_free(void *d); /* NULL-safe */
enum wd_status wd_cuda_copy_to_device(void *d_dst, const void *src, size_t bytes);
enum wd_status wd_cuda_copy_to_host(void *dst, const void *d_src, size_t bytes);
enum wd_status wd_cuda_stream_sync(void *stream);

/* wd_rmsnorm_ref. d_x: [n, dim]; d_gamma: [dim]; d_y: [n, dim] (may equal d_x). */
enum wd_status wd_cuda_rmsnorm(const float *d_x, const float *d_gamma, int64_t n, int64_t dim,
                               float eps, float *d_y, void *stream);

/* wd_silu_mul_ref. d_gate, d_up, d_out: [n] (d_out may equal either input). */
enum wd_status wd_cuda_silu_mul(const float *d_gate, const float *d_up, int64_t n, float *d_out,
                                void *stream);

/* wd_embedding_ref. table: [vocab, hidden] any weight dtype, device memory; d_ids: [n];
 * d_out: [n, hidden]. */
enum wd_status wd_cuda_embedding(const struct wd_weight *table, const int32_t *d_ids, int64_t n,
                                 float *d_out, void *stream);

/* wd_rope_apply_ref; rope->inv_freq is a device pointer. d_x: [n_tokens, n_heads, head_stride];
 * d_pos: [n_tokens]. */
enum wd_status wd_cuda_rope_apply(const struct wd_rope *rope, float *d_x, int64_t n_tokens,
                                  int n_heads, int head_stride, int off, const int32_t *d_pos,
                                  void *stream);

/* wd_linear_ref: y = x @ W^T. w: [rows, cols] F32/F16/BF16/F8_E4M3 in device memory;
 * d_x: [n, cols]; d_y: [n, rows] (must not alias d_x). */
enum wd_status wd_cuda_linear(const struct wd_weight *w, const float *d_x, int64_t n, float *d_y,
                              void *stream);

/* wd_moe_gate_softmax_topk_ref. d_logits: [n, n_experts]; d_idx, d_w: [n, top_k]. */
enum wd_status wd_cuda_moe_gate_softmax_topk(const float *d_logits, int64_t n, int n_experts,
                                             int top_k, int norm_topk_prob, int32_t *d_idx,
                                             float *d_w, void *stream);

/* wd_moe_gate_sigmoid_grouped_ref. d_bias: [n_experts] or NULL. */
enum wd_status wd_cuda_moe_gate_sigmoid_grouped(const float *d_logits, int64_t n, int n_experts,
                                                int top_k, int n_group, int topk_group,
                                                const float *d_bias, int norm_topk_prob,
                                                float routed_scaling_factor, int32_t *d_idx,
                                                float *d_w, void *stream);

#ifdef __cplusplus
}
#endif

#endif

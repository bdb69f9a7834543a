/* Device management for the CUDA ops (count, memory, copies, sync) and the generic
 * error converter behind WD_CUDA_CHECK. */
#include "kernels/cuda_check.h"
#include "kernels/cuda_ops.h"

extern "C" { /* log.h has no C++ guards of its own */
#include "common/util/log.h"
}

extern "C" enum wd_status wd_check_failed(const char *lib, enum wd_status status, const char *text,
                                          const char *expr, const char *file, int line)
{
    wd_log(WD_LOG_ERROR, "kernels", "%s error: %s (%s) at %s:%d", lib, text, expr, file, line);
    return status;
}

extern "C" enum wd_status wd_cuda_device_count(int *n_p)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver) {
        (void)cudaGetLastError(); /* clear the sticky-free error so later calls start clean */
        *n_p = 0;
        return WD_OK;
    }
    WD_CUDA_CHECK(e);
    *n_p = n;
    return WD_OK;
}

extern "C" enum wd_status wd_cuda_alloc(size_t bytes, void **d_p)
{
    void *d = NULL;
    WD_CUDA_CHECK(cudaMalloc(&d, bytes ? bytes : 1));
    *d_p = d;
    return WD_OK;
}

extern "C" void wd_cuda_free(void *d)
{
    if (d)
        cudaFree(d);
}

extern "C" enum wd_status wd_cuda_copy_to_device(void *d_dst, const void *src, size_t bytes)
{
    if (bytes)
        WD_CUDA_CHECK(cudaMemcpy(d_dst, src, bytes, cudaMemcpyHostToDevice));
    return WD_OK;
}

extern "C" enum wd_status wd_cuda_copy_to_host(void *dst, const void *d_src, size_t bytes)
{
    if (bytes)
        WD_CUDA_CHECK(cudaMemcpy(dst, d_src, bytes, cudaMemcpyDeviceToHost));
    return WD_OK;
}

extern "C" enum wd_status wd_cuda_stream_sync(void *stream)
{
    WD_CUDA_CHECK(cudaStreamSynchronize((cudaStream_t)stream));
    return WD_OK;
}

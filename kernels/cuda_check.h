/*
 * Error checks for CUDA runtime calls in the .cu files, built on one generic
 * converter: WD_CHECK_FAILED logs "<lib> error: <text> (<expr>) at file:line"
 * once and yields the wd_status the caller returns. Library-specific macros
 * (WD_CUDA_CHECK here; NCCL and UCX later) only map their error codes.
 * Include from CUDA sources only (needs cuda_runtime.h).
 */
#ifndef WD_KERNELS_CUDA_CHECK_H
#define WD_KERNELS_CUDA_CHECK_H

#include <cuda_runtime.h>

#include "common/util/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Logs the failure and returns status (the generic converter). */
enum wd_status wd_check_failed(const char *lib, enum wd_status status, const char *text,
                               const char *expr, const char *file, int line);

#ifdef __cplusplus
}
#endif

static inline enum wd_status wd_cuda_status(cudaError_t e)
{
    switch (e) {
    case cudaSuccess:
        return WD_OK;
    case cudaErrorMemoryAllocation:
        return WD_ERR_NOMEM;
    case cudaErrorInvalidValue:
    case cudaErrorInvalidConfiguration:
        return WD_ERR_INVALID;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorNoKernelImageForDevice:
        return WD_ERR_UNSUPPORTED;
    default:
        return WD_ERR_IO;
    }
}

#define WD_CUDA_CHECK(expr)                                                                        \
    do {                                                                                           \
        cudaError_t wd_cuda_e_ = (expr);                                                           \
        if (wd_cuda_e_ != cudaSuccess)                                                             \
            return wd_check_failed("cuda", wd_cuda_status(wd_cuda_e_),                             \
                                   cudaGetErrorString(wd_cuda_e_), #expr, __FILE__, __LINE__);     \
    } while (0)

#endif

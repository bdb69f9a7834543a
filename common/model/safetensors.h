/*
 * Read-only access to the tensors of a safetensors checkpoint.
 *
 * A wd_safetensors is one model's set of safetensors files (a single
 * model.safetensors, or the shards named by model.safetensors.index.json), each
 * mapped read-only (MAP_PRIVATE) for the object's lifetime: tensor data pointers
 * point into the maps and stay valid until wd_safetensors_close. Every header is
 * validated when opened (dtype, shape, byte range inside the file, sizes, no
 * overlaps, no duplicates), so a tensor handed out is always safe to read in full.
 * Tensors are kept sorted by name; lookups are a binary search.
 * Data is not copied or converted. Each tensor's data is aligned to its dtype size
 * (safetensors writers pad the header to 8 bytes; a file that breaks this is refused),
 * so kernels may read it through typed pointers.
 * After opening the object is immutable and may be read from any thread.
 */
#ifndef WD_MODEL_SAFETENSORS_H
#define WD_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/util/status.h"
#include "kernels/dtype.h"

#define WD_MAX_DIMS 8
/* Largest accepted JSON header; DeepSeek-V3's largest shard header is well under 1 MB. */
#define WD_SAFETENSORS_MAX_HEADER (100u * 1000u * 1000u)

struct wd_tensor_info {
    const char *name; /* owned by the wd_safetensors */
    enum wd_dtype dtype;
    int n_dims;                 /* 0 for a scalar */
    int64_t shape[WD_MAX_DIMS]; /* shape[0..n_dims), the rest 0 */
    const void *data;           /* points into the mmap (or the buffer given to _parse) */
    size_t nbytes;              /* product(shape) * dtype size */
};

struct wd_safetensors;

/* Opens every safetensors file of a model directory: the shards listed in
 * model.safetensors.index.json when it exists, else model.safetensors.
 * Errors (message names the file and cause): WD_ERR_NOT_FOUND (neither file, a shard
 * missing, a tensor of the index missing), WD_ERR_IO, WD_ERR_FORMAT (bad index or header),
 * WD_ERR_UNSUPPORTED (dtype), WD_ERR_NOMEM. On error nothing is left allocated or mapped. */
enum wd_status wd_safetensors_open(const char *model_dir, struct wd_safetensors **st_p,
                                   struct wd_error *err);

/* Opens one .safetensors file. Errors as for wd_safetensors_open. */
enum wd_status wd_safetensors_open_file(const char *path, struct wd_safetensors **st_p,
                                        struct wd_error *err);

/* Unmaps and frees everything; NULL-safe. Invalidates every wd_tensor_info handed out. */
void wd_safetensors_close(struct wd_safetensors *st);

/* The tensor called name, or NULL if absent. O(log n). */
const struct wd_tensor_info *wd_safetensors_find(const struct wd_safetensors *st, const char *name);

/* Finds name and checks it has exactly n_dims dimensions of the given shape. dtype is not
 * checked. Errors: WD_ERR_NOT_FOUND "tensor NAME: missing from checkpoint",
 * WD_ERR_FORMAT "tensor NAME: shape [16, 64] expected [16, 128]". *t_p written on success. */
enum wd_status wd_safetensors_get(const struct wd_safetensors *st, const char *name, int n_dims,
                                  const int64_t *shape, const struct wd_tensor_info **t_p,
                                  struct wd_error *err);

/* Number of tensors over all files. */
size_t wd_safetensors_count(const struct wd_safetensors *st);

/* The i-th tensor in name order (strcmp), i < wd_safetensors_count. */
const struct wd_tensor_info *wd_safetensors_at(const struct wd_safetensors *st, size_t i);

/* Parses and validates one file's bytes from memory (no mmap; buf is borrowed and must
 * outlive *st_p, whose data pointers point into it). Used by the fuzz target and tests.
 * Close the result with wd_safetensors_close. */
enum wd_status wd_safetensors_parse(const uint8_t *buf, size_t len, struct wd_safetensors **st_p,
                                    struct wd_error *err);

#endif

/*
 * wd_kv_pool: the paged KV cache of one attention-DP rank.
 *
 * The whole cache is one page-aligned anonymous mapping (the region), sized at start-up
 * from the config, so serving never allocates and the region can be registered once with
 * UCX for remote writes. Inside it every layer owns n_pages * page_size slots of K rows
 * (or one latent row for MLA, v_row = 0), then every layer's V rows; a slot is
 * page_id * page_size + offset. wd_kv_pool_geometry states the byte strides (layer, page,
 * slot, head) so a writer on another machine addresses any (layer, page, head range)
 * without knowing this code.
 *
 * Pages are handed out from a LIFO free list (recently freed pages are warm in cache),
 * all-or-nothing, and every page's state is tracked: free, reserved (held for a request
 * whose KV has not arrived yet: decode's lease before prefill runs) or in use. Freeing a
 * page that is already free is refused (WD_ERR_INVALID, logged) instead of corrupting the
 * free list. Not thread-safe: owned by the scheduler thread of its rank.
 */
#ifndef WD_KV_POOL_H
#define WD_KV_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "common/util/status.h"
#include "kernels/dtype.h"

struct wd_kv_pool_config {
    int n_layers;
    int page_size; /* tokens per page */
    int n_pages;
    int k_row;           /* elements per slot of K (or of the MLA latent) */
    int v_row;           /* elements per slot of V; 0 when the model has no separate V (MLA) */
    int n_heads;         /* heads per K/V row (GQA KV heads; 1 for MLA); 0 = 1 */
    enum wd_dtype dtype; /* WD_DTYPE_F32 (the default, 0) or WD_DTYPE_BF16 */
};

/* Where element e of head h at slot s of page p of layer l lives, in bytes from the region
 * base: k_offset + l * layer_stride_k + p * page_stride_k + s * slot_stride_k +
 * h * head_stride_k + e * elem_bytes (the same with _v for V). Pages of one layer are
 * contiguous, so a run of consecutive page ids with every head is one block of bytes. */
struct wd_kv_geometry {
    enum wd_dtype dtype;
    size_t elem_bytes;
    int n_layers, n_pages, page_size, n_heads;
    int k_row, v_row;          /* elements per slot */
    size_t k_offset, v_offset; /* v_offset is meaningless when v_row == 0 */
    size_t layer_stride_k, layer_stride_v;
    size_t page_stride_k, page_stride_v;
    size_t slot_stride_k, slot_stride_v;
    size_t head_stride_k, head_stride_v;
    size_t region_bytes; /* the whole mapping (a multiple of the OS page size) */
};

enum wd_kv_page_state { WD_KV_PAGE_FREE = 0, WD_KV_PAGE_RESERVED, WD_KV_PAGE_IN_USE };

struct wd_kv_pool {
    struct wd_kv_pool_config cfg;
    struct wd_kv_geometry geo;
    uint8_t *region;   /* [region_bytes] the one mapping */
    int32_t *free_ids; /* [n_pages] stack of free page ids */
    uint8_t *state;    /* [n_pages] enum wd_kv_page_state */
    int n_free, n_reserved;
};

enum wd_status wd_kv_pool_create(const struct wd_kv_pool_config *cfg, struct wd_kv_pool **pool_p,
                                 struct wd_error *err);
void wd_kv_pool_destroy(struct wd_kv_pool *pool); /* NULL-safe */

/* Bytes of K and V data one pool of this config holds (for sizing the page count to a
 * memory budget); the region rounds this up to whole OS pages. */
size_t wd_kv_pool_bytes(const struct wd_kv_pool_config *cfg);

/* "auto" | "fp32" | "float32" | "bf16" | "bfloat16" -> the cache dtype. auto is the CPU
 * engine's activation dtype (fp32), as SGLang's auto follows the model's compute dtype.
 * WD_ERR_INVALID naming the value otherwise. */
enum wd_status wd_kv_dtype_parse(const char *s, enum wd_dtype *dtype_p, struct wd_error *err);
/* "fp32" or "bf16". */
const char *wd_kv_dtype_name(enum wd_dtype dtype);

/* K (or latent) rows of a layer: [n_pages * page_size, k_row] in the pool's dtype. */
void *wd_kv_pool_k(struct wd_kv_pool *pool, int layer);
/* V rows of a layer: [n_pages * page_size, v_row] in the pool's dtype, NULL for MLA. */
void *wd_kv_pool_v(struct wd_kv_pool *pool, int layer);

/* Takes n pages for immediate use (state in use), writing their ids to pages_out;
 * WD_ERR_NOMEM (nothing taken) if fewer are free. */
enum wd_status wd_kv_pool_alloc(struct wd_kv_pool *pool, int n, int32_t *pages_out);
/* The same, but the pages are reserved (held for KV that a remote writer will fill). */
enum wd_status wd_kv_pool_reserve(struct wd_kv_pool *pool, int n, int32_t *pages_out);
/* Reserved pages become in use (their KV arrived). WD_ERR_INVALID if one is not reserved. */
enum wd_status wd_kv_pool_commit(struct wd_kv_pool *pool, const int32_t *pages, int n);
/* Returns pages (reserved or in use) to the pool. An id out of range or already free is
 * refused with WD_ERR_INVALID (and a log line) before anything is freed. */
enum wd_status wd_kv_pool_free(struct wd_kv_pool *pool, const int32_t *pages, int n);

int wd_kv_pool_n_free(const struct wd_kv_pool *pool);
int wd_kv_pool_n_reserved(const struct wd_kv_pool *pool);
enum wd_kv_page_state wd_kv_pool_page_state(const struct wd_kv_pool *pool, int32_t page);

#endif

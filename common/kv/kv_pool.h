/*
 * wd_kv_pool: the paged KV cache of one attention-DP rank.
 *
 * Every layer owns two arrays of n_pages * page_size slots (K and V rows, or
 * one latent row for MLA with v_row = 0); a slot is page_id * page_size +
 * offset. The whole cache is one allocation sized at start-up from the config,
 * so serving never allocates. Pages are handed out from a LIFO free list
 * (recently freed pages are warm in cache). All-or-nothing allocation keeps a
 * failed request from holding a partial set. Not thread-safe: owned by the
 * scheduler thread of its rank.
 */
#ifndef WD_KV_POOL_H
#define WD_KV_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "common/util/status.h"

struct wd_kv_pool_config {
    int n_layers;
    int page_size; /* tokens per page */
    int n_pages;
    int k_row; /* f32 elements per slot of K (or of the MLA latent) */
    int v_row; /* f32 elements per slot of V; 0 when the model has no separate V (MLA) */
};

struct wd_kv_pool {
    struct wd_kv_pool_config cfg;
    float *storage;    /* [n_layers][n_slots][k_row + v_row] laid out as all K then all V */
    int32_t *free_ids; /* [n_pages] stack of free page ids */
    int n_free;
};

enum wd_status wd_kv_pool_create(const struct wd_kv_pool_config *cfg, struct wd_kv_pool **pool_p,
                                 struct wd_error *err);
void wd_kv_pool_destroy(struct wd_kv_pool *pool);

/* Bytes one pool of this config needs (for sizing the page count to a memory budget). */
size_t wd_kv_pool_bytes(const struct wd_kv_pool_config *cfg);

/* K (or latent) rows of a layer: [n_pages * page_size, k_row] f32. */
float *wd_kv_pool_k(struct wd_kv_pool *pool, int layer);
/* V rows of a layer: [n_pages * page_size, v_row] f32, NULL for MLA. */
float *wd_kv_pool_v(struct wd_kv_pool *pool, int layer);

/* Takes n pages, writing their ids to pages_out; WD_ERR_NOMEM (nothing taken) if fewer are free. */
enum wd_status wd_kv_pool_alloc(struct wd_kv_pool *pool, int n, int32_t *pages_out);
/* Returns pages to the pool. Each id must be one this pool handed out and not yet freed. */
void wd_kv_pool_free(struct wd_kv_pool *pool, const int32_t *pages, int n);
int wd_kv_pool_n_free(const struct wd_kv_pool *pool);

#endif

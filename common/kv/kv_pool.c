/* Paged KV pool: one storage block carved per layer, and a page free list. */
#include "common/kv/kv_pool.h"

#include <stdlib.h>

static size_t n_slots(const struct wd_kv_pool_config *cfg)
{
    return (size_t)cfg->n_pages * (size_t)cfg->page_size;
}

size_t wd_kv_pool_bytes(const struct wd_kv_pool_config *cfg)
{
    return (size_t)cfg->n_layers * n_slots(cfg) * (size_t)(cfg->k_row + cfg->v_row) * sizeof(float);
}

enum wd_status wd_kv_pool_create(const struct wd_kv_pool_config *cfg, struct wd_kv_pool **pool_p,
                                 struct wd_error *err)
{
    if (cfg->n_layers <= 0 || cfg->page_size <= 0 || cfg->n_pages <= 0 || cfg->k_row <= 0 ||
        cfg->v_row < 0)
        return wd_error_set(err, WD_ERR_INVALID,
                            "kv pool: invalid config (layers %d, page size %d, pages %d, rows "
                            "%d/%d)",
                            cfg->n_layers, cfg->page_size, cfg->n_pages, cfg->k_row, cfg->v_row);
    struct wd_kv_pool *pool = calloc(1, sizeof(*pool));
    if (!pool)
        return wd_error_set(err, WD_ERR_NOMEM, "kv pool: out of memory");
    pool->cfg = *cfg;
    size_t bytes = wd_kv_pool_bytes(cfg);
    /* calloc so never-written slots read as zeros rather than garbage. */
    pool->storage = calloc(1, bytes);
    pool->free_ids = malloc((size_t)cfg->n_pages * sizeof(int32_t));
    if (!pool->storage || !pool->free_ids) {
        wd_kv_pool_destroy(pool);
        return wd_error_set(err, WD_ERR_NOMEM, "kv pool: cannot allocate %zu bytes for %d pages",
                            bytes, cfg->n_pages);
    }
    /* Push in reverse so page 0 is handed out first: deterministic, easy to read in tests. */
    for (int i = 0; i < cfg->n_pages; i++)
        pool->free_ids[i] = cfg->n_pages - 1 - i;
    pool->n_free = cfg->n_pages;
    *pool_p = pool;
    return WD_OK;
}

void wd_kv_pool_destroy(struct wd_kv_pool *pool)
{
    if (!pool)
        return;
    free(pool->storage);
    free(pool->free_ids);
    free(pool);
}

float *wd_kv_pool_k(struct wd_kv_pool *pool, int layer)
{
    WD_ASSERT(layer >= 0 && layer < pool->cfg.n_layers);
    return pool->storage + (size_t)layer * n_slots(&pool->cfg) * (size_t)pool->cfg.k_row;
}

float *wd_kv_pool_v(struct wd_kv_pool *pool, int layer)
{
    WD_ASSERT(layer >= 0 && layer < pool->cfg.n_layers);
    if (pool->cfg.v_row == 0)
        return NULL;
    size_t all_k = (size_t)pool->cfg.n_layers * n_slots(&pool->cfg) * (size_t)pool->cfg.k_row;
    return pool->storage + all_k + (size_t)layer * n_slots(&pool->cfg) * (size_t)pool->cfg.v_row;
}

enum wd_status wd_kv_pool_alloc(struct wd_kv_pool *pool, int n, int32_t *pages_out)
{
    WD_ASSERT(n >= 0);
    if (n > pool->n_free)
        return WD_ERR_NOMEM;
    for (int i = 0; i < n; i++)
        pages_out[i] = pool->free_ids[--pool->n_free];
    return WD_OK;
}

void wd_kv_pool_free(struct wd_kv_pool *pool, const int32_t *pages, int n)
{
    for (int i = 0; i < n; i++) {
        WD_ASSERT(pages[i] >= 0 && pages[i] < pool->cfg.n_pages);
        WD_ASSERT(pool->n_free < pool->cfg.n_pages);
        pool->free_ids[pool->n_free++] = pages[i];
    }
}

int wd_kv_pool_n_free(const struct wd_kv_pool *pool)
{
    return pool->n_free;
}

/* Paged KV pool: one mapped region carved per layer, a page free list and page states. */
#include "common/kv/kv_pool.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/util/log.h"

static size_t n_slots(const struct wd_kv_pool_config *cfg)
{
    return (size_t)cfg->n_pages * (size_t)cfg->page_size;
}

size_t wd_kv_pool_bytes(const struct wd_kv_pool_config *cfg)
{
    return (size_t)cfg->n_layers * n_slots(cfg) * (size_t)(cfg->k_row + cfg->v_row) *
           wd_dtype_size(cfg->dtype);
}

enum wd_status wd_kv_dtype_parse(const char *s, enum wd_dtype *dtype_p, struct wd_error *err)
{
    if (!strcmp(s, "auto") || !strcmp(s, "fp32") || !strcmp(s, "float32"))
        *dtype_p = WD_DTYPE_F32;
    else if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16"))
        *dtype_p = WD_DTYPE_BF16;
    else
        return wd_error_set(err, WD_ERR_INVALID,
                            "--kv-cache-dtype %s: expected auto, fp32 (float32) or bf16 (bfloat16)",
                            s);
    return WD_OK;
}

const char *wd_kv_dtype_name(enum wd_dtype dtype)
{
    return dtype == WD_DTYPE_BF16 ? "bf16" : "fp32";
}

static void fill_geometry(const struct wd_kv_pool_config *cfg, struct wd_kv_geometry *g)
{
    size_t es = wd_dtype_size(cfg->dtype), slots = n_slots(cfg);
    int heads = cfg->n_heads > 0 ? cfg->n_heads : 1;
    memset(g, 0, sizeof(*g));
    g->dtype = cfg->dtype;
    g->elem_bytes = es;
    g->n_layers = cfg->n_layers;
    g->n_pages = cfg->n_pages;
    g->page_size = cfg->page_size;
    g->n_heads = heads;
    g->k_row = cfg->k_row;
    g->v_row = cfg->v_row;
    g->k_offset = 0;
    g->slot_stride_k = (size_t)cfg->k_row * es;
    g->page_stride_k = g->slot_stride_k * (size_t)cfg->page_size;
    g->layer_stride_k = g->slot_stride_k * slots;
    g->head_stride_k = (size_t)(cfg->k_row / heads) * es;
    g->v_offset = g->layer_stride_k * (size_t)cfg->n_layers;
    g->slot_stride_v = (size_t)cfg->v_row * es;
    g->page_stride_v = g->slot_stride_v * (size_t)cfg->page_size;
    g->layer_stride_v = g->slot_stride_v * slots;
    g->head_stride_v = (size_t)(cfg->v_row / heads) * es;
    long os_page = sysconf(_SC_PAGESIZE);
    size_t align = os_page > 0 ? (size_t)os_page : 4096;
    size_t bytes = wd_kv_pool_bytes(cfg);
    g->region_bytes = (bytes + align - 1) / align * align;
}

enum wd_status wd_kv_pool_create(const struct wd_kv_pool_config *cfg, struct wd_kv_pool **pool_p,
                                 struct wd_error *err)
{
    int heads = cfg->n_heads > 0 ? cfg->n_heads : 1;
    if (cfg->n_layers <= 0 || cfg->page_size <= 0 || cfg->n_pages <= 0 || cfg->k_row <= 0 ||
        cfg->v_row < 0 || cfg->k_row % heads != 0 || cfg->v_row % heads != 0)
        return wd_error_set(err, WD_ERR_INVALID,
                            "kv pool: invalid config (layers %d, page size %d, pages %d, rows "
                            "%d/%d, heads %d)",
                            cfg->n_layers, cfg->page_size, cfg->n_pages, cfg->k_row, cfg->v_row,
                            heads);
    if (cfg->dtype != WD_DTYPE_F32 && cfg->dtype != WD_DTYPE_BF16)
        return wd_error_set(err, WD_ERR_UNSUPPORTED, "kv pool: dtype %s (fp32 or bf16 only)",
                            wd_dtype_name(cfg->dtype));
    struct wd_kv_pool *pool = calloc(1, sizeof(*pool));
    if (!pool)
        return wd_error_set(err, WD_ERR_NOMEM, "kv pool: out of memory");
    pool->cfg = *cfg;
    fill_geometry(cfg, &pool->geo);
    /* One anonymous mapping: page-aligned and zeroed (never-written slots read as zeros),
     * and a single range for a NIC to register. */
    void *region = mmap(NULL, pool->geo.region_bytes, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    pool->region = region == MAP_FAILED ? NULL : region;
    pool->free_ids = malloc((size_t)cfg->n_pages * sizeof(int32_t));
    pool->state = calloc((size_t)cfg->n_pages, 1);
    if (!pool->region || !pool->free_ids || !pool->state) {
        size_t bytes = pool->geo.region_bytes;
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
    if (pool->region)
        munmap(pool->region, pool->geo.region_bytes);
    free(pool->free_ids);
    free(pool->state);
    free(pool);
}

void *wd_kv_pool_k(struct wd_kv_pool *pool, int layer)
{
    WD_ASSERT(layer >= 0 && layer < pool->cfg.n_layers);
    return pool->region + pool->geo.k_offset + (size_t)layer * pool->geo.layer_stride_k;
}

void *wd_kv_pool_v(struct wd_kv_pool *pool, int layer)
{
    WD_ASSERT(layer >= 0 && layer < pool->cfg.n_layers);
    if (pool->cfg.v_row == 0)
        return NULL;
    return pool->region + pool->geo.v_offset + (size_t)layer * pool->geo.layer_stride_v;
}

static enum wd_status take(struct wd_kv_pool *pool, int n, int32_t *pages_out, uint8_t state)
{
    WD_ASSERT(n >= 0);
    if (n > pool->n_free)
        return WD_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        int32_t p = pool->free_ids[--pool->n_free];
        WD_ASSERT(pool->state[p] == WD_KV_PAGE_FREE);
        pool->state[p] = state;
        pages_out[i] = p;
    }
    if (state == WD_KV_PAGE_RESERVED)
        pool->n_reserved += n;
    return WD_OK;
}

enum wd_status wd_kv_pool_alloc(struct wd_kv_pool *pool, int n, int32_t *pages_out)
{
    return take(pool, n, pages_out, WD_KV_PAGE_IN_USE);
}

enum wd_status wd_kv_pool_reserve(struct wd_kv_pool *pool, int n, int32_t *pages_out)
{
    return take(pool, n, pages_out, WD_KV_PAGE_RESERVED);
}

enum wd_status wd_kv_pool_commit(struct wd_kv_pool *pool, const int32_t *pages, int n)
{
    for (int i = 0; i < n; i++)
        if (pages[i] < 0 || pages[i] >= pool->cfg.n_pages ||
            pool->state[pages[i]] != WD_KV_PAGE_RESERVED) {
            wd_log(WD_LOG_ERROR, "kv", "commit of page %d, which is not reserved", pages[i]);
            return WD_ERR_INVALID;
        }
    for (int i = 0; i < n; i++)
        pool->state[pages[i]] = WD_KV_PAGE_IN_USE;
    pool->n_reserved -= n;
    return WD_OK;
}

/* Marks of the check pass in wd_kv_pool_free: a page seen once in this call. */
#define MARK_IN_USE 0xff
#define MARK_RESERVED 0xfe

static void unmark(struct wd_kv_pool *pool, const int32_t *pages, int n)
{
    for (int i = 0; i < n; i++)
        pool->state[pages[i]] =
            pool->state[pages[i]] == MARK_RESERVED ? WD_KV_PAGE_RESERVED : WD_KV_PAGE_IN_USE;
}

enum wd_status wd_kv_pool_free(struct wd_kv_pool *pool, const int32_t *pages, int n)
{
    /* Check pass: every id valid and not free, no id twice in this call (marked as seen,
     * restored on a refusal), so a bad call changes nothing. */
    int reserved = 0;
    for (int i = 0; i < n; i++) {
        int32_t p = pages[i];
        int bad = p < 0 || p >= pool->cfg.n_pages;
        if (!bad && pool->state[p] != WD_KV_PAGE_FREE && pool->state[p] < MARK_RESERVED) {
            reserved += pool->state[p] == WD_KV_PAGE_RESERVED;
            pool->state[p] = pool->state[p] == WD_KV_PAGE_RESERVED ? MARK_RESERVED : MARK_IN_USE;
            continue;
        }
        unmark(pool, pages, i);
        wd_log(WD_LOG_ERROR, "kv", "free of page %d refused: %s", p,
               bad ? "out of range" : "already free (double free)");
        return WD_ERR_INVALID;
    }
    for (int i = 0; i < n; i++) {
        pool->state[pages[i]] = WD_KV_PAGE_FREE;
        pool->free_ids[pool->n_free++] = pages[i];
    }
    pool->n_reserved -= reserved;
    return WD_OK;
}

int wd_kv_pool_n_free(const struct wd_kv_pool *pool)
{
    return pool->n_free;
}

int wd_kv_pool_n_reserved(const struct wd_kv_pool *pool)
{
    return pool->n_reserved;
}

enum wd_kv_page_state wd_kv_pool_page_state(const struct wd_kv_pool *pool, int32_t page)
{
    WD_ASSERT(page >= 0 && page < pool->cfg.n_pages);
    return (enum wd_kv_page_state)pool->state[page];
}

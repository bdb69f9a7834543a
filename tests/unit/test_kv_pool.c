/* KV pool: sizing, layer views, geometry, all-or-nothing allocation, free-list reuse,
 * page states and refused double frees. */
#include "common/kv/kv_pool.h"
#include "tests/unit/wd_test.h"

static void test_geometry(void)
{
    struct wd_kv_pool_config cfg = {
        .n_layers = 3, .page_size = 4, .n_pages = 5, .k_row = 6, .v_row = 2};
    struct wd_kv_pool *pool = NULL;
    WD_EXPECT_EQ_INT(wd_kv_pool_create(&cfg, &pool, NULL), WD_OK);
    WD_EXPECT_EQ_INT(wd_kv_pool_bytes(&cfg), 3 * 20 * 8 * 4);
    /* Layer views do not overlap and stay inside the one block. */
    float *k0 = wd_kv_pool_k(pool, 0), *k2 = wd_kv_pool_k(pool, 2), *v0 = wd_kv_pool_v(pool, 0);
    float *v2 = wd_kv_pool_v(pool, 2);
    WD_EXPECT(k2 - k0 == 2 * 20 * 6);
    WD_EXPECT(v0 - k0 == 3 * 20 * 6);
    WD_EXPECT(v2 - v0 == 2 * 20 * 2);
    k2[20 * 6 - 1] = 1.0f; /* last K element of the last layer */
    v2[20 * 2 - 1] = 2.0f;
    wd_kv_pool_destroy(pool);

    struct wd_kv_pool_config mla = {.n_layers = 2, .page_size = 2, .n_pages = 2, .k_row = 3};
    WD_EXPECT_EQ_INT(wd_kv_pool_create(&mla, &pool, NULL), WD_OK);
    WD_EXPECT(wd_kv_pool_v(pool, 1) == NULL);
    wd_kv_pool_destroy(pool);
}

static void test_alloc_free(void)
{
    struct wd_kv_pool_config cfg = {
        .n_layers = 1, .page_size = 16, .n_pages = 8, .k_row = 1, .v_row = 1};
    struct wd_kv_pool *pool = NULL;
    WD_EXPECT_EQ_INT(wd_kv_pool_create(&cfg, &pool, NULL), WD_OK);
    int32_t a[8], b[8];
    WD_EXPECT_EQ_INT(wd_kv_pool_alloc(pool, 5, a), WD_OK);
    WD_EXPECT_EQ_INT(a[0], 0);
    WD_EXPECT_EQ_INT(a[4], 4);
    WD_EXPECT_EQ_INT(wd_kv_pool_n_free(pool), 3);
    /* Asking for more than is free takes nothing. */
    WD_EXPECT_EQ_INT(wd_kv_pool_alloc(pool, 4, b), WD_ERR_NOMEM);
    WD_EXPECT_EQ_INT(wd_kv_pool_n_free(pool), 3);
    wd_kv_pool_free(pool, a + 1, 2);
    WD_EXPECT_EQ_INT(wd_kv_pool_n_free(pool), 5);
    WD_EXPECT_EQ_INT(wd_kv_pool_alloc(pool, 5, b), WD_OK);
    /* Every id is distinct across live allocations. */
    int seen[8] = {0};
    int live[] = {a[0], a[3], a[4], b[0], b[1], b[2], b[3], b[4]};
    for (int i = 0; i < 8; i++)
        seen[live[i]]++;
    for (int i = 0; i < 8; i++)
        WD_EXPECT_EQ_INT(seen[i], 1);
    WD_EXPECT_EQ_INT(wd_kv_pool_n_free(pool), 0);
    wd_kv_pool_destroy(pool);
}

static void test_bad_config(void)
{
    struct wd_kv_pool_config cfg = {.n_layers = 0, .page_size = 16, .n_pages = 8, .k_row = 1};
    struct wd_kv_pool *pool = NULL;
    struct wd_error err = {0};
    WD_EXPECT_EQ_INT(wd_kv_pool_create(&cfg, &pool, &err), WD_ERR_INVALID);
    WD_EXPECT(pool == NULL);
}

/* The stated geometry addresses exactly the layer views; the region is page-aligned. */
static void test_stated_geometry(void)
{
    struct wd_kv_pool_config cfg = {.n_layers = 3,
                                    .page_size = 4,
                                    .n_pages = 5,
                                    .k_row = 6,
                                    .v_row = 6,
                                    .n_heads = 2,
                                    .dtype = WD_DTYPE_BF16};
    struct wd_kv_pool *pool = NULL;
    WD_EXPECT_EQ_INT(wd_kv_pool_create(&cfg, &pool, NULL), WD_OK);
    if (!pool)
        return;
    const struct wd_kv_geometry *g = &pool->geo;
    WD_EXPECT_EQ_INT((uintptr_t)pool->region % 4096, 0);
    WD_EXPECT_EQ_INT(g->region_bytes % 4096, 0);
    WD_EXPECT(g->region_bytes >= wd_kv_pool_bytes(&cfg));
    WD_EXPECT_EQ_INT(g->elem_bytes, 2);
    WD_EXPECT_EQ_INT(g->head_stride_k, 3 * 2);
    WD_EXPECT_EQ_INT(g->slot_stride_k, 6 * 2);
    WD_EXPECT_EQ_INT(g->page_stride_k, 4 * 6 * 2);
    /* (layer 2, page 3, slot 1, head 1) by the geometry == by the layer view. */
    uint8_t *by_geo = pool->region + g->k_offset + 2 * g->layer_stride_k + 3 * g->page_stride_k +
                      1 * g->slot_stride_k + 1 * g->head_stride_k;
    uint8_t *by_view = (uint8_t *)wd_kv_pool_k(pool, 2) + ((3 * 4 + 1) * 6 + 3) * 2;
    WD_EXPECT(by_geo == by_view);
    uint8_t *v_geo = pool->region + g->v_offset + 1 * g->layer_stride_v + 4 * g->page_stride_v;
    WD_EXPECT(v_geo == (uint8_t *)wd_kv_pool_v(pool, 1) + 4 * 4 * 6 * 2);
    WD_EXPECT(v_geo + g->page_stride_v <= pool->region + g->region_bytes);
    wd_kv_pool_destroy(pool);
    struct wd_kv_pool_config bad = cfg;
    bad.dtype = WD_DTYPE_F8_E4M3;
    struct wd_error err = {0};
    WD_EXPECT_EQ_INT(wd_kv_pool_create(&bad, &pool, &err), WD_ERR_UNSUPPORTED);
    enum wd_dtype dt;
    WD_EXPECT_EQ_INT(wd_kv_dtype_parse("auto", &dt, &err), WD_OK);
    WD_EXPECT_EQ_INT(dt, WD_DTYPE_F32);
    WD_EXPECT_EQ_INT(wd_kv_dtype_parse("bf16", &dt, &err), WD_OK);
    WD_EXPECT_EQ_INT(dt, WD_DTYPE_BF16);
    WD_EXPECT_EQ_INT(wd_kv_dtype_parse("fp8_e5m2", &dt, &err), WD_ERR_INVALID);
}

/* Free -> reserved -> in use -> free; a double free or a duplicate in one call is refused and
 * changes nothing. */
static void test_page_states(void)
{
    struct wd_kv_pool_config cfg = {
        .n_layers = 1, .page_size = 16, .n_pages = 6, .k_row = 1, .v_row = 1};
    struct wd_kv_pool *pool = NULL;
    WD_EXPECT_EQ_INT(wd_kv_pool_create(&cfg, &pool, NULL), WD_OK);
    if (!pool)
        return;
    int32_t r[3], u[2];
    WD_EXPECT_EQ_INT(wd_kv_pool_reserve(pool, 3, r), WD_OK);
    WD_EXPECT_EQ_INT(wd_kv_pool_alloc(pool, 2, u), WD_OK);
    WD_EXPECT_EQ_INT(wd_kv_pool_page_state(pool, r[0]), WD_KV_PAGE_RESERVED);
    WD_EXPECT_EQ_INT(wd_kv_pool_page_state(pool, u[0]), WD_KV_PAGE_IN_USE);
    WD_EXPECT_EQ_INT(wd_kv_pool_n_reserved(pool), 3);
    WD_EXPECT_EQ_INT(wd_kv_pool_commit(pool, u, 1), WD_ERR_INVALID); /* not reserved */
    WD_EXPECT_EQ_INT(wd_kv_pool_commit(pool, r, 2), WD_OK);
    WD_EXPECT_EQ_INT(wd_kv_pool_n_reserved(pool), 1);
    WD_EXPECT_EQ_INT(wd_kv_pool_page_state(pool, r[1]), WD_KV_PAGE_IN_USE);
    int32_t dup[] = {u[0], u[1], u[0]};
    WD_EXPECT_EQ_INT(wd_kv_pool_free(pool, dup, 3), WD_ERR_INVALID);
    WD_EXPECT_EQ_INT(wd_kv_pool_n_free(pool), 1);
    WD_EXPECT_EQ_INT(wd_kv_pool_page_state(pool, u[0]), WD_KV_PAGE_IN_USE);
    WD_EXPECT_EQ_INT(wd_kv_pool_page_state(pool, u[1]), WD_KV_PAGE_IN_USE);
    int32_t out_of_range[] = {u[0], 99};
    WD_EXPECT_EQ_INT(wd_kv_pool_free(pool, out_of_range, 2), WD_ERR_INVALID);
    WD_EXPECT_EQ_INT(wd_kv_pool_free(pool, u, 2), WD_OK);
    WD_EXPECT_EQ_INT(wd_kv_pool_free(pool, u, 1), WD_ERR_INVALID); /* double free */
    WD_EXPECT_EQ_INT(wd_kv_pool_free(pool, r, 3), WD_OK);
    WD_EXPECT_EQ_INT(wd_kv_pool_n_reserved(pool), 0);
    WD_EXPECT_EQ_INT(wd_kv_pool_n_free(pool), 6);
    for (int p = 0; p < 6; p++)
        WD_EXPECT_EQ_INT(wd_kv_pool_page_state(pool, p), WD_KV_PAGE_FREE);
    wd_kv_pool_destroy(pool);
}

int main(void)
{
    WD_RUN(test_stated_geometry);
    WD_RUN(test_page_states);
    WD_RUN(test_geometry);
    WD_RUN(test_alloc_free);
    WD_RUN(test_bad_config);
    return wd_test_finish();
}

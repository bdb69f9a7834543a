/* KV pool: sizing, layer views, all-or-nothing allocation, free-list reuse. */
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

int main(void)
{
    WD_RUN(test_geometry);
    WD_RUN(test_alloc_free);
    WD_RUN(test_bad_config);
    return wd_test_finish();
}

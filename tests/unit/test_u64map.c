/* wd_u64map against a plain array oracle: random puts and removes (backward-shift deletion
 * keeps every other key reachable), growth, refusals. */
#include <stdlib.h>

#include "common/util/u64map.h"
#include "kernels/sampling.h"
#include "tests/unit/wd_test.h"

#define N_KEYS 5000

static void test_random_ops(void)
{
    struct wd_u64map m;
    WD_EXPECT_EQ_INT(wd_u64map_init(&m, 4, NULL), WD_OK);
    static uint64_t keys[N_KEYS];
    static int live[N_KEYS];
    uint64_t seed = 42;
    /* Distinct keys of two shapes: small sequential ones and ones differing only in high
     * bits (the mixer must spread both). */
    for (int i = 0; i < N_KEYS; i++)
        keys[i] = i % 2 ? (uint64_t)i + 1 : ((uint64_t)i << 40) | 1;
    for (int round = 0; round < 40000; round++) {
        int i = (int)(wd_splitmix64(&seed) % N_KEYS);
        if (live[i]) {
            WD_EXPECT(wd_u64map_remove(&m, keys[i]) == &live[i]);
            live[i] = 0;
        } else {
            WD_EXPECT_EQ_INT(wd_u64map_put(&m, keys[i], &live[i]), WD_OK);
            live[i] = 1;
        }
        if (round % 4000 == 0) {
            size_t n = 0;
            for (int j = 0; j < N_KEYS; j++) {
                n += (size_t)live[j];
                WD_EXPECT(wd_u64map_get(&m, keys[j]) == (live[j] ? &live[j] : NULL));
            }
            WD_EXPECT_EQ_INT(m.n, n);
        }
    }
    WD_EXPECT_EQ_INT(wd_u64map_put(&m, 0, &live[0]), WD_ERR_INVALID);
    WD_EXPECT(wd_u64map_get(&m, 0) == NULL);
    WD_EXPECT(wd_u64map_remove(&m, 0) == NULL);
    wd_u64map_cleanup(&m);
}

static void test_refusals(void)
{
    struct wd_u64map m;
    WD_EXPECT_EQ_INT(wd_u64map_init(&m, 0, NULL), WD_OK);
    int a, b;
    WD_EXPECT_EQ_INT(wd_u64map_put(&m, 7, &a), WD_OK);
    WD_EXPECT_EQ_INT(wd_u64map_put(&m, 7, &b), WD_ERR_INVALID);
    WD_EXPECT(wd_u64map_get(&m, 7) == &a);
    WD_EXPECT(wd_u64map_remove(&m, 8) == NULL);
    WD_EXPECT(wd_u64map_remove(&m, 7) == &a);
    WD_EXPECT_EQ_INT(m.n, 0);
    wd_u64map_cleanup(&m);
    wd_u64map_cleanup(&m); /* idempotent */
}

int main(void)
{
    WD_RUN(test_random_ops);
    WD_RUN(test_refusals);
    return wd_test_finish();
}

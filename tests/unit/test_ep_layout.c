/* get_dispatch_layout (SPEC-EP 2, 11.1): counts and the routing mask against a
 * brute-force set construction, the count identities, node counts, bad input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/sampling.h"
#include "common/ep/ep_layout.h"
#include "tests/unit/wd_test.h"

/* Random routing: distinct experts per token, about a fifth of the slots -1, and
 * every 7th token with no valid slot at all. */
static void random_topk(uint64_t *s, int n, int k, int e, int32_t *idx)
{
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < k; j++) {
            int32_t v;
            int dup;
            do {
                v = (int32_t)(wd_splitmix64(s) % (uint64_t)e);
                dup = 0;
                for (int q = 0; q < j; q++)
                    dup |= idx[i * k + q] == v;
            } while (dup);
            idx[i * k + j] = v;
        }
        for (int j = 0; j < k; j++)
            if (i % 7 == 3 || wd_splitmix64(s) % 5 == 0)
                idx[i * k + j] = -1;
    }
}

static void check_case(int n, int k, int e, int r, int rpn, uint64_t seed)
{
    uint64_t s = seed;
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)(n * k + 1));
    uint8_t *in_rank = malloc((size_t)(n * r + 1));
    int32_t *per_rank = malloc(sizeof(int32_t) * (size_t)r);
    int32_t *per_node = malloc(sizeof(int32_t) * (size_t)r);
    int32_t *per_expert = malloc(sizeof(int32_t) * (size_t)e);
    random_topk(&s, n, k, e, idx);
    WD_EXPECT_EQ_INT(wd_ep_get_dispatch_layout(idx, n, k, e, r, rpn, per_rank, per_node, per_expert,
                                               in_rank, NULL),
                     WD_OK);
    int l = e / r, n_nodes = r / rpn;
    long valid = 0, sum_expert = 0, sum_rank = 0;
    for (int x = 0; x < e; x++) {
        int cnt = 0;
        for (int i = 0; i < n * k; i++)
            cnt += idx[i] == x;
        WD_EXPECT_EQ_INT(per_expert[x], cnt);
        sum_expert += per_expert[x];
    }
    for (int i = 0; i < n * k; i++)
        valid += idx[i] >= 0;
    WD_EXPECT_EQ_INT(sum_expert, valid);
    for (int j = 0; j < r; j++) {
        int cnt = 0;
        for (int i = 0; i < n; i++) {
            int want = 0; /* brute force: does any slot land on rank j? */
            for (int q = 0; q < k; q++)
                want |=
                    idx[i * k + q] >= 0 && idx[i * k + q] >= j * l && idx[i * k + q] < (j + 1) * l;
            WD_EXPECT_EQ_INT(in_rank[i * r + j], want);
            cnt += want;
        }
        WD_EXPECT_EQ_INT(per_rank[j], cnt);
        WD_EXPECT(per_rank[j] <= n);
        sum_rank += per_rank[j];
    }
    WD_EXPECT(sum_rank <= (long)n * k);
    for (int nd = 0; nd < n_nodes; nd++) {
        int cnt = 0;
        for (int i = 0; i < n; i++) {
            int any = 0;
            for (int j = nd * rpn; j < (nd + 1) * rpn; j++)
                any |= in_rank[i * r + j];
            cnt += any;
        }
        WD_EXPECT_EQ_INT(per_node[nd], cnt);
    }
    /* Determinism: a second run gives the same bytes. */
    uint8_t *again = malloc((size_t)(n * r + 1));
    int32_t *per_rank2 = malloc(sizeof(int32_t) * (size_t)r);
    int32_t *per_expert2 = malloc(sizeof(int32_t) * (size_t)e);
    WD_EXPECT_EQ_INT(
        wd_ep_get_dispatch_layout(idx, n, k, e, r, rpn, per_rank2, NULL, per_expert2, again, NULL),
        WD_OK);
    WD_EXPECT(memcmp(again, in_rank, (size_t)(n * r)) == 0);
    WD_EXPECT(memcmp(per_rank2, per_rank, sizeof(int32_t) * (size_t)r) == 0);
    WD_EXPECT(memcmp(per_expert2, per_expert, sizeof(int32_t) * (size_t)e) == 0);
    free(again);
    free(per_rank2);
    free(per_expert2);
    free(idx);
    free(in_rank);
    free(per_rank);
    free(per_node);
    free(per_expert);
}

static void test_random_cases(void)
{
    check_case(100, 4, 16, 4, 2, 1);
    check_case(57, 8, 64, 8, 4, 2);
    check_case(33, 2, 6, 3, 3, 3);
    check_case(1, 1, 1, 1, 1, 4);
    check_case(0, 4, 8, 2, 1, 5);
    check_case(40, 6, 6, 1, 1, 6); /* one rank holds every expert */
}

static void test_same_rank_counts_once(void)
{
    /* Token 0 picks experts 0, 1 (both on rank 0) and 5 (rank 2); token 1 picks nothing. */
    int32_t idx[] = {0, 1, 5, -1, -1, -1};
    int32_t per_rank[3], per_expert[6], per_node[1];
    uint8_t in_rank[6];
    WD_EXPECT_EQ_INT(wd_ep_get_dispatch_layout(idx, 2, 3, 6, 3, 3, per_rank, per_node, per_expert,
                                               in_rank, NULL),
                     WD_OK);
    WD_EXPECT_EQ_INT(per_rank[0], 1);
    WD_EXPECT_EQ_INT(per_rank[1], 0);
    WD_EXPECT_EQ_INT(per_rank[2], 1);
    WD_EXPECT_EQ_INT(per_node[0], 1);
    WD_EXPECT_EQ_INT(per_expert[0] + per_expert[1] + per_expert[5], 3);
    WD_EXPECT_EQ_INT(in_rank[3] + in_rank[4] + in_rank[5], 0);
}

static void test_bad_input(void)
{
    int32_t idx[] = {0, 9};
    int32_t per_rank[4], per_expert[8], per_node[4];
    uint8_t in_rank[8];
    struct wd_error err = {0};
    WD_EXPECT_EQ_INT(
        wd_ep_get_dispatch_layout(idx, 1, 2, 8, 4, 1, per_rank, NULL, per_expert, in_rank, &err),
        WD_ERR_INVALID);
    WD_EXPECT_MSG(strstr(err.msg, "slot 1") != NULL, "message: %s", err.msg);
    idx[1] = -2;
    WD_EXPECT_EQ_INT(
        wd_ep_get_dispatch_layout(idx, 1, 2, 8, 4, 1, per_rank, NULL, per_expert, in_rank, &err),
        WD_ERR_INVALID);
    WD_EXPECT_EQ_INT(
        wd_ep_get_dispatch_layout(idx, 1, 1, 6, 4, 1, per_rank, NULL, per_expert, in_rank, &err),
        WD_ERR_INVALID); /* 6 experts over 4 ranks */
    WD_EXPECT_EQ_INT(wd_ep_get_dispatch_layout(idx, 1, 1, 8, 4, 3, per_rank, per_node, per_expert,
                                               in_rank, &err),
                     WD_ERR_INVALID); /* 3 ranks per node do not divide 4 */
}

int main(void)
{
    WD_RUN(test_random_cases);
    WD_RUN(test_same_rank_counts_once);
    WD_RUN(test_bad_input);
    return wd_test_finish();
}

/*
 * Worker registry and routing policies: registration, replacement and stale references;
 * load bookkeeping and cool-off; then each policy over (worker, DP rank) targets:
 * round_robin visits all in turn, random and power_of_two stay in range and prefer the
 * idle, least_load picks the minimum, cache_aware keeps a prefix on the rank that has it
 * unless the ranks are out of balance, and every policy skips draining, cooled-off,
 * excluded and full ranks.
 */
#include <string.h>

#include "router/policy.h"
#include "router/prefix_index.h"
#include "router/workers.h"
#include "tests/unit/wd_test.h"

static int add(struct wd_workers *w, const char *name, int n_dp, int64_t pages)
{
    struct wd_worker_info info = {.role = WD_WORKER_DECODE,
                                  .name = name,
                                  .route_id = (const unsigned char *)name,
                                  .route_id_len = strlen(name),
                                  .n_dp = n_dp,
                                  .page_size = 16,
                                  .pages_per_rank = pages};
    int slot = -1;
    struct wd_error err = {0};
    WD_EXPECT_MSG(wd_workers_add(w, &info, 0.0, &slot, &err) == WD_OK, "%s", err.msg);
    return slot;
}

static struct wd_policy *make(enum wd_policy_kind kind)
{
    struct wd_policy_tuning t;
    wd_policy_tuning_defaults(&t);
    t.max_entries = 4096;
    struct wd_policy *p = NULL;
    struct wd_error err = {0};
    WD_EXPECT(wd_policy_create(kind, &t, 42, &p, &err) == WD_OK);
    return p;
}

static struct wd_route_ctx ctx_of(const int32_t *ids, int n)
{
    struct wd_route_ctx c = {.ids = ids, .n_ids = n, .n_tokens = n + 16, .exclude = {-1, 0}};
    return c;
}

static void test_registry(void)
{
    struct wd_workers *w;
    struct wd_error err = {0};
    WD_EXPECT(wd_workers_create(&w, &err) == WD_OK);
    int a = add(w, "a", 2, 100);
    int b = add(w, "b", 1, 100);
    WD_EXPECT(a != b && wd_workers_count(w, WD_WORKER_DECODE) == 2);
    WD_EXPECT_EQ_INT(wd_workers_find_instance(w, "b"), b);
    WD_EXPECT_EQ_INT(wd_workers_find_instance(w, "zz"), -1);
    struct wd_worker_ref ra = wd_workers_ref(w, a);
    WD_EXPECT(wd_workers_get(w, ra) != NULL);
    /* Re-registering replaces the entry: old references go stale. */
    int a2 = add(w, "a", 1, 50);
    WD_EXPECT(wd_workers_get(w, ra) == NULL);
    WD_EXPECT_EQ_INT(wd_workers_count(w, WD_WORKER_DECODE), 2);
    WD_EXPECT_EQ_INT(wd_workers_at(w, a2)->n_dp, 1);
    /* Bookkeeping: placed requests count until they leave; heartbeats reset placed pages. */
    wd_workers_placed(w, b, 0, 10);
    wd_workers_placed(w, b, 0, 5);
    struct wd_worker *wb = wd_workers_at(w, b);
    WD_EXPECT_EQ_INT(wb->ranks[0].inflight, 2);
    WD_EXPECT_EQ_INT(wd_worker_rank_free_pages(&wb->ranks[0]), 85);
    WD_EXPECT_EQ_INT(wd_worker_rank_load(&wb->ranks[0]), 2);
    wd_workers_heartbeat(w, b, 0, 70, 5, 3, 0, 1.0);
    WD_EXPECT_EQ_INT(wd_worker_rank_free_pages(&wb->ranks[0]), 70);
    WD_EXPECT_EQ_INT(wd_worker_rank_load(&wb->ranks[0]), 8); /* running + waiting > inflight */
    wd_workers_left(w, b, 0);
    wd_workers_left(w, b, 0);
    wd_workers_left(w, b, 0); /* never below zero */
    WD_EXPECT_EQ_INT(wb->ranks[0].inflight, 0);
    /* Cool-off after the threshold of failures in a row; a success resets the streak. */
    WD_EXPECT(!wd_workers_failure(w, b, 3, 10, 5.0));
    wd_workers_success(w, b);
    WD_EXPECT(!wd_workers_failure(w, b, 3, 10, 5.0));
    WD_EXPECT(!wd_workers_failure(w, b, 3, 10, 5.0));
    WD_EXPECT(wd_workers_failure(w, b, 3, 10, 5.0));
    WD_EXPECT(!wd_worker_is_eligible(wb, 14.0));
    WD_EXPECT(wd_worker_is_eligible(wb, 15.0));
    /* Bad registrations. */
    struct wd_worker_info bad = {
        .name = "x", .route_id = (const unsigned char *)"x", .route_id_len = 1, .n_dp = 0};
    int slot;
    WD_EXPECT(wd_workers_add(w, &bad, 0, &slot, &err) == WD_ERR_INVALID);
    bad.n_dp = 1;
    bad.name = "";
    WD_EXPECT(wd_workers_add(w, &bad, 0, &slot, &err) == WD_ERR_INVALID);
    wd_workers_remove(w, b);
    WD_EXPECT(wd_workers_at(w, b) == NULL);
    wd_workers_destroy(w);
}

static void test_round_robin_and_filters(void)
{
    struct wd_workers *w;
    struct wd_error err = {0};
    wd_workers_create(&w, &err);
    int a = add(w, "a", 2, 100), b = add(w, "b", 1, 100);
    struct wd_policy *p = make(WD_POLICY_ROUND_ROBIN);
    int32_t ids[4] = {1, 2, 3, 4};
    struct wd_route_ctx c = ctx_of(ids, 4);
    int seen[WD_WORKERS_MAX][2] = {{0}};
    for (int i = 0; i < 6; i++) {
        struct wd_policy_pick pk;
        WD_EXPECT(wd_policy_pick(p, w, WD_WORKER_DECODE, &c, 0, &pk) == 0);
        seen[pk.slot][pk.rank]++;
    }
    WD_EXPECT(seen[a][0] == 2 && seen[a][1] == 2 && seen[b][0] == 2);
    /* Draining and cooled-off workers get nothing; nor does the excluded one. */
    wd_workers_at(w, a)->is_draining = 1;
    struct wd_policy_pick pk;
    for (int i = 0; i < 3; i++) {
        WD_EXPECT(wd_policy_pick(p, w, WD_WORKER_DECODE, &c, 0, &pk) == 0);
        WD_EXPECT_EQ_INT(pk.slot, b);
    }
    c.exclude = wd_workers_ref(w, b);
    WD_EXPECT(wd_policy_pick(p, w, WD_WORKER_DECODE, &c, 0, &pk) == -1);
    wd_workers_at(w, a)->is_draining = 0;
    WD_EXPECT(wd_policy_pick(p, w, WD_WORKER_DECODE, &c, 0, &pk) == 0 && pk.slot == a);
    wd_workers_at(w, a)->cooled_until = 100;
    WD_EXPECT(wd_policy_pick(p, w, WD_WORKER_DECODE, &c, 0, &pk) == -1);
    WD_EXPECT(wd_policy_pick(p, w, WD_WORKER_DECODE, &c, 100, &pk) == 0);
    /* No prefill workers: nothing for that role. */
    WD_EXPECT(wd_policy_pick(p, w, WD_WORKER_PREFILL, &c, 100, &pk) == -1);
    /* Memory: a rank without pages for the request is skipped while another has room. */
    c.exclude.slot = -1;
    wd_workers_at(w, a)->cooled_until = 0;
    wd_workers_heartbeat(w, a, 0, 0, 0, 0, 0, 0);
    wd_workers_heartbeat(w, a, 1, 0, 0, 0, 0, 0);
    for (int i = 0; i < 4; i++) {
        WD_EXPECT(wd_policy_pick(p, w, WD_WORKER_DECODE, &c, 0, &pk) == 0);
        WD_EXPECT_EQ_INT(pk.slot, b);
    }
    /* ...and when no rank has room, it still goes somewhere (to wait there). */
    wd_workers_heartbeat(w, b, 0, 0, 0, 0, 0, 0);
    WD_EXPECT(wd_policy_pick(p, w, WD_WORKER_DECODE, &c, 0, &pk) == 0);
    wd_policy_destroy(p);
    wd_workers_destroy(w);
}

static void test_load_policies(void)
{
    struct wd_workers *w;
    struct wd_error err = {0};
    wd_workers_create(&w, &err);
    int a = add(w, "a", 1, 1000), b = add(w, "b", 1, 1000), c_ = add(w, "c", 1, 1000);
    wd_workers_heartbeat(w, a, 0, 1000, 10, 0, 0, 0);
    wd_workers_heartbeat(w, b, 0, 1000, 2, 0, 0, 0);
    wd_workers_heartbeat(w, c_, 0, 1000, 5, 0, 0, 0);
    int32_t ids[2] = {1, 2};
    struct wd_route_ctx ctx = ctx_of(ids, 2);
    struct wd_policy_pick pk;
    struct wd_policy *ll = make(WD_POLICY_LEAST_LOAD);
    for (int i = 0; i < 5; i++) {
        WD_EXPECT(wd_policy_pick(ll, w, WD_WORKER_DECODE, &ctx, 0, &pk) == 0);
        WD_EXPECT_EQ_INT(pk.slot, b);
    }
    wd_policy_destroy(ll);
    /* power_of_two never picks the most loaded of three. */
    struct wd_policy *p2 = make(WD_POLICY_POWER_OF_TWO);
    int count[3] = {0};
    for (int i = 0; i < 300; i++) {
        WD_EXPECT(wd_policy_pick(p2, w, WD_WORKER_DECODE, &ctx, 0, &pk) == 0);
        count[pk.slot == a ? 0 : pk.slot == b ? 1 : 2]++;
    }
    WD_EXPECT_EQ_INT(count[0], 0);
    WD_EXPECT(count[1] > count[2] && count[2] > 0);
    wd_policy_destroy(p2);
    /* random covers every target. */
    struct wd_policy *rnd = make(WD_POLICY_RANDOM);
    int hit[3] = {0};
    for (int i = 0; i < 300; i++) {
        WD_EXPECT(wd_policy_pick(rnd, w, WD_WORKER_DECODE, &ctx, 0, &pk) == 0);
        hit[pk.slot == a ? 0 : pk.slot == b ? 1 : 2]++;
    }
    WD_EXPECT(hit[0] > 50 && hit[1] > 50 && hit[2] > 50);
    wd_policy_destroy(rnd);
    wd_workers_destroy(w);
}

static void test_cache_aware(void)
{
    struct wd_workers *w;
    struct wd_error err = {0};
    wd_workers_create(&w, &err);
    int a = add(w, "a", 2, 1000);
    int b = add(w, "b", 1, 1000);
    (void)b;
    struct wd_policy *p = make(WD_POLICY_CACHE_AWARE);
    int32_t sys[64], other[64];
    for (int i = 0; i < 64; i++) {
        sys[i] = i;
        other[i] = 500 + i;
    }
    struct wd_route_ctx ctx = ctx_of(sys, 64);
    struct wd_policy_pick first, pk;
    WD_EXPECT(wd_policy_pick(p, w, WD_WORKER_DECODE, &ctx, 0, &first) == 0);
    wd_workers_placed(w, first.slot, first.rank, 1);
    /* The same prefix goes back to the same rank even though it now has more load. */
    for (int i = 0; i < 5; i++) {
        WD_EXPECT(wd_policy_pick(p, w, WD_WORKER_DECODE, &ctx, 0, &pk) == 0);
        WD_EXPECT(pk.slot == first.slot && pk.rank == first.rank);
        wd_workers_placed(w, pk.slot, pk.rank, 1);
    }
    /* Another prompt with no cached prefix goes to the least loaded. */
    struct wd_route_ctx o = ctx_of(other, 64);
    WD_EXPECT(wd_policy_pick(p, w, WD_WORKER_DECODE, &o, 0, &pk) == 0);
    WD_EXPECT(!(pk.slot == first.slot && pk.rank == first.rank));
    /* Out of balance (gap > 64 and > 1.5x): least load wins over the cache. */
    for (int i = 0; i < 100; i++)
        wd_workers_placed(w, first.slot, first.rank, 1);
    WD_EXPECT(wd_policy_pick(p, w, WD_WORKER_DECODE, &ctx, 0, &pk) == 0);
    WD_EXPECT(!(pk.slot == first.slot && pk.rank == first.rank));
    /* A rank is a target of its own: DP ranks of one worker do not share a cache. */
    WD_EXPECT(wd_workers_at(w, a)->n_dp == 2);
    wd_policy_destroy(p);
    wd_workers_destroy(w);
}

static void test_prefix_index(void)
{
    struct wd_prefix_index *px;
    struct wd_error err = {0};
    WD_EXPECT(wd_prefix_index_create(4, 1024, &px, &err) == WD_OK);
    int32_t ids[20];
    for (int i = 0; i < 20; i++)
        ids[i] = i;
    uint64_t h[8], h2[8];
    int n = wd_prefix_index_hash(px, ids, 19, h);
    WD_EXPECT_EQ_INT(n, 4); /* full blocks only */
    WD_EXPECT_EQ_INT(wd_prefix_index_match(px, h, n, 7), 0);
    wd_prefix_index_insert(px, h, 2, 7);
    WD_EXPECT_EQ_INT(wd_prefix_index_match(px, h, n, 7), 2);
    WD_EXPECT_EQ_INT(wd_prefix_index_match(px, h, n, 8), 0);
    /* A change in block 1 changes every later hash (chained). */
    ids[5] = 99;
    wd_prefix_index_hash(px, ids, 19, h2);
    WD_EXPECT(h2[0] == h[0] && h2[1] != h[1] && h2[3] != h[3]);
    WD_EXPECT_EQ_INT(wd_prefix_index_match(px, h2, n, 7), 1);
    /* Ageing: after many more inserts than fit, old entries are gone, new ones stay. */
    for (uint64_t t = 100; t < 3000; t++)
        wd_prefix_index_insert(px, h, 1, t);
    WD_EXPECT_EQ_INT(wd_prefix_index_match(px, h, n, 7), 0);
    WD_EXPECT_EQ_INT(wd_prefix_index_match(px, h, 1, 2999), 1);
    WD_EXPECT(wd_prefix_index_create(0, 1024, &px, &err) == WD_ERR_INVALID);
    wd_prefix_index_destroy(px);
}

static void test_names(void)
{
    WD_EXPECT_EQ_INT(wd_policy_kind_parse("cache_aware"), WD_POLICY_CACHE_AWARE);
    WD_EXPECT_EQ_INT(wd_policy_kind_parse("power_of_two"), WD_POLICY_POWER_OF_TWO);
    WD_EXPECT_EQ_INT(wd_policy_kind_parse("bucket"), -1);
    WD_EXPECT(strcmp(wd_policy_kind_name(WD_POLICY_LEAST_LOAD), "least_load") == 0);
}

int main(void)
{
    WD_RUN(test_registry);
    WD_RUN(test_round_robin_and_filters);
    WD_RUN(test_load_policies);
    WD_RUN(test_cache_aware);
    WD_RUN(test_prefix_index);
    WD_RUN(test_names);
    return wd_test_finish();
}

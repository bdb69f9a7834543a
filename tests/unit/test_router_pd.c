/*
 * Prefill/decode placement (router/pd_route.h) and pairing (wd_workers_kv_conflict):
 *   - the KV reference: a prefill worker is refused when its page size, KV dtype or KV
 *     layout differs from a registered decode worker's or another prefill worker's, a
 *     decode worker when it differs from a prefill worker's; decode workers alone may
 *     differ; the first worker of a role sets the reference; a re-registration is not
 *     compared with its own old entry;
 *   - the mode: no prefill worker (none, draining, cooled off, or the excluded one) and
 *     prompts under --pd-min-prefill-tokens stay on a decode worker; no decode worker, no
 *     placement at all;
 *   - decode ranks: never one without free pages for prompt + max tokens while another
 *     has them, for every decode policy; a prefill rank only needs the prompt's pages;
 *   - the prefill policies over P's (worker, DP rank) targets and P's load;
 *   - policies a role does not take are refused.
 */
#include <string.h>

#include "router/pd_route.h"
#include "router/workers.h"
#include "tests/unit/wd_test.h"

static const struct wd_worker_kv kv_bf16 = {
    .dtype = "bf16", .kind = 1, .n_layers = 2, .n_kv_heads = 4, .k_head_dim = 64, .v_head_dim = 64};

static int add_kv(struct wd_workers *w, enum wd_worker_role role, const char *name, int n_dp,
                  int64_t pages, int page_size, const struct wd_worker_kv *kv)
{
    struct wd_worker_info info = {.role = role,
                                  .name = name,
                                  .route_id = (const unsigned char *)name,
                                  .route_id_len = strlen(name),
                                  .n_dp = n_dp,
                                  .page_size = page_size,
                                  .pages_per_rank = pages,
                                  .kv = kv,
                                  .bootstrap = role == WD_WORKER_PREFILL ? "tcp://p:1" : NULL};
    int slot = -1;
    struct wd_error err = {0};
    WD_EXPECT_MSG(wd_workers_add(w, &info, 0.0, &slot, &err) == WD_OK, "%s", err.msg);
    return slot;
}

static int add(struct wd_workers *w, enum wd_worker_role role, const char *name, int n_dp,
               int64_t pages)
{
    return add_kv(w, role, name, n_dp, pages, 16, &kv_bf16);
}

static struct wd_pd_route *make(enum wd_policy_kind prefill, enum wd_policy_kind decode, int min)
{
    struct wd_pd_route_config cfg = {.local_kind = WD_POLICY_ROUND_ROBIN,
                                     .prefill_kind = prefill,
                                     .decode_kind = decode,
                                     .min_prefill_tokens = min,
                                     .seed = 7};
    wd_policy_tuning_defaults(&cfg.tuning);
    cfg.tuning.max_entries = 4096;
    struct wd_pd_route *pr = NULL;
    struct wd_error err = {0};
    WD_EXPECT_MSG(wd_pd_route_create(&cfg, &pr, &err) == WD_OK, "%s", err.msg);
    return pr;
}

static struct wd_pd_request req_of(const int32_t *ids, int n, int max_tokens)
{
    struct wd_pd_request r = {.ids = ids,
                              .n_ids = n,
                              .max_tokens = max_tokens,
                              .exclude_prefill = {-1, 0},
                              .exclude_decode = {-1, 0}};
    return r;
}

static void expect_conflict(struct wd_workers *w, enum wd_worker_role role, const char *name,
                            int page_size, const struct wd_worker_kv *kv, int want_slot,
                            const char *want_why)
{
    char why[512] = "";
    int s = wd_workers_kv_conflict(w, role, name, page_size, kv, why, sizeof(why));
    WD_EXPECT_MSG(s == want_slot, "%s: conflict with slot %d, want %d (%s)", name, s, want_slot,
                  why);
    if (want_why)
        WD_EXPECT_MSG(strstr(why, want_why) != NULL, "%s: '%s' lacks '%s'", name, why, want_why);
}

static void test_kv_reference(void)
{
    struct wd_workers *w;
    struct wd_error err = {0};
    WD_EXPECT(wd_workers_create(&w, &err) == WD_OK);
    /* The first prefill worker, with no decode worker yet, sets the reference. */
    expect_conflict(w, WD_WORKER_PREFILL, "p1", 32, &kv_bf16, -1, NULL);
    int p1 = add(w, WD_WORKER_PREFILL, "p1", 1, 100);
    /* A decode worker must match it, field by field, with the reason. */
    expect_conflict(w, WD_WORKER_DECODE, "d1", 32, &kv_bf16, p1,
                    "page_size 32 differs from prefill worker p1's 16");
    struct wd_worker_kv kv = kv_bf16;
    snprintf(kv.dtype, sizeof(kv.dtype), "fp32");
    expect_conflict(w, WD_WORKER_DECODE, "d1", 16, &kv, p1,
                    "kv_dtype fp32 differs from prefill worker p1's bf16");
    kv = kv_bf16;
    kv.n_layers = 3;
    expect_conflict(w, WD_WORKER_DECODE, "d1", 16, &kv, p1, "KV layout GQA 3 layers");
    kv = kv_bf16;
    kv.v_head_dim = 32;
    expect_conflict(w, WD_WORKER_DECODE, "d1", 16, &kv, p1, "K 64 / V 32 differs");
    kv = kv_bf16;
    kv.kind = 2;
    kv.n_kv_heads = 1;
    kv.v_head_dim = 0;
    expect_conflict(w, WD_WORKER_DECODE, "d1", 16, &kv, p1, "KV layout MLA 2 layers");
    expect_conflict(w, WD_WORKER_DECODE, "d1", 16, &kv_bf16, -1, NULL);
    int d1 = add(w, WD_WORKER_DECODE, "d1", 1, 100);
    /* Another prefill worker must match the decode workers and the other prefill workers. */
    expect_conflict(w, WD_WORKER_PREFILL, "p2", 8, &kv_bf16, p1, "prefill worker p1's 16");
    /* p1 registering again is compared with d1, not with its own old entry. */
    expect_conflict(w, WD_WORKER_PREFILL, "p1", 8, &kv_bf16, d1,
                    "page_size 8 differs from decode worker d1's 16");
    wd_workers_remove(w, p1);
    /* With no prefill worker, decode workers may differ among themselves (aggregated)... */
    expect_conflict(w, WD_WORKER_DECODE, "d2", 64, &kv_bf16, -1, NULL);
    add_kv(w, WD_WORKER_DECODE, "d2", 1, 100, 64, &kv_bf16);
    /* ...and then no prefill worker can pair with all of them. */
    expect_conflict(w, WD_WORKER_PREFILL, "p3", 16, &kv_bf16, wd_workers_find_instance(w, "d2"),
                    "decode worker d2's 64");
    wd_workers_destroy(w);
}

static void test_modes(void)
{
    struct wd_workers *w;
    struct wd_error err = {0};
    wd_workers_create(&w, &err);
    struct wd_pd_route *pr = make(WD_POLICY_ROUND_ROBIN, WD_POLICY_LEAST_LOAD, 8);
    int32_t ids[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    struct wd_pd_request rq = req_of(ids, 16, 4);
    struct wd_pd_choice ch;
    /* Nothing registered: nowhere to go, prefill workers or not. */
    WD_EXPECT(wd_pd_route_pick(pr, w, &rq, 0, &ch) == -1);
    int p = add(w, WD_WORKER_PREFILL, "p", 1, 100);
    WD_EXPECT(wd_pd_route_pick(pr, w, &rq, 0, &ch) == -1);
    wd_workers_remove(w, p);
    int d = add(w, WD_WORKER_DECODE, "d", 2, 100);
    /* No prefill worker: every request is prefilled on the decode worker. */
    WD_EXPECT(wd_pd_route_pick(pr, w, &rq, 0, &ch) == 0);
    WD_EXPECT_EQ_INT(ch.mode, WD_PD_LOCAL_NO_PREFILL);
    WD_EXPECT_EQ_INT(ch.decode.slot, d);
    p = add(w, WD_WORKER_PREFILL, "p", 1, 100);
    WD_EXPECT(wd_pd_route_pick(pr, w, &rq, 0, &ch) == 0);
    WD_EXPECT_EQ_INT(ch.mode, WD_PD_DISAGGREGATED);
    WD_EXPECT(ch.decode.slot == d && ch.prefill.slot == p && ch.prefill.rank == 0);
    /* --pd-min-prefill-tokens 8: 7 tokens stay local, 8 go to the pair. */
    rq.n_ids = 7;
    WD_EXPECT(wd_pd_route_pick(pr, w, &rq, 0, &ch) == 0);
    WD_EXPECT_EQ_INT(ch.mode, WD_PD_LOCAL_SHORT);
    WD_EXPECT_EQ_INT(ch.prefill.slot, -1);
    rq.n_ids = 8;
    WD_EXPECT(wd_pd_route_pick(pr, w, &rq, 0, &ch) == 0);
    WD_EXPECT_EQ_INT(ch.mode, WD_PD_DISAGGREGATED);
    /* A draining, a cooled-off or the excluded (failed) prefill worker: local. */
    wd_workers_at(w, p)->is_draining = 1;
    WD_EXPECT(wd_pd_route_pick(pr, w, &rq, 0, &ch) == 0 && ch.mode == WD_PD_LOCAL_NO_PREFILL);
    wd_workers_at(w, p)->is_draining = 0;
    wd_workers_at(w, p)->cooled_until = 10;
    WD_EXPECT(wd_pd_route_pick(pr, w, &rq, 0, &ch) == 0 && ch.mode == WD_PD_LOCAL_NO_PREFILL);
    WD_EXPECT(wd_pd_route_pick(pr, w, &rq, 10, &ch) == 0 && ch.mode == WD_PD_DISAGGREGATED);
    rq.exclude_prefill = wd_workers_ref(w, p);
    WD_EXPECT(wd_pd_route_pick(pr, w, &rq, 10, &ch) == 0 && ch.mode == WD_PD_LOCAL_NO_PREFILL);
    /* A second prefill worker takes the retry. */
    int p2 = add(w, WD_WORKER_PREFILL, "p2", 1, 100);
    WD_EXPECT(wd_pd_route_pick(pr, w, &rq, 10, &ch) == 0);
    WD_EXPECT(ch.mode == WD_PD_DISAGGREGATED && ch.prefill.slot == p2);
    /* The excluded decode worker: none left. */
    rq.exclude_decode = wd_workers_ref(w, d);
    WD_EXPECT(wd_pd_route_pick(pr, w, &rq, 10, &ch) == -1);
    wd_pd_route_destroy(pr);
    wd_workers_destroy(w);
}

static void test_decode_room(void)
{
    const enum wd_policy_kind kinds[] = {WD_POLICY_LEAST_LOAD, WD_POLICY_POWER_OF_TWO,
                                         WD_POLICY_ROUND_ROBIN};
    for (int k = 0; k < 3; k++) {
        struct wd_workers *w;
        struct wd_error err = {0};
        wd_workers_create(&w, &err);
        struct wd_pd_route *pr = make(WD_POLICY_ROUND_ROBIN, kinds[k], 0);
        add(w, WD_WORKER_PREFILL, "p", 1, 1000);
        /* 64 prompt + 64 new tokens = 8 pages of 16. d1 rank 0: none free; d1 rank 1: 8;
         * d2: 7 (the prompt fits, the answer would not), but the least loaded. */
        int d1 = add(w, WD_WORKER_DECODE, "d1", 2, 100);
        int d2 = add(w, WD_WORKER_DECODE, "d2", 1, 100);
        wd_workers_heartbeat(w, d1, 0, 0, 0, 0, 0, 0);
        wd_workers_heartbeat(w, d1, 1, 8, 5, 5, 0, 0);
        wd_workers_heartbeat(w, d2, 0, 7, 0, 0, 0, 0);
        int32_t ids[64] = {0};
        struct wd_pd_request rq = req_of(ids, 64, 64);
        for (int i = 0; i < 20; i++) {
            struct wd_pd_choice ch;
            WD_EXPECT(wd_pd_route_pick(pr, w, &rq, 0, &ch) == 0);
            WD_EXPECT_MSG(ch.decode.slot == d1 && ch.decode.rank == 1,
                          "%s: decode %d/%d has no room", wd_policy_kind_name(kinds[k]),
                          ch.decode.slot, ch.decode.rank);
        }
        /* The router's own placements count until the next heartbeat: once d1/1's pages
         * are placed, no rank has room, and the request still goes somewhere. */
        wd_workers_placed(w, d1, 1, 8);
        struct wd_pd_choice ch;
        WD_EXPECT(wd_pd_route_pick(pr, w, &rq, 0, &ch) == 0 && ch.mode == WD_PD_DISAGGREGATED);
        /* A heartbeat with room on d2 brings it back. */
        wd_workers_heartbeat(w, d2, 0, 50, 0, 0, 0, 0);
        WD_EXPECT(wd_pd_route_pick(pr, w, &rq, 0, &ch) == 0 && ch.decode.slot == d2);
        wd_pd_route_destroy(pr);
        wd_workers_destroy(w);
    }
}

/* Picks n prefill targets; counts[slot][rank]. */
static void pick_prefill(struct wd_pd_route *pr, struct wd_workers *w, struct wd_pd_request *rq,
                         int n, int counts[][4])
{
    for (int i = 0; i < n; i++) {
        struct wd_pd_choice ch;
        WD_EXPECT(wd_pd_route_pick(pr, w, rq, 0, &ch) == 0);
        WD_EXPECT(ch.mode == WD_PD_DISAGGREGATED && ch.prefill.rank >= 0 && ch.prefill.rank < 4);
        if (ch.mode == WD_PD_DISAGGREGATED)
            counts[ch.prefill.slot][ch.prefill.rank]++;
    }
}

static void test_prefill_policies(void)
{
    int32_t ids[64];
    for (int i = 0; i < 64; i++)
        ids[i] = 100 + i;
    struct wd_pd_request rq = req_of(ids, 64, 1000);
    const enum wd_policy_kind kinds[] = {WD_POLICY_ROUND_ROBIN, WD_POLICY_RANDOM,
                                         WD_POLICY_POWER_OF_TWO, WD_POLICY_CACHE_AWARE};
    for (int k = 0; k < 4; k++) {
        struct wd_workers *w;
        struct wd_error err = {0};
        wd_workers_create(&w, &err);
        struct wd_pd_route *pr = make(kinds[k], WD_POLICY_LEAST_LOAD, 0);
        add(w, WD_WORKER_DECODE, "d", 1, 1 << 20);
        /* Two prefill workers, one with 2 DP ranks; exactly the prompt's 4 pages free each
         * (prompt + max tokens would not fit: prefill only holds the prompt). */
        int pa = add(w, WD_WORKER_PREFILL, "pa", 2, 4);
        int pb = add(w, WD_WORKER_PREFILL, "pb", 1, 4);
        int counts[WD_WORKERS_MAX][4] = {{0}};
        const char *name = wd_policy_kind_name(kinds[k]);
        if (kinds[k] == WD_POLICY_CACHE_AWARE) {
            /* The same prompt stays on the rank that has its prefix. */
            pick_prefill(pr, w, &rq, 12, counts);
            int n_used = (counts[pa][0] > 0) + (counts[pa][1] > 0) + (counts[pb][0] > 0);
            WD_EXPECT_MSG(n_used == 1, "cache_aware spread one prompt over %d ranks", n_used);
        } else {
            pick_prefill(pr, w, &rq, 300, counts);
            WD_EXPECT_MSG(counts[pa][0] > 0 && counts[pa][1] > 0 && counts[pb][0] > 0,
                          "%s: %d %d %d", name, counts[pa][0], counts[pa][1], counts[pb][0]);
            if (kinds[k] == WD_POLICY_ROUND_ROBIN)
                WD_EXPECT(counts[pa][0] == 100 && counts[pa][1] == 100 && counts[pb][0] == 100);
        }
        /* P's load: a busy rank is avoided by power_of_two (always one of two others). */
        if (kinds[k] == WD_POLICY_POWER_OF_TWO) {
            wd_workers_heartbeat(w, pa, 1, 4, 9, 30, 0, 0);
            memset(counts, 0, sizeof(counts));
            pick_prefill(pr, w, &rq, 100, counts);
            WD_EXPECT_EQ_INT(counts[pa][1], 0);
        }
        /* A rank without room for the prompt is skipped while another has it. */
        wd_workers_heartbeat(w, pa, 0, 3, 0, 0, 0, 0);
        wd_workers_heartbeat(w, pa, 1, 3, 0, 0, 0, 0);
        memset(counts, 0, sizeof(counts));
        pick_prefill(pr, w, &rq, 20, counts);
        WD_EXPECT_MSG(counts[pb][0] == 20, "%s: %d of 20 on the rank with room", name,
                      counts[pb][0]);
        wd_pd_route_destroy(pr);
        wd_workers_destroy(w);
    }
}

static void test_refused_policies(void)
{
    struct wd_pd_route_config cfg = {.local_kind = WD_POLICY_CACHE_AWARE,
                                     .prefill_kind = WD_POLICY_LEAST_LOAD,
                                     .decode_kind = WD_POLICY_LEAST_LOAD};
    wd_policy_tuning_defaults(&cfg.tuning);
    struct wd_pd_route *pr = NULL;
    struct wd_error err = {0};
    WD_EXPECT(wd_pd_route_create(&cfg, &pr, &err) == WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "--prefill-policy least_load") != NULL);
    cfg.prefill_kind = WD_POLICY_CACHE_AWARE;
    cfg.decode_kind = WD_POLICY_CACHE_AWARE;
    WD_EXPECT(wd_pd_route_create(&cfg, &pr, &err) == WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "--decode-policy cache_aware") != NULL);
    cfg.decode_kind = WD_POLICY_POWER_OF_TWO;
    WD_EXPECT(wd_pd_route_create(&cfg, &pr, &err) == WD_OK);
    wd_pd_route_destroy(pr);
    WD_EXPECT(strcmp(wd_pd_mode_name(WD_PD_DISAGGREGATED), "disaggregated") == 0);
}

int main(void)
{
    WD_RUN(test_kv_reference);
    WD_RUN(test_modes);
    WD_RUN(test_decode_room);
    WD_RUN(test_prefill_policies);
    WD_RUN(test_refused_policies);
    return wd_test_finish();
}

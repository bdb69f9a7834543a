/*
 * Parallel layout: the examples the design and seeds pin (tp8 ep4; tp64 dp64 ep64; the
 * layouts the correctness runs use), every validation error with its exact text, the
 * DeepEP ep = tp override and its log line, the JSON form, and a brute-force sweep over
 * tp 1..16 with every dp and ep dividing it, where group membership is checked against
 * predicates written independently of the enumeration (same attention group iff same
 * tp_rank / attn_tp_size, same MoE-EP group iff same tp_rank % moe_tp_size, ...).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/layout/layout.h"
#include "common/util/log.h"
#include "tests/unit/wd_test.h"

static struct wd_parallel_args args_of(int tp, int dp, int ep, int dp_attn)
{
    struct wd_parallel_args a;
    wd_parallel_args_init(&a);
    a.tp_size = tp;
    a.dp_size = dp;
    a.ep_size = ep;
    a.enable_dp_attention = dp_attn;
    return a;
}

static struct wd_layout *make(const struct wd_parallel_args *a)
{
    struct wd_layout *l = NULL;
    struct wd_error err = {0};
    enum wd_status st = wd_layout_create(a, NULL, &l, &err);
    WD_EXPECT_MSG(st == WD_OK, "layout tp%d dp%d ep%d: %s", a->tp_size, a->dp_size, a->ep_size,
                  err.msg);
    return st == WD_OK ? l : NULL;
}

/* Group set equals the literal groups, given as a flat list. */
static void expect_groups(const struct wd_group_set *s, int n_groups, int group_size,
                          const int *flat)
{
    WD_EXPECT_EQ_INT(s->n_groups, n_groups);
    WD_EXPECT_EQ_INT(s->group_size, group_size);
    if (s->n_groups != n_groups || s->group_size != group_size)
        return;
    for (int i = 0; i < n_groups * group_size; i++)
        WD_EXPECT_MSG(s->ranks[i] == flat[i], "group member %d: %d != %d", i, s->ranks[i], flat[i]);
}

static void test_tp8_ep4(void)
{
    struct wd_parallel_args a = args_of(8, 1, 4, 0);
    struct wd_layout *l = make(&a);
    if (!l)
        return;
    WD_EXPECT_EQ_INT(l->world_size, 8);
    WD_EXPECT_EQ_INT(l->moe_tp_size, 2);
    WD_EXPECT_EQ_INT(l->attn_tp_size, 8);
    WD_EXPECT_EQ_INT(l->attn_dp_size, 1);
    /* The seed: 2 MoE-EP groups of 4 and 4 MoE-TP groups of 2. */
    expect_groups(&l->moe_ep_groups, 2, 4, (const int[]){0, 2, 4, 6, 1, 3, 5, 7});
    expect_groups(&l->moe_tp_groups, 4, 2, (const int[]){0, 1, 2, 3, 4, 5, 6, 7});
    expect_groups(&l->tp_groups, 1, 8, (const int[]){0, 1, 2, 3, 4, 5, 6, 7});
    expect_groups(&l->attn_tp_groups, 1, 8, (const int[]){0, 1, 2, 3, 4, 5, 6, 7});
    static const int ep_rank[8] = {0, 0, 1, 1, 2, 2, 3, 3};
    for (int r = 0; r < 8; r++) {
        WD_EXPECT_EQ_INT(l->ranks[r].moe_ep_rank, ep_rank[r]);
        WD_EXPECT_EQ_INT(l->ranks[r].moe_tp_rank, r % 2);
    }
    WD_EXPECT(strcmp(l->ranks[5].prefix, "TP5 EP2") == 0);
    wd_layout_destroy(l);
}

static void test_wide_ep(void)
{
    /* --tp 64 --dp 64 --enable-dp-attention --ep 64: no real TP anywhere. */
    struct wd_parallel_args a = args_of(64, 64, 64, 1);
    struct wd_layout *l = make(&a);
    if (!l)
        return;
    WD_EXPECT_EQ_INT(l->moe_tp_size, 1);
    WD_EXPECT_EQ_INT(l->attn_tp_size, 1);
    WD_EXPECT_EQ_INT(l->attn_dp_size, 64);
    WD_EXPECT_EQ_INT(l->moe_ep_groups.n_groups, 1);
    WD_EXPECT_EQ_INT(l->moe_ep_groups.group_size, 64);
    WD_EXPECT_EQ_INT(l->moe_ep_groups.ranks[63], 63);
    WD_EXPECT_EQ_INT(l->attn_tp_groups.n_groups, 64);
    WD_EXPECT_EQ_INT(l->moe_tp_groups.n_groups, 64);
    WD_EXPECT_EQ_INT(l->ranks[37].attn_dp_rank, 37);
    WD_EXPECT_EQ_INT(l->ranks[37].attn_tp_rank, 0);
    WD_EXPECT_EQ_INT(l->ranks[37].moe_ep_rank, 37);
    WD_EXPECT(strcmp(l->ranks[37].prefix, "DP37 TP37 EP37") == 0);
    wd_layout_destroy(l);
}

static void test_correctness_layouts(void)
{
    /* tp2 ep2 */
    struct wd_parallel_args a = args_of(2, 1, 2, 0);
    struct wd_layout *l = make(&a);
    if (l) {
        expect_groups(&l->moe_ep_groups, 1, 2, (const int[]){0, 1});
        expect_groups(&l->moe_tp_groups, 2, 1, (const int[]){0, 1});
        expect_groups(&l->attn_tp_groups, 1, 2, (const int[]){0, 1});
        WD_EXPECT(strcmp(l->ranks[1].prefix, "TP1 EP1") == 0);
        wd_layout_destroy(l);
    }
    /* tp4 ep4 dp4 with DP attention */
    a = args_of(4, 4, 4, 1);
    if ((l = make(&a))) {
        WD_EXPECT_EQ_INT(l->attn_tp_size, 1);
        WD_EXPECT_EQ_INT(l->attn_dp_size, 4);
        expect_groups(&l->attn_tp_groups, 4, 1, (const int[]){0, 1, 2, 3});
        expect_groups(&l->moe_ep_groups, 1, 4, (const int[]){0, 1, 2, 3});
        WD_EXPECT(strcmp(l->ranks[2].prefix, "DP2 TP2 EP2") == 0);
        wd_layout_destroy(l);
    }
    /* tp4 ep2: moe_tp 2 */
    a = args_of(4, 1, 2, 0);
    if ((l = make(&a))) {
        WD_EXPECT_EQ_INT(l->moe_tp_size, 2);
        expect_groups(&l->moe_ep_groups, 2, 2, (const int[]){0, 2, 1, 3});
        expect_groups(&l->moe_tp_groups, 2, 2, (const int[]){0, 1, 2, 3});
        static const int ep_rank[4] = {0, 0, 1, 1};
        for (int r = 0; r < 4; r++) {
            WD_EXPECT_EQ_INT(l->ranks[r].moe_ep_rank, ep_rank[r]);
            WD_EXPECT_EQ_INT(l->ranks[r].moe_tp_rank, r % 2);
            WD_EXPECT_EQ_INT(l->ranks[r].attn_tp_rank, r);
        }
        WD_EXPECT(strcmp(l->ranks[3].prefix, "TP3 EP1") == 0);
        wd_layout_destroy(l);
    }
    /* tp4 dp2 with DP attention, ep4 */
    a = args_of(4, 2, 4, 1);
    if ((l = make(&a))) {
        WD_EXPECT_EQ_INT(l->attn_tp_size, 2);
        WD_EXPECT_EQ_INT(l->attn_dp_size, 2);
        WD_EXPECT_EQ_INT(l->moe_tp_size, 1);
        expect_groups(&l->attn_tp_groups, 2, 2, (const int[]){0, 1, 2, 3});
        expect_groups(&l->moe_ep_groups, 1, 4, (const int[]){0, 1, 2, 3});
        static const int dp_rank[4] = {0, 0, 1, 1};
        for (int r = 0; r < 4; r++) {
            WD_EXPECT_EQ_INT(l->ranks[r].attn_dp_rank, dp_rank[r]);
            WD_EXPECT_EQ_INT(l->ranks[r].attn_tp_rank, r % 2);
        }
        WD_EXPECT(strcmp(l->ranks[3].prefix, "DP1 TP3 EP3") == 0);
        wd_layout_destroy(l);
    }
    /* A single rank: SGLang prints no prefix at all. */
    a = args_of(1, 1, 1, 0);
    if ((l = make(&a))) {
        WD_EXPECT(strcmp(l->ranks[0].prefix, "") == 0);
        wd_layout_destroy(l);
    }
    /* tp2 ep1: TP only. */
    a = args_of(2, 1, 1, 0);
    if ((l = make(&a))) {
        WD_EXPECT(strcmp(l->ranks[1].prefix, "TP1") == 0);
        wd_layout_destroy(l);
    }
    /* dp_size 1 turns DP attention off silently. */
    a = args_of(4, 1, 4, 1);
    if ((l = make(&a))) {
        WD_EXPECT_EQ_INT(l->enable_dp_attention, 0);
        WD_EXPECT_EQ_INT(l->attn_tp_size, 4);
        WD_EXPECT(strcmp(l->ranks[1].prefix, "TP1 EP1") == 0);
        wd_layout_destroy(l);
    }
}

/* Runs wd_layout_create with stderr captured into buf. */
static enum wd_status create_capturing(const struct wd_parallel_args *a, struct wd_layout **l,
                                       struct wd_error *err, char *buf, size_t cap)
{
    FILE *tmp = tmpfile();
    WD_ASSERT(tmp);
    fflush(stderr);
    int saved = dup(2);
    dup2(fileno(tmp), 2);
    enum wd_status st = wd_layout_create(a, NULL, l, err);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    size_t n = fread(buf, 1, cap - 1, tmp);
    buf[n] = 0;
    fclose(tmp);
    return st;
}

static void test_deepep_forces_ep(void)
{
    struct wd_parallel_args a = args_of(4, 1, 1, 0);
    a.a2a_backend = WD_A2A_DEEPEP;
    a.deepep_mode = WD_DEEPEP_LOW_LATENCY;
    struct wd_layout *l = NULL;
    struct wd_error err = {0};
    char log[2048];
    WD_EXPECT_EQ_INT(create_capturing(&a, &l, &err, log, sizeof(log)), WD_OK);
    if (!l)
        return;
    WD_EXPECT_EQ_INT(l->ep_size, 4);
    WD_EXPECT_EQ_INT(l->moe_ep_size, 4);
    WD_EXPECT_EQ_INT(l->moe_tp_size, 1);
    WD_EXPECT_EQ_INT(l->deepep_mode, WD_DEEPEP_LOW_LATENCY);
    WD_EXPECT(strcmp(l->ranks[3].prefix, "TP3 EP3") == 0);
    WD_EXPECT_MSG(strstr(log, "DeepEP MoE is enabled. The expert parallel size is adjusted to "
                              "be the same as the tensor parallel size[4].") != NULL,
                  "log was: %s", log);
    wd_layout_destroy(l);
    /* ep 3 would not divide tp 6, but DeepEP replaces it with 6 before the check. */
    a = args_of(6, 1, 3, 0);
    a.a2a_backend = WD_A2A_DEEPEP;
    l = NULL;
    WD_EXPECT_EQ_INT(create_capturing(&a, &l, &err, log, sizeof(log)), WD_OK);
    WD_EXPECT(l && l->ep_size == 6);
    wd_layout_destroy(l);
    /* With backend none nothing is logged and ep stays. */
    a = args_of(4, 1, 2, 0);
    l = NULL;
    WD_EXPECT_EQ_INT(create_capturing(&a, &l, &err, log, sizeof(log)), WD_OK);
    WD_EXPECT(l && l->ep_size == 2);
    WD_EXPECT(strstr(log, "DeepEP") == NULL);
    wd_layout_destroy(l);
}

static void expect_error(const struct wd_parallel_args *a, const struct wd_layout_model_dims *d,
                         enum wd_status want, const char *msg)
{
    struct wd_layout *l = NULL;
    struct wd_error err = {0};
    enum wd_status st = wd_layout_create(a, d, &l, &err);
    WD_EXPECT_MSG(st == want, "want status %d, got %d (%s)", want, st, err.msg);
    WD_EXPECT_MSG(strcmp(err.msg, msg) == 0, "message\n  got:  %s\n  want: %s", err.msg, msg);
    WD_EXPECT(l == NULL);
    wd_layout_destroy(l);
}

static void test_flag_errors(void)
{
    struct wd_parallel_args a = args_of(8, 1, 3, 0);
    expect_error(&a, NULL, WD_ERR_INVALID, "tp_size 8 must be divisible by moe_ep_size 3");
    a = args_of(4, 1, 8, 0);
    expect_error(&a, NULL, WD_ERR_INVALID, "tp_size 4 must be divisible by moe_ep_size 8");
    a = args_of(4, 3, 1, 1);
    expect_error(&a, NULL, WD_ERR_INVALID,
                 "tp_size 4 must be divisible by dp_size 3 with DP attention");
    a = args_of(4, 2, 1, 0);
    expect_error(&a, NULL, WD_ERR_UNSUPPORTED,
                 "data-parallel replicas (dp_size 2 without --enable-dp-attention) are not "
                 "supported by wideep; add --enable-dp-attention or run one server per replica");
    a = args_of(4, 2, 1, 0);
    a.nnodes = 2;
    snprintf(a.dist_init_addr, sizeof(a.dist_init_addr), "10.0.0.1:5000");
    expect_error(&a, NULL, WD_ERR_INVALID,
                 "multi-node data parallel is not supported unless dp attention!");
    a = args_of(3, 1, 1, 0);
    a.nnodes = 2;
    expect_error(&a, NULL, WD_ERR_INVALID,
                 "tp_size must be divisible by number of nodes (tp_size 3, nnodes 2)");
    a = args_of(4, 1, 1, 0);
    a.nnodes = 2;
    a.node_rank = 2;
    expect_error(&a, NULL, WD_ERR_INVALID, "node_rank 2 must be in [0, nnodes 2)");
    a.node_rank = -1;
    expect_error(&a, NULL, WD_ERR_INVALID, "node_rank -1 must be in [0, nnodes 2)");
    a.node_rank = 1;
    expect_error(&a, NULL, WD_ERR_INVALID,
                 "please provide --dist-init-addr as host:port of head node (needed with "
                 "nnodes 2)");
    a = args_of(4, 1, 1, 0);
    a.moe_dense_tp_size = 2;
    expect_error(&a, NULL, WD_ERR_INVALID,
                 "moe_dense_tp_size only support 1 and None currently (got 2)");
    a = args_of(4, 1, 1, 0);
    a.pp_size = 2;
    expect_error(&a, NULL, WD_ERR_UNSUPPORTED,
                 "pipeline parallelism (pp_size 2) is not supported by wideep");
    a = args_of(0, 1, 1, 0);
    expect_error(&a, NULL, WD_ERR_INVALID, "tp_size must be at least 1, got 0");
    a = args_of(4, -1, 1, 0);
    expect_error(&a, NULL, WD_ERR_INVALID, "dp_size must be at least 1, got -1");
    a = args_of(4, 1, 0, 0);
    expect_error(&a, NULL, WD_ERR_INVALID, "ep_size must be at least 1, got 0");
    a = args_of(4, 1, 1, 0);
    a.nnodes = 0;
    expect_error(&a, NULL, WD_ERR_INVALID, "nnodes must be at least 1, got 0");
    a = args_of(8192, 1, 1, 0);
    expect_error(&a, NULL, WD_ERR_INVALID,
                 "tp_size 8192 x pp_size 1 is more than wideep's 4096 ranks per instance");
    a = args_of(4, 1, 1, 0);
    a.a2a_backend = (enum wd_a2a_backend)7;
    expect_error(&a, NULL, WD_ERR_INVALID, "unknown moe_a2a_backend 7");
}

static void test_dist_init_addr(void)
{
    static const char *bad[] = {"host",
                                "host:",
                                ":80",
                                "host:abc",
                                "host:0",
                                "h:70000",
                                "a:b:c",
                                "[::1]80",
                                "[]:80",
                                "[::1:80",
                                "h:99999999999999999999",
                                "h:-1",
                                "h: 80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct wd_parallel_args a = args_of(2, 1, 1, 0);
        a.nnodes = 2;
        snprintf(a.dist_init_addr, sizeof(a.dist_init_addr), "%s", bad[i]);
        char want[WD_ERROR_LEN];
        snprintf(want, sizeof(want),
                 "please provide --dist-init-addr as host:port of head node (got '%s')", bad[i]);
        expect_error(&a, NULL, WD_ERR_INVALID, want);
    }
    static const struct {
        const char *addr, *host;
        int port;
    } good[] = {{"10.0.0.1:5000", "10.0.0.1", 5000},
                {"[2001:db8::1]:25000", "2001:db8::1", 25000},
                {"localhost:1", "localhost", 1},
                {"node0:65535", "node0", 65535}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct wd_parallel_args a = args_of(4, 1, 1, 0);
        a.nnodes = 2;
        a.node_rank = 1;
        snprintf(a.dist_init_addr, sizeof(a.dist_init_addr), "%s", good[i].addr);
        struct wd_layout *l = make(&a);
        if (!l)
            continue;
        WD_EXPECT(strcmp(l->dist_init_host, good[i].host) == 0);
        WD_EXPECT_EQ_INT(l->dist_init_port, good[i].port);
        WD_EXPECT_EQ_INT(l->ranks_per_node, 2);
        WD_EXPECT_EQ_INT(l->ranks[3].node_rank, 1);
        WD_EXPECT_EQ_INT(l->ranks[3].local_rank, 1);
        WD_EXPECT_EQ_INT(l->ranks[1].node_rank, 0);
        wd_layout_destroy(l);
    }
}

static void test_shape_guards(void)
{
    /* The seed's Qwen3-VL-235B FP8 example: moe_intermediate_size 1536, block 128, tp 8:
     * "You can choose ep_size in 2, 4 or 8." ep 1 leaves 192 rows per rank. */
    struct wd_layout_model_dims d = {.moe_intermediate_size = 1536, .weight_block_size_n = 128};
    struct wd_parallel_args a = args_of(8, 1, 1, 0);
    expect_error(&a, &d, WD_ERR_INVALID,
                 "For quantized MoE models, please make sure (moe_intermediate_size=1536 / "
                 "moe_tp_size=8) % weight_block_size_n=128 == 0 where moe_tp_size is equal to "
                 "tp_size (8) divided by ep_size (1). You can fix this by setting arguments "
                 "`--tp` and `--ep` correctly.");
    for (int ep = 2; ep <= 8; ep *= 2) {
        struct wd_layout *l = NULL;
        struct wd_error err = {0};
        a = args_of(8, 1, ep, 0);
        WD_EXPECT_MSG(wd_layout_create(&a, &d, &l, &err) == WD_OK, "ep %d: %s", ep, err.msg);
        wd_layout_destroy(l);
    }
    /* An expert smaller than (or not a multiple of) one block fits no layout: the hint must
     * not send the user to --tp / --ep, even at tp 1. */
    d = (struct wd_layout_model_dims){.moe_intermediate_size = 48, .weight_block_size_n = 128};
    for (int tp = 1; tp <= 2; tp++) {
        a = args_of(tp, 1, 1, 0);
        struct wd_layout *l = NULL;
        struct wd_error err = {0};
        WD_EXPECT_EQ_INT(wd_layout_create(&a, &d, &l, &err), WD_ERR_INVALID);
        WD_EXPECT_MSG(strstr(err.msg, "cannot be served with its weight_block_size") != NULL &&
                          strstr(err.msg, "setting arguments") == NULL,
                      "tp %d: %s", tp, err.msg);
    }
    d = (struct wd_layout_model_dims){.moe_intermediate_size = 100};
    a = args_of(8, 1, 1, 0);
    expect_error(&a, &d, WD_ERR_INVALID,
                 "moe_intermediate_size 100 must be divisible by moe_tp_size (8) which is "
                 "tp_size (8) divided by moe_ep_size (1).");
    d = (struct wd_layout_model_dims){.num_experts = 60};
    a = args_of(8, 1, 8, 0);
    expect_error(&a, &d, WD_ERR_INVALID,
                 "num_experts 60 (60 routed + 0 redundant) must be divisible by moe_ep_size 8");
    d.num_redundant_experts = 4; /* 64 physical experts: 8 per rank */
    struct wd_layout *l = NULL;
    WD_EXPECT_EQ_INT(wd_layout_create(&a, &d, &l, NULL), WD_OK);
    wd_layout_destroy(l);
    d.num_redundant_experts = -1;
    expect_error(&a, &d, WD_ERR_INVALID, "ep_num_redundant_experts must be >= 0, got -1");
    d = (struct wd_layout_model_dims){.num_attention_heads = 6};
    a = args_of(4, 1, 1, 0);
    expect_error(&a, &d, WD_ERR_INVALID,
                 "num_attention_heads 6 must be divisible by attn_tp_size 4");
    a = args_of(4, 2, 1, 1); /* attn_tp 2 divides 6 */
    l = NULL;
    WD_EXPECT_EQ_INT(wd_layout_create(&a, &d, &l, NULL), WD_OK);
    wd_layout_destroy(l);
    d = (struct wd_layout_model_dims){.num_attention_heads = 24, .num_key_value_heads = 3};
    a = args_of(2, 1, 1, 0);
    expect_error(&a, &d, WD_ERR_INVALID,
                 "num_key_value_heads 3 must be divisible by attn_tp_size 2");
    d = (struct wd_layout_model_dims){.num_attention_heads = 24, .num_key_value_heads = 4};
    a = args_of(6, 1, 1, 0);
    expect_error(&a, &d, WD_ERR_INVALID,
                 "attn_tp_size 6 must be divisible by num_key_value_heads 4");
    a = args_of(8, 1, 1, 0); /* 4 KV heads over 8 ranks: each replicated twice */
    l = NULL;
    WD_EXPECT_EQ_INT(wd_layout_create(&a, &d, &l, NULL), WD_OK);
    wd_layout_destroy(l);
    d = (struct wd_layout_model_dims){.intermediate_size = 100};
    a = args_of(8, 8, 8, 1);
    expect_error(&a, &d, WD_ERR_INVALID,
                 "intermediate_size 100 must be divisible by the dense MLP's tp_size 8 "
                 "(--moe-dense-tp-size 1 keeps dense layers whole)");
    a.moe_dense_tp_size = 1;
    l = NULL;
    WD_EXPECT_EQ_INT(wd_layout_create(&a, &d, &l, NULL), WD_OK);
    WD_EXPECT(l && l->dense_tp_size == 1);
    wd_layout_destroy(l);
}

static void test_json(void)
{
    struct wd_parallel_args a = args_of(2, 1, 2, 0);
    struct wd_layout *l = make(&a);
    if (!l)
        return;
    char *json = NULL;
    WD_EXPECT_EQ_INT(wd_layout_to_json(l, &json, NULL), WD_OK);
    const char *want =
        "{\"world_size\":2,\"tp_size\":2,\"attn_tp_size\":2,\"attn_dp_size\":1,"
        "\"moe_ep_size\":2,\"moe_tp_size\":1,\"tp_groups\":[[0,1]],\"attn_tp_groups\":[[0,1]],"
        "\"moe_ep_groups\":[[0,1]],\"moe_tp_groups\":[[0],[1]],\"ranks\":["
        "{\"rank\":0,\"tp_rank\":0,\"attn_tp_rank\":0,\"attn_dp_rank\":0,\"moe_ep_rank\":0,"
        "\"moe_tp_rank\":0,\"prefix\":\"TP0 EP0\"},"
        "{\"rank\":1,\"tp_rank\":1,\"attn_tp_rank\":1,\"attn_dp_rank\":0,\"moe_ep_rank\":1,"
        "\"moe_tp_rank\":0,\"prefix\":\"TP1 EP1\"}]}";
    WD_EXPECT_MSG(json && strcmp(json, want) == 0, "json:\n%s\nwant:\n%s", json, want);
    free(json);
    wd_layout_destroy(l);
}

/* Every group kind against an independent membership predicate, the rank fields against
 * positions in the groups, and the JSON against the struct. */
static int same_group(int kind, const struct wd_layout *l, int r, int s)
{
    switch (kind) {
    case 0:
        return 1; /* tp */
    case 1:
        return r / l->attn_tp_size == s / l->attn_tp_size; /* attention tp */
    case 2:
        return r % l->moe_tp_size == s % l->moe_tp_size; /* moe ep */
    default:
        return r / l->moe_tp_size == s / l->moe_tp_size; /* moe tp */
    }
}

static void check_layout(const struct wd_layout *l, int tp, int dp_attn, int ep, int nnodes)
{
    const struct wd_group_set *sets[4] = {&l->tp_groups, &l->attn_tp_groups, &l->moe_ep_groups,
                                          &l->moe_tp_groups};
    const int want_size[4] = {tp, tp / dp_attn, ep, tp / ep};
    int fails = wd_test_failures;
    WD_EXPECT_EQ_INT(l->world_size, tp);
    WD_EXPECT_EQ_INT(l->attn_dp_size, dp_attn);
    WD_EXPECT_EQ_INT(l->attn_tp_size, tp / dp_attn);
    WD_EXPECT_EQ_INT(l->moe_ep_size, ep);
    WD_EXPECT_EQ_INT(l->moe_tp_size, tp / ep);
    for (int k = 0; k < 4; k++) {
        const struct wd_group_set *s = sets[k];
        WD_EXPECT_EQ_INT(s->group_size, want_size[k]);
        WD_EXPECT_EQ_INT(s->n_groups * s->group_size, tp);
        int *seen = calloc((size_t)tp, sizeof(int)), *group_of = calloc((size_t)tp, sizeof(int));
        int *pos_of = calloc((size_t)tp, sizeof(int));
        for (int g = 0; g < s->n_groups; g++) {
            const int *m = wd_group_set_members(s, g);
            for (int i = 0; i < s->group_size; i++) {
                WD_EXPECT(m[i] >= 0 && m[i] < tp);
                if (m[i] < 0 || m[i] >= tp)
                    continue;
                seen[m[i]]++;
                group_of[m[i]] = g;
                pos_of[m[i]] = i;
                WD_EXPECT(i == 0 || m[i] > m[i - 1]);
            }
        }
        for (int r = 0; r < tp; r++) {
            WD_EXPECT_MSG(seen[r] == 1, "kind %d rank %d appears %d times", k, r, seen[r]);
            for (int s2 = 0; s2 < tp; s2++)
                WD_EXPECT((group_of[r] == group_of[s2]) == same_group(k, l, r, s2));
        }
        /* The rank fields name the group and the position in it. */
        for (int r = 0; r < tp; r++) {
            const struct wd_rank_layout *rl = &l->ranks[r];
            int want_g[4] = {0, rl->attn_dp_rank, rl->moe_tp_rank, rl->moe_ep_rank};
            int want_p[4] = {rl->tp_rank, rl->attn_tp_rank, rl->moe_ep_rank, rl->moe_tp_rank};
            WD_EXPECT_EQ_INT(group_of[r], want_g[k]);
            WD_EXPECT_EQ_INT(pos_of[r], want_p[k]);
        }
        free(seen);
        free(group_of);
        free(pos_of);
    }
    for (int r = 0; r < tp; r++) {
        const struct wd_rank_layout *rl = &l->ranks[r];
        WD_EXPECT_EQ_INT(rl->rank, r);
        WD_EXPECT_EQ_INT(rl->tp_rank, r);
        WD_EXPECT_EQ_INT(rl->moe_ep_rank, r / (tp / ep)); /* the seed's formula */
        WD_EXPECT_EQ_INT(rl->node_rank, r / (tp / nnodes));
        WD_EXPECT_EQ_INT(rl->local_rank, r % (tp / nnodes));
        char want[64] = "";
        if (dp_attn > 1)
            snprintf(want + strlen(want), sizeof(want) - strlen(want), "DP%d ", r / (tp / dp_attn));
        if (tp > 1)
            snprintf(want + strlen(want), sizeof(want) - strlen(want), "TP%d ", r);
        if (ep > 1)
            snprintf(want + strlen(want), sizeof(want) - strlen(want), "EP%d ", r / (tp / ep));
        if (want[0])
            want[strlen(want) - 1] = 0;
        WD_EXPECT_MSG(strcmp(rl->prefix, want) == 0, "prefix '%s' want '%s'", rl->prefix, want);
    }
    /* JSON round trip. */
    char *text = NULL;
    WD_EXPECT_EQ_INT(wd_layout_to_json(l, &text, NULL), WD_OK);
    json_t *j = text ? json_loads(text, 0, NULL) : NULL;
    WD_EXPECT(j != NULL);
    if (j) {
        WD_EXPECT_EQ_INT(json_integer_value(json_object_get(j, "moe_tp_size")), tp / ep);
        WD_EXPECT_EQ_INT(json_integer_value(json_object_get(j, "attn_dp_size")), dp_attn);
        const char *keys[4] = {"tp_groups", "attn_tp_groups", "moe_ep_groups", "moe_tp_groups"};
        for (int k = 0; k < 4; k++) {
            json_t *gs = json_object_get(j, keys[k]);
            WD_EXPECT_EQ_INT(json_array_size(gs), sets[k]->n_groups);
            for (int g = 0; g < sets[k]->n_groups && g < (int)json_array_size(gs); g++)
                for (int i = 0; i < sets[k]->group_size; i++)
                    WD_EXPECT_EQ_INT(json_integer_value(json_array_get(json_array_get(gs, g), i)),
                                     wd_group_set_members(sets[k], g)[i]);
        }
        json_t *ranks = json_object_get(j, "ranks");
        WD_EXPECT_EQ_INT(json_array_size(ranks), tp);
        for (int r = 0; r < tp && r < (int)json_array_size(ranks); r++) {
            json_t *o = json_array_get(ranks, r);
            WD_EXPECT_EQ_INT(json_integer_value(json_object_get(o, "moe_ep_rank")),
                             l->ranks[r].moe_ep_rank);
            WD_EXPECT_EQ_INT(json_integer_value(json_object_get(o, "attn_dp_rank")),
                             l->ranks[r].attn_dp_rank);
            WD_EXPECT(strcmp(json_string_value(json_object_get(o, "prefix")), l->ranks[r].prefix) ==
                      0);
        }
        json_decref(j);
    }
    free(text);
    if (wd_test_failures != fails)
        fprintf(stderr, "  (in layout tp%d attn_dp%d ep%d nnodes%d)\n", tp, dp_attn, ep, nnodes);
}

static void test_brute_force(void)
{
    int n_layouts = 0;
    for (int tp = 1; tp <= 16; tp++)
        for (int dp = 1; dp <= tp; dp++) {
            if (tp % dp)
                continue;
            for (int ep = 1; ep <= tp; ep++) {
                if (tp % ep)
                    continue;
                for (int nnodes = 1; nnodes <= tp; nnodes *= 2) {
                    if (tp % nnodes)
                        continue;
                    struct wd_parallel_args a = args_of(tp, dp, ep, 1);
                    a.nnodes = nnodes;
                    a.node_rank = nnodes - 1;
                    if (nnodes > 1)
                        snprintf(a.dist_init_addr, sizeof(a.dist_init_addr), "127.0.0.1:29500");
                    struct wd_layout *l = make(&a);
                    if (l)
                        check_layout(l, tp, dp, ep, nnodes);
                    wd_layout_destroy(l);
                    n_layouts++;
                }
            }
            /* DeepEP: ep forced to tp whatever was asked. */
            struct wd_parallel_args a = args_of(tp, dp, 1, 1);
            a.a2a_backend = WD_A2A_DEEPEP;
            wd_log_set_level(WD_LOG_ERROR); /* keep the sweep's log quiet */
            struct wd_layout *l = make(&a);
            wd_log_set_level(WD_LOG_INFO);
            if (l)
                check_layout(l, tp, dp, tp, 1);
            wd_layout_destroy(l);
        }
    WD_EXPECT(n_layouts > 200);
}

int main(void)
{
    WD_RUN(test_tp8_ep4);
    WD_RUN(test_wide_ep);
    WD_RUN(test_correctness_layouts);
    WD_RUN(test_deepep_forces_ep);
    WD_RUN(test_flag_errors);
    WD_RUN(test_dist_init_addr);
    WD_RUN(test_shape_guards);
    WD_RUN(test_json);
    WD_RUN(test_brute_force);
    return wd_test_finish();
}

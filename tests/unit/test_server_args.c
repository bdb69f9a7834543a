/*
 * Expert-parallel server flags: SGLang's spellings and aliases land in the right field,
 * defaults are SGLang's, values SGLang has but wideep does not (mooncake, stat_approx,
 * fake, deepseek_vec) fail as "not supported" and unknown values as invalid, EPLB's
 * derived defaults and checks follow SGLang, the conversion to wd_parallel_args is
 * faithful, and wd_layout_print_main prints the layout (or the error) end to end,
 * including the shape guards read from a model's config.json.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config/server_args.h"
#include "common/layout/layout.h"
#include "common/util/log.h"
#include "tests/unit/wd_test.h"

#define MAX_ARGS 24

/* Parses the space-separated flags into a (after wd_server_args_init); no finalize. */
static enum wd_status parse(struct wd_server_args *a, const char *line, struct wd_error *err)
{
    static char buf[1024];
    char *argv[MAX_ARGS] = {"test"};
    int argc = 1;
    snprintf(buf, sizeof(buf), "%s", line);
    for (char *tok = strtok(buf, " "); tok && argc < MAX_ARGS; tok = strtok(NULL, " "))
        argv[argc++] = tok;
    struct wd_flag flags[WD_SERVER_ARGS_N_FLAGS];
    wd_server_args_init(a);
    WD_ASSERT(wd_server_args_flags(a, flags, WD_SERVER_ARGS_N_FLAGS) == WD_SERVER_ARGS_N_FLAGS);
    int help = 0;
    return wd_flags_parse(flags, WD_SERVER_ARGS_N_FLAGS, argc, argv, &help, err);
}

/* Parse + finalize; expects OK. */
static void parse_ok(struct wd_server_args *a, const char *line)
{
    struct wd_error err = {0};
    enum wd_status st = parse(a, line, &err);
    if (st == WD_OK)
        st = wd_server_args_finalize(a, &err);
    WD_EXPECT_MSG(st == WD_OK, "'%s': %s", line, err.msg);
}

/* Parse + finalize; expects status and the exact message. */
static void parse_fails(const char *line, enum wd_status want, const char *msg)
{
    struct wd_server_args a;
    struct wd_error err = {0};
    enum wd_status st = parse(&a, line, &err);
    if (st == WD_OK)
        st = wd_server_args_finalize(&a, &err);
    WD_EXPECT_MSG(st == want, "'%s': status %d, want %d (%s)", line, st, want, err.msg);
    WD_EXPECT_MSG(strcmp(err.msg, msg) == 0, "'%s'\n  got:  %s\n  want: %s", line, err.msg, msg);
}

static void test_defaults(void)
{
    struct wd_server_args a;
    parse_ok(&a, "");
    WD_EXPECT_EQ_INT(a.tp_size, 1);
    WD_EXPECT_EQ_INT(a.dp_size, 1);
    WD_EXPECT_EQ_INT(a.ep_size, 1);
    WD_EXPECT_EQ_INT(a.enable_dp_attention, 0);
    WD_EXPECT(strcmp(a.moe_a2a_backend, "none") == 0);
    WD_EXPECT(strcmp(a.deepep_mode, "auto") == 0);
    WD_EXPECT_EQ_INT(a.moe_dense_tp_size, 0);
    WD_EXPECT_EQ_INT(a.nnodes, 1);
    WD_EXPECT_EQ_INT(a.node_rank, 0);
    WD_EXPECT(a.dist_init_addr == NULL);
    WD_EXPECT_EQ_INT(a.enable_eplb, 0);
    WD_EXPECT_EQ_INT(a.ep_num_redundant_experts, 0);
    WD_EXPECT(strcmp(a.eplb_algorithm, "auto") == 0);
    WD_EXPECT_EQ_INT(a.eplb_rebalance_num_iterations, 1000);
    WD_EXPECT(strcmp(a.init_expert_location, "trivial") == 0);
    /* SGLang's derived defaults: recorder off without EPLB, buffer = rebalance period,
     * dispatch static (its init_expert_location default is never None). */
    WD_EXPECT(a.expert_distribution_recorder_mode == NULL);
    WD_EXPECT_EQ_INT(a.expert_distribution_recorder_buffer_size, 1000);
    WD_EXPECT(a.ep_dispatch_algorithm && strcmp(a.ep_dispatch_algorithm, "static") == 0);
    WD_EXPECT_EQ_INT(a.print_layout, 0);

    struct wd_parallel_args p;
    WD_EXPECT_EQ_INT(wd_server_args_to_parallel(&a, &p, NULL), WD_OK);
    WD_EXPECT_EQ_INT(p.tp_size, 1);
    WD_EXPECT_EQ_INT(p.pp_size, 1);
    WD_EXPECT_EQ_INT(p.a2a_backend, WD_A2A_NONE);
    WD_EXPECT_EQ_INT(p.deepep_mode, WD_DEEPEP_AUTO);
    WD_EXPECT_EQ_INT(p.dist_init_addr[0], 0);
}

static void test_aliases(void)
{
    static const char *tp[] = {"--tp 4", "--tp-size 4", "--tensor-parallel-size 4", "--tp=4",
                               "--tensor-parallel-size=4"};
    static const char *dp[] = {"--dp 4", "--dp-size 4", "--data-parallel-size 4", "--dp=4"};
    static const char *ep[] = {"--ep 4", "--ep-size 4", "--expert-parallel-size 4", "--ep=4"};
    struct wd_server_args a;
    for (size_t i = 0; i < sizeof(tp) / sizeof(tp[0]); i++) {
        parse_ok(&a, tp[i]);
        WD_EXPECT_EQ_INT(a.tp_size, 4);
        WD_EXPECT_EQ_INT(a.dp_size, 1);
    }
    for (size_t i = 0; i < sizeof(dp) / sizeof(dp[0]); i++) {
        parse_ok(&a, dp[i]);
        WD_EXPECT_EQ_INT(a.dp_size, 4);
        WD_EXPECT_EQ_INT(a.tp_size, 1);
    }
    for (size_t i = 0; i < sizeof(ep) / sizeof(ep[0]); i++) {
        parse_ok(&a, ep[i]);
        WD_EXPECT_EQ_INT(a.ep_size, 4);
        WD_EXPECT_EQ_INT(a.tp_size, 1);
    }
}

static void test_full_line(void)
{
    /* The seed's WideEP launch line, minus model flags. */
    struct wd_server_args a;
    parse_ok(&a, "--tp 64 --dp-size 64 --enable-dp-attention --ep-size 64 --moe-a2a-backend "
                 "deepep --deepep-mode low_latency --enable-eplb --moe-dense-tp-size 1 "
                 "--nnodes 8 --node-rank 3 --dist-init-addr 10.0.0.1:29500 --print-layout");
    WD_EXPECT_EQ_INT(a.enable_dp_attention, 1);
    WD_EXPECT_EQ_INT(a.enable_eplb, 1);
    WD_EXPECT_EQ_INT(a.print_layout, 1);
    WD_EXPECT(strcmp(a.expert_distribution_recorder_mode, "stat") == 0);
    struct wd_parallel_args p;
    struct wd_error err = {0};
    WD_EXPECT_EQ_INT(wd_server_args_to_parallel(&a, &p, &err), WD_OK);
    WD_EXPECT_EQ_INT(p.tp_size, 64);
    WD_EXPECT_EQ_INT(p.dp_size, 64);
    WD_EXPECT_EQ_INT(p.ep_size, 64);
    WD_EXPECT_EQ_INT(p.enable_dp_attention, 1);
    WD_EXPECT_EQ_INT(p.a2a_backend, WD_A2A_DEEPEP);
    WD_EXPECT_EQ_INT(p.deepep_mode, WD_DEEPEP_LOW_LATENCY);
    WD_EXPECT_EQ_INT(p.moe_dense_tp_size, 1);
    WD_EXPECT_EQ_INT(p.nnodes, 8);
    WD_EXPECT_EQ_INT(p.node_rank, 3);
    WD_EXPECT(strcmp(p.dist_init_addr, "10.0.0.1:29500") == 0);
    struct wd_layout *l = NULL;
    wd_log_set_level(WD_LOG_ERROR);
    WD_EXPECT_EQ_INT(wd_layout_create(&p, NULL, &l, &err), WD_OK);
    wd_log_set_level(WD_LOG_INFO);
    WD_EXPECT(l && l->moe_tp_size == 1 && l->attn_tp_size == 1 && l->ranks_per_node == 8);
    wd_layout_destroy(l);

    parse_ok(&a, "--deepep-mode normal --moe-a2a-backend=deepep");
    WD_EXPECT_EQ_INT(wd_server_args_to_parallel(&a, &p, NULL), WD_OK);
    WD_EXPECT_EQ_INT(p.deepep_mode, WD_DEEPEP_NORMAL);
    WD_EXPECT_EQ_INT(p.a2a_backend, WD_A2A_DEEPEP);
}

static void test_bad_values(void)
{
    parse_fails("--moe-a2a-backend mooncake", WD_ERR_UNSUPPORTED,
                "--moe-a2a-backend mooncake is not supported by wideep (supported: none, deepep)");
    parse_fails("--moe-a2a-backend mori", WD_ERR_UNSUPPORTED,
                "--moe-a2a-backend mori is not supported by wideep (supported: none, deepep)");
    parse_fails("--moe-a2a-backend nccl", WD_ERR_INVALID,
                "--moe-a2a-backend: 'nccl' is not one of: none, deepep");
    parse_fails("--deepep-mode fast", WD_ERR_INVALID,
                "--deepep-mode: 'fast' is not one of: auto, normal, low_latency");
    parse_fails("--expert-distribution-recorder-mode stat_approx", WD_ERR_UNSUPPORTED,
                "--expert-distribution-recorder-mode stat_approx is not supported by wideep "
                "(supported: stat, per_pass, per_token)");
    parse_fails("--ep-dispatch-algorithm fake", WD_ERR_UNSUPPORTED,
                "--ep-dispatch-algorithm fake is not supported by wideep (supported: static, "
                "dynamic)");
    parse_fails("--eplb-algorithm deepseek_vec", WD_ERR_UNSUPPORTED,
                "--eplb-algorithm deepseek_vec is not supported by wideep (supported: auto, "
                "deepseek, deepseek_hierarchical)");
    parse_fails("--eplb-algorithm greedy", WD_ERR_INVALID,
                "--eplb-algorithm: 'greedy' is not one of: auto, deepseek, deepseek_hierarchical");
    parse_fails("--tp 0", WD_ERR_INVALID, "--tp-size: 0 is outside [1, 4096]");
    parse_fails("--ep abc", WD_ERR_INVALID, "--ep-size: 'abc' is not an integer");
    parse_fails("--dp", WD_ERR_INVALID, "--dp-size needs a value");
    parse_fails("--ep-sizes 2", WD_ERR_INVALID, "unknown flag '--ep-sizes' (see --help)");
    parse_fails("--moe-dense-tp-size 2", WD_ERR_INVALID,
                "moe_dense_tp_size only support 1 and None currently (got 2)");
    parse_fails("--moe-dense-tp-size 0", WD_ERR_INVALID,
                "--moe-dense-tp-size: 0 is outside [1, 4096]");
    parse_fails("--node-rank -1", WD_ERR_INVALID, "--node-rank: -1 is outside [0, 4095]");
    parse_fails("--init-expert-location /nonexistent/placement.json", WD_ERR_NOT_FOUND,
                "--init-expert-location /nonexistent/placement.json: No such file or directory");
    parse_fails("--init-expert-location=", WD_ERR_INVALID,
                "--init-expert-location needs 'trivial' or a file path");
    struct wd_server_args a;
    char line[600];
    snprintf(line, sizeof(line), "--init-expert-location %s",
             wd_test_src("tests/fixtures/loader/config_qwen3_moe_tf5.json"));
    parse_ok(&a, line);
}

static void test_eplb(void)
{
    struct wd_server_args a;
    parse_ok(&a, "--tp 4 --ep 4 --enable-eplb --ep-num-redundant-experts 8");
    WD_EXPECT(strcmp(a.expert_distribution_recorder_mode, "stat") == 0);
    WD_EXPECT(strcmp(a.ep_dispatch_algorithm, "static") == 0);
    WD_EXPECT_EQ_INT(a.expert_distribution_recorder_buffer_size, 1000);
    WD_EXPECT_EQ_INT(a.ep_num_redundant_experts, 8);
    /* Explicit choices are kept. */
    parse_ok(&a, "--tp 4 --ep 2 --enable-eplb --expert-distribution-recorder-mode per_pass "
                 "--ep-dispatch-algorithm dynamic --eplb-algorithm deepseek_hierarchical "
                 "--eplb-rebalance-num-iterations 500");
    WD_EXPECT(strcmp(a.expert_distribution_recorder_mode, "per_pass") == 0);
    WD_EXPECT(strcmp(a.ep_dispatch_algorithm, "dynamic") == 0);
    WD_EXPECT(strcmp(a.eplb_algorithm, "deepseek_hierarchical") == 0);
    WD_EXPECT_EQ_INT(a.expert_distribution_recorder_buffer_size, 500);
    /* DeepEP sets ep = tp before the EPLB check reads it. */
    parse_ok(&a, "--tp 4 --moe-a2a-backend deepep --enable-eplb");
    parse_fails("--tp 4 --enable-eplb", WD_ERR_INVALID,
                "--enable-eplb needs expert parallelism: ep_size must be > 1 (got 1)");
    parse_fails("--tp 4 --ep 4 --enable-eplb --eplb-rebalance-num-iterations 100 "
                "--expert-distribution-recorder-buffer-size 200",
                WD_ERR_INVALID,
                "eplb_rebalance_num_iterations must be greater than "
                "expert_distribution_recorder_buffer_size (100 < 200)");
    /* Without EPLB the recorder may keep more passes than the (unused) period. */
    parse_ok(&a, "--expert-distribution-recorder-mode per_token "
                 "--expert-distribution-recorder-buffer-size 2000");
    WD_EXPECT_EQ_INT(a.expert_distribution_recorder_buffer_size, 2000);
    parse_fails("--eplb-rebalance-num-iterations 0", WD_ERR_INVALID,
                "--eplb-rebalance-num-iterations: 0 is outside [1, 999999]");
}

static void test_table_and_env(void)
{
    struct wd_server_args a;
    struct wd_flag flags[WD_SERVER_ARGS_N_FLAGS + 1];
    wd_server_args_init(&a);
    WD_EXPECT_EQ_INT(wd_server_args_flags(&a, flags, WD_SERVER_ARGS_N_FLAGS - 1), -1);
    /* Appended after a binary's own flag. */
    int threads = 0;
    flags[0] = (struct wd_flag){"threads", NULL, WD_FLAG_INT, &threads, 0, 64, "t", NULL, 0};
    int n = 1 + wd_server_args_flags(&a, flags + 1, WD_SERVER_ARGS_N_FLAGS);
    WD_EXPECT_EQ_INT(n, WD_SERVER_ARGS_N_FLAGS + 1);
    char *argv[] = {"x", "--threads", "3", "--ep", "2", "--tp", "2"};
    int help = 0;
    setenv("WIDEEP_NNODES", "2", 1);
    setenv("WIDEEP_TP_SIZE", "8", 1); /* the command line wins */
    WD_EXPECT_EQ_INT(wd_flags_parse(flags, n, 7, argv, &help, NULL), WD_OK);
    unsetenv("WIDEEP_NNODES");
    unsetenv("WIDEEP_TP_SIZE");
    WD_EXPECT_EQ_INT(threads, 3);
    WD_EXPECT_EQ_INT(a.ep_size, 2);
    WD_EXPECT_EQ_INT(a.tp_size, 2);
    WD_EXPECT_EQ_INT(a.nnodes, 2);
    /* Names are unique across the table, aliases included. */
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            WD_EXPECT_MSG(strcmp(flags[i].name, flags[j].name) != 0, "duplicate %s", flags[i].name);

    /* A too-long address is refused by the conversion. */
    char addr[300];
    memset(addr, 'a', sizeof(addr) - 1);
    addr[sizeof(addr) - 1] = 0;
    wd_server_args_init(&a);
    a.dist_init_addr = addr;
    struct wd_parallel_args p;
    struct wd_error err = {0};
    WD_EXPECT_EQ_INT(wd_server_args_to_parallel(&a, &p, &err), WD_ERR_INVALID);
    WD_EXPECT(strcmp(err.msg, "--dist-init-addr is longer than 255 characters") == 0);
    /* The conversion checks the choices on its own too. */
    wd_server_args_init(&a);
    a.moe_a2a_backend = "mooncake";
    WD_EXPECT_EQ_INT(wd_server_args_to_parallel(&a, &p, &err), WD_ERR_UNSUPPORTED);
}

/* Runs wd_layout_print_main with stdout and stderr captured. */
static int run_print(const char *line, char *out, size_t out_cap, char *errs, size_t err_cap)
{
    static char buf[1024];
    char *argv[MAX_ARGS] = {"/usr/bin/wideep-generate"};
    int argc = 1;
    snprintf(buf, sizeof(buf), "%s", line);
    for (char *tok = strtok(buf, " "); tok && argc < MAX_ARGS; tok = strtok(NULL, " "))
        argv[argc++] = tok;
    FILE *fo = tmpfile(), *fe = tmpfile();
    WD_ASSERT(fo && fe);
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    dup2(fileno(fo), 1);
    dup2(fileno(fe), 2);
    int rc = wd_layout_print_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    rewind(fo);
    rewind(fe);
    out[fread(out, 1, out_cap - 1, fo)] = 0;
    errs[fread(errs, 1, err_cap - 1, fe)] = 0;
    fclose(fo);
    fclose(fe);
    return rc;
}

static void test_print_main(void)
{
    static char out[1 << 16], errs[4096];
    int rc = run_print("--print-layout --tp 8 --ep 4", out, sizeof(out), errs, sizeof(errs));
    WD_EXPECT_EQ_INT(rc, 0);
    json_t *j = json_loads(out, 0, NULL);
    WD_EXPECT_MSG(j != NULL, "output: %s", out);
    if (j) {
        json_t *g = json_object_get(j, "moe_ep_groups");
        WD_EXPECT_EQ_INT(json_array_size(g), 2);
        WD_EXPECT_EQ_INT(json_integer_value(json_array_get(json_array_get(g, 1), 3)), 7);
        WD_EXPECT_EQ_INT(json_integer_value(json_object_get(j, "moe_tp_size")), 2);
        json_decref(j);
    }
    WD_EXPECT(strchr(out, '\n') == out + strlen(out) - 1); /* one line */

    rc = run_print("--print-layout --tp 8 --ep 3", out, sizeof(out), errs, sizeof(errs));
    WD_EXPECT_EQ_INT(rc, 1);
    WD_EXPECT_EQ_INT(out[0], 0);
    WD_EXPECT_MSG(strcmp(errs, "wideep-generate: tp_size 8 must be divisible by moe_ep_size 3\n") ==
                      0,
                  "stderr: %s", errs);

    rc = run_print("--print-layout --tp 4 --moe-a2a-backend deepep", out, sizeof(out), errs,
                   sizeof(errs));
    WD_EXPECT_EQ_INT(rc, 0);
    WD_EXPECT(strstr(out, "\"moe_ep_size\":4") != NULL);
    WD_EXPECT_MSG(strstr(errs, "DeepEP MoE is enabled. The expert parallel size is adjusted to "
                               "be the same as the tensor parallel size[4].") != NULL,
                  "stderr: %s", errs);

    rc = run_print("--print-layout --moe-a2a-backend mooncake", out, sizeof(out), errs,
                   sizeof(errs));
    WD_EXPECT_EQ_INT(rc, 2);
    WD_EXPECT(strstr(errs, "mooncake is not supported") != NULL);
    rc = run_print("--print-layout --tp", out, sizeof(out), errs, sizeof(errs));
    WD_EXPECT_EQ_INT(rc, 2);
    rc = run_print("--help", out, sizeof(out), errs, sizeof(errs));
    WD_EXPECT_EQ_INT(rc, 0);
    WD_EXPECT(strstr(out, "--tp-size") && strstr(out, "tensor-parallel-size"));
}

/* --model-path reads config.json only: a directory holding just that file is enough. */
static void test_print_main_model(void)
{
    char dir[] = "/tmp/wd_layout_XXXXXX";
    if (!mkdtemp(dir)) {
        WD_EXPECT(0);
        return;
    }
    char link[64], line[256];
    static char out[1 << 16], errs[4096];
    snprintf(link, sizeof(link), "%s/config.json", dir);

    /* Qwen3-30B-A3B: 128 experts; 4 redundant make 132, which 8 ranks do not divide. */
    WD_EXPECT_EQ_INT(
        symlink(wd_test_src("tests/fixtures/loader/config_qwen3_30b_a3b_hub.json"), link), 0);
    snprintf(line, sizeof(line), "--print-layout --model-path %s --tp 8 --ep 8", dir);
    WD_EXPECT_EQ_INT(run_print(line, out, sizeof(out), errs, sizeof(errs)), 0);
    snprintf(line, sizeof(line),
             "--print-layout --model-path %s --tp 8 --ep 8 --ep-num-redundant-experts 4", dir);
    WD_EXPECT_EQ_INT(run_print(line, out, sizeof(out), errs, sizeof(errs)), 1);
    WD_EXPECT_MSG(strstr(errs, "num_experts 132 (128 routed + 4 redundant) must be divisible by "
                               "moe_ep_size 8") != NULL,
                  "stderr: %s", errs);
    unlink(link);

    /* DeepSeek-V3 (FP8, block 128, moe_intermediate_size 2048): tp 32 ep 1 leaves 64 rows. */
    WD_EXPECT_EQ_INT(
        symlink(wd_test_src("tests/fixtures/loader/config_deepseek_v3_hub.json"), link), 0);
    snprintf(line, sizeof(line), "--print-layout --model-path %s --tp 32", dir);
    WD_EXPECT_EQ_INT(run_print(line, out, sizeof(out), errs, sizeof(errs)), 1);
    WD_EXPECT_MSG(strstr(errs, "(moe_intermediate_size=2048 / moe_tp_size=32) % "
                               "weight_block_size_n=128 == 0") != NULL,
                  "stderr: %s", errs);
    snprintf(line, sizeof(line), "--print-layout --model-path %s --tp 32 --ep 32", dir);
    WD_EXPECT_EQ_INT(run_print(line, out, sizeof(out), errs, sizeof(errs)), 0);
    unlink(link);

    snprintf(line, sizeof(line), "--print-layout --model-path %s --tp 2", dir);
    WD_EXPECT_EQ_INT(run_print(line, out, sizeof(out), errs, sizeof(errs)), 1);
    rmdir(dir);
}

int main(void)
{
    WD_RUN(test_defaults);
    WD_RUN(test_aliases);
    WD_RUN(test_full_line);
    WD_RUN(test_bad_values);
    WD_RUN(test_eplb);
    WD_RUN(test_table_and_env);
    WD_RUN(test_print_main);
    WD_RUN(test_print_main_model);
    return wd_test_finish();
}

/*
 * wideep-bench engine: decode tokens/s at batch 1 and 32, prefill tokens/s,
 * weight bytes read per decode token, and the achieved weight bandwidth as a
 * ratio to two baselines measured in the same run with the same threads: a read-only
 * reduction (decode's ceiling: it only reads the weights) and memcpy (which moves every
 * byte twice, kept for comparison with older runs).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/config/flags.h"
#include "common/sched/scheduler.h"
#include "common/util/log.h"
#include "tests/bench/bench_util.h"
#include "tests/bench/random_model.h"

static double weight_bytes(const struct wd_weight *w)
{
    if (!w->data)
        return 0;
    double b = (double)w->rows * (double)w->cols * (double)wd_dtype_size(w->dtype);
    if (w->scale_inv)
        b += (double)((w->rows + w->block_rows - 1) / w->block_rows) *
             (double)((w->cols + w->block_cols - 1) / w->block_cols) * 4.0;
    return b;
}

static double mlp_bytes(const struct wd_mlp_weights *m)
{
    return weight_bytes(&m->gate) + weight_bytes(&m->up) + weight_bytes(&m->down);
}

/* Weight bytes one decode token at batch 1 reads: everything but the experts it skips. */
static double bytes_per_decode_token(const struct wd_model *m)
{
    const struct wd_model_config *c = &m->cfg;
    double b =
        weight_bytes(&m->lm_head) + (double)c->hidden_size * (double)wd_dtype_size(m->embed.dtype);
    for (int l = 0; l < c->n_layers; l++) {
        const struct wd_layer_weights *L = &m->layers[l];
        const struct wd_attn_weights *a = &L->attn;
        const struct wd_weight *ws[] = {&a->q_proj,   &a->k_proj,    &a->v_proj,    &a->q_a_proj,
                                        &a->q_b_proj, &a->kv_a_proj, &a->kv_b_proj, &a->o_proj};
        for (size_t i = 0; i < sizeof(ws) / sizeof(ws[0]); i++)
            b += weight_bytes(ws[i]);
        if (!L->is_moe) {
            b += mlp_bytes(&L->dense);
            continue;
        }
        b += weight_bytes(&L->router) + c->num_experts_per_tok * mlp_bytes(&L->experts[0]);
        if (L->has_shared)
            b += mlp_bytes(&L->shared);
    }
    return b;
}

struct counter {
    long tokens;
};

static void count_token(void *ctx, const struct wd_request *req, int32_t token, float lp)
{
    if (token >= 0)
        ((struct counter *)ctx)->tokens++;
}

/* CPU seconds this process has used, every thread together. */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e-6;
}

struct result {
    double tps;  /* tokens per second */
    double busy; /* CPU time / (wall time x threads): below 1 when the machine was shared */
};

/* Queues n requests of prompt_len pseudo-random ids; returns decode tokens/s over `steps`
 * steps after the prefill, or prefill tokens/s when steps is 0. */
static enum wd_status measure(struct wd_model *m, int n, int prompt_len, int steps,
                              struct result *res, struct wd_error *err)
{
    int ps = 16;
    struct wd_kv_pool_config kc = {.n_layers = m->cfg.n_layers, .page_size = ps};
    wd_model_kv_geometry(m, &kc.k_row, &kc.v_row);
    kc.n_pages = n * ((prompt_len + steps + 2 + ps - 1) / ps);
    struct wd_kv_pool *kv = NULL;
    WD_CHECK(wd_kv_pool_create(&kc, &kv, err));
    struct counter cnt = {0};
    struct wd_scheduler_config sc = {.max_running_requests = m->opt.max_logit_rows,
                                     .chunked_prefill_size =
                                         m->opt.max_batch_tokens - m->opt.max_logit_rows,
                                     .context_length = prompt_len + steps + 2};
    struct wd_scheduler *s = NULL;
    enum wd_status st = wd_scheduler_create(&sc, m, kv, count_token, &cnt, &s, err);
    int32_t *ids = malloc((size_t)prompt_len * sizeof(int32_t));
    uint64_t rid;
    for (int i = 0; st == WD_OK && i < n; i++) {
        for (int j = 0; j < prompt_len; j++)
            ids[j] = (int32_t)((1103515245u * (unsigned)(i * prompt_len + j) + 12345u) %
                               (unsigned)m->cfg.vocab_size);
        struct wd_request_params p = {.prompt = ids,
                                      .n_prompt = prompt_len,
                                      .max_new_tokens = steps + 2,
                                      .sampling = {.temperature = 0, .top_p = 1},
                                      .ignore_eos = 1};
        st = wd_scheduler_add(s, &p, &rid, err);
    }
    int active = n;
    /* Prefill: step until every request has its first token (chunked prefill may take
     * several steps), then time the decode steps alone. */
    double t0 = wd_bench_now(), c0 = cpu_seconds();
    while (st == WD_OK && cnt.tokens < n)
        st = wd_scheduler_step(s, &active, err);
    double t1 = wd_bench_now(), c1 = cpu_seconds();
    long before = cnt.tokens;
    for (int i = 0; st == WD_OK && i < steps && active > 0; i++)
        st = wd_scheduler_step(s, &active, err);
    double t2 = wd_bench_now(), c2 = cpu_seconds();
    int nt = wd_threadpool_size(m->tp);
    if (st == WD_OK && steps > 0) {
        res->tps = (double)(cnt.tokens - before) / (t2 - t1);
        res->busy = (c2 - c1) / ((t2 - t1) * nt);
    } else if (st == WD_OK) {
        res->tps = (double)n * prompt_len / (t1 - t0);
        res->busy = (c1 - c0) / ((t1 - t0) * nt);
    }
    free(ids);
    wd_scheduler_destroy(s);
    wd_kv_pool_destroy(kv);
    return st;
}

int wd_bench_engine(int argc, char **argv)
{
    const char *model_path = NULL, *random = NULL, *only = "";
    int threads = 0, steps = 16, prefill_len = 512, batch = 32, context = 32;
    struct wd_flag flags[] = {
        {"model-path", NULL, WD_FLAG_STRING, &model_path, 1, 0, "model directory", NULL, 0},
        {"random", NULL, WD_FLAG_STRING, &random, 1, 0,
         "random model: qwen3-moe-mid, deepseek-v3-mid or a config.json", NULL, 0},
        {"threads", NULL, WD_FLAG_INT, &threads, 0, 1024, "CPU threads (0 = all)", NULL, 0},
        {"decode-steps", NULL, WD_FLAG_INT, &steps, 1, 100000, "decode steps timed", NULL, 0},
        {"prefill-tokens", NULL, WD_FLAG_INT, &prefill_len, 1, 1 << 20, "prompt length for prefill",
         NULL, 0},
        {"batch", NULL, WD_FLAG_INT, &batch, 1, 4096, "large decode batch", NULL, 0},
        {"decode-context", NULL, WD_FLAG_INT, &context, 1, 1 << 20,
         "prompt tokens of each sequence before its timed decode steps (long-context decode)", NULL,
         0},
        {"only", NULL, WD_FLAG_STRING, &only, 1, 0,
         "run one measurement: decode1, decode-batch or prefill (default: all three)", NULL, 0},
    };
    int nf = (int)(sizeof(flags) / sizeof(flags[0])), help = 0;
    struct wd_error err = {0};
    if (wd_flags_parse(flags, nf, argc, argv, &help, &err) != WD_OK) {
        fprintf(stderr, "wideep-bench engine: %s\n", err.msg);
        return 2;
    }
    int run_d1 = !*only || strcmp(only, "decode1") == 0;
    int run_dn = !*only || strcmp(only, "decode-batch") == 0;
    int run_pf = !*only || strcmp(only, "prefill") == 0;
    if (!help && !run_d1 && !run_dn && !run_pf) {
        fprintf(stderr,
                "wideep-bench engine: --only %s: expected decode1, decode-batch or "
                "prefill\n",
                only);
        return 2;
    }
    if (help || (!model_path == !random)) {
        wd_flags_print_help(flags, nf,
                            "usage: wideep-bench engine (--model-path DIR | --random NAME)");
        return help ? 0 : 2;
    }
    struct wd_model_options opt = {.max_batch_tokens =
                                       (prefill_len > context ? prefill_len : context) + batch,
                                   .max_logit_rows = batch,
                                   .n_threads = threads};
    struct wd_model *m = NULL;
    uint8_t *blob = NULL;
    struct wd_model_config cfg;
    enum wd_status st;
    double t0 = wd_bench_now();
    if (random) {
        st = wd_bench_random_config(random, &cfg, &err);
        if (st == WD_OK)
            st = wd_bench_random_model(&cfg, &opt, 42, &m, &blob, &err);
    } else {
        st = wd_model_create(model_path, &opt, &m, &err);
    }
    if (st != WD_OK) {
        fprintf(stderr, "wideep-bench engine: %s\n", err.msg);
        return 1;
    }
    int nt = wd_threadpool_size(m->tp);
    printf("model: %s (%s), %d layers, hidden %d, %d experts top-%d, built in %.1f s, %d threads\n",
           m->cfg.arch_name, random ? random : model_path, m->cfg.n_layers, m->cfg.hidden_size,
           m->cfg.n_routed_experts, m->cfg.num_experts_per_tok, wd_bench_now() - t0, nt);
    double copy = wd_bench_memcpy_gbs((size_t)256 << 20, m->tp, nt);
    /* The read-only baseline is taken right before and right after the batch-1 decode and
     * averaged, so a machine whose load changes during the run skews the ratio less. */
    double read = wd_bench_read_gbs((size_t)512 << 20, m->tp, nt);
    double bpt = bytes_per_decode_token(m);
    struct result d1 = {0}, dn = {0}, pf = {0};
    st = WD_OK;
    if (run_d1) {
        st = measure(m, 1, context, steps, &d1, &err);
        read = 0.5 * (read + wd_bench_read_gbs((size_t)512 << 20, m->tp, nt));
    }
    if (st == WD_OK && run_dn)
        st = measure(m, batch, context, steps, &dn, &err);
    if (st == WD_OK && run_pf)
        st = measure(m, 1, prefill_len, 0, &pf, &err);
    if (st != WD_OK) {
        fprintf(stderr, "wideep-bench engine: %s\n", err.msg);
    } else {
        double bw = bpt * d1.tps / 1e9;
        printf("baseline read-only:       %8.2f GB/s (%d threads, 512 MiB, before and after "
               "decode)\n",
               read, nt);
        printf("baseline memcpy:          %8.2f GB/s (%d threads, 256 MiB)\n", copy, nt);
        printf("weights per decode token: %8.1f MB (batch 1)\n", bpt / 1e6);
        printf("decode context:           %8d tokens of prompt before the timed steps\n", context);
        if (run_d1)
            printf("decode batch 1:           %8.2f tok/s  -> %.2f GB/s of weights = %.2f x "
                   "read-only, %.2f x memcpy  (cpu busy %.2f)\n",
                   d1.tps, bw, bw / read, bw / copy, d1.busy);
        if (run_dn)
            printf("decode batch %-3d          %8.2f tok/s  (cpu busy %.2f)\n", batch, dn.tps,
                   dn.busy);
        if (run_pf)
            printf("prefill (%d tokens):     %8.1f tok/s  (cpu busy %.2f)\n", prefill_len, pf.tps,
                   pf.busy);
    }
    wd_model_destroy(m);
    free(blob);
    return st == WD_OK ? 0 : 1;
}

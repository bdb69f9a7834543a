/*
 * The CPU engine against Hugging Face transformers (tests/fixtures/tiny-*):
 * - logits of every prompt position within tolerance of transformers' logits:
 *   fp32, and bf16/fp8 weights computed in fp32: every row's max |error| <= 1e-4 of
 *   the row's largest |logit|. Against transformers computing natively in bf16
 *   (it rounds every activation, and a rounding can flip an expert choice, which
 *   moves a row a lot): median row error <= 3e-2, 90th percentile <= 5e-2 and the
 *   top-1 token the same on >= 95% of rows. (transformers' own bf16 run differs
 *   from its fp32 run by as much.)
 * - one prompt alone, all prompts in one ragged batch, and chunked prefill give
 *   bit-identical logits;
 * - greedy continuations through the scheduler equal transformers' generate().
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/kv/kv_pool.h"
#include "common/model/model.h"
#include "common/sched/scheduler.h"
#include "tests/unit/wd_test.h"

#define MAX_PROMPTS 16

struct golden {
    json_t *root;
    int vocab;
    int n_prompts;
    int32_t *ids[MAX_PROMPTS];
    int len[MAX_PROMPTS];
    int total;
};

static int load_golden(const char *family, struct golden *g)
{
    char rel[512];
    snprintf(rel, sizeof(rel), "tests/fixtures/%s/golden/golden.json", family);
    json_error_t jerr;
    memset(g, 0, sizeof(*g));
    g->root = json_load_file(wd_test_src(rel), 0, &jerr);
    if (!g->root) {
        wd_test_fail(__FILE__, __LINE__, "%s: %s", rel, jerr.text);
        return -1;
    }
    g->vocab = (int)json_integer_value(json_object_get(g->root, "vocab_size"));
    json_t *prompts = json_object_get(g->root, "prompts");
    g->n_prompts = (int)json_array_size(prompts);
    if (g->n_prompts > MAX_PROMPTS)
        g->n_prompts = MAX_PROMPTS;
    for (int i = 0; i < g->n_prompts; i++) {
        json_t *ids = json_object_get(json_array_get(prompts, i), "ids");
        g->len[i] = (int)json_array_size(ids);
        g->ids[i] = malloc((size_t)g->len[i] * sizeof(int32_t));
        for (int j = 0; j < g->len[i]; j++)
            g->ids[i][j] = (int32_t)json_integer_value(json_array_get(ids, j));
        g->total += g->len[i];
    }
    return 0;
}

static void free_golden(struct golden *g)
{
    for (int i = 0; i < g->n_prompts; i++)
        free(g->ids[i]);
    json_decref(g->root);
}

static float *read_logits(const char *family, const char *file, size_t n)
{
    char rel[512];
    snprintf(rel, sizeof(rel), "tests/fixtures/%s/golden/%s", family, file);
    FILE *f = fopen(wd_test_src(rel), "rb");
    if (!f)
        return NULL;
    float *buf = malloc(n * sizeof(float));
    size_t got = fread(buf, sizeof(float), n, f);
    fclose(f);
    if (got != n) {
        free(buf);
        return NULL;
    }
    return buf;
}

struct engine {
    struct wd_model *model;
    struct wd_kv_pool *kv;
};

/* is_mapped: stream the weights from the checkpoint's mapping instead of the load-time copy. */
static int engine_open(const char *family, const char *dir, int max_tokens, int is_mapped,
                       struct engine *e)
{
    char rel[512];
    snprintf(rel, sizeof(rel), "tests/fixtures/%s/%s", family, dir);
    struct wd_model_options opt = {.max_batch_tokens = max_tokens,
                                   .max_logit_rows = max_tokens,
                                   .n_threads = 2,
                                   .is_weights_mapped = is_mapped};
    struct wd_error err = {0};
    memset(e, 0, sizeof(*e));
    if (wd_model_create(wd_test_src(rel), &opt, &e->model, &err) != WD_OK) {
        wd_test_fail(__FILE__, __LINE__, "model %s: %s", rel, err.msg);
        return -1;
    }
    struct wd_kv_pool_config kc = {
        .n_layers = e->model->cfg.n_layers, .page_size = 16, .n_pages = 64};
    wd_model_kv_geometry(e->model, &kc.k_row, &kc.v_row);
    if (wd_kv_pool_create(&kc, &e->kv, &err) != WD_OK) {
        wd_test_fail(__FILE__, __LINE__, "kv: %s", err.msg);
        wd_model_destroy(e->model);
        return -1;
    }
    return 0;
}

static void engine_close(struct engine *e)
{
    wd_kv_pool_destroy(e->kv);
    wd_model_destroy(e->model);
}

/* Runs prompts [first, first+count) as one ragged batch, chunk tokens of each per forward
 * (chunk <= 0: whole prompts), and writes every position's logits to out in prompt order. */
static int run_prefill(struct engine *e, const struct golden *g, int first, int count, int chunk,
                       float *out)
{
    int32_t pages[MAX_PROMPTS][16];
    struct wd_attn_seq seqs[MAX_PROMPTS];
    int done[MAX_PROMPTS] = {0};
    size_t V = (size_t)g->vocab;
    size_t base[MAX_PROMPTS];
    size_t acc = 0;
    for (int i = 0; i < g->n_prompts; i++) { /* offsets of every prompt in out */
        base[i] = acc;
        acc += (size_t)g->len[i];
    }
    for (int s = 0; s < count; s++) {
        int need = (g->len[first + s] + 15) / 16;
        /* Take pages in reverse so page order differs from slot order. */
        if (wd_kv_pool_alloc(e->kv, need, pages[s]) != WD_OK)
            return -1;
        for (int a = 0, b = need - 1; a < b; a++, b--) {
            int32_t t = pages[s][a];
            pages[s][a] = pages[s][b];
            pages[s][b] = t;
        }
    }
    int ok = 0;
    int32_t *ids = malloc((size_t)g->total * sizeof(int32_t) * 3);
    int32_t *seq = ids + g->total, *pos = seq + g->total;
    int32_t *rows = malloc((size_t)g->total * sizeof(int32_t));
    float *logits = malloc((size_t)g->total * V * sizeof(float));
    for (;;) {
        int n = 0, ns = 0;
        int owner[MAX_PROMPTS];
        for (int s = 0; s < count; s++) {
            int left = g->len[first + s] - done[s];
            if (left <= 0)
                continue;
            int take = chunk > 0 && left > chunk ? chunk : left;
            for (int j = 0; j < take; j++) {
                ids[n] = g->ids[first + s][done[s] + j];
                seq[n] = ns;
                pos[n] = done[s] + j;
                rows[n] = n;
                n++;
            }
            seqs[ns].page_table = pages[s];
            seqs[ns].n_ctx = done[s] + take;
            owner[ns++] = s;
        }
        if (n == 0)
            break;
        struct wd_forward_batch b = {.n_tokens = n,
                                     .ids = ids,
                                     .tok_seq = seq,
                                     .tok_pos = pos,
                                     .n_seqs = ns,
                                     .seqs = seqs,
                                     .n_logits = n,
                                     .logit_rows = rows};
        struct wd_error err = {0};
        if (wd_model_forward(e->model, e->kv, &b, logits, &err) != WD_OK) {
            wd_test_fail(__FILE__, __LINE__, "forward: %s", err.msg);
            ok = -1;
            break;
        }
        int t = 0;
        for (int q = 0; q < ns; q++) {
            int s = owner[q];
            int take = seqs[q].n_ctx - done[s];
            memcpy(out + (base[first + s] + (size_t)done[s]) * V, logits + (size_t)t * V,
                   (size_t)take * V * sizeof(float));
            t += take;
            done[s] += take;
        }
    }
    for (int s = 0; s < count; s++)
        wd_kv_pool_free(e->kv, pages[s], (g->len[first + s] + 15) / 16);
    free(ids);
    free(rows);
    free(logits);
    return ok;
}

struct row_stats {
    double max_rel, median_rel, p90_rel, top1_agree;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static size_t argmax(const float *v, size_t n)
{
    size_t best = 0;
    for (size_t j = 1; j < n; j++)
        if (v[j] > v[best])
            best = j;
    return best;
}

/* Per row: max |got - ref| / max |ref|; then max, median and p90 over rows. */
static struct row_stats compare_rows(const float *got, const float *ref, size_t rows, size_t V)
{
    double *rel = malloc(rows * sizeof(double));
    size_t agree = 0;
    for (size_t r = 0; r < rows; r++) {
        double scale = 0, err = 0;
        for (size_t j = 0; j < V; j++) {
            double a = fabs(ref[r * V + j]);
            if (a > scale)
                scale = a;
            double d = fabs((double)got[r * V + j] - ref[r * V + j]);
            if (d > err)
                err = d;
        }
        rel[r] = err / (scale > 1e-6 ? scale : 1e-6);
        agree += argmax(got + r * V, V) == argmax(ref + r * V, V);
    }
    qsort(rel, rows, sizeof(double), cmp_double);
    struct row_stats st = {.max_rel = rel[rows - 1],
                           .median_rel = rel[rows / 2],
                           .p90_rel = rel[(rows * 9) / 10],
                           .top1_agree = (double)agree / rows};
    free(rel);
    return st;
}

struct greedy_ctx {
    int32_t out[MAX_PROMPTS][128];
    int n[MAX_PROMPTS];
    uint64_t ids[MAX_PROMPTS];
    int n_req;
};

static void on_token(void *ctx, const struct wd_request *req, int32_t token, float lp)
{
    struct greedy_ctx *c = ctx;
    for (int i = 0; i < c->n_req; i++)
        if (c->ids[i] == req->id && token >= 0 && c->n[i] < 128)
            c->out[i][c->n[i]++] = token;
}

static void check_greedy(const char *family, const char *dir, const struct golden *g,
                         json_t *greedy)
{
    struct engine e;
    if (engine_open(family, dir, 256, 0, &e))
        return;
    struct greedy_ctx ctx = {.n_req = g->n_prompts};
    struct wd_scheduler_config sc = {
        .max_running_requests = 8, .chunked_prefill_size = 24, .context_length = 4096};
    struct wd_scheduler *s = NULL;
    struct wd_error err = {0};
    WD_EXPECT_EQ_INT(wd_scheduler_create(&sc, e.model, e.kv, on_token, &ctx, &s, &err), WD_OK);
    for (int i = 0; s && i < g->n_prompts; i++) {
        struct wd_request_params p = {.prompt = g->ids[i],
                                      .n_prompt = g->len[i],
                                      .sampling = {.temperature = 0, .top_p = 1},
                                      .max_new_tokens =
                                          (int)json_array_size(json_array_get(greedy, i)),
                                      .ignore_eos = 1};
        WD_EXPECT_EQ_INT(wd_scheduler_add(s, &p, &ctx.ids[i], &err), WD_OK);
    }
    int active = 1, steps = 0;
    while (s && active > 0 && steps++ < 10000)
        if (wd_scheduler_step(s, &active, &err) != WD_OK) {
            wd_test_fail(__FILE__, __LINE__, "step: %s", err.msg);
            break;
        }
    for (int i = 0; i < g->n_prompts; i++) {
        json_t *want = json_array_get(greedy, i);
        int n = (int)json_array_size(want), first_diff = -1;
        for (int j = 0; j < n && first_diff < 0; j++)
            if (j >= ctx.n[i] || ctx.out[i][j] != json_integer_value(json_array_get(want, j)))
                first_diff = j;
        WD_EXPECT_MSG(first_diff < 0 && n >= 32, "%s/%s prompt %d: greedy differs at step %d of %d",
                      family, dir, i, first_diff, n);
    }
    wd_scheduler_destroy(s);
    WD_EXPECT_EQ_INT(wd_kv_pool_n_free(e.kv), e.kv->cfg.n_pages);
    engine_close(&e);
}

static void check_family(const char *family)
{
    struct golden g;
    if (load_golden(family, &g))
        return;
    size_t V = (size_t)g.vocab, N = (size_t)g.total;
    json_t *variants = json_object_get(g.root, "variants");
    const char *name;
    json_t *v;
    json_object_foreach(variants, name, v)
    {
        const char *dir = json_string_value(json_object_get(v, "model_dir"));
        const char *file = json_string_value(json_object_get(v, "logits"));
        float *ref = read_logits(family, file, N * V);
        WD_EXPECT_MSG(ref != NULL, "%s: cannot read %s", family, file);
        struct engine e;
        if (!ref || engine_open(family, dir, 256, 0, &e)) {
            free(ref);
            continue;
        }
        float *alone = malloc(N * V * sizeof(float)), *batch = malloc(N * V * sizeof(float));
        float *chunked = malloc(N * V * sizeof(float));
        for (int i = 0; i < g.n_prompts; i++)
            run_prefill(&e, &g, i, 1, 0, alone); /* writes prompt i at its own offset */
        run_prefill(&e, &g, 0, g.n_prompts, 0, batch);
        run_prefill(&e, &g, 0, g.n_prompts, 5, chunked);
        int native_bf16 = strcmp(name, "bf16") == 0;
        struct row_stats rs = compare_rows(alone, ref, N, V);
        printf("  %s %-12s row rel err max %.3g median %.3g p90 %.3g, top-1 agree %.3f\n", family,
               name, rs.max_rel, rs.median_rel, rs.p90_rel, rs.top1_agree);
        if (native_bf16)
            WD_EXPECT_MSG(rs.median_rel <= 3e-2 && rs.p90_rel <= 5e-2 && rs.top1_agree >= 0.95,
                          "%s bf16: outside the native-bf16 tolerance", family);
        else
            WD_EXPECT_MSG(rs.max_rel <= 1e-4, "%s %s: logits rel err %.3g > 1e-4", family, name,
                          rs.max_rel);
        WD_EXPECT_MSG(memcmp(alone, batch, N * V * sizeof(float)) == 0,
                      "%s %s: batched logits differ from alone", family, name);
        WD_EXPECT_MSG(memcmp(alone, chunked, N * V * sizeof(float)) == 0,
                      "%s %s: chunked-prefill logits differ from unchunked", family, name);
        engine_close(&e);
        /* The load-time copy of the weights changes where they are read from, nothing else. */
        struct engine em;
        if (engine_open(family, dir, 256, 1, &em) == 0) {
            run_prefill(&em, &g, 0, g.n_prompts, 0, batch);
            WD_EXPECT_MSG(memcmp(alone, batch, N * V * sizeof(float)) == 0,
                          "%s %s: logits from the mapped weights differ", family, name);
            engine_close(&em);
        }
        free(alone);
        free(batch);
        free(chunked);
        free(ref);
        if (!native_bf16)
            check_greedy(family, dir, &g, json_object_get(v, "greedy"));
    }
    free_golden(&g);
}

static void test_qwen3_moe(void)
{
    check_family("tiny-qwen3-moe");
}
static void test_deepseek_v3(void)
{
    check_family("tiny-deepseek-v3");
}
/* FP8 block-quantized weights (moe_intermediate_size 128: servable, see the fixture). */
static void test_deepseek_v3_fp8(void)
{
    check_family("tiny-deepseek-v3-fp8");
}

int main(void)
{
    WD_RUN(test_qwen3_moe);
    WD_RUN(test_deepseek_v3);
    WD_RUN(test_deepseek_v3_fp8);
    return wd_test_finish();
}

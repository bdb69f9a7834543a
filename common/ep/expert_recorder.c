/* Expert-distribution recorder: a ring of per-pass counts (and top-k ids). */
#include "common/ep/expert_recorder.h"

#include <stdlib.h>
#include <string.h>

struct wd_expert_recorder {
    struct wd_expert_recorder_config cfg;
    int32_t *counts;   /* [buffer_size][n_layers][n_experts] */
    int32_t *topk;     /* per_token: [buffer_size][n_layers][max_tokens][top_k] */
    int32_t *n_tokens; /* per_token: [buffer_size][n_layers] tokens kept */
    int head;          /* slot of the current pass */
    int n_passes;      /* passes held (<= buffer_size) */
};

static const char *k_modes[] = {"stat", "per_pass", "per_token"};

enum wd_status wd_expert_record_mode_parse(const char *s, enum wd_expert_record_mode *mode_p,
                                           struct wd_error *err)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(s, k_modes[i]) == 0) {
            *mode_p = (enum wd_expert_record_mode)i;
            return WD_OK;
        }
    return wd_error_set(err, WD_ERR_INVALID,
                        "expert distribution recorder mode '%s' is not one of: stat, per_pass, "
                        "per_token",
                        s);
}

enum wd_status wd_expert_recorder_create(const struct wd_expert_recorder_config *cfg,
                                         struct wd_expert_recorder **rec_p, struct wd_error *err)
{
    if (cfg->n_layers <= 0 || cfg->n_experts <= 0 || cfg->top_k <= 0 || cfg->buffer_size <= 0 ||
        (cfg->mode == WD_RECORD_PER_TOKEN && cfg->max_tokens <= 0))
        return wd_error_set(err, WD_ERR_INVALID,
                            "expert recorder: layers, experts, top_k, buffer size (and max tokens "
                            "for per_token) must be positive");
    struct wd_expert_recorder *r = calloc(1, sizeof(*r));
    if (!r)
        return wd_error_set(err, WD_ERR_NOMEM, "expert recorder: out of memory");
    r->cfg = *cfg;
    size_t B = (size_t)cfg->buffer_size, L = (size_t)cfg->n_layers;
    r->counts = calloc(B * L * (size_t)cfg->n_experts, sizeof(int32_t));
    if (cfg->mode == WD_RECORD_PER_TOKEN) {
        r->topk = malloc(B * L * (size_t)cfg->max_tokens * (size_t)cfg->top_k * sizeof(int32_t));
        r->n_tokens = calloc(B * L, sizeof(int32_t));
    }
    if (!r->counts || (cfg->mode == WD_RECORD_PER_TOKEN && (!r->topk || !r->n_tokens))) {
        wd_expert_recorder_destroy(r);
        return wd_error_set(err, WD_ERR_NOMEM,
                            "expert recorder: cannot keep %d passes of %d layers x %d experts",
                            cfg->buffer_size, cfg->n_layers, cfg->n_experts);
    }
    r->head = -1;
    *rec_p = r;
    return WD_OK;
}

void wd_expert_recorder_destroy(struct wd_expert_recorder *rec)
{
    if (!rec)
        return;
    free(rec->counts);
    free(rec->topk);
    free(rec->n_tokens);
    free(rec);
}

static int32_t *pass_counts(const struct wd_expert_recorder *r, int slot)
{
    return r->counts + (size_t)slot * (size_t)r->cfg.n_layers * (size_t)r->cfg.n_experts;
}

void wd_expert_recorder_begin_pass(struct wd_expert_recorder *r)
{
    r->head = (r->head + 1) % r->cfg.buffer_size;
    if (r->n_passes < r->cfg.buffer_size)
        r->n_passes++;
    memset(pass_counts(r, r->head), 0,
           (size_t)r->cfg.n_layers * (size_t)r->cfg.n_experts * sizeof(int32_t));
    if (r->n_tokens)
        memset(r->n_tokens + (size_t)r->head * (size_t)r->cfg.n_layers, 0,
               (size_t)r->cfg.n_layers * sizeof(int32_t));
}

void wd_expert_recorder_add(struct wd_expert_recorder *r, int layer, const int32_t *topk, int64_t n)
{
    if (r->head < 0 || layer < 0 || layer >= r->cfg.n_layers)
        return;
    int K = r->cfg.top_k, E = r->cfg.n_experts;
    int32_t *c = pass_counts(r, r->head) + (size_t)layer * (size_t)E;
    for (int64_t i = 0; i < n * K; i++)
        if (topk[i] >= 0 && topk[i] < E)
            c[topk[i]]++;
    if (!r->topk)
        return;
    int32_t *kept = r->n_tokens + (size_t)r->head * (size_t)r->cfg.n_layers + layer;
    int64_t room = r->cfg.max_tokens - *kept, take = n < room ? n : room;
    if (take <= 0)
        return;
    int32_t *dst = r->topk + (((size_t)r->head * (size_t)r->cfg.n_layers + (size_t)layer) *
                                  (size_t)r->cfg.max_tokens +
                              (size_t)*kept) *
                                 (size_t)K;
    memcpy(dst, topk, (size_t)take * (size_t)K * sizeof(int32_t));
    *kept += (int32_t)take;
}

int wd_expert_recorder_counts(const struct wd_expert_recorder *r, double *counts)
{
    size_t n = (size_t)r->cfg.n_layers * (size_t)r->cfg.n_experts;
    memset(counts, 0, n * sizeof(double));
    for (int p = 0; p < r->n_passes; p++) {
        const int32_t *c = pass_counts(r, p);
        for (size_t i = 0; i < n; i++)
            counts[i] += c[i];
    }
    return r->n_passes;
}

void wd_expert_recorder_reset(struct wd_expert_recorder *r)
{
    r->head = -1;
    r->n_passes = 0;
}

/* Passes oldest first: slot of the i-th oldest pass. */
static int nth_pass(const struct wd_expert_recorder *r, int i)
{
    int oldest = (r->head - r->n_passes + 1 + r->cfg.buffer_size) % r->cfg.buffer_size;
    return (oldest + i) % r->cfg.buffer_size;
}

static void dump_matrix(FILE *out, const int32_t *c, int rows, int cols)
{
    fputc('[', out);
    for (int l = 0; l < rows; l++) {
        fputs(l ? ",[" : "[", out);
        for (int e = 0; e < cols; e++)
            fprintf(out, e ? ",%d" : "%d", c[(size_t)l * cols + e]);
        fputc(']', out);
    }
    fputc(']', out);
}

enum wd_status wd_expert_recorder_dump(const struct wd_expert_recorder *r, FILE *out,
                                       struct wd_error *err)
{
    int L = r->cfg.n_layers, E = r->cfg.n_experts, K = r->cfg.top_k;
    size_t n = (size_t)L * (size_t)E;
    int32_t *sum = calloc(n, sizeof(int32_t));
    if (!sum)
        return wd_error_set(err, WD_ERR_NOMEM, "expert recorder: out of memory");
    for (int p = 0; p < r->n_passes; p++) {
        const int32_t *c = pass_counts(r, p);
        for (size_t i = 0; i < n; i++)
            sum[i] += c[i];
    }
    fprintf(out, "{\"mode\":\"%s\",\"passes\":%d,\"logical_count\":", k_modes[r->cfg.mode],
            r->n_passes);
    dump_matrix(out, sum, L, E);
    free(sum);
    if (r->cfg.mode == WD_RECORD_PER_PASS) {
        fputs(",\"per_pass\":[", out);
        for (int i = 0; i < r->n_passes; i++) {
            if (i)
                fputc(',', out);
            dump_matrix(out, pass_counts(r, nth_pass(r, i)), L, E);
        }
        fputc(']', out);
    } else if (r->cfg.mode == WD_RECORD_PER_TOKEN) {
        fputs(",\"per_token\":[", out);
        int first = 1;
        for (int i = 0; i < r->n_passes; i++) {
            int slot = nth_pass(r, i);
            for (int l = 0; l < L; l++) {
                int kept = r->n_tokens[(size_t)slot * L + l];
                if (kept == 0)
                    continue;
                const int32_t *t =
                    r->topk + ((size_t)slot * L + (size_t)l) * (size_t)r->cfg.max_tokens * K;
                fprintf(out, "%s{\"pass\":%d,\"layer\":%d,\"topk\":", first ? "" : ",", i, l);
                dump_matrix(out, t, kept, K);
                fputc('}', out);
                first = 0;
            }
        }
        fputc(']', out);
    }
    fputs("}\n", out);
    if (ferror(out))
        return wd_error_set(err, WD_ERR_IO, "expert recorder: write failed");
    return WD_OK;
}

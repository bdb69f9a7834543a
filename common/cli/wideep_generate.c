/*
 * wideep-generate: offline generation through the serving engine. A thin driver of
 * wd_engine_host: the ranks of the layout (one at world 1) run the same engine the servers
 * run; every prompt is queued at once (prompt i on attention-DP rank i % dp), so they run as
 * one continuous batch exactly as a server would run them, and the ranks leave when all are
 * done. The correctness tool and the golden-test driver.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config/flags.h"
#include "common/config/generation_config.h"
#include "common/config/server_args.h"
#include "common/engine/engine_host.h"
#include "common/layout/layout.h"
#include "common/sched/scheduler.h"
#include "common/tokenizer/chat_template.h"
#include "common/tokenizer/tokenizer.h"
#include "common/util/log.h"

struct opts {
    const char *model_path, *prompt, *input_ids, *prompts_file, *log_level, *metrics_file;
    const char *kv_cache_dtype;
    int max_new_tokens, top_k, seed, chat, json, logprobs, page_size, chunked_prefill_size;
    int max_running_requests, context_length, max_total_tokens, threads, ignore_eos;
    int weights_mapped;
    int timeout_ms;
    float temperature, top_p, min_p;
};

struct prompt_slot {
    char *text;   /* prompt text as given (NULL for --input-ids) */
    int32_t *ids; /* [n_ids] */
    size_t n_ids;
    int32_t *out;    /* [max_new_tokens] generated ids */
    float *logprobs; /* [max_new_tokens] */
    int n_out;
    enum wd_finish_reason finish;
    uint64_t req_id;
};

struct run {
    struct opts o;
    struct wd_server_args sargs; /* layout and EPLB flags (SGLang's spellings) */
    struct wd_parallel_args pargs;
    struct prompt_slot *slots;
    int n_slots;
    struct wd_tokenizer *tok;
    struct wd_error req_err; /* the first request the engine failed */
};

/* Events of prompt i arrive with request id i + 1. */
static void on_event(void *ctx, const struct wd_engine_event *ev, const void *extra)
{
    struct run *run = ctx;
    if (ev->id == 0 || ev->id > (uint64_t)run->n_slots)
        return;
    int i = (int)(ev->id - 1);
    struct prompt_slot *s = &run->slots[i];
    if (ev->kind == WD_ENGINE_EV_ERROR) {
        if (run->req_err.status == WD_OK)
            wd_error_set(&run->req_err, (enum wd_status)ev->status, "prompt %d: %.*s", i, ev->extra,
                         (const char *)extra);
        s->finish = WD_FINISH_ERROR;
        return;
    }
    if (ev->token >= 0 && s->n_out < run->o.max_new_tokens) {
        s->out[s->n_out] = ev->token;
        s->logprobs[s->n_out++] = ev->logprob;
    }
    s->finish = (enum wd_finish_reason)ev->finish;
}

static enum wd_status parse_ids(const char *s, int32_t **ids_p, size_t *n_p, struct wd_error *err)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    int32_t *ids = malloc(cap * sizeof(int32_t));
    if (!ids)
        return wd_error_set(err, WD_ERR_NOMEM, "out of memory");
    size_t n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(ids);
            return wd_error_set(err, WD_ERR_INVALID,
                                "--input-ids: expected comma-separated non-negative integers, got "
                                "'%s'",
                                s);
        }
        ids[n++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (n == 0) {
        free(ids);
        return wd_error_set(err, WD_ERR_INVALID, "--input-ids: empty list");
    }
    *ids_p = ids;
    *n_p = n;
    return WD_OK;
}

static enum wd_status add_text_slot(struct run *run, const char *text, size_t len,
                                    struct wd_error *err)
{
    struct prompt_slot *grown = realloc(run->slots, (size_t)(run->n_slots + 1) * sizeof(*grown));
    if (!grown)
        return wd_error_set(err, WD_ERR_NOMEM, "out of memory");
    run->slots = grown;
    struct prompt_slot *s = &run->slots[run->n_slots];
    memset(s, 0, sizeof(*s));
    s->text = strndup(text, len);
    if (!s->text)
        return wd_error_set(err, WD_ERR_NOMEM, "out of memory");
    run->n_slots++;
    return WD_OK;
}

static enum wd_status read_prompts_file(struct run *run, const char *path, struct wd_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return wd_error_set(err, WD_ERR_IO, "--prompts-file %s: %m", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    enum wd_status st = WD_OK;
    while (st == WD_OK && (len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len > 0)
            st = add_text_slot(run, line, (size_t)len, err);
    }
    free(line);
    fclose(f);
    if (st == WD_OK && run->n_slots == 0)
        st = wd_error_set(err, WD_ERR_INVALID, "--prompts-file %s: no prompts", path);
    return st;
}

static enum wd_status tokenize_slot(struct run *run, struct prompt_slot *s,
                                    const struct wd_chat_template *ct, struct wd_error *err)
{
    if (!run->tok)
        return wd_error_set(err, WD_ERR_NOT_FOUND,
                            "text prompts need tokenizer.json in the model directory");
    char *rendered = NULL;
    const char *text = s->text;
    if (ct) {
        struct wd_chat_message msg = {.role = "user", .content = s->text};
        WD_CHECK(wd_chat_template_render(ct, &msg, 1, 1, &rendered, err));
        text = rendered;
    }
    /* A rendered chat template already carries BOS; a raw prompt gets the tokenizer's own
     * special tokens, as Hugging Face's tokenizer(text) does. */
    enum wd_status st =
        wd_tokenizer_encode(run->tok, text, strlen(text), ct == NULL, &s->ids, &s->n_ids, err);
    free(rendered);
    return st;
}

static void print_results(const struct run *run)
{
    static const char *reasons[] = {"none", "length", "stop", "abort", "error"};
    for (int i = 0; i < run->n_slots; i++) {
        const struct prompt_slot *s = &run->slots[i];
        char *text = NULL;
        struct wd_error derr = {0};
        if (run->tok)
            wd_tokenizer_decode(run->tok, s->out, (size_t)s->n_out, 1, &text, &derr);
        if (!run->o.json) {
            if (text)
                printf("%s\n", text);
            else
                for (int j = 0; j < s->n_out; j++)
                    printf("%d%s", s->out[j], j + 1 < s->n_out ? "," : "\n");
            free(text);
            continue;
        }
        json_t *o = json_object(), *in = json_array(), *out = json_array();
        for (size_t j = 0; j < s->n_ids; j++)
            json_array_append_new(in, json_integer(s->ids[j]));
        for (int j = 0; j < s->n_out; j++)
            json_array_append_new(out, json_integer(s->out[j]));
        json_object_set_new(o, "index", json_integer(i));
        json_object_set_new(o, "prompt", s->text ? json_string(s->text) : json_null());
        json_object_set_new(o, "input_ids", in);
        json_object_set_new(o, "output_ids", out);
        json_object_set_new(o, "text", text ? json_string(text) : json_null());
        json_object_set_new(o, "finish_reason", json_string(reasons[s->finish]));
        if (run->o.logprobs) {
            json_t *lp = json_array();
            for (int j = 0; j < s->n_out; j++)
                json_array_append_new(lp, json_real(s->logprobs[j]));
            json_object_set_new(o, "logprobs", lp);
        }
        char *line = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (line)
            printf("%s\n", line);
        free(line);
        json_decref(o);
        free(text);
    }
    fflush(stdout);
}

/* Only node 0 of a multi-node run gets (and prints) the results. */
static int layout_is_printer(const struct run *run)
{
    return run->pargs.node_rank == 0;
}

/* Output files are checked before the run, so a typo fails in a second, not after it. */
static enum wd_status check_outputs(const struct run *run, struct wd_error *err)
{
    const char *mf = run->o.metrics_file;
    if (mf) {
        FILE *f = fopen(mf, "a");
        if (!f)
            return wd_error_set(err, WD_ERR_IO, "--metrics-file %s: %m", mf);
        fclose(f);
    }
    const char *dir = getenv("WIDEEP_EXPERT_DISTRIBUTION_RECORDER_DIR");
    struct stat sb;
    if (dir && (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode) || access(dir, W_OK | X_OK) != 0))
        return wd_error_set(err, WD_ERR_IO,
                            "WIDEEP_EXPERT_DISTRIBUTION_RECORDER_DIR=%s is not a writable "
                            "directory",
                            dir);
    return WD_OK;
}

/* The engine over the layout's ranks: every prompt queued, events gathered until the ranks
 * leave. */
static enum wd_status run_engine(struct run *run, const struct wd_layout *layout,
                                 const struct wd_scheduler_config *scfg,
                                 const struct wd_request_params *tmpl, int max_prompt, int total,
                                 enum wd_dtype kv_dtype, struct wd_error *err)
{
    const struct opts *o = &run->o;
    struct wd_engine_host_config hc = {
        .engine = {.model_path = o->model_path,
                   .layout = layout,
                   .sargs = &run->sargs,
                   .sched = *scfg,
                   .page_size = o->page_size,
                   .max_total_tokens = total,
                   .kv_dtype = kv_dtype,
                   .n_threads = o->threads,
                   .is_weights_mapped = o->weights_mapped,
                   .timeout_ms = o->timeout_ms,
                   .max_prompt_tokens = max_prompt,
                   .idle_wait_ms = 5,
                   .metrics_file = o->metrics_file,
                   .role = "generate"},
    };
    struct wd_engine_host *host = NULL;
    WD_CHECK(wd_engine_host_create(&hc, &host, err));
    enum wd_status st = WD_OK;
    for (int i = 0; st == WD_OK && i < run->n_slots; i++) {
        struct prompt_slot *s = &run->slots[i];
        int dp = i % layout->attn_dp_size;
        if (!wd_engine_host_has_dp(host, dp))
            continue; /* another node's launcher queues it */
        struct wd_request_params p = *tmpl;
        p.prompt = s->ids;
        p.n_prompt = (int)s->n_ids;
        p.seed = tmpl->seed + (uint64_t)i;
        p.id = (uint64_t)i + 1;
        st = wd_engine_host_add(host, dp, &p, 0, err);
        if (st != WD_OK)
            wd_error_prefix(err, "prompt %d", i);
    }
    wd_engine_host_finish(host);
    int done = 0;
    while (st == WD_OK && !done)
        st = wd_engine_host_poll(host, 100, on_event, run, &done, err);
    wd_engine_host_destroy(host);
    if (st == WD_OK && run->req_err.status != WD_OK) {
        *err = run->req_err;
        st = err->status;
    }
    return st;
}

static enum wd_status run_generation(struct run *run, struct wd_error *err)
{
    const struct opts *o = &run->o;
    char path[4096];
    struct wd_model_config mcfg;
    WD_CHECK(wd_model_config_load(o->model_path, &mcfg, err));
    struct wd_generation_config gen = {0};
    WD_CHECK(wd_generation_config_load(o->model_path, &gen, err));

    /* The tokenizer is optional for --input-ids (output is then ids only). */
    snprintf(path, sizeof(path), "%s/tokenizer.json", o->model_path);
    FILE *probe = fopen(path, "r");
    if (probe) {
        fclose(probe);
        WD_CHECK(wd_tokenizer_load(path, &run->tok, err));
    }
    struct wd_chat_template *ct = NULL;
    if (o->chat) {
        snprintf(path, sizeof(path), "%s/tokenizer_config.json", o->model_path);
        WD_CHECK(wd_chat_template_load(path, &ct, err));
    }
    enum wd_status st = WD_OK;
    size_t max_prompt = 1;
    for (int i = 0; st == WD_OK && i < run->n_slots; i++) {
        struct prompt_slot *s = &run->slots[i];
        if (!s->ids)
            st = tokenize_slot(run, s, ct, err);
        if (st == WD_OK) {
            s->out = malloc((size_t)o->max_new_tokens * sizeof(int32_t));
            s->logprobs = malloc((size_t)o->max_new_tokens * sizeof(float));
            if (!s->out || !s->logprobs)
                st = wd_error_set(err, WD_ERR_NOMEM, "out of memory");
            else if (s->n_ids > max_prompt)
                max_prompt = s->n_ids;
        }
    }
    wd_chat_template_destroy(ct);
    if (st != WD_OK)
        return st;

    struct wd_scheduler_config scfg = {
        .max_running_requests = o->max_running_requests,
        .chunked_prefill_size = o->chunked_prefill_size,
        .context_length = o->context_length > 0 ? o->context_length : mcfg.max_position_embeddings,
    };
    for (int i = 0; i < run->n_slots; i++)
        if ((int)run->slots[i].n_ids >= scfg.context_length)
            return wd_error_set(err, WD_ERR_INVALID,
                                "prompt %d has %zu tokens, more than the context length %d", i,
                                run->slots[i].n_ids, scfg.context_length);
    struct wd_request_params p = {
        .max_new_tokens = o->max_new_tokens,
        .sampling = {.temperature = o->temperature,
                     .top_k = o->top_k,
                     .top_p = o->top_p,
                     .min_p = o->min_p},
        .ignore_eos = o->ignore_eos,
        .seed = (uint64_t)o->seed,
    };
    /* Stop ids: generation_config.json's eos ids, else config.json's. */
    const int *eos = gen.n_eos ? gen.eos_token_ids : mcfg.eos_token_ids;
    p.n_stop_ids = gen.n_eos ? gen.n_eos : mcfg.n_eos;
    for (int i = 0; i < p.n_stop_ids && i < WD_MAX_STOP_IDS; i++)
        p.stop_ids[i] = eos[i];
    int total = o->max_total_tokens > 0 ? o->max_total_tokens : 16384;
    enum wd_dtype kv_dtype;
    WD_CHECK(wd_kv_dtype_parse(o->kv_cache_dtype, &kv_dtype, err));
    WD_CHECK(check_outputs(run, err));

    struct wd_layout_model_dims dims;
    wd_layout_dims_from_model_config(&mcfg, run->sargs.ep_num_redundant_experts, &dims);
    struct wd_layout *layout = NULL;
    WD_CHECK(wd_layout_create(&run->pargs, &dims, &layout, err));
    st = run_engine(run, layout, &scfg, &p, (int)max_prompt, total, kv_dtype, err);
    wd_layout_destroy(layout);
    if (st == WD_OK && layout_is_printer(run))
        print_results(run);
    return st;
}

int main(int argc, char **argv)
{
    struct run run = {0};
    struct opts *o = &run.o;
    o->max_new_tokens = 32;
    o->temperature = -1.0f; /* unset: take generation_config.json's, else greedy */
    o->top_p = 1.0f;
    o->page_size = 16;
    o->chunked_prefill_size = 2048;
    o->max_running_requests = 64;
    o->log_level = "warn";
    o->kv_cache_dtype = "auto";
    o->timeout_ms = 60000;
    wd_server_args_init(&run.sargs);
    struct wd_flag flags[64] = {
        {"model-path", "model", WD_FLAG_STRING, &o->model_path, 1, 0, "model directory (HF layout)",
         NULL, 0},
        {"prompt", NULL, WD_FLAG_STRING, &o->prompt, 1, 0, "one prompt text", NULL, 0},
        {"input-ids", NULL, WD_FLAG_STRING, &o->input_ids, 1, 0,
         "one prompt as comma-separated token ids", NULL, 0},
        {"prompts-file", NULL, WD_FLAG_STRING, &o->prompts_file, 1, 0,
         "file with one prompt per line", NULL, 0},
        {"max-new-tokens", NULL, WD_FLAG_INT, &o->max_new_tokens, 1, 1 << 20,
         "tokens to generate per prompt", NULL, 0},
        {"temperature", NULL, WD_FLAG_FLOAT, &o->temperature, 0, 100,
         "sampling temperature (below 1e-6, 0 included: greedy)", NULL, 0},
        {"top-p", NULL, WD_FLAG_FLOAT, &o->top_p, 1e-6, 1, "nucleus sampling mass", NULL, 0},
        {"top-k", NULL, WD_FLAG_INT, &o->top_k, -1, 1 << 30,
         "keep the k most likely tokens (0/-1 = off)", NULL, 0},
        {"min-p", NULL, WD_FLAG_FLOAT, &o->min_p, 0, 1, "drop tokens below min_p * p_max", NULL, 0},
        {"seed", "random-seed", WD_FLAG_INT, &o->seed, 0, 2147483647,
         "sampling seed (prompt i uses seed + i)", NULL, 0},
        {"chat", NULL, WD_FLAG_BOOL, &o->chat, 1, 0, "apply the model's chat template", NULL, 0},
        {"json", NULL, WD_FLAG_BOOL, &o->json, 1, 0, "print one JSON object per prompt", NULL, 0},
        {"logprobs", "return-logprob", WD_FLAG_BOOL, &o->logprobs, 1, 0,
         "with --json: logprobs of the chosen tokens", NULL, 0},
        {"ignore-eos", NULL, WD_FLAG_BOOL, &o->ignore_eos, 1, 0, "do not stop at eos tokens", NULL,
         0},
        {"page-size", NULL, WD_FLAG_INT, &o->page_size, 1, 4096, "tokens per KV page", NULL, 0},
        {"chunked-prefill-size", NULL, WD_FLAG_INT, &o->chunked_prefill_size, -1, 1 << 24,
         "prompt tokens per step (-1 = no chunking)", NULL, 0},
        {"max-running-requests", NULL, WD_FLAG_INT, &o->max_running_requests, 1, 1 << 16,
         "requests in one batch", NULL, 0},
        {"context-length", NULL, WD_FLAG_INT, &o->context_length, 0, 1 << 24,
         "max tokens per request (0 = model's)", NULL, 0},
        {"max-total-tokens", NULL, WD_FLAG_INT, &o->max_total_tokens, 0, 1 << 30,
         "KV pool size in tokens (0 = 16384)", NULL, 0},
        {"kv-cache-dtype", NULL, WD_FLAG_STRING, &o->kv_cache_dtype, 1, 0,
         "KV cache element type (auto = fp32, the CPU engine's activation type)",
         "auto,fp32,float32,bf16,bfloat16", 0},
        {"weights-mapped", NULL, WD_FLAG_BOOL, &o->weights_mapped, 1, 0,
         "stream the weights from the checkpoint's mapping, not a huge-page copy made at load "
         "(less RAM, slower CPU decode)",
         NULL, 0},
        {"threads", NULL, WD_FLAG_INT, &o->threads, 0, 1024, "CPU threads per rank (0 = all)", NULL,
         0},
        {"metrics-file", NULL, WD_FLAG_STRING, &o->metrics_file, 1, 0,
         "multi-rank runs: write Prometheus metrics (EPLB balancedness...) here at the end", NULL,
         0},
        {"dist-timeout-ms", NULL, WD_FLAG_INT, &o->timeout_ms, 100, 3600000,
         "how long a rank waits for another before failing", NULL, 0},
        {"log-level", NULL, WD_FLAG_STRING, &o->log_level, 1, 0, "log level",
         "error,warn,info,debug", 0},
    };
    int n_flags = 0;
    while (flags[n_flags].name)
        n_flags++;
    /* --tp, --dp, --ep, DP attention, the a2a backend, EPLB: SGLang's flags. */
    int n_server = wd_server_args_flags(&run.sargs, flags + n_flags, 64 - n_flags);
    WD_ASSERT(n_server > 0);
    n_flags += n_server;
    struct wd_error err = {0};
    int help = 0, rc = 1;
    wd_log_set_identity("generate", NULL);
    /* --print-layout: the parallel layout as JSON, without loading a model. */
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--print-layout") == 0)
            return wd_layout_print_main(argc, argv);
    if (wd_flags_parse(flags, n_flags, argc, argv, &help, &err) != WD_OK) {
        fprintf(stderr, "wideep-generate: %s\n", err.msg);
        return 2;
    }
    if (help) {
        wd_flags_print_help(flags, n_flags,
                            "usage: wideep-generate --model-path DIR (--prompt TEXT | --input-ids "
                            "1,2,3 | --prompts-file F) [options]");
        return 0;
    }
    wd_log_set_level((enum wd_log_level)wd_log_level_parse(o->log_level));
    if (wd_server_args_finalize(&run.sargs, &err) != WD_OK ||
        wd_server_args_to_parallel(&run.sargs, &run.pargs, &err) != WD_OK) {
        fprintf(stderr, "wideep-generate: %s\n", err.msg);
        return 2;
    }
    int n_sources = !!o->prompt + !!o->input_ids + !!o->prompts_file;
    if (!o->model_path || n_sources != 1) {
        fprintf(stderr, "wideep-generate: need --model-path and exactly one of --prompt, "
                        "--input-ids, --prompts-file (see --help)\n");
        return 2;
    }
    wd_flags_log(flags, n_flags, "generate");

    enum wd_status st = WD_OK;
    if (o->prompt) {
        st = add_text_slot(&run, o->prompt, strlen(o->prompt), &err);
    } else if (o->prompts_file) {
        st = read_prompts_file(&run, o->prompts_file, &err);
    } else {
        st = add_text_slot(&run, "", 0, &err);
        if (st == WD_OK) {
            free(run.slots[0].text);
            run.slots[0].text = NULL;
            st = parse_ids(o->input_ids, &run.slots[0].ids, &run.slots[0].n_ids, &err);
        }
    }
    if (st == WD_OK && o->temperature < 0) {
        /* Like SGLang: sampling defaults come from generation_config.json when it sets them. */
        struct wd_generation_config gen = {0};
        st = wd_generation_config_load(o->model_path, &gen, &err);
        o->temperature = gen.has_temperature && gen.do_sample ? gen.temperature : 0.0f;
        for (int i = 0; i < n_flags; i++) {
            if (flags[i].value == &o->top_p && gen.has_top_p && !flags[i].is_set)
                o->top_p = gen.top_p;
            if (flags[i].value == &o->top_k && gen.has_top_k && !flags[i].is_set)
                o->top_k = gen.top_k;
        }
    }
    if (st == WD_OK)
        st = run_generation(&run, &err);
    if (st == WD_OK)
        rc = 0;
    else
        fprintf(stderr, "wideep-generate: %s\n", err.msg);
    for (int i = 0; i < run.n_slots; i++) {
        free(run.slots[i].text);
        free(run.slots[i].ids);
        free(run.slots[i].out);
        free(run.slots[i].logprobs);
    }
    free(run.slots);
    wd_tokenizer_destroy(run.tok);
    return rc;
}

/* Output assembly: detokenize into the text buffer, apply stop strings, release text. */
#include "router/output.h"

#include <stdlib.h>
#include <string.h>

enum wd_status wd_output_init(struct wd_output *o, const struct wd_output_config *cfg)
{
    memset(o, 0, sizeof(*o));
    o->cfg = *cfg;
    o->stop_string = -1;
    o->stop_token = -1;
    wd_buf_init(&o->text);
    wd_stop_match_init(&o->stop, cfg->stop, cfg->stop_len, cfg->n_stop);
    return wd_detok_create(cfg->tok, cfg->skip_special_tokens, &o->detok);
}

void wd_output_cleanup(struct wd_output *o)
{
    wd_detok_destroy(o->detok);
    wd_buf_cleanup(&o->text);
    free(o->ids);
    free(o->lps);
    free(o->top_ids);
    free(o->top_lps);
    memset(o, 0, sizeof(*o));
}

static enum wd_status grow(struct wd_output *o, int need)
{
    if (need <= o->cap)
        return WD_OK;
    int cap = o->cap ? o->cap : 16;
    while (cap < need)
        cap *= 2;
    int k = o->cfg.top_logprobs;
    int32_t *ids = realloc(o->ids, sizeof(int32_t) * (size_t)cap);
    if (!ids)
        return WD_ERR_NOMEM;
    o->ids = ids;
    if (o->cfg.logprobs) {
        float *lps = realloc(o->lps, sizeof(float) * (size_t)cap);
        if (!lps)
            return WD_ERR_NOMEM;
        o->lps = lps;
    }
    if (k > 0) {
        int32_t *ti = realloc(o->top_ids, sizeof(int32_t) * (size_t)cap * (size_t)k);
        if (!ti)
            return WD_ERR_NOMEM;
        o->top_ids = ti;
        float *tl = realloc(o->top_lps, sizeof(float) * (size_t)cap * (size_t)k);
        if (!tl)
            return WD_ERR_NOMEM;
        o->top_lps = tl;
    }
    o->cap = cap;
    return WD_OK;
}

static int is_stop_id(const struct wd_output *o, int32_t id)
{
    for (int i = 0; i < o->cfg.n_stop_ids; i++)
        if (o->cfg.stop_ids[i] == id)
            return 1;
    return 0;
}

/* Detokenizes one id (or flushes, id < 0) straight into the text buffer. */
static enum wd_status add_text(struct wd_output *o, int32_t id)
{
    size_t cap = wd_detok_chunk_cap(o->detok), n = 0;
    WD_CHECK(wd_buf_reserve(&o->text, cap));
    char *dst = o->text.p + o->text.len;
    enum wd_status st = id >= 0 ? wd_detok_push(o->detok, id, dst, cap, &n)
                                : wd_detok_flush(o->detok, dst, cap, &n);
    if (st != WD_OK)
        return st;
    o->text.len += n;
    return WD_OK;
}

/* After text grew from old_len: a match finishes the output; else release what is safe. */
static void settle(struct wd_output *o, size_t old_len, int is_final)
{
    size_t pos;
    int which =
        o->stop.n ? wd_stop_match_find(&o->stop, o->text.p, o->text.len, old_len, &pos) : -1;
    if (which >= 0) {
        size_t end = o->cfg.no_stop_trim ? pos + o->stop.len[which] : pos;
        wd_buf_truncate(&o->text, end);
        o->released = end;
        o->finish = WD_OUTPUT_STOP_STRING;
        o->stop_string = which;
        return;
    }
    size_t hold = is_final ? 0 : wd_stop_match_holdback(&o->stop, o->text.p, o->text.len);
    size_t rel = o->text.len - hold;
    if (rel > o->released)
        o->released = rel;
}

enum wd_status wd_output_push(struct wd_output *o, const int32_t *ids, const float *lps,
                              const int32_t *top_ids, const float *top_lps, int n_top, int n,
                              enum wd_output_finish worker_finish)
{
    if (o->finish != WD_OUTPUT_RUNNING)
        return WD_OK;
    WD_CHECK(grow(o, o->n + n));
    int k = o->cfg.top_logprobs;
    for (int i = 0; i < n && o->finish == WD_OUTPUT_RUNNING; i++) {
        int t = o->n++;
        o->ids[t] = ids[i];
        if (o->cfg.logprobs)
            o->lps[t] = lps ? lps[i] : 0.0f;
        for (int j = 0; j < k; j++) {
            int ok = top_ids && j < n_top && top_ids[(size_t)i * n_top + j] >= 0;
            o->top_ids[(size_t)t * k + j] = ok ? top_ids[(size_t)i * n_top + j] : -1;
            o->top_lps[(size_t)t * k + j] = ok ? top_lps[(size_t)i * n_top + j] : 0.0f;
        }
        int is_last = i == n - 1;
        int trims = is_last && worker_finish == WD_OUTPUT_STOP_TOKEN && is_stop_id(o, ids[i]) &&
                    !o->cfg.no_stop_trim;
        size_t old_len = o->text.len;
        if (!trims)
            WD_CHECK(add_text(o, ids[i]));
        settle(o, old_len, 0);
    }
    if (o->finish == WD_OUTPUT_RUNNING && worker_finish != WD_OUTPUT_RUNNING) {
        size_t old_len = o->text.len;
        WD_CHECK(add_text(o, -1)); /* a dangling partial character becomes U+FFFD */
        settle(o, old_len, 1);
        if (o->finish == WD_OUTPUT_RUNNING) {
            o->finish = worker_finish;
            if (worker_finish == WD_OUTPUT_STOP_TOKEN && n > 0)
                o->stop_token = ids[n - 1];
        }
    }
    return WD_OK;
}

int wd_output_is_finished(const struct wd_output *o)
{
    return o->finish != WD_OUTPUT_RUNNING;
}

const char *wd_output_unsent(const struct wd_output *o, size_t *n_p)
{
    *n_p = o->released - o->sent;
    return o->text.p ? o->text.p + o->sent : "";
}

void wd_output_mark_sent(struct wd_output *o)
{
    o->sent = o->released;
}

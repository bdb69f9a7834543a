/*
 * wd_msg_validate: every rule a control-plane message must satisfy, checked on our own
 * structs so that the encoder (our bugs) and the decoder (a peer's bytes) apply the same
 * rules. Each refusal is WD_ERR_INVALID with one line naming the field as
 * "<message>.<field>". Strings are checked for their terminator inside the cap, so a
 * caller-built struct with an unterminated array is refused rather than over-read.
 * Pure functions, no allocation.
 */
#include "common/net/msg.h"

#include <math.h>
#include <string.h>

enum text_kind {
    TEXT_LINE,      /* one line of UTF-8, tabs allowed: messages, reasons (they get logged) */
    TEXT_PRINTABLE, /* UTF-8 without control characters: names, endpoints */
    TEXT_ID,        /* printable ASCII without spaces: instance ids */
    TEXT_TAG,       /* [A-Za-z0-9_.-]: dtypes, backend names */
};

static enum wd_status bad(struct wd_error *err, const char *what, const char *field,
                          const char *fmt_rest, long long v)
{
    char rest[128];
    snprintf(rest, sizeof(rest), fmt_rest, v);
    return wd_error_set(err, WD_ERR_INVALID, "%s.%s %s", what, field, rest);
}

/* Length of the valid UTF-8 sequence at s (1..4), 0 when it is not one. Refuses overlong
 * forms, surrogates and code points above U+10FFFF (RFC 3629). */
static size_t utf8_seq(const unsigned char *s, size_t left)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned cp, min;
    if ((c & 0xe0) == 0xc0) {
        n = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n > left)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static int is_tag_char(unsigned c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

static enum wd_status check_text(const char *s, size_t cap, enum text_kind kind, int is_required,
                                 const char *what, const char *field, struct wd_error *err)
{
    const char *end = memchr(s, '\0', cap);
    if (!end)
        return wd_error_set(err, WD_ERR_INVALID, "%s.%s is not terminated within %zu bytes", what,
                            field, cap);
    size_t len = (size_t)(end - s);
    if (is_required && len == 0)
        return wd_error_set(err, WD_ERR_INVALID, "%s.%s is empty", what, field);
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        unsigned c = u[i];
        if (c >= 0x80 && (kind == TEXT_LINE || kind == TEXT_PRINTABLE)) {
            size_t n = utf8_seq(u + i, len - i);
            if (n == 0)
                return wd_error_set(err, WD_ERR_INVALID, "%s.%s has invalid UTF-8 at offset %zu",
                                    what, field, i);
            i += n;
            continue;
        }
        int is_ok = kind == TEXT_TAG    ? is_tag_char(c)
                    : kind == TEXT_ID   ? c > 0x20 && c < 0x7f
                    : kind == TEXT_LINE ? (c >= 0x20 && c != 0x7f) || c == '\t'
                                        : c >= 0x20 && c != 0x7f;
        if (!is_ok)
            return wd_error_set(err, WD_ERR_INVALID,
                                "%s.%s has a disallowed byte 0x%02x at offset %zu", what, field, c,
                                i);
        i++;
    }
    return WD_OK;
}

/* lo <= v <= hi, else "<what>.<field> <v> is outside [lo, hi]". */
static enum wd_status check_range(long long v, long long lo, long long hi, const char *what,
                                  const char *field, struct wd_error *err)
{
    if (v < lo || v > hi)
        return wd_error_set(err, WD_ERR_INVALID, "%s.%s %lld is outside [%lld, %lld]", what, field,
                            v, lo, hi);
    return WD_OK;
}

static enum wd_status check_ids(const int32_t *ids, int32_t n, const char *what, const char *field,
                                struct wd_error *err)
{
    if (n > 0 && !ids)
        return wd_error_set(err, WD_ERR_INVALID, "%s.%s is NULL with %d entries", what, field,
                            (int)n);
    for (int32_t i = 0; i < n; i++)
        if (ids[i] < 0)
            return wd_error_set(err, WD_ERR_INVALID, "%s.%s[%d] = %d is not a token id", what,
                                field, (int)i, (int)ids[i]);
    return WD_OK;
}

static enum wd_status validate_fingerprint(const struct wd_msg_fingerprint *fp,
                                           struct wd_error *err)
{
    const char *w = "register.fingerprint";
    if (fp->protocol_version != WD_MSG_PROTOCOL_VERSION)
        return wd_error_set(err, WD_ERR_INVALID,
                            "%s.protocol_version %u differs from this build's %u", w,
                            fp->protocol_version, WD_MSG_PROTOCOL_VERSION);
    WD_CHECK(check_text(fp->model, sizeof(fp->model), TEXT_PRINTABLE, 1, w, "model", err));
    WD_CHECK(check_text(fp->weight_dtype, sizeof(fp->weight_dtype), TEXT_TAG, 1, w, "weight_dtype",
                        err));
    WD_CHECK(check_text(fp->kv_dtype, sizeof(fp->kv_dtype), TEXT_TAG, 1, w, "kv_dtype", err));
    WD_CHECK(check_range(fp->page_size, 1, 1 << 20, w, "page_size", err));

    const struct wd_msg_kv_layout *kv = &fp->kv;
    w = "register.fingerprint.kv";
    if (kv->kind != WD_MSG_KV_GQA && kv->kind != WD_MSG_KV_MLA)
        return bad(err, w, "kind", "%lld is neither GQA (1) nor MLA (2)", kv->kind);
    WD_CHECK(check_range(kv->n_layers, 1, 1 << 16, w, "n_layers", err));
    WD_CHECK(check_range(kv->n_kv_heads, 1, 1 << 16, w, "n_kv_heads", err));
    WD_CHECK(check_range(kv->k_head_dim, 1, 1 << 20, w, "k_head_dim", err));
    if (kv->kind == WD_MSG_KV_MLA) {
        if (kv->n_kv_heads != 1)
            return bad(err, w, "n_kv_heads", "%lld must be 1 for MLA", kv->n_kv_heads);
        if (kv->v_head_dim != 0)
            return bad(err, w, "v_head_dim", "%lld must be 0 for MLA (no V rows)", kv->v_head_dim);
    } else {
        WD_CHECK(check_range(kv->v_head_dim, 1, 1 << 20, w, "v_head_dim", err));
    }

    const struct wd_msg_parallel *p = &fp->parallel;
    w = "register.fingerprint.parallel";
    const struct {
        const char *name;
        int32_t v;
    } sizes[] = {{"tp", p->tp},           {"dp", p->dp},           {"ep", p->ep},
                 {"attn_tp", p->attn_tp}, {"attn_dp", p->attn_dp}, {"moe_ep", p->moe_ep},
                 {"moe_tp", p->moe_tp},   {"nnodes", p->nnodes}};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        WD_CHECK(check_range(sizes[i].v, 1, 1 << 16, w, sizes[i].name, err));
    if ((long long)p->attn_tp * p->attn_dp != p->tp)
        return wd_error_set(err, WD_ERR_INVALID, "%s: attn_tp %d * attn_dp %d != tp %d", w,
                            (int)p->attn_tp, (int)p->attn_dp, (int)p->tp);
    if ((long long)p->moe_ep * p->moe_tp != p->tp)
        return wd_error_set(err, WD_ERR_INVALID, "%s: moe_ep %d * moe_tp %d != tp %d", w,
                            (int)p->moe_ep, (int)p->moe_tp, (int)p->tp);
    WD_CHECK(
        check_text(p->a2a_backend, sizeof(p->a2a_backend), TEXT_TAG, 1, w, "a2a_backend", err));
    WD_CHECK(
        check_text(p->deepep_mode, sizeof(p->deepep_mode), TEXT_TAG, 1, w, "deepep_mode", err));
    return WD_OK;
}

static enum wd_status validate_register(const struct wd_msg_register *r, struct wd_error *err)
{
    const char *w = "register";
    if (r->role != WD_MSG_ROLE_DECODE && r->role != WD_MSG_ROLE_PREFILL)
        return bad(err, w, "role", "%lld is neither DECODE (1) nor PREFILL (2)", r->role);
    WD_CHECK(check_text(r->instance_id, sizeof(r->instance_id), TEXT_ID, 1, w, "instance_id", err));
    WD_CHECK(check_range(r->n_dp_ranks, 1, WD_MSG_MAX_DP_RANKS, w, "n_dp_ranks", err));
    if (!r->dp)
        return wd_error_set(err, WD_ERR_INVALID, "register.dp is NULL");
    for (int32_t i = 0; i < r->n_dp_ranks; i++) {
        if (r->dp[i].n_pages <= 0)
            return wd_error_set(err, WD_ERR_INVALID, "register.dp[%d].n_pages %d is not > 0",
                                (int)i, (int)r->dp[i].n_pages);
        if (r->dp[i].max_running <= 0)
            return wd_error_set(err, WD_ERR_INVALID, "register.dp[%d].max_running %d is not > 0",
                                (int)i, (int)r->dp[i].max_running);
    }
    WD_CHECK(check_range(r->context_len, 1, WD_MSG_MAX_INT, w, "context_len", err));
    WD_CHECK(check_range(r->metrics_port, 0, 65535, w, "metrics_port", err));
    WD_CHECK(check_text(r->bootstrap_endpoint, sizeof(r->bootstrap_endpoint), TEXT_PRINTABLE, 0, w,
                        "bootstrap_endpoint", err));
    int has_bootstrap = r->bootstrap_endpoint[0] != '\0';
    if (r->role == WD_MSG_ROLE_PREFILL && !has_bootstrap)
        return wd_error_set(err, WD_ERR_INVALID,
                            "register.bootstrap_endpoint is empty for a prefill worker");
    if (r->role == WD_MSG_ROLE_DECODE && has_bootstrap)
        return wd_error_set(err, WD_ERR_INVALID,
                            "register.bootstrap_endpoint must be empty for a decode worker");
    return validate_fingerprint(&r->fp, err);
}

static enum wd_status validate_heartbeat(const struct wd_msg_heartbeat *h, struct wd_error *err)
{
    const char *w = "heartbeat";
    WD_CHECK(check_text(h->instance_id, sizeof(h->instance_id), TEXT_ID, 1, w, "instance_id", err));
    WD_CHECK(check_range(h->n_dp_ranks, 1, WD_MSG_MAX_DP_RANKS, w, "n_dp_ranks", err));
    if (!h->dp)
        return wd_error_set(err, WD_ERR_INVALID, "heartbeat.dp is NULL");
    for (int32_t i = 0; i < h->n_dp_ranks; i++) {
        const struct wd_msg_dp_load *d = &h->dp[i];
        if (d->n_pages < 0 || d->n_free_pages < 0 || d->n_free_pages > d->n_pages)
            return wd_error_set(err, WD_ERR_INVALID,
                                "heartbeat.dp[%d]: free pages %d not in [0, n_pages %d]", (int)i,
                                (int)d->n_free_pages, (int)d->n_pages);
        if (d->n_running < 0 || d->n_waiting < 0 || d->n_queued_prefill_tokens < 0)
            return wd_error_set(err, WD_ERR_INVALID, "heartbeat.dp[%d]: a negative count", (int)i);
    }
    return WD_OK;
}

static enum wd_status validate_sampling(const struct wd_msg_sampling *s, struct wd_error *err)
{
    /* !(x >= lo) also catches NaN. */
    if (!(s->temperature >= 0.0f) || isinf(s->temperature))
        return wd_error_set(err, WD_ERR_INVALID,
                            "generate.sampling.temperature %g is not finite and >= 0",
                            (double)s->temperature);
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f))
        return wd_error_set(err, WD_ERR_INVALID, "generate.sampling.top_p %g is outside (0, 1]",
                            (double)s->top_p);
    if (!(s->min_p >= 0.0f && s->min_p <= 1.0f))
        return wd_error_set(err, WD_ERR_INVALID, "generate.sampling.min_p %g is outside [0, 1]",
                            (double)s->min_p);
    return check_range(s->top_k, -1, WD_MSG_MAX_INT, "generate.sampling", "top_k", err);
}

static enum wd_status validate_generate(const struct wd_msg_generate *g, struct wd_error *err)
{
    const char *w = "generate";
    if (g->request_id == 0)
        return wd_error_set(err, WD_ERR_INVALID, "generate.request_id is 0");
    WD_CHECK(check_range(g->n_input_ids, 1, WD_MSG_MAX_INT, w, "n_input_ids", err));
    WD_CHECK(check_ids(g->input_ids, g->n_input_ids, w, "input_ids", err));
    WD_CHECK(validate_sampling(&g->sampling, err));
    WD_CHECK(check_range(g->n_stop_ids, 0, WD_MSG_MAX_STOP_IDS, w, "n_stop_ids", err));
    WD_CHECK(check_ids(g->stop_ids, g->n_stop_ids, w, "stop_ids", err));
    WD_CHECK(check_range(g->max_new_tokens, 1, WD_MSG_MAX_INT, w, "max_new_tokens", err));
    WD_CHECK(check_range(g->dp_rank, 0, WD_MSG_MAX_DP_RANKS - 1, w, "dp_rank", err));
    WD_CHECK(check_range(g->n_top_logprobs, 0, WD_MSG_MAX_TOP_LOGPROBS, w, "n_top_logprobs", err));
    if (g->n_top_logprobs > 0 && !g->is_return_logprobs)
        return wd_error_set(err, WD_ERR_INVALID, "generate.n_top_logprobs %d needs return_logprobs",
                            (int)g->n_top_logprobs);
    return WD_OK;
}

/* A logprob is <= 0 in exact arithmetic; -inf is legitimate (a masked token), NaN and +inf
 * mean a broken kernel upstream. */
static enum wd_status check_logprobs(const float *v, size_t n, const char *field,
                                     struct wd_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (isnan(v[i]) || v[i] == INFINITY)
            return wd_error_set(err, WD_ERR_INVALID, "token_chunk.%s[%zu] is %g", field, i,
                                (double)v[i]);
    return WD_OK;
}

static enum wd_status validate_chunk(const struct wd_msg_token_chunk *c, struct wd_error *err)
{
    const char *w = "token_chunk";
    if (c->request_id == 0)
        return wd_error_set(err, WD_ERR_INVALID, "token_chunk.request_id is 0");
    WD_CHECK(check_range(c->n_tokens, 0, WD_MSG_MAX_INT, w, "n_tokens", err));
    if (c->finish < WD_MSG_FINISH_NONE || c->finish > WD_MSG_FINISH_ABORT)
        return bad(err, w, "finish", "%lld is not a finish reason (0..3)", c->finish);
    if (c->n_tokens == 0 && c->finish == WD_MSG_FINISH_NONE)
        return wd_error_set(err, WD_ERR_INVALID, "token_chunk has no tokens and no finish");
    WD_CHECK(check_ids(c->token_ids, c->n_tokens, w, "token_ids", err));
    WD_CHECK(check_range(c->n_top, 0, WD_MSG_MAX_TOP_LOGPROBS, w, "n_top", err));
    if (c->n_top > 0 && !c->logprobs && c->n_tokens > 0)
        return wd_error_set(err, WD_ERR_INVALID, "token_chunk.n_top %d without logprobs",
                            (int)c->n_top);
    if (c->logprobs)
        WD_CHECK(check_logprobs(c->logprobs, (size_t)c->n_tokens, "logprobs", err));
    if (c->n_top > 0 && c->n_tokens > 0) {
        if (!c->top_ids || !c->top_logprobs)
            return wd_error_set(err, WD_ERR_INVALID,
                                "token_chunk.n_top %d but top_ids or top_logprobs is NULL",
                                (int)c->n_top);
        /* n_tokens * n_top fits: n_top <= 20, n_tokens < 2^31. */
        int64_t n = (int64_t)c->n_tokens * c->n_top;
        if (n > WD_MSG_MAX_INT)
            return wd_error_set(err, WD_ERR_INVALID, "token_chunk: n_tokens * n_top too large");
        WD_CHECK(check_ids(c->top_ids, (int32_t)n, w, "top_ids", err));
        WD_CHECK(check_logprobs(c->top_logprobs, (size_t)n, "top_logprobs", err));
    }
    WD_CHECK(check_range(c->n_prompt_tokens, 0, WD_MSG_MAX_INT, w, "n_prompt_tokens", err));
    if (c->finish == WD_MSG_FINISH_STOP)
        return check_range(c->matched_stop, 0, WD_MSG_MAX_INT, w, "matched_stop", err);
    if (c->matched_stop != -1)
        return wd_error_set(err, WD_ERR_INVALID,
                            "token_chunk.matched_stop %d set without finish STOP",
                            (int)c->matched_stop);
    return WD_OK;
}

enum wd_status wd_msg_validate(const struct wd_msg *m, struct wd_error *err)
{
    switch (m->kind) {
    case WD_MSG_REGISTER:
        return validate_register(&m->reg, err);
    case WD_MSG_REGISTER_ACK: {
        const struct wd_msg_register_ack *a = &m->reg_ack;
        if (a->heartbeat_interval_ms == 0)
            return wd_error_set(err, WD_ERR_INVALID, "register_ack.heartbeat_interval_ms is 0");
        if (a->heartbeat_timeout_ms <= a->heartbeat_interval_ms)
            return wd_error_set(err, WD_ERR_INVALID,
                                "register_ack.heartbeat_timeout_ms %u is not above the "
                                "interval %u",
                                a->heartbeat_timeout_ms, a->heartbeat_interval_ms);
        return WD_OK;
    }
    case WD_MSG_REGISTER_REFUSE:
        return check_text(m->reg_refuse.reason, sizeof(m->reg_refuse.reason), TEXT_LINE, 1,
                          "register_refuse", "reason", err);
    case WD_MSG_HEARTBEAT:
        return validate_heartbeat(&m->heartbeat, err);
    case WD_MSG_DRAIN:
        return check_text(m->drain.instance_id, sizeof(m->drain.instance_id), TEXT_ID, 0, "drain",
                          "instance_id", err);
    case WD_MSG_GENERATE:
        return validate_generate(&m->generate, err);
    case WD_MSG_TOKEN_CHUNK:
        return validate_chunk(&m->chunk, err);
    case WD_MSG_ABORT:
        if (m->abort.request_id == 0)
            return wd_error_set(err, WD_ERR_INVALID, "abort.request_id is 0");
        return WD_OK;
    case WD_MSG_ERROR:
        if (m->error.code <= WD_OK || m->error.code > WD_ERR_PEER)
            return bad(err, "error", "code", "%lld is not a wd_status error", m->error.code);
        return check_text(m->error.message, sizeof(m->error.message), TEXT_LINE, 0, "error",
                          "message", err);
    case WD_MSG_NONE:
        break;
    }
    return wd_error_set(err, WD_ERR_INVALID, "message kind %d is not a message", (int)m->kind);
}

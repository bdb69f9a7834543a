/*
 * The control-plane codec, decode half: one protobuf-c Frame into our wd_msg structs.
 *
 * Decode runs in three steps: the size cap, protobuf-c's unpack under a memory budget, then
 * a translation that checks presence, wire ranges and array counts before it copies into
 * one block (m->storage), followed by wd_msg_validate for the semantic rules. Nothing it
 * returns points into the generated types. Pure functions; errors are returned, never
 * logged (the caller decides).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/net/msg_internal.h"

/* protobuf-c sizes its allocations from the input, so a hostile frame can ask for much
 * more memory than it occupies (every 2-byte empty submessage becomes a ~40-byte struct
 * plus a scan record). A legitimate frame needs at most 4 bytes per wire byte (a packed
 * 1-byte varint becomes a uint32) plus small fixed structs, so unpack gets that budget;
 * a frame that needs more is refused as malformed. The budget counts every allocation
 * and never gives back what is freed: protobuf-c frees only its scan records early. */
#define DECODE_BUDGET_BASE ((size_t)1 << 20)

struct budget {
    size_t left;
    int is_exhausted;
};

static void *budget_alloc(void *data, size_t size)
{
    struct budget *b = data;
    if (size > b->left) {
        b->is_exhausted = 1;
        return NULL;
    }
    b->left -= size;
    return malloc(size ? size : 1);
}

static void budget_free(void *data, void *ptr)
{
    free(ptr);
}

/* ---- small helpers ---- */

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

static enum wd_status need(int has, const char *field, struct wd_error *err)
{
    return has ? WD_OK : wd_error_set(err, WD_ERR_FORMAT, "%s missing", field);
}

/* A wire uint32 that wideep keeps as int32 (counts, ids, sizes). */
static enum wd_status get_i32(int has, uint32_t v, int is_required, const char *field, int32_t *out,
                              struct wd_error *err)
{
    if (!has) {
        *out = 0;
        return is_required ? wd_error_set(err, WD_ERR_FORMAT, "%s missing", field) : WD_OK;
    }
    if (v > (uint32_t)WD_MSG_MAX_INT)
        return wd_error_set(err, WD_ERR_FORMAT, "%s %u exceeds 2^31-1", field, v);
    *out = (int32_t)v;
    return WD_OK;
}

/* Wire bytes into a fixed array: refuses over-long text and embedded NULs here (the array
 * could not represent them); charset and UTF-8 are wd_msg_validate's. */
static enum wd_status get_text(int has, ProtobufCBinaryData b, int is_required, char *dst,
                               size_t cap, const char *field, struct wd_error *err)
{
    dst[0] = '\0';
    if (!has)
        return is_required ? wd_error_set(err, WD_ERR_FORMAT, "%s missing", field) : WD_OK;
    if (b.len >= cap)
        return wd_error_set(err, WD_ERR_FORMAT, "%s is %zu bytes, over the cap of %zu", field,
                            b.len, cap - 1);
    if (b.len && memchr(b.data, '\0', b.len))
        return wd_error_set(err, WD_ERR_FORMAT, "%s contains a NUL byte", field);
    if (b.len)
        memcpy(dst, b.data, b.len);
    dst[b.len] = '\0';
    return WD_OK;
}

static enum wd_status get_ids(const uint32_t *src, size_t n, int32_t *dst, const char *field,
                              struct wd_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (src[i] > (uint32_t)WD_MSG_MAX_INT)
            return wd_error_set(err, WD_ERR_FORMAT, "%s[%zu] = %u exceeds 2^31-1", field, i,
                                src[i]);
        dst[i] = (int32_t)src[i];
    }
    return WD_OK;
}

/* The one allocation of a decoded message (bytes may be 0). */
static enum wd_status alloc_storage(struct wd_msg *m, size_t bytes, struct wd_error *err)
{
    m->storage = malloc(bytes ? bytes : 1);
    if (!m->storage)
        return wd_error_set(err, WD_ERR_NOMEM, "cannot allocate %zu bytes for a decoded frame",
                            bytes);
    return WD_OK;
}

/* ---- decode: wire -> wd_msg ---- */

static enum wd_status from_fingerprint(const Wideep__Fingerprint *f, struct wd_msg_fingerprint *fp,
                                       struct wd_error *err)
{
    WD_CHECK(need(f != NULL, "register.fingerprint", err));
    WD_CHECK(need(f->has_protocol_version, "register.fingerprint.protocol_version", err));
    fp->protocol_version = f->protocol_version;
    WD_CHECK(get_text(f->has_model, f->model, 1, fp->model, sizeof(fp->model),
                      "register.fingerprint.model", err));
    WD_CHECK(need(f->has_config_hash, "register.fingerprint.config_hash", err));
    fp->config_hash = f->config_hash;
    WD_CHECK(get_text(f->has_weight_dtype, f->weight_dtype, 1, fp->weight_dtype,
                      sizeof(fp->weight_dtype), "register.fingerprint.weight_dtype", err));
    WD_CHECK(get_text(f->has_kv_dtype, f->kv_dtype, 1, fp->kv_dtype, sizeof(fp->kv_dtype),
                      "register.fingerprint.kv_dtype", err));
    WD_CHECK(get_i32(f->has_page_size, f->page_size, 1, "register.fingerprint.page_size",
                     &fp->page_size, err));

    const Wideep__KvLayout *kv = f->kv_layout;
    WD_CHECK(need(kv != NULL, "register.fingerprint.kv", err));
    WD_CHECK(need(kv->has_kind, "register.fingerprint.kv.kind", err));
    fp->kv.kind = (enum wd_msg_kv_kind)kv->kind;
    WD_CHECK(get_i32(kv->has_n_layers, kv->n_layers, 1, "register.fingerprint.kv.n_layers",
                     &fp->kv.n_layers, err));
    WD_CHECK(get_i32(kv->has_n_kv_heads, kv->n_kv_heads, 1, "register.fingerprint.kv.n_kv_heads",
                     &fp->kv.n_kv_heads, err));
    WD_CHECK(get_i32(kv->has_k_head_dim, kv->k_head_dim, 1, "register.fingerprint.kv.k_head_dim",
                     &fp->kv.k_head_dim, err));
    WD_CHECK(get_i32(kv->has_v_head_dim, kv->v_head_dim, 0, "register.fingerprint.kv.v_head_dim",
                     &fp->kv.v_head_dim, err));

    const Wideep__ParallelLayout *p = f->parallel;
    struct wd_msg_parallel *q = &fp->parallel;
    WD_CHECK(need(p != NULL, "register.fingerprint.parallel", err));
    const struct {
        int has;
        uint32_t v;
        const char *field;
        int32_t *out;
    } sizes[] = {
        {p->has_tp, p->tp, "register.fingerprint.parallel.tp", &q->tp},
        {p->has_dp, p->dp, "register.fingerprint.parallel.dp", &q->dp},
        {p->has_ep, p->ep, "register.fingerprint.parallel.ep", &q->ep},
        {p->has_attn_tp, p->attn_tp, "register.fingerprint.parallel.attn_tp", &q->attn_tp},
        {p->has_attn_dp, p->attn_dp, "register.fingerprint.parallel.attn_dp", &q->attn_dp},
        {p->has_moe_ep, p->moe_ep, "register.fingerprint.parallel.moe_ep", &q->moe_ep},
        {p->has_moe_tp, p->moe_tp, "register.fingerprint.parallel.moe_tp", &q->moe_tp},
        {p->has_nnodes, p->nnodes, "register.fingerprint.parallel.nnodes", &q->nnodes},
    };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        WD_CHECK(get_i32(sizes[i].has, sizes[i].v, 1, sizes[i].field, sizes[i].out, err));
    WD_CHECK(get_text(p->has_a2a_backend, p->a2a_backend, 1, q->a2a_backend, sizeof(q->a2a_backend),
                      "register.fingerprint.parallel.a2a_backend", err));
    WD_CHECK(get_text(p->has_deepep_mode, p->deepep_mode, 1, q->deepep_mode, sizeof(q->deepep_mode),
                      "register.fingerprint.parallel.deepep_mode", err));
    return WD_OK;
}

static enum wd_status from_register(const Wideep__Register *w, struct wd_msg *m,
                                    struct wd_error *err)
{
    struct wd_msg_register *r = &m->reg;
    WD_CHECK(need(w->has_role, "register.role", err));
    r->role = (enum wd_msg_role)w->role;
    WD_CHECK(get_text(w->has_instance_id, w->instance_id, 1, r->instance_id, sizeof(r->instance_id),
                      "register.instance_id", err));
    WD_CHECK(
        get_i32(w->has_n_dp_ranks, w->n_dp_ranks, 1, "register.n_dp_ranks", &r->n_dp_ranks, err));
    if (r->n_dp_ranks > WD_MSG_MAX_DP_RANKS)
        return wd_error_set(err, WD_ERR_FORMAT, "register.n_dp_ranks %d exceeds %d",
                            (int)r->n_dp_ranks, WD_MSG_MAX_DP_RANKS);
    if (w->n_dp != (size_t)r->n_dp_ranks)
        return wd_error_set(err, WD_ERR_FORMAT, "register.n_dp_ranks %d but %zu dp entries",
                            (int)r->n_dp_ranks, w->n_dp);
    WD_CHECK(get_i32(w->has_context_len, w->context_len, 1, "register.context_len", &r->context_len,
                     err));
    WD_CHECK(get_i32(w->has_metrics_port, w->metrics_port, 0, "register.metrics_port",
                     &r->metrics_port, err));
    WD_CHECK(get_text(w->has_bootstrap_endpoint, w->bootstrap_endpoint, 0, r->bootstrap_endpoint,
                      sizeof(r->bootstrap_endpoint), "register.bootstrap_endpoint", err));
    WD_CHECK(from_fingerprint(w->fingerprint, &r->fp, err));

    WD_CHECK(alloc_storage(m, w->n_dp * sizeof(*r->dp), err));
    r->dp = m->storage;
    for (size_t i = 0; i < w->n_dp; i++) {
        const Wideep__DpCapacity *d = w->dp[i];
        WD_CHECK(
            get_i32(d->has_n_pages, d->n_pages, 1, "register.dp.n_pages", &r->dp[i].n_pages, err));
        WD_CHECK(get_i32(d->has_max_running, d->max_running, 1, "register.dp.max_running",
                         &r->dp[i].max_running, err));
    }
    return WD_OK;
}

static enum wd_status from_heartbeat(const Wideep__Heartbeat *w, struct wd_msg *m,
                                     struct wd_error *err)
{
    struct wd_msg_heartbeat *h = &m->heartbeat;
    WD_CHECK(get_text(w->has_instance_id, w->instance_id, 1, h->instance_id, sizeof(h->instance_id),
                      "heartbeat.instance_id", err));
    WD_CHECK(need(w->has_seq, "heartbeat.seq", err));
    h->seq = w->seq;
    h->is_draining = w->has_is_draining && w->is_draining;
    if (w->n_dp > WD_MSG_MAX_DP_RANKS)
        return wd_error_set(err, WD_ERR_FORMAT, "heartbeat has %zu dp entries, over %d", w->n_dp,
                            WD_MSG_MAX_DP_RANKS);
    h->n_dp_ranks = (int32_t)w->n_dp;
    WD_CHECK(alloc_storage(m, w->n_dp * sizeof(*h->dp), err));
    h->dp = m->storage;
    for (size_t i = 0; i < w->n_dp; i++) {
        const Wideep__DpLoad *d = w->dp[i];
        struct wd_msg_dp_load *o = &h->dp[i];
        WD_CHECK(get_i32(d->has_n_free_pages, d->n_free_pages, 1, "heartbeat.dp.n_free_pages",
                         &o->n_free_pages, err));
        WD_CHECK(get_i32(d->has_n_pages, d->n_pages, 1, "heartbeat.dp.n_pages", &o->n_pages, err));
        WD_CHECK(get_i32(d->has_n_running, d->n_running, 1, "heartbeat.dp.n_running", &o->n_running,
                         err));
        WD_CHECK(get_i32(d->has_n_waiting, d->n_waiting, 1, "heartbeat.dp.n_waiting", &o->n_waiting,
                         err));
        WD_CHECK(need(d->has_n_queued_prefill_tokens, "heartbeat.dp.n_queued_prefill_tokens", err));
        if (d->n_queued_prefill_tokens > (uint64_t)INT64_MAX)
            return wd_error_set(err, WD_ERR_FORMAT,
                                "heartbeat.dp.n_queued_prefill_tokens exceeds 2^63-1");
        o->n_queued_prefill_tokens = (int64_t)d->n_queued_prefill_tokens;
    }
    return WD_OK;
}

static enum wd_status from_generate(const Wideep__GenerateRequest *w, struct wd_msg *m,
                                    struct wd_error *err)
{
    struct wd_msg_generate *g = &m->generate;
    WD_CHECK(need(w->has_request_id, "generate.request_id", err));
    g->request_id = w->request_id;
    const Wideep__Sampling *s = w->sampling;
    WD_CHECK(need(s != NULL, "generate.sampling", err));
    WD_CHECK(need(s->has_temperature, "generate.sampling.temperature", err));
    WD_CHECK(need(s->has_top_p, "generate.sampling.top_p", err));
    WD_CHECK(need(s->has_top_k, "generate.sampling.top_k", err));
    WD_CHECK(need(s->has_min_p, "generate.sampling.min_p", err));
    g->sampling.temperature = s->temperature;
    g->sampling.top_p = s->top_p;
    g->sampling.top_k = s->top_k;
    g->sampling.min_p = s->min_p;
    g->sampling.has_seed = s->has_seed;
    g->sampling.seed = s->has_seed ? s->seed : 0;
    WD_CHECK(get_i32(w->has_max_new_tokens, w->max_new_tokens, 1, "generate.max_new_tokens",
                     &g->max_new_tokens, err));
    g->is_ignore_eos = w->has_ignore_eos && w->ignore_eos;
    g->deadline_ms = w->has_deadline_ms ? w->deadline_ms : 0;
    WD_CHECK(get_i32(w->has_dp_rank, w->dp_rank, 1, "generate.dp_rank", &g->dp_rank, err));
    g->is_return_logprobs = w->has_return_logprobs && w->return_logprobs;
    WD_CHECK(get_i32(w->has_top_logprobs, w->top_logprobs, 0, "generate.top_logprobs",
                     &g->n_top_logprobs, err));
    /* Counts fit int32: a 64 MiB frame holds fewer than 2^27 elements. */
    if (w->n_stop_ids > WD_MSG_MAX_STOP_IDS)
        return wd_error_set(err, WD_ERR_FORMAT, "generate has %zu stop ids, over %d", w->n_stop_ids,
                            WD_MSG_MAX_STOP_IDS);
    g->n_input_ids = (int32_t)w->n_input_ids;
    g->n_stop_ids = (int32_t)w->n_stop_ids;

    size_t off_stop = align8(w->n_input_ids * sizeof(int32_t));
    WD_CHECK(alloc_storage(m, off_stop + w->n_stop_ids * sizeof(int32_t), err));
    g->input_ids = m->storage;
    g->stop_ids = (int32_t *)((char *)m->storage + off_stop);
    WD_CHECK(get_ids(w->input_ids, w->n_input_ids, g->input_ids, "generate.input_ids", err));
    WD_CHECK(get_ids(w->stop_ids, w->n_stop_ids, g->stop_ids, "generate.stop_ids", err));
    if (g->n_stop_ids == 0)
        g->stop_ids = NULL;
    return WD_OK;
}

static enum wd_status from_chunk(const Wideep__TokenChunk *w, struct wd_msg *m,
                                 struct wd_error *err)
{
    struct wd_msg_token_chunk *c = &m->chunk;
    WD_CHECK(need(w->has_request_id, "token_chunk.request_id", err));
    c->request_id = w->request_id;
    size_t n = w->n_token_ids;
    c->n_tokens = (int32_t)n;
    if (w->n_logprobs != 0 && w->n_logprobs != n)
        return wd_error_set(err, WD_ERR_FORMAT, "token_chunk has %zu logprobs for %zu tokens",
                            w->n_logprobs, n);
    WD_CHECK(get_i32(w->has_n_top, w->n_top, 0, "token_chunk.n_top", &c->n_top, err));
    if (c->n_top > WD_MSG_MAX_TOP_LOGPROBS)
        return wd_error_set(err, WD_ERR_FORMAT, "token_chunk.n_top %d exceeds %d", (int)c->n_top,
                            WD_MSG_MAX_TOP_LOGPROBS);
    size_t n_top = n * (size_t)c->n_top; /* no overflow: n < 2^27, n_top <= 20 */
    if (w->n_top_ids != n_top || w->n_top_logprobs != n_top)
        return wd_error_set(err, WD_ERR_FORMAT,
                            "token_chunk has %zu top ids and %zu top logprobs, expected %zu "
                            "(%zu tokens x %d)",
                            w->n_top_ids, w->n_top_logprobs, n_top, n, (int)c->n_top);
    c->finish = w->has_finish ? (enum wd_msg_finish)w->finish : WD_MSG_FINISH_NONE;
    WD_CHECK(get_i32(w->has_n_prompt_tokens, w->n_prompt_tokens, 0, "token_chunk.n_prompt_tokens",
                     &c->n_prompt_tokens, err));
    c->matched_stop = -1;
    if (w->has_matched_stop)
        WD_CHECK(get_i32(1, w->matched_stop, 1, "token_chunk.matched_stop", &c->matched_stop, err));

    size_t off_lp = align8(n * sizeof(int32_t));
    size_t off_top_ids = off_lp + align8(w->n_logprobs * sizeof(float));
    size_t off_top_lp = off_top_ids + align8(n_top * sizeof(int32_t));
    WD_CHECK(alloc_storage(m, off_top_lp + n_top * sizeof(float), err));
    char *base = m->storage;
    c->token_ids = n ? (int32_t *)base : NULL;
    c->logprobs = w->n_logprobs ? (float *)(base + off_lp) : NULL;
    c->top_ids = n_top ? (int32_t *)(base + off_top_ids) : NULL;
    c->top_logprobs = n_top ? (float *)(base + off_top_lp) : NULL;
    WD_CHECK(get_ids(w->token_ids, n, (int32_t *)base, "token_chunk.token_ids", err));
    WD_CHECK(
        get_ids(w->top_ids, n_top, (int32_t *)(base + off_top_ids), "token_chunk.top_ids", err));
    if (w->n_logprobs)
        memcpy(c->logprobs, w->logprobs, n * sizeof(float));
    if (n_top)
        memcpy(c->top_logprobs, w->top_logprobs, n_top * sizeof(float));
    return WD_OK;
}

static enum wd_status from_peer(const Wideep__PdPeer *w, const char *what, struct wd_msg_pd_peer *p,
                                struct wd_error *err)
{
    char field[64];
    snprintf(field, sizeof(field), "%s.peer", what);
    WD_CHECK(need(w != NULL, field, err));
    snprintf(field, sizeof(field), "%s.peer.instance_id", what);
    WD_CHECK(get_text(w->has_instance_id, w->instance_id, 1, p->instance_id, sizeof(p->instance_id),
                      field, err));
    snprintf(field, sizeof(field), "%s.peer.bootstrap_endpoint", what);
    WD_CHECK(get_text(w->has_bootstrap_endpoint, w->bootstrap_endpoint, 0, p->bootstrap_endpoint,
                      sizeof(p->bootstrap_endpoint), field, err));
    snprintf(field, sizeof(field), "%s.peer.dp_rank", what);
    return get_i32(w->has_dp_rank, w->dp_rank, 1, field, &p->dp_rank, err);
}

/* DecodeRequest / PrefillRequest: a GenerateRequest and the pair's other worker. */
static enum wd_status from_pd_request(const Wideep__GenerateRequest *req,
                                      const Wideep__PdPeer *peer, const char *what,
                                      struct wd_msg *m, struct wd_error *err)
{
    char field[64];
    snprintf(field, sizeof(field), "%s.request", what);
    WD_CHECK(need(req != NULL, field, err));
    WD_CHECK(from_generate(req, m, err));
    return from_peer(peer, what, &m->generate.peer, err);
}

static enum wd_status from_kv_target(const Wideep__KvTarget *w, struct wd_msg *m,
                                     struct wd_error *err)
{
    struct wd_msg_kv_target *t = &m->kv_target;
    WD_CHECK(need(w->has_request_id, "kv_target.request_id", err));
    t->request_id = w->request_id;
    WD_CHECK(get_text(w->has_decode_instance_id, w->decode_instance_id, 1, t->decode_instance_id,
                      sizeof(t->decode_instance_id), "kv_target.decode_instance_id", err));
    WD_CHECK(get_i32(w->has_decode_dp_rank, w->decode_dp_rank, 1, "kv_target.decode_dp_rank",
                     &t->decode_dp_rank, err));
    WD_CHECK(need(w->has_descriptors_id, "kv_target.descriptors_id", err));
    t->descriptors_id = w->descriptors_id;
    if (w->n_page_ids > WD_MSG_MAX_PAGES)
        return wd_error_set(err, WD_ERR_FORMAT, "kv_target has %zu pages, over %d", w->n_page_ids,
                            WD_MSG_MAX_PAGES);
    t->n_pages = (int32_t)w->n_page_ids;
    WD_CHECK(alloc_storage(m, w->n_page_ids * sizeof(int32_t), err));
    t->page_ids = m->storage;
    return get_ids(w->page_ids, w->n_page_ids, t->page_ids, "kv_target.page_ids", err);
}

static enum wd_status from_kv_descriptors(const Wideep__KvDescriptors *w, struct wd_msg *m,
                                          struct wd_error *err)
{
    struct wd_msg_kv_descriptors *d = &m->kv_descriptors;
    WD_CHECK(get_text(w->has_decode_instance_id, w->decode_instance_id, 1, d->decode_instance_id,
                      sizeof(d->decode_instance_id), "kv_descriptors.decode_instance_id", err));
    WD_CHECK(need(w->has_descriptors_id, "kv_descriptors.descriptors_id", err));
    d->descriptors_id = w->descriptors_id;
    if (w->n_ranks > WD_MSG_MAX_DESC_RANKS)
        return wd_error_set(err, WD_ERR_FORMAT, "kv_descriptors has %zu ranks, over %d", w->n_ranks,
                            WD_MSG_MAX_DESC_RANKS);
    size_t bytes = align8(w->n_ranks * sizeof(*d->ranks));
    for (size_t i = 0; i < w->n_ranks; i++) {
        WD_CHECK(need(w->ranks[i]->has_blob, "kv_descriptors.ranks.blob", err));
        if (w->ranks[i]->blob.len > WD_MSG_MAX_DESC_BYTES)
            return wd_error_set(err, WD_ERR_FORMAT, "kv_descriptors.ranks.blob of %zu bytes",
                                w->ranks[i]->blob.len);
        bytes += align8(w->ranks[i]->blob.len);
    }
    d->n = (int32_t)w->n_ranks;
    WD_CHECK(alloc_storage(m, bytes, err));
    d->ranks = m->storage;
    uint8_t *blob = (uint8_t *)m->storage + align8(w->n_ranks * sizeof(*d->ranks));
    for (size_t i = 0; i < w->n_ranks; i++) {
        const Wideep__KvDescriptor *r = w->ranks[i];
        struct wd_msg_kv_desc *o = &d->ranks[i];
        WD_CHECK(get_i32(r->has_dp_rank, r->dp_rank, 1, "kv_descriptors.ranks.dp_rank", &o->dp_rank,
                         err));
        WD_CHECK(get_i32(r->has_attn_tp_rank, r->attn_tp_rank, 1,
                         "kv_descriptors.ranks.attn_tp_rank", &o->attn_tp_rank, err));
        o->len = (uint32_t)r->blob.len;
        if (r->blob.len)
            memcpy(blob, r->blob.data, r->blob.len);
        o->blob = blob;
        blob += align8(r->blob.len);
    }
    return WD_OK;
}

static enum wd_status from_kv_done(const Wideep__KvDone *w, struct wd_msg *m, struct wd_error *err)
{
    struct wd_msg_kv_done *d = &m->kv_done;
    WD_CHECK(need(w->has_request_id, "kv_done.request_id", err));
    d->request_id = w->request_id;
    WD_CHECK(get_i32(w->has_first_token, w->first_token, 1, "kv_done.first_token", &d->first_token,
                     err));
    WD_CHECK(need(w->has_logprob, "kv_done.logprob", err));
    d->logprob = w->logprob;
    WD_CHECK(get_i32(w->has_n_top, w->n_top, 0, "kv_done.n_top", &d->n_top, err));
    if (d->n_top > WD_MSG_MAX_TOP_LOGPROBS || w->n_top_ids != (size_t)d->n_top ||
        w->n_top_logprobs != (size_t)d->n_top)
        return wd_error_set(err, WD_ERR_FORMAT,
                            "kv_done.n_top %d with %zu top ids and %zu top logprobs", (int)d->n_top,
                            w->n_top_ids, w->n_top_logprobs);
    WD_CHECK(get_ids(w->top_ids, w->n_top_ids, d->top_ids, "kv_done.top_ids", err));
    if (w->n_top_logprobs)
        memcpy(d->top_logprobs, w->top_logprobs, w->n_top_logprobs * sizeof(float));
    WD_CHECK(get_i32(w->has_n_prompt_tokens, w->n_prompt_tokens, 1, "kv_done.n_prompt_tokens",
                     &d->n_prompt_tokens, err));
    d->kv_bytes = w->has_kv_bytes ? w->kv_bytes : 0;
    d->transfer_us = w->has_transfer_us ? w->transfer_us : 0;
    d->wait_target_us = w->has_wait_target_us ? w->wait_target_us : 0;
    return WD_OK;
}

static enum wd_status from_frame(const Wideep__Frame *f, struct wd_msg *m, struct wd_error *err)
{
    if (!f->has_protocol_version)
        return wd_error_set(err, WD_ERR_FORMAT, "frame has no protocol_version");
    if (f->protocol_version != WD_MSG_PROTOCOL_VERSION)
        return wd_error_set(err, WD_ERR_UNSUPPORTED,
                            "peer speaks protocol version %u, this build speaks %u",
                            f->protocol_version, WD_MSG_PROTOCOL_VERSION);
    switch (f->body_case) {
    case WIDEEP__FRAME__BODY_REG:
        m->kind = WD_MSG_REGISTER;
        return from_register(f->reg, m, err);
    case WIDEEP__FRAME__BODY_REG_ACK:
        m->kind = WD_MSG_REGISTER_ACK;
        WD_CHECK(need(f->reg_ack->has_worker_id, "register_ack.worker_id", err));
        WD_CHECK(
            need(f->reg_ack->has_heartbeat_interval_ms, "register_ack.heartbeat_interval_ms", err));
        WD_CHECK(
            need(f->reg_ack->has_heartbeat_timeout_ms, "register_ack.heartbeat_timeout_ms", err));
        m->reg_ack.worker_id = f->reg_ack->worker_id;
        m->reg_ack.heartbeat_interval_ms = f->reg_ack->heartbeat_interval_ms;
        m->reg_ack.heartbeat_timeout_ms = f->reg_ack->heartbeat_timeout_ms;
        return WD_OK;
    case WIDEEP__FRAME__BODY_REG_REFUSE:
        m->kind = WD_MSG_REGISTER_REFUSE;
        return get_text(f->reg_refuse->has_reason, f->reg_refuse->reason, 1, m->reg_refuse.reason,
                        sizeof(m->reg_refuse.reason), "register_refuse.reason", err);
    case WIDEEP__FRAME__BODY_HEARTBEAT:
        m->kind = WD_MSG_HEARTBEAT;
        return from_heartbeat(f->heartbeat, m, err);
    case WIDEEP__FRAME__BODY_DRAIN:
        m->kind = WD_MSG_DRAIN;
        return get_text(f->drain->has_instance_id, f->drain->instance_id, 0, m->drain.instance_id,
                        sizeof(m->drain.instance_id), "drain.instance_id", err);
    case WIDEEP__FRAME__BODY_GENERATE:
        m->kind = WD_MSG_GENERATE;
        return from_generate(f->generate, m, err);
    case WIDEEP__FRAME__BODY_TOKEN_CHUNK:
        m->kind = WD_MSG_TOKEN_CHUNK;
        return from_chunk(f->token_chunk, m, err);
    case WIDEEP__FRAME__BODY_ABORT:
        m->kind = WD_MSG_ABORT;
        WD_CHECK(need(f->abort->has_request_id, "abort.request_id", err));
        m->abort.request_id = f->abort->request_id;
        return WD_OK;
    case WIDEEP__FRAME__BODY_ERROR:
        m->kind = WD_MSG_ERROR;
        m->error.request_id = f->error->has_request_id ? f->error->request_id : 0;
        WD_CHECK(need(f->error->has_code, "error.code", err));
        if (f->error->code == 0 || f->error->code > (uint32_t)WD_ERR_PEER)
            return wd_error_set(err, WD_ERR_FORMAT, "error.code %u is not a wd_status error",
                                f->error->code);
        m->error.code = (enum wd_status)f->error->code;
        return get_text(f->error->has_message, f->error->message, 0, m->error.message,
                        sizeof(m->error.message), "error.message", err);
    case WIDEEP__FRAME__BODY_DECODE_REQUEST:
        m->kind = WD_MSG_DECODE_REQUEST;
        return from_pd_request(f->decode_request->request, f->decode_request->prefill,
                               "decode_request", m, err);
    case WIDEEP__FRAME__BODY_PREFILL_REQUEST:
        m->kind = WD_MSG_PREFILL_REQUEST;
        return from_pd_request(f->prefill_request->request, f->prefill_request->decode,
                               "prefill_request", m, err);
    case WIDEEP__FRAME__BODY_KV_TARGET:
        m->kind = WD_MSG_KV_TARGET;
        return from_kv_target(f->kv_target, m, err);
    case WIDEEP__FRAME__BODY_KV_DESCRIPTORS:
        m->kind = WD_MSG_KV_DESCRIPTORS;
        return from_kv_descriptors(f->kv_descriptors, m, err);
    case WIDEEP__FRAME__BODY_KV_DONE:
        m->kind = WD_MSG_KV_DONE;
        return from_kv_done(f->kv_done, m, err);
    case WIDEEP__FRAME__BODY_KV_RELEASE:
        m->kind = WD_MSG_KV_RELEASE;
        WD_CHECK(need(f->kv_release->has_request_id, "kv_release.request_id", err));
        m->kv_release.request_id = f->kv_release->request_id;
        return WD_OK;
    default:
        break;
    }
    return wd_error_set(err, WD_ERR_FORMAT,
                        "frame has no body, or one protocol version %u does not define",
                        WD_MSG_PROTOCOL_VERSION);
}

enum wd_status wd_msg_decode(const void *buf, size_t len, struct wd_msg *m, struct wd_error *err)
{
    wd_msg_init(m, WD_MSG_NONE);
    if (len > WD_MSG_MAX_FRAME)
        return wd_error_set(err, WD_ERR_FORMAT, "frame of %zu bytes exceeds the %zu-byte cap", len,
                            WD_MSG_MAX_FRAME);
    static const uint8_t empty[1];
    struct budget b = {DECODE_BUDGET_BASE + 4 * len, 0};
    ProtobufCAllocator alloc = {budget_alloc, budget_free, &b};
    Wideep__Frame *f = wideep__frame__unpack(&alloc, len, len ? buf : empty);
    if (!f) {
        if (b.is_exhausted)
            return wd_error_set(err, WD_ERR_FORMAT,
                                "frame of %zu bytes needs more than %zu bytes to unpack", len,
                                DECODE_BUDGET_BASE + 4 * len);
        return wd_error_set(err, WD_ERR_FORMAT, "frame of %zu bytes is not a wideep frame", len);
    }
    enum wd_status st = from_frame(f, m, err);
    wideep__frame__free_unpacked(f, &alloc);
    if (st == WD_OK && wd_msg_validate(m, err) != WD_OK) {
        st = WD_ERR_FORMAT; /* a peer's bytes broke a rule: malformed input, not our bug */
        if (err)
            err->status = st;
    }
    if (st != WD_OK)
        wd_msg_free(m);
    return st;
}

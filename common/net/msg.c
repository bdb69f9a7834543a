/*
 * The control-plane codec: our wd_msg structs to and from one protobuf-c Frame. This is the
 * one translation module that sees the generated types (proto/wideep.pb-c.h); nothing it
 * returns points into them.
 *
 * Decode runs in three steps: the size cap, protobuf-c's unpack under a memory budget, then
 * a translation that checks presence, wire ranges and array counts before it copies into
 * one block (m->storage), followed by wd_msg_validate for the semantic rules. Encode
 * validates first, then points the generated structs at the caller's arrays (no copy) and
 * packs. Pure functions; errors are returned, never logged (the caller decides).
 */
#include "common/net/msg.h"

#include <string.h>

#include <xxhash.h>

#include "wideep.pb-c.h"

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

static ProtobufCBinaryData text_bytes(const char *s)
{
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    return b;
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

/* ---- encode: wd_msg -> wire ---- */

/* The generated structs of one frame, on the stack, pointing at the caller's arrays. */
struct wire {
    Wideep__Frame frame;
    union {
        struct {
            Wideep__Register reg;
            Wideep__Fingerprint fp;
            Wideep__KvLayout kv;
            Wideep__ParallelLayout par;
        } r;
        Wideep__RegisterAck ack;
        Wideep__RegisterRefuse refuse;
        Wideep__Heartbeat hb;
        Wideep__Drain drain;
        struct {
            Wideep__GenerateRequest gen;
            Wideep__Sampling sampling;
        } g;
        Wideep__TokenChunk chunk;
        Wideep__Abort abort;
        Wideep__Error error;
    };
    void *scratch; /* repeated submessages: [n] structs then [n] pointers */
};

static void to_register(const struct wd_msg_register *r, struct wire *w)
{
    Wideep__Register *o = &w->r.reg;
    wideep__register__init(o);
    o->has_role = 1, o->role = (Wideep__Role)r->role;
    o->has_instance_id = 1, o->instance_id = text_bytes(r->instance_id);
    o->has_n_dp_ranks = 1, o->n_dp_ranks = (uint32_t)r->n_dp_ranks;
    o->has_context_len = 1, o->context_len = (uint32_t)r->context_len;
    o->has_metrics_port = r->metrics_port != 0, o->metrics_port = (uint32_t)r->metrics_port;
    o->has_bootstrap_endpoint = r->bootstrap_endpoint[0] != '\0';
    o->bootstrap_endpoint = text_bytes(r->bootstrap_endpoint);
    Wideep__DpCapacity *caps = w->scratch;
    Wideep__DpCapacity **ptrs = (Wideep__DpCapacity **)(caps + r->n_dp_ranks);
    for (int32_t i = 0; i < r->n_dp_ranks; i++) {
        wideep__dp_capacity__init(&caps[i]);
        caps[i].has_n_pages = 1, caps[i].n_pages = (uint32_t)r->dp[i].n_pages;
        caps[i].has_max_running = 1, caps[i].max_running = (uint32_t)r->dp[i].max_running;
        ptrs[i] = &caps[i];
    }
    o->n_dp = (size_t)r->n_dp_ranks, o->dp = ptrs;

    const struct wd_msg_fingerprint *fp = &r->fp;
    Wideep__Fingerprint *f = &w->r.fp;
    wideep__fingerprint__init(f);
    f->has_protocol_version = 1, f->protocol_version = fp->protocol_version;
    f->has_model = 1, f->model = text_bytes(fp->model);
    f->has_config_hash = 1, f->config_hash = fp->config_hash;
    f->has_weight_dtype = 1, f->weight_dtype = text_bytes(fp->weight_dtype);
    f->has_kv_dtype = 1, f->kv_dtype = text_bytes(fp->kv_dtype);
    f->has_page_size = 1, f->page_size = (uint32_t)fp->page_size;
    Wideep__KvLayout *kv = &w->r.kv;
    wideep__kv_layout__init(kv);
    kv->has_kind = 1, kv->kind = (Wideep__KvKind)fp->kv.kind;
    kv->has_n_layers = 1, kv->n_layers = (uint32_t)fp->kv.n_layers;
    kv->has_n_kv_heads = 1, kv->n_kv_heads = (uint32_t)fp->kv.n_kv_heads;
    kv->has_k_head_dim = 1, kv->k_head_dim = (uint32_t)fp->kv.k_head_dim;
    kv->has_v_head_dim = 1, kv->v_head_dim = (uint32_t)fp->kv.v_head_dim;
    f->kv_layout = kv;
    const struct wd_msg_parallel *p = &fp->parallel;
    Wideep__ParallelLayout *q = &w->r.par;
    wideep__parallel_layout__init(q);
    q->has_tp = 1, q->tp = (uint32_t)p->tp;
    q->has_dp = 1, q->dp = (uint32_t)p->dp;
    q->has_ep = 1, q->ep = (uint32_t)p->ep;
    q->has_attn_tp = 1, q->attn_tp = (uint32_t)p->attn_tp;
    q->has_attn_dp = 1, q->attn_dp = (uint32_t)p->attn_dp;
    q->has_moe_ep = 1, q->moe_ep = (uint32_t)p->moe_ep;
    q->has_moe_tp = 1, q->moe_tp = (uint32_t)p->moe_tp;
    q->has_nnodes = 1, q->nnodes = (uint32_t)p->nnodes;
    q->has_a2a_backend = 1, q->a2a_backend = text_bytes(p->a2a_backend);
    q->has_deepep_mode = 1, q->deepep_mode = text_bytes(p->deepep_mode);
    f->parallel = q;
    o->fingerprint = f;
    w->frame.body_case = WIDEEP__FRAME__BODY_REG;
    w->frame.reg = o;
}

static void to_heartbeat(const struct wd_msg_heartbeat *h, struct wire *w)
{
    Wideep__Heartbeat *o = &w->hb;
    wideep__heartbeat__init(o);
    o->has_instance_id = 1, o->instance_id = text_bytes(h->instance_id);
    o->has_seq = 1, o->seq = h->seq;
    o->has_is_draining = h->is_draining != 0, o->is_draining = h->is_draining != 0;
    Wideep__DpLoad *loads = w->scratch;
    Wideep__DpLoad **ptrs = (Wideep__DpLoad **)(loads + h->n_dp_ranks);
    for (int32_t i = 0; i < h->n_dp_ranks; i++) {
        const struct wd_msg_dp_load *d = &h->dp[i];
        Wideep__DpLoad *l = &loads[i];
        wideep__dp_load__init(l);
        l->has_n_free_pages = 1, l->n_free_pages = (uint32_t)d->n_free_pages;
        l->has_n_pages = 1, l->n_pages = (uint32_t)d->n_pages;
        l->has_n_running = 1, l->n_running = (uint32_t)d->n_running;
        l->has_n_waiting = 1, l->n_waiting = (uint32_t)d->n_waiting;
        l->has_n_queued_prefill_tokens = 1;
        l->n_queued_prefill_tokens = (uint64_t)d->n_queued_prefill_tokens;
        ptrs[i] = l;
    }
    o->n_dp = (size_t)h->n_dp_ranks, o->dp = ptrs;
    w->frame.body_case = WIDEEP__FRAME__BODY_HEARTBEAT;
    w->frame.heartbeat = o;
}

/* Validated ids are >= 0, so an int32_t array reads as the same uint32_t values (C allows
 * the signed/unsigned alias); protobuf-c's struct fields are non-const but pack only reads. */
static uint32_t *as_u32(const int32_t *ids)
{
    return (uint32_t *)ids;
}

static void to_generate(const struct wd_msg_generate *g, struct wire *w)
{
    Wideep__GenerateRequest *o = &w->g.gen;
    Wideep__Sampling *s = &w->g.sampling;
    wideep__generate_request__init(o);
    wideep__sampling__init(s);
    s->has_temperature = 1, s->temperature = g->sampling.temperature;
    s->has_top_p = 1, s->top_p = g->sampling.top_p;
    s->has_top_k = 1, s->top_k = g->sampling.top_k;
    s->has_min_p = 1, s->min_p = g->sampling.min_p;
    s->has_seed = g->sampling.has_seed != 0, s->seed = g->sampling.seed;
    o->has_request_id = 1, o->request_id = g->request_id;
    o->n_input_ids = (size_t)g->n_input_ids, o->input_ids = as_u32(g->input_ids);
    o->sampling = s;
    o->n_stop_ids = (size_t)g->n_stop_ids, o->stop_ids = as_u32(g->stop_ids);
    o->has_max_new_tokens = 1, o->max_new_tokens = (uint32_t)g->max_new_tokens;
    o->has_ignore_eos = g->is_ignore_eos != 0, o->ignore_eos = g->is_ignore_eos != 0;
    o->has_deadline_ms = g->deadline_ms != 0, o->deadline_ms = g->deadline_ms;
    o->has_dp_rank = 1, o->dp_rank = (uint32_t)g->dp_rank;
    o->has_return_logprobs = g->is_return_logprobs != 0;
    o->return_logprobs = g->is_return_logprobs != 0;
    o->has_top_logprobs = g->n_top_logprobs != 0;
    o->top_logprobs = (uint32_t)g->n_top_logprobs;
    w->frame.body_case = WIDEEP__FRAME__BODY_GENERATE;
    w->frame.generate = o;
}

static void to_chunk(const struct wd_msg_token_chunk *c, struct wire *w)
{
    Wideep__TokenChunk *o = &w->chunk;
    wideep__token_chunk__init(o);
    size_t n = (size_t)c->n_tokens;
    o->has_request_id = 1, o->request_id = c->request_id;
    o->n_token_ids = n, o->token_ids = as_u32(c->token_ids);
    if (c->logprobs)
        o->n_logprobs = n, o->logprobs = (float *)c->logprobs;
    o->has_n_top = c->n_top != 0, o->n_top = (uint32_t)c->n_top;
    if (c->n_top > 0 && n > 0) {
        o->n_top_ids = o->n_top_logprobs = n * (size_t)c->n_top;
        o->top_ids = as_u32(c->top_ids), o->top_logprobs = (float *)c->top_logprobs;
    }
    o->has_finish = c->finish != WD_MSG_FINISH_NONE, o->finish = (Wideep__FinishReason)c->finish;
    o->has_n_prompt_tokens = c->n_prompt_tokens != 0;
    o->n_prompt_tokens = (uint32_t)c->n_prompt_tokens;
    o->has_matched_stop = c->finish == WD_MSG_FINISH_STOP;
    o->matched_stop = (uint32_t)(c->matched_stop < 0 ? 0 : c->matched_stop);
    w->frame.body_case = WIDEEP__FRAME__BODY_TOKEN_CHUNK;
    w->frame.token_chunk = o;
}

static void to_wire(const struct wd_msg *m, struct wire *w)
{
    wideep__frame__init(&w->frame);
    w->frame.has_protocol_version = 1;
    w->frame.protocol_version = WD_MSG_PROTOCOL_VERSION;
    switch (m->kind) {
    case WD_MSG_REGISTER:
        to_register(&m->reg, w);
        break;
    case WD_MSG_REGISTER_ACK:
        wideep__register_ack__init(&w->ack);
        w->ack.has_worker_id = 1, w->ack.worker_id = m->reg_ack.worker_id;
        w->ack.has_heartbeat_interval_ms = 1;
        w->ack.heartbeat_interval_ms = m->reg_ack.heartbeat_interval_ms;
        w->ack.has_heartbeat_timeout_ms = 1;
        w->ack.heartbeat_timeout_ms = m->reg_ack.heartbeat_timeout_ms;
        w->frame.body_case = WIDEEP__FRAME__BODY_REG_ACK, w->frame.reg_ack = &w->ack;
        break;
    case WD_MSG_REGISTER_REFUSE:
        wideep__register_refuse__init(&w->refuse);
        w->refuse.has_reason = 1, w->refuse.reason = text_bytes(m->reg_refuse.reason);
        w->frame.body_case = WIDEEP__FRAME__BODY_REG_REFUSE, w->frame.reg_refuse = &w->refuse;
        break;
    case WD_MSG_HEARTBEAT:
        to_heartbeat(&m->heartbeat, w);
        break;
    case WD_MSG_DRAIN:
        wideep__drain__init(&w->drain);
        w->drain.has_instance_id = m->drain.instance_id[0] != '\0';
        w->drain.instance_id = text_bytes(m->drain.instance_id);
        w->frame.body_case = WIDEEP__FRAME__BODY_DRAIN, w->frame.drain = &w->drain;
        break;
    case WD_MSG_GENERATE:
        to_generate(&m->generate, w);
        break;
    case WD_MSG_TOKEN_CHUNK:
        to_chunk(&m->chunk, w);
        break;
    case WD_MSG_ABORT:
        wideep__abort__init(&w->abort);
        w->abort.has_request_id = 1, w->abort.request_id = m->abort.request_id;
        w->frame.body_case = WIDEEP__FRAME__BODY_ABORT, w->frame.abort = &w->abort;
        break;
    case WD_MSG_ERROR:
        wideep__error__init(&w->error);
        w->error.has_request_id = m->error.request_id != 0;
        w->error.request_id = m->error.request_id;
        w->error.has_code = 1, w->error.code = (uint32_t)m->error.code;
        w->error.has_message = m->error.message[0] != '\0';
        w->error.message = text_bytes(m->error.message);
        w->frame.body_case = WIDEEP__FRAME__BODY_ERROR, w->frame.error = &w->error;
        break;
    case WD_MSG_NONE:
        WD_ASSERT(!"validated message of kind NONE");
    }
}

enum wd_status wd_msg_encode(const struct wd_msg *m, void **buf_p, size_t *len_p,
                             struct wd_error *err)
{
    WD_CHECK(wd_msg_validate(m, err));
    struct wire w;
    w.scratch = NULL;
    /* Register and Heartbeat carry up to WD_MSG_MAX_DP_RANKS submessages: one scratch
     * block for the structs and the pointer array protobuf-c wants. */
    size_t n_sub = 0, sub_size = 0;
    if (m->kind == WD_MSG_REGISTER)
        n_sub = (size_t)m->reg.n_dp_ranks, sub_size = sizeof(Wideep__DpCapacity);
    else if (m->kind == WD_MSG_HEARTBEAT)
        n_sub = (size_t)m->heartbeat.n_dp_ranks, sub_size = sizeof(Wideep__DpLoad);
    if (n_sub) {
        w.scratch = malloc(n_sub * (sub_size + sizeof(void *)));
        if (!w.scratch)
            return wd_error_set(err, WD_ERR_NOMEM, "cannot allocate %zu submessages", n_sub);
    }
    to_wire(m, &w);
    enum wd_status st = WD_OK;
    size_t len = wideep__frame__get_packed_size(&w.frame);
    void *buf = NULL;
    if (len > WD_MSG_MAX_FRAME) {
        st = wd_error_set(err, WD_ERR_INVALID,
                          "%s message encodes to %zu bytes, over the %zu-byte frame cap",
                          wd_msg_kind_str(m->kind), len, WD_MSG_MAX_FRAME);
    } else if (!(buf = malloc(len ? len : 1))) {
        st = wd_error_set(err, WD_ERR_NOMEM, "cannot allocate a %zu-byte frame", len);
    } else {
        size_t packed = wideep__frame__pack(&w.frame, buf);
        WD_ASSERT(packed == len);
        *buf_p = buf;
        *len_p = len;
    }
    free(w.scratch);
    return st;
}

/* ---- peek ---- */

static int read_varint(const uint8_t *p, size_t len, size_t *off, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && *off < len; shift += 7) {
        uint8_t b = p[(*off)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return -1;
}

enum wd_msg_kind wd_msg_peek_kind(const void *buf, size_t len)
{
    static const enum wd_msg_kind by_field[] = {
        [WIDEEP__FRAME__BODY_REG] = WD_MSG_REGISTER,
        [WIDEEP__FRAME__BODY_REG_ACK] = WD_MSG_REGISTER_ACK,
        [WIDEEP__FRAME__BODY_REG_REFUSE] = WD_MSG_REGISTER_REFUSE,
        [WIDEEP__FRAME__BODY_HEARTBEAT] = WD_MSG_HEARTBEAT,
        [WIDEEP__FRAME__BODY_DRAIN] = WD_MSG_DRAIN,
        [WIDEEP__FRAME__BODY_GENERATE] = WD_MSG_GENERATE,
        [WIDEEP__FRAME__BODY_TOKEN_CHUNK] = WD_MSG_TOKEN_CHUNK,
        [WIDEEP__FRAME__BODY_ABORT] = WD_MSG_ABORT,
        [WIDEEP__FRAME__BODY_ERROR] = WD_MSG_ERROR,
    };
    const uint8_t *p = buf;
    size_t off = 0;
    enum wd_msg_kind kind = WD_MSG_NONE; /* a oneof's last occurrence wins */
    while (p && off < len) {
        uint64_t tag, v;
        if (read_varint(p, len, &off, &tag))
            break;
        uint64_t field = tag >> 3;
        switch (tag & 7) {
        case 0:
            if (read_varint(p, len, &off, &v))
                return kind;
            continue;
        case 1:
            v = 8;
            break;
        case 2:
            if (read_varint(p, len, &off, &v))
                return kind;
            if (field < sizeof(by_field) / sizeof(by_field[0]) && by_field[field] != WD_MSG_NONE)
                kind = by_field[field];
            break;
        case 5:
            v = 4;
            break;
        default:
            return kind;
        }
        if (v > len - off)
            break;
        off += (size_t)v;
    }
    return kind;
}

/* ---- lifetime ---- */

void wd_msg_init(struct wd_msg *m, enum wd_msg_kind kind)
{
    memset(m, 0, sizeof(*m));
    m->kind = kind;
    if (kind == WD_MSG_REGISTER)
        m->reg.fp.protocol_version = WD_MSG_PROTOCOL_VERSION;
    if (kind == WD_MSG_GENERATE)
        m->generate.sampling.temperature = 1.0f, m->generate.sampling.top_p = 1.0f;
    if (kind == WD_MSG_TOKEN_CHUNK)
        m->chunk.matched_stop = -1;
}

void wd_msg_free(struct wd_msg *m)
{
    if (!m)
        return;
    free(m->storage);
    wd_msg_init(m, WD_MSG_NONE);
}

const char *wd_msg_kind_str(enum wd_msg_kind kind)
{
    static const char *const names[] = {
        [WD_MSG_NONE] = "none",
        [WD_MSG_REGISTER] = "register",
        [WD_MSG_REGISTER_ACK] = "register_ack",
        [WD_MSG_REGISTER_REFUSE] = "register_refuse",
        [WD_MSG_HEARTBEAT] = "heartbeat",
        [WD_MSG_DRAIN] = "drain",
        [WD_MSG_GENERATE] = "generate",
        [WD_MSG_TOKEN_CHUNK] = "token_chunk",
        [WD_MSG_ABORT] = "abort",
        [WD_MSG_ERROR] = "error",
    };
    return (unsigned)kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "unknown";
}

uint64_t wd_msg_config_hash(const void *data, size_t len)
{
    return XXH3_64bits(data, len);
}

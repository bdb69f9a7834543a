/*
 * The control-plane codec, encode half: our wd_msg structs into one protobuf-c Frame.
 * Encode validates first, then points the generated structs at the caller's arrays (no copy)
 * and packs. Pure functions; errors are returned, never logged.
 */
#include <stdlib.h>
#include <string.h>

#include "common/net/msg_internal.h"

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
        struct {
            Wideep__GenerateRequest gen;
            Wideep__Sampling sampling;
            Wideep__PdPeer peer;
            Wideep__DecodeRequest dec;
            Wideep__PrefillRequest pre;
        } pd;
        Wideep__KvTarget target;
        Wideep__KvDescriptors descs;
        Wideep__KvDone done;
        Wideep__KvRelease release;
    };
    void *scratch; /* repeated submessages: [n] structs then [n] pointers */
};

static void to_register(const struct wd_msg_register *r, struct wire *w)
{
    Wideep__Register *o = &w->r.reg;
    wideep__register__init(o);
    o->has_role = 1, o->role = (Wideep__Role)r->role;
    o->has_instance_id = 1, o->instance_id = wd_msg_text_bytes(r->instance_id);
    o->has_n_dp_ranks = 1, o->n_dp_ranks = (uint32_t)r->n_dp_ranks;
    o->has_context_len = 1, o->context_len = (uint32_t)r->context_len;
    o->has_metrics_port = r->metrics_port != 0, o->metrics_port = (uint32_t)r->metrics_port;
    o->has_bootstrap_endpoint = r->bootstrap_endpoint[0] != '\0';
    o->bootstrap_endpoint = wd_msg_text_bytes(r->bootstrap_endpoint);
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
    f->has_model = 1, f->model = wd_msg_text_bytes(fp->model);
    f->has_config_hash = 1, f->config_hash = fp->config_hash;
    f->has_weight_dtype = 1, f->weight_dtype = wd_msg_text_bytes(fp->weight_dtype);
    f->has_kv_dtype = 1, f->kv_dtype = wd_msg_text_bytes(fp->kv_dtype);
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
    q->has_a2a_backend = 1, q->a2a_backend = wd_msg_text_bytes(p->a2a_backend);
    q->has_deepep_mode = 1, q->deepep_mode = wd_msg_text_bytes(p->deepep_mode);
    f->parallel = q;
    o->fingerprint = f;
    w->frame.body_case = WIDEEP__FRAME__BODY_REG;
    w->frame.reg = o;
}

static void to_heartbeat(const struct wd_msg_heartbeat *h, struct wire *w)
{
    Wideep__Heartbeat *o = &w->hb;
    wideep__heartbeat__init(o);
    o->has_instance_id = 1, o->instance_id = wd_msg_text_bytes(h->instance_id);
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
    o->n_input_ids = (size_t)g->n_input_ids, o->input_ids = wd_msg_as_u32(g->input_ids);
    o->sampling = s;
    o->n_stop_ids = (size_t)g->n_stop_ids, o->stop_ids = wd_msg_as_u32(g->stop_ids);
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

/* DecodeRequest / PrefillRequest: the GenerateRequest (built as for Generate, in the pd
 * slots) and the peer. */
static void to_pd_request(const struct wd_msg *m, struct wire *w)
{
    struct wire g;
    to_generate(&m->generate, &g);
    w->pd.gen = g.g.gen;
    w->pd.sampling = g.g.sampling;
    w->pd.gen.sampling = &w->pd.sampling;
    const struct wd_msg_pd_peer *p = &m->generate.peer;
    Wideep__PdPeer *o = &w->pd.peer;
    wideep__pd_peer__init(o);
    o->has_instance_id = 1, o->instance_id = wd_msg_text_bytes(p->instance_id);
    o->has_bootstrap_endpoint = p->bootstrap_endpoint[0] != '\0';
    o->bootstrap_endpoint = wd_msg_text_bytes(p->bootstrap_endpoint);
    o->has_dp_rank = 1, o->dp_rank = (uint32_t)p->dp_rank;
    if (m->kind == WD_MSG_DECODE_REQUEST) {
        wideep__decode_request__init(&w->pd.dec);
        w->pd.dec.request = &w->pd.gen, w->pd.dec.prefill = o;
        w->frame.body_case = WIDEEP__FRAME__BODY_DECODE_REQUEST;
        w->frame.decode_request = &w->pd.dec;
    } else {
        wideep__prefill_request__init(&w->pd.pre);
        w->pd.pre.request = &w->pd.gen, w->pd.pre.decode = o;
        w->frame.body_case = WIDEEP__FRAME__BODY_PREFILL_REQUEST;
        w->frame.prefill_request = &w->pd.pre;
    }
}

static void to_kv(const struct wd_msg *m, struct wire *w)
{
    switch (m->kind) {
    case WD_MSG_KV_TARGET: {
        const struct wd_msg_kv_target *t = &m->kv_target;
        Wideep__KvTarget *o = &w->target;
        wideep__kv_target__init(o);
        o->has_request_id = 1, o->request_id = t->request_id;
        o->has_decode_instance_id = 1;
        o->decode_instance_id = wd_msg_text_bytes(t->decode_instance_id);
        o->has_decode_dp_rank = 1, o->decode_dp_rank = (uint32_t)t->decode_dp_rank;
        o->n_page_ids = (size_t)t->n_pages, o->page_ids = wd_msg_as_u32(t->page_ids);
        o->has_descriptors_id = 1, o->descriptors_id = t->descriptors_id;
        w->frame.body_case = WIDEEP__FRAME__BODY_KV_TARGET, w->frame.kv_target = o;
        break;
    }
    case WD_MSG_KV_DESCRIPTORS: {
        const struct wd_msg_kv_descriptors *d = &m->kv_descriptors;
        Wideep__KvDescriptors *o = &w->descs;
        wideep__kv_descriptors__init(o);
        o->has_decode_instance_id = 1;
        o->decode_instance_id = wd_msg_text_bytes(d->decode_instance_id);
        o->has_descriptors_id = 1, o->descriptors_id = d->descriptors_id;
        Wideep__KvDescriptor *r = w->scratch;
        Wideep__KvDescriptor **ptrs = (Wideep__KvDescriptor **)(r + d->n);
        for (int32_t i = 0; i < d->n; i++) {
            wideep__kv_descriptor__init(&r[i]);
            r[i].has_dp_rank = 1, r[i].dp_rank = (uint32_t)d->ranks[i].dp_rank;
            r[i].has_attn_tp_rank = 1, r[i].attn_tp_rank = (uint32_t)d->ranks[i].attn_tp_rank;
            r[i].has_blob = 1;
            r[i].blob.len = d->ranks[i].len, r[i].blob.data = (uint8_t *)d->ranks[i].blob;
            ptrs[i] = &r[i];
        }
        o->n_ranks = (size_t)d->n, o->ranks = ptrs;
        w->frame.body_case = WIDEEP__FRAME__BODY_KV_DESCRIPTORS, w->frame.kv_descriptors = o;
        break;
    }
    case WD_MSG_KV_DONE: {
        const struct wd_msg_kv_done *d = &m->kv_done;
        Wideep__KvDone *o = &w->done;
        wideep__kv_done__init(o);
        o->has_request_id = 1, o->request_id = d->request_id;
        o->has_first_token = 1, o->first_token = (uint32_t)d->first_token;
        o->has_logprob = 1, o->logprob = d->logprob;
        o->has_n_top = d->n_top != 0, o->n_top = (uint32_t)d->n_top;
        o->n_top_ids = o->n_top_logprobs = (size_t)d->n_top;
        o->top_ids = wd_msg_as_u32(d->top_ids), o->top_logprobs = (float *)d->top_logprobs;
        o->has_n_prompt_tokens = 1, o->n_prompt_tokens = (uint32_t)d->n_prompt_tokens;
        o->has_kv_bytes = 1, o->kv_bytes = d->kv_bytes;
        o->has_transfer_us = 1, o->transfer_us = d->transfer_us;
        o->has_wait_target_us = 1, o->wait_target_us = d->wait_target_us;
        w->frame.body_case = WIDEEP__FRAME__BODY_KV_DONE, w->frame.kv_done = o;
        break;
    }
    default: /* WD_MSG_KV_RELEASE */
        wideep__kv_release__init(&w->release);
        w->release.has_request_id = 1, w->release.request_id = m->kv_release.request_id;
        w->frame.body_case = WIDEEP__FRAME__BODY_KV_RELEASE, w->frame.kv_release = &w->release;
        break;
    }
}

static void to_chunk(const struct wd_msg_token_chunk *c, struct wire *w)
{
    Wideep__TokenChunk *o = &w->chunk;
    wideep__token_chunk__init(o);
    size_t n = (size_t)c->n_tokens;
    o->has_request_id = 1, o->request_id = c->request_id;
    o->n_token_ids = n, o->token_ids = wd_msg_as_u32(c->token_ids);
    if (c->logprobs)
        o->n_logprobs = n, o->logprobs = (float *)c->logprobs;
    o->has_n_top = c->n_top != 0, o->n_top = (uint32_t)c->n_top;
    if (c->n_top > 0 && n > 0) {
        o->n_top_ids = o->n_top_logprobs = n * (size_t)c->n_top;
        o->top_ids = wd_msg_as_u32(c->top_ids), o->top_logprobs = (float *)c->top_logprobs;
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
        w->refuse.has_reason = 1, w->refuse.reason = wd_msg_text_bytes(m->reg_refuse.reason);
        w->frame.body_case = WIDEEP__FRAME__BODY_REG_REFUSE, w->frame.reg_refuse = &w->refuse;
        break;
    case WD_MSG_HEARTBEAT:
        to_heartbeat(&m->heartbeat, w);
        break;
    case WD_MSG_DRAIN:
        wideep__drain__init(&w->drain);
        w->drain.has_instance_id = m->drain.instance_id[0] != '\0';
        w->drain.instance_id = wd_msg_text_bytes(m->drain.instance_id);
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
        w->error.message = wd_msg_text_bytes(m->error.message);
        w->frame.body_case = WIDEEP__FRAME__BODY_ERROR, w->frame.error = &w->error;
        break;
    case WD_MSG_DECODE_REQUEST:
    case WD_MSG_PREFILL_REQUEST:
        to_pd_request(m, w);
        break;
    case WD_MSG_KV_TARGET:
    case WD_MSG_KV_DESCRIPTORS:
    case WD_MSG_KV_DONE:
    case WD_MSG_KV_RELEASE:
        to_kv(m, w);
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
    else if (m->kind == WD_MSG_KV_DESCRIPTORS)
        n_sub = (size_t)m->kv_descriptors.n, sub_size = sizeof(Wideep__KvDescriptor);
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

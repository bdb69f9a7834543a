/*
 * The engine's half of prefill/decode disaggregation, per rank. Every attention rank owns one
 * wd_kv_transfer over its KV region (a progress thread serves remote writes and completions).
 * At start-up a DP group's ranks gather their descriptors and the leader hands them to the
 * front-end (EV_DESCRIPTORS), which a decode worker sends to prefill workers.
 *
 * On a prefill rank: PD_PEER defines a peer set (one decode DP group) and this rank connects
 * to every rank of it whose heads it writes (wd_kv_heads_overlap); the leader then reports
 * the set ready (EV_PEER_READY) once the whole group has. A request added with a peer
 * set has its prompt KV put layer by layer from the forward's layer hook (the tokens this
 * forward computed, into the decode pages of the same positions). When its first token is
 * sampled, the rank flushes its peers; the group agrees on success (a rank's failure fails
 * the request on all) and the leader reports the token with the transfer's bytes and time,
 * or an error (the pages are released then). Before a request's pages are freed by an abort,
 * its puts are flushed, so no write reads a page that another request reuses.
 */
#include <stdlib.h>
#include <string.h>

#include "common/engine/engine_internal.h"
#include "common/net/kv_transfer.h"
#include "common/util/clock.h"
#include "common/util/log.h"

/* One descriptor slot in the group's gather: [u32 len][blob]. */
#define DESC_SLOT ((size_t)16 << 10)
/* How long a flush may wait for the decode side before the request fails. */
#define FLUSH_TIMEOUT_MS 10000

struct pd_set {
    int n;
    struct wd_kv_peer **peers; /* [n] the decode ranks this rank writes */
    char error[200];           /* non-empty: the set could not be connected */
};

struct pd_req {
    uint64_t id;
    int32_t peer;
    int32_t *remote; /* [n_remote] decode pages */
    int n_remote;
    int64_t t_first_us; /* first put; 0 before */
    uint64_t bytes;
    char error[200]; /* a put failed */
};

/* A prefilled request whose flush and report wait for the end of the step. */
struct pd_done {
    const struct wd_request *req; /* valid until release/abort, i.e. through after_step */
    int32_t token;
    float logprob;
};

struct wd_engine_pd {
    struct wd_kv_transfer *xfer;
    struct wd_kv_heads heads;
    struct pd_set *sets; /* [n_sets], index = peer id */
    int n_sets;
    struct wd_u64map reqs; /* id -> struct pd_req */
    struct pd_done *done;  /* [max_running] this step's prefilled requests */
    int n_done, done_cap;
    int32_t *tok_begin, *tok_end; /* [max_running] this forward's token range per sequence */
};

static void set_clear(struct pd_set *s)
{
    for (int i = 0; i < s->n; i++)
        wd_kv_transfer_disconnect(s->peers[i]);
    free(s->peers);
    memset(s, 0, sizeof(*s));
}

static void req_free(struct pd_req *r)
{
    if (r) {
        free(r->remote);
        free(r);
    }
}

/* The group's descriptors to the front-end: all-gathered slots, the leader reports them. */
static enum wd_status publish_descriptors(struct wd_engine *e, struct wd_error *err)
{
    size_t len;
    const void *d = wd_kv_transfer_descriptor(e->pd->xfer, &len);
    if (len + 4 > DESC_SLOT)
        return wd_error_set(err, WD_ERR_INVALID, "kv transfer: a descriptor of %zu bytes", len);
    int n = e->layout->attn_tp_size;
    uint8_t *slot = calloc(1, DESC_SLOT), *all = malloc(DESC_SLOT * (size_t)n);
    enum wd_status st = slot && all ? WD_OK : wd_error_set(err, WD_ERR_NOMEM, "out of memory");
    if (st == WD_OK) {
        uint32_t l32 = (uint32_t)len;
        memcpy(slot, &l32, 4);
        memcpy(slot + 4, d, len);
        if (n > 1)
            st = wd_coll_all_gather(e->groups->attn_tp->coll, slot, DESC_SLOT, all, e->timeout_ms,
                                    err);
        else
            memcpy(all, slot, DESC_SLOT);
    }
    if (st == WD_OK && e->is_leader) {
        /* [u32 attn_tp_rank][u32 len][blob] per rank */
        size_t total = 0;
        for (int r = 0; r < n; r++) {
            uint32_t l32;
            memcpy(&l32, all + (size_t)r * DESC_SLOT, 4);
            total += 8 + l32;
        }
        uint8_t *out = malloc(total), *p = out;
        if (!out)
            st = wd_error_set(err, WD_ERR_NOMEM, "out of memory");
        for (int r = 0; out && r < n; r++) {
            uint32_t l32, rank = (uint32_t)r;
            memcpy(&l32, all + (size_t)r * DESC_SLOT, 4);
            memcpy(p, &rank, 4);
            memcpy(p + 4, &l32, 4);
            memcpy(p + 8, all + (size_t)r * DESC_SLOT + 4, l32);
            p += 8 + l32;
        }
        if (out) {
            struct wd_engine_event ev = {.kind = WD_ENGINE_EV_DESCRIPTORS,
                                         .bytes = (uint32_t)(sizeof(ev) + total),
                                         .dp_rank = e->me->attn_dp_rank,
                                         .token = -1,
                                         .extra = (int32_t)total};
            wd_engine_push_event(e, &ev, out, total);
        }
        free(out);
    }
    free(slot);
    free(all);
    return st;
}

enum wd_status wd_engine_pd_create(struct wd_engine *e, struct wd_error *err)
{
    struct wd_engine_pd *pd = calloc(1, sizeof(*pd));
    if (!pd)
        return wd_error_set(err, WD_ERR_NOMEM, "kv transfer: out of memory");
    e->pd = pd;
    int R = e->cfg.sched.max_running_requests;
    pd->done = calloc((size_t)R, sizeof(*pd->done));
    pd->done_cap = R;
    pd->tok_begin = calloc((size_t)R, sizeof(int32_t));
    pd->tok_end = calloc((size_t)R, sizeof(int32_t));
    if (!pd->done || !pd->tok_begin || !pd->tok_end)
        return wd_error_set(err, WD_ERR_NOMEM, "kv transfer: out of memory");
    WD_CHECK(wd_u64map_init(&pd->reqs, 256, err));
    const struct wd_model_config *mc = &e->model->cfg;
    enum wd_kv_kind kind = mc->arch == WD_ARCH_DEEPSEEK_V3 ? WD_KV_MLA : WD_KV_GQA;
    WD_CHECK(wd_kv_heads_for_rank(kind, mc->n_kv_heads, e->layout->attn_tp_size,
                                  e->me->attn_tp_rank, &pd->heads, err));
    char name[96];
    snprintf(name, sizeof(name), "%s rank %d", e->cfg.role ? e->cfg.role : "engine", e->me->rank);
    struct wd_kv_transfer_config tc = {.region = e->kv->region,
                                       .geo = e->kv->geo,
                                       .heads = pd->heads,
                                       .name = name,
                                       .is_progress_thread = 1};
    WD_CHECK(wd_kv_transfer_create(&tc, &pd->xfer, err));
    return publish_descriptors(e, err);
}

void wd_engine_pd_destroy(struct wd_engine *e)
{
    struct wd_engine_pd *pd = e->pd;
    if (!pd)
        return;
    for (int i = 0; i < pd->n_sets; i++)
        set_clear(&pd->sets[i]);
    free(pd->sets);
    for (size_t i = 0; pd->reqs.slots && i < pd->reqs.cap; i++)
        req_free(pd->reqs.slots[i].value);
    wd_u64map_cleanup(&pd->reqs);
    wd_kv_transfer_destroy(pd->xfer);
    free(pd->done);
    free(pd->tok_begin);
    free(pd->tok_end);
    free(pd);
    e->pd = NULL;
}

/* Connects this rank to the decode ranks of peer set c->pd_peer it writes; a failure is
 * kept in the set's error (the requests that use it fail with it). */
static void connect_set(struct wd_engine_pd *pd, const struct wd_engine_cmd *c,
                        const uint8_t *descs)
{
    if (c->pd_peer >= pd->n_sets) {
        int n = c->pd_peer + 1;
        struct pd_set *bigger = realloc(pd->sets, (size_t)n * sizeof(*bigger));
        if (!bigger)
            return; /* the set stays undefined: its requests are refused */
        memset(bigger + pd->n_sets, 0, (size_t)(n - pd->n_sets) * sizeof(*bigger));
        pd->sets = bigger;
        pd->n_sets = n;
    }
    struct pd_set *set = &pd->sets[c->pd_peer];
    set_clear(set);
    struct wd_error err = {0};
    for (size_t off = 0; off + 8 <= (size_t)c->n_extra;) {
        uint32_t rank, len;
        memcpy(&rank, descs + off, 4);
        memcpy(&len, descs + off + 4, 4);
        if (len > (size_t)c->n_extra - off - 8) {
            snprintf(set->error, sizeof(set->error), "peer set %d: truncated descriptors",
                     c->pd_peer);
            return;
        }
        const uint8_t *blob = descs + off + 8;
        off += 8 + len;
        struct wd_kv_desc d;
        if (wd_kv_desc_parse(blob, len, &d, &err) != WD_OK) {
            snprintf(set->error, sizeof(set->error), "%s", err.msg);
            continue;
        }
        int b, en;
        if (wd_kv_heads_overlap(&pd->heads, &d.heads, &b, &en) == 0)
            continue; /* another rank of this group writes that one */
        char name[64];
        snprintf(name, sizeof(name), "decode set %d rank %u", c->pd_peer, rank);
        struct wd_kv_peer *peer = NULL;
        if (wd_kv_transfer_connect(pd->xfer, blob, len, name, &peer, &err) != WD_OK) {
            snprintf(set->error, sizeof(set->error), "%s", err.msg);
            wd_log(WD_LOG_ERROR, "pd", "%s", err.msg);
            continue;
        }
        struct wd_kv_peer **grown = realloc(set->peers, (size_t)(set->n + 1) * sizeof(*grown));
        if (!grown) {
            wd_kv_transfer_disconnect(peer);
            snprintf(set->error, sizeof(set->error), "out of memory");
            continue;
        }
        set->peers = grown;
        set->peers[set->n++] = peer;
    }
}

void wd_engine_pd_define_peer(struct wd_engine *e, const struct wd_engine_cmd *c,
                              const uint8_t *descs)
{
    struct wd_engine_pd *pd = e->pd;
    if (!pd)
        return;
    connect_set(pd, c, descs);
    /* Every rank of the group applies PD_PEER in the same step (the commands are broadcast),
     * and connect wires its endpoints up before it returns (a flush, not the first put), so
     * after one vote the set is ready on all of them: the leader says so, for the front-end's
     * pair-setup time. */
    float failed = c->pd_peer >= pd->n_sets || pd->sets[c->pd_peer].error[0] ? 1.0f : 0.0f;
    struct wd_error err = {0};
    enum wd_status st = WD_OK;
    if (e->layout->attn_tp_size > 1)
        st = wd_coll_all_reduce_f32(e->groups->attn_tp->coll, &failed, 1, e->timeout_ms, &err);
    if (st != WD_OK)
        wd_log(WD_LOG_ERROR, "pd", "peer set %d: vote: %s", c->pd_peer, err.msg);
    if (!e->is_leader)
        return;
    struct wd_engine_event ev = {.kind = WD_ENGINE_EV_PEER_READY,
                                 .bytes = sizeof(ev),
                                 .dp_rank = e->me->attn_dp_rank,
                                 .token = -1,
                                 .status = st != WD_OK  ? st
                                           : failed > 0 ? WD_ERR_PEER
                                                        : WD_OK,
                                 .pd_peer = c->pd_peer};
    wd_engine_push_event(e, &ev, NULL, 0);
}

enum wd_status wd_engine_pd_track(struct wd_engine *e, uint64_t id, int32_t peer,
                                  const int32_t *pages, int n_pages, struct wd_error *err)
{
    struct wd_engine_pd *pd = e->pd;
    if (!pd)
        return wd_error_set(err, WD_ERR_UNSUPPORTED, "this engine does not transfer KV");
    if (peer >= pd->n_sets)
        return wd_error_set(err, WD_ERR_INVALID, "transfer to peer set %d, which is not defined",
                            peer);
    struct pd_req *r = calloc(1, sizeof(*r));
    if (r)
        r->remote = malloc((size_t)n_pages * sizeof(int32_t));
    if (!r || !r->remote || wd_u64map_put(&pd->reqs, id, r) != WD_OK) {
        req_free(r);
        return wd_error_set(err, WD_ERR_NOMEM, "out of memory");
    }
    r->id = id;
    r->peer = peer;
    r->n_remote = n_pages;
    memcpy(r->remote, pages, (size_t)n_pages * sizeof(int32_t));
    if (pd->sets[peer].error[0])
        snprintf(r->error, sizeof(r->error), "%s", pd->sets[peer].error);
    return WD_OK;
}

int wd_engine_pd_is_tracked(const struct wd_engine *e, uint64_t id)
{
    return e->pd && wd_u64map_get(&e->pd->reqs, id) != NULL;
}

void wd_engine_pd_forget(struct wd_engine *e, uint64_t id)
{
    if (e->pd)
        req_free(wd_u64map_remove(&e->pd->reqs, id));
}

/* Waits for every put of r; returns 0 or -1 with r->error set. */
static int flush_req(struct wd_engine_pd *pd, struct pd_req *r)
{
    const struct pd_set *set = &pd->sets[r->peer];
    struct wd_error err = {0};
    for (int i = 0; i < set->n; i++)
        if (wd_kv_transfer_flush(set->peers[i], FLUSH_TIMEOUT_MS, &err) != WD_OK && !r->error[0])
            snprintf(r->error, sizeof(r->error), "%s", err.msg);
    return r->error[0] ? -1 : 0;
}

void wd_engine_pd_before_free(struct wd_engine *e, uint64_t id)
{
    struct pd_req *r = e->pd ? wd_u64map_get(&e->pd->reqs, id) : NULL;
    if (r && r->t_first_us)
        flush_req(e->pd, r);
}

void wd_engine_pd_layer_hook(void *ctx, int layer, const struct wd_forward_batch *b)
{
    struct wd_engine *e = ctx;
    struct wd_engine_pd *pd = e->pd;
    if (!pd || pd->reqs.n == 0 || !b->seq_ids)
        return;
    if (layer == 0) {
        /* This forward's tokens of each sequence: a prompt chunk ends at its n_ctx. */
        for (int s = 0; s < b->n_seqs; s++)
            pd->tok_begin[s] = b->seqs[s].n_ctx, pd->tok_end[s] = b->seqs[s].n_ctx;
        for (int64_t t = 0; t < b->n_tokens; t++)
            if (b->tok_pos[t] < pd->tok_begin[b->tok_seq[t]])
                pd->tok_begin[b->tok_seq[t]] = b->tok_pos[t];
    }
    int64_t now = wd_now_us();
    struct wd_error err = {0};
    for (int s = 0; s < b->n_seqs; s++) {
        struct pd_req *r = wd_u64map_get(&pd->reqs, b->seq_ids[s]);
        if (!r || r->error[0])
            continue;
        const struct pd_set *set = &pd->sets[r->peer];
        int page_size = e->kv->cfg.page_size;
        int n_pages = (pd->tok_end[s] + page_size - 1) / page_size;
        if (n_pages > r->n_remote) {
            snprintf(r->error, sizeof(r->error), "the decode side reserved %d pages, %d needed",
                     r->n_remote, n_pages);
            continue;
        }
        struct wd_kv_span span = {.local_pages = b->seqs[s].page_table,
                                  .remote_pages = r->remote,
                                  .n_pages = n_pages,
                                  .tok_begin = pd->tok_begin[s],
                                  .tok_end = pd->tok_end[s]};
        if (!r->t_first_us)
            r->t_first_us = now;
        for (int i = 0; i < set->n; i++) {
            struct wd_kv_peer_stats before, after;
            wd_kv_transfer_peer_stats(set->peers[i], &before);
            if (wd_kv_transfer_put(set->peers[i], &span, layer, &err) != WD_OK) {
                snprintf(r->error, sizeof(r->error), "%s", err.msg);
                break;
            }
            wd_kv_transfer_peer_stats(set->peers[i], &after);
            r->bytes += after.n_bytes - before.n_bytes;
        }
    }
}

int wd_engine_pd_defer(struct wd_engine *e, const struct wd_request *req, int32_t token,
                       float logprob)
{
    struct wd_engine_pd *pd = e->pd;
    if (!pd || req->state != WD_REQ_PREFILLED || !wd_u64map_get(&pd->reqs, req->id))
        return 0;
    WD_ASSERT(pd->n_done < pd->done_cap);
    pd->done[pd->n_done++] = (struct pd_done){.req = req, .token = token, .logprob = logprob};
    return 1;
}

enum wd_status wd_engine_pd_after_step(struct wd_engine *e, struct wd_error *err)
{
    struct wd_engine_pd *pd = e->pd;
    if (!pd || pd->n_done == 0)
        return WD_OK;
    /* Every rank flushes its own peers; one vote per request over the group (the list is
     * the same on every rank: they run the same scheduler). */
    /* [failed, bytes] per request, summed over the group (bytes as a float: telemetry). */
    float *vote = calloc(2 * (size_t)pd->n_done, sizeof(float));
    if (!vote)
        return wd_error_set(err, WD_ERR_NOMEM, "out of memory");
    for (int i = 0; i < pd->n_done; i++) {
        struct pd_req *r = wd_u64map_get(&pd->reqs, pd->done[i].req->id);
        vote[2 * i] = flush_req(pd, r) != 0 ? 1.0f : 0.0f;
        vote[2 * i + 1] = (float)r->bytes;
    }
    enum wd_status st = WD_OK;
    if (e->layout->attn_tp_size > 1)
        st = wd_coll_all_reduce_f32(e->groups->attn_tp->coll, vote, 2 * (size_t)pd->n_done,
                                    e->timeout_ms, err);
    int64_t now = wd_now_us();
    for (int i = 0; st == WD_OK && i < pd->n_done; i++) {
        const struct wd_request *req = pd->done[i].req;
        uint64_t id = req->id;
        struct pd_req *r = wd_u64map_get(&pd->reqs, id);
        if (vote[2 * i] > 0) {
            wd_engine_event_error(e, id, WD_ERR_PEER,
                                  r->error[0] ? r->error
                                              : "the KV transfer failed on another rank");
            wd_scheduler_release(e->sched, id);
            wd_engine_pd_forget(e, id);
            continue;
        }
        if (e->is_leader) {
            struct wd_engine_event ev;
            wd_engine_token_event(e, req, pd->done[i].token, pd->done[i].logprob, &ev);
            ev.kv_bytes = (uint64_t)vote[2 * i + 1];
            int64_t us = r->t_first_us ? now - r->t_first_us : 0;
            ev.transfer_us = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
            wd_engine_push_event(e, &ev, NULL, 0);
        }
    }
    pd->n_done = 0;
    free(vote);
    return st;
}

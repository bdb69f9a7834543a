/*
 * KV transfer puts and flushes (the object and its peers are in kv_transfer.c).
 *
 * Puts are fire-and-forget for the caller but not for us: each put that UCX queues carries
 * a completion callback that counts it out of the peer's in-flight number and records a
 * failure, so an error of a single put (a transport without peer-failure handling) is not
 * lost, and a put waits for room once MAX_INFLIGHT are queued (UCX would otherwise hold a
 * request per put for a whole prompt: millions with sliced heads). Flushes are tickets: a
 * ucp_ep_flush_nbx per ticket, polled; ticket T done means every put issued before T is
 * complete at the target (UCX's definition of an endpoint flush), and since that covers
 * every earlier ticket too, "done up to" is a maximum.
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "common/net/kv_transfer.h"
#include "common/net/kv_transfer_internal.h"

#define MAX_INFLIGHT 4096 /* queued put requests per peer before a put waits */

static void put_done(void *request, ucs_status_t status, void *user_data)
{
    struct wd_kv_peer *p = user_data;
    p->n_inflight--;
    if (status != UCS_OK)
        wd_kv_peer_mark_failed(p, status);
    ucp_request_free(request);
}

static void staged_put_done(void *request, ucs_status_t status, void *user_data)
{
    struct wd_kv_peer *p = user_data;
    p->n_stage_inflight--;
    put_done(request, status, user_data);
}

/* Issues an endpoint flush as ticket ++flush_issued (lock held). */
enum wd_status wd_kv_peer_flush_issue(struct wd_kv_peer *p, uint64_t *ticket_p,
                                      struct wd_error *err)
{
    WD_CHECK(wd_kv_peer_check(p, err));
    if (p->n_flushes == p->cap_flushes) {
        int cap = p->cap_flushes ? 2 * p->cap_flushes : 8;
        struct flush_req *f = realloc(p->flushes, sizeof(*f) * (size_t)cap);
        if (!f)
            return wd_error_set(err, WD_ERR_NOMEM, "%s: out of memory", p->t->scope);
        p->flushes = f;
        p->cap_flushes = cap;
    }
    ucp_request_param_t prm = {0};
    ucs_status_ptr_t r = ucp_ep_flush_nbx(p->ep, &prm);
    uint64_t ticket = ++p->flush_issued;
    if (UCS_PTR_IS_ERR(r)) {
        wd_kv_peer_mark_failed(p, UCS_PTR_STATUS(r));
        return wd_kv_peer_check(p, err);
    }
    if (r)
        p->flushes[p->n_flushes++] = (struct flush_req){.req = r, .ticket = ticket};
    else if (ticket > p->flush_done)
        p->flush_done = ticket;
    *ticket_p = ticket;
    return WD_OK;
}

/* Progresses once and retires completed flushes (lock held). */
static void flush_poll(struct wd_kv_peer *p)
{
    ucp_worker_progress(p->t->u->worker);
    for (int i = 0; i < p->n_flushes;) {
        struct flush_req *f = &p->flushes[i];
        ucs_status_t s = ucp_request_check_status(f->req);
        if (s == UCS_INPROGRESS) {
            i++;
            continue;
        }
        ucp_request_free(f->req);
        if (s != UCS_OK)
            wd_kv_peer_mark_failed(p, s);
        else if (f->ticket > p->flush_done)
            p->flush_done = f->ticket;
        p->flushes[i] = p->flushes[--p->n_flushes];
    }
}

/* Until ticket is done, the peer fails or timeout_ms passes (lock held). */
enum wd_status wd_kv_peer_flush_wait(struct wd_kv_peer *p, uint64_t ticket, int timeout_ms,
                                     struct wd_error *err)
{
    int64_t deadline = wd_kv_now_ms() + timeout_ms;
    for (unsigned iter = 0;; iter++) {
        flush_poll(p);
        if (p->flush_done >= ticket)
            return WD_OK;
        if (iter % 64 != 63)
            continue;
        WD_CHECK(wd_kv_peer_check(p, err));
        if (wd_kv_now_ms() >= deadline)
            return wd_error_set(err, WD_ERR_TIMEOUT,
                                "%s: flush to %s not done within %d ms (is it progressing?)",
                                p->t->scope, p->name, timeout_ms);
        sched_yield();
    }
}

/* Progresses until *count (queued puts, or those reading the stage) is at most target
 * (lock held). */
static enum wd_status drain(struct wd_kv_peer *p, const int *count, int target,
                            struct wd_error *err)
{
    int64_t deadline = wd_kv_now_ms() + p->t->op_timeout_ms;
    for (unsigned iter = 0; *count > target; iter++) {
        ucp_worker_progress(p->t->u->worker);
        if (iter % 64 != 63)
            continue;
        WD_CHECK(wd_kv_peer_check(p, err));
        if (wd_kv_now_ms() >= deadline)
            return wd_error_set(err, WD_ERR_TIMEOUT, "%s: %d puts to %s still queued after %d ms",
                                p->t->scope, p->n_inflight, p->name, p->t->op_timeout_ms);
    }
    return WD_OK;
}

static enum wd_status put_bytes(struct wd_kv_peer *p, const uint8_t *src, uint64_t dst, size_t len,
                                int is_staged, struct wd_error *err)
{
    ucp_request_param_t prm = {.op_attr_mask =
                                   UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
                               .cb.send = is_staged ? staged_put_done : put_done,
                               .user_data = p};
    ucs_status_ptr_t r = ucp_put_nbx(p->ep, src, len, dst, p->rkey, &prm);
    if (UCS_PTR_IS_ERR(r)) {
        wd_kv_peer_mark_failed(p, UCS_PTR_STATUS(r));
        return wd_kv_peer_check(p, err);
    }
    p->stats.n_puts++;
    p->stats.n_bytes += len;
    if (r != NULL && is_staged)
        p->n_stage_inflight++;
    if (r != NULL && ++p->n_inflight >= MAX_INFLIGHT)
        return drain(p, &p->n_inflight, MAX_INFLIGHT / 2, err);
    return WD_OK;
}

/* One of K or V of one layer: where its rows start on both sides and their strides. */
struct rows {
    const uint8_t *src; /* local layer base */
    uint64_t dst;       /* remote layer base, in the remote's address space */
    size_t lpage, lslot, rpage, rslot;
    size_t head_w;         /* bytes of one head */
    size_t lhead0, rhead0; /* byte offset of the first moved head inside a row */
};

/* The K (is_v 0) or V strides of a geometry. */
struct kv_strides {
    size_t off, layer, page, slot, head;
};

static struct kv_strides strides_of(const struct wd_kv_geometry *g, int is_v)
{
    if (is_v)
        return (struct kv_strides){g->v_offset, g->layer_stride_v, g->page_stride_v,
                                   g->slot_stride_v, g->head_stride_v};
    return (struct kv_strides){g->k_offset, g->layer_stride_k, g->page_stride_k, g->slot_stride_k,
                               g->head_stride_k};
}

static struct rows rows_of(const struct wd_kv_peer *p, int layer, int is_v)
{
    struct kv_strides l = strides_of(&p->t->geo, is_v), r = strides_of(&p->desc.geo, is_v);
    size_t lh = (size_t)(p->h0 - p->t->heads.begin), rh = (size_t)(p->h0 - p->desc.heads.begin);
    return (struct rows){.src = (const uint8_t *)p->t->region + l.off + (size_t)layer * l.layer,
                         .dst = p->desc.base + r.off + (uint64_t)layer * r.layer,
                         .lpage = l.page,
                         .lslot = l.slot,
                         .rpage = r.page,
                         .rslot = r.slot,
                         .head_w = l.head,
                         .lhead0 = lh * l.head,
                         .rhead0 = rh * r.head};
}

/* Packed slices (the remote row is exactly the moved heads): a run of tokens on
 * consecutive remote pages, at most `per` of them, is gathered into the stage and put as
 * one block. The stage is reused once no queued put reads it. */
static enum wd_status put_packed(struct wd_kv_peer *p, const struct rows *r,
                                 const struct wd_kv_span *sp, size_t seg, int per,
                                 struct wd_error *err)
{
    int ps = p->t->geo.page_size;
    const int32_t *lp = sp->local_pages, *rp = sp->remote_pages;
    for (int tok = sp->tok_begin; tok < sp->tok_end;) {
        int end = tok + 1;
        while (end < sp->tok_end && end - tok < per &&
               (end % ps != 0 || rp[end / ps] == rp[end / ps - 1] + 1))
            end++;
        size_t need = (size_t)(end - tok) * seg;
        if (p->stage_used + need > p->stage_bytes) {
            WD_CHECK(drain(p, &p->n_stage_inflight, 0, err));
            p->stage_used = 0;
        }
        uint8_t *buf = p->stage + p->stage_used;
        for (int k = tok; k < end; k++) {
            int i = k / ps, s = k % ps;
            memcpy(buf + (size_t)(k - tok) * seg,
                   r->src + (size_t)lp[i] * r->lpage + (size_t)s * r->lslot + r->lhead0, seg);
        }
        uint64_t dst = r->dst + (uint64_t)rp[tok / ps] * r->rpage + (uint64_t)(tok % ps) * r->rslot;
        WD_CHECK(put_bytes(p, buf, dst, need, 1, err));
        p->stage_used += need;
        tok = end;
    }
    return WD_OK;
}

static enum wd_status put_rows(struct wd_kv_peer *p, const struct rows *r,
                               const struct wd_kv_span *sp, struct wd_error *err)
{
    int ps = p->t->geo.page_size;
    int first = sp->tok_begin / ps, last = (sp->tok_end - 1) / ps;
    const int32_t *lp = sp->local_pages, *rp = sp->remote_pages;
    size_t seg = (size_t)p->n_heads * r->head_w;
    if (p->is_packed && p->stage_bytes / seg > 0)
        return put_packed(p, r, sp, seg, (int)(p->stage_bytes / seg), err);
    if (!p->is_whole) {
        /* Sliced heads: a slot's moved heads are contiguous on both sides, but the next
         * slot's are a row further on at least one side. */
        for (int tok = sp->tok_begin; tok < sp->tok_end; tok++) {
            int i = tok / ps, s = tok % ps;
            const uint8_t *src =
                r->src + (size_t)lp[i] * r->lpage + (size_t)s * r->lslot + r->lhead0;
            uint64_t dst = r->dst + (uint64_t)rp[i] * r->rpage + (uint64_t)s * r->rslot + r->rhead0;
            WD_CHECK(put_bytes(p, src, dst, seg, 0, err));
        }
        return WD_OK;
    }
    /* Whole rows: a run of pages consecutive on both sides is one block of slots. */
    for (int i = first; i <= last;) {
        int j = i;
        while (j < last && lp[j + 1] == lp[j] + 1 && rp[j + 1] == rp[j] + 1)
            j++;
        int s0 = i == first ? sp->tok_begin % ps : 0;
        int s1 = j == last ? (sp->tok_end - 1) % ps + 1 : ps;
        size_t n_slots = (size_t)(j - i) * (size_t)ps + (size_t)(s1 - s0);
        const uint8_t *src = r->src + (size_t)lp[i] * r->lpage + (size_t)s0 * r->lslot;
        uint64_t dst = r->dst + (uint64_t)rp[i] * r->rpage + (uint64_t)s0 * r->rslot;
        WD_CHECK(put_bytes(p, src, dst, n_slots * r->lslot, 0, err));
        i = j + 1;
    }
    return WD_OK;
}

static enum wd_status check_span(const struct wd_kv_peer *p, const struct wd_kv_span *sp, int layer,
                                 struct wd_error *err)
{
    const struct wd_kv_geometry *g = &p->t->geo;
    int64_t cap = (int64_t)sp->n_pages * g->page_size;
    if (layer < 0 || layer >= g->n_layers || sp->n_pages < 0 || sp->tok_begin < 0 ||
        sp->tok_begin > sp->tok_end || sp->tok_end > cap ||
        (sp->n_pages > 0 && (!sp->local_pages || !sp->remote_pages)))
        return wd_error_set(err, WD_ERR_INVALID, "%s -> %s: layer %d, tokens [%d, %d) of %d pages",
                            p->t->scope, p->name, layer, sp->tok_begin, sp->tok_end, sp->n_pages);
    if (sp->tok_begin == sp->tok_end)
        return WD_OK;
    for (int i = sp->tok_begin / g->page_size; i <= (sp->tok_end - 1) / g->page_size; i++) {
        int32_t l = sp->local_pages[i], r = sp->remote_pages[i];
        if (l < 0 || l >= g->n_pages || r < 0 || r >= p->desc.geo.n_pages)
            return wd_error_set(err, WD_ERR_INVALID,
                                "%s -> %s: page %d: local id %d of %d, remote id %d of %d",
                                p->t->scope, p->name, i, l, g->n_pages, r, p->desc.geo.n_pages);
    }
    return WD_OK;
}

enum wd_status wd_kv_transfer_put(struct wd_kv_peer *p, const struct wd_kv_span *span, int layer,
                                  struct wd_error *err)
{
    struct wd_kv_transfer *t = p->t;
    WD_CHECK(check_span(p, span, layer, err));
    pthread_mutex_lock(&t->mu);
    enum wd_status st = wd_kv_peer_check(p, err);
    if (st != WD_OK || p->n_heads == 0 || span->tok_begin == span->tok_end) {
        pthread_mutex_unlock(&t->mu);
        return st;
    }
    if (p->n_stage_inflight == 0)
        p->stage_used = 0;
    struct rows k = rows_of(p, layer, 0);
    st = put_rows(p, &k, span, err);
    if (st == WD_OK && t->geo.v_row > 0) {
        struct rows v = rows_of(p, layer, 1);
        st = put_rows(p, &v, span, err);
    }
    /* Start moving what UCX queued (TCP sends from the progress call). */
    ucp_worker_progress(t->u->worker);
    pthread_mutex_unlock(&t->mu);
    return st;
}

enum wd_status wd_kv_transfer_flush_begin(struct wd_kv_peer *p, uint64_t *ticket_p,
                                          struct wd_error *err)
{
    pthread_mutex_lock(&p->t->mu);
    enum wd_status st = wd_kv_peer_flush_issue(p, ticket_p, err);
    pthread_mutex_unlock(&p->t->mu);
    return st;
}

enum wd_status wd_kv_transfer_flush_test(struct wd_kv_peer *p, uint64_t ticket, int *is_done_p,
                                         struct wd_error *err)
{
    pthread_mutex_lock(&p->t->mu);
    flush_poll(p);
    int is_done = p->flush_done >= ticket;
    /* Data that landed before the peer failed has landed: done wins. */
    enum wd_status st = is_done ? WD_OK : wd_kv_peer_check(p, err);
    pthread_mutex_unlock(&p->t->mu);
    if (st == WD_OK)
        *is_done_p = is_done;
    return st;
}

enum wd_status wd_kv_transfer_flush(struct wd_kv_peer *p, int timeout_ms, struct wd_error *err)
{
    pthread_mutex_lock(&p->t->mu);
    uint64_t ticket;
    enum wd_status st = wd_kv_peer_flush_issue(p, &ticket, err);
    if (st == WD_OK)
        st = wd_kv_peer_flush_wait(p, ticket, timeout_ms, err);
    pthread_mutex_unlock(&p->t->mu);
    return st;
}

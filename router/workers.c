/* Worker registry: fixed slots with generations, linear scans (at most WD_WORKERS_MAX). */
#include "router/workers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/net/msg.h"

struct wd_workers {
    struct wd_worker slot[WD_WORKERS_MAX];
};

enum wd_status wd_workers_create(struct wd_workers **w_p, struct wd_error *err)
{
    struct wd_workers *w = calloc(1, sizeof(*w));
    if (!w)
        return wd_error_set(err, WD_ERR_NOMEM, "workers: out of memory");
    *w_p = w;
    return WD_OK;
}

void wd_workers_destroy(struct wd_workers *w)
{
    if (!w)
        return;
    for (int i = 0; i < WD_WORKERS_MAX; i++)
        free(w->slot[i].ranks);
    free(w);
}

static void kv_layout_str(const struct wd_worker_kv *kv, char *out, size_t cap)
{
    if (kv->kind == WD_MSG_KV_MLA)
        snprintf(out, cap, "MLA %d layers x latent %d", kv->n_layers, kv->k_head_dim);
    else
        snprintf(out, cap, "GQA %d layers x %d KV heads x K %d / V %d", kv->n_layers,
                 kv->n_kv_heads, kv->k_head_dim, kv->v_head_dim);
}

/* Writes how b differs from a into why (a's worker is "the new worker"); 0 when they match. */
static int kv_differs(int page_a, const struct wd_worker_kv *a, const struct wd_worker *b,
                      char *why, size_t cap)
{
    const char *what = wd_worker_role_name(b->role);
    if (page_a != b->page_size) {
        snprintf(why, cap, "page_size %d differs from %s worker %s's %d", page_a, what, b->name,
                 b->page_size);
        return 1;
    }
    if (strcmp(a->dtype, b->kv.dtype) != 0) {
        snprintf(why, cap, "kv_dtype %s differs from %s worker %s's %s", a->dtype, what, b->name,
                 b->kv.dtype);
        return 1;
    }
    if (a->kind != b->kv.kind || a->n_layers != b->kv.n_layers ||
        a->n_kv_heads != b->kv.n_kv_heads || a->k_head_dim != b->kv.k_head_dim ||
        a->v_head_dim != b->kv.v_head_dim) {
        char la[96], lb[96];
        kv_layout_str(a, la, sizeof(la));
        kv_layout_str(&b->kv, lb, sizeof(lb));
        snprintf(why, cap, "KV layout %s differs from %s worker %s's %s", la, what, b->name, lb);
        return 1;
    }
    return 0;
}

int wd_workers_kv_conflict(const struct wd_workers *w, enum wd_worker_role role, const char *name,
                           int page_size, const struct wd_worker_kv *kv, char *why, size_t cap)
{
    for (int s = 0; s < WD_WORKERS_MAX; s++) {
        const struct wd_worker *b = &w->slot[s];
        if (!b->is_used || strcmp(b->name, name) == 0)
            continue;
        /* Decode workers pair only with prefill workers; prefill workers with any decode
         * worker, and every prefill worker with the same decode workers. */
        if (role == WD_WORKER_DECODE && b->role == WD_WORKER_DECODE)
            continue;
        if (kv_differs(page_size, kv, b, why, cap))
            return s;
    }
    return -1;
}

int wd_workers_find_instance(const struct wd_workers *w, const char *name)
{
    for (int i = 0; i < WD_WORKERS_MAX; i++)
        if (w->slot[i].is_used && strcmp(w->slot[i].name, name) == 0)
            return i;
    return -1;
}

enum wd_status wd_workers_add(struct wd_workers *w, const struct wd_worker_info *info, double now,
                              int *slot_p, struct wd_error *err)
{
    if (info->n_dp < 1 || info->n_dp > WD_WORKER_MAX_DP)
        return wd_error_set(err, WD_ERR_INVALID, "worker: %d DP ranks (allowed 1..%d)", info->n_dp,
                            WD_WORKER_MAX_DP);
    if (info->route_id_len == 0 || info->route_id_len > WD_WORKER_ID_MAX)
        return wd_error_set(err, WD_ERR_INVALID, "worker: routing id of %zu bytes",
                            info->route_id_len);
    if (!info->name || !info->name[0] || strlen(info->name) >= WD_WORKER_NAME_MAX)
        return wd_error_set(err, WD_ERR_INVALID, "worker: instance id empty or too long");
    int s = wd_workers_find_instance(w, info->name);
    if (s >= 0)
        wd_workers_remove(w, s);
    for (s = 0; s < WD_WORKERS_MAX && w->slot[s].is_used; s++)
        ;
    if (s == WD_WORKERS_MAX)
        return wd_error_set(err, WD_ERR_NOMEM, "worker: registry full (%d workers)",
                            WD_WORKERS_MAX);
    struct wd_worker_rank *ranks = calloc((size_t)info->n_dp, sizeof(*ranks));
    if (!ranks)
        return wd_error_set(err, WD_ERR_NOMEM, "worker: out of memory");
    struct wd_worker *wk = &w->slot[s];
    uint32_t gen = wk->gen + 1;
    memset(wk, 0, sizeof(*wk));
    wk->is_used = 1;
    wk->gen = gen;
    wk->role = info->role;
    snprintf(wk->name, sizeof(wk->name), "%s", info->name);
    memcpy(wk->route_id, info->route_id, info->route_id_len);
    wk->route_id_len = info->route_id_len;
    wk->n_dp = info->n_dp;
    wk->page_size = info->page_size > 0 ? info->page_size : 1;
    wk->pages_per_rank = info->pages_per_rank;
    if (info->kv)
        wk->kv = *info->kv;
    if (info->bootstrap)
        snprintf(wk->bootstrap, sizeof(wk->bootstrap), "%s", info->bootstrap);
    wk->ranks = ranks;
    for (int r = 0; r < info->n_dp; r++)
        ranks[r].free_pages = info->pages_per_rank;
    wk->registered_at = wk->last_seen = now;
    *slot_p = s;
    return WD_OK;
}

void wd_workers_remove(struct wd_workers *w, int slot)
{
    WD_ASSERT(slot >= 0 && slot < WD_WORKERS_MAX);
    struct wd_worker *wk = &w->slot[slot];
    free(wk->ranks);
    wk->ranks = NULL;
    wk->is_used = 0;
}

struct wd_worker *wd_workers_at(struct wd_workers *w, int slot)
{
    if (slot < 0 || slot >= WD_WORKERS_MAX || !w->slot[slot].is_used)
        return NULL;
    return &w->slot[slot];
}

const struct wd_worker *wd_workers_at_const(const struct wd_workers *w, int slot)
{
    if (slot < 0 || slot >= WD_WORKERS_MAX || !w->slot[slot].is_used)
        return NULL;
    return &w->slot[slot];
}

struct wd_worker_ref wd_workers_ref(const struct wd_workers *w, int slot)
{
    struct wd_worker_ref ref = {-1, 0};
    if (wd_workers_at_const(w, slot)) {
        ref.slot = slot;
        ref.gen = w->slot[slot].gen;
    }
    return ref;
}

struct wd_worker *wd_workers_get(struct wd_workers *w, struct wd_worker_ref ref)
{
    struct wd_worker *wk = wd_workers_at(w, ref.slot);
    return wk && wk->gen == ref.gen ? wk : NULL;
}

int wd_workers_count(const struct wd_workers *w, enum wd_worker_role role)
{
    int n = 0;
    for (int i = 0; i < WD_WORKERS_MAX; i++)
        n += w->slot[i].is_used && w->slot[i].role == role;
    return n;
}

void wd_workers_pool_load(const struct wd_workers *w, enum wd_worker_role role,
                          struct wd_pool_load *load_p)
{
    struct wd_pool_load l = {0};
    for (int i = 0; i < WD_WORKERS_MAX; i++) {
        const struct wd_worker *wk = &w->slot[i];
        if (!wk->is_used || wk->role != role)
            continue;
        l.n_workers++;
        l.n_dp_ranks += wk->n_dp;
        for (int d = 0; d < wk->n_dp; d++) {
            const struct wd_worker_rank *r = &wk->ranks[d];
            l.running += r->running;
            l.waiting += r->waiting;
            l.queued_prefill_tokens += r->queued_prefill_tokens;
            if (wk->pages_per_rank > 0) {
                int64_t free = wd_worker_rank_free_pages(r);
                l.kv_free_pages += free < 0                    ? 0
                                   : free > wk->pages_per_rank ? wk->pages_per_rank
                                                               : free;
                l.kv_total_pages += wk->pages_per_rank;
            }
        }
    }
    *load_p = l;
}

double wd_pool_kv_usage(const struct wd_pool_load *load)
{
    if (load->kv_total_pages <= 0)
        return 0.0;
    return 1.0 - (double)load->kv_free_pages / (double)load->kv_total_pages;
}

void wd_workers_heartbeat(struct wd_workers *w, int slot, int rank, int64_t free_pages, int running,
                          int waiting, int64_t queued_prefill_tokens, double now)
{
    struct wd_worker *wk = wd_workers_at(w, slot);
    if (!wk || rank < 0 || rank >= wk->n_dp)
        return;
    struct wd_worker_rank *r = &wk->ranks[rank];
    r->free_pages = free_pages;
    r->running = running;
    r->waiting = waiting;
    r->queued_prefill_tokens = queued_prefill_tokens;
    r->pages_placed = 0;
    wk->last_seen = now;
}

void wd_workers_touch(struct wd_workers *w, int slot, const unsigned char *route_id, size_t len,
                      double now)
{
    struct wd_worker *wk = wd_workers_at(w, slot);
    if (!wk)
        return;
    wk->last_seen = now;
    /* A DEALER that reconnected (network blip) comes back under a new routing id. */
    if (route_id && len > 0 && len <= WD_WORKER_ID_MAX &&
        (len != wk->route_id_len || memcmp(route_id, wk->route_id, len) != 0)) {
        memcpy(wk->route_id, route_id, len);
        wk->route_id_len = len;
    }
}

void wd_workers_placed(struct wd_workers *w, int slot, int rank, int64_t pages)
{
    struct wd_worker *wk = wd_workers_at(w, slot);
    if (!wk || rank < 0 || rank >= wk->n_dp)
        return;
    wk->ranks[rank].inflight++;
    wk->ranks[rank].pages_placed += pages;
    wk->inflight++;
    wk->n_routed++;
}

void wd_workers_left(struct wd_workers *w, int slot, int rank)
{
    struct wd_worker *wk = wd_workers_at(w, slot);
    if (!wk || rank < 0 || rank >= wk->n_dp)
        return;
    if (wk->ranks[rank].inflight > 0)
        wk->ranks[rank].inflight--;
    if (wk->inflight > 0)
        wk->inflight--;
}

void wd_workers_success(struct wd_workers *w, int slot)
{
    struct wd_worker *wk = wd_workers_at(w, slot);
    if (wk)
        wk->consecutive_failures = 0;
}

int wd_workers_failure(struct wd_workers *w, int slot, int fail_threshold, double cooloff_secs,
                       double now)
{
    struct wd_worker *wk = wd_workers_at(w, slot);
    if (!wk)
        return 0;
    wk->n_failed++;
    if (++wk->consecutive_failures < fail_threshold)
        return 0;
    wk->consecutive_failures = 0;
    wk->cooled_until = now + cooloff_secs;
    return 1;
}

int wd_worker_is_eligible(const struct wd_worker *wk, double now)
{
    return wk && wk->is_used && !wk->is_draining && now >= wk->cooled_until;
}

int64_t wd_worker_rank_load(const struct wd_worker_rank *r)
{
    int64_t reported = (int64_t)r->running + r->waiting;
    return r->inflight > reported ? r->inflight : reported;
}

int64_t wd_worker_rank_free_pages(const struct wd_worker_rank *r)
{
    return r->free_pages - r->pages_placed;
}

const char *wd_worker_role_name(enum wd_worker_role role)
{
    return role == WD_WORKER_PREFILL ? "prefill" : "decode";
}

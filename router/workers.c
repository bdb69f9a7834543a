/* Worker registry: fixed slots with generations, linear scans (at most WD_WORKERS_MAX). */
#include "router/workers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

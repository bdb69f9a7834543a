/* Routing policies over the registry's (worker, DP rank) targets. */
#include "router/policy.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/sampling.h"
#include "router/prefix_index.h"

#define MAX_TARGETS (WD_WORKERS_MAX * WD_WORKER_MAX_DP)

static const char *const kind_names[] = {"round_robin", "random", "power_of_two", "least_load",
                                         "cache_aware"};

struct wd_policy {
    enum wd_policy_kind kind;
    struct wd_policy_tuning t;
    uint64_t rng[4];
    uint64_t cursor;               /* round_robin position, least_load tie spreading */
    struct wd_policy_pick *cand;   /* [MAX_TARGETS] scratch */
    struct wd_prefix_index *index; /* cache_aware only */
};

void wd_policy_tuning_defaults(struct wd_policy_tuning *t)
{
    /* SGLang router's defaults for the cache-aware thresholds. */
    t->cache_threshold = 0.3;
    t->balance_abs_threshold = 64;
    t->balance_rel_threshold = 1.5;
    t->block_tokens = 16;
    t->max_entries = 1 << 20;
}

int wd_policy_kind_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof(kind_names) / sizeof(kind_names[0])); i++)
        if (strcmp(name, kind_names[i]) == 0)
            return i;
    return -1;
}

const char *wd_policy_kind_name(enum wd_policy_kind kind)
{
    return kind_names[kind];
}

enum wd_status wd_policy_create(enum wd_policy_kind kind, const struct wd_policy_tuning *tuning,
                                uint64_t seed, struct wd_policy **p_p, struct wd_error *err)
{
    struct wd_policy *p = calloc(1, sizeof(*p));
    if (!p)
        return wd_error_set(err, WD_ERR_NOMEM, "policy: out of memory");
    p->kind = kind;
    p->t = *tuning;
    wd_rng_seed(p->rng, seed);
    p->cand = calloc(MAX_TARGETS, sizeof(*p->cand));
    if (!p->cand) {
        free(p);
        return wd_error_set(err, WD_ERR_NOMEM, "policy: out of memory");
    }
    if (kind == WD_POLICY_CACHE_AWARE) {
        enum wd_status st =
            wd_prefix_index_create(tuning->block_tokens, tuning->max_entries, &p->index, err);
        if (st != WD_OK) {
            wd_policy_destroy(p);
            return st;
        }
    }
    *p_p = p;
    return WD_OK;
}

void wd_policy_destroy(struct wd_policy *p)
{
    if (!p)
        return;
    wd_prefix_index_destroy(p->index);
    free(p->cand);
    free(p);
}

static struct wd_worker_rank *rank_of(struct wd_workers *w, struct wd_policy_pick c)
{
    return &wd_workers_at(w, c.slot)->ranks[c.rank];
}

static int64_t load_of(struct wd_workers *w, struct wd_policy_pick c)
{
    return wd_worker_rank_load(rank_of(w, c));
}

/* Eligible targets in (slot, rank) order; those with room for the request when any has. */
static int candidates(struct wd_policy *p, struct wd_workers *w, enum wd_worker_role role,
                      const struct wd_route_ctx *ctx, double now)
{
    int n = 0, n_room = 0;
    for (int s = 0; s < WD_WORKERS_MAX; s++) {
        struct wd_worker *wk = wd_workers_at(w, s);
        if (!wk || wk->role != role || !wd_worker_is_eligible(wk, now))
            continue;
        if (ctx->exclude.slot == s && ctx->exclude.gen == wk->gen)
            continue;
        int64_t pages = ((int64_t)ctx->n_tokens + wk->page_size - 1) / wk->page_size;
        for (int r = 0; r < wk->n_dp; r++) {
            struct wd_policy_pick c = {s, r};
            /* pages_per_rank 0: the worker does not report memory; never filter it out. */
            int has_room =
                wk->pages_per_rank <= 0 || wd_worker_rank_free_pages(&wk->ranks[r]) >= pages;
            if (has_room) {
                /* Keep rooms first, in order: swap the first roomless entry behind them. */
                p->cand[n] = p->cand[n_room];
                p->cand[n_room++] = c;
            } else {
                p->cand[n] = c;
            }
            n++;
        }
    }
    return n_room > 0 ? n_room : n;
}

static int least_loaded(struct wd_policy *p, struct wd_workers *w, int n)
{
    /* Start at a moving offset so equal loads take turns instead of piling on slot 0. */
    int start = (int)(p->cursor++ % (uint64_t)n), best = start;
    int64_t best_load = load_of(w, p->cand[start]);
    for (int k = 1; k < n; k++) {
        int i = (start + k) % n;
        int64_t l = load_of(w, p->cand[i]);
        if (l < best_load) {
            best = i;
            best_load = l;
        }
    }
    return best;
}

static uint64_t target_key(struct wd_workers *w, struct wd_policy_pick c)
{
    const struct wd_worker *wk = wd_workers_at(w, c.slot);
    return ((uint64_t)wk->gen << 32) | ((uint64_t)c.slot << 16) | (uint64_t)c.rank;
}

static int cache_aware(struct wd_policy *p, struct wd_workers *w, int n,
                       const struct wd_route_ctx *ctx)
{
    uint64_t hashes[WD_PREFIX_MAX_BLOCKS];
    int n_blocks = wd_prefix_index_hash(p->index, ctx->ids, ctx->n_ids, hashes);
    int64_t min_load = INT64_MAX, max_load = 0;
    for (int i = 0; i < n; i++) {
        int64_t l = load_of(w, p->cand[i]);
        min_load = l < min_load ? l : min_load;
        max_load = l > max_load ? l : max_load;
    }
    int imbalanced = max_load - min_load > p->t.balance_abs_threshold &&
                     (double)max_load > p->t.balance_rel_threshold * (double)min_load;
    int pick = -1;
    if (!imbalanced && n_blocks > 0) {
        int best_match = 0;
        for (int i = 0; i < n; i++) {
            int m = wd_prefix_index_match(p->index, hashes, n_blocks, target_key(w, p->cand[i]));
            if (m > best_match ||
                (m == best_match && m > 0 && load_of(w, p->cand[i]) < load_of(w, p->cand[pick]))) {
                best_match = m;
                pick = i;
            }
        }
        double share = (double)best_match * wd_prefix_index_block_tokens(p->index) / ctx->n_ids;
        if (share <= p->t.cache_threshold)
            pick = -1;
    }
    if (pick < 0)
        pick = least_loaded(p, w, n);
    wd_prefix_index_insert(p->index, hashes, n_blocks, target_key(w, p->cand[pick]));
    return pick;
}

int wd_policy_pick(struct wd_policy *p, struct wd_workers *w, enum wd_worker_role role,
                   const struct wd_route_ctx *ctx, double now, struct wd_policy_pick *out)
{
    int n = candidates(p, w, role, ctx, now);
    if (n == 0)
        return -1;
    int i = 0;
    switch (p->kind) {
    case WD_POLICY_ROUND_ROBIN:
        i = (int)(p->cursor++ % (uint64_t)n);
        break;
    case WD_POLICY_RANDOM:
        i = (int)(wd_rng_next(p->rng) % (uint64_t)n);
        break;
    case WD_POLICY_POWER_OF_TWO: {
        int a = (int)(wd_rng_next(p->rng) % (uint64_t)n);
        int b = n > 1 ? (a + 1 + (int)(wd_rng_next(p->rng) % (uint64_t)(n - 1))) % n : a;
        i = load_of(w, p->cand[b]) < load_of(w, p->cand[a]) ? b : a;
        break;
    }
    case WD_POLICY_LEAST_LOAD:
        i = least_loaded(p, w, n);
        break;
    case WD_POLICY_CACHE_AWARE:
        i = cache_aware(p, w, n, ctx);
        break;
    }
    *out = p->cand[i];
    return 0;
}

/* Placement of a request on a (prefill, decode) pair or on a decode worker alone. */
#include "router/pd_route.h"

#include <stdlib.h>

struct wd_pd_route {
    struct wd_policy *local, *prefill, *decode;
    int min_prefill_tokens;
};

static const char *const mode_names[WD_PD_N_MODES] = {"no_prefill", "short_prompt",
                                                      "disaggregated"};

const char *wd_pd_mode_name(enum wd_pd_mode mode)
{
    return mode >= 0 && mode < WD_PD_N_MODES ? mode_names[mode] : "unknown";
}

enum wd_status wd_pd_route_create(const struct wd_pd_route_config *cfg, struct wd_pd_route **pr_p,
                                  struct wd_error *err)
{
    /* The flag table checks the names; this guards the library's other callers. */
    if (cfg->prefill_kind == WD_POLICY_LEAST_LOAD)
        return wd_error_set(err, WD_ERR_INVALID, "--prefill-policy %s: choose one of %s",
                            wd_policy_kind_name(cfg->prefill_kind), WD_PD_PREFILL_POLICY_CHOICES);
    if (cfg->decode_kind != WD_POLICY_LEAST_LOAD && cfg->decode_kind != WD_POLICY_POWER_OF_TWO &&
        cfg->decode_kind != WD_POLICY_ROUND_ROBIN)
        return wd_error_set(err, WD_ERR_INVALID, "--decode-policy %s: choose one of %s",
                            wd_policy_kind_name(cfg->decode_kind), WD_PD_DECODE_POLICY_CHOICES);
    struct wd_pd_route *pr = calloc(1, sizeof(*pr));
    if (!pr)
        return wd_error_set(err, WD_ERR_NOMEM, "pd route: out of memory");
    pr->min_prefill_tokens = cfg->min_prefill_tokens;
    /* Distinct seeds: random picks of the two roles are not correlated. */
    enum wd_status st = wd_policy_create(cfg->local_kind, &cfg->tuning, cfg->seed, &pr->local, err);
    if (st == WD_OK)
        st = wd_policy_create(cfg->prefill_kind, &cfg->tuning, cfg->seed ^ 0x9e3779b97f4a7c15ull,
                              &pr->prefill, err);
    if (st == WD_OK)
        st = wd_policy_create(cfg->decode_kind, &cfg->tuning, cfg->seed ^ 0xbf58476d1ce4e5b9ull,
                              &pr->decode, err);
    if (st != WD_OK) {
        wd_pd_route_destroy(pr);
        return st;
    }
    *pr_p = pr;
    return WD_OK;
}

void wd_pd_route_destroy(struct wd_pd_route *pr)
{
    if (!pr)
        return;
    wd_policy_destroy(pr->local);
    wd_policy_destroy(pr->prefill);
    wd_policy_destroy(pr->decode);
    free(pr);
}

/* Checked before any policy runs, so that a request that ends up local never moved the
 * prefill or decode policies' state (cursors, cache_aware's prefix index). */
static int any_prefill(struct wd_workers *w, struct wd_worker_ref exclude, double now)
{
    for (int s = 0; s < WD_WORKERS_MAX; s++) {
        const struct wd_worker *wk = wd_workers_at(w, s);
        if (wk && wk->role == WD_WORKER_PREFILL && wd_worker_is_eligible(wk, now) &&
            !(exclude.slot == s && exclude.gen == wk->gen))
            return 1;
    }
    return 0;
}

int wd_pd_route_pick(struct wd_pd_route *pr, struct wd_workers *w, const struct wd_pd_request *req,
                     double now, struct wd_pd_choice *out)
{
    struct wd_route_ctx dc = {.ids = req->ids,
                              .n_ids = req->n_ids,
                              .n_tokens = req->n_ids + req->max_tokens,
                              .exclude = req->exclude_decode};
    enum wd_pd_mode mode = req->n_ids < pr->min_prefill_tokens         ? WD_PD_LOCAL_SHORT
                           : any_prefill(w, req->exclude_prefill, now) ? WD_PD_DISAGGREGATED
                                                                       : WD_PD_LOCAL_NO_PREFILL;
    struct wd_pd_choice c = {.mode = mode, .prefill = {-1, -1}};
    if (mode != WD_PD_DISAGGREGATED) {
        if (wd_policy_pick(pr->local, w, WD_WORKER_DECODE, &dc, now, &c.decode) != 0)
            return -1;
        *out = c;
        return 0;
    }
    /* Decode first: its memory is the hard constraint, and without a decode worker the
     * prefill policy must not count a request that goes nowhere. */
    if (wd_policy_pick(pr->decode, w, WD_WORKER_DECODE, &dc, now, &c.decode) != 0)
        return -1;
    struct wd_route_ctx pc = {.ids = req->ids,
                              .n_ids = req->n_ids,
                              .n_tokens = req->n_ids,
                              .exclude = req->exclude_prefill};
    if (wd_policy_pick(pr->prefill, w, WD_WORKER_PREFILL, &pc, now, &c.prefill) != 0) {
        c.mode = WD_PD_LOCAL_NO_PREFILL; /* any_prefill saw one: cannot happen, stay safe */
        c.prefill.slot = c.prefill.rank = -1;
    }
    *out = c;
    return 0;
}

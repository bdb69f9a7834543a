/*
 * wd_pd_route: how a request is placed once prefill workers may exist. It picks the
 * (prefill P, P's DP rank, decode D, D's DP rank) of a disaggregated request in one call,
 * or the decode worker and rank of a request that is prefilled where it decodes:
 *   - a prompt shorter than min_prefill_tokens, or no eligible prefill worker (none
 *     registered, all draining or cooled off, or the only one just failed this request):
 *     the local policy (--policy) picks a decode worker and rank, as without
 *     disaggregation (a decode worker can always prefill its own requests);
 *   - otherwise the decode policy (--decode-policy) picks D and its rank for prompt +
 *     max_tokens tokens (never a rank that cannot hold them while another can: D reserves
 *     them before P starts), and the prefill policy (--prefill-policy) picks P and its rank
 *     for the prompt's tokens (P holds them until the transfer is flushed), by P's load.
 * Owns its three policies. Not thread-safe: the router's event loop owns it.
 */
#ifndef WD_ROUTER_PD_ROUTE_H
#define WD_ROUTER_PD_ROUTE_H

#include <stdint.h>

#include "common/util/status.h"
#include "router/policy.h"
#include "router/workers.h"

/* The policies each role takes, comma-separated (checked by wd_pd_route_create). */
#define WD_PD_PREFILL_POLICY_CHOICES "round_robin,random,power_of_two,cache_aware"
#define WD_PD_DECODE_POLICY_CHOICES "least_load,power_of_two,round_robin"

struct wd_pd_route_config {
    enum wd_policy_kind local_kind, prefill_kind, decode_kind;
    struct wd_policy_tuning tuning; /* cache_aware thresholds, for local and prefill */
    int min_prefill_tokens;         /* shorter prompts are prefilled on the decode worker */
    uint64_t seed;
};

enum wd_pd_mode {
    WD_PD_LOCAL_NO_PREFILL = 0, /* on a decode worker: no eligible prefill worker */
    WD_PD_LOCAL_SHORT,          /* on a decode worker: prompt under min_prefill_tokens */
    WD_PD_DISAGGREGATED,        /* prefill on P, decode on D */
    WD_PD_N_MODES,
};

struct wd_pd_request {
    const int32_t *ids; /* [n_ids] the prompt (cache_aware reads it) */
    int n_ids;
    int max_tokens;
    struct wd_worker_ref exclude_prefill; /* slot -1: none (a retry leaves out the failed) */
    struct wd_worker_ref exclude_decode;
};

struct wd_pd_choice {
    enum wd_pd_mode mode;
    struct wd_policy_pick decode;  /* always */
    struct wd_policy_pick prefill; /* WD_PD_DISAGGREGATED only */
};

struct wd_pd_route;

/* Errors: WD_ERR_INVALID when a policy is not one its role takes (naming the flag),
 * WD_ERR_NOMEM. */
enum wd_status wd_pd_route_create(const struct wd_pd_route_config *cfg, struct wd_pd_route **pr_p,
                                  struct wd_error *err);
void wd_pd_route_destroy(struct wd_pd_route *pr);

/* Places a request. Returns 0 and fills *out, or -1 when no decode worker can take it. No
 * allocation. */
int wd_pd_route_pick(struct wd_pd_route *pr, struct wd_workers *w, const struct wd_pd_request *req,
                     double now, struct wd_pd_choice *out);

/* "no_prefill", "short_prompt", "disaggregated" (metric labels, logs). */
const char *wd_pd_mode_name(enum wd_pd_mode mode);

#endif

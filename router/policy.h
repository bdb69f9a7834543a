/*
 * wd_policy: picks the (worker, DP rank) a request goes to, from the registry's loads.
 *
 * One policy object per role: the router has one for decode workers today; the
 * prefill/decode split adds a second (--prefill-policy) and picks the pair by calling both,
 * so nothing here knows about pairs. Every policy first narrows the candidates to eligible
 * workers of the role (registered, not draining, not cooled off, not the excluded one) and,
 * when some have room, to ranks whose free KV pages cover the request, so work is not sent
 * where it would wait for memory. Then:
 *   round_robin   the next candidate in (slot, rank) order
 *   random        a uniform pick
 *   power_of_two  the less loaded of two random candidates
 *   least_load    the least loaded (ties spread round-robin)
 *   cache_aware   SGLang's: the rank whose cached prefix covers most of the prompt when that
 *                 share is above cache_threshold and the ranks are balanced, else the least
 *                 loaded (see prefix_index.h for how prefixes are remembered)
 * Not thread-safe: the router's event loop owns it.
 */
#ifndef WD_ROUTER_POLICY_H
#define WD_ROUTER_POLICY_H

#include <stdint.h>

#include "common/util/status.h"
#include "router/workers.h"

enum wd_policy_kind {
    WD_POLICY_ROUND_ROBIN = 0,
    WD_POLICY_RANDOM,
    WD_POLICY_POWER_OF_TWO,
    WD_POLICY_LEAST_LOAD,
    WD_POLICY_CACHE_AWARE,
};

/* The names the --policy flag takes, in enum order, comma-separated. */
#define WD_POLICY_CHOICES "round_robin,random,power_of_two,least_load,cache_aware"

struct wd_policy_tuning {
    double cache_threshold;       /* share of the prompt a cached prefix must cover (0.3) */
    int balance_abs_threshold;    /* load gap that counts as imbalance... (64) */
    double balance_rel_threshold; /* ...when max load is also above this times min (1.5) */
    int block_tokens;             /* prefix granularity in tokens (16) */
    int max_entries;              /* prefix blocks remembered over all ranks (1 << 20) */
};

void wd_policy_tuning_defaults(struct wd_policy_tuning *t);

/* Parses a --policy value; -1 when unknown. */
int wd_policy_kind_parse(const char *name);
const char *wd_policy_kind_name(enum wd_policy_kind kind);

struct wd_route_ctx {
    const int32_t *ids; /* [n_ids] prompt token ids (cache_aware reads them) */
    int n_ids;
    int n_tokens;                 /* prompt + max new tokens: the pages it will hold */
    struct wd_worker_ref exclude; /* slot -1: none (a retry excludes the failed worker) */
};

struct wd_policy_pick {
    int slot; /* registry slot */
    int rank; /* DP rank inside the worker */
};

struct wd_policy;

enum wd_status wd_policy_create(enum wd_policy_kind kind, const struct wd_policy_tuning *tuning,
                                uint64_t seed, struct wd_policy **p_p, struct wd_error *err);
void wd_policy_destroy(struct wd_policy *p);

/* Picks a target for a request. Returns 0 and fills *out, or -1 when no worker of the role
 * is eligible. No allocation. */
int wd_policy_pick(struct wd_policy *p, struct wd_workers *w, enum wd_worker_role role,
                   const struct wd_route_ctx *ctx, double now, struct wd_policy_pick *out);

#endif

/*
 * EPLB: the expert-parallel load balancer of deepseek-ai/EPLB (eplb.py), as SGLang runs it
 * for --enable-eplb and for an --init-expert-location file holding logical_count.
 *
 * Given the load of every logical expert of every MoE layer, it decides how many physical
 * replicas each logical expert gets (n_physical = n_logical + redundant slots) and on which
 * GPU each replica lives (physical slot p is on GPU p / (n_physical / n_gpus)). Results are
 * identical to eplb.py run by torch on the CPU (see "Exactness" in eplb.c for the tie rules
 * and the one case where float32 sums may differ in the last bit).
 *
 * Pure functions on caller-owned arrays: no global state, thread-safe, and no allocation
 * outside the call (each call allocates its scratch once and frees it). Not for the decode
 * loop: it runs once per rebalance (every --eplb-rebalance-num-iterations passes).
 */
#ifndef WD_EP_EPLB_H
#define WD_EP_EPLB_H

#include <stdint.h>

#include "common/util/status.h"

/* --eplb-algorithm (SGLang's names). */
enum wd_eplb_algorithm {
    WD_EPLB_AUTO = 0,     /* "auto": hierarchical when n_groups > 0 and n_groups % n_nodes == 0 */
    WD_EPLB_HIERARCHICAL, /* "deepseek_hierarchical": groups -> nodes, replicate, pack GPUs */
    WD_EPLB_GLOBAL,       /* "deepseek": the hierarchical routine with 1 group and 1 node */
};

/* Parses "auto", "deepseek_hierarchical" or "deepseek". SGLang's other algorithms
 * (deepseek_vec*, elasticity_aware) are WD_ERR_UNSUPPORTED, anything else WD_ERR_INVALID. */
enum wd_status wd_eplb_algorithm_parse(const char *name, enum wd_eplb_algorithm *algo_p,
                                       struct wd_error *err);
const char *wd_eplb_algorithm_name(enum wd_eplb_algorithm algo);

/* The most replicas one logical expert can get: n_physical - n_logical + 1. A log2phy with
 * this many columns always fits. */
int wd_eplb_max_replicas_bound(int n_logical, int n_physical);

/*
 * Rebalances every layer with the auto policy: hierarchical when n_groups % n_nodes == 0
 * (n_groups > 0), else global. n_groups = 0 means the router has no expert groups (Qwen3-MoE):
 * global policy.
 *   weight   [n_layers, n_logical]  load of each logical expert (finite, >= 0; e.g. token
 *                                   counts); converted to float32 as eplb.py does
 *   phy2log  [n_layers, n_physical] out: logical expert held by each physical slot
 *   log2phy  [n_layers, n_logical, max_replicas] out: slots of each logical expert, ordered
 *                                   by replica rank (the original first, then added replicas
 *                                   in the order they were added), padded with -1
 *   logcnt   [n_layers, n_logical]  out: replica count of each logical expert (>= 1)
 * Requires n_physical >= n_logical, n_physical % n_gpus == 0, n_gpus % n_nodes == 0, and for
 * the hierarchical policy n_logical % n_groups == 0. Errors (outputs untouched): WD_ERR_INVALID
 * for a shape that breaks these rules, a bad weight, or an expert that needs more than
 * max_replicas replicas; WD_ERR_NOMEM.
 */
enum wd_status wd_eplb_rebalance(const double *weight, int n_layers, int n_logical, int n_physical,
                                 int n_groups, int n_nodes, int n_gpus, int32_t *phy2log,
                                 int32_t *log2phy, int max_replicas, int32_t *logcnt,
                                 struct wd_error *err);

/* wd_eplb_rebalance with an explicit policy. WD_EPLB_HIERARCHICAL with n_groups == 0 or
 * n_groups % n_nodes != 0 is WD_ERR_INVALID (eplb.py would assert). */
enum wd_status wd_eplb_rebalance_algo(enum wd_eplb_algorithm algo, const double *weight,
                                      int n_layers, int n_logical, int n_physical, int n_groups,
                                      int n_nodes, int n_gpus, int32_t *phy2log, int32_t *log2phy,
                                      int max_replicas, int32_t *logcnt, struct wd_error *err);

/*
 * Load of each GPU under a placement of one layer: every logical expert's load is split
 * evenly over its replicas, and a GPU's load is the sum over its n_physical / n_gpus slots.
 *   weight   [n_logical]  load of each logical expert
 *   phy2log  [n_physical] logical expert of each slot; the replica counts are derived from it
 *   gpu_load [n_gpus]     out (written only on success)
 * Errors: WD_ERR_INVALID for bad sizes, an id out of range or a logical expert with no replica;
 * WD_ERR_NOMEM.
 */
enum wd_status wd_eplb_gpu_load(const double *weight, int n_logical, const int32_t *phy2log,
                                int n_physical, int n_gpus, double *gpu_load, struct wd_error *err);

/* Load of each GPU from measured per-slot loads (e.g. the recorder's physical counts of one
 * layer): gpu_load[g] = sum of phys_load over GPU g's slots. phys_load [n_physical],
 * gpu_load [n_gpus]; n_physical % n_gpus must be 0 (WD_ASSERT). */
void wd_eplb_gpu_load_physical(const double *phys_load, int n_physical, int n_gpus,
                               double *gpu_load);

/* Balancedness of one layer: mean / max of gpu_load [n_gpus], in (0, 1]; 1.0 is perfect.
 * All-zero load (or n_gpus <= 0) counts as perfectly balanced: 1.0. */
double wd_eplb_balancedness(const double *gpu_load, int n_gpus);

#endif

/*
 * wd_eplb_location: where every logical expert of every MoE layer lives (SGLang's
 * ExpertLocationMetadata): the physical slot -> logical expert map, its inverse and the replica
 * counts, for n_gpus EP ranks with n_physical / n_gpus slots each (slot p on rank p / that).
 *
 * Built from --init-expert-location: "trivial" (slot p holds expert p % n_logical), a JSON
 * file or inline JSON text holding physical_to_logical_map [layers][physical] (used as is) or
 * logical_count [layers][logical] / [buffer][layers][logical] (loads, summed over the buffer
 * and balanced with EPLB); and replaced after each EPLB rebalance. Every setter validates fully
 * and changes nothing on error. One owner; not thread-safe; readers see plain arrays.
 * Does not move expert weights: that is the caller's job, using the old and new phy2log.
 */
#ifndef WD_EP_EPLB_LOCATION_H
#define WD_EP_EPLB_LOCATION_H

#include <stddef.h>
#include <stdint.h>

#include "common/ep/eplb.h"
#include "common/util/status.h"

struct wd_eplb_location {
    int n_layers;     /* MoE layers */
    int n_logical;    /* routed experts of the model */
    int n_physical;   /* n_logical + --ep-num-redundant-experts */
    int n_gpus;       /* EP ranks (ep_size); n_physical % n_gpus == 0 */
    int max_replicas; /* columns of log2phy: n_physical - n_logical + 1 */
    int32_t *phy2log; /* [n_layers, n_physical] logical expert of each physical slot */
    int32_t *log2phy; /* [n_layers, n_logical, max_replicas] slots of each expert, -1 padded */
    int32_t *logcnt;  /* [n_layers, n_logical] replicas of each expert, >= 1 */
};

/* What EPLB needs besides the loads (a logical_count file, a rebalance). */
struct wd_eplb_params {
    enum wd_eplb_algorithm algorithm; /* --eplb-algorithm */
    int n_groups;                     /* expert groups of the router (n_group); 0 = none */
    int n_nodes;                      /* --nnodes */
};

/* Allocates a location with the trivial layout. Errors: WD_ERR_INVALID for sizes that are not
 * positive, n_physical < n_logical or n_physical % n_gpus != 0; WD_ERR_NOMEM. */
enum wd_status wd_eplb_location_create(int n_layers, int n_logical, int n_physical, int n_gpus,
                                       struct wd_eplb_location **loc_p, struct wd_error *err);
void wd_eplb_location_destroy(struct wd_eplb_location *loc);

/* Slot p of every layer holds logical expert p % n_logical (SGLang's init_trivial). */
void wd_eplb_location_set_trivial(struct wd_eplb_location *loc);

/* Uses phy2log [n_layers, n_physical] as the layout (SGLang's init_by_mapping): log2phy lists
 * each expert's slots in increasing order. Errors (loc unchanged): WD_ERR_INVALID for an id
 * outside [0, n_logical) or a logical expert with no slot in some layer. */
enum wd_status wd_eplb_location_set_mapping(struct wd_eplb_location *loc, const int32_t *phy2log,
                                            struct wd_error *err);

/* Balances weight [n_layers, n_logical] with EPLB (wd_eplb_rebalance_algo) and takes the
 * result; log2phy is in replica order as eplb.py returns it. Errors as wd_eplb_rebalance_algo
 * (loc unchanged). */
enum wd_status wd_eplb_location_rebalance(struct wd_eplb_location *loc, const double *weight,
                                          const struct wd_eplb_params *params,
                                          struct wd_error *err);

/* Copies layer `layer` of src into dst (same shape): applying a rebalance a few layers at a time
 * (--eplb-rebalance-layers-per-chunk). */
void wd_eplb_location_copy_layer(struct wd_eplb_location *dst, const struct wd_eplb_location *src,
                                 int layer);

/*
 * --init-expert-location: "trivial"; a path ending in ".json" (read with
 * wd_eplb_location_load_json); a path ending in ".pt" (WD_ERR_UNSUPPORTED: save it as JSON);
 * anything else is parsed as inline JSON text, as SGLang does.
 */
enum wd_status wd_eplb_location_load(struct wd_eplb_location *loc, const char *spec,
                                     const struct wd_eplb_params *params, struct wd_error *err);

/*
 * Reads an expert-location JSON object: physical_to_logical_map [n_layers][n_physical] of
 * integers (taken first when both keys are present), else logical_count [n_layers][n_logical]
 * or [buffer][n_layers][n_logical] of loads >= 0 (summed over the buffer, then balanced with
 * params). Other keys are ignored. Errors (loc unchanged), each naming the file and the place:
 * WD_ERR_NOT_FOUND / WD_ERR_IO for the file, WD_ERR_FORMAT for bad JSON, a wrong type or
 * neither key, WD_ERR_INVALID for a shape that does not match the model and the EP layout, an
 * id out of range, an expert without a slot, a negative load, or an EPLB error.
 */
enum wd_status wd_eplb_location_load_json(struct wd_eplb_location *loc, const char *path,
                                          const struct wd_eplb_params *params,
                                          struct wd_error *err);

/* The same from text[0..len); `where` names the source in messages. */
enum wd_status wd_eplb_location_load_json_text(struct wd_eplb_location *loc, const char *text,
                                               size_t len, const char *where,
                                               const struct wd_eplb_params *params,
                                               struct wd_error *err);

#endif

/*
 * wd_expert_store: a rank's physical expert slots when EPLB places experts
 * (--ep-num-redundant-experts, --enable-eplb, --init-expert-location). Each
 * (MoE layer, local slot) owns one blob holding a whole expert in its checkpoint
 * dtype: gate, up and down matrices, then their FP8 block scales. Weight views
 * point into the blobs (sliced for MoE-TP), so a rebalance replaces a slot's
 * expert by overwriting its blob's bytes — the views stay valid — and a blob is
 * what travels between ranks. One allocation for all blobs, made at load.
 */
#ifndef WD_MODEL_EXPERT_STORE_H
#define WD_MODEL_EXPERT_STORE_H

#include <stddef.h>

#include "common/util/status.h"
#include "kernels/weight.h"

struct wd_mlp_weights;

struct wd_expert_store {
    int n_layers, n_slots; /* model layers (dense ones unused), slots held by this rank */
    size_t blob_bytes;
    size_t off[6];             /* gate, up, down data; gate, up, down scales */
    struct wd_weight proto[3]; /* full-matrix shape, dtype and blocks of gate, up, down */
    unsigned char *blobs;      /* [n_layers][n_slots][blob_bytes] */
};

/* Sizes the store from one expert's full (unsliced) weights, which every expert shares. */
enum wd_status wd_expert_store_create(const struct wd_mlp_weights *proto, int n_layers, int n_slots,
                                      struct wd_expert_store **store_p, struct wd_error *err);
void wd_expert_store_destroy(struct wd_expert_store *store);

unsigned char *wd_expert_store_blob(const struct wd_expert_store *store, int layer, int slot);
/* Copies a full expert (views of the checkpoint) into a slot's blob. */
void wd_expert_store_fill(struct wd_expert_store *store, int layer, int slot,
                          const struct wd_mlp_weights *full);
/* Views of a slot's expert, intermediate dimension split tp ways, part rank. */
void wd_expert_store_views(const struct wd_expert_store *store, int layer, int slot, int tp,
                           int rank, struct wd_mlp_weights *out);

#endif

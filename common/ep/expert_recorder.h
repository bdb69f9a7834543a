/*
 * wd_expert_recorder: the expert-distribution recorder
 * (--expert-distribution-recorder-mode stat|per_pass|per_token), the input of EPLB.
 *
 * The forward pass reports, per MoE layer, the logical experts each token was
 * routed to. The recorder keeps the last `buffer_size` forward passes in a ring:
 * stat mode keeps per-pass counts [layer][expert] and sums the window (what EPLB
 * balances); per_pass keeps the same counts but dumps every pass on its own;
 * per_token also keeps every token's top-k choices (up to max_tokens per pass).
 * Everything is allocated at creation; recording does not allocate. One thread.
 */
#ifndef WD_EP_EXPERT_RECORDER_H
#define WD_EP_EXPERT_RECORDER_H

#include <stdint.h>
#include <stdio.h>

#include "common/util/status.h"

enum wd_expert_record_mode {
    WD_RECORD_STAT = 0,
    WD_RECORD_PER_PASS,
    WD_RECORD_PER_TOKEN,
};

struct wd_expert_recorder_config {
    enum wd_expert_record_mode mode;
    int n_layers;  /* all decoder layers (dense ones record nothing) */
    int n_experts; /* logical routed experts */
    int top_k;
    int buffer_size; /* forward passes kept */
    int max_tokens;  /* per_token: tokens kept per pass */
};

struct wd_expert_recorder;

/* Parses "stat", "per_pass", "per_token". */
enum wd_status wd_expert_record_mode_parse(const char *s, enum wd_expert_record_mode *mode_p,
                                           struct wd_error *err);

enum wd_status wd_expert_recorder_create(const struct wd_expert_recorder_config *cfg,
                                         struct wd_expert_recorder **rec_p, struct wd_error *err);
void wd_expert_recorder_destroy(struct wd_expert_recorder *rec);

/* Starts a forward pass (the oldest pass in the ring is dropped when it is full). */
void wd_expert_recorder_begin_pass(struct wd_expert_recorder *rec);
/* Records layer's routing of n tokens: topk [n, top_k] logical ids, -1 = no expert. */
void wd_expert_recorder_add(struct wd_expert_recorder *rec, int layer, const int32_t *topk,
                            int64_t n);
/* Sums the window into counts [n_layers, n_experts]; returns the passes it holds. */
int wd_expert_recorder_counts(const struct wd_expert_recorder *rec, double *counts);
/* Forgets every recorded pass. */
void wd_expert_recorder_reset(struct wd_expert_recorder *rec);
/* Writes the window as one JSON object: {"mode", "passes", "logical_count" [L][E],
 * and per mode "per_pass" [[L][E]...] or "per_token" [{"layer", "topk"}...]}. */
enum wd_status wd_expert_recorder_dump(const struct wd_expert_recorder *rec, FILE *out,
                                       struct wd_error *err);

#endif

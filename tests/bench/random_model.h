/*
 * Random models for wideep-bench: a checkpoint of any config built in memory
 * (safetensors bytes with random bf16 weights, the tensor list from
 * wd_model_list_tensors), so the engine can be measured at realistic sizes
 * without a download. The blob must outlive the model that maps it.
 */
#ifndef WD_BENCH_RANDOM_MODEL_H
#define WD_BENCH_RANDOM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "common/model/model.h"

/* Built-in shapes: "qwen3-moe-mid" (hidden 1024, 16 layers, 64 experts, top-8,
 * moe_intermediate 512) and "deepseek-v3-mid"; or a path to a config.json. */
enum wd_status wd_bench_random_config(const char *name, struct wd_model_config *cfg,
                                      struct wd_error *err);

/* Creates a model with random bf16 weights; *blob_p receives the checkpoint bytes to free
 * (after wd_model_destroy). */
enum wd_status wd_bench_random_model(const struct wd_model_config *cfg,
                                     const struct wd_model_options *opt, uint64_t seed,
                                     struct wd_model **model_p, uint8_t **blob_p,
                                     struct wd_error *err);

#endif

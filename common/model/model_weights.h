/*
 * The streamed weights of a wd_model in one anonymous, huge-page-backed block. The decode
 * loop reads every matrix once per token; from the checkpoint's file mapping (4 KiB page
 * cache pages) that stream misses the TLB every 4 KiB and the hardware prefetchers stop at
 * each page boundary. Internal to common/model.
 */
#ifndef WD_MODEL_WEIGHTS_H
#define WD_MODEL_WEIGHTS_H

#include "common/util/status.h"

struct wd_model;

/* Copies every matrix the forward streams (LM head, attention, dense, router, shared and
 * routed experts; not the embedding, which is gathered a row at a time, nor experts an EPLB
 * store owns) into one block of 2 MiB-aligned anonymous memory advised MADV_HUGEPAGE, packed
 * (a row slice or column slice keeps only its part) and read-only after the copy, and points
 * the model's weights at it. The model owns the block (wd_model_weights_release). When the
 * block cannot be mapped the weights stay where they are (a warning): only speed is lost.
 * Copies on the model's thread pool (created before). */
void wd_model_weights_to_ram(struct wd_model *m);
void wd_model_weights_release(struct wd_model *m); /* idempotent */

#endif

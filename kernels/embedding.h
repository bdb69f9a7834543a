/*
 * Token embedding lookup: each output row is one row of the table widened to
 * fp32. Token ids are validated by the caller (0 <= id < vocab); the op does
 * not check them.
 */
#ifndef WD_KERNELS_EMBEDDING_H
#define WD_KERNELS_EMBEDDING_H

#include <stdint.h>

#include "kernels/weight.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[i] = table[ids[i]]. table: [vocab, hidden] any weight dtype; ids: [n] i32;
 * out: [n, hidden] f32. */
void wd_embedding_ref(const struct wd_weight *table, const int32_t *ids, int64_t n, float *out);

#ifdef __cplusplus
}
#endif

#endif

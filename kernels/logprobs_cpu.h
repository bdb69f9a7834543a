/*
 * The CPU fast path of the log-sum-exp that turns a sampled token's raw logit into its
 * logprob, for every row of a step at once. One pass of exp() in double over a 129k-256k
 * vocabulary costs about a millisecond per row on one thread: as much as several layers
 * of a batch-1 decode, on the main thread while the pool sits idle. Here the rows are cut
 * into fixed chunks that the pool's threads share.
 */
#ifndef WD_KERNELS_LOGPROBS_CPU_H
#define WD_KERNELS_LOGPROBS_CPU_H

#include <stdint.h>

#include "kernels/threadpool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Doubles of scratch one row needs (one per chunk). */
int64_t wd_logsumexp_cpu_parts(int vocab);

/* lse[r] = log(sum_i exp(logits[r][i])) for n rows, as wd_logsumexp_ref: the row max m
 * subtracted first, exp and the sum in double, lse = m + log(sum). The sum runs over fixed
 * chunks of columns whose partial sums are then added in chunk order, so lse depends on
 * neither the thread count nor the other rows; it may differ from the reference's single
 * running sum in the last bits of the double. logits: [n, vocab] f32; part: [n *
 * wd_logsumexp_cpu_parts(vocab)] scratch; lse: [n]. tp may be NULL. No allocation. */
void wd_logsumexp_cpu(const float *logits, int64_t n, int vocab, double *part, double *lse,
                      struct wd_threadpool *tp);

#ifdef __cplusplus
}
#endif

#endif

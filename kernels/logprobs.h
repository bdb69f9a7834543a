/*
 * Log-probabilities of one row of logits beyond the sampled token: the k most likely
 * tokens (OpenAI's top_logprobs, SGLang's top_logprobs_num) and a finiteness check that
 * turns a model producing NaN/Inf into a clear request error instead of garbage tokens.
 * Both read the RAW logits (no temperature, no filters), as the chosen token's logprob.
 */
#ifndef WD_KERNELS_LOGPROBS_H
#define WD_KERNELS_LOGPROBS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when every logit of the row is finite. logits: [vocab] f32. */
int wd_logits_finite_ref(const float *logits, int vocab);

/* log(sum_i exp(logits[i])) in double, the max subtracted first. logits: [vocab] f32. */
double wd_logsumexp_ref(const float *logits, int vocab);

/* The k (<= vocab) most likely tokens, best first (ties: lower id first), and their
 * log-softmax values. ids, lps: [k]. O(vocab * log k), no allocation. */
void wd_logprobs_top_ref(const float *logits, int vocab, int k, int32_t *ids, float *lps);

#ifdef __cplusplus
}
#endif

#endif

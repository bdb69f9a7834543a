/*
 * Next-token sampling from one row of logits, and the request-owned RNG.
 *
 * Filters follow SGLang's joint order: probabilities p = softmax(logits / T)
 * over the whole vocabulary; keep the top_k most probable; keep the smallest
 * prefix (by descending p) whose cumulative p reaches top_p (measured on the
 * full-vocabulary p, as SGLang's joint top-k/top-p does); drop tokens with
 * p < min_p * p_max; renormalize what is left and draw. Ties rank the lower
 * token id first. The RNG is xoshiro256** seeded with splitmix64, so a
 * request's seed reproduces its draws on any machine.
 */
#ifndef WD_KERNELS_SAMPLING_H
#define WD_KERNELS_SAMPLING_H

#include <stdint.h>

/* Temperatures below this sample greedily, as SGLang does (its _SAMPLING_EPS): logits / T
 * overflows float for a tiny T (1e-40 turns every logit into +-inf and the draw into the
 * last token id), and the limit T -> 0 of softmax(logits / T) is the argmax anyway. */
#define WD_SAMPLING_GREEDY_EPS 1e-6f

#ifdef __cplusplus
extern "C" {
#endif

struct wd_sampling_params {
    float temperature; /* < WD_SAMPLING_GREEDY_EPS (0 included): greedy */
    int top_k;         /* <= 0: off */
    float top_p;       /* >= 1: off */
    float min_p;       /* <= 0: off */
};

/* splitmix64: the next value of a 64-bit counter-based stream (advances *state). Seeds
 * xoshiro below; also the one small generator tests and benchmarks use. */
uint64_t wd_splitmix64(uint64_t *state);
/* Seeds the 256-bit xoshiro256** state from one 64-bit seed (splitmix64). */
void wd_rng_seed(uint64_t rng[4], uint64_t seed);
/* Next 64 random bits; advances rng. */
uint64_t wd_rng_next(uint64_t rng[4]);
/* Uniform double in [0, 1) with 53 random bits; advances rng. */
double wd_rng_uniform(uint64_t rng[4]);

/*
 * Picks a token. Greedy (temperature < WD_SAMPLING_GREEDY_EPS, or NaN): argmax, ties to
 * the lowest id, rng untouched. Otherwise one wd_rng_uniform draw. *logprob_p (if not NULL) is the log-softmax of the RAW logits
 * (no temperature, no filters) at the chosen token, what SGLang and vLLM report. This is
 * the one place that decides greedy vs sampled; validators only bound the range.
 * logits: [vocab] f32 (vocab >= 1); scratch_f: [2 * vocab] f32; scratch_i: [vocab] i32.
 * No allocation.
 */
int32_t wd_sample_ref(const float *logits, int vocab, const struct wd_sampling_params *p,
                      uint64_t rng[4], float *scratch_f, int32_t *scratch_i, float *logprob_p);

#ifdef __cplusplus
}
#endif

#endif

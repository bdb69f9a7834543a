/*
 * libFuzzer target for the sampler: arbitrary logits (NaN, infinities, ties) and
 * arbitrary sampling parameters must never crash, hang or read out of bounds, and
 * the token must always be a valid id. Layout of the input: 1 byte vocab - 1, 8 bytes
 * seed, 4 floats-worth of params (temperature, top_k as int32, top_p, min_p), then the
 * logits as raw little-endian floats (missing ones are 0).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/sampling.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 + 8 + 16)
        return 0;
    int vocab = data[0] + 1;
    uint64_t seed;
    struct wd_sampling_params p;
    memcpy(&seed, data + 1, 8);
    memcpy(&p.temperature, data + 9, 4);
    memcpy(&p.top_k, data + 13, 4);
    memcpy(&p.top_p, data + 17, 4);
    memcpy(&p.min_p, data + 21, 4);
    data += 25;
    size -= 25;
    float *logits = calloc((size_t)vocab, sizeof(float));
    float *scratch_f = malloc(sizeof(float) * 2 * (size_t)vocab);
    int32_t *scratch_i = malloc(sizeof(int32_t) * (size_t)vocab);
    if (!logits || !scratch_f || !scratch_i)
        abort();
    memcpy(logits, data, size < (size_t)vocab * 4 ? size : (size_t)vocab * 4);
    uint64_t rng[4];
    wd_rng_seed(rng, seed);
    float logprob;
    for (int i = 0; i < 3; i++) {
        int32_t tok = wd_sample_ref(logits, vocab, &p, rng, scratch_f, scratch_i, &logprob);
        if (tok < 0 || tok >= vocab)
            abort();
    }
    free(logits);
    free(scratch_f);
    free(scratch_i);
    return 0;
}

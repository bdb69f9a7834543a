/*
 * The FP8 cast of low-latency dispatch (SPEC-EP 5.4), per token and per group
 * of 128 contiguous channels:
 *   amax = max(max |x|, 1e-4)
 *   default:     scale_inv = amax / 448, scale = 448 / amax
 *   round_scale: scale_inv = 2^ceil(log2(amax / 448)), scale = 2^-that exponent
 *   q = saturating-finite e4m3(x * scale) (round to nearest even, |q| <= 448)
 * Dequantization is q * scale_inv. UE8M0 stores only the exponent byte of a
 * power-of-two scale_inv (the fp32 exponent field, bias 127); four consecutive
 * groups pack into one uint32, group 4w + b in byte b (the least significant byte
 * first, as DeepEP's little-endian packing). All arithmetic is fp32, so the
 * bytes are reproducible bit for bit on any IEEE machine.
 *
 * Deviation from DeepEP: DeepEP casts from bf16 activations and computes
 * scale_inv = amax * (1/448); wideep casts the fp32 activations it has and
 * divides, as the SPEC text states.
 */
#ifndef WD_EP_FP8_H
#define WD_EP_FP8_H

#include <stdint.h>

#define WD_EP_FP8_GROUP 128  /* channels per scale */
#define WD_EP_FP8_MAX 448.0f /* largest finite e4m3 */
#define WD_EP_FP8_AMAX_MIN 1e-4f

/* Quantizes one row. x: [hidden] f32, hidden % 128 == 0; q: [hidden] e4m3;
 * scale_inv: [hidden / 128] f32. */
void wd_ep_fp8_quantize(const float *x, int hidden, int round_scale, uint8_t *q, float *scale_inv);

/* Packs power-of-two scales as UE8M0. scale_inv: [n_groups]; packed: [(n_groups + 3) / 4],
 * unused high bytes of the last word are zero. */
void wd_ep_fp8_pack_ue8m0(const float *scale_inv, int n_groups, uint32_t *packed);

/* The scale_inv that UE8M0 byte e stands for: 2^(e - 127). */
float wd_ep_fp8_ue8m0_scale(uint8_t e);

#endif

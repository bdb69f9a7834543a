/*
 * How one activation row travels in dispatch/combine: its wire encoding.
 *
 * Activations are fp32 on the CPU engine. A row goes out as
 *  - F32:  hidden fp32 values (4 * hidden bytes; what the CPU engine computes in);
 *  - BF16: hidden bf16 values, round-to-nearest-even (DeepEP's default dtype);
 *  - FP8:  hidden e4m3 bytes, then the per-128-channel dequantization scales
 *          (SPEC-EP 5.4, see ep_fp8.h): hidden / 128 fp32 scale_inv values, or with
 *          use_ue8m0 the same scales as UE8M0 exponent bytes packed four to a
 *          uint32 (ceil(hidden / 512) words).
 * A received row is handed over as-is (the caller sees the exact bytes, as DeepEP
 * returns FP8 data + scales) and decoded to fp32 with wd_ep_payload_decode where
 * the expert compute needs it. Every encoding is a pure function of the row, so
 * the CPU and CUDA executors produce the same bytes.
 */
#ifndef WD_EP_PAYLOAD_H
#define WD_EP_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "common/util/status.h"

enum wd_ep_payload_kind {
    WD_EP_PAYLOAD_F32 = 0,
    WD_EP_PAYLOAD_BF16,
    WD_EP_PAYLOAD_FP8,
};

struct wd_ep_payload {
    enum wd_ep_payload_kind kind;
    int hidden;      /* H */
    int round_scale; /* FP8: scales rounded up to powers of two */
    int use_ue8m0;   /* FP8: scales sent as packed UE8M0 bytes; needs round_scale */
};

/* WD_ERR_INVALID (message says why) unless hidden >= 1, kind known, FP8 has
 * hidden % 128 == 0 and use_ue8m0 implies FP8 with round_scale. */
enum wd_status wd_ep_payload_check(const struct wd_ep_payload *p, struct wd_error *err);

/* Bytes of one encoded row (always a multiple of 4). */
size_t wd_ep_payload_row_bytes(const struct wd_ep_payload *p);

/* Encodes one row. x: [hidden] f32; row: [row_bytes]. */
void wd_ep_payload_encode(const struct wd_ep_payload *p, const float *x, uint8_t *row);

/* Decodes one row to fp32 (FP8: e4m3 value * its group's scale_inv). row: [row_bytes];
 * x: [hidden] f32. */
void wd_ep_payload_decode(const struct wd_ep_payload *p, const uint8_t *row, float *x);

/* x += w * decode(row), the combine reduction step (w = 1 adds the row exactly).
 * row: [row_bytes], 4-byte aligned; x: [hidden] f32, not overlapping row. */
void wd_ep_payload_axpy(const struct wd_ep_payload *p, float w, const uint8_t *restrict row,
                        float *restrict x);

/* Short name: "f32", "bf16", "fp8". */
const char *wd_ep_payload_name(enum wd_ep_payload_kind kind);

#endif

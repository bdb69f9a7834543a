/*
 * Element types of weights and activations, and their scalar conversions.
 *
 * Activations on the CPU backend are fp32; weights stay in their checkpoint
 * dtype and are widened on the fly by the ops, so a bf16 model is read once
 * per token at half the bytes. The conversions are exact (bf16/f16/e4m3 -> f32)
 * or round-to-nearest-even (f32 -> bf16/f16), matching PyTorch.
 */
#ifndef WD_KERNELS_DTYPE_H
#define WD_KERNELS_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum wd_dtype {
    WD_DTYPE_F32 = 0,
    WD_DTYPE_F16,
    WD_DTYPE_BF16,
    WD_DTYPE_F8_E4M3, /* OCP e4m3fn: no infinities, 0x7f/0xff are NaN, max 448 */
    WD_DTYPE_I64,
    WD_DTYPE_I32,
    WD_DTYPE_COUNT
};

/* Bytes per element. */
size_t wd_dtype_size(enum wd_dtype dt);
/* Name as safetensors spells it ("F32", "BF16", "F8_E4M3", ...). */
const char *wd_dtype_name(enum wd_dtype dt);
/* Parses a safetensors dtype name; returns -1 when wideep does not support it. */
int wd_dtype_parse(const char *name);

static inline float wd_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t wd_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it quiet, keep the sign */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float wd_f16_to_f32(uint16_t h);
uint16_t wd_f32_to_f16(float f);
float wd_e4m3_to_f32(uint8_t v);
/* Round-to-nearest-even with saturation to +-448 (what torch's cast does for finite input). */
uint8_t wd_f32_to_e4m3(float f);

/* Widens n elements of src (dtype dt) to fp32. */
void wd_dtype_to_f32(enum wd_dtype dt, const void *src, float *dst, size_t n);

#endif

/*
 * Row encodings of dispatch/combine (see ep_payload.h). The decode of an FP8
 * row multiplies each e4m3 value by its group's scale_inv in fp32, which is the
 * dequantization DeepEP's consumers (DeepGEMM) apply.
 *
 * The BF16 encode and the F32/BF16 axpy are, besides the copies, what dispatch
 * and combine spend their time on (wideep-bench ep), so on x86 they have AVX2
 * versions chosen at run time (the library needs no -march flag). They compute
 * bit for bit what the portable loops compute: the same round-to-nearest-even
 * and NaN rule, and a multiply then an add (no FMA, which rounds once).
 */
#include "common/ep/ep_payload.h"

#include <string.h>

#include "common/ep/ep_fp8.h"
#include "kernels/dtype.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define EP_X86 1
#define EP_AVX2 __attribute__((target("avx2")))

static int have_avx2(void)
{
    return __builtin_cpu_supports("avx2");
}

/* 8 floats -> 8 bf16 in the low halves of int32 lanes (wd_f32_to_bf16 on each). */
EP_AVX2 static __m256i bf16x8_of(__m256 f)
{
    __m256i u = _mm256_castps_si256(f);
    __m256i abs = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
    __m256i nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f800000));
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i rne = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb));
    __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    return _mm256_blendv_epi8(_mm256_srli_epi32(rne, 16), quiet, nan);
}

/* The whole BF16 encode of one row: 16 values at a time, then the portable tail. */
EP_AVX2 static void encode_bf16_avx2(const float *x, int h, uint8_t *row)
{
    int j = 0;
    for (; j + 16 <= h; j += 16) {
        __m256i a = bf16x8_of(_mm256_loadu_ps(x + j));
        __m256i b = bf16x8_of(_mm256_loadu_ps(x + j + 8));
        /* packus works per 128-bit lane (a0-3 b0-3 a4-7 b4-7): put the quarters in order. */
        __m256i v = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xd8);
        _mm256_storeu_si256((__m256i *)(void *)(row + 2 * (size_t)j), v);
    }
    for (; j < h; j++) {
        uint16_t v = wd_f32_to_bf16(x[j]);
        memcpy(row + 2 * (size_t)j, &v, 2);
    }
    if (h & 1)
        memset(row + 2 * (size_t)h, 0, 2);
}

/* The whole F32 or BF16 axpy of one row: 8 values at a time, then the portable tail. */
EP_AVX2 static void axpy_avx2(int is_bf16, int h, float w, const uint8_t *row, float *x)
{
    __m256 vw = _mm256_set1_ps(w);
    int j = 0;
    for (; j + 8 <= h; j += 8) {
        __m256 v;
        if (is_bf16) {
            __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(row + 2 * (size_t)j));
            v = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16));
        } else {
            v = _mm256_loadu_ps((const float *)(const void *)(row + 4 * (size_t)j));
        }
        _mm256_storeu_ps(x + j, _mm256_add_ps(_mm256_loadu_ps(x + j), _mm256_mul_ps(vw, v)));
    }
    for (; j < h; j++) {
        float v;
        if (is_bf16) {
            uint16_t b;
            memcpy(&b, row + 2 * (size_t)j, 2);
            v = wd_bf16_to_f32(b);
        } else {
            memcpy(&v, row + 4 * (size_t)j, 4);
        }
        x[j] += w * v;
    }
}
#endif

enum wd_status wd_ep_payload_check(const struct wd_ep_payload *p, struct wd_error *err)
{
    if (p->hidden < 1)
        return wd_error_set(err, WD_ERR_INVALID, "ep payload: hidden size %d", p->hidden);
    if (p->kind != WD_EP_PAYLOAD_F32 && p->kind != WD_EP_PAYLOAD_BF16 &&
        p->kind != WD_EP_PAYLOAD_FP8)
        return wd_error_set(err, WD_ERR_INVALID, "ep payload: unknown kind %d", (int)p->kind);
    if (p->kind == WD_EP_PAYLOAD_FP8 && p->hidden % WD_EP_FP8_GROUP != 0)
        return wd_error_set(err, WD_ERR_INVALID,
                            "ep payload: fp8 needs hidden %% %d == 0, hidden is %d",
                            WD_EP_FP8_GROUP, p->hidden);
    if (p->use_ue8m0 && (p->kind != WD_EP_PAYLOAD_FP8 || !p->round_scale))
        return wd_error_set(err, WD_ERR_INVALID,
                            "ep payload: ue8m0 scales need fp8 with "
                            "round_scale");
    return WD_OK;
}

size_t wd_ep_payload_row_bytes(const struct wd_ep_payload *p)
{
    size_t h = (size_t)p->hidden;
    switch (p->kind) {
    case WD_EP_PAYLOAD_F32:
        return 4 * h;
    case WD_EP_PAYLOAD_BF16:
        return (2 * h + 3) & ~(size_t)3;
    case WD_EP_PAYLOAD_FP8: {
        size_t groups = h / WD_EP_FP8_GROUP;
        return h + (p->use_ue8m0 ? 4 * ((groups + 3) / 4) : 4 * groups);
    }
    }
    return 0;
}

void wd_ep_payload_encode(const struct wd_ep_payload *p, const float *x, uint8_t *row)
{
    int h = p->hidden;
#ifdef EP_X86
    if (p->kind == WD_EP_PAYLOAD_BF16 && have_avx2()) {
        encode_bf16_avx2(x, h, row);
        return;
    }
#endif
    switch (p->kind) {
    case WD_EP_PAYLOAD_F32:
        memcpy(row, x, 4 * (size_t)h);
        break;
    case WD_EP_PAYLOAD_BF16:
        for (int j = 0; j < h; j++) {
            uint16_t v = wd_f32_to_bf16(x[j]);
            memcpy(row + 2 * (size_t)j, &v, 2);
        }
        if (h & 1)
            memset(row + 2 * (size_t)h, 0, 2); /* padding to 4 bytes: keep it defined */
        break;
    case WD_EP_PAYLOAD_FP8: {
        int groups = h / WD_EP_FP8_GROUP;
        float scales[64];
        /* Quantize group by group so any hidden size works with a small stack array. */
        for (int g0 = 0; g0 < groups; g0 += 64) {
            int ng = groups - g0 < 64 ? groups - g0 : 64;
            wd_ep_fp8_quantize(x + (size_t)g0 * WD_EP_FP8_GROUP, ng * WD_EP_FP8_GROUP,
                               p->round_scale, row + (size_t)g0 * WD_EP_FP8_GROUP, scales);
            if (p->use_ue8m0) {
                /* g0 is a multiple of 64, hence of 4: whole words. */
                uint32_t packed[16];
                wd_ep_fp8_pack_ue8m0(scales, ng, packed);
                memcpy(row + h + (size_t)g0, packed, 4 * (size_t)((ng + 3) / 4));
            } else {
                memcpy(row + h + 4 * (size_t)g0, scales, 4 * (size_t)ng);
            }
        }
        break;
    }
    }
}

/* The scale_inv of group g of an encoded FP8 row. */
static float fp8_row_scale(const struct wd_ep_payload *p, const uint8_t *row, int g)
{
    if (p->use_ue8m0)
        return wd_ep_fp8_ue8m0_scale(row[p->hidden + g]); /* byte g of the packed words */
    float s;
    memcpy(&s, row + p->hidden + 4 * (size_t)g, 4);
    return s;
}

void wd_ep_payload_decode(const struct wd_ep_payload *p, const uint8_t *row, float *x)
{
    memset(x, 0, sizeof(float) * (size_t)p->hidden);
    wd_ep_payload_axpy(p, 1.0f, row, x);
}

void wd_ep_payload_axpy(const struct wd_ep_payload *p, float w, const uint8_t *restrict row,
                        float *restrict x)
{
    int h = p->hidden;
#ifdef EP_X86
    if ((p->kind == WD_EP_PAYLOAD_BF16 || p->kind == WD_EP_PAYLOAD_F32) && have_avx2()) {
        axpy_avx2(p->kind == WD_EP_PAYLOAD_BF16, h, w, row, x);
        return;
    }
#endif
    switch (p->kind) {
    case WD_EP_PAYLOAD_F32: {
        /* Rows start 4-byte aligned (row sizes are multiples of 4 in 64-aligned regions);
         * restrict lets the compiler vectorize the combine's hot loop. */
        const float *restrict v = (const float *)(const void *)row;
        for (int j = 0; j < h; j++)
            x[j] += w * v[j];
        break;
    }
    case WD_EP_PAYLOAD_BF16: {
        const uint16_t *restrict v = (const uint16_t *)(const void *)row;
        for (int j = 0; j < h; j++)
            x[j] += w * wd_bf16_to_f32(v[j]);
        break;
    }
    case WD_EP_PAYLOAD_FP8:
        for (int g = 0; g < h / WD_EP_FP8_GROUP; g++) {
            float s = fp8_row_scale(p, row, g);
            for (int j = g * WD_EP_FP8_GROUP; j < (g + 1) * WD_EP_FP8_GROUP; j++)
                x[j] += w * (wd_e4m3_to_f32(row[j]) * s);
        }
        break;
    }
}

const char *wd_ep_payload_name(enum wd_ep_payload_kind kind)
{
    switch (kind) {
    case WD_EP_PAYLOAD_F32:
        return "f32";
    case WD_EP_PAYLOAD_BF16:
        return "bf16";
    case WD_EP_PAYLOAD_FP8:
        return "fp8";
    }
    return "?";
}

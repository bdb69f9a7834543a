/* dtype conversions; the bit tricks follow IEEE 754 half and OCP FP8. */
#include "kernels/dtype.h"

#include <math.h>

#include "kernels/linear_cpu.h" /* wd_linear_cpu_has_avx2: the kernels' one AVX2 switch */

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define WD_X86 1
#endif

static const struct {
    const char *name;
    size_t size;
} g_dtypes[WD_DTYPE_COUNT] = {
    [WD_DTYPE_F32] = {"F32", 4},         [WD_DTYPE_F16] = {"F16", 2}, [WD_DTYPE_BF16] = {"BF16", 2},
    [WD_DTYPE_F8_E4M3] = {"F8_E4M3", 1}, [WD_DTYPE_I64] = {"I64", 8}, [WD_DTYPE_I32] = {"I32", 4},
};

size_t wd_dtype_size(enum wd_dtype dt)
{
    return g_dtypes[dt].size;
}
const char *wd_dtype_name(enum wd_dtype dt)
{
    return g_dtypes[dt].name;
}

int wd_dtype_parse(const char *name)
{
    for (int i = 0; i < WD_DTYPE_COUNT; i++)
        if (strcmp(g_dtypes[i].name, name) == 0)
            return i;
    return -1;
}

float wd_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalize */
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t wd_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u)
        return sign | 0x7e00;
    if (abs >= 0x477ff000u) /* rounds to >= 65520: infinity */
        return sign | 0x7c00;
    if (abs < 0x38800000u) { /* below the smallest normal: subnormal or zero */
        float a;
        memcpy(&a, &abs, 4);
        /* Scale so the subnormal unit (2^-24) becomes 1 and round to nearest even. */
        float scaled = a * 16777216.0f;
        return sign | (uint16_t)nearbyintf(scaled);
    }
    uint32_t r = abs + 0xfffu + ((abs >> 13) & 1u);
    return sign | (uint16_t)((r - 0x38000000u) >> 13);
}

float wd_e4m3_to_f32(uint8_t v)
{
    uint32_t sign = v >> 7, exp = (v >> 3) & 0xf, man = v & 7;
    float f;
    if (exp == 0xf && man == 7)
        return NAN;
    if (exp == 0)
        f = ldexpf((float)man, -9); /* subnormal: man * 2^-3 * 2^-6 */
    else
        f = ldexpf((float)(8 + man), (int)exp - 10);
    return sign ? -f : f;
}

uint8_t wd_f32_to_e4m3(float f)
{
    if (isnan(f))
        return 0x7f;
    uint8_t sign = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    if (a >= 448.0f)
        return sign | 0x7e;
    /* Find the exponent so that a = m * 2^(e-3) with m in [8,16), clamp to the subnormal range. */
    int e;
    frexpf(a, &e);       /* a = frac * 2^e, frac in [0.5,1) */
    int exp = e - 1 + 7; /* biased exponent */
    if (exp < 1)
        exp = 1;
    float step = ldexpf(1.0f, exp - 7 - 3);
    float q = nearbyintf(a / step); /* round to nearest even */
    if (q >= 16.0f) {               /* rounding carried into the next binade */
        exp++;
        q = 8.0f;
    }
    if (exp > 15)
        return sign | 0x7e;
    if (q < 8.0f) /* subnormal (exp stayed at 1) */
        return sign | (uint8_t)q;
    uint8_t out = sign | (uint8_t)(exp << 3) | (uint8_t)((int)q - 8);
    if ((out & 0x7f) == 0x7f) /* would be NaN: saturate */
        out = sign | 0x7e;
    return out;
}

#ifdef WD_X86
/* bf16 is the top half of an f32: zero-extend each 16-bit value and shift it up. */
__attribute__((target("avx2"))) static void bf16_to_f32_avx2(const uint16_t *src, float *dst,
                                                             size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
    }
    for (; i < n; i++)
        dst[i] = wd_bf16_to_f32(src[i]);
}
#endif

/* Exact either way; vectorized because the CPU attention widens every BF16 key and value
 * it reads through here (wd_kv_row_f32), and one element at a time that cost more than
 * the attention's FMAs. */
static void bf16_to_f32(const uint16_t *src, float *dst, size_t n)
{
#ifdef WD_X86
    if (wd_linear_cpu_has_avx2()) {
        bf16_to_f32_avx2(src, dst, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++)
        dst[i] = wd_bf16_to_f32(src[i]);
}

void wd_dtype_to_f32(enum wd_dtype dt, const void *src, float *dst, size_t n)
{
    switch (dt) {
    case WD_DTYPE_F32:
        memcpy(dst, src, n * 4);
        break;
    case WD_DTYPE_BF16:
        bf16_to_f32(src, dst, n);
        break;
    case WD_DTYPE_F16:
        for (size_t i = 0; i < n; i++)
            dst[i] = wd_f16_to_f32(((const uint16_t *)src)[i]);
        break;
    case WD_DTYPE_F8_E4M3:
        for (size_t i = 0; i < n; i++)
            dst[i] = wd_e4m3_to_f32(((const uint8_t *)src)[i]);
        break;
    case WD_DTYPE_I64:
        for (size_t i = 0; i < n; i++)
            dst[i] = (float)((const int64_t *)src)[i];
        break;
    case WD_DTYPE_I32:
        for (size_t i = 0; i < n; i++)
            dst[i] = (float)((const int32_t *)src)[i];
        break;
    case WD_DTYPE_COUNT:
        break;
    }
}

/* Vectorized exp and SwiGLU; see vec_cpu.h. Portable path: libm expf. */
#include "kernels/vec_cpu.h"

#include <math.h>
#include <string.h>

#include "kernels/linear_cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define WD_X86 1
#endif

#ifdef WD_X86
#define WD_AVX2 __attribute__((target("avx2,fma")))

/* exp(x) for 8 lanes (Cephes' expf): x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two
 * so n ln2 is exact), e^r by its degree-6 polynomial, 2^n through the exponent bits.
 * Inputs are clamped to [-87.3, 88.4]: the result stays a normal float, exp of a very
 * negative score is ~1e-38 instead of 0, which no softmax or sigmoid can tell. */
WD_AVX2 static inline __m256 exp8(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.33654f)), _mm256_set1_ps(88.37626f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

WD_AVX2 static inline __m256 silu_mul8(__m256 g, __m256 u)
{
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u);
}

WD_AVX2 static void silu_mul_avx2(const float *gate, const float *up, int64_t n, float *out)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, silu_mul8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
    if (i < n) { /* the same code on a padded copy: a value's result never depends on i */
        float g[8] = {0}, u[8] = {0}, o[8];
        memcpy(g, gate + i, sizeof(float) * (size_t)(n - i));
        memcpy(u, up + i, sizeof(float) * (size_t)(n - i));
        _mm256_storeu_ps(o, silu_mul8(_mm256_loadu_ps(g), _mm256_loadu_ps(u)));
        memcpy(out + i, o, sizeof(float) * (size_t)(n - i));
    }
}

/* Sum order: eight lane sums over i = lane (mod 8), then the tree of linear_cpu's hsum8;
 * the padded tail lanes add exact zeros. */
WD_AVX2 static float exp_sum_avx2(float *s, int n, float m)
{
    __m256 mv = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 p = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + i), mv));
        _mm256_storeu_ps(s + i, p);
        acc = _mm256_add_ps(acc, p);
    }
    if (i < n) {
        float t[8], o[8];
        for (int j = 0; j < 8; j++)
            t[j] = i + j < n ? s[i + j] : m;
        __m256 p = exp8(_mm256_sub_ps(_mm256_loadu_ps(t), mv));
        _mm256_storeu_ps(o, p);
        for (int j = 0; j < 8; j++)
            if (i + j >= n)
                o[j] = 0.0f;
        memcpy(s + i, o, sizeof(float) * (size_t)(n - i));
        acc = _mm256_add_ps(acc, _mm256_loadu_ps(o));
    }
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* exp(d) for 4 double lanes, d in [-708, 0] after the clamp: d = n ln2 + r with |r| <=
 * ln2 / 2 (ln2 in two parts, fdlibm's, so n ln2 is exact), e^r by its Taylor polynomial
 * to degree 12 (remainder below 2e-16 relative), 2^n through the exponent bits. n comes
 * from the round-to-nearest trick: d log2(e) + 1.5 * 2^52 holds n in its low bits. */
WD_AVX2 static inline __m256d exp4d(__m256d d)
{
    const __m256d magic = _mm256_set1_pd(6755399441055744.0);
    d = _mm256_max_pd(d, _mm256_set1_pd(-708.0));
    __m256d t = _mm256_fmadd_pd(d, _mm256_set1_pd(1.4426950408889634), magic);
    __m256d n = _mm256_sub_pd(t, magic);
    __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(6.93147180369123816490e-01), d);
    r = _mm256_fnmadd_pd(n, _mm256_set1_pd(1.90821492927058770002e-10), r);
    static const double inv_fact[13] = {1.0,
                                        1.0,
                                        1.0 / 2,
                                        1.0 / 6,
                                        1.0 / 24,
                                        1.0 / 120,
                                        1.0 / 720,
                                        1.0 / 5040,
                                        1.0 / 40320,
                                        1.0 / 362880,
                                        1.0 / 3628800,
                                        1.0 / 39916800,
                                        1.0 / 479001600};
    __m256d p = _mm256_set1_pd(inv_fact[12]);
    for (int k = 11; k >= 0; k--)
        p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(inv_fact[k]));
    __m256i bits = _mm256_sub_epi64(_mm256_castpd_si256(t), _mm256_castpd_si256(magic));
    __m256i e = _mm256_slli_epi64(_mm256_add_epi64(bits, _mm256_set1_epi64x(1023)), 52);
    return _mm256_mul_pd(p, _mm256_castsi256_pd(e));
}

/* Sum order: two 4-lane accumulators over i = lane (mod 8), added lane-wise, then the
 * lanes ((0 + 2) + (1 + 3)); the last n % 8 values one by one after that. */
WD_AVX2 static double exp_sum_f64_avx2(const float *x, int n, float m)
{
    __m256d mv = _mm256_set1_pd((double)m), a0 = _mm256_setzero_pd(), a1 = a0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), mv);
        __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)), mv);
        a0 = _mm256_add_pd(a0, exp4d(d0));
        a1 = _mm256_add_pd(a1, exp4d(d1));
    }
    __m256d a = _mm256_add_pd(a0, a1);
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    double s = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (; i < n; i++)
        s += _mm256_cvtsd_f64(exp4d(_mm256_set1_pd((double)x[i] - (double)m)));
    return s;
}

WD_AVX2 static float max_avx2(const float *x, int n)
{
    float m = x[0];
    int i = 0;
    if (n >= 16) {
        __m256 a = _mm256_loadu_ps(x), b = _mm256_loadu_ps(x + 8);
        for (i = 16; i + 16 <= n; i += 16) {
            a = _mm256_max_ps(a, _mm256_loadu_ps(x + i));
            b = _mm256_max_ps(b, _mm256_loadu_ps(x + i + 8));
        }
        float o[8];
        _mm256_storeu_ps(o, _mm256_max_ps(a, b));
        for (int j = 0; j < 8; j++)
            m = o[j] > m ? o[j] : m;
    }
    for (; i < n; i++)
        m = x[i] > m ? x[i] : m;
    return m;
}

WD_AVX2 static float exp1_avx2(float x)
{
    float o[8];
    _mm256_storeu_ps(o, exp8(_mm256_set1_ps(x)));
    return o[0];
}
#endif

void wd_vec_silu_mul(const float *gate, const float *up, int64_t n, float *out)
{
#ifdef WD_X86
    if (wd_linear_cpu_has_avx2()) {
        silu_mul_avx2(gate, up, n, out);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

float wd_vec_exp_sum(float *s, int n, float m)
{
#ifdef WD_X86
    if (wd_linear_cpu_has_avx2())
        return exp_sum_avx2(s, n, m);
#endif
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        s[i] = expf(s[i] - m);
        sum += s[i];
    }
    return sum;
}

double wd_vec_exp_sum_f64(const float *x, int n, float m)
{
#ifdef WD_X86
    if (wd_linear_cpu_has_avx2())
        return exp_sum_f64_avx2(x, n, m);
#endif
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += exp((double)x[i] - (double)m);
    return s;
}

float wd_vec_max(const float *x, int n)
{
#ifdef WD_X86
    if (wd_linear_cpu_has_avx2())
        return max_avx2(x, n);
#endif
    float m = x[0];
    for (int i = 1; i < n; i++)
        m = x[i] > m ? x[i] : m;
    return m;
}

float wd_vec_exp(float x)
{
#ifdef WD_X86
    if (wd_linear_cpu_has_avx2())
        return exp1_avx2(x);
#endif
    return expf(x);
}

/*
 * Fast CPU linear layer. Work layout:
 *  - tasks: contiguous row ranges (multiples of ROWS rows), claimed by the pool's threads;
 *  - inside a task: tiles of ROWS rows x CHUNK columns; each tile is read from memory once
 *    and then applied to every token while it is hot in L1;
 *  - n == 1 with BF16/F16/F32 weights: the tile is widened in registers right inside the
 *    dot products (the batch-1 decode case: pure streaming, nothing staged);
 *  - otherwise: non-F32 tiles are first widened (and fp8-dequantized) into a stack
 *    buffer, then every token runs the f32 dot products against that buffer.
 * The AVX2 versions are compiled with a target attribute and chosen at run time with
 * cpuid, so the library itself needs no -march flag; the portable versions are the
 * fallback and the definition of what the SIMD code computes.
 */
#include "kernels/linear_cpu.h"

#include <string.h>

#include "common/util/status.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define WD_X86 1
#endif

#define ROWS 4    /* rows per tile: 4 independent accumulators per token */
#define CHUNK 512 /* columns per tile: 4 x 512 f32 = 8 KiB staged, well inside L1 */
/* How far ahead of each streamed weight row the batch-1 kernels prefetch. With four rows
 * 8+ KiB apart the hardware prefetchers fall behind; measured on Zen 5 (4096^2 bf16):
 * 28 GB/s without, 33-38 GB/s at 1-4 KiB ahead. */
#define PREFETCH_BYTES 2048

struct linear_job {
    const struct wd_weight *w;
    const float *x;
    int64_t n;
    float *y;
    int64_t rows_per_task; /* multiple of ROWS */
    int is_avx2;
};

/* ---- portable kernels ---- */

/* End (tile-relative, <= k) of the run of columns from c that share one fp8 block scale. */
static int scale_run_end(const struct wd_weight *w, int64_t c0, int c, int k)
{
    if (!w->scale_inv)
        return k;
    int64_t end = ((w->col0 + c0 + c) / w->block_cols + 1) * w->block_cols - w->col0 - c0;
    return end < k ? (int)end : k;
}

/* Widens (and dequantizes) w[r0 .. r0+nr) x [c0, c0+k) into buf[nr][k]. */
static void stage_tile(const struct wd_weight *w, int64_t r0, int nr, int64_t c0, int k, float *buf)
{
    for (int i = 0; i < nr; i++) {
        int64_t r = r0 + i, base = r * wd_weight_ld(w) + c0;
        float *out = buf + (int64_t)i * k;
        switch (w->dtype) {
        case WD_DTYPE_F32:
            memcpy(out, (const float *)w->data + base, sizeof(float) * (size_t)k);
            break;
        case WD_DTYPE_BF16:
            for (int c = 0; c < k; c++)
                out[c] = wd_bf16_to_f32(((const uint16_t *)w->data)[base + c]);
            break;
        case WD_DTYPE_F16:
            for (int c = 0; c < k; c++)
                out[c] = wd_f16_to_f32(((const uint16_t *)w->data)[base + c]);
            break;
        default: { /* F8_E4M3: scale per (row block, column block), as wd_weight_get */
            const uint8_t *src = (const uint8_t *)w->data + base;
            for (int c = 0; c < k;) {
                float s = wd_weight_scale(w, r, c0 + c);
                int end = scale_run_end(w, c0, c, k);
                for (; c < end; c++)
                    out[c] = wd_e4m3_to_f32(src[c]) * s;
            }
            break;
        }
        }
    }
}

/* acc[i] += dot(rows[i], x) for nr rows of length k (row stride ld floats). Eight partial
 * sums per row are independent lanes, which the compiler turns into SIMD adds on any
 * target (a single running sum would be one serial chain of rounded adds). */
static void dot_rows_f32(const float *rows, int64_t ld, int nr, const float *x, int k, float *acc)
{
    for (int i = 0; i < nr; i++) {
        const float *r = rows + (int64_t)i * ld;
        float part[8] = {0};
        int c = 0;
        for (; c + 8 <= k; c += 8)
            for (int j = 0; j < 8; j++)
                part[j] += r[c + j] * x[c + j];
        float s = ((part[0] + part[4]) + (part[1] + part[5])) +
                  ((part[2] + part[6]) + (part[3] + part[7]));
        for (; c < k; c++)
            s += r[c] * x[c];
        acc[i] += s;
    }
}

/* ---- AVX2 / FMA / F16C kernels ---- */
#ifdef WD_X86
#define WD_AVX2 __attribute__((target("avx2,fma,f16c")))

WD_AVX2 static inline float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

WD_AVX2 static inline __m256 load_bf16x8(const uint16_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

WD_AVX2 static inline __m256 load_f16x8(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* e4m3 -> f32 exactly: the 7 magnitude bits shifted left by 7 are an f16 with the
 * same mantissa and an exponent 8 smaller (bias 15 vs 7), so f16->f32 then x256 is
 * exact for normals and subnormals alike; the NaN pattern (0x7f) is forced to f16 NaN. */
WD_AVX2 static inline __m256 load_e4m3x8(const uint8_t *p)
{
    __m128i b = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)p));
    __m128i mag = _mm_and_si128(b, _mm_set1_epi16(0x7f));
    __m128i h = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x80)), 8),
                             _mm_slli_epi16(mag, 7));
    __m128i nan = _mm_cmpeq_epi16(mag, _mm_set1_epi16(0x7f));
    h = _mm_or_si128(h, _mm_and_si128(nan, _mm_set1_epi16(0x7e00)));
    return _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_set1_ps(256.0f));
}

WD_AVX2 static void stage_tile_avx2(const struct wd_weight *w, int64_t r0, int nr, int64_t c0,
                                    int k, float *buf)
{
    if (w->dtype == WD_DTYPE_F32) {
        stage_tile(w, r0, nr, c0, k, buf);
        return;
    }
    for (int i = 0; i < nr; i++) {
        int64_t r = r0 + i, base = r * wd_weight_ld(w) + c0;
        float *out = buf + (int64_t)i * k;
        int c = 0;
        if (w->dtype == WD_DTYPE_BF16) {
            const uint16_t *src = (const uint16_t *)w->data + base;
            for (; c + 8 <= k; c += 8)
                _mm256_storeu_ps(out + c, load_bf16x8(src + c));
            for (; c < k; c++)
                out[c] = wd_bf16_to_f32(src[c]);
        } else if (w->dtype == WD_DTYPE_F16) {
            const uint16_t *src = (const uint16_t *)w->data + base;
            for (; c + 8 <= k; c += 8)
                _mm256_storeu_ps(out + c, load_f16x8(src + c));
            for (; c < k; c++)
                out[c] = wd_f16_to_f32(src[c]);
        } else {
            const uint8_t *src = (const uint8_t *)w->data + base;
            while (c < k) {
                float s = wd_weight_scale(w, r, c0 + c);
                int end = scale_run_end(w, c0, c, k);
                __m256 sv = _mm256_set1_ps(s);
                for (; c + 8 <= end; c += 8)
                    _mm256_storeu_ps(out + c, _mm256_mul_ps(load_e4m3x8(src + c), sv));
                for (; c < end; c++)
                    out[c] = wd_e4m3_to_f32(src[c]) * s;
            }
        }
    }
}

/* acc[i] += dot(rows[i], x) over k columns for up to 4 f32 rows with stride ld. */
WD_AVX2 static void dot_rows_f32_avx2(const float *rows, int64_t ld, int nr, const float *x, int k,
                                      float *acc)
{
    if (nr != ROWS) {
        for (int i = 0; i < nr; i++) {
            const float *r = rows + (int64_t)i * ld;
            __m256 a = _mm256_setzero_ps();
            int c = 0;
            for (; c + 8 <= k; c += 8)
                a = _mm256_fmadd_ps(_mm256_loadu_ps(r + c), _mm256_loadu_ps(x + c), a);
            float s = hsum256(a);
            for (; c < k; c++)
                s += r[c] * x[c];
            acc[i] += s;
        }
        return;
    }
    const float *r0 = rows, *r1 = rows + ld, *r2 = rows + 2 * ld, *r3 = rows + 3 * ld;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int c = 0;
    for (; c + 8 <= k; c += 8) {
        __m256 xv = _mm256_loadu_ps(x + c);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(r0 + c), xv, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(r1 + c), xv, a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(r2 + c), xv, a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(r3 + c), xv, a3);
    }
    float s0 = hsum256(a0), s1 = hsum256(a1), s2 = hsum256(a2), s3 = hsum256(a3);
    for (; c < k; c++) {
        s0 += r0[c] * x[c];
        s1 += r1[c] * x[c];
        s2 += r2[c] * x[c];
        s3 += r3[c] * x[c];
    }
    acc[0] += s0;
    acc[1] += s1;
    acc[2] += s2;
    acc[3] += s3;
}

/* Two tokens against 4 f32 rows: 8 independent FMA chains (one per row and token) keep
 * both FMA pipes busy, where one token's 4 chains are bound by the FMA latency. */
WD_AVX2 static void dot_rows4_f32_x2_avx2(const float *rows, int64_t ld, const float *x0,
                                          const float *x1, int k, float *acc0, float *acc1)
{
    const float *r0 = rows, *r1 = rows + ld, *r2 = rows + 2 * ld, *r3 = rows + 3 * ld;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    int c = 0;
    for (; c + 8 <= k; c += 8) {
        __m256 xa = _mm256_loadu_ps(x0 + c), xb = _mm256_loadu_ps(x1 + c), w;
        w = _mm256_loadu_ps(r0 + c);
        a0 = _mm256_fmadd_ps(w, xa, a0);
        b0 = _mm256_fmadd_ps(w, xb, b0);
        w = _mm256_loadu_ps(r1 + c);
        a1 = _mm256_fmadd_ps(w, xa, a1);
        b1 = _mm256_fmadd_ps(w, xb, b1);
        w = _mm256_loadu_ps(r2 + c);
        a2 = _mm256_fmadd_ps(w, xa, a2);
        b2 = _mm256_fmadd_ps(w, xb, b2);
        w = _mm256_loadu_ps(r3 + c);
        a3 = _mm256_fmadd_ps(w, xa, a3);
        b3 = _mm256_fmadd_ps(w, xb, b3);
    }
    float sa[4] = {hsum256(a0), hsum256(a1), hsum256(a2), hsum256(a3)};
    float sb[4] = {hsum256(b0), hsum256(b1), hsum256(b2), hsum256(b3)};
    for (; c < k; c++)
        for (int i = 0; i < 4; i++) {
            sa[i] += rows[i * ld + c] * x0[c];
            sb[i] += rows[i * ld + c] * x1[c];
        }
    for (int i = 0; i < 4; i++) {
        acc0[i] += sa[i];
        acc1[i] += sb[i];
    }
}

/* Batch-1 BF16 kernel for 4 rows. A 32-byte load holds 16 bf16 weights as 8 u32 pairs:
 * shifting each u32 left by 16 gives the even-index weights as f32, masking its low
 * half gives the odd ones - two plain ALU ops instead of the lane-crossing widening,
 * which is what limited the straightforward loop to about half the memory bandwidth.
 * x is split into its even and odd columns once per 16 columns and shared by the rows. */
WD_AVX2 static void matvec_rows4_bf16_avx2(const uint16_t *w, int64_t ld, int64_t cols,
                                           const float *x, float *y)
{
    const uint16_t *p0 = w, *p1 = w + ld, *p2 = w + 2 * ld, *p3 = w + 3 * ld;
    const __m256i hi_mask = _mm256_set1_epi32((int)0xffff0000u);
    __m256 e0 = _mm256_setzero_ps(), e1 = e0, e2 = e0, e3 = e0, o0 = e0, o1 = e0, o2 = e0, o3 = e0;
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) {
        __m256 xa = _mm256_loadu_ps(x + c), xb = _mm256_loadu_ps(x + c + 8);
        /* [x0 x2 x8 x10 | x4 x6 x12 x14] -> 64-bit chunks (0, 2, 1, 3) -> x0 x2 ... x14 */
        __m256 xe = _mm256_castpd_ps(_mm256_permute4x64_pd(
            _mm256_castps_pd(_mm256_shuffle_ps(xa, xb, _MM_SHUFFLE(2, 0, 2, 0))), 0xd8));
        __m256 xo = _mm256_castpd_ps(_mm256_permute4x64_pd(
            _mm256_castps_pd(_mm256_shuffle_ps(xa, xb, _MM_SHUFFLE(3, 1, 3, 1))), 0xd8));
        __m256i v;
        _mm_prefetch((const char *)(p0 + c) + PREFETCH_BYTES, _MM_HINT_T0);
        _mm_prefetch((const char *)(p1 + c) + PREFETCH_BYTES, _MM_HINT_T0);
        _mm_prefetch((const char *)(p2 + c) + PREFETCH_BYTES, _MM_HINT_T0);
        _mm_prefetch((const char *)(p3 + c) + PREFETCH_BYTES, _MM_HINT_T0);
#define WD_BF16_PAIR(p, e, o)                                                                      \
    v = _mm256_loadu_si256((const __m256i *)((p) + c));                                            \
    e = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), xe, e);                     \
    o = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v, hi_mask)), xo, o)
        WD_BF16_PAIR(p0, e0, o0);
        WD_BF16_PAIR(p1, e1, o1);
        WD_BF16_PAIR(p2, e2, o2);
        WD_BF16_PAIR(p3, e3, o3);
#undef WD_BF16_PAIR
    }
    float s[4] = {hsum256(_mm256_add_ps(e0, o0)), hsum256(_mm256_add_ps(e1, o1)),
                  hsum256(_mm256_add_ps(e2, o2)), hsum256(_mm256_add_ps(e3, o3))};
    const uint16_t *p[4] = {p0, p1, p2, p3};
    for (; c < cols; c++)
        for (int i = 0; i < 4; i++)
            s[i] += wd_bf16_to_f32(p[i][c]) * x[c];
    memcpy(y, s, sizeof(s));
}

/* Batch-1 fused kernel: y[r] = dot(W[r], x) over all columns for up to 4 BF16/F16 rows,
 * widening in registers. Two accumulators per row hide the FMA latency. */
WD_AVX2 static void matvec_rows_16_avx2(const uint16_t *w, int64_t ld, int64_t cols, int nr,
                                        int is_bf16, const float *x, float *y)
{
    for (int i0 = 0; i0 < nr; i0 += 2) {
        int two = i0 + 1 < nr;
        const uint16_t *p0 = w + (int64_t)i0 * ld, *p1 = two ? p0 + ld : p0;
        __m256 a0 = _mm256_setzero_ps(), b0 = a0, a1 = a0, b1 = a0;
        int64_t c = 0;
        if (is_bf16) {
            for (; c + 16 <= cols; c += 16) {
                _mm_prefetch((const char *)(p0 + c) + PREFETCH_BYTES, _MM_HINT_T0);
                _mm_prefetch((const char *)(p1 + c) + PREFETCH_BYTES, _MM_HINT_T0);
                __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + 8);
                a0 = _mm256_fmadd_ps(load_bf16x8(p0 + c), x0, a0);
                b0 = _mm256_fmadd_ps(load_bf16x8(p0 + c + 8), x1, b0);
                a1 = _mm256_fmadd_ps(load_bf16x8(p1 + c), x0, a1);
                b1 = _mm256_fmadd_ps(load_bf16x8(p1 + c + 8), x1, b1);
            }
        } else {
            for (; c + 16 <= cols; c += 16) {
                _mm_prefetch((const char *)(p0 + c) + PREFETCH_BYTES, _MM_HINT_T0);
                _mm_prefetch((const char *)(p1 + c) + PREFETCH_BYTES, _MM_HINT_T0);
                __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + 8);
                a0 = _mm256_fmadd_ps(load_f16x8(p0 + c), x0, a0);
                b0 = _mm256_fmadd_ps(load_f16x8(p0 + c + 8), x1, b0);
                a1 = _mm256_fmadd_ps(load_f16x8(p1 + c), x0, a1);
                b1 = _mm256_fmadd_ps(load_f16x8(p1 + c + 8), x1, b1);
            }
        }
        float s0 = hsum256(_mm256_add_ps(a0, b0)), s1 = hsum256(_mm256_add_ps(a1, b1));
        for (; c < cols; c++) {
            float xc = x[c];
            s0 += (is_bf16 ? wd_bf16_to_f32(p0[c]) : wd_f16_to_f32(p0[c])) * xc;
            s1 += (is_bf16 ? wd_bf16_to_f32(p1[c]) : wd_f16_to_f32(p1[c])) * xc;
        }
        y[i0] = s0;
        if (two)
            y[i0 + 1] = s1;
    }
}
#endif /* WD_X86 */

int wd_linear_cpu_has_avx2(void)
{
#ifdef WD_X86
    /* F16C is read from cpuid leaf 1 (ECX bit 29): clang's __builtin_cpu_supports does
     * not know "f16c". Every CPU with AVX2 has it, but say so rather than assume. */
    unsigned a, b, c, d;
    int f16c = __get_cpuid(1, &a, &b, &c, &d) && ((c >> 29) & 1);
    return f16c && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* Rows [r0, r0 + nr) for all tokens. */
static void linear_tile(const struct linear_job *job, int64_t r0, int nr, float *buf)
{
    const struct wd_weight *w = job->w;
    int64_t cols = w->cols, rows = w->rows;
    float acc[ROWS];

#ifdef WD_X86
    /* 16-bit weights: the fused matvec for every token, so a token's dot products are
     * summed in the same order whatever the batch holds (a request's logits do not depend
     * on its neighbours). The 4-row tile stays in L1 across the tokens of a prefill. */
    if (job->is_avx2 && (w->dtype == WD_DTYPE_BF16 || w->dtype == WD_DTYPE_F16)) {
        const uint16_t *tile = (const uint16_t *)w->data + r0 * wd_weight_ld(w);
        for (int64_t t = 0; t < job->n; t++) {
            const float *xt = job->x + t * cols;
            if (nr == ROWS && w->dtype == WD_DTYPE_BF16)
                matvec_rows4_bf16_avx2(tile, wd_weight_ld(w), cols, xt, acc);
            else
                matvec_rows_16_avx2(tile, wd_weight_ld(w), cols, nr, w->dtype == WD_DTYPE_BF16, xt,
                                    acc);
            memcpy(job->y + t * rows + r0, acc, sizeof(float) * (size_t)nr);
        }
        return;
    }
#endif
    for (int64_t c0 = 0; c0 < cols; c0 += CHUNK) {
        int k = (int)(cols - c0 < CHUNK ? cols - c0 : CHUNK);
        const float *tile;
        int64_t ld;
        if (w->dtype == WD_DTYPE_F32) { /* already f32: use the weight memory in place */
            tile = (const float *)w->data + r0 * wd_weight_ld(w) + c0;
            ld = wd_weight_ld(w);
        } else {
#ifdef WD_X86
            if (job->is_avx2)
                stage_tile_avx2(w, r0, nr, c0, k, buf);
            else
#endif
                stage_tile(w, r0, nr, c0, k, buf);
            tile = buf;
            ld = k;
        }
        int64_t t = 0;
#ifdef WD_X86
        if (job->is_avx2 && nr == ROWS) {
            for (; t + 2 <= job->n; t += 2) {
                float *ya = job->y + t * rows + r0, *yb = ya + rows, acc_b[ROWS];
                for (int i = 0; i < ROWS; i++) {
                    acc[i] = c0 == 0 ? 0.0f : ya[i];
                    acc_b[i] = c0 == 0 ? 0.0f : yb[i];
                }
                const float *xa = job->x + t * cols + c0;
                dot_rows4_f32_x2_avx2(tile, ld, xa, xa + cols, k, acc, acc_b);
                memcpy(ya, acc, sizeof(acc));
                memcpy(yb, acc_b, sizeof(acc_b));
            }
        }
#endif
        for (; t < job->n; t++) {
            float *yt = job->y + t * rows + r0;
            for (int i = 0; i < nr; i++)
                acc[i] = c0 == 0 ? 0.0f : yt[i];
#ifdef WD_X86
            if (job->is_avx2)
                dot_rows_f32_avx2(tile, ld, nr, job->x + t * cols + c0, k, acc);
            else
#endif
                dot_rows_f32(tile, ld, nr, job->x + t * cols + c0, k, acc);
            memcpy(yt, acc, sizeof(float) * (size_t)nr);
        }
    }
}

static void linear_task(void *arg, int idx, int n_tasks)
{
    const struct linear_job *job = arg;
    float buf[ROWS * CHUNK];
    int64_t r_begin = idx * job->rows_per_task;
    int64_t r_end = idx == n_tasks - 1 ? job->w->rows : r_begin + job->rows_per_task;
    for (int64_t r = r_begin; r < r_end; r += ROWS)
        linear_tile(job, r, (int)(r_end - r < ROWS ? r_end - r : ROWS), buf);
}

static void linear_run(const struct wd_weight *w, const float *x, int64_t n, float *y,
                       struct wd_threadpool *tp, int is_avx2)
{
    WD_ASSERT(w->dtype == WD_DTYPE_F32 || w->dtype == WD_DTYPE_F16 || w->dtype == WD_DTYPE_BF16 ||
              w->dtype == WD_DTYPE_F8_E4M3);
    if (n <= 0 || w->rows <= 0)
        return;
    if (w->cols == 0) {
        memset(y, 0, sizeof(float) * (size_t)(n * w->rows));
        return;
    }
    /* A few tasks per thread balance a shared machine; each task keeps >= 4 tiles so a
     * claim is amortized over at least 16 * cols weights. */
    int64_t n_tiles = (w->rows + ROWS - 1) / ROWS;
    int64_t n_tasks = (int64_t)wd_threadpool_size(tp) * 4;
    if (n_tasks > (n_tiles + 3) / 4)
        n_tasks = (n_tiles + 3) / 4;
    if (n_tasks < 1)
        n_tasks = 1;
    struct linear_job job = {.w = w,
                             .x = x,
                             .n = n,
                             .y = y,
                             .rows_per_task = (n_tiles + n_tasks - 1) / n_tasks * ROWS,
                             .is_avx2 = is_avx2};
    n_tasks = (w->rows + job.rows_per_task - 1) / job.rows_per_task;
    wd_threadpool_run(tp, linear_task, &job, (int)n_tasks);
}

void wd_linear_cpu(const struct wd_weight *w, const float *x, int64_t n, float *y,
                   struct wd_threadpool *tp)
{
    linear_run(w, x, n, y, tp, wd_linear_cpu_has_avx2());
}

void wd_linear_cpu_portable(const struct wd_weight *w, const float *x, int64_t n, float *y,
                            struct wd_threadpool *tp)
{
    linear_run(w, x, n, y, tp, 0);
}

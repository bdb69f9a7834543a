/*
 * Fast CPU linear layer.
 *
 * Reduction order of the AVX2 path, the same for every output y[t][r] whatever the batch,
 * the thread count or the kernel that computes it: eight fp32 lanes, lane j one FMA chain
 * over the columns j, j + 8, j + 16, ... (ascending, up to the last full group of 8); the
 * lanes summed by one fixed tree (hsum8); then the last cols % 8 columns added one by one
 * with fmaf. So the batch-1 matrix-vector kernel and the GEMM micro-kernels are
 * interchangeable, and a token's results never depend on its neighbours in the batch.
 *
 * Work layout:
 *  - tasks: contiguous row ranges (multiples of ROWS rows) claimed by the pool's threads;
 *  - one token with BF16/F16 weights (decode): rows are widened in registers straight from
 *    the weight memory, one after another (one linear stream, prefetched ahead: the cost
 *    is reading W, nothing is staged);
 *  - up to DIRECT_MAX tokens with BF16/F16 weights (a batched decode's experts see ~4):
 *    the same, two rows at a time against groups of up to 4 tokens (8 chains in registers);
 *  - otherwise (a GEMM: prefill, large batches, F32 and FP8 weights): blocks of RB rows x KB
 *    columns are widened (fp8: dequantized) once into an L1 buffer (F32 weights are used
 *    in place); a 4-row x 3-token micro-kernel runs every row group of the block against
 *    three tokens at a time, so those tokens' columns stay in L1 and the token block (up to
 *    TB tokens) in L2. Its 12 accumulators are the 8-lane chains above, parked in a small
 *    buffer between column blocks, so K may be any length. Measured on a 2-core Zen 3
 *    (one thread, 512 x 1024 bf16 x 64 tokens): 60-65 GFLOP/s, the FMA peak being 95
 *    and OpenBLAS's sgemm on the same widened tiles 60-70 (it cannot keep the order above,
 *    which the batch-1 kernel has to share).
 * The AVX2 versions are compiled with a target attribute and chosen at run time with
 * cpuid, so the library itself needs no -march flag. The portable versions are the
 * fallback; they stage CHUNK columns and sum per chunk, a different (also fixed) order.
 */
#include "kernels/linear_cpu.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/util/status.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define WD_X86 1
#endif

#define ROWS 4                /* rows per tile */
#define CHUNK 512             /* portable path: columns per staged tile */
#define RB 8                  /* AVX2 GEMM: rows per staged block */
#define KB 512                /* ... and columns (8 x 512 f32 = 16 KiB, half of L1) */
#define TB 96                 /* ... most tokens per block (a multiple of 3) */
#define TB_FLOATS (64 * 1024) /* ... and at most this many x floats per block (256 KiB, L2) */
/* Prefetching. Batch 1 reads the rows of a task one after another, one linear stream, with
 * a software prefetch PREFETCH_ROW bytes ahead. Measured on a 2-core Zen 3, one thread, 512
 * MiB of 1024-column bf16 rows, as a fraction of the read-only bandwidth: 4 rows at a time
 * with a fixed 2 KiB prefetch 0.60-0.66, the same prefetching one 4-row tile ahead 0.67-0.74,
 * two rows 0.64-0.69, one row (a single stream) 0.73-0.87. Splitting a row's sum into two
 * chains (another order) measured no faster: the one FMA chain is not what limits it. The
 * batch-1 prefetch is non-temporal: a decode step reads every weight once, and keeping them
 * out of L2/L3 measured 1.5-2.8% more decode tokens/s on both mid models (steps of the two
 * hints alternated in one run); with no software prefetch it is 18-20% slower. The GEMM
 * staging reads RB rows in column blocks and prefetches the next block's rows. */
#define PREFETCH_ROW 8192
/* Most tokens the direct kernels (no staging) take; more go through the staged GEMM.
 * Measured on a 2-core Zen 3, one thread, 64 experts of 512 x 1024 bf16 read cold (batched
 * decode), ms per expert, direct vs staged: n=2 0.084 / 0.119, n=4 0.095 / 0.151, n=8
 * 0.161 / 0.190, n=12 0.229 / 0.249, n=14-16 equal. From L2/L3 the staged GEMM wins from
 * n=5, but a batched decode step reads each expert once, from memory. */
#define DIRECT_MAX 12
/* Least weight bytes per task: about 10 us of a batch-1 stream on one core. A matrix of
 * less than TASK_MIN_BYTES per thread but at least SPLIT_MIN_BYTES (a MoE router, 64-128
 * rows) is still split over the threads: run on one, the other waits for it. */
#define TASK_MIN_BYTES (128 * 1024)
#define SPLIT_MIN_BYTES (32 * 1024)

struct linear_job {
    const struct wd_weight *w;
    const float *x;
    int64_t ldx; /* floats between token rows of x (>= cols) */
    int64_t n;
    float *y;
    int64_t ldy; /* floats between token rows of y (>= rows) */
    int is_avx2;
};

/* A job cut into pool tasks: task i takes rows [bounds[i], bounds[i + 1]). */
struct linear_plan {
    struct linear_job job;
    int64_t bounds[WD_GUIDED_MAX_TASKS + 1];
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

/* Rows [r0, r0 + nr) for all tokens, portable: per CHUNK columns, stage then dot. */
static void tile_portable(const struct linear_job *job, int64_t r0, int nr, float *buf)
{
    const struct wd_weight *w = job->w;
    int64_t cols = w->cols;
    float acc[ROWS];
    for (int64_t c0 = 0; c0 < cols; c0 += CHUNK) {
        int k = (int)(cols - c0 < CHUNK ? cols - c0 : CHUNK);
        const float *tile = buf;
        int64_t ld = k;
        if (w->dtype == WD_DTYPE_F32) { /* already f32: use the weight memory in place */
            tile = (const float *)w->data + r0 * wd_weight_ld(w) + c0;
            ld = wd_weight_ld(w);
        } else {
            stage_tile(w, r0, nr, c0, k, buf);
        }
        for (int64_t t = 0; t < job->n; t++) {
            float *yt = job->y + t * job->ldy + r0;
            for (int i = 0; i < nr; i++)
                acc[i] = c0 == 0 ? 0.0f : yt[i];
            dot_rows_f32(tile, ld, nr, job->x + t * job->ldx + c0, k, acc);
            memcpy(yt, acc, sizeof(float) * (size_t)nr);
        }
    }
}

/* ---- AVX2 / FMA / F16C kernels ---- */
#ifdef WD_X86
#define WD_AVX2 __attribute__((target("avx2,fma,f16c")))

/* The fixed lane tree: ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)). */
WD_AVX2 static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* hsum8 of four vectors at once, lane r of the result for a_r: the same additions in the
 * same tree (lane pairs k, k + 4 first, then (0 + 2) + (1 + 3)), transposed. */
WD_AVX2 static inline __m128 hsum8x4(__m256 a0, __m256 a1, __m256 a2, __m256 a3)
{
    __m128 h0 = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
    __m128 h1 = _mm_add_ps(_mm256_castps256_ps128(a1), _mm256_extractf128_ps(a1, 1));
    __m128 h2 = _mm_add_ps(_mm256_castps256_ps128(a2), _mm256_extractf128_ps(a2, 1));
    __m128 h3 = _mm_add_ps(_mm256_castps256_ps128(a3), _mm256_extractf128_ps(a3, 1));
    __m128 t0 = _mm_unpacklo_ps(h0, h1), t1 = _mm_unpackhi_ps(h0, h1);
    __m128 t2 = _mm_unpacklo_ps(h2, h3), t3 = _mm_unpackhi_ps(h2, h3);
    __m128 c0 = _mm_movelh_ps(t0, t2), c1 = _mm_movehl_ps(t2, t0);
    __m128 c2 = _mm_movelh_ps(t1, t3), c3 = _mm_movehl_ps(t3, t1);
    return _mm_add_ps(_mm_add_ps(c0, c2), _mm_add_ps(c1, c3));
}

WD_AVX2 static inline __m256 load_bf16x8(const uint16_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* 16 bf16 as two f32 vectors (columns 0-7, 8-15) from one 32-byte load: the 64-bit quarters
 * reordered (0, 2, 1, 3) so that the in-lane unpacks with zero land in column order. Fewer,
 * wider loads than two load_bf16x8: measured 0.81-0.85 of the read-only bandwidth on one
 * thread against 0.73-0.80 (Zen 3, 512 MiB of rows, 128 bytes per loop). */
WD_AVX2 static inline void load_bf16x16(const uint16_t *p, __m256 *lo, __m256 *hi)
{
    __m256i v = _mm256_permute4x64_epi64(_mm256_loadu_si256((const __m256i *)p), 0xd8);
    *lo = _mm256_castsi256_ps(_mm256_unpacklo_epi16(_mm256_setzero_si256(), v));
    *hi = _mm256_castsi256_ps(_mm256_unpackhi_epi16(_mm256_setzero_si256(), v));
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

/* Widens w[r0 .. r0+nr) x [c0, c0+k) into buf[nr][k] (k a multiple of 8), prefetching the
 * next block's rows: a GEMM over a few tokens (batched decode) still streams W. */
WD_AVX2 static void stage_avx2(const struct wd_weight *w, int64_t r0, int nr, int64_t c0, int k,
                               float *buf)
{
    int64_t ahead = RB * wd_weight_ld(w) * (int64_t)wd_dtype_size(w->dtype); /* next block */
    for (int i = 0; i < nr; i++) {
        int64_t r = r0 + i, base = r * wd_weight_ld(w) + c0;
        float *out = buf + (int64_t)i * k;
        int c = 0;
        if (w->dtype == WD_DTYPE_BF16) {
            const uint16_t *src = (const uint16_t *)w->data + base;
            __m256 lo, hi;
            for (; c + 32 <= k; c += 32) {
                _mm_prefetch((const char *)(src + c) + ahead, _MM_HINT_T0);
                load_bf16x16(src + c, &lo, &hi);
                _mm256_storeu_ps(out + c, lo);
                _mm256_storeu_ps(out + c + 8, hi);
                load_bf16x16(src + c + 16, &lo, &hi);
                _mm256_storeu_ps(out + c + 16, lo);
                _mm256_storeu_ps(out + c + 24, hi);
            }
            for (; c < k; c += 8)
                _mm256_storeu_ps(out + c, load_bf16x8(src + c));
        } else if (w->dtype == WD_DTYPE_F16) {
            const uint16_t *src = (const uint16_t *)w->data + base;
            for (; c < k; c += 8) {
                if (c % 32 == 0)
                    _mm_prefetch((const char *)(src + c) + ahead, _MM_HINT_T0);
                _mm256_storeu_ps(out + c, load_f16x8(src + c));
            }
        } else {
            const uint8_t *src = (const uint8_t *)w->data + base;
            while (c < k) {
                float s = wd_weight_scale(w, r, c0 + c);
                int end = scale_run_end(w, c0, c, k);
                __m256 sv = _mm256_set1_ps(s);
                if (c % 64 == 0)
                    _mm_prefetch((const char *)(src + c) + ahead, _MM_HINT_T0);
                for (; c + 8 <= end; c += 8)
                    _mm256_storeu_ps(out + c, _mm256_mul_ps(load_e4m3x8(src + c), sv));
                for (; c < end; c++) /* a scale block boundary inside a group of 8 */
                    out[c] = wd_e4m3_to_f32(src[c]) * s;
            }
        }
    }
}

/* v, forced into a register: an empty asm that claims to change it. Otherwise GCC folds a
 * weight load into each FMA that uses it (it does for the 4x2 shape), doubling the loads,
 * and the kernel becomes load-bound: measured 1.7x slower for 4 tokens. */
WD_AVX2 static inline __m256 in_register(__m256 v)
{
    __asm__("" : "+x"(v));
    return v;
}

/* The 4x3 GEMM micro-kernel: acc[t][i] (8 lanes each, token stride 32 floats) continues the
 * chains of rows w[i] (stride ldw) against tokens x[t] (stride ldx) over k columns (a
 * multiple of 8). Per 8 columns: 4 weight and 3 token loads feed 12 independent FMAs. */
WD_AVX2 static void gemm_4x3(const float *w, int64_t ldw, const float *x, int64_t ldx, int k,
                             float *acc, int64_t ts)
{
    const float *w0 = w, *w1 = w + ldw, *w2 = w + 2 * ldw, *w3 = w + 3 * ldw;
    const float *x0 = x, *x1 = x + ldx, *x2 = x + 2 * ldx;
    __m256 a00 = _mm256_loadu_ps(acc), a10 = _mm256_loadu_ps(acc + 8);
    __m256 a20 = _mm256_loadu_ps(acc + 16), a30 = _mm256_loadu_ps(acc + 24);
    __m256 a01 = _mm256_loadu_ps(acc + ts), a11 = _mm256_loadu_ps(acc + ts + 8);
    __m256 a21 = _mm256_loadu_ps(acc + ts + 16), a31 = _mm256_loadu_ps(acc + ts + 24);
    __m256 a02 = _mm256_loadu_ps(acc + 2 * ts), a12 = _mm256_loadu_ps(acc + 2 * ts + 8);
    __m256 a22 = _mm256_loadu_ps(acc + 2 * ts + 16), a32 = _mm256_loadu_ps(acc + 2 * ts + 24);
    for (int c = 0; c < k; c += 8) {
        __m256 xa = _mm256_loadu_ps(x0 + c), xb = _mm256_loadu_ps(x1 + c);
        __m256 xc = _mm256_loadu_ps(x2 + c), v;
        v = in_register(_mm256_loadu_ps(w0 + c));
        a00 = _mm256_fmadd_ps(v, xa, a00);
        a01 = _mm256_fmadd_ps(v, xb, a01);
        a02 = _mm256_fmadd_ps(v, xc, a02);
        v = in_register(_mm256_loadu_ps(w1 + c));
        a10 = _mm256_fmadd_ps(v, xa, a10);
        a11 = _mm256_fmadd_ps(v, xb, a11);
        a12 = _mm256_fmadd_ps(v, xc, a12);
        v = in_register(_mm256_loadu_ps(w2 + c));
        a20 = _mm256_fmadd_ps(v, xa, a20);
        a21 = _mm256_fmadd_ps(v, xb, a21);
        a22 = _mm256_fmadd_ps(v, xc, a22);
        v = in_register(_mm256_loadu_ps(w3 + c));
        a30 = _mm256_fmadd_ps(v, xa, a30);
        a31 = _mm256_fmadd_ps(v, xb, a31);
        a32 = _mm256_fmadd_ps(v, xc, a32);
    }
    _mm256_storeu_ps(acc, a00);
    _mm256_storeu_ps(acc + 8, a10);
    _mm256_storeu_ps(acc + 16, a20);
    _mm256_storeu_ps(acc + 24, a30);
    _mm256_storeu_ps(acc + ts, a01);
    _mm256_storeu_ps(acc + ts + 8, a11);
    _mm256_storeu_ps(acc + ts + 16, a21);
    _mm256_storeu_ps(acc + ts + 24, a31);
    _mm256_storeu_ps(acc + 2 * ts, a02);
    _mm256_storeu_ps(acc + 2 * ts + 8, a12);
    _mm256_storeu_ps(acc + 2 * ts + 16, a22);
    _mm256_storeu_ps(acc + 2 * ts + 24, a32);
}

/* 4 rows x 2 tokens: the batched-decode case of a few tokens per expert (8 chains, where a
 * lone token's 4 are bound by the FMA latency). */
WD_AVX2 static void gemm_4x2(const float *w, int64_t ldw, const float *x, int64_t ldx, int k,
                             float *acc, int64_t ts)
{
    const float *w0 = w, *w1 = w + ldw, *w2 = w + 2 * ldw, *w3 = w + 3 * ldw, *x1 = x + ldx;
    __m256 a00 = _mm256_loadu_ps(acc), a10 = _mm256_loadu_ps(acc + 8);
    __m256 a20 = _mm256_loadu_ps(acc + 16), a30 = _mm256_loadu_ps(acc + 24);
    __m256 a01 = _mm256_loadu_ps(acc + ts), a11 = _mm256_loadu_ps(acc + ts + 8);
    __m256 a21 = _mm256_loadu_ps(acc + ts + 16), a31 = _mm256_loadu_ps(acc + ts + 24);
    for (int c = 0; c < k; c += 8) {
        __m256 xa = _mm256_loadu_ps(x + c), xb = _mm256_loadu_ps(x1 + c), v;
        v = in_register(_mm256_loadu_ps(w0 + c));
        a00 = _mm256_fmadd_ps(v, xa, a00);
        a01 = _mm256_fmadd_ps(v, xb, a01);
        v = in_register(_mm256_loadu_ps(w1 + c));
        a10 = _mm256_fmadd_ps(v, xa, a10);
        a11 = _mm256_fmadd_ps(v, xb, a11);
        v = in_register(_mm256_loadu_ps(w2 + c));
        a20 = _mm256_fmadd_ps(v, xa, a20);
        a21 = _mm256_fmadd_ps(v, xb, a21);
        v = in_register(_mm256_loadu_ps(w3 + c));
        a30 = _mm256_fmadd_ps(v, xa, a30);
        a31 = _mm256_fmadd_ps(v, xb, a31);
    }
    _mm256_storeu_ps(acc, a00);
    _mm256_storeu_ps(acc + 8, a10);
    _mm256_storeu_ps(acc + 16, a20);
    _mm256_storeu_ps(acc + 24, a30);
    _mm256_storeu_ps(acc + ts, a01);
    _mm256_storeu_ps(acc + ts + 8, a11);
    _mm256_storeu_ps(acc + ts + 16, a21);
    _mm256_storeu_ps(acc + ts + 24, a31);
}

/* The same for nr <= 4 rows and one token (acc[i], 8 lanes each). */
WD_AVX2 static void gemm_rx1(const float *w, int64_t ldw, int nr, const float *x, int k, float *acc)
{
    if (nr == ROWS) {
        const float *w0 = w, *w1 = w + ldw, *w2 = w + 2 * ldw, *w3 = w + 3 * ldw;
        __m256 a0 = _mm256_loadu_ps(acc), a1 = _mm256_loadu_ps(acc + 8);
        __m256 a2 = _mm256_loadu_ps(acc + 16), a3 = _mm256_loadu_ps(acc + 24);
        for (int c = 0; c < k; c += 8) {
            __m256 xv = _mm256_loadu_ps(x + c);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + c), xv, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + c), xv, a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + c), xv, a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + c), xv, a3);
        }
        _mm256_storeu_ps(acc, a0);
        _mm256_storeu_ps(acc + 8, a1);
        _mm256_storeu_ps(acc + 16, a2);
        _mm256_storeu_ps(acc + 24, a3);
        return;
    }
    for (int i = 0; i < nr; i++) {
        const float *wi = w + (int64_t)i * ldw;
        __m256 a = _mm256_loadu_ps(acc + 8 * i);
        for (int c = 0; c < k; c += 8)
            a = _mm256_fmadd_ps(_mm256_loadu_ps(wi + c), _mm256_loadu_ps(x + c), a);
        _mm256_storeu_ps(acc + 8 * i, a);
    }
}

/* Batch-1 kernel: the chain of one BF16/F16 row over k8 columns (a multiple of 8), widened
 * in registers straight from memory. Rows are taken one after another, so a tile is read
 * as one linear stream (rows are contiguous), prefetched PREFETCH_ROW bytes ahead. */
WD_AVX2 static __m256 matvec_row(const uint16_t *p, int64_t k8, int is_bf16, const float *x)
{
    __m256 a = _mm256_setzero_ps(), lo, hi;
    int64_t c = 0;
    if (is_bf16) {
        for (; c + 64 <= k8; c += 64) { /* 128 bytes: two lines, four 32-byte loads */
            _mm_prefetch((const char *)(p + c) + PREFETCH_ROW, _MM_HINT_NTA);
            _mm_prefetch((const char *)(p + c) + PREFETCH_ROW + 64, _MM_HINT_NTA);
            for (int j = 0; j < 64; j += 16) {
                load_bf16x16(p + c + j, &lo, &hi);
                a = _mm256_fmadd_ps(lo, _mm256_loadu_ps(x + c + j), a);
                a = _mm256_fmadd_ps(hi, _mm256_loadu_ps(x + c + j + 8), a);
            }
        }
        for (; c < k8; c += 8)
            a = _mm256_fmadd_ps(load_bf16x8(p + c), _mm256_loadu_ps(x + c), a);
        return a;
    }
    for (; c < k8; c += 8) {
        if (c % 32 == 0)
            _mm_prefetch((const char *)(p + c) + PREFETCH_ROW, _MM_HINT_NTA);
        a = _mm256_fmadd_ps(load_f16x8(p + c), _mm256_loadu_ps(x + c), a);
    }
    return a;
}

/* A few tokens (batched decode's experts: ~4 tokens each): R rows x T tokens widened in
 * registers straight from the BF16/F16 weight memory, as the batch-1 kernel does, with
 * R * T chains. acc[(i * T + t) * 8]: the 8 lanes of row i, token t. Always inlined with
 * constant R and T: only fully unrolled loops (the pragmas) keep a[][] in registers; rolled,
 * GCC keeps it on the stack and the kernel runs at half speed. */
__attribute__((always_inline)) WD_AVX2 static inline void direct_rxt(const uint16_t *w, int64_t ldw,
                                                                     int R, int T, int is_bf16,
                                                                     const float *x, int64_t ldx,
                                                                     int64_t k8, float *acc)
{
    __m256 a[2][4], lo[2], hi[2];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            a[i][t] = _mm256_setzero_ps();
    int64_t c = 0;
    if (is_bf16) {
        for (; c + 16 <= k8; c += 16) {
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) {
                if (c % 32 == 0)
                    _mm_prefetch((const char *)(w + i * ldw + c) + PREFETCH_ROW, _MM_HINT_T0);
                load_bf16x16(w + i * ldw + c, &lo[i], &hi[i]);
            }
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                __m256 xl = _mm256_loadu_ps(x + t * ldx + c);
#pragma GCC unroll 4
                for (int i = 0; i < R; i++)
                    a[i][t] = _mm256_fmadd_ps(lo[i], xl, a[i][t]);
            }
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                __m256 xh = _mm256_loadu_ps(x + t * ldx + c + 8);
#pragma GCC unroll 4
                for (int i = 0; i < R; i++)
                    a[i][t] = _mm256_fmadd_ps(hi[i], xh, a[i][t]);
            }
        }
    }
    for (; c < k8; c += 8) {
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            if (!is_bf16 && c % 32 == 0)
                _mm_prefetch((const char *)(w + i * ldw + c) + PREFETCH_ROW, _MM_HINT_T0);
            lo[i] = is_bf16 ? load_bf16x8(w + i * ldw + c) : load_f16x8(w + i * ldw + c);
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            __m256 xv = _mm256_loadu_ps(x + t * ldx + c);
#pragma GCC unroll 4
            for (int i = 0; i < R; i++)
                a[i][t] = _mm256_fmadd_ps(lo[i], xv, a[i][t]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            _mm256_storeu_ps(acc + (i * T + t) * 8, a[i][t]);
}

/* Two rows (two streams) x T = 1-4 tokens: one constant-shape instance per T. */
WD_AVX2 static void direct_2xt(const uint16_t *w, int64_t ldw, int T, int is_bf16, const float *x,
                               int64_t ldx, int64_t k8, float *acc)
{
    switch (T) {
    case 4:
        direct_rxt(w, ldw, 2, 4, is_bf16, x, ldx, k8, acc);
        break;
    case 3:
        direct_rxt(w, ldw, 2, 3, is_bf16, x, ldx, k8, acc);
        break;
    case 2:
        direct_rxt(w, ldw, 2, 2, is_bf16, x, ldx, k8, acc);
        break;
    default:
        direct_rxt(w, ldw, 2, 1, is_bf16, x, ldx, k8, acc);
        break;
    }
}

/* y = hsum8(acc) + the tail columns [k8, cols) of row r against x, one fmaf each. */
WD_AVX2 static inline float finish(const struct wd_weight *w, int64_t r, const float *acc,
                                   const float *x, int64_t k8)
{
    float s = hsum8(_mm256_loadu_ps(acc));
    for (int64_t c = k8; c < w->cols; c++)
        s = fmaf(wd_weight_get(w, r, c), x[c], s);
    return s;
}

/* Rows [r0, r0 + nr) for all tokens, AVX2 (nr <= RB; buf: [RB * KB], acc: [TB * RB * 8]). */
WD_AVX2 static void block_avx2(const struct linear_job *job, int64_t r0, int nr, float *buf,
                               float *acc)
{
    const struct wd_weight *w = job->w;
    int64_t cols = w->cols, k8 = cols & ~(int64_t)7, n = job->n, ldx = job->ldx, ldy = job->ldy;
    int is16 = w->dtype == WD_DTYPE_BF16 || w->dtype == WD_DTYPE_F16;

    if (n == 1 && is16) {
        const uint16_t *base = (const uint16_t *)w->data;
        int i = 0, is_bf16 = w->dtype == WD_DTYPE_BF16;
        if (k8 == cols) /* no tail columns: four rows' lane trees at once */
            for (; i + 4 <= nr; i += 4) {
                int64_t ld = wd_weight_ld(w);
                const uint16_t *p = base + (r0 + i) * ld;
                __m256 a0 = matvec_row(p, k8, is_bf16, job->x);
                __m256 a1 = matvec_row(p + ld, k8, is_bf16, job->x);
                __m256 a2 = matvec_row(p + 2 * ld, k8, is_bf16, job->x);
                __m256 a3 = matvec_row(p + 3 * ld, k8, is_bf16, job->x);
                _mm_storeu_ps(job->y + r0 + i, hsum8x4(a0, a1, a2, a3));
            }
        for (; i < nr; i++) {
            __m256 a = matvec_row(base + (r0 + i) * wd_weight_ld(w), k8, w->dtype == WD_DTYPE_BF16,
                                  job->x);
            _mm256_storeu_ps(acc, a);
            job->y[r0 + i] = finish(w, r0 + i, acc, job->x, k8);
        }
        return;
    }
    if (n <= DIRECT_MAX && is16) {
        const uint16_t *base = (const uint16_t *)w->data;
        int64_t ldw = wd_weight_ld(w);
        int is_bf16 = w->dtype == WD_DTYPE_BF16;
        for (int i = 0; i < nr; i += 2) {
            int rows = nr - i < 2 ? 1 : 2;
            const uint16_t *wi = base + (r0 + i) * ldw;
            /* Token groups of 4 (then 3, 2, 1) over the same rows, still in L1. */
            for (int64_t t = 0; t < n;) {
                int nt = n - t >= 4 ? 4 : (int)(n - t);
                const float *xt = job->x + t * ldx;
                if (rows == 1) { /* a lone last row: token by token */
                    for (int j = 0; j < nt; j++) {
                        __m256 a = matvec_row(wi, k8, is_bf16, xt + j * ldx);
                        _mm256_storeu_ps(acc + j * 8, a);
                    }
                } else {
                    direct_2xt(wi, ldw, nt, is_bf16, xt, ldx, k8, acc);
                }
                for (int k = 0; k < rows; k++)
                    for (int j = 0; j < nt; j++)
                        job->y[(t + j) * ldy + r0 + i + k] =
                            finish(w, r0 + i + k, acc + (k * nt + j) * 8, xt + j * ldx, k8);
                t += nt;
            }
        }
        return;
    }
    int64_t tb = TB_FLOATS / cols / 3 * 3;
    tb = tb < 3 ? 3 : tb > TB ? TB : tb;
    int64_t ts = (int64_t)nr * 8; /* acc: [tb][nr][8] */
    for (int64_t t0 = 0; t0 < n; t0 += tb) {
        int64_t nt = n - t0 < tb ? n - t0 : tb;
        const float *xb = job->x + t0 * ldx;
        memset(acc, 0, sizeof(float) * (size_t)(nt * ts));
        for (int64_t c0 = 0; c0 < k8; c0 += KB) {
            int k = (int)(k8 - c0 < KB ? k8 - c0 : KB);
            const float *tile = buf;
            int64_t ldw = k;
            if (w->dtype == WD_DTYPE_F32) {
                tile = (const float *)w->data + r0 * wd_weight_ld(w) + c0;
                ldw = wd_weight_ld(w);
            } else {
                stage_avx2(w, r0, nr, c0, k, buf);
            }
            /* Token triples outermost: their x rows stay in L1 while every row group of
             * the staged block uses them. 3k + 1 tokens end with two pairs, 3k + 2 with one
             * (a lone token is the slowest case). */
            int64_t t = 0, n3 = nt % 3 == 1 && nt >= 4 ? nt - 4 : nt - nt % 3;
            for (; t < n3; t += 3) {
                int g = 0;
                for (; g + ROWS <= nr; g += ROWS)
                    gemm_4x3(tile + g * ldw, ldw, xb + t * ldx + c0, ldx, k, acc + t * ts + g * 8,
                             ts);
                for (int j = 0; g < nr && j < 3; j++)
                    gemm_rx1(tile + g * ldw, ldw, nr - g, xb + (t + j) * ldx + c0, k,
                             acc + (t + j) * ts + g * 8);
            }
            for (; t + 2 <= nt; t += 2) {
                int g = 0;
                for (; g + ROWS <= nr; g += ROWS)
                    gemm_4x2(tile + g * ldw, ldw, xb + t * ldx + c0, ldx, k, acc + t * ts + g * 8,
                             ts);
                for (int j = 0; g < nr && j < 2; j++)
                    gemm_rx1(tile + g * ldw, ldw, nr - g, xb + (t + j) * ldx + c0, k,
                             acc + (t + j) * ts + g * 8);
            }
            for (; t < nt; t++)
                for (int g = 0; g < nr; g += ROWS)
                    gemm_rx1(tile + g * ldw, ldw, nr - g < ROWS ? nr - g : ROWS, xb + t * ldx + c0,
                             k, acc + t * ts + g * 8);
        }
        for (int64_t t = 0; t < nt; t++)
            for (int i = 0; i < nr; i++)
                job->y[(t0 + t) * ldy + r0 + i] =
                    finish(w, r0 + i, acc + t * ts + i * 8, xb + t * ldx, k8);
    }
}
#endif /* WD_X86 */

/* cpuid traps to the hypervisor in a VM (microseconds): ask once, remember the answer
 * (0 unknown, 1 no, 2 yes; every thread computes the same value, so the race is benign). */
static _Atomic int g_has_avx2;

static int detect_avx2(void)
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

void wd_cpu_force_portable(int is_portable)
{
    atomic_store_explicit(&g_has_avx2,
                          is_portable     ? 1
                          : detect_avx2() ? 2
                                          : 1,
                          memory_order_relaxed);
}

int wd_linear_cpu_has_avx2(void)
{
    int v = atomic_load_explicit(&g_has_avx2, memory_order_relaxed);
    if (v == 0) {
        v = detect_avx2() ? 2 : 1;
        atomic_store_explicit(&g_has_avx2, v, memory_order_relaxed);
    }
    return v == 2;
}

/* Rows [r_begin, r_end) of the job on this thread. */
static void linear_rows(const struct linear_job *job, int64_t r_begin, int64_t r_end)
{
    if (job->n <= 0 || r_end <= r_begin)
        return;
    if (job->w->cols == 0) {
        for (int64_t t = 0; t < job->n; t++)
            memset(job->y + t * job->ldy + r_begin, 0, sizeof(float) * (size_t)(r_end - r_begin));
        return;
    }
#ifdef WD_X86
    if (job->is_avx2) {
        float buf[RB * KB], acc[TB * RB * 8];
        for (int64_t r = r_begin; r < r_end; r += RB)
            block_avx2(job, r, (int)(r_end - r < RB ? r_end - r : RB), buf, acc);
        return;
    }
#endif
    float buf[ROWS * CHUNK];
    for (int64_t r = r_begin; r < r_end; r += ROWS)
        tile_portable(job, r, (int)(r_end - r < ROWS ? r_end - r : ROWS), buf);
}

static void linear_task(void *arg, int idx, int n_tasks)
{
    const struct linear_plan *p = arg;
    linear_rows(&p->job, p->bounds[idx], p->bounds[idx + 1]);
    (void)n_tasks;
}

static void check_weight(const struct wd_weight *w)
{
    WD_ASSERT(w->dtype == WD_DTYPE_F32 || w->dtype == WD_DTYPE_F16 || w->dtype == WD_DTYPE_BF16 ||
              w->dtype == WD_DTYPE_F8_E4M3);
}

/* The job of one linear and its task count: guided tasks (wd_threadpool_guided_split) of
 * whole 4-row tiles and at least TASK_MIN_BYTES of weights, so that a large matrix (the
 * LM head) is read in a few long streams and the threads still end together. */
static int64_t plan_job(struct linear_job *job, int64_t *bounds, const struct wd_weight *w,
                        const float *x, int64_t ldx, int64_t n, float *y, int64_t ldy,
                        int n_threads, int is_avx2)
{
    check_weight(w);
    WD_ASSERT(ldx >= w->cols && ldy >= w->rows);
    if (n <= 0 || w->rows <= 0)
        return 0;
    *job = (struct linear_job){
        .w = w, .x = x, .ldx = ldx, .n = n, .y = y, .ldy = ldy, .is_avx2 = is_avx2};
    int64_t row_bytes = w->cols * (int64_t)wd_dtype_size(w->dtype);
    row_bytes = row_bytes > 0 ? row_bytes : 1;
    /* min(TASK_MIN, max(a thread's share, SPLIT_MIN)), in rows. */
    int64_t share = (w->rows + n_threads - 1) / n_threads, split = SPLIT_MIN_BYTES / row_bytes;
    int64_t min_rows = share > split ? share : split;
    if (min_rows > TASK_MIN_BYTES / row_bytes)
        min_rows = TASK_MIN_BYTES / row_bytes;
    return wd_threadpool_guided_split(w->rows, n_threads, ROWS, min_rows, bounds);
}

static void linear_run(const struct wd_weight *w, const float *x, int64_t ldx, int64_t n, float *y,
                       int64_t ldy, struct wd_threadpool *tp, int is_avx2)
{
    struct linear_plan p;
    int64_t n_tasks =
        plan_job(&p.job, p.bounds, w, x, ldx, n, y, ldy, wd_threadpool_size(tp), is_avx2);
    if (n_tasks > 0)
        wd_threadpool_run(tp, linear_task, &p, (int)n_tasks);
}

#define MANY_MAX 64                                 /* items of one pool pass at most */
#define MANY_BOUNDS (4 * (WD_GUIDED_MAX_TASKS + 1)) /* their task bounds, all together */

/* Several linears in one pool pass: item i's tasks are [first[i], first[i + 1]), task t of
 * it takes rows [bounds[first[i] + i + t], ... + 1) (each item keeps its own end bound). */
struct many_job {
    struct linear_job jobs[MANY_MAX];
    int64_t first[MANY_MAX + 1];
    int64_t bounds[MANY_BOUNDS];
    int n_items;
};

static void many_task(void *arg, int idx, int n_tasks)
{
    const struct many_job *m = arg;
    int i = 0;
    while (idx >= m->first[i + 1])
        i++;
    const int64_t *b = m->bounds + idx + i;
    linear_rows(&m->jobs[i], b[0], b[1]);
    (void)n_tasks;
}

void wd_linear_cpu_many(const struct wd_linear_item *items, int n_items, struct wd_threadpool *tp)
{
    int is_avx2 = wd_linear_cpu_has_avx2(), nt = wd_threadpool_size(tp);
    struct many_job job, *m = &job; /* ~12 KiB on the caller's (the engine thread's) stack */
    for (int i = 0; i < n_items;) {
        m->n_items = 0;
        m->first[0] = 0;
        int64_t used = 0; /* bounds written */
        for (;
             i < n_items && m->n_items < MANY_MAX && used + WD_GUIDED_MAX_TASKS + 1 <= MANY_BOUNDS;
             i++) {
            const struct wd_linear_item *it = &items[i];
            int64_t k = plan_job(&m->jobs[m->n_items], m->bounds + used, it->w, it->x,
                                 it->ldx ? it->ldx : it->w->cols, it->n, it->y,
                                 it->ldy ? it->ldy : it->w->rows, nt, is_avx2);
            if (k == 0)
                continue;
            used += k + 1;
            m->first[m->n_items + 1] = m->first[m->n_items] + k;
            m->n_items++;
        }
        if (m->n_items > 0)
            wd_threadpool_run(tp, many_task, m, (int)m->first[m->n_items]);
    }
}

void wd_linear_cpu(const struct wd_weight *w, const float *x, int64_t n, float *y,
                   struct wd_threadpool *tp)
{
    linear_run(w, x, w->cols, n, y, w->rows, tp, wd_linear_cpu_has_avx2());
}

void wd_linear_cpu_strided(const struct wd_weight *w, const float *x, int64_t ldx, int64_t n,
                           float *y, int64_t ldy, struct wd_threadpool *tp)
{
    WD_ASSERT(ldx >= w->cols && ldy >= w->rows);
    linear_run(w, x, ldx, n, y, ldy, tp, wd_linear_cpu_has_avx2());
}

void wd_linear_cpu_rows(const struct wd_weight *w, const float *x, int64_t ldx, int64_t n, float *y,
                        int64_t ldy, int64_t r0, int64_t r1)
{
    check_weight(w);
    WD_ASSERT(ldx >= w->cols && ldy >= w->rows && 0 <= r0 && r0 <= r1 && r1 <= w->rows);
    struct linear_job job = {.w = w,
                             .x = x,
                             .ldx = ldx,
                             .n = n,
                             .y = y,
                             .ldy = ldy,
                             .is_avx2 = wd_linear_cpu_has_avx2()};
    linear_rows(&job, r0, r1);
}

void wd_linear_cpu_portable(const struct wd_weight *w, const float *x, int64_t n, float *y,
                            struct wd_threadpool *tp)
{
    linear_run(w, x, w->cols, n, y, w->rows, tp, 0);
}

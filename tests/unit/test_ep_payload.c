/*
 * Row codec of dispatch/combine (common/ep/ep_payload.h), checked bit for bit against a
 * scalar oracle written here: BF16 encode (round to nearest even from the dropped bits,
 * quiet NaNs keeping sign and top payload, odd sizes zero-padded to 4 bytes) and the
 * F32/BF16 axpy (x += w * row, a rounded multiply then a rounded add). On x86 with AVX2
 * these run the vector code, so every length around the 8- and 16-wide steps and values
 * at every rounding edge (ties, carries into the exponent, overflow to inf, NaNs,
 * subnormals, signed zeros) are covered.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/ep/ep_payload.h"
#include "tests/unit/wd_test.h"

static const int sizes[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 128, 255, 7168, 7169};
#define N_SIZES ((int)(sizeof(sizes) / sizeof(sizes[0])))
#define MAX_H 7169

static uint32_t rng(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 32);
}

static float f_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t u_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Independent formulation of f32 -> bf16: keep the top half, round up when the dropped
 * half is over one half ulp, or exactly half and the kept part is odd. */
static uint16_t oracle_bf16(float f)
{
    uint32_t u = u_of(f);
    uint32_t keep = u >> 16, drop = u & 0xffffu;
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu))
        return (uint16_t)(keep | 0x40); /* NaN: quiet it */
    if (drop > 0x8000u || (drop == 0x8000u && (keep & 1u)))
        keep++;
    return (uint16_t)keep;
}

/* Random bit patterns over every exponent, with the edge cases sprinkled in. */
static void fill(float *x, int n, uint64_t *s)
{
    static const uint32_t edge[] = {
        0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u, 0x7f800001u,
        0x7fffffffu, 0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x3fffffffu, 0x7f7fffffu, 0xff7fffffu,
        0x7f7f8000u, 0x00000001u, 0x80008000u, 0x00018000u, 0x3f7f8000u, 0x477fff80u};
    int n_edge = (int)(sizeof(edge) / sizeof(edge[0]));
    for (int i = 0; i < n; i++) {
        uint32_t r = rng(s);
        if (r % 5 == 0)
            x[i] = f_of(edge[rng(s) % (uint32_t)n_edge]);
        else if (r % 5 == 1)
            x[i] = f_of(rng(s)); /* any pattern */
        else
            x[i] = (float)((int)(rng(s) % 20001u) - 10000) / 1000.0f;
    }
}

static int same_float(float a, float b)
{
    return u_of(a) == u_of(b) || (a != a && b != b); /* NaN payloads may differ */
}

static void test_bf16_encode(void)
{
    uint64_t s = 1;
    float *x = malloc(sizeof(float) * MAX_H);
    uint8_t *row = malloc(2 * MAX_H + 16); /* row bytes round up to 4, plus 8 guard bytes */
    int bad = 0;
    for (int t = 0; t < N_SIZES; t++) {
        int h = sizes[t];
        struct wd_ep_payload p = {.kind = WD_EP_PAYLOAD_BF16, .hidden = h};
        size_t rb = wd_ep_payload_row_bytes(&p);
        WD_EXPECT_EQ_INT(rb, (size_t)(2 * h + 3) & ~(size_t)3);
        for (int rep = 0; rep < 4; rep++) {
            fill(x, h, &s);
            memset(row, 0xa5, rb + 8);
            wd_ep_payload_encode(&p, x, row);
            for (int j = 0; j < h; j++) {
                uint16_t got;
                memcpy(&got, row + 2 * j, 2);
                if (got != oracle_bf16(x[j]) && bad++ < 5)
                    WD_EXPECT_MSG(0, "h %d: element %d (0x%08x) encodes to 0x%04x, want 0x%04x", h,
                                  j, (unsigned)u_of(x[j]), got, oracle_bf16(x[j]));
            }
            if (h & 1)
                WD_EXPECT_MSG(row[2 * h] == 0 && row[2 * h + 1] == 0, "h %d: padding not zero", h);
            WD_EXPECT_MSG(row[rb] == 0xa5, "h %d: encode wrote past the row", h);
        }
    }
    WD_EXPECT_EQ_INT(bad, 0);
    free(x);
    free(row);
}

static void test_axpy(void)
{
    static const float ws[] = {1.0f, 0.3712f, -2.5f, 0.0f};
    uint64_t s = 7;
    float *x = malloc(sizeof(float) * MAX_H), *got = malloc(sizeof(float) * (MAX_H + 1));
    float *want = malloc(sizeof(float) * MAX_H), *src = malloc(sizeof(float) * MAX_H);
    uint8_t *row = malloc(4 * MAX_H + 8);
    int bad = 0;
    for (int kind = 0; kind < 2; kind++) {
        enum wd_ep_payload_kind k = kind ? WD_EP_PAYLOAD_BF16 : WD_EP_PAYLOAD_F32;
        for (int t = 0; t < N_SIZES; t++) {
            int h = sizes[t];
            struct wd_ep_payload p = {.kind = k, .hidden = h};
            for (int wi = 0; wi < 4; wi++) {
                float w = ws[wi];
                fill(src, h, &s);
                fill(x, h, &s);
                wd_ep_payload_encode(&p, src, row);
                for (int j = 0; j < h; j++) {
                    float v;
                    if (kind) {
                        uint16_t b;
                        memcpy(&b, row + 2 * j, 2);
                        v = f_of((uint32_t)b << 16);
                    } else {
                        memcpy(&v, row + 4 * j, 4);
                    }
                    float prod = w * v;
                    want[j] = x[j] + prod;
                }
                memcpy(got, x, sizeof(float) * (size_t)h);
                got[h] = 12345.0f;
                wd_ep_payload_axpy(&p, w, row, got);
                for (int j = 0; j < h; j++)
                    if (!same_float(got[j], want[j]) && bad++ < 5)
                        WD_EXPECT_MSG(0, "%s h %d w %g: element %d is %.9g, want %.9g",
                                      wd_ep_payload_name(k), h, w, j, got[j], want[j]);
                WD_EXPECT_MSG(got[h] == 12345.0f, "axpy wrote past the row");
                /* decode = axpy into zeros with w = 1 */
                wd_ep_payload_decode(&p, row, got);
                for (int j = 0; j < h; j++) {
                    float v;
                    if (kind) {
                        uint16_t b;
                        memcpy(&b, row + 2 * j, 2);
                        v = f_of((uint32_t)b << 16);
                    } else {
                        memcpy(&v, row + 4 * j, 4);
                    }
                    if (!same_float(got[j], 0.0f + v) && bad++ < 5)
                        WD_EXPECT_MSG(0, "decode h %d: element %d", h, j);
                }
            }
        }
    }
    WD_EXPECT_EQ_INT(bad, 0);
    free(x);
    free(got);
    free(want);
    free(src);
    free(row);
}

int main(void)
{
    WD_RUN(test_bf16_encode);
    WD_RUN(test_axpy);
    return wd_test_finish();
}

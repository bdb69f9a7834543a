/* dtype conversions against values computed by hand and by PyTorch's rules. */
#include <string.h>

#include "kernels/dtype.h"
#include "kernels/linear_cpu.h"
#include "tests/unit/wd_test.h"

static void test_bf16_roundtrip(void)
{
    WD_EXPECT_EQ_INT(wd_f32_to_bf16(1.0f), 0x3f80);
    WD_EXPECT_EQ_INT(wd_f32_to_bf16(-2.0f), 0xc000);
    /* 1 + 2^-8 is a tie between 0x3f80 and 0x3f81: rounds to even (0x3f80). */
    WD_EXPECT_EQ_INT(wd_f32_to_bf16(1.00390625f), 0x3f80);
    WD_EXPECT_EQ_INT(wd_f32_to_bf16(1.01171875f), 0x3f82);
    WD_EXPECT_NEAR(wd_bf16_to_f32(0x4049), 3.140625, 0);
    for (uint32_t h = 0; h < 0x10000; h += 7) {
        float f = wd_bf16_to_f32((uint16_t)h);
        if (f == f)
            WD_EXPECT_EQ_INT(wd_f32_to_bf16(f), h);
    }
}

/* Widening is exact: every bit pattern (NaN payloads, infinities, subnormals, signed
 * zeros) lands as the scalar wd_bf16_to_f32 puts it, at every length and offset, on the
 * AVX2 path and the portable one. */
static void test_bf16_widen(void)
{
    enum { N = 77 };
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    uint16_t h[N];
    float out[N + 1];
    const uint16_t special[] = {0x0000, 0x8000, 0x7f80, 0xff80, 0x7fc1, 0xffff, 0x0001, 0x807f};
    for (int i = 0; i < N; i++)
        h[i] = i < 8 ? special[i] : (uint16_t)((rng = rng * 6364136223846793005ull + 1) >> 48);
    for (int off = 0; off < 9; off++)
        for (int n = 0; n + off <= N; n += 5) {
            out[n] = -7.0f; /* one past the end: never written */
            wd_dtype_to_f32(WD_DTYPE_BF16, h + off, out, (size_t)n);
            int same = out[n] == -7.0f;
            for (int i = 0; i < n; i++) {
                float want = wd_bf16_to_f32(h[off + i]);
                same &= memcmp(&out[i], &want, 4) == 0;
            }
            WD_EXPECT_MSG(same, "bf16 widen off %d n %d", off, n);
        }
}

static void test_f16(void)
{
    WD_EXPECT_NEAR(wd_f16_to_f32(0x3c00), 1.0, 0);
    WD_EXPECT_NEAR(wd_f16_to_f32(0x0001), 5.960464477539063e-08, 0);
    WD_EXPECT_NEAR(wd_f16_to_f32(0x7bff), 65504.0, 0);
    WD_EXPECT_EQ_INT(wd_f32_to_f16(65520.0f), 0x7c00);
    WD_EXPECT_EQ_INT(wd_f32_to_f16(65519.0f), 0x7bff);
    for (uint32_t h = 0; h < 0x7c00; h++) {
        float f = wd_f16_to_f32((uint16_t)h);
        if (wd_f32_to_f16(f) != h) {
            WD_EXPECT_EQ_INT(wd_f32_to_f16(f), h);
            break;
        }
    }
}

static void test_e4m3(void)
{
    WD_EXPECT_NEAR(wd_e4m3_to_f32(0x7e), 448.0, 0);
    WD_EXPECT_NEAR(wd_e4m3_to_f32(0x01), 0.001953125, 0);
    WD_EXPECT_NEAR(wd_e4m3_to_f32(0x38), 1.0, 0);
    WD_EXPECT(isnan(wd_e4m3_to_f32(0x7f)));
    WD_EXPECT_EQ_INT(wd_f32_to_e4m3(1000.0f), 0x7e);
    WD_EXPECT_EQ_INT(wd_f32_to_e4m3(-1000.0f), 0xfe);
    for (int v = 0; v < 256; v++) {
        float f = wd_e4m3_to_f32((uint8_t)v);
        if (f != f || (f == 0 && v == 0x80))
            continue;
        WD_EXPECT_EQ_INT(wd_f32_to_e4m3(f), v);
    }
    /* 1.0625 is halfway between 1.0 (0x38) and 1.125 (0x39): ties to even. */
    WD_EXPECT_EQ_INT(wd_f32_to_e4m3(1.0625f), 0x38);
    WD_EXPECT_EQ_INT(wd_f32_to_e4m3(1.1875f), 0x3a);
}

static void test_names(void)
{
    WD_EXPECT_EQ_INT(wd_dtype_parse("BF16"), WD_DTYPE_BF16);
    WD_EXPECT_EQ_INT(wd_dtype_parse("F8_E4M3"), WD_DTYPE_F8_E4M3);
    WD_EXPECT_EQ_INT(wd_dtype_parse("F8_E5M2"), -1);
    WD_EXPECT_EQ_INT(wd_dtype_size(WD_DTYPE_BF16), 2);
}

int main(void)
{
    WD_RUN(test_bf16_roundtrip);
    WD_RUN(test_bf16_widen);
    wd_cpu_force_portable(1);
    WD_RUN(test_bf16_widen);
    wd_cpu_force_portable(0);
    WD_RUN(test_f16);
    WD_RUN(test_e4m3);
    WD_RUN(test_names);
    return wd_test_finish();
}

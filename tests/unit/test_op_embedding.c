/* Embedding lookup in every weight dtype against element-wise widening of the table. */
#include <stdlib.h>
#include <string.h>

#include "kernels/embedding.h"
#include "tests/unit/wd_test.h"

static void check_dtype(enum wd_dtype dt)
{
    enum { VOCAB = 37, HIDDEN = 50 };
    float src[VOCAB * HIDDEN], want[5 * HIDDEN], out[5 * HIDDEN + 1];
    unsigned char data[VOCAB * HIDDEN * 4];
    float scales[3 * 2]; /* fp8: 16x32 blocks over 37x50 -> 3x2 */
    for (int i = 0; i < VOCAB * HIDDEN; i++)
        src[i] = (float)((i * 7919) % 1000) / 250.0f - 2.0f;
    for (int i = 0; i < 6; i++)
        scales[i] = 0.5f + (float)i;
    struct wd_weight w = {.dtype = dt,
                          .data = data,
                          .rows = VOCAB,
                          .cols = HIDDEN,
                          .scale_inv = dt == WD_DTYPE_F8_E4M3 ? scales : NULL,
                          .block_rows = 16,
                          .block_cols = 32};
    for (int i = 0; i < VOCAB * HIDDEN; i++) {
        if (dt == WD_DTYPE_F32)
            memcpy(data + 4 * i, &src[i], 4);
        else if (dt == WD_DTYPE_F16)
            ((uint16_t *)data)[i] = wd_f32_to_f16(src[i]);
        else if (dt == WD_DTYPE_BF16)
            ((uint16_t *)data)[i] = wd_f32_to_bf16(src[i]);
        else
            data[i] = wd_f32_to_e4m3(src[i]);
    }
    int32_t ids[5] = {0, 36, 17, 17, 16};
    for (int t = 0; t < 5; t++)
        for (int c = 0; c < HIDDEN; c++) {
            int i = ids[t] * HIDDEN + c;
            float v;
            if (dt == WD_DTYPE_F32)
                v = src[i];
            else if (dt == WD_DTYPE_F16)
                v = wd_f16_to_f32(wd_f32_to_f16(src[i]));
            else if (dt == WD_DTYPE_BF16)
                v = wd_bf16_to_f32(wd_f32_to_bf16(src[i]));
            else
                v = wd_e4m3_to_f32(wd_f32_to_e4m3(src[i])) * scales[(ids[t] / 16) * 2 + c / 32];
            want[t * HIDDEN + c] = v;
        }
    out[5 * HIDDEN] = 12345.0f;
    wd_embedding_ref(&w, ids, 5, out);
    WD_EXPECT_MSG(memcmp(out, want, sizeof(want)) == 0, "embedding %s differs", wd_dtype_name(dt));
    WD_EXPECT(out[5 * HIDDEN] == 12345.0f);
    wd_embedding_ref(&w, ids, 0, NULL);
}

static void test_dtypes(void)
{
    check_dtype(WD_DTYPE_F32);
    check_dtype(WD_DTYPE_F16);
    check_dtype(WD_DTYPE_BF16);
    check_dtype(WD_DTYPE_F8_E4M3);
}

int main(void)
{
    WD_RUN(test_dtypes);
    return wd_test_finish();
}

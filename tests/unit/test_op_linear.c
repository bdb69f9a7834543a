/* wd_linear_ref and weight dequantization against fp64 torch goldens in every weight dtype. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/linear.h"
#include "tests/unit/wd_fixture.h"
#include "tests/unit/wd_test.h"

static void check_case(const char *name, enum wd_dtype dt)
{
    struct wd_fixture *fx = wd_fixture_load(name);
    if (!fx)
        return;
    int64_t ws[4] = {0}, xs[4] = {0}, n_scale = 0;
    const void *wdata = wd_fixture_tensor(fx, "w", dt, ws, NULL);
    const float *x = wd_fixture_tensor(fx, "x", WD_DTYPE_F32, xs, NULL);
    const float *want = wd_fixture_f32(fx, "y", NULL);
    const float *scale = NULL;
    struct wd_weight w = {.dtype = dt, .data = wdata, .rows = ws[0], .cols = ws[1]};
    if (dt == WD_DTYPE_F8_E4M3) {
        scale = wd_fixture_f32(fx, "scale_inv", &n_scale);
        w.scale_inv = scale;
        w.block_rows = (int)wd_fixture_param(fx, "block_rows");
        w.block_cols = (int)wd_fixture_param(fx, "block_cols");
        int64_t nbr = (w.rows + w.block_rows - 1) / w.block_rows;
        int64_t nbc = (w.cols + w.block_cols - 1) / w.block_cols;
        WD_EXPECT_EQ_INT(n_scale, nbr * nbc);
    }
    if (wdata && x && want) {
        int64_t n = xs[0];
        float *y = malloc(sizeof(float) * (size_t)(n * w.rows));
        wd_linear_ref(&w, x, n, y);
        /* fp32 accumulation over cols terms vs an fp64 oracle. */
        wd_expect_close(name, y, want, n * w.rows, 1e-5 * sqrt((double)w.cols), 1e-5);

        /* Row dequantization agrees with the element accessor, and fp8 rows equal
         * e4m3 * block scale exactly. */
        float *row = malloc(sizeof(float) * (size_t)w.cols);
        int ok = 1;
        for (int64_t r = 0; r < w.rows; r += 7) {
            wd_weight_row_f32(&w, r, row);
            for (int64_t c = 0; c < w.cols; c++) {
                float e = wd_weight_get(&w, r, c);
                if (dt == WD_DTYPE_F8_E4M3) {
                    int64_t nbc = (w.cols + w.block_cols - 1) / w.block_cols;
                    float s = scale[(r / w.block_rows) * nbc + c / w.block_cols];
                    ok &= e == wd_e4m3_to_f32(((const uint8_t *)wdata)[r * w.cols + c]) * s;
                }
                ok &= row[c] == e;
            }
        }
        WD_EXPECT_MSG(ok, "%s: wd_weight_row_f32 / wd_weight_get disagree", name);
        free(row);

        /* n = 1 gives the first row of the batch bit for bit; n = 0 writes nothing. */
        float *y1 = malloc(sizeof(float) * (size_t)(w.rows + 1));
        y1[w.rows] = 42.0f;
        wd_linear_ref(&w, x, 1, y1);
        WD_EXPECT(memcmp(y1, y, sizeof(float) * (size_t)w.rows) == 0 && y1[w.rows] == 42.0f);
        wd_linear_ref(&w, x, 0, y1);
        WD_EXPECT(y1[w.rows] == 42.0f);
        free(y1);
        free(y);
    }
    wd_fixture_free(fx);
}

static void test_golden(void)
{
    check_case("linear_f32", WD_DTYPE_F32);
    check_case("linear_bf16", WD_DTYPE_BF16);
    check_case("linear_f16", WD_DTYPE_F16);
    check_case("linear_fp8_128", WD_DTYPE_F8_E4M3);
    check_case("linear_fp8_small", WD_DTYPE_F8_E4M3);
}

static void test_hand(void)
{
    /* W = [[1, 2], [3, 4], [-1, 0.5]] in f16; x = (2, -1) -> (0, 2, -2.5). */
    uint16_t wh[6];
    float wf[6] = {1, 2, 3, 4, -1, 0.5f}, x[2] = {2, -1}, y[3];
    for (int i = 0; i < 6; i++)
        wh[i] = wd_f32_to_f16(wf[i]);
    struct wd_weight w = {.dtype = WD_DTYPE_F16, .data = wh, .rows = 3, .cols = 2};
    wd_linear_ref(&w, x, 1, y);
    WD_EXPECT(y[0] == 0.0f && y[1] == 2.0f && y[2] == -2.5f);
    /* fp8 without scales (scale_inv NULL) dequantizes with scale 1. */
    uint8_t w8[6];
    for (int i = 0; i < 6; i++)
        w8[i] = wd_f32_to_e4m3(wf[i]);
    struct wd_weight w8w = {.dtype = WD_DTYPE_F8_E4M3, .data = w8, .rows = 3, .cols = 2};
    wd_linear_ref(&w8w, x, 1, y);
    WD_EXPECT(y[0] == 0.0f && y[1] == 2.0f && y[2] == -2.5f);
}

int main(void)
{
    WD_RUN(test_golden);
    WD_RUN(test_hand);
    return wd_test_finish();
}

/*
 * Golden fixtures for the op tests: one safetensors file per case under
 * tests/fixtures/ops/ (made by tests/tools/make_op_fixtures.py), its tensors
 * and the scalar parameters kept as strings in the header's __metadata__.
 * A fixture owns every buffer it hands out; wd_fixture_free releases them.
 * Tensors are copied into fresh allocations so they are always aligned.
 * Also the comparison helper every op test uses.
 */
#ifndef WD_FIXTURE_H
#define WD_FIXTURE_H

#include <stdint.h>

#include "kernels/dtype.h"
#include "kernels/weight.h"

struct wd_fixture;

/* Loads tests/fixtures/ops/<name>.safetensors; NULL (with a test failure recorded) when the
 * file is missing or malformed. */
struct wd_fixture *wd_fixture_load(const char *name);
void wd_fixture_free(struct wd_fixture *fx);

/* Tensor `name` (NULL and a failure when absent or not of dtype dt). shape gets up to 4 dims,
 * *numel_p the element count; both may be NULL. */
const void *wd_fixture_tensor(struct wd_fixture *fx, const char *name, enum wd_dtype dt,
                              int64_t shape[4], int64_t *numel_p);
const float *wd_fixture_f32(struct wd_fixture *fx, const char *name, int64_t *numel_p);
const int32_t *wd_fixture_i32(struct wd_fixture *fx, const char *name, int64_t *numel_p);
/* Metadata value as a number (a failure and 0 when absent). */
double wd_fixture_param(struct wd_fixture *fx, const char *key);

/* The SwiGLU MLP case (mlp_bf16): bf16 gate/up [inter, hidden] and down [hidden, inter],
 * n token rows of x and the expected y; the reference and the CPU kernel tests share it. */
struct wd_mlp_fixture {
    struct wd_fixture *fx; /* owns every buffer below */
    struct wd_weight gate, up, down;
    const float *x, *want;
    int64_t n, hidden, inter;
};
/* 1 when loaded (free m->fx after), 0 with a failure recorded. */
int wd_fixture_mlp(struct wd_mlp_fixture *m);

/* Compares got with want element-wise: |got - want| <= atol + rtol * |want|. Prints
 * "<what>: max abs err, max rel err, nmse" and records one failure naming the worst element.
 * Returns 1 when all elements pass. */
int wd_expect_close(const char *what, const float *got, const float *want, int64_t n, double atol,
                    double rtol);

#endif

/* safetensors fixture reader (jansson for the header) and the op-test comparison helper. */
#include "tests/unit/wd_fixture.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/wd_test.h"

#define MAX_COPIES 64

struct wd_fixture {
    char name[128];
    unsigned char *file; /* whole file */
    size_t file_size;
    size_t data_off; /* start of the tensor data */
    json_t *header;
    void *copies[MAX_COPIES];
    int n_copies;
};

struct wd_fixture *wd_fixture_load(const char *name)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "tests/fixtures/ops/%s.safetensors", name);
    const char *path = wd_test_src(rel);
    struct wd_fixture *fx = calloc(1, sizeof(*fx));
    FILE *f = fopen(path, "rb");
    if (!fx || !f) {
        wd_test_fail(__FILE__, __LINE__, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    snprintf(fx->name, sizeof(fx->name), "%s", name);
    fseek(f, 0, SEEK_END);
    fx->file_size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    fx->file = malloc(fx->file_size ? fx->file_size : 1);
    if (!fx->file || fread(fx->file, 1, fx->file_size, f) != fx->file_size || fx->file_size < 8) {
        wd_test_fail(__FILE__, __LINE__, "cannot read %s", path);
        goto fail;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | fx->file[i];
    if (hlen > fx->file_size - 8) {
        wd_test_fail(__FILE__, __LINE__, "%s: header length %llu past the end", path,
                     (unsigned long long)hlen);
        goto fail;
    }
    json_error_t jerr;
    fx->header = json_loadb((const char *)fx->file + 8, (size_t)hlen, 0, &jerr);
    if (!json_is_object(fx->header)) {
        wd_test_fail(__FILE__, __LINE__, "%s: bad header: %s", path, jerr.text);
        goto fail;
    }
    fx->data_off = 8 + (size_t)hlen;
    fclose(f);
    return fx;
fail:
    if (f)
        fclose(f);
    wd_fixture_free(fx);
    return NULL;
}

void wd_fixture_free(struct wd_fixture *fx)
{
    if (!fx)
        return;
    for (int i = 0; i < fx->n_copies; i++)
        free(fx->copies[i]);
    json_decref(fx->header);
    free(fx->file);
    free(fx);
}

const void *wd_fixture_tensor(struct wd_fixture *fx, const char *name, enum wd_dtype dt,
                              int64_t shape[4], int64_t *numel_p)
{
    json_t *t = json_object_get(fx->header, name);
    const char *dts = json_string_value(json_object_get(t, "dtype"));
    json_t *sh = json_object_get(t, "shape"), *offs = json_object_get(t, "data_offsets");
    if (!dts || !json_is_array(sh) || json_array_size(offs) != 2) {
        wd_test_fail(__FILE__, __LINE__, "%s: no tensor '%s'", fx->name, name);
        return NULL;
    }
    if (wd_dtype_parse(dts) != (int)dt) {
        wd_test_fail(__FILE__, __LINE__, "%s: tensor '%s' is %s, expected %s", fx->name, name, dts,
                     wd_dtype_name(dt));
        return NULL;
    }
    int64_t numel = 1;
    for (size_t i = 0; i < json_array_size(sh); i++) {
        int64_t d = json_integer_value(json_array_get(sh, i));
        if (shape && i < 4)
            shape[i] = d;
        numel *= d;
    }
    size_t b = (size_t)json_integer_value(json_array_get(offs, 0));
    size_t e = (size_t)json_integer_value(json_array_get(offs, 1));
    if (e < b || e - b != (size_t)numel * wd_dtype_size(dt) || fx->data_off + e > fx->file_size ||
        fx->n_copies == MAX_COPIES) {
        wd_test_fail(__FILE__, __LINE__, "%s: tensor '%s' has bad offsets", fx->name, name);
        return NULL;
    }
    void *copy = malloc(e - b + 16);
    WD_EXPECT(copy != NULL);
    if (!copy)
        return NULL;
    memcpy(copy, fx->file + fx->data_off + b, e - b);
    fx->copies[fx->n_copies++] = copy;
    if (numel_p)
        *numel_p = numel;
    return copy;
}

const float *wd_fixture_f32(struct wd_fixture *fx, const char *name, int64_t *numel_p)
{
    return wd_fixture_tensor(fx, name, WD_DTYPE_F32, NULL, numel_p);
}

const int32_t *wd_fixture_i32(struct wd_fixture *fx, const char *name, int64_t *numel_p)
{
    return wd_fixture_tensor(fx, name, WD_DTYPE_I32, NULL, numel_p);
}

double wd_fixture_param(struct wd_fixture *fx, const char *key)
{
    const char *v =
        json_string_value(json_object_get(json_object_get(fx->header, "__metadata__"), key));
    if (!v) {
        wd_test_fail(__FILE__, __LINE__, "%s: no parameter '%s'", fx->name, key);
        return 0.0;
    }
    return strtod(v, NULL);
}

int wd_fixture_mlp(struct wd_mlp_fixture *m)
{
    memset(m, 0, sizeof(*m));
    m->fx = wd_fixture_load("mlp_bf16");
    if (!m->fx)
        return 0;
    int64_t gs[4] = {0}, xs[4] = {0};
    const void *gate = wd_fixture_tensor(m->fx, "gate", WD_DTYPE_BF16, gs, NULL);
    const void *up = wd_fixture_tensor(m->fx, "up", WD_DTYPE_BF16, NULL, NULL);
    const void *down = wd_fixture_tensor(m->fx, "down", WD_DTYPE_BF16, NULL, NULL);
    m->x = wd_fixture_tensor(m->fx, "x", WD_DTYPE_F32, xs, NULL);
    m->want = wd_fixture_f32(m->fx, "y", NULL);
    if (!gate || !up || !down || !m->x || !m->want) {
        wd_fixture_free(m->fx);
        m->fx = NULL;
        return 0;
    }
    m->inter = gs[0];
    m->hidden = gs[1];
    m->n = xs[0];
    m->gate = (struct wd_weight){
        .dtype = WD_DTYPE_BF16, .data = gate, .rows = m->inter, .cols = m->hidden};
    m->up = m->gate;
    m->up.data = up;
    m->down = (struct wd_weight){
        .dtype = WD_DTYPE_BF16, .data = down, .rows = m->hidden, .cols = m->inter};
    return 1;
}

int wd_expect_close(const char *what, const float *got, const float *want, int64_t n, double atol,
                    double rtol)
{
    double max_abs = 0.0, max_rel = 0.0, err2 = 0.0, ref2 = 0.0;
    int64_t worst = -1, n_bad = 0;
    double worst_excess = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double g = got[i], w = want[i], d = fabs(g - w);
        if (!(d == d)) /* NaN on either side */
            d = INFINITY;
        double tol = atol + rtol * fabs(w);
        err2 += d * d;
        ref2 += w * w;
        if (d > max_abs)
            max_abs = d;
        if (w != 0.0 && d / fabs(w) > max_rel)
            max_rel = d / fabs(w);
        if (!(d <= tol)) {
            n_bad++;
            if (worst < 0 || d - tol > worst_excess) {
                worst = i;
                worst_excess = d - tol;
            }
        }
    }
    printf("  %-32s n=%-7lld max_abs=%.3g max_rel=%.3g nmse=%.3g\n", what, (long long)n, max_abs,
           max_rel, ref2 > 0 ? err2 / ref2 : err2);
    wd_test_checks++;
    if (n_bad) {
        wd_test_fail(__FILE__, __LINE__, "%s: %lld of %lld elements off, worst [%lld] %.9g vs %.9g",
                     what, (long long)n_bad, (long long)n, (long long)worst, (double)got[worst],
                     (double)want[worst]);
        return 0;
    }
    return 1;
}

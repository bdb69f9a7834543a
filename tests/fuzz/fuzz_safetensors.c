/*
 * libFuzzer target: wd_safetensors_parse on arbitrary bytes. Whatever it accepts must be
 * safe to use: every tensor's bytes are read in full (ASan flags any range outside the
 * input), found again by name and matched by wd_safetensors_get with its own shape.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wd_safetensors *st = NULL;
    struct wd_error err;
    if (wd_safetensors_parse(data, size, &st, &err) != WD_OK)
        return 0;
    uint8_t acc = 0;
    for (size_t i = 0; i < wd_safetensors_count(st); i++) {
        const struct wd_tensor_info *t = wd_safetensors_at(st, i);
        const uint8_t *p = t->data;
        for (size_t b = 0; b < t->nbytes; b++)
            acc ^= p[b];
        const struct wd_tensor_info *u = NULL;
        if (wd_safetensors_find(st, t->name) != t ||
            wd_safetensors_get(st, t->name, t->n_dims, t->shape, &u, &err) != WD_OK || u != t)
            abort();
        if (t->nbytes && (uintptr_t)t->data % wd_dtype_size(t->dtype) != 0)
            abort();
    }
    wd_safetensors_close(st);
    volatile uint8_t sink = acc; /* keeps the reads */
    (void)sink;
    return 0;
}

/* Expert blobs: packing full experts and carving sliced views out of them. */
#include "common/model/expert_store.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/model/model.h"

static size_t data_bytes(const struct wd_weight *w)
{
    return (size_t)(w->rows * w->cols) * wd_dtype_size(w->dtype);
}

static size_t scale_bytes(const struct wd_weight *w)
{
    if (!w->scale_inv)
        return 0;
    return (size_t)(((w->rows + w->block_rows - 1) / w->block_rows) *
                    ((w->cols + w->block_cols - 1) / w->block_cols)) *
           sizeof(float);
}

static size_t align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

enum wd_status wd_expert_store_create(const struct wd_mlp_weights *proto, int n_layers, int n_slots,
                                      struct wd_expert_store **store_p, struct wd_error *err)
{
    struct wd_expert_store *s = calloc(1, sizeof(*s));
    if (!s)
        return wd_error_set(err, WD_ERR_NOMEM, "expert store: out of memory");
    s->n_layers = n_layers;
    s->n_slots = n_slots;
    const struct wd_weight *w[3] = {&proto->gate, &proto->up, &proto->down};
    size_t at = 0;
    for (int i = 0; i < 3; i++) {
        s->proto[i] = *w[i];
        s->off[i] = at;
        at += align64(data_bytes(w[i]));
    }
    for (int i = 0; i < 3; i++) {
        s->off[3 + i] = at;
        at += align64(scale_bytes(w[i]));
    }
    s->blob_bytes = at;
    size_t total = s->blob_bytes * (size_t)n_layers * (size_t)(n_slots > 0 ? n_slots : 1);
    /* 2 MiB-aligned and advised MADV_HUGEPAGE, as the other streamed weights are
     * (model_weights.h): a decode step reads these experts once each. */
    size_t huge = (size_t)2 << 20, len = (total + huge - 1) / huge * huge;
    s->blobs = aligned_alloc(huge, len);
    if (!s->blobs) {
        free(s);
        return wd_error_set(err, WD_ERR_NOMEM,
                            "expert store: cannot allocate %zu bytes for %d "
                            "slots x %d layers",
                            total, n_slots, n_layers);
    }
    (void)madvise(s->blobs, len, MADV_HUGEPAGE); /* advice: 4 KiB pages work too */
    memset(s->blobs, 0, total);
    *store_p = s;
    return WD_OK;
}

void wd_expert_store_destroy(struct wd_expert_store *s)
{
    if (!s)
        return;
    free(s->blobs);
    free(s);
}

unsigned char *wd_expert_store_blob(const struct wd_expert_store *s, int layer, int slot)
{
    WD_ASSERT(layer >= 0 && layer < s->n_layers && slot >= 0 && slot < s->n_slots);
    return s->blobs + ((size_t)layer * (size_t)s->n_slots + (size_t)slot) * s->blob_bytes;
}

/* Copies w's rows (a full matrix, possibly strided in the checkpoint) contiguously. */
static void pack(const struct wd_weight *w, unsigned char *dst, float *scales)
{
    size_t row = (size_t)w->cols * wd_dtype_size(w->dtype);
    for (int64_t r = 0; r < w->rows; r++)
        memcpy(dst + (size_t)r * row,
               (const unsigned char *)w->data +
                   (size_t)(r * wd_weight_ld(w)) * wd_dtype_size(w->dtype),
               row);
    if (w->scale_inv)
        memcpy(scales, w->scale_inv, scale_bytes(w));
}

void wd_expert_store_fill(struct wd_expert_store *s, int layer, int slot,
                          const struct wd_mlp_weights *full)
{
    unsigned char *b = wd_expert_store_blob(s, layer, slot);
    const struct wd_weight *w[3] = {&full->gate, &full->up, &full->down};
    for (int i = 0; i < 3; i++) {
        WD_ASSERT(w[i]->rows == s->proto[i].rows && w[i]->cols == s->proto[i].cols &&
                  w[i]->dtype == s->proto[i].dtype && w[i]->row0 == 0 && w[i]->col0 == 0);
        pack(w[i], b + s->off[i], (float *)(b + s->off[3 + i]));
    }
}

void wd_expert_store_views(const struct wd_expert_store *s, int layer, int slot, int tp, int rank,
                           struct wd_mlp_weights *out)
{
    unsigned char *b = wd_expert_store_blob(s, layer, slot);
    struct wd_weight full[3];
    for (int i = 0; i < 3; i++) {
        full[i] = s->proto[i];
        full[i].data = b + s->off[i];
        full[i].ld = 0;
        full[i].row0 = full[i].col0 = full[i].scale_cols = 0;
        full[i].scale_inv = s->proto[i].scale_inv ? (const float *)(b + s->off[3 + i]) : NULL;
    }
    int64_t inter = full[0].rows, part = inter / tp, i0 = part * rank;
    out->gate = wd_weight_slice_rows(&full[0], i0, part);
    out->up = wd_weight_slice_rows(&full[1], i0, part);
    out->down = wd_weight_slice_cols(&full[2], i0, part);
}

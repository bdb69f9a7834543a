/*
 * Moving the streamed weights of a model into one huge-page block (see model_weights.h).
 * Runs once at load, before the first forward, with one task per weight on the model's
 * pool. Measured on a 2-core Zen 3 VM (DeepSeek-V3-mid, bf16, batch-1 decode, 2 threads):
 * 0.56-0.63 of the read-only baseline from the file mapping, 0.68-0.74 from this block
 * (same runs, alternating). The cost is the copy at load (the kernel zeroing each huge page
 * first: 2-12 s for 2-4 GB on the shared 2-core machine) and resident memory for the copy;
 * the page cache still holds the file, but the kernel may drop it.
 */
#include "common/model/model_weights.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/model/model.h"
#include "common/util/log.h"
#include "kernels/threadpool.h"

#define HUGE_PAGE (2u << 20)
#define ALIGN 64

struct visit {
    void (*fn)(void *ctx, struct wd_weight *w);
    void *ctx;
    int64_t n;
};

static void visit(struct visit *v, struct wd_weight *w)
{
    if (!w->data || w->rows <= 0 || w->cols <= 0)
        return;
    v->fn(v->ctx, w);
    v->n++;
}

/* Calls fn on every weight the forward streams, in one fixed order; returns how many. */
static int64_t each_weight(struct wd_model *m, void (*fn)(void *ctx, struct wd_weight *w),
                           void *ctx)
{
    struct visit v = {.fn = fn, .ctx = ctx};
    visit(&v, &m->lm_head);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        struct wd_layer_weights *L = &m->layers[l];
        struct wd_attn_weights *a = &L->attn;
        struct wd_weight *attn[] = {&a->q_proj,   &a->k_proj,    &a->v_proj,    &a->q_a_proj,
                                    &a->q_b_proj, &a->kv_a_proj, &a->kv_b_proj, &a->o_proj};
        for (size_t i = 0; i < sizeof(attn) / sizeof(attn[0]); i++)
            visit(&v, attn[i]);
        struct wd_mlp_weights *mlps[2] = {&L->dense, &L->shared};
        for (int i = 0; i < 2; i++) {
            visit(&v, &mlps[i]->gate);
            visit(&v, &mlps[i]->up);
            visit(&v, &mlps[i]->down);
        }
        visit(&v, &L->router);
        if (!L->is_moe || m->experts_store)
            continue;
        for (int e = 0; e < m->expert_end - m->expert_begin; e++) {
            visit(&v, &L->experts[e].gate);
            visit(&v, &L->experts[e].up);
            visit(&v, &L->experts[e].down);
        }
    }
    return v.n;
}

static size_t packed_bytes(const struct wd_weight *w)
{
    size_t b = (size_t)(w->rows * w->cols) * wd_dtype_size(w->dtype);
    return (b + ALIGN - 1) / ALIGN * ALIGN;
}

/* One weight to copy: where its packed copy starts in the block. */
struct copy_item {
    struct wd_weight *w;
    size_t off;
};

struct pack {
    struct copy_item *items; /* NULL while sizing */
    int64_t n;
    size_t used;
};

static void add_weight(void *ctx, struct wd_weight *w)
{
    struct pack *p = ctx;
    if (p->items)
        p->items[p->n] = (struct copy_item){.w = w, .off = p->used};
    p->n++;
    p->used += packed_bytes(w);
}

struct copy_job {
    const struct copy_item *items;
    char *block;
};

/* Copies one weight's rows (only its cols of each) to the block and points it at the
 * copy. Row0, col0 and scale_cols stay: FP8 scales are looked up in full-matrix
 * coordinates. Tasks touch distinct weights and distinct parts of the block. */
static void copy_task(void *arg, int idx, int n_tasks)
{
    const struct copy_job *j = arg;
    struct wd_weight *w = j->items[idx].w;
    char *dst = j->block + j->items[idx].off;
    size_t es = wd_dtype_size(w->dtype), row = (size_t)w->cols * es;
    int64_t ld = wd_weight_ld(w);
    if (w->scale_inv && !w->scale_cols)
        w->scale_cols = (w->cols + w->block_cols - 1) / w->block_cols;
    if (ld == w->cols) {
        memcpy(dst, w->data, row * (size_t)w->rows);
    } else {
        for (int64_t r = 0; r < w->rows; r++)
            memcpy(dst + (size_t)r * row, (const char *)w->data + (size_t)(r * ld) * es, row);
    }
    w->data = dst;
    w->ld = 0;
    (void)n_tasks;
}

void wd_model_weights_to_ram(struct wd_model *m)
{
    struct pack p = {0};
    if (each_weight(m, add_weight, &p) == 0)
        return;
    size_t len = (p.used + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    struct copy_item *items = malloc((size_t)p.n * sizeof(*items));
    /* Map one huge page more and start at the first 2 MiB boundary inside: THP backs only
     * aligned 2 MiB ranges. */
    char *map =
        mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!items || map == MAP_FAILED) {
        wd_log(WD_LOG_WARN, "model", "weights stay in the checkpoint mapping: %s of %zu bytes",
               items ? "mmap" : "malloc", items ? len : (size_t)p.n * sizeof(*items));
        free(items);
        if (map != MAP_FAILED)
            munmap(map, len + HUGE_PAGE);
        return;
    }
    char *block = (char *)(((uintptr_t)map + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    /* Advice only: without THP (or with it off) the copy still works on 4 KiB pages. */
    (void)madvise(block, len, MADV_HUGEPAGE);
    p = (struct pack){.items = items};
    each_weight(m, add_weight, &p);
    /* On the model's threads: the kernel zeroes each new huge page as the copy first touches
     * it, which costs as much as the copy itself. */
    struct copy_job job = {.items = items, .block = block};
    wd_threadpool_run(m->tp, copy_task, &job, (int)p.n);
    free(items);
    (void)mprotect(block, len, PROT_READ);
    m->weights_map = map;
    m->weights_map_len = len + HUGE_PAGE;
}

void wd_model_weights_release(struct wd_model *m)
{
    if (m->weights_map)
        munmap(m->weights_map, m->weights_map_len);
    m->weights_map = NULL;
    m->weights_map_len = 0;
}

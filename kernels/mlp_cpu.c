/*
 * Grouped SwiGLU MLP: two pool passes over (group, row slice) tasks. Slices are
 * multiples of 8 rows sized so every thread gets several tasks; tasks are found
 * by walking the groups (a handful to a few hundred per call).
 */
#include "kernels/mlp_cpu.h"

#include "common/util/status.h"
#include "kernels/linear_cpu.h"
#include "kernels/vec_cpu.h"

struct mlp_job {
    const struct wd_mlp_group *g;
    int n_groups;
    int64_t slice; /* rows per task, a multiple of 8 */
    int is_down;   /* 0: gate/up + silu pass, 1: down pass */
};

static int64_t pass_rows(const struct wd_mlp_group *g, int is_down)
{
    return g->n > 0 ? (is_down ? g->down->rows : g->gate->rows) : 0;
}

static void mlp_task(void *arg, int idx, int n_tasks)
{
    const struct mlp_job *j = arg;
    int64_t left = idx;
    for (int i = 0; i < j->n_groups; i++) {
        const struct wd_mlp_group *g = &j->g[i];
        int64_t rows = pass_rows(g, j->is_down), n_slices = (rows + j->slice - 1) / j->slice;
        if (left >= n_slices) {
            left -= n_slices;
            continue;
        }
        int64_t r0 = left * j->slice, r1 = r0 + j->slice < rows ? r0 + j->slice : rows;
        int64_t inter = g->gate->rows, ld = 2 * inter;
        if (j->is_down) {
            wd_linear_cpu_rows(g->down, g->tmp, ld, g->n, g->y, g->down->rows, r0, r1);
            return;
        }
        wd_linear_cpu_rows(g->gate, g->x, g->gate->cols, g->n, g->tmp, ld, r0, r1);
        wd_linear_cpu_rows(g->up, g->x, g->up->cols, g->n, g->tmp + inter, ld, r0, r1);
        for (int64_t t = 0; t < g->n; t++) {
            float *row = g->tmp + t * ld;
            wd_vec_silu_mul(row + r0, row + inter + r0, r1 - r0, row + r0);
        }
        return;
    }
    (void)n_tasks;
}

static void mlp_pass(const struct wd_mlp_group *groups, int n_groups, int is_down,
                     struct wd_threadpool *tp)
{
    int64_t total = 0;
    for (int i = 0; i < n_groups; i++)
        total += pass_rows(&groups[i], is_down);
    if (total == 0)
        return;
    /* About 8 tasks per thread (a shared machine balances by claiming), 16 to 128 rows. */
    int64_t slice = total / ((int64_t)wd_threadpool_size(tp) * 8);
    slice = (slice + 7) / 8 * 8;
    slice = slice < 16 ? 16 : slice > 128 ? 128 : slice;
    struct mlp_job job = {.g = groups, .n_groups = n_groups, .slice = slice, .is_down = is_down};
    int64_t n_tasks = 0;
    for (int i = 0; i < n_groups; i++)
        n_tasks += (pass_rows(&groups[i], is_down) + slice - 1) / slice;
    wd_threadpool_run(tp, mlp_task, &job, (int)n_tasks);
}

void wd_mlp_cpu(const struct wd_mlp_group *groups, int n_groups, struct wd_threadpool *tp)
{
    for (int i = 0; i < n_groups; i++) {
        const struct wd_mlp_group *g = &groups[i];
        WD_ASSERT(g->up->rows == g->gate->rows && g->up->cols == g->gate->cols);
        WD_ASSERT(g->down->cols == g->gate->rows && g->down->rows == g->gate->cols);
    }
    mlp_pass(groups, n_groups, 0, tp);
    mlp_pass(groups, n_groups, 1, tp);
}

/*
 * Grouped SwiGLU MLP: two pool passes over the groups' rows laid end to end, cut into
 * guided tasks (long first, short last; wd_threadpool_guided_split) of whole 8-row
 * blocks; a task walks the groups it spans (a handful to a few hundred per call).
 */
#include "kernels/mlp_cpu.h"

#include "common/util/status.h"
#include "kernels/linear_cpu.h"
#include "kernels/vec_cpu.h"

struct mlp_job {
    const struct wd_mlp_group *g;
    int n_groups;
    int is_down; /* 0: gate/up + silu pass, 1: down pass */
    /* Task i: rows [bounds[i], bounds[i + 1]) of the groups' rows laid end to end. */
    int64_t bounds[WD_GUIDED_MAX_TASKS + 1];
};

static int64_t pass_rows(const struct wd_mlp_group *g, int is_down)
{
    return g->n > 0 ? (is_down ? g->down->rows : g->gate->rows) : 0;
}

/* Rows [r0, r1) of group g's pass. */
static void group_rows(const struct wd_mlp_group *g, int is_down, int64_t r0, int64_t r1)
{
    int64_t inter = g->gate->rows, ld = 2 * inter;
    if (is_down) {
        wd_linear_cpu_rows(g->down, g->tmp, ld, g->n, g->y, g->down->rows, r0, r1);
        return;
    }
    wd_linear_cpu_rows(g->gate, g->x, g->gate->cols, g->n, g->tmp, ld, r0, r1);
    wd_linear_cpu_rows(g->up, g->x, g->up->cols, g->n, g->tmp + inter, ld, r0, r1);
    for (int64_t t = 0; t < g->n; t++) {
        float *row = g->tmp + t * ld;
        wd_vec_silu_mul(row + r0, row + inter + r0, r1 - r0, row + r0);
    }
}

static void mlp_task(void *arg, int idx, int n_tasks)
{
    const struct mlp_job *j = arg;
    int64_t u0 = j->bounds[idx], u1 = j->bounds[idx + 1], at = 0;
    for (int i = 0; i < j->n_groups && at < u1; i++) {
        const struct wd_mlp_group *g = &j->g[i];
        int64_t rows = pass_rows(g, j->is_down);
        int64_t r0 = u0 > at ? u0 - at : 0, r1 = u1 - at < rows ? u1 - at : rows;
        if (r0 < r1)
            group_rows(g, j->is_down, r0, r1);
        at += rows;
    }
    (void)n_tasks;
}

/* Least weight bytes per task (gate and up rows count twice): ~10 us of a decode stream. */
#define TASK_MIN_BYTES (128 * 1024)

static void mlp_pass(const struct wd_mlp_group *groups, int n_groups, int is_down,
                     struct wd_threadpool *tp)
{
    int64_t total = 0, row_bytes = 0;
    for (int i = 0; i < n_groups; i++) {
        const struct wd_mlp_group *g = &groups[i];
        total += pass_rows(g, is_down);
        const struct wd_weight *w = is_down ? g->down : g->gate;
        int64_t b = w->cols * (int64_t)wd_dtype_size(w->dtype) * (is_down ? 1 : 2);
        row_bytes = b > row_bytes ? b : row_bytes;
    }
    if (total == 0)
        return;
    /* Guided tasks of whole 8-row blocks; a task may span two groups. */
    struct mlp_job job = {.g = groups, .n_groups = n_groups, .is_down = is_down};
    int n_tasks =
        wd_threadpool_guided_split(total, wd_threadpool_size(tp), 8,
                                   TASK_MIN_BYTES / (row_bytes > 0 ? row_bytes : 1), job.bounds);
    wd_threadpool_run(tp, mlp_task, &job, n_tasks);
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

/*
 * EPLB balancing (deepseek-ai/EPLB eplb.py): balanced packing, replication, and the
 * hierarchical policy built from them; plus per-GPU load and balancedness.
 *
 * Exactness. The results equal eplb.py's under torch on the CPU, because every decision is
 * made on the same float32 values in the same order with the same tie rules:
 *   - Weights are rounded to float32 (torch's .float()); per-replica loads are float32
 *     divisions w / count; a pack's load is a float32 running sum in item order.
 *   - balanced_packing orders items with torch.sort(descending=True, stable=False), which on
 *     the CPU is libstdc++'s std::sort (introsort) on (value, index) pairs compared by value.
 *     sort_desc() below is that algorithm step for step, so equal weights come out in exactly
 *     torch's order: index order for 16 items or fewer (insertion sort), and whatever the
 *     median-of-3 partitioning leaves for more. Each item then goes to the lightest pack that
 *     still has room, the lowest pack index on equal loads (Python's min()).
 *   - replicate_experts gives the next replica to argmax(w / count), the lowest expert id on
 *     ties (torch.max(dim).indices returns the first maximum).
 *   - The one sum torch does as a vectorized reduction, the load of an expert group (step 1
 *     of the hierarchical policy), is computed here exactly (in double, then rounded once).
 *     It equals torch's whenever the group sum is exact in float32, which holds for token
 *     counts below 2^24 per group; beyond that torch's own last bit depends on its SIMD width.
 * SGLang (0.5.x) vendors a modified eplb.py whose balanced_packing sums pack loads as Python
 * floats (doubles) instead of float32 tensors; on rare near-ties its layout differs from
 * eplb.py's. We follow eplb.py (tests/tools/eplb_reference.py was checked against it).
 */
#include "common/ep/eplb.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------
 * torch.sort(descending=True) on the CPU: libstdc++ std::sort with "a before b iff a > b".
 * ---------------------------------------------------------------------------------------- */

struct item {
    float w;    /* sort key */
    int32_t id; /* index of the item before sorting */
};

enum { INTRO_THRESHOLD = 16 }; /* libstdc++ _S_threshold */

static int before(const struct item *a, const struct item *b)
{
    return a->w > b->w;
}

static void swap_items(struct item *a, struct item *b)
{
    struct item t = *a;
    *a = *b;
    *b = t;
}

/* Sift the hole at `hole` up towards `top` and store v (std::__push_heap). */
static void push_heap(struct item *first, long hole, long top, struct item v)
{
    long parent = (hole - 1) / 2;
    while (hole > top && before(&first[parent], &v)) {
        first[hole] = first[parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    first[hole] = v;
}

/* std::__adjust_heap: move the hole down to a leaf along larger children, then push v. */
static void adjust_heap(struct item *first, long hole, long len, struct item v)
{
    long top = hole, child = hole;
    while (child < (len - 1) / 2) {
        child = 2 * (child + 1);
        if (before(&first[child], &first[child - 1]))
            child--;
        first[hole] = first[child];
        hole = child;
    }
    if ((len & 1) == 0 && child == (len - 2) / 2) {
        child = 2 * (child + 1);
        first[hole] = first[child - 1];
        hole = child - 1;
    }
    push_heap(first, hole, top, v);
}

/* std::__partial_sort(first, last, last): make_heap then sort_heap (introsort's fallback). */
static void heap_sort(struct item *first, struct item *last)
{
    long len = last - first;
    if (len >= 2) {
        for (long parent = (len - 2) / 2;; parent--) {
            adjust_heap(first, parent, len, first[parent]);
            if (parent == 0)
                break;
        }
    }
    while (last - first > 1) {
        --last;
        struct item v = *last;
        *last = *first;
        adjust_heap(first, 0, last - first, v);
    }
}

static void move_median_to_first(struct item *result, struct item *a, struct item *b,
                                 struct item *c)
{
    if (before(a, b)) {
        if (before(b, c))
            swap_items(result, b);
        else if (before(a, c))
            swap_items(result, c);
        else
            swap_items(result, a);
    } else if (before(a, c)) {
        swap_items(result, a);
    } else if (before(b, c)) {
        swap_items(result, c);
    } else {
        swap_items(result, b);
    }
}

static struct item *unguarded_partition(struct item *first, struct item *last,
                                        const struct item *pivot)
{
    for (;;) {
        while (before(first, pivot))
            ++first;
        --last;
        while (before(pivot, last))
            --last;
        if (!(first < last))
            return first;
        swap_items(first, last);
        ++first;
    }
}

static void introsort_loop(struct item *first, struct item *last, int depth_limit)
{
    while (last - first > INTRO_THRESHOLD) {
        if (depth_limit == 0) {
            heap_sort(first, last);
            return;
        }
        --depth_limit;
        struct item *mid = first + (last - first) / 2;
        move_median_to_first(first, first + 1, mid, last - 1);
        struct item *cut = unguarded_partition(first + 1, last, first);
        introsort_loop(cut, last, depth_limit);
        last = cut;
    }
}

static void unguarded_linear_insert(struct item *last)
{
    struct item v = *last;
    struct item *next = last - 1;
    while (before(&v, next)) {
        *last = *next;
        last = next;
        --next;
    }
    *last = v;
}

static void insertion_sort(struct item *first, struct item *last)
{
    if (first == last)
        return;
    for (struct item *i = first + 1; i != last; ++i) {
        if (before(i, first)) {
            struct item v = *i;
            memmove(first + 1, first, (size_t)(i - first) * sizeof(*first));
            *first = v;
        } else {
            unguarded_linear_insert(i);
        }
    }
}

static void sort_desc(struct item *first, long n)
{
    if (n <= 1)
        return;
    int lg = 0;
    while ((2L << lg) <= n)
        lg++;
    introsort_loop(first, first + n, 2 * lg);
    if (n > INTRO_THRESHOLD) {
        insertion_sort(first, first + INTRO_THRESHOLD);
        for (struct item *i = first + INTRO_THRESHOLD; i != first + n; ++i)
            unguarded_linear_insert(i);
    } else {
        insertion_sort(first, first + n);
    }
}

/* ------------------------------------------------------------------------------------------
 * Building blocks
 * ---------------------------------------------------------------------------------------- */

/* Scratch shared by the building blocks of one layer, sized for the largest use. */
struct scratch {
    struct item *items; /* [max(n_groups, phys per node)] */
    float *pack_load;   /* [max(n_nodes, gpus per node)] */
    int32_t *pack_n;    /* [max(n_nodes, gpus per node)] */
};

/*
 * balanced_packing: n items of weight w into m packs of exactly n / m items each, heaviest item
 * first into the lightest pack with room. pack [n] and rank [n] (position inside the pack) out.
 */
static void balanced_packing(const float *w, int n, int m, int32_t *pack, int32_t *rank,
                             const struct scratch *s)
{
    int per = n / m;
    if (per == 1) {
        for (int i = 0; i < n; i++) {
            pack[i] = i;
            rank[i] = 0;
        }
        return;
    }
    for (int i = 0; i < n; i++) {
        s->items[i].w = w[i];
        s->items[i].id = i;
    }
    sort_desc(s->items, n);
    for (int p = 0; p < m; p++) {
        s->pack_load[p] = 0.0f;
        s->pack_n[p] = 0;
    }
    for (int k = 0; k < n; k++) {
        int id = s->items[k].id, best = -1;
        for (int p = 0; p < m; p++)
            if (s->pack_n[p] < per && (best < 0 || s->pack_load[p] < s->pack_load[best]))
                best = p;
        pack[id] = best;
        rank[id] = s->pack_n[best]++;
        s->pack_load[best] += w[id];
    }
}

/*
 * replicate_experts: n_log experts into n_phy >= n_log slots. Slots 0..n_log-1 hold the
 * originals in order; each further slot goes to the expert with the largest w / count.
 * phy2log [n_phy], rank [n_phy] (replica rank), cnt [n_log] out.
 */
static void replicate_experts(const float *w, int n_log, int n_phy, int32_t *phy2log, int32_t *rank,
                              int32_t *cnt)
{
    for (int i = 0; i < n_log; i++) {
        phy2log[i] = i;
        rank[i] = 0;
        cnt[i] = 1;
    }
    for (int i = n_log; i < n_phy; i++) {
        int best = 0;
        float best_v = w[0] / (float)cnt[0];
        for (int j = 1; j < n_log; j++) {
            float v = w[j] / (float)cnt[j];
            if (v > best_v) {
                best = j;
                best_v = v;
            }
        }
        phy2log[i] = best;
        rank[i] = cnt[best]++;
    }
}

/* ------------------------------------------------------------------------------------------
 * Hierarchical policy (the global policy is this with one group and one node)
 * ---------------------------------------------------------------------------------------- */

struct shape {
    int n_log, n_phy, n_groups, n_nodes, n_gpus;
};

/* Per-layer work arrays, carved from one allocation. */
struct layer_work {
    float *w;          /* [n_log] layer weights in float32 */
    float *group_w;    /* [n_groups] */
    int32_t *g_pack;   /* [n_groups] node of each group */
    int32_t *g_rank;   /* [n_groups] position of the group on its node */
    int32_t *log2mlog; /* [n_log] logical -> node-major "mlog" id */
    int32_t *mlog2log; /* [n_log] */
    float *node_w;     /* [n_log / n_nodes] weights of one node's experts, mlog order */
    int32_t *phy2mlog; /* [n_phy] per node: local mlog id of each node-local slot */
    int32_t *phy_rank; /* [n_phy] per node: replica rank of each node-local slot */
    int32_t *mlog_cnt; /* [n_log] replica count per mlog id */
    float *phy_w;      /* [n_phy / n_nodes] per-replica load of one node's slots */
    int32_t *g_of_phy; /* [n_phy / n_nodes] GPU (within node) of each node-local slot */
    int32_t *r_of_phy; /* [n_phy / n_nodes] position on that GPU */
    int32_t *pphy2phy; /* [n_phy / n_nodes] final node-local position -> node-local slot */
};

/* One layer: out_phy2log [n_phy], out_rank [n_phy], out_cnt [n_log]. */
static void rebalance_layer(const struct shape *sh, const double *weight,
                            const struct layer_work *lw, const struct scratch *s,
                            int32_t *out_phy2log, int32_t *out_rank, int32_t *out_cnt)
{
    const int gsize = sh->n_log / sh->n_groups, groups_per_node = sh->n_groups / sh->n_nodes;
    const int log_per_node = sh->n_log / sh->n_nodes, phy_per_node = sh->n_phy / sh->n_nodes;
    const int gpus_per_node = sh->n_gpus / sh->n_nodes, phy_per_gpu = sh->n_phy / sh->n_gpus;

    for (int e = 0; e < sh->n_log; e++)
        lw->w[e] = (float)weight[e];

    /* Step 1: pack expert groups onto nodes; number experts node-major ("mlog"). */
    for (int g = 0; g < sh->n_groups; g++) {
        double sum = 0.0;
        for (int j = 0; j < gsize; j++)
            sum += (double)lw->w[g * gsize + j];
        lw->group_w[g] = (float)sum;
    }
    balanced_packing(lw->group_w, sh->n_groups, sh->n_nodes, lw->g_pack, lw->g_rank, s);
    for (int g = 0; g < sh->n_groups; g++) {
        int base = (lw->g_pack[g] * groups_per_node + lw->g_rank[g]) * gsize;
        for (int j = 0; j < gsize; j++) {
            lw->log2mlog[g * gsize + j] = base + j;
            lw->mlog2log[base + j] = g * gsize + j;
        }
    }

    for (int node = 0; node < sh->n_nodes; node++) {
        const int mlog0 = node * log_per_node, phy0 = node * phy_per_node;
        int32_t *phy2mlog = lw->phy2mlog + phy0, *phy_rank = lw->phy_rank + phy0;
        int32_t *cnt = lw->mlog_cnt + mlog0;

        /* Step 2: replicate the node's experts into the node's slots. */
        for (int k = 0; k < log_per_node; k++)
            lw->node_w[k] = lw->w[lw->mlog2log[mlog0 + k]];
        replicate_experts(lw->node_w, log_per_node, phy_per_node, phy2mlog, phy_rank, cnt);

        /* Step 3: pack the node's slots onto its GPUs by per-replica load. */
        for (int q = 0; q < phy_per_node; q++)
            lw->phy_w[q] = lw->node_w[phy2mlog[q]] / (float)cnt[phy2mlog[q]];
        balanced_packing(lw->phy_w, phy_per_node, gpus_per_node, lw->g_of_phy, lw->r_of_phy, s);
        for (int q = 0; q < phy_per_node; q++)
            lw->pphy2phy[lw->g_of_phy[q] * phy_per_gpu + lw->r_of_phy[q]] = q;
        for (int t = 0; t < phy_per_node; t++) {
            int q = lw->pphy2phy[t];
            out_phy2log[phy0 + t] = lw->mlog2log[mlog0 + phy2mlog[q]];
            out_rank[phy0 + t] = phy_rank[q];
        }
    }
    for (int e = 0; e < sh->n_log; e++)
        out_cnt[e] = lw->mlog_cnt[lw->log2mlog[e]];
}

/* ------------------------------------------------------------------------------------------
 * Entry points
 * ---------------------------------------------------------------------------------------- */

enum wd_status wd_eplb_algorithm_parse(const char *name, enum wd_eplb_algorithm *algo_p,
                                       struct wd_error *err)
{
    if (!name)
        return wd_error_set(err, WD_ERR_INVALID, "eplb algorithm: missing name");
    if (strcmp(name, "auto") == 0)
        *algo_p = WD_EPLB_AUTO;
    else if (strcmp(name, "deepseek_hierarchical") == 0)
        *algo_p = WD_EPLB_HIERARCHICAL;
    else if (strcmp(name, "deepseek") == 0)
        *algo_p = WD_EPLB_GLOBAL;
    else if (strncmp(name, "deepseek_vec", 12) == 0 || strcmp(name, "elasticity_aware") == 0)
        return wd_error_set(err, WD_ERR_UNSUPPORTED,
                            "--eplb-algorithm %s is not supported (use auto, deepseek or "
                            "deepseek_hierarchical)",
                            name);
    else
        return wd_error_set(err, WD_ERR_INVALID,
                            "--eplb-algorithm '%s' is unknown (auto, deepseek, "
                            "deepseek_hierarchical)",
                            name);
    return WD_OK;
}

const char *wd_eplb_algorithm_name(enum wd_eplb_algorithm algo)
{
    switch (algo) {
    case WD_EPLB_AUTO:
        return "auto";
    case WD_EPLB_HIERARCHICAL:
        return "deepseek_hierarchical";
    case WD_EPLB_GLOBAL:
        return "deepseek";
    }
    return "?";
}

int wd_eplb_max_replicas_bound(int n_logical, int n_physical)
{
    return n_physical - n_logical + 1;
}

/* Checks sizes and picks the policy; fills sh with the groups/nodes the routine runs with. */
static enum wd_status check_shape(enum wd_eplb_algorithm algo, int n_layers, int n_logical,
                                  int n_physical, int n_groups, int n_nodes, int n_gpus,
                                  int max_replicas, struct shape *sh, struct wd_error *err)
{
    const char *w = "eplb";
    if (n_layers < 1 || n_logical < 1 || n_physical < 1 || n_nodes < 1 || n_gpus < 1 ||
        n_groups < 0 || max_replicas < 1)
        return wd_error_set(err, WD_ERR_INVALID,
                            "%s: sizes must be positive (layers %d, logical %d, physical %d, "
                            "groups %d, nodes %d, gpus %d, max_replicas %d)",
                            w, n_layers, n_logical, n_physical, n_groups, n_nodes, n_gpus,
                            max_replicas);
    if (n_physical < n_logical)
        return wd_error_set(err, WD_ERR_INVALID,
                            "%s: %d physical expert slots cannot hold %d logical experts", w,
                            n_physical, n_logical);
    if (n_physical % n_gpus != 0)
        return wd_error_set(err, WD_ERR_INVALID,
                            "%s: %d physical experts must be divisible by %d GPUs "
                            "(num_logical + ep_num_redundant_experts must be a multiple of "
                            "ep_size)",
                            w, n_physical, n_gpus);
    if (n_gpus % n_nodes != 0)
        return wd_error_set(err, WD_ERR_INVALID, "%s: %d GPUs must be divisible by %d nodes", w,
                            n_gpus, n_nodes);
    int hier = n_groups > 0 && n_groups % n_nodes == 0;
    if (algo == WD_EPLB_HIERARCHICAL && !hier)
        return wd_error_set(err, WD_ERR_INVALID,
                            "%s: the hierarchical policy needs the %d expert groups to be "
                            "divisible by %d nodes",
                            w, n_groups, n_nodes);
    if (algo == WD_EPLB_GLOBAL)
        hier = 0;
    if (hier && n_logical % n_groups != 0)
        return wd_error_set(err, WD_ERR_INVALID,
                            "%s: %d logical experts must be divisible by %d expert groups", w,
                            n_logical, n_groups);
    if ((long long)n_layers * n_physical > INT32_MAX / 4 ||
        (long long)n_layers * n_logical * max_replicas > INT32_MAX / 4)
        return wd_error_set(err, WD_ERR_INVALID, "%s: %d layers x %d slots is too large", w,
                            n_layers, n_physical);
    sh->n_log = n_logical;
    sh->n_phy = n_physical;
    sh->n_groups = hier ? n_groups : 1;
    sh->n_nodes = hier ? n_nodes : 1;
    sh->n_gpus = n_gpus;
    return WD_OK;
}

static size_t max_sz(size_t a, size_t b)
{
    return a > b ? a : b;
}

/* Carve n elements off the front of a scratch block. */
static float *take_f(float **p, size_t n)
{
    float *r = *p;
    *p += n;
    return r;
}

static int32_t *take_i(int32_t **p, size_t n)
{
    int32_t *r = *p;
    *p += n;
    return r;
}

enum wd_status wd_eplb_rebalance_algo(enum wd_eplb_algorithm algo, const double *weight,
                                      int n_layers, int n_logical, int n_physical, int n_groups,
                                      int n_nodes, int n_gpus, int32_t *phy2log, int32_t *log2phy,
                                      int max_replicas, int32_t *logcnt, struct wd_error *err)
{
    struct shape sh = {0};
    WD_CHECK(check_shape(algo, n_layers, n_logical, n_physical, n_groups, n_nodes, n_gpus,
                         max_replicas, &sh, err));
    for (long i = 0; i < (long)n_layers * n_logical; i++) {
        /* Finite float32 after rounding, and a load, not a debt. */
        if (!(weight[i] >= 0.0 && weight[i] <= FLT_MAX))
            return wd_error_set(err, WD_ERR_INVALID,
                                "eplb: weight[%ld][%ld] = %g must be a finite load >= 0",
                                i / n_logical, i % n_logical, weight[i]);
    }

    const size_t nl = (size_t)n_logical, np = (size_t)n_physical, ng = (size_t)sh.n_groups;
    const size_t np_node = np / (size_t)sh.n_nodes, nl_node = nl / (size_t)sh.n_nodes;
    const size_t n_items = max_sz(ng, np_node);
    const size_t n_packs = max_sz((size_t)sh.n_nodes, (size_t)(sh.n_gpus / sh.n_nodes));
    const size_t total_phy = (size_t)n_layers * np, total_log = (size_t)n_layers * nl;
    /* One block: floats first, then int32 arrays, then items (all 4-byte aligned). */
    size_t n_f = nl + ng + nl_node + np_node + n_packs;
    size_t n_i = 2 * ng + 2 * nl + 2 * np + nl + 3 * np_node + n_packs + 2 * total_phy + total_log;
    char *block =
        malloc(n_f * sizeof(float) + n_i * sizeof(int32_t) + n_items * sizeof(struct item));
    if (!block)
        return wd_error_set(err, WD_ERR_NOMEM, "eplb: out of memory for %d layers", n_layers);

    float *f = (float *)block;
    struct layer_work lw;
    struct scratch s;
    lw.w = take_f(&f, nl);
    lw.group_w = take_f(&f, ng);
    lw.node_w = take_f(&f, nl_node);
    lw.phy_w = take_f(&f, np_node);
    s.pack_load = take_f(&f, n_packs);
    int32_t *ip = (int32_t *)f;
    lw.g_pack = take_i(&ip, ng);
    lw.g_rank = take_i(&ip, ng);
    lw.log2mlog = take_i(&ip, nl);
    lw.mlog2log = take_i(&ip, nl);
    lw.phy2mlog = take_i(&ip, np);
    lw.phy_rank = take_i(&ip, np);
    lw.mlog_cnt = take_i(&ip, nl);
    lw.g_of_phy = take_i(&ip, np_node);
    lw.r_of_phy = take_i(&ip, np_node);
    lw.pphy2phy = take_i(&ip, np_node);
    s.pack_n = take_i(&ip, n_packs);
    int32_t *st_phy2log = take_i(&ip, total_phy); /* results, copied out on success */
    int32_t *st_rank = take_i(&ip, total_phy);
    int32_t *st_cnt = take_i(&ip, total_log);
    s.items = (struct item *)ip;

    int need = 0;
    for (int l = 0; l < n_layers; l++) {
        rebalance_layer(&sh, weight + (size_t)l * nl, &lw, &s, st_phy2log + (size_t)l * np,
                        st_rank + (size_t)l * np, st_cnt + (size_t)l * nl);
        for (size_t e = 0; e < nl; e++)
            if (st_cnt[(size_t)l * nl + e] > need)
                need = st_cnt[(size_t)l * nl + e];
    }
    if (need > max_replicas) {
        free(block);
        return wd_error_set(err, WD_ERR_INVALID,
                            "eplb: an expert got %d replicas but log2phy has room for %d", need,
                            max_replicas);
    }

    memcpy(phy2log, st_phy2log, total_phy * sizeof(int32_t));
    memcpy(logcnt, st_cnt, total_log * sizeof(int32_t));
    for (size_t i = 0; i < total_log * (size_t)max_replicas; i++)
        log2phy[i] = -1;
    for (int l = 0; l < n_layers; l++)
        for (size_t p = 0; p < np; p++) {
            size_t at = (size_t)l * np + p;
            log2phy[((size_t)l * nl + (size_t)st_phy2log[at]) * (size_t)max_replicas +
                    (size_t)st_rank[at]] = (int32_t)p;
        }
    free(block);
    return WD_OK;
}

enum wd_status wd_eplb_rebalance(const double *weight, int n_layers, int n_logical, int n_physical,
                                 int n_groups, int n_nodes, int n_gpus, int32_t *phy2log,
                                 int32_t *log2phy, int max_replicas, int32_t *logcnt,
                                 struct wd_error *err)
{
    return wd_eplb_rebalance_algo(WD_EPLB_AUTO, weight, n_layers, n_logical, n_physical, n_groups,
                                  n_nodes, n_gpus, phy2log, log2phy, max_replicas, logcnt, err);
}

/* ------------------------------------------------------------------------------------------
 * Load and balancedness
 * ---------------------------------------------------------------------------------------- */

enum wd_status wd_eplb_gpu_load(const double *weight, int n_logical, const int32_t *phy2log,
                                int n_physical, int n_gpus, double *gpu_load, struct wd_error *err)
{
    if (n_logical < 1 || n_gpus < 1 || n_physical < n_logical || n_physical % n_gpus != 0)
        return wd_error_set(err, WD_ERR_INVALID,
                            "eplb gpu load: bad sizes (logical %d, physical %d, gpus %d)",
                            n_logical, n_physical, n_gpus);
    int32_t *cnt = calloc((size_t)n_logical, sizeof(*cnt));
    if (!cnt)
        return wd_error_set(err, WD_ERR_NOMEM, "eplb gpu load: out of memory");
    for (int p = 0; p < n_physical; p++) {
        if (phy2log[p] < 0 || phy2log[p] >= n_logical) {
            free(cnt);
            return wd_error_set(err, WD_ERR_INVALID,
                                "eplb gpu load: slot %d holds expert %d, outside [0, %d)", p,
                                phy2log[p], n_logical);
        }
        cnt[phy2log[p]]++;
    }
    for (int e = 0; e < n_logical; e++) {
        if (cnt[e] == 0) {
            free(cnt);
            return wd_error_set(err, WD_ERR_INVALID, "eplb gpu load: expert %d has no replica", e);
        }
    }
    int per = n_physical / n_gpus;
    for (int g = 0; g < n_gpus; g++) {
        double sum = 0.0;
        for (int p = g * per; p < (g + 1) * per; p++)
            sum += weight[phy2log[p]] / cnt[phy2log[p]];
        gpu_load[g] = sum;
    }
    free(cnt);
    return WD_OK;
}

void wd_eplb_gpu_load_physical(const double *phys_load, int n_physical, int n_gpus,
                               double *gpu_load)
{
    WD_ASSERT(n_gpus > 0 && n_physical % n_gpus == 0);
    int per = n_physical / n_gpus;
    for (int g = 0; g < n_gpus; g++) {
        double sum = 0.0;
        for (int p = g * per; p < (g + 1) * per; p++)
            sum += phys_load[p];
        gpu_load[g] = sum;
    }
}

double wd_eplb_balancedness(const double *gpu_load, int n_gpus)
{
    if (n_gpus <= 0)
        return 1.0;
    double sum = 0.0, max = 0.0;
    for (int g = 0; g < n_gpus; g++) {
        sum += gpu_load[g];
        if (gpu_load[g] > max)
            max = gpu_load[g];
    }
    if (max <= 0.0)
        return 1.0;
    return sum / n_gpus / max;
}

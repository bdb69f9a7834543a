/*
 * EPLB balancing: the deepseek-ai/EPLB README example, a differential test against outputs of
 * the torch reference (tests/tools/eplb_reference.py, checked against eplb.py) stored in
 * tests/fixtures/eplb/rebalance_cases.txt, the SPEC-EP 9.4 invariants over random shapes and
 * loads (with an independent min-max oracle for the replica counts), validation errors, and
 * per-GPU load / balancedness.
 */
#include "common/ep/eplb.h"
#include "tests/unit/wd_test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------
 * The README example of deepseek-ai/EPLB
 * ---------------------------------------------------------------------------------------- */

static const double readme_weight[2 * 12] = {
    90, 132, 40,  61, 104, 165, 39,  4,   73,  56, 183, 86, /* layer 0 */
    20, 107, 104, 64, 19,  197, 187, 157, 172, 86, 16,  27, /* layer 1 */
};

static void test_readme_example(void)
{
    /* Printed by the README (num_replicas 16, num_groups 4, num_nodes 2, num_gpus 8). */
    static const int32_t want_phy2log[2 * 16] = {
        5, 6,  5, 7, 8, 4,  3, 4, 10, 9, 10, 2, 0, 1, 11, 1,
        7, 10, 6, 8, 6, 11, 8, 9, 2,  4, 5,  1, 5, 0, 3,  1,
    };
    /* The README does not print these; they follow from its phy2log by counting, and the
     * replica order is what eplb.py returns (see tests/fixtures/eplb/rebalance_cases.txt). */
    static const int32_t want_logcnt[2 * 12] = {
        1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1, 1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1,
    };
    static const int32_t want_log2phy[2 * 12 * 2] = {
        12, -1, 15, 13, 11, -1, 6,  -1, 7, 5,  0,  2,  1, -1, 3, -1, 4, -1, 9, -1, 8, 10, 14, -1,
        13, -1, 15, 11, 8,  -1, 14, -1, 9, -1, 10, 12, 2, 4,  0, -1, 6, 3,  7, -1, 1, -1, 5,  -1,
    };
    int32_t phy2log[32], log2phy[48], logcnt[24];
    struct wd_error err = {0};
    WD_EXPECT_EQ_INT(
        wd_eplb_rebalance(readme_weight, 2, 12, 16, 4, 2, 8, phy2log, log2phy, 2, logcnt, &err),
        WD_OK);
    for (int i = 0; i < 32; i++)
        WD_EXPECT_MSG(phy2log[i] == want_phy2log[i], "phy2log[%d][%d] = %d, README says %d", i / 16,
                      i % 16, phy2log[i], want_phy2log[i]);
    for (int i = 0; i < 24; i++)
        WD_EXPECT_EQ_INT(logcnt[i], want_logcnt[i]);
    for (int i = 0; i < 48; i++)
        WD_EXPECT_EQ_INT(log2phy[i], want_log2phy[i]);

    /* SPEC-EP 9.4: the max GPU load is no worse than the trivial placement (slot p holds
     * expert p % 12), layer by layer. */
    for (int l = 0; l < 2; l++) {
        int32_t trivial[16];
        for (int p = 0; p < 16; p++)
            trivial[p] = p % 12;
        double load_eplb[8], load_triv[8];
        WD_EXPECT_EQ_INT(
            wd_eplb_gpu_load(readme_weight + l * 12, 12, phy2log + l * 16, 16, 8, load_eplb, NULL),
            WD_OK);
        WD_EXPECT_EQ_INT(
            wd_eplb_gpu_load(readme_weight + l * 12, 12, trivial, 16, 8, load_triv, NULL), WD_OK);
        WD_EXPECT(wd_eplb_balancedness(load_eplb, 8) >= wd_eplb_balancedness(load_triv, 8));
    }
    /* Layer 0, GPU 0 holds experts 5 (one of two replicas) and 6: 165 / 2 + 39. */
    double load[8];
    WD_EXPECT_EQ_INT(wd_eplb_gpu_load(readme_weight, 12, phy2log, 16, 8, load, NULL), WD_OK);
    WD_EXPECT_NEAR(load[0], 82.5 + 39.0, 1e-12);

    /* A log2phy with room for exactly the largest replica count is enough; one less is not. */
    int32_t log2phy1[24];
    WD_EXPECT_EQ_INT(
        wd_eplb_rebalance(readme_weight, 2, 12, 16, 4, 2, 8, phy2log, log2phy1, 1, logcnt, &err),
        WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "2 replicas") != NULL);
}

/* ------------------------------------------------------------------------------------------
 * Differential test against the torch reference
 * ---------------------------------------------------------------------------------------- */

/* Parses "key v0 v1 ..." into out[0..n); returns the count read, -1 on a key mismatch. */
static long parse_numbers(char *line, const char *key, double *out, long cap)
{
    size_t klen = strlen(key);
    if (strncmp(line, key, klen) != 0 || line[klen] != ' ')
        return -1;
    char *s = line + klen, *end;
    long n = 0;
    for (;;) {
        double v = strtod(s, &end);
        if (end == s)
            break;
        if (n < cap)
            out[n] = v;
        n++;
        s = end;
    }
    return n;
}

static char *next_line(FILE *f, char **buf, size_t *cap)
{
    while (getline(buf, cap, f) > 0) {
        if ((*buf)[0] != '#')
            return *buf;
    }
    return NULL;
}

static void test_against_reference(void)
{
    FILE *f = fopen(wd_test_src("tests/fixtures/eplb/rebalance_cases.txt"), "r");
    WD_EXPECT_MSG(f != NULL, "cannot open the rebalance fixture");
    if (!f)
        return;
    char *line = NULL;
    size_t cap = 0;
    int n_cases = 0;
    while (next_line(f, &line, &cap)) {
        int L, E, P, G, N, K, width;
        char algo_name[32];
        if (sscanf(line, "case %d %d %d %d %d %d %31s %d", &L, &E, &P, &G, &N, &K, algo_name,
                   &width) != 8) {
            WD_EXPECT_MSG(0, "bad fixture line: %.60s", line);
            break;
        }
        enum wd_eplb_algorithm algo;
        WD_EXPECT_EQ_INT(wd_eplb_algorithm_parse(algo_name, &algo, NULL), WD_OK);
        long nw = (long)L * E, np = (long)L * P, nx = nw * width;
        double *buf = malloc(sizeof(double) * (size_t)(nw + np + nw + nx));
        double *w = buf, *want_p2l = w + nw, *want_cnt = want_p2l + np, *want_l2p = want_cnt + nw;
        WD_EXPECT_EQ_INT(parse_numbers(next_line(f, &line, &cap), "weight", w, nw), nw);
        WD_EXPECT_EQ_INT(parse_numbers(next_line(f, &line, &cap), "phy2log", want_p2l, np), np);
        WD_EXPECT_EQ_INT(parse_numbers(next_line(f, &line, &cap), "logcnt", want_cnt, nw), nw);
        WD_EXPECT_EQ_INT(parse_numbers(next_line(f, &line, &cap), "log2phy", want_l2p, nx), nx);

        int32_t *p2l = malloc(sizeof(int32_t) * (size_t)np);
        int32_t *l2p = malloc(sizeof(int32_t) * (size_t)nx);
        int32_t *cnt = malloc(sizeof(int32_t) * (size_t)nw);
        struct wd_error err = {0};
        enum wd_status st =
            wd_eplb_rebalance_algo(algo, w, L, E, P, G, N, K, p2l, l2p, width, cnt, &err);
        WD_EXPECT_MSG(st == WD_OK, "case %d: %s", n_cases, err.msg);
        int bad = 0;
        for (long i = 0; st == WD_OK && i < np && !bad; i++)
            if (p2l[i] != (int32_t)want_p2l[i]) {
                WD_EXPECT_MSG(0, "case %d (%d %d %d %d %d %d %s): phy2log[%ld][%ld] = %d, want %d",
                              n_cases, L, E, P, G, N, K, algo_name, i / P, i % P, p2l[i],
                              (int)want_p2l[i]);
                bad = 1;
            }
        for (long i = 0; st == WD_OK && i < nw && !bad; i++)
            if (cnt[i] != (int32_t)want_cnt[i]) {
                WD_EXPECT_MSG(0, "case %d: logcnt[%ld] = %d, want %d", n_cases, i, cnt[i],
                              (int)want_cnt[i]);
                bad = 1;
            }
        for (long i = 0; st == WD_OK && i < nx && !bad; i++)
            if (l2p[i] != (int32_t)want_l2p[i]) {
                WD_EXPECT_MSG(0, "case %d: log2phy flat[%ld] = %d, want %d", n_cases, i, l2p[i],
                              (int)want_l2p[i]);
                bad = 1;
            }
        wd_test_checks++;
        free(p2l);
        free(l2p);
        free(cnt);
        free(buf);
        n_cases++;
    }
    free(line);
    fclose(f);
    WD_EXPECT_MSG(n_cases >= 20, "only %d fixture cases", n_cases);
}

/* ------------------------------------------------------------------------------------------
 * Invariants over random shapes and loads
 * ---------------------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int rng_below(uint64_t *s, int n)
{
    return (int)(rng_next(s) % (uint64_t)n);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Replicas expert weight w needs so that w / count <= t. */
static long need_for(double w, double t)
{
    long c = 1;
    if (t <= 0.0)
        return w > 0.0 ? 1L << 40 : 1; /* a positive load never fits under 0 */
    if (w > t) {
        c = (long)(w / t);
        if (c < 1)
            c = 1;
        while (w / (double)c > t)
            c++;
        while (c > 1 && w / (double)(c - 1) <= t)
            c--;
    }
    return c;
}

/* The smallest achievable max over experts of w / count with sum(count) = n_phy and every
 * count >= 1, found by binary search over the candidate values w_i / k: an oracle for the
 * greedy replication that shares no code with it. */
static double minmax_oracle(const float *w, int n, int n_phy)
{
    int kmax = n_phy - n + 1;
    double *cand = malloc(sizeof(double) * (size_t)n * (size_t)kmax + sizeof(double));
    long nc = 0;
    for (int i = 0; i < n; i++)
        for (int k = 1; k <= kmax; k++)
            cand[nc++] = (double)w[i] / k;
    cand[nc++] = 0.0;
    qsort(cand, (size_t)nc, sizeof(double), cmp_double);
    long lo = 0, hi = nc - 1; /* cand[hi] (the largest weight) is always feasible */
    while (lo < hi) {
        long mid = (lo + hi) / 2;
        long total = 0;
        for (int i = 0; i < n && total <= n_phy; i++)
            total += need_for(w[i], cand[mid]);
        if (total <= n_phy)
            hi = mid;
        else
            lo = mid + 1;
    }
    double t = cand[lo];
    free(cand);
    return t;
}

struct inv_case {
    int L, E, P, G, N, K;
    int is_hier; /* the policy the auto rule picks */
};

/* Checks SPEC-EP 9.4 on one result; returns the number of failed checks. */
static int check_invariants(const struct inv_case *c, const double *weight, const int32_t *p2l,
                            const int32_t *l2p, int X, const int32_t *cnt)
{
    int fails = 0;
    int per_node = c->P / c->N, log_per_node = c->E / c->N;
    int32_t *seen = calloc((size_t)c->E, sizeof(int32_t));
    int32_t *node_of = malloc(sizeof(int32_t) * (size_t)c->E);
    float *wf = malloc(sizeof(float) * (size_t)c->E);
    for (int l = 0; l < c->L && !fails; l++) {
        const int32_t *pl = p2l + (size_t)l * c->P, *cl = cnt + (size_t)l * c->E;
        const int32_t *xl = l2p + (size_t)l * c->E * X;
        long sum = 0;
        memset(seen, 0, sizeof(int32_t) * (size_t)c->E);
        for (int e = 0; e < c->E; e++) {
            sum += cl[e];
            fails += cl[e] < 1;
        }
        fails += sum != c->P;
        for (int p = 0; p < c->P; p++) {
            if (pl[p] < 0 || pl[p] >= c->E) {
                fails++;
                continue;
            }
            seen[pl[p]]++;
        }
        for (int e = 0; e < c->E; e++) {
            fails += seen[e] != cl[e];
            /* log2phy lists exactly the slots holding e, then -1. */
            for (int r = 0; r < X; r++) {
                int32_t s = xl[e * X + r];
                if (r < cl[e])
                    fails += s < 0 || s >= c->P || pl[s] != e;
                else
                    fails += s != -1;
            }
            for (int r = 0; r < cl[e]; r++)
                for (int q = r + 1; q < cl[e]; q++)
                    fails += xl[e * X + r] == xl[e * X + q];
        }
        if (c->is_hier) {
            /* Every replica of every expert of a group sits on the group's node, and each node
             * holds whole groups only. */
            int gsize = c->E / c->G;
            for (int e = 0; e < c->E; e++)
                node_of[e] = -1;
            for (int p = 0; p < c->P; p++) {
                int e = pl[p], node = p / per_node;
                int first = (e / gsize) * gsize;
                if (node_of[first] == -1)
                    node_of[first] = node;
                fails += node_of[first] != node;
            }
            /* Replication inside each node is optimal for the node's slot budget. */
            for (int node = 0; node < c->N; node++) {
                int k = 0;
                double achieved = 0.0;
                for (int e = 0; e < c->E; e++) {
                    if (node_of[(e / gsize) * gsize] != node)
                        continue;
                    wf[k++] = (float)weight[(size_t)l * c->E + e];
                    double v = (double)(float)weight[(size_t)l * c->E + e] / cl[e];
                    if (v > achieved)
                        achieved = v;
                }
                fails += k != log_per_node;
                double best = minmax_oracle(wf, k, per_node);
                fails += achieved > best * (1 + 1e-6) + 1e-30;
            }
        } else {
            double achieved = 0.0;
            for (int e = 0; e < c->E; e++) {
                wf[e] = (float)weight[(size_t)l * c->E + e];
                double v = (double)wf[e] / cl[e];
                if (v > achieved)
                    achieved = v;
            }
            double best = minmax_oracle(wf, c->E, c->P);
            fails += achieved > best * (1 + 1e-6) + 1e-30;
        }
    }
    free(seen);
    free(node_of);
    free(wf);
    return fails;
}

static void random_case(uint64_t *s, struct inv_case *c)
{
    static const int nodes[] = {1, 1, 2, 2, 4};
    static const int gpn[] = {1, 2, 4, 8};
    c->N = nodes[rng_below(s, 5)];
    c->K = c->N * gpn[rng_below(s, 4)];
    int kind = rng_below(s, 4), gsize = 1 + rng_below(s, 8);
    if (kind == 0) {
        c->G = 0; /* no expert groups: global policy */
        c->E = gsize * (1 + rng_below(s, 8));
    } else {
        if (kind == 1)
            c->G = 1 + rng_below(s, 7); /* often not a multiple of N: global policy */
        else
            c->G = c->N * (1 + rng_below(s, 4));
        c->E = c->G * gsize;
    }
    int extra = rng_below(s, c->E + 1);
    c->P = (c->E + extra + c->K - 1) / c->K * c->K;
    c->L = 1 + rng_below(s, 3);
    c->is_hier = c->G > 0 && c->G % c->N == 0;
}

static void fill_weights(uint64_t *s, int kind, double *w, int n)
{
    for (int i = 0; i < n; i++) {
        switch (kind) {
        case 0: /* skewed, a few hot experts */
            w[i] = (double)(int)(2000.0 / (1 + rng_below(s, n)) * (0.5 + rng_below(s, 100) / 66.0));
            break;
        case 1: /* many ties */
            w[i] = (double)(rng_below(s, 3) * 4);
            break;
        case 2: /* arbitrary reals */
            w[i] = (double)(rng_next(s) >> 11) / 9007199254740992.0 * 1000.0;
            break;
        case 3: /* all idle */
            w[i] = 0.0;
            break;
        default: /* one hot expert */
            w[i] = i == 0 ? 1e6 : 1.0;
            break;
        }
    }
}

static void test_invariants_random(void)
{
    uint64_t s = 12345;
    int n_hier = 0, n_global = 0;
    for (int t = 0; t < 400; t++) {
        struct inv_case c;
        random_case(&s, &c);
        int kind = t % 5;
        int X = wd_eplb_max_replicas_bound(c.E, c.P);
        double *w = malloc(sizeof(double) * (size_t)(c.L * c.E));
        int32_t *p2l = malloc(sizeof(int32_t) * (size_t)(c.L * c.P));
        int32_t *l2p = malloc(sizeof(int32_t) * (size_t)(c.L * c.E * X));
        int32_t *cnt = malloc(sizeof(int32_t) * (size_t)(c.L * c.E));
        fill_weights(&s, kind, w, c.L * c.E);
        struct wd_error err = {0};
        enum wd_status st =
            wd_eplb_rebalance(w, c.L, c.E, c.P, c.G, c.N, c.K, p2l, l2p, X, cnt, &err);
        WD_EXPECT_MSG(st == WD_OK, "case %d: %s", t, err.msg);
        if (st == WD_OK) {
            int fails = check_invariants(&c, w, p2l, l2p, X, cnt);
            WD_EXPECT_MSG(fails == 0,
                          "case %d (L%d E%d P%d G%d N%d K%d kind %d): %d invariant failures", t,
                          c.L, c.E, c.P, c.G, c.N, c.K, kind, fails);
            n_hier += c.is_hier;
            n_global += !c.is_hier;
        }
        free(w);
        free(p2l);
        free(l2p);
        free(cnt);
    }
    WD_EXPECT_MSG(n_hier > 100 && n_global > 100, "hierarchical %d, global %d", n_hier, n_global);
}

/* Without redundant slots and with experts numbered heaviest first, the trivial placement puts
 * the heaviest experts together on GPU 0: the largest GPU load any placement can have. EPLB
 * must then balance at least as well, under both policies (SPEC-EP 9.4). */
static void test_never_worse_than_trivial(void)
{
    uint64_t s = 777;
    int improved = 0, n = 0;
    for (int t = 0; t < 200; t++) {
        struct inv_case c;
        random_case(&s, &c);
        c.P = c.E;
        if (c.E % c.K != 0)
            continue;
        double *w = malloc(sizeof(double) * (size_t)c.E);
        int32_t *p2l = malloc(sizeof(int32_t) * (size_t)c.E * 3), *l2p = p2l + c.E;
        int32_t *cnt = l2p + c.E, *triv = malloc(sizeof(int32_t) * (size_t)c.E);
        double *lt = malloc(sizeof(double) * (size_t)c.K * 2), *le = lt + c.K;
        fill_weights(&s, t % 3, w, c.E);
        qsort(w, (size_t)c.E, sizeof(double), cmp_double);
        for (int i = 0; i < c.E / 2; i++) {
            double tmp = w[i];
            w[i] = w[c.E - 1 - i];
            w[c.E - 1 - i] = tmp;
        }
        for (int p = 0; p < c.E; p++)
            triv[p] = p;
        WD_EXPECT_EQ_INT(wd_eplb_rebalance(w, 1, c.E, c.E, c.G, c.N, c.K, p2l, l2p, 1, cnt, NULL),
                         WD_OK);
        wd_eplb_gpu_load(w, c.E, triv, c.E, c.K, lt, NULL);
        wd_eplb_gpu_load(w, c.E, p2l, c.E, c.K, le, NULL);
        double be = wd_eplb_balancedness(le, c.K), bt = wd_eplb_balancedness(lt, c.K);
        WD_EXPECT_MSG(be >= bt - 1e-12, "E%d G%d N%d K%d: %g < trivial %g", c.E, c.G, c.N, c.K, be,
                      bt);
        improved += be > bt + 1e-9;
        n++;
        free(w);
        free(p2l);
        free(triv);
        free(lt);
    }
    WD_EXPECT_MSG(n > 50 && improved > n / 2, "improved %d of %d", improved, n);
}

/* Edge shapes: one expert, no redundancy, one slot per GPU, one GPU. */
static void test_edge_shapes(void)
{
    double w1[1] = {5.0};
    int32_t p2l[8], l2p[8], cnt[1];
    WD_EXPECT_EQ_INT(wd_eplb_rebalance(w1, 1, 1, 8, 1, 1, 4, p2l, l2p, 8, cnt, NULL), WD_OK);
    WD_EXPECT_EQ_INT(cnt[0], 8);
    for (int p = 0; p < 8; p++)
        WD_EXPECT_EQ_INT(p2l[p], 0);

    /* No redundancy, one expert per GPU: a permutation. */
    double w4[4] = {1, 9, 3, 7};
    int32_t q[4], x[4], c4[4];
    WD_EXPECT_EQ_INT(wd_eplb_rebalance(w4, 1, 4, 4, 2, 2, 4, q, x, 1, c4, NULL), WD_OK);
    int seen = 0;
    for (int p = 0; p < 4; p++)
        seen |= 1 << q[p];
    WD_EXPECT_EQ_INT(seen, 15);

    /* One GPU holds everything; the heaviest experts get the redundant slots. */
    double w3[3] = {1, 10, 4};
    int32_t r[6], rx[12], rc[3];
    WD_EXPECT_EQ_INT(wd_eplb_rebalance(w3, 1, 3, 6, 0, 1, 1, r, rx, 4, rc, NULL), WD_OK);
    WD_EXPECT_EQ_INT(rc[0], 1);
    WD_EXPECT_EQ_INT(rc[1], 3); /* 10 -> 10/2=5 -> 4 vs 5: second extra to 1, then 4 vs 3.33 */
    WD_EXPECT_EQ_INT(rc[2], 2);
}

/* ------------------------------------------------------------------------------------------
 * Validation
 * ---------------------------------------------------------------------------------------- */

static void expect_invalid(int L, int E, int P, int G, int N, int K, const char *needle)
{
    double w[64] = {0};
    int32_t p2l[128], l2p[4096], cnt[64];
    for (int i = 0; i < 128; i++)
        p2l[i] = 77;
    struct wd_error err = {0};
    enum wd_status st = wd_eplb_rebalance(w, L, E, P, G, N, K, p2l, l2p, 32, cnt, &err);
    WD_EXPECT_MSG(st == WD_ERR_INVALID, "L%d E%d P%d G%d N%d K%d: status %d", L, E, P, G, N, K,
                  (int)st);
    WD_EXPECT_MSG(strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg, needle);
    WD_EXPECT_EQ_INT(p2l[0], 77); /* outputs untouched */
}

static void test_validation(void)
{
    expect_invalid(1, 12, 18, 4, 2, 8, "divisible by 8 GPUs");
    expect_invalid(1, 12, 8, 4, 2, 8, "cannot hold 12 logical");
    expect_invalid(1, 12, 16, 4, 4, 6, "physical experts must be divisible");
    expect_invalid(1, 12, 16, 4, 3, 8, "8 GPUs must be divisible by 3 nodes");
    expect_invalid(1, 13, 16, 2, 1, 4, "13 logical experts must be divisible by 2");
    expect_invalid(0, 12, 16, 4, 2, 8, "positive");
    expect_invalid(1, 12, 16, -1, 2, 8, "positive");
    expect_invalid(1, 12, 16, 4, 0, 8, "positive");

    /* 13 experts in 3 groups on 2 nodes: global policy, the group size is not needed. */
    double w[13] = {0};
    int32_t p2l[16], l2p[16 * 4], cnt[13];
    WD_EXPECT_EQ_INT(wd_eplb_rebalance(w, 1, 13, 16, 3, 2, 8, p2l, l2p, 4, cnt, NULL), WD_OK);
    /* ... but forcing the hierarchical policy there is an error. */
    struct wd_error err = {0};
    WD_EXPECT_EQ_INT(
        wd_eplb_rebalance_algo(WD_EPLB_HIERARCHICAL, w, 1, 13, 16, 3, 2, 8, p2l, l2p, 4, cnt, &err),
        WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "hierarchical") != NULL);

    /* Bad weights. */
    double bad[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    int32_t q[16], x[16 * 5], c[12];
    bad[7] = -1.0;
    WD_EXPECT_EQ_INT(wd_eplb_rebalance(bad, 1, 12, 16, 4, 2, 8, q, x, 5, c, &err), WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "weight[0][7]") != NULL);
    bad[7] = NAN;
    WD_EXPECT_EQ_INT(wd_eplb_rebalance(bad, 1, 12, 16, 4, 2, 8, q, x, 5, c, &err), WD_ERR_INVALID);
    bad[7] = INFINITY;
    WD_EXPECT_EQ_INT(wd_eplb_rebalance(bad, 1, 12, 16, 4, 2, 8, q, x, 5, c, &err), WD_ERR_INVALID);

    enum wd_eplb_algorithm a;
    WD_EXPECT_EQ_INT(wd_eplb_algorithm_parse("deepseek", &a, NULL), WD_OK);
    WD_EXPECT_EQ_INT(a, WD_EPLB_GLOBAL);
    WD_EXPECT_EQ_INT(wd_eplb_algorithm_parse("deepseek_hierarchical", &a, NULL), WD_OK);
    WD_EXPECT_EQ_INT(a, WD_EPLB_HIERARCHICAL);
    WD_EXPECT_EQ_INT(wd_eplb_algorithm_parse("auto", &a, NULL), WD_OK);
    WD_EXPECT_EQ_INT(a, WD_EPLB_AUTO);
    WD_EXPECT_EQ_INT(wd_eplb_algorithm_parse("deepseek_vec", &a, &err), WD_ERR_UNSUPPORTED);
    WD_EXPECT_EQ_INT(wd_eplb_algorithm_parse("elasticity_aware", &a, &err), WD_ERR_UNSUPPORTED);
    WD_EXPECT_EQ_INT(wd_eplb_algorithm_parse("greedy", &a, &err), WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "greedy") != NULL);
    WD_EXPECT(strcmp(wd_eplb_algorithm_name(WD_EPLB_HIERARCHICAL), "deepseek_hierarchical") == 0);
}

/* ------------------------------------------------------------------------------------------
 * Load and balancedness
 * ---------------------------------------------------------------------------------------- */

static void test_load_and_balancedness(void)
{
    double g[4] = {2, 2, 2, 2};
    WD_EXPECT_NEAR(wd_eplb_balancedness(g, 4), 1.0, 0);
    double h[4] = {4, 0, 0, 0};
    WD_EXPECT_NEAR(wd_eplb_balancedness(h, 4), 0.25, 1e-15);
    double z[3] = {0, 0, 0};
    WD_EXPECT_NEAR(wd_eplb_balancedness(z, 3), 1.0, 0);
    WD_EXPECT_NEAR(wd_eplb_balancedness(NULL, 0), 1.0, 0);

    /* Expert 0 has 3 replicas (one on each GPU pair), expert 1 one. */
    double w[2] = {9, 4};
    int32_t p2l[4] = {0, 1, 0, 0};
    double load[2];
    WD_EXPECT_EQ_INT(wd_eplb_gpu_load(w, 2, p2l, 4, 2, load, NULL), WD_OK);
    WD_EXPECT_NEAR(load[0], 3 + 4, 1e-12);
    WD_EXPECT_NEAR(load[1], 3 + 3, 1e-12);
    WD_EXPECT_NEAR(wd_eplb_balancedness(load, 2), 6.5 / 7, 1e-12);

    struct wd_error err = {0};
    int32_t missing[4] = {0, 0, 0, 0};
    load[0] = -1;
    WD_EXPECT_EQ_INT(wd_eplb_gpu_load(w, 2, missing, 4, 2, load, &err), WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "expert 1 has no replica") != NULL);
    WD_EXPECT_NEAR(load[0], -1, 0);
    int32_t oob[4] = {0, 1, 2, 0};
    WD_EXPECT_EQ_INT(wd_eplb_gpu_load(w, 2, oob, 4, 2, load, &err), WD_ERR_INVALID);
    WD_EXPECT_EQ_INT(wd_eplb_gpu_load(w, 2, p2l, 4, 3, load, &err), WD_ERR_INVALID);

    double phys[6] = {1, 2, 3, 4, 5, 6};
    double per_gpu[3];
    wd_eplb_gpu_load_physical(phys, 6, 3, per_gpu);
    WD_EXPECT_NEAR(per_gpu[0], 3, 0);
    WD_EXPECT_NEAR(per_gpu[1], 7, 0);
    WD_EXPECT_NEAR(per_gpu[2], 11, 0);
}

int main(void)
{
    WD_RUN(test_readme_example);
    WD_RUN(test_against_reference);
    WD_RUN(test_invariants_random);
    WD_RUN(test_never_worse_than_trivial);
    WD_RUN(test_edge_shapes);
    WD_RUN(test_validation);
    WD_RUN(test_load_and_balancedness);
    return wd_test_finish();
}

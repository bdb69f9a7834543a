/*
 * Expert location and dispatch: the trivial layout, mappings, the --init-expert-location
 * reader (good files and every bad case), and the replica choice at dispatch time. The static
 * maps are checked against SGLang's algorithm as run by tests/tools/eplb_reference.py (which
 * was checked against SGLang's own functions), stored in tests/fixtures/eplb/dispatch_cases.txt.
 */
#include "common/ep/eplb_dispatch.h"
#include "common/ep/eplb_location.h"
#include "tests/unit/wd_test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const int32_t readme_phy2log[2 * 16] = {
    5, 6,  5, 7, 8, 4,  3, 4, 10, 9, 10, 2, 0, 1, 11, 1,
    7, 10, 6, 8, 6, 11, 8, 9, 2,  4, 5,  1, 5, 0, 3,  1,
};

static const struct wd_eplb_params readme_params = {
    .algorithm = WD_EPLB_AUTO, .n_groups = 4, .n_nodes = 2};

static struct wd_eplb_location *make_loc(int L, int E, int P, int K)
{
    struct wd_eplb_location *loc = NULL;
    struct wd_error err = {0};
    WD_EXPECT_EQ_INT(wd_eplb_location_create(L, E, P, K, &loc, &err), WD_OK);
    return loc;
}

/* Every slot listed once under its expert, counts match. */
static int location_consistent(const struct wd_eplb_location *loc)
{
    int bad = 0;
    for (int l = 0; l < loc->n_layers; l++) {
        int total = 0;
        for (int e = 0; e < loc->n_logical; e++) {
            int c = loc->logcnt[l * loc->n_logical + e];
            const int32_t *x = loc->log2phy + (size_t)(l * loc->n_logical + e) * loc->max_replicas;
            bad += c < 1;
            total += c;
            for (int r = 0; r < loc->max_replicas; r++)
                bad += r < c ? loc->phy2log[l * loc->n_physical + x[r]] != e : x[r] != -1;
        }
        bad += total != loc->n_physical;
    }
    return bad == 0;
}

static void test_trivial_and_mapping(void)
{
    struct wd_eplb_location *loc = make_loc(2, 12, 16, 8);
    if (!loc)
        return;
    WD_EXPECT_EQ_INT(loc->max_replicas, 5);
    for (int p = 0; p < 16; p++)
        WD_EXPECT_EQ_INT(loc->phy2log[16 + p], p % 12);
    /* Experts 0..3 have two slots (p and p + 12), in increasing order. */
    WD_EXPECT_EQ_INT(loc->logcnt[2], 2);
    WD_EXPECT_EQ_INT(loc->log2phy[2 * 5 + 0], 2);
    WD_EXPECT_EQ_INT(loc->log2phy[2 * 5 + 1], 14);
    WD_EXPECT_EQ_INT(loc->log2phy[2 * 5 + 2], -1);
    WD_EXPECT_EQ_INT(loc->logcnt[7], 1);
    WD_EXPECT(location_consistent(loc));

    WD_EXPECT_EQ_INT(wd_eplb_location_set_mapping(loc, readme_phy2log, NULL), WD_OK);
    WD_EXPECT(location_consistent(loc));
    /* Layer 1, expert 1 sits in slots 11 and 15: increasing order, not replica order. */
    WD_EXPECT_EQ_INT(loc->log2phy[(12 + 1) * 5 + 0], 11);
    WD_EXPECT_EQ_INT(loc->log2phy[(12 + 1) * 5 + 1], 15);

    /* A mapping that leaves expert 3 without a slot changes nothing. */
    int32_t bad[32];
    memcpy(bad, readme_phy2log, sizeof(bad));
    bad[16 + 14] = 4; /* layer 1 slot 14 held expert 3, its only slot */
    struct wd_error err = {0};
    WD_EXPECT_EQ_INT(wd_eplb_location_set_mapping(loc, bad, &err), WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "layer 1: logical expert 3 has no physical slot") != NULL);
    WD_EXPECT_EQ_INT(loc->phy2log[16 + 14], 3);
    bad[16 + 14] = 12;
    WD_EXPECT_EQ_INT(wd_eplb_location_set_mapping(loc, bad, &err), WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "[1][14] = 12") != NULL);

    /* Rebalance from the README loads gives the README layout in replica order. */
    static const double w[24] = {90, 132, 40,  61, 104, 165, 39,  4,   73,  56, 183, 86,
                                 20, 107, 104, 64, 19,  197, 187, 157, 172, 86, 16,  27};
    WD_EXPECT_EQ_INT(wd_eplb_location_rebalance(loc, w, &readme_params, NULL), WD_OK);
    WD_EXPECT(memcmp(loc->phy2log, readme_phy2log, sizeof(readme_phy2log)) == 0);
    WD_EXPECT_EQ_INT(loc->log2phy[(12 + 1) * 5 + 0], 15); /* original first, as eplb.py */
    WD_EXPECT_EQ_INT(loc->log2phy[(12 + 1) * 5 + 1], 11);
    WD_EXPECT(location_consistent(loc));

    /* Copying one layer (chunked rebalance). */
    struct wd_eplb_location *other = make_loc(2, 12, 16, 8);
    wd_eplb_location_copy_layer(other, loc, 1);
    WD_EXPECT_EQ_INT(other->phy2log[0], 0);
    WD_EXPECT(memcmp(other->phy2log + 16, readme_phy2log + 16, 16 * sizeof(int32_t)) == 0);
    WD_EXPECT(location_consistent(other));
    wd_eplb_location_destroy(other);
    wd_eplb_location_destroy(loc);

    struct wd_eplb_location *none = NULL;
    WD_EXPECT_EQ_INT(wd_eplb_location_create(2, 12, 18, 8, &none, &err), WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "divisible by ep_size 8") != NULL);
    WD_EXPECT_EQ_INT(wd_eplb_location_create(2, 12, 8, 8, &none, &err), WD_ERR_INVALID);
    WD_EXPECT_EQ_INT(wd_eplb_location_create(0, 12, 16, 8, &none, &err), WD_ERR_INVALID);
    WD_EXPECT(none == NULL);
    wd_eplb_location_destroy(NULL);
}

/* ------------------------------------------------------------------------------------------
 * --init-expert-location
 * ---------------------------------------------------------------------------------------- */

static void test_load_files(void)
{
    struct wd_eplb_location *loc = make_loc(2, 12, 16, 8);
    if (!loc)
        return;
    struct wd_error err = {0};
    char spec[4096];

    snprintf(spec, sizeof(spec), "%s",
             wd_test_src("tests/fixtures/eplb/location_readme_mapping.json"));
    WD_EXPECT_EQ_INT(wd_eplb_location_load(loc, spec, &readme_params, &err), WD_OK);
    WD_EXPECT(memcmp(loc->phy2log, readme_phy2log, sizeof(readme_phy2log)) == 0);
    WD_EXPECT(location_consistent(loc));

    WD_EXPECT_EQ_INT(wd_eplb_location_load(loc, "trivial", &readme_params, &err), WD_OK);
    WD_EXPECT_EQ_INT(loc->phy2log[13], 1);

    /* logical_count over a 2-pass buffer sums to the README loads: the README layout. */
    snprintf(spec, sizeof(spec), "%s",
             wd_test_src("tests/fixtures/eplb/location_readme_counts.json"));
    WD_EXPECT_EQ_INT(wd_eplb_location_load(loc, spec, &readme_params, &err), WD_OK);
    WD_EXPECT(memcmp(loc->phy2log, readme_phy2log, sizeof(readme_phy2log)) == 0);
    WD_EXPECT(location_consistent(loc));

    /* Inline JSON text, 2-D logical_count; with the global policy forced. */
    struct wd_eplb_params global = readme_params;
    global.algorithm = WD_EPLB_GLOBAL;
    const char *inline_counts =
        "{\"logical_count\": [[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],"
        " [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27.0]]}";
    WD_EXPECT_EQ_INT(wd_eplb_location_load(loc, inline_counts, &global, &err), WD_OK);
    static const double w[24] = {90, 132, 40,  61, 104, 165, 39,  4,   73,  56, 183, 86,
                                 20, 107, 104, 64, 19,  197, 187, 157, 172, 86, 16,  27};
    int32_t p2l[32], l2p[24 * 5], cnt[24];
    WD_EXPECT_EQ_INT(
        wd_eplb_rebalance_algo(WD_EPLB_GLOBAL, w, 2, 12, 16, 4, 2, 8, p2l, l2p, 5, cnt, NULL),
        WD_OK);
    WD_EXPECT(memcmp(loc->phy2log, p2l, sizeof(p2l)) == 0);
    WD_EXPECT(memcmp(loc->log2phy, l2p, sizeof(l2p)) == 0);

    /* Both keys: the mapping wins (SGLang checks it first). */
    const char *both = "{\"logical_count\": 5, \"physical_to_logical_map\": "
                       "[[0,1,2,3,4,5,6,7,8,9,10,11,0,0,0,0],[0,1,2,3,4,5,6,7,8,9,10,11,1,1,1,1]]}";
    WD_EXPECT_EQ_INT(wd_eplb_location_load(loc, both, NULL, &err), WD_OK);
    WD_EXPECT_EQ_INT(loc->logcnt[0], 5);
    WD_EXPECT_EQ_INT(loc->logcnt[12 + 1], 5);
    wd_eplb_location_destroy(loc);
}

struct bad_case {
    const char *spec; /* inline JSON or a name */
    enum wd_status status;
    const char *needle;
};

static void test_load_errors(void)
{
    static const struct bad_case cases[] = {
        {"", WD_ERR_INVALID, "empty"},
        {"{\"physical_to_logical_map\": [[0,1]", WD_ERR_FORMAT, "invalid JSON"},
        {"[1, 2]", WD_ERR_FORMAT, "not a JSON object"},
        {"{\"a\": 1, \"b\": 2}", WD_ERR_FORMAT, "keys: a, b"},
        {"{}", WD_ERR_FORMAT, "keys: none"},
        {"{\"x\": 1, \"x\": 2}", WD_ERR_FORMAT, "invalid JSON"},
        {"{\"physical_to_logical_map\": null}", WD_ERR_FORMAT, "must be a list of 1 layers"},
        {"{\"physical_to_logical_map\": [[0,1,2,3],[0,1,2,3]]}", WD_ERR_INVALID,
         "has 2 layers, the model has 1"},
        {"{\"physical_to_logical_map\": [[0,1,2]]}", WD_ERR_INVALID,
         "[0] has 3 slots, expected 4 (3 logical experts + 1 redundant)"},
        {"{\"physical_to_logical_map\": [7]}", WD_ERR_FORMAT, "[0] must be a list of 4 slots"},
        {"{\"physical_to_logical_map\": [[0,1,2,\"3\"]]}", WD_ERR_FORMAT,
         "[0][3] must be an integer"},
        {"{\"physical_to_logical_map\": [[0,1,2,1.0]]}", WD_ERR_FORMAT,
         "[0][3] must be an integer"},
        {"{\"physical_to_logical_map\": [[0,1,2,3]]}", WD_ERR_INVALID,
         "[0][3] = 3 is not a logical expert id in [0, 3)"},
        {"{\"physical_to_logical_map\": [[0,1,-1,2]]}", WD_ERR_INVALID, "[0][2] = -1"},
        {"{\"physical_to_logical_map\": [[0,1,1,0]]}", WD_ERR_INVALID,
         "layer 0: logical expert 2 has no physical slot"},
        {"{\"logical_count\": []}", WD_ERR_FORMAT, "non-empty list"},
        {"{\"logical_count\": {\"a\": 1}}", WD_ERR_FORMAT, "non-empty list"},
        {"{\"logical_count\": [[1,2]]}", WD_ERR_INVALID, "[0] has 2 entries, the model has 3"},
        {"{\"logical_count\": [[1,2,3],[4,5,6]]}", WD_ERR_INVALID, "has 2 layers"},
        {"{\"logical_count\": [[1,-2,3]]}", WD_ERR_INVALID, "[0][1] = -2 must be a load >= 0"},
        {"{\"logical_count\": [[1,true,3]]}", WD_ERR_FORMAT, "[0][1] must be a number"},
        {"{\"logical_count\": [[[1,2,3]],[[1,2]]]}", WD_ERR_INVALID,
         "logical_count[1][0] has 2 entries"},
        {"{\"logical_count\": [[[1,2,3]],[7]]}", WD_ERR_FORMAT, "logical_count[1][0] must be"},
        {"{\"logical_count\": [[1e308,1e308,3]]}", WD_ERR_INVALID, "finite load"},
        {"model.pt", WD_ERR_UNSUPPORTED, "save the same dict as JSON"},
        {"does-not-exist.json", WD_ERR_NOT_FOUND, "does-not-exist.json"},
    };
    struct wd_eplb_location *loc = make_loc(1, 3, 4, 2);
    if (!loc)
        return;
    struct wd_eplb_params params = {.algorithm = WD_EPLB_AUTO, .n_groups = 0, .n_nodes = 1};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct wd_error err = {0};
        memset(err.msg, 0, sizeof(err.msg));
        enum wd_status st = wd_eplb_location_load(loc, cases[i].spec, &params, &err);
        WD_EXPECT_MSG(st == cases[i].status, "'%s': status %s, want %s (%s)", cases[i].spec,
                      wd_status_str(st), wd_status_str(cases[i].status), err.msg);
        WD_EXPECT_MSG(strstr(err.msg, cases[i].needle) != NULL, "'%s': message '%s' lacks '%s'",
                      cases[i].spec, err.msg, cases[i].needle);
        /* Nothing changed: still the trivial layout. */
        WD_EXPECT_EQ_INT(loc->phy2log[3], 0);
        WD_EXPECT_EQ_INT(loc->logcnt[0], 2);
    }
    wd_eplb_location_destroy(loc);

    /* An expert-location file with a bad value names the file. */
    char path[] = "/tmp/wd_eplb_locXXXXXX.json";
    int fd = mkstemps(path, 5);
    WD_EXPECT(fd >= 0);
    if (fd < 0)
        return;
    FILE *f = fdopen(fd, "w");
    fputs("{\"physical_to_logical_map\": [[0, 1, 9, 2]]}", f);
    fclose(f);
    loc = make_loc(1, 3, 4, 2);
    struct wd_error err = {0};
    WD_EXPECT_EQ_INT(wd_eplb_location_load(loc, path, &params, &err), WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, path) != NULL && strstr(err.msg, "[0][2] = 9") != NULL);
    remove(path);
    wd_eplb_location_destroy(loc);
}

/* ------------------------------------------------------------------------------------------
 * Dispatch
 * ---------------------------------------------------------------------------------------- */

static void test_nearest_replica(void)
{
    /* 16 slots, 8 GPUs (2 slots each), 2 nodes (slots 0-7, 8-15). */
    int32_t one[1] = {9};
    WD_EXPECT_EQ_INT(wd_eplb_nearest_replica(one, 1, 16, 8, 2, 0), 9);
    int32_t two[2] = {3, 12};
    WD_EXPECT_EQ_INT(wd_eplb_nearest_replica(two, 2, 16, 8, 2, 1), 3);  /* same GPU */
    WD_EXPECT_EQ_INT(wd_eplb_nearest_replica(two, 2, 16, 8, 2, 6), 12); /* same GPU */
    WD_EXPECT_EQ_INT(wd_eplb_nearest_replica(two, 2, 16, 8, 2, 0), 3);  /* same node */
    WD_EXPECT_EQ_INT(wd_eplb_nearest_replica(two, 2, 16, 8, 2, 5), 12); /* same node */
    WD_EXPECT_EQ_INT(wd_eplb_nearest_replica(two, 2, 16, 8, 0, 5), -1); /* no node preference */
    int32_t same_node[2] = {0, 4};
    WD_EXPECT_EQ_INT(wd_eplb_nearest_replica(same_node, 2, 16, 8, 2, 3), -1); /* all local */
    WD_EXPECT_EQ_INT(wd_eplb_nearest_replica(same_node, 2, 16, 8, 2, 2), 4);
}

struct ref_case {
    int L, E, P, G, N, K;
    enum wd_eplb_algorithm algo;
    double *weight;
    int32_t *phy2log;
};

static long read_ints(const char *s, const char *key, int32_t *out, long cap)
{
    size_t klen = strlen(key);
    if (strncmp(s, key, klen) != 0)
        return -1;
    s += klen;
    char *end;
    long n = 0;
    for (;;) {
        long v = strtol(s, &end, 10);
        if (end == s)
            break;
        if (n < cap)
            out[n] = (int32_t)v;
        n++;
        s = end;
    }
    return n;
}

/* Reads the cases of rebalance_cases.txt (weights and the reference phy2log). */
static int read_ref_cases(struct ref_case *cases, int cap)
{
    FILE *f = fopen(wd_test_src("tests/fixtures/eplb/rebalance_cases.txt"), "r");
    if (!f)
        return 0;
    char *line = NULL;
    size_t lcap = 0;
    int n = -1;
    while (getline(&line, &lcap, f) > 0) {
        char name[32];
        int width;
        if (line[0] == '#')
            continue;
        if (strncmp(line, "case ", 5) == 0 && n + 1 < cap) {
            struct ref_case *c = &cases[++n];
            sscanf(line, "case %d %d %d %d %d %d %31s %d", &c->L, &c->E, &c->P, &c->G, &c->N, &c->K,
                   name, &width);
            wd_eplb_algorithm_parse(name, &c->algo, NULL);
            c->weight = malloc(sizeof(double) * (size_t)(c->L * c->E));
            c->phy2log = malloc(sizeof(int32_t) * (size_t)(c->L * c->P));
        } else if (n >= 0 && strncmp(line, "weight ", 7) == 0) {
            char *s = line + 7, *end;
            for (int i = 0; i < cases[n].L * cases[n].E; i++, s = end)
                cases[n].weight[i] = strtod(s, &end);
        } else if (n >= 0 && strncmp(line, "phy2log ", 8) == 0) {
            read_ints(line, "phy2log ", cases[n].phy2log, cases[n].L * cases[n].P);
        }
    }
    free(line);
    fclose(f);
    return n + 1;
}

static void test_static_map_against_reference(void)
{
    struct ref_case cases[64];
    int n_cases = read_ref_cases(cases, 64);
    WD_EXPECT_MSG(n_cases >= 20, "read %d reference cases", n_cases);
    FILE *f = fopen(wd_test_src("tests/fixtures/eplb/dispatch_cases.txt"), "r");
    WD_EXPECT(f != NULL);
    if (!f || n_cases == 0)
        return;
    char *line = NULL;
    size_t lcap = 0;
    struct wd_eplb_location *loc = NULL;
    struct ref_case *c = NULL;
    int nodes = 0, nearest_only = 0, n_blocks = 0, n_ranks = 0;
    int32_t *want = NULL;
    while (getline(&line, &lcap, f) > 0) {
        int idx, r;
        char mode[16];
        if (line[0] == '#')
            continue;
        if (sscanf(line, "dispatch %d %15s %d %d", &idx, mode, &nodes, &nearest_only) == 4) {
            wd_eplb_location_destroy(loc);
            loc = NULL;
            WD_EXPECT(idx >= 0 && idx < n_cases);
            c = &cases[idx];
            free(want);
            want = malloc(sizeof(int32_t) * (size_t)(c->L * c->E));
            loc = make_loc(c->L, c->E, c->P, c->K);
            struct wd_eplb_params params = {
                .algorithm = c->algo, .n_groups = c->G, .n_nodes = c->N};
            struct wd_error err = {0};
            if (strcmp(mode, "eplb") == 0)
                WD_EXPECT_EQ_INT(wd_eplb_location_rebalance(loc, c->weight, &params, &err), WD_OK);
            else
                WD_EXPECT_EQ_INT(wd_eplb_location_set_mapping(loc, c->phy2log, &err), WD_OK);
            WD_EXPECT(memcmp(loc->phy2log, c->phy2log, sizeof(int32_t) * (size_t)(c->L * c->P)) ==
                      0);
            n_blocks++;
        } else if (loc && sscanf(line, "rank %d", &r) == 1) {
            char prefix[32];
            snprintf(prefix, sizeof(prefix), "rank %d ", r);
            WD_EXPECT_EQ_INT(read_ints(line, prefix, want, c->L * c->E), c->L * c->E);
            struct wd_eplb_dispatch_config cfg = {.algorithm = WD_EPLB_DISPATCH_STATIC,
                                                  .ep_rank = r,
                                                  .n_nodes = nodes,
                                                  .is_nearest_only = nearest_only};
            struct wd_eplb_dispatch *d = NULL;
            WD_EXPECT_EQ_INT(wd_eplb_dispatch_create(&cfg, loc, &d, NULL), WD_OK);
            if (!d)
                continue;
            const int32_t *map = wd_eplb_dispatch_static_map(d);
            for (int i = 0; i < c->L * c->E; i++) {
                if (map[i] != want[i]) {
                    WD_EXPECT_MSG(0,
                                  "case %d (K%d nodes %d nearest_only %d) rank %d: map[%d][%d]"
                                  " = %d, SGLang %d",
                                  (int)(c - cases), c->K, nodes, nearest_only, r, i / c->E,
                                  i % c->E, map[i], want[i]);
                    break;
                }
            }
            wd_test_checks++;
            /* The top-k mapping is the map lookup. */
            int32_t ids[3] = {0, c->E - 1, c->E / 2}, phys[3];
            wd_eplb_dispatch_topk(d, c->L - 1, ids, 3, phys);
            for (int k = 0; k < 3; k++)
                WD_EXPECT_EQ_INT(phys[k], map[(c->L - 1) * c->E + ids[k]]);
            wd_eplb_dispatch_destroy(d);
            n_ranks++;
        }
    }
    free(line);
    free(want);
    fclose(f);
    wd_eplb_location_destroy(loc);
    for (int i = 0; i < n_cases; i++) {
        free(cases[i].weight);
        free(cases[i].phy2log);
    }
    WD_EXPECT_MSG(n_blocks >= 60 && n_ranks >= 500, "%d blocks, %d ranks", n_blocks, n_ranks);
}

/* Static maps spread the ranks that have no nearby replica evenly over the replicas. */
static void test_static_map_fairness(void)
{
    /* One layer, 4 experts, 16 slots on 16 GPUs; expert 0 has 8 replicas on GPUs 0..7. */
    int32_t p2l[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 3};
    struct wd_eplb_location *loc = make_loc(1, 4, 16, 16);
    WD_EXPECT_EQ_INT(wd_eplb_location_set_mapping(loc, p2l, NULL), WD_OK);
    int hits[16] = {0};
    for (int r = 0; r < 16; r++) {
        struct wd_eplb_dispatch_config cfg = {.ep_rank = r, .n_nodes = 1};
        struct wd_eplb_dispatch *d = NULL;
        WD_EXPECT_EQ_INT(wd_eplb_dispatch_create(&cfg, loc, &d, NULL), WD_OK);
        const int32_t *map = wd_eplb_dispatch_static_map(d);
        WD_EXPECT_EQ_INT(p2l[map[0]], 0);
        if (r < 8)
            WD_EXPECT_EQ_INT(map[0], r); /* its own GPU */
        else
            hits[map[0]]++;
        wd_eplb_dispatch_destroy(d);
    }
    /* Ranks 8..15 (8 of them) over 8 replicas: one each. */
    for (int p = 0; p < 8; p++)
        WD_EXPECT_EQ_INT(hits[p], 1);
    wd_eplb_location_destroy(loc);
}

static void test_dynamic(void)
{
    /* Expert 0 has 3 replicas (slots 0, 2, 5); 3 GPUs of 2 slots; one node. */
    int32_t p2l[6] = {0, 1, 0, 2, 3, 0};
    struct wd_eplb_location *loc = make_loc(1, 4, 6, 3);
    WD_EXPECT_EQ_INT(wd_eplb_location_set_mapping(loc, p2l, NULL), WD_OK);
    struct wd_eplb_dispatch_config cfg = {
        .algorithm = WD_EPLB_DISPATCH_DYNAMIC, .ep_rank = 1, .n_nodes = 1, .seed = 7};
    struct wd_eplb_dispatch *d = NULL;
    WD_EXPECT_EQ_INT(wd_eplb_dispatch_create(&cfg, loc, &d, NULL), WD_OK);
    enum { N = 30000 };
    int32_t *ids = malloc(sizeof(int32_t) * N), *out = malloc(sizeof(int32_t) * N);
    int32_t *again = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++)
        ids[i] = i % 4;
    wd_eplb_dispatch_topk(d, 0, ids, N, out);
    int hits[6] = {0};
    for (int i = 0; i < N; i++) {
        WD_EXPECT_MSG(p2l[out[i]] == ids[i], "token %d: expert %d sent to slot %d", i, ids[i],
                      out[i]);
        hits[out[i]]++;
    }
    /* Uniform over the three replicas of expert 0: 2500 each, well within 5 sigma. */
    WD_EXPECT_EQ_INT(hits[1], N / 4);
    for (int p = 0; p < 6; p += (p == 0 ? 2 : 3))
        WD_EXPECT_MSG(hits[p] > 2500 - 250 && hits[p] < 2500 + 250, "slot %d: %d", p, hits[p]);
    /* Same seed, same choices; the stream moves on between calls. */
    struct wd_eplb_dispatch *d2 = NULL;
    WD_EXPECT_EQ_INT(wd_eplb_dispatch_create(&cfg, loc, &d2, NULL), WD_OK);
    wd_eplb_dispatch_topk(d2, 0, ids, N, again);
    WD_EXPECT(memcmp(out, again, sizeof(int32_t) * N) == 0);
    wd_eplb_dispatch_topk(d2, 0, ids, N, again);
    WD_EXPECT(memcmp(out, again, sizeof(int32_t) * N) != 0);
    wd_eplb_dispatch_destroy(d2);
    wd_eplb_dispatch_destroy(d);

    /* nearest_only: rank 1 (slots 2, 3) always uses its own replica of expert 0. */
    cfg.is_nearest_only = 1;
    WD_EXPECT_EQ_INT(wd_eplb_dispatch_create(&cfg, loc, &d, NULL), WD_OK);
    wd_eplb_dispatch_topk(d, 0, ids, N, out);
    for (int i = 0; i < N; i += 4)
        WD_EXPECT_EQ_INT(out[i], 2);
    wd_eplb_dispatch_destroy(d);

    /* After a rebalance, refresh picks up the new layout. */
    cfg.is_nearest_only = 0;
    cfg.algorithm = WD_EPLB_DISPATCH_STATIC;
    WD_EXPECT_EQ_INT(wd_eplb_dispatch_create(&cfg, loc, &d, NULL), WD_OK);
    WD_EXPECT_EQ_INT(wd_eplb_dispatch_static_map(d)[0], 2);
    int32_t moved[6] = {1, 2, 3, 0, 0, 0};
    WD_EXPECT_EQ_INT(wd_eplb_location_set_mapping(loc, moved, NULL), WD_OK);
    wd_eplb_dispatch_refresh(d);
    WD_EXPECT_EQ_INT(wd_eplb_dispatch_static_map(d)[0], 3);
    WD_EXPECT_EQ_INT(wd_eplb_dispatch_static_map(d)[1], 0);
    wd_eplb_dispatch_destroy(d);
    free(ids);
    free(out);
    free(again);
    wd_eplb_location_destroy(loc);
}

static void test_dispatch_errors(void)
{
    struct wd_eplb_location *loc = make_loc(1, 4, 8, 4);
    struct wd_eplb_dispatch *d = NULL;
    struct wd_error err = {0};
    struct wd_eplb_dispatch_config cfg = {.ep_rank = 4, .n_nodes = 1};
    WD_EXPECT_EQ_INT(wd_eplb_dispatch_create(&cfg, loc, &d, &err), WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "ep rank 4 outside [0, 4)") != NULL);
    cfg.ep_rank = 0;
    cfg.n_nodes = 3;
    WD_EXPECT_EQ_INT(wd_eplb_dispatch_create(&cfg, loc, &d, &err), WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "divisible by 3 nodes") != NULL);
    WD_EXPECT(d == NULL);
    wd_eplb_location_destroy(loc);

    enum wd_eplb_dispatch_algorithm a;
    WD_EXPECT_EQ_INT(wd_eplb_dispatch_algorithm_parse("static", &a, NULL), WD_OK);
    WD_EXPECT_EQ_INT(a, WD_EPLB_DISPATCH_STATIC);
    WD_EXPECT_EQ_INT(wd_eplb_dispatch_algorithm_parse("dynamic", &a, NULL), WD_OK);
    WD_EXPECT_EQ_INT(a, WD_EPLB_DISPATCH_DYNAMIC);
    WD_EXPECT_EQ_INT(wd_eplb_dispatch_algorithm_parse("fake", &a, &err), WD_ERR_UNSUPPORTED);
    WD_EXPECT_EQ_INT(wd_eplb_dispatch_algorithm_parse("random", &a, &err), WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "'random'") != NULL);
}

int main(void)
{
    WD_RUN(test_trivial_and_mapping);
    WD_RUN(test_load_files);
    WD_RUN(test_load_errors);
    WD_RUN(test_nearest_replica);
    WD_RUN(test_static_map_against_reference);
    WD_RUN(test_static_map_fairness);
    WD_RUN(test_dynamic);
    WD_RUN(test_dispatch_errors);
    return wd_test_finish();
}

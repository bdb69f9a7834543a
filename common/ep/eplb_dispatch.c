/*
 * Logical -> physical expert choice at dispatch time: SGLang's static map (with a port of the
 * parts of CPython's random module it uses) and the dynamic uniform pick.
 */
#include "common/ep/eplb_dispatch.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------
 * CPython's random.Random: MT19937 seeded by init_by_array, getrandbits, _randbelow, sample,
 * shuffle (Lib/random.py and Modules/_randommodule.c). Only what _fair_choices needs.
 * ---------------------------------------------------------------------------------------- */

enum { MT_N = 624, MT_M = 397 };

struct py_random {
    uint32_t mt[MT_N];
    int index;
};

static void mt_init_genrand(struct py_random *r, uint32_t s)
{
    r->mt[0] = s;
    for (int i = 1; i < MT_N; i++)
        r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + (uint32_t)i;
    r->index = MT_N;
}

/* random.Random(seed) for a seed below 2^32: the key is the one 32-bit word of the seed. */
static void py_random_seed(struct py_random *r, uint32_t seed)
{
    const uint32_t key[1] = {seed};
    const int key_len = 1;
    mt_init_genrand(r, 19650218u);
    int i = 1, j = 0;
    for (int k = MT_N > key_len ? MT_N : key_len; k; k--) {
        r->mt[i] =
            (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1664525u)) + key[j] + (uint32_t)j;
        i++;
        j++;
        if (i >= MT_N) {
            r->mt[0] = r->mt[MT_N - 1];
            i = 1;
        }
        if (j >= key_len)
            j = 0;
    }
    for (int k = MT_N - 1; k; k--) {
        r->mt[i] = (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1566083941u)) - (uint32_t)i;
        i++;
        if (i >= MT_N) {
            r->mt[0] = r->mt[MT_N - 1];
            i = 1;
        }
    }
    r->mt[0] = 0x80000000u;
}

static uint32_t py_genrand(struct py_random *r)
{
    static const uint32_t mag01[2] = {0u, 0x9908b0dfu};
    if (r->index >= MT_N) {
        int kk;
        uint32_t y;
        for (kk = 0; kk < MT_N - MT_M; kk++) {
            y = (r->mt[kk] & 0x80000000u) | (r->mt[kk + 1] & 0x7fffffffu);
            r->mt[kk] = r->mt[kk + MT_M] ^ (y >> 1) ^ mag01[y & 1u];
        }
        for (; kk < MT_N - 1; kk++) {
            y = (r->mt[kk] & 0x80000000u) | (r->mt[kk + 1] & 0x7fffffffu);
            r->mt[kk] = r->mt[kk + (MT_M - MT_N)] ^ (y >> 1) ^ mag01[y & 1u];
        }
        y = (r->mt[MT_N - 1] & 0x80000000u) | (r->mt[0] & 0x7fffffffu);
        r->mt[MT_N - 1] = r->mt[MT_M - 1] ^ (y >> 1) ^ mag01[y & 1u];
        r->index = 0;
    }
    uint32_t y = r->mt[r->index++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

/* Random._randbelow(n) for 1 <= n < 2^31: getrandbits(n.bit_length()) until below n. */
static int py_randbelow(struct py_random *r, int n)
{
    int k = 0;
    while (k < 31 && (1 << k) <= n)
        k++;
    for (;;) {
        uint32_t v = py_genrand(r) >> (32 - k);
        if (v < (uint32_t)n)
            return (int)v;
    }
}

/* Random.sample(pop [n], k) into out [k]; pool [n] and taken [n] are scratch. */
static void py_sample(struct py_random *r, const int32_t *pop, int n, int k, int32_t *out,
                      int32_t *pool, unsigned char *taken)
{
    long setsize = 21;
    if (k > 5) {
        long p4 = 1; /* 4 ** ceil(log(3k, 4)); 3k is never a power of 4 */
        while (p4 < 3L * k)
            p4 *= 4;
        setsize += p4;
    }
    if (n <= setsize) {
        memcpy(pool, pop, sizeof(int32_t) * (size_t)n);
        for (int i = 0; i < k; i++) {
            int j = py_randbelow(r, n - i);
            out[i] = pool[j];
            pool[j] = pool[n - i - 1];
        }
    } else {
        memset(taken, 0, (size_t)n);
        for (int i = 0; i < k; i++) {
            int j = py_randbelow(r, n);
            while (taken[j])
                j = py_randbelow(r, n);
            taken[j] = 1;
            out[i] = pop[j];
        }
    }
}

static void py_shuffle(struct py_random *r, int32_t *x, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = py_randbelow(r, i + 1);
        int32_t t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
}

/* ------------------------------------------------------------------------------------------
 * The dispatch object
 * ---------------------------------------------------------------------------------------- */

struct wd_eplb_dispatch {
    struct wd_eplb_dispatch_config cfg;
    const struct wd_eplb_location *loc; /* borrowed */
    int32_t *static_map;                /* [n_layers, n_logical] */
    int32_t *nearest;                   /* [n_layers, n_logical] this rank's nearest or -1 */
    uint64_t rng;                       /* dynamic: splitmix64 state */
    /* Scratch for refresh, sized at create. */
    int32_t *remaining;   /* [n_gpus] ranks with no nearest replica */
    int32_t *choices;     /* [n_gpus] fair choices for them */
    int32_t *pool;        /* [max_replicas] */
    unsigned char *taken; /* [max_replicas] */
    struct py_random py;
};

enum wd_status wd_eplb_dispatch_algorithm_parse(const char *name,
                                                enum wd_eplb_dispatch_algorithm *algo_p,
                                                struct wd_error *err)
{
    if (name && strcmp(name, "static") == 0)
        *algo_p = WD_EPLB_DISPATCH_STATIC;
    else if (name && strcmp(name, "dynamic") == 0)
        *algo_p = WD_EPLB_DISPATCH_DYNAMIC;
    else if (name && (strcmp(name, "fake") == 0 || strcmp(name, "lp") == 0))
        return wd_error_set(err, WD_ERR_UNSUPPORTED,
                            "--ep-dispatch-algorithm %s is not supported (static, dynamic)", name);
    else
        return wd_error_set(err, WD_ERR_INVALID,
                            "--ep-dispatch-algorithm '%s' is unknown (static, dynamic)",
                            name ? name : "");
    return WD_OK;
}

int32_t wd_eplb_nearest_replica(const int32_t *slots, int n_slots, int n_physical, int n_gpus,
                                int n_nodes, int ep_rank)
{
    if (n_slots == 1)
        return slots[0];
    int per_gpu = n_physical / n_gpus;
    for (int i = 0; i < n_slots; i++)
        if (slots[i] / per_gpu == ep_rank)
            return slots[i];
    if (n_nodes > 0) {
        int gpus_per_node = n_gpus / n_nodes, per_node = per_gpu * gpus_per_node;
        int node = ep_rank / gpus_per_node, n_same = 0, first = -1;
        for (int i = 0; i < n_slots; i++)
            if (slots[i] / per_node == node) {
                if (first < 0)
                    first = slots[i];
                n_same++;
            }
        if (n_same > 0 && n_same < n_slots)
            return first;
    }
    return -1;
}

/* One (layer, expert) of SGLang's compute_logical_to_rank_dispatch_physical_map, keeping only
 * this rank's entry. The generator advances exactly when SGLang's does. */
static int32_t static_choice(struct wd_eplb_dispatch *d, const int32_t *slots, int n_slots)
{
    const struct wd_eplb_location *loc = d->loc;
    int me = d->cfg.ep_rank, n_rem = 0, mine = -1;
    int32_t own = -1;
    for (int r = 0; r < loc->n_gpus; r++) {
        int32_t v = wd_eplb_nearest_replica(slots, n_slots, loc->n_physical, loc->n_gpus,
                                            d->cfg.n_nodes, r);
        if (r == me)
            own = v;
        if (v == -1) {
            if (r == me)
                mine = n_rem;
            d->remaining[n_rem++] = r;
        }
    }
    if (n_rem == 0)
        return own;
    /* _fair_choices: every replica q times, a sample of the rest, shuffled. */
    int q = n_rem / n_slots, rem = n_rem % n_slots, k = 0;
    for (int i = 0; i < q; i++)
        for (int j = 0; j < n_slots; j++)
            d->choices[k++] = slots[j];
    py_sample(&d->py, slots, n_slots, rem, d->choices + k, d->pool, d->taken);
    py_shuffle(&d->py, d->choices, n_rem);
    return mine >= 0 ? d->choices[mine] : own;
}

void wd_eplb_dispatch_refresh(struct wd_eplb_dispatch *d)
{
    const struct wd_eplb_location *loc = d->loc;
    py_random_seed(&d->py, 42);
    for (int l = 0; l < loc->n_layers; l++) {
        for (int e = 0; e < loc->n_logical; e++) {
            size_t at = (size_t)l * (size_t)loc->n_logical + (size_t)e;
            const int32_t *slots = loc->log2phy + at * (size_t)loc->max_replicas;
            int n = loc->logcnt[at];
            d->nearest[at] = d->cfg.is_nearest_only
                                 ? wd_eplb_nearest_replica(slots, n, loc->n_physical, loc->n_gpus,
                                                           d->cfg.n_nodes, d->cfg.ep_rank)
                                 : -1;
            if (d->nearest[at] >= 0)
                d->static_map[at] = d->nearest[at]; /* one candidate: no draw */
            else
                d->static_map[at] = static_choice(d, slots, n);
        }
    }
}

enum wd_status wd_eplb_dispatch_create(const struct wd_eplb_dispatch_config *cfg,
                                       const struct wd_eplb_location *loc,
                                       struct wd_eplb_dispatch **d_p, struct wd_error *err)
{
    if (cfg->ep_rank < 0 || cfg->ep_rank >= loc->n_gpus)
        return wd_error_set(err, WD_ERR_INVALID, "eplb dispatch: ep rank %d outside [0, %d)",
                            cfg->ep_rank, loc->n_gpus);
    if (cfg->n_nodes < 0 || (cfg->n_nodes > 0 && loc->n_gpus % cfg->n_nodes != 0))
        return wd_error_set(err, WD_ERR_INVALID,
                            "eplb dispatch: ep_size %d must be divisible by %d nodes", loc->n_gpus,
                            cfg->n_nodes);
    size_t n_map = (size_t)loc->n_layers * (size_t)loc->n_logical;
    size_t n_i32 = 2 * n_map + 2 * (size_t)loc->n_gpus + (size_t)loc->max_replicas;
    struct wd_eplb_dispatch *d =
        malloc(sizeof(*d) + n_i32 * sizeof(int32_t) + (size_t)loc->max_replicas);
    if (!d)
        return wd_error_set(err, WD_ERR_NOMEM, "eplb dispatch: out of memory");
    d->cfg = *cfg;
    d->loc = loc;
    d->rng = cfg->seed;
    d->static_map = (int32_t *)(d + 1);
    d->nearest = d->static_map + n_map;
    d->remaining = d->nearest + n_map;
    d->choices = d->remaining + loc->n_gpus;
    d->pool = d->choices + loc->n_gpus;
    d->taken = (unsigned char *)(d->pool + loc->max_replicas);
    wd_eplb_dispatch_refresh(d);
    *d_p = d;
    return WD_OK;
}

void wd_eplb_dispatch_destroy(struct wd_eplb_dispatch *d)
{
    free(d);
}

const int32_t *wd_eplb_dispatch_static_map(const struct wd_eplb_dispatch *d)
{
    return d->static_map;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void wd_eplb_dispatch_topk(struct wd_eplb_dispatch *d, int layer, const int32_t *topk_logical,
                           int n, int32_t *topk_physical)
{
    const struct wd_eplb_location *loc = d->loc;
    WD_ASSERT(layer >= 0 && layer < loc->n_layers);
    size_t row = (size_t)layer * (size_t)loc->n_logical;
    for (int i = 0; i < n; i++) {
        int32_t e = topk_logical[i];
        WD_ASSERT(e >= 0 && e < loc->n_logical);
        size_t at = row + (size_t)e;
        if (d->cfg.algorithm == WD_EPLB_DISPATCH_STATIC) {
            topk_physical[i] = d->static_map[at];
        } else if (d->nearest[at] >= 0) {
            topk_physical[i] = d->nearest[at];
        } else {
            /* randint(0, 65536) % count, as SGLang; the 16 bits come from splitmix64. */
            uint32_t r16 = (uint32_t)(splitmix64(&d->rng) >> 48);
            topk_physical[i] =
                loc->log2phy[at * (size_t)loc->max_replicas + r16 % (uint32_t)loc->logcnt[at]];
        }
    }
}

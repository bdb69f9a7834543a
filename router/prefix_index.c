/* Prefix index: two generations of linear-probing tables of (prefix hash ^ target) keys. */
#include "router/prefix_index.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/sampling.h"

struct table {
    uint64_t *keys; /* [cap], 0 = empty */
    int n;
};

struct wd_prefix_index {
    int block_tokens;
    int cap;  /* slots per table, a power of two */
    int fill; /* entries in the young table before it ages */
    struct table gen[2];
    int young; /* index of the young table */
};

/* splitmix64's step as a mixer: every input bit reaches every output bit. */
static uint64_t mix(uint64_t x)
{
    return wd_splitmix64(&x);
}

enum wd_status wd_prefix_index_create(int block_tokens, int max_entries,
                                      struct wd_prefix_index **px_p, struct wd_error *err)
{
    if (block_tokens < 1 || max_entries < 1024 || max_entries > (1 << 28))
        return wd_error_set(err, WD_ERR_INVALID,
                            "prefix index: block of %d tokens, %d entries (need >= 1, 1024..2^28)",
                            block_tokens, max_entries);
    struct wd_prefix_index *px = calloc(1, sizeof(*px));
    if (!px)
        return wd_error_set(err, WD_ERR_NOMEM, "prefix index: out of memory");
    px->block_tokens = block_tokens;
    /* Each generation holds up to max_entries / 2 at half load: cap = next pow2 >= max. */
    int cap = 1024;
    while (cap < max_entries)
        cap <<= 1;
    px->cap = cap;
    px->fill = max_entries / 2;
    for (int g = 0; g < 2; g++) {
        px->gen[g].keys = calloc((size_t)cap, sizeof(uint64_t));
        if (!px->gen[g].keys) {
            wd_prefix_index_destroy(px);
            return wd_error_set(err, WD_ERR_NOMEM, "prefix index: out of memory (%d slots)", cap);
        }
    }
    *px_p = px;
    return WD_OK;
}

void wd_prefix_index_destroy(struct wd_prefix_index *px)
{
    if (!px)
        return;
    free(px->gen[0].keys);
    free(px->gen[1].keys);
    free(px);
}

int wd_prefix_index_block_tokens(const struct wd_prefix_index *px)
{
    return px->block_tokens;
}

int wd_prefix_index_hash(const struct wd_prefix_index *px, const int32_t *ids, int n_ids,
                         uint64_t *hashes)
{
    int n = n_ids / px->block_tokens;
    if (n > WD_PREFIX_MAX_BLOCKS)
        n = WD_PREFIX_MAX_BLOCKS;
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    for (int b = 0; b < n; b++) {
        const int32_t *blk = ids + (size_t)b * px->block_tokens;
        for (int i = 0; i < px->block_tokens; i++)
            h = mix(h ^ (uint32_t)blk[i]);
        hashes[b] = h;
    }
    return n;
}

static uint64_t key_of(uint64_t hash, uint64_t target)
{
    uint64_t k = mix(hash ^ mix(target + 0x632be59bd9b4e019ULL));
    return k ? k : 1; /* 0 marks an empty slot */
}

static int table_has(const struct wd_prefix_index *px, const struct table *t, uint64_t key)
{
    size_t mask = (size_t)px->cap - 1;
    for (size_t i = key & mask;; i = (i + 1) & mask) {
        if (t->keys[i] == key)
            return 1;
        if (t->keys[i] == 0)
            return 0;
    }
}

static void table_put(const struct wd_prefix_index *px, struct table *t, uint64_t key)
{
    size_t mask = (size_t)px->cap - 1;
    for (size_t i = key & mask;; i = (i + 1) & mask) {
        if (t->keys[i] == key)
            return;
        if (t->keys[i] == 0) {
            t->keys[i] = key;
            t->n++;
            return;
        }
    }
}

int wd_prefix_index_match(const struct wd_prefix_index *px, const uint64_t *hashes, int n,
                          uint64_t target)
{
    int b = 0;
    for (; b < n; b++) {
        uint64_t key = key_of(hashes[b], target);
        if (!table_has(px, &px->gen[0], key) && !table_has(px, &px->gen[1], key))
            break;
    }
    return b;
}

void wd_prefix_index_insert(struct wd_prefix_index *px, const uint64_t *hashes, int n,
                            uint64_t target)
{
    for (int b = 0; b < n; b++) {
        struct table *young = &px->gen[px->young];
        if (young->n >= px->fill) {
            /* Age: the old generation is forgotten, the young one becomes old. */
            px->young ^= 1;
            young = &px->gen[px->young];
            memset(young->keys, 0, sizeof(uint64_t) * (size_t)px->cap);
            young->n = 0;
        }
        table_put(px, young, key_of(hashes[b], target));
    }
}

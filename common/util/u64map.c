/* Open-addressing u64 -> pointer map with backward-shift deletion. */
#include "common/util/u64map.h"

#include <stdlib.h>

static size_t home(const struct wd_u64map *m, uint64_t key)
{
    uint64_t z = key;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (size_t)z & (m->cap - 1);
}

enum wd_status wd_u64map_init(struct wd_u64map *m, size_t expected, struct wd_error *err)
{
    size_t cap = 16;
    while (cap * 3 / 4 < expected)
        cap *= 2;
    m->slots = calloc(cap, sizeof(*m->slots));
    m->cap = cap;
    m->n = 0;
    if (!m->slots)
        return wd_error_set(err, WD_ERR_NOMEM, "id map: out of memory");
    return WD_OK;
}

void wd_u64map_cleanup(struct wd_u64map *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->n = 0;
}

void *wd_u64map_get(const struct wd_u64map *m, uint64_t key)
{
    if (key == 0 || !m->slots)
        return NULL;
    for (size_t i = home(m, key);; i = (i + 1) & (m->cap - 1)) {
        if (m->slots[i].key == key)
            return m->slots[i].value;
        if (m->slots[i].key == 0)
            return NULL;
    }
}

static void insert(struct wd_u64map *m, uint64_t key, void *value)
{
    size_t i = home(m, key);
    while (m->slots[i].key != 0)
        i = (i + 1) & (m->cap - 1);
    m->slots[i].key = key;
    m->slots[i].value = value;
    m->n++;
}

static enum wd_status grow(struct wd_u64map *m)
{
    struct wd_u64map bigger = {.cap = m->cap * 2};
    bigger.slots = calloc(bigger.cap, sizeof(*bigger.slots));
    if (!bigger.slots)
        return WD_ERR_NOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            insert(&bigger, m->slots[i].key, m->slots[i].value);
    free(m->slots);
    *m = bigger;
    return WD_OK;
}

enum wd_status wd_u64map_put(struct wd_u64map *m, uint64_t key, void *value)
{
    if (key == 0 || wd_u64map_get(m, key))
        return WD_ERR_INVALID;
    if ((m->n + 1) * 4 > m->cap * 3)
        WD_CHECK(grow(m));
    insert(m, key, value);
    return WD_OK;
}

void *wd_u64map_remove(struct wd_u64map *m, uint64_t key)
{
    if (key == 0 || !m->slots)
        return NULL;
    size_t mask = m->cap - 1, i = home(m, key);
    while (m->slots[i].key != key) {
        if (m->slots[i].key == 0)
            return NULL;
        i = (i + 1) & mask;
    }
    void *value = m->slots[i].value;
    /* Backward shift: pull later entries of the probe run into the hole when their home
     * position allows it, so lookups never need tombstones. */
    for (size_t j = (i + 1) & mask; m->slots[j].key != 0; j = (j + 1) & mask) {
        size_t h = home(m, m->slots[j].key);
        /* Entry j may move to i if i lies cyclically in [h, j). */
        if (((j - h) & mask) >= ((j - i) & mask)) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].key = 0;
    m->slots[i].value = NULL;
    m->n--;
    return value;
}

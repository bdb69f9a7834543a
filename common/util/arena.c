/* Arena: a chain of blocks; oversized requests get a block of their own. */
#include "common/util/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct arena_block {
    struct arena_block *next;
    size_t size, used;
    unsigned char *data;
};

struct wd_arena {
    struct arena_block *head;
    size_t block_size, total;
};

struct wd_arena *wd_arena_create(size_t block_size)
{
    struct wd_arena *a = calloc(1, sizeof(*a));
    if (a)
        a->block_size = block_size ? block_size : (1u << 20);
    return a;
}

void wd_arena_destroy(struct wd_arena *arena)
{
    if (!arena)
        return;
    struct arena_block *b = arena->head;
    while (b) {
        struct arena_block *next = b->next;
        free(b->data);
        free(b);
        b = next;
    }
    free(arena);
}

void *wd_arena_alloc(struct wd_arena *arena, size_t size)
{
    size = (size + 63) & ~(size_t)63;
    struct arena_block *b = arena->head;
    if (!b || b->size - b->used < size) {
        size_t bs = size > arena->block_size ? size : arena->block_size;
        b = calloc(1, sizeof(*b));
        if (!b)
            return NULL;
        b->data = aligned_alloc(64, bs);
        if (!b->data) {
            free(b);
            return NULL;
        }
        memset(b->data, 0, bs);
        b->size = bs;
        b->next = arena->head;
        arena->head = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    arena->total += size;
    return p;
}

size_t wd_arena_used(const struct wd_arena *arena)
{
    return arena->total;
}

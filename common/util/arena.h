/*
 * wd_arena: many small allocations with one owner and one free. Blocks are
 * malloc'd on demand and chained; wd_arena_destroy frees them all. Used for
 * load-time data (converted norm vectors, FP8 scales, names) whose lifetime is
 * the lifetime of the object that owns the arena. Not thread-safe.
 */
#ifndef WD_UTIL_ARENA_H
#define WD_UTIL_ARENA_H

#include <stddef.h>

struct wd_arena;

struct wd_arena *wd_arena_create(size_t block_size);
void wd_arena_destroy(struct wd_arena *arena); /* NULL-safe */
/* 64-byte aligned, zeroed memory, or NULL when out of memory. */
void *wd_arena_alloc(struct wd_arena *arena, size_t size);
/* Total bytes handed out. */
size_t wd_arena_used(const struct wd_arena *arena);

#endif

/*
 * wd_u64map: a hash map from nonzero 64-bit keys to pointers, for O(1) lookup of live
 * objects by id (requests by the router's id). Open addressing with linear probing and
 * backward-shift deletion (no tombstones, so a long-running server's table never degrades);
 * it doubles when 3/4 full and never shrinks. Keys are mixed with splitmix64's finalizer,
 * so sequential ids spread. Not thread-safe.
 */
#ifndef WD_UTIL_U64MAP_H
#define WD_UTIL_U64MAP_H

#include <stddef.h>
#include <stdint.h>

#include "common/util/status.h"

struct wd_u64map_slot {
    uint64_t key; /* 0 = empty */
    void *value;
};

struct wd_u64map {
    struct wd_u64map_slot *slots; /* [cap] */
    size_t cap;                   /* power of two */
    size_t n;
};

/* Embedded: init with room for about `expected` keys before the first growth. */
enum wd_status wd_u64map_init(struct wd_u64map *m, size_t expected, struct wd_error *err);
void wd_u64map_cleanup(struct wd_u64map *m);

/* The value of key, or NULL. */
void *wd_u64map_get(const struct wd_u64map *m, uint64_t key);
/* Inserts key (nonzero, not present). WD_ERR_NOMEM when growth fails (nothing changed),
 * WD_ERR_INVALID for key 0 or a key already present. */
enum wd_status wd_u64map_put(struct wd_u64map *m, uint64_t key, void *value);
/* Removes key; returns its value or NULL when absent. */
void *wd_u64map_remove(struct wd_u64map *m, uint64_t key);

#endif

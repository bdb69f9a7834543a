/*
 * wd_prefix_index: which prompt prefixes each routing target has probably cached, for the
 * cache_aware policy.
 *
 * A prompt is cut into blocks of block_tokens tokens; block i is named by a hash chained
 * over blocks 0..i, so one hash stands for a whole prefix. The index remembers
 * (prefix hash, target) pairs in two generations of open-addressed tables: inserts go to
 * the young one, lookups read both, and when the young one is half full the old one is
 * dropped and the young one ages. That is an approximate LRU with O(1) work per block and
 * no per-entry clock, which is what the router can afford per request (SGLang's router
 * keeps an exact radix tree; the decision it feeds is the same: the longest cached prefix).
 * A target is an opaque 64-bit key (the router uses slot, generation and rank, so a
 * dropped worker's entries simply stop matching and age out). Not thread-safe.
 */
#ifndef WD_ROUTER_PREFIX_INDEX_H
#define WD_ROUTER_PREFIX_INDEX_H

#include <stdint.h>

#include "common/util/status.h"

#define WD_PREFIX_MAX_BLOCKS 256 /* prefixes longer than this many blocks count as this long */

struct wd_prefix_index;

/* max_entries: pairs remembered in all (at least 1024). */
enum wd_status wd_prefix_index_create(int block_tokens, int max_entries,
                                      struct wd_prefix_index **px_p, struct wd_error *err);
void wd_prefix_index_destroy(struct wd_prefix_index *px);

/* Hashes the prompt's full blocks into hashes[0..n) (n returned, <= WD_PREFIX_MAX_BLOCKS). */
int wd_prefix_index_hash(const struct wd_prefix_index *px, const int32_t *ids, int n_ids,
                         uint64_t *hashes);
/* Number of leading blocks of hashes[0..n) remembered for target. */
int wd_prefix_index_match(const struct wd_prefix_index *px, const uint64_t *hashes, int n,
                          uint64_t target);
/* Remembers every prefix in hashes[0..n) for target. */
void wd_prefix_index_insert(struct wd_prefix_index *px, const uint64_t *hashes, int n,
                            uint64_t target);
int wd_prefix_index_block_tokens(const struct wd_prefix_index *px);

#endif

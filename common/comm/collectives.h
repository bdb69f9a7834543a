/*
 * Collectives within one group, written against the transport contract only (so they run
 * on shm, ucx, the composite of both, or the in-process executor): all-reduce (sum, f32),
 * all-gather (bytes), broadcast (bytes from one root) and a barrier.
 *
 * All-reduce is reduce-scatter + all-gather: rank c sums chunk c of every rank's buffer in
 * rank order (x0 + x1 + ... + x(n-1), one float add at a time), then sends the sum to
 * everyone, so every rank ends with bit-identical values and the result does not depend on
 * timing. Buffers larger than the piece size go through in pieces. Every call of a group
 * must be made by all its members in the same order with the same sizes (as with NCCL).
 * Each wait has the caller's timeout; an error names the rank that did not signal (or that
 * died) and the group. After an error the engine is unusable (peers may be mid-round).
 * One thread per rank drives it.
 */
#ifndef WD_COMM_COLLECTIVES_H
#define WD_COMM_COLLECTIVES_H

#include <stddef.h>

#include "common/comm/transport.h"

struct wd_coll;

/* Window bytes the engine uses for a group of n_ranks moving up to piece_bytes per round
 * (signal words, a reduce-scatter and an all-gather area, a double-buffered gather area). */
size_t wd_coll_window_bytes(int n_ranks, size_t piece_bytes);

/* Runs over bytes [window_offset, window_offset + wd_coll_window_bytes()) of t's window,
 * which must be zero at creation and used by nothing else. t is borrowed and must outlive
 * the engine. piece_bytes >= 4. WD_ERR_INVALID when the region does not fit. */
enum wd_status wd_coll_create(struct wd_transport *t, size_t window_offset, size_t piece_bytes,
                              struct wd_coll **coll_p, struct wd_error *err);
void wd_coll_destroy(struct wd_coll *c); /* NULL-safe; leaves t alone */

/* buf: [n] f32, in: this rank's values, out: the sum over the group, summed in rank order. */
enum wd_status wd_coll_all_reduce_f32(struct wd_coll *c, float *buf, size_t n, int timeout_ms,
                                      struct wd_error *err);
/* src: [bytes] this rank's block; dst: [n_ranks, bytes] every rank's block in group order.
 * src and dst must not overlap. */
enum wd_status wd_coll_all_gather(struct wd_coll *c, const void *src, size_t bytes, void *dst,
                                  int timeout_ms, struct wd_error *err);
/* buf: [bytes], the root's values on entry there, on every rank on return. Every member
 * calls it with the same root and size. */
enum wd_status wd_coll_broadcast(struct wd_coll *c, int root, void *buf, size_t bytes,
                                 int timeout_ms, struct wd_error *err);
enum wd_status wd_coll_barrier(struct wd_coll *c, int timeout_ms, struct wd_error *err);

/* The transport the engine runs on. */
struct wd_transport *wd_coll_transport(const struct wd_coll *c);

#endif

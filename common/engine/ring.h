/*
 * wd_ring: a single-producer single-consumer ring of variable-size records in memory that
 * two processes share (a MAP_SHARED mapping made before fork). The producer owns `head`,
 * the consumer `tail`; both only grow (byte counts modulo 2^64), so full and empty never
 * look alike and no lock is needed: the producer publishes a record with a release store
 * of head after writing its bytes, the consumer frees it with a release store of tail
 * after copying it out. Records are 8-byte aligned, prefixed by their length, and may wrap
 * around the end of the data area.
 *
 * The ring does not block or wake anyone: callers pair it with an eventfd (see
 * engine_link.h). The control words sit in their own cache lines so producer and consumer
 * do not false-share.
 */
#ifndef WD_ENGINE_RING_H
#define WD_ENGINE_RING_H

#include <stddef.h>
#include <stdint.h>

#include "common/util/status.h"

struct wd_ring {
    uint64_t head; /* bytes ever pushed (producer) */
    uint8_t pad0[56];
    uint64_t tail; /* bytes ever popped (consumer) */
    uint8_t pad1[56];
    uint64_t cap; /* data bytes, a power of two */
    uint8_t pad2[56];
    uint8_t data[]; /* [cap] */
};

/* Bytes to map for a ring with cap data bytes (cap: a power of two >= 64). */
size_t wd_ring_bytes(size_t cap);
/* Initialises a ring in mem (wd_ring_bytes(cap) bytes, zeroed or not). */
struct wd_ring *wd_ring_init(void *mem, size_t cap);

/* Producer: appends one record of len bytes (the parts are concatenated: a + b, b may be
 * NULL). WD_ERR_NOMEM when it does not fit now (nothing written); WD_ERR_INVALID when it
 * can never fit. */
enum wd_status wd_ring_push2(struct wd_ring *r, const void *a, size_t a_len, const void *b,
                             size_t b_len);
/* Consumer: length of the next record, or 0 when the ring is empty. */
size_t wd_ring_peek(const struct wd_ring *r);
/* Consumer: copies the next record into buf (cap >= wd_ring_peek) and frees it; returns its
 * length, or 0 when empty. */
size_t wd_ring_pop(struct wd_ring *r, void *buf, size_t cap);
/* Bytes a push may use right now (records also take an 8-byte header and padding). */
size_t wd_ring_free_bytes(const struct wd_ring *r);

#endif

/* SPSC record ring over shared memory. */
#include "common/engine/ring.h"

#include <string.h>

#define HDR 8 /* u64 record length */

static size_t align8(size_t x)
{
    return (x + 7) & ~(size_t)7;
}

size_t wd_ring_bytes(size_t cap)
{
    return sizeof(struct wd_ring) + cap;
}

struct wd_ring *wd_ring_init(void *mem, size_t cap)
{
    WD_ASSERT(cap >= 64 && (cap & (cap - 1)) == 0);
    struct wd_ring *r = mem;
    memset(r, 0, sizeof(*r));
    r->cap = cap;
    return r;
}

/* Copies len bytes into the data area at logical position pos (wrapping). */
static void put_bytes(struct wd_ring *r, uint64_t pos, const void *src, size_t len)
{
    size_t at = (size_t)(pos & (r->cap - 1)), first = r->cap - at;
    if (first > len)
        first = len;
    memcpy(r->data + at, src, first);
    if (len > first)
        memcpy(r->data, (const uint8_t *)src + first, len - first);
}

static void get_bytes(const struct wd_ring *r, uint64_t pos, void *dst, size_t len)
{
    size_t at = (size_t)(pos & (r->cap - 1)), first = r->cap - at;
    if (first > len)
        first = len;
    memcpy(dst, r->data + at, first);
    if (len > first)
        memcpy((uint8_t *)dst + first, r->data, len - first);
}

size_t wd_ring_free_bytes(const struct wd_ring *r)
{
    uint64_t tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
    return (size_t)(r->cap - (r->head - tail));
}

enum wd_status wd_ring_push2(struct wd_ring *r, const void *a, size_t a_len, const void *b,
                             size_t b_len)
{
    size_t len = a_len + b_len, need = HDR + align8(len);
    if (len == 0 || need > r->cap)
        return WD_ERR_INVALID;
    if (need > wd_ring_free_bytes(r))
        return WD_ERR_NOMEM;
    uint64_t head = r->head, n = len;
    put_bytes(r, head, &n, HDR);
    put_bytes(r, head + HDR, a, a_len);
    if (b_len)
        put_bytes(r, head + HDR + a_len, b, b_len);
    __atomic_store_n(&r->head, head + need, __ATOMIC_RELEASE);
    return WD_OK;
}

size_t wd_ring_peek(const struct wd_ring *r)
{
    uint64_t head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
    if (head == r->tail)
        return 0;
    uint64_t n;
    get_bytes(r, r->tail, &n, HDR);
    return (size_t)n;
}

size_t wd_ring_pop(struct wd_ring *r, void *buf, size_t cap)
{
    size_t len = wd_ring_peek(r);
    if (len == 0)
        return 0;
    WD_ASSERT(len <= cap);
    get_bytes(r, r->tail + HDR, buf, len);
    __atomic_store_n(&r->tail, r->tail + HDR + align8(len), __ATOMIC_RELEASE);
    return len;
}

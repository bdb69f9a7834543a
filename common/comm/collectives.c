/*
 * Collectives over the transport contract. Window region of one engine (n ranks, piece P
 * bytes, chunk C = ceil(P/4/n) floats rounded up to 64 bytes):
 *   signals  [4][n] u64   one word per (kind, source rank): each word has a single writer,
 *                         so a software-emulated remote add can never race another writer
 *   rs       [n][C]       reduce-scatter: slot j = rank j's copy of this rank's chunk
 *   ag       [n][C]       all-gather of the sums: chunk c = rank c's sum
 *   gather   [2][n][P]    all-gather, double-buffered by round parity
 *   bcast    [2][B]       broadcast from a root, double-buffered by round parity
 * Signal words count rounds and only grow, so no word is ever reset. Why the buffers can be
 * reused without acknowledgements: a rank writes round k+1 data into a peer only after it
 * has received that peer's round-k output, which the peer sends after it finished reading
 * its round-k inputs (rs, ag); the gather area has no later phase, hence two buffers.
 * Broadcast has no traffic back to the root, so receivers acknowledge each piece and the
 * root waits for round k's acknowledgements before it reuses that buffer in round k+2.
 */
#include "common/comm/collectives.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { SIG_RS = 0, SIG_AG, SIG_GATHER, SIG_BARRIER, SIG_BCAST, SIG_BCAST_ACK, N_SIG };

/* Broadcast piece: small, since broadcasts carry commands, not activations. */
#define BCAST_PIECE ((size_t)64 << 10)

struct wd_coll {
    struct wd_transport *t;
    int rank, n;
    size_t piece_bytes; /* gather piece */
    size_t piece_elems; /* all-reduce piece, in floats */
    size_t chunk_bytes; /* one all-reduce chunk slot */
    size_t off_sig, off_rs, off_ag, off_gather, off_bcast, bytes;
    uint64_t round[N_SIG];
};

static size_t align64(size_t x)
{
    return (x + 63) & ~(size_t)63;
}

/* Fills the offsets of c for (n, piece_bytes); returns the region size. */
static size_t layout(struct wd_coll *c, int n, size_t piece_bytes)
{
    c->n = n;
    c->piece_bytes = align64(piece_bytes);
    c->piece_elems = piece_bytes / sizeof(float);
    c->chunk_bytes = align64((c->piece_elems + (size_t)n - 1) / (size_t)n * sizeof(float));
    c->off_sig = 0;
    c->off_rs = align64((size_t)N_SIG * (size_t)n * 8);
    c->off_ag = c->off_rs + (size_t)n * c->chunk_bytes;
    c->off_gather = c->off_ag + (size_t)n * c->chunk_bytes;
    c->off_bcast = c->off_gather + 2 * (size_t)n * c->piece_bytes;
    c->bytes = c->off_bcast + 2 * BCAST_PIECE;
    return c->bytes;
}

size_t wd_coll_window_bytes(int n_ranks, size_t piece_bytes)
{
    struct wd_coll c;
    return layout(&c, n_ranks, piece_bytes);
}

enum wd_status wd_coll_create(struct wd_transport *t, size_t window_offset, size_t piece_bytes,
                              struct wd_coll **coll_p, struct wd_error *err)
{
    if (piece_bytes < sizeof(float) || piece_bytes > ((size_t)1 << 40) || window_offset % 64)
        return wd_error_set(err, WD_ERR_INVALID,
                            "collectives: piece of %zu bytes or window offset %zu unusable",
                            piece_bytes, window_offset);
    struct wd_coll *c = calloc(1, sizeof(*c));
    if (!c)
        return wd_error_set(err, WD_ERR_NOMEM, "collectives: out of memory");
    size_t need = layout(c, t->n_ranks, piece_bytes);
    if (window_offset > t->window_bytes || need > t->window_bytes - window_offset) {
        free(c);
        return wd_error_set(err, WD_ERR_INVALID,
                            "collectives: need %zu window bytes at offset %zu, window has %zu",
                            need, window_offset, t->window_bytes);
    }
    c->off_sig += window_offset;
    c->off_rs += window_offset;
    c->off_ag += window_offset;
    c->off_gather += window_offset;
    c->off_bcast += window_offset;
    c->t = t;
    c->rank = t->rank;
    *coll_p = c;
    return WD_OK;
}

void wd_coll_destroy(struct wd_coll *c)
{
    free(c);
}

struct wd_transport *wd_coll_transport(const struct wd_coll *c)
{
    return c->t;
}

static size_t sig_off(const struct wd_coll *c, int kind, int src)
{
    return c->off_sig + ((size_t)kind * (size_t)c->n + (size_t)src) * 8;
}

/* Waits for round r of kind from every other rank, in rank order. */
static enum wd_status wait_all(struct wd_coll *c, int kind, uint64_t r, int timeout_ms,
                               struct wd_error *err)
{
    for (int j = 0; j < c->n; j++)
        if (j != c->rank)
            WD_CHECK(wd_transport_wait(c->t, sig_off(c, kind, j), r, j, timeout_ms, err));
    return WD_OK;
}

/* Element range [lo, hi) of chunk k in a piece of m elements split q per rank. */
static void chunk_range(size_t k, size_t q, size_t m, size_t *lo, size_t *hi)
{
    *lo = k * q < m ? k * q : m;
    *hi = *lo + q < m ? *lo + q : m;
}

static enum wd_status all_reduce_piece(struct wd_coll *c, float *x, size_t m, int timeout_ms,
                                       struct wd_error *err)
{
    struct wd_transport *t = c->t;
    int me = c->rank, n = c->n;
    size_t q = (m + (size_t)n - 1) / (size_t)n, lo, hi;
    uint64_t r = ++c->round[SIG_RS];
    c->round[SIG_AG] = r;
    /* Reduce-scatter: chunk d of x goes to rank d's slot for this rank. Starting at me + 1
     * spreads the traffic instead of everyone writing rank 0 first. */
    for (int s = 1; s < n; s++) {
        int d = (me + s) % n;
        chunk_range((size_t)d, q, m, &lo, &hi);
        if (hi > lo)
            WD_CHECK(wd_transport_put(t, d, c->off_rs + (size_t)me * c->chunk_bytes, x + lo,
                                      (hi - lo) * sizeof(float), err));
        WD_CHECK(wd_transport_signal(t, d, sig_off(c, SIG_RS, me), 1, err));
    }
    WD_CHECK(wait_all(c, SIG_RS, r, timeout_ms, err));
    chunk_range((size_t)me, q, m, &lo, &hi);
    float *sum = (float *)(t->window + c->off_ag + (size_t)me * c->chunk_bytes);
    for (size_t k = 0; k < hi - lo; k++) {
        float acc = 0.0f;
        for (int j = 0; j < n; j++) {
            const float *src =
                j == me ? x + lo
                        : (const float *)(t->window + c->off_rs + (size_t)j * c->chunk_bytes);
            acc = j == 0 ? src[k] : acc + src[k];
        }
        sum[k] = acc;
    }
    /* All-gather of the sums. */
    for (int s = 1; s < n; s++) {
        int d = (me + s) % n;
        if (hi > lo)
            WD_CHECK(wd_transport_put(t, d, c->off_ag + (size_t)me * c->chunk_bytes, sum,
                                      (hi - lo) * sizeof(float), err));
        WD_CHECK(wd_transport_signal(t, d, sig_off(c, SIG_AG, me), 1, err));
    }
    WD_CHECK(wait_all(c, SIG_AG, r, timeout_ms, err));
    for (int k = 0; k < n; k++) {
        chunk_range((size_t)k, q, m, &lo, &hi);
        if (hi > lo)
            memcpy(x + lo, t->window + c->off_ag + (size_t)k * c->chunk_bytes,
                   (hi - lo) * sizeof(float));
    }
    return WD_OK;
}

enum wd_status wd_coll_all_reduce_f32(struct wd_coll *c, float *buf, size_t n, int timeout_ms,
                                      struct wd_error *err)
{
    if (c->n == 1)
        return WD_OK;
    for (size_t base = 0; base < n; base += c->piece_elems) {
        size_t m = n - base < c->piece_elems ? n - base : c->piece_elems;
        enum wd_status st = all_reduce_piece(c, buf + base, m, timeout_ms, err);
        if (st != WD_OK) {
            wd_error_prefix(err, "all_reduce");
            return st;
        }
    }
    return WD_OK;
}

enum wd_status wd_coll_all_gather(struct wd_coll *c, const void *src, size_t bytes, void *dst,
                                  int timeout_ms, struct wd_error *err)
{
    struct wd_transport *t = c->t;
    int me = c->rank, n = c->n;
    const uint8_t *s8 = src;
    uint8_t *d8 = dst;
    for (size_t off = 0; off < bytes; off += c->piece_bytes) {
        size_t m = bytes - off < c->piece_bytes ? bytes - off : c->piece_bytes;
        uint64_t r = ++c->round[SIG_GATHER];
        size_t area = c->off_gather + (size_t)(r & 1) * (size_t)n * c->piece_bytes;
        enum wd_status st = WD_OK;
        for (int s = 1; s < n && st == WD_OK; s++) {
            int d = (me + s) % n;
            st = wd_transport_put(t, d, area + (size_t)me * c->piece_bytes, s8 + off, m, err);
            if (st == WD_OK)
                st = wd_transport_signal(t, d, sig_off(c, SIG_GATHER, me), 1, err);
        }
        memcpy(d8 + (size_t)me * bytes + off, s8 + off, m);
        for (int j = 0; j < n && st == WD_OK; j++) {
            if (j == me)
                continue;
            st = wd_transport_wait(t, sig_off(c, SIG_GATHER, j), r, j, timeout_ms, err);
            if (st == WD_OK)
                memcpy(d8 + (size_t)j * bytes + off, t->window + area + (size_t)j * c->piece_bytes,
                       m);
        }
        if (st != WD_OK) {
            wd_error_prefix(err, "all_gather");
            return st;
        }
    }
    return WD_OK;
}

enum wd_status wd_coll_barrier(struct wd_coll *c, int timeout_ms, struct wd_error *err)
{
    uint64_t r = ++c->round[SIG_BARRIER];
    enum wd_status st = WD_OK;
    for (int s = 1; s < c->n && st == WD_OK; s++)
        st = wd_transport_signal(c->t, (c->rank + s) % c->n, sig_off(c, SIG_BARRIER, c->rank), 1,
                                 err);
    if (st == WD_OK)
        st = wait_all(c, SIG_BARRIER, r, timeout_ms, err);
    if (st != WD_OK)
        wd_error_prefix(err, "barrier");
    return st;
}

enum wd_status wd_coll_broadcast(struct wd_coll *c, int root, void *buf, size_t bytes,
                                 int timeout_ms, struct wd_error *err)
{
    WD_ASSERT(root >= 0 && root < c->n);
    struct wd_transport *t = c->t;
    uint8_t *b8 = buf;
    enum wd_status st = WD_OK;
    for (size_t off = 0; off < bytes && st == WD_OK; off += BCAST_PIECE) {
        size_t m = bytes - off < BCAST_PIECE ? bytes - off : BCAST_PIECE;
        uint64_t r = ++c->round[SIG_BCAST];
        size_t area = c->off_bcast + (size_t)(r & 1) * BCAST_PIECE;
        if (c->rank == root) {
            for (int j = 0; j < c->n && st == WD_OK; j++) {
                if (j == root)
                    continue;
                /* The buffer of this parity was last used in round r - 2. */
                if (r > 2)
                    st = wd_transport_wait(t, sig_off(c, SIG_BCAST_ACK, j), r - 2, j, timeout_ms,
                                           err);
                if (st == WD_OK)
                    st = wd_transport_put(t, j, area, b8 + off, m, err);
                if (st == WD_OK)
                    st = wd_transport_signal(t, j, sig_off(c, SIG_BCAST, root), 1, err);
            }
        } else {
            st = wd_transport_wait(t, sig_off(c, SIG_BCAST, root), r, root, timeout_ms, err);
            if (st == WD_OK) {
                memcpy(b8 + off, t->window + area, m);
                st = wd_transport_signal(t, root, sig_off(c, SIG_BCAST_ACK, c->rank), 1, err);
            }
        }
    }
    if (st != WD_OK)
        wd_error_prefix(err, "broadcast");
    return st;
}

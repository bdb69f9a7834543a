/*
 * In-process transport: R ranks as R threads sharing R windows (see
 * transport_inproc.h). The release add in signal() pairs with the acquire
 * load in wait(), so every memcpy a rank made into a peer's window before
 * signalling it is visible to the peer once its wait returns: the "data, then
 * signal" ordering of the contract, with nothing else needed.
 */
#include "common/comm/transport_inproc.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define INPROC_MAX_RANKS 4096

struct wd_inproc_group {
    int n_ranks;
    size_t window_bytes;
    uint8_t **windows;       /* [n_ranks] each window_bytes, 64-byte aligned */
    struct wd_transport *ts; /* [n_ranks] */
    int *dead;               /* [n_ranks] set by kill, read atomically */
};

static int rank_dead(const struct wd_inproc_group *g, int rank)
{
    return __atomic_load_n(&g->dead[rank], __ATOMIC_ACQUIRE);
}

static enum wd_status check_peer(struct wd_transport *t, int peer, const char *op,
                                 struct wd_error *err)
{
    const struct wd_inproc_group *g = t->impl;
    if (peer < 0 || peer >= g->n_ranks)
        return wd_error_set(err, WD_ERR_INVALID, "inproc %s: rank %d is not in a group of %d", op,
                            peer, g->n_ranks);
    if (rank_dead(g, peer))
        return wd_error_set(err, WD_ERR_PEER, "inproc %s: rank %d is dead", op, peer);
    if (rank_dead(g, t->rank))
        return wd_error_set(err, WD_ERR_PEER, "inproc %s: this rank %d is dead", op, t->rank);
    return WD_OK;
}

static enum wd_status inproc_put(struct wd_transport *t, int peer, size_t dst_off, const void *src,
                                 size_t len, struct wd_error *err)
{
    WD_CHECK(check_peer(t, peer, "put", err));
    if (dst_off > t->window_bytes || len > t->window_bytes - dst_off)
        return wd_error_set(err, WD_ERR_INVALID,
                            "inproc put to rank %d: [%zu, +%zu) is outside the %zu-byte window",
                            peer, dst_off, len, t->window_bytes);
    const struct wd_inproc_group *g = t->impl;
    if (len)
        memcpy(g->windows[peer] + dst_off, src, len);
    return WD_OK;
}

static enum wd_status check_sig_off(struct wd_transport *t, size_t sig_off, const char *op,
                                    struct wd_error *err)
{
    if (sig_off % 8 != 0 || sig_off > t->window_bytes - 8)
        return wd_error_set(err, WD_ERR_INVALID,
                            "inproc %s: signal offset %zu is unaligned or outside the window", op,
                            sig_off);
    return WD_OK;
}

static enum wd_status inproc_signal(struct wd_transport *t, int peer, size_t sig_off, uint64_t add,
                                    struct wd_error *err)
{
    WD_CHECK(check_peer(t, peer, "signal", err));
    WD_CHECK(check_sig_off(t, sig_off, "signal", err));
    const struct wd_inproc_group *g = t->impl;
    uint64_t *word = (uint64_t *)(void *)(g->windows[peer] + sig_off);
    __atomic_fetch_add(word, add, __ATOMIC_RELEASE);
    return WD_OK;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static enum wd_status inproc_wait(struct wd_transport *t, size_t sig_off, uint64_t target,
                                  int from_peer, int timeout_ms, struct wd_error *err)
{
    const struct wd_inproc_group *g = t->impl;
    WD_CHECK(check_sig_off(t, sig_off, "wait", err));
    const uint64_t *word = (const uint64_t *)(const void *)(t->window + sig_off);
    int64_t deadline = now_ns() + (int64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000;
    /* Spin with sched_yield first (the peer is usually a few microseconds behind),
     * then sleep in growing steps up to 200 us so that many waiting threads on few
     * cores leave the CPU to the ones doing the work. */
    long sleep_ns = 1000;
    for (int spins = 0;; spins++) {
        uint64_t v = __atomic_load_n(word, __ATOMIC_ACQUIRE);
        if (v >= target)
            return WD_OK;
        if (from_peer >= 0 && from_peer < g->n_ranks && rank_dead(g, from_peer))
            return wd_error_set(err, WD_ERR_PEER,
                                "inproc wait: rank %d is dead (signal at offset %zu is %llu, "
                                "want %llu)",
                                from_peer, sig_off, (unsigned long long)v,
                                (unsigned long long)target);
        if (now_ns() >= deadline)
            return wd_error_set(err, WD_ERR_TIMEOUT,
                                "timed out after %d ms waiting for rank %d (signal at offset "
                                "%zu is %llu, want %llu)",
                                timeout_ms, from_peer, sig_off, (unsigned long long)v,
                                (unsigned long long)target);
        if (spins < 64) {
            sched_yield();
        } else {
            struct timespec ts = {0, sleep_ns};
            nanosleep(&ts, NULL);
            if (sleep_ns < 200000)
                sleep_ns *= 2;
        }
    }
}

static void *inproc_peer_window(struct wd_transport *t, int peer)
{
    const struct wd_inproc_group *g = t->impl;
    if (peer < 0 || peer >= g->n_ranks)
        return NULL;
    return g->windows[peer];
}

static void inproc_destroy(struct wd_transport *t)
{
    (void)t; /* owned by the group */
}

static const struct wd_transport_ops inproc_ops = {
    .put = inproc_put,
    .signal = inproc_signal,
    .wait = inproc_wait,
    .peer_window = inproc_peer_window,
    .destroy = inproc_destroy,
};

enum wd_status wd_inproc_group_create(int n_ranks, size_t window_bytes,
                                      struct wd_inproc_group **g_p, struct wd_error *err)
{
    if (n_ranks < 1 || n_ranks > INPROC_MAX_RANKS)
        return wd_error_set(err, WD_ERR_INVALID, "inproc group: %d ranks (want 1..%d)", n_ranks,
                            INPROC_MAX_RANKS);
    if (window_bytes < 8)
        return wd_error_set(err, WD_ERR_INVALID, "inproc group: window of %zu bytes", window_bytes);
    /* Round the window to 64 bytes so every window starts cache-line aligned. */
    size_t alloc_bytes = (window_bytes + 63) & ~(size_t)63;
    struct wd_inproc_group *g = calloc(1, sizeof(*g));
    if (!g)
        goto fail_nomem;
    g->n_ranks = n_ranks;
    g->window_bytes = window_bytes;
    g->windows = calloc((size_t)n_ranks, sizeof(*g->windows));
    g->ts = calloc((size_t)n_ranks, sizeof(*g->ts));
    g->dead = calloc((size_t)n_ranks, sizeof(*g->dead));
    if (!g->windows || !g->ts || !g->dead)
        goto fail_nomem;
    for (int r = 0; r < n_ranks; r++) {
        g->windows[r] = aligned_alloc(64, alloc_bytes);
        if (!g->windows[r])
            goto fail_nomem;
        memset(g->windows[r], 0, alloc_bytes);
        g->ts[r] = (struct wd_transport){
            .ops = &inproc_ops,
            .rank = r,
            .n_ranks = n_ranks,
            .window = g->windows[r],
            .window_bytes = window_bytes,
            .kind = "inproc",
            .impl = g,
        };
    }
    *g_p = g;
    return WD_OK;

fail_nomem:
    wd_inproc_group_destroy(g);
    return wd_error_set(err, WD_ERR_NOMEM, "inproc group: no memory for %d windows of %zu bytes",
                        n_ranks, window_bytes);
}

void wd_inproc_group_destroy(struct wd_inproc_group *g)
{
    if (!g)
        return;
    if (g->windows)
        for (int r = 0; r < g->n_ranks; r++)
            free(g->windows[r]);
    free(g->windows);
    free(g->ts);
    free(g->dead);
    free(g);
}

struct wd_transport *wd_inproc_group_transport(struct wd_inproc_group *g, int rank)
{
    if (!g || rank < 0 || rank >= g->n_ranks)
        return NULL;
    return &g->ts[rank];
}

void wd_inproc_group_kill(struct wd_inproc_group *g, int rank)
{
    if (g && rank >= 0 && rank < g->n_ranks)
        __atomic_store_n(&g->dead[rank], 1, __ATOMIC_RELEASE);
}

struct run_arg {
    void (*fn)(int rank, void *arg);
    void *arg;
    int rank;
};

static void *run_thread(void *p)
{
    struct run_arg *a = p;
    a->fn(a->rank, a->arg);
    return NULL;
}

enum wd_status wd_inproc_group_run(struct wd_inproc_group *g, void (*fn)(int rank, void *arg),
                                   void *arg, struct wd_error *err)
{
    int n = g->n_ranks;
    pthread_t *th = calloc((size_t)n, sizeof(*th));
    struct run_arg *args = calloc((size_t)n, sizeof(*args));
    if (!th || !args) {
        free(th);
        free(args);
        return wd_error_set(err, WD_ERR_NOMEM, "inproc run: no memory for %d threads", n);
    }
    int started = 0, rc = 0;
    for (int r = 1; r < n; r++) {
        args[r] = (struct run_arg){fn, arg, r};
        rc = pthread_create(&th[r], NULL, run_thread, &args[r]);
        if (rc != 0)
            break;
        started = r;
    }
    if (rc != 0) {
        /* The started ranks would wait for the missing ones: fail them fast instead. */
        for (int r = started + 1; r < n; r++)
            wd_inproc_group_kill(g, r);
    }
    if (rc == 0)
        fn(0, arg);
    else
        wd_inproc_group_kill(g, 0);
    for (int r = 1; r <= started; r++)
        pthread_join(th[r], NULL);
    free(th);
    free(args);
    if (rc != 0)
        return wd_error_set(err, WD_ERR_NOMEM, "inproc run: cannot start thread %d of %d: %s",
                            started + 1, n, strerror(rc));
    return WD_OK;
}

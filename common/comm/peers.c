/*
 * Group membership, peer liveness and the shared signal-word wait. The wait spins briefly
 * (a signal that is already on its way lands within microseconds on one node), then
 * yields, then sleeps with a growing period capped at 1 ms: ranks often outnumber cores
 * (CI runs four ranks on two), and a spinning waiter would steal the core its peer needs.
 */
#include "common/comm/peers.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/comm/launcher.h"

enum wd_status wd_peers_init(struct wd_peers *p, const char *name, int rank, int n_ranks,
                             const int *members, const struct wd_rank_info *ri,
                             struct wd_error *err)
{
    memset(p, 0, sizeof(*p));
    if (n_ranks < 1 || rank < 0 || rank >= n_ranks)
        return wd_error_set(err, WD_ERR_INVALID, "group '%s': rank %d of %d out of range", name,
                            rank, n_ranks);
    p->members = malloc((size_t)n_ranks * sizeof(int));
    if (!p->members)
        return wd_error_set(err, WD_ERR_NOMEM, "group '%s': out of memory", name);
    for (int i = 0; i < n_ranks; i++)
        p->members[i] = members ? members[i] : i;
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->rank = rank;
    p->n_ranks = n_ranks;
    p->ri = ri;
    return WD_OK;
}

void wd_peers_cleanup(struct wd_peers *p)
{
    free(p->members);
    p->members = NULL;
}

int wd_peers_global(const struct wd_peers *p, int peer)
{
    return peer >= 0 && peer < p->n_ranks ? p->members[peer] : peer;
}

enum wd_status wd_peers_check(const struct wd_peers *p, int peer, struct wd_error *err)
{
    if (peer < 0 || peer >= p->n_ranks)
        return wd_error_set(err, WD_ERR_INVALID, "%s: peer %d out of range (group of %d)", p->name,
                            peer, p->n_ranks);
    enum wd_status st = wd_rank_check(p->ri, p->members[peer], err);
    if (st != WD_OK)
        wd_error_prefix(err, "%s", p->name);
    return st;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

enum wd_status wd_peers_wait_word(const struct wd_peers *p, const uint64_t *word, uint64_t target,
                                  int from_peer, int timeout_ms, wd_peers_progress_fn progress,
                                  void *progress_arg, struct wd_error *err)
{
    int64_t start = now_us();
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : start + (int64_t)timeout_ms * 1000;
    long sleep_ns = 2000;
    for (unsigned iter = 0;; iter++) {
        if (progress)
            progress(progress_arg);
        if (__atomic_load_n(word, __ATOMIC_ACQUIRE) >= target)
            return WD_OK;
        if (iter < 200 && timeout_ms != 0) {
            cpu_relax();
            continue;
        }
        enum wd_status st = wd_peers_check(p, from_peer, err);
        if (st != WD_OK) {
            /* It may have signalled before it went: its stores are all visible by now. */
            if (__atomic_load_n(word, __ATOMIC_ACQUIRE) >= target)
                return WD_OK;
            return st;
        }
        if (now_us() >= deadline)
            return wd_error_set(err, WD_ERR_TIMEOUT,
                                "%s: timed out after %d ms waiting for a signal from rank %d "
                                "(at %llu of %llu)",
                                p->name, timeout_ms, wd_peers_global(p, from_peer),
                                (unsigned long long)__atomic_load_n(word, __ATOMIC_ACQUIRE),
                                (unsigned long long)target);
        if (iter < 400) {
            sched_yield();
            continue;
        }
        struct timespec ts = {0, sleep_ns};
        nanosleep(&ts, NULL);
        if (sleep_ns < 1000000)
            sleep_ns *= 2;
    }
}

/*
 * The in-process executor of the transport contract (common/comm/transport.h):
 * R ranks are R threads of one process. One group object allocates the R
 * symmetric windows and hands out one wd_transport per rank; put is a memcpy
 * into the peer's window, signal an atomic add with release ordering, wait an
 * acquire-load spin that yields, then sleeps in short steps, until the target
 * or the timeout.
 *
 * It exists to test the protocols above the contract (dispatch/combine,
 * collectives) with real concurrency and without processes; it is not a
 * serving transport. Ownership: the group owns the windows and the transports;
 * wd_transport_destroy on one of them does nothing, wd_inproc_group_destroy
 * frees everything. Threading: one thread per rank drives that rank's
 * transport; the group functions themselves are called from one thread.
 */
#ifndef WD_COMM_TRANSPORT_INPROC_H
#define WD_COMM_TRANSPORT_INPROC_H

#include <stddef.h>

#include "common/comm/transport.h"
#include "common/util/status.h"

struct wd_inproc_group;

/* Allocates n_ranks zeroed windows of window_bytes each (64-byte aligned) and their
 * transports. WD_ERR_INVALID for n_ranks < 1 or > 4096 or window_bytes == 0,
 * WD_ERR_NOMEM when memory cannot be had (nothing leaks). */
enum wd_status wd_inproc_group_create(int n_ranks, size_t window_bytes,
                                      struct wd_inproc_group **g_p, struct wd_error *err);

/* Frees the windows and transports; NULL-safe. No rank may still be using them. */
void wd_inproc_group_destroy(struct wd_inproc_group *g);

/* The transport of one rank (borrowed from the group), or NULL for a bad rank. */
struct wd_transport *wd_inproc_group_transport(struct wd_inproc_group *g, int rank);

/* Marks rank dead, as a shm/ucx executor does when it notices a peer process died:
 * from now on every put, signal or wait that involves that rank fails with
 * WD_ERR_PEER naming it (a wait already spinning on it notices within a few ms).
 * Thread-safe. */
void wd_inproc_group_kill(struct wd_inproc_group *g, int rank);

/* Runs fn(rank, arg) on n_ranks threads at once (rank 0 included) and joins them;
 * returns when all have returned. WD_ERR_NOMEM when a thread cannot be started (the
 * ones started are still joined, after the group is told to fail them). */
enum wd_status wd_inproc_group_run(struct wd_inproc_group *g, void (*fn)(int rank, void *arg),
                                   void *arg, struct wd_error *err);

#endif

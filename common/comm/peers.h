/*
 * wd_peers: who the members of one group transport are (group-local index -> global
 * rank), how to ask whether one of them has stopped, and the one signal-word wait loop
 * every executor shares (spin, then yield, then sleep, with the peer's liveness and the
 * deadline checked on the slow path).
 *
 * A plain value owned by the transport that embeds it; members is copied. The liveness
 * source is the launcher's control page (struct wd_rank_info); without one (ri NULL) a
 * dead peer shows up as a timeout.
 */
#ifndef WD_COMM_PEERS_H
#define WD_COMM_PEERS_H

#include <stdint.h>

#include "common/util/status.h"

struct wd_rank_info;

struct wd_peers {
    char name[48];                 /* group name, for messages ("tp0", "moe_ep1") */
    int rank;                      /* this rank's index in members */
    int n_ranks;                   /* group size */
    int *members;                  /* [n_ranks] global ranks */
    const struct wd_rank_info *ri; /* liveness; NULL = none */
};

/* Copies members; rank is this rank's index in them. WD_ERR_NOMEM / WD_ERR_INVALID. */
enum wd_status wd_peers_init(struct wd_peers *p, const char *name, int rank, int n_ranks,
                             const int *members, const struct wd_rank_info *ri,
                             struct wd_error *err);
void wd_peers_cleanup(struct wd_peers *p);

/* Global rank of group-local peer (the index itself when out of range). */
int wd_peers_global(const struct wd_peers *p, int peer);
/* WD_ERR_INVALID for a peer index out of range; WD_ERR_PEER naming the peer's global rank
 * once it is known to have stopped; else WD_OK. */
enum wd_status wd_peers_check(const struct wd_peers *p, int peer, struct wd_error *err);

/* Called on every turn of a wait loop (UCX progresses its worker here). */
typedef void (*wd_peers_progress_fn)(void *arg);

/* Waits until the u64 at *word (this rank's window) is >= target, loading it with acquire
 * order. timeout_ms < 0 waits forever, 0 checks once. WD_ERR_TIMEOUT and WD_ERR_PEER name
 * from_peer's global rank and the group. */
enum wd_status wd_peers_wait_word(const struct wd_peers *p, const uint64_t *word, uint64_t target,
                                  int from_peer, int timeout_ms, wd_peers_progress_fn progress,
                                  void *progress_arg, struct wd_error *err);

#endif

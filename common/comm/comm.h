/*
 * wd_comm: a rank's communication bring-up. Inside rank_main, create one wd_comm from the
 * rank info the launcher passes, then one transport per group the rank belongs to (the
 * layout's groups; common/comm/comm_group.h does all of them at once). Each group
 * transport routes every peer to the executor that reaches it: same node -> shm, other
 * node -> ucx, over one window (this rank's shm segment, also registered with UCX), so the
 * protocol and buffer layout are the same on both. Segment names, UCX worker addresses and
 * rkeys travel through the rendezvous; ranks meet at a rendezvous barrier before this
 * rank's segment name is removed, so a crash later leaves nothing in /dev/shm.
 *
 * Creating and destroying a group transport are collective over its members: every member
 * calls them for the same groups in the same order. The comm must outlive its transports.
 * Setup waits use the launch's timeout and fail early (WD_ERR_PEER, naming the rank) when
 * any rank of the launch is known to have failed. One thread per rank.
 */
#ifndef WD_COMM_COMM_H
#define WD_COMM_COMM_H

#include <stddef.h>

#include "common/comm/launcher.h"
#include "common/comm/transport.h"

struct wd_comm;
struct wd_rdzv;

/* Connects to the launch's rendezvous. ri is copied. UCX starts on first use (a group that
 * spans nodes). */
enum wd_status wd_comm_create(const struct wd_rank_info *ri, struct wd_comm **comm_p,
                              struct wd_error *err);
void wd_comm_destroy(struct wd_comm *comm); /* NULL-safe; destroy its transports first */

const struct wd_rank_info *wd_comm_rank_info(const struct wd_comm *comm);
/* The rendezvous client (for swapping other bytes, e.g. the NCCL unique id). */
struct wd_rdzv *wd_comm_rdzv(struct wd_comm *comm);
/* This rank failed and will exit: transports destroyed from now on free what they hold
 * without the teardown barrier (peers may be anywhere; the launch is ending), so an error
 * path can release everything instead of leaving it to process exit. */
void wd_comm_mark_failed(struct wd_comm *comm);
/* Waits until every rank of the launch called it with the same name. */
enum wd_status wd_comm_barrier_world(struct wd_comm *comm, const char *name, struct wd_error *err);

/* Routes every peer of the group transports this comm creates from now on over UCX, ranks
 * of the same node included (default off: same node -> shm, other node -> ucx). This is how
 * one machine measures and tests the RDMA path (wideep-bench ep --transport ucx); UCX then
 * picks its own intra-node transport unless UCX_TLS says otherwise (UCX_TLS=tcp,self for
 * the path a machine without RDMA devices takes between nodes). Every member of a group
 * must make the same choice before creating it. Puts to this rank itself stay a memcpy. */
void wd_comm_force_ucx(struct wd_comm *comm, int is_forced);

/* Collective over members ([n_members] global ranks, strictly ascending, containing this
 * rank): a transport whose rank/n_ranks are this rank's index in members and the group
 * size, with a zeroed window of window_bytes on every member. name ([A-Za-z0-9_.-],
 * 1..40 chars) identifies the group in the rendezvous and in error messages; creating the
 * same name again after destroying it is fine. kind is "shm", "ucx" or "shm+ucx". The
 * transport's destroy is collective too when the group spans nodes (a barrier, so no
 * member closes while another still has operations in flight). */
enum wd_status wd_comm_transport_create(struct wd_comm *comm, const char *name, const int *members,
                                        int n_members, size_t window_bytes,
                                        struct wd_transport **t_p, struct wd_error *err);

#endif

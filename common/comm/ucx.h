/*
 * wd_ucx: the UCX plumbing shared by every UCX user in wideep (the rank transport in
 * common/comm/transport_ucx.c, the KV transfer in common/net/kv_transfer.c): one context
 * and worker read from the environment (UCX_TLS etc.), the one converter from a UCX status
 * to ours, the bounded request wait, region registration with its packed rkey and worker
 * address, endpoints with peer-failure handling, and their close.
 *
 * A struct wd_ucx belongs to one process (created after fork, never crosses one) and is
 * driven by one thread at a time: its worker is UCS_THREAD_MODE_SINGLE, so a user that
 * adds a thread serializes the calls itself (kv_transfer's lock). Nothing here logs except
 * a failed close, which has nobody to return to.
 */
#ifndef WD_COMM_UCX_H
#define WD_COMM_UCX_H

#include <stddef.h>
#include <stdint.h>
#include <ucp/api/ucp.h>

#include "common/util/status.h"

struct wd_ucx {
    ucp_context_h ctx;
    ucp_worker_h worker;
    int efd; /* the worker's event fd (is_wakeup), else -1 */
};

struct wd_ucx_config {
    uint64_t features; /* UCP_FEATURE_* wanted (RMA, AMO64, ...) */
    int is_wakeup;     /* also UCP_FEATURE_WAKEUP and the worker's event fd */
};

/* Reads the UCX configuration from the environment and creates a context with RMA and
 * 64-bit atomics and one single-threaded worker (what the rank transport needs). */
enum wd_status wd_ucx_create(struct wd_ucx **u_p, struct wd_error *err);
/* The same with the features of cfg. */
enum wd_status wd_ucx_create_with(const struct wd_ucx_config *cfg, struct wd_ucx **u_p,
                                  struct wd_error *err);
void wd_ucx_destroy(struct wd_ucx *u); /* NULL-safe; close its endpoints and unmap first */
/* Progresses the worker until it reports nothing more to do. */
void wd_ucx_progress(struct wd_ucx *u);

/* Who an operation concerns, for messages: "<scope>: ucx <what> to <peer>: <cause>", the
 * peer being peer_name, else "rank <peer_rank>", else left out (peer_rank < 0). */
struct wd_ucx_who {
    const char *scope; /* the group or object, e.g. "tp0", "kv prefill rank 1" */
    const char *what;  /* the operation, e.g. "put", "flush" */
    const char *peer_name;
    int peer_rank;
};

/* The one converter from a UCX status to ours: a lost peer (reset, timeout, unreachable,
 * cancelled) is WD_ERR_PEER, anything else WD_ERR_IO. Fills err, returns the status. */
enum wd_status wd_ucx_error(struct wd_error *err, ucs_status_t s, const struct wd_ucx_who *who);

/* Called on the slow path of a wait; a non-OK status (already in err) ends the wait. */
typedef enum wd_status (*wd_ucx_check_fn)(void *arg, struct wd_error *err);

/* Progresses until req completes or timeout_ms passes or check (may be NULL) fails; frees
 * req either way (an abandoned one is cancelled first). NULL req = completed at once, an
 * error pointer is converted. WD_ERR_TIMEOUT names who and the timeout. */
enum wd_status wd_ucx_wait(struct wd_ucx *u, ucs_status_ptr_t req, int timeout_ms,
                           wd_ucx_check_fn check, void *check_arg, const struct wd_ucx_who *who,
                           struct wd_error *err);
/* Flushes every endpoint of the worker, progressing up to timeout_ms. */
enum wd_status wd_ucx_flush(struct wd_ucx *u, int timeout_ms, struct wd_error *err);

/* Registers [addr, addr + len) for remote access. */
enum wd_status wd_ucx_mem_map(struct wd_ucx *u, void *addr, size_t len, ucp_mem_h *memh_p,
                              const struct wd_ucx_who *who, struct wd_error *err);

/* What a remote writer needs from this process: the worker address and the packed rkey of
 * memh (both UCX-allocated; release with wd_ucx_local_release). */
struct wd_ucx_local {
    ucp_address_t *addr;
    size_t addr_len;
    void *rkey;
    size_t rkey_len;
};
enum wd_status wd_ucx_local_get(struct wd_ucx *u, ucp_mem_h memh, struct wd_ucx_local *l_p,
                                const struct wd_ucx_who *who, struct wd_error *err);
void wd_ucx_local_release(struct wd_ucx *u, struct wd_ucx_local *l);

/* Creates an endpoint to a remote worker address with UCP_ERR_HANDLING_MODE_PEER and cb,
 * so a vanished peer fails its requests instead of hanging them. Transports without
 * peer-failure detection (UCX_TLS=posix, sysv) refuse that mode: the endpoint is then made
 * without it and *is_unguarded_p set (the caller's own liveness check must cover it). */
enum wd_status wd_ucx_ep_create(struct wd_ucx *u, const void *addr, ucp_err_handler_cb_t cb,
                                void *cb_arg, ucp_ep_h *ep_p, int *is_unguarded_p,
                                const struct wd_ucx_who *who, struct wd_error *err);
/* Closes ep: forced (pending operations dropped, no message to the peer) or flushing,
 * waiting at most timeout_ms (check as in wd_ucx_wait). A failure is logged as a warning
 * (nobody above can do more) and returned: the endpoint may then still call back. */
enum wd_status wd_ucx_ep_close(struct wd_ucx *u, ucp_ep_h ep, int is_force, int timeout_ms,
                               wd_ucx_check_fn check, void *check_arg,
                               const struct wd_ucx_who *who);

#endif

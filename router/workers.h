/*
 * wd_workers: the router's registry of workers and their per-DP-rank load.
 *
 * A worker is one server instance (a decode or a prefill worker) that registered over the
 * ZeroMQ ROUTER socket. It is known by its instance id (a string,
 * stable across reconnects) and reached through its current ZeroMQ routing id. Each of its DP ranks is a
 * routing target with the load of its last heartbeat plus what the router sent it since,
 * because heartbeats lag the requests the router itself just placed.
 *
 * Slots are fixed (WD_WORKERS_MAX) and carry a generation, so a request can hold a
 * (slot, generation) reference that goes stale, instead of a pointer, when its worker is
 * dropped and the slot reused. Not thread-safe: the router's event loop owns it.
 */
#ifndef WD_ROUTER_WORKERS_H
#define WD_ROUTER_WORKERS_H

#include <stddef.h>
#include <stdint.h>

#include "common/util/status.h"

#define WD_WORKERS_MAX 64
#define WD_WORKER_MAX_DP 256
#define WD_WORKER_ID_MAX 255   /* ZeroMQ routing ids are 1..255 bytes */
#define WD_WORKER_NAME_MAX 128 /* instance ids (common/net's WD_MSG_ID_CAP) */

enum wd_worker_role { WD_WORKER_DECODE = 0, WD_WORKER_PREFILL, WD_WORKER_N_ROLES };

/* The KV geometry of a worker's fingerprint besides its page size: what a prefill and a
 * decode worker must share for one to write the other's pages. */
struct wd_worker_kv {
    char dtype[32]; /* --kv-cache-dtype after "auto" is resolved */
    int kind;       /* common/net's WD_MSG_KV_GQA or WD_MSG_KV_MLA */
    int n_layers;   /* layers holding KV */
    int n_kv_heads; /* GQA: the model's KV heads; MLA: 1 */
    int k_head_dim; /* GQA: K head dim; MLA: the latent row */
    int v_head_dim; /* GQA: V head dim; MLA: 0 */
};

#define WD_WORKER_ENDPOINT_MAX 256 /* bootstrap endpoints (common/net's WD_MSG_NAME_CAP) */

/* One DP rank as a routing target. */
struct wd_worker_rank {
    /* from the last heartbeat */
    int64_t free_pages;
    int running, waiting;
    int64_t queued_prefill_tokens;
    /* the router's own view since that heartbeat */
    int inflight;         /* requests routed here and not finished */
    int64_t pages_placed; /* pages the requests placed since the last heartbeat will take */
};

struct wd_worker {
    int is_used;
    uint32_t gen; /* bumped each time the slot is reused */
    enum wd_worker_role role;
    char name[WD_WORKER_NAME_MAX]; /* the instance id: stable across reconnects */
    unsigned char route_id[WD_WORKER_ID_MAX];
    size_t route_id_len;
    int n_dp;
    int page_size;                          /* tokens per KV page, from the fingerprint */
    struct wd_worker_kv kv;                 /* the rest of the KV geometry (zero: unknown) */
    char bootstrap[WD_WORKER_ENDPOINT_MAX]; /* prefill: where decode workers reach it */
    int64_t pages_per_rank;                 /* total KV pages per DP rank (0: unknown) */
    struct wd_worker_rank *ranks;           /* [n_dp] */
    double registered_at, last_seen;        /* seconds, monotonic */
    int is_draining;                        /* takes nothing new */
    int consecutive_failures;
    double cooled_until; /* not picked before this time */
    int64_t n_routed, n_failed;
    int inflight; /* sum over ranks */
};

/* A reference that goes stale when the worker is dropped. */
struct wd_worker_ref {
    int slot; /* -1: none */
    uint32_t gen;
};

struct wd_workers;

struct wd_worker_info {
    enum wd_worker_role role;
    const char *name; /* the instance id, non-empty */
    const unsigned char *route_id;
    size_t route_id_len;
    int n_dp;
    int page_size;
    int64_t pages_per_rank;
    const struct wd_worker_kv *kv; /* NULL: unknown */
    const char *bootstrap;         /* prefill: its bootstrap endpoint; NULL or "" otherwise */
};

enum wd_status wd_workers_create(struct wd_workers **w_p, struct wd_error *err);
void wd_workers_destroy(struct wd_workers *w);

/* Adds a worker or, for an instance id already known (a worker that registers again after a
 * reconnect), replaces its entry (its in-flight requests are the caller's to fail first:
 * see wd_workers_find_instance). Errors: WD_ERR_NOMEM when every slot is taken,
 * WD_ERR_INVALID for n_dp outside [1, WD_WORKER_MAX_DP], an empty or too long name or routing
 * id. */
enum wd_status wd_workers_add(struct wd_workers *w, const struct wd_worker_info *info, double now,
                              int *slot_p, struct wd_error *err);
void wd_workers_remove(struct wd_workers *w, int slot);

/* The registered worker that a new worker (instance id name, role, page size and KV
 * geometry) could not be paired with, so that a mismatched pair is refused at registration
 * and never found at the first request. A prefill worker must match every registered decode
 * worker and every other prefill worker (any of them may be paired with any decode worker);
 * a decode worker must match every registered prefill worker. Decode workers are not
 * compared with each other: while no prefill worker is registered they prefill their own
 * requests, as before disaggregation. The first worker of a role, when the other role has
 * none, is therefore accepted as it is and becomes the reference the other role's workers
 * are checked against, for as long as one worker of its role stays registered. A worker
 * registering again under its own instance id is not compared with its old entry. Returns
 * the slot and writes the difference (one line naming both workers) into why, or -1. */
int wd_workers_kv_conflict(const struct wd_workers *w, enum wd_worker_role role, const char *name,
                           int page_size, const struct wd_worker_kv *kv, char *why, size_t cap);

/* Slot of the worker with this instance id, or -1. */
int wd_workers_find_instance(const struct wd_workers *w, const char *name);
/* The worker a reference points at, or NULL when it is stale. */
struct wd_worker *wd_workers_get(struct wd_workers *w, struct wd_worker_ref ref);
struct wd_worker_ref wd_workers_ref(const struct wd_workers *w, int slot);
/* Slot access for iteration: NULL for an unused slot. slot in [0, WD_WORKERS_MAX). */
struct wd_worker *wd_workers_at(struct wd_workers *w, int slot);
const struct wd_worker *wd_workers_at_const(const struct wd_workers *w, int slot);
int wd_workers_count(const struct wd_workers *w, enum wd_worker_role role);

/* One pool's load, as the autoscalers see it through the router's wideep:router_pool_*
 * gauges: sums over every registered worker of a role (draining ones too: their requests
 * still run) of its ranks' last heartbeats. Free pages count what the router placed since. */
struct wd_pool_load {
    int n_workers, n_dp_ranks;
    int64_t running, waiting, queued_prefill_tokens;
    int64_t kv_free_pages, kv_total_pages; /* ranks whose total is known; free never < 0 */
};
void wd_workers_pool_load(const struct wd_workers *w, enum wd_worker_role role,
                          struct wd_pool_load *load_p);
/* The fraction of a pool's KV pages in use, 0..1 (0 while no total is known). */
double wd_pool_kv_usage(const struct wd_pool_load *load);

/* A heartbeat's loads for rank r (the router's pages_placed restarts from 0). */
void wd_workers_heartbeat(struct wd_workers *w, int slot, int rank, int64_t free_pages, int running,
                          int waiting, int64_t queued_prefill_tokens, double now);
void wd_workers_touch(struct wd_workers *w, int slot, const unsigned char *route_id, size_t len,
                      double now);

/* Bookkeeping of one request placed on / leaving (slot, rank). */
void wd_workers_placed(struct wd_workers *w, int slot, int rank, int64_t pages);
void wd_workers_left(struct wd_workers *w, int slot, int rank);

/* Outcome of a request on a worker: a success resets the failure streak; the fail_threshold-th
 * failure in a row cools the worker off until now + cooloff_secs (returns 1 when that happened). */
void wd_workers_success(struct wd_workers *w, int slot);
int wd_workers_failure(struct wd_workers *w, int slot, int fail_threshold, double cooloff_secs,
                       double now);

/* 1 when the worker can take a new request now (registered, not draining, not cooled off). */
int wd_worker_is_eligible(const struct wd_worker *wk, double now);

/* Load of a rank as policies compare it: the requests the router has there or the running +
 * waiting the worker last reported, whichever is larger (each lags the other: the heartbeat
 * misses what was just placed; the router misses other routers' requests). */
int64_t wd_worker_rank_load(const struct wd_worker_rank *r);
/* Free KV pages after what the router placed since the heartbeat (may be negative). */
int64_t wd_worker_rank_free_pages(const struct wd_worker_rank *r);

const char *wd_worker_role_name(enum wd_worker_role role);

#endif

/*
 * wd_workers: the router's registry of workers and their per-DP-rank load.
 *
 * A worker is one server instance (a decode worker today, a prefill worker next) that
 * registered over the ZeroMQ ROUTER socket. It is known by its instance id (a string,
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
    int page_size;                   /* tokens per KV page, from the fingerprint */
    int64_t pages_per_rank;          /* total KV pages per DP rank (0: unknown) */
    struct wd_worker_rank *ranks;    /* [n_dp] */
    double registered_at, last_seen; /* seconds, monotonic */
    int is_draining;                 /* takes nothing new */
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

/* Slot of the worker with this instance id, or -1. */
int wd_workers_find_instance(const struct wd_workers *w, const char *name);
/* The worker a reference points at, or NULL when it is stale. */
struct wd_worker *wd_workers_get(struct wd_workers *w, struct wd_worker_ref ref);
struct wd_worker_ref wd_workers_ref(const struct wd_workers *w, int slot);
/* Slot access for iteration: NULL for an unused slot. slot in [0, WD_WORKERS_MAX). */
struct wd_worker *wd_workers_at(struct wd_workers *w, int slot);
const struct wd_worker *wd_workers_at_const(const struct wd_workers *w, int slot);
int wd_workers_count(const struct wd_workers *w, enum wd_worker_role role);

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

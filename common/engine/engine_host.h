/*
 * wd_engine_host: the front-end side of the engine, what every driver (wideep-generate,
 * wideep-decode, wideep-prefill) holds in its parent process. It makes one link per
 * attention-DP group led from this node, forks the ranks through the launcher (each runs
 * wd_engine), keeps the launcher's reaping and rendezvous loop on a thread of its own, and
 * gives the driver a request-level API: submit commands to a DP rank, receive events, read
 * each DP rank's load, stop.
 *
 * It tracks every live request (id -> DP rank, deadline): abort needs only the id, and a
 * request still live at its deadline is aborted here, its final event carrying status
 * WD_ERR_TIMEOUT. This is where leases end, since schedulers read no clock.
 *
 * Threading: create in the process's main thread before any other thread exists (the
 * launcher forks), and keep that thread alive while ranks run (their parent-death signal
 * follows it). Every other call comes from one driver thread, which may be another one.
 */
#ifndef WD_ENGINE_HOST_H
#define WD_ENGINE_HOST_H

#include "common/engine/engine.h"
#include "common/util/clock.h"

struct wd_engine_host_config {
    struct wd_engine_config engine;
    size_t cmd_ring_bytes; /* per link; 0 = 64 MiB (a mapping: untouched pages cost nothing) */
    size_t ev_ring_bytes;  /* per link; 0 = 16 MiB */
};

/* An event as the driver sees it. ev->status is WD_ERR_TIMEOUT on the final event of a
 * request the host aborted at its deadline. extra: the ERROR message (ev->extra bytes,
 * not NUL-terminated) or the RESERVED page ids. */
typedef void (*wd_engine_host_event_fn)(void *ctx, const struct wd_engine_event *ev,
                                        const void *extra);

struct wd_engine_host;

/* Starts the ranks of this node. The config (and what it points to: layout, server args,
 * model path) must outlive the host. */
enum wd_status wd_engine_host_create(const struct wd_engine_host_config *cfg,
                                     struct wd_engine_host **h_p, struct wd_error *err);
/* Stops the ranks if they still run (stop flag, then signals), reaps them, frees all. */
void wd_engine_host_destroy(struct wd_engine_host *h);

/* Whether attention-DP rank dp takes requests from this host: on node 0 every DP rank
 * (those led from other nodes through their front-ends), on other nodes none (they relay). */
int wd_engine_host_has_dp(const struct wd_engine_host *h, int dp);
/* Every local DP rank finished start-up (model loaded, groups up). */
int wd_engine_host_ready(const struct wd_engine_host *h);

/* Queues a request on DP rank dp. deadline_ms: CLOCK_MONOTONIC milliseconds (wd_now_ms)
 * after which it is aborted, 0 = none. params->id must be nonzero and not live.
 * WD_ERR_INVALID for a bad dp or id; commands wait in the host when a ring is full. */
enum wd_status wd_engine_host_add(struct wd_engine_host *h, int dp,
                                  const struct wd_request_params *params, int64_t deadline_ms,
                                  struct wd_error *err);
/* Decode: reserve pages for a request (its RESERVED event lists them); the deadline is the
 * lease. */
enum wd_status wd_engine_host_reserve(struct wd_engine_host *h, int dp,
                                      const struct wd_request_params *params, int64_t deadline_ms,
                                      struct wd_error *err);
/* Decode: the reserved request's KV has landed. */
enum wd_status wd_engine_host_activate(struct wd_engine_host *h, uint64_t id, int32_t first_token,
                                       float first_logprob, struct wd_error *err);
/* Prefill: the KV transfer of a prefilled request is flushed. */
enum wd_status wd_engine_host_release(struct wd_engine_host *h, uint64_t id, struct wd_error *err);
/* Aborts a live request (its final event follows). WD_ERR_NOT_FOUND when not live. */
enum wd_status wd_engine_host_abort(struct wd_engine_host *h, uint64_t id);
/* Live requests (queued, running, reserved or held). */
int wd_engine_host_n_live(const struct wd_engine_host *h);

/* Moves queued commands into the rings, expires deadlines, and hands every pending event
 * to fn, waiting up to timeout_ms for one when none is there. Returns WD_ERR_PEER (message
 * from the launcher, naming the rank) once the ranks have failed, else WD_OK. *done_p
 * (may be NULL) is set when every rank has exited. */
enum wd_status wd_engine_host_poll(struct wd_engine_host *h, int timeout_ms,
                                   wd_engine_host_event_fn fn, void *ctx, int *done_p,
                                   struct wd_error *err);
/* Fds that become readable when poll has work (events, the ranks ending), for a driver
 * that waits on other fds too (zmq_poll). Returns how many were written to fds. */
int wd_engine_host_fds(const struct wd_engine_host *h, int *fds, int cap);
/* DP rank dp's load as its leader last published it (zeros until ready). */
void wd_engine_host_stats(const struct wd_engine_host *h, int dp, struct wd_engine_stats *st);
/* No more requests will come: the ranks leave once every queued one is done (offline runs).
 * Other nodes' hosts follow node 0's finish; on them this does nothing. */
void wd_engine_host_finish(struct wd_engine_host *h);
/* Asks every rank to leave at its next step boundary (live requests are aborted). */
void wd_engine_host_stop(struct wd_engine_host *h);

#endif

/*
 * wd_worker: the serving front-end of a worker server (wideep-decode today, wideep-prefill
 * next), the parent process of its ranks. It owns the engine host (the ranks run wd_engine),
 * one ZeroMQ DEALER to the router, and the probe/metrics endpoint. It registers with the
 * router (compatibility fingerprint, per-DP-rank capacity), heartbeats each DP rank's load,
 * registers again by itself when the router restarts, turns GenerateRequests into engine
 * requests on the DP rank the router chose, streams each request's tokens back as
 * TokenChunks, aborts on Abort and at the request's deadline, and drains on SIGTERM
 * (takes nothing new, tells the router, finishes what is in flight up to the drain timeout,
 * aborts the rest, frees everything, exits 0).
 *
 * Network I/O runs on this process's main thread, never on a forward thread; the ranks
 * are reached through the engine host's shared-memory links.
 */
#ifndef WD_SERVER_WORKER_H
#define WD_SERVER_WORKER_H

#include "common/server/worker_args.h"

enum wd_worker_role { WD_WORKER_DECODE = 1, WD_WORKER_PREFILL = 2 };

struct wd_worker;

/* Loads the model's config, builds the layout, forks the ranks (so call it from the main
 * thread before any other thread exists), then connects to the router and starts the
 * metrics endpoint. Errors name the flag or file at fault. */
enum wd_status wd_worker_create(const struct wd_worker_args *args, enum wd_worker_role role,
                                struct wd_worker **w_p, struct wd_error *err);
/* Serves until drained (SIGTERM/SIGINT), refused by the router, or failed. Returns the
 * process exit code: 0 after a drain, 1 after a failure (logged). */
int wd_worker_run(struct wd_worker *w);
/* Stops the ranks, closes sockets, frees everything. NULL-safe. */
void wd_worker_destroy(struct wd_worker *w);

#endif

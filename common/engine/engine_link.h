/*
 * wd_engine_link: the channel between a server's front-end process and the leader rank of
 * one attention-DP group on the same node. Made by the front-end before it forks the ranks
 * (one MAP_SHARED anonymous mapping: nothing in /dev/shm to leak), it holds a command ring
 * (front-end -> rank), an event ring (rank -> front-end), the rank's published load
 * (a seqlock'd stats block the heartbeats read) and two flags (stop, exit when idle).
 * Each direction has an eventfd so the reader sleeps in poll() instead of spinning, and the
 * front-end can put the event fds into its own poll set (ZeroMQ's zmq_poll takes raw fds).
 *
 * Producer/consumer roles are fixed: only the front-end pushes commands and reads events,
 * only the leader rank pops commands, pushes events and publishes stats.
 */
#ifndef WD_ENGINE_LINK_H
#define WD_ENGINE_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "common/engine/engine_msg.h"
#include "common/engine/ring.h"

/* A DP rank's load as its leader last published it. */
struct wd_engine_stats {
    int32_t ready; /* the rank finished start-up (model loaded, groups up) */
    int32_t running, waiting, reserved, prefilled;
    int32_t free_pages, total_pages;
    int64_t queued_prefill_tokens;
    uint64_t steps;    /* engine loop iterations */
    uint64_t forwards; /* forward passes run */
};

struct wd_engine_link {
    void *mem;
    size_t bytes;
    struct wd_engine_link_shm *shm;
    struct wd_ring *cmd, *ev;
    int cmd_efd, ev_efd;
};

/* Maps a link with rings of cmd_cap and ev_cap bytes (powers of two, >= 4096). */
enum wd_status wd_engine_link_create(size_t cmd_cap, size_t ev_cap, struct wd_engine_link **l_p,
                                     struct wd_error *err);
void wd_engine_link_destroy(struct wd_engine_link *l); /* NULL-safe */

/* ---- front-end side ---- */
/* Queues a command (prompt may be NULL when c->n_prompt is 0). WD_ERR_NOMEM when the ring
 * is full right now; WD_ERR_INVALID when the record can never fit. Call wake after a batch. */
enum wd_status wd_engine_link_push_cmd(struct wd_engine_link *l, const struct wd_engine_cmd *c,
                                       const int32_t *prompt);
void wd_engine_link_wake(struct wd_engine_link *l);
/* The next event record into buf (cap bytes); returns its length, 0 when none. */
size_t wd_engine_link_pop_event(struct wd_engine_link *l, void *buf, size_t cap);
/* Length of the next event, 0 when none. */
size_t wd_engine_link_peek_event(const struct wd_engine_link *l);
/* The fd that becomes readable when events arrive; wd_engine_link_clear_event_fd resets it
 * (call before draining, so an event pushed meanwhile re-arms it). */
int wd_engine_link_event_fd(const struct wd_engine_link *l);
void wd_engine_link_clear_event_fd(struct wd_engine_link *l);
void wd_engine_link_set_stop(struct wd_engine_link *l);
void wd_engine_link_set_exit_when_idle(struct wd_engine_link *l);
void wd_engine_link_read_stats(const struct wd_engine_link *l, struct wd_engine_stats *st);

/* ---- rank side ---- */
/* Sleeps until a command is queued, a flag is set, or timeout_ms passed (0: no wait). */
void wd_engine_link_wait_cmd(struct wd_engine_link *l, int timeout_ms);
/* The next command record into buf; returns its length, 0 when none. */
size_t wd_engine_link_pop_cmd(struct wd_engine_link *l, void *buf, size_t cap);
size_t wd_engine_link_peek_cmd(const struct wd_engine_link *l);
/* Queues an event (extra bytes follow the head); waits while the ring is full (the
 * front-end drains it continuously). WD_ERR_INVALID when it can never fit. */
enum wd_status wd_engine_link_push_event(struct wd_engine_link *l, const struct wd_engine_event *e,
                                         const void *extra, size_t extra_len);
/* Wakes the front-end after a batch of events. */
void wd_engine_link_notify(struct wd_engine_link *l);
int wd_engine_link_stop_requested(const struct wd_engine_link *l);
int wd_engine_link_exit_when_idle(const struct wd_engine_link *l);
void wd_engine_link_publish_stats(struct wd_engine_link *l, const struct wd_engine_stats *st);

#endif

/*
 * wd_kv_transfer: one attention rank's end of the prefill -> decode KV cache transfer over
 * UCX RMA. The object owns a UCX context and worker and registers the rank's KV region
 * (a wd_kv_pool's one mapping) once. Its descriptor (bytes, versioned, validated on
 * receipt) is what a remote writer needs: worker address, rkey, region base, the full
 * geometry and which KV heads the rank holds. A writer connects to a remote descriptor
 * once per (prefill rank, decode rank) pair and keeps the connection (a wd_kv_peer); per
 * request it puts each layer's pages with ucp_put_nbx as the layer finishes, then flushes
 * the peer. Flush completes only when the remote memory holds the data, so a KvDone sent
 * after it is never early. No notification goes over UCX: the control plane says "done".
 *
 * Both sides must progress their worker: over TCP (and any transport without hardware
 * RMA) UCX emulates a put with active messages that the TARGET applies when it progresses,
 * and endpoint wire-up needs the target too. Either set is_progress_thread (the object runs
 * a thread that progresses the worker, sleeping on the worker's event fd when idle), or
 * call wd_kv_transfer_progress often. A decode rank's object is passive: it only makes its
 * descriptor and progresses.
 *
 * Threading: every function locks the object, so the progress thread and one caller
 * thread may use it together; puts, flushes and connects of one object are meant to come
 * from one thread. Serving errors (a bad descriptor, an incompatible or dead peer) return a
 * status and fail only that pair; nothing here exits or hangs: every wait is bounded and a
 * peer's endpoint error turns every later call on it into WD_ERR_PEER naming the peer.
 */
#ifndef WD_NET_KV_TRANSFER_H
#define WD_NET_KV_TRANSFER_H

#include <stddef.h>
#include <stdint.h>

#include "common/kv/kv_pool.h"
#include "common/util/status.h"

/* Bumped when the descriptor bytes change meaning; a descriptor of another version is
 * refused with both versions in the message. */
#define WD_KV_DESC_VERSION 1u

enum wd_kv_kind {
    WD_KV_GQA = 1, /* K and V rows, n_heads KV heads per row */
    WD_KV_MLA = 2, /* one latent row per token shared by every head (v_row 0) */
};

/*
 * Which of the model's KV heads one attention rank's pool holds.
 *
 * GQA follows SGLang's attention-TP split: with n_kv_heads >= attn_tp each rank holds
 * n_kv_heads / attn_tp consecutive heads; with fewer KV heads than ranks each head is
 * replicated on attn_tp / n_kv_heads consecutive ranks, and each rank holds one. A DP
 * attention rank (attn_tp 1) holds every head. MLA: the latent is one "head" [0, 1) that
 * every attention-TP rank holds whole (attn_tp replicas).
 *
 * replica numbers the ranks that hold the same range (0 .. n_replicas-1). Writer rule: a
 * local rank writes head h into a remote rank when both hold h and
 * local.replica == remote.replica % local.n_replicas, so every head of every remote rank
 * is written by exactly one local rank and the replicas share the work (prefill tp2 MLA
 * into decode tp2: prefill rank 0 fills decode rank 0, prefill rank 1 decode rank 1).
 */
struct wd_kv_heads {
    enum wd_kv_kind kind;
    int n_total;    /* the model's KV heads (GQA); 1 for MLA */
    int begin, end; /* [begin, end) held by this rank; equals the pool's n_heads */
    int replica;    /* which copy of this range this rank is */
    int n_replicas; /* attention-TP ranks holding the same range */
};

/* The heads attention-TP rank attn_tp_rank of attn_tp_size holds. n_kv_heads: the model's
 * KV heads (ignored for MLA). WD_ERR_INVALID when neither of n_kv_heads and attn_tp_size
 * divides the other (the model loader refuses such a layout too). */
enum wd_status wd_kv_heads_for_rank(enum wd_kv_kind kind, int n_kv_heads, int attn_tp_size,
                                    int attn_tp_rank, struct wd_kv_heads *heads_p,
                                    struct wd_error *err);

/* The heads a rank holding `local` writes into a rank holding `remote` under the writer
 * rule above: returns their count (0: this pair moves nothing, no need to connect) and
 * writes [*begin_p, *end_p) when it is not 0. */
int wd_kv_heads_overlap(const struct wd_kv_heads *local, const struct wd_kv_heads *remote,
                        int *begin_p, int *end_p);

/* A received descriptor, parsed and validated. worker_addr and rkey point into the buffer
 * that was parsed (borrowed: valid while it is). */
struct wd_kv_desc {
    uint32_t version;
    uint64_t id;               /* random per wd_kv_transfer: a restarted peer has a new one */
    uint64_t host;             /* hash of the boot id and pid namespace of the remote process */
    uint64_t pid;              /* its pid: a writer on the same host checks that it lives */
    struct wd_kv_geometry geo; /* the remote pool's geometry */
    struct wd_kv_heads heads;  /* the heads the remote pool holds */
    uint64_t base;             /* the remote region's address in its own process */
    const void *worker_addr;   /* [worker_addr_len] ucp worker address */
    size_t worker_addr_len;
    const void *rkey; /* [rkey_len] packed remote key of the region */
    size_t rkey_len;
};

/* Parses and validates descriptor bytes: magic, version, lengths, a geometry whose every
 * (layer, page, slot, head) row lies inside the region, a head range that matches it.
 * WD_ERR_FORMAT (or WD_ERR_UNSUPPORTED for another version) with the reason; *desc_p is
 * written only on success. Pure: no UCX, no allocation. */
enum wd_status wd_kv_desc_parse(const void *buf, size_t len, struct wd_kv_desc *desc_p,
                                struct wd_error *err);

struct wd_kv_transfer_config {
    void *region;              /* borrowed: the pool's mapping (pool->region), outlives t */
    struct wd_kv_geometry geo; /* its geometry (pool->geo), copied */
    struct wd_kv_heads heads;  /* which KV heads it holds (wd_kv_heads_for_rank) */
    const char *name;          /* this rank in messages, e.g. "prefill rank 1"; copied */
    int is_progress_thread;    /* progress the worker from a thread the object owns */
    int connect_timeout_ms;    /* bound on connect's reachability check; 0 = 10000 */
    int op_timeout_ms;         /* bound on a put waiting for room in UCX's queue; 0 = 30000 */
    size_t stage_bytes;        /* packing buffer of a peer whose rows hold fewer heads than
                                  ours (see wd_kv_transfer_put); 0 = 4 MiB */
};

struct wd_kv_transfer;
/* One UCX connection to a remote rank's KV region (one per pair, kept across requests). */
struct wd_kv_peer;

/* Creates the UCX context (UCX_TLS etc. from the environment) and worker, registers the
 * region, packs the descriptor. WD_ERR_INVALID for an inconsistent config, WD_ERR_IO or
 * WD_ERR_NOMEM when UCX refuses. */
enum wd_status wd_kv_transfer_create(const struct wd_kv_transfer_config *cfg,
                                     struct wd_kv_transfer **t_p, struct wd_error *err);
/* Disconnects every peer still connected, stops the thread, unregisters. NULL-safe. */
void wd_kv_transfer_destroy(struct wd_kv_transfer *t);

/* This rank's descriptor: bytes to send to writers (borrowed, lives as long as t). */
const void *wd_kv_transfer_descriptor(const struct wd_kv_transfer *t, size_t *len_p);
/* The id carried in the descriptor. */
uint64_t wd_kv_transfer_id(const struct wd_kv_transfer *t);

/* Progresses the worker until it has nothing more to do right now (needed only without
 * is_progress_thread). */
void wd_kv_transfer_progress(struct wd_kv_transfer *t);

/* Connects to the remote rank that sent desc (name is the remote in messages, e.g.
 * "decode d0 rank 1"; copied). Checks the pair first: kind, dtype, page size, layer count,
 * model KV heads, per-head K and V widths must match (WD_ERR_INVALID naming both values),
 * and the layouts must be the pool's [page][slot][head][dim] (WD_ERR_UNSUPPORTED).
 * WD_ERR_FORMAT for a malformed descriptor, WD_ERR_PEER when UCX cannot reach it. A pair
 * that moves no head (wd_kv_heads_overlap 0) connects and every put on it is a no-op. */
enum wd_status wd_kv_transfer_connect(struct wd_kv_transfer *t, const void *desc, size_t len,
                                      const char *name, struct wd_kv_peer **peer_p,
                                      struct wd_error *err);
/* Closes the endpoint (forced: queued puts are dropped) and frees p. NULL-safe. */
void wd_kv_transfer_disconnect(struct wd_kv_peer *p);

/* One request's pages on both sides and the tokens to move. Token i of the request lives
 * at slot i % page_size of page i / page_size in both page lists. */
struct wd_kv_span {
    const int32_t *local_pages;  /* [n_pages] this rank's pages of the request */
    const int32_t *remote_pages; /* [n_pages] the remote rank's pages, same order */
    int n_pages;
    int tok_begin, tok_end; /* [tok_begin, tok_end) <= n_pages * page_size */
};

/*
 * Puts the span's tokens of one layer (K, and V for GQA) for the heads of the pair into the
 * remote pages, non-blocking: it waits only when UCX already holds thousands of queued puts
 * for p (or the stage is full), then for room, at most op_timeout_ms. Only the span's slots
 * move: a partly filled last page (or the pages of one prefill chunk) costs only its
 * tokens.
 *
 * Puts per layer, from the pool's layout (a slot's heads side by side; UCX RMA takes one
 * contiguous range per put):
 *  - every head of both rows (same head range on both sides): page ids consecutive on
 *    both sides merge into one put per run;
 *  - the remote holds exactly the moved heads, this rank more (prefill tp1 into decode
 *    tp2): the slices are packed into the peer's stage buffer (a memcpy) and a run of
 *    consecutive remote pages is one put;
 *  - the remote holds heads this rank does not (prefill tp2 into a DP-attention decode
 *    rank): the destination is strided, so each slot is its own put of n_heads * head_dim
 *    elements: one UCX operation per token, layer and K/V.
 * The local pages (and the stage) must stay unchanged until a flush of p returns.
 *
 * WD_ERR_INVALID for a page id out of either pool's range or a bad span or layer,
 * WD_ERR_PEER once the peer failed.
 */
enum wd_status wd_kv_transfer_put(struct wd_kv_peer *p, const struct wd_kv_span *span, int layer,
                                  struct wd_error *err);

/* Waits until every put issued to p so far is in the remote memory, at most timeout_ms.
 * WD_ERR_PEER (naming the peer) when the peer failed or fails meanwhile, WD_ERR_TIMEOUT
 * when it is alive but the data did not land in time (for example it stopped
 * progressing). */
enum wd_status wd_kv_transfer_flush(struct wd_kv_peer *p, int timeout_ms, struct wd_error *err);

/* The same without blocking: begin starts a flush of every put issued so far and returns
 * its ticket; test progresses once and sets *is_done_p to 1 when the ticket's puts are all
 * in the remote memory (0 while not). WD_ERR_PEER as above. */
enum wd_status wd_kv_transfer_flush_begin(struct wd_kv_peer *p, uint64_t *ticket_p,
                                          struct wd_error *err);
enum wd_status wd_kv_transfer_flush_test(struct wd_kv_peer *p, uint64_t ticket, int *is_done_p,
                                         struct wd_error *err);

struct wd_kv_peer_stats {
    uint64_t n_bytes; /* payload bytes put since connect */
    uint64_t n_puts;  /* UCX put operations issued */
};
void wd_kv_transfer_peer_stats(const struct wd_kv_peer *p, struct wd_kv_peer_stats *stats_p);
/* 1 once the peer's endpoint reported an error (every later call fails with WD_ERR_PEER). */
int wd_kv_transfer_peer_is_failed(const struct wd_kv_peer *p);
/* The remote's parsed descriptor (its pointers are not valid: the bytes are gone). */
const struct wd_kv_desc *wd_kv_transfer_peer_desc(const struct wd_kv_peer *p);

#endif

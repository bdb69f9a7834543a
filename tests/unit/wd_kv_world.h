/*
 * A KV transfer world for tests: prefill ranks and decode ranks as separate processes, each
 * with its own wd_kv_pool and wd_kv_transfer, descriptors exchanged through the parent over
 * SOCK_SEQPACKET socketpairs (no shared memory between them: nothing assumes one host).
 *
 * Payload: every element of a prefill K/V row is a bit pattern of the pool's dtype that
 * says where it belongs: elements 0..5 are request, layer, token / 128, token % 128, the
 * model's head index and K/V (small integers, exact in fp32 and bf16), the rest a hash of
 * all of them and the element index (a finite value with the hash as its bits). Decode
 * ranks start with a byte pattern over their whole region and check, after the transfer,
 * that the region equals the pattern with exactly the expected rows written where their
 * page table says: a misplaced, missing or extra byte anywhere fails, with its place.
 */
#ifndef WD_TEST_KV_WORLD_H
#define WD_TEST_KV_WORLD_H

#include <stdint.h>
#include <sys/types.h>

#include "common/net/kv_transfer.h"

#define KV_WORLD_MAX_REQ 8

struct kv_world {
    enum wd_kv_kind kind;
    enum wd_dtype dtype;
    int n_layers, page_size, n_pages;
    int head_dim;   /* GQA: K and V head dim; MLA: the latent width */
    int n_kv_heads; /* GQA: the model's KV heads */
    int prefill_tp, decode_tp;
    int n_requests;
    int n_tokens[KV_WORLD_MAX_REQ];
    int chunk;             /* > 0: each request is put in chunks of this many tokens */
    int is_scattered;      /* page ids shuffled on both sides (else consecutive) */
    int is_decode_polling; /* decode progresses from its loop instead of a thread */
    int decode_page_size;  /* != 0: decode's pool uses another page size (refused pair) */
    int kill_after_layer;  /* >= 0: decode rank 0 is killed after this layer of request 0 */
    int flush_timeout_ms;
    size_t stage_bytes; /* prefill's packing buffer per peer (0: the default) */
};

struct kv_world_result {
    int status;      /* worst wd_status of any rank (0 = all ok) */
    char msg[512];   /* the first failure */
    uint64_t n_puts; /* over every prefill rank and peer */
    uint64_t n_bytes;
    double after_kill_ms; /* kill test: from the kill to the prefill's error */
    int n_checked_ranks;  /* decode ranks whose region matched */
};

/* Spawns one rank process talking over fd (kept open across exec); returns its pid or -1.
 * NULL spawner: fork and run kv_world_child. */
typedef pid_t (*kv_world_spawn_fn)(void *arg, int is_decode, int rank, int fd);

/* Runs the world to the end (every process reaped). 0 when every rank succeeded and every
 * decode region is exactly as expected (or, in the kill test, the prefill failed with
 * WD_ERR_PEER within the timeout); res says what happened either way. */
int kv_world_run(const struct kv_world *w, kv_world_spawn_fn spawn, void *spawn_arg,
                 struct kv_world_result *res);

/* The body of one rank process; returns its exit code. */
int kv_world_child(const struct kv_world *w, int is_decode, int rank, int fd);

#endif

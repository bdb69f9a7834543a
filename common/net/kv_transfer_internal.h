/* Between the kv_transfer files: the object and peer structs (kv_transfer.c owns them), the
 * peer's liveness and flush steps, the descriptor encoder (kv_transfer_desc.c). */
#ifndef WD_NET_KV_TRANSFER_INTERNAL_H
#define WD_NET_KV_TRANSFER_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "common/comm/ucx.h"
#include "common/net/kv_transfer.h"

struct flush_req {
    ucs_status_ptr_t req;
    uint64_t ticket;
};

struct wd_kv_peer {
    struct wd_kv_transfer *t;
    struct wd_kv_peer *next; /* in t->peers or t->zombies */
    char name[96];
    struct wd_kv_desc desc; /* the remote's, pointers cleared */
    ucp_ep_h ep;
    ucp_rkey_h rkey;
    int is_unguarded, is_same_host;
    int is_failed;
    ucs_status_t failure;
    char failure_msg[128]; /* set when we decided (dead pid), else empty */
    int n_heads, h0;       /* heads moved: [h0, h0 + n_heads) */
    int is_whole;          /* every head of both rows: page runs merge */
    int is_packed;         /* the remote row is exactly the moved heads, ours holds more */
    uint8_t *stage;        /* [stage_bytes] packed slices waiting for their puts (is_packed) */
    size_t stage_bytes, stage_used;
    int n_stage_inflight; /* queued puts reading from stage */
    int n_inflight;       /* queued put requests */
    uint64_t flush_issued, flush_done;
    struct flush_req *flushes; /* [n_flushes] pending */
    int n_flushes, cap_flushes;
    int64_t next_live_ms;
    struct wd_kv_peer_stats stats;
};

struct wd_kv_transfer {
    char scope[112]; /* "kv <name>" */
    void *region;
    struct wd_kv_geometry geo;
    struct wd_kv_heads heads;
    int connect_timeout_ms, op_timeout_ms;
    size_t stage_bytes;
    struct wd_ucx *u;
    ucp_mem_h memh;
    uint8_t *desc;
    size_t desc_len;
    uint64_t id, host;
    pthread_mutex_t mu;
    pthread_t thread;
    int is_thread, is_stopping, stop_fd;
    struct wd_kv_peer *peers, *zombies;
};

/* Monotonic milliseconds. */
int64_t wd_kv_now_ms(void);
/* Records the first failure of p (later ones keep it). */
void wd_kv_peer_mark_failed(struct wd_kv_peer *p, ucs_status_t s);
/* WD_ERR_PEER naming the peer once it failed (its endpoint, a request, or its pid gone). */
enum wd_status wd_kv_peer_check(struct wd_kv_peer *p, struct wd_error *err);
/* Issues an endpoint flush as ticket ++flush_issued (lock held). */
enum wd_status wd_kv_peer_flush_issue(struct wd_kv_peer *p, uint64_t *ticket_p,
                                      struct wd_error *err);
/* Until ticket is done, the peer fails or timeout_ms passes (lock held). */
enum wd_status wd_kv_peer_flush_wait(struct wd_kv_peer *p, uint64_t ticket, int timeout_ms,
                                     struct wd_error *err);

/* Bytes of a descriptor carrying a worker address and an rkey of these lengths. */
size_t wd_kv_desc_bytes(size_t addr_len, size_t rkey_len);
/* Writes d (its worker address and rkey included) as wd_kv_desc_bytes bytes at out. */
void wd_kv_desc_encode(const struct wd_kv_desc *d, uint8_t *out);

#endif

/*
 * wd_msg: the control-plane messages between the router and the workers, as our own
 * structs, and their codec to and from one protobuf frame (proto/wideep.proto). No other
 * module sees a protobuf type.
 *
 * Who sends what:
 *   Register        worker -> router  on connect: role, capacity, compatibility fingerprint
 *   RegisterAck     router -> worker  accepted: worker id, heartbeat interval and timeout
 *   RegisterRefuse  router -> worker  incompatible or refused, with the reason
 *   Heartbeat       worker -> router  every interval: load per DP rank, draining flag
 *   Drain           worker -> router  "I am draining, send nothing new";
 *                   router -> worker  "finish what you have, take nothing new"
 *   GenerateRequest router -> worker  one request (token ids, sampling, limits, DP rank)
 *   TokenChunk      worker -> router  the next tokens of a request, the last one finishes it
 *   Abort           router -> worker  stop a request (client gone, deadline), free its pages
 *   Error           either way        a request failed (request_id) or a frame was refused (0)
 *
 * Registration and liveness: a worker sends Register when its DEALER connects, and again
 * whenever no RegisterAck came within its retry interval or the router answers with
 * Error{request_id 0, code WD_ERR_NOT_FOUND}, which means "I do not know you" (so a
 * restarted router gets every worker back without restarting them). After the ack the
 * worker sends a Heartbeat every heartbeat_interval_ms; the router drops a worker (and
 * fails its requests) when nothing came from it for heartbeat_timeout_ms. Registering
 * again with a known instance id replaces the old registration (its requests fail).
 * RegisterRefuse is final for that configuration: the worker logs the reason, no retry.
 *
 * Ownership: strings are fixed arrays (NUL-terminated, caps below), so a message is a
 * value. Arrays are pointer + count. wd_msg_encode only reads them (borrowed).
 * wd_msg_decode puts every array of the message into one malloc'd block, m->storage, which
 * wd_msg_free releases; a message built by the caller leaves storage NULL and keeps owning
 * its arrays (wd_msg_free then frees nothing). Threading: pure functions, no shared state.
 */
#ifndef WD_NET_MSG_H
#define WD_NET_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "common/util/status.h"

/* Bumped whenever a change cannot be skipped by an older peer (new required meaning,
 * changed ranges). Both sides refuse a frame of another version, naming both. */
#define WD_MSG_PROTOCOL_VERSION 1u

/* Largest frame on the wire: a 1M-token prompt is ~5 MiB packed, so 64 MiB leaves room
 * while bounding what a peer can make the decoder allocate. zsock sets ZMQ_MAXMSGSIZE to
 * it, so libzmq drops a larger frame before it is buffered. */
#define WD_MSG_MAX_FRAME ((size_t)64 << 20)

/* String capacities, NUL included. */
#define WD_MSG_ID_CAP 128   /* instance ids: printable, no spaces (also the ZeroMQ routing id) */
#define WD_MSG_NAME_CAP 256 /* model names, endpoints: printable UTF-8 */
#define WD_MSG_TAG_CAP 32   /* dtypes, a2a backend, deepep mode: [A-Za-z0-9_.-]+ */
#define WD_MSG_TEXT_CAP 512 /* reasons, error messages: one line of UTF-8 (tab allowed) */

#define WD_MSG_MAX_DP_RANKS 1024
#define WD_MSG_MAX_STOP_IDS 1024
#define WD_MSG_MAX_TOP_LOGPROBS 20
/* Token ids, counts and ranks are int32 in wideep: the wire refuses values >= 2^31. */
#define WD_MSG_MAX_INT INT32_MAX

enum wd_msg_kind {
    WD_MSG_NONE = 0, /* wd_msg_init's zero state; never encoded */
    WD_MSG_REGISTER,
    WD_MSG_REGISTER_ACK,
    WD_MSG_REGISTER_REFUSE,
    WD_MSG_HEARTBEAT,
    WD_MSG_DRAIN,
    WD_MSG_GENERATE,
    WD_MSG_TOKEN_CHUNK,
    WD_MSG_ABORT,
    WD_MSG_ERROR,
};

enum wd_msg_role { WD_MSG_ROLE_DECODE = 1, WD_MSG_ROLE_PREFILL = 2 };

enum wd_msg_kv_kind {
    WD_MSG_KV_GQA = 1, /* K and V rows per KV head */
    WD_MSG_KV_MLA = 2, /* one latent row per token, no V */
};

enum wd_msg_finish {
    WD_MSG_FINISH_NONE = 0,   /* more chunks follow */
    WD_MSG_FINISH_LENGTH = 1, /* max_new_tokens or the context length reached */
    WD_MSG_FINISH_STOP = 2,   /* EOS or a stop id: matched_stop */
    WD_MSG_FINISH_ABORT = 3,  /* Abort, deadline, draining or failing worker */
};

/* Per-token KV geometry of one layer. */
struct wd_msg_kv_layout {
    enum wd_msg_kv_kind kind;
    int32_t n_layers;   /* layers holding KV, > 0 */
    int32_t n_kv_heads; /* GQA: the model's KV heads; MLA: 1 */
    int32_t k_head_dim; /* GQA: K head dim; MLA: kv_lora_rank + qk_rope_head_dim */
    int32_t v_head_dim; /* GQA: V head dim (> 0); MLA: 0 */
};

/* The parallel layout (common/layout/layout.h); every size >= 1,
 * attn_tp * attn_dp == tp and moe_ep * moe_tp == tp. */
struct wd_msg_parallel {
    int32_t tp, dp, ep;
    int32_t attn_tp, attn_dp;
    int32_t moe_ep, moe_tp;
    int32_t nnodes;
    char a2a_backend[WD_MSG_TAG_CAP]; /* "none" | "deepep" */
    char deepep_mode[WD_MSG_TAG_CAP]; /* "auto" | "normal" | "low_latency" */
};

/* What must match across a deployment; the router compares it field by field. */
struct wd_msg_fingerprint {
    uint32_t protocol_version;         /* WD_MSG_PROTOCOL_VERSION (checked) */
    char model[WD_MSG_NAME_CAP];       /* non-empty */
    uint64_t config_hash;              /* XXH3-64 of config.json's bytes */
    char weight_dtype[WD_MSG_TAG_CAP]; /* e.g. "bf16" */
    char kv_dtype[WD_MSG_TAG_CAP];     /* --kv-cache-dtype after "auto" is resolved */
    int32_t page_size;                 /* tokens per KV page, > 0 */
    struct wd_msg_kv_layout kv;
    struct wd_msg_parallel parallel;
};

struct wd_msg_dp_capacity {
    int32_t n_pages;     /* KV pages of the rank's pool, > 0 */
    int32_t max_running; /* most requests in its running batch, > 0 */
};

struct wd_msg_register {
    enum wd_msg_role role;
    char instance_id[WD_MSG_ID_CAP];          /* non-empty */
    int32_t n_dp_ranks;                       /* 1..WD_MSG_MAX_DP_RANKS */
    struct wd_msg_dp_capacity *dp;            /* [n_dp_ranks] */
    int32_t context_len;                      /* > 0 */
    int32_t metrics_port;                     /* 0: none; else 1..65535 */
    char bootstrap_endpoint[WD_MSG_NAME_CAP]; /* prefill: non-empty; decode: empty */
    struct wd_msg_fingerprint fp;
};

struct wd_msg_register_ack {
    uint32_t worker_id;
    uint32_t heartbeat_interval_ms; /* > 0 */
    uint32_t heartbeat_timeout_ms;  /* > heartbeat_interval_ms */
};

struct wd_msg_register_refuse {
    char reason[WD_MSG_TEXT_CAP]; /* non-empty */
};

struct wd_msg_dp_load {
    int32_t n_free_pages; /* <= n_pages */
    int32_t n_pages;
    int32_t n_running;
    int32_t n_waiting;
    int64_t n_queued_prefill_tokens;
};

struct wd_msg_heartbeat {
    char instance_id[WD_MSG_ID_CAP]; /* non-empty */
    uint64_t seq;                    /* +1 per heartbeat */
    int is_draining;
    int32_t n_dp_ranks;        /* 1..WD_MSG_MAX_DP_RANKS */
    struct wd_msg_dp_load *dp; /* [n_dp_ranks] */
};

struct wd_msg_drain {
    char instance_id[WD_MSG_ID_CAP]; /* worker -> router: who drains; router -> worker: "" */
};

struct wd_msg_sampling {
    float temperature; /* >= 0, finite; 0: greedy */
    float top_p;       /* (0, 1]; 1: off */
    int32_t top_k;     /* >= -1; -1 or 0: off */
    float min_p;       /* [0, 1]; 0: off */
    uint64_t seed;     /* used when has_seed */
    int has_seed;
};

struct wd_msg_generate {
    uint64_t request_id; /* router-assigned, nonzero */
    int32_t n_input_ids; /* >= 1 */
    int32_t *input_ids;  /* [n_input_ids], each 0..2^31-1 */
    struct wd_msg_sampling sampling;
    int32_t n_stop_ids;     /* 0..WD_MSG_MAX_STOP_IDS */
    int32_t *stop_ids;      /* [n_stop_ids] */
    int32_t max_new_tokens; /* > 0 */
    int is_ignore_eos;
    uint32_t deadline_ms; /* from receipt (hosts' clocks are never compared); 0: none */
    int32_t dp_rank;      /* >= 0; the worker checks it against its own DP size */
    int is_return_logprobs;
    int32_t n_top_logprobs; /* 0..WD_MSG_MAX_TOP_LOGPROBS; > 0 needs is_return_logprobs */
};

struct wd_msg_token_chunk {
    uint64_t request_id; /* nonzero */
    int32_t n_tokens;    /* may be 0 only when finish is not NONE */
    int32_t *token_ids;  /* [n_tokens] */
    float *logprobs;     /* [n_tokens] or NULL (not asked); NaN and +inf refused */
    int32_t n_top;       /* 0..WD_MSG_MAX_TOP_LOGPROBS; > 0 needs logprobs */
    int32_t *top_ids;    /* [n_tokens, n_top] or NULL when n_top is 0 */
    float *top_logprobs; /* [n_tokens, n_top] or NULL when n_top is 0 */
    enum wd_msg_finish finish;
    int32_t n_prompt_tokens; /* >= 0 */
    int32_t matched_stop;    /* finish STOP: the token id matched; otherwise -1 */
};

struct wd_msg_abort {
    uint64_t request_id; /* nonzero */
};

struct wd_msg_error {
    uint64_t request_id;           /* 0: about the connection or a refused frame */
    enum wd_status code;           /* not WD_OK */
    char message[WD_MSG_TEXT_CAP]; /* one line */
};

struct wd_msg {
    enum wd_msg_kind kind;
    union {
        struct wd_msg_register reg;
        struct wd_msg_register_ack reg_ack;
        struct wd_msg_register_refuse reg_refuse;
        struct wd_msg_heartbeat heartbeat;
        struct wd_msg_drain drain;
        struct wd_msg_generate generate;
        struct wd_msg_token_chunk chunk;
        struct wd_msg_abort abort;
        struct wd_msg_error error;
    };
    void *storage; /* decode's one block holding every array; NULL when the caller owns them */
};

/* Zeroes m and sets kind plus the defaults that are not zero: the fingerprint's
 * protocol version, sampling top_p 1 and temperature 1, matched_stop -1. */
void wd_msg_init(struct wd_msg *m, enum wd_msg_kind kind);

/* Checks every rule noted on the fields above (ranges, counts, caps, string charsets,
 * cross-field rules). WD_ERR_INVALID with one line naming the field, e.g.
 * "generate.n_top_logprobs 21 exceeds 20". Encode calls it, so nothing we send is refused
 * by a peer of the same version; decode calls it too (reporting WD_ERR_FORMAT). */
enum wd_status wd_msg_validate(const struct wd_msg *m, struct wd_error *err);

/* Validates m and serializes it into one frame: *buf_p (malloc'd, the caller frees it
 * with free()) of *len_p bytes, both written only on success. WD_ERR_INVALID when m breaks
 * a rule; WD_ERR_NOMEM when allocation fails. */
enum wd_status wd_msg_encode(const struct wd_msg *m, void **buf_p, size_t *len_p,
                             struct wd_error *err);

/* Parses one frame of len bytes into m, which owns the result (free with wd_msg_free).
 * Refuses, with one line naming the cause: a frame over WD_MSG_MAX_FRAME or that is not
 * protobuf, or that would need more memory to unpack than a frame of its size can
 * legitimately need (WD_ERR_FORMAT); another protocol version (WD_ERR_UNSUPPORTED, both
 * versions named); no body or a body this version does not know, a missing required
 * field, or any rule of wd_msg_validate (WD_ERR_FORMAT). On error m is left as
 * wd_msg_init(m, WD_MSG_NONE) with nothing allocated. Never aborts on any input. */
enum wd_status wd_msg_decode(const void *buf, size_t len, struct wd_msg *m, struct wd_error *err);

/* Frees what wd_msg_decode allocated (m->storage) and resets m to WD_MSG_NONE. Safe on a
 * caller-built message (frees nothing of the caller's) and on NULL. */
void wd_msg_free(struct wd_msg *m);

/* The kind of a frame's body, read from its top-level fields only: nothing else is decoded
 * or checked, and a frame of another protocol version answers too (body field numbers are
 * never reused). WD_MSG_NONE when no body is found before the bytes stop parsing. zsock
 * uses it to never answer a refused Error with an Error (two peers of different versions
 * would otherwise bounce Errors forever). */
enum wd_msg_kind wd_msg_peek_kind(const void *buf, size_t len);

/* The fingerprint's config_hash of a config.json given as its bytes: XXH3-64, seed 0. Every
 * worker hashes the file as read from disk, so two copies of one checkpoint agree. */
uint64_t wd_msg_config_hash(const void *data, size_t len);

/* "register", "heartbeat", ... for logs; "none" for WD_MSG_NONE, "unknown" otherwise. */
const char *wd_msg_kind_str(enum wd_msg_kind kind);

#endif

/* The engine's front-end side: links, the launcher thread, request tracking, event fan-in. */
#include "common/engine/engine_host.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/engine/engine_relay.h"
#include "common/util/log.h"
#include "common/util/u64map.h"

/* A command that did not fit its ring yet (FIFO per DP rank, so order is kept). */
struct pending_cmd {
    struct pending_cmd *next;
    struct wd_engine_cmd cmd;
    int32_t prompt[]; /* [cmd.n_prompt] */
};

/* A live request as the host tracks it. */
struct live_req {
    uint64_t id;
    int dp;
    int64_t deadline_ms; /* 0 = none */
    int is_expired;      /* aborted here at its deadline */
};

struct wd_engine_host {
    struct wd_engine_host_config cfg;
    struct wd_engine_rank_ctx rank_ctx;
    struct wd_engine_link **links; /* [attn_dp_size], NULL where the leader is on another node */
    int *leader_node;              /* [attn_dp_size] node of each DP group's leader */
    struct wd_engine_relay *relay; /* multi-node instances */
    struct wd_engine_stats *remote_stats; /* [attn_dp_size] node 0: what other nodes sent */
    int is_root;                          /* node 0: the control endpoint */
    int finish_requested;                 /* no more commands: ranks leave once idle */
    uint8_t *finish_dp;                   /* [attn_dp_size] exit flag set on the local link */
    uint8_t *finish_node;                 /* [nnodes] node 0: finish sent to that node */
    int64_t next_stats_ms;
    struct pending_cmd **pend_head, **pend_tail; /* [attn_dp_size] */
    struct wd_u64map live;                       /* id -> struct live_req */
    struct wd_launcher *launcher;
    pthread_t thread;
    int has_thread;
    int done_efd; /* readable once the launcher thread is done */
    int is_done;  /* written by the launcher thread (atomic) */
    int abandon;  /* destroy asks the launcher thread to give up (atomic) */
    enum wd_status final_status;
    struct wd_error final_err;
    int64_t next_expiry_check;
    uint8_t *ev_buf; /* one event record */
    size_t ev_cap;
};

static int n_dp(const struct wd_engine_host *h)
{
    return h->cfg.engine.layout->attn_dp_size;
}

/* The launcher's loop, on its own thread: serves the rendezvous, reaps ranks, tears the
 * instance down on a failure. Waits in slices so destroy can abandon it. */
static void *launcher_thread(void *arg)
{
    struct wd_engine_host *h = arg;
    struct wd_error err = {0};
    enum wd_status st;
    for (;;) {
        st = wd_launcher_wait(h->launcher, 100, &err);
        if (st != WD_ERR_TIMEOUT || __atomic_load_n(&h->abandon, __ATOMIC_ACQUIRE))
            break;
    }
    if (st != WD_ERR_TIMEOUT) {
        h->final_status = st;
        h->final_err = err;
        __atomic_store_n(&h->is_done, 1, __ATOMIC_RELEASE);
        uint64_t one = 1;
        while (write(h->done_efd, &one, sizeof(one)) < 0 && errno == EINTR)
            ;
    }
    return NULL;
}

enum wd_status wd_engine_host_create(const struct wd_engine_host_config *cfg,
                                     struct wd_engine_host **h_p, struct wd_error *err)
{
    const struct wd_layout *l = cfg->engine.layout;
    struct wd_engine_host *h = calloc(1, sizeof(*h));
    if (!h)
        return wd_error_set(err, WD_ERR_NOMEM, "engine host: out of memory");
    h->cfg = *cfg;
    h->done_efd = -1;
    int dp = l->attn_dp_size;
    h->links = calloc((size_t)dp, sizeof(*h->links));
    h->pend_head = calloc((size_t)dp, sizeof(*h->pend_head));
    h->pend_tail = calloc((size_t)dp, sizeof(*h->pend_tail));
    h->leader_node = calloc((size_t)dp, sizeof(int));
    h->remote_stats = calloc((size_t)dp, sizeof(*h->remote_stats));
    h->finish_dp = calloc((size_t)dp, 1);
    h->finish_node = calloc((size_t)l->nnodes, 1);
    h->is_root = l->node_rank == 0;
    h->ev_cap = sizeof(struct wd_engine_event) + 65536;
    h->ev_buf = malloc(h->ev_cap);
    enum wd_status st = h->links && h->pend_head && h->pend_tail && h->ev_buf && h->leader_node &&
                                h->remote_stats && h->finish_dp && h->finish_node
                            ? wd_u64map_init(&h->live, 1024, err)
                            : wd_error_set(err, WD_ERR_NOMEM, "engine host: out of memory");
    h->done_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (st == WD_OK && h->done_efd < 0)
        st = wd_error_set(err, WD_ERR_IO, "engine host: eventfd: %s", strerror(errno));
    size_t cmd_cap = cfg->cmd_ring_bytes ? cfg->cmd_ring_bytes : (size_t)64 << 20;
    size_t ev_cap = cfg->ev_ring_bytes ? cfg->ev_ring_bytes : (size_t)16 << 20;
    for (int d = 0; st == WD_OK && d < dp; d++) {
        int leader = d * l->attn_tp_size;
        h->leader_node[d] = l->ranks[leader].node_rank;
        if (h->leader_node[d] == l->node_rank)
            st = wd_engine_link_create(cmd_cap, ev_cap, &h->links[d], err);
    }
    if (st == WD_OK) {
        h->rank_ctx.cfg = &h->cfg.engine;
        h->rank_ctx.links = h->links;
        struct wd_launch_config lc;
        wd_launch_config_init(&lc);
        wd_launch_config_from_layout(&lc, l);
        if (cfg->engine.timeout_ms > 0)
            lc.timeout_ms = cfg->engine.timeout_ms;
        const char *token = cfg->engine.sargs ? cfg->engine.sargs->dist_init_token : NULL;
        if (token && snprintf(lc.dist_init_token, sizeof(lc.dist_init_token), "%s", token) >=
                         (int)sizeof(lc.dist_init_token))
            st = wd_error_set(err, WD_ERR_INVALID, "--dist-init-token is longer than %zu bytes",
                              sizeof(lc.dist_init_token) - 1);
        if (st == WD_OK)
            st = wd_launcher_start(&lc, wd_engine_rank_main, &h->rank_ctx, &h->launcher, err);
    }
    /* ZeroMQ starts I/O threads: only after the fork, whose children must not inherit a
     * process state taken mid-operation by another thread (locks held, buffers half-done). */
    if (st == WD_OK && l->nnodes > 1)
        st = wd_engine_relay_create(l, &h->relay, err);
    if (st == WD_OK) {
        if (pthread_create(&h->thread, NULL, launcher_thread, h) != 0)
            st = wd_error_set(err, WD_ERR_IO, "engine host: cannot start the launcher thread");
        else
            h->has_thread = 1;
    }
    if (st != WD_OK) {
        wd_engine_host_destroy(h);
        return st;
    }
    *h_p = h;
    return WD_OK;
}

void wd_engine_host_destroy(struct wd_engine_host *h)
{
    if (!h)
        return;
    if (h->has_thread) {
        if (!__atomic_load_n(&h->is_done, __ATOMIC_ACQUIRE)) {
            wd_engine_host_stop(h);
            /* Give the ranks a step boundary to leave by themselves. */
            for (int i = 0; i < 100 && !__atomic_load_n(&h->is_done, __ATOMIC_ACQUIRE); i++) {
                struct pollfd p = {.fd = h->done_efd, .events = POLLIN};
                poll(&p, 1, 50);
            }
        }
        __atomic_store_n(&h->abandon, 1, __ATOMIC_RELEASE);
        pthread_join(h->thread, NULL);
    }
    /* Signals, reaps and unlinks whatever is left. */
    wd_launcher_destroy(h->launcher);
    for (int d = 0; h->links && d < n_dp(h); d++) {
        wd_engine_link_destroy(h->links[d]);
        while (h->pend_head && h->pend_head[d]) {
            struct pending_cmd *p = h->pend_head[d];
            h->pend_head[d] = p->next;
            free(p);
        }
    }
    wd_engine_relay_destroy(h->relay);
    for (size_t i = 0; h->live.slots && i < h->live.cap; i++)
        free(h->live.slots[i].value);
    wd_u64map_cleanup(&h->live);
    if (h->done_efd >= 0)
        close(h->done_efd);
    free(h->links);
    free(h->leader_node);
    free(h->remote_stats);
    free(h->finish_dp);
    free(h->finish_node);
    free(h->pend_head);
    free(h->pend_tail);
    free(h->ev_buf);
    free(h);
}

int wd_engine_host_has_dp(const struct wd_engine_host *h, int dp)
{
    if (dp < 0 || dp >= n_dp(h))
        return 0;
    /* Node 0 reaches every DP rank; other nodes' front-ends only relay. */
    return h->is_root && (h->links[dp] != NULL || h->relay != NULL);
}

int wd_engine_host_ready(const struct wd_engine_host *h)
{
    for (int d = 0; d < n_dp(h); d++) {
        struct wd_engine_stats st;
        wd_engine_host_stats(h, d, &st);
        if ((h->links[d] || h->is_root) && !st.ready)
            return 0;
    }
    return 1;
}

/* Puts one command on its way to DP rank d: its ring here, or the relay to its node. */
static enum wd_status push_cmd(struct wd_engine_host *h, int d, const struct wd_engine_cmd *c,
                               const int32_t *prompt)
{
    if (h->links[d])
        return wd_engine_link_push_cmd(h->links[d], c, prompt);
    size_t n = c->kind == WD_ENGINE_CMD_ADD || c->kind == WD_ENGINE_CMD_RESERVE
                   ? (size_t)c->n_prompt * sizeof(int32_t)
                   : 0;
    return wd_engine_relay_send(h->relay, h->leader_node[d], WD_RELAY_CMD, (uint32_t)d, c,
                                sizeof(*c), prompt, n);
}

/* Wakes every local leader: an idle DP rank must join the others' next forward promptly
 * (lockstep), not after its idle wait. */
static void wake_all(struct wd_engine_host *h)
{
    for (int j = 0; j < n_dp(h); j++)
        if (h->links[j])
            wd_engine_link_wake(h->links[j]);
}

/* Pushes what waits for DP rank d, in order, until its ring (or the relay) is full. */
static void flush_pending(struct wd_engine_host *h, int d)
{
    int pushed = 0;
    while (h->pend_head[d]) {
        struct pending_cmd *p = h->pend_head[d];
        if (push_cmd(h, d, &p->cmd, p->prompt) != WD_OK)
            break;
        h->pend_head[d] = p->next;
        if (!h->pend_head[d])
            h->pend_tail[d] = NULL;
        free(p);
        pushed = 1;
    }
    if (pushed)
        wake_all(h);
}

/* Sends a command to DP rank d: straight into the ring when nothing waits before it. */
static enum wd_status send_cmd(struct wd_engine_host *h, int d, const struct wd_engine_cmd *c,
                               const int32_t *prompt, struct wd_error *err)
{
    if (!h->pend_head[d]) {
        enum wd_status st = push_cmd(h, d, c, prompt);
        if (st == WD_OK) {
            wake_all(h);
            return WD_OK;
        }
        if (st != WD_ERR_NOMEM)
            return wd_error_set(err, WD_ERR_INVALID,
                                "engine host: a command of %u bytes can "
                                "never fit the command ring",
                                c->bytes);
    }
    size_t n =
        c->kind == WD_ENGINE_CMD_ADD || c->kind == WD_ENGINE_CMD_RESERVE ? (size_t)c->n_prompt : 0;
    struct pending_cmd *p = malloc(sizeof(*p) + n * sizeof(int32_t));
    if (!p)
        return wd_error_set(err, WD_ERR_NOMEM, "engine host: out of memory");
    p->next = NULL;
    p->cmd = *c;
    if (n)
        memcpy(p->prompt, prompt, n * sizeof(int32_t));
    if (h->pend_tail[d])
        h->pend_tail[d]->next = p;
    else
        h->pend_head[d] = p;
    h->pend_tail[d] = p;
    return WD_OK;
}

static enum wd_status submit_request(struct wd_engine_host *h, enum wd_engine_cmd_kind kind, int dp,
                                     const struct wd_request_params *p, int64_t deadline_ms,
                                     struct wd_error *err)
{
    if (!wd_engine_host_has_dp(h, dp))
        return wd_error_set(err, WD_ERR_INVALID, "engine host: DP rank %d is not served here", dp);
    if (p->id == 0 || wd_u64map_get(&h->live, p->id))
        return wd_error_set(err, WD_ERR_INVALID, "engine host: request id %llu is %s",
                            (unsigned long long)p->id, p->id ? "already live" : "zero");
    if (p->n_prompt < 0 || p->n_prompt > WD_ENGINE_MAX_PROMPT)
        return wd_error_set(err, WD_ERR_INVALID, "engine host: prompt of %d tokens", p->n_prompt);
    struct live_req *lr = calloc(1, sizeof(*lr));
    if (!lr || wd_u64map_put(&h->live, p->id, lr) != WD_OK) {
        free(lr);
        return wd_error_set(err, WD_ERR_NOMEM, "engine host: out of memory");
    }
    lr->id = p->id;
    lr->dp = dp;
    lr->deadline_ms = deadline_ms;
    struct wd_engine_cmd c;
    wd_engine_cmd_from_params(&c, kind, p);
    enum wd_status st = send_cmd(h, dp, &c, p->prompt, err);
    if (st != WD_OK)
        free(wd_u64map_remove(&h->live, p->id));
    return st;
}

enum wd_status wd_engine_host_add(struct wd_engine_host *h, int dp,
                                  const struct wd_request_params *params, int64_t deadline_ms,
                                  struct wd_error *err)
{
    return submit_request(h, WD_ENGINE_CMD_ADD, dp, params, deadline_ms, err);
}

enum wd_status wd_engine_host_reserve(struct wd_engine_host *h, int dp,
                                      const struct wd_request_params *params, int64_t deadline_ms,
                                      struct wd_error *err)
{
    return submit_request(h, WD_ENGINE_CMD_RESERVE, dp, params, deadline_ms, err);
}

/* A command about a live request (no prompt). */
static enum wd_status send_simple(struct wd_engine_host *h, enum wd_engine_cmd_kind kind,
                                  uint64_t id, int32_t token, float logprob, struct wd_error *err)
{
    struct live_req *lr = wd_u64map_get(&h->live, id);
    if (!lr)
        return wd_error_set(err, WD_ERR_NOT_FOUND, "engine host: no live request %llu",
                            (unsigned long long)id);
    struct wd_engine_cmd c = {
        .kind = kind, .bytes = sizeof(c), .id = id, .first_token = token, .first_logprob = logprob};
    return send_cmd(h, lr->dp, &c, NULL, err);
}

enum wd_status wd_engine_host_activate(struct wd_engine_host *h, uint64_t id, int32_t first_token,
                                       float first_logprob, struct wd_error *err)
{
    return send_simple(h, WD_ENGINE_CMD_ACTIVATE, id, first_token, first_logprob, err);
}

enum wd_status wd_engine_host_release(struct wd_engine_host *h, uint64_t id, struct wd_error *err)
{
    enum wd_status st = send_simple(h, WD_ENGINE_CMD_RELEASE, id, 0, 0.0f, err);
    /* A released request has no event left to come: it stops being live here. */
    if (st == WD_OK)
        free(wd_u64map_remove(&h->live, id));
    return st;
}

enum wd_status wd_engine_host_abort(struct wd_engine_host *h, uint64_t id)
{
    return send_simple(h, WD_ENGINE_CMD_ABORT, id, 0, 0.0f, NULL);
}

int wd_engine_host_n_live(const struct wd_engine_host *h)
{
    return (int)h->live.n;
}

/* Aborts live requests whose deadline passed (checked every few milliseconds). */
static void expire(struct wd_engine_host *h)
{
    int64_t now = wd_now_ms();
    if (now < h->next_expiry_check)
        return;
    h->next_expiry_check = now + 5;
    for (size_t i = 0; i < h->live.cap; i++) {
        struct live_req *lr = h->live.slots[i].value;
        if (!lr || lr->is_expired || lr->deadline_ms == 0 || now < lr->deadline_ms)
            continue;
        lr->is_expired = 1;
        struct wd_engine_cmd c = {.kind = WD_ENGINE_CMD_ABORT, .bytes = sizeof(c), .id = lr->id};
        struct wd_error err;
        if (send_cmd(h, lr->dp, &c, NULL, &err) != WD_OK)
            wd_log(WD_LOG_ERROR, "host", "deadline abort of request %llu: %s",
                   (unsigned long long)lr->id, err.msg);
    }
}

/* Hands one checked event to fn; forgets the request on its final event. */
static void deliver(struct wd_engine_host *h, struct wd_engine_event *ev, const void *extra,
                    wd_engine_host_event_fn fn, void *ctx)
{
    int is_final = ev->kind == WD_ENGINE_EV_ERROR ||
                   (ev->kind == WD_ENGINE_EV_TOKEN && ev->finish != WD_FINISH_NONE);
    struct live_req *lr = wd_u64map_get(&h->live, ev->id);
    if (lr && lr->is_expired && is_final && ev->finish == WD_FINISH_ABORT)
        ev->status = WD_ERR_TIMEOUT;
    if (is_final)
        free(wd_u64map_remove(&h->live, ev->id));
    if (fn)
        fn(ctx, ev, extra);
}

/* Node k: sends an event of a local DP rank on to node 0. */
static void forward_event(struct wd_engine_host *h, int d, const uint8_t *rec, size_t len)
{
    if (wd_engine_relay_send(h->relay, 0, WD_RELAY_EVENT, (uint32_t)d, rec, len, NULL, 0) != WD_OK)
        wd_log(WD_LOG_ERROR, "host", "could not relay an event of DP rank %d to node 0", d);
}

static int drain_events(struct wd_engine_host *h, wd_engine_host_event_fn fn, void *ctx)
{
    int n = 0;
    struct wd_error err = {0};
    for (int d = 0; d < n_dp(h); d++) {
        struct wd_engine_link *link = h->links[d];
        if (!link)
            continue;
        wd_engine_link_clear_event_fd(link);
        for (;;) {
            size_t len = wd_engine_link_peek_event(link);
            if (len == 0)
                break;
            if (len > h->ev_cap) {
                uint8_t *bigger = realloc(h->ev_buf, len);
                if (!bigger) {
                    wd_log(WD_LOG_ERROR, "host", "out of memory for an event of %zu bytes", len);
                    break;
                }
                h->ev_buf = bigger;
                h->ev_cap = len;
            }
            wd_engine_link_pop_event(link, h->ev_buf, h->ev_cap);
            if (wd_engine_event_check(h->ev_buf, len, &err) != WD_OK) {
                wd_log(WD_LOG_ERROR, "host", "dropped an event from DP rank %d: %s", d, err.msg);
                continue;
            }
            n++;
            if (!h->is_root) {
                forward_event(h, d, h->ev_buf, len);
                continue;
            }
            struct wd_engine_event ev;
            memcpy(&ev, h->ev_buf, sizeof(ev));
            deliver(h, &ev, h->ev_buf + sizeof(ev), fn, ctx);
        }
    }
    return n;
}

/* Frames from the other nodes: node 0 gets events and load, node k gets commands. */
static int drain_relay(struct wd_engine_host *h, wd_engine_host_event_fn fn, void *ctx)
{
    uint32_t type, d;
    int node, n = 0;
    const uint8_t *p;
    size_t len;
    struct wd_error err = {0};
    while (h->relay && wd_engine_relay_recv(h->relay, &type, &d, &node, &p, &len)) {
        n++;
        if (h->is_root && type == WD_RELAY_EVENT && h->leader_node[d] == node) {
            if (wd_engine_event_check(p, len, &err) != WD_OK) {
                wd_log(WD_LOG_ERROR, "host", "relayed event from node %d: %s", node, err.msg);
                continue;
            }
            /* Aligned copies: the frame's payload has no alignment guarantee. */
            if (len > h->ev_cap) {
                uint8_t *bigger = realloc(h->ev_buf, len);
                if (!bigger)
                    continue;
                h->ev_buf = bigger;
                h->ev_cap = len;
            }
            memcpy(h->ev_buf, p, len);
            struct wd_engine_event ev;
            memcpy(&ev, h->ev_buf, sizeof(ev));
            deliver(h, &ev, h->ev_buf + sizeof(ev), fn, ctx);
        } else if (h->is_root && type == WD_RELAY_STATS && h->leader_node[d] == node &&
                   len == sizeof(struct wd_engine_stats)) {
            memcpy(&h->remote_stats[d], p, len);
        } else if (!h->is_root && type == WD_RELAY_CMD && h->links[d]) {
            if (wd_engine_cmd_check(p, len, &err) != WD_OK) {
                wd_log(WD_LOG_ERROR, "host", "relayed command: %s", err.msg);
                continue;
            }
            struct wd_engine_cmd c;
            memcpy(&c, p, sizeof(c));
            int32_t *prompt = NULL;
            if (len > sizeof(c)) {
                prompt = malloc(len - sizeof(c));
                if (!prompt)
                    continue;
                memcpy(prompt, p + sizeof(c), len - sizeof(c));
            }
            if (send_cmd(h, (int)d, &c, prompt, &err) != WD_OK)
                wd_log(WD_LOG_ERROR, "host", "relayed command: %s", err.msg);
            free(prompt);
        } else if (!h->is_root && type == WD_RELAY_FINISH) {
            h->finish_requested = 1;
        } else if (type != WD_RELAY_HELLO) {
            wd_log(WD_LOG_ERROR, "host", "dropped a relay frame of type %u for DP rank %u", type,
                   d);
        }
    }
    return n;
}

/* Node k: its DP ranks' load for node 0's heartbeats, every 20 ms. */
static void send_stats(struct wd_engine_host *h)
{
    int64_t now = wd_now_ms();
    if (h->is_root || !h->relay || now < h->next_stats_ms)
        return;
    h->next_stats_ms = now + 20;
    for (int d = 0; d < n_dp(h); d++) {
        if (!h->links[d])
            continue;
        struct wd_engine_stats st;
        wd_engine_link_read_stats(h->links[d], &st);
        wd_engine_relay_send(h->relay, 0, WD_RELAY_STATS, (uint32_t)d, &st, sizeof(st), NULL, 0);
    }
}

/* After finish: each local leader gets its exit-when-idle flag once everything meant for it
 * is in its ring (it reads the flag before the ring, so nothing queued earlier is lost);
 * node 0 tells the other nodes the same once their commands are all sent (the relay keeps
 * order). */
static void apply_finish(struct wd_engine_host *h)
{
    if (!h->finish_requested)
        return;
    const struct wd_layout *l = h->cfg.engine.layout;
    for (int d = 0; d < n_dp(h); d++)
        if (h->links[d] && !h->pend_head[d] && !h->finish_dp[d]) {
            wd_engine_link_set_exit_when_idle(h->links[d]);
            h->finish_dp[d] = 1;
        }
    if (!h->is_root || !h->relay)
        return;
    for (int node = 1; node < l->nnodes; node++) {
        if (h->finish_node[node])
            continue;
        int busy = 0;
        for (int d = 0; d < n_dp(h); d++)
            busy |= h->leader_node[d] == node && h->pend_head[d] != NULL;
        if (!busy && wd_engine_relay_node_ready(h->relay, node) &&
            wd_engine_relay_send(h->relay, node, WD_RELAY_FINISH, 0, NULL, 0, NULL, 0) == WD_OK)
            h->finish_node[node] = 1;
    }
}

void wd_engine_host_finish(struct wd_engine_host *h)
{
    /* Other nodes follow node 0's finish, which comes after every command it relays. */
    if (h->is_root)
        h->finish_requested = 1;
}

enum wd_status wd_engine_host_poll(struct wd_engine_host *h, int timeout_ms,
                                   wd_engine_host_event_fn fn, void *ctx, int *done_p,
                                   struct wd_error *err)
{
    drain_relay(h, fn, ctx);
    for (int d = 0; d < n_dp(h); d++)
        if (h->pend_head[d] && (h->links[d] || h->relay))
            flush_pending(h, d);
    apply_finish(h);
    send_stats(h);
    expire(h);
    /* Done first, then drain: a rank pushes its last events before it exits, so once done
     * is seen every event is already in a ring. */
    int is_done = __atomic_load_n(&h->is_done, __ATOMIC_ACQUIRE);
    int n = drain_events(h, fn, ctx);
    if (n == 0 && !is_done && timeout_ms != 0) {
        int fds[WD_MODEL_MAX_DP + 2];
        struct pollfd p[WD_MODEL_MAX_DP + 2];
        int k = wd_engine_host_fds(h, fds, WD_MODEL_MAX_DP + 2);
        for (int i = 0; i < k; i++)
            p[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
        /* Wake in time for the next deadline check and for queued commands. */
        int wait = timeout_ms < 0 || timeout_ms > 5 ? 5 : timeout_ms;
        poll(p, (nfds_t)k, wait);
        is_done = __atomic_load_n(&h->is_done, __ATOMIC_ACQUIRE);
        drain_relay(h, fn, ctx);
        drain_events(h, fn, ctx);
    }
    if (done_p)
        *done_p = is_done;
    if (is_done && h->final_status != WD_OK) {
        if (err)
            *err = h->final_err;
        return h->final_status == WD_ERR_TIMEOUT ? WD_ERR_PEER : h->final_status;
    }
    return WD_OK;
}

int wd_engine_host_fds(const struct wd_engine_host *h, int *fds, int cap)
{
    int k = 0;
    if (k < cap)
        fds[k++] = h->done_efd;
    if (h->relay && k < cap)
        fds[k++] = wd_engine_relay_fd(h->relay);
    for (int d = 0; d < n_dp(h) && k < cap; d++)
        if (h->links[d])
            fds[k++] = wd_engine_link_event_fd(h->links[d]);
    return k;
}

void wd_engine_host_stats(const struct wd_engine_host *h, int dp, struct wd_engine_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (dp < 0 || dp >= n_dp(h))
        return;
    if (h->links[dp])
        wd_engine_link_read_stats(h->links[dp], st);
    else if (h->is_root)
        *st = h->remote_stats[dp];
}

void wd_engine_host_stop(struct wd_engine_host *h)
{
    for (int d = 0; d < n_dp(h); d++)
        if (h->links[d])
            wd_engine_link_set_stop(h->links[d]);
}

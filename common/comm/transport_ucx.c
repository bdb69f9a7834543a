/*
 * UCX executor. Every operation waits for its request to complete locally before
 * returning (so the caller may reuse its source buffer, as with a memcpy), progressing the
 * worker meanwhile; a signal first flushes the endpoint when puts went out since the last
 * flush, which is what orders the add after them at the target (a fence would only order
 * issue, and over emulated transports that is not the same as arrival). Endpoints use
 * UCP_ERR_HANDLING_MODE_PEER so a vanished peer fails requests instead of hanging them,
 * and are closed with the force flag after the group's teardown barrier.
 *
 * Blob a rank publishes: u64 window address, u32 worker-address length, u32 rkey length,
 * worker address, packed rkey (little-endian integers).
 */
#include "common/comm/transport_ucx.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucp/api/ucp.h>

#include "common/util/log.h"

struct wd_ucx {
    ucp_context_h ctx;
    ucp_worker_h worker;
};

struct ucx_peer {
    ucp_ep_h ep;
    ucp_rkey_h rkey;
    uint64_t base;    /* peer's window address in its process */
    int is_dirty;     /* puts since the last flush */
    int is_failed;    /* the endpoint reported an error */
    int is_unguarded; /* created without peer-failure handling: no forced close */
    ucs_status_t failure;
};

struct ucx_impl {
    struct wd_peers peers;
    struct wd_ucx *u;
    ucp_mem_h memh;
    int owns_window;
    int op_timeout_ms;
    struct ucx_peer *peer; /* [n_ranks] */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The one converter from a UCX status to ours: lost peers are WD_ERR_PEER. */
static enum wd_status ucx_error(struct wd_error *err, ucs_status_t s, const char *group,
                                const char *what, int rank)
{
    enum wd_status st = WD_ERR_IO;
    if (s == UCS_ERR_CONNECTION_RESET || s == UCS_ERR_ENDPOINT_TIMEOUT ||
        s == UCS_ERR_UNREACHABLE || s == UCS_ERR_CANCELED)
        st = WD_ERR_PEER;
    if (rank >= 0)
        return wd_error_set(err, st, "%s: ucx %s to rank %d: %s", group, what, rank,
                            ucs_status_string(s));
    return wd_error_set(err, st, "%s: ucx %s: %s", group, what, ucs_status_string(s));
}

enum wd_status wd_ucx_create(struct wd_ucx **u_p, struct wd_error *err)
{
    struct wd_ucx *u = calloc(1, sizeof(*u));
    if (!u)
        return wd_error_set(err, WD_ERR_NOMEM, "ucx: out of memory");
    ucp_config_t *config;
    ucs_status_t s = ucp_config_read(NULL, NULL, &config);
    if (s != UCS_OK) {
        free(u);
        return ucx_error(err, s, "ucx", "read config", -1);
    }
    ucp_params_t p = {.field_mask = UCP_PARAM_FIELD_FEATURES,
                      .features = UCP_FEATURE_RMA | UCP_FEATURE_AMO64};
    s = ucp_init(&p, config, &u->ctx);
    ucp_config_release(config);
    if (s != UCS_OK) {
        free(u);
        return ucx_error(err, s, "ucx", "init", -1);
    }
    ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                              .thread_mode = UCS_THREAD_MODE_SINGLE};
    s = ucp_worker_create(u->ctx, &wp, &u->worker);
    if (s != UCS_OK) {
        ucp_cleanup(u->ctx);
        free(u);
        return ucx_error(err, s, "ucx", "create worker", -1);
    }
    *u_p = u;
    return WD_OK;
}

void wd_ucx_destroy(struct wd_ucx *u)
{
    if (!u)
        return;
    ucp_worker_destroy(u->worker);
    ucp_cleanup(u->ctx);
    free(u);
}

void wd_ucx_progress(struct wd_ucx *u)
{
    while (ucp_worker_progress(u->worker)) {
    }
}

static void progress_cb(void *arg)
{
    wd_ucx_progress(arg);
}

/* Progresses until req completes or timeout_ms passes (or the peer is known dead); frees
 * req either way. NULL req = completed at once. */
static enum wd_status wait_req(struct wd_ucx *u, const struct wd_peers *peers, struct ucx_peer *pp,
                               int peer, ucs_status_ptr_t req, const char *what, int timeout_ms,
                               struct wd_error *err)
{
    int grank = peer >= 0 ? wd_peers_global(peers, peer) : -1;
    if (req == NULL)
        return WD_OK;
    if (UCS_PTR_IS_ERR(req))
        return ucx_error(err, UCS_PTR_STATUS(req), peers->name, what, grank);
    int64_t deadline = now_ms() + timeout_ms;
    enum wd_status st = WD_OK;
    for (unsigned iter = 0;; iter++) {
        ucp_worker_progress(u->worker);
        ucs_status_t s = ucp_request_check_status(req);
        if (s != UCS_INPROGRESS) {
            ucp_request_free(req);
            return s == UCS_OK ? WD_OK : ucx_error(err, s, peers->name, what, grank);
        }
        if (iter % 64 != 63)
            continue;
        if (pp && pp->is_failed) {
            st = ucx_error(err, pp->failure, peers->name, what, grank);
            break;
        }
        if (peer >= 0 && (st = wd_peers_check(peers, peer, err)) != WD_OK)
            break;
        if (now_ms() >= deadline) {
            st = grank >= 0 ? wd_error_set(err, WD_ERR_TIMEOUT,
                                           "%s: ucx %s to rank %d not done within %d ms",
                                           peers->name, what, grank, timeout_ms)
                            : wd_error_set(err, WD_ERR_TIMEOUT, "%s: ucx %s not done within %d ms",
                                           peers->name, what, timeout_ms);
            break;
        }
        sched_yield();
    }
    ucp_request_cancel(u->worker, req);
    for (int i = 0; i < 1000 && ucp_request_check_status(req) == UCS_INPROGRESS; i++)
        ucp_worker_progress(u->worker);
    ucp_request_free(req); /* released by UCX on completion if still in flight */
    return st;
}

enum wd_status wd_ucx_flush(struct wd_ucx *u, int timeout_ms, struct wd_error *err)
{
    ucp_request_param_t prm = {0};
    struct wd_peers none = {.name = "ucx", .n_ranks = 0};
    return wait_req(u, &none, NULL, -1, ucp_worker_flush_nbx(u->worker, &prm), "flush", timeout_ms,
                    err);
}

static struct ucx_impl *impl(const struct wd_transport *t)
{
    return t->impl;
}

static enum wd_status check_op(struct wd_transport *t, int peer, size_t off, size_t len,
                               struct wd_error *err)
{
    struct ucx_impl *x = impl(t);
    if (off > t->window_bytes || len > t->window_bytes - off)
        return wd_error_set(err, WD_ERR_INVALID,
                            "%s: range [%zu, +%zu) outside the %zu-byte window", x->peers.name, off,
                            len, t->window_bytes);
    WD_CHECK(wd_peers_check(&x->peers, peer, err));
    struct ucx_peer *pp = &x->peer[peer];
    if (!pp->ep)
        return wd_error_set(err, WD_ERR_INVALID, "%s: rank %d is not reachable over ucx",
                            x->peers.name, wd_peers_global(&x->peers, peer));
    if (pp->is_failed)
        return ucx_error(err, pp->failure, x->peers.name, "endpoint",
                         wd_peers_global(&x->peers, peer));
    return WD_OK;
}

static enum wd_status ucx_put(struct wd_transport *t, int peer, size_t dst_off, const void *src,
                              size_t len, struct wd_error *err)
{
    struct ucx_impl *x = impl(t);
    WD_CHECK(check_op(t, peer, dst_off, len, err));
    if (len == 0)
        return WD_OK;
    struct ucx_peer *pp = &x->peer[peer];
    ucp_request_param_t prm = {0};
    ucs_status_ptr_t req = ucp_put_nbx(pp->ep, src, len, pp->base + dst_off, pp->rkey, &prm);
    pp->is_dirty = 1;
    return wait_req(x->u, &x->peers, pp, peer, req, "put", x->op_timeout_ms, err);
}

static enum wd_status ucx_signal(struct wd_transport *t, int peer, size_t sig_off, uint64_t add,
                                 struct wd_error *err)
{
    struct ucx_impl *x = impl(t);
    if (sig_off % 8)
        return wd_error_set(err, WD_ERR_INVALID, "%s: signal offset %zu not 8-byte aligned",
                            x->peers.name, sig_off);
    WD_CHECK(check_op(t, peer, sig_off, 8, err));
    struct ucx_peer *pp = &x->peer[peer];
    ucp_request_param_t prm = {0};
    if (pp->is_dirty) {
        WD_CHECK(wait_req(x->u, &x->peers, pp, peer, ucp_ep_flush_nbx(pp->ep, &prm), "flush",
                          x->op_timeout_ms, err));
        pp->is_dirty = 0;
    }
    uint64_t value = add;
    prm.op_attr_mask = UCP_OP_ATTR_FIELD_DATATYPE;
    prm.datatype = ucp_dt_make_contig(sizeof(uint64_t));
    ucs_status_ptr_t req =
        ucp_atomic_op_nbx(pp->ep, UCP_ATOMIC_OP_ADD, &value, 1, pp->base + sig_off, pp->rkey, &prm);
    return wait_req(x->u, &x->peers, pp, peer, req, "signal", x->op_timeout_ms, err);
}

static enum wd_status ucx_wait(struct wd_transport *t, size_t sig_off, uint64_t target,
                               int from_peer, int timeout_ms, struct wd_error *err)
{
    struct ucx_impl *x = impl(t);
    if (sig_off % 8 || t->window_bytes < 8 || sig_off > t->window_bytes - 8)
        return wd_error_set(err, WD_ERR_INVALID, "%s: bad signal offset %zu", x->peers.name,
                            sig_off);
    return wd_peers_wait_word(&x->peers, (const uint64_t *)(t->window + sig_off), target, from_peer,
                              timeout_ms, progress_cb, x->u, err);
}

static void *ucx_peer_window(struct wd_transport *t, int peer)
{
    (void)t;
    (void)peer;
    return NULL;
}

static void ucx_destroy(struct wd_transport *t)
{
    struct ucx_impl *x = impl(t);
    struct wd_error e;
    int timeout = x->op_timeout_ms < 2000 ? x->op_timeout_ms : 2000;
    for (int i = 0; i < x->peers.n_ranks; i++) {
        struct ucx_peer *pp = &x->peer[i];
        if (pp->rkey)
            ucp_rkey_destroy(pp->rkey);
        if (pp->ep) {
            /* An unguarded endpoint to a live peer closes by flushing; a dead peer never
             * answers a flush, so it is dropped. */
            int is_dead = wd_peers_check(&x->peers, i, NULL) != WD_OK;
            ucp_request_param_t prm = {
                .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                .flags = pp->is_unguarded && !is_dead ? 0 : UCP_EP_CLOSE_FLAG_FORCE};
            if (wait_req(x->u, &x->peers, NULL, is_dead ? -1 : i, ucp_ep_close_nbx(pp->ep, &prm),
                         "close", timeout, &e) != WD_OK)
                wd_log(WD_LOG_WARN, "ucx", "%s", e.msg);
        }
    }
    if (x->memh)
        ucp_mem_unmap(x->u->ctx, x->memh);
    if (x->owns_window)
        free(t->window);
    free(x->peer);
    wd_peers_cleanup(&x->peers);
    free(x);
    free(t);
}

static const struct wd_transport_ops ucx_ops = {
    .put = ucx_put,
    .signal = ucx_signal,
    .wait = ucx_wait,
    .peer_window = ucx_peer_window,
    .destroy = ucx_destroy,
};

enum wd_status wd_transport_ucx_create(struct wd_ucx *u, const struct wd_peers *peers, void *window,
                                       size_t window_bytes, int op_timeout_ms,
                                       struct wd_transport **t_p, struct wd_error *err)
{
    if (window_bytes == 0 || op_timeout_ms <= 0)
        return wd_error_set(err, WD_ERR_INVALID, "ucx transport: empty window or bad timeout");
    struct wd_transport *t = calloc(1, sizeof(*t));
    struct ucx_impl *x = calloc(1, sizeof(*x));
    struct ucx_peer *pp = calloc((size_t)peers->n_ranks, sizeof(*pp));
    enum wd_status st = WD_ERR_NOMEM;
    if (!t || !x || !pp) {
        wd_error_set(err, st, "ucx transport: out of memory");
        goto fail;
    }
    if (!window) {
        window = calloc(1, window_bytes);
        x->owns_window = 1;
    }
    if (!window) {
        wd_error_set(err, st, "ucx transport: out of memory");
        goto fail;
    }
    st = wd_peers_init(&x->peers, peers->name, peers->rank, peers->n_ranks, peers->members,
                       peers->ri, err);
    if (st != WD_OK)
        goto fail;
    ucp_mem_map_params_t mp = {.field_mask =
                                   UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH,
                               .address = window,
                               .length = window_bytes};
    ucs_status_t s = ucp_mem_map(u->ctx, &mp, &x->memh);
    if (s != UCS_OK) {
        st = ucx_error(err, s, peers->name, "register window", -1);
        wd_peers_cleanup(&x->peers);
        goto fail;
    }
    x->u = u;
    x->op_timeout_ms = op_timeout_ms;
    x->peer = pp;
    t->ops = &ucx_ops;
    t->rank = peers->rank;
    t->n_ranks = peers->n_ranks;
    t->window = window;
    t->window_bytes = window_bytes;
    t->kind = "ucx";
    t->impl = x;
    *t_p = t;
    return WD_OK;
fail:
    if (x && x->owns_window)
        free(window);
    free(pp);
    free(x);
    free(t);
    return st;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

enum wd_status wd_transport_ucx_local_info(struct wd_transport *t, void **blob_p, size_t *len_p,
                                           struct wd_error *err)
{
    struct ucx_impl *x = impl(t);
    ucp_address_t *addr;
    size_t addr_len;
    void *rkey;
    size_t rkey_len;
    ucs_status_t s = ucp_worker_get_address(x->u->worker, &addr, &addr_len);
    if (s != UCS_OK)
        return ucx_error(err, s, x->peers.name, "worker address", -1);
    s = ucp_rkey_pack(x->u->ctx, x->memh, &rkey, &rkey_len);
    if (s != UCS_OK) {
        ucp_worker_release_address(x->u->worker, addr);
        return ucx_error(err, s, x->peers.name, "pack rkey", -1);
    }
    size_t len = 16 + addr_len + rkey_len;
    uint8_t *b = malloc(len);
    if (b) {
        uint64_t base = (uint64_t)(uintptr_t)t->window;
        put_u32(b, (uint32_t)base);
        put_u32(b + 4, (uint32_t)(base >> 32));
        put_u32(b + 8, (uint32_t)addr_len);
        put_u32(b + 12, (uint32_t)rkey_len);
        memcpy(b + 16, addr, addr_len);
        memcpy(b + 16 + addr_len, rkey, rkey_len);
    }
    ucp_rkey_buffer_release(rkey);
    ucp_worker_release_address(x->u->worker, addr);
    if (!b)
        return wd_error_set(err, WD_ERR_NOMEM, "%s: out of memory", x->peers.name);
    *blob_p = b;
    *len_p = len;
    return WD_OK;
}

static void ep_error_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    (void)ep;
    struct ucx_peer *pp = arg;
    pp->is_failed = 1;
    pp->failure = status;
}

enum wd_status wd_transport_ucx_connect(struct wd_transport *t, int peer, const void *blob,
                                        size_t len, struct wd_error *err)
{
    struct ucx_impl *x = impl(t);
    const uint8_t *b = blob;
    if (peer < 0 || peer >= t->n_ranks || peer == t->rank || x->peer[peer].ep)
        return wd_error_set(err, WD_ERR_INVALID, "%s: cannot connect peer %d", x->peers.name, peer);
    int grank = wd_peers_global(&x->peers, peer);
    if (len < 16 || get_u32(b + 8) == 0 || get_u32(b + 12) == 0 ||
        (uint64_t)get_u32(b + 8) + get_u32(b + 12) != len - 16)
        return wd_error_set(err, WD_ERR_FORMAT, "%s: malformed ucx address from rank %d",
                            x->peers.name, grank);
    struct ucx_peer *pp = &x->peer[peer];
    uint32_t addr_len = get_u32(b + 8);
    ucp_ep_params_t ep = {.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
                                        UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                                        UCP_EP_PARAM_FIELD_ERR_HANDLER,
                          .address = (const ucp_address_t *)(b + 16),
                          .err_mode = UCP_ERR_HANDLING_MODE_PEER,
                          .err_handler = {.cb = ep_error_cb, .arg = pp}};
    ucs_status_t s = ucp_ep_create(x->u->worker, &ep, &pp->ep);
    if (s == UCS_ERR_UNREACHABLE) {
        /* Only transports without peer-failure detection reach it (UCX_TLS=posix, sysv):
         * do without; the launcher's liveness page still reports a dead peer. */
        ep.err_mode = UCP_ERR_HANDLING_MODE_NONE;
        ep.field_mask &= ~(uint64_t)UCP_EP_PARAM_FIELD_ERR_HANDLER;
        s = ucp_ep_create(x->u->worker, &ep, &pp->ep);
        pp->is_unguarded = s == UCS_OK;
    }
    if (s != UCS_OK) {
        pp->ep = NULL;
        return ucx_error(err, s, x->peers.name, "endpoint", grank);
    }
    s = ucp_ep_rkey_unpack(pp->ep, b + 16 + addr_len, &pp->rkey);
    if (s != UCS_OK) {
        pp->rkey = NULL;
        pp->is_failed = 1; /* the endpoint stays for destroy but takes no operation */
        pp->failure = s;
        return ucx_error(err, s, x->peers.name, "unpack rkey", grank);
    }
    pp->base = (uint64_t)get_u32(b) | (uint64_t)get_u32(b + 4) << 32;
    return WD_OK;
}

int wd_transport_ucx_is_connected(const struct wd_transport *t, int peer)
{
    return peer >= 0 && peer < t->n_ranks && impl(t)->peer[peer].ep != NULL;
}

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

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/comm/launcher.h"
#include "common/util/le.h"
#include "common/util/log.h"

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

static void progress_cb(void *arg)
{
    wd_ucx_progress(arg);
}

static struct wd_ucx_who who_of(const struct wd_peers *peers, int peer, const char *what)
{
    struct wd_ucx_who who = {.scope = peers->name,
                             .what = what,
                             .peer_rank = peer >= 0 ? wd_peers_global(peers, peer) : -1};
    return who;
}

struct wait_ctx {
    const struct wd_peers *peers;
    struct ucx_peer *pp; /* NULL: no endpoint state to watch */
    int peer;            /* -1: no liveness to watch */
    struct wd_ucx_who who;
};

/* A wait gives up early once the endpoint failed or the launcher saw the peer stop. */
static enum wd_status wait_check(void *arg, struct wd_error *err)
{
    struct wait_ctx *c = arg;
    if (c->pp && c->pp->is_failed)
        return wd_ucx_error(err, c->pp->failure, &c->who);
    return c->peer >= 0 ? wd_peers_check(c->peers, c->peer, err) : WD_OK;
}

/* How long a failed endpoint's error waits for the launcher to name a failed rank. */
#define CAUSE_WAIT_MS 1500
#define CAUSE_POLL_MS 5

/* A reset endpoint is most often a rank that left because another one failed first, and
 * the launcher's notice of that first failure (from another node, through the rendezvous)
 * can trail the reset by some milliseconds. Waits briefly for it so the error names the
 * cause, not the bystander; a reset with no failed rank behind it is reported as it is. */
static enum wd_status name_cause(const struct wd_peers *peers, enum wd_status st,
                                 struct wd_error *err)
{
    if (st != WD_ERR_PEER || !err || !peers->ri)
        return st;
    struct wd_error cause = {0};
    for (int waited = 0; wd_rank_check_all(peers->ri, &cause) == WD_OK; waited += CAUSE_POLL_MS) {
        if (waited >= CAUSE_WAIT_MS)
            return st;
        struct timespec ts = {0, CAUSE_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (strstr(err->msg, cause.msg))
        return st;
    char msg[WD_ERROR_LEN];
    snprintf(msg, sizeof(msg), "%s", err->msg);
    return wd_error_set(err, st, "%s (first failure: %s)", msg, cause.msg);
}

/* Progresses until req completes or timeout_ms passes (or the peer is known dead); frees
 * req either way. NULL req = completed at once. */
static enum wd_status wait_req(struct wd_ucx *u, const struct wd_peers *peers, struct ucx_peer *pp,
                               int peer, ucs_status_ptr_t req, const char *what, int timeout_ms,
                               struct wd_error *err)
{
    struct wait_ctx c = {.peers = peers, .pp = pp, .peer = peer, .who = who_of(peers, peer, what)};
    return name_cause(peers, wd_ucx_wait(u, req, timeout_ms, wait_check, &c, &c.who, err), err);
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
    if (pp->is_failed) {
        struct wd_ucx_who who = who_of(&x->peers, peer, "endpoint");
        return name_cause(&x->peers, wd_ucx_error(err, pp->failure, &who), err);
    }
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
    int timeout = x->op_timeout_ms < 2000 ? x->op_timeout_ms : 2000;
    for (int i = 0; i < x->peers.n_ranks; i++) {
        struct ucx_peer *pp = &x->peer[i];
        if (pp->rkey)
            ucp_rkey_destroy(pp->rkey);
        if (pp->ep) {
            /* An unguarded endpoint to a live peer closes by flushing; a dead peer never
             * answers a flush, so it is dropped. */
            int is_dead = wd_peers_check(&x->peers, i, NULL) != WD_OK;
            struct wait_ctx c = {.peers = &x->peers,
                                 .peer = is_dead ? -1 : i,
                                 .who = who_of(&x->peers, is_dead ? -1 : i, "close")};
            wd_ucx_ep_close(x->u, pp->ep, !pp->is_unguarded || is_dead, timeout, wait_check, &c,
                            &c.who);
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
    struct wd_ucx_who who = who_of(peers, -1, "register window");
    st = wd_ucx_mem_map(u, window, window_bytes, &x->memh, &who, err);
    if (st != WD_OK) {
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

enum wd_status wd_transport_ucx_local_info(struct wd_transport *t, void **blob_p, size_t *len_p,
                                           struct wd_error *err)
{
    struct ucx_impl *x = impl(t);
    struct wd_ucx_local l;
    struct wd_ucx_who who = who_of(&x->peers, -1, "local info");
    WD_CHECK(wd_ucx_local_get(x->u, x->memh, &l, &who, err));
    size_t len = 16 + l.addr_len + l.rkey_len;
    uint8_t *b = malloc(len);
    if (b) {
        uint64_t base = (uint64_t)(uintptr_t)t->window;
        wd_le_put32(b, (uint32_t)base);
        wd_le_put32(b + 4, (uint32_t)(base >> 32));
        wd_le_put32(b + 8, (uint32_t)l.addr_len);
        wd_le_put32(b + 12, (uint32_t)l.rkey_len);
        memcpy(b + 16, l.addr, l.addr_len);
        memcpy(b + 16 + l.addr_len, l.rkey, l.rkey_len);
    }
    wd_ucx_local_release(x->u, &l);
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
    if (len < 16 || wd_le_get32(b + 8) == 0 || wd_le_get32(b + 12) == 0 ||
        (uint64_t)wd_le_get32(b + 8) + wd_le_get32(b + 12) != len - 16)
        return wd_error_set(err, WD_ERR_FORMAT, "%s: malformed ucx address from rank %d",
                            x->peers.name, grank);
    struct ucx_peer *pp = &x->peer[peer];
    uint32_t addr_len = wd_le_get32(b + 8);
    /* Only transports without peer-failure detection (UCX_TLS=posix, sysv) come back
     * unguarded: the launcher's liveness page still reports a dead peer. */
    struct wd_ucx_who who = who_of(&x->peers, peer, "endpoint");
    enum wd_status st =
        wd_ucx_ep_create(x->u, b + 16, ep_error_cb, pp, &pp->ep, &pp->is_unguarded, &who, err);
    if (st != WD_OK) {
        pp->ep = NULL;
        return st;
    }
    ucs_status_t s = ucp_ep_rkey_unpack(pp->ep, b + 16 + addr_len, &pp->rkey);
    if (s != UCS_OK) {
        pp->rkey = NULL;
        pp->is_failed = 1; /* the endpoint stays for destroy but takes no operation */
        pp->failure = s;
        who.what = "unpack rkey";
        return wd_ucx_error(err, s, &who);
    }
    pp->base = (uint64_t)wd_le_get32(b) | (uint64_t)wd_le_get32(b + 4) << 32;
    return WD_OK;
}

int wd_transport_ucx_is_connected(const struct wd_transport *t, int peer)
{
    return peer >= 0 && peer < t->n_ranks && impl(t)->peer[peer].ep != NULL;
}

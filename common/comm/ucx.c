/* UCX plumbing: context and worker, status conversion, bounded waits, registration,
 * endpoints. See ucx.h. */
#include "common/comm/ucx.h"

#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "common/util/log.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* " to <peer>" for messages, or "" when the operation has no peer. */
static const char *peer_text(const struct wd_ucx_who *who, char *buf, size_t cap)
{
    if (who->peer_name)
        snprintf(buf, cap, " to %s", who->peer_name);
    else if (who->peer_rank >= 0)
        snprintf(buf, cap, " to rank %d", who->peer_rank);
    else
        buf[0] = '\0';
    return buf;
}

enum wd_status wd_ucx_error(struct wd_error *err, ucs_status_t s, const struct wd_ucx_who *who)
{
    enum wd_status st = WD_ERR_IO;
    if (s == UCS_ERR_CONNECTION_RESET || s == UCS_ERR_ENDPOINT_TIMEOUT ||
        s == UCS_ERR_UNREACHABLE || s == UCS_ERR_CANCELED)
        st = WD_ERR_PEER;
    char peer[160];
    return wd_error_set(err, st, "%s: ucx %s%s: %s", who->scope, who->what,
                        peer_text(who, peer, sizeof(peer)), ucs_status_string(s));
}

enum wd_status wd_ucx_create_with(const struct wd_ucx_config *cfg, struct wd_ucx **u_p,
                                  struct wd_error *err)
{
    struct wd_ucx_who who = {.scope = "ucx", .peer_rank = -1};
    struct wd_ucx *u = calloc(1, sizeof(*u));
    if (!u)
        return wd_error_set(err, WD_ERR_NOMEM, "ucx: out of memory");
    u->efd = -1;
    ucp_config_t *config;
    ucs_status_t s = ucp_config_read(NULL, NULL, &config);
    if (s != UCS_OK) {
        free(u);
        who.what = "read config";
        return wd_ucx_error(err, s, &who);
    }
    ucp_params_t p = {.field_mask = UCP_PARAM_FIELD_FEATURES,
                      .features = cfg->features | (cfg->is_wakeup ? UCP_FEATURE_WAKEUP : 0)};
    s = ucp_init(&p, config, &u->ctx);
    ucp_config_release(config);
    if (s != UCS_OK) {
        free(u);
        who.what = "init";
        return wd_ucx_error(err, s, &who);
    }
    ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                              .thread_mode = UCS_THREAD_MODE_SINGLE};
    s = ucp_worker_create(u->ctx, &wp, &u->worker);
    who.what = "create worker";
    if (s == UCS_OK && cfg->is_wakeup) {
        s = ucp_worker_get_efd(u->worker, &u->efd);
        who.what = "worker event fd";
        if (s != UCS_OK)
            ucp_worker_destroy(u->worker);
    }
    if (s != UCS_OK) {
        ucp_cleanup(u->ctx);
        free(u);
        return wd_ucx_error(err, s, &who);
    }
    *u_p = u;
    return WD_OK;
}

enum wd_status wd_ucx_create(struct wd_ucx **u_p, struct wd_error *err)
{
    struct wd_ucx_config cfg = {.features = UCP_FEATURE_RMA | UCP_FEATURE_AMO64};
    return wd_ucx_create_with(&cfg, u_p, err);
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

enum wd_status wd_ucx_wait(struct wd_ucx *u, ucs_status_ptr_t req, int timeout_ms,
                           wd_ucx_check_fn check, void *check_arg, const struct wd_ucx_who *who,
                           struct wd_error *err)
{
    if (req == NULL)
        return WD_OK;
    if (UCS_PTR_IS_ERR(req))
        return wd_ucx_error(err, UCS_PTR_STATUS(req), who);
    int64_t deadline = now_ms() + timeout_ms;
    enum wd_status st = WD_OK;
    for (unsigned iter = 0;; iter++) {
        ucp_worker_progress(u->worker);
        ucs_status_t s = ucp_request_check_status(req);
        if (s != UCS_INPROGRESS) {
            ucp_request_free(req);
            return s == UCS_OK ? WD_OK : wd_ucx_error(err, s, who);
        }
        if (iter % 64 != 63)
            continue;
        if (check && (st = check(check_arg, err)) != WD_OK)
            break;
        if (now_ms() >= deadline) {
            char peer[160];
            st = wd_error_set(err, WD_ERR_TIMEOUT, "%s: ucx %s%s not done within %d ms", who->scope,
                              who->what, peer_text(who, peer, sizeof(peer)), timeout_ms);
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
    struct wd_ucx_who who = {.scope = "ucx", .what = "flush", .peer_rank = -1};
    return wd_ucx_wait(u, ucp_worker_flush_nbx(u->worker, &prm), timeout_ms, NULL, NULL, &who, err);
}

enum wd_status wd_ucx_mem_map(struct wd_ucx *u, void *addr, size_t len, ucp_mem_h *memh_p,
                              const struct wd_ucx_who *who, struct wd_error *err)
{
    ucp_mem_map_params_t mp = {.field_mask =
                                   UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH,
                               .address = addr,
                               .length = len};
    ucs_status_t s = ucp_mem_map(u->ctx, &mp, memh_p);
    return s == UCS_OK ? WD_OK : wd_ucx_error(err, s, who);
}

enum wd_status wd_ucx_local_get(struct wd_ucx *u, ucp_mem_h memh, struct wd_ucx_local *l_p,
                                const struct wd_ucx_who *who, struct wd_error *err)
{
    struct wd_ucx_local l;
    struct wd_ucx_who w = *who;
    ucs_status_t s = ucp_worker_get_address(u->worker, &l.addr, &l.addr_len);
    if (s != UCS_OK) {
        w.what = "worker address";
        return wd_ucx_error(err, s, &w);
    }
    s = ucp_rkey_pack(u->ctx, memh, &l.rkey, &l.rkey_len);
    if (s != UCS_OK) {
        ucp_worker_release_address(u->worker, l.addr);
        w.what = "pack rkey";
        return wd_ucx_error(err, s, &w);
    }
    *l_p = l;
    return WD_OK;
}

void wd_ucx_local_release(struct wd_ucx *u, struct wd_ucx_local *l)
{
    ucp_rkey_buffer_release(l->rkey);
    ucp_worker_release_address(u->worker, l->addr);
}

enum wd_status wd_ucx_ep_create(struct wd_ucx *u, const void *addr, ucp_err_handler_cb_t cb,
                                void *cb_arg, ucp_ep_h *ep_p, int *is_unguarded_p,
                                const struct wd_ucx_who *who, struct wd_error *err)
{
    ucp_ep_params_t ep = {.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
                                        UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                                        UCP_EP_PARAM_FIELD_ERR_HANDLER,
                          .address = addr,
                          .err_mode = UCP_ERR_HANDLING_MODE_PEER,
                          .err_handler = {.cb = cb, .arg = cb_arg}};
    int is_unguarded = 0;
    ucs_status_t s = ucp_ep_create(u->worker, &ep, ep_p);
    if (s == UCS_ERR_UNREACHABLE) {
        ep.err_mode = UCP_ERR_HANDLING_MODE_NONE;
        ep.field_mask &= ~(uint64_t)UCP_EP_PARAM_FIELD_ERR_HANDLER;
        s = ucp_ep_create(u->worker, &ep, ep_p);
        is_unguarded = 1;
    }
    if (s != UCS_OK)
        return wd_ucx_error(err, s, who);
    *is_unguarded_p = is_unguarded;
    return WD_OK;
}

enum wd_status wd_ucx_ep_close(struct wd_ucx *u, ucp_ep_h ep, int is_force, int timeout_ms,
                               wd_ucx_check_fn check, void *check_arg, const struct wd_ucx_who *who)
{
    struct wd_error e;
    ucp_request_param_t prm = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                               .flags = is_force ? UCP_EP_CLOSE_FLAG_FORCE : 0};
    enum wd_status st =
        wd_ucx_wait(u, ucp_ep_close_nbx(ep, &prm), timeout_ms, check, check_arg, who, &e);
    if (st != WD_OK)
        wd_log(WD_LOG_WARN, "ucx", "%s", e.msg);
    return st;
}

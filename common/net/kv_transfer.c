/*
 * KV transfer over UCX RMA: the object (context, worker, registered region, descriptor,
 * optional progress thread), connecting and closing peers (endpoint, unpacked rkey, the
 * pair's head range), peer liveness. Puts and flushes are in kv_transfer_put.c. See
 * kv_transfer.h for the contract.
 *
 * A peer on the same host (same boot id and pid namespace) is also watched through its
 * pid: UCX's shared-memory transports (posix, sysv) take no peer-failure handling, and a
 * process killed there would otherwise surface only as a timeout.
 */
#include "common/net/kv_transfer.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/net/kv_transfer_internal.h"
#include "common/util/log.h"

#define LIVENESS_MS 20                /* how often a wait looks at a same-host peer's pid */
#define CLOSE_TIMEOUT_MS 2000         /* endpoint close on disconnect */
#define IDLE_POLL_MS 100              /* progress thread: longest sleep between stop checks */
#define IDLE_NAP_NS 20000             /* progress thread without an event fd: idle nap */
#define STAGE_BYTES ((size_t)4 << 20) /* default packing buffer per packed peer */

int64_t wd_kv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t fnv1a(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h;
}

/* Same value in two processes exactly when their pids are comparable: one kernel boot, one
 * pid namespace. 0 when either cannot be read (then no process is "same host"). */
static uint64_t host_id(void)
{
    char boot[64] = {0}, ns[64] = {0};
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, boot, sizeof(boot) - 1) : -1;
    if (fd >= 0)
        close(fd);
    ssize_t m = readlink("/proc/self/ns/pid", ns, sizeof(ns) - 1);
    if (n <= 0 || m <= 0)
        return 0;
    return fnv1a(fnv1a(0xcbf29ce484222325ull, boot, (size_t)n), ns, (size_t)m);
}

/* A process that is gone or a zombie (killed, not yet reaped) counts as dead. */
static int pid_is_dead(uint64_t pid)
{
    if (pid == 0 || pid > (uint64_t)INT32_MAX)
        return 0;
    if (kill((pid_t)pid, 0) != 0)
        return errno == ESRCH;
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/%llu/stat", (unsigned long long)pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return errno == ENOENT;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')');
    return paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X');
}

static struct wd_ucx_who who_of(const struct wd_kv_peer *p, const char *what)
{
    struct wd_ucx_who who = {
        .scope = p->t->scope, .what = what, .peer_name = p->name, .peer_rank = -1};
    return who;
}

void wd_kv_peer_mark_failed(struct wd_kv_peer *p, ucs_status_t s)
{
    if (!p->is_failed) {
        p->is_failed = 1;
        p->failure = s;
    }
}

/* WD_ERR_PEER naming the peer once it failed (the endpoint said so, a request failed, or
 * its pid is gone); the pid is looked at no more often than LIVENESS_MS. */
enum wd_status wd_kv_peer_check(struct wd_kv_peer *p, struct wd_error *err)
{
    if (!p->is_failed && p->is_same_host) {
        int64_t now = wd_kv_now_ms();
        if (now >= p->next_live_ms) {
            p->next_live_ms = now + LIVENESS_MS;
            if (pid_is_dead(p->desc.pid)) {
                wd_kv_peer_mark_failed(p, UCS_ERR_CONNECTION_RESET);
                snprintf(p->failure_msg, sizeof(p->failure_msg), "process %llu is gone",
                         (unsigned long long)p->desc.pid);
            }
        }
    }
    if (!p->is_failed)
        return WD_OK;
    return wd_error_set(err, WD_ERR_PEER, "%s: peer %s failed: %s", p->t->scope, p->name,
                        p->failure_msg[0] ? p->failure_msg : ucs_status_string(p->failure));
}

static enum wd_status peer_check_cb(void *arg, struct wd_error *err)
{
    return wd_kv_peer_check(arg, err);
}

static void ep_error_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    (void)ep;
    wd_kv_peer_mark_failed(arg, status);
}

/* --- the object ------------------------------------------------------------------------ */

static void *progress_main(void *arg)
{
    struct wd_kv_transfer *t = arg;
    struct pollfd fds[2] = {{.fd = t->stop_fd, .events = POLLIN},
                            {.fd = t->u->efd, .events = POLLIN}};
    for (;;) {
        pthread_mutex_lock(&t->mu);
        if (t->is_stopping) {
            pthread_mutex_unlock(&t->mu);
            break;
        }
        unsigned n = ucp_worker_progress(t->u->worker);
        ucs_status_t armed = UCS_ERR_BUSY;
        if (n == 0)
            armed = t->u->efd >= 0 ? ucp_worker_arm(t->u->worker) : UCS_ERR_UNSUPPORTED;
        pthread_mutex_unlock(&t->mu);
        if (armed == UCS_ERR_BUSY)
            continue; /* more work right now */
        /* Idle: sleep on the worker's event fd and the stop fd; without an event fd a short
         * nap bounds the latency this adds to a target-driven (TCP) put. */
        if (armed == UCS_OK) {
            poll(fds, 2, IDLE_POLL_MS);
        } else {
            struct timespec nap = {.tv_nsec = IDLE_NAP_NS};
            nanosleep(&nap, NULL);
        }
    }
    return NULL;
}

static enum wd_status pack_descriptor(struct wd_kv_transfer *t, struct wd_error *err)
{
    struct wd_ucx_local l;
    struct wd_ucx_who who = {.scope = t->scope, .what = "descriptor", .peer_rank = -1};
    WD_CHECK(wd_ucx_local_get(t->u, t->memh, &l, &who, err));
    struct wd_kv_desc d = {.version = WD_KV_DESC_VERSION,
                           .id = t->id,
                           .host = t->host,
                           .pid = (uint64_t)getpid(),
                           .geo = t->geo,
                           .heads = t->heads,
                           .base = (uint64_t)(uintptr_t)t->region,
                           .worker_addr = l.addr,
                           .worker_addr_len = l.addr_len,
                           .rkey = l.rkey,
                           .rkey_len = l.rkey_len};
    t->desc_len = wd_kv_desc_bytes(l.addr_len, l.rkey_len);
    t->desc = malloc(t->desc_len);
    if (t->desc)
        wd_kv_desc_encode(&d, t->desc);
    wd_ucx_local_release(t->u, &l);
    if (!t->desc)
        return wd_error_set(err, WD_ERR_NOMEM, "%s: out of memory", t->scope);
    return WD_OK;
}

static enum wd_status start_thread(struct wd_kv_transfer *t, struct wd_error *err)
{
    t->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (t->stop_fd < 0)
        return wd_error_set(err, WD_ERR_IO, "%s: eventfd: %s", t->scope, strerror(errno));
    int rc = pthread_create(&t->thread, NULL, progress_main, t);
    if (rc != 0)
        return wd_error_set(err, WD_ERR_IO, "%s: progress thread: %s", t->scope, strerror(rc));
    t->is_thread = 1;
    return WD_OK;
}

enum wd_status wd_kv_transfer_create(const struct wd_kv_transfer_config *cfg,
                                     struct wd_kv_transfer **t_p, struct wd_error *err)
{
    const struct wd_kv_geometry *g = &cfg->geo;
    const char *name = cfg->name ? cfg->name : "rank";
    if (!cfg->region || g->region_bytes == 0 || g->n_heads != cfg->heads.end - cfg->heads.begin ||
        cfg->heads.n_replicas <= 0)
        return wd_error_set(err, WD_ERR_INVALID,
                            "kv %s: no region, or heads [%d, %d) for a %d-head pool", name,
                            cfg->heads.begin, cfg->heads.end, g->n_heads);
    struct wd_kv_transfer *t = calloc(1, sizeof(*t));
    if (!t)
        return wd_error_set(err, WD_ERR_NOMEM, "kv %s: out of memory", name);
    snprintf(t->scope, sizeof(t->scope), "kv %s", name);
    t->region = cfg->region;
    t->geo = *g;
    t->heads = cfg->heads;
    t->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 10000;
    t->op_timeout_ms = cfg->op_timeout_ms > 0 ? cfg->op_timeout_ms : 30000;
    t->stage_bytes = cfg->stage_bytes > 0 ? cfg->stage_bytes : STAGE_BYTES;
    t->stop_fd = -1;
    t->host = host_id();
    if (getrandom(&t->id, sizeof(t->id), 0) != (ssize_t)sizeof(t->id))
        t->id = (uint64_t)wd_kv_now_ms() * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid();
    pthread_mutex_init(&t->mu, NULL);
    /* The event fd lets the progress thread sleep; a UCX that cannot wake up (no such
     * transport) still works with a polling thread. */
    struct wd_ucx_config uc = {.features = UCP_FEATURE_RMA, .is_wakeup = cfg->is_progress_thread};
    enum wd_status st = wd_ucx_create_with(&uc, &t->u, err);
    if (st != WD_OK && uc.is_wakeup) {
        uc.is_wakeup = 0;
        st = wd_ucx_create_with(&uc, &t->u, err);
    }
    struct wd_ucx_who who = {.scope = t->scope, .what = "register region", .peer_rank = -1};
    if (st == WD_OK)
        st = wd_ucx_mem_map(t->u, t->region, g->region_bytes, &t->memh, &who, err);
    if (st == WD_OK)
        st = pack_descriptor(t, err);
    if (st == WD_OK && cfg->is_progress_thread)
        st = start_thread(t, err);
    if (st != WD_OK) {
        wd_kv_transfer_destroy(t);
        return st;
    }
    *t_p = t;
    return WD_OK;
}

static void close_peer(struct wd_kv_transfer *t, struct wd_kv_peer *p);

void wd_kv_transfer_destroy(struct wd_kv_transfer *t)
{
    if (!t)
        return;
    if (t->is_thread) {
        pthread_mutex_lock(&t->mu);
        t->is_stopping = 1;
        pthread_mutex_unlock(&t->mu);
        uint64_t one = 1;
        if (write(t->stop_fd, &one, sizeof(one)) < 0)
            wd_log(WD_LOG_WARN, "kv", "%s: waking the progress thread: %s", t->scope,
                   strerror(errno));
        pthread_join(t->thread, NULL);
    }
    while (t->peers) {
        struct wd_kv_peer *p = t->peers;
        t->peers = p->next;
        close_peer(t, p);
    }
    for (struct wd_kv_peer *p = t->zombies; p; p = p->next)
        if (p->rkey)
            ucp_rkey_destroy(p->rkey);
    if (t->memh)
        ucp_mem_unmap(t->u->ctx, t->memh);
    wd_ucx_destroy(t->u); /* after this no callback can reach a zombie peer */
    while (t->zombies) {
        struct wd_kv_peer *p = t->zombies;
        t->zombies = p->next;
        free(p->stage);
        free(p->flushes);
        free(p);
    }
    if (t->stop_fd >= 0)
        close(t->stop_fd);
    pthread_mutex_destroy(&t->mu);
    free(t->desc);
    free(t);
}

const void *wd_kv_transfer_descriptor(const struct wd_kv_transfer *t, size_t *len_p)
{
    *len_p = t->desc_len;
    return t->desc;
}

uint64_t wd_kv_transfer_id(const struct wd_kv_transfer *t)
{
    return t->id;
}

void wd_kv_transfer_progress(struct wd_kv_transfer *t)
{
    pthread_mutex_lock(&t->mu);
    wd_ucx_progress(t->u);
    pthread_mutex_unlock(&t->mu);
}

/* --- connecting a pair ----------------------------------------------------------------- */

static const char *kind_name(enum wd_kv_kind k)
{
    return k == WD_KV_MLA ? "mla" : "gqa";
}

/* The pool's own layout: [page][slot][head][dim], heads side by side in a slot row. */
static int is_slot_major(const struct wd_kv_geometry *g, int row, size_t head_st, size_t slot_st,
                         size_t page_st)
{
    size_t head_w = (size_t)(row / g->n_heads) * g->elem_bytes;
    return row == 0 || (head_st == head_w && slot_st == (size_t)row * g->elem_bytes &&
                        page_st == (size_t)g->page_size * slot_st);
}

static int layout_ok(const struct wd_kv_geometry *g)
{
    return is_slot_major(g, g->k_row, g->head_stride_k, g->slot_stride_k, g->page_stride_k) &&
           is_slot_major(g, g->v_row, g->head_stride_v, g->slot_stride_v, g->page_stride_v);
}

/* Everything that must agree byte for byte between the two pools of a pair. */
static enum wd_status check_pair(const struct wd_kv_transfer *t, const struct wd_kv_desc *d,
                                 const char *name, struct wd_error *err)
{
    const struct wd_kv_geometry *a = &t->geo, *b = &d->geo;
    const char *s = t->scope;
    if (t->heads.kind != d->heads.kind)
        return wd_error_set(err, WD_ERR_INVALID, "%s -> %s: kv kind %s vs %s", s, name,
                            kind_name(t->heads.kind), kind_name(d->heads.kind));
    if (a->dtype != b->dtype)
        return wd_error_set(err, WD_ERR_INVALID, "%s -> %s: kv dtype %s vs %s", s, name,
                            wd_kv_dtype_name(a->dtype), wd_kv_dtype_name(b->dtype));
    if (a->page_size != b->page_size)
        return wd_error_set(err, WD_ERR_INVALID, "%s -> %s: page size %d vs %d", s, name,
                            a->page_size, b->page_size);
    if (a->n_layers != b->n_layers)
        return wd_error_set(err, WD_ERR_INVALID, "%s -> %s: %d layers vs %d", s, name, a->n_layers,
                            b->n_layers);
    if (t->heads.n_total != d->heads.n_total)
        return wd_error_set(err, WD_ERR_INVALID, "%s -> %s: %d KV heads in the model vs %d", s,
                            name, t->heads.n_total, d->heads.n_total);
    if (a->k_row / a->n_heads != b->k_row / b->n_heads ||
        a->v_row / a->n_heads != b->v_row / b->n_heads)
        return wd_error_set(err, WD_ERR_INVALID,
                            "%s -> %s: head widths K %d V %d vs K %d V %d elements", s, name,
                            a->k_row / a->n_heads, a->v_row / a->n_heads, b->k_row / b->n_heads,
                            b->v_row / b->n_heads);
    if (!layout_ok(a) || !layout_ok(b))
        return wd_error_set(err, WD_ERR_UNSUPPORTED,
                            "%s -> %s: a kv layout other than [page][slot][head][dim]", s, name);
    return WD_OK;
}

enum wd_status wd_kv_transfer_connect(struct wd_kv_transfer *t, const void *desc, size_t len,
                                      const char *name, struct wd_kv_peer **peer_p,
                                      struct wd_error *err)
{
    struct wd_kv_desc d;
    if (wd_kv_desc_parse(desc, len, &d, err) != WD_OK)
        return wd_error_prefix(err, "%s -> %s", t->scope, name);
    WD_CHECK(check_pair(t, &d, name, err));
    struct wd_kv_peer *p = calloc(1, sizeof(*p));
    if (!p)
        return wd_error_set(err, WD_ERR_NOMEM, "%s: out of memory", t->scope);
    p->t = t;
    snprintf(p->name, sizeof(p->name), "%s", name);
    int b = 0, e = 0;
    p->n_heads = wd_kv_heads_overlap(&t->heads, &d.heads, &b, &e);
    p->h0 = b;
    p->is_whole =
        b == t->heads.begin && e == t->heads.end && b == d.heads.begin && e == d.heads.end;
    /* Prefill tp1 into decode tp2: the remote rows are contiguous, ours are not, so the
     * slices are packed into a buffer and a run of remote pages is one put. */
    p->is_packed = p->n_heads > 0 && !p->is_whole && b == d.heads.begin && e == d.heads.end;
    if (p->is_packed) {
        p->stage_bytes = t->stage_bytes;
        p->stage = malloc(p->stage_bytes);
        if (!p->stage) {
            free(p);
            return wd_error_set(err, WD_ERR_NOMEM, "%s: out of memory", t->scope);
        }
    }
    p->is_same_host = t->host != 0 && d.host == t->host;
    struct wd_ucx_who who = who_of(p, "endpoint");
    pthread_mutex_lock(&t->mu);
    enum wd_status st =
        wd_ucx_ep_create(t->u, d.worker_addr, ep_error_cb, p, &p->ep, &p->is_unguarded, &who, err);
    if (st != WD_OK) {
        pthread_mutex_unlock(&t->mu);
        free(p->stage);
        free(p);
        return st;
    }
    ucs_status_t s = ucp_ep_rkey_unpack(p->ep, d.rkey, &p->rkey);
    if (s != UCS_OK) {
        p->rkey = NULL;
        who.what = "unpack rkey";
        st = wd_ucx_error(err, s, &who);
    }
    p->desc = d;
    p->desc.worker_addr = p->desc.rkey = NULL;
    /* Wire-up happens now, not at the first request: an unreachable decode rank is an
     * error of the pair, found before any request depends on it. */
    uint64_t ticket;
    if (st == WD_OK)
        st = wd_kv_peer_flush_issue(p, &ticket, err);
    if (st == WD_OK)
        st = wd_kv_peer_flush_wait(p, ticket, t->connect_timeout_ms, err);
    if (st != WD_OK) {
        close_peer(t, p);
        pthread_mutex_unlock(&t->mu);
        return st;
    }
    p->next = t->peers;
    t->peers = p;
    pthread_mutex_unlock(&t->mu);
    *peer_p = p;
    return WD_OK;
}

/* Closes the endpoint and frees p, or parks it with the zombies when UCX still holds
 * requests whose callbacks point at it (lock held, p unlinked). */
static void close_peer(struct wd_kv_transfer *t, struct wd_kv_peer *p)
{
    int is_closed = 1;
    if (p->ep && p->is_unguarded && p->is_failed) {
        /* UCX refuses a forced close without peer-failure handling and a flushing one
         * would wait on the dead: the endpoint goes with the worker. */
        is_closed = 0;
    } else if (p->ep) {
        /* Forced when UCX handles peer failure (nothing waits on the peer); an unguarded
         * endpoint to a live peer closes by flushing, bounded. */
        struct wd_ucx_who who = who_of(p, "close");
        is_closed = wd_ucx_ep_close(t->u, p->ep, !p->is_unguarded, CLOSE_TIMEOUT_MS,
                                    p->is_unguarded ? peer_check_cb : NULL, p, &who) == WD_OK;
    }
    for (int i = 0; i < p->n_flushes; i++)
        ucp_request_free(p->flushes[i].req); /* released by UCX when it completes */
    p->n_flushes = 0;
    int64_t deadline = wd_kv_now_ms() + CLOSE_TIMEOUT_MS;
    while (is_closed && p->n_inflight > 0 && wd_kv_now_ms() < deadline)
        ucp_worker_progress(t->u->worker);
    if (p->n_inflight > 0 || !is_closed) {
        /* UCX may still call back into p (a put's completion, the endpoint's error): it
         * lives until the worker is destroyed. */
        if (is_closed)
            wd_log(WD_LOG_WARN, "kv", "%s: %d puts to %s still queued after close", t->scope,
                   p->n_inflight, p->name);
        p->next = t->zombies;
        t->zombies = p;
        return;
    }
    if (p->rkey)
        ucp_rkey_destroy(p->rkey);
    free(p->stage);
    free(p->flushes);
    free(p);
}

void wd_kv_transfer_disconnect(struct wd_kv_peer *p)
{
    if (!p)
        return;
    struct wd_kv_transfer *t = p->t;
    pthread_mutex_lock(&t->mu);
    for (struct wd_kv_peer **pp = &t->peers; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    close_peer(t, p);
    pthread_mutex_unlock(&t->mu);
}

void wd_kv_transfer_peer_stats(const struct wd_kv_peer *p, struct wd_kv_peer_stats *stats_p)
{
    *stats_p = p->stats;
}

int wd_kv_transfer_peer_is_failed(const struct wd_kv_peer *p)
{
    return p->is_failed;
}

const struct wd_kv_desc *wd_kv_transfer_peer_desc(const struct wd_kv_peer *p)
{
    return &p->desc;
}

/*
 * KV transfer over UCX RMA: the object (context, worker, registered region, descriptor,
 * optional progress thread) and its peers (endpoint, unpacked rkey, the pair's head range,
 * puts and flushes). See kv_transfer.h for the contract.
 *
 * Puts are fire-and-forget for the caller but not for us: each put that UCX queues carries
 * a completion callback that counts it out of the peer's in-flight number and records a
 * failure, so an error of a single put (a transport without peer-failure handling) is not
 * lost, and a put waits for room once MAX_INFLIGHT are queued (UCX would otherwise hold a
 * request per put for a whole prompt: millions with sliced heads). Flushes are tickets: a
 * ucp_ep_flush_nbx per ticket, polled; ticket T done means every put issued before T is
 * complete at the target (UCX's definition of an endpoint flush), and since that covers
 * every earlier ticket too, "done up to" is a maximum.
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
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/comm/ucx.h"
#include "common/net/kv_transfer_internal.h"
#include "common/util/log.h"

#define MAX_INFLIGHT 4096             /* queued put requests per peer before a put waits */
#define LIVENESS_MS 20                /* how often a wait looks at a same-host peer's pid */
#define CLOSE_TIMEOUT_MS 2000         /* endpoint close on disconnect */
#define IDLE_POLL_MS 100              /* progress thread: longest sleep between stop checks */
#define IDLE_NAP_NS 20000             /* progress thread without an event fd: idle nap */
#define STAGE_BYTES ((size_t)4 << 20) /* default packing buffer per packed peer */

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

static int64_t now_ms(void)
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

static void mark_failed(struct wd_kv_peer *p, ucs_status_t s)
{
    if (!p->is_failed) {
        p->is_failed = 1;
        p->failure = s;
    }
}

/* WD_ERR_PEER naming the peer once it failed (the endpoint said so, a request failed, or
 * its pid is gone); the pid is looked at no more often than LIVENESS_MS. */
static enum wd_status peer_check(struct wd_kv_peer *p, struct wd_error *err)
{
    if (!p->is_failed && p->is_same_host) {
        int64_t now = now_ms();
        if (now >= p->next_live_ms) {
            p->next_live_ms = now + LIVENESS_MS;
            if (pid_is_dead(p->desc.pid)) {
                mark_failed(p, UCS_ERR_CONNECTION_RESET);
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
    return peer_check(arg, err);
}

static void ep_error_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    (void)ep;
    mark_failed(arg, status);
}

static void put_done(void *request, ucs_status_t status, void *user_data)
{
    struct wd_kv_peer *p = user_data;
    p->n_inflight--;
    if (status != UCS_OK)
        mark_failed(p, status);
    ucp_request_free(request);
}

static void staged_put_done(void *request, ucs_status_t status, void *user_data)
{
    struct wd_kv_peer *p = user_data;
    p->n_stage_inflight--;
    put_done(request, status, user_data);
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
        t->id = (uint64_t)now_ms() * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid();
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

/* Issues an endpoint flush as ticket ++flush_issued (lock held). */
static enum wd_status flush_issue(struct wd_kv_peer *p, uint64_t *ticket_p, struct wd_error *err)
{
    WD_CHECK(peer_check(p, err));
    if (p->n_flushes == p->cap_flushes) {
        int cap = p->cap_flushes ? 2 * p->cap_flushes : 8;
        struct flush_req *f = realloc(p->flushes, sizeof(*f) * (size_t)cap);
        if (!f)
            return wd_error_set(err, WD_ERR_NOMEM, "%s: out of memory", p->t->scope);
        p->flushes = f;
        p->cap_flushes = cap;
    }
    ucp_request_param_t prm = {0};
    ucs_status_ptr_t r = ucp_ep_flush_nbx(p->ep, &prm);
    uint64_t ticket = ++p->flush_issued;
    if (UCS_PTR_IS_ERR(r)) {
        mark_failed(p, UCS_PTR_STATUS(r));
        return peer_check(p, err);
    }
    if (r)
        p->flushes[p->n_flushes++] = (struct flush_req){.req = r, .ticket = ticket};
    else if (ticket > p->flush_done)
        p->flush_done = ticket;
    *ticket_p = ticket;
    return WD_OK;
}

/* Progresses once and retires completed flushes (lock held). */
static void flush_poll(struct wd_kv_peer *p)
{
    ucp_worker_progress(p->t->u->worker);
    for (int i = 0; i < p->n_flushes;) {
        struct flush_req *f = &p->flushes[i];
        ucs_status_t s = ucp_request_check_status(f->req);
        if (s == UCS_INPROGRESS) {
            i++;
            continue;
        }
        ucp_request_free(f->req);
        if (s != UCS_OK)
            mark_failed(p, s);
        else if (f->ticket > p->flush_done)
            p->flush_done = f->ticket;
        p->flushes[i] = p->flushes[--p->n_flushes];
    }
}

/* Until ticket is done, the peer fails or timeout_ms passes (lock held). */
static enum wd_status flush_wait(struct wd_kv_peer *p, uint64_t ticket, int timeout_ms,
                                 struct wd_error *err)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (unsigned iter = 0;; iter++) {
        flush_poll(p);
        if (p->flush_done >= ticket)
            return WD_OK;
        if (iter % 64 != 63)
            continue;
        WD_CHECK(peer_check(p, err));
        if (now_ms() >= deadline)
            return wd_error_set(err, WD_ERR_TIMEOUT,
                                "%s: flush to %s not done within %d ms (is it progressing?)",
                                p->t->scope, p->name, timeout_ms);
        sched_yield();
    }
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
        st = flush_issue(p, &ticket, err);
    if (st == WD_OK)
        st = flush_wait(p, ticket, t->connect_timeout_ms, err);
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
    int64_t deadline = now_ms() + CLOSE_TIMEOUT_MS;
    while (is_closed && p->n_inflight > 0 && now_ms() < deadline)
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

/* --- puts and flushes ------------------------------------------------------------------ */

/* Progresses until *count (queued puts, or those reading the stage) is at most target
 * (lock held). */
static enum wd_status drain(struct wd_kv_peer *p, const int *count, int target,
                            struct wd_error *err)
{
    int64_t deadline = now_ms() + p->t->op_timeout_ms;
    for (unsigned iter = 0; *count > target; iter++) {
        ucp_worker_progress(p->t->u->worker);
        if (iter % 64 != 63)
            continue;
        WD_CHECK(peer_check(p, err));
        if (now_ms() >= deadline)
            return wd_error_set(err, WD_ERR_TIMEOUT, "%s: %d puts to %s still queued after %d ms",
                                p->t->scope, p->n_inflight, p->name, p->t->op_timeout_ms);
    }
    return WD_OK;
}

static enum wd_status put_bytes(struct wd_kv_peer *p, const uint8_t *src, uint64_t dst, size_t len,
                                int is_staged, struct wd_error *err)
{
    ucp_request_param_t prm = {.op_attr_mask =
                                   UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
                               .cb.send = is_staged ? staged_put_done : put_done,
                               .user_data = p};
    ucs_status_ptr_t r = ucp_put_nbx(p->ep, src, len, dst, p->rkey, &prm);
    if (UCS_PTR_IS_ERR(r)) {
        mark_failed(p, UCS_PTR_STATUS(r));
        return peer_check(p, err);
    }
    p->stats.n_puts++;
    p->stats.n_bytes += len;
    if (r != NULL && is_staged)
        p->n_stage_inflight++;
    if (r != NULL && ++p->n_inflight >= MAX_INFLIGHT)
        return drain(p, &p->n_inflight, MAX_INFLIGHT / 2, err);
    return WD_OK;
}

/* One of K or V of one layer: where its rows start on both sides and their strides. */
struct rows {
    const uint8_t *src; /* local layer base */
    uint64_t dst;       /* remote layer base, in the remote's address space */
    size_t lpage, lslot, rpage, rslot;
    size_t head_w;         /* bytes of one head */
    size_t lhead0, rhead0; /* byte offset of the first moved head inside a row */
};

/* The K (is_v 0) or V strides of a geometry. */
struct kv_strides {
    size_t off, layer, page, slot, head;
};

static struct kv_strides strides_of(const struct wd_kv_geometry *g, int is_v)
{
    if (is_v)
        return (struct kv_strides){g->v_offset, g->layer_stride_v, g->page_stride_v,
                                   g->slot_stride_v, g->head_stride_v};
    return (struct kv_strides){g->k_offset, g->layer_stride_k, g->page_stride_k, g->slot_stride_k,
                               g->head_stride_k};
}

static struct rows rows_of(const struct wd_kv_peer *p, int layer, int is_v)
{
    struct kv_strides l = strides_of(&p->t->geo, is_v), r = strides_of(&p->desc.geo, is_v);
    size_t lh = (size_t)(p->h0 - p->t->heads.begin), rh = (size_t)(p->h0 - p->desc.heads.begin);
    return (struct rows){.src = (const uint8_t *)p->t->region + l.off + (size_t)layer * l.layer,
                         .dst = p->desc.base + r.off + (uint64_t)layer * r.layer,
                         .lpage = l.page,
                         .lslot = l.slot,
                         .rpage = r.page,
                         .rslot = r.slot,
                         .head_w = l.head,
                         .lhead0 = lh * l.head,
                         .rhead0 = rh * r.head};
}

/* Packed slices (the remote row is exactly the moved heads): a run of tokens on
 * consecutive remote pages, at most `per` of them, is gathered into the stage and put as
 * one block. The stage is reused once no queued put reads it. */
static enum wd_status put_packed(struct wd_kv_peer *p, const struct rows *r,
                                 const struct wd_kv_span *sp, size_t seg, int per,
                                 struct wd_error *err)
{
    int ps = p->t->geo.page_size;
    const int32_t *lp = sp->local_pages, *rp = sp->remote_pages;
    for (int tok = sp->tok_begin; tok < sp->tok_end;) {
        int end = tok + 1;
        while (end < sp->tok_end && end - tok < per &&
               (end % ps != 0 || rp[end / ps] == rp[end / ps - 1] + 1))
            end++;
        size_t need = (size_t)(end - tok) * seg;
        if (p->stage_used + need > p->stage_bytes) {
            WD_CHECK(drain(p, &p->n_stage_inflight, 0, err));
            p->stage_used = 0;
        }
        uint8_t *buf = p->stage + p->stage_used;
        for (int k = tok; k < end; k++) {
            int i = k / ps, s = k % ps;
            memcpy(buf + (size_t)(k - tok) * seg,
                   r->src + (size_t)lp[i] * r->lpage + (size_t)s * r->lslot + r->lhead0, seg);
        }
        uint64_t dst = r->dst + (uint64_t)rp[tok / ps] * r->rpage + (uint64_t)(tok % ps) * r->rslot;
        WD_CHECK(put_bytes(p, buf, dst, need, 1, err));
        p->stage_used += need;
        tok = end;
    }
    return WD_OK;
}

static enum wd_status put_rows(struct wd_kv_peer *p, const struct rows *r,
                               const struct wd_kv_span *sp, struct wd_error *err)
{
    int ps = p->t->geo.page_size;
    int first = sp->tok_begin / ps, last = (sp->tok_end - 1) / ps;
    const int32_t *lp = sp->local_pages, *rp = sp->remote_pages;
    size_t seg = (size_t)p->n_heads * r->head_w;
    if (p->is_packed && p->stage_bytes / seg > 0)
        return put_packed(p, r, sp, seg, (int)(p->stage_bytes / seg), err);
    if (!p->is_whole) {
        /* Sliced heads: a slot's moved heads are contiguous on both sides, but the next
         * slot's are a row further on at least one side. */
        for (int tok = sp->tok_begin; tok < sp->tok_end; tok++) {
            int i = tok / ps, s = tok % ps;
            const uint8_t *src =
                r->src + (size_t)lp[i] * r->lpage + (size_t)s * r->lslot + r->lhead0;
            uint64_t dst = r->dst + (uint64_t)rp[i] * r->rpage + (uint64_t)s * r->rslot + r->rhead0;
            WD_CHECK(put_bytes(p, src, dst, seg, 0, err));
        }
        return WD_OK;
    }
    /* Whole rows: a run of pages consecutive on both sides is one block of slots. */
    for (int i = first; i <= last;) {
        int j = i;
        while (j < last && lp[j + 1] == lp[j] + 1 && rp[j + 1] == rp[j] + 1)
            j++;
        int s0 = i == first ? sp->tok_begin % ps : 0;
        int s1 = j == last ? (sp->tok_end - 1) % ps + 1 : ps;
        size_t n_slots = (size_t)(j - i) * (size_t)ps + (size_t)(s1 - s0);
        const uint8_t *src = r->src + (size_t)lp[i] * r->lpage + (size_t)s0 * r->lslot;
        uint64_t dst = r->dst + (uint64_t)rp[i] * r->rpage + (uint64_t)s0 * r->rslot;
        WD_CHECK(put_bytes(p, src, dst, n_slots * r->lslot, 0, err));
        i = j + 1;
    }
    return WD_OK;
}

static enum wd_status check_span(const struct wd_kv_peer *p, const struct wd_kv_span *sp, int layer,
                                 struct wd_error *err)
{
    const struct wd_kv_geometry *g = &p->t->geo;
    int64_t cap = (int64_t)sp->n_pages * g->page_size;
    if (layer < 0 || layer >= g->n_layers || sp->n_pages < 0 || sp->tok_begin < 0 ||
        sp->tok_begin > sp->tok_end || sp->tok_end > cap ||
        (sp->n_pages > 0 && (!sp->local_pages || !sp->remote_pages)))
        return wd_error_set(err, WD_ERR_INVALID, "%s -> %s: layer %d, tokens [%d, %d) of %d pages",
                            p->t->scope, p->name, layer, sp->tok_begin, sp->tok_end, sp->n_pages);
    if (sp->tok_begin == sp->tok_end)
        return WD_OK;
    for (int i = sp->tok_begin / g->page_size; i <= (sp->tok_end - 1) / g->page_size; i++) {
        int32_t l = sp->local_pages[i], r = sp->remote_pages[i];
        if (l < 0 || l >= g->n_pages || r < 0 || r >= p->desc.geo.n_pages)
            return wd_error_set(err, WD_ERR_INVALID,
                                "%s -> %s: page %d: local id %d of %d, remote id %d of %d",
                                p->t->scope, p->name, i, l, g->n_pages, r, p->desc.geo.n_pages);
    }
    return WD_OK;
}

enum wd_status wd_kv_transfer_put(struct wd_kv_peer *p, const struct wd_kv_span *span, int layer,
                                  struct wd_error *err)
{
    struct wd_kv_transfer *t = p->t;
    WD_CHECK(check_span(p, span, layer, err));
    pthread_mutex_lock(&t->mu);
    enum wd_status st = peer_check(p, err);
    if (st != WD_OK || p->n_heads == 0 || span->tok_begin == span->tok_end) {
        pthread_mutex_unlock(&t->mu);
        return st;
    }
    if (p->n_stage_inflight == 0)
        p->stage_used = 0;
    struct rows k = rows_of(p, layer, 0);
    st = put_rows(p, &k, span, err);
    if (st == WD_OK && t->geo.v_row > 0) {
        struct rows v = rows_of(p, layer, 1);
        st = put_rows(p, &v, span, err);
    }
    /* Start moving what UCX queued (TCP sends from the progress call). */
    ucp_worker_progress(t->u->worker);
    pthread_mutex_unlock(&t->mu);
    return st;
}

enum wd_status wd_kv_transfer_flush_begin(struct wd_kv_peer *p, uint64_t *ticket_p,
                                          struct wd_error *err)
{
    pthread_mutex_lock(&p->t->mu);
    enum wd_status st = flush_issue(p, ticket_p, err);
    pthread_mutex_unlock(&p->t->mu);
    return st;
}

enum wd_status wd_kv_transfer_flush_test(struct wd_kv_peer *p, uint64_t ticket, int *is_done_p,
                                         struct wd_error *err)
{
    pthread_mutex_lock(&p->t->mu);
    flush_poll(p);
    int is_done = p->flush_done >= ticket;
    /* Data that landed before the peer failed has landed: done wins. */
    enum wd_status st = is_done ? WD_OK : peer_check(p, err);
    pthread_mutex_unlock(&p->t->mu);
    if (st == WD_OK)
        *is_done_p = is_done;
    return st;
}

enum wd_status wd_kv_transfer_flush(struct wd_kv_peer *p, int timeout_ms, struct wd_error *err)
{
    pthread_mutex_lock(&p->t->mu);
    uint64_t ticket;
    enum wd_status st = flush_issue(p, &ticket, err);
    if (st == WD_OK)
        st = flush_wait(p, ticket, timeout_ms, err);
    pthread_mutex_unlock(&p->t->mu);
    return st;
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

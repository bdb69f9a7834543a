/* The KV transfer test world: rank processes, the parent's orchestration, the payload and
 * its exact check. See wd_kv_world.h. */
#include "tests/unit/wd_kv_world.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/kv/kv_pool.h"

#define MSG_CAP 8192
#define STEP_TIMEOUT_MS 60000
#define MAX_RANKS 8

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void set_msg(struct kv_world_result *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_msg(struct kv_world_result *res, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->msg, sizeof(res->msg), fmt, ap);
    va_end(ap);
}

/* --- messages: one byte of kind, then the body ----------------------------------------- */

static int send_msg(int fd, char kind, const void *body, size_t len)
{
    uint8_t buf[MSG_CAP];
    if (len + 1 > sizeof(buf))
        return -1;
    buf[0] = (uint8_t)kind;
    if (len)
        memcpy(buf + 1, body, len);
    return send(fd, buf, len + 1, MSG_NOSIGNAL) == (ssize_t)(len + 1) ? 0 : -1;
}

/* Length of the message received into buf (kind first), -1 on timeout, error or EOF. */
static ssize_t recv_msg(int fd, uint8_t *buf, size_t cap, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rc = poll(&p, 1, timeout_ms);
    if (rc <= 0)
        return -1;
    ssize_t n = recv(fd, buf, cap, 0);
    return n > 0 ? n : -1;
}

/* --- geometry and payload -------------------------------------------------------------- */

static void rank_config(const struct kv_world *w, int is_decode, int rank,
                        struct wd_kv_pool_config *pc, struct wd_kv_heads *h)
{
    int tp = is_decode ? w->decode_tp : w->prefill_tp;
    WD_ASSERT(wd_kv_heads_for_rank(w->kind, w->n_kv_heads, tp, rank, h, NULL) == WD_OK);
    int nh = h->end - h->begin;
    memset(pc, 0, sizeof(*pc));
    pc->n_layers = w->n_layers;
    pc->page_size = is_decode && w->decode_page_size ? w->decode_page_size : w->page_size;
    pc->n_pages = w->n_pages;
    pc->n_heads = nh;
    pc->dtype = w->dtype;
    pc->k_row = nh * w->head_dim;
    pc->v_row = w->kind == WD_KV_MLA ? 0 : nh * w->head_dim;
}

static uint32_t xorshift(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* The rank's page ids in the order requests take them: consecutive, or shuffled. */
static void page_order(const struct kv_world *w, int is_decode, int rank, int32_t *ids)
{
    for (int i = 0; i < w->n_pages; i++)
        ids[i] = i;
    if (!w->is_scattered)
        return;
    uint32_t s = (is_decode ? 1000u : 2000u) + (uint32_t)rank * 7919u;
    for (int i = w->n_pages - 1; i > 0; i--) {
        int j = (int)(xorshift(&s) % (uint32_t)(i + 1));
        int32_t v = ids[i];
        ids[i] = ids[j];
        ids[j] = v;
    }
}

static int pages_of(const struct kv_world *w, int r)
{
    return (w->n_tokens[r] + w->page_size - 1) / w->page_size;
}

static int first_page_of(const struct kv_world *w, int r)
{
    int off = 0;
    for (int i = 0; i < r; i++)
        off += pages_of(w, i);
    return off;
}

static uint32_t mix(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

/* The bits element e of head h (the model's index) of token t, layer l, request r holds in
 * K (kv 0) or V (kv 1): exact small integers first, then a hash as a finite value. */
static uint32_t expect_bits(const struct kv_world *w, int kv, int r, int l, int t, int h, int e)
{
    int small[6] = {r, l, t / 128, t % 128, h, kv};
    if (e < 6) {
        float f = (float)small[e];
        uint32_t u;
        memcpy(&u, &f, 4);
        return w->dtype == WD_DTYPE_BF16 ? u >> 16 : u;
    }
    uint32_t x =
        mix((((((uint32_t)r * 64u + (uint32_t)l) * 4096u + (uint32_t)t) * 64u + (uint32_t)h) * 2u +
             (uint32_t)kv) *
                4096u +
            (uint32_t)e);
    if (w->dtype == WD_DTYPE_BF16) /* sign, exponent 120..135, 7 mantissa bits */
        return (x & 0x807Fu) | (120u + ((x >> 8) & 15u)) << 7;
    return (x & 0x807FFFFFu) | 127u << 23; /* +-[1, 2) */
}

static uint8_t *elem_ptr(uint8_t *region, const struct wd_kv_geometry *g, int kv, int l, int page,
                         int slot, int hl, int e)
{
    if (kv == 0)
        return region + g->k_offset + (size_t)l * g->layer_stride_k +
               (size_t)page * g->page_stride_k + (size_t)slot * g->slot_stride_k +
               (size_t)hl * g->head_stride_k + (size_t)e * g->elem_bytes;
    return region + g->v_offset + (size_t)l * g->layer_stride_v + (size_t)page * g->page_stride_v +
           (size_t)slot * g->slot_stride_v + (size_t)hl * g->head_stride_v +
           (size_t)e * g->elem_bytes;
}

/* Writes every request's rows for the heads h (model indices [h->begin, h->end)) into the
 * image of a pool of geometry g, pages in `order`. */
static void write_rows(const struct kv_world *w, uint8_t *img, const struct wd_kv_geometry *g,
                       const struct wd_kv_heads *h, const int32_t *order)
{
    int n_kv = g->v_row > 0 ? 2 : 1, width = g->k_row / g->n_heads;
    for (int r = 0; r < w->n_requests; r++) {
        const int32_t *pages = order + first_page_of(w, r);
        for (int t = 0; t < w->n_tokens[r]; t++)
            for (int l = 0; l < g->n_layers; l++)
                for (int kv = 0; kv < n_kv; kv++)
                    for (int hl = 0; hl < h->end - h->begin; hl++)
                        for (int e = 0; e < width; e++) {
                            uint32_t bits = expect_bits(w, kv, r, l, t, h->begin + hl, e);
                            uint8_t *p = elem_ptr(img, g, kv, l, pages[t / g->page_size],
                                                  t % g->page_size, hl, e);
                            memcpy(p, &bits, g->elem_bytes); /* little-endian low bytes */
                        }
    }
}

static void fill_pattern(uint8_t *img, size_t n, uint32_t salt)
{
    for (size_t i = 0; i < n; i++)
        img[i] = (uint8_t)((i * 131u + salt) ^ (i >> 12));
}

/* Names the place of byte `off` of a pool region, for a failure message. */
static void describe(const struct wd_kv_geometry *g, size_t off, char *buf, size_t cap)
{
    int kv = g->v_row > 0 && off >= g->v_offset;
    size_t base = kv ? g->v_offset : g->k_offset;
    size_t ls = kv ? g->layer_stride_v : g->layer_stride_k;
    size_t pst = kv ? g->page_stride_v : g->page_stride_k;
    size_t ss = kv ? g->slot_stride_v : g->slot_stride_k;
    size_t hs = kv ? g->head_stride_v : g->head_stride_k;
    size_t rel = off - base;
    if (rel >= ls * (size_t)g->n_layers) {
        snprintf(buf, cap, "byte %zu (past the rows)", off);
        return;
    }
    size_t l = rel / ls, in_l = rel % ls, page = in_l / pst, in_p = in_l % pst;
    size_t slot = in_p / ss, in_s = in_p % ss;
    snprintf(buf, cap, "byte %zu (%s layer %zu page %zu slot %zu head %zu element %zu)", off,
             kv ? "V" : "K", l, page, slot, in_s / hs, (in_s % hs) / g->elem_bytes);
}

/* --- rank processes -------------------------------------------------------------------- */

static int decode_main(const struct kv_world *w, int rank, int fd)
{
    struct wd_kv_pool_config pc;
    struct wd_kv_heads h;
    rank_config(w, 1, rank, &pc, &h);
    struct wd_kv_pool *pool = NULL;
    struct wd_kv_transfer *t = NULL;
    struct wd_error err = {0};
    char name[64];
    snprintf(name, sizeof(name), "decode rank %d", rank);
    if (wd_kv_pool_create(&pc, &pool, &err) != WD_OK)
        return send_msg(fd, 'e', err.msg, strlen(err.msg) + 1), 1;
    fill_pattern(pool->region, pool->geo.region_bytes, 7u + (uint32_t)rank);
    struct wd_kv_transfer_config tc = {.region = pool->region,
                                       .geo = pool->geo,
                                       .heads = h,
                                       .name = name,
                                       .is_progress_thread = !w->is_decode_polling};
    if (wd_kv_transfer_create(&tc, &t, &err) != WD_OK) {
        send_msg(fd, 'e', err.msg, strlen(err.msg) + 1);
        wd_kv_pool_destroy(pool);
        return 1;
    }
    size_t dlen;
    const void *desc = wd_kv_transfer_descriptor(t, &dlen);
    send_msg(fd, 'd', desc, dlen);
    uint8_t buf[MSG_CAP];
    int rc = 0;
    for (;;) {
        if (w->is_decode_polling)
            wd_kv_transfer_progress(t);
        ssize_t n = recv_msg(fd, buf, sizeof(buf), w->is_decode_polling ? 0 : STEP_TIMEOUT_MS);
        if (n < 0) {
            if (w->is_decode_polling)
                continue;
            rc = 1;
            break;
        }
        if (buf[0] == 'X')
            break;
        if (buf[0] != 'K')
            continue;
        /* The check: the expected image is the pattern with every request's rows for this
         * rank's heads written where its page table puts them. */
        struct kv_world_result res = {0};
        size_t nb = pool->geo.region_bytes;
        uint8_t *img = malloc(nb);
        int32_t *order = malloc(sizeof(int32_t) * (size_t)w->n_pages);
        fill_pattern(img, nb, 7u + (uint32_t)rank);
        page_order(w, 1, rank, order);
        write_rows(w, img, &pool->geo, &h, order);
        for (size_t i = 0; i < nb; i++) {
            if (img[i] != pool->region[i]) {
                char where[160];
                describe(&pool->geo, i, where, sizeof(where));
                res.status = WD_ERR_INVALID;
                set_msg(&res, "decode rank %d: %s is 0x%02x, expected 0x%02x", rank, where,
                        pool->region[i], img[i]);
                break;
            }
        }
        res.n_checked_ranks = res.status == WD_OK;
        free(img);
        free(order);
        send_msg(fd, 'r', &res, sizeof(res));
    }
    wd_kv_transfer_destroy(t);
    wd_kv_pool_destroy(pool);
    return rc;
}

struct prefill_peer {
    struct wd_kv_peer *p;
    int rank;
    int32_t order[4096]; /* the decode rank's page order (the test's page table) */
};

static enum wd_status prefill_transfer(const struct kv_world *w, int fd, struct prefill_peer *pp,
                                       int n_peers, const int32_t *lorder,
                                       struct kv_world_result *res, struct wd_error *err)
{
    double t_kill = 0;
    for (int r = 0; r < w->n_requests; r++) {
        int step = w->chunk > 0 ? w->chunk : w->n_tokens[r];
        for (int t0 = 0; t0 < w->n_tokens[r]; t0 += step) {
            int t1 = t0 + step < w->n_tokens[r] ? t0 + step : w->n_tokens[r];
            for (int l = 0; l < w->n_layers; l++) {
                for (int i = 0; i < n_peers; i++) {
                    struct wd_kv_span sp = {.local_pages = lorder + first_page_of(w, r),
                                            .remote_pages = pp[i].order + first_page_of(w, r),
                                            .n_pages = pages_of(w, r),
                                            .tok_begin = t0,
                                            .tok_end = t1};
                    enum wd_status st = wd_kv_transfer_put(pp[i].p, &sp, l, err);
                    if (st != WD_OK) {
                        res->after_kill_ms = t_kill ? now_ms() - t_kill : 0;
                        return st;
                    }
                }
                if (r == 0 && t0 == 0 && l == w->kill_after_layer) {
                    uint8_t buf[16];
                    send_msg(fd, 'M', NULL, 0);
                    if (recv_msg(fd, buf, sizeof(buf), STEP_TIMEOUT_MS) < 1 || buf[0] != 'C')
                        return wd_error_set(err, WD_ERR_TIMEOUT, "no word from the parent");
                    t_kill = now_ms();
                }
            }
        }
    }
    for (int i = 0; i < n_peers; i++) {
        enum wd_status st = wd_kv_transfer_flush(pp[i].p, w->flush_timeout_ms, err);
        if (st != WD_OK) {
            res->after_kill_ms = t_kill ? now_ms() - t_kill : 0;
            return st;
        }
    }
    return WD_OK;
}

static int prefill_main(const struct kv_world *w, int rank, int fd)
{
    struct wd_kv_pool_config pc;
    struct wd_kv_heads h;
    rank_config(w, 0, rank, &pc, &h);
    struct wd_kv_pool *pool = NULL;
    struct wd_kv_transfer *t = NULL;
    struct wd_error err = {0};
    char name[64];
    snprintf(name, sizeof(name), "prefill rank %d", rank);
    if (wd_kv_pool_create(&pc, &pool, &err) != WD_OK)
        return send_msg(fd, 'e', err.msg, strlen(err.msg) + 1), 1;
    int32_t *lorder = malloc(sizeof(int32_t) * (size_t)w->n_pages);
    page_order(w, 0, rank, lorder);
    fill_pattern(pool->region, pool->geo.region_bytes, 0x5Au + (uint32_t)rank);
    write_rows(w, pool->region, &pool->geo, &h, lorder);
    struct wd_kv_transfer_config tc = {.region = pool->region,
                                       .geo = pool->geo,
                                       .heads = h,
                                       .name = name,
                                       .stage_bytes = w->stage_bytes};
    if (wd_kv_transfer_create(&tc, &t, &err) != WD_OK) {
        send_msg(fd, 'e', err.msg, strlen(err.msg) + 1);
        return 1;
    }
    size_t dlen;
    const void *desc = wd_kv_transfer_descriptor(t, &dlen);
    send_msg(fd, 'd', desc, dlen);

    /* Decode descriptors, then "go": connect to every decode rank this rank writes. */
    struct prefill_peer *pp = calloc(MAX_RANKS, sizeof(*pp));
    int n_peers = 0;
    uint8_t buf[MSG_CAP];
    struct kv_world_result res = {0};
    enum wd_status st = WD_OK;
    for (;;) {
        ssize_t n = recv_msg(fd, buf, sizeof(buf), STEP_TIMEOUT_MS);
        if (n < 1)
            return 1;
        if (buf[0] == 'G')
            break;
        int drank = buf[1];
        struct wd_kv_desc d;
        st = wd_kv_desc_parse(buf + 2, (size_t)n - 2, &d, &err);
        int b, e;
        if (st != WD_OK || wd_kv_heads_overlap(&h, &d.heads, &b, &e) == 0)
            continue;
        char pname[64];
        snprintf(pname, sizeof(pname), "decode rank %d", drank);
        st = wd_kv_transfer_connect(t, buf + 2, (size_t)n - 2, pname, &pp[n_peers].p, &err);
        if (st != WD_OK)
            break;
        pp[n_peers].rank = drank;
        page_order(w, 1, drank, pp[n_peers].order);
        n_peers++;
    }
    if (st == WD_OK)
        st = prefill_transfer(w, fd, pp, n_peers, lorder, &res, &err);
    res.status = st;
    if (st != WD_OK)
        set_msg(&res, "%s", err.msg);
    for (int i = 0; i < n_peers; i++) {
        struct wd_kv_peer_stats s;
        wd_kv_transfer_peer_stats(pp[i].p, &s);
        res.n_puts += s.n_puts;
        res.n_bytes += s.n_bytes;
    }
    send_msg(fd, 'r', &res, sizeof(res));
    while (recv_msg(fd, buf, sizeof(buf), STEP_TIMEOUT_MS) >= 1 && buf[0] != 'X') {
    }
    for (int i = 0; i < n_peers; i++)
        wd_kv_transfer_disconnect(pp[i].p);
    wd_kv_transfer_destroy(t);
    wd_kv_pool_destroy(pool);
    free(pp);
    free(lorder);
    return 0;
}

int kv_world_child(const struct kv_world *w, int is_decode, int rank, int fd)
{
    return is_decode ? decode_main(w, rank, fd) : prefill_main(w, rank, fd);
}

/* --- the parent ------------------------------------------------------------------------ */

static pid_t fork_spawn(const struct kv_world *w, int is_decode, int rank, int fd, int *close_fds,
                        int n_close)
{
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < n_close; i++)
            if (close_fds[i] != fd)
                close(close_fds[i]);
        _exit(kv_world_child(w, is_decode, rank, fd));
    }
    return pid;
}

static void worse(struct kv_world_result *res, int status, const char *msg)
{
    if (res->status == WD_OK && status != WD_OK) {
        res->status = status;
        set_msg(res, "%s", msg);
    }
}

int kv_world_run(const struct kv_world *w, kv_world_spawn_fn spawn, void *spawn_arg,
                 struct kv_world_result *res)
{
    int P = w->prefill_tp, D = w->decode_tp, N = P + D;
    int sv[2 * MAX_RANKS][2], mine[2 * MAX_RANKS], theirs[2 * MAX_RANKS];
    pid_t pid[2 * MAX_RANKS];
    uint8_t desc[MAX_RANKS][MSG_CAP];
    ssize_t dlen[MAX_RANKS];
    memset(res, 0, sizeof(*res));
    WD_ASSERT(N <= 2 * MAX_RANKS && P <= MAX_RANKS && D <= MAX_RANKS);
    for (int i = 0; i < N; i++) {
        WD_ASSERT(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv[i]) == 0);
        mine[i] = sv[i][0];
        theirs[i] = sv[i][1];
        fcntl(mine[i], F_SETFD, FD_CLOEXEC); /* a rank started by exec keeps only its end */
    }
    fflush(stdout); /* or the children print it again */
    /* Ranks 0..D-1 are decode, D..N-1 prefill (decode first: they must be listening). */
    for (int i = 0; i < N; i++) {
        int is_decode = i < D, rank = is_decode ? i : i - D;
        pid[i] = spawn ? spawn(spawn_arg, is_decode, rank, theirs[i])
                       : fork_spawn(w, is_decode, rank, theirs[i], mine, N);
    }
    for (int i = 0; i < N; i++)
        close(theirs[i]);
    uint8_t buf[MSG_CAP];
    for (int i = 0; i < N && res->status == WD_OK; i++) {
        ssize_t n = recv_msg(mine[i], buf, sizeof(buf), STEP_TIMEOUT_MS);
        if (n < 1 || buf[0] != 'd') {
            worse(res, WD_ERR_IO, n > 1 ? (char *)buf + 1 : "a rank sent no descriptor");
            break;
        }
        if (i < D) {
            memcpy(desc[i], buf + 1, (size_t)n - 1);
            dlen[i] = n - 1;
        }
    }
    for (int i = D; i < N && res->status == WD_OK; i++) {
        for (int d = 0; d < D; d++) {
            uint8_t m[MSG_CAP];
            m[0] = (uint8_t)d;
            memcpy(m + 1, desc[d], (size_t)dlen[d]);
            send_msg(mine[i], 'D', m, (size_t)dlen[d] + 1);
        }
        send_msg(mine[i], 'G', NULL, 0);
    }
    int is_kill = w->kill_after_layer >= 0;
    double t_kill = 0;
    if (is_kill && res->status == WD_OK) {
        ssize_t n = recv_msg(mine[D], buf, sizeof(buf), STEP_TIMEOUT_MS);
        if (n >= 1 && buf[0] == 'M') {
            kill(pid[0], SIGKILL); /* not reaped until the end: a zombie, as a real crash */
            t_kill = now_ms();
            send_msg(mine[D], 'C', NULL, 0);
        } else {
            worse(res, WD_ERR_IO, "the prefill rank never reached the kill point");
        }
    }
    for (int i = D; i < N && res->status == WD_OK; i++) {
        struct kv_world_result r;
        ssize_t n = recv_msg(mine[i], buf, sizeof(buf), STEP_TIMEOUT_MS);
        if (n != (ssize_t)sizeof(r) + 1 || buf[0] != 'r') {
            worse(res, WD_ERR_IO, "a prefill rank sent no result");
            break;
        }
        memcpy(&r, buf + 1, sizeof(r));
        res->n_puts += r.n_puts;
        res->n_bytes += r.n_bytes;
        if (is_kill) {
            res->after_kill_ms = now_ms() - t_kill;
            res->status = r.status;
            set_msg(res, "%s", r.msg);
        } else {
            worse(res, r.status, r.msg);
        }
    }
    for (int i = 0; i < D && !is_kill && res->status == WD_OK; i++) {
        struct kv_world_result r;
        send_msg(mine[i], 'K', NULL, 0);
        ssize_t n = recv_msg(mine[i], buf, sizeof(buf), STEP_TIMEOUT_MS);
        if (n != (ssize_t)sizeof(r) + 1 || buf[0] != 'r') {
            worse(res, WD_ERR_IO, "a decode rank sent no check");
            break;
        }
        memcpy(&r, buf + 1, sizeof(r));
        res->n_checked_ranks += r.n_checked_ranks;
        worse(res, r.status, r.msg);
    }
    int rc = res->status == WD_OK ? 0 : 1;
    for (int i = 0; i < N; i++)
        send_msg(mine[i], 'X', NULL, 0);
    /* Reap: every rank gets 30 s to leave, then is killed. */
    double deadline = now_ms() + 30000;
    for (int i = 0; i < N; i++) {
        int status = 0;
        while (pid[i] > 0 && waitpid(pid[i], &status, WNOHANG) == 0) {
            if (now_ms() > deadline) {
                kill(pid[i], SIGKILL);
                waitpid(pid[i], &status, 0);
                worse(res, WD_ERR_TIMEOUT, "a rank did not exit");
                rc = 1;
                break;
            }
            usleep(2000);
        }
        int killed = is_kill && i == 0;
        if (!killed && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
            char m[64];
            snprintf(m, sizeof(m), "rank process %d ended with status 0x%x", i, status);
            worse(res, WD_ERR_IO, m);
            rc = 1;
        }
        close(mine[i]);
    }
    return rc;
}

/*
 * wideep-bench kv: prefill -> decode KV transfer (common/net/kv_transfer) between two
 * processes, one prefill rank and one decode rank, over whatever UCX_TLS selects, beside a
 * raw UCX put of the same bytes measured in the same run between the same two processes.
 *
 * Per request size (tokens): the transfer is what the prefill's per-layer hook does, every
 * layer's K and V pages put (pages scattered over the pools unless --consecutive), then
 * one flush; the time runs from the first put to the flush's return, median over the
 * iterations. Baselines, the same bytes from the prefill's region into the decode's
 * region through a UCX context and endpoint of their own, then an endpoint flush:
 *   raw block:  one ucp_put_nbx of every byte (the ceiling);
 *   raw pieces: as many puts as the transfer issued, each of the mean piece size, at
 *               consecutive addresses (what the layout leaves: our overhead alone).
 * Layouts: whole (every head on both sides: page runs merge), gather (prefill attention
 * tp2 rank 0 into a decode rank holding every head: a put per token and layer), split
 * (prefill tp1 into decode tp2 rank 0: a put per token and layer). Fixed cost per request:
 * the 1-token request's time, beside the raw put + flush of its bytes.
 *
 * The decode rank is passive, as in serving: its object's progress thread applies what
 * arrives (TCP emulates RMA with messages the target handles).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/comm/ucx.h"
#include "common/config/flags.h"
#include "common/kv/kv_pool.h"
#include "common/net/kv_transfer.h"
#include "tests/bench/bench_util.h"

#define MAX_SIZES 16
#define BYTES_PER_SIZE ((double)(256 << 20)) /* iterations: about this much per size */
#define GOAL_RATIO 0.9
#define GOAL_RATIO_FROM ((double)(1 << 20))
#define GOAL_FIXED_US 200.0

struct kv_opts {
    int layers, page_size, head_dim, kv_heads, min_iters, max_iters, is_consecutive, seed;
    enum wd_dtype dtype;
    int n_sizes;
    int tokens[MAX_SIZES];
};

struct layout {
    const char *name;
    int ptp, prank, dtp, drank;
    const char *what;
};

static const struct layout g_layouts[] = {
    {"whole", 1, 0, 1, 0, "prefill attn tp1 -> decode attn tp1: every head on both sides"},
    {"gather", 2, 0, 1, 0, "prefill attn tp2 rank 0 -> decode DP attention: half of each row"},
    {"split", 1, 0, 2, 0, "prefill attn tp1 -> decode attn tp2 rank 0: half of each row"},
};

struct raw_ep {
    struct wd_ucx *u;
    ucp_mem_h memh;
    ucp_ep_h ep;
    ucp_rkey_h rkey;
    uint64_t base;
    int is_unguarded; /* no peer-failure handling: closed by flushing */
};

static const struct wd_ucx_who g_who = {.scope = "bench kv", .what = "raw put", .peer_rank = -1};

static int max_tokens(const struct kv_opts *o)
{
    int m = 0;
    for (int i = 0; i < o->n_sizes; i++)
        m = o->tokens[i] > m ? o->tokens[i] : m;
    return m;
}

static void pool_config(const struct kv_opts *o, int tp, int rank, struct wd_kv_pool_config *pc,
                        struct wd_kv_heads *h)
{
    WD_ASSERT(wd_kv_heads_for_rank(WD_KV_GQA, o->kv_heads, tp, rank, h, NULL) == WD_OK);
    int nh = h->end - h->begin;
    /* Twice the pages of the largest request, so scattered ids spread over the pool. */
    int pages = 2 * ((max_tokens(o) + o->page_size - 1) / o->page_size) + 2;
    *pc = (struct wd_kv_pool_config){.n_layers = o->layers,
                                     .page_size = o->page_size,
                                     .n_pages = pages,
                                     .k_row = nh * o->head_dim,
                                     .v_row = nh * o->head_dim,
                                     .n_heads = nh,
                                     .dtype = o->dtype};
}

/* The decode rank: its pool and transfer object, the descriptor written to `out`, then it
 * waits for `in` to close. */
static int decode_main(const struct kv_opts *o, const struct layout *ly, int out, int in)
{
    struct wd_kv_pool_config pc;
    struct wd_kv_heads h;
    pool_config(o, ly->dtp, ly->drank, &pc, &h);
    struct wd_kv_pool *pool;
    struct wd_kv_transfer *t;
    struct wd_error err = {0};
    if (wd_kv_pool_create(&pc, &pool, &err) != WD_OK) {
        fprintf(stderr, "wideep-bench kv: decode: %s\n", err.msg);
        return 1;
    }
    memset(pool->region, 0, pool->geo.region_bytes); /* fault the pages in */
    struct wd_kv_transfer_config tc = {.region = pool->region,
                                       .geo = pool->geo,
                                       .heads = h,
                                       .name = "decode rank",
                                       .is_progress_thread = 1};
    if (wd_kv_transfer_create(&tc, &t, &err) != WD_OK) {
        fprintf(stderr, "wideep-bench kv: decode: %s\n", err.msg);
        return 1;
    }
    size_t len;
    const void *d = wd_kv_transfer_descriptor(t, &len);
    uint32_t n = (uint32_t)len;
    int ok = write(out, &n, 4) == 4 && write(out, d, len) == (ssize_t)len;
    char c;
    while (ok && read(in, &c, 1) > 0) {
    }
    wd_kv_transfer_destroy(t);
    wd_kv_pool_destroy(pool);
    return ok ? 0 : 1;
}

/* The baseline's endpoint is made as the transfer's is (same error mode, same lanes). */
static void raw_error_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    (void)arg;
    (void)ep;
    fprintf(stderr, "wideep-bench kv: raw endpoint failed: %s\n", ucs_status_string(status));
}

static enum wd_status raw_open(struct raw_ep *r, void *region, size_t bytes,
                               const struct wd_kv_desc *d, struct wd_error *err)
{
    struct wd_ucx_config uc = {.features = UCP_FEATURE_RMA};
    WD_CHECK(wd_ucx_create_with(&uc, &r->u, err));
    WD_CHECK(wd_ucx_mem_map(r->u, region, bytes, &r->memh, &g_who, err));
    WD_CHECK(wd_ucx_ep_create(r->u, d->worker_addr, raw_error_cb, NULL, &r->ep, &r->is_unguarded,
                              &g_who, err));
    ucs_status_t s = ucp_ep_rkey_unpack(r->ep, d->rkey, &r->rkey);
    if (s != UCS_OK)
        return wd_ucx_error(err, s, &g_who);
    r->base = d->base;
    return WD_OK;
}

static void raw_close(struct raw_ep *r)
{
    if (!r->u)
        return;
    if (r->rkey)
        ucp_rkey_destroy(r->rkey);
    if (r->ep)
        wd_ucx_ep_close(r->u, r->ep, !r->is_unguarded, 2000, NULL, NULL, &g_who);
    if (r->memh)
        ucp_mem_unmap(r->u->ctx, r->memh);
    wd_ucx_destroy(r->u);
}

/* n_pieces puts covering `bytes` at consecutive addresses, then an endpoint flush. */
static enum wd_status raw_round(struct raw_ep *r, const uint8_t *src, size_t bytes,
                                uint64_t n_pieces, struct wd_error *err)
{
    size_t piece = (size_t)((bytes + n_pieces - 1) / n_pieces);
    ucp_request_param_t prm = {0};
    for (size_t off = 0; off < bytes; off += piece) {
        size_t len = bytes - off < piece ? bytes - off : piece;
        ucs_status_ptr_t q = ucp_put_nbx(r->ep, src + off, len, r->base + off, r->rkey, &prm);
        if (UCS_PTR_IS_ERR(q))
            return wd_ucx_error(err, UCS_PTR_STATUS(q), &g_who);
        if (q)
            ucp_request_free(q); /* the flush below covers it */
    }
    return wd_ucx_wait(r->u, ucp_ep_flush_nbx(r->ep, &prm), 60000, NULL, NULL, &g_who, err);
}

static void shuffle(int32_t *ids, int n, uint32_t seed)
{
    uint32_t s = seed * 2654435761u + 1u;
    for (int i = n - 1; i > 0; i--) {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        int j = (int)(s % (uint32_t)(i + 1));
        int32_t v = ids[i];
        ids[i] = ids[j];
        ids[j] = v;
    }
}

struct size_result {
    double bytes, puts, t_kv, t_block, t_pieces;
};

static enum wd_status measure(const struct kv_opts *o, struct wd_kv_peer *p, struct raw_ep *raw,
                              const uint8_t *src, int n_pages_local, int n_pages_remote, int tokens,
                              struct size_result *out, struct wd_error *err)
{
    int np = (tokens + o->page_size - 1) / o->page_size;
    int32_t *lp = malloc(sizeof(int32_t) * (size_t)n_pages_local);
    int32_t *rp = malloc(sizeof(int32_t) * (size_t)n_pages_remote);
    for (int i = 0; i < n_pages_local; i++)
        lp[i] = i;
    for (int i = 0; i < n_pages_remote; i++)
        rp[i] = i;
    if (!o->is_consecutive) {
        shuffle(lp, n_pages_local, (uint32_t)o->seed);
        shuffle(rp, n_pages_remote, (uint32_t)o->seed + 1);
    }
    struct wd_kv_span sp = {
        .local_pages = lp, .remote_pages = rp, .n_pages = np, .tok_begin = 0, .tok_end = tokens};
    /* One untimed request tells the bytes and puts per request. */
    struct wd_kv_peer_stats s0, s1;
    wd_kv_transfer_peer_stats(p, &s0);
    enum wd_status st = WD_OK;
    for (int l = 0; l < o->layers && st == WD_OK; l++)
        st = wd_kv_transfer_put(p, &sp, l, err);
    if (st == WD_OK)
        st = wd_kv_transfer_flush(p, 60000, err);
    wd_kv_transfer_peer_stats(p, &s1);
    double bytes = (double)(s1.n_bytes - s0.n_bytes), puts = (double)(s1.n_puts - s0.n_puts);
    int iters = (int)(BYTES_PER_SIZE / (bytes > 1 ? bytes : 1));
    iters = iters < o->min_iters ? o->min_iters : iters > o->max_iters ? o->max_iters : iters;
    double *tk = malloc(sizeof(double) * (size_t)iters * 3), *tb = tk + iters, *tp = tb + iters;
    for (int it = 0; it < iters && st == WD_OK; it++) {
        double t0 = wd_bench_now();
        for (int l = 0; l < o->layers && st == WD_OK; l++)
            st = wd_kv_transfer_put(p, &sp, l, err);
        if (st == WD_OK)
            st = wd_kv_transfer_flush(p, 60000, err);
        double t1 = wd_bench_now();
        if (st == WD_OK)
            st = raw_round(raw, src, (size_t)bytes, 1, err);
        double t2 = wd_bench_now();
        if (st == WD_OK)
            st = raw_round(raw, src, (size_t)bytes, (uint64_t)puts, err);
        double t3 = wd_bench_now();
        tk[it] = t1 - t0;
        tb[it] = t2 - t1;
        tp[it] = t3 - t2;
    }
    if (st == WD_OK)
        *out = (struct size_result){.bytes = bytes,
                                    .puts = puts,
                                    .t_kv = wd_bench_median(tk, iters),
                                    .t_block = wd_bench_median(tb, iters),
                                    .t_pieces = wd_bench_median(tp, iters)};
    free(tk);
    free(lp);
    free(rp);
    return st;
}

/* The prefill side of one layout: returns 0 when every size ran. */
static int run_layout(const struct kv_opts *o, const struct layout *ly, int *goal_ok)
{
    int to_child[2], from_child[2];
    if (pipe(to_child) || pipe(from_child))
        return 1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(to_child[1]);
        close(from_child[0]);
        _exit(decode_main(o, ly, from_child[1], to_child[0]));
    }
    close(to_child[0]);
    close(from_child[1]);
    uint32_t n = 0;
    uint8_t *desc = NULL;
    if (read(from_child[0], &n, 4) == 4 && n > 0 && n < (1u << 20)) {
        desc = malloc(n);
        size_t got = 0;
        ssize_t r = 1;
        while (got < n && (r = read(from_child[0], desc + got, n - got)) > 0)
            got += (size_t)r;
        if (got < n)
            n = 0;
    }
    struct wd_error err = {0};
    struct wd_kv_pool_config pc;
    struct wd_kv_heads h;
    pool_config(o, ly->ptp, ly->prank, &pc, &h);
    struct wd_kv_pool *pool = NULL;
    struct wd_kv_transfer *t = NULL;
    struct wd_kv_peer *p = NULL;
    struct raw_ep raw = {0};
    struct wd_kv_desc d;
    enum wd_status st = desc && n ? WD_OK : wd_error_set(&err, WD_ERR_IO, "no decode descriptor");
    if (st == WD_OK)
        st = wd_kv_pool_create(&pc, &pool, &err);
    if (st == WD_OK) {
        for (size_t i = 0; i < pool->geo.region_bytes; i++)
            pool->region[i] = (uint8_t)(i * 31u);
        struct wd_kv_transfer_config tc = {
            .region = pool->region, .geo = pool->geo, .heads = h, .name = "prefill rank"};
        st = wd_kv_transfer_create(&tc, &t, &err);
    }
    if (st == WD_OK)
        st = wd_kv_transfer_connect(t, desc, n, "decode rank", &p, &err);
    if (st == WD_OK)
        st = wd_kv_desc_parse(desc, n, &d, &err);
    if (st == WD_OK)
        st = raw_open(&raw, pool->region, pool->geo.region_bytes, &d, &err);
    printf("\nkv %s (%s), heads [%d, %d) -> [%d, %d)\n", ly->name, ly->what, h.begin, h.end,
           st == WD_OK ? d.heads.begin : 0, st == WD_OK ? d.heads.end : 0);
    printf("%8s %10s %7s %10s %9s %9s %6s %9s %6s\n", "tokens", "bytes", "puts", "kv us", "kv GB/s",
           "block", "ratio", "pieces", "ratio");
    double fixed_kv = 0, fixed_raw = 0, worst = 1e9;
    for (int i = 0; i < o->n_sizes && st == WD_OK; i++) {
        struct size_result r;
        st = measure(o, p, &raw, pool->region, pool->geo.n_pages, d.geo.n_pages, o->tokens[i], &r,
                     &err);
        if (st != WD_OK)
            break;
        double gk = r.bytes / r.t_kv / 1e9, gb = r.bytes / r.t_block / 1e9;
        double gp = r.bytes / r.t_pieces / 1e9;
        char hb[32];
        printf("%8d %10s %7.0f %10.1f %9.2f %9.2f %6.2f %9.2f %6.2f\n", o->tokens[i],
               wd_bench_human(r.bytes, hb, sizeof(hb)), r.puts, r.t_kv * 1e6, gk, gb, gk / gb, gp,
               gk / gp);
        if (o->tokens[i] == 1) {
            fixed_kv = r.t_kv * 1e6;
            fixed_raw = r.t_block * 1e6;
        }
        if (r.bytes >= GOAL_RATIO_FROM && gk / gb < worst)
            worst = gk / gb;
    }
    if (st == WD_OK) {
        if (fixed_kv > 0)
            printf("fixed cost per request (1 token, %d layers, K and V): %.1f us (raw put + "
                   "flush of its bytes: %.1f us)\n",
                   o->layers, fixed_kv, fixed_raw);
        int ok_ratio = worst >= GOAL_RATIO, ok_fixed = fixed_kv > 0 && fixed_kv <= GOAL_FIXED_US;
        if (worst < 1e9)
            printf("goal >= %.2f x raw block from 1 MB: %s (worst %.2f)\n", GOAL_RATIO,
                   ok_ratio ? "met" : "NOT met", worst);
        if (fixed_kv > 0)
            printf("goal fixed cost <= %.0f us: %s\n", GOAL_FIXED_US, ok_fixed ? "met" : "NOT met");
        *goal_ok = ok_ratio && (fixed_kv == 0 || ok_fixed);
    } else {
        fprintf(stderr, "wideep-bench kv: %s: %s\n", ly->name, err.msg);
    }
    raw_close(&raw);
    wd_kv_transfer_disconnect(p);
    wd_kv_transfer_destroy(t);
    wd_kv_pool_destroy(pool);
    free(desc);
    close(to_child[1]); /* the decode rank leaves */
    int status = 0;
    waitpid(pid, &status, 0);
    close(from_child[0]);
    return st == WD_OK && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

static int parse_tokens(const char *s, struct kv_opts *o)
{
    o->n_sizes = 0;
    while (*s && o->n_sizes < MAX_SIZES) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > (1 << 20))
            return -1;
        o->tokens[o->n_sizes++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return o->n_sizes > 0 ? 0 : -1;
}

int wd_bench_kv(int argc, char **argv)
{
    struct kv_opts o = {.layers = 8,
                        .page_size = 16,
                        .head_dim = 128,
                        .kv_heads = 4,
                        .min_iters = 5,
                        .max_iters = 200,
                        .seed = 1};
    const char *tokens = "1,16,64,256,1024,4096", *dtype = "bf16", *layouts = "whole,gather,split";
    struct wd_flag flags[] = {
        {"layers", NULL, WD_FLAG_INT, &o.layers, 1, 1024, "attention layers", NULL, 0},
        {"page-size", NULL, WD_FLAG_INT, &o.page_size, 1, 4096, "tokens per page", NULL, 0},
        {"head-dim", NULL, WD_FLAG_INT, &o.head_dim, 1, 4096, "K and V head dim", NULL, 0},
        {"kv-heads", NULL, WD_FLAG_INT, &o.kv_heads, 2, 256, "the model's KV heads (even)", NULL,
         0},
        {"dtype", NULL, WD_FLAG_STRING, &dtype, 1, 0, "KV cache dtype", "bf16,fp32", 0},
        {"tokens", NULL, WD_FLAG_STRING, &tokens, 1, 0, "request sizes in tokens, comma-separated",
         NULL, 0},
        {"layouts", NULL, WD_FLAG_STRING, &layouts, 1, 0, "comma-separated: whole, gather, split",
         NULL, 0},
        {"consecutive", NULL, WD_FLAG_BOOL, &o.is_consecutive, 1, 0,
         "consecutive page ids on both sides (default: scattered)", NULL, 0},
        {"min-iters", NULL, WD_FLAG_INT, &o.min_iters, 1, 100000, "timed iterations at least", NULL,
         0},
        {"max-iters", NULL, WD_FLAG_INT, &o.max_iters, 1, 100000, "timed iterations at most", NULL,
         0},
        {"seed", NULL, WD_FLAG_INT, &o.seed, 0, 1 << 30, "page shuffle seed", NULL, 0},
    };
    int nf = (int)(sizeof(flags) / sizeof(flags[0])), help = 0;
    struct wd_error err = {0};
    const char *usage = "usage: wideep-bench kv [--layers L] [--page-size P] [--head-dim D] "
                        "[--kv-heads H] [--dtype bf16|fp32] [--tokens 1,16,...] "
                        "[--layouts whole,gather,split] [--consecutive]";
    if (wd_flags_parse(flags, nf, argc, argv, &help, &err) != WD_OK) {
        fprintf(stderr, "wideep-bench kv: %s\n", err.msg);
        return 2;
    }
    if (help) {
        wd_flags_print_help(flags, nf, usage);
        return 0;
    }
    if (parse_tokens(tokens, &o) != 0 || o.kv_heads % 2 || o.min_iters > o.max_iters) {
        fprintf(stderr, "wideep-bench kv: --tokens wants positive counts separated by commas, "
                        "--kv-heads an even count, --min-iters <= --max-iters\n");
        return 2;
    }
    o.dtype = strcmp(dtype, "fp32") == 0 ? WD_DTYPE_F32 : WD_DTYPE_BF16;
    const char *tls = getenv("UCX_TLS");
    printf("kv transfer, one prefill rank -> one decode rank (two processes), UCX_TLS=%s\n",
           tls ? tls : "(ucx default)");
    printf("%d layers, page %d tokens, %d KV heads x %d, %s, %s pages; median of timed "
           "iterations (about %.0f MB each size, %d..%d)\n",
           o.layers, o.page_size, o.kv_heads, o.head_dim, dtype,
           o.is_consecutive ? "consecutive" : "scattered", BYTES_PER_SIZE / 1e6, o.min_iters,
           o.max_iters);
    printf("block: one raw ucp_put_nbx of the same bytes + flush; pieces: raw puts of the same "
           "count and mean size + flush\n");
    int rc = 0, n_run = 0;
    for (size_t i = 0; i < sizeof(g_layouts) / sizeof(g_layouts[0]); i++) {
        if (!strstr(layouts, g_layouts[i].name))
            continue;
        int goal_ok = 0;
        n_run++;
        if (run_layout(&o, &g_layouts[i], &goal_ok) != 0)
            rc = 1;
    }
    if (n_run == 0) {
        fprintf(stderr, "wideep-bench kv: --layouts %s names no layout\n", layouts);
        return 2;
    }
    return rc;
}

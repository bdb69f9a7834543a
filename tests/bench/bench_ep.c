/*
 * wideep-bench ep: microseconds and GB/s per expert-parallel dispatch and combine (normal or
 * low-latency mode) between R forked ranks over shm or UCX, beside a baseline measured in
 * the same run under the same conditions: memcpy (shm) or raw UCX put (ucx) of the bytes
 * one dispatch sends, in pieces of the dispatch's mean message size, every rank to its next
 * rank at once (the ranks share the machine's cores just as they do during a dispatch).
 * For reference the line also gives memcpy in one process alone (shm), or UCX put between
 * two ranks alone, rank 0 to rank 1 with rank 0's sizes (ucx); the ratios use the former.
 * --transport ucx forces every peer onto UCX (wd_comm_force_ucx); UCX_TLS picks UCX's own
 * transports (tcp,self: the path between nodes without RDMA devices; sm,self: UCX's
 * shared-memory ones). The header line says which UCX_TLS the run had.
 *
 * What is counted: payload rows that cross ranks, as DeepEP's benchmarks do: dispatch =
 * rows a rank sends to other ranks x encoded row bytes, combine = rows it sends back to
 * other ranks x combine row bytes; metadata (ids, weights, counts) and rows a rank sends to
 * itself are not counted. Times are per iteration the slowest rank's, median over the
 * timed iterations; GB/s = mean bytes per rank / that time. Every iteration starts after a
 * barrier. Routing: every token picks top-k distinct experts uniformly at random with a
 * fixed seed (per rank), the same on every run. After the timed loop each rank checks its
 * combine output against the value the round trip must give, so a fast but wrong protocol
 * does not go unnoticed.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statvfs.h>

#include "common/comm/comm.h"
#include "common/comm/launcher.h"
#include "common/config/flags.h"
#include "common/ep/ep_buffer.h"
#include "common/ep/ep_layout.h"
#include "common/ep/ep_ll.h"
#include "common/ep/ep_normal.h"
#include "common/util/log.h"
#include "tests/bench/bench_util.h"

#define BASE_CAP ((size_t)64 << 20) /* baseline destination region (wraps) */
#define PAIR_REPS 3                 /* two-rank UCX baseline rounds */
#define CHECK_TOL 1e-5              /* f32 sums of the same rounded values */

struct ep_opts {
    int ranks, tokens, hidden, topk, experts, iters, warmup, seed;
    int is_ll, is_ucx, zero_copy;
    enum wd_ep_payload_kind dkind, ckind;
};

/* What one rank reports, in memory shared with the parent (it prints). */
struct rank_out {
    char kind[16];                 /* transport kind the EP group got */
    double disp_bytes, comb_bytes; /* cross-rank payload bytes per call */
    double n_msgs;                 /* dispatch row puts to other ranks */
    double base_piece;             /* baseline message size */
    double max_err;                /* check: worst |out - expected| / (1 + |expected|) */
    /* seconds, pointers into the shared map: [iters] each, t_pair [PAIR_REPS] */
    double *t_base, *t_disp, *t_comb, *t_pair;
};

struct shared {
    struct ep_opts o;
    struct rank_out *out; /* [R] */
};

/* Per-rank state of the run; freed by rank_state_free. */
struct rank_state {
    struct wd_comm *comm;
    struct wd_transport *t, *bt; /* EP window, bench window (barrier + baseline) */
    struct wd_ep_buffer *b;
    struct wd_ep_handle *h;
    uint64_t barrier_round;
    float *x, *w, *out, *cx; /* [N,H] [N,K] [N,H] and combine input */
    int32_t *idx;            /* [N,K] */
    int32_t *per_rank, *per_expert;
    uint8_t *in_rank;
    uint8_t *base_src;
};

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static float rng_unit(uint64_t *s) /* [0, 1) */
{
    return (float)(rng_next(s) >> 40) / (float)(1u << 24);
}

/* x in [-1, 1), top-k distinct experts and normalized positive weights per token. */
static void make_inputs(const struct ep_opts *o, int rank, float *x, int32_t *idx, float *w)
{
    uint64_t s = 0x9E3779B97F4A7C15ull ^ ((uint64_t)o->seed << 20) ^ (uint64_t)(rank + 1);
    int E = o->experts, K = o->topk;
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)E);
    for (int e = 0; e < E; e++)
        perm[e] = e;
    for (int i = 0; i < o->tokens; i++) {
        float sum = 0;
        for (int k = 0; k < K; k++) { /* partial Fisher-Yates: distinct ids */
            int j = k + (int)(rng_next(&s) % (uint64_t)(E - k));
            int32_t v = perm[j];
            perm[j] = perm[k];
            perm[k] = v;
            idx[(size_t)i * K + k] = v;
            w[(size_t)i * K + k] = 0.05f + rng_unit(&s);
            sum += w[(size_t)i * K + k];
        }
        for (int k = 0; k < K; k++)
            w[(size_t)i * K + k] /= sum;
        for (int c = 0; c < o->hidden; c++)
            x[(size_t)i * o->hidden + c] = 2.0f * rng_unit(&s) - 1.0f;
    }
    free(perm);
}

/* Barrier over the bench window: word s of every rank counts rank s's arrivals. */
static enum wd_status barrier(struct rank_state *rs, struct wd_error *err)
{
    struct wd_transport *t = rs->bt;
    uint64_t round = ++rs->barrier_round;
    for (int j = 0; j < t->n_ranks; j++)
        WD_CHECK(
            wd_transport_signal(t, (t->rank + 1 + j) % t->n_ranks, 8 * (size_t)t->rank, 1, err));
    for (int s = 0; s < t->n_ranks; s++)
        WD_CHECK(wd_transport_wait(t, 8 * (size_t)s, round, s, 60000, err));
    return WD_OK;
}

/* One baseline round: total bytes to the next rank in pieces of `piece`, then a signal;
 * done when this rank's predecessor's bytes have arrived too. is_pair: only rank 0 sends
 * and only rank 1 receives (the others return at once). */
static enum wd_status baseline_round(struct rank_state *rs, size_t total, size_t piece,
                                     uint64_t round, int is_pair, struct wd_error *err)
{
    struct wd_transport *t = rs->bt;
    int R = t->n_ranks, next = (t->rank + 1) % R, prev = (t->rank + R - 1) % R;
    int is_sender = !is_pair || t->rank == 0, is_receiver = !is_pair || t->rank == 1;
    size_t data = 16 * (size_t)R, cap = t->window_bytes - data, off = 0;
    for (size_t done = 0; is_sender && done < total; done += piece) {
        size_t len = total - done < piece ? total - done : piece;
        if (off + len > cap)
            off = 0;
        WD_CHECK(wd_transport_put(t, next, data + off, rs->base_src + off, len, err));
        off += len;
    }
    if (is_sender)
        WD_CHECK(wd_transport_signal(t, next, 8 * (size_t)(R + t->rank), 1, err));
    return is_receiver ? wd_transport_wait(t, 8 * (size_t)(R + prev), round, prev, 60000, err)
                       : WD_OK;
}

/* Cross-rank dispatch bytes and row puts of this rank's routing (what ep_normal.c and
 * ep_ll.c put: runs of consecutive tokens per destination, or one row per (token, slot)). */
static void count_dispatch(const struct ep_opts *o, const struct rank_state *rs, int rank,
                           size_t row, double *bytes_p, double *msgs_p)
{
    int R = o->ranks, K = o->topk, L = o->experts / o->ranks;
    double rows = 0, msgs = 0;
    for (int d = 0; d < R; d++) {
        if (d == rank)
            continue;
        for (int i = 0; i < o->tokens; i++) {
            if (o->is_ll) {
                for (int k = 0; k < K; k++)
                    if (rs->idx[(size_t)i * K + k] / L == d)
                        rows++, msgs++;
            } else if (rs->in_rank[(size_t)i * R + d]) {
                rows++;
                msgs += i == 0 || !rs->in_rank[(size_t)(i - 1) * R + d];
            }
        }
    }
    *bytes_p = rows * (double)row;
    *msgs_p = msgs;
}

/* Compares every combine output with what the round trip must give: the expert side saw
 * decode(dispatch row) and sent it back re-encoded for combine (u below); normal combine
 * sums it once per rank the token went to, LL combine weights it per slot. Returns the
 * worst |out - expected| / (1 + |expected|). */
static double check_out(const struct ep_opts *o, const struct rank_state *rs)
{
    struct wd_ep_payload dp = {.kind = o->dkind, .hidden = o->hidden};
    struct wd_ep_payload cp = {.kind = o->ckind, .hidden = o->hidden};
    int H = o->hidden, K = o->topk, R = o->ranks;
    uint8_t *row = malloc(wd_ep_payload_row_bytes(&dp) + wd_ep_payload_row_bytes(&cp));
    float *v = malloc(sizeof(float) * 2 * (size_t)H), *u = v ? v + H : NULL;
    double worst = row && v ? 0 : INFINITY;
    for (int i = 0; row && v && i < o->tokens; i++) {
        wd_ep_payload_encode(&dp, rs->x + (size_t)i * H, row);
        wd_ep_payload_decode(&dp, row, v);
        wd_ep_payload_encode(&cp, v, row);
        wd_ep_payload_decode(&cp, row, u);
        double mult = 0;
        if (o->is_ll)
            for (int k = 0; k < K; k++)
                mult += rs->w[(size_t)i * K + k];
        else
            for (int d = 0; d < R; d++)
                mult += rs->in_rank[(size_t)i * R + d];
        for (int c = 0; c < H; c++) {
            double want = mult * u[c], got = rs->out[(size_t)i * H + c];
            double e = fabs(got - want) / (1 + fabs(want));
            if (!(e <= worst)) /* NaN counts as worst */
                worst = isnan(e) ? INFINITY : e;
        }
    }
    free(row);
    free(v);
    return worst;
}

static enum wd_status setup(const struct ep_opts *o, const struct wd_rank_info *ri,
                            struct rank_state *rs, struct rank_out *ro, struct wd_error *err)
{
    int R = o->ranks, N = o->tokens, H = o->hidden, K = o->topk, E = o->experts;
    size_t nh = (size_t)N * H, nk = (size_t)N * K;
    rs->x = malloc(sizeof(float) * (nh ? nh : 1));
    rs->out = malloc(sizeof(float) * (nh ? nh : 1));
    rs->w = malloc(sizeof(float) * (nk ? nk : 1));
    rs->idx = malloc(sizeof(int32_t) * (nk ? nk : 1));
    rs->per_rank = malloc(sizeof(int32_t) * (size_t)R);
    rs->per_expert = malloc(sizeof(int32_t) * (size_t)E);
    rs->in_rank = malloc((size_t)N * R + 1);
    rs->base_src = malloc(BASE_CAP);
    if (!rs->x || !rs->out || !rs->w || !rs->idx || !rs->per_rank || !rs->per_expert ||
        !rs->in_rank || !rs->base_src)
        return wd_error_set(err, WD_ERR_NOMEM, "no memory for %d tokens of %d", N, H);
    memset(rs->base_src, 0x3c, BASE_CAP);
    make_inputs(o, ri->rank, rs->x, rs->idx, rs->w);
    WD_CHECK(wd_ep_get_dispatch_layout(rs->idx, N, K, E, R, 1, rs->per_rank, NULL, rs->per_expert,
                                       rs->in_rank, err));

    WD_CHECK(wd_comm_create(ri, &rs->comm, err));
    wd_comm_force_ucx(rs->comm, o->is_ucx);
    /* max_payload f32 allows every encoding; bf16 and fp8 windows hold bf16 combine rows. */
    struct wd_ep_config cfg = {.n_ranks = R,
                               .hidden = H,
                               .top_k = K,
                               .n_experts = E,
                               .max_tokens = o->is_ll ? 0 : N,
                               .ll_max_tokens = o->is_ll ? N : 0,
                               .max_payload = o->zero_copy ? WD_EP_PAYLOAD_F32 : o->dkind,
                               .timeout_ms = 60000};
    WD_CHECK(wd_ep_config_check(&cfg, err));
    int *members = malloc(sizeof(int) * (size_t)R);
    if (!members)
        return wd_error_set(err, WD_ERR_NOMEM, "no memory");
    for (int i = 0; i < R; i++)
        members[i] = i;
    enum wd_status st =
        wd_comm_transport_create(rs->comm, "ep", members, R, wd_ep_window_bytes(&cfg), &rs->t, err);
    size_t row = wd_ep_payload_row_bytes(&(struct wd_ep_payload){.kind = o->dkind, .hidden = H});
    size_t cap = (size_t)N * row * (size_t)R < BASE_CAP ? (size_t)N * row * (size_t)R : BASE_CAP;
    if (st == WD_OK)
        st = wd_comm_transport_create(rs->comm, "bench", members, R, 16 * (size_t)R + cap + 64,
                                      &rs->bt, err);
    free(members);
    WD_CHECK(st);
    snprintf(ro->kind, sizeof(ro->kind), "%s", rs->t->kind);
    WD_CHECK(wd_ep_buffer_create(&cfg, rs->t, &rs->b, err));
    if (!o->is_ll)
        WD_CHECK(wd_ep_handle_create(rs->b, &rs->h, err));
    count_dispatch(o, rs, ri->rank, row, &ro->disp_bytes, &ro->n_msgs);
    double piece = ro->n_msgs > 0 ? ro->disp_bytes / ro->n_msgs : (double)row;
    piece = ceil(piece / (double)row) * (double)row;
    ro->base_piece = piece < (double)cap ? piece : (double)cap;
    return WD_OK;
}

/* Decodes received rows into the combine input: the "experts" are the identity. */
static enum wd_status fill_combine_input(const struct ep_opts *o, struct rank_state *rs,
                                         const struct wd_ep_recv *nr,
                                         const struct wd_ep_ll_recv *lr, struct wd_error *err)
{
    size_t H = (size_t)o->hidden;
    if (!o->is_ll) {
        rs->cx = malloc(sizeof(float) * H * (size_t)(nr->n_recv ? nr->n_recv : 1));
        if (!rs->cx)
            return wd_error_set(err, WD_ERR_NOMEM, "no memory for %d received rows", nr->n_recv);
        for (int r = 0; r < nr->n_recv; r++)
            wd_ep_payload_decode(&nr->payload, nr->x + (size_t)r * nr->row_bytes, rs->cx + r * H);
        return WD_OK;
    }
    /* [L, R * M, H]: calloc leaves the rows past each count untouched (never faulted in). */
    rs->cx = calloc((size_t)lr->n_local_experts * (size_t)lr->max_rows, sizeof(float) * H);
    if (!rs->cx)
        return wd_error_set(err, WD_ERR_NOMEM, "no memory for the LL combine input");
    for (int l = 0; l < lr->n_local_experts; l++)
        for (int j = 0; j < lr->count[l]; j++) {
            size_t r = (size_t)l * lr->max_rows + (size_t)j;
            wd_ep_payload_decode(&lr->payload, lr->x + r * lr->row_bytes, rs->cx + r * H);
        }
    return WD_OK;
}

/* Rows this rank returns to other ranks in combine. */
static double combine_rows(const struct ep_opts *o, const struct rank_state *rs, int rank,
                           const struct wd_ep_ll_recv *lr)
{
    int R = o->ranks;
    double rows = 0;
    for (int s = 0; s < R; s++) {
        if (s == rank)
            continue;
        if (o->is_ll) {
            for (int l = 0; l < lr->n_local_experts; l++)
                rows += (double)(uint32_t)lr->layout_range[(size_t)l * R + s];
        } else {
            const int32_t *P = rs->h->rank_prefix;
            rows += P[s * R + rank] - (s ? P[(s - 1) * R + rank] : 0);
        }
    }
    return rows;
}

static enum wd_status run_rank(const struct ep_opts *o, const struct wd_rank_info *ri,
                               struct rank_state *rs, struct rank_out *ro,
                               const struct rank_out *sh_out0, struct wd_error *err)
{
    WD_CHECK(setup(o, ri, rs, ro, err));
    int N = o->tokens;
    struct wd_ep_payload dp = {.kind = o->dkind};
    struct wd_ep_dispatch_args da = {.x = rs->x,
                                     .n_tokens = N,
                                     .topk_idx = rs->idx,
                                     .topk_w = rs->w,
                                     .num_tokens_per_rank = rs->per_rank,
                                     .num_tokens_per_expert = rs->per_expert,
                                     .is_token_in_rank = rs->in_rank,
                                     .payload = dp};
    struct wd_ep_ll_dispatch_args la = {
        .x = rs->x, .n_tokens = N, .topk_idx = rs->idx, .payload = dp};
    struct wd_ep_recv nr = {0};
    struct wd_ep_ll_recv lr = {0};
    struct wd_ep_combine_args ca = {.payload = o->ckind};
    struct wd_ep_ll_combine_args lca = {
        .n_tokens = N, .topk_idx = rs->idx, .topk_w = rs->w, .payload = o->ckind};
    uint64_t base_round = 0;
    for (int it = -o->warmup; it < o->iters; it++) {
        double t0, t1;
        WD_CHECK(barrier(rs, err));
        t0 = wd_bench_now();
        WD_CHECK(baseline_round(rs, (size_t)ro->disp_bytes, (size_t)ro->base_piece, ++base_round, 0,
                                err));
        t1 = wd_bench_now();
        if (it >= 0)
            ro->t_base[it] = t1 - t0;

        WD_CHECK(barrier(rs, err));
        t0 = wd_bench_now();
        if (o->is_ll)
            WD_CHECK(wd_ep_ll_dispatch(rs->b, &la, &lr, err));
        else
            WD_CHECK(wd_ep_dispatch(rs->b, &da, rs->h, &nr, err));
        t1 = wd_bench_now();
        if (it >= 0)
            ro->t_disp[it] = t1 - t0;
        if (!rs->cx) {
            WD_CHECK(fill_combine_input(o, rs, &nr, &lr, err));
            struct wd_ep_payload cp = {.kind = o->ckind, .hidden = o->hidden};
            ro->comb_bytes =
                combine_rows(o, rs, ri->rank, &lr) * (double)wd_ep_payload_row_bytes(&cp);
            ca.x = rs->cx;
            lca.x = rs->cx;
        }

        if (o->zero_copy) {
            /* Zero-copy: the experts' outputs go straight into the source ranks' windows.
             * That write is the experts' (untimed here, as in DeepEP's zero-copy runs). */
            float **rows = malloc(sizeof(float *) * ((size_t)nr.n_recv + 1));
            if (!rows)
                return wd_error_set(err, WD_ERR_NOMEM, "bench ep: out of memory");
            enum wd_status zs = wd_ep_combine_in_place_rows(rs->b, rs->h, rows, err);
            for (int r = 0; zs == WD_OK && r < nr.n_recv; r++)
                memcpy(rows[r], rs->cx + (size_t)r * o->hidden, sizeof(float) * (size_t)o->hidden);
            free(rows);
            WD_CHECK(zs);
            ca.x_in_place = 1;
        }
        WD_CHECK(barrier(rs, err));
        t0 = wd_bench_now();
        if (o->is_ll)
            WD_CHECK(wd_ep_ll_combine(rs->b, &lr, &lca, rs->out, err));
        else
            WD_CHECK(wd_ep_combine(rs->b, rs->h, &ca, rs->out, NULL, err));
        t1 = wd_bench_now();
        if (it >= 0)
            ro->t_comb[it] = t1 - t0;
    }
    /* UCX also between two ranks alone (rank 0 -> 1, rank 0's sizes), the others idle. */
    for (int it = 0; o->is_ucx && it < PAIR_REPS; it++) {
        WD_CHECK(barrier(rs, err));
        double t0 = wd_bench_now();
        WD_CHECK(baseline_round(rs, (size_t)sh_out0->disp_bytes, (size_t)sh_out0->base_piece,
                                ++base_round, 1, err));
        ro->t_pair[it] = wd_bench_now() - t0;
    }
    ro->max_err = check_out(o, rs);
    WD_CHECK(barrier(rs, err));
    if (!(ro->max_err <= CHECK_TOL))
        return wd_error_set(err, WD_ERR_INVALID,
                            "rank %d: combine(dispatch(x)) is off by %.3g (relative; allowed %g)",
                            ri->rank, ro->max_err, CHECK_TOL);
    return WD_OK;
}

static void rank_state_free(struct rank_state *rs)
{
    wd_ep_handle_destroy(rs->h);
    wd_ep_buffer_destroy(rs->b);
    wd_transport_destroy(rs->bt);
    wd_transport_destroy(rs->t);
    wd_comm_destroy(rs->comm);
    free(rs->x);
    free(rs->out);
    free(rs->w);
    free(rs->cx);
    free(rs->idx);
    free(rs->per_rank);
    free(rs->per_expert);
    free(rs->in_rank);
    free(rs->base_src);
}

static int rank_main(void *ctx, const struct wd_rank_info *ri)
{
    struct shared *sh = ctx;
    struct rank_out *ro = &sh->out[ri->rank];
    struct rank_state rs = {0};
    struct wd_error err = {0};
    enum wd_status st = run_rank(&sh->o, ri, &rs, ro, &sh->out[0], &err);
    rank_state_free(&rs);
    if (st != WD_OK)
        wd_rank_report(ri, &err);
    return st == WD_OK ? 0 : 1;
}

/* Median over I iterations of the slowest rank's time. */
static double median_slowest(const struct shared *sh, size_t field_off, int I)
{
    int R = sh->o.ranks;
    double *v = malloc(sizeof(double) * (size_t)I);
    for (int i = 0; i < I; i++) {
        v[i] = 0;
        for (int r = 0; r < R; r++) {
            const double *t = *(double *const *)((const char *)&sh->out[r] + field_off);
            v[i] = t[i] > v[i] ? t[i] : v[i];
        }
    }
    double m = wd_bench_median(v, I);
    free(v);
    return m;
}

static void report(const struct shared *sh, double alone_gbs)
{
    const struct ep_opts *o = &sh->o;
    int R = o->ranks;
    double db = 0, cb = 0, msgs = 0, piece = 0, err = 0;
    for (int r = 0; r < R; r++) {
        db += sh->out[r].disp_bytes / R;
        cb += sh->out[r].comb_bytes / R;
        msgs += sh->out[r].n_msgs / R;
        piece += sh->out[r].base_piece / R;
        err = sh->out[r].max_err > err ? sh->out[r].max_err : err;
    }
    double tb = median_slowest(sh, offsetof(struct rank_out, t_base), o->iters);
    double td = median_slowest(sh, offsetof(struct rank_out, t_disp), o->iters);
    double tc = median_slowest(sh, offsetof(struct rank_out, t_comb), o->iters);
    double gb = db / tb / 1e9, gd = db / td / 1e9, gc = cb / tc / 1e9;
    const char *bname = o->is_ucx ? "ucx put" : "memcpy";
    printf("ep %s %s R=%d N=%d H=%d K=%d E=%d payload %s (combine %s)\n",
           o->is_ll ? "low_latency" : "normal", o->is_ucx ? "ucx" : "shm", R, o->tokens, o->hidden,
           o->topk, o->experts, wd_ep_payload_name(o->dkind), wd_ep_payload_name(o->ckind));
    printf("transport: %s%s%s; %d timed iterations after %d warm-up, median of the slowest rank\n",
           sh->out[0].kind, o->is_ucx ? ", UCX_TLS=" : "",
           o->is_ucx ? (getenv("UCX_TLS") ? getenv("UCX_TLS") : "(ucx default)") : "", o->iters,
           o->warmup);
    char b1[32], b2[32], b3[32];
    printf("counted: payload rows sent to other ranks, per rank: dispatch %s in %.0f row puts, "
           "combine %s\n",
           wd_bench_human(db, b1, sizeof(b1)), msgs, wd_bench_human(cb, b2, sizeof(b2)));
    printf("baseline %s: %.2f GB/s (%d ranks at once, each %s to the next rank in %s pieces, "
           "%.0f us)",
           bname, gb, R, wd_bench_human(db, b1, sizeof(b1)), wd_bench_human(piece, b3, sizeof(b3)),
           tb * 1e6);
    if (!o->is_ucx)
        printf("; one process alone: %.2f GB/s", alone_gbs);
    else
        printf("; two ranks alone: %.2f GB/s",
               sh->out[0].disp_bytes /
                   median_slowest(sh, offsetof(struct rank_out, t_pair), PAIR_REPS) / 1e9);
    printf("\n");
    /* With nothing crossing ranks (every token routed home) there is no ratio to give. */
    double rd = gb > 0 ? gd / gb : NAN, rc = gb > 0 ? gc / gb : NAN;
    printf("dispatch: %.0f us, %.2f GB/s = %.2f x %s\n", td * 1e6, gd, rd, bname);
    printf("combine:  %.0f us, %.2f GB/s = %.2f x %s\n", tc * 1e6, gc, rc, bname);
    printf("check: combine(dispatch(x)) as expected on every rank (worst relative error %.2g)\n",
           err);
}

int wd_bench_ep(int argc, char **argv)
{
    struct ep_opts o = {.ranks = 4,
                        .tokens = 4096,
                        .hidden = 7168,
                        .topk = 8,
                        .experts = 256,
                        .iters = 10,
                        .warmup = 2,
                        .seed = 1};
    const char *mode = "normal", *transport = "shm", *payload = "bf16";
    struct wd_flag flags[] = {
        {"ranks", NULL, WD_FLAG_INT, &o.ranks, 2, 64, "EP ranks (processes)", NULL, 0},
        {"tokens", NULL, WD_FLAG_INT, &o.tokens, 1, 1 << 20,
         "tokens per rank (LL: also its max tokens per rank)", NULL, 0},
        {"hidden", NULL, WD_FLAG_INT, &o.hidden, 1, 1 << 16, "hidden size", NULL, 0},
        {"topk", NULL, WD_FLAG_INT, &o.topk, 1, 64, "experts per token", NULL, 0},
        {"experts", NULL, WD_FLAG_INT, &o.experts, 1, 1 << 16, "routed experts", NULL, 0},
        {"mode", NULL, WD_FLAG_STRING, &mode, 1, 0, "dispatch mode", "normal,low_latency", 0},
        {"transport", NULL, WD_FLAG_STRING, &transport, 1, 0,
         "shm, or ucx for every peer (UCX_TLS picks UCX's transports)", "shm,ucx", 0},
        {"iters", NULL, WD_FLAG_INT, &o.iters, 1, 100000, "timed iterations", NULL, 0},
        {"warmup", NULL, WD_FLAG_INT, &o.warmup, 0, 100000, "untimed iterations first", NULL, 0},
        {"payload", NULL, WD_FLAG_STRING, &payload, 1, 0,
         "dispatch row encoding (combine: f32 for f32, else bf16)", "f32,bf16,fp8", 0},
        {"seed", NULL, WD_FLAG_INT, &o.seed, 0, 1 << 30, "routing and data seed", NULL, 0},
        {"zero-copy", NULL, WD_FLAG_BOOL, &o.zero_copy, 1, 0,
         "normal mode, shm: experts write combine rows into the windows (f32 combine)", NULL, 0},
    };
    int nf = (int)(sizeof(flags) / sizeof(flags[0])), help = 0;
    struct wd_error err = {0};
    const char *usage = "usage: wideep-bench ep [--ranks R] [--tokens N] [--hidden H] [--topk K] "
                        "[--experts E] [--mode normal|low_latency] [--transport shm|ucx] "
                        "[--iters I] [--payload f32|bf16|fp8] [--zero-copy]";
    if (wd_flags_parse(flags, nf, argc, argv, &help, &err) != WD_OK) {
        fprintf(stderr, "wideep-bench ep: %s\n", err.msg);
        return 2;
    }
    if (help) {
        wd_flags_print_help(flags, nf, usage);
        return 0;
    }
    o.is_ll = strcmp(mode, "low_latency") == 0;
    o.is_ucx = strcmp(transport, "ucx") == 0;
    o.dkind = strcmp(payload, "f32") == 0   ? WD_EP_PAYLOAD_F32
              : strcmp(payload, "fp8") == 0 ? WD_EP_PAYLOAD_FP8
                                            : WD_EP_PAYLOAD_BF16;
    o.ckind = o.dkind == WD_EP_PAYLOAD_F32 || o.zero_copy ? WD_EP_PAYLOAD_F32 : WD_EP_PAYLOAD_BF16;
    if (o.zero_copy && (o.is_ll || o.is_ucx)) {
        fprintf(stderr, "wideep-bench ep: --zero-copy is for --mode normal --transport shm\n");
        return 2;
    }
    if (o.experts % o.ranks != 0 || o.topk > o.experts) {
        fprintf(stderr,
                "wideep-bench ep: --experts %d must be a multiple of --ranks %d and at "
                "least --topk %d\n",
                o.experts, o.ranks, o.topk);
        return 2;
    }
    if (o.dkind == WD_EP_PAYLOAD_FP8 && o.hidden % 128 != 0) {
        fprintf(stderr, "wideep-bench ep: --payload fp8 needs --hidden a multiple of 128\n");
        return 2;
    }

    /* The windows are /dev/shm segments, reserved in full when created: one that does not
     * fit fails its creation with a "no space" error. Warn before the ranks start. */
    struct wd_ep_config wc = {.n_ranks = o.ranks,
                              .hidden = o.hidden,
                              .top_k = o.topk,
                              .n_experts = o.experts,
                              .max_tokens = o.is_ll ? 0 : o.tokens,
                              .ll_max_tokens = o.is_ll ? o.tokens : 0,
                              .max_payload = o.zero_copy ? WD_EP_PAYLOAD_F32 : o.dkind};
    struct statvfs sv;
    double need = (double)wd_ep_window_bytes(&wc) * o.ranks;
    if (statvfs("/dev/shm", &sv) == 0 && need > (double)sv.f_bavail * (double)sv.f_frsize)
        fprintf(stderr,
                "wideep-bench ep: warning: the EP windows span %.1f GB, /dev/shm has %.1f GB "
                "free (the ranks will fail to create them)\n",
                need / 1e9, (double)sv.f_bavail * (double)sv.f_frsize / 1e9);

    /* Results come back through a shared anonymous mapping the ranks inherit. */
    size_t head = sizeof(struct rank_out) * (size_t)o.ranks;
    size_t per = (size_t)(o.iters > PAIR_REPS ? o.iters : PAIR_REPS);
    size_t times = sizeof(double) * 4 * per * (size_t)o.ranks;
    void *map = mmap(NULL, head + times, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) {
        fprintf(stderr, "wideep-bench ep: cannot map %zu bytes for results\n", head + times);
        return 1;
    }
    struct shared sh = {.o = o, .out = map};
    double *tv = (double *)(void *)((char *)map + head);
    for (int r = 0; r < o.ranks; r++) {
        sh.out[r].t_base = tv + (size_t)(4 * r + 0) * per;
        sh.out[r].t_disp = tv + (size_t)(4 * r + 1) * per;
        sh.out[r].t_comb = tv + (size_t)(4 * r + 2) * per;
        sh.out[r].t_pair = tv + (size_t)(4 * r + 3) * per;
    }
    double alone = o.is_ucx ? 0 : wd_bench_memcpy_gbs(BASE_CAP, NULL, 1);

    struct wd_launch_config lc;
    wd_launch_config_init(&lc);
    lc.world_size = o.ranks;
    lc.timeout_ms = 60000;
    enum wd_status st = wd_launcher_run(&lc, rank_main, &sh, &err);
    int rc = 0;
    if (st != WD_OK) {
        fprintf(stderr, "wideep-bench ep: %s\n", err.msg);
        rc = 1;
    } else {
        report(&sh, alone);
    }
    munmap(map, head + times);
    return rc;
}

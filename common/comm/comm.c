/*
 * Rank bring-up and the composite group transport. Rendezvous keys of a group transport
 * "g/<name>.<gen>/<index>" hold each member's record: u32 magic "WDGR", u32 global rank,
 * u32 node, u32 shm-name length, u64 window bytes, u32 ucx-blob length, u32 zero, the shm
 * segment name, the ucx blob (empty when the group stays on one node). <gen> counts how
 * often this rank created the name, so a re-created group never reads stale records.
 */
#include "common/comm/comm.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/comm/peers.h"
#include "common/comm/rendezvous.h"
#include "common/comm/transport_shm.h"
#include "common/comm/transport_ucx.h"
#include "common/util/le.h"
#include "common/util/log.h"

#define REC_MAGIC 0x52474457u /* bytes "WDGR" */
#define REC_HDR 32

struct name_gen {
    char name[48];
    int gen;
};

struct wd_comm {
    struct wd_rank_info ri;
    int timeout_ms;
    struct wd_rdzv *rdzv;
    struct wd_ucx *ucx; /* NULL until a group spans nodes (or UCX is forced) */
    int is_ucx_forced;  /* every peer over ucx, same node too (wd_comm_force_ucx) */
    int is_failed;      /* this rank failed: teardown waits for nobody (wd_comm_mark_failed) */
    struct name_gen *names;
    int n_names;
};

/* While a setup wait polls the rendezvous: keep UCX wire-up moving and give up as soon as
 * any rank of the launch has failed. */
static enum wd_status comm_hook(void *arg, struct wd_error *err)
{
    struct wd_comm *c = arg;
    if (c->ucx)
        wd_ucx_progress(c->ucx);
    return wd_rank_check_all(&c->ri, err);
}

enum wd_status wd_comm_create(const struct wd_rank_info *ri, struct wd_comm **comm_p,
                              struct wd_error *err)
{
    struct wd_comm *c = calloc(1, sizeof(*c));
    if (!c)
        return wd_error_set(err, WD_ERR_NOMEM, "comm: out of memory");
    c->ri = *ri;
    c->timeout_ms = ri->timeout_ms > 0 ? ri->timeout_ms : 60000;
    enum wd_status st =
        wd_rdzv_create(ri->rdzv_host, ri->rdzv_port, ri->rdzv_token, c->timeout_ms, &c->rdzv, err);
    if (st != WD_OK) {
        free(c);
        wd_error_prefix(err, "rank %d", ri->rank);
        return st;
    }
    wd_rdzv_set_wait_hook(c->rdzv, comm_hook, c);
    *comm_p = c;
    return WD_OK;
}

void wd_comm_destroy(struct wd_comm *comm)
{
    if (!comm)
        return;
    wd_ucx_destroy(comm->ucx);
    wd_rdzv_destroy(comm->rdzv);
    free(comm->names);
    free(comm);
}

const struct wd_rank_info *wd_comm_rank_info(const struct wd_comm *comm)
{
    return &comm->ri;
}

void wd_comm_force_ucx(struct wd_comm *comm, int is_forced)
{
    comm->is_ucx_forced = is_forced != 0;
}

struct wd_rdzv *wd_comm_rdzv(struct wd_comm *comm)
{
    return comm->rdzv;
}

void wd_comm_mark_failed(struct wd_comm *comm)
{
    comm->is_failed = 1;
}

enum wd_status wd_comm_barrier_world(struct wd_comm *comm, const char *name, struct wd_error *err)
{
    char key[WD_RDZV_MAX_KEY];
    snprintf(key, sizeof(key), "world/%.200s", name);
    return wd_rdzv_barrier(comm->rdzv, key, comm->ri.world_size, comm->timeout_ms, err);
}

/* ---------------------------------------------------------------- composite transport */

enum { ROUTE_SHM = 0, ROUTE_UCX = 1 };

struct mux {
    struct wd_comm *comm;
    struct wd_peers peers;
    char key[80]; /* "g/<name>.<gen>" */
    struct wd_transport *shm, *ucx;
    uint8_t *route; /* [n_ranks] */
};

static struct wd_transport *sub(struct wd_transport *t, int peer)
{
    struct mux *m = t->impl;
    return peer >= 0 && peer < t->n_ranks && m->route[peer] == ROUTE_UCX ? m->ucx : m->shm;
}

static enum wd_status mux_put(struct wd_transport *t, int peer, size_t dst_off, const void *src,
                              size_t len, struct wd_error *err)
{
    return wd_transport_put(sub(t, peer), peer, dst_off, src, len, err);
}

static enum wd_status mux_signal(struct wd_transport *t, int peer, size_t sig_off, uint64_t add,
                                 struct wd_error *err)
{
    return wd_transport_signal(sub(t, peer), peer, sig_off, add, err);
}

static void progress_ucx(void *u)
{
    wd_ucx_progress(u);
}

/* Both executors poll the same word. Whenever this process has a UCX worker, every wait
 * progresses it, also in a group that has no remote peer: the emulated puts and adds that
 * remote ranks aim at this rank's other groups land only while it progresses, and they may
 * be what the rank this wait is for is itself waiting on. */
static enum wd_status mux_wait(struct wd_transport *t, size_t sig_off, uint64_t target,
                               int from_peer, int timeout_ms, struct wd_error *err)
{
    struct mux *m = t->impl;
    if (m->ucx || !m->comm->ucx)
        return wd_transport_wait(m->ucx ? m->ucx : m->shm, sig_off, target, from_peer, timeout_ms,
                                 err);
    if (sig_off % 8 || sig_off > t->window_bytes - 8)
        return wd_error_set(err, WD_ERR_INVALID, "%s: bad signal offset %zu", m->peers.name,
                            sig_off);
    return wd_peers_wait_word(&m->peers, (const uint64_t *)(t->window + sig_off), target, from_peer,
                              timeout_ms, progress_ucx, m->comm->ucx, err);
}

static void *mux_peer_window(struct wd_transport *t, int peer)
{
    struct mux *m = t->impl;
    if (peer < 0 || peer >= t->n_ranks || m->route[peer] != ROUTE_SHM)
        return NULL;
    return m->shm->ops->peer_window(m->shm, peer);
}

static void mux_free(struct mux *m)
{
    wd_transport_destroy(m->ucx);
    wd_transport_destroy(m->shm);
    wd_peers_cleanup(&m->peers);
    free(m->route);
    free(m);
}

static void mux_destroy(struct wd_transport *t)
{
    struct mux *m = t->impl;
    struct wd_error e;
    if (m->ucx && !m->comm->is_failed && wd_rank_check_all(&m->comm->ri, &e) == WD_OK) {
        /* Everything this rank sent is applied at its targets, then nobody closes an
         * endpoint until every member got there (their flushes need this rank's progress).
         * After a failure in the launch nothing is waited for: the launch is ending. */
        char key[WD_RDZV_MAX_KEY];
        snprintf(key, sizeof(key), "%s/down", m->key);
        if (wd_ucx_flush(m->comm->ucx, m->comm->timeout_ms, &e) != WD_OK ||
            wd_rdzv_barrier(m->comm->rdzv, key, t->n_ranks, m->comm->timeout_ms, &e) != WD_OK)
            wd_log(WD_LOG_WARN, "comm", "%s: teardown: %s", m->peers.name, e.msg);
    }
    mux_free(m);
    free(t);
}

static const struct wd_transport_ops mux_ops = {
    .put = mux_put,
    .signal = mux_signal,
    .wait = mux_wait,
    .peer_window = mux_peer_window,
    .destroy = mux_destroy,
};

/* ---------------------------------------------------------------- bring-up */

static enum wd_status check_args(const struct wd_comm *c, const char *name, const int *members,
                                 int n, int *me_p, struct wd_error *err)
{
    size_t len = strlen(name);
    if (len == 0 || len > 40 ||
        strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                     "0123456789_.-") != len)
        return wd_error_set(err, WD_ERR_INVALID, "comm: bad group name '%.48s'", name);
    *me_p = -1;
    for (int i = 0; i < n; i++) {
        if (members[i] < 0 || members[i] >= c->ri.world_size || (i && members[i] <= members[i - 1]))
            return wd_error_set(err, WD_ERR_INVALID,
                                "comm: group %s: members must be ascending ranks below %d", name,
                                c->ri.world_size);
        if (members[i] == c->ri.rank)
            *me_p = i;
    }
    if (n < 1 || *me_p < 0)
        return wd_error_set(err, WD_ERR_INVALID, "comm: group %s does not contain rank %d", name,
                            c->ri.rank);
    return WD_OK;
}

static int next_gen(struct wd_comm *c, const char *name)
{
    for (int i = 0; i < c->n_names; i++)
        if (strcmp(c->names[i].name, name) == 0)
            return ++c->names[i].gen;
    struct name_gen *p = realloc(c->names, (size_t)(c->n_names + 1) * sizeof(*p));
    if (!p)
        return -1;
    c->names = p;
    snprintf(p[c->n_names].name, sizeof(p[c->n_names].name), "%s", name);
    p[c->n_names].gen = 0;
    return c->names[c->n_names++].gen;
}

/* This rank's record: window size, shm segment name, ucx blob. */
static enum wd_status publish(struct mux *m, const char *seg, size_t window_bytes,
                              struct wd_error *err)
{
    const struct wd_rank_info *ri = &m->comm->ri;
    void *blob = NULL;
    size_t blob_len = 0;
    if (m->ucx)
        WD_CHECK(wd_transport_ucx_local_info(m->ucx, &blob, &blob_len, err));
    size_t seg_len = strlen(seg), len = REC_HDR + seg_len + blob_len;
    uint8_t *rec = calloc(1, len);
    if (!rec) {
        free(blob);
        return wd_error_set(err, WD_ERR_NOMEM, "comm: out of memory");
    }
    wd_le_put32(rec, REC_MAGIC);
    wd_le_put32(rec + 4, (uint32_t)ri->rank);
    wd_le_put32(rec + 8, (uint32_t)ri->node_rank);
    wd_le_put32(rec + 12, (uint32_t)seg_len);
    wd_le_put32(rec + 16, (uint32_t)window_bytes);
    wd_le_put32(rec + 20, (uint32_t)((uint64_t)window_bytes >> 32));
    wd_le_put32(rec + 24, (uint32_t)blob_len);
    memcpy(rec + REC_HDR, seg, seg_len);
    if (blob_len)
        memcpy(rec + REC_HDR + seg_len, blob, blob_len);
    free(blob);
    char key[WD_RDZV_MAX_KEY];
    snprintf(key, sizeof(key), "%s/%d", m->key, m->peers.rank);
    enum wd_status st = wd_rdzv_set(m->comm->rdzv, key, rec, len, err);
    free(rec);
    return st;
}

/* Reads peer j's record and connects it through the executor that reaches it. */
static enum wd_status connect_peer(struct mux *m, int j, size_t window_bytes, struct wd_error *err)
{
    const struct wd_rank_info *ri = &m->comm->ri;
    int grank = m->peers.members[j], node = wd_rank_node_of(ri, grank);
    char key[WD_RDZV_MAX_KEY];
    snprintf(key, sizeof(key), "%s/%d", m->key, j);
    void *v;
    size_t len;
    WD_CHECK(wd_rdzv_get(m->comm->rdzv, key, m->comm->timeout_ms, &v, &len, err));
    const uint8_t *r = v;
    enum wd_status st = WD_OK;
    uint64_t wb =
        len >= REC_HDR ? (uint64_t)wd_le_get32(r + 16) | (uint64_t)wd_le_get32(r + 20) << 32 : 0;
    uint32_t seg_len = len >= REC_HDR ? wd_le_get32(r + 12) : 0;
    uint32_t blob_len = len >= REC_HDR ? wd_le_get32(r + 24) : 0;
    char seg[128];
    if (len < REC_HDR || wd_le_get32(r) != REC_MAGIC || wd_le_get32(r + 4) != (uint32_t)grank ||
        wd_le_get32(r + 8) != (uint32_t)node || seg_len == 0 || seg_len >= sizeof(seg) ||
        (uint64_t)REC_HDR + seg_len + blob_len != len) {
        st = wd_error_set(err, WD_ERR_FORMAT, "%s: malformed record from rank %d", m->peers.name,
                          grank);
    } else if (wb != window_bytes) {
        st = wd_error_set(err, WD_ERR_INVALID,
                          "%s: rank %d has a %llu-byte window, rank %d a %zu-byte one",
                          m->peers.name, grank, (unsigned long long)wb, ri->rank, window_bytes);
    } else if (node == ri->node_rank && !m->comm->is_ucx_forced) {
        memcpy(seg, r + REC_HDR, seg_len);
        seg[seg_len] = 0;
        m->route[j] = ROUTE_SHM;
        st = wd_transport_shm_connect(m->shm, j, seg, err);
    } else if (blob_len == 0 || !m->ucx) {
        st = wd_error_set(err, WD_ERR_FORMAT, "%s: rank %d published no ucx address", m->peers.name,
                          grank);
    } else {
        m->route[j] = ROUTE_UCX;
        st = wd_transport_ucx_connect(m->ucx, j, r + REC_HDR + seg_len, blob_len, err);
    }
    free(v);
    return st;
}

static enum wd_status bring_up(struct mux *m, const char *name, int gen, size_t window_bytes,
                               struct wd_error *err)
{
    struct wd_comm *c = m->comm;
    const struct wd_rank_info *ri = &c->ri;
    char what[96], seg[128];
    snprintf(what, sizeof(what), "%s.%d-%d", name, gen, ri->rank);
    wd_rank_shm_name(ri, what, seg, sizeof(seg));
    WD_CHECK(wd_transport_shm_create(&m->peers, seg, window_bytes, &m->shm, err));
    int spans = c->is_ucx_forced && m->peers.n_ranks > 1;
    for (int j = 0; j < m->peers.n_ranks; j++)
        spans |= wd_rank_node_of(ri, m->peers.members[j]) != ri->node_rank;
    if (spans) {
        if (!c->ucx)
            WD_CHECK(wd_ucx_create(&c->ucx, err));
        WD_CHECK(wd_transport_ucx_create(c->ucx, &m->peers, m->shm->window, window_bytes,
                                         c->timeout_ms, &m->ucx, err));
    }
    if (m->peers.n_ranks > 1) {
        WD_CHECK(publish(m, seg, window_bytes, err));
        for (int j = 0; j < m->peers.n_ranks; j++)
            if (j != m->peers.rank)
                WD_CHECK(connect_peer(m, j, window_bytes, err));
        char key[WD_RDZV_MAX_KEY];
        snprintf(key, sizeof(key), "%s/up", m->key);
        WD_CHECK(wd_rdzv_barrier(c->rdzv, key, m->peers.n_ranks, c->timeout_ms, err));
    }
    wd_transport_shm_unlink(m->shm); /* every member has it mapped now */
    return WD_OK;
}

/* A bring-up step failed for a reason that may be a symptom (a peer's segment vanished
 * because that peer gave up on a third rank): if the launcher reports a failed rank within
 * a moment, that is the error to show. */
static enum wd_status blame_failed_rank(struct wd_comm *c, enum wd_status st, struct wd_error *err)
{
    struct wd_error e;
    for (int i = 0; i < 100; i++) {
        if (wd_rank_check_all(&c->ri, &e) != WD_OK) {
            if (err)
                *err = e;
            return e.status;
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return st;
}

enum wd_status wd_comm_transport_create(struct wd_comm *comm, const char *name, const int *members,
                                        int n_members, size_t window_bytes,
                                        struct wd_transport **t_p, struct wd_error *err)
{
    int me = -1;
    WD_CHECK(check_args(comm, name, members, n_members, &me, err));
    if (window_bytes < 8)
        return wd_error_set(err, WD_ERR_INVALID, "comm: group %s: window of %zu bytes", name,
                            window_bytes);
    int gen = next_gen(comm, name);
    struct wd_transport *t = calloc(1, sizeof(*t));
    struct mux *m = calloc(1, sizeof(*m));
    uint8_t *route = calloc((size_t)n_members, 1);
    if (gen < 0 || !t || !m || !route) {
        free(t);
        free(m);
        free(route);
        return wd_error_set(err, WD_ERR_NOMEM, "comm: out of memory");
    }
    m->comm = comm;
    m->route = route;
    snprintf(m->key, sizeof(m->key), "g/%s.%d", name, gen);
    enum wd_status st = wd_peers_init(&m->peers, name, me, n_members, members, &comm->ri, err);
    if (st == WD_OK)
        st = bring_up(m, name, gen, window_bytes, err);
    if (st != WD_OK && st != WD_ERR_PEER)
        st = blame_failed_rank(comm, st, err);
    if (st != WD_OK) {
        mux_free(m);
        free(t);
        wd_error_prefix(err, "rank %d: bringing up group %s", comm->ri.rank, name);
        return st;
    }
    t->ops = &mux_ops;
    t->rank = me;
    t->n_ranks = n_members;
    t->window = m->shm->window;
    t->window_bytes = window_bytes;
    int n_shm = 0, n_ucx = 0;
    for (int j = 0; j < n_members; j++)
        if (j != me)
            route[j] == ROUTE_UCX ? n_ucx++ : n_shm++;
    t->kind = n_ucx == 0 ? "shm" : n_shm == 0 ? "ucx" : "shm+ucx";
    t->impl = m;
    *t_p = t;
    return WD_OK;
}

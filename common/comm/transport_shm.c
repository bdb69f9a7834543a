/*
 * shm executor: POSIX shm segments mapped by every rank of a node. A put is a plain
 * memcpy; the signal's release add orders it after the copy for any reader that loads the
 * word with acquire order, which is exactly "data, then signal". The same code runs the
 * self peer (this rank's own window).
 */
#include "common/comm/transport_shm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/comm/shm_segment.h"

struct shm_impl {
    struct wd_peers peers;
    char seg_name[128];
    int is_linked;
    uint8_t **base; /* [n_ranks] each peer's mapped window; NULL = not connected */
};

static struct shm_impl *impl(const struct wd_transport *t)
{
    return t->impl;
}

static enum wd_status check_range(const struct wd_transport *t, size_t off, size_t len,
                                  struct wd_error *err)
{
    if (off > t->window_bytes || len > t->window_bytes - off)
        return wd_error_set(err, WD_ERR_INVALID,
                            "%s: range [%zu, +%zu) outside the %zu-byte window",
                            impl(t)->peers.name, off, len, t->window_bytes);
    return WD_OK;
}

static enum wd_status peer_base(struct wd_transport *t, int peer, uint8_t **base_p,
                                struct wd_error *err)
{
    struct shm_impl *s = impl(t);
    WD_CHECK(wd_peers_check(&s->peers, peer, err));
    if (!s->base[peer])
        return wd_error_set(err, WD_ERR_INVALID, "%s: rank %d is not reachable over shm",
                            s->peers.name, wd_peers_global(&s->peers, peer));
    *base_p = s->base[peer];
    return WD_OK;
}

static enum wd_status shm_put(struct wd_transport *t, int peer, size_t dst_off, const void *src,
                              size_t len, struct wd_error *err)
{
    uint8_t *base;
    WD_CHECK(check_range(t, dst_off, len, err));
    WD_CHECK(peer_base(t, peer, &base, err));
    if (len)
        memcpy(base + dst_off, src, len);
    return WD_OK;
}

static enum wd_status shm_signal(struct wd_transport *t, int peer, size_t sig_off, uint64_t add,
                                 struct wd_error *err)
{
    uint8_t *base;
    if (sig_off % 8)
        return wd_error_set(err, WD_ERR_INVALID, "%s: signal offset %zu not 8-byte aligned",
                            impl(t)->peers.name, sig_off);
    WD_CHECK(check_range(t, sig_off, 8, err));
    WD_CHECK(peer_base(t, peer, &base, err));
    __atomic_fetch_add((uint64_t *)(base + sig_off), add, __ATOMIC_RELEASE);
    return WD_OK;
}

static enum wd_status shm_wait(struct wd_transport *t, size_t sig_off, uint64_t target,
                               int from_peer, int timeout_ms, struct wd_error *err)
{
    if (sig_off % 8)
        return wd_error_set(err, WD_ERR_INVALID, "%s: signal offset %zu not 8-byte aligned",
                            impl(t)->peers.name, sig_off);
    WD_CHECK(check_range(t, sig_off, 8, err));
    return wd_peers_wait_word(&impl(t)->peers, (const uint64_t *)(t->window + sig_off), target,
                              from_peer, timeout_ms, NULL, NULL, err);
}

static void *shm_peer_window(struct wd_transport *t, int peer)
{
    struct shm_impl *s = impl(t);
    return peer >= 0 && peer < s->peers.n_ranks ? s->base[peer] : NULL;
}

static void shm_destroy(struct wd_transport *t)
{
    struct shm_impl *s = impl(t);
    wd_transport_shm_unlink(t);
    for (int i = 0; i < s->peers.n_ranks; i++)
        if (s->base[i])
            munmap(s->base[i], t->window_bytes);
    free(s->base);
    wd_peers_cleanup(&s->peers);
    free(s);
    free(t);
}

static const struct wd_transport_ops shm_ops = {
    .put = shm_put,
    .signal = shm_signal,
    .wait = shm_wait,
    .peer_window = shm_peer_window,
    .destroy = shm_destroy,
};

enum wd_status wd_transport_shm_create(const struct wd_peers *peers, const char *seg_name,
                                       size_t window_bytes, struct wd_transport **t_p,
                                       struct wd_error *err)
{
    if (window_bytes == 0 || strlen(seg_name) >= sizeof(((struct shm_impl *)0)->seg_name))
        return wd_error_set(err, WD_ERR_INVALID, "shm transport: empty window or long name");
    struct wd_transport *t = calloc(1, sizeof(*t));
    struct shm_impl *s = calloc(1, sizeof(*s));
    uint8_t **base = calloc((size_t)peers->n_ranks, sizeof(*base));
    void *window = NULL;
    enum wd_status st = WD_ERR_NOMEM;
    if (!t || !s || !base) {
        wd_error_set(err, st, "shm transport: out of memory");
        goto fail;
    }
    st = wd_peers_init(&s->peers, peers->name, peers->rank, peers->n_ranks, peers->members,
                       peers->ri, err);
    if (st != WD_OK)
        goto fail;
    st = wd_shm_segment_create(seg_name, window_bytes, &window, err);
    if (st != WD_OK) {
        wd_peers_cleanup(&s->peers);
        goto fail;
    }
    base[peers->rank] = window;
    snprintf(s->seg_name, sizeof(s->seg_name), "%s", seg_name);
    s->is_linked = 1;
    s->base = base;
    t->ops = &shm_ops;
    t->rank = peers->rank;
    t->n_ranks = peers->n_ranks;
    t->window = base[peers->rank];
    t->window_bytes = window_bytes;
    t->kind = "shm";
    t->impl = s;
    *t_p = t;
    return WD_OK;
fail:
    free(base);
    free(s);
    free(t);
    return st;
}

enum wd_status wd_transport_shm_connect(struct wd_transport *t, int peer, const char *seg_name,
                                        struct wd_error *err)
{
    struct shm_impl *s = impl(t);
    if (peer < 0 || peer >= t->n_ranks || peer == t->rank || s->base[peer])
        return wd_error_set(err, WD_ERR_INVALID, "%s: cannot connect peer %d", s->peers.name, peer);
    void *p;
    WD_CHECK(wd_shm_segment_open(seg_name, t->window_bytes, &p, err));
    s->base[peer] = p;
    return WD_OK;
}

void wd_transport_shm_unlink(struct wd_transport *t)
{
    struct shm_impl *s = impl(t);
    if (s->is_linked)
        shm_unlink(s->seg_name);
    s->is_linked = 0;
}

int wd_transport_shm_is_connected(const struct wd_transport *t, int peer)
{
    return peer >= 0 && peer < t->n_ranks && impl(t)->base[peer] != NULL;
}

/* Dispatch from the transport contract to its executor. */
#include "common/comm/transport.h"

enum wd_status wd_transport_put(struct wd_transport *t, int peer, size_t dst_off, const void *src,
                                size_t len, struct wd_error *err)
{
    return t->ops->put(t, peer, dst_off, src, len, err);
}

enum wd_status wd_transport_signal(struct wd_transport *t, int peer, size_t sig_off, uint64_t add,
                                   struct wd_error *err)
{
    return t->ops->signal(t, peer, sig_off, add, err);
}

enum wd_status wd_transport_wait(struct wd_transport *t, size_t sig_off, uint64_t target,
                                 int from_peer, int timeout_ms, struct wd_error *err)
{
    return t->ops->wait(t, sig_off, target, from_peer, timeout_ms, err);
}

void wd_transport_destroy(struct wd_transport *t)
{
    if (t)
        t->ops->destroy(t);
}

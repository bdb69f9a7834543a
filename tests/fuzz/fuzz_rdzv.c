/*
 * libFuzzer target: arbitrary bytes as one connection's stream into the rendezvous
 * server's request decoder and store (set/get/add, framing and size checks). The input's
 * first byte picks how many times the stream is replayed into the same store, so replaced
 * values and growing counters are exercised too. Nothing may crash or leak; the store must
 * answer a lookup afterwards.
 */
#include <stddef.h>
#include <stdint.h>

#include "common/comm/rendezvous.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wd_rdzv_server *srv = NULL;
    if (wd_rdzv_server_create(NULL, 0, &srv, NULL) != WD_OK)
        return 0;
    int replays = size ? 1 + data[0] % 3 : 1;
    for (int i = 0; i < replays; i++)
        if (wd_rdzv_server_feed(srv, size ? data + 1 : data, size ? size - 1 : 0) != 0)
            break;
    const void *v;
    size_t len;
    wd_rdzv_server_lookup(srv, "k", &v, &len);
    wd_rdzv_server_destroy(srv);
    return 0;
}

/*
 * libFuzzer target: arbitrary bytes as one connection's stream into the rendezvous
 * server's request decoder and store (set/get/add/hello, framing and size checks). The
 * input's first byte picks how many times the stream is replayed into the same store (so
 * replaced values and growing counters are exercised too) and, with bit 2, a server that
 * requires the launch token "t0k" (so the hello and the refusals before it are exercised).
 * Nothing may crash or leak; the store must answer a lookup afterwards, and a token server
 * must hold nothing unless the stream presented the token.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/comm/rendezvous.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wd_rdzv_server *srv = NULL;
    int is_token = size && (data[0] & 4);
    if (wd_rdzv_server_create(NULL, 0, is_token ? "t0k" : NULL, &srv, NULL) != WD_OK)
        return 0;
    int replays = size ? 1 + data[0] % 3 : 1;
    for (int i = 0; i < replays; i++)
        if (wd_rdzv_server_feed(srv, size ? data + 1 : data, size ? size - 1 : 0) != 0)
            break;
    const void *v;
    size_t len;
    int has_k = wd_rdzv_server_lookup(srv, "k", &v, &len);
    /* "hello" as the key of a hello frame, then the token as its value. */
    static const uint8_t token[] = {'h', 'e', 'l', 'l', 'o', 't', '0', 'k'};
    if (is_token && has_k &&
        (size < 1 + sizeof(token) || !memmem(data + 1, size - 1, token, sizeof(token))))
        __builtin_trap();
    wd_rdzv_server_destroy(srv);
    return 0;
}

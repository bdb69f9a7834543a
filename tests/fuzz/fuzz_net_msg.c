/*
 * libFuzzer target: arbitrary bytes as one control-plane frame into wd_msg_decode (size cap,
 * protobuf-c unpack under its memory budget, presence, counts, every validation rule) and
 * wd_msg_peek_kind. A frame that decodes must validate, encode again, and decode to the
 * same bytes once more (the codec is a fixed point after one trip). Nothing may crash or
 * leak; a refusal must leave the message empty.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/net/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wd_msg m, again;
    struct wd_error err = {0};
    (void)wd_msg_peek_kind(data, size);
    if (wd_msg_decode(data, size, &m, &err) != WD_OK) {
        if (m.kind != WD_MSG_NONE || m.storage || err.msg[0] == '\0')
            abort();
        return 0;
    }
    if (wd_msg_validate(&m, &err) != WD_OK)
        abort();
    void *buf, *buf2;
    size_t len, len2;
    if (wd_msg_encode(&m, &buf, &len, &err) != WD_OK)
        abort();
    if (wd_msg_decode(buf, len, &again, &err) != WD_OK || again.kind != m.kind)
        abort();
    if (wd_msg_peek_kind(buf, len) != m.kind)
        abort();
    if (wd_msg_encode(&again, &buf2, &len2, &err) != WD_OK || len2 != len ||
        memcmp(buf, buf2, len) != 0)
        abort();
    free(buf);
    free(buf2);
    wd_msg_free(&again);
    wd_msg_free(&m);
    return 0;
}

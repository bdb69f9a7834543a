/* Helpers shared by the codec's translation files (msg_decode.c, msg_encode.c, msg.c), the
 * only files that include the generated protobuf-c header. Internal to common/net. */
#ifndef WD_NET_MSG_INTERNAL_H
#define WD_NET_MSG_INTERNAL_H

#include <string.h>

#include "common/net/msg.h"
#include "wideep.pb-c.h"

static inline ProtobufCBinaryData wd_msg_text_bytes(const char *s)
{
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    return b;
}

/* Validated ids are >= 0, so an int32_t array reads as the same uint32_t values (C allows
 * the signed/unsigned alias); protobuf-c's struct fields are non-const but pack only reads. */
static inline uint32_t *wd_msg_as_u32(const int32_t *ids)
{
    return (uint32_t *)ids;
}

#endif

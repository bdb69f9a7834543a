/*
 * The control-plane codec's small pieces: peeking at a frame's kind without decoding it,
 * a message's lifetime (init, free), names for logs, the fingerprint's config hash. The
 * translation itself is msg_decode.c and msg_encode.c; these three are the only files that
 * see the generated types (proto/wideep.pb-c.h).
 */
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "common/net/msg_internal.h"

/* ---- peek ---- */

static int read_varint(const uint8_t *p, size_t len, size_t *off, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && *off < len; shift += 7) {
        uint8_t b = p[(*off)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return -1;
}

enum wd_msg_kind wd_msg_peek_kind(const void *buf, size_t len)
{
    static const enum wd_msg_kind by_field[] = {
        [WIDEEP__FRAME__BODY_REG] = WD_MSG_REGISTER,
        [WIDEEP__FRAME__BODY_REG_ACK] = WD_MSG_REGISTER_ACK,
        [WIDEEP__FRAME__BODY_REG_REFUSE] = WD_MSG_REGISTER_REFUSE,
        [WIDEEP__FRAME__BODY_HEARTBEAT] = WD_MSG_HEARTBEAT,
        [WIDEEP__FRAME__BODY_DRAIN] = WD_MSG_DRAIN,
        [WIDEEP__FRAME__BODY_GENERATE] = WD_MSG_GENERATE,
        [WIDEEP__FRAME__BODY_TOKEN_CHUNK] = WD_MSG_TOKEN_CHUNK,
        [WIDEEP__FRAME__BODY_ABORT] = WD_MSG_ABORT,
        [WIDEEP__FRAME__BODY_ERROR] = WD_MSG_ERROR,
        [WIDEEP__FRAME__BODY_DECODE_REQUEST] = WD_MSG_DECODE_REQUEST,
        [WIDEEP__FRAME__BODY_PREFILL_REQUEST] = WD_MSG_PREFILL_REQUEST,
        [WIDEEP__FRAME__BODY_KV_TARGET] = WD_MSG_KV_TARGET,
        [WIDEEP__FRAME__BODY_KV_DONE] = WD_MSG_KV_DONE,
        [WIDEEP__FRAME__BODY_KV_DESCRIPTORS] = WD_MSG_KV_DESCRIPTORS,
        [WIDEEP__FRAME__BODY_KV_RELEASE] = WD_MSG_KV_RELEASE,
    };
    const uint8_t *p = buf;
    size_t off = 0;
    enum wd_msg_kind kind = WD_MSG_NONE; /* a oneof's last occurrence wins */
    while (p && off < len) {
        uint64_t tag, v;
        if (read_varint(p, len, &off, &tag))
            break;
        uint64_t field = tag >> 3;
        switch (tag & 7) {
        case 0:
            if (read_varint(p, len, &off, &v))
                return kind;
            continue;
        case 1:
            v = 8;
            break;
        case 2:
            if (read_varint(p, len, &off, &v))
                return kind;
            if (field < sizeof(by_field) / sizeof(by_field[0]) && by_field[field] != WD_MSG_NONE)
                kind = by_field[field];
            break;
        case 5:
            v = 4;
            break;
        default:
            return kind;
        }
        if (v > len - off)
            break;
        off += (size_t)v;
    }
    return kind;
}

/* ---- lifetime ---- */

void wd_msg_init(struct wd_msg *m, enum wd_msg_kind kind)
{
    memset(m, 0, sizeof(*m));
    m->kind = kind;
    if (kind == WD_MSG_REGISTER)
        m->reg.fp.protocol_version = WD_MSG_PROTOCOL_VERSION;
    if (kind == WD_MSG_GENERATE || kind == WD_MSG_DECODE_REQUEST || kind == WD_MSG_PREFILL_REQUEST)
        m->generate.sampling.temperature = 1.0f, m->generate.sampling.top_p = 1.0f;
    if (kind == WD_MSG_TOKEN_CHUNK)
        m->chunk.matched_stop = -1;
}

void wd_msg_free(struct wd_msg *m)
{
    if (!m)
        return;
    free(m->storage);
    wd_msg_init(m, WD_MSG_NONE);
}

const char *wd_msg_kind_str(enum wd_msg_kind kind)
{
    static const char *const names[] = {
        [WD_MSG_NONE] = "none",
        [WD_MSG_REGISTER] = "register",
        [WD_MSG_REGISTER_ACK] = "register_ack",
        [WD_MSG_REGISTER_REFUSE] = "register_refuse",
        [WD_MSG_HEARTBEAT] = "heartbeat",
        [WD_MSG_DRAIN] = "drain",
        [WD_MSG_GENERATE] = "generate",
        [WD_MSG_TOKEN_CHUNK] = "token_chunk",
        [WD_MSG_ABORT] = "abort",
        [WD_MSG_ERROR] = "error",
        [WD_MSG_DECODE_REQUEST] = "decode_request",
        [WD_MSG_PREFILL_REQUEST] = "prefill_request",
        [WD_MSG_KV_TARGET] = "kv_target",
        [WD_MSG_KV_DONE] = "kv_done",
        [WD_MSG_KV_DESCRIPTORS] = "kv_descriptors",
        [WD_MSG_KV_RELEASE] = "kv_release",
    };
    return (unsigned)kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "unknown";
}

uint64_t wd_msg_config_hash(const void *data, size_t len)
{
    return XXH3_64bits(data, len);
}

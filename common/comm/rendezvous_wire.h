/*
 * Rendezvous wire format, shared by the server (rendezvous_server.c) and the client
 * (rendezvous.c). All integers little-endian. Request: u32 magic "WDRZ", u8 op, 3 zero
 * bytes, u32 key_len (1..WD_RDZV_MAX_KEY), u32 val_len (<= WD_RDZV_MAX_VALUE), key, value.
 * Reply: u32 magic, u8 status, 3 zero bytes, u32 val_len, u32 zero, value. add carries and
 * returns an 8-byte two's-complement counter.
 *
 * A server created with a launch token answers nothing but hello until a connection has
 * presented it: hello's key is "hello", its value the token (0..WD_RDZV_MAX_TOKEN bytes).
 * A hello with another token, or any other request first, gets "denied" and the connection
 * is closed. A server without a token takes hello from anyone and does not require it.
 */
#ifndef WD_COMM_RENDEZVOUS_WIRE_H
#define WD_COMM_RENDEZVOUS_WIRE_H

#include "common/comm/rendezvous.h"

#define WD_RDZV_MAGIC 0x5a524457u /* bytes "WDRZ" */
#define WD_RDZV_HDR 16
#define WD_RDZV_MAX_FRAME (WD_RDZV_HDR + WD_RDZV_MAX_KEY + WD_RDZV_MAX_VALUE)
#define WD_RDZV_HELLO_KEY "hello"

enum wd_rdzv_op {
    WD_RDZV_OP_SET = 1,
    WD_RDZV_OP_GET = 2,
    WD_RDZV_OP_ADD = 3,
    WD_RDZV_OP_HELLO = 4
};
enum wd_rdzv_reply {
    WD_RDZV_REPLY_OK = 0,
    WD_RDZV_REPLY_NOT_FOUND = 1,
    WD_RDZV_REPLY_BAD = 2,   /* malformed or meaningless request */
    WD_RDZV_REPLY_FULL = 3,  /* store limits reached */
    WD_RDZV_REPLY_DENIED = 4 /* launch token missing or different */
};

#endif

/* Between kv_transfer.c and kv_transfer_desc.c: the descriptor encoder. */
#ifndef WD_NET_KV_TRANSFER_INTERNAL_H
#define WD_NET_KV_TRANSFER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/net/kv_transfer.h"

/* Bytes of a descriptor carrying a worker address and an rkey of these lengths. */
size_t wd_kv_desc_bytes(size_t addr_len, size_t rkey_len);
/* Writes d (its worker address and rkey included) as wd_kv_desc_bytes bytes at out. */
void wd_kv_desc_encode(const struct wd_kv_desc *d, uint8_t *out);

#endif

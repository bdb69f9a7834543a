/*
 * Little-endian integers in byte buffers: how every wire and blob format of wideep that
 * is not protobuf (rendezvous records, UCX connection blobs, KV descriptors) writes its
 * numbers, whatever the host's byte order. Pure functions.
 */
#ifndef WD_UTIL_LE_H
#define WD_UTIL_LE_H

#include <stdint.h>

void wd_le_put32(uint8_t *p, uint32_t v);
void wd_le_put64(uint8_t *p, uint64_t v);
uint32_t wd_le_get32(const uint8_t *p);
uint64_t wd_le_get64(const uint8_t *p);

#endif

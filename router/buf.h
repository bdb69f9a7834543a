/*
 * wd_buf: a growable byte buffer for response text and SSE frames. Embedded
 * (wd_buf_init / wd_buf_cleanup); keeps its capacity across wd_buf_reset so a request
 * slot that is reused does not allocate again. Always NUL-terminated after a write.
 */
#ifndef WD_ROUTER_BUF_H
#define WD_ROUTER_BUF_H

#include <stddef.h>

#include "common/util/status.h"

struct wd_buf {
    char *p;
    size_t len, cap;
};

void wd_buf_init(struct wd_buf *b);
void wd_buf_cleanup(struct wd_buf *b);
void wd_buf_reset(struct wd_buf *b);
/* Makes room for n more bytes (+ the NUL). WD_ERR_NOMEM when that fails. */
enum wd_status wd_buf_reserve(struct wd_buf *b, size_t n);
enum wd_status wd_buf_append(struct wd_buf *b, const void *data, size_t n);
enum wd_status wd_buf_appendf(struct wd_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes (n <= len). */
void wd_buf_consume(struct wd_buf *b, size_t n);
/* Shortens to n bytes (n <= len). */
void wd_buf_truncate(struct wd_buf *b, size_t n);

#endif

/* Growable byte buffer. */
#include "router/buf.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void wd_buf_init(struct wd_buf *b)
{
    b->p = NULL;
    b->len = b->cap = 0;
}

void wd_buf_cleanup(struct wd_buf *b)
{
    free(b->p);
    wd_buf_init(b);
}

void wd_buf_reset(struct wd_buf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = 0;
}

enum wd_status wd_buf_reserve(struct wd_buf *b, size_t n)
{
    if (b->len + n + 1 <= b->cap)
        return WD_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return WD_ERR_NOMEM;
    b->p = p;
    b->cap = cap;
    return WD_OK;
}

enum wd_status wd_buf_append(struct wd_buf *b, const void *data, size_t n)
{
    WD_CHECK(wd_buf_reserve(b, n));
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
    return WD_OK;
}

enum wd_status wd_buf_appendf(struct wd_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return WD_ERR_INVALID;
    WD_CHECK(wd_buf_reserve(b, (size_t)n));
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return WD_OK;
}

void wd_buf_consume(struct wd_buf *b, size_t n)
{
    WD_ASSERT(n <= b->len);
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
    b->p[b->len] = 0;
}

void wd_buf_truncate(struct wd_buf *b, size_t n)
{
    WD_ASSERT(n <= b->len);
    b->len = n;
    if (b->p)
        b->p[n] = 0;
}

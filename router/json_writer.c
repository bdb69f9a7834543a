/* JSON value writer over wd_buf. */
#include "router/json_writer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum wd_status wd_jw_string(struct wd_buf *b, const char *s, size_t len)
{
    /* Worst case: every byte a 6-byte \u00XX escape. */
    WD_CHECK(wd_buf_reserve(b, len * 6 + 2));
    char *o = b->p + b->len;
    *o++ = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c >= 0x20) {
            *o++ = (char)c;
        } else if (c == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else if (c == '\r') {
            *o++ = '\\';
            *o++ = 'r';
        } else if (c == '\t') {
            *o++ = '\\';
            *o++ = 't';
        } else {
            static const char hex[] = "0123456789abcdef";
            memcpy(o, "\\u00", 4);
            o[4] = hex[c >> 4];
            o[5] = hex[c & 15];
            o += 6;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
    b->p[b->len] = 0;
    return WD_OK;
}

enum wd_status wd_jw_double(struct wd_buf *b, double v)
{
    if (isnan(v))
        return wd_buf_append(b, "null", 4);
    if (isinf(v))
        return v < 0 ? wd_buf_append(b, "-9999.0", 7) : wd_buf_append(b, "9999.0", 6);
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%.9g", v);
    /* "%g" may print an integer-looking "-1": still a JSON number; keep it short. */
    return wd_buf_append(b, tmp, (size_t)n);
}

enum wd_status wd_jw_int(struct wd_buf *b, long long v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%lld", v);
    return wd_buf_append(b, tmp, (size_t)n);
}

enum wd_status wd_jw_raw(struct wd_buf *b, const char *s)
{
    return wd_buf_append(b, s, strlen(s));
}

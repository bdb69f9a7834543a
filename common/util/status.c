/* Error records: formatting into the fixed buffer of struct wd_error. */
#include "common/util/status.h"

#include <stdarg.h>
#include <string.h>

enum wd_status wd_error_set(struct wd_error *err, enum wd_status status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
        err->status = status;
    }
    return status;
}

enum wd_status wd_error_prefix(struct wd_error *err, const char *fmt, ...)
{
    if (!err)
        return WD_ERR_INVALID;
    char prefix[WD_ERROR_LEN], old[WD_ERROR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old);
    return err->status;
}

const char *wd_status_str(enum wd_status status)
{
    switch (status) {
    case WD_OK:
        return "ok";
    case WD_ERR_INVALID:
        return "invalid";
    case WD_ERR_IO:
        return "io";
    case WD_ERR_FORMAT:
        return "format";
    case WD_ERR_UNSUPPORTED:
        return "unsupported";
    case WD_ERR_NOMEM:
        return "nomem";
    case WD_ERR_NOT_FOUND:
        return "not_found";
    case WD_ERR_TIMEOUT:
        return "timeout";
    case WD_ERR_PEER:
        return "peer";
    }
    return "unknown";
}

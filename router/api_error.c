/* OpenAI-shaped error bodies. */
#include "router/api_error.h"

#include <jansson.h>
#include <stdarg.h>
#include <string.h>

static const char *type_of(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 404:
        return "not_found_error";
    case 429:
        return "rate_limit_error";
    case 503:
        return "service_unavailable";
    case 504:
        return "timeout_error";
    default:
        return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

/* snprintf may cut a multi-byte character in two; jansson refuses invalid UTF-8. */
static void trim_utf8(char *s)
{
    size_t n = strlen(s), i = n;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0)
        return;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (n - (i - 1) < need)
        s[i - 1] = 0;
}

enum wd_status wd_api_error_set(struct wd_api_error *e, int status, const char *param,
                                const char *fmt, ...)
{
    e->status = status;
    e->type = type_of(status);
    e->code = NULL;
    snprintf(e->param, sizeof(e->param), "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    trim_utf8(e->param);
    trim_utf8(e->message);
    return WD_ERR_INVALID;
}

void wd_api_error_code(struct wd_api_error *e, const char *code)
{
    e->code = code;
}

char *wd_api_error_json(const struct wd_api_error *e, size_t *len_p)
{
    json_t *inner = json_pack("{s:s, s:s, s:o, s:o}", "message", e->message, "type", e->type,
                              "param", e->param[0] ? json_string(e->param) : json_null(), "code",
                              e->code ? json_string(e->code) : json_null());
    json_t *root = inner ? json_pack("{s:o}", "error", inner) : NULL;
    char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (s && len_p)
        *len_p = strlen(s);
    return s;
}

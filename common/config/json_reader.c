/* Typed, first-error-wins reads from a jansson object, and whole-file reads with a size cap. */
#include "common/config/json_reader.h"
#include "common/util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void wd_json_reader_init(struct wd_json_reader *r, const json_t *obj, const char *where,
                         struct wd_error *err)
{
    r->obj = obj;
    r->where = where;
    r->err = err;
    r->status = WD_OK;
}

enum wd_status wd_json_reader_fail(struct wd_json_reader *r, enum wd_status status, const char *fmt,
                                   ...)
{
    if (r->status != WD_OK)
        return r->status;
    r->status = status;
    if (r->err) {
        char msg[WD_ERROR_LEN];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        wd_error_set(r->err, status, "%s: %s", r->where, msg);
    }
    return status;
}

/* The value of key, NULL when absent or null. */
static const json_t *lookup(const struct wd_json_reader *r, const char *key)
{
    const json_t *v = json_object_get(r->obj, key);
    return (v && !json_is_null(v)) ? v : NULL;
}

int wd_json_reader_has(const struct wd_json_reader *r, const char *key)
{
    return lookup(r, key) != NULL;
}

/* Common start of every typed read: NULL means "use the default" (absent, or an earlier error). */
static const json_t *begin_read(struct wd_json_reader *r, const char *key, int required)
{
    if (r->status != WD_OK)
        return NULL;
    const json_t *v = lookup(r, key);
    if (!v && required)
        wd_json_reader_fail(r, WD_ERR_NOT_FOUND, "missing required key '%s'", key);
    return v;
}

long long wd_json_reader_int(struct wd_json_reader *r, const char *key, int required, long long def,
                             long long lo, long long hi)
{
    const json_t *v = begin_read(r, key, required);
    if (!v)
        return def;
    long long x;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        /* Bound before converting: a double far outside long long would be UB to cast. */
        if (d != floor(d) || d < (double)lo || d > (double)hi) {
            wd_json_reader_fail(r, WD_ERR_INVALID, "'%s' = %g must be an integer in [%lld, %lld]",
                                key, d, lo, hi);
            return def;
        }
        x = (long long)d;
    } else {
        wd_json_reader_fail(r, WD_ERR_FORMAT, "'%s' must be an integer", key);
        return def;
    }
    if (x < lo || x > hi) {
        wd_json_reader_fail(r, WD_ERR_INVALID, "'%s' = %lld out of range [%lld, %lld]", key, x, lo,
                            hi);
        return def;
    }
    return x;
}

double wd_json_reader_double(struct wd_json_reader *r, const char *key, int required, double def,
                             double lo, double hi)
{
    const json_t *v = begin_read(r, key, required);
    if (!v)
        return def;
    if (!json_is_number(v)) {
        wd_json_reader_fail(r, WD_ERR_FORMAT, "'%s' must be a number", key);
        return def;
    }
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi) {
        wd_json_reader_fail(r, WD_ERR_INVALID, "'%s' = %g out of range [%g, %g]", key, d, lo, hi);
        return def;
    }
    return d;
}

int wd_json_reader_bool(struct wd_json_reader *r, const char *key, int required, int def)
{
    const json_t *v = begin_read(r, key, required);
    if (!v)
        return def;
    if (!json_is_boolean(v)) {
        wd_json_reader_fail(r, WD_ERR_FORMAT, "'%s' must be true or false", key);
        return def;
    }
    return json_is_true(v);
}

void wd_json_reader_string(struct wd_json_reader *r, const char *key, int required, const char *def,
                           char *out, size_t cap)
{
    const json_t *v = begin_read(r, key, required);
    const char *s = def ? def : "";
    if (v) {
        if (!json_is_string(v)) {
            wd_json_reader_fail(r, WD_ERR_FORMAT, "'%s' must be a string", key);
        } else if (json_string_length(v) >= cap || strlen(json_string_value(v)) >= cap) {
            wd_json_reader_fail(r, WD_ERR_INVALID, "'%s' is longer than %zu bytes", key, cap - 1);
        } else {
            s = json_string_value(v);
        }
    }
    snprintf(out, cap, "%s", s);
}

void wd_json_reader_int_list(struct wd_json_reader *r, const char *key, int required, long long lo,
                             long long hi, int *out, int cap, int *n_p)
{
    *n_p = 0;
    const json_t *v = begin_read(r, key, required);
    if (!v)
        return;
    if (json_is_integer(v))
        v = NULL; /* a single value: read below through the scalar path */
    else if (!json_is_array(v)) {
        wd_json_reader_fail(r, WD_ERR_FORMAT, "'%s' must be an integer or a list of integers", key);
        return;
    }
    if (!v) {
        long long x = wd_json_reader_int(r, key, 1, 0, lo, hi);
        if (r->status == WD_OK && cap > 0) {
            out[0] = (int)x;
            *n_p = 1;
        }
        return;
    }
    size_t n = json_array_size(v);
    if (n > (size_t)cap) {
        wd_json_reader_fail(r, WD_ERR_UNSUPPORTED, "'%s' has %zu entries, at most %d supported",
                            key, n, cap);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_integer(e)) {
            wd_json_reader_fail(r, WD_ERR_FORMAT, "'%s'[%zu] must be an integer", key, i);
            return;
        }
        long long x = json_integer_value(e);
        if (x < lo || x > hi) {
            wd_json_reader_fail(r, WD_ERR_INVALID, "'%s'[%zu] = %lld out of range [%lld, %lld]",
                                key, i, x, lo, hi);
            return;
        }
        out[i] = (int)x;
    }
    *n_p = (int)n;
}

enum wd_status wd_json_reader_parse(const char *text, size_t len, const char *where,
                                    json_t **root_p, struct wd_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return wd_error_set(err, WD_ERR_FORMAT, "%s: invalid JSON: %s at line %d column %d", where,
                            jerr.text, jerr.line, jerr.column);
    if (!json_is_object(root)) {
        json_decref(root);
        return wd_error_set(err, WD_ERR_FORMAT, "%s: top level is not a JSON object", where);
    }
    *root_p = root;
    return WD_OK;
}

enum wd_status wd_json_reader_read_file(const char *path, size_t max_len, char **text_p,
                                        size_t *len_p, struct wd_error *err)
{
    int fd;
    size_t file_size;
    WD_CHECK(wd_file_open_regular(path, &fd, &file_size, err));
    if (file_size > max_len) {
        close(fd);
        return wd_error_set(err, WD_ERR_FORMAT, "%s: %lld bytes, larger than the %zu byte limit",
                            path, (long long)file_size, max_len);
    }
    size_t len = file_size;
    char *text = malloc(len + 1);
    if (!text) {
        close(fd);
        return wd_error_set(err, WD_ERR_NOMEM, "%s: out of memory for %zu bytes", path, len);
    }
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, text + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : 0;
            free(text);
            close(fd);
            return wd_error_set(err, WD_ERR_IO, "%s: %s", path,
                                e ? strerror(e) : "file shrank while reading");
        }
        got += (size_t)n;
    }
    close(fd);
    text[len] = 0;
    *text_p = text;
    *len_p = len;
    return WD_OK;
}

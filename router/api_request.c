/* Request parsing: the JSON entry point, the field walker and the typed readers. */
#include "router/api_request.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "router/api_fields.h"

/* The field's name as the client wrote it, with the nesting prefix. */
static const char *full_name(struct wd_api_ctx *cx, const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s%s", cx->prefix, name);
    return buf;
}

static enum wd_status bad(struct wd_api_ctx *cx, const char *name, const char *what)
{
    char n[96];
    full_name(cx, name, n, sizeof(n));
    return wd_api_error_set(cx->e, 400, n, "'%s' %s", n, what);
}

enum wd_status wd_api_unsupported(struct wd_api_ctx *cx, const char *name, const char *detail)
{
    char n[96];
    full_name(cx, name, n, sizeof(n));
    return wd_api_error_set(cx->e, 400, n, "'%s' is not supported by wideep%s%s", n,
                            detail ? ": " : "", detail ? detail : "");
}

static const struct wd_api_field *lookup(const struct wd_api_field *f, int n, const char *key)
{
    for (int i = 0; i < n; i++)
        if (strcmp(f[i].name, key) == 0)
            return &f[i];
    return NULL;
}

enum wd_status wd_api_fields_walk(struct wd_api_ctx *cx, json_t *obj,
                                  const struct wd_api_field *shared, int n_shared,
                                  const struct wd_api_field *own, int n_own)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        const struct wd_api_field *f = lookup(shared, n_shared, key);
        if (!f)
            f = lookup(own, n_own, key);
        if (!f)
            return wd_api_unsupported(cx, key, "unknown field");
        if (json_is_null(v))
            continue;
        WD_CHECK(f->fn(cx, key, v));
    }
    return WD_OK;
}

enum wd_status wd_api_get_bool(struct wd_api_ctx *cx, const char *name, json_t *v, int *out)
{
    if (!json_is_boolean(v))
        return bad(cx, name, "must be a boolean");
    *out = json_is_true(v);
    return WD_OK;
}

enum wd_status wd_api_get_int(struct wd_api_ctx *cx, const char *name, json_t *v, long long min,
                              long long max, int *out)
{
    long long x;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
               fabs(json_real_value(v)) < 9e15) {
        x = (long long)json_real_value(v); /* 16.0 is an integer to Python clients */
    } else {
        return bad(cx, name, "must be an integer");
    }
    if (x < min || x > max) {
        char n[96], what[128];
        snprintf(what, sizeof(what), "must be in [%lld, %lld], got %lld", min, max, x);
        return wd_api_error_set(cx->e, 400, full_name(cx, name, n, sizeof(n)), "'%s' %s", n, what);
    }
    *out = (int)x;
    return WD_OK;
}

enum wd_status wd_api_get_float(struct wd_api_ctx *cx, const char *name, json_t *v, double min,
                                double max, float *out)
{
    if (!json_is_number(v))
        return bad(cx, name, "must be a number");
    double x = json_number_value(v);
    if (!(x >= min && x <= max)) {
        char n[96];
        return wd_api_error_set(cx->e, 400, full_name(cx, name, n, sizeof(n)),
                                "'%s' must be in [%g, %g], got %g", n, min, max, x);
    }
    *out = (float)x;
    return WD_OK;
}

static enum wd_status add_stop(struct wd_api_ctx *cx, const char *name, json_t *s)
{
    struct wd_api_request *r = cx->req;
    if (!json_is_string(s))
        return bad(cx, name, "must be a string or a list of strings");
    size_t len = json_string_length(s);
    if (len == 0)
        return bad(cx, name, "must not contain an empty string");
    if (len > WD_API_MAX_STOP_LEN) {
        char n[96];
        return wd_api_error_set(cx->e, 400, full_name(cx, name, n, sizeof(n)),
                                "'%s': a stop string is %zu bytes (at most %d)", n, len,
                                WD_API_MAX_STOP_LEN);
    }
    if (r->n_stop == WD_API_MAX_STOP) {
        char n[96];
        return wd_api_error_set(cx->e, 400, full_name(cx, name, n, sizeof(n)),
                                "'%s': at most %d stop strings", n, WD_API_MAX_STOP);
    }
    r->stop[r->n_stop] = json_string_value(s);
    r->stop_len[r->n_stop++] = len;
    return WD_OK;
}

enum wd_status wd_api_get_stop(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    cx->req->n_stop = 0;
    if (!json_is_array(v))
        return add_stop(cx, name, v);
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) WD_CHECK(add_stop(cx, name, s));
    return WD_OK;
}

enum wd_status wd_api_get_ids(struct wd_api_ctx *cx, const char *name, json_t *v, int32_t **ids_p,
                              int *n_p)
{
    if (!json_is_array(v))
        return bad(cx, name, "must be a list of token ids");
    size_t n = json_array_size(v);
    if (n > (1u << 24))
        return bad(cx, name, "is too long");
    int32_t *ids = malloc((n ? n : 1) * sizeof(int32_t));
    if (!ids)
        return wd_api_error_set(cx->e, 500, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(v, i);
        long long id = json_is_integer(x) ? json_integer_value(x) : -1;
        if (!json_is_integer(x) || id < 0 || id >= cx->model->vocab_size) {
            free(ids);
            char n_[96];
            return wd_api_error_set(cx->e, 400, full_name(cx, name, n_, sizeof(n_)),
                                    "'%s'[%zu] is not a token id in [0, %d)", n_, i,
                                    (int)cx->model->vocab_size);
        }
        ids[i] = (int32_t)id;
    }
    *ids_p = ids;
    *n_p = (int)n;
    return WD_OK;
}

enum wd_status wd_api_get_stop_ids(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    int32_t *ids = NULL;
    int n = 0;
    WD_CHECK(wd_api_get_ids(cx, name, v, &ids, &n));
    if (n > WD_API_MAX_STOP_IDS) {
        free(ids);
        char n_[96];
        return wd_api_error_set(cx->e, 400, full_name(cx, name, n_, sizeof(n_)),
                                "'%s': at most %d stop token ids", n_, WD_API_MAX_STOP_IDS);
    }
    memcpy(cx->req->stop_ids, ids, sizeof(int32_t) * (size_t)n);
    cx->req->n_stop_ids = n;
    free(ids);
    return WD_OK;
}

/* --- handlers shared by the endpoints --- */

enum wd_status wd_api_field_harmless(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    (void)cx, (void)name, (void)v;
    return WD_OK;
}

enum wd_status wd_api_field_model(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    if (!json_is_string(v))
        return bad(cx, name, "must be a string");
    if (strcmp(json_string_value(v), cx->model->served_name) != 0) {
        wd_api_error_set(cx->e, 404, name,
                         "The model `%s` does not exist (this server serves `%s`)",
                         json_string_value(v), cx->model->served_name);
        wd_api_error_code(cx->e, "model_not_found");
        return WD_ERR_NOT_FOUND;
    }
    return WD_OK;
}

enum wd_status wd_api_field_stream(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    return wd_api_get_bool(cx, name, v, &cx->req->is_stream);
}

enum wd_status wd_api_field_temperature(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    return wd_api_get_float(cx, name, v, 0.0, 100.0, &cx->req->temperature);
}

enum wd_status wd_api_field_top_p(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    WD_CHECK(wd_api_get_float(cx, name, v, 0.0, 1.0, &cx->req->top_p));
    if (cx->req->top_p <= 0.0f)
        return bad(cx, name, "must be in (0, 1]");
    return WD_OK;
}

enum wd_status wd_api_field_top_k(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    /* -1 and 0 both mean "off" (SGLang's -1, vLLM's 0 and -1). */
    WD_CHECK(wd_api_get_int(cx, name, v, -1, 1 << 30, &cx->req->top_k));
    if (cx->req->top_k < 0)
        cx->req->top_k = 0;
    return WD_OK;
}

enum wd_status wd_api_field_min_p(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    return wd_api_get_float(cx, name, v, 0.0, 1.0, &cx->req->min_p);
}

enum wd_status wd_api_field_seed(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    if (!json_is_integer(v))
        return bad(cx, name, "must be an integer");
    cx->req->seed = (uint64_t)json_integer_value(v);
    cx->req->has_seed = 1;
    return WD_OK;
}

enum wd_status wd_api_field_max_tokens(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    return wd_api_get_int(cx, name, v, 1, 1 << 24, &cx->req->max_tokens);
}

enum wd_status wd_api_field_stop(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    return wd_api_get_stop(cx, name, v);
}

enum wd_status wd_api_field_stop_ids(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    return wd_api_get_stop_ids(cx, name, v);
}

enum wd_status wd_api_field_ignore_eos(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    return wd_api_get_bool(cx, name, v, &cx->req->ignore_eos);
}

enum wd_status wd_api_field_skip_special(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    return wd_api_get_bool(cx, name, v, &cx->req->skip_special_tokens);
}

enum wd_status wd_api_field_only_one(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    if (!json_is_number(v))
        return bad(cx, name, "must be a number");
    if (json_number_value(v) != 1.0)
        return wd_api_unsupported(cx, name, "only 1 is");
    return WD_OK;
}

enum wd_status wd_api_field_only_zero(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    if (!json_is_number(v))
        return bad(cx, name, "must be a number");
    if (json_number_value(v) != 0.0)
        return wd_api_unsupported(cx, name, "only 0 is");
    return WD_OK;
}

enum wd_status wd_api_field_only_empty(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    if ((json_is_object(v) && json_object_size(v) == 0) ||
        (json_is_array(v) && json_array_size(v) == 0) ||
        (json_is_string(v) && json_string_length(v) == 0))
        return WD_OK;
    return wd_api_unsupported(cx, name, NULL);
}

enum wd_status wd_api_field_only_false(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    int b;
    WD_CHECK(wd_api_get_bool(cx, name, v, &b));
    return b ? wd_api_unsupported(cx, name, "only false is") : WD_OK;
}

enum wd_status wd_api_field_refused(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    (void)v;
    return wd_api_unsupported(cx, name, NULL);
}

/* --- entry point --- */

void wd_api_request_cleanup(struct wd_api_request *req)
{
    free(req->msgs);
    free(req->ids);
    for (int i = 0; i < req->n_owned; i++)
        free(req->owned[i]);
    free(req->owned);
    json_decref((json_t *)req->json);
    memset(req, 0, sizeof(*req));
}

enum wd_status wd_api_request_parse(enum wd_api_kind kind, const char *body, size_t len,
                                    const struct wd_api_model *model, struct wd_api_request *req,
                                    struct wd_api_error *e)
{
    memset(req, 0, sizeof(*req));
    req->kind = kind;
    req->max_tokens = -1;
    req->temperature = model->temperature;
    req->top_p = model->top_p;
    req->top_k = model->top_k;
    req->min_p = model->min_p;
    req->skip_special_tokens = 1;
    req->add_generation_prompt = 1;
    req->enable_thinking = -1;
    json_error_t jerr;
    /* JSON_REJECT_DUPLICATES: {"n": 1, "n": 2} must not pass as n = 1. */
    json_t *root = body && len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!root) {
        if (!body || !len)
            return wd_api_error_set(e, 400, NULL, "the request body is empty (expected JSON)");
        return wd_api_error_set(e, 400, NULL, "the request body is not valid JSON: %s (line %d)",
                                jerr.text, jerr.line);
    }
    req->json = root;
    if (!json_is_object(root)) {
        wd_api_request_cleanup(req);
        return wd_api_error_set(e, 400, NULL, "the request body must be a JSON object");
    }
    struct wd_api_ctx cx = {
        .req = req, .model = model, .e = e, .prefix = "", .max_completion_tokens = -1};
    enum wd_status st = kind == WD_API_CHAT         ? wd_api_parse_chat(&cx, root)
                        : kind == WD_API_COMPLETION ? wd_api_parse_completion(&cx, root)
                                                    : wd_api_parse_generate(&cx, root);
    if (st != WD_OK) {
        wd_api_request_cleanup(req);
        return st;
    }
    return WD_OK;
}

/*
 * HTTP routing: which path takes which method, the Bearer check, 404 / 405 / 413, and the
 * generation endpoints up to admission (parse, tokenize, length checks). The GET
 * endpoints live in router_info.c; a request's life after admission in router_requests.c.
 */
#include <stdlib.h>
#include <string.h>

#include "common/util/log.h"
#include "router/router_internal.h"

enum route_kind { R_CHAT, R_COMPLETION, R_GENERATE, R_INFO };

struct route {
    const char *path;
    enum wd_http_method method;
    enum route_kind kind;
    int is_public; /* no API key needed */
};

static const struct route routes[] = {
    {"/v1/chat/completions", WD_HTTP_POST, R_CHAT, 0},
    {"/v1/completions", WD_HTTP_POST, R_COMPLETION, 0},
    {"/generate", WD_HTTP_POST, R_GENERATE, 0},
    {"/v1/models", WD_HTTP_GET, R_INFO, 0},
    {"/health", WD_HTTP_GET, R_INFO, 1},
    {"/health_generate", WD_HTTP_GET, R_INFO, 0},
    {"/metrics", WD_HTTP_GET, R_INFO, 1},
    {"/get_model_info", WD_HTTP_GET, R_INFO, 0},
    {"/get_server_info", WD_HTTP_GET, R_INFO, 0},
    {"/workers", WD_HTTP_GET, R_INFO, 0},
};
#define N_ROUTES ((int)(sizeof(routes) / sizeof(routes[0])))

static const struct route *find_route(const char *path)
{
    for (int i = 0; i < N_ROUTES; i++)
        if (strcmp(routes[i].path, path) == 0)
            return &routes[i];
    return NULL;
}

static void fill_error(struct wd_http_response *resp, const struct wd_api_error *e,
                       int retry_after_secs)
{
    memset(resp, 0, sizeof(*resp));
    resp->status = e->status;
    resp->content_type = "application/json";
    resp->body = wd_api_error_json(e, &resp->body_len);
    if (e->status == 429 || (e->status == 503 && retry_after_secs > 0)) {
        resp->header_name = "Retry-After";
        snprintf(resp->header_value, sizeof(resp->header_value), "%d",
                 retry_after_secs > 0 ? retry_after_secs : 1);
    }
}

void wd_router_respond_error(struct wd_http_conn *c, const struct wd_api_error *e,
                             int retry_after_secs)
{
    struct wd_http_response resp;
    fill_error(&resp, e, retry_after_secs);
    wd_http_set_user(c, NULL);
    wd_http_respond(c, &resp);
}

/* Constant time in the key's length, so the comparison leaks nothing about the key. */
static int key_matches(const char *authorization, const char *key)
{
    static const char prefix[] = "Bearer ";
    if (!authorization || strncmp(authorization, prefix, sizeof(prefix) - 1) != 0)
        return 0;
    const char *given = authorization + sizeof(prefix) - 1;
    size_t kl = strlen(key), gl = strlen(given);
    unsigned char diff = (unsigned char)(kl != gl);
    for (size_t i = 0; i < kl; i++)
        diff |= (unsigned char)(key[i] ^ (i < gl ? given[i] : 0));
    return diff == 0;
}

int wd_router_http_precheck(void *ctx, const struct wd_http_request *req,
                            struct wd_http_response *resp)
{
    struct wd_router *r = ctx;
    const struct route *rt = find_route(req->path);
    struct wd_api_error e;
    if (!rt) {
        wd_api_error_set(&e, 404, NULL, "no such endpoint: %s %s", req->method_name, req->path);
        fill_error(resp, &e, 0);
        return 1;
    }
    if (r->args.api_key && !rt->is_public && !key_matches(req->authorization, r->args.api_key)) {
        wd_api_error_set(&e, 401, NULL,
                         req->authorization
                             ? "Incorrect API key provided"
                             : "Missing API key: send \"Authorization: Bearer KEY\"");
        wd_api_error_code(&e, "invalid_api_key");
        fill_error(resp, &e, 0);
        return 1;
    }
    if (rt->method != req->method) {
        const char *allow = rt->method == WD_HTTP_GET ? "GET" : "POST";
        wd_api_error_set(&e, 405, NULL, "%s takes %s, not %s", rt->path, allow, req->method_name);
        fill_error(resp, &e, 0);
        resp->header_name = "Allow";
        snprintf(resp->header_value, sizeof(resp->header_value), "%s", allow);
        return 1;
    }
    return 0;
}

/* max_tokens against the context: SGLang's rule (an explicit max that does not fit is a
 * 400; the default fills what is left). */
static int check_length(struct wd_router *r, const struct wd_api_request *api, int n_prompt,
                        int *max_tokens_p, struct wd_api_error *e)
{
    int ctx = r->model->context_len;
    const char *field = api->kind == WD_API_CHAT ? "messages" : "prompt";
    if (n_prompt >= ctx) {
        wd_api_error_set(e, 400, field,
                         "The prompt is %d tokens, at or over this model's maximum context "
                         "length of %d tokens",
                         n_prompt, ctx);
        return -1;
    }
    int max = api->max_tokens;
    if (max < 0) {
        max = api->kind == WD_API_CHAT ? ctx - n_prompt : api->kind == WD_API_COMPLETION ? 16 : 128;
        if (max > ctx - n_prompt)
            max = ctx - n_prompt;
    } else if ((long)n_prompt + max > ctx) {
        wd_api_error_set(e, 400, api->kind == WD_API_GENERATE ? "max_new_tokens" : "max_tokens",
                         "This model's maximum context length is %d tokens. However, you "
                         "requested %ld tokens (%d in the prompt, %d for the completion)",
                         ctx, (long)n_prompt + max, n_prompt, max);
        return -1;
    }
    *max_tokens_p = max;
    return 0;
}

static void generation(struct wd_router *r, struct wd_http_conn *c,
                       const struct wd_http_request *req, enum wd_api_kind kind)
{
    struct wd_api_request api;
    struct wd_api_error e;
    int32_t *prompt = NULL;
    int n_prompt = 0, max_tokens = 0;
    if (wd_api_request_parse(kind, req->body, req->body_len, &r->model->api, &api, &e) != WD_OK) {
        wd_metrics_add(r->m.reg, r->m.requests, e.status == 404 ? "not_found" : "bad_request", 1);
        wd_router_respond_error(c, &e, 0);
        return;
    }
    if (wd_router_model_tokenize(r->model, &api, &prompt, &n_prompt, &e) != WD_OK ||
        check_length(r, &api, n_prompt, &max_tokens, &e) != 0) {
        free(prompt);
        wd_api_request_cleanup(&api);
        wd_metrics_add(r->m.reg, r->m.requests, "bad_request", 1);
        wd_router_respond_error(c, &e, 0);
        return;
    }
    wd_router_admit(r, c, &api, prompt, n_prompt, max_tokens, 0);
}

void wd_router_http_request(void *ctx, struct wd_http_conn *c, const struct wd_http_request *req)
{
    struct wd_router *r = ctx;
    struct wd_api_error e;
    if (req->is_body_too_big) {
        wd_api_error_set(&e, 413, NULL, "the request body is over %ld bytes (--max-body-bytes)",
                         r->args.max_body_bytes);
        wd_router_respond_error(c, &e, 0);
        return;
    }
    const struct route *rt = find_route(req->path);
    WD_ASSERT(rt); /* the precheck answered unknown paths */
    switch (rt->kind) {
    case R_CHAT:
        generation(r, c, req, WD_API_CHAT);
        break;
    case R_COMPLETION:
        generation(r, c, req, WD_API_COMPLETION);
        break;
    case R_GENERATE:
        generation(r, c, req, WD_API_GENERATE);
        break;
    case R_INFO:
        if (!wd_router_info(r, c, req->path)) {
            wd_api_error_set(&e, 404, NULL, "no such endpoint: %s", req->path);
            wd_router_respond_error(c, &e, 0);
        }
        break;
    }
}

void wd_router_http_gone(void *ctx, void *user)
{
    wd_router_client_gone(ctx, user);
}

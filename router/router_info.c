/*
 * The GET endpoints: /v1/models (OpenAI's list), /health (the loop is alive),
 * /health_generate (a real one-token request through a worker, 200 or 503),
 * /metrics (Prometheus text), /get_model_info and /get_server_info (SGLang's shapes,
 * the router's part), /workers (the registry and each DP rank's load).
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "router/router_internal.h"

static void respond_json(struct wd_http_conn *c, json_t *root)
{
    struct wd_http_response resp = {.status = 200, .content_type = "application/json"};
    resp.body = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (!resp.body) {
        struct wd_api_error e;
        wd_api_error_set(&e, 500, NULL, "out of memory");
        wd_router_respond_error(c, &e, 0);
        return;
    }
    resp.body_len = strlen(resp.body);
    wd_http_respond(c, &resp);
}

static json_t *models(struct wd_router *r)
{
    json_t *model = json_pack("{s:s, s:s, s:I, s:s, s:s, s:i}", "id", r->model->served_name,
                              "object", "model", "created", (json_int_t)0, "owned_by", "wideep",
                              "root", r->model->path, "max_model_len", r->model->context_len);
    return json_pack("{s:s, s:[o]}", "object", "list", "data", model);
}

static json_t *workers_json(struct wd_router *r)
{
    double now = wd_router_now();
    json_t *list = json_array();
    for (int s = 0; s < WD_WORKERS_MAX; s++) {
        const struct wd_worker *wk = wd_workers_at_const(r->workers, s);
        if (!wk)
            continue;
        json_t *ranks = json_array();
        for (int i = 0; i < wk->n_dp; i++) {
            const struct wd_worker_rank *k = &wk->ranks[i];
            json_array_append_new(
                ranks,
                json_pack("{s:i, s:I, s:i, s:i, s:I, s:i, s:I}", "dp_rank", i, "free_kv_pages",
                          (json_int_t)k->free_pages, "running", k->running, "waiting", k->waiting,
                          "queued_prefill_tokens", (json_int_t)k->queued_prefill_tokens, "inflight",
                          k->inflight, "load", (json_int_t)wd_worker_rank_load(k)));
        }
        json_array_append_new(
            list, json_pack("{s:s, s:s, s:i, s:i, s:I, s:b, s:b, s:f, s:f, s:i, s:I, s:I, s:o}",
                            "instance_id", wk->name, "role", wd_worker_role_name(wk->role),
                            "dp_size", wk->n_dp, "page_size", wk->page_size, "kv_pages_per_rank",
                            (json_int_t)wk->pages_per_rank, "is_draining", wk->is_draining,
                            "is_cooled_off", now < wk->cooled_until, "registered_secs_ago",
                            now - wk->registered_at, "last_seen_secs_ago", now - wk->last_seen,
                            "inflight", wk->inflight, "requests", (json_int_t)wk->n_routed,
                            "failures", (json_int_t)wk->n_failed, "dp_ranks", ranks));
    }
    return json_pack("{s:o, s:i, s:i}", "workers", list, "running", r->n_running, "queued",
                     r->queue.n);
}

static json_t *server_info(struct wd_router *r)
{
    const struct wd_router_args *a = &r->args;
    return json_pack(
        "{s:s, s:s, s:s, s:i, s:i, s:s, s:i, s:i, s:i, s:I, s:b, s:i, s:i, s:i, s:i, s:f, s:o}",
        "role", "router", "model_path", a->model_path, "served_model_name", r->model->served_name,
        "port", wd_http_port(r->http), "worker_port", wd_worker_link_port(r->link), "policy",
        a->policy, "max_concurrent_requests", a->max_concurrent_requests, "queue_size",
        a->queue_size, "request_timeout_secs", a->request_timeout_secs, "max_body_bytes",
        (json_int_t)a->max_body_bytes, "api_key_set", a->api_key != NULL, "heartbeat_interval_ms",
        a->heartbeat_interval_ms, "heartbeat_timeout_ms", a->heartbeat_timeout_ms, "context_length",
        r->model->context_len, "protocol_version", (int)WD_MSG_PROTOCOL_VERSION, "uptime_secs",
        wd_router_now() - r->t_start, "workers", workers_json(r));
}

void wd_router_health_generate(struct wd_router *r, struct wd_http_conn *c)
{
    /* One token from the first token of the vocabulary that encodes: the smallest request
     * that still runs a prefill and a decode step. */
    struct wd_api_request api;
    memset(&api, 0, sizeof(api));
    api.kind = WD_API_GENERATE;
    api.max_tokens = 1;
    api.temperature = 0.0f;
    api.top_p = 1.0f;
    api.skip_special_tokens = 1;
    api.ignore_eos = 1;
    int32_t *prompt = malloc(sizeof(int32_t));
    if (!prompt) {
        struct wd_api_error e;
        wd_api_error_set(&e, 503, NULL, "out of memory");
        wd_router_respond_error(c, &e, 0);
        return;
    }
    prompt[0] = r->model->cfg.bos_token_id >= 0 ? r->model->cfg.bos_token_id : 0;
    wd_router_admit(r, c, &api, prompt, 1, 1, 1);
}

int wd_router_info(struct wd_router *r, struct wd_http_conn *c, const char *path)
{
    if (strcmp(path, "/health") == 0) {
        wd_http_respond_text(c, 200, "text/plain", "OK", 2);
    } else if (strcmp(path, "/health_generate") == 0) {
        wd_router_health_generate(r, c);
    } else if (strcmp(path, "/v1/models") == 0) {
        respond_json(c, models(r));
    } else if (strcmp(path, "/metrics") == 0) {
        wd_router_update_worker_gauges(r);
        struct wd_http_response resp = {.status = 200, .content_type = "text/plain; version=0.0.4"};
        resp.body = wd_metrics_render(r->m.reg);
        resp.body_len = resp.body ? strlen(resp.body) : 0;
        wd_http_respond(c, &resp);
    } else if (strcmp(path, "/get_model_info") == 0) {
        respond_json(c, json_pack("{s:s, s:s, s:b, s:s, s:i}", "model_path", r->model->path,
                                  "tokenizer_path", r->model->path, "is_generation", 1,
                                  "served_model_name", r->model->served_name, "context_length",
                                  r->model->context_len));
    } else if (strcmp(path, "/get_server_info") == 0) {
        respond_json(c, server_info(r));
    } else if (strcmp(path, "/workers") == 0) {
        respond_json(c, workers_json(r));
    } else {
        return 0;
    }
    return 1;
}

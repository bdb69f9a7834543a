/*
 * wideep-bench null-worker: a benchmark and test peer that speaks the worker side of the
 * control protocol without a model. It registers (with the fingerprint of --model-path, or
 * a deliberately wrong one), heartbeats, re-registers when the router does not know it, and
 * answers each GenerateRequest with max_new_tokens tokens: the prompt's ids again, in
 * order, cycling (so the text is predictable), with made-up logprobs when asked. With
 * --token-interval-ms the tokens come one chunk each at that pace (streaming, kill -9
 * mid-stream); with 0 they come in one chunk at once (the benchmark).
 *
 * Fault switches for the integration tests: --fail (answer every request with an Error),
 * --finish stop (end with the first stop id, finish STOP), --garbage N (send N malformed
 * frames, then behave). --log FILE records what it got (generate, abort, ack, refuse,
 * error) one line each, for the tests to check. Nothing in the product starts it.
 */
#include <errno.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "common/config/flags.h"
#include "common/config/json_reader.h"
#include "common/net/msg.h"
#include "common/net/zsock.h"
#include "tests/bench/bench_util.h"

#define MAX_ACTIVE 4096

struct active {
    uint64_t id;
    int32_t *ids; /* the prompt, replayed */
    int n_ids, max, done, n_top, is_lp;
    int32_t stop_id; /* -1: none */
    double next;
};

struct nw {
    const char *router, *model_path, *instance, *log_path, *finish;
    int dp, pages, page_size, interval_ms, fail, garbage, verbose;
    char config_hash_str[32];
    const char *config_hash_flag;
    uint64_t config_hash;
    void *ctx, *sock;
    FILE *log;
    int is_registered;
    uint32_t hb_interval_ms;
    double next_hb, next_register;
    uint64_t seq;
    struct active act[MAX_ACTIVE];
    int n_act;
    int running;
};

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void logf_(struct nw *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(struct nw *w, const char *fmt, ...)
{
    if (!w->log)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(w->log, fmt, ap);
    va_end(ap);
    fputc('\n', w->log);
    fflush(w->log);
}

static int send_msg(struct nw *w, const struct wd_msg *m)
{
    struct wd_error err = {0};
    enum wd_status st = wd_zsock_send(w->sock, m, &err);
    if (st == WD_ERR_INVALID)
        fprintf(stderr, "null-worker: %s: %s\n", wd_msg_kind_str(m->kind), err.msg);
    return st == WD_OK ? 0 : -1;
}

static void send_register(struct nw *w)
{
    struct wd_msg m;
    wd_msg_init(&m, WD_MSG_REGISTER);
    struct wd_msg_register *g = &m.reg;
    struct wd_msg_dp_capacity dp[64];
    g->role = WD_MSG_ROLE_DECODE;
    snprintf(g->instance_id, sizeof(g->instance_id), "%s", w->instance);
    g->n_dp_ranks = w->dp;
    for (int i = 0; i < w->dp; i++) {
        dp[i].n_pages = w->pages;
        dp[i].max_running = 1024;
    }
    g->dp = dp;
    g->context_len = 1 << 20;
    snprintf(g->fp.model, sizeof(g->fp.model), "null-worker");
    g->fp.config_hash = w->config_hash;
    snprintf(g->fp.weight_dtype, sizeof(g->fp.weight_dtype), "bf16");
    snprintf(g->fp.kv_dtype, sizeof(g->fp.kv_dtype), "bf16");
    g->fp.page_size = w->page_size;
    g->fp.kv.kind = WD_MSG_KV_GQA;
    g->fp.kv.n_layers = 1;
    g->fp.kv.n_kv_heads = 1;
    g->fp.kv.k_head_dim = 64;
    g->fp.kv.v_head_dim = 64;
    struct wd_msg_parallel *p = &g->fp.parallel;
    p->tp = p->dp = p->ep = p->attn_tp = p->attn_dp = p->moe_ep = p->moe_tp = p->nnodes = 1;
    if (w->dp > 1) {
        p->tp = p->dp = p->attn_dp = p->moe_ep = p->ep = w->dp;
    }
    snprintf(p->a2a_backend, sizeof(p->a2a_backend), "none");
    snprintf(p->deepep_mode, sizeof(p->deepep_mode), "auto");
    /* Not connected yet (ZMQ_IMMEDIATE): try again soon; no answer: again in a second. */
    w->next_register = wd_bench_now() + (send_msg(w, &m) == 0 ? 1.0 : 0.05);
}

static void send_heartbeat(struct nw *w)
{
    struct wd_msg m;
    wd_msg_init(&m, WD_MSG_HEARTBEAT);
    struct wd_msg_dp_load dp[64];
    snprintf(m.heartbeat.instance_id, sizeof(m.heartbeat.instance_id), "%s", w->instance);
    m.heartbeat.seq = ++w->seq;
    m.heartbeat.n_dp_ranks = w->dp;
    for (int i = 0; i < w->dp; i++) {
        memset(&dp[i], 0, sizeof(dp[i]));
        dp[i].n_pages = w->pages;
        dp[i].n_free_pages = w->pages;
        dp[i].n_running = w->n_act / w->dp;
    }
    m.heartbeat.dp = dp;
    send_msg(w, &m);
}

static void finish_active(struct nw *w, int i)
{
    free(w->act[i].ids);
    w->act[i] = w->act[--w->n_act];
}

/* Sends the next n tokens of request a (all that are left when n <= 0). */
static void emit(struct nw *w, struct active *a, int n)
{
    int left = a->max - a->done;
    if (n <= 0 || n > left)
        n = left;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    float *lps = malloc(sizeof(float) * (size_t)n);
    int32_t *tids = a->n_top ? malloc(sizeof(int32_t) * (size_t)n * a->n_top) : NULL;
    float *tlps = a->n_top ? malloc(sizeof(float) * (size_t)n * a->n_top) : NULL;
    for (int i = 0; i < n; i++) {
        int t = a->done + i;
        ids[i] = a->ids[t % a->n_ids];
        lps[i] = -0.5f - 0.01f * (float)t;
        for (int j = 0; j < a->n_top; j++) {
            tids[i * a->n_top + j] = j == 0 ? ids[i] : (ids[i] + j) % 64;
            tlps[i * a->n_top + j] = lps[i] - (float)j;
        }
    }
    a->done += n;
    int is_last = a->done == a->max;
    int is_stop = is_last && strcmp(w->finish, "stop") == 0 && a->stop_id >= 0;
    if (is_stop)
        ids[n - 1] = a->stop_id;
    struct wd_msg m;
    wd_msg_init(&m, WD_MSG_TOKEN_CHUNK);
    m.chunk.request_id = a->id;
    m.chunk.n_tokens = n;
    m.chunk.token_ids = ids;
    m.chunk.logprobs = a->is_lp ? lps : NULL;
    m.chunk.n_top = a->n_top;
    m.chunk.top_ids = tids;
    m.chunk.top_logprobs = tlps;
    m.chunk.finish = !is_last  ? WD_MSG_FINISH_NONE
                     : is_stop ? WD_MSG_FINISH_STOP
                               : WD_MSG_FINISH_LENGTH;
    m.chunk.n_prompt_tokens = a->n_ids;
    m.chunk.matched_stop = is_stop ? a->stop_id : -1;
    send_msg(w, &m);
    free(ids);
    free(lps);
    free(tids);
    free(tlps);
}

static void on_generate(struct nw *w, const struct wd_msg_generate *g)
{
    logf_(w, "generate %llx dp=%d n_input=%d max=%d deadline_ms=%u top=%d temp=%g",
          (unsigned long long)g->request_id, g->dp_rank, g->n_input_ids, g->max_new_tokens,
          g->deadline_ms, g->n_top_logprobs, (double)g->sampling.temperature);
    if (w->fail) {
        struct wd_msg m;
        wd_msg_init(&m, WD_MSG_ERROR);
        m.error.request_id = g->request_id;
        m.error.code = WD_ERR_PEER;
        snprintf(m.error.message, sizeof(m.error.message), "null worker told to fail");
        send_msg(w, &m);
        return;
    }
    if (w->n_act == MAX_ACTIVE)
        return;
    struct active *a = &w->act[w->n_act++];
    memset(a, 0, sizeof(*a));
    a->id = g->request_id;
    a->n_ids = g->n_input_ids;
    a->ids = malloc(sizeof(int32_t) * (size_t)a->n_ids);
    memcpy(a->ids, g->input_ids, sizeof(int32_t) * (size_t)a->n_ids);
    a->max = g->max_new_tokens;
    a->is_lp = g->is_return_logprobs;
    a->n_top = g->n_top_logprobs;
    a->stop_id = g->n_stop_ids > 0 ? g->stop_ids[0] : -1;
    a->next = wd_bench_now() + w->interval_ms / 1000.0;
    if (w->interval_ms == 0) {
        emit(w, a, 0);
        finish_active(w, w->n_act - 1);
    }
}

static void on_message(struct nw *w, struct wd_msg *m)
{
    switch (m->kind) {
    case WD_MSG_GENERATE:
        on_generate(w, &m->generate);
        break;
    case WD_MSG_ABORT:
        logf_(w, "abort %llx", (unsigned long long)m->abort.request_id);
        for (int i = 0; i < w->n_act; i++)
            if (w->act[i].id == m->abort.request_id) {
                finish_active(w, i);
                break;
            }
        break;
    case WD_MSG_REGISTER_ACK:
        logf_(w, "ack worker_id=%u interval=%u", m->reg_ack.worker_id,
              m->reg_ack.heartbeat_interval_ms);
        w->is_registered = 1;
        w->hb_interval_ms = m->reg_ack.heartbeat_interval_ms;
        w->next_hb = wd_bench_now();
        break;
    case WD_MSG_REGISTER_REFUSE:
        logf_(w, "refuse %s", m->reg_refuse.reason);
        fprintf(stderr, "null-worker: refused: %s\n", m->reg_refuse.reason);
        w->running = 0; /* final, as for a real worker */
        break;
    case WD_MSG_ERROR:
        logf_(w, "error %llx %s: %s", (unsigned long long)m->error.request_id,
              wd_status_str(m->error.code), m->error.message);
        if (m->error.request_id == 0 && m->error.code == WD_ERR_NOT_FOUND) {
            w->is_registered = 0; /* the router restarted */
            send_register(w);
        }
        break;
    default:
        logf_(w, "unexpected %s", wd_msg_kind_str(m->kind));
    }
}

static void recv_all(struct nw *w)
{
    for (;;) {
        struct wd_msg m;
        struct wd_error err = {0};
        enum wd_status st = wd_zsock_recv(w->sock, 0, &m, &err);
        if (st == WD_ERR_TIMEOUT || st == WD_ERR_IO)
            return;
        if (st == WD_OK) {
            on_message(w, &m);
            wd_msg_free(&m);
        } else {
            logf_(w, "bad frame: %s", err.msg);
        }
    }
}

static void tick(struct nw *w, double now)
{
    if (!w->is_registered && now >= w->next_register)
        send_register(w);
    if (w->is_registered && now >= w->next_hb) {
        send_heartbeat(w);
        w->next_hb = now + w->hb_interval_ms / 1000.0;
    }
    for (int i = 0; i < w->n_act;) {
        struct active *a = &w->act[i];
        if (now < a->next) {
            i++;
            continue;
        }
        emit(w, a, 1);
        a->next = now + w->interval_ms / 1000.0;
        if (a->done == a->max)
            finish_active(w, i);
        else
            i++;
    }
}

static int load_hash(struct nw *w)
{
    if (w->config_hash_flag) {
        w->config_hash = strtoull(w->config_hash_flag, NULL, 16);
        return 0;
    }
    if (!w->model_path) {
        fprintf(stderr, "null-worker: need --model-path or --config-hash\n");
        return -1;
    }
    char path[4096], *text;
    size_t len;
    struct wd_error err = {0};
    snprintf(path, sizeof(path), "%s/config.json", w->model_path);
    if (wd_json_reader_read_file(path, (size_t)64 << 20, &text, &len, &err) != WD_OK) {
        fprintf(stderr, "null-worker: %s\n", err.msg);
        return -1;
    }
    w->config_hash = wd_msg_config_hash(text, len);
    free(text);
    return 0;
}

/* Raw frames that are not wd_msg frames; waits (bounded) for the connection first, since
 * the DEALER queues nothing before it is connected. */
static void send_garbage(struct nw *w)
{
    static const unsigned char junk[][8] = {{0xff, 0xff, 0xff}, {0x0a, 0x05, 'h', 'e', 'l'}, {0}};
    for (int i = 0, tries = 0; i < w->garbage && tries < 200;) {
        if (zmq_send(w->sock, junk[i % 3], 3 + (size_t)(i % 3), ZMQ_DONTWAIT) >= 0) {
            i++;
        } else {
            tries++;
            zmq_poll(NULL, 0, 10);
        }
    }
}

int wd_bench_null_worker(int argc, char **argv)
{
    static struct nw w; /* large: the active table */
    memset(&w, 0, sizeof(w));
    w.instance = "null-worker";
    w.finish = "length";
    w.dp = 1;
    w.pages = 1 << 20;
    w.page_size = 16;
    struct wd_flag flags[] = {
        {"router", NULL, WD_FLAG_STRING, &w.router, 1, 0, "tcp://HOST:PORT of the router", NULL, 0},
        {"model-path", NULL, WD_FLAG_STRING, &w.model_path, 1, 0,
         "model directory whose config.json hash to register with", NULL, 0},
        {"config-hash", NULL, WD_FLAG_STRING, &w.config_hash_flag, 1, 0,
         "register with this hash (hex) instead: an incompatible worker", NULL, 0},
        {"instance-id", NULL, WD_FLAG_STRING, &w.instance, 1, 0, "instance id", NULL, 0},
        {"dp", NULL, WD_FLAG_INT, &w.dp, 1, 64, "DP ranks", NULL, 0},
        {"pages", NULL, WD_FLAG_INT, &w.pages, 1, 1 << 30, "KV pages per rank", NULL, 0},
        {"page-size", NULL, WD_FLAG_INT, &w.page_size, 1, 4096, "tokens per page", NULL, 0},
        {"token-interval-ms", NULL, WD_FLAG_INT, &w.interval_ms, 0, 600000,
         "one token per chunk at this pace (0: all at once)", NULL, 0},
        {"finish", NULL, WD_FLAG_STRING, &w.finish, 1, 0, "how requests end", "length,stop", 0},
        {"fail", NULL, WD_FLAG_BOOL, &w.fail, 1, 0, "answer every request with an Error", NULL, 0},
        {"garbage", NULL, WD_FLAG_INT, &w.garbage, 0, 1000000, "malformed frames to send first",
         NULL, 0},
        {"log", NULL, WD_FLAG_STRING, &w.log_path, 1, 0, "record what arrives here", NULL, 0},
    };
    int n_flags = (int)(sizeof(flags) / sizeof(flags[0])), help = 0;
    struct wd_error err = {0};
    if (wd_flags_parse(flags, n_flags, argc, argv, &help, &err) != WD_OK) {
        fprintf(stderr, "null-worker: %s\n", err.msg);
        return 2;
    }
    if (help || !w.router) {
        wd_flags_print_help(flags, n_flags, "usage: wideep-bench null-worker --router URL ...");
        return help ? 0 : 2;
    }
    if (load_hash(&w) != 0)
        return 2;
    if (w.log_path && !(w.log = fopen(w.log_path, "a"))) {
        fprintf(stderr, "null-worker: %s: %s\n", w.log_path, strerror(errno));
        return 2;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    w.ctx = zmq_ctx_new();
    if (wd_zsock_dealer_connect(w.ctx, w.router, w.instance, &w.sock, &err) != WD_OK) {
        fprintf(stderr, "null-worker: %s\n", err.msg);
        zmq_ctx_term(w.ctx);
        return 2;
    }
    send_garbage(&w);
    send_register(&w);
    w.running = 1;
    while (w.running && !g_stop) {
        double now = wd_bench_now(), next = now + 0.05;
        if (w.is_registered && w.next_hb < next)
            next = w.next_hb;
        for (int i = 0; i < w.n_act; i++)
            next = w.act[i].next < next ? w.act[i].next : next;
        long ms = (long)((next - now) * 1000.0);
        zmq_pollitem_t it = {.socket = w.sock, .events = ZMQ_POLLIN};
        zmq_poll(&it, 1, ms < 0 ? 0 : ms);
        recv_all(&w);
        tick(&w, wd_bench_now());
    }
    for (int i = w.n_act - 1; i >= 0; i--)
        finish_active(&w, i);
    wd_zsock_close(w.sock);
    zmq_ctx_term(w.ctx);
    if (w.log)
        fclose(w.log);
    return 0;
}

/*
 * Control-plane codec (common/net/msg.h): a round trip of every message with edge values
 * (caps, 2^31-1 ids, UINT64_MAX ids and seeds, UTF-8 names, empty arrays, MLA and GQA), each
 * validation rule refused by encode with its message, and hand-built wire frames (a tiny
 * protobuf writer below, since only common/net sees the generated types) for what only a
 * peer can send: another protocol version, missing fields, mismatched counts, ids >= 2^31,
 * NULs and over-long text, frames over the cap or that would unpack into too much memory.
 * Every prefix of a valid frame, single-byte mutations and random bytes are refused or
 * decode into a message that validates, never crash and (sanitizer build) never leak.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/net/msg.h"
#include "tests/unit/wd_test.h"

/* ---- fixtures: one valid message of each kind ---- */

static struct wd_msg_dp_capacity g_caps[3] = {{1, 1}, {WD_MSG_MAX_INT, 4096}, {100, 8}};
static struct wd_msg_dp_load g_loads[2] = {{0, 100, 0, 0, 0}, {5, 5, 7, 3, INT64_MAX}};
static int32_t g_input[4] = {0, 1, WD_MSG_MAX_INT, 151643};
static int32_t g_stop[2] = {151645, 0};
static int32_t g_tokens[2] = {42, WD_MSG_MAX_INT};
static float g_logprobs[2] = {-0.25f, -INFINITY};
static int32_t g_top_ids[2 * WD_MSG_MAX_TOP_LOGPROBS];
static float g_top_lp[2 * WD_MSG_MAX_TOP_LOGPROBS];

static void make(struct wd_msg *m, enum wd_msg_kind kind)
{
    wd_msg_init(m, kind);
    switch (kind) {
    case WD_MSG_REGISTER: {
        struct wd_msg_register *r = &m->reg;
        r->role = WD_MSG_ROLE_PREFILL;
        strcpy(r->instance_id, "prefill-0.pod-a:5557");
        r->n_dp_ranks = 3;
        r->dp = g_caps;
        r->context_len = 163840;
        r->metrics_port = 65535;
        strcpy(r->bootstrap_endpoint, "tcp://10.0.0.1:5600");
        strcpy(r->fp.model, "deepseek-ai/DeepSeek-V3 \xc3\xa9\xe2\x9c\x93");
        r->fp.config_hash = UINT64_MAX;
        strcpy(r->fp.weight_dtype, "fp8_e4m3");
        strcpy(r->fp.kv_dtype, "bf16");
        r->fp.page_size = 64;
        r->fp.kv = (struct wd_msg_kv_layout){WD_MSG_KV_MLA, 61, 1, 576, 0};
        struct wd_msg_parallel *p = &r->fp.parallel;
        p->tp = 16, p->dp = 16, p->ep = 16, p->attn_tp = 1, p->attn_dp = 16;
        p->moe_ep = 16, p->moe_tp = 1, p->nnodes = 2;
        strcpy(p->a2a_backend, "deepep");
        strcpy(p->deepep_mode, "low_latency");
        break;
    }
    case WD_MSG_REGISTER_ACK:
        m->reg_ack = (struct wd_msg_register_ack){UINT32_MAX, 1, 2};
        break;
    case WD_MSG_REGISTER_REFUSE:
        strcpy(m->reg_refuse.reason, "page size 64 differs from the pool's 16\t(\xe2\x9c\x97)");
        break;
    case WD_MSG_HEARTBEAT:
        strcpy(m->heartbeat.instance_id, "decode-1");
        m->heartbeat.seq = UINT64_MAX;
        m->heartbeat.is_draining = 1;
        m->heartbeat.n_dp_ranks = 2;
        m->heartbeat.dp = g_loads;
        break;
    case WD_MSG_DRAIN:
        break;
    case WD_MSG_GENERATE: {
        struct wd_msg_generate *g = &m->generate;
        g->request_id = UINT64_MAX;
        g->n_input_ids = 4, g->input_ids = g_input;
        g->sampling = (struct wd_msg_sampling){0.7f, 0.95f, -1, 0.05f, UINT64_MAX, 1};
        g->n_stop_ids = 2, g->stop_ids = g_stop;
        g->max_new_tokens = WD_MSG_MAX_INT;
        g->is_ignore_eos = 1;
        g->deadline_ms = UINT32_MAX;
        g->dp_rank = WD_MSG_MAX_DP_RANKS - 1;
        g->is_return_logprobs = 1;
        g->n_top_logprobs = WD_MSG_MAX_TOP_LOGPROBS;
        break;
    }
    case WD_MSG_TOKEN_CHUNK: {
        struct wd_msg_token_chunk *c = &m->chunk;
        for (int i = 0; i < 2 * WD_MSG_MAX_TOP_LOGPROBS; i++)
            g_top_ids[i] = i * 1000, g_top_lp[i] = -(float)i;
        c->request_id = 1;
        c->n_tokens = 2, c->token_ids = g_tokens, c->logprobs = g_logprobs;
        c->n_top = WD_MSG_MAX_TOP_LOGPROBS, c->top_ids = g_top_ids, c->top_logprobs = g_top_lp;
        c->finish = WD_MSG_FINISH_STOP, c->matched_stop = WD_MSG_MAX_INT;
        c->n_prompt_tokens = 7;
        break;
    }
    case WD_MSG_ABORT:
        m->abort.request_id = 1;
        break;
    case WD_MSG_ERROR:
        m->error.request_id = UINT64_MAX;
        m->error.code = WD_ERR_PEER;
        strcpy(m->error.message, "prefill worker p-3 vanished");
        break;
    case WD_MSG_NONE:
        break;
    }
}

/* Encodes m, decodes the bytes into out (caller frees), and checks that re-encoding the
 * decoded message gives the same bytes (the encoding is deterministic). */
static int round_trip(const struct wd_msg *m, struct wd_msg *out)
{
    struct wd_error err = {0};
    void *buf = NULL, *buf2 = NULL;
    size_t len = 0, len2 = 0;
    enum wd_status st = wd_msg_encode(m, &buf, &len, &err);
    WD_EXPECT_MSG(st == WD_OK, "encode %s: %s", wd_msg_kind_str(m->kind), err.msg);
    if (st != WD_OK)
        return -1;
    st = wd_msg_decode(buf, len, out, &err);
    WD_EXPECT_MSG(st == WD_OK, "decode %s: %s", wd_msg_kind_str(m->kind), err.msg);
    if (st == WD_OK) {
        WD_EXPECT_EQ_INT(out->kind, m->kind);
        WD_EXPECT(wd_msg_encode(out, &buf2, &len2, &err) == WD_OK);
        WD_EXPECT(len2 == len && buf2 && memcmp(buf, buf2, len) == 0);
    }
    free(buf);
    free(buf2);
    return st == WD_OK ? 0 : -1;
}

static void test_round_trip_register(void)
{
    struct wd_msg m, d;
    make(&m, WD_MSG_REGISTER);
    if (round_trip(&m, &d))
        return;
    const struct wd_msg_register *r = &d.reg;
    WD_EXPECT(d.storage != NULL);
    WD_EXPECT_EQ_INT(r->role, WD_MSG_ROLE_PREFILL);
    WD_EXPECT(strcmp(r->instance_id, m.reg.instance_id) == 0);
    WD_EXPECT_EQ_INT(r->n_dp_ranks, 3);
    WD_EXPECT_EQ_INT(r->dp[1].n_pages, WD_MSG_MAX_INT);
    WD_EXPECT_EQ_INT(r->dp[2].max_running, 8);
    WD_EXPECT_EQ_INT(r->context_len, 163840);
    WD_EXPECT_EQ_INT(r->metrics_port, 65535);
    WD_EXPECT(strcmp(r->bootstrap_endpoint, "tcp://10.0.0.1:5600") == 0);
    WD_EXPECT(strcmp(r->fp.model, m.reg.fp.model) == 0);
    WD_EXPECT(r->fp.config_hash == UINT64_MAX);
    WD_EXPECT(strcmp(r->fp.weight_dtype, "fp8_e4m3") == 0);
    WD_EXPECT_EQ_INT(r->fp.kv.kind, WD_MSG_KV_MLA);
    WD_EXPECT_EQ_INT(r->fp.kv.k_head_dim, 576);
    WD_EXPECT_EQ_INT(r->fp.parallel.attn_dp, 16);
    WD_EXPECT_EQ_INT(r->fp.parallel.nnodes, 2);
    WD_EXPECT(strcmp(r->fp.parallel.deepep_mode, "low_latency") == 0);
    wd_msg_free(&d);
    WD_EXPECT(d.kind == WD_MSG_NONE && d.storage == NULL);

    /* A decode worker: GQA, no bootstrap endpoint, no metrics port, strings at their caps. */
    m.reg.role = WD_MSG_ROLE_DECODE;
    m.reg.bootstrap_endpoint[0] = '\0';
    m.reg.metrics_port = 0;
    m.reg.n_dp_ranks = 1;
    m.reg.fp.kv = (struct wd_msg_kv_layout){WD_MSG_KV_GQA, 48, 4, 128, 128};
    memset(m.reg.instance_id, 'i', WD_MSG_ID_CAP - 1);
    memset(m.reg.fp.model, 'm', WD_MSG_NAME_CAP - 1);
    memset(m.reg.fp.kv_dtype, 'k', WD_MSG_TAG_CAP - 1);
    if (round_trip(&m, &d))
        return;
    WD_EXPECT_EQ_INT(strlen(d.reg.instance_id), WD_MSG_ID_CAP - 1);
    WD_EXPECT_EQ_INT(strlen(d.reg.fp.model), WD_MSG_NAME_CAP - 1);
    WD_EXPECT_EQ_INT(d.reg.fp.kv.v_head_dim, 128);
    WD_EXPECT_EQ_INT(d.reg.metrics_port, 0);
    WD_EXPECT(d.reg.bootstrap_endpoint[0] == '\0');
    wd_msg_free(&d);
}

static void test_round_trip_small(void)
{
    struct wd_msg m, d;
    make(&m, WD_MSG_REGISTER_ACK);
    if (round_trip(&m, &d) == 0) {
        WD_EXPECT(d.reg_ack.worker_id == UINT32_MAX);
        WD_EXPECT(d.reg_ack.heartbeat_interval_ms == 1 && d.reg_ack.heartbeat_timeout_ms == 2);
        wd_msg_free(&d);
    }
    make(&m, WD_MSG_REGISTER_REFUSE);
    if (round_trip(&m, &d) == 0) {
        WD_EXPECT(strcmp(d.reg_refuse.reason, m.reg_refuse.reason) == 0);
        wd_msg_free(&d);
    }
    make(&m, WD_MSG_HEARTBEAT);
    if (round_trip(&m, &d) == 0) {
        WD_EXPECT(d.heartbeat.seq == UINT64_MAX && d.heartbeat.is_draining == 1);
        WD_EXPECT_EQ_INT(d.heartbeat.n_dp_ranks, 2);
        WD_EXPECT_EQ_INT(d.heartbeat.dp[0].n_free_pages, 0);
        WD_EXPECT_EQ_INT(d.heartbeat.dp[0].n_pages, 100);
        WD_EXPECT(d.heartbeat.dp[1].n_queued_prefill_tokens == INT64_MAX);
        WD_EXPECT_EQ_INT(d.heartbeat.dp[1].n_running, 7);
        wd_msg_free(&d);
    }
    make(&m, WD_MSG_DRAIN); /* router -> worker: no instance id */
    if (round_trip(&m, &d) == 0) {
        WD_EXPECT(d.drain.instance_id[0] == '\0');
        wd_msg_free(&d);
    }
    strcpy(m.drain.instance_id, "decode-1");
    if (round_trip(&m, &d) == 0) {
        WD_EXPECT(strcmp(d.drain.instance_id, "decode-1") == 0);
        wd_msg_free(&d);
    }
    make(&m, WD_MSG_ABORT);
    if (round_trip(&m, &d) == 0) {
        WD_EXPECT(d.abort.request_id == 1);
        wd_msg_free(&d);
    }
    make(&m, WD_MSG_ERROR);
    if (round_trip(&m, &d) == 0) {
        WD_EXPECT(d.error.request_id == UINT64_MAX && d.error.code == WD_ERR_PEER);
        WD_EXPECT(strcmp(d.error.message, m.error.message) == 0);
        wd_msg_free(&d);
    }
    m.error.request_id = 0, m.error.message[0] = '\0', m.error.code = WD_ERR_INVALID;
    if (round_trip(&m, &d) == 0) {
        WD_EXPECT(d.error.request_id == 0 && d.error.code == WD_ERR_INVALID);
        WD_EXPECT(d.error.message[0] == '\0');
        wd_msg_free(&d);
    }
}

static void test_round_trip_generate(void)
{
    struct wd_msg m, d;
    make(&m, WD_MSG_GENERATE);
    if (round_trip(&m, &d))
        return;
    const struct wd_msg_generate *g = &d.generate;
    WD_EXPECT(g->request_id == UINT64_MAX);
    WD_EXPECT_EQ_INT(g->n_input_ids, 4);
    WD_EXPECT(memcmp(g->input_ids, g_input, sizeof(g_input)) == 0);
    WD_EXPECT_EQ_INT(g->n_stop_ids, 2);
    WD_EXPECT(g->stop_ids[0] == 151645 && g->stop_ids[1] == 0);
    WD_EXPECT(g->sampling.temperature == 0.7f && g->sampling.top_p == 0.95f);
    WD_EXPECT(g->sampling.top_k == -1 && g->sampling.min_p == 0.05f);
    WD_EXPECT(g->sampling.has_seed && g->sampling.seed == UINT64_MAX);
    WD_EXPECT_EQ_INT(g->max_new_tokens, WD_MSG_MAX_INT);
    WD_EXPECT(g->is_ignore_eos == 1 && g->deadline_ms == UINT32_MAX);
    WD_EXPECT_EQ_INT(g->dp_rank, WD_MSG_MAX_DP_RANKS - 1);
    WD_EXPECT(g->is_return_logprobs == 1 && g->n_top_logprobs == WD_MSG_MAX_TOP_LOGPROBS);
    wd_msg_free(&d);

    /* The defaults: greedy, no seed, no stops, no deadline, no logprobs, one token. */
    wd_msg_init(&m, WD_MSG_GENERATE);
    m.generate.request_id = 9;
    m.generate.n_input_ids = 1, m.generate.input_ids = g_input;
    m.generate.sampling.temperature = 0.0f;
    m.generate.max_new_tokens = 1;
    if (round_trip(&m, &d))
        return;
    g = &d.generate;
    WD_EXPECT(g->stop_ids == NULL && g->n_stop_ids == 0 && g->sampling.has_seed == 0);
    WD_EXPECT(g->sampling.temperature == 0.0f && g->sampling.top_p == 1.0f);
    WD_EXPECT(g->deadline_ms == 0 && g->is_return_logprobs == 0 && g->n_top_logprobs == 0);
    wd_msg_free(&d);
}

static void test_round_trip_chunk(void)
{
    struct wd_msg m, d;
    make(&m, WD_MSG_TOKEN_CHUNK);
    if (round_trip(&m, &d))
        return;
    const struct wd_msg_token_chunk *c = &d.chunk;
    WD_EXPECT_EQ_INT(c->n_tokens, 2);
    WD_EXPECT(c->token_ids[0] == 42 && c->token_ids[1] == WD_MSG_MAX_INT);
    WD_EXPECT(c->logprobs && c->logprobs[0] == -0.25f && isinf(c->logprobs[1]));
    WD_EXPECT_EQ_INT(c->n_top, WD_MSG_MAX_TOP_LOGPROBS);
    WD_EXPECT(memcmp(c->top_ids, g_top_ids, sizeof(g_top_ids)) == 0);
    WD_EXPECT(memcmp(c->top_logprobs, g_top_lp, sizeof(g_top_lp)) == 0);
    WD_EXPECT(c->finish == WD_MSG_FINISH_STOP && c->matched_stop == WD_MSG_MAX_INT);
    WD_EXPECT_EQ_INT(c->n_prompt_tokens, 7);
    wd_msg_free(&d);

    /* Mid-stream, no logprobs asked. */
    wd_msg_init(&m, WD_MSG_TOKEN_CHUNK);
    m.chunk.request_id = 5, m.chunk.n_tokens = 1, m.chunk.token_ids = g_tokens;
    if (round_trip(&m, &d))
        return;
    WD_EXPECT(d.chunk.logprobs == NULL && d.chunk.top_ids == NULL && d.chunk.n_top == 0);
    WD_EXPECT(d.chunk.finish == WD_MSG_FINISH_NONE && d.chunk.matched_stop == -1);
    wd_msg_free(&d);

    /* The closing chunk of an aborted request: no tokens. */
    m.chunk.n_tokens = 0, m.chunk.token_ids = NULL, m.chunk.finish = WD_MSG_FINISH_ABORT;
    if (round_trip(&m, &d))
        return;
    WD_EXPECT(d.chunk.n_tokens == 0 && d.chunk.token_ids == NULL);
    WD_EXPECT(d.chunk.finish == WD_MSG_FINISH_ABORT);
    wd_msg_free(&d);
}

/* ---- every rule, refused by encode with its message ---- */

static void expect_refused(const struct wd_msg *m, const char *want, int line)
{
    struct wd_error err = {0};
    void *buf = (void *)&err;
    size_t len = 12345;
    enum wd_status st = wd_msg_encode(m, &buf, &len, &err);
    if (st != WD_ERR_INVALID || !strstr(err.msg, want))
        wd_test_fail(__FILE__, line, "expected refusal with \"%s\", got %s: %s", want,
                     wd_status_str(st), err.msg);
    if (st == WD_OK)
        free(buf);
    else if (buf != (void *)&err || len != 12345)
        wd_test_fail(__FILE__, line, "outputs written on failure");
    wd_test_checks++;
}

#define REFUSED(m, want) expect_refused(m, want, __LINE__)

static void test_rules_register(void)
{
    struct wd_msg m;
    struct wd_msg_dp_capacity caps[2] = {{10, 1}, {0, 1}};
    make(&m, WD_MSG_REGISTER), m.reg.role = 0, REFUSED(&m, "register.role 0");
    make(&m, WD_MSG_REGISTER), m.reg.instance_id[0] = 0, REFUSED(&m, "instance_id is empty");
    make(&m, WD_MSG_REGISTER), strcpy(m.reg.instance_id, "a b");
    REFUSED(&m, "instance_id has a disallowed byte 0x20 at offset 1");
    make(&m, WD_MSG_REGISTER), memset(m.reg.instance_id, 'a', WD_MSG_ID_CAP);
    REFUSED(&m, "register.instance_id is not terminated within 128 bytes");
    make(&m, WD_MSG_REGISTER), m.reg.n_dp_ranks = 0, REFUSED(&m, "n_dp_ranks 0 is outside");
    make(&m, WD_MSG_REGISTER), m.reg.n_dp_ranks = WD_MSG_MAX_DP_RANKS + 1;
    REFUSED(&m, "n_dp_ranks 1025 is outside [1, 1024]");
    make(&m, WD_MSG_REGISTER), m.reg.dp = NULL, REFUSED(&m, "register.dp is NULL");
    make(&m, WD_MSG_REGISTER), m.reg.n_dp_ranks = 2, m.reg.dp = caps;
    REFUSED(&m, "register.dp[1].n_pages 0 is not > 0");
    caps[1] = (struct wd_msg_dp_capacity){1, -1};
    REFUSED(&m, "register.dp[1].max_running -1 is not > 0");
    make(&m, WD_MSG_REGISTER), m.reg.context_len = 0, REFUSED(&m, "context_len 0");
    make(&m, WD_MSG_REGISTER), m.reg.metrics_port = 65536, REFUSED(&m, "metrics_port 65536");
    make(&m, WD_MSG_REGISTER), m.reg.bootstrap_endpoint[0] = 0;
    REFUSED(&m, "bootstrap_endpoint is empty for a prefill worker");
    make(&m, WD_MSG_REGISTER), m.reg.role = WD_MSG_ROLE_DECODE;
    REFUSED(&m, "bootstrap_endpoint must be empty for a decode worker");
    make(&m, WD_MSG_REGISTER), m.reg.bootstrap_endpoint[3] = '\t';
    REFUSED(&m, "bootstrap_endpoint has a disallowed byte 0x09");

    struct wd_msg_fingerprint *fp = &m.reg.fp;
    make(&m, WD_MSG_REGISTER), fp->protocol_version = 2;
    REFUSED(&m, "fingerprint.protocol_version 2 differs from this build's 1");
    make(&m, WD_MSG_REGISTER), fp->model[0] = 0, REFUSED(&m, "fingerprint.model is empty");
    make(&m, WD_MSG_REGISTER), strcpy(fp->model, "x\xff");
    REFUSED(&m, "fingerprint.model has invalid UTF-8 at offset 1");
    make(&m, WD_MSG_REGISTER), strcpy(fp->model, "x\xed\xa0\x80"); /* a surrogate */
    REFUSED(&m, "invalid UTF-8");
    make(&m, WD_MSG_REGISTER), strcpy(fp->model, "x\xc0\xaf"); /* overlong '/' */
    REFUSED(&m, "invalid UTF-8");
    make(&m, WD_MSG_REGISTER), strcpy(fp->model, "a\nb"), REFUSED(&m, "disallowed byte 0x0a");
    make(&m, WD_MSG_REGISTER), strcpy(fp->weight_dtype, "bf 16");
    REFUSED(&m, "weight_dtype has a disallowed byte");
    make(&m, WD_MSG_REGISTER), fp->kv_dtype[0] = 0, REFUSED(&m, "kv_dtype is empty");
    make(&m, WD_MSG_REGISTER), fp->page_size = 0, REFUSED(&m, "page_size 0 is outside");
    make(&m, WD_MSG_REGISTER), fp->kv.kind = 3, REFUSED(&m, "kv.kind 3 is neither");
    make(&m, WD_MSG_REGISTER), fp->kv.n_layers = 0, REFUSED(&m, "kv.n_layers 0");
    make(&m, WD_MSG_REGISTER), fp->kv.k_head_dim = -4, REFUSED(&m, "kv.k_head_dim -4");
    make(&m, WD_MSG_REGISTER), fp->kv.n_kv_heads = 2, REFUSED(&m, "must be 1 for MLA");
    make(&m, WD_MSG_REGISTER), fp->kv.v_head_dim = 128, REFUSED(&m, "must be 0 for MLA");
    make(&m, WD_MSG_REGISTER), fp->kv.kind = WD_MSG_KV_GQA, REFUSED(&m, "kv.v_head_dim 0");
    make(&m, WD_MSG_REGISTER), fp->parallel.moe_tp = 0, REFUSED(&m, "parallel.moe_tp 0");
    make(&m, WD_MSG_REGISTER), fp->parallel.attn_tp = 2;
    REFUSED(&m, "attn_tp 2 * attn_dp 16 != tp 16");
    make(&m, WD_MSG_REGISTER), fp->parallel.moe_ep = 8;
    REFUSED(&m, "moe_ep 8 * moe_tp 1 != tp 16");
    make(&m, WD_MSG_REGISTER), fp->parallel.a2a_backend[0] = 0, REFUSED(&m, "a2a_backend is");
    make(&m, WD_MSG_REGISTER), strcpy(fp->parallel.deepep_mode, "l\xc3\xa9");
    REFUSED(&m, "deepep_mode has a disallowed byte 0xc3");
}

static void test_rules_other(void)
{
    struct wd_msg m;
    struct wd_msg_dp_load loads[1] = {{6, 5, 0, 0, 0}};
    make(&m, WD_MSG_REGISTER_ACK), m.reg_ack.heartbeat_interval_ms = 0;
    REFUSED(&m, "heartbeat_interval_ms is 0");
    make(&m, WD_MSG_REGISTER_ACK), m.reg_ack.heartbeat_timeout_ms = 1;
    REFUSED(&m, "heartbeat_timeout_ms 1 is not above the interval 1");
    make(&m, WD_MSG_REGISTER_REFUSE), m.reg_refuse.reason[0] = 0, REFUSED(&m, "reason is empty");
    make(&m, WD_MSG_HEARTBEAT), m.heartbeat.instance_id[0] = 0, REFUSED(&m, "instance_id");
    make(&m, WD_MSG_HEARTBEAT), m.heartbeat.n_dp_ranks = 0, REFUSED(&m, "n_dp_ranks 0");
    make(&m, WD_MSG_HEARTBEAT), m.heartbeat.n_dp_ranks = 1, m.heartbeat.dp = loads;
    REFUSED(&m, "heartbeat.dp[0]: free pages 6 not in [0, n_pages 5]");
    loads[0] = (struct wd_msg_dp_load){0, 5, 0, -1, 0};
    REFUSED(&m, "heartbeat.dp[0]: a negative count");
    make(&m, WD_MSG_DRAIN), strcpy(m.drain.instance_id, "x y"), REFUSED(&m, "drain.instance_id");
    make(&m, WD_MSG_ABORT), m.abort.request_id = 0, REFUSED(&m, "abort.request_id is 0");
    make(&m, WD_MSG_ERROR), m.error.code = WD_OK, REFUSED(&m, "error.code 0 is not");
    make(&m, WD_MSG_ERROR), m.error.code = 99, REFUSED(&m, "error.code 99 is not");
    make(&m, WD_MSG_ERROR), strcpy(m.error.message, "\x80"), REFUSED(&m, "invalid UTF-8");
    make(&m, WD_MSG_ERROR), strcpy(m.error.message, "two\nlines");
    REFUSED(&m, "error.message has a disallowed byte 0x0a at offset 3");
    wd_msg_init(&m, WD_MSG_NONE), REFUSED(&m, "message kind 0 is not a message");
    wd_msg_init(&m, (enum wd_msg_kind)77), REFUSED(&m, "message kind 77");
}

static void test_rules_generate(void)
{
    struct wd_msg m;
    int32_t bad_ids[2] = {3, -1};
    struct wd_msg_sampling *s = &m.generate.sampling;
    make(&m, WD_MSG_GENERATE), m.generate.request_id = 0, REFUSED(&m, "request_id is 0");
    make(&m, WD_MSG_GENERATE), m.generate.n_input_ids = 0, REFUSED(&m, "n_input_ids 0");
    make(&m, WD_MSG_GENERATE), m.generate.input_ids = NULL, REFUSED(&m, "input_ids is NULL");
    make(&m, WD_MSG_GENERATE), m.generate.n_input_ids = 2, m.generate.input_ids = bad_ids;
    REFUSED(&m, "generate.input_ids[1] = -1 is not a token id");
    make(&m, WD_MSG_GENERATE), s->temperature = NAN, REFUSED(&m, "temperature nan");
    make(&m, WD_MSG_GENERATE), s->temperature = -1.0f, REFUSED(&m, "temperature -1");
    make(&m, WD_MSG_GENERATE), s->temperature = INFINITY, REFUSED(&m, "temperature inf");
    make(&m, WD_MSG_GENERATE), s->top_p = 0.0f, REFUSED(&m, "top_p 0 is outside (0, 1]");
    make(&m, WD_MSG_GENERATE), s->top_p = 1.5f, REFUSED(&m, "top_p 1.5");
    make(&m, WD_MSG_GENERATE), s->top_p = NAN, REFUSED(&m, "top_p nan");
    make(&m, WD_MSG_GENERATE), s->min_p = -0.1f, REFUSED(&m, "min_p -0.1");
    make(&m, WD_MSG_GENERATE), s->min_p = 2.0f, REFUSED(&m, "min_p 2 is outside [0, 1]");
    make(&m, WD_MSG_GENERATE), s->top_k = -2, REFUSED(&m, "top_k -2 is outside");
    make(&m, WD_MSG_GENERATE), m.generate.n_stop_ids = WD_MSG_MAX_STOP_IDS + 1;
    REFUSED(&m, "n_stop_ids 1025");
    make(&m, WD_MSG_GENERATE), m.generate.stop_ids = bad_ids, REFUSED(&m, "stop_ids[1] = -1");
    make(&m, WD_MSG_GENERATE), m.generate.max_new_tokens = 0, REFUSED(&m, "max_new_tokens 0");
    make(&m, WD_MSG_GENERATE), m.generate.dp_rank = -1, REFUSED(&m, "dp_rank -1");
    make(&m, WD_MSG_GENERATE), m.generate.n_top_logprobs = 21;
    REFUSED(&m, "n_top_logprobs 21 is outside [0, 20]");
    make(&m, WD_MSG_GENERATE), m.generate.is_return_logprobs = 0;
    REFUSED(&m, "n_top_logprobs 20 needs return_logprobs");
}

static void test_rules_chunk(void)
{
    struct wd_msg m;
    struct wd_msg_token_chunk *c = &m.chunk;
    int32_t bad_ids[2] = {-7, 1};
    float nan_lp[2] = {-1.0f, NAN}, inf_lp[2] = {INFINITY, -1.0f};
    make(&m, WD_MSG_TOKEN_CHUNK), c->request_id = 0, REFUSED(&m, "token_chunk.request_id is 0");
    make(&m, WD_MSG_TOKEN_CHUNK), c->n_tokens = -1, REFUSED(&m, "n_tokens -1");
    make(&m, WD_MSG_TOKEN_CHUNK), c->n_tokens = 0, c->finish = WD_MSG_FINISH_NONE;
    c->matched_stop = -1, REFUSED(&m, "no tokens and no finish");
    make(&m, WD_MSG_TOKEN_CHUNK), c->token_ids = bad_ids, REFUSED(&m, "token_ids[0] = -7");
    make(&m, WD_MSG_TOKEN_CHUNK), c->n_top = 21, REFUSED(&m, "n_top 21 is outside [0, 20]");
    make(&m, WD_MSG_TOKEN_CHUNK), c->logprobs = NULL, REFUSED(&m, "n_top 20 without logprobs");
    make(&m, WD_MSG_TOKEN_CHUNK), c->logprobs = nan_lp, REFUSED(&m, "logprobs[1] is nan");
    make(&m, WD_MSG_TOKEN_CHUNK), c->logprobs = inf_lp, REFUSED(&m, "logprobs[0] is inf");
    make(&m, WD_MSG_TOKEN_CHUNK), c->top_ids = NULL, REFUSED(&m, "top_ids or top_logprobs");
    make(&m, WD_MSG_TOKEN_CHUNK), c->n_top = 1, c->top_ids = bad_ids;
    REFUSED(&m, "top_ids[0] = -7");
    make(&m, WD_MSG_TOKEN_CHUNK), c->n_top = 1, c->top_logprobs = nan_lp;
    REFUSED(&m, "top_logprobs[1] is nan");
    make(&m, WD_MSG_TOKEN_CHUNK), c->finish = 4, REFUSED(&m, "finish 4 is not a finish reason");
    make(&m, WD_MSG_TOKEN_CHUNK), c->finish = WD_MSG_FINISH_LENGTH;
    REFUSED(&m, "matched_stop 2147483647 set without finish STOP");
    make(&m, WD_MSG_TOKEN_CHUNK), c->matched_stop = -1, REFUSED(&m, "matched_stop -1");
    make(&m, WD_MSG_TOKEN_CHUNK), c->n_prompt_tokens = -1, REFUSED(&m, "n_prompt_tokens -1");
}

/* ---- hand-built frames ---- */

struct pb {
    uint8_t b[4096];
    size_t n;
};

static void pb_varint(struct pb *p, uint64_t v)
{
    while (v >= 0x80)
        p->b[p->n++] = (uint8_t)(v | 0x80), v >>= 7;
    p->b[p->n++] = (uint8_t)v;
}

static void pb_u(struct pb *p, int field, uint64_t v)
{
    pb_varint(p, (uint64_t)field << 3);
    pb_varint(p, v);
}

static void pb_f32(struct pb *p, int field, float v)
{
    pb_varint(p, (uint64_t)field << 3 | 5);
    memcpy(p->b + p->n, &v, 4);
    p->n += 4;
}

static void pb_bytes(struct pb *p, int field, const void *data, size_t len)
{
    pb_varint(p, (uint64_t)field << 3 | 2);
    pb_varint(p, len);
    memcpy(p->b + p->n, data, len);
    p->n += len;
}

static void pb_sub(struct pb *p, int field, const struct pb *sub)
{
    pb_bytes(p, field, sub->b, sub->n);
}

/* Frame{version, body field = body}. */
static void pb_frame(struct pb *out, uint64_t version, int field, const struct pb *body)
{
    out->n = 0;
    pb_u(out, 1, version);
    pb_sub(out, field, body);
}

static void expect_decode(const struct pb *f, enum wd_status want_st, const char *want, int line)
{
    struct wd_msg m;
    struct wd_error err = {0};
    enum wd_status st = wd_msg_decode(f->b, f->n, &m, &err);
    if (st != want_st || (want && !strstr(err.msg, want)))
        wd_test_fail(__FILE__, line, "expected %s \"%s\", got %s: %s", wd_status_str(want_st),
                     want ? want : "", wd_status_str(st), err.msg);
    if (st != WD_OK && (m.kind != WD_MSG_NONE || m.storage))
        wd_test_fail(__FILE__, line, "failed decode left a message behind");
    wd_msg_free(&m);
    wd_test_checks++;
}

#define DECODES(f, st, want) expect_decode(f, st, want, __LINE__)

/* A minimal valid GenerateRequest body; the caller appends or overrides (for a repeated
 * scalar a second field adds elements; for an optional one the last occurrence wins). */
static void pb_generate(struct pb *g, int is_with_sampling)
{
    struct pb s = {0};
    pb_f32(&s, 1, 0.0f), pb_f32(&s, 2, 1.0f), pb_u(&s, 3, 0), pb_f32(&s, 4, 0.0f);
    g->n = 0;
    pb_u(g, 1, 77);
    uint8_t ids[] = {5, 6};
    pb_bytes(g, 2, ids, sizeof(ids));
    if (is_with_sampling)
        pb_sub(g, 3, &s);
    pb_u(g, 5, 16);
    pb_u(g, 8, 0);
}

static void test_wire_frames(void)
{
    struct pb f = {0}, g = {0}, c = {0}, t = {0};
    pb_generate(&g, 1);
    pb_frame(&f, WD_MSG_PROTOCOL_VERSION, 7, &g);
    DECODES(&f, WD_OK, NULL);
    pb_frame(&f, 2, 7, &g);
    DECODES(&f, WD_ERR_UNSUPPORTED, "peer speaks protocol version 2, this build speaks 1");
    f.n = 0, pb_sub(&f, 7, &g);
    DECODES(&f, WD_ERR_FORMAT, "frame has no protocol_version");
    f.n = 0, pb_u(&f, 1, WD_MSG_PROTOCOL_VERSION);
    DECODES(&f, WD_ERR_FORMAT, "frame has no body");
    pb_frame(&f, WD_MSG_PROTOCOL_VERSION, 11, &g); /* a reserved body: a newer peer's */
    DECODES(&f, WD_ERR_FORMAT, "frame has no body, or one protocol version 1 does not define");
    f.n = 0, pb_u(&f, 99, 1), pb_u(&f, 1, 1), pb_sub(&f, 7, &g); /* unknown fields skipped */
    DECODES(&f, WD_OK, NULL);

    pb_generate(&g, 0);
    pb_frame(&f, 1, 7, &g);
    DECODES(&f, WD_ERR_FORMAT, "generate.sampling missing");
    pb_generate(&g, 1);
    pb_u(&g, 10, 21), pb_u(&g, 9, 1);
    pb_frame(&f, 1, 7, &g);
    DECODES(&f, WD_ERR_FORMAT, "generate.n_top_logprobs 21 is outside [0, 20]");
    pb_generate(&g, 1);
    uint8_t big[] = {0x80, 0x80, 0x80, 0x80, 0x08}; /* 2^31 */
    pb_bytes(&g, 2, big, sizeof(big));
    pb_frame(&f, 1, 7, &g);
    DECODES(&f, WD_ERR_FORMAT, "generate.input_ids[2] = 2147483648 exceeds 2^31-1");
    pb_generate(&g, 1);
    pb_u(&g, 8, (uint64_t)1 << 31);
    pb_frame(&f, 1, 7, &g);
    DECODES(&f, WD_ERR_FORMAT, "generate.dp_rank 2147483648 exceeds 2^31-1");
    pb_generate(&g, 1);
    pb_u(&g, 8, 1 << 20);
    pb_frame(&f, 1, 7, &g);
    DECODES(&f, WD_ERR_FORMAT, "generate.dp_rank 1048576 is outside");

    /* TokenChunk counts: 2 tokens, 1 logprob; then n_top 2 with 3 top ids. */
    uint8_t two[] = {1, 2}, three[] = {1, 2, 3};
    float lp[4] = {-1, -2, -3, -4};
    c.n = 0, pb_u(&c, 1, 3), pb_bytes(&c, 2, two, 2), pb_bytes(&c, 3, lp, 4);
    pb_frame(&f, 1, 8, &c);
    DECODES(&f, WD_ERR_FORMAT, "token_chunk has 1 logprobs for 2 tokens");
    c.n = 0, pb_u(&c, 1, 3), pb_bytes(&c, 2, two, 2), pb_bytes(&c, 3, lp, 8), pb_u(&c, 4, 2);
    pb_bytes(&c, 5, three, 3), pb_bytes(&c, 6, lp, 16);
    pb_frame(&f, 1, 8, &c);
    DECODES(&f, WD_ERR_FORMAT, "token_chunk has 3 top ids and 4 top logprobs, expected 4");
    c.n = 0, pb_u(&c, 1, 3), pb_bytes(&c, 2, two, 2), pb_u(&c, 4, 21);
    pb_frame(&f, 1, 8, &c);
    DECODES(&f, WD_ERR_FORMAT, "token_chunk.n_top 21 exceeds 20");
    c.n = 0, pb_u(&c, 1, 3), pb_bytes(&c, 2, two, 2), pb_u(&c, 9, 7);
    pb_frame(&f, 1, 8, &c);
    DECODES(&f, WD_ERR_FORMAT, "matched_stop 7 set without finish STOP");
    c.n = 0, pb_u(&c, 1, 3), pb_bytes(&c, 2, two, 2), pb_u(&c, 7, 2), pb_u(&c, 9, 7);
    pb_frame(&f, 1, 8, &c);
    DECODES(&f, WD_OK, NULL);

    /* Text: NULs, caps, UTF-8; error codes. */
    t.n = 0, pb_bytes(&t, 1, "a\0b", 3);
    pb_frame(&f, 1, 6, &t);
    DECODES(&f, WD_ERR_FORMAT, "drain.instance_id contains a NUL byte");
    char longid[WD_MSG_ID_CAP];
    memset(longid, 'x', sizeof(longid));
    t.n = 0, pb_bytes(&t, 1, longid, sizeof(longid));
    pb_frame(&f, 1, 6, &t);
    DECODES(&f, WD_ERR_FORMAT, "drain.instance_id is 128 bytes, over the cap of 127");
    t.n = 0, pb_u(&t, 2, WD_ERR_IO), pb_bytes(&t, 3, "bad \xc3", 5);
    pb_frame(&f, 1, 10, &t);
    DECODES(&f, WD_ERR_FORMAT, "error.message has invalid UTF-8 at offset 4");
    t.n = 0, pb_u(&t, 2, 0);
    pb_frame(&f, 1, 10, &t);
    DECODES(&f, WD_ERR_FORMAT, "error.code 0 is not a wd_status error");
    t.n = 0, pb_u(&t, 2, UINT32_MAX);
    pb_frame(&f, 1, 10, &t);
    DECODES(&f, WD_ERR_FORMAT, "error.code 4294967295");
    t.n = 0, pb_u(&t, 2, WD_ERR_NOT_FOUND);
    pb_frame(&f, 1, 10, &t);
    DECODES(&f, WD_OK, NULL);
    t.n = 0;
    pb_frame(&f, 1, 9, &t);
    DECODES(&f, WD_ERR_FORMAT, "abort.request_id missing");
    pb_frame(&f, 1, 3, &t);
    DECODES(&f, WD_ERR_FORMAT, "register_ack.worker_id missing");
    pb_frame(&f, 1, 5, &t);
    DECODES(&f, WD_ERR_FORMAT, "heartbeat.instance_id missing");
}

/* A Register whose n_dp_ranks disagrees with its dp list: the encoder's frame with a
 * second n_dp_ranks field appended to the body (for an optional scalar the last one wins). */
static void test_wire_register(void)
{
    struct wd_msg m, d;
    struct wd_error err = {0};
    make(&m, WD_MSG_REGISTER);
    void *buf;
    size_t len;
    if (wd_msg_encode(&m, &buf, &len, &err) != WD_OK) {
        WD_EXPECT_MSG(0, "encode: %s", err.msg);
        return;
    }
    /* Frame = 08 01 (version 1), 12 <varint length> <Register>. */
    const uint8_t *b = buf;
    WD_EXPECT(len < sizeof(((struct pb *)0)->b) && b[0] == 0x08 && b[1] == 0x01 && b[2] == 0x12);
    size_t hdr = 3;
    while (b[hdr] & 0x80)
        hdr++;
    hdr++;
    struct pb body = {0}, out = {0};
    memcpy(body.b, b + hdr, len - hdr);
    body.n = len - hdr;
    free(buf);
    pb_u(&body, 3, 2);
    pb_frame(&out, 1, 2, &body);
    DECODES(&out, WD_ERR_FORMAT, "register.n_dp_ranks 2 but 3 dp entries");
    body.n -= 2;
    pb_u(&body, 3, 3);
    pb_frame(&out, 1, 2, &body);
    WD_EXPECT(wd_msg_decode(out.b, out.n, &d, &err) == WD_OK);
    WD_EXPECT_EQ_INT(d.reg.n_dp_ranks, 3);
    wd_msg_free(&d);
    body.n -= 2;
    pb_u(&body, 8, 0); /* wire type 0 for a message field: protobuf-c refuses the frame */
    pb_frame(&out, 1, 2, &body);
    DECODES(&out, WD_ERR_FORMAT, "is not a wideep frame");
}

static void test_config_hash(void)
{
    /* XXH3-64 with seed 0, as the reference xxhsum -H3 prints it. */
    WD_EXPECT(wd_msg_config_hash("", 0) == 0x2d06800538d394c2ull);
    const char a[] = "{\"model_type\": \"qwen3_moe\"}", b[] = "{\"model_type\": \"qwen3_moE\"}";
    WD_EXPECT(wd_msg_config_hash(a, sizeof(a) - 1) == wd_msg_config_hash(a, sizeof(a) - 1));
    WD_EXPECT(wd_msg_config_hash(a, sizeof(a) - 1) != wd_msg_config_hash(b, sizeof(b) - 1));
}

static void test_limits(void)
{
    struct wd_msg m;
    struct wd_error err = {0};
    size_t n = WD_MSG_MAX_FRAME + 1;
    uint8_t *big = calloc(n, 1);
    WD_EXPECT(wd_msg_decode(big, n, &m, &err) == WD_ERR_FORMAT);
    WD_EXPECT(strstr(err.msg, "exceeds the 67108864-byte cap") != NULL);

    /* 1 MiB of empty DpLoad submessages would unpack into ~40 MiB of structs. */
    size_t n_sub = (1u << 20) / 2, off = 0;
    uint8_t *hb = big;
    /* Frame: version, then field 5 (Heartbeat) of length 2 * n_sub. */
    hb[off++] = 0x08, hb[off++] = 0x01, hb[off++] = 0x2a;
    size_t body = 2 * n_sub;
    while (body >= 0x80)
        hb[off++] = (uint8_t)(body | 0x80), body >>= 7;
    hb[off++] = (uint8_t)body;
    for (size_t i = 0; i < n_sub; i++)
        hb[off++] = 0x22, hb[off++] = 0x00;
    WD_EXPECT(wd_msg_decode(hb, off, &m, &err) == WD_ERR_FORMAT);
    WD_EXPECT_MSG(strstr(err.msg, "needs more than") != NULL, "%s", err.msg);
    free(big);

    /* A message that would encode past the cap is refused by the encoder. */
    wd_msg_init(&m, WD_MSG_GENERATE);
    m.generate.request_id = 1, m.generate.max_new_tokens = 1;
    m.generate.n_input_ids = (int32_t)(WD_MSG_MAX_FRAME / 4);
    m.generate.input_ids = malloc((size_t)m.generate.n_input_ids * sizeof(int32_t));
    for (int32_t i = 0; i < m.generate.n_input_ids; i++)
        m.generate.input_ids[i] = WD_MSG_MAX_INT;
    expect_refused(&m, "generate message encodes to", __LINE__);
    free(m.generate.input_ids);
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return g_rng;
}

/* Decodes arbitrary bytes: either a refusal that leaves nothing behind, or a message that
 * validates and encodes again. */
static void decode_any(const void *buf, size_t len)
{
    struct wd_msg m;
    struct wd_error err = {0};
    if (wd_msg_decode(buf, len, &m, &err) == WD_OK) {
        void *out;
        size_t out_len;
        WD_EXPECT(wd_msg_encode(&m, &out, &out_len, &err) == WD_OK);
        if (err.status == WD_OK)
            free(out);
    } else {
        WD_EXPECT(m.kind == WD_MSG_NONE && m.storage == NULL && err.msg[0] != '\0');
    }
    wd_msg_free(&m);
}

static void test_garbage(void)
{
    enum wd_msg_kind kinds[] = {WD_MSG_REGISTER,    WD_MSG_REGISTER_ACK, WD_MSG_REGISTER_REFUSE,
                                WD_MSG_HEARTBEAT,   WD_MSG_DRAIN,        WD_MSG_GENERATE,
                                WD_MSG_TOKEN_CHUNK, WD_MSG_ABORT,        WD_MSG_ERROR};
    int n_truncated_ok = 0;
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        struct wd_msg m, d;
        struct wd_error err = {0};
        make(&m, kinds[k]);
        void *buf;
        size_t len;
        if (wd_msg_encode(&m, &buf, &len, &err) != WD_OK)
            continue;
        uint8_t *b = buf;
        /* Every proper prefix: the body is length-delimited, so a cut body fails to parse
         * and a frame cut before the body has none. */
        for (size_t cut = 0; cut < len; cut++) {
            if (wd_msg_decode(b, cut, &d, &err) == WD_OK)
                n_truncated_ok++, wd_msg_free(&d);
        }
        /* Single-byte mutations. */
        for (size_t i = 0; i < len; i++) {
            uint8_t saved = b[i];
            for (int v = 0; v < 4; v++) {
                b[i] = (uint8_t)rnd();
                decode_any(b, len);
            }
            b[i] = saved;
        }
        free(buf);
    }
    WD_EXPECT_EQ_INT(n_truncated_ok, 0);
    uint8_t rb[512];
    for (int i = 0; i < 20000; i++) {
        size_t len = rnd() % sizeof(rb);
        for (size_t j = 0; j < len; j++)
            rb[j] = (uint8_t)rnd();
        if (i % 2 && len >= 2)
            rb[0] = 0x08, rb[1] = 0x01; /* a valid version, so the body parser is reached */
        decode_any(rb, len);
    }
}

int main(void)
{
    WD_RUN(test_round_trip_register);
    WD_RUN(test_round_trip_small);
    WD_RUN(test_round_trip_generate);
    WD_RUN(test_round_trip_chunk);
    WD_RUN(test_rules_register);
    WD_RUN(test_rules_other);
    WD_RUN(test_rules_generate);
    WD_RUN(test_rules_chunk);
    WD_RUN(test_wire_frames);
    WD_RUN(test_wire_register);
    WD_RUN(test_config_hash);
    WD_RUN(test_limits);
    WD_RUN(test_garbage);
    return wd_test_finish();
}

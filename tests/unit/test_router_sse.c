/*
 * Response shapes and SSE framing: whole chat / completion / generate answers parse as
 * JSON with OpenAI's and SGLang's fields and usage; streams are "data: {...}\n\n" events
 * ending with "data: [DONE]\n\n", chat's first event carries the role, include_usage adds
 * "usage": null to every chunk and a final usage event with empty choices, the streamed
 * deltas add up to the whole text, and an error inside a stream is one error event + DONE.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/tokenizer/tokenizer.h"
#include "router/api_response.h"
#include "router/json_writer.h"
#include "tests/unit/wd_test.h"

static struct wd_tokenizer *g_tok;

struct events {
    json_t *ev[64];
    int n;
    int has_done;
};

/* Splits an SSE byte stream into JSON events; checks the framing on the way. */
static void split(const char *s, size_t len, struct events *out)
{
    memset(out, 0, sizeof(*out));
    size_t i = 0;
    while (i < len) {
        WD_EXPECT_MSG(strncmp(s + i, "data: ", 6) == 0, "event without 'data: ' at %zu", i);
        const char *end = strstr(s + i, "\n\n");
        WD_EXPECT(end != NULL);
        if (!end || strncmp(s + i, "data: ", 6) != 0)
            return;
        size_t n = (size_t)(end - (s + i)) - 6;
        if (n == 6 && strncmp(s + i + 6, "[DONE]", 6) == 0) {
            out->has_done = 1;
            WD_EXPECT_MSG((size_t)(end + 2 - s) == len, "bytes after [DONE]");
        } else {
            json_error_t je;
            json_t *j = json_loadb(s + i + 6, n, 0, &je);
            WD_EXPECT_MSG(j != NULL, "event is not JSON: %s", je.text);
            if (j && out->n < 64)
                out->ev[out->n++] = j;
        }
        i = (size_t)(end + 2 - s);
    }
}

static void free_events(struct events *e)
{
    for (int i = 0; i < e->n; i++)
        json_decref(e->ev[i]);
}

static void make_output(struct wd_output *o, int logprobs, int top)
{
    struct wd_output_config cfg = {
        .tok = g_tok, .skip_special_tokens = 1, .logprobs = logprobs, .top_logprobs = top};
    WD_ASSERT(wd_output_init(o, &cfg) == WD_OK);
}

static void push_text(struct wd_output *o, const char *text, int is_last)
{
    int32_t *ids = NULL;
    size_t n = 0;
    struct wd_error err;
    WD_ASSERT(wd_tokenizer_encode(g_tok, text, strlen(text), 0, &ids, &n, &err) == WD_OK);
    float lps[64];
    int32_t tids[128];
    float tlps[128];
    for (size_t i = 0; i < n; i++) {
        lps[i] = -0.25f;
        tids[2 * i] = ids[i];
        tids[2 * i + 1] = 7;
        tlps[2 * i] = -0.25f;
        tlps[2 * i + 1] = -3.0f;
    }
    WD_ASSERT(wd_output_push(o, ids, lps, tids, tlps, 2, (int)n,
                             is_last ? WD_OUTPUT_LENGTH : WD_OUTPUT_RUNNING) == WD_OK);
    free(ids);
}

static void ctx_for(struct wd_api_response_ctx *cx, struct wd_api_request *req,
                    enum wd_api_kind kind)
{
    memset(req, 0, sizeof(*req));
    req->kind = kind;
    memset(cx, 0, sizeof(*cx));
    cx->req = req;
    cx->tok = g_tok;
    cx->id = kind == WD_API_CHAT ? "chatcmpl-1" : "cmpl-1";
    cx->model = "tiny";
    cx->created = 1700000000;
    cx->prompt_tokens = 9;
}

static void test_full_chat(void)
{
    struct wd_api_request req;
    struct wd_api_response_ctx cx;
    ctx_for(&cx, &req, WD_API_CHAT);
    req.logprobs = 1;
    req.top_logprobs = 2;
    struct wd_output o;
    make_output(&o, 1, 2);
    push_text(&o, "Hello world", 1);
    struct wd_buf b;
    wd_buf_init(&b);
    WD_EXPECT(wd_api_response_full(&cx, &o, &b) == WD_OK);
    WD_EXPECT(b.len == strlen(b.p));
    json_t *j = json_loads(b.p, 0, NULL);
    WD_EXPECT(j != NULL);
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    WD_EXPECT(strcmp(json_string_value(json_object_get(j, "object")), "chat.completion") == 0);
    WD_EXPECT(strcmp(json_string_value(json_object_get(j, "id")), "chatcmpl-1") == 0);
    json_t *msg = json_object_get(c0, "message");
    WD_EXPECT(strcmp(json_string_value(json_object_get(msg, "role")), "assistant") == 0);
    WD_EXPECT(strcmp(json_string_value(json_object_get(msg, "content")), "Hello world") == 0);
    WD_EXPECT(strcmp(json_string_value(json_object_get(c0, "finish_reason")), "length") == 0);
    json_t *usage = json_object_get(j, "usage");
    WD_EXPECT_EQ_INT(json_integer_value(json_object_get(usage, "prompt_tokens")), 9);
    WD_EXPECT_EQ_INT(json_integer_value(json_object_get(usage, "completion_tokens")), o.n);
    WD_EXPECT_EQ_INT(json_integer_value(json_object_get(usage, "total_tokens")), 9 + o.n);
    json_t *content = json_object_get(json_object_get(c0, "logprobs"), "content");
    WD_EXPECT_EQ_INT(json_array_size(content), o.n);
    json_t *first = json_array_get(content, 0);
    WD_EXPECT(json_real_value(json_object_get(first, "logprob")) == -0.25);
    WD_EXPECT_EQ_INT(json_array_size(json_object_get(first, "top_logprobs")), 2);
    WD_EXPECT(json_is_array(json_object_get(first, "bytes")));
    json_decref(j);
    wd_buf_cleanup(&b);
    wd_output_cleanup(&o);
}

static void test_full_completion_and_generate(void)
{
    struct wd_api_request req;
    struct wd_api_response_ctx cx;
    ctx_for(&cx, &req, WD_API_COMPLETION);
    req.logprobs = 1;
    req.top_logprobs = 2;
    struct wd_output o;
    make_output(&o, 1, 2);
    push_text(&o, "Hi there", 1);
    struct wd_buf b;
    wd_buf_init(&b);
    WD_EXPECT(wd_api_response_full(&cx, &o, &b) == WD_OK);
    json_t *j = json_loads(b.p, 0, NULL);
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    WD_EXPECT(strcmp(json_string_value(json_object_get(j, "object")), "text_completion") == 0);
    WD_EXPECT(strcmp(json_string_value(json_object_get(c0, "text")), "Hi there") == 0);
    json_t *lp = json_object_get(c0, "logprobs");
    WD_EXPECT_EQ_INT(json_array_size(json_object_get(lp, "tokens")), o.n);
    WD_EXPECT_EQ_INT(json_array_size(json_object_get(lp, "text_offset")), o.n);
    WD_EXPECT_EQ_INT(json_integer_value(json_array_get(json_object_get(lp, "text_offset"), 0)), 0);
    json_t *offs = json_object_get(lp, "text_offset");
    WD_EXPECT(json_integer_value(json_array_get(offs, o.n - 1)) > 0);
    WD_EXPECT_EQ_INT(json_object_size(json_array_get(json_object_get(lp, "top_logprobs"), 0)), 2);
    json_decref(j);

    ctx_for(&cx, &req, WD_API_GENERATE);
    cx.id = "rid-7";
    req.logprobs = 1;
    req.return_text_in_logprobs = 1;
    wd_buf_reset(&b);
    WD_EXPECT(wd_api_response_full(&cx, &o, &b) == WD_OK);
    j = json_loads(b.p, 0, NULL);
    WD_EXPECT(strcmp(json_string_value(json_object_get(j, "text")), "Hi there") == 0);
    WD_EXPECT_EQ_INT(json_array_size(json_object_get(j, "output_ids")), o.n);
    json_t *meta = json_object_get(j, "meta_info");
    WD_EXPECT(strcmp(json_string_value(json_object_get(meta, "id")), "rid-7") == 0);
    json_t *fr = json_object_get(meta, "finish_reason");
    WD_EXPECT(strcmp(json_string_value(json_object_get(fr, "type")), "length") == 0);
    WD_EXPECT_EQ_INT(json_integer_value(json_object_get(fr, "length")), o.n);
    WD_EXPECT_EQ_INT(json_integer_value(json_object_get(meta, "completion_tokens")), o.n);
    WD_EXPECT_EQ_INT(json_integer_value(json_object_get(meta, "prompt_tokens")), 9);
    WD_EXPECT(json_is_number(json_object_get(meta, "e2e_latency")));
    json_t *otl = json_array_get(json_object_get(meta, "output_token_logprobs"), 0);
    WD_EXPECT(json_array_size(otl) == 3 && json_is_string(json_array_get(otl, 2)));
    json_decref(j);
    wd_buf_cleanup(&b);
    wd_output_cleanup(&o);
}

/* Streams "Hello" then " world" then the finish; returns the concatenated events. */
static void stream_two(enum wd_api_kind kind, int include_usage, int logprobs, struct events *ev,
                       char *text, size_t cap)
{
    struct wd_api_request req;
    struct wd_api_response_ctx cx;
    ctx_for(&cx, &req, kind);
    req.is_stream = 1;
    req.include_usage = include_usage;
    req.logprobs = logprobs;
    struct wd_output o;
    make_output(&o, logprobs, 0);
    struct wd_api_stream_state ss = {0};
    struct wd_buf all;
    wd_buf_init(&all);
    push_text(&o, "Hello", 0);
    WD_EXPECT(wd_api_response_stream(&cx, &o, &ss, &all) == WD_OK);
    push_text(&o, " world", 1);
    WD_EXPECT(wd_api_response_stream(&cx, &o, &ss, &all) == WD_OK);
    WD_EXPECT(ss.is_finished);
    /* Nothing more after the end. */
    size_t before = all.len;
    WD_EXPECT(wd_api_response_stream(&cx, &o, &ss, &all) == WD_OK);
    WD_EXPECT(all.len == before);
    split(all.p, all.len, ev);
    WD_EXPECT(ev->has_done);
    text[0] = 0;
    for (int i = 0; i < ev->n; i++) {
        json_t *c0 = json_array_get(json_object_get(ev->ev[i], "choices"), 0);
        const char *piece =
            kind == WD_API_CHAT
                ? json_string_value(json_object_get(json_object_get(c0, "delta"), "content"))
            : kind == WD_API_COMPLETION ? json_string_value(json_object_get(c0, "text"))
                                        : NULL;
        if (piece)
            strncat(text, piece, cap - strlen(text) - 1);
    }
    wd_buf_cleanup(&all);
    wd_output_cleanup(&o);
}

static void test_stream_chat(void)
{
    struct events ev;
    char text[256];
    stream_two(WD_API_CHAT, 1, 1, &ev, text, sizeof(text));
    WD_EXPECT_MSG(strcmp(text, "Hello world") == 0, "deltas add up to '%s'", text);
    WD_EXPECT(ev.n >= 3);
    json_t *c0 = json_array_get(json_object_get(ev.ev[0], "choices"), 0);
    WD_EXPECT(strcmp(json_string_value(json_object_get(json_object_get(c0, "delta"), "role")),
                     "assistant") == 0);
    WD_EXPECT(json_is_object(json_object_get(c0, "logprobs")));
    for (int i = 0; i < ev.n; i++) {
        WD_EXPECT(strcmp(json_string_value(json_object_get(ev.ev[i], "object")),
                         "chat.completion.chunk") == 0);
        WD_EXPECT(json_object_get(ev.ev[i], "usage") != NULL); /* null or the totals */
    }
    /* The finish reason comes once, in the event before the usage event. */
    int n_finish = 0;
    for (int i = 0; i < ev.n; i++) {
        json_t *fr = json_object_get(json_array_get(json_object_get(ev.ev[i], "choices"), 0),
                                     "finish_reason");
        n_finish += json_is_string(fr);
    }
    WD_EXPECT_EQ_INT(n_finish, 1);
    json_t *last = ev.ev[ev.n - 1];
    WD_EXPECT_EQ_INT(json_array_size(json_object_get(last, "choices")), 0);
    WD_EXPECT(
        json_integer_value(json_object_get(json_object_get(last, "usage"), "prompt_tokens")) == 9);
    free_events(&ev);

    stream_two(WD_API_CHAT, 0, 0, &ev, text, sizeof(text));
    WD_EXPECT(strcmp(text, "Hello world") == 0);
    for (int i = 0; i < ev.n; i++)
        WD_EXPECT(json_object_get(ev.ev[i], "usage") == NULL);
    free_events(&ev);
}

static void test_stream_completion_and_generate(void)
{
    struct events ev;
    char text[256];
    stream_two(WD_API_COMPLETION, 1, 0, &ev, text, sizeof(text));
    WD_EXPECT_MSG(strcmp(text, "Hello world") == 0, "got '%s'", text);
    WD_EXPECT(strcmp(json_string_value(json_object_get(ev.ev[0], "object")), "text_completion") ==
              0);
    free_events(&ev);
    /* /generate: each event holds all the text so far (SGLang's default). */
    stream_two(WD_API_GENERATE, 0, 0, &ev, text, sizeof(text));
    WD_EXPECT(ev.n == 2);
    WD_EXPECT(strcmp(json_string_value(json_object_get(ev.ev[0], "text")), "Hello") == 0);
    WD_EXPECT(strcmp(json_string_value(json_object_get(ev.ev[1], "text")), "Hello world") == 0);
    WD_EXPECT(
        json_is_null(json_object_get(json_object_get(ev.ev[0], "meta_info"), "finish_reason")));
    WD_EXPECT(
        json_is_object(json_object_get(json_object_get(ev.ev[1], "meta_info"), "finish_reason")));
    free_events(&ev);
}

static void test_stream_error(void)
{
    struct wd_api_error e;
    wd_api_error_set(&e, 504, NULL, "the request did not finish within %d s", 3);
    struct wd_buf b;
    wd_buf_init(&b);
    WD_EXPECT(wd_api_response_stream_error(&e, &b) == WD_OK);
    struct events ev;
    split(b.p, b.len, &ev);
    WD_EXPECT(ev.n == 1 && ev.has_done);
    json_t *err = json_object_get(ev.ev[0], "error");
    WD_EXPECT(strstr(json_string_value(json_object_get(err, "message")), "within 3 s") != NULL);
    WD_EXPECT(strcmp(json_string_value(json_object_get(err, "type")), "timeout_error") == 0);
    WD_EXPECT(json_is_null(json_object_get(err, "param")) &&
              json_is_null(json_object_get(err, "code")));
    free_events(&ev);
    wd_buf_cleanup(&b);
    /* The error body alone: OpenAI's shape, param and code when set. */
    wd_api_error_set(&e, 400, "top_p", "'top_p' must be in (0, 1]");
    wd_api_error_code(&e, "bad");
    char *s = wd_api_error_json(&e, NULL);
    json_t *j = json_loads(s, 0, NULL);
    json_t *in = json_object_get(j, "error");
    WD_EXPECT(strcmp(json_string_value(json_object_get(in, "param")), "top_p") == 0);
    WD_EXPECT(strcmp(json_string_value(json_object_get(in, "code")), "bad") == 0);
    WD_EXPECT(strcmp(json_string_value(json_object_get(in, "type")), "invalid_request_error") == 0);
    json_decref(j);
    free(s);
    /* A message cut inside a multi-byte character is still valid JSON. */
    char longmsg[600];
    memset(longmsg, 'a', sizeof(longmsg));
    memcpy(longmsg + 509, "\xe6\x97\xa5\xe6\x97\xa5", 6);
    longmsg[599] = 0;
    wd_api_error_set(&e, 400, NULL, "%s", longmsg);
    s = wd_api_error_json(&e, NULL);
    WD_EXPECT(s != NULL);
    free(s);
}

static void test_json_writer(void)
{
    struct wd_buf b;
    wd_buf_init(&b);
    const char raw[] = "a\"b\\c\n\t\r\x01\x1f\0z \xe6\x97\xa5";
    WD_EXPECT(wd_jw_string(&b, raw, sizeof(raw) - 1) == WD_OK);
    WD_EXPECT_MSG(strcmp(b.p, "\"a\\\"b\\\\c\\n\\t\\r\\u0001\\u001f\\u0000z \xe6\x97\xa5\"") == 0,
                  "%s", b.p);
    json_t *j = json_loadb(b.p, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    WD_EXPECT(j && json_string_length(j) == sizeof(raw) - 1 &&
              memcmp(json_string_value(j), raw, sizeof(raw) - 1) == 0);
    json_decref(j);
    wd_buf_reset(&b);
    wd_jw_double(&b, -INFINITY);
    wd_jw_raw(&b, " ");
    wd_jw_double(&b, NAN);
    wd_jw_raw(&b, " ");
    wd_jw_double(&b, -0.25);
    wd_jw_raw(&b, " ");
    wd_jw_int(&b, -7);
    WD_EXPECT_MSG(strcmp(b.p, "-9999.0 null -0.25 -7") == 0, "%s", b.p);
    wd_buf_cleanup(&b);
}

static void test_sse_event(void)
{
    struct wd_buf b;
    wd_buf_init(&b);
    WD_EXPECT(wd_api_sse_event(&b, "{\"a\":1}", 7) == WD_OK);
    WD_EXPECT(strcmp(b.p, "data: {\"a\":1}\n\n") == 0);
    wd_buf_cleanup(&b);
}

int main(void)
{
    struct wd_error err = {0};
    if (wd_tokenizer_load(wd_test_src("tests/fixtures/tiny-qwen3-moe/bf16/tokenizer.json"), &g_tok,
                          &err) != WD_OK) {
        fprintf(stderr, "tokenizer: %s\n", err.msg);
        return 1;
    }
    WD_RUN(test_json_writer);
    WD_RUN(test_sse_event);
    WD_RUN(test_full_chat);
    WD_RUN(test_full_completion_and_generate);
    WD_RUN(test_stream_chat);
    WD_RUN(test_stream_completion_and_generate);
    WD_RUN(test_stream_error);
    wd_tokenizer_destroy(g_tok);
    return wd_test_finish();
}

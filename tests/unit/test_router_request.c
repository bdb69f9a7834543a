/*
 * Request parsing for /v1/chat/completions, /v1/completions and /generate: every supported
 * field lands where it should, the neutral-only fields pass at their neutral value, and
 * every refusal is a 400 (404 for an unknown model) whose param names the field.
 */
#include <string.h>

#include "router/api_request.h"
#include "tests/unit/wd_test.h"

static const struct wd_api_model model = {.served_name = "tiny",
                                          .vocab_size = 1000,
                                          .temperature = 0.6f,
                                          .top_p = 0.95f,
                                          .top_k = 20,
                                          .min_p = 0.0f};

static enum wd_status parse(enum wd_api_kind kind, const char *body, struct wd_api_request *req,
                            struct wd_api_error *e)
{
    memset(e, 0, sizeof(*e));
    return wd_api_request_parse(kind, body, strlen(body), &model, req, e);
}

/* Expects a refusal with this status whose param is `param` ("" for null). */
static void expect_refused(enum wd_api_kind kind, const char *body, int status, const char *param)
{
    struct wd_api_request req;
    struct wd_api_error e;
    enum wd_status st = parse(kind, body, &req, &e);
    WD_EXPECT_MSG(st != WD_OK, "accepted: %s", body);
    if (st == WD_OK) {
        wd_api_request_cleanup(&req);
        return;
    }
    WD_EXPECT_MSG(e.status == status, "%s: status %d, want %d (%s)", body, e.status, status,
                  e.message);
    WD_EXPECT_MSG(strcmp(e.param, param) == 0, "%s: param '%s', want '%s' (%s)", body, e.param,
                  param, e.message);
    WD_EXPECT_MSG(e.message[0] != 0, "%s: empty message", body);
}

static void expect_ok(enum wd_api_kind kind, const char *body)
{
    struct wd_api_request req;
    struct wd_api_error e;
    enum wd_status st = parse(kind, body, &req, &e);
    WD_EXPECT_MSG(st == WD_OK, "%s refused: %s", body, e.message);
    if (st == WD_OK)
        wd_api_request_cleanup(&req);
}

static void test_chat_fields(void)
{
    const char *body =
        "{\"model\": \"tiny\", \"messages\": [{\"role\": \"system\", \"content\": \"be brief\"},"
        " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"},"
        " {\"type\": \"text\", \"text\": \"b\"}]}, {\"role\": \"assistant\", \"content\": null},"
        " {\"role\": \"developer\", \"content\": \"d\", \"name\": \"x\"}],"
        " \"stream\": true, \"stream_options\": {\"include_usage\": true},"
        " \"max_tokens\": 10, \"max_completion_tokens\": 12, \"temperature\": 0.0,"
        " \"top_p\": 0.5, \"top_k\": -1, \"min_p\": 0.1, \"seed\": -3,"
        " \"stop\": [\"x\", \"yz\"], \"stop_token_ids\": [7, 8], \"ignore_eos\": true,"
        " \"skip_special_tokens\": false, \"logprobs\": true, \"top_logprobs\": 3,"
        " \"chat_template_kwargs\": {\"enable_thinking\": false}, \"n\": 1,"
        " \"presence_penalty\": 0, \"frequency_penalty\": 0.0, \"repetition_penalty\": 1,"
        " \"logit_bias\": {}, \"tools\": [], \"tool_choice\": \"none\","
        " \"response_format\": {\"type\": \"text\"}, \"user\": \"u\", \"metadata\": {\"a\": 1},"
        " \"store\": false, \"service_tier\": \"auto\", \"parallel_tool_calls\": true,"
        " \"echo\": false, \"min_tokens\": 0, \"add_generation_prompt\": true}";
    struct wd_api_request r;
    struct wd_api_error e;
    enum wd_status st = parse(WD_API_CHAT, body, &r, &e);
    WD_EXPECT_MSG(st == WD_OK, "%s", e.message);
    if (st != WD_OK)
        return;
    WD_EXPECT_EQ_INT(r.n_msgs, 4);
    WD_EXPECT(strcmp(r.msgs[0].role, "system") == 0 && strcmp(r.msgs[0].content, "be brief") == 0);
    WD_EXPECT(strcmp(r.msgs[1].content, "a\nb") == 0);
    WD_EXPECT(strcmp(r.msgs[2].role, "assistant") == 0 && r.msgs[2].content == NULL);
    WD_EXPECT(strcmp(r.msgs[3].role, "system") == 0); /* developer -> system */
    WD_EXPECT(r.is_stream && r.include_usage);
    WD_EXPECT_EQ_INT(r.max_tokens, 12); /* max_completion_tokens wins */
    WD_EXPECT(r.temperature == 0.0f && r.top_p == 0.5f && r.top_k == 0);
    WD_EXPECT_NEAR(r.min_p, 0.1, 1e-6);
    WD_EXPECT(r.has_seed && r.seed == (uint64_t)-3);
    WD_EXPECT_EQ_INT(r.n_stop, 2);
    WD_EXPECT(r.stop_len[1] == 2 && memcmp(r.stop[1], "yz", 2) == 0);
    WD_EXPECT(r.n_stop_ids == 2 && r.stop_ids[0] == 7 && r.stop_ids[1] == 8);
    WD_EXPECT(r.ignore_eos && !r.skip_special_tokens);
    WD_EXPECT(r.logprobs && r.top_logprobs == 3);
    WD_EXPECT_EQ_INT(r.enable_thinking, 0);
    wd_api_request_cleanup(&r);
}

static void test_chat_defaults(void)
{
    struct wd_api_request r;
    struct wd_api_error e;
    enum wd_status st =
        parse(WD_API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", &r, &e);
    WD_EXPECT_MSG(st == WD_OK, "%s", e.message);
    if (st != WD_OK)
        return;
    WD_EXPECT_EQ_INT(r.max_tokens, -1);
    WD_EXPECT(r.temperature == 0.6f && r.top_p == 0.95f && r.top_k == 20); /* the model's */
    WD_EXPECT(!r.is_stream && !r.logprobs && r.skip_special_tokens && r.add_generation_prompt);
    WD_EXPECT_EQ_INT(r.enable_thinking, -1);
    WD_EXPECT(!r.has_seed && r.n_stop == 0 && r.n_stop_ids == 0);
    wd_api_request_cleanup(&r);
    /* Explicit nulls mean "not given", even for fields that are refused otherwise. */
    expect_ok(WD_API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}],"
                           " \"n\": null, \"tools\": null, \"stop\": null, \"seed\": null,"
                           " \"logit_bias\": null, \"response_format\": null}");
    /* A whole-number real is an integer to Python clients. */
    expect_ok(WD_API_CHAT,
              "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 16.0}");
}

static void test_chat_refusals(void)
{
    const char *pre = "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], ";
    struct {
        const char *extra;
        const char *param;
    } cases[] = {
        {"\"n\": 2}", "n"},
        {"\"tools\": [{\"type\": \"function\"}]}", "tools"},
        {"\"tool_choice\": \"required\"}", "tool_choice"},
        {"\"functions\": [{}]}", "functions"},
        {"\"function_call\": {\"name\": \"f\"}}", "function_call"},
        {"\"response_format\": {\"type\": \"json_object\"}}", "response_format"},
        {"\"logit_bias\": {\"5\": 1}}", "logit_bias"},
        {"\"presence_penalty\": 0.5}", "presence_penalty"},
        {"\"frequency_penalty\": 1}", "frequency_penalty"},
        {"\"repetition_penalty\": 1.1}", "repetition_penalty"},
        {"\"min_tokens\": 3}", "min_tokens"},
        {"\"echo\": true}", "echo"},
        {"\"continue_final_message\": true}", "continue_final_message"},
        {"\"reasoning_effort\": \"high\"}", "reasoning_effort"},
        {"\"best_of\": 2}", "best_of"},
        {"\"stream_options\": {\"include_usage\": true}}", "stream_options"},
        {"\"stream\": true, \"stream_options\": {\"continuous_usage_stats\": true}}",
         "stream_options.continuous_usage_stats"},
        {"\"top_logprobs\": 2}", "top_logprobs"},
        {"\"logprobs\": true, \"top_logprobs\": 21}", "top_logprobs"},
        {"\"logprobs\": 1}", "logprobs"},
        {"\"max_tokens\": 0}", "max_tokens"},
        {"\"max_tokens\": \"10\"}", "max_tokens"},
        {"\"max_completion_tokens\": -1}", "max_completion_tokens"},
        {"\"temperature\": -0.1}", "temperature"},
        {"\"temperature\": \"hot\"}", "temperature"},
        {"\"top_p\": 0}", "top_p"},
        {"\"top_p\": 1.5}", "top_p"},
        {"\"top_k\": -2}", "top_k"},
        {"\"min_p\": 2}", "min_p"},
        {"\"seed\": 1.5}", "seed"},
        {"\"stop\": \"\"}", "stop"},
        {"\"stop\": [\"a\", 3]}", "stop"},
        {"\"stop\": [\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\","
         "\"13\",\"14\",\"15\",\"16\",\"17\"]}",
         "stop"},
        {"\"stop_token_ids\": [1000]}", "stop_token_ids"},
        {"\"stop_token_ids\": [-1]}", "stop_token_ids"},
        {"\"stop_token_ids\": 5}", "stop_token_ids"},
        {"\"ignore_eos\": 1}", "ignore_eos"},
        {"\"stream\": \"yes\"}", "stream"},
        {"\"chat_template_kwargs\": {\"tools\": []}}", "chat_template_kwargs.tools"},
        {"\"chat_template_kwargs\": {\"enable_thinking\": \"no\"}}",
         "chat_template_kwargs.enable_thinking"},
        {"\"no_such_field\": 1}", "no_such_field"},
        {"\"model\": 5}", "model"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[1024];
        snprintf(body, sizeof(body), "%s%s", pre, cases[i].extra);
        expect_refused(WD_API_CHAT, body, 400, cases[i].param);
    }
}

static void test_chat_messages(void)
{
    expect_refused(WD_API_CHAT, "{}", 400, "messages");
    expect_refused(WD_API_CHAT, "{\"messages\": []}", 400, "messages");
    expect_refused(WD_API_CHAT, "{\"messages\": \"hi\"}", 400, "messages");
    expect_refused(WD_API_CHAT, "{\"messages\": [5]}", 400, "messages[0]");
    expect_refused(WD_API_CHAT, "{\"messages\": [{\"content\": \"x\"}]}", 400, "messages[0]");
    expect_refused(WD_API_CHAT, "{\"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}", 400,
                   "messages[0].role");
    expect_refused(WD_API_CHAT, "{\"messages\": [{\"role\": \"user\"}]}", 400, "messages[0]");
    expect_refused(WD_API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": 3}]}", 400,
                   "messages[0].content");
    expect_refused(WD_API_CHAT,
                   "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\","
                   " \"image_url\": {\"url\": \"x\"}}]}]}",
                   400, "messages[0].content");
    expect_refused(WD_API_CHAT,
                   "{\"messages\": [{\"role\": \"assistant\", \"content\": \"x\", \"tool_calls\":"
                   " [{\"id\": \"1\"}]}]}",
                   400, "messages[0].tool_calls");
    expect_refused(WD_API_CHAT,
                   "{\"messages\": [{\"role\": \"user\", \"content\": \"x\", \"extra\": 1}]}", 400,
                   "messages[0].extra");
}

static void test_body_errors(void)
{
    expect_refused(WD_API_CHAT, "", 400, "");
    expect_refused(WD_API_CHAT, "{", 400, "");
    expect_refused(WD_API_CHAT, "[1, 2]", 400, "");
    expect_refused(WD_API_CHAT, "\"text\"", 400, "");
    /* {"n": 1, "n": 2} must not pass as n = 1. */
    expect_refused(WD_API_COMPLETION, "{\"prompt\": \"a\", \"n\": 1, \"n\": 2}", 400, "");
    expect_refused(WD_API_COMPLETION, "{\"prompt\": \"a\", \"model\": \"other\"}", 404, "model");
    expect_ok(WD_API_COMPLETION, "{\"prompt\": \"a\", \"model\": \"tiny\"}");
    /* Not NUL-terminated: the parser reads len bytes only. */
    struct wd_api_request r;
    struct wd_api_error e;
    const char body[] = "{\"prompt\": \"a\"}GARBAGE";
    WD_EXPECT(wd_api_request_parse(WD_API_COMPLETION, body, 15, &model, &r, &e) == WD_OK);
    wd_api_request_cleanup(&r);
}

static void test_completion(void)
{
    struct wd_api_request r;
    struct wd_api_error e;
    enum wd_status st =
        parse(WD_API_COMPLETION,
              "{\"prompt\": \"Hello\", \"max_tokens\": 5, \"logprobs\": 2,"
              " \"echo\": false, \"suffix\": \"\", \"best_of\": 1, \"stop\": \"!\"}",
              &r, &e);
    WD_EXPECT_MSG(st == WD_OK, "%s", e.message);
    if (st == WD_OK) {
        WD_EXPECT(r.text && r.text_len == 5 && memcmp(r.text, "Hello", 5) == 0);
        WD_EXPECT(r.logprobs && r.top_logprobs == 2 && r.max_tokens == 5 && r.n_stop == 1);
        wd_api_request_cleanup(&r);
    }
    st = parse(WD_API_COMPLETION, "{\"prompt\": [1, 2, 3], \"logprobs\": 0}", &r, &e);
    WD_EXPECT_MSG(st == WD_OK, "%s", e.message);
    if (st == WD_OK) {
        WD_EXPECT(r.ids && r.n_ids == 3 && r.ids[2] == 3 && !r.text);
        WD_EXPECT(r.logprobs && r.top_logprobs == 0);
        wd_api_request_cleanup(&r);
    }
    expect_ok(WD_API_COMPLETION, "{\"prompt\": [\"one\"]}");
    expect_ok(WD_API_COMPLETION, "{\"prompt\": [[4, 5]]}");
    expect_refused(WD_API_COMPLETION, "{\"prompt\": [\"a\", \"b\"]}", 400, "prompt");
    expect_refused(WD_API_COMPLETION, "{\"prompt\": [[1], [2]]}", 400, "prompt");
    expect_refused(WD_API_COMPLETION, "{\"prompt\": [1, 1000]}", 400, "prompt");
    expect_refused(WD_API_COMPLETION, "{\"prompt\": 5}", 400, "prompt");
    expect_refused(WD_API_COMPLETION, "{\"max_tokens\": 5}", 400, "prompt");
    expect_refused(WD_API_COMPLETION, "{\"prompt\": \"a\", \"echo\": true}", 400, "echo");
    expect_refused(WD_API_COMPLETION, "{\"prompt\": \"a\", \"suffix\": \"x\"}", 400, "suffix");
    expect_refused(WD_API_COMPLETION, "{\"prompt\": \"a\", \"logprobs\": 21}", 400, "logprobs");
    expect_refused(WD_API_COMPLETION, "{\"prompt\": \"a\", \"logprobs\": true}", 400, "logprobs");
    expect_refused(WD_API_COMPLETION, "{\"prompt\": \"a\", \"messages\": []}", 400, "messages");
}

static void test_generate(void)
{
    struct wd_api_request r;
    struct wd_api_error e;
    enum wd_status st = parse(WD_API_GENERATE,
                              "{\"text\": \"Hi\", \"rid\": \"r1\", \"stream\": true,"
                              " \"return_logprob\": true, \"top_logprobs_num\": 2,"
                              " \"return_text_in_logprobs\": true, \"logprob_start_len\": -1,"
                              " \"sampling_params\": {\"max_new_tokens\": 7, \"temperature\": 0,"
                              " \"top_p\": 0.9, \"top_k\": 5, \"min_p\": 0.05, \"stop\": \"x\","
                              " \"stop_token_ids\": [3], \"ignore_eos\": true,"
                              " \"skip_special_tokens\": false, \"no_stop_trim\": true,"
                              " \"sampling_seed\": 9, \"n\": 1, \"min_new_tokens\": 0,"
                              " \"spaces_between_special_tokens\": true}}",
                              &r, &e);
    WD_EXPECT_MSG(st == WD_OK, "%s", e.message);
    if (st == WD_OK) {
        WD_EXPECT(r.text && strcmp(r.rid, "r1") == 0 && r.is_stream);
        WD_EXPECT(r.logprobs && r.top_logprobs == 2 && r.return_text_in_logprobs);
        WD_EXPECT(r.max_tokens == 7 && r.temperature == 0.0f && r.top_k == 5);
        WD_EXPECT(r.n_stop == 1 && r.n_stop_ids == 1 && r.ignore_eos && !r.skip_special_tokens);
        WD_EXPECT(r.no_stop_trim && r.has_seed && r.seed == 9);
        wd_api_request_cleanup(&r);
    }
    expect_ok(WD_API_GENERATE, "{\"input_ids\": [1, 2]}");
    expect_ok(WD_API_GENERATE, "{\"input_ids\": [[1, 2]]}");
    expect_ok(WD_API_GENERATE, "{\"text\": [\"a\"]}");
    expect_refused(WD_API_GENERATE, "{}", 400, "text");
    expect_refused(WD_API_GENERATE, "{\"text\": \"a\", \"input_ids\": [1]}", 400, "input_ids");
    expect_refused(WD_API_GENERATE, "{\"text\": [\"a\", \"b\"]}", 400, "text");
    expect_refused(WD_API_GENERATE, "{\"input_ids\": [[1], [2]]}", 400, "input_ids");
    expect_refused(WD_API_GENERATE, "{\"text\": \"a\", \"sampling_params\": [{}]}", 400,
                   "sampling_params");
    expect_refused(WD_API_GENERATE, "{\"text\": \"a\", \"sampling_params\": {\"n\": 2}}", 400,
                   "sampling_params.n");
    expect_refused(WD_API_GENERATE, "{\"text\": \"a\", \"sampling_params\": {\"regex\": \"x\"}}",
                   400, "sampling_params.regex");
    expect_refused(WD_API_GENERATE,
                   "{\"text\": \"a\", \"sampling_params\": {\"max_new_tokens\": 0}}", 400,
                   "sampling_params.max_new_tokens");
    expect_refused(WD_API_GENERATE, "{\"text\": \"a\", \"sampling_params\": {\"bogus\": 1}}", 400,
                   "sampling_params.bogus");
    expect_refused(WD_API_GENERATE, "{\"text\": \"a\", \"logprob_start_len\": 0}", 400,
                   "logprob_start_len");
    expect_refused(WD_API_GENERATE, "{\"text\": \"a\", \"top_logprobs_num\": 2}", 400,
                   "top_logprobs_num");
    expect_refused(WD_API_GENERATE, "{\"text\": \"a\", \"image_data\": \"x\"}", 400, "image_data");
    expect_refused(WD_API_GENERATE, "{\"text\": \"a\", \"lora_path\": \"x\"}", 400, "lora_path");
    expect_refused(WD_API_GENERATE, "{\"text\": \"a\", \"rid\": \"\"}", 400, "rid");
    expect_refused(WD_API_GENERATE, "{\"text\": \"a\", \"model\": \"tiny\"}", 400, "model");
}

int main(void)
{
    WD_RUN(test_chat_fields);
    WD_RUN(test_chat_defaults);
    WD_RUN(test_chat_refusals);
    WD_RUN(test_chat_messages);
    WD_RUN(test_body_errors);
    WD_RUN(test_completion);
    WD_RUN(test_generate);
    return wd_test_finish();
}

/*
 * Chat templates against transformers' renderer (jinja2 in the environment HF uses):
 * the Qwen3 and DeepSeek-V3 templates over a set of conversations must render
 * byte-identically (tests/fixtures/tokenizer/<name>/chat.jsonl), every small template in
 * jinja_cases.jsonl must match or fail like jinja2 did, and bad configs must fail cleanly.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/tokenizer/chat_template.h"
#include "tests/unit/wd_test.h"

static json_t *load_jsonl(const char *rel)
{
    FILE *f = fopen(wd_test_src(rel), "rb");
    if (!f)
        return NULL;
    json_t *rows = json_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        json_t *row = json_loadb(line, (size_t)n, 0, NULL);
        if (row)
            json_array_append_new(rows, row);
    }
    free(line);
    fclose(f);
    return rows;
}

static void show_diff(const char *what, size_t i, const char *want, const char *got)
{
    size_t k = 0;
    while (want[k] && want[k] == got[k])
        k++;
    wd_test_fail(__FILE__, __LINE__, "%s row %zu differs at byte %zu: want '%.60s' got '%.60s'",
                 what, i, k, want + k, got + k);
}

static void run_chat(const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "tests/fixtures/tokenizer/%s/tokenizer_config.json", name);
    struct wd_chat_template *ct = NULL;
    struct wd_error err = {0};
    enum wd_status st = wd_chat_template_load(wd_test_src(path), &ct, &err);
    WD_EXPECT_MSG(st == WD_OK, "%s: %s", name, err.msg);
    snprintf(path, sizeof(path), "tests/fixtures/tokenizer/%s/chat.jsonl", name);
    json_t *rows = load_jsonl(path);
    WD_EXPECT(rows && json_array_size(rows) >= 20);
    if (st != WD_OK || !rows) {
        json_decref(rows);
        wd_chat_template_destroy(ct);
        return;
    }
    size_t i, ok = 0;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        json_t *jm = json_object_get(row, "messages");
        size_t n = json_array_size(jm);
        struct wd_chat_message *msgs = calloc(n + 1, sizeof(*msgs));
        for (size_t k = 0; k < n; k++) {
            json_t *m = json_array_get(jm, k);
            msgs[k].role = json_string_value(json_object_get(m, "role"));
            msgs[k].content = json_string_value(json_object_get(m, "content"));
        }
        json_t *think = json_object_get(row, "enable_thinking");
        struct wd_chat_render_opts opts = {
            json_is_true(json_object_get(row, "add_generation_prompt")),
            think ? json_is_true(think) : -1};
        char *text = NULL;
        st = wd_chat_template_render_ex(ct, msgs, n, &opts, &text, &err);
        json_t *want = json_object_get(row, "text");
        wd_test_checks++;
        if (want && st != WD_OK)
            wd_test_fail(__FILE__, __LINE__, "%s row %zu: render failed: %s", name, i, err.msg);
        else if (!want && st == WD_OK)
            wd_test_fail(__FILE__, __LINE__, "%s row %zu: rendered but jinja2 raised %s", name, i,
                         json_string_value(json_object_get(row, "error")));
        else if (want && strcmp(text, json_string_value(want)) != 0)
            show_diff(name, i, json_string_value(want), text);
        else
            ok++;
        free(text);
        free(msgs);
    }
    printf("  %s: %zu/%zu renderings identical\n", name, ok, json_array_size(rows));
    json_decref(rows);
    wd_chat_template_destroy(ct);
}

static void test_qwen3(void)
{
    run_chat("qwen3");
}
static void test_deepseek_v3(void)
{
    run_chat("deepseek-v3");
}

static void test_jinja_cases(void)
{
    json_t *rows = load_jsonl("tests/fixtures/tokenizer/jinja_cases.jsonl");
    WD_EXPECT(rows && json_array_size(rows) >= 30);
    struct wd_chat_message msgs[] = {
        {"system", "Sys  prompt\n"},
        {"user", "Hello, World! \xc3\xbcn\xc3\xaf"
                 "c\xc3\xb6"
                 "d\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd"},
        {"assistant", "<think>\nhm\n</think>\n\nAnswer: 42"},
    };
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        json_t *cfg = json_pack("{s:O, s:s}", "chat_template", json_object_get(row, "template"),
                                "bos_token", "<s>");
        char *cfg_text = json_dumps(cfg, 0);
        struct wd_chat_template *ct = NULL;
        struct wd_error err = {0};
        enum wd_status st =
            wd_chat_template_load_from_memory(cfg_text, strlen(cfg_text), &ct, &err);
        json_t *want = json_object_get(row, "text");
        char *text = NULL;
        if (st == WD_OK)
            st = wd_chat_template_render(ct, msgs, 3, 0, &text, &err);
        wd_test_checks++;
        if (want && st != WD_OK)
            wd_test_fail(__FILE__, __LINE__, "case %zu (%.50s): %s", i,
                         json_string_value(json_object_get(row, "template")), err.msg);
        else if (!want && st == WD_OK)
            wd_test_fail(__FILE__, __LINE__, "case %zu: rendered '%.60s' but jinja2 raised %s", i,
                         text, json_string_value(json_object_get(row, "error")));
        else if (want && strcmp(text, json_string_value(want)) != 0)
            show_diff("jinja case", i, json_string_value(want), text);
        free(text);
        wd_chat_template_destroy(ct);
        free(cfg_text);
        json_decref(cfg);
    }
    json_decref(rows);
}

static void expect_bad(const char *json, enum wd_status want, const char *needle)
{
    struct wd_chat_template *ct = NULL;
    struct wd_error err = {0};
    enum wd_status st = wd_chat_template_load_from_memory(json, strlen(json), &ct, &err);
    WD_EXPECT_MSG(st == want && strstr(err.msg, needle), "'%s': %s (%s)", json, wd_status_str(st),
                  err.msg);
    WD_EXPECT(ct == NULL);
}

static void test_bad_templates(void)
{
    expect_bad("{", WD_ERR_FORMAT, "bad JSON");
    expect_bad("{}", WD_ERR_FORMAT, "no chat_template");
    expect_bad("{\"chat_template\": 3}", WD_ERR_FORMAT, "no chat_template");
    expect_bad("{\"chat_template\": \"{% if x %}\"}", WD_ERR_FORMAT, "endif");
    expect_bad("{\"chat_template\": \"{{ x | nosuchfilter }}\"}", WD_ERR_FORMAT, "nosuchfilter");
    expect_bad("{\"chat_template\": \"{% macro m() %}{% endmacro %}\"}", WD_ERR_FORMAT, "macro");
    expect_bad("{\"chat_template\": \"{{ 'unterminated }}\"}", WD_ERR_FORMAT, "unclosed");
    expect_bad("{\"chat_template\": \"{{ (1 }}\"}", WD_ERR_FORMAT, "unclosed");
    expect_bad("{\"chat_template\": \"{{ 1 + }}\"}", WD_ERR_FORMAT, "unexpected");
    expect_bad("{\"chat_template\": \"x\", \"bos_token\": 5}", WD_ERR_FORMAT, "bos_token");
    struct wd_chat_template *ct = NULL;
    struct wd_error err = {0};
    WD_EXPECT_EQ_INT(wd_chat_template_load("/nonexistent/tokenizer_config.json", &ct, &err),
                     WD_ERR_NOT_FOUND);
    /* runtime errors: raise_exception's message comes through */
    const char *cfg = "{\"chat_template\": \"{% if messages|length == 0 %}"
                      "{{ raise_exception('need a message') }}{% endif %}ok\"}";
    WD_EXPECT(wd_chat_template_load_from_memory(cfg, strlen(cfg), &ct, &err) == WD_OK);
    char *text = NULL;
    WD_EXPECT_EQ_INT(wd_chat_template_render(ct, NULL, 0, 1, &text, &err), WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "need a message") != NULL);
    WD_EXPECT(text == NULL);
    wd_chat_template_destroy(ct);
}

int main(void)
{
    WD_RUN(test_jinja_cases);
    WD_RUN(test_qwen3);
    WD_RUN(test_deepseek_v3);
    WD_RUN(test_bad_templates);
    return wd_test_finish();
}

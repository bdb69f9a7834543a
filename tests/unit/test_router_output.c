/*
 * The output pipeline: stop-string search and hold-back on their own, then wd_output with
 * the tiny Qwen3 tokenizer: text released token by token never contains a stop string or
 * a part of one that later completes, the stop string is cut (kept with no_stop_trim),
 * a stop token's text is trimmed, usage counts the tokens up to the stop, and the streamed
 * pieces add up to the final text.
 */
#include <stdlib.h>
#include <string.h>

#include "common/tokenizer/tokenizer.h"
#include "router/output.h"
#include "tests/unit/wd_test.h"

static void test_stop_match(void)
{
    const char *stop[] = {"Hello", "lo w", "!"};
    size_t len[] = {5, 4, 1};
    struct wd_stop_match m;
    wd_stop_match_init(&m, stop, len, 3);
    WD_EXPECT_EQ_INT(m.max_len, 5);
    size_t pos = 99;
    /* Hold-back: the longest tail that is a proper prefix of some stop string. */
    WD_EXPECT_EQ_INT(wd_stop_match_holdback(&m, "abc", 3), 0);
    WD_EXPECT_EQ_INT(wd_stop_match_holdback(&m, "abcHel", 6), 3);
    WD_EXPECT_EQ_INT(wd_stop_match_holdback(&m, "abcHell", 7), 4);
    WD_EXPECT_EQ_INT(wd_stop_match_holdback(&m, "xlo ", 4), 3);
    WD_EXPECT_EQ_INT(wd_stop_match_holdback(&m, "H", 1), 1);
    WD_EXPECT_EQ_INT(wd_stop_match_holdback(&m, "", 0), 0);
    /* A match spanning the old end is found; one wholly before old_len is not re-reported. */
    WD_EXPECT_EQ_INT(wd_stop_match_find(&m, "abHello", 7, 4, &pos), 0);
    WD_EXPECT_EQ_INT(pos, 2);
    WD_EXPECT_EQ_INT(wd_stop_match_find(&m, "Hello there", 11, 8, &pos), -1);
    /* The earliest match wins, whichever string it is. */
    WD_EXPECT_EQ_INT(wd_stop_match_find(&m, "hi! Hello", 9, 0, &pos), 2);
    WD_EXPECT_EQ_INT(pos, 2);
    WD_EXPECT_EQ_INT(wd_stop_match_find(&m, "Hello world", 11, 0, &pos), 0);
    WD_EXPECT_EQ_INT(pos, 0);
    struct wd_stop_match none;
    wd_stop_match_init(&none, NULL, NULL, 0);
    WD_EXPECT_EQ_INT(wd_stop_match_holdback(&none, "abc", 3), 0);
    WD_EXPECT_EQ_INT(wd_stop_match_find(&none, "abc", 3, 0, &pos), -1);
}

static struct wd_tokenizer *load_tok(void)
{
    struct wd_tokenizer *tok = NULL;
    struct wd_error err = {0};
    if (wd_tokenizer_load(wd_test_src("tests/fixtures/tiny-qwen3-moe/bf16/tokenizer.json"), &tok,
                          &err) != WD_OK)
        wd_test_fail(__FILE__, __LINE__, "tokenizer: %s", err.msg);
    return tok;
}

static int32_t *encode(struct wd_tokenizer *tok, const char *text, int *n_p)
{
    int32_t *ids = NULL;
    size_t n = 0;
    struct wd_error err = {0};
    WD_ASSERT(wd_tokenizer_encode(tok, text, strlen(text), 0, &ids, &n, &err) == WD_OK);
    *n_p = (int)n;
    return ids;
}

/* Pushes the text's tokens one by one (the last with worker_finish); collects what a
 * streaming client would have got after each push. */
static void run(struct wd_tokenizer *tok, const char *text, const char *const *stop, int n_stop,
                int no_stop_trim, enum wd_output_finish worker_finish, struct wd_output *o,
                char *streamed, size_t cap)
{
    size_t stop_len[8];
    for (int i = 0; i < n_stop; i++)
        stop_len[i] = strlen(stop[i]);
    static size_t keep_len[8];
    memcpy(keep_len, stop_len, sizeof(stop_len));
    int32_t eos = 5;
    struct wd_output_config cfg = {.tok = tok,
                                   .skip_special_tokens = 1,
                                   .stop = stop,
                                   .stop_len = keep_len,
                                   .n_stop = n_stop,
                                   .stop_ids = &eos,
                                   .n_stop_ids = 1,
                                   .no_stop_trim = no_stop_trim,
                                   .logprobs = 1};
    WD_EXPECT(wd_output_init(o, &cfg) == WD_OK);
    int n = 0;
    int32_t *ids = encode(tok, text, &n);
    streamed[0] = 0;
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        float lp = -0.1f * (float)i;
        WD_EXPECT(wd_output_push(o, &ids[i], &lp, NULL, NULL, 0, 1,
                                 i == n - 1 ? worker_finish : WD_OUTPUT_RUNNING) == WD_OK);
        size_t len;
        const char *p = wd_output_unsent(o, &len);
        WD_ASSERT(k + len < cap);
        memcpy(streamed + k, p, len);
        k += len;
        streamed[k] = 0;
        wd_output_mark_sent(o);
        /* Nothing released may ever contain a stop string. */
        for (int s = 0; s < n_stop && !no_stop_trim; s++)
            WD_EXPECT_MSG(strstr(streamed, stop[s]) == NULL, "released '%s' contains '%s'",
                          streamed, stop[s]);
    }
    free(ids);
}

static void test_output_stop_string(void)
{
    struct wd_tokenizer *tok = load_tok();
    if (!tok)
        return;
    struct wd_output o;
    char got[4096];
    const char *stop[] = {"fox jumps"};
    run(tok, "The quick brown fox jumps over the lazy dog", stop, 1, 0, WD_OUTPUT_LENGTH, &o, got,
        sizeof(got));
    WD_EXPECT_MSG(strcmp(got, "The quick brown ") == 0, "got '%s'", got);
    WD_EXPECT(o.finish == WD_OUTPUT_STOP_STRING && o.stop_string == 0);
    WD_EXPECT(o.released == strlen("The quick brown "));
    /* usage: the tokens up to the one that completed the match, not the rest. */
    int n_all = 0, n_upto = 0;
    free(encode(tok, "The quick brown fox jumps over the lazy dog", &n_all));
    free(encode(tok, "The quick brown fox jumps", &n_upto));
    WD_EXPECT_MSG(o.n >= n_upto - 1 && o.n <= n_upto && o.n < n_all, "n %d (upto %d, all %d)", o.n,
                  n_upto, n_all);
    /* Tokens after the match are dropped. */
    int32_t more = 40;
    float lp = 0;
    int n_before = o.n;
    wd_output_push(&o, &more, &lp, NULL, NULL, 0, 1, WD_OUTPUT_RUNNING);
    WD_EXPECT_EQ_INT(o.n, n_before);
    wd_output_cleanup(&o);

    /* no_stop_trim keeps the stop string. */
    run(tok, "The quick brown fox jumps over the lazy dog", stop, 1, 1, WD_OUTPUT_LENGTH, &o, got,
        sizeof(got));
    WD_EXPECT_MSG(strcmp(got, "The quick brown fox jumps") == 0, "got '%s'", got);
    wd_output_cleanup(&o);

    /* A prefix that does not complete is released once it is settled. */
    const char *stop2[] = {"brown cow"};
    run(tok, "The quick brown fox", stop2, 1, 0, WD_OUTPUT_LENGTH, &o, got, sizeof(got));
    WD_EXPECT_MSG(strcmp(got, "The quick brown fox") == 0, "got '%s'", got);
    WD_EXPECT(o.finish == WD_OUTPUT_LENGTH);
    wd_output_cleanup(&o);

    /* A stop string that is a prefix still held at the end is released at the finish. */
    const char *stop3[] = {"dog!"};
    run(tok, "lazy dog", stop3, 1, 0, WD_OUTPUT_LENGTH, &o, got, sizeof(got));
    WD_EXPECT_MSG(strcmp(got, "lazy dog") == 0, "got '%s'", got);
    wd_output_cleanup(&o);
    wd_tokenizer_destroy(tok);
}

static void test_output_stop_token(void)
{
    struct wd_tokenizer *tok = load_tok();
    if (!tok)
        return;
    struct wd_output o;
    int32_t eos = 5;
    /* A non-special stop token: its text is trimmed, it still counts. */
    const char *eos_text = wd_tokenizer_id_to_token(tok, eos);
    WD_EXPECT(eos_text != NULL);
    struct wd_output_config cfg = {
        .tok = tok, .skip_special_tokens = 1, .stop_ids = &eos, .n_stop_ids = 1, .logprobs = 0};
    WD_EXPECT(wd_output_init(&o, &cfg) == WD_OK);
    int n = 0;
    int32_t *ids = encode(tok, "Hello", &n);
    int32_t all[16];
    memcpy(all, ids, sizeof(int32_t) * (size_t)n);
    all[n] = eos;
    WD_EXPECT(wd_output_push(&o, all, NULL, NULL, NULL, 0, n + 1, WD_OUTPUT_STOP_TOKEN) == WD_OK);
    WD_EXPECT(o.finish == WD_OUTPUT_STOP_TOKEN && o.stop_token == eos);
    WD_EXPECT_EQ_INT(o.n, n + 1);
    size_t len;
    const char *text = wd_output_unsent(&o, &len);
    WD_EXPECT_MSG(len == 5 && memcmp(text, "Hello", 5) == 0, "got '%.*s'", (int)len, text);
    wd_output_cleanup(&o);
    /* With no_stop_trim the stop token's text stays. */
    cfg.no_stop_trim = 1;
    WD_EXPECT(wd_output_init(&o, &cfg) == WD_OK);
    wd_output_push(&o, all, NULL, NULL, NULL, 0, n + 1, WD_OUTPUT_STOP_TOKEN);
    text = wd_output_unsent(&o, &len);
    WD_EXPECT(len == 5 + strlen(eos_text));
    wd_output_cleanup(&o);
    /* The worker said LENGTH: the last token is ordinary text even if it is a stop id. */
    cfg.no_stop_trim = 0;
    WD_EXPECT(wd_output_init(&o, &cfg) == WD_OK);
    wd_output_push(&o, all, NULL, NULL, NULL, 0, n + 1, WD_OUTPUT_LENGTH);
    text = wd_output_unsent(&o, &len);
    WD_EXPECT(o.finish == WD_OUTPUT_LENGTH && len == 5 + strlen(eos_text));
    wd_output_cleanup(&o);
    free(ids);
    wd_tokenizer_destroy(tok);
}

static void test_output_utf8_and_logprobs(void)
{
    struct wd_tokenizer *tok = load_tok();
    if (!tok)
        return;
    /* Multi-byte text split over byte tokens: no chunk ends inside a character. */
    const char *text = "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac";
    struct wd_output o;
    char got[256];
    const char *stop[] = {"\xe6\x9c\xac!"};
    run(tok, text, stop, 1, 0, WD_OUTPUT_LENGTH, &o, got, sizeof(got));
    WD_EXPECT_MSG(strcmp(got, text) == 0, "got '%s'", got);
    WD_EXPECT(o.lps != NULL && o.lps[1] == -0.1f);
    wd_output_cleanup(&o);
    /* Top logprobs: -1 ids pad, a missing alternative stays -1. */
    struct wd_output_config cfg = {.tok = tok, .logprobs = 1, .top_logprobs = 3};
    WD_EXPECT(wd_output_init(&o, &cfg) == WD_OK);
    int32_t ids[2] = {10, 11}, top_ids[4] = {10, 12, 11, -1};
    float lps[2] = {-1, -2}, top_lps[4] = {-1, -3, -2, 0};
    wd_output_push(&o, ids, lps, top_ids, top_lps, 2, 2, WD_OUTPUT_LENGTH);
    WD_EXPECT(o.top_ids[0] == 10 && o.top_ids[1] == 12 && o.top_ids[2] == -1);
    WD_EXPECT(o.top_ids[3] == 11 && o.top_ids[4] == -1 && o.top_lps[3] == -2);
    wd_output_cleanup(&o);
    wd_tokenizer_destroy(tok);
}

int main(void)
{
    WD_RUN(test_stop_match);
    WD_RUN(test_output_stop_string);
    WD_RUN(test_output_stop_token);
    WD_RUN(test_output_utf8_and_logprobs);
    return wd_test_finish();
}

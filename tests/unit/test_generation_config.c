/*
 * generation_config.json parsing: the files Qwen3 and DeepSeek-V3 ship, a missing file,
 * and each malformed variant failing with a message naming the key.
 */
#include <stdlib.h>
#include <string.h>

#include "common/config/generation_config.h"
#include "tests/unit/wd_test.h"

static enum wd_status parse(const char *text, struct wd_generation_config *gc, struct wd_error *err)
{
    return wd_generation_config_parse(text, strlen(text), gc, err);
}

static void test_real_files(void)
{
    /* Qwen3-30B-A3B's generation_config.json. */
    const char *qwen = "{\n  \"bos_token_id\": 151643,\n  \"do_sample\": true,\n"
                       "  \"eos_token_id\": [\n    151645,\n    151643\n  ],\n"
                       "  \"pad_token_id\": 151643,\n  \"temperature\": 0.6,\n  \"top_k\": 20,\n"
                       "  \"top_p\": 0.95,\n  \"transformers_version\": \"4.51.0\"\n}\n";
    struct wd_generation_config g;
    struct wd_error err = {0};
    enum wd_status s = parse(qwen, &g, &err);
    WD_EXPECT_MSG(s == WD_OK, "%s", err.msg);
    WD_EXPECT_EQ_INT(g.n_eos, 2);
    WD_EXPECT(g.eos_token_ids[0] == 151645 && g.eos_token_ids[1] == 151643);
    WD_EXPECT_EQ_INT(g.bos_token_id, 151643);
    WD_EXPECT(g.has_temperature && g.temperature == 0.6f);
    WD_EXPECT(g.has_top_p && g.top_p == 0.95f);
    WD_EXPECT(g.has_top_k && g.top_k == 20);
    WD_EXPECT_EQ_INT(g.do_sample, 1);

    /* DeepSeek-V3's: eos as a single int, no top_k. */
    const char *ds = "{\"_from_model_config\": true, \"bos_token_id\": 0, \"eos_token_id\": 1,"
                     " \"do_sample\": true, \"temperature\": 0.6, \"top_p\": 0.95,"
                     " \"transformers_version\": \"4.46.3\"}";
    s = parse(ds, &g, &err);
    WD_EXPECT_MSG(s == WD_OK, "%s", err.msg);
    WD_EXPECT(g.n_eos == 1 && g.eos_token_ids[0] == 1);
    WD_EXPECT_EQ_INT(g.bos_token_id, 0);
    WD_EXPECT(g.has_temperature && g.has_top_p && !g.has_top_k);

    /* Nothing given; nulls count as absent. */
    s = parse("{\"top_k\": null, \"eos_token_id\": null, \"temperature\": 0}", &g, &err);
    WD_EXPECT(s == WD_OK);
    WD_EXPECT(g.n_eos == 0 && g.bos_token_id == -1 && !g.has_top_k && !g.has_top_p);
    WD_EXPECT(g.has_temperature && g.temperature == 0.0f && g.do_sample == 0);
}

static void expect_fail(int line, const char *text, enum wd_status want, const char *want_msg)
{
    struct wd_generation_config g;
    struct wd_error err = {0};
    enum wd_status s = parse(text, &g, &err);
    WD_EXPECT_MSG(s == want, "line %d: status %s, want %s (%s)", line, wd_status_str(s),
                  wd_status_str(want), err.msg);
    WD_EXPECT_MSG(strstr(err.msg, want_msg) != NULL, "line %d: '%s' lacks '%s'", line, err.msg,
                  want_msg);
}

#define FAIL(text, st, msg) expect_fail(__LINE__, text, st, msg)

static void test_errors(void)
{
    FAIL("{", WD_ERR_FORMAT, "generation_config.json: invalid JSON");
    FAIL("[]", WD_ERR_FORMAT, "top level is not a JSON object");
    FAIL("{\"temperature\": \"hot\"}", WD_ERR_FORMAT, "'temperature' must be a number");
    FAIL("{\"temperature\": -1}", WD_ERR_INVALID, "'temperature' = -1 out of range");
    FAIL("{\"top_p\": 0}", WD_ERR_INVALID, "'top_p' = 0 must be in (0, 1]");
    FAIL("{\"top_p\": 1.5}", WD_ERR_INVALID, "'top_p' = 1.5 out of range");
    FAIL("{\"top_k\": -1}", WD_ERR_INVALID, "'top_k' = -1 out of range");
    FAIL("{\"top_k\": 2.5}", WD_ERR_INVALID, "'top_k' = 2.5");
    FAIL("{\"do_sample\": 1}", WD_ERR_FORMAT, "'do_sample' must be true or false");
    FAIL("{\"eos_token_id\": \"</s>\"}", WD_ERR_FORMAT, "'eos_token_id' must be an integer or");
    FAIL("{\"eos_token_id\": [1,2,3,4,5,6,7,8,9]}", WD_ERR_UNSUPPORTED, "9 entries, at most 8");
    FAIL("{\"eos_token_id\": [1, -5]}", WD_ERR_INVALID, "'eos_token_id'[1] = -5");
    FAIL("{\"bos_token_id\": 4294967296}", WD_ERR_INVALID, "'bos_token_id'");
}

static void test_load(void)
{
    char dir[256], cmd[600], out[256];
    snprintf(dir, sizeof(dir), "%s/wd_gen_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    WD_ASSERT(mkdtemp(dir));
    struct wd_generation_config g;
    memset(&g, 0x5a, sizeof(g));
    struct wd_error err = {0};
    WD_EXPECT(wd_generation_config_load(dir, &g, &err) == WD_OK);
    WD_EXPECT(g.n_eos == 0 && g.bos_token_id == -1 && !g.has_temperature && !g.has_top_p &&
              !g.has_top_k && !g.do_sample);
    snprintf(cmd, sizeof(cmd), "printf '{\"top_k\": 5}' > '%s/generation_config.json'", dir);
    WD_ASSERT(wd_test_sh(cmd, out, sizeof(out)) == 0);
    WD_EXPECT(wd_generation_config_load(dir, &g, &err) == WD_OK);
    WD_EXPECT(g.has_top_k && g.top_k == 5);
    snprintf(cmd, sizeof(cmd), "printf '{\"top_k\": 5' > '%s/generation_config.json'", dir);
    WD_ASSERT(wd_test_sh(cmd, out, sizeof(out)) == 0);
    WD_EXPECT(wd_generation_config_load(dir, &g, &err) == WD_ERR_FORMAT);
    WD_EXPECT_MSG(strstr(err.msg, "/generation_config.json: invalid JSON") != NULL, "%s", err.msg);
    /* A directory where the file should be is an I/O error, not "missing". */
    snprintf(cmd, sizeof(cmd),
             "rm '%s/generation_config.json' && mkdir '%s/generation_config.json'", dir, dir);
    WD_ASSERT(wd_test_sh(cmd, out, sizeof(out)) == 0);
    WD_EXPECT(wd_generation_config_load(dir, &g, &err) == WD_ERR_IO);
    WD_EXPECT_MSG(strstr(err.msg, "not a regular file") != NULL, "%s", err.msg);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    wd_test_sh(cmd, out, sizeof(out));
}

int main(void)
{
    WD_RUN(test_real_files);
    WD_RUN(test_errors);
    WD_RUN(test_load);
    return wd_test_finish();
}

/* Expert-distribution recorder: window sums, ring eviction, -1 slots, dumps per mode. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/ep/expert_recorder.h"
#include "tests/unit/wd_test.h"

static struct wd_expert_recorder *make(enum wd_expert_record_mode mode, int buffer)
{
    struct wd_expert_recorder_config cfg = {.mode = mode,
                                            .n_layers = 2,
                                            .n_experts = 4,
                                            .top_k = 2,
                                            .buffer_size = buffer,
                                            .max_tokens = 3};
    struct wd_expert_recorder *r = NULL;
    WD_EXPECT_EQ_INT(wd_expert_recorder_create(&cfg, &r, NULL), WD_OK);
    return r;
}

static void test_window(void)
{
    struct wd_expert_recorder *r = make(WD_RECORD_STAT, 2);
    int32_t a[] = {0, 1, 1, 3, -1, 2}; /* 3 tokens, top-2; one empty slot */
    double c[8];
    for (int pass = 0; pass < 3; pass++) {
        wd_expert_recorder_begin_pass(r);
        wd_expert_recorder_add(r, 1, a, 3);
        if (pass == 0)
            wd_expert_recorder_add(r, 0, a, 1); /* only in the first pass */
    }
    /* The window holds the last 2 passes: layer 0's pass-0 counts are gone. */
    WD_EXPECT_EQ_INT(wd_expert_recorder_counts(r, c), 2);
    WD_EXPECT_NEAR(c[0] + c[1] + c[2] + c[3], 0, 0);
    WD_EXPECT_NEAR(c[4 + 0], 2, 0);
    WD_EXPECT_NEAR(c[4 + 1], 4, 0);
    WD_EXPECT_NEAR(c[4 + 2], 2, 0);
    WD_EXPECT_NEAR(c[4 + 3], 2, 0);
    wd_expert_recorder_reset(r);
    WD_EXPECT_EQ_INT(wd_expert_recorder_counts(r, c), 0);
    wd_expert_recorder_destroy(r);
}

static json_t *dump(struct wd_expert_recorder *r)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    WD_EXPECT_EQ_INT(wd_expert_recorder_dump(r, f, NULL), WD_OK);
    fclose(f);
    json_t *j = json_loads(buf, 0, NULL);
    WD_EXPECT_MSG(j != NULL, "dump is not JSON: %s", buf);
    free(buf);
    return j;
}

static void test_dumps(void)
{
    int32_t a[] = {0, 1, 2, 3, 3, 3, 1, 0};
    struct wd_expert_recorder *r = make(WD_RECORD_PER_PASS, 4);
    wd_expert_recorder_begin_pass(r);
    wd_expert_recorder_add(r, 0, a, 2);
    wd_expert_recorder_begin_pass(r);
    wd_expert_recorder_add(r, 0, a + 4, 2);
    json_t *j = dump(r);
    WD_EXPECT_EQ_INT(json_integer_value(json_object_get(j, "passes")), 2);
    json_t *pp = json_object_get(j, "per_pass");
    WD_EXPECT_EQ_INT(json_array_size(pp), 2);
    /* Oldest first: pass 0 saw experts 0..3 once each on layer 0. */
    WD_EXPECT_EQ_INT(
        json_integer_value(json_array_get(json_array_get(json_array_get(pp, 0), 0), 2)), 1);
    WD_EXPECT_EQ_INT(
        json_integer_value(json_array_get(json_array_get(json_array_get(pp, 1), 0), 3)), 2);
    json_decref(j);
    wd_expert_recorder_destroy(r);

    r = make(WD_RECORD_PER_TOKEN, 4);
    wd_expert_recorder_begin_pass(r);
    wd_expert_recorder_add(r, 1, a, 4); /* 4 tokens, only max_tokens = 3 kept */
    j = dump(r);
    json_t *pt = json_array_get(json_object_get(j, "per_token"), 0);
    WD_EXPECT_EQ_INT(json_integer_value(json_object_get(pt, "layer")), 1);
    WD_EXPECT_EQ_INT(json_array_size(json_object_get(pt, "topk")), 3);
    /* The counts still see every token. */
    json_t *lc = json_array_get(json_object_get(j, "logical_count"), 1);
    WD_EXPECT_EQ_INT(json_integer_value(json_array_get(lc, 3)), 3);
    json_decref(j);
    wd_expert_recorder_destroy(r);
}

static void test_errors(void)
{
    enum wd_expert_record_mode m;
    struct wd_error err = {0};
    WD_EXPECT_EQ_INT(wd_expert_record_mode_parse("per_token", &m, &err), WD_OK);
    WD_EXPECT_EQ_INT(m, WD_RECORD_PER_TOKEN);
    WD_EXPECT_EQ_INT(wd_expert_record_mode_parse("stat_approx", &m, &err), WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "stat_approx") != NULL);
    struct wd_expert_recorder_config cfg = {.mode = WD_RECORD_STAT, .n_layers = 2};
    struct wd_expert_recorder *r = NULL;
    WD_EXPECT_EQ_INT(wd_expert_recorder_create(&cfg, &r, &err), WD_ERR_INVALID);
    WD_EXPECT(r == NULL);
}

int main(void)
{
    WD_RUN(test_window);
    WD_RUN(test_dumps);
    WD_RUN(test_errors);
    return wd_test_finish();
}

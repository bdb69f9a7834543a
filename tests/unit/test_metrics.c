/* Prometheus registry: text exposition of each kind, escaping, limits. */
#include <stdlib.h>
#include <string.h>

#include "common/util/metrics.h"
#include "tests/unit/wd_test.h"

static void test_render(void)
{
    struct wd_metrics *r = NULL;
    WD_EXPECT_EQ_INT(wd_metrics_create(&r, NULL), WD_OK);
    int g = wd_metrics_register(r, "wideep_eplb_balancedness", "mean/max GPU load", WD_METRIC_GAUGE,
                                "layer", NULL, 0);
    int c = wd_metrics_register(r, "wideep_eplb_rebalances_total", "rebalances", WD_METRIC_COUNTER,
                                NULL, NULL, 0);
    double b[] = {0.5, 1.0};
    int h =
        wd_metrics_register(r, "wideep_step_seconds", "step time", WD_METRIC_HISTOGRAM, NULL, b, 2);
    WD_EXPECT(g >= 0 && c >= 0 && h >= 0);
    wd_metrics_set(r, g, "1", 0.75);
    wd_metrics_set(r, g, "2", 0.5);
    wd_metrics_set(r, g, "1", 0.9);
    wd_metrics_add(r, c, NULL, 1);
    wd_metrics_add(r, c, NULL, 2);
    wd_metrics_observe(r, h, NULL, 0.25);
    wd_metrics_observe(r, h, NULL, 0.75);
    wd_metrics_observe(r, h, NULL, 3);
    char *text = wd_metrics_render(r);
    WD_EXPECT(text != NULL);
    const char *want[] = {
        "# TYPE wideep_eplb_balancedness gauge\n",
        "wideep_eplb_balancedness{layer=\"1\"} 0.90000000000000002\n",
        "wideep_eplb_balancedness{layer=\"2\"} 0.5\n",
        "# TYPE wideep_eplb_rebalances_total counter\nwideep_eplb_rebalances_total 3\n",
        "wideep_step_seconds_bucket{le=\"0.5\"} 1\n",
        "wideep_step_seconds_bucket{le=\"1\"} 2\n",
        "wideep_step_seconds_bucket{le=\"+Inf\"} 3\n",
        "wideep_step_seconds_sum 4\n",
        "wideep_step_seconds_count 3\n",
    };
    for (size_t i = 0; text && i < sizeof(want) / sizeof(want[0]); i++)
        WD_EXPECT_MSG(strstr(text, want[i]) != NULL, "missing: %s in\n%s", want[i], text);
    free(text);
    wd_metrics_destroy(r);
}

static void test_escape_and_limits(void)
{
    struct wd_metrics *r = NULL;
    WD_EXPECT_EQ_INT(wd_metrics_create(&r, NULL), WD_OK);
    WD_EXPECT_EQ_INT(wd_metrics_register(r, "bad name", "", WD_METRIC_GAUGE, NULL, NULL, 0), -1);
    WD_EXPECT_EQ_INT(wd_metrics_register(r, "9x", "", WD_METRIC_GAUGE, NULL, NULL, 0), -1);
    double nb[] = {1, 1};
    WD_EXPECT_EQ_INT(wd_metrics_register(r, "h", "", WD_METRIC_HISTOGRAM, NULL, nb, 2), -1);
    int g = wd_metrics_register(r, "g", "", WD_METRIC_GAUGE, "model", NULL, 0);
    wd_metrics_set(r, g, "a\"b\\c\nd", 1);
    char *text = wd_metrics_render(r);
    WD_EXPECT(text && strstr(text, "g{model=\"a\\\"b\\\\c\\nd\"} 1\n") != NULL);
    free(text);
    char lv[16];
    for (int i = 0; i < WD_METRICS_MAX_SERIES + 5; i++) {
        snprintf(lv, sizeof(lv), "v%d", i);
        wd_metrics_set(r, g, lv, i);
    }
    WD_EXPECT_EQ_INT(wd_metrics_dropped(r), 6);
    wd_metrics_destroy(r);
}

int main(void)
{
    WD_RUN(test_render);
    WD_RUN(test_escape_and_limits);
    return wd_test_finish();
}

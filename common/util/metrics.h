/*
 * wd_metrics: a small Prometheus registry and its text exposition (format 0.0.4).
 *
 * Families (counter, gauge, histogram with fixed buckets) are registered at start
 * with at most one label; label values appear on first use, up to a fixed number
 * per family, so updates never allocate. wd_metrics_render writes the whole
 * registry as text for /metrics endpoints or metric files. Not thread-safe: one
 * owner thread updates and renders (servers render on their event loop).
 */
#ifndef WD_UTIL_METRICS_H
#define WD_UTIL_METRICS_H

#include <stddef.h>

#include "common/util/status.h"

#define WD_METRICS_MAX_FAMILIES 64
#define WD_METRICS_MAX_SERIES 256 /* label values per family */
#define WD_METRICS_MAX_BUCKETS 32

enum wd_metric_kind { WD_METRIC_COUNTER = 0, WD_METRIC_GAUGE, WD_METRIC_HISTOGRAM };

struct wd_metrics;

enum wd_status wd_metrics_create(struct wd_metrics **reg_p, struct wd_error *err);
void wd_metrics_destroy(struct wd_metrics *reg);

/* Registers a family; returns its id (>= 0) or -1 (registry full, bad name, too many
 * buckets). label may be NULL (one unlabelled series). buckets: upper bounds, ascending,
 * histograms only (+Inf is implicit). */
int wd_metrics_register(struct wd_metrics *reg, const char *name, const char *help,
                        enum wd_metric_kind kind, const char *label, const double *buckets,
                        int n_buckets);

/* Updates the series with this label value (NULL for an unlabelled family). Silently
 * drops updates past WD_METRICS_MAX_SERIES label values (counted in
 * wd_metrics_dropped). */
void wd_metrics_set(struct wd_metrics *reg, int fam, const char *label_value, double v);
void wd_metrics_add(struct wd_metrics *reg, int fam, const char *label_value, double v);
void wd_metrics_observe(struct wd_metrics *reg, int fam, const char *label_value, double v);
long wd_metrics_dropped(const struct wd_metrics *reg);

/* Buckets of a transfer rate in GB/s (1e9 bytes/s), from a slow TCP link to NVLink: the
 * KV transfer histograms of the router and the workers share them, so they compare. */
extern const double wd_metrics_gbps_buckets[];
extern const int wd_metrics_n_gbps_buckets;

/* The registry as Prometheus text, malloc'd and NUL-terminated (caller frees). */
char *wd_metrics_render(const struct wd_metrics *reg);

#endif

/* Prometheus registry: fixed tables, text rendering with escaped label values. */
#include "common/util/metrics.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct series {
    char *label_value;
    double value; /* counter / gauge; histogram: sum */
    double count;
    double buckets[WD_METRICS_MAX_BUCKETS]; /* cumulative counts per bound */
};

struct family {
    char name[96], help[256], label[48];
    enum wd_metric_kind kind;
    double bounds[WD_METRICS_MAX_BUCKETS];
    int n_bounds, n_series;
    struct series *series; /* [WD_METRICS_MAX_SERIES] */
};

struct wd_metrics {
    struct family fam[WD_METRICS_MAX_FAMILIES];
    int n_fam;
    long dropped;
};

const double wd_metrics_gbps_buckets[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,   2,
                                          4,    8,     12.5, 25,  50,   100, 200, 400};
const int wd_metrics_n_gbps_buckets =
    (int)(sizeof(wd_metrics_gbps_buckets) / sizeof(wd_metrics_gbps_buckets[0]));

enum wd_status wd_metrics_create(struct wd_metrics **reg_p, struct wd_error *err)
{
    struct wd_metrics *r = calloc(1, sizeof(*r));
    if (!r)
        return wd_error_set(err, WD_ERR_NOMEM, "metrics: out of memory");
    *reg_p = r;
    return WD_OK;
}

void wd_metrics_destroy(struct wd_metrics *r)
{
    if (!r)
        return;
    for (int f = 0; f < r->n_fam; f++) {
        for (int s = 0; s < r->fam[f].n_series; s++)
            free(r->fam[f].series[s].label_value);
        free(r->fam[f].series);
    }
    free(r);
}

static int valid_name(const char *s)
{
    if (!s || !*s || isdigit((unsigned char)*s))
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != ':')
            return 0;
    return 1;
}

int wd_metrics_register(struct wd_metrics *r, const char *name, const char *help,
                        enum wd_metric_kind kind, const char *label, const double *buckets,
                        int n_buckets)
{
    if (r->n_fam >= WD_METRICS_MAX_FAMILIES || !valid_name(name) || (label && !valid_name(label)) ||
        n_buckets < 0 || n_buckets > WD_METRICS_MAX_BUCKETS ||
        strlen(name) >= sizeof(r->fam[0].name))
        return -1;
    for (int i = 1; i < n_buckets; i++)
        if (!(buckets[i] > buckets[i - 1]))
            return -1;
    struct family *f = &r->fam[r->n_fam];
    memset(f, 0, sizeof(*f));
    f->series = calloc(WD_METRICS_MAX_SERIES, sizeof(*f->series));
    if (!f->series)
        return -1;
    snprintf(f->name, sizeof(f->name), "%s", name);
    snprintf(f->help, sizeof(f->help), "%s", help ? help : "");
    snprintf(f->label, sizeof(f->label), "%s", label ? label : "");
    f->kind = kind;
    f->n_bounds = kind == WD_METRIC_HISTOGRAM ? n_buckets : 0;
    if (f->n_bounds > 0)
        memcpy(f->bounds, buckets, sizeof(double) * (size_t)f->n_bounds);
    return r->n_fam++;
}

static struct series *find(struct wd_metrics *r, int fam, const char *lv)
{
    if (fam < 0 || fam >= r->n_fam)
        return NULL;
    struct family *f = &r->fam[fam];
    const char *key = f->label[0] ? (lv ? lv : "") : "";
    for (int s = 0; s < f->n_series; s++)
        if (strcmp(f->series[s].label_value, key) == 0)
            return &f->series[s];
    if (f->n_series >= WD_METRICS_MAX_SERIES) {
        r->dropped++;
        return NULL;
    }
    struct series *s = &f->series[f->n_series];
    s->label_value = strdup(key);
    if (!s->label_value) {
        r->dropped++;
        return NULL;
    }
    f->n_series++;
    return s;
}

void wd_metrics_set(struct wd_metrics *r, int fam, const char *lv, double v)
{
    struct series *s = find(r, fam, lv);
    if (s)
        s->value = v;
}

void wd_metrics_add(struct wd_metrics *r, int fam, const char *lv, double v)
{
    struct series *s = find(r, fam, lv);
    if (s)
        s->value += v;
}

void wd_metrics_observe(struct wd_metrics *r, int fam, const char *lv, double v)
{
    struct series *s = find(r, fam, lv);
    if (!s)
        return;
    const struct family *f = &r->fam[fam];
    s->value += v;
    s->count += 1;
    for (int b = 0; b < f->n_bounds; b++)
        if (v <= f->bounds[b])
            s->buckets[b] += 1;
}

long wd_metrics_dropped(const struct wd_metrics *r)
{
    return r->dropped;
}

struct out {
    char *buf;
    size_t len, cap;
    int failed;
};

static void emit(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(struct out *o, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = 1;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)n;
        char *nb = realloc(o->buf, cap);
        if (!nb) {
            o->failed = 1;
            return;
        }
        o->buf = nb;
        o->cap = cap;
    }
}

/* Label values escape backslash, double quote and newline, as the format requires. */
static void emit_label(struct out *o, const char *name, const char *v, const char *extra)
{
    if (!name[0] && !extra)
        return;
    emit(o, "{");
    if (name[0]) {
        emit(o, "%s=\"", name);
        for (const char *p = v; *p; p++) {
            if (*p == '\\' || *p == '"')
                emit(o, "\\%c", *p);
            else if (*p == '\n')
                emit(o, "\\n");
            else
                emit(o, "%c", *p);
        }
        emit(o, "\"");
    }
    if (extra)
        emit(o, "%s%s", name[0] ? "," : "", extra);
    emit(o, "}");
}

static void emit_value(struct out *o, double v)
{
    if (isinf(v))
        emit(o, " %s\n", v > 0 ? "+Inf" : "-Inf");
    else if (isnan(v))
        emit(o, " NaN\n");
    else
        emit(o, " %.17g\n", v);
}

char *wd_metrics_render(const struct wd_metrics *r)
{
    static const char *types[] = {"counter", "gauge", "histogram"};
    struct out o = {.buf = malloc(4096), .cap = 4096};
    if (!o.buf)
        return NULL;
    o.buf[0] = 0;
    for (int fi = 0; fi < r->n_fam; fi++) {
        const struct family *f = &r->fam[fi];
        emit(&o, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, types[f->kind]);
        for (int si = 0; si < f->n_series; si++) {
            const struct series *s = &f->series[si];
            if (f->kind != WD_METRIC_HISTOGRAM) {
                emit(&o, "%s", f->name);
                emit_label(&o, f->label, s->label_value, NULL);
                emit_value(&o, s->value);
                continue;
            }
            char le[64];
            for (int b = 0; b < f->n_bounds; b++) {
                snprintf(le, sizeof(le), "le=\"%.17g\"", f->bounds[b]);
                emit(&o, "%s_bucket", f->name);
                emit_label(&o, f->label, s->label_value, le);
                emit_value(&o, s->buckets[b]);
            }
            emit(&o, "%s_bucket", f->name);
            emit_label(&o, f->label, s->label_value, "le=\"+Inf\"");
            emit_value(&o, s->count);
            emit(&o, "%s_sum", f->name);
            emit_label(&o, f->label, s->label_value, NULL);
            emit_value(&o, s->value);
            emit(&o, "%s_count", f->name);
            emit_label(&o, f->label, s->label_value, NULL);
            emit_value(&o, s->count);
        }
    }
    if (o.failed) {
        free(o.buf);
        return NULL;
    }
    return o.buf;
}

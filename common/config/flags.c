/* Flag table parsing: --name value, --name=value, bools as bare --name. */
#include "common/config/flags.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util/log.h"

static int name_matches(const struct wd_flag *f, const char *name, size_t len)
{
    if (strlen(f->name) == len && strncmp(f->name, name, len) == 0)
        return 1;
    const char *a = f->aliases;
    while (a && *a) {
        const char *end = strchr(a, ',');
        size_t alen = end ? (size_t)(end - a) : strlen(a);
        if (alen == len && strncmp(a, name, len) == 0)
            return 1;
        a = end ? end + 1 : NULL;
    }
    return 0;
}

static int choice_ok(const char *choices, const char *v)
{
    size_t vlen = strlen(v);
    const char *a = choices;
    while (a && *a) {
        const char *end = strchr(a, ',');
        size_t alen = end ? (size_t)(end - a) : strlen(a);
        if (alen == vlen && strncmp(a, v, vlen) == 0)
            return 1;
        a = end ? end + 1 : NULL;
    }
    return 0;
}

static enum wd_status set_value(struct wd_flag *f, const char *v, struct wd_error *err)
{
    char *end = NULL;
    errno = 0;
    switch (f->type) {
    case WD_FLAG_INT: {
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno)
            return wd_error_set(err, WD_ERR_INVALID, "--%s: '%s' is not an integer", f->name, v);
        if (f->min <= f->max && (x < f->min || x > f->max))
            return wd_error_set(err, WD_ERR_INVALID, "--%s: %lld is outside [%g, %g]", f->name, x,
                                f->min, f->max);
        *(int *)f->value = (int)x;
        break;
    }
    case WD_FLAG_FLOAT: {
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x))
            return wd_error_set(err, WD_ERR_INVALID, "--%s: '%s' is not a number", f->name, v);
        if (f->min <= f->max && (x < f->min || x > f->max))
            return wd_error_set(err, WD_ERR_INVALID, "--%s: %g is outside [%g, %g]", f->name, x,
                                f->min, f->max);
        *(float *)f->value = (float)x;
        break;
    }
    case WD_FLAG_STRING:
        if (f->choices && !choice_ok(f->choices, v))
            return wd_error_set(err, WD_ERR_INVALID, "--%s: '%s' is not one of: %s", f->name, v,
                                f->choices);
        *(const char **)f->value = v;
        break;
    case WD_FLAG_BOOL:
        if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0)
            *(int *)f->value = 1;
        else if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
            *(int *)f->value = 0;
        else
            return wd_error_set(err, WD_ERR_INVALID, "--%s: '%s' is not true/false", f->name, v);
        break;
    }
    f->is_set = 1;
    return WD_OK;
}

static enum wd_status apply_env(struct wd_flag *flags, int n, struct wd_error *err)
{
    for (int i = 0; i < n; i++) {
        char env[128] = "WIDEEP_";
        size_t k = strlen(env);
        for (const char *p = flags[i].name; *p && k < sizeof(env) - 1; p++)
            env[k++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        env[k] = 0;
        const char *v = getenv(env);
        if (v && set_value(&flags[i], v, err) != WD_OK)
            return wd_error_prefix(err, "environment %s", env);
    }
    return WD_OK;
}

enum wd_status wd_flags_parse(struct wd_flag *flags, int n, int argc, char **argv, int *help_p,
                              struct wd_error *err)
{
    *help_p = 0;
    WD_CHECK(apply_env(flags, n, err));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help_p = 1;
            return WD_OK;
        }
        if (strncmp(a, "--", 2) != 0)
            return wd_error_set(err, WD_ERR_INVALID, "unexpected argument '%s'", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        struct wd_flag *f = NULL;
        for (int j = 0; j < n && !f; j++)
            if (name_matches(&flags[j], name, len))
                f = &flags[j];
        if (!f)
            return wd_error_set(err, WD_ERR_INVALID, "unknown flag '--%.*s' (see --help)", (int)len,
                                name);
        const char *v;
        if (eq) {
            v = eq + 1;
        } else if (f->type == WD_FLAG_BOOL) {
            v = "true";
        } else {
            if (i + 1 >= argc)
                return wd_error_set(err, WD_ERR_INVALID, "--%s needs a value", f->name);
            v = argv[++i];
        }
        WD_CHECK(set_value(f, v, err));
    }
    return WD_OK;
}

void wd_flags_print_help(const struct wd_flag *flags, int n, const char *usage)
{
    static const char *types[] = {"INT", "FLOAT", "STR", ""};
    printf("%s\n\nflags:\n", usage);
    for (int i = 0; i < n; i++) {
        char left[96];
        snprintf(left, sizeof(left), "--%s %s", flags[i].name, types[flags[i].type]);
        printf("  %-34s %s", left, flags[i].help);
        if (flags[i].choices)
            printf(" {%s}", flags[i].choices);
        if (flags[i].aliases)
            printf(" (also --%s)", flags[i].aliases);
        printf("\n");
    }
}

void wd_flags_log(const struct wd_flag *flags, int n, const char *subsys)
{
    /* One line so the effective configuration is easy to grep in a log. */
    char line[4096];
    size_t k = 0;
    for (int i = 0; i < n && k < sizeof(line) - 1; i++) {
        const struct wd_flag *f = &flags[i];
        size_t room = sizeof(line) - k;
        int w = 0;
        switch (f->type) {
        case WD_FLAG_INT:
        case WD_FLAG_BOOL:
            w = snprintf(line + k, room, "%s%s=%d", k ? " " : "", f->name, *(int *)f->value);
            break;
        case WD_FLAG_FLOAT:
            w = snprintf(line + k, room, "%s%s=%g", k ? " " : "", f->name, *(float *)f->value);
            break;
        case WD_FLAG_STRING: {
            const char *s = *(const char **)f->value;
            w = snprintf(line + k, room, "%s%s=%s", k ? " " : "", f->name, s ? s : "-");
            break;
        }
        }
        if (w < 0 || (size_t)w >= room)
            break;
        k += (size_t)w;
    }
    line[k] = 0;
    wd_log(WD_LOG_INFO, subsys, "config: %s", line);
}

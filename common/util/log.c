/* Logging: one line per call, written with a single fprintf so lines from
 * several rank processes sharing stderr do not interleave mid-line. */
#include "common/util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum wd_log_level g_level = WD_LOG_INFO;
static char g_role[32] = "wideep";
static char g_prefix[64] = "";

void wd_log_set_identity(const char *role, const char *prefix)
{
    snprintf(g_role, sizeof(g_role), "%s", role ? role : "wideep");
    snprintf(g_prefix, sizeof(g_prefix), "%s", prefix ? prefix : "");
}

void wd_log_set_level(enum wd_log_level level)
{
    g_level = level;
}

int wd_log_level_parse(const char *s)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

int wd_log_enabled(enum wd_log_level level)
{
    return level <= g_level;
}

void wd_log_write(enum wd_log_level level, const char *subsys, const char *fmt, ...)
{
    static const char tag[] = "EWID";
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%02d:%02d:%02d.%03ld %c %s%s%s %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
            ts.tv_nsec / 1000000, tag[level], g_role, g_prefix[0] ? " " : "", g_prefix, subsys,
            msg);
}

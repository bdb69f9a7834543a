/*
 * wd_log: leveled logging to stderr. Every line carries time, role, rank and
 * subsystem; the level is checked before any formatting so disabled lines cost
 * a compare. The role/rank identity is process-wide (set once at start by main
 * or the rank launcher); libraries never print any other way.
 */
#ifndef WD_UTIL_LOG_H
#define WD_UTIL_LOG_H

enum wd_log_level { WD_LOG_ERROR = 0, WD_LOG_WARN, WD_LOG_INFO, WD_LOG_DEBUG };

/* Sets the identity printed on each line, e.g. role "generate", prefix "TP0 EP0". */
void wd_log_set_identity(const char *role, const char *prefix);
void wd_log_set_level(enum wd_log_level level);
/* Parses "error|warn|info|debug"; returns -1 when unknown. */
int wd_log_level_parse(const char *s);
int wd_log_enabled(enum wd_log_level level);

void wd_log_write(enum wd_log_level level, const char *subsys, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define wd_log(level, subsys, ...)                                                                 \
    do {                                                                                           \
        if (wd_log_enabled(level))                                                                 \
            wd_log_write(level, subsys, __VA_ARGS__);                                              \
    } while (0)

#endif

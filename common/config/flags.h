/*
 * Command-line flags driven by one table per binary: name, aliases, type,
 * default, bounds and help live in a single struct wd_flag array, which also
 * prints --help and logs the effective configuration. Each flag may be set from
 * the environment as WIDEEP_<NAME> (upper case, '-' -> '_'); the command line
 * wins over the environment. Values land in caller-owned variables.
 */
#ifndef WD_CONFIG_FLAGS_H
#define WD_CONFIG_FLAGS_H

#include "common/util/status.h"

enum wd_flag_type { WD_FLAG_INT, WD_FLAG_FLOAT, WD_FLAG_STRING, WD_FLAG_BOOL };

struct wd_flag {
    const char *name;    /* "max-new-tokens" (spelled --max-new-tokens) */
    const char *aliases; /* comma-separated other spellings without dashes, or NULL */
    enum wd_flag_type type;
    void *value;     /* int *, float *, const char **, int * (bool) */
    double min, max; /* bounds for INT/FLOAT (ignored when min > max) */
    const char *help;
    const char *choices; /* comma-separated allowed strings for STRING, or NULL */
    int is_set;          /* written by the parser */
};

/* Parses argv against the table (environment first, then arguments). Positional
 * arguments are an error. "--help" sets *help_p and returns WD_OK. */
enum wd_status wd_flags_parse(struct wd_flag *flags, int n_flags, int argc, char **argv,
                              int *help_p, struct wd_error *err);
/* Prints usage and the table's help to stdout. */
void wd_flags_print_help(const struct wd_flag *flags, int n_flags, const char *usage);
/* Logs every flag's effective value at info level. */
void wd_flags_log(const struct wd_flag *flags, int n_flags, const char *subsys);

#endif

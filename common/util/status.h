/*
 * wd_status: the one error type of wideep.
 *
 * Functions that can fail because of input (a file, a flag, a request, a peer)
 * return a wd_status and, where the caller needs the words, fill a
 * struct wd_error with one line that names the cause. Broken invariants are
 * programmer errors and use WD_ASSERT instead. The error struct is a plain
 * fixed-size buffer so that reporting never allocates.
 */
#ifndef WD_UTIL_STATUS_H
#define WD_UTIL_STATUS_H

#include <stdio.h>
#include <stdlib.h>

enum wd_status {
    WD_OK = 0,
    WD_ERR_INVALID,     /* bad argument, flag or request */
    WD_ERR_IO,          /* file or socket error (errno text in the message) */
    WD_ERR_FORMAT,      /* malformed file contents: JSON, safetensors, tokenizer */
    WD_ERR_UNSUPPORTED, /* well-formed but not something wideep implements */
    WD_ERR_NOMEM,       /* allocation or pool exhausted */
    WD_ERR_NOT_FOUND,   /* missing file, tensor, key */
    WD_ERR_TIMEOUT,     /* a wait ran out */
    WD_ERR_PEER,        /* a peer failed or vanished */
};

#define WD_ERROR_LEN 512

struct wd_error {
    enum wd_status status;
    char msg[WD_ERROR_LEN];
};

/* Records status and a printf-style message in err (NULL-safe) and returns status,
 * so callers can write `return wd_error_set(err, WD_ERR_FORMAT, "...", ...)`. */
enum wd_status wd_error_set(struct wd_error *err, enum wd_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the message already in err with "context: " (keeps the status). */
enum wd_status wd_error_prefix(struct wd_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Short name of a status value, e.g. "invalid". */
const char *wd_status_str(enum wd_status status);

#define WD_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Propagates a non-OK status from an expression. */
#define WD_CHECK(expr)                                                                             \
    do {                                                                                           \
        enum wd_status wd_check_st_ = (expr);                                                      \
        if (wd_check_st_ != WD_OK)                                                                 \
            return wd_check_st_;                                                                   \
    } while (0)

#endif

/*
 * Typed reads from a jansson object for the model-file parsers (config.json,
 * generation_config.json, the safetensors index).
 *
 * A wd_json_reader remembers the first error: every read after it returns the
 * caller's default and leaves the error alone, so a parser reads all its keys in
 * a row and checks reader.status once. Messages name the file ("where") and the
 * key. JSON null counts as absent, as in Hugging Face's config classes.
 * Statuses: WD_ERR_FORMAT for a wrong JSON type, WD_ERR_INVALID for a value out
 * of range, WD_ERR_NOT_FOUND for a missing required key.
 * Not thread-safe per reader; readers share nothing.
 */
#ifndef WD_CONFIG_JSON_READER_H
#define WD_CONFIG_JSON_READER_H

#include <jansson.h>
#include <stddef.h>

#include "common/util/status.h"

struct wd_json_reader {
    const json_t *obj;     /* borrowed: the object keys are looked up in */
    const char *where;     /* borrowed: message prefix, e.g. "config.json" */
    struct wd_error *err;  /* borrowed, may be NULL */
    enum wd_status status; /* first error, WD_OK until one happens */
};

void wd_json_reader_init(struct wd_json_reader *r, const json_t *obj, const char *where,
                         struct wd_error *err);

/* Records an error in r unless one is already there; returns r->status. */
enum wd_status wd_json_reader_fail(struct wd_json_reader *r, enum wd_status status, const char *fmt,
                                   ...) __attribute__((format(printf, 3, 4)));

/* 1 when key is present and not null. */
int wd_json_reader_has(const struct wd_json_reader *r, const char *key);

/* An integer in [lo, hi] (a real is accepted when it is integral, e.g. 4096.0). */
long long wd_json_reader_int(struct wd_json_reader *r, const char *key, int required, long long def,
                             long long lo, long long hi);
/* A finite number (integer or real) in [lo, hi]. */
double wd_json_reader_double(struct wd_json_reader *r, const char *key, int required, double def,
                             double lo, double hi);
/* A JSON boolean; returns 0 or 1. */
int wd_json_reader_bool(struct wd_json_reader *r, const char *key, int required, int def);
/* A string copied into out (cap bytes, NUL-terminated); def (may be NULL = "") when absent.
 * A string that does not fit is an error. */
void wd_json_reader_string(struct wd_json_reader *r, const char *key, int required, const char *def,
                           char *out, size_t cap);

/* An integer or a list of integers, each in [lo, hi], stored in out[0..*n_p) (at most cap;
 * more is WD_ERR_UNSUPPORTED). Absent (or null) and not required: *n_p = 0. */
void wd_json_reader_int_list(struct wd_json_reader *r, const char *key, int required, long long lo,
                             long long hi, int *out, int cap, int *n_p);

/* Parses text[0..len) as a JSON object (duplicate keys rejected). On success the caller owns
 * *root_p (json_decref). Errors: WD_ERR_FORMAT "where: invalid JSON: <cause> at line L column C"
 * or "where: top level is not a JSON object". */
enum wd_status wd_json_reader_parse(const char *text, size_t len, const char *where,
                                    json_t **root_p, struct wd_error *err);

/* Reads a whole file of at most max_len bytes into a NUL-terminated malloc'd buffer (caller
 * frees). Errors: WD_ERR_NOT_FOUND when the file does not exist, WD_ERR_IO with errno text,
 * WD_ERR_FORMAT when larger than max_len. */
enum wd_status wd_json_reader_read_file(const char *path, size_t max_len, char **text_p,
                                        size_t *len_p, struct wd_error *err);

#endif

/*
 * Sampling defaults from a Hugging Face generation_config.json.
 *
 * Only what the file says: each sampling value carries a has_* flag, so the server
 * can tell "the model asks for temperature 0.6" from "nothing given" and apply its
 * own defaults in the second case. A missing file is not an error (the model ships
 * no defaults); a malformed one is. Plain value struct: nothing to free.
 */
#ifndef WD_CONFIG_GENERATION_CONFIG_H
#define WD_CONFIG_GENERATION_CONFIG_H

#include <stddef.h>

#include "common/util/status.h"

#define WD_GENERATION_MAX_EOS 8

struct wd_generation_config {
    int n_eos;                                /* 0 when absent or null */
    int eos_token_ids[WD_GENERATION_MAX_EOS]; /* eos_token_id: an int or a list */
    int bos_token_id;                         /* -1 when absent or null */
    int has_temperature;
    float temperature; /* [0, 100] */
    int has_top_p;
    float top_p; /* (0, 1] */
    int has_top_k;
    int top_k;     /* >= 0; 0 disables top-k */
    int do_sample; /* bool; 0 when absent */
};

/* Reads model_dir/generation_config.json. A missing file gives WD_OK with nothing set
 * (has_* = 0, n_eos = 0, bos -1). Other errors as for wd_generation_config_parse, plus WD_ERR_IO;
 * messages start with the file's path. */
enum wd_status wd_generation_config_load(const char *model_dir, struct wd_generation_config *gc,
                                         struct wd_error *err);

/* Parses generation_config.json text (len bytes). *gc written only on success. Errors:
 * WD_ERR_FORMAT (bad JSON, wrong type), WD_ERR_INVALID (value out of range),
 * WD_ERR_UNSUPPORTED (more than 8 eos tokens); the message names the key. */
enum wd_status wd_generation_config_parse(const char *json_text, size_t len,
                                          struct wd_generation_config *gc, struct wd_error *err);

#endif

/* generation_config.json -> struct wd_generation_config. */
#include "common/config/generation_config.h"

#include <string.h>

#include "common/config/json_reader.h"

#define GENERATION_MAX_BYTES (1u * 1024u * 1024u)
#define TOKEN_ID_MAX 0x7fffffffLL
#define TOP_K_MAX (4LL << 20)

static void set_empty(struct wd_generation_config *gc)
{
    memset(gc, 0, sizeof(*gc));
    gc->bos_token_id = -1;
}

static enum wd_status parse_with_label(const char *text, size_t len, const char *label,
                                       struct wd_generation_config *gc, struct wd_error *err)
{
    json_t *root;
    WD_CHECK(wd_json_reader_parse(text, len, label, &root, err));
    struct wd_generation_config g;
    set_empty(&g);
    struct wd_json_reader r;
    wd_json_reader_init(&r, root, label, err);
    wd_json_reader_int_list(&r, "eos_token_id", 0, 0, TOKEN_ID_MAX, g.eos_token_ids,
                            WD_GENERATION_MAX_EOS, &g.n_eos);
    g.bos_token_id = (int)wd_json_reader_int(&r, "bos_token_id", 0, -1, 0, TOKEN_ID_MAX);
    g.has_temperature = wd_json_reader_has(&r, "temperature");
    g.temperature = (float)wd_json_reader_double(&r, "temperature", 0, 0, 0, 100);
    g.has_top_p = wd_json_reader_has(&r, "top_p");
    g.top_p = (float)wd_json_reader_double(&r, "top_p", 0, 1, 0, 1);
    if (r.status == WD_OK && g.has_top_p && g.top_p <= 0)
        wd_json_reader_fail(&r, WD_ERR_INVALID, "'top_p' = %g must be in (0, 1]", g.top_p);
    g.has_top_k = wd_json_reader_has(&r, "top_k");
    g.top_k = (int)wd_json_reader_int(&r, "top_k", 0, 0, 0, TOP_K_MAX);
    g.do_sample = wd_json_reader_bool(&r, "do_sample", 0, 0);
    json_decref(root);
    if (r.status == WD_OK)
        *gc = g;
    return r.status;
}

enum wd_status wd_generation_config_parse(const char *json_text, size_t len,
                                          struct wd_generation_config *gc, struct wd_error *err)
{
    return parse_with_label(json_text, len, "generation_config.json", gc, err);
}

enum wd_status wd_generation_config_load(const char *model_dir, struct wd_generation_config *gc,
                                         struct wd_error *err)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/generation_config.json", model_dir) >= (int)sizeof(path))
        return wd_error_set(err, WD_ERR_INVALID, "%s: path too long", model_dir);
    char *text;
    size_t len;
    struct wd_error read_err = {0};
    enum wd_status s = wd_json_reader_read_file(path, GENERATION_MAX_BYTES, &text, &len, &read_err);
    if (s == WD_ERR_NOT_FOUND) { /* the model ships no sampling defaults */
        set_empty(gc);
        return WD_OK;
    }
    if (s != WD_OK)
        return wd_error_set(err, s, "%s", read_err.msg);
    s = parse_with_label(text, len, path, gc, err);
    free(text);
    return s;
}

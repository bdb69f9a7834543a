/*
 * The expert location: trivial layout, layouts from a phy2log map or from EPLB, and the
 * --init-expert-location JSON reader (the SGLang formats: physical_to_logical_map or
 * logical_count). Validation happens before anything is written.
 */
#include "common/ep/eplb_location.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/json_reader.h"

/* The largest expert-location file we read: DeepSeek-V3's logical_count with a 1000-pass buffer
 * is about 58 * 256 * 1000 numbers. */
#define LOCATION_MAX_FILE_BYTES ((size_t)1 << 30)

enum wd_status wd_eplb_location_create(int n_layers, int n_logical, int n_physical, int n_gpus,
                                       struct wd_eplb_location **loc_p, struct wd_error *err)
{
    if (n_layers < 1 || n_logical < 1 || n_gpus < 1 || n_physical < n_logical)
        return wd_error_set(err, WD_ERR_INVALID,
                            "expert location: bad sizes (%d layers, %d logical experts, %d "
                            "physical slots, %d GPUs)",
                            n_layers, n_logical, n_physical, n_gpus);
    if (n_physical % n_gpus != 0)
        return wd_error_set(err, WD_ERR_INVALID,
                            "expert location: %d physical experts (logical + redundant) must be "
                            "divisible by ep_size %d",
                            n_physical, n_gpus);
    int x = wd_eplb_max_replicas_bound(n_logical, n_physical);
    size_t n_p2l = (size_t)n_layers * (size_t)n_physical;
    size_t n_cnt = (size_t)n_layers * (size_t)n_logical;
    if (n_cnt * (size_t)x > ((size_t)1 << 31) / sizeof(int32_t))
        return wd_error_set(err, WD_ERR_INVALID,
                            "expert location: %d layers x %d experts x %d "
                            "replicas is too large",
                            n_layers, n_logical, x);
    struct wd_eplb_location *loc =
        malloc(sizeof(*loc) + (n_p2l + n_cnt * (size_t)x + n_cnt) * sizeof(int32_t));
    if (!loc)
        return wd_error_set(err, WD_ERR_NOMEM, "expert location: out of memory");
    loc->n_layers = n_layers;
    loc->n_logical = n_logical;
    loc->n_physical = n_physical;
    loc->n_gpus = n_gpus;
    loc->max_replicas = x;
    loc->phy2log = (int32_t *)(loc + 1);
    loc->log2phy = loc->phy2log + n_p2l;
    loc->logcnt = loc->log2phy + n_cnt * (size_t)x;
    wd_eplb_location_set_trivial(loc);
    *loc_p = loc;
    return WD_OK;
}

void wd_eplb_location_destroy(struct wd_eplb_location *loc)
{
    free(loc);
}

/* Checks that phy2log [n_layers, n_physical] is a layout: ids in range, every expert placed. */
static enum wd_status check_mapping(const struct wd_eplb_location *loc, const int32_t *phy2log,
                                    const char *where, struct wd_error *err)
{
    int32_t *cnt = malloc(sizeof(int32_t) * (size_t)loc->n_logical);
    if (!cnt)
        return wd_error_set(err, WD_ERR_NOMEM, "%s: out of memory", where);
    enum wd_status st = WD_OK;
    for (int l = 0; l < loc->n_layers && st == WD_OK; l++) {
        const int32_t *row = phy2log + (size_t)l * (size_t)loc->n_physical;
        memset(cnt, 0, sizeof(int32_t) * (size_t)loc->n_logical);
        for (int p = 0; p < loc->n_physical && st == WD_OK; p++) {
            if (row[p] < 0 || row[p] >= loc->n_logical)
                st = wd_error_set(err, WD_ERR_INVALID,
                                  "%s: physical_to_logical_map[%d][%d] = %d is not a logical "
                                  "expert id in [0, %d)",
                                  where, l, p, row[p], loc->n_logical);
            else
                cnt[row[p]]++;
        }
        for (int e = 0; e < loc->n_logical && st == WD_OK; e++)
            if (cnt[e] == 0)
                st = wd_error_set(err, WD_ERR_INVALID,
                                  "%s: layer %d: logical expert %d has no physical slot", where, l,
                                  e);
    }
    free(cnt);
    return st;
}

/* Takes a checked phy2log (may alias loc->phy2log); slots listed in increasing order. */
static void apply_mapping(struct wd_eplb_location *loc, const int32_t *phy2log)
{
    size_t n_p2l = (size_t)loc->n_layers * (size_t)loc->n_physical;
    size_t n_cnt = (size_t)loc->n_layers * (size_t)loc->n_logical;
    const size_t x = (size_t)loc->max_replicas;
    if (phy2log != loc->phy2log)
        memcpy(loc->phy2log, phy2log, n_p2l * sizeof(int32_t));
    for (size_t i = 0; i < n_cnt * x; i++)
        loc->log2phy[i] = -1;
    memset(loc->logcnt, 0, n_cnt * sizeof(int32_t));
    for (int l = 0; l < loc->n_layers; l++) {
        for (int p = 0; p < loc->n_physical; p++) {
            size_t e = (size_t)l * (size_t)loc->n_logical +
                       (size_t)loc->phy2log[(size_t)l * (size_t)loc->n_physical + (size_t)p];
            loc->log2phy[e * x + (size_t)loc->logcnt[e]++] = p;
        }
    }
}

void wd_eplb_location_set_trivial(struct wd_eplb_location *loc)
{
    for (int l = 0; l < loc->n_layers; l++)
        for (int p = 0; p < loc->n_physical; p++)
            loc->phy2log[(size_t)l * (size_t)loc->n_physical + (size_t)p] = p % loc->n_logical;
    apply_mapping(loc, loc->phy2log);
}

enum wd_status wd_eplb_location_set_mapping(struct wd_eplb_location *loc, const int32_t *phy2log,
                                            struct wd_error *err)
{
    WD_CHECK(check_mapping(loc, phy2log, "expert location", err));
    apply_mapping(loc, phy2log);
    return WD_OK;
}

enum wd_status wd_eplb_location_rebalance(struct wd_eplb_location *loc, const double *weight,
                                          const struct wd_eplb_params *params, struct wd_error *err)
{
    return wd_eplb_rebalance_algo(params->algorithm, weight, loc->n_layers, loc->n_logical,
                                  loc->n_physical, params->n_groups, params->n_nodes, loc->n_gpus,
                                  loc->phy2log, loc->log2phy, loc->max_replicas, loc->logcnt, err);
}

void wd_eplb_location_copy_layer(struct wd_eplb_location *dst, const struct wd_eplb_location *src,
                                 int layer)
{
    WD_ASSERT(dst->n_layers == src->n_layers && dst->n_logical == src->n_logical &&
              dst->n_physical == src->n_physical && dst->n_gpus == src->n_gpus);
    WD_ASSERT(layer >= 0 && layer < dst->n_layers);
    size_t np = (size_t)dst->n_physical, nl = (size_t)dst->n_logical;
    size_t x = (size_t)dst->max_replicas, l = (size_t)layer;
    memcpy(dst->phy2log + l * np, src->phy2log + l * np, np * sizeof(int32_t));
    memcpy(dst->log2phy + l * nl * x, src->log2phy + l * nl * x, nl * x * sizeof(int32_t));
    memcpy(dst->logcnt + l * nl, src->logcnt + l * nl, nl * sizeof(int32_t));
}

/* ------------------------------------------------------------------------------------------
 * JSON
 * ---------------------------------------------------------------------------------------- */

/* physical_to_logical_map: [n_layers][n_physical] integers into out. */
static enum wd_status read_phy2log(const struct wd_eplb_location *loc, const json_t *arr,
                                   const char *where, int32_t *out, struct wd_error *err)
{
    const char *key = "physical_to_logical_map";
    if (!json_is_array(arr))
        return wd_error_set(err, WD_ERR_FORMAT, "%s: %s must be a list of %d layers", where, key,
                            loc->n_layers);
    if (json_array_size(arr) != (size_t)loc->n_layers)
        return wd_error_set(err, WD_ERR_INVALID,
                            "%s: %s has %zu layers, the model has %d MoE "
                            "layers",
                            where, key, json_array_size(arr), loc->n_layers);
    for (int l = 0; l < loc->n_layers; l++) {
        const json_t *row = json_array_get(arr, (size_t)l);
        if (!json_is_array(row))
            return wd_error_set(err, WD_ERR_FORMAT, "%s: %s[%d] must be a list of %d slots", where,
                                key, l, loc->n_physical);
        if (json_array_size(row) != (size_t)loc->n_physical)
            return wd_error_set(err, WD_ERR_INVALID,
                                "%s: %s[%d] has %zu slots, expected %d (%d logical experts + %d "
                                "redundant)",
                                where, key, l, json_array_size(row), loc->n_physical,
                                loc->n_logical, loc->n_physical - loc->n_logical);
        for (int p = 0; p < loc->n_physical; p++) {
            const json_t *v = json_array_get(row, (size_t)p);
            if (!json_is_integer(v))
                return wd_error_set(err, WD_ERR_FORMAT, "%s: %s[%d][%d] must be an integer", where,
                                    key, l, p);
            json_int_t id = json_integer_value(v);
            if (id < 0 || id >= loc->n_logical)
                return wd_error_set(err, WD_ERR_INVALID,
                                    "%s: %s[%d][%d] = %lld is not a logical expert id in [0, "
                                    "%d)",
                                    where, key, l, p, (long long)id, loc->n_logical);
            out[(size_t)l * (size_t)loc->n_physical + (size_t)p] = (int32_t)id;
        }
    }
    return WD_OK;
}

/* One [n_layers][n_logical] matrix of loads named `name`, added into sum. */
static enum wd_status add_counts(const struct wd_eplb_location *loc, const json_t *m,
                                 const char *where, const char *name, double *sum,
                                 struct wd_error *err)
{
    if (!json_is_array(m))
        return wd_error_set(err, WD_ERR_FORMAT, "%s: %s must be a list of %d layers", where, name,
                            loc->n_layers);
    if (json_array_size(m) != (size_t)loc->n_layers)
        return wd_error_set(err, WD_ERR_INVALID,
                            "%s: %s has %zu layers, the model has %d MoE "
                            "layers",
                            where, name, json_array_size(m), loc->n_layers);
    for (int l = 0; l < loc->n_layers; l++) {
        const json_t *row = json_array_get(m, (size_t)l);
        if (!json_is_array(row))
            return wd_error_set(err, WD_ERR_FORMAT, "%s: %s[%d] must be a list of %d loads", where,
                                name, l, loc->n_logical);
        if (json_array_size(row) != (size_t)loc->n_logical)
            return wd_error_set(err, WD_ERR_INVALID,
                                "%s: %s[%d] has %zu entries, the model has %d logical experts",
                                where, name, l, json_array_size(row), loc->n_logical);
        for (int e = 0; e < loc->n_logical; e++) {
            const json_t *v = json_array_get(row, (size_t)e);
            if (!json_is_number(v))
                return wd_error_set(err, WD_ERR_FORMAT, "%s: %s[%d][%d] must be a number", where,
                                    name, l, e);
            double x = json_number_value(v);
            if (!(x >= 0.0))
                return wd_error_set(err, WD_ERR_INVALID,
                                    "%s: %s[%d][%d] = %g must be a load "
                                    ">= 0",
                                    where, name, l, e, x);
            sum[(size_t)l * (size_t)loc->n_logical + (size_t)e] += x;
        }
    }
    return WD_OK;
}

/* logical_count: [n_layers][n_logical] or [buffer][n_layers][n_logical], summed into sum. */
static enum wd_status read_counts(const struct wd_eplb_location *loc, const json_t *arr,
                                  const char *where, double *sum, struct wd_error *err)
{
    const json_t *first = json_array_get(arr, 0);
    int is_3d = json_is_array(first) && json_is_array(json_array_get(first, 0));
    if (!is_3d)
        return add_counts(loc, arr, where, "logical_count", sum, err);
    for (size_t b = 0; b < json_array_size(arr); b++) {
        char name[48];
        snprintf(name, sizeof(name), "logical_count[%zu]", b);
        WD_CHECK(add_counts(loc, json_array_get(arr, b), where, name, sum, err));
    }
    return WD_OK;
}

/* Fills the location from a parsed root object. */
static enum wd_status load_root(struct wd_eplb_location *loc, const json_t *root, const char *where,
                                const struct wd_eplb_params *params, struct wd_error *err)
{
    const json_t *map = json_object_get(root, "physical_to_logical_map");
    const json_t *counts = json_object_get(root, "logical_count");
    if (map) {
        int32_t *p2l = malloc(sizeof(int32_t) * (size_t)loc->n_layers * (size_t)loc->n_physical);
        if (!p2l)
            return wd_error_set(err, WD_ERR_NOMEM, "%s: out of memory", where);
        enum wd_status st = read_phy2log(loc, map, where, p2l, err);
        if (st == WD_OK)
            st = check_mapping(loc, p2l, where, err);
        if (st == WD_OK)
            apply_mapping(loc, p2l);
        free(p2l);
        return st;
    }
    if (counts) {
        if (!json_is_array(counts) || json_array_size(counts) == 0)
            return wd_error_set(err, WD_ERR_FORMAT,
                                "%s: logical_count must be a non-empty list "
                                "([layers][logical] or [buffer][layers][logical])",
                                where);
        double *sum = calloc((size_t)loc->n_layers * (size_t)loc->n_logical, sizeof(double));
        if (!sum)
            return wd_error_set(err, WD_ERR_NOMEM, "%s: out of memory", where);
        struct wd_eplb_params def = {.algorithm = WD_EPLB_AUTO, .n_groups = 0, .n_nodes = 1};
        enum wd_status st = read_counts(loc, counts, where, sum, err);
        if (st == WD_OK) {
            st = wd_eplb_location_rebalance(loc, sum, params ? params : &def, err);
            if (st != WD_OK)
                wd_error_prefix(err, "%s: logical_count", where);
        }
        free(sum);
        return st;
    }
    char keys[200] = "";
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)root, k, v)
    {
        (void)v;
        size_t n = strlen(keys);
        snprintf(keys + n, sizeof(keys) - n, "%s%s", n ? ", " : "", k);
    }
    return wd_error_set(err, WD_ERR_FORMAT,
                        "%s: unknown expert-location format: expected physical_to_logical_map "
                        "or logical_count (keys: %s)",
                        where, keys[0] ? keys : "none");
}

enum wd_status wd_eplb_location_load_json_text(struct wd_eplb_location *loc, const char *text,
                                               size_t len, const char *where,
                                               const struct wd_eplb_params *params,
                                               struct wd_error *err)
{
    json_t *root = NULL;
    WD_CHECK(wd_json_reader_parse(text, len, where, &root, err));
    enum wd_status st = load_root(loc, root, where, params, err);
    json_decref(root);
    return st;
}

enum wd_status wd_eplb_location_load_json(struct wd_eplb_location *loc, const char *path,
                                          const struct wd_eplb_params *params, struct wd_error *err)
{
    char *text = NULL;
    size_t len = 0;
    WD_CHECK(wd_json_reader_read_file(path, LOCATION_MAX_FILE_BYTES, &text, &len, err));
    enum wd_status st = wd_eplb_location_load_json_text(loc, text, len, path, params, err);
    free(text);
    return st;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

enum wd_status wd_eplb_location_load(struct wd_eplb_location *loc, const char *spec,
                                     const struct wd_eplb_params *params, struct wd_error *err)
{
    if (!spec || !spec[0])
        return wd_error_set(err, WD_ERR_INVALID,
                            "--init-expert-location: empty (use trivial, a .json file or JSON "
                            "text)");
    if (strcmp(spec, "trivial") == 0) {
        wd_eplb_location_set_trivial(loc);
        return WD_OK;
    }
    if (ends_with(spec, ".pt"))
        return wd_error_set(err, WD_ERR_UNSUPPORTED,
                            "--init-expert-location %s: torch .pt files are not supported; save "
                            "the same dict as JSON",
                            spec);
    if (ends_with(spec, ".json"))
        return wd_eplb_location_load_json(loc, spec, params, err);
    return wd_eplb_location_load_json_text(loc, spec, strlen(spec), "--init-expert-location",
                                           params, err);
}

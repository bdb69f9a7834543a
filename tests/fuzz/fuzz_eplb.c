/*
 * libFuzzer target for EPLB. Input starting with 'W': the rest is little-endian uint16 loads
 * balanced by wd_eplb_rebalance on a shape picked from the second byte. Anything else: an
 * --init-expert-location JSON text for a small model. Either way a successful result must be
 * a consistent layout, and the static and dynamic dispatch built on it must pick replicas of
 * the right expert.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/ep/eplb_dispatch.h"
#include "common/ep/eplb_location.h"

static void check_location(const struct wd_eplb_location *loc)
{
    for (int l = 0; l < loc->n_layers; l++) {
        int total = 0;
        for (int e = 0; e < loc->n_logical; e++) {
            int at = l * loc->n_logical + e, c = loc->logcnt[at];
            if (c < 1 || c > loc->max_replicas)
                abort();
            total += c;
            for (int r = 0; r < loc->max_replicas; r++) {
                int32_t s = loc->log2phy[at * loc->max_replicas + r];
                if (r < c ? (s < 0 || s >= loc->n_physical ||
                             loc->phy2log[l * loc->n_physical + s] != e)
                          : s != -1)
                    abort();
            }
        }
        if (total != loc->n_physical)
            abort();
    }
    for (int rank = 0; rank<loc->n_gpus; rank += loc->n_gpus - 1> 0 ? loc->n_gpus - 1 : 1) {
        struct wd_eplb_dispatch_config cfg = {.algorithm = WD_EPLB_DISPATCH_DYNAMIC,
                                              .ep_rank = rank,
                                              .n_nodes = loc->n_gpus % 2 == 0 ? 2 : 1,
                                              .is_nearest_only = rank & 1,
                                              .seed = 1};
        struct wd_eplb_dispatch *d = NULL;
        if (wd_eplb_dispatch_create(&cfg, loc, &d, NULL) != WD_OK)
            abort();
        const int32_t *map = wd_eplb_dispatch_static_map(d);
        int32_t ids[64], phys[64];
        for (int i = 0; i < 64; i++)
            ids[i] = i % loc->n_logical;
        for (int l = 0; l < loc->n_layers; l++) {
            wd_eplb_dispatch_topk(d, l, ids, 64, phys);
            for (int i = 0; i < 64; i++)
                if (loc->phy2log[l * loc->n_physical + phys[i]] != ids[i] ||
                    loc->phy2log[l * loc->n_physical + map[l * loc->n_logical + ids[i]]] != ids[i])
                    abort();
        }
        wd_eplb_dispatch_destroy(d);
        if (loc->n_gpus == 1)
            break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* (layers, logical, physical, groups, nodes, gpus) */
    static const int shapes[][6] = {
        {2, 12, 16, 4, 2, 8}, {1, 16, 24, 4, 2, 4}, {2, 6, 8, 3, 2, 4},   {1, 20, 40, 0, 2, 2},
        {1, 8, 8, 2, 2, 4},   {3, 4, 12, 2, 1, 1},  {1, 32, 40, 8, 4, 8}, {2, 9, 12, 3, 3, 6},
    };
    if (size >= 2 && data[0] == 'W') {
        const int *s = shapes[data[1] % 8];
        int n_w = s[0] * s[1];
        double w[96];
        for (int i = 0; i < n_w; i++) {
            size_t at = 2 + 2 * (size_t)i;
            w[i] = at + 1 < size ? (double)(data[at] | data[at + 1] << 8) : 0.0;
        }
        struct wd_eplb_location *loc = NULL;
        if (wd_eplb_location_create(s[0], s[1], s[2], s[5], &loc, NULL) != WD_OK)
            abort();
        struct wd_eplb_params p = {.algorithm = WD_EPLB_AUTO, .n_groups = s[3], .n_nodes = s[4]};
        if (wd_eplb_location_rebalance(loc, w, &p, NULL) != WD_OK)
            abort();
        check_location(loc);
        wd_eplb_location_destroy(loc);
        return 0;
    }
    struct wd_eplb_location *loc = NULL;
    if (wd_eplb_location_create(2, 6, 8, 4, &loc, NULL) != WD_OK)
        abort();
    struct wd_eplb_params p = {.algorithm = WD_EPLB_AUTO, .n_groups = 3, .n_nodes = 2};
    struct wd_error err;
    /* On error the location is unchanged (the trivial layout): consistent either way. */
    wd_eplb_location_load_json_text(loc, (const char *)data, size, "fuzz", &p, &err);
    check_location(loc);
    wd_eplb_location_destroy(loc);
    return 0;
}

/*
 * The pure half of the KV transfer: which heads a rank holds, which of them a pair moves,
 * and the descriptor bytes (encode here for kv_transfer.c, parse and validate for anyone).
 * No UCX, no allocation.
 *
 * Descriptor bytes, little-endian: u32 magic "WDKV", u32 version, then DESC_N_FIELDS u64 in
 * the order of enum field, then the worker address and the packed rkey. The length must be
 * exactly that: a truncated or padded buffer is refused, as is any geometry that would
 * let a row fall outside the region (the writer's bounds rest on it).
 */
#include <stdint.h>
#include <string.h>

#include "common/net/kv_transfer.h"
#include "common/net/kv_transfer_internal.h"
#include "common/util/le.h"

#define DESC_MAGIC 0x564b4457u /* bytes "WDKV" */
#define DESC_HEAD 8
#define DESC_MAX_BLOB ((uint64_t)1 << 20) /* worker addresses and rkeys are far smaller */

enum field {
    F_ID,
    F_PID,
    F_HOST,
    F_BASE,
    F_REGION_BYTES,
    F_DTYPE,
    F_ELEM_BYTES,
    F_N_LAYERS,
    F_N_PAGES,
    F_PAGE_SIZE,
    F_N_HEADS,
    F_K_ROW,
    F_V_ROW,
    F_K_OFFSET,
    F_V_OFFSET,
    F_LAYER_STRIDE_K,
    F_LAYER_STRIDE_V,
    F_PAGE_STRIDE_K,
    F_PAGE_STRIDE_V,
    F_SLOT_STRIDE_K,
    F_SLOT_STRIDE_V,
    F_HEAD_STRIDE_K,
    F_HEAD_STRIDE_V,
    F_KIND,
    F_N_TOTAL,
    F_BEGIN,
    F_END,
    F_REPLICA,
    F_N_REPLICAS,
    F_ADDR_LEN,
    F_RKEY_LEN,
    DESC_N_FIELDS
};

enum wd_status wd_kv_heads_for_rank(enum wd_kv_kind kind, int n_kv_heads, int attn_tp_size,
                                    int attn_tp_rank, struct wd_kv_heads *heads_p,
                                    struct wd_error *err)
{
    if (attn_tp_size <= 0 || attn_tp_rank < 0 || attn_tp_rank >= attn_tp_size)
        return wd_error_set(err, WD_ERR_INVALID, "kv heads: attention rank %d of %d", attn_tp_rank,
                            attn_tp_size);
    struct wd_kv_heads h = {.kind = kind};
    if (kind == WD_KV_MLA) {
        /* One latent shared by every head: each attention-TP rank caches it whole. */
        h.n_total = 1;
        h.begin = 0;
        h.end = 1;
        h.replica = attn_tp_rank;
        h.n_replicas = attn_tp_size;
    } else if (kind != WD_KV_GQA || n_kv_heads <= 0) {
        return wd_error_set(err, WD_ERR_INVALID, "kv heads: kind %d with %d KV heads", (int)kind,
                            n_kv_heads);
    } else if (n_kv_heads >= attn_tp_size) {
        if (n_kv_heads % attn_tp_size)
            return wd_error_set(err, WD_ERR_INVALID,
                                "kv heads: %d KV heads do not split over attention tp %d",
                                n_kv_heads, attn_tp_size);
        int per = n_kv_heads / attn_tp_size;
        h.n_total = n_kv_heads;
        h.begin = per * attn_tp_rank;
        h.end = h.begin + per;
        h.replica = 0;
        h.n_replicas = 1;
    } else {
        /* Fewer KV heads than ranks: consecutive ranks share (replicate) one head, as the
         * model loader binds k_proj/v_proj rows. */
        if (attn_tp_size % n_kv_heads)
            return wd_error_set(err, WD_ERR_INVALID,
                                "kv heads: attention tp %d is not a multiple of %d KV heads",
                                attn_tp_size, n_kv_heads);
        int reps = attn_tp_size / n_kv_heads;
        h.n_total = n_kv_heads;
        h.begin = attn_tp_rank / reps;
        h.end = h.begin + 1;
        h.replica = attn_tp_rank % reps;
        h.n_replicas = reps;
    }
    *heads_p = h;
    return WD_OK;
}

int wd_kv_heads_overlap(const struct wd_kv_heads *local, const struct wd_kv_heads *remote,
                        int *begin_p, int *end_p)
{
    int b = local->begin > remote->begin ? local->begin : remote->begin;
    int e = local->end < remote->end ? local->end : remote->end;
    if (e <= b || local->n_replicas <= 0 || local->replica != remote->replica % local->n_replicas)
        return 0;
    *begin_p = b;
    *end_p = e;
    return e - b;
}

size_t wd_kv_desc_bytes(size_t addr_len, size_t rkey_len)
{
    return DESC_HEAD + 8 * (size_t)DESC_N_FIELDS + addr_len + rkey_len;
}

void wd_kv_desc_encode(const struct wd_kv_desc *d, uint8_t *out)
{
    const struct wd_kv_geometry *g = &d->geo;
    const struct wd_kv_heads *h = &d->heads;
    uint64_t f[DESC_N_FIELDS] = {
        [F_ID] = d->id,
        [F_PID] = d->pid,
        [F_HOST] = d->host,
        [F_BASE] = d->base,
        [F_REGION_BYTES] = g->region_bytes,
        [F_DTYPE] = (uint64_t)g->dtype,
        [F_ELEM_BYTES] = g->elem_bytes,
        [F_N_LAYERS] = (uint64_t)g->n_layers,
        [F_N_PAGES] = (uint64_t)g->n_pages,
        [F_PAGE_SIZE] = (uint64_t)g->page_size,
        [F_N_HEADS] = (uint64_t)g->n_heads,
        [F_K_ROW] = (uint64_t)g->k_row,
        [F_V_ROW] = (uint64_t)g->v_row,
        [F_K_OFFSET] = g->k_offset,
        [F_V_OFFSET] = g->v_offset,
        [F_LAYER_STRIDE_K] = g->layer_stride_k,
        [F_LAYER_STRIDE_V] = g->layer_stride_v,
        [F_PAGE_STRIDE_K] = g->page_stride_k,
        [F_PAGE_STRIDE_V] = g->page_stride_v,
        [F_SLOT_STRIDE_K] = g->slot_stride_k,
        [F_SLOT_STRIDE_V] = g->slot_stride_v,
        [F_HEAD_STRIDE_K] = g->head_stride_k,
        [F_HEAD_STRIDE_V] = g->head_stride_v,
        [F_KIND] = (uint64_t)h->kind,
        [F_N_TOTAL] = (uint64_t)h->n_total,
        [F_BEGIN] = (uint64_t)h->begin,
        [F_END] = (uint64_t)h->end,
        [F_REPLICA] = (uint64_t)h->replica,
        [F_N_REPLICAS] = (uint64_t)h->n_replicas,
        [F_ADDR_LEN] = d->worker_addr_len,
        [F_RKEY_LEN] = d->rkey_len,
    };
    wd_le_put64(out, DESC_MAGIC | (uint64_t)WD_KV_DESC_VERSION << 32);
    for (int i = 0; i < DESC_N_FIELDS; i++)
        wd_le_put64(out + DESC_HEAD + 8 * (size_t)i, f[i]);
    uint8_t *blob = out + DESC_HEAD + 8 * (size_t)DESC_N_FIELDS;
    memcpy(blob, d->worker_addr, d->worker_addr_len);
    memcpy(blob + d->worker_addr_len, d->rkey, d->rkey_len);
}

/* The last byte of the K (or V) rows of the last slot of the last page of the last layer
 * lies inside the region, and the head range fits in a row: with every count positive
 * and every stride below the region size, no product below can overflow 64 bits. */
static int rows_fit(uint64_t region, uint64_t off, uint64_t layer_st, uint64_t page_st,
                    uint64_t slot_st, uint64_t head_st, const struct wd_kv_geometry *g, int row)
{
    uint64_t es = g->elem_bytes;
    if (off >= region || layer_st > region || page_st > region || slot_st > region ||
        head_st > region)
        return 0;
    uint64_t last = off + (uint64_t)(g->n_layers - 1) * layer_st +
                    (uint64_t)(g->n_pages - 1) * page_st + (uint64_t)(g->page_size - 1) * slot_st;
    uint64_t head_w = (uint64_t)(row / g->n_heads) * es;
    return last <= region && (uint64_t)(g->n_heads - 1) * head_st + head_w <= region - last &&
           (uint64_t)row * es <= region - last;
}

enum wd_status wd_kv_desc_parse(const void *buf, size_t len, struct wd_kv_desc *desc_p,
                                struct wd_error *err)
{
    const uint8_t *b = buf;
    if (!buf || len < DESC_HEAD)
        return wd_error_set(err, WD_ERR_FORMAT, "kv descriptor: %zu bytes, too short", len);
    uint64_t head = wd_le_get64(b);
    if ((uint32_t)head != DESC_MAGIC)
        return wd_error_set(err, WD_ERR_FORMAT, "kv descriptor: bad magic");
    if (head >> 32 != WD_KV_DESC_VERSION)
        return wd_error_set(err, WD_ERR_UNSUPPORTED,
                            "kv descriptor: version %u, this build speaks version %u",
                            (unsigned)(head >> 32), WD_KV_DESC_VERSION);
    if (len < wd_kv_desc_bytes(0, 0))
        return wd_error_set(err, WD_ERR_FORMAT, "kv descriptor: %zu bytes, too short", len);
    uint64_t f[DESC_N_FIELDS];
    for (int i = 0; i < DESC_N_FIELDS; i++)
        f[i] = wd_le_get64(b + DESC_HEAD + 8 * (size_t)i);
    if (f[F_ADDR_LEN] == 0 || f[F_ADDR_LEN] > DESC_MAX_BLOB || f[F_RKEY_LEN] == 0 ||
        f[F_RKEY_LEN] > DESC_MAX_BLOB || wd_kv_desc_bytes(f[F_ADDR_LEN], f[F_RKEY_LEN]) != len)
        return wd_error_set(err, WD_ERR_FORMAT,
                            "kv descriptor: %zu bytes do not hold a %llu-byte worker address and "
                            "a %llu-byte rkey",
                            len, (unsigned long long)f[F_ADDR_LEN],
                            (unsigned long long)f[F_RKEY_LEN]);
    /* Counts: positive and small enough for int; the kv pool's own limits. */
    const int counts[] = {F_N_LAYERS, F_N_PAGES, F_PAGE_SIZE, F_N_HEADS,
                          F_K_ROW,    F_N_TOTAL, F_N_REPLICAS};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
        if (f[counts[i]] == 0 || f[counts[i]] > (1u << 30))
            return wd_error_set(err, WD_ERR_FORMAT, "kv descriptor: field %d is %llu", counts[i],
                                (unsigned long long)f[counts[i]]);
    if (f[F_V_ROW] > (1u << 30) || f[F_END] > (1u << 30) || f[F_BEGIN] >= f[F_END] ||
        f[F_REPLICA] >= f[F_N_REPLICAS])
        return wd_error_set(err, WD_ERR_FORMAT, "kv descriptor: bad row or head range");
    struct wd_kv_desc d = {.version = WD_KV_DESC_VERSION,
                           .id = f[F_ID],
                           .host = f[F_HOST],
                           .pid = f[F_PID],
                           .base = f[F_BASE]};
    struct wd_kv_geometry *g = &d.geo;
    g->dtype = (enum wd_dtype)f[F_DTYPE];
    g->elem_bytes = f[F_ELEM_BYTES];
    g->n_layers = (int)f[F_N_LAYERS];
    g->n_pages = (int)f[F_N_PAGES];
    g->page_size = (int)f[F_PAGE_SIZE];
    g->n_heads = (int)f[F_N_HEADS];
    g->k_row = (int)f[F_K_ROW];
    g->v_row = (int)f[F_V_ROW];
    g->k_offset = f[F_K_OFFSET];
    g->v_offset = f[F_V_OFFSET];
    g->layer_stride_k = f[F_LAYER_STRIDE_K];
    g->layer_stride_v = f[F_LAYER_STRIDE_V];
    g->page_stride_k = f[F_PAGE_STRIDE_K];
    g->page_stride_v = f[F_PAGE_STRIDE_V];
    g->slot_stride_k = f[F_SLOT_STRIDE_K];
    g->slot_stride_v = f[F_SLOT_STRIDE_V];
    g->head_stride_k = f[F_HEAD_STRIDE_K];
    g->head_stride_v = f[F_HEAD_STRIDE_V];
    g->region_bytes = f[F_REGION_BYTES];
    d.heads.kind = (enum wd_kv_kind)f[F_KIND];
    d.heads.n_total = (int)f[F_N_TOTAL];
    d.heads.begin = (int)f[F_BEGIN];
    d.heads.end = (int)f[F_END];
    d.heads.replica = (int)f[F_REPLICA];
    d.heads.n_replicas = (int)f[F_N_REPLICAS];
    if ((g->dtype != WD_DTYPE_F32 && g->dtype != WD_DTYPE_BF16) ||
        g->elem_bytes != wd_dtype_size(g->dtype))
        return wd_error_set(err, WD_ERR_FORMAT, "kv descriptor: dtype %llu, %zu-byte elements",
                            (unsigned long long)f[F_DTYPE], g->elem_bytes);
    if (g->k_row % g->n_heads || g->v_row % g->n_heads)
        return wd_error_set(err, WD_ERR_FORMAT, "kv descriptor: rows %d/%d over %d heads", g->k_row,
                            g->v_row, g->n_heads);
    int is_mla = d.heads.kind == WD_KV_MLA;
    if ((!is_mla && d.heads.kind != WD_KV_GQA) || d.heads.end > d.heads.n_total ||
        d.heads.end - d.heads.begin != g->n_heads || (is_mla && (g->v_row || g->n_heads != 1)))
        return wd_error_set(
            err, WD_ERR_FORMAT, "kv descriptor: heads [%d, %d) of %d (kind %d) for a %d-head pool",
            d.heads.begin, d.heads.end, d.heads.n_total, (int)d.heads.kind, g->n_heads);
    if (!rows_fit(g->region_bytes, g->k_offset, g->layer_stride_k, g->page_stride_k,
                  g->slot_stride_k, g->head_stride_k, g, g->k_row) ||
        (g->v_row && !rows_fit(g->region_bytes, g->v_offset, g->layer_stride_v, g->page_stride_v,
                               g->slot_stride_v, g->head_stride_v, g, g->v_row)))
        return wd_error_set(err, WD_ERR_FORMAT,
                            "kv descriptor: rows fall outside the %zu-byte region",
                            g->region_bytes);
    if (d.base + g->region_bytes < d.base)
        return wd_error_set(err, WD_ERR_FORMAT, "kv descriptor: region wraps the address space");
    const uint8_t *blob = b + DESC_HEAD + 8 * (size_t)DESC_N_FIELDS;
    d.worker_addr = blob;
    d.worker_addr_len = f[F_ADDR_LEN];
    d.rkey = blob + f[F_ADDR_LEN];
    d.rkey_len = f[F_RKEY_LEN];
    *desc_p = d;
    return WD_OK;
}

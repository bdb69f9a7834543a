/*
 * KV transfer over UCX (common/net/kv_transfer): the head-range rules and the descriptor
 * codec in one process, then prefill and decode ranks as separate processes
 * (tests/unit/wd_kv_world.c) for every layout pair of the disaggregation issue, with the
 * self-describing payload checked byte for byte over each decode rank's whole region:
 *   GQA prefill tp2 (heads split) -> one decode rank holding every head (DP attention)
 *   GQA prefill tp1 -> decode tp2 (heads split on decode)
 *   MLA prefill tp2 -> decode tp2 and MLA prefill tp1 -> decode tp2 (the latent whole)
 * each in fp32 and bf16, pages consecutive (runs merge: the put count is checked) and
 * scattered, whole requests and chunks of tokens (partial pages), over UCX's shared-memory
 * transports and over TCP. Then: a refused pair (page size), and decode rank killed with
 * SIGKILL mid-transfer: the prefill's put or flush fails with WD_ERR_PEER naming it, well
 * within the flush timeout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/net/kv_transfer.h"
#include "common/net/kv_transfer_internal.h"
#include "tests/unit/wd_kv_world.h"
#include "tests/unit/wd_test.h"

static const char *g_tls = "sm,self";

static void test_heads_for_rank(void)
{
    struct wd_kv_heads h;
    /* 4 KV heads over attention tp 2: two each. */
    WD_EXPECT(wd_kv_heads_for_rank(WD_KV_GQA, 4, 2, 1, &h, NULL) == WD_OK);
    WD_EXPECT(h.begin == 2 && h.end == 4 && h.replica == 0 && h.n_replicas == 1);
    /* 2 KV heads over tp 8: each head on 4 consecutive ranks (as the loader binds them). */
    WD_EXPECT(wd_kv_heads_for_rank(WD_KV_GQA, 2, 8, 5, &h, NULL) == WD_OK);
    WD_EXPECT(h.begin == 1 && h.end == 2 && h.replica == 1 && h.n_replicas == 4);
    /* DP attention: every head. */
    WD_EXPECT(wd_kv_heads_for_rank(WD_KV_GQA, 4, 1, 0, &h, NULL) == WD_OK);
    WD_EXPECT(h.begin == 0 && h.end == 4 && h.n_replicas == 1);
    WD_EXPECT(wd_kv_heads_for_rank(WD_KV_MLA, 0, 2, 1, &h, NULL) == WD_OK);
    WD_EXPECT(h.begin == 0 && h.end == 1 && h.replica == 1 && h.n_replicas == 2);
    struct wd_error err = {0};
    WD_EXPECT(wd_kv_heads_for_rank(WD_KV_GQA, 6, 4, 0, &h, &err) == WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "6 KV heads") != NULL);
}

/* Every head of every remote rank is written by exactly one local rank. */
static void check_cover(enum wd_kv_kind kind, int n_kv, int ltp, int rtp)
{
    for (int r = 0; r < rtp; r++) {
        struct wd_kv_heads rh;
        WD_ASSERT(wd_kv_heads_for_rank(kind, n_kv, rtp, r, &rh, NULL) == WD_OK);
        int count[64] = {0};
        for (int l = 0; l < ltp; l++) {
            struct wd_kv_heads lh;
            int b, e;
            WD_ASSERT(wd_kv_heads_for_rank(kind, n_kv, ltp, l, &lh, NULL) == WD_OK);
            if (wd_kv_heads_overlap(&lh, &rh, &b, &e))
                for (int x = b; x < e; x++)
                    count[x]++;
        }
        for (int x = rh.begin; x < rh.end; x++)
            WD_EXPECT_MSG(count[x] == 1, "kind %d kv %d tp %d -> %d: remote %d head %d by %d",
                          (int)kind, n_kv, ltp, rtp, r, x, count[x]);
    }
}

static void test_heads_overlap_covers(void)
{
    int tps[] = {1, 2, 4, 8};
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            check_cover(WD_KV_GQA, 4, tps[a], tps[b]);
            check_cover(WD_KV_GQA, 8, tps[a], tps[b]);
            check_cover(WD_KV_GQA, 2, tps[a], tps[b]);
            check_cover(WD_KV_MLA, 1, tps[a], tps[b]);
        }
    /* Prefill tp2 MLA into decode tp2: the replicas share the work, one rank each. */
    struct wd_kv_heads p0, p1, d1;
    int b, e;
    wd_kv_heads_for_rank(WD_KV_MLA, 1, 2, 0, &p0, NULL);
    wd_kv_heads_for_rank(WD_KV_MLA, 1, 2, 1, &p1, NULL);
    wd_kv_heads_for_rank(WD_KV_MLA, 1, 2, 1, &d1, NULL);
    WD_EXPECT(wd_kv_heads_overlap(&p0, &d1, &b, &e) == 0);
    WD_EXPECT(wd_kv_heads_overlap(&p1, &d1, &b, &e) == 1);
}

static void sample_desc(struct wd_kv_desc *d, uint8_t *addr, uint8_t *rkey)
{
    struct wd_kv_pool_config pc = {
        .n_layers = 3, .page_size = 4, .n_pages = 5, .k_row = 16, .v_row = 16, .n_heads = 2};
    struct wd_kv_pool *pool;
    WD_ASSERT(wd_kv_pool_create(&pc, &pool, NULL) == WD_OK);
    memset(d, 0, sizeof(*d));
    d->id = 0x1234;
    d->pid = 42;
    d->host = 7;
    d->geo = pool->geo;
    d->heads = (struct wd_kv_heads){WD_KV_GQA, 4, 2, 4, 0, 1};
    d->base = 0x7f0000000000ull;
    d->worker_addr = addr;
    d->worker_addr_len = 10;
    d->rkey = rkey;
    d->rkey_len = 6;
    wd_kv_pool_destroy(pool);
}

static void test_desc_roundtrip_and_refusals(void)
{
    uint8_t addr[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, rkey[6] = {9, 8, 7, 6, 5, 4};
    struct wd_kv_desc d, back;
    sample_desc(&d, addr, rkey);
    size_t n = wd_kv_desc_bytes(10, 6);
    uint8_t *buf = malloc(n + 1);
    wd_kv_desc_encode(&d, buf);
    struct wd_error err = {0};
    WD_EXPECT(wd_kv_desc_parse(buf, n, &back, &err) == WD_OK);
    WD_EXPECT(back.id == 0x1234 && back.pid == 42 && back.host == 7 && back.base == d.base);
    WD_EXPECT(memcmp(&back.geo, &d.geo, sizeof(d.geo)) == 0);
    WD_EXPECT(back.heads.begin == 2 && back.heads.end == 4 && back.heads.n_total == 4);
    WD_EXPECT(back.worker_addr_len == 10 && memcmp(back.worker_addr, addr, 10) == 0);
    WD_EXPECT(back.rkey_len == 6 && memcmp(back.rkey, rkey, 6) == 0);
    /* Truncated, padded, every single-byte truncation: refused, never read past the end. */
    WD_EXPECT(wd_kv_desc_parse(buf, n - 1, &back, &err) == WD_ERR_FORMAT);
    WD_EXPECT(wd_kv_desc_parse(buf, n + 1, &back, &err) == WD_ERR_FORMAT);
    for (size_t k = 0; k < n; k++)
        WD_EXPECT(wd_kv_desc_parse(buf, k, &back, NULL) != WD_OK);
    /* Another version: unsupported, naming both. */
    buf[4] = 9;
    WD_EXPECT(wd_kv_desc_parse(buf, n, &back, &err) == WD_ERR_UNSUPPORTED);
    WD_EXPECT(strstr(err.msg, "version 9") != NULL);
    /* A geometry that points a row outside the region. */
    sample_desc(&d, addr, rkey);
    d.geo.page_stride_k *= 16;
    wd_kv_desc_encode(&d, buf);
    WD_EXPECT(wd_kv_desc_parse(buf, n, &back, &err) == WD_ERR_FORMAT);
    WD_EXPECT(strstr(err.msg, "outside") != NULL);
    /* A head range that is not the pool's. */
    sample_desc(&d, addr, rkey);
    d.heads.end = 3;
    wd_kv_desc_encode(&d, buf);
    WD_EXPECT(wd_kv_desc_parse(buf, n, &back, &err) == WD_ERR_FORMAT);
    /* Random bytes everywhere in the fixed part: refused or valid, never a crash. */
    uint32_t s = 12345;
    for (int it = 0; it < 2000; it++) {
        sample_desc(&d, addr, rkey);
        wd_kv_desc_encode(&d, buf);
        s = s * 1103515245u + 12345u;
        buf[(s >> 8) % n] ^= (uint8_t)(1u << ((s >> 4) % 8));
        struct wd_kv_desc x;
        if (wd_kv_desc_parse(buf, n, &x, NULL) == WD_OK)
            WD_EXPECT(x.worker_addr_len + x.rkey_len +
                          (size_t)((const uint8_t *)x.worker_addr - buf) ==
                      n);
    }
    free(buf);
}

static struct kv_world base_world(enum wd_kv_kind kind, int ptp, int dtp)
{
    struct kv_world w = {.kind = kind,
                         .dtype = WD_DTYPE_F32,
                         .n_layers = 3,
                         .page_size = 4,
                         .n_pages = 32,
                         .head_dim = kind == WD_KV_MLA ? 24 : 8,
                         .n_kv_heads = 4,
                         .prefill_tp = ptp,
                         .decode_tp = dtp,
                         .n_requests = 3,
                         .n_tokens = {13, 1, 24},
                         .kill_after_layer = -1,
                         .flush_timeout_ms = 20000};
    return w;
}

static void run_expect_ok(const char *what, const struct kv_world *w)
{
    struct kv_world_result res;
    int rc = kv_world_run(w, NULL, NULL, &res);
    WD_EXPECT_MSG(rc == 0 && res.n_checked_ranks == w->decode_tp,
                  "%s (UCX_TLS=%s, %s, %s, chunk %d): %s (%d decode ranks checked)", what, g_tls,
                  w->dtype == WD_DTYPE_BF16 ? "bf16" : "fp32",
                  w->is_scattered ? "scattered" : "consecutive", w->chunk, res.msg,
                  res.n_checked_ranks);
}

/* Every layout pair in fp32 and bf16, scattered pages, whole requests and chunks. */
static void run_layouts(const char *what, enum wd_kv_kind kind, int ptp, int dtp)
{
    for (int dt = 0; dt < 2; dt++)
        for (int chunk = 0; chunk <= 5; chunk += 5) {
            struct kv_world w = base_world(kind, ptp, dtp);
            w.dtype = dt ? WD_DTYPE_BF16 : WD_DTYPE_F32;
            w.is_scattered = 1;
            w.chunk = chunk;
            run_expect_ok(what, &w);
        }
}

static void test_gqa_prefill_tp2_into_dp_attention(void)
{
    run_layouts("gqa prefill tp2 -> decode attn tp1", WD_KV_GQA, 2, 1);
}

static void test_gqa_prefill_tp1_into_decode_tp2(void)
{
    run_layouts("gqa prefill tp1 -> decode tp2", WD_KV_GQA, 1, 2);
}

static void test_mla_latent_into_two_decode_ranks(void)
{
    run_layouts("mla prefill tp2 -> decode tp2", WD_KV_MLA, 2, 2);
    run_layouts("mla prefill tp1 -> decode tp2", WD_KV_MLA, 1, 2);
}

/* Whole heads on both sides (tp2 -> tp2 GQA): consecutive pages on both sides make one put
 * per request, layer and K/V; scattered pages one per page. Packed slices (tp1 -> tp2): one
 * per run of remote pages. Strided destination (tp2 -> tp1): one per token. */
static void test_page_runs_merge(void)
{
    struct kv_world w = base_world(WD_KV_GQA, 2, 2);
    int tokens = 13 + 1 + 24, pages = 4 + 1 + 6;
    run_expect_ok("gqa tp2 -> tp2 consecutive", &w);
    struct kv_world_result res;
    WD_EXPECT(kv_world_run(&w, NULL, NULL, &res) == 0);
    WD_EXPECT_EQ_INT(res.n_puts, 2 /* ranks */ * 3 /* requests */ * 3 /* layers */ * 2 /* K V */);
    w.is_scattered = 1;
    WD_EXPECT(kv_world_run(&w, NULL, NULL, &res) == 0);
    WD_EXPECT_MSG(res.n_puts > (uint64_t)(2 * 3 * 3 * 2) &&
                      res.n_puts <= (uint64_t)(2 * pages * 3 * 2),
                  "scattered: %llu puts", (unsigned long long)res.n_puts);
    /* Decode tp2 (each rank half the heads) from prefill tp1: the slices are packed, a run
     * of consecutive remote pages is one put per peer; with a stage of 100 bytes (three
     * 32-byte slices) each put holds at most three tokens and the stage is reused between
     * them, the payload still exact. */
    w = base_world(WD_KV_GQA, 1, 2);
    WD_EXPECT(kv_world_run(&w, NULL, NULL, &res) == 0);
    WD_EXPECT_EQ_INT(res.n_puts, 2 * 3 * 3 * 2);
    w.stage_bytes = 100;
    w.is_scattered = 1;
    run_expect_ok("gqa tp1 -> tp2, 100-byte stage", &w);
    WD_EXPECT(kv_world_run(&w, NULL, NULL, &res) == 0);
    WD_EXPECT_MSG(res.n_puts >= (uint64_t)(2 * ((13 + 2) / 3 + 1 + 24 / 3) * 3 * 2),
                  "100-byte stage: %llu puts", (unsigned long long)res.n_puts);
    /* Decode with every head: each prefill rank's slot piece is its own put. */
    w = base_world(WD_KV_GQA, 2, 1);
    WD_EXPECT(kv_world_run(&w, NULL, NULL, &res) == 0);
    WD_EXPECT_EQ_INT(res.n_puts, 2 * tokens * 3 * 2);
    /* Bytes are the payload: tokens x layers x (K + V) x heads x head dim x 4. */
    WD_EXPECT_EQ_INT(res.n_bytes, (uint64_t)tokens * 3 * 2 * 4 * 8 * 4);
}

static void test_decode_progress_from_its_loop(void)
{
    struct kv_world w = base_world(WD_KV_GQA, 1, 2);
    w.is_decode_polling = 1;
    w.is_scattered = 1;
    run_expect_ok("decode without a progress thread", &w);
}

static void test_page_size_mismatch_refused(void)
{
    struct kv_world w = base_world(WD_KV_GQA, 1, 1);
    w.decode_page_size = 8;
    struct kv_world_result res;
    WD_EXPECT(kv_world_run(&w, NULL, NULL, &res) != 0);
    WD_EXPECT_EQ_INT(res.status, WD_ERR_INVALID);
    WD_EXPECT_MSG(strstr(res.msg, "page size 4 vs 8") && strstr(res.msg, "decode rank 0"),
                  "message: %s", res.msg);
}

/* Decode rank 0 is killed (SIGKILL, not reaped: a zombie) after layer 0 of a request large
 * enough to still be moving; the prefill goes on putting and flushing. */
static void test_decode_killed_mid_transfer(void)
{
    struct kv_world w = base_world(WD_KV_GQA, 1, 1);
    w.n_layers = 8;
    w.n_pages = 512;
    w.page_size = 16;
    w.head_dim = 128;
    w.n_requests = 1;
    w.n_tokens[0] = 8000;
    w.kill_after_layer = 0;
    w.flush_timeout_ms = 10000;
    struct kv_world_result res;
    kv_world_run(&w, NULL, NULL, &res);
    WD_EXPECT_MSG(res.status == WD_ERR_PEER, "UCX_TLS=%s: status %d: %s", g_tls, res.status,
                  res.msg);
    WD_EXPECT_MSG(strstr(res.msg, "decode rank 0") != NULL, "message: %s", res.msg);
    WD_EXPECT_MSG(res.after_kill_ms < 5000, "UCX_TLS=%s: error %.0f ms after the kill", g_tls,
                  res.after_kill_ms);
    printf("     UCX_TLS=%s: killed decode -> %s after %.0f ms\n", g_tls, res.msg,
           res.after_kill_ms);
}

static void run_transport(const char *tls)
{
    g_tls = tls;
    setenv("UCX_TLS", tls, 1);
    printf("UCX_TLS=%s\n", tls);
    WD_RUN(test_gqa_prefill_tp2_into_dp_attention);
    WD_RUN(test_gqa_prefill_tp1_into_decode_tp2);
    WD_RUN(test_mla_latent_into_two_decode_ranks);
    WD_RUN(test_page_runs_merge);
    WD_RUN(test_decode_progress_from_its_loop);
    WD_RUN(test_decode_killed_mid_transfer);
}

int main(void)
{
    WD_RUN(test_heads_for_rank);
    WD_RUN(test_heads_overlap_covers);
    WD_RUN(test_desc_roundtrip_and_refusals);
    setenv("UCX_TLS", "sm,self", 1);
    WD_RUN(test_page_size_mismatch_refused);
    run_transport("sm,self");
    run_transport("tcp,self");
    return wd_test_finish();
}

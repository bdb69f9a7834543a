/*
 * safetensors reader: files written by the reference Python package
 * (tests/fixtures/loader, made by tests/tools/make_loader_fixtures.py) must read back
 * with the values the script wrote; hand-built bad files must each fail with the
 * right status and a message naming the cause. Run under ASan (WIDEEP_SANITIZE) the
 * error paths are also checked for leaks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config/json_reader.h"
#include "common/model/safetensors.h"
#include "tests/unit/wd_test.h"

static char g_tmp[256];

/* ---- helpers: building files ---- */

/* Returns a malloc'd safetensors blob: u64 header length, header text padded with spaces to
 * a multiple of 8 bytes (as the safetensors writers do), data bytes. */
static uint8_t *make_blob(const char *header, const void *data, size_t data_len, size_t *len_p)
{
    size_t hl = (strlen(header) + 7) / 8 * 8;
    uint8_t *b = malloc(8 + hl + data_len + 1);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memset(b + 8, ' ', hl);
    memcpy(b + 8, header, strlen(header));
    if (data_len)
        memcpy(b + 8 + hl, data, data_len);
    *len_p = 8 + hl + data_len;
    return b;
}

static void write_bytes(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    WD_ASSERT(f);
    WD_ASSERT(fwrite(buf, 1, len, f) == len);
    fclose(f);
}

static void write_blob(const char *path, const char *header, const void *data, size_t data_len)
{
    size_t len;
    uint8_t *b = make_blob(header, data, data_len, &len);
    write_bytes(path, b, len);
    free(b);
}

static const char *tmp_path(const char *rel)
{
    static char buf[512];
    snprintf(buf, sizeof(buf), "%s/%s", g_tmp, rel);
    return buf;
}

/* A fresh empty subdirectory of the temp dir. */
static const char *fresh_dir(const char *name)
{
    static char buf[512];
    snprintf(buf, sizeof(buf), "%s/%s", g_tmp, name);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", buf, buf);
    WD_ASSERT(wd_test_sh(cmd, NULL, 0) == 0);
    return buf;
}

/* Parses blob(header, data) from memory and expects failure with status and msg substring. */
static void expect_parse_fail(int line, const char *header, size_t data_len, enum wd_status want,
                              const char *want_msg)
{
    uint8_t data[256] = {0};
    WD_ASSERT(data_len <= sizeof(data));
    size_t len;
    uint8_t *b = make_blob(header, data, data_len, &len);
    struct wd_safetensors *st = NULL;
    struct wd_error err = {0};
    enum wd_status s = wd_safetensors_parse(b, len, &st, &err);
    WD_EXPECT_MSG(s == want, "line %d: status %s, want %s (%s)", line, wd_status_str(s),
                  wd_status_str(want), err.msg);
    WD_EXPECT_MSG(strstr(err.msg, want_msg) != NULL, "line %d: message '%s' lacks '%s'", line,
                  err.msg, want_msg);
    WD_EXPECT(st == NULL);
    free(b);
}

#define PARSE_FAIL(h, n, st, msg) expect_parse_fail(__LINE__, h, n, st, msg)

static float f32_at(const struct wd_tensor_info *t, size_t i)
{
    float out;
    size_t es = wd_dtype_size(t->dtype);
    wd_dtype_to_f32(t->dtype, (const uint8_t *)t->data + i * es, &out, 1);
    return out;
}

/* ---- reading files written by the safetensors package ---- */

static void check_single(const struct wd_safetensors *st)
{
    WD_EXPECT_EQ_INT(wd_safetensors_count(st), 9);
    const struct wd_tensor_info *t = wd_safetensors_find(st, "f32");
    WD_EXPECT(t != NULL);
    if (t) {
        WD_EXPECT_EQ_INT(t->dtype, WD_DTYPE_F32);
        WD_EXPECT_EQ_INT(t->n_dims, 2);
        WD_EXPECT_EQ_INT(t->shape[0], 2);
        WD_EXPECT_EQ_INT(t->shape[1], 3);
        WD_EXPECT_EQ_INT(t->nbytes, 24);
        for (int i = 0; i < 6; i++)
            WD_EXPECT_NEAR(f32_at(t, i), i * 0.5 - 1.0, 0);
    }
    const float bf16[4] = {1.5f, -2.0f, 3.25f, 0.0f};
    t = wd_safetensors_find(st, "bf16");
    WD_EXPECT(t && t->dtype == WD_DTYPE_BF16 && t->n_dims == 1 && t->shape[0] == 4);
    for (int i = 0; t && i < 4; i++)
        WD_EXPECT_NEAR(f32_at(t, i), bf16[i], 0);
    const float f16[4] = {0.5f, -0.25f, 65504.0f, 1e-4f};
    t = wd_safetensors_find(st, "f16");
    WD_EXPECT(t && t->dtype == WD_DTYPE_F16 && t->n_dims == 2 && t->nbytes == 8);
    for (int i = 0; t && i < 4; i++)
        WD_EXPECT_NEAR(f32_at(t, i), f16[i], 1e-7);
    const float f8[4] = {1.0f, -448.0f, 0.015625f, 3.5f};
    t = wd_safetensors_find(st, "f8");
    WD_EXPECT(t && t->dtype == WD_DTYPE_F8_E4M3 && t->nbytes == 4);
    for (int i = 0; t && i < 4; i++)
        WD_EXPECT_NEAR(f32_at(t, i), f8[i], 0);
    t = wd_safetensors_find(st, "i64");
    WD_EXPECT(t && t->dtype == WD_DTYPE_I64 && t->nbytes == 16);
    if (t) {
        int64_t v[2];
        memcpy(v, t->data, 16);
        WD_EXPECT_EQ_INT(v[0], -3);
        WD_EXPECT_EQ_INT(v[1], 1LL << 40);
    }
    t = wd_safetensors_find(st, "i32");
    WD_EXPECT(t && t->dtype == WD_DTYPE_I32 && t->n_dims == 2 && t->shape[0] == 3 &&
              t->shape[1] == 1);
    if (t) {
        int32_t v[3];
        memcpy(v, t->data, 12);
        WD_EXPECT(v[0] == 7 && v[1] == -8 && v[2] == 9);
    }
    t = wd_safetensors_find(st, "scalar");
    WD_EXPECT(t && t->n_dims == 0 && t->nbytes == 4);
    if (t)
        WD_EXPECT_NEAR(f32_at(t, 0), 2.5, 0);
    t = wd_safetensors_find(st, "empty");
    WD_EXPECT(t && t->n_dims == 2 && t->shape[0] == 0 && t->shape[1] == 4 && t->nbytes == 0);
    WD_EXPECT(wd_safetensors_find(st, "__metadata__") == NULL);
    WD_EXPECT(wd_safetensors_find(st, "f3") == NULL);
    WD_EXPECT(wd_safetensors_find(st, "") == NULL);
    /* at() walks in strcmp order. */
    for (size_t i = 1; i < wd_safetensors_count(st); i++)
        WD_EXPECT(strcmp(wd_safetensors_at(st, i - 1)->name, wd_safetensors_at(st, i)->name) < 0);
    WD_EXPECT(strcmp(wd_safetensors_at(st, 0)->name, "bf16") == 0);
}

static void test_single_file(void)
{
    struct wd_safetensors *st = NULL;
    struct wd_error err = {0};
    enum wd_status s = wd_safetensors_open(wd_test_src("tests/fixtures/loader/single"), &st, &err);
    WD_EXPECT_MSG(s == WD_OK, "open: %s", err.msg);
    if (s != WD_OK)
        return;
    check_single(st);
    wd_safetensors_close(st);

    s = wd_safetensors_open_file(wd_test_src("tests/fixtures/loader/single/model.safetensors"), &st,
                                 &err);
    WD_EXPECT_MSG(s == WD_OK, "open_file: %s", err.msg);
    if (s == WD_OK) {
        check_single(st);
        wd_safetensors_close(st);
    }
    wd_safetensors_close(NULL);
}

static void test_parse_memory(void)
{
    char *buf;
    size_t len;
    struct wd_error err = {0};
    const char *path = wd_test_src("tests/fixtures/loader/single/model.safetensors");
    WD_ASSERT(wd_json_reader_read_file(path, 1 << 20, &buf, &len, &err) == WD_OK);
    struct wd_safetensors *st = NULL;
    enum wd_status s = wd_safetensors_parse((const uint8_t *)buf, len, &st, &err);
    WD_EXPECT_MSG(s == WD_OK, "parse: %s", err.msg);
    if (s == WD_OK) {
        check_single(st);
        const struct wd_tensor_info *t = wd_safetensors_find(st, "f32");
        WD_EXPECT((const char *)t->data >= buf && (const char *)t->data + t->nbytes <= buf + len);
        wd_safetensors_close(st);
    }
    free(buf);
}

static void test_get(void)
{
    struct wd_safetensors *st = NULL;
    struct wd_error err = {0};
    WD_ASSERT(wd_safetensors_open(wd_test_src("tests/fixtures/loader/single"), &st, &err) == WD_OK);
    const struct wd_tensor_info *t = NULL;
    const int64_t ok[2] = {4, 8}, bad[2] = {4, 16};
    enum wd_status s = wd_safetensors_get(st, "model.layers.0.mlp.gate.weight", 2, ok, &t, &err);
    WD_EXPECT(s == WD_OK && t && t->nbytes == 64);
    t = NULL;
    s = wd_safetensors_get(st, "model.layers.0.mlp.gate.weight", 2, bad, &t, &err);
    WD_EXPECT(s == WD_ERR_FORMAT && t == NULL);
    WD_EXPECT_MSG(strcmp(err.msg, "tensor model.layers.0.mlp.gate.weight: shape [4, 8] expected "
                                  "[4, 16]") == 0,
                  "got '%s'", err.msg);
    s = wd_safetensors_get(st, "model.layers.0.mlp.gate.weight", 1, ok, &t, &err);
    WD_EXPECT(s == WD_ERR_FORMAT);
    WD_EXPECT_MSG(strstr(err.msg, "shape [4, 8] expected [4]") != NULL, "got '%s'", err.msg);
    s = wd_safetensors_get(st, "model.layers.1.mlp.gate.weight", 2, ok, &t, &err);
    WD_EXPECT(s == WD_ERR_NOT_FOUND);
    WD_EXPECT_MSG(strcmp(err.msg, "tensor model.layers.1.mlp.gate.weight: missing from "
                                  "checkpoint") == 0,
                  "got '%s'", err.msg);
    s = wd_safetensors_get(st, "scalar", 0, NULL, &t, &err);
    WD_EXPECT(s == WD_OK && t && t->n_dims == 0);
    wd_safetensors_close(st);
}

static void test_sharded(void)
{
    struct wd_safetensors *st = NULL;
    struct wd_error err = {0};
    enum wd_status s = wd_safetensors_open(wd_test_src("tests/fixtures/loader/sharded"), &st, &err);
    WD_EXPECT_MSG(s == WD_OK, "open: %s", err.msg);
    if (s != WD_OK)
        return;
    WD_EXPECT_EQ_INT(wd_safetensors_count(st), 4);
    const struct wd_tensor_info *t = wd_safetensors_find(st, "embed.weight");
    WD_EXPECT(t && t->dtype == WD_DTYPE_F32 && t->shape[0] == 3 && t->shape[1] == 4);
    for (int i = 0; t && i < 12; i++)
        WD_EXPECT_NEAR(f32_at(t, i), i, 0);
    t = wd_safetensors_find(st, "layers.0.w");
    WD_EXPECT(t && t->dtype == WD_DTYPE_BF16 && f32_at(t, 3) == -1.0f);
    t = wd_safetensors_find(st, "layers.1.w");
    WD_EXPECT(t && t->dtype == WD_DTYPE_BF16 && f32_at(t, 0) == 2.0f);
    const float norm[4] = {0.5f, 0.25f, 0.125f, 1.0f};
    t = wd_safetensors_find(st, "norm.weight");
    WD_EXPECT(t && t->dtype == WD_DTYPE_F16);
    for (int i = 0; t && i < 4; i++)
        WD_EXPECT_NEAR(f32_at(t, i), norm[i], 0);
    wd_safetensors_close(st);
}

/* Holes between tensors and zero-size tensors anywhere are fine. */
static void test_holes_and_empty(void)
{
    float data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]},"
                    "\"z\":{\"dtype\":\"BF16\",\"shape\":[3,0],\"data_offsets\":[4,4]}}   ";
    size_t len;
    uint8_t *b = make_blob(h, data, sizeof(data), &len);
    struct wd_safetensors *st = NULL;
    struct wd_error err = {0};
    enum wd_status s = wd_safetensors_parse(b, len, &st, &err);
    WD_EXPECT_MSG(s == WD_OK, "%s", err.msg);
    if (s == WD_OK) {
        WD_EXPECT_EQ_INT(wd_safetensors_count(st), 3);
        WD_EXPECT(f32_at(wd_safetensors_find(st, "b"), 0) == 5.0f);
        WD_EXPECT_EQ_INT(wd_safetensors_find(st, "z")->nbytes, 0);
        wd_safetensors_close(st);
    }
    free(b);
    /* An empty header object is a valid (empty) file. */
    b = make_blob("{}", NULL, 0, &len);
    s = wd_safetensors_parse(b, len, &st, &err);
    WD_EXPECT(s == WD_OK);
    if (s == WD_OK) {
        WD_EXPECT_EQ_INT(wd_safetensors_count(st), 0);
        WD_EXPECT(wd_safetensors_find(st, "a") == NULL);
        wd_safetensors_close(st);
    }
    free(b);
}

/* ---- bad headers ---- */

static void test_bad_headers(void)
{
    /* Length prefix problems. */
    struct wd_safetensors *st = NULL;
    struct wd_error err = {0};
    const uint8_t tiny[5] = {1, 0, 0, 0, 0};
    WD_EXPECT(wd_safetensors_parse(tiny, 5, &st, &err) == WD_ERR_FORMAT);
    WD_EXPECT(strstr(err.msg, "shorter than the 8-byte header length") != NULL);
    WD_EXPECT(wd_safetensors_parse(tiny, 0, &st, &err) == WD_ERR_FORMAT);
    uint8_t lie[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    WD_EXPECT(wd_safetensors_parse(lie, 10, &st, &err) == WD_ERR_FORMAT);
    WD_EXPECT_MSG(strstr(err.msg, "header length 100 exceeds the file size") != NULL, "%s",
                  err.msg);
    uint8_t huge[16] = {0, 0, 0, 0, 0, 0, 0, 0x80, '{', '}'};
    WD_EXPECT(wd_safetensors_parse(huge, 10, &st, &err) == WD_ERR_FORMAT);
    WD_EXPECT_MSG(strstr(err.msg, "exceeds the limit") != NULL, "%s", err.msg);
    uint8_t capped[16] = {0x01, 0xe1, 0xf5, 0x05, 0, 0, 0, 0}; /* 100000001 */
    WD_EXPECT(wd_safetensors_parse(capped, 16, &st, &err) == WD_ERR_FORMAT);
    WD_EXPECT_MSG(strstr(err.msg, "header length 100000001 exceeds the limit") != NULL, "%s",
                  err.msg);

    /* JSON problems. */
    PARSE_FAIL("{\"a\":", 0, WD_ERR_FORMAT, "header is not valid JSON");
    PARSE_FAIL("", 0, WD_ERR_FORMAT, "header is not valid JSON");
    PARSE_FAIL("[1,2]", 0, WD_ERR_FORMAT, "header is not a JSON object");
    PARSE_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, WD_ERR_FORMAT, "duplicate");
    PARSE_FAIL("{\"__metadata__\":{\"format\":1}}", 0, WD_ERR_FORMAT,
               "__metadata__ value of 'format' is not a string");
    PARSE_FAIL("{\"__metadata__\":[\"pt\"]}", 0, WD_ERR_FORMAT, "__metadata__ is not");
    PARSE_FAIL("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, WD_ERR_FORMAT,
               "empty tensor name");
    PARSE_FAIL("{\"w\":[1]}", 0, WD_ERR_FORMAT, "tensor w: entry is not a JSON object");

    /* dtype. */
    PARSE_FAIL("{\"w\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
               WD_ERR_UNSUPPORTED, "tensor w: unsupported dtype 'F64'");
    PARSE_FAIL("{\"w\":{\"dtype\":\"bf16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2,
               WD_ERR_UNSUPPORTED, "unsupported dtype 'bf16'");
    PARSE_FAIL("{\"w\":{\"shape\":[1],\"data_offsets\":[0,2]}}", 2, WD_ERR_FORMAT,
               "tensor w: 'dtype' missing");
    PARSE_FAIL("{\"w\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,2]}}", 2, WD_ERR_FORMAT,
               "'dtype' missing or not a string");

    /* shape. */
    PARSE_FAIL("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, WD_ERR_FORMAT,
               "tensor w: 'shape' missing");
    PARSE_FAIL("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
               WD_ERR_FORMAT, "shape[0] is not a non-negative integer");
    PARSE_FAIL("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,2.0],\"data_offsets\":[0,8]}}", 8,
               WD_ERR_FORMAT, "shape[1] is not a non-negative integer");
    PARSE_FAIL("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
               "\"data_offsets\":[0,4]}}",
               4, WD_ERR_UNSUPPORTED, "9 dims, at most 8");
    PARSE_FAIL("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
               "\"data_offsets\":[0,4]}}",
               4, WD_ERR_FORMAT, "shape size overflows");
    PARSE_FAIL("{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
               "\"data_offsets\":[0,4]}}",
               4, WD_ERR_FORMAT, "shape size overflows");

    /* data_offsets. */
    PARSE_FAIL("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, WD_ERR_FORMAT,
               "'data_offsets' must be [begin, end]");
    PARSE_FAIL("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8,
               WD_ERR_FORMAT, "'data_offsets' must be");
    PARSE_FAIL("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 8,
               WD_ERR_FORMAT, "'data_offsets' must be");
    PARSE_FAIL("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", 8, WD_ERR_FORMAT,
               "end before begin");
    PARSE_FAIL("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 8,
               WD_ERR_FORMAT, "tensor w: data_offsets [4, 12] outside the data section (8 bytes)");
    PARSE_FAIL("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[9,9]}}", 8, WD_ERR_FORMAT,
               "outside the data section");
    PARSE_FAIL("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 16,
               WD_ERR_FORMAT,
               "tensor w: data_offsets span 8 bytes but shape and dtype F32 need "
               "12");
    PARSE_FAIL("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}", 8, WD_ERR_FORMAT,
               "tensor w: data at data_offsets begin 2 is not aligned to its "
               "4-byte dtype F32");
    PARSE_FAIL("{\"w\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[3,5]}}", 8,
               WD_ERR_FORMAT, "not aligned");
    PARSE_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[6,10]}}",
               16, WD_ERR_FORMAT, "tensors a [0, 8) and b [6, 10) overlap");
    PARSE_FAIL("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               16, WD_ERR_FORMAT, "overlap");
}

/* ---- files on disk ---- */

static void expect_open_fail(int line, const char *path, int is_dir, enum wd_status want,
                             const char *want_msg)
{
    struct wd_safetensors *st = NULL;
    struct wd_error err = {0};
    enum wd_status s =
        is_dir ? wd_safetensors_open(path, &st, &err) : wd_safetensors_open_file(path, &st, &err);
    WD_EXPECT_MSG(s == want, "line %d: status %s, want %s (%s)", line, wd_status_str(s),
                  wd_status_str(want), err.msg);
    WD_EXPECT_MSG(strstr(err.msg, want_msg) != NULL, "line %d: message '%s' lacks '%s'", line,
                  err.msg, want_msg);
    WD_EXPECT(st == NULL);
    if (st)
        wd_safetensors_close(st);
}

#define OPEN_FAIL(p, d, st, msg) expect_open_fail(__LINE__, p, d, st, msg)

static void test_bad_files(void)
{
    char *buf;
    size_t len;
    struct wd_error err = {0};
    WD_ASSERT(
        wd_json_reader_read_file(wd_test_src("tests/fixtures/loader/single/model.safetensors"),
                                 1 << 20, &buf, &len, &err) == WD_OK);
    /* Truncated copies of a real file: inside the length, the header, the data. */
    const char *p = tmp_path("trunc.safetensors");
    write_bytes(p, buf, 0);
    OPEN_FAIL(p, 0, WD_ERR_FORMAT, "file is 0 bytes, shorter than the 8-byte header length");
    write_bytes(p, buf, 3);
    OPEN_FAIL(p, 0, WD_ERR_FORMAT, "trunc.safetensors: file is 3 bytes");
    write_bytes(p, buf, 100);
    OPEN_FAIL(p, 0, WD_ERR_FORMAT, "header length 600 exceeds the file size (92 bytes");
    write_bytes(p, buf, len - 1);
    OPEN_FAIL(p, 0, WD_ERR_FORMAT, "tensor f8: data_offsets [136, 140] outside the data section");
    free(buf);

    OPEN_FAIL(tmp_path("nope.safetensors"), 0, WD_ERR_NOT_FOUND, "nope.safetensors");
    OPEN_FAIL(g_tmp, 0, WD_ERR_IO, "not a regular file");
    const char *d = fresh_dir("empty_model");
    OPEN_FAIL(d, 1, WD_ERR_NOT_FOUND,
              "neither model.safetensors.index.json nor model.safetensors found");
    /* A single-file model dir whose file is bad names the file. */
    d = fresh_dir("bad_single");
    char path[600];
    snprintf(path, sizeof(path), "%s/model.safetensors", d);
    write_blob(path, "{\"w\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", "12345678",
               8);
    OPEN_FAIL(d, 1, WD_ERR_UNSUPPORTED, "bad_single/model.safetensors: tensor w: unsupported");
}

/* Writes a two-shard model into dir: shard a.safetensors holds x, b.safetensors holds y. */
static void write_two_shards(const char *dir)
{
    char p[600];
    const float v[2] = {1, 2};
    snprintf(p, sizeof(p), "%s/a.safetensors", dir);
    write_blob(p, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", v, 8);
    snprintf(p, sizeof(p), "%s/b.safetensors", dir);
    write_blob(p, "{\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", v, 8);
}

static void write_index(const char *dir, const char *text)
{
    char p[600];
    snprintf(p, sizeof(p), "%s/model.safetensors.index.json", dir);
    write_bytes(p, text, strlen(text));
}

static void expect_index_fail(int line, const char *index, enum wd_status want,
                              const char *want_msg)
{
    const char *d = fresh_dir("shards");
    write_two_shards(d);
    write_index(d, index);
    expect_open_fail(line, d, 1, want, want_msg);
}

#define INDEX_FAIL(idx, st, msg) expect_index_fail(__LINE__, idx, st, msg)

static void test_bad_index(void)
{
    /* The good case first, so the failures below are caused by the one change each makes. */
    const char *d = fresh_dir("shards");
    write_two_shards(d);
    write_index(d, "{\"metadata\":{},"
                   "\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"b.safetensors\"}}");
    struct wd_safetensors *st = NULL;
    struct wd_error err = {0};
    enum wd_status s = wd_safetensors_open(d, &st, &err);
    WD_EXPECT_MSG(s == WD_OK, "%s", err.msg);
    if (s == WD_OK) {
        WD_EXPECT_EQ_INT(wd_safetensors_count(st), 2);
        WD_EXPECT(f32_at(wd_safetensors_find(st, "x"), 1) == 2.0f);
        wd_safetensors_close(st);
    }

    INDEX_FAIL("{\"weight_map\":", WD_ERR_FORMAT, "model.safetensors.index.json: invalid JSON");
    INDEX_FAIL("[]", WD_ERR_FORMAT, "top level is not a JSON object");
    INDEX_FAIL("{\"metadata\":{}}", WD_ERR_FORMAT, "'weight_map' missing or not an object");
    INDEX_FAIL("{\"weight_map\":{}}", WD_ERR_FORMAT, "'weight_map' is empty");
    INDEX_FAIL("{\"weight_map\":{\"x\":1}}", WD_ERR_FORMAT, "weight_map[x] is not a string");
    INDEX_FAIL("{\"weight_map\":{\"x\":\"../a.safetensors\"}}", WD_ERR_FORMAT,
               "shard name '../a.safetensors' must be a plain file name");
    INDEX_FAIL("{\"weight_map\":{\"x\":\"sub/a.safetensors\"}}", WD_ERR_FORMAT,
               "must be a plain file name (no '/' or '..')");
    INDEX_FAIL("{\"weight_map\":{\"x\":\"..\"}}", WD_ERR_FORMAT, "plain file name");
    INDEX_FAIL("{\"weight_map\":{\"x\":\"\"}}", WD_ERR_FORMAT, "plain file name");
    INDEX_FAIL("{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"c.safetensors\"}}",
               WD_ERR_NOT_FOUND, "shards/c.safetensors: No such file or directory");
    INDEX_FAIL("{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"b.safetensors\","
               "\"z\":\"b.safetensors\"}}",
               WD_ERR_NOT_FOUND, "tensor z is listed for shard b.safetensors but missing from it");
    INDEX_FAIL("{\"weight_map\":{\"x\":\"b.safetensors\",\"y\":\"b.safetensors\"}}",
               WD_ERR_NOT_FOUND, "tensor x is listed for shard b.safetensors but missing from it");
    INDEX_FAIL("{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\"}}",
               WD_ERR_NOT_FOUND, "tensor y is listed for shard a.safetensors but missing");
    /* Only the shards the index names are opened: b is never looked at here. */
    d = fresh_dir("shards");
    write_two_shards(d);
    write_index(d, "{\"weight_map\":{\"x\":\"a.safetensors\"}}");
    s = wd_safetensors_open(d, &st, &err);
    WD_EXPECT_MSG(s == WD_OK, "%s", err.msg);
    if (s == WD_OK) {
        WD_EXPECT_EQ_INT(wd_safetensors_count(st), 1);
        wd_safetensors_close(st);
    }

    /* The same tensor in two shards. */
    d = fresh_dir("shards");
    write_two_shards(d);
    char p[600];
    const float v[2] = {1, 2};
    snprintf(p, sizeof(p), "%s/b.safetensors", d);
    write_blob(p,
               "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"y\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}",
               v, 8);
    write_index(d, "{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"b.safetensors\"}}");
    OPEN_FAIL(d, 1, WD_ERR_FORMAT, "tensor x is in both a.safetensors and b.safetensors");

    /* A tensor in the shard the index does not name for it. */
    d = fresh_dir("shards");
    write_two_shards(d);
    snprintf(p, sizeof(p), "%s/b.safetensors", d);
    write_blob(p,
               "{\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               v, 8);
    write_index(d, "{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"b.safetensors\","
                   "\"w\":\"a.safetensors\"}}");
    OPEN_FAIL(d, 1, WD_ERR_FORMAT,
              "tensor w is listed for shard a.safetensors but found in "
              "b.safetensors");

    /* A tensor of an opened shard that the index does not list. */
    d = fresh_dir("shards");
    write_two_shards(d);
    snprintf(p, sizeof(p), "%s/a.safetensors", d);
    write_blob(p,
               "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"q\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               v, 8);
    write_index(d, "{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"b.safetensors\"}}");
    OPEN_FAIL(d, 1, WD_ERR_FORMAT, "tensor q of shard a.safetensors is not listed");

    /* A bad shard is named in the error. */
    d = fresh_dir("shards");
    write_two_shards(d);
    snprintf(p, sizeof(p), "%s/b.safetensors", d);
    write_bytes(p, "abc", 3);
    write_index(d, "{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"b.safetensors\"}}");
    OPEN_FAIL(d, 1, WD_ERR_FORMAT, "b.safetensors: file is 3 bytes");
}

/* Many tensors: every name is found, absent names are not. */
static void test_many_tensors(void)
{
    enum { N = 20000 };
    size_t cap = (size_t)N * 96 + 16, pos = 0;
    char *h = malloc(cap);
    pos += (size_t)snprintf(h + pos, cap - pos, "{");
    for (int i = 0; i < N; i++)
        pos += (size_t)snprintf(h + pos, cap - pos,
                                "%s\"model.layers.%d.mlp.experts.%d.w\":{\"dtype\":\"BF16\","
                                "\"shape\":[1],\"data_offsets\":[%d,%d]}",
                                i ? "," : "", i / 256, i % 256, 2 * i, 2 * i + 2);
    snprintf(h + pos, cap - pos, "}");
    uint16_t *data = malloc(N * 2);
    for (int i = 0; i < N; i++)
        data[i] = wd_f32_to_bf16((float)(i % 200));
    size_t len;
    uint8_t *b = make_blob(h, data, N * 2, &len);
    struct wd_safetensors *st = NULL;
    struct wd_error err = {0};
    enum wd_status s = wd_safetensors_parse(b, len, &st, &err);
    WD_EXPECT_MSG(s == WD_OK, "%s", err.msg);
    if (s == WD_OK) {
        WD_EXPECT_EQ_INT(wd_safetensors_count(st), N);
        int bad = 0;
        for (int i = 0; i < N; i++) {
            char name[96];
            snprintf(name, sizeof(name), "model.layers.%d.mlp.experts.%d.w", i / 256, i % 256);
            const struct wd_tensor_info *t = wd_safetensors_find(st, name);
            bad += !t || f32_at(t, 0) != (float)(i % 200);
            snprintf(name, sizeof(name), "model.layers.%d.mlp.experts.%d.x", i / 256, i % 256);
            bad += wd_safetensors_find(st, name) != NULL;
        }
        WD_EXPECT_EQ_INT(bad, 0);
        wd_safetensors_close(st);
    }
    free(b);
    free(data);
    free(h);
}

int main(void)
{
    snprintf(g_tmp, sizeof(g_tmp), "%s/wd_st_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    WD_RUN(test_single_file);
    WD_RUN(test_parse_memory);
    WD_RUN(test_get);
    WD_RUN(test_sharded);
    WD_RUN(test_holes_and_empty);
    WD_RUN(test_bad_headers);
    WD_RUN(test_bad_files);
    WD_RUN(test_bad_index);
    WD_RUN(test_many_tensors);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_tmp);
    wd_test_sh(cmd, NULL, 0);
    return wd_test_finish();
}

/*
 * Fuzz target: encode arbitrary bytes with two small byte-level BPE tokenizers built
 * once from embedded JSON, then decode. Checks, beyond "no crash, no leak":
 *  - invalid UTF-8 is refused with WD_ERR_INVALID, valid input always encodes;
 *  - the plain tokenizer (no normalizer, no stripping added tokens) round-trips:
 *    decode(encode(x)) == x byte for byte;
 *  - for both, the incremental detokenizer's chunks are valid UTF-8 and concatenate
 *    to the full decode.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* GPT-2 byte table: printable bytes stand for themselves, the rest map to U+0100.. */
static int byte_cp(int b)
{
    int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    if (printable)
        return b;
    int n = 0;
    for (int i = 0; i < b; i++)
        n += !((i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) || i >= 0xAE);
    return 256 + n;
}

static size_t put_json_char(char *p, int cp)
{
    if (cp == '"' || cp == '\\')
        return (size_t)sprintf(p, "\\%c", cp);
    if (cp < 0x80)
        return (size_t)sprintf(p, "%c", cp);
    return (size_t)sprintf(p, "\\u%04x", cp);
}

static char *build_json(int fancy)
{
    size_t cap = 1 << 16, n = 0;
    char *j = malloc(cap);
    n += (size_t)sprintf(j + n, "{\"model\":{\"type\":\"BPE\",%s\"vocab\":{",
                         fancy ? "\"ignore_merges\":true," : "");
    for (int b = 0; b < 256; b++) {
        j[n++] = '"';
        n += put_json_char(j + n, byte_cp(b));
        n += (size_t)sprintf(j + n, "\":%d,", b);
    }
    /* merged tokens: Ġ = U+0120 (space) */
    static const char *merged[] = {"\\u0120t",
                                   "he",
                                   "\\u0120the",
                                   "in",
                                   "\\u0120\\u0120",
                                   "\\u00e4\\u00bd",
                                   "\\u00e4\\u00bd\\u0142"};
    for (int i = 0; i < 7; i++)
        n += (size_t)sprintf(j + n, "\"%s\":%d%s", merged[i], 256 + i, i < 6 ? "," : "");
    n += (size_t)sprintf(j + n, "},\"merges\":[\"\\u0120 t\",[\"h\",\"e\"],\"\\u0120t he\","
                                "\"i n\",\"\\u0120 \\u0120\",\"\\u00e4 \\u00bd\","
                                "\"\\u00e4\\u00bd \\u0142\"]},");
    n += (size_t)sprintf(
        j + n,
        "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
        "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|"
        "[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|"
        "\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"
        "%s{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]},"
        "\"decoder\":{\"type\":\"ByteLevel\"},",
        fancy ? "{\"type\":\"Split\",\"pattern\":{\"String\":\"-\"},\"behavior\":"
                "\"MergedWithNext\"},{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\d\"},"
                "\"behavior\":\"Contiguous\",\"invert\":true},"
              : "");
    if (fancy)
        n += (size_t)sprintf(j + n,
                             "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":["
                             "{\"type\":\"NFKC\"}]},\"post_processor\":{\"type\":"
                             "\"BertProcessing\",\"cls\":[\"<s>\",263],\"sep\":[\"</s>\",264]},");
    n += (size_t)sprintf(
        j + n,
        "\"added_tokens\":["
        "{\"id\":263,\"content\":\"<s>\",\"special\":true,\"normalized\":false},"
        "{\"id\":264,\"content\":\"</s>\",\"special\":true,\"normalized\":false},"
        "{\"id\":265,\"content\":\"<|im_start|>\",\"special\":true,\"normalized\":false},"
        "{\"id\":266,\"content\":\"<think>\",\"special\":false,\"normalized\":%s,"
        "\"lstrip\":%s,\"rstrip\":%s},"
        "{\"id\":267,\"content\":\"word\",\"single_word\":true,\"normalized\":true}]}",
        fancy ? "true" : "false", fancy ? "true" : "false", fancy ? "true" : "false");
    j[n] = 0;
    return j;
}

static struct wd_tokenizer *make(int fancy)
{
    char *json = build_json(fancy);
    struct wd_tokenizer *tok = NULL;
    struct wd_error err;
    if (wd_tokenizer_load_from_memory(json, strlen(json), &tok, &err) != WD_OK) {
        fprintf(stderr, "fuzz_tokenizer_encode: embedded tokenizer: %s\n", err.msg);
        abort();
    }
    free(json);
    return tok;
}

static int utf8_ok(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        int k = u[i] < 0x80             ? 0
                : (u[i] & 0xE0) == 0xC0 ? 1
                : (u[i] & 0xF0) == 0xE0 ? 2
                : (u[i] & 0xF8) == 0xF0 ? 3
                                        : -1;
        if (k < 0 || i + (size_t)k >= n + (k == 0))
            return k == 0;
        for (int j = 1; j <= k; j++)
            if ((u[i + (size_t)j] & 0xC0) != 0x80)
                return 0;
        i += (size_t)k + 1;
    }
    return 1;
}

static void check(struct wd_tokenizer *tok, const uint8_t *data, size_t size, int roundtrip)
{
    struct wd_error err;
    int32_t *ids = NULL;
    size_t n = 0;
    enum wd_status st = wd_tokenizer_encode(tok, (const char *)data, size, 1, &ids, &n, &err);
    if (st != WD_OK) {
        if (st != WD_ERR_INVALID)
            abort(); /* valid input must encode; invalid must be refused as invalid */
        return;
    }
    char *text = NULL;
    size_t len = 0;
    if (wd_tokenizer_decode_len(tok, ids, n, 0, &text, &len, &err) != WD_OK)
        abort();
    if (roundtrip && (len != size || memcmp(text, data, size) != 0))
        abort();
    struct wd_detok *d = NULL;
    if (wd_detok_create(tok, 0, &d) != WD_OK)
        abort();
    size_t cap = wd_detok_chunk_cap(d), got = 0, k;
    char *chunk = malloc(cap), *all = malloc(len + 1);
    for (size_t i = 0; i <= n; i++) {
        st = i < n ? wd_detok_push(d, ids[i], chunk, cap, &k) : wd_detok_flush(d, chunk, cap, &k);
        if (st != WD_OK || !utf8_ok(chunk, k) || got + k > len)
            abort();
        memcpy(all + got, chunk, k);
        got += k;
    }
    if (got != len || memcmp(all, text, len) != 0)
        abort();
    free(chunk);
    free(all);
    wd_detok_destroy(d);
    free(text);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct wd_tokenizer *plain, *fancy;
    if (!plain) {
        plain = make(0);
        fancy = make(1);
    }
    /* the plain tokenizer still lstrips nothing: <think> has no strip flags there */
    check(plain, data, size, 1);
    check(fancy, data, size, 0);
    return 0;
}

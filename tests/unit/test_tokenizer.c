/*
 * Tokenizer against Hugging Face `tokenizers`: every corpus string must encode to the
 * ids HF produced (tests/tools/make_tokenizer_fixtures.py wrote them), decode must
 * match HF's decode (with and without skip_special), the incremental detokenizer's
 * chunks must be valid UTF-8 and concatenate to the full decode, and bad inputs or
 * malformed tokenizer.json variants must fail with a clear status (ASan checks leaks).
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/tokenizer/tokenizer.h"
#include "tests/unit/wd_test.h"

#define MAX_REPORT 8

/* Independent strict UTF-8 validator (RFC 3629). */
static int valid_utf8(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        size_t k;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            k = 1, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, cp = c & 0x07;
        } else {
            return 0;
        }
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (u[i + j] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (u[i + j] & 0x3F);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

static char *slurp_lines(const char *path, size_t *n_lines, char ***lines)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)sz + 1);
    if (fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    buf[sz] = 0;
    size_t cap = 1024, n = 0;
    char **v = malloc(cap * sizeof(*v));
    for (char *p = buf; *p;) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = 0;
        if (n == cap)
            v = realloc(v, (cap *= 2) * sizeof(*v));
        v[n++] = p;
        if (!nl)
            break;
        p = nl + 1;
    }
    *n_lines = n;
    *lines = v;
    return buf;
}

static int32_t *json_ids(json_t *arr, size_t *n)
{
    *n = json_array_size(arr);
    int32_t *v = malloc((*n + 1) * sizeof(*v));
    for (size_t i = 0; i < *n; i++)
        v[i] = (int32_t)json_integer_value(json_array_get(arr, i));
    return v;
}

static void report_ids(const char *what, size_t line, const char *text, const int32_t *want,
                       size_t nw, const int32_t *got, size_t ng)
{
    size_t i = 0;
    while (i < nw && i < ng && want[i] == got[i])
        i++;
    char ws[256] = "", gs[256] = "";
    size_t wo = 0, go = 0;
    for (size_t k = i; k < nw && k < i + 8; k++)
        wo += (size_t)snprintf(ws + wo, sizeof(ws) - wo, "%d ", want[k]);
    for (size_t k = i; k < ng && k < i + 8; k++)
        go += (size_t)snprintf(gs + go, sizeof(gs) - go, "%d ", got[k]);
    wd_test_fail(__FILE__, __LINE__,
                 "%s line %zu (%.60s...): %zu vs %zu ids, first diff at %zu: "
                 "want [%s] got [%s]",
                 what, line, text, nw, ng, i, ws, gs);
}

/* Streams ids through a detokenizer; checks every chunk is valid UTF-8 and returns the
 * concatenation (malloc'd) and its length. */
static char *detok_all(const struct wd_tokenizer *tok, const int32_t *ids, size_t n, int skip,
                       size_t *len_p, int *bad_chunk)
{
    struct wd_detok *d;
    if (wd_detok_create(tok, skip, &d) != WD_OK)
        return NULL;
    size_t cap = wd_detok_chunk_cap(d), len = 0, out_cap = 256;
    char *chunk = malloc(cap), *out = malloc(out_cap);
    *bad_chunk = 0;
    for (size_t i = 0; i <= n; i++) {
        size_t k = 0;
        enum wd_status st =
            i < n ? wd_detok_push(d, ids[i], chunk, cap, &k) : wd_detok_flush(d, chunk, cap, &k);
        if (st != WD_OK || chunk[k] != 0 || !valid_utf8(chunk, k))
            *bad_chunk = 1;
        while (len + k + 1 > out_cap)
            out = realloc(out, out_cap *= 2);
        memcpy(out + len, chunk, k);
        len += k;
    }
    out[len] = 0;
    *len_p = len;
    free(chunk);
    wd_detok_destroy(d);
    return out;
}

static void check_decode(const struct wd_tokenizer *tok, const char *what, size_t line,
                         const int32_t *ids, size_t n, json_t *want, json_t *want_skip,
                         int *reported)
{
    for (int skip = 0; skip < 2; skip++) {
        json_t *w = skip ? want_skip : want;
        const char *ws = json_string_value(w);
        size_t wl = json_string_length(w), gl = 0, sl = 0;
        char *got = NULL;
        struct wd_error err = {0};
        enum wd_status st = wd_tokenizer_decode_len(tok, ids, n, skip, &got, &gl, &err);
        wd_test_checks++;
        if (st != WD_OK || gl != wl || memcmp(got, ws, wl) != 0) {
            if ((*reported)++ < MAX_REPORT)
                wd_test_fail(__FILE__, __LINE__,
                             "%s line %zu: decode(skip=%d) = '%.80s' want "
                             "'%.80s'",
                             what, line, skip, got ? got : "(error)", ws);
        }
        int bad = 0;
        char *streamed = detok_all(tok, ids, n, skip, &sl, &bad);
        wd_test_checks++;
        if (!streamed || bad || sl != gl || memcmp(streamed, got, gl) != 0) {
            if ((*reported)++ < MAX_REPORT)
                wd_test_fail(__FILE__, __LINE__,
                             "%s line %zu: detok(skip=%d) '%.80s' != decode "
                             "'%.80s' (bad chunk %d)",
                             what, line, skip, streamed ? streamed : "(null)", got ? got : "", bad);
        }
        free(streamed);
        free(got);
    }
}

static void run_corpus(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "tests/fixtures/tokenizer/%s/tokenizer.json", name);
    struct wd_tokenizer *tok = NULL;
    struct wd_error err = {0};
    clock_t t0 = clock();
    enum wd_status st = wd_tokenizer_load(wd_test_src(path), &tok, &err);
    WD_EXPECT_MSG(st == WD_OK, "%s: load failed: %s", name, err.msg);
    if (st != WD_OK)
        return;
    double t_load = (double)(clock() - t0) / CLOCKS_PER_SEC;
    size_t n_text = 0, n_exp = 0;
    char **texts = NULL, **exps = NULL;
    char *tbuf = slurp_lines(wd_test_src("tests/fixtures/tokenizer/corpus.jsonl"), &n_text, &texts);
    snprintf(path, sizeof(path), "tests/fixtures/tokenizer/%s/expected.jsonl", name);
    char *ebuf = slurp_lines(wd_test_src(path), &n_exp, &exps);
    WD_EXPECT_MSG(tbuf && ebuf && n_exp >= n_text && n_text >= 2000, "%s: fixtures missing", name);
    int reported = 0;
    size_t mism = 0, n_ids = 0;
    t0 = clock();
    for (size_t i = 0; tbuf && ebuf && i < n_exp; i++) {
        json_t *row = json_loads(exps[i], JSON_ALLOW_NUL, NULL);
        WD_EXPECT(row != NULL);
        if (!row)
            continue;
        json_t *jid = json_object_get(row, "ids");
        if (!jid) { /* a random id sequence for decode */
            size_t n;
            int32_t *ids = json_ids(json_object_get(row, "decode"), &n);
            check_decode(tok, name, i, ids, n, json_object_get(row, "dec"),
                         json_object_get(row, "dec_skip"), &reported);
            free(ids);
            json_decref(row);
            continue;
        }
        json_t *jt = json_loads(texts[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        const char *text = json_string_value(jt);
        size_t tlen = json_string_length(jt);
        size_t nw, ng = 0;
        int32_t *want = json_ids(jid, &nw), *got = NULL;
        st = wd_tokenizer_encode(tok, text, tlen, 0, &got, &ng, &err);
        n_ids += ng;
        wd_test_checks++;
        if (st != WD_OK || ng != nw || (nw && memcmp(want, got, nw * sizeof(*got)) != 0)) {
            mism++;
            if (reported++ < MAX_REPORT) {
                if (st != WD_OK)
                    wd_test_fail(__FILE__, __LINE__, "%s line %zu: encode failed: %s", name, i,
                                 err.msg);
                else
                    report_ids(name, i, text, want, nw, got, ng);
            }
        }
        json_t *jsp = json_object_get(row, "sp");
        if (jsp) {
            size_t ns, nsg = 0;
            int32_t *wsp = json_ids(jsp, &ns), *gsp = NULL;
            st = wd_tokenizer_encode(tok, text, tlen, 1, &gsp, &nsg, &err);
            WD_EXPECT(st == WD_OK && nsg == ns && (!ns || !memcmp(wsp, gsp, ns * sizeof(*gsp))));
            free(wsp);
            free(gsp);
        }
        json_t *jd = json_object_get(row, "dec"), *jds = json_object_get(row, "dec_skip");
        if (!jd)
            jd = jt;
        check_decode(tok, name, i, want, nw, jd, jds ? jds : jd, &reported);
        free(want);
        free(got);
        json_decref(jt);
        json_decref(row);
    }
    double t_run = (double)(clock() - t0) / CLOCKS_PER_SEC;
    printf("  %s: load %.2fs, %zu strings (%zu ids) in %.2fs, %zu encode mismatches\n", name,
           t_load, n_text, n_ids, t_run, mism);
    free(texts);
    free(exps);
    free(tbuf);
    free(ebuf);
    wd_tokenizer_destroy(tok);
}

static void test_corpus_qwen3(void)
{
    run_corpus("qwen3");
}
static void test_corpus_deepseek_v3(void)
{
    run_corpus("deepseek-v3");
}
static void test_corpus_tiny_bytelevel(void)
{
    run_corpus("tiny-bytelevel");
}
static void test_corpus_tiny_split(void)
{
    run_corpus("tiny-split");
}

/* tests/fixtures/tokenizer/cases.jsonl: edge cases with HF's ids. A row may replace the
 * tokenizer's pre_tokenizer (Split regexes written with Oniguruma escapes). */
static void test_edge_cases(void)
{
    size_t n_rows = 0;
    char **rows = NULL;
    char *buf = slurp_lines(wd_test_src("tests/fixtures/tokenizer/cases.jsonl"), &n_rows, &rows);
    WD_EXPECT_MSG(buf && n_rows >= 40, "cases.jsonl missing");
    int reported = 0;
    for (size_t i = 0; buf && i < n_rows; i++) {
        json_t *row = json_loads(rows[i], 0, NULL);
        char path[512];
        snprintf(path, sizeof(path), "tests/fixtures/tokenizer/%s/tokenizer.json",
                 json_string_value(json_object_get(row, "tokenizer")));
        json_t *cfg = json_load_file(wd_test_src(path), 0, NULL);
        json_t *pre = json_object_get(row, "pre_tokenizer");
        if (pre)
            json_object_set(cfg, "pre_tokenizer", pre);
        char *text = json_dumps(cfg, 0);
        struct wd_tokenizer *tok = NULL;
        struct wd_error err = {0};
        enum wd_status st =
            text ? wd_tokenizer_load_from_memory(text, strlen(text), &tok, &err) : WD_ERR_IO;
        const char *in = json_string_value(json_object_get(row, "text"));
        size_t nw, ng = 0;
        int32_t *want = json_ids(json_object_get(row, "ids"), &nw), *got = NULL;
        if (st == WD_OK)
            st = wd_tokenizer_encode(tok, in, strlen(in), 0, &got, &ng, &err);
        wd_test_checks++;
        if (st != WD_OK)
            wd_test_fail(__FILE__, __LINE__, "cases line %zu (%s): %s", i,
                         pre ? "regex" : "normalizer", err.msg);
        else if (ng != nw || (nw && memcmp(want, got, nw * sizeof(*got)) != 0))
            if (reported++ < MAX_REPORT)
                report_ids("cases", i, in, want, nw, got, ng);
        free(want);
        free(got);
        wd_tokenizer_destroy(tok);
        free(text);
        json_decref(cfg);
        json_decref(row);
    }
    free(rows);
    free(buf);
}

static struct wd_tokenizer *load_fixture(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "tests/fixtures/tokenizer/%s/tokenizer.json", name);
    struct wd_tokenizer *tok = NULL;
    struct wd_error err = {0};
    if (wd_tokenizer_load(wd_test_src(path), &tok, &err) != WD_OK) {
        wd_test_fail(__FILE__, __LINE__, "load %s: %s", name, err.msg);
        return NULL;
    }
    return tok;
}

static void test_lookups(void)
{
    struct wd_tokenizer *q = load_fixture("qwen3"), *d = load_fixture("deepseek-v3");
    if (!q || !d)
        goto out;
    WD_EXPECT_EQ_INT(wd_tokenizer_vocab_size(q), 151669);
    WD_EXPECT_EQ_INT(wd_tokenizer_token_to_id(q, "<|im_start|>"), 151644);
    WD_EXPECT_EQ_INT(wd_tokenizer_token_to_id(q, "Hello"), 9707);
    WD_EXPECT_EQ_INT(wd_tokenizer_token_to_id(q, "no such token here"), -1);
    WD_EXPECT(strcmp(wd_tokenizer_id_to_token(q, 151645), "<|im_end|>") == 0);
    WD_EXPECT(strcmp(wd_tokenizer_id_to_token(q, 1879), "\xc4\xa0world") == 0); /* Ġworld */
    WD_EXPECT(wd_tokenizer_id_to_token(q, -1) == NULL);
    WD_EXPECT(wd_tokenizer_id_to_token(q, 151669) == NULL);
    WD_EXPECT(wd_tokenizer_is_special(q, 151644));
    WD_EXPECT(!wd_tokenizer_is_special(q, 151667)); /* <think> is added but not special */
    WD_EXPECT(!wd_tokenizer_is_special(q, 9707));
    WD_EXPECT_EQ_INT(wd_tokenizer_vocab_size(d), 128815);
    WD_EXPECT_EQ_INT(wd_tokenizer_token_to_id(d, "<｜begin▁of▁sentence｜>"), 0);
    WD_EXPECT(wd_tokenizer_is_special(d, 0));
    WD_EXPECT(!wd_tokenizer_is_special(d, 128803)); /* <｜User｜> */
    /* add_special: DeepSeek-V3 prepends BOS, Qwen3 adds nothing */
    int32_t *ids = NULL;
    size_t n = 0;
    WD_EXPECT(wd_tokenizer_encode(d, "Hi", 2, 1, &ids, &n, NULL) == WD_OK);
    WD_EXPECT(n >= 2 && ids[0] == 0);
    free(ids);
    ids = NULL;
    WD_EXPECT(wd_tokenizer_encode(q, "", 0, 1, &ids, &n, NULL) == WD_OK);
    WD_EXPECT_EQ_INT(n, 0);
    free(ids);
out:
    wd_tokenizer_destroy(q);
    wd_tokenizer_destroy(d);
}

static void test_invalid_utf8(void)
{
    struct wd_tokenizer *q = load_fixture("tiny-bytelevel");
    if (!q)
        return;
    static const struct {
        const char *s;
        size_t len, off;
    } cases[] = {
        {"abc\xff", 4, 3},          {"\xc0\xaf", 2, 0},                  /* overlong */
        {"ok\xed\xa0\x80", 5, 2},   /* surrogate */ {"x\xe4\xb8", 3, 1}, /* truncated */
        {"\xf4\x90\x80\x80", 4, 0}, /* > U+10FFFF */ {"a\x80", 2, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct wd_error err = {0};
        int32_t *ids = NULL;
        size_t n = 0;
        enum wd_status st = wd_tokenizer_encode(q, cases[i].s, cases[i].len, 0, &ids, &n, &err);
        WD_EXPECT_EQ_INT(st, WD_ERR_INVALID);
        char want[64];
        snprintf(want, sizeof(want), "offset %zu", cases[i].off);
        WD_EXPECT_MSG(strstr(err.msg, want) != NULL, "case %zu: '%s' lacks '%s'", i, err.msg, want);
    }
    wd_tokenizer_destroy(q);
}

static void expect_load_error(const char *json, enum wd_status want, const char *needle)
{
    struct wd_tokenizer *tok = NULL;
    struct wd_error err = {0};
    enum wd_status st = wd_tokenizer_load_from_memory(json, strlen(json), &tok, &err);
    WD_EXPECT_MSG(st == want, "'%.60s': status %s want %s (%s)", json, wd_status_str(st),
                  wd_status_str(want), err.msg);
    WD_EXPECT_MSG(strstr(err.msg, needle) != NULL, "'%.60s': message '%s' lacks '%s'", json,
                  err.msg, needle);
    WD_EXPECT(tok == NULL);
}

#define V "\"vocab\":{\"a\":0,\"b\":1,\"ab\":2}"

static void test_bad_json(void)
{
    expect_load_error("", WD_ERR_FORMAT, "bad JSON");
    expect_load_error("{\"model\": {\"type\": \"BPE\", " V, WD_ERR_FORMAT, "bad JSON");
    expect_load_error("[1, 2]", WD_ERR_FORMAT, "not an object");
    expect_load_error("{}", WD_ERR_FORMAT, "\"model\" is missing");
    expect_load_error("{\"model\": 3}", WD_ERR_FORMAT, "\"model\" is missing");
    expect_load_error("{\"model\": {\"type\": \"BPE\"}}", WD_ERR_FORMAT, "vocab");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": []}}", WD_ERR_FORMAT, "vocab");
    expect_load_error("{\"model\": {\"type\": \"WordPiece\", " V "}}", WD_ERR_UNSUPPORTED,
                      "WordPiece");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": -1}}}", WD_ERR_FORMAT, "vocab id");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": \"0\"}}}", WD_ERR_FORMAT, "vocab id");
    expect_load_error("{\"model\": {\"vocab\": {\"a\": 99999999999}}}", WD_ERR_FORMAT, "vocab id");
    expect_load_error("{\"model\": {" V ", \"merges\": [\"a c\"]}}", WD_ERR_FORMAT,
                      "not in the vocab");
    expect_load_error("{\"model\": {" V ", \"merges\": [[\"a\", \"z\"]]}}", WD_ERR_FORMAT,
                      "'z' that is not in the vocab");
    expect_load_error("{\"model\": {" V ", \"merges\": [\"b a\"]}}", WD_ERR_FORMAT,
                      "produces a token");
    expect_load_error("{\"model\": {" V ", \"merges\": [\"ab\"]}}", WD_ERR_FORMAT, "two tokens");
    expect_load_error("{\"model\": {" V ", \"merges\": [7]}}", WD_ERR_FORMAT, "merge 0");
    expect_load_error("{\"model\": {" V ", \"merges\": {}}}", WD_ERR_FORMAT, "merges");
    expect_load_error("{\"model\": {" V ", \"unk_token\": \"?\"}}", WD_ERR_FORMAT, "unk_token");
    expect_load_error("{\"model\": {" V ", \"byte_fallback\": 1}}", WD_ERR_FORMAT, "booleans");
    expect_load_error("{\"model\": {" V ", \"dropout\": 0.1}}", WD_ERR_UNSUPPORTED, "dropout");
    expect_load_error("{\"model\": {" V "}, \"normalizer\": {\"type\": \"Lowercase\"}}",
                      WD_ERR_UNSUPPORTED, "Lowercase");
    expect_load_error("{\"model\": {" V "}, \"normalizer\": {\"typo\": 1}}", WD_ERR_FORMAT,
                      "normalizer");
    expect_load_error("{\"model\": {" V "}, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\":"
                      " {\"Regex\": \"(unclosed\"}, \"behavior\": \"Isolated\"}}",
                      WD_ERR_FORMAT, "Split regex");
    expect_load_error("{\"model\": {" V "}, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\":"
                      " {\"Regex\": \"a\"}, \"behavior\": \"Sideways\"}}",
                      WD_ERR_FORMAT, "behavior");
    /* Oniguruma escapes PCRE2 lacks are translated; what cannot be is refused by name. */
    expect_load_error("{\"model\": {" V "}, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\":"
                      " {\"Regex\": \"[\\\\uD83D]\"}, \"behavior\": \"Isolated\"}}",
                      WD_ERR_FORMAT, "surrogate");
    expect_load_error("{\"model\": {" V "}, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\":"
                      " {\"Regex\": \"\\\\u004\"}, \"behavior\": \"Isolated\"}}",
                      WD_ERR_FORMAT, "Split regex");
    expect_load_error("{\"model\": {" V "}, \"pre_tokenizer\": {\"type\": \"Metaspace\"}}",
                      WD_ERR_UNSUPPORTED, "Metaspace");
    expect_load_error("{\"model\": {" V "}, \"added_tokens\": [{\"id\": 5}]}", WD_ERR_FORMAT,
                      "added_tokens[0]");
    expect_load_error("{\"model\": {" V "}, \"added_tokens\": {}}", WD_ERR_FORMAT, "added_tokens");
    expect_load_error("{\"model\": {" V "}, \"post_processor\": {\"type\": \"TemplateProcessing\","
                      " \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}]}}",
                      WD_ERR_FORMAT, "special_tokens");
    expect_load_error("{\"model\": {" V "}, \"decoder\": {\"type\": \"WordPiece\"}}",
                      WD_ERR_UNSUPPORTED, "decoder");

    /* a real file cut short, and a missing file */
    FILE *f = fopen(wd_test_src("tests/fixtures/tokenizer/tiny-split/tokenizer.json"), "rb");
    WD_EXPECT(f != NULL);
    if (f) {
        char buf[4096];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        expect_load_error(buf, WD_ERR_FORMAT, "bad JSON");
    }
    struct wd_tokenizer *tok = NULL;
    struct wd_error err = {0};
    WD_EXPECT_EQ_INT(wd_tokenizer_load("/nonexistent/tokenizer.json", &tok, &err),
                     WD_ERR_NOT_FOUND);
    WD_EXPECT(strstr(err.msg, "cannot open") != NULL);
}

/* The smallest useful tokenizers: merges in both JSON forms, unk handling, byte fallback. */
static void test_small_models(void)
{
    const char *json =
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"abb\": 3,"
        " \"<unk>\": 4, \"<0x63>\": 5}, \"merges\": [\"a b\", [\"ab\", \"b\"]],"
        " \"unk_token\": \"<unk>\", \"fuse_unk\": true, \"byte_fallback\": true}}";
    struct wd_tokenizer *tok = NULL;
    struct wd_error err = {0};
    WD_EXPECT_MSG(wd_tokenizer_load_from_memory(json, strlen(json), &tok, &err) == WD_OK, "%s",
                  err.msg);
    if (!tok)
        return;
    int32_t *ids = NULL;
    size_t n = 0;
    /* abb -> 3; c -> byte fallback <0x63>; d, e fused into one unk; a -> 0 */
    WD_EXPECT(wd_tokenizer_encode(tok, "abbcdea", 7, 0, &ids, &n, &err) == WD_OK);
    int32_t want[] = {3, 5, 4, 0};
    WD_EXPECT_EQ_INT(n, 4);
    for (size_t i = 0; i < n && i < 4; i++)
        WD_EXPECT_EQ_INT(ids[i], want[i]);
    free(ids);
    /* no decoder: tokens joined with spaces, like HF */
    char *text = NULL;
    int32_t dec[] = {2, 0, 99};
    WD_EXPECT(wd_tokenizer_decode(tok, dec, 3, 0, &text, &err) == WD_OK);
    WD_EXPECT(text && strcmp(text, "ab a") == 0);
    free(text);
    wd_tokenizer_destroy(tok);
}

static void test_detok_small_buffer(void)
{
    struct wd_tokenizer *q = load_fixture("qwen3");
    if (!q)
        return;
    int32_t *ids = NULL;
    size_t n = 0;
    const char *s = "你好😀";
    WD_EXPECT(wd_tokenizer_encode(q, s, strlen(s), 0, &ids, &n, NULL) == WD_OK);
    struct wd_detok *d = NULL;
    WD_EXPECT(wd_detok_create(q, 1, &d) == WD_OK);
    char buf[64], tiny[1];
    size_t len = 0, got = 0, need = 0;
    for (size_t i = 0; i < n; i++) {
        /* too small: refused, nothing consumed, the needed size reported */
        enum wd_status st = wd_detok_push(d, ids[i], tiny, sizeof(tiny), &need);
        if (st != WD_OK)
            WD_EXPECT(st == WD_ERR_INVALID && need > 1 && need <= wd_detok_chunk_cap(d));
        if (st == WD_OK)
            continue; /* an empty chunk fits in one byte */
        WD_EXPECT(wd_detok_push(d, ids[i], buf + len, sizeof(buf) - len, &got) == WD_OK);
        len += got;
    }
    WD_EXPECT(wd_detok_flush(d, buf + len, sizeof(buf) - len, &got) == WD_OK);
    len += got;
    WD_EXPECT(len == strlen(s) && memcmp(buf, s, len) == 0);
    /* a dangling half sequence flushes as U+FFFD */
    wd_detok_destroy(d);
    WD_EXPECT(wd_detok_create(q, 0, &d) == WD_OK);
    int32_t e4 = wd_tokenizer_token_to_id(q, "\xc3\xa4"); /* 'ä' in the byte table = byte 0xE4 */
    WD_EXPECT(e4 >= 0);
    WD_EXPECT(wd_detok_push(d, e4, buf, sizeof(buf), &got) == WD_OK && got == 0);
    WD_EXPECT(wd_detok_flush(d, buf, sizeof(buf), &got) == WD_OK && got == 3 &&
              memcmp(buf, "\xef\xbf\xbd", 3) == 0);
    wd_detok_destroy(d);
    free(ids);
    wd_tokenizer_destroy(q);
}

int main(void)
{
    WD_RUN(test_lookups);
    WD_RUN(test_invalid_utf8);
    WD_RUN(test_bad_json);
    WD_RUN(test_small_models);
    WD_RUN(test_detok_small_buffer);
    WD_RUN(test_edge_cases);
    WD_RUN(test_corpus_tiny_bytelevel);
    WD_RUN(test_corpus_tiny_split);
    WD_RUN(test_corpus_qwen3);
    WD_RUN(test_corpus_deepseek_v3);
    return wd_test_finish();
}

/*
 * Public tokenizer API: load/destroy, encode (split -> BPE -> post-processor),
 * id <-> token lookups and full decode. The pipeline pieces live in tok_pretok.c
 * and tok_bpe.c; JSON parsing in tok_load.c; streaming decode in detok.c.
 */
#include "common/tokenizer/tok_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Caps backtracking of a hostile Split regex; HF's own patterns stay far below it. */
#define TOK_MATCH_LIMIT 10000000u

void wd_tokenizer_destroy(struct wd_tokenizer *tok)
{
    if (!tok)
        return;
    free(tok->norms);
    for (size_t i = 0; i < tok->n_pretoks; i++)
        pcre2_code_free(tok->pretoks[i].re);
    free(tok->pretoks);
    tok_bpe_cleanup(&tok->bpe);
    for (size_t i = 0; i < tok->n_added; i++) {
        free(tok->added[i].content);
        free(tok->added[i].norm);
    }
    free(tok->added);
    tok_trie_cleanup(&tok->trie_raw);
    tok_trie_cleanup(&tok->trie_norm);
    tok_strmap_cleanup(&tok->added_map);
    free(tok->post.prefix);
    free(tok->post.suffix);
    free(tok->id_to_str);
    free(tok->id_to_len);
    free(tok->id_special);
    pcre2_match_context_free(tok->mctx);
    free(tok);
}

enum wd_status wd_tokenizer_load_from_memory(const char *json, size_t len,
                                             struct wd_tokenizer **tok_p, struct wd_error *err)
{
    struct wd_tokenizer *tok = calloc(1, sizeof(*tok));
    if (!tok)
        return wd_error_set(err, WD_ERR_NOMEM, "tokenizer: out of memory");
    tok->mctx = pcre2_match_context_create(NULL);
    if (!tok->mctx) {
        free(tok);
        return wd_error_set(err, WD_ERR_NOMEM, "tokenizer: out of memory");
    }
    pcre2_set_match_limit(tok->mctx, TOK_MATCH_LIMIT);
    enum wd_status st = tok_load_json(tok, json, len, err);
    if (st != WD_OK) {
        wd_tokenizer_destroy(tok);
        return st;
    }
    *tok_p = tok;
    return WD_OK;
}

enum wd_status wd_tokenizer_load(const char *path, struct wd_tokenizer **tok_p,
                                 struct wd_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return wd_error_set(err, errno == ENOENT ? WD_ERR_NOT_FOUND : WD_ERR_IO,
                            "tokenizer: cannot open %s: %s", path, strerror(errno));
    struct tok_buf b = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (tok_buf_put(&b, chunk, n)) {
            fclose(f);
            free(b.p);
            return wd_error_set(err, WD_ERR_NOMEM, "tokenizer: out of memory reading %s", path);
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b.p);
        return wd_error_set(err, WD_ERR_IO, "tokenizer: read error on %s", path);
    }
    enum wd_status st = wd_tokenizer_load_from_memory(b.p ? b.p : "", b.n, tok_p, err);
    free(b.p);
    if (st != WD_OK)
        wd_error_prefix(err, "%s", path);
    return st;
}

int32_t wd_tokenizer_vocab_size(const struct wd_tokenizer *tok)
{
    return tok->vocab_size;
}

const char *wd_tokenizer_id_to_token(const struct wd_tokenizer *tok, int32_t id)
{
    if (id < 0 || id >= tok->vocab_size)
        return NULL;
    return tok->id_to_str[id];
}

int32_t wd_tokenizer_token_to_id(const struct wd_tokenizer *tok, const char *token)
{
    size_t len = strlen(token);
    int32_t id = tok_strmap_get(&tok->added_map, token, len);
    return id >= 0 ? id : tok_strmap_get(&tok->bpe.vocab, token, len);
}

int wd_tokenizer_is_special(const struct wd_tokenizer *tok, int32_t id)
{
    return id >= 0 && id < tok->vocab_size && tok->id_special[id];
}

static int ids_append(int32_t **ids, size_t *n, size_t *cap, const int32_t *src, size_t k)
{
    if (*n + k > *cap) {
        size_t c = *cap ? *cap : 64;
        while (c < *n + k)
            c *= 2;
        int32_t *v = realloc(*ids, c * sizeof(*v));
        if (!v)
            return -1;
        *ids = v;
        *cap = c;
    }
    if (k)
        memcpy(*ids + *n, src, k * sizeof(*src));
    *n += k;
    return 0;
}

enum wd_status wd_tokenizer_encode(const struct wd_tokenizer *tok, const char *text, size_t len,
                                   int add_special, int32_t **ids_p, size_t *n_p,
                                   struct wd_error *err)
{
    if (!text && len)
        return wd_error_set(err, WD_ERR_INVALID, "tokenizer: NULL text");
    size_t bad = tok_utf8_check(text ? text : "", len);
    if (bad != len)
        return wd_error_set(err, WD_ERR_INVALID,
                            "tokenizer: invalid UTF-8 at byte offset %zu "
                            "(byte 0x%02x)",
                            bad, (unsigned char)text[bad]);
    struct tok_arena arena = {0};
    struct tok_pieces pieces = {0};
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    enum wd_status st = WD_OK;
    if (add_special && ids_append(&ids, &n, &cap, tok->post.prefix, tok->post.n_prefix))
        st = WD_ERR_NOMEM;
    if (st == WD_OK)
        st = tok_split_text(tok, text ? text : "", len, &arena, &pieces, err);
    for (size_t i = 0; i < pieces.n && st == WD_OK; i++) {
        const struct tok_piece *p = &pieces.v[i];
        if (p->id >= 0)
            st = ids_append(&ids, &n, &cap, &p->id, 1) ? WD_ERR_NOMEM : WD_OK;
        else
            st = tok_bpe_word(&tok->bpe, p->s, p->n, &ids, &n, &cap);
    }
    if (st == WD_OK && add_special &&
        ids_append(&ids, &n, &cap, tok->post.suffix, tok->post.n_suffix))
        st = WD_ERR_NOMEM;
    free(pieces.v);
    tok_arena_free(&arena);
    if (st != WD_OK) {
        free(ids);
        if (st == WD_ERR_NOMEM)
            return wd_error_set(err, st, "tokenizer: out of memory while encoding");
        return st; /* err already filled by the splitter */
    }
    *ids_p = ids;
    *n_p = n;
    return WD_OK;
}

/* ByteLevel maps each character back to its byte, unless some character is outside the
 * table, in which case the token's own UTF-8 is used (how HF's ByteLevel decoder treats
 * added tokens such as <｜User｜>). */
int tok_token_bytes(const struct wd_tokenizer *tok, int32_t id, struct tok_buf *out)
{
    const char *s = tok->id_to_str[id];
    size_t len = tok->id_to_len[id];
    if (tok->decoder != TOK_DEC_BYTELEVEL)
        return tok_buf_put(out, s, len);
    if (tok_buf_reserve(out, len + 1))
        return -1;
    size_t start = out->n;
    for (size_t i = 0; i < len;) {
        int32_t cp;
        i += (size_t)tok_utf8_next(s + i, len - i, &cp);
        int b = tok_cp_to_byte(cp);
        if (b < 0) {
            out->n = start;
            return tok_buf_put(out, s, len);
        }
        out->p[out->n++] = (char)b;
    }
    out->p[out->n] = 0;
    return 0;
}

enum wd_status wd_tokenizer_decode(const struct wd_tokenizer *tok, const int32_t *ids, size_t n,
                                   int skip_special, char **text_p, struct wd_error *err)
{
    size_t len;
    return wd_tokenizer_decode_len(tok, ids, n, skip_special, text_p, &len, err);
}

enum wd_status wd_tokenizer_decode_len(const struct wd_tokenizer *tok, const int32_t *ids, size_t n,
                                       int skip_special, char **text_p, size_t *len_p,
                                       struct wd_error *err)
{
    struct tok_buf raw = {0}, out = {0};
    int first = 1, fail = 0;
    for (size_t i = 0; i < n && !fail; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tok->vocab_size || !tok->id_to_str[id])
            continue;
        if (skip_special && tok->id_special[id])
            continue;
        if (tok->decoder == TOK_DEC_NONE && !first)
            fail |= tok_buf_put(&raw, " ", 1);
        fail |= tok_token_bytes(tok, id, &raw);
        first = 0;
    }
    if (!fail && tok_utf8_lossy((const unsigned char *)(raw.p ? raw.p : ""), raw.n, 1, &out) < 0)
        fail = 1;
    if (!fail && !out.p)
        fail = tok_buf_put(&out, "", 0);
    free(raw.p);
    if (fail) {
        free(out.p);
        return wd_error_set(err, WD_ERR_NOMEM, "tokenizer: out of memory while decoding");
    }
    *text_p = out.p;
    *len_p = out.n;
    return WD_OK;
}

/*
 * tokenizer.json -> struct wd_tokenizer. Parses with jansson, validates every field
 * it uses (types, id ranges, merges naming known tokens, regexes that compile) and
 * reports the first problem as one line naming the JSON path. The JSON tree stays
 * inside this file; on error the caller destroys the half-built tokenizer.
 */
#include "common/tokenizer/tok_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static enum wd_status fmt_err(struct wd_error *err, const char *what)
{
    return wd_error_set(err, WD_ERR_FORMAT, "tokenizer.json: %s", what);
}

/* Optional boolean member: absent or null -> def; another type -> error. */
static int get_bool(json_t *obj, const char *key, int def, int *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v))
        return -1;
    *out = json_is_true(v);
    return 0;
}

static const char *type_of(json_t *obj)
{
    json_t *t = json_object_get(obj, "type");
    return json_is_string(t) ? json_string_value(t) : NULL;
}

static enum wd_status add_norm(struct wd_tokenizer *tok, json_t *n, int depth, struct wd_error *err)
{
    if (!n || json_is_null(n))
        return WD_OK;
    const char *t = json_is_object(n) ? type_of(n) : NULL;
    if (!t)
        return fmt_err(err, "normalizer must be an object with a string \"type\"");
    if (strcmp(t, "Sequence") == 0) {
        json_t *arr = json_object_get(n, "normalizers");
        if (!json_is_array(arr) || depth > 8)
            return fmt_err(err, "normalizer Sequence needs a \"normalizers\" array");
        size_t i;
        json_t *e;
        json_array_foreach(arr, i, e) WD_CHECK(add_norm(tok, e, depth + 1, err));
        return WD_OK;
    }
    enum tok_norm k;
    if (strcmp(t, "NFC") == 0)
        k = TOK_NORM_NFC;
    else if (strcmp(t, "NFD") == 0)
        k = TOK_NORM_NFD;
    else if (strcmp(t, "NFKC") == 0)
        k = TOK_NORM_NFKC;
    else if (strcmp(t, "NFKD") == 0)
        k = TOK_NORM_NFKD;
    else
        return wd_error_set(err, WD_ERR_UNSUPPORTED,
                            "tokenizer.json: normalizer type '%.64s' "
                            "is not supported",
                            t);
    enum tok_norm *v = realloc(tok->norms, (tok->n_norms + 1) * sizeof(*v));
    if (!v)
        return wd_error_set(err, WD_ERR_NOMEM, "tokenizer.json: out of memory");
    tok->norms = v;
    tok->norms[tok->n_norms++] = k;
    return WD_OK;
}

static struct tok_pretok *new_pretok(struct wd_tokenizer *tok)
{
    struct tok_pretok *v = realloc(tok->pretoks, (tok->n_pretoks + 1) * sizeof(*v));
    if (!v)
        return NULL;
    tok->pretoks = v;
    struct tok_pretok *p = &v[tok->n_pretoks++];
    memset(p, 0, sizeof(*p));
    return p;
}

static enum wd_status add_pretok(struct wd_tokenizer *tok, json_t *n, int depth,
                                 struct wd_error *err)
{
    if (!n || json_is_null(n))
        return WD_OK;
    const char *t = json_is_object(n) ? type_of(n) : NULL;
    if (!t)
        return fmt_err(err, "pre_tokenizer must be an object with a string \"type\"");
    char why[200];
    if (strcmp(t, "Sequence") == 0) {
        json_t *arr = json_object_get(n, "pretokenizers");
        if (!json_is_array(arr) || depth > 8)
            return fmt_err(err, "pre_tokenizer Sequence needs a \"pretokenizers\" array");
        size_t i;
        json_t *e;
        json_array_foreach(arr, i, e) WD_CHECK(add_pretok(tok, e, depth + 1, err));
        return WD_OK;
    }
    if (strcmp(t, "ByteLevel") == 0) {
        int aps, use_regex;
        if (get_bool(n, "add_prefix_space", 1, &aps) || get_bool(n, "use_regex", 1, &use_regex))
            return fmt_err(err, "ByteLevel pre_tokenizer flags must be booleans");
        struct tok_pretok *p = new_pretok(tok);
        if (!p)
            return wd_error_set(err, WD_ERR_NOMEM, "tokenizer.json: out of memory");
        p->kind = TOK_PRETOK_BYTELEVEL;
        p->add_prefix_space = aps;
        if (use_regex) {
            p->re = tok_regex_compile(GPT2_REGEX, strlen(GPT2_REGEX), 0, why, sizeof(why));
            if (!p->re)
                return wd_error_set(err, WD_ERR_FORMAT, "tokenizer.json: ByteLevel regex: %s", why);
        }
        return WD_OK;
    }
    if (strcmp(t, "Split") == 0) {
        json_t *pat = json_object_get(n, "pattern");
        json_t *rx = json_is_object(pat) ? json_object_get(pat, "Regex") : NULL;
        json_t *lit = json_is_object(pat) ? json_object_get(pat, "String") : NULL;
        json_t *s = rx ? rx : lit;
        if (!json_is_string(s))
            return fmt_err(err,
                           "Split pattern must be {\"Regex\": string} or {\"String\": string}");
        const char *b = json_string_value(json_object_get(n, "behavior"));
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                      "Contiguous"};
        int behavior = -1;
        for (int i = 0; b && i < 5; i++)
            if (strcmp(b, names[i]) == 0)
                behavior = i;
        if (behavior < 0)
            return fmt_err(err, "Split behavior must be Removed, Isolated, MergedWithPrevious, "
                                "MergedWithNext or Contiguous");
        int invert;
        if (get_bool(n, "invert", 0, &invert))
            return fmt_err(err, "Split invert must be a boolean");
        struct tok_pretok *p = new_pretok(tok);
        if (!p)
            return wd_error_set(err, WD_ERR_NOMEM, "tokenizer.json: out of memory");
        p->kind = TOK_PRETOK_SPLIT;
        p->behavior = (enum tok_split_behavior)behavior;
        p->invert = invert;
        p->re = tok_regex_compile(json_string_value(s), json_string_length(s), s == lit, why,
                                  sizeof(why));
        if (!p->re)
            return wd_error_set(err, WD_ERR_FORMAT, "tokenizer.json: Split regex /%.80s/: %s",
                                json_string_value(s), why);
        return WD_OK;
    }
    return wd_error_set(err, WD_ERR_UNSUPPORTED,
                        "tokenizer.json: pre_tokenizer type '%.64s' is not supported", t);
}

static int ids_append(int32_t **v, size_t *n, int32_t id)
{
    int32_t *nv = realloc(*v, (*n + 1) * sizeof(*nv));
    if (!nv)
        return -1;
    nv[(*n)++] = id;
    *v = nv;
    return 0;
}

/* ["[CLS]", 101] as Bert/Roberta processors write their tokens. */
static int token_pair_id(json_t *pair, int32_t *id)
{
    json_t *v = json_array_get(pair, 1);
    if (!json_is_array(pair) || !json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) >= TOK_MAX_ID)
        return -1;
    *id = (int32_t)json_integer_value(v);
    return 0;
}

static enum wd_status add_post(struct wd_tokenizer *tok, json_t *n, int depth, struct wd_error *err)
{
    if (!n || json_is_null(n))
        return WD_OK;
    const char *t = json_is_object(n) ? type_of(n) : NULL;
    if (!t)
        return fmt_err(err, "post_processor must be an object with a string \"type\"");
    struct tok_post *pp = &tok->post;
    /* Later processors wrap earlier ones: their prefix goes first, their suffix last. */
    int32_t *pre = NULL, *suf = NULL;
    size_t n_pre = 0, n_suf = 0;
    if (strcmp(t, "ByteLevel") == 0)
        return WD_OK; /* only offsets change */
    if (strcmp(t, "Sequence") == 0) {
        json_t *arr = json_object_get(n, "processors");
        if (!json_is_array(arr) || depth > 8)
            return fmt_err(err, "post_processor Sequence needs a \"processors\" array");
        size_t i;
        json_t *e;
        json_array_foreach(arr, i, e) WD_CHECK(add_post(tok, e, depth + 1, err));
        return WD_OK;
    }
    if (strcmp(t, "BertProcessing") == 0 || strcmp(t, "RobertaProcessing") == 0) {
        int32_t cls, sep;
        if (token_pair_id(json_object_get(n, "cls"), &cls) ||
            token_pair_id(json_object_get(n, "sep"), &sep))
            return fmt_err(err, "Bert/Roberta processor needs \"cls\" and \"sep\" [token, id]");
        if (ids_append(&pre, &n_pre, cls) || ids_append(&suf, &n_suf, sep))
            goto nomem;
    } else if (strcmp(t, "TemplateProcessing") == 0) {
        json_t *single = json_object_get(n, "single"),
               *specials = json_object_get(n, "special_tokens");
        if (!json_is_array(single) || (specials && !json_is_object(specials)))
            return fmt_err(err, "TemplateProcessing needs a \"single\" array");
        int seen_seq = 0;
        size_t i;
        json_t *item;
        json_array_foreach(single, i, item)
        {
            json_t *sp = json_object_get(item, "SpecialToken");
            if (json_object_get(item, "Sequence")) {
                if (seen_seq++) {
                    free(pre);
                    free(suf);
                    return fmt_err(err, "TemplateProcessing single has two sequences");
                }
                continue;
            }
            json_t *name = json_object_get(sp, "id");
            json_t *st =
                json_is_string(name) ? json_object_get(specials, json_string_value(name)) : NULL;
            json_t *ids = json_object_get(st, "ids");
            if (!json_is_array(ids)) {
                free(pre);
                free(suf);
                return fmt_err(err, "TemplateProcessing names a special token missing from "
                                    "special_tokens");
            }
            size_t k;
            json_t *idv;
            json_array_foreach(ids, k, idv)
            {
                if (!json_is_integer(idv) || json_integer_value(idv) < 0 ||
                    json_integer_value(idv) >= TOK_MAX_ID) {
                    free(pre);
                    free(suf);
                    return fmt_err(err, "TemplateProcessing special token ids must be integers");
                }
                int32_t id = (int32_t)json_integer_value(idv);
                if (seen_seq ? ids_append(&suf, &n_suf, id) : ids_append(&pre, &n_pre, id))
                    goto nomem;
            }
        }
    } else {
        return wd_error_set(err, WD_ERR_UNSUPPORTED,
                            "tokenizer.json: post_processor type '%.64s' is not supported", t);
    }
    int32_t *np = malloc((n_pre + pp->n_prefix + 1) * sizeof(*np));
    int32_t *ns = malloc((n_suf + pp->n_suffix + 1) * sizeof(*ns));
    if (!np || !ns) {
        free(np);
        free(ns);
        goto nomem;
    }
    if (n_pre)
        memcpy(np, pre, n_pre * sizeof(*np));
    if (pp->n_prefix)
        memcpy(np + n_pre, pp->prefix, pp->n_prefix * sizeof(*np));
    if (pp->n_suffix)
        memcpy(ns, pp->suffix, pp->n_suffix * sizeof(*ns));
    if (n_suf)
        memcpy(ns + pp->n_suffix, suf, n_suf * sizeof(*ns));
    free(pp->prefix);
    free(pp->suffix);
    pp->prefix = np;
    pp->suffix = ns;
    pp->n_prefix += n_pre;
    pp->n_suffix += n_suf;
    free(pre);
    free(suf);
    return WD_OK;
nomem:
    free(pre);
    free(suf);
    return wd_error_set(err, WD_ERR_NOMEM, "tokenizer.json: out of memory");
}

static enum wd_status load_decoder(struct wd_tokenizer *tok, json_t *n, struct wd_error *err)
{
    tok->decoder = TOK_DEC_NONE;
    if (!n || json_is_null(n))
        return WD_OK;
    const char *t = json_is_object(n) ? type_of(n) : NULL;
    if (!t)
        return fmt_err(err, "decoder must be an object with a string \"type\"");
    if (strcmp(t, "Sequence") == 0) { /* accepted when it is just ByteLevel */
        json_t *arr = json_object_get(n, "decoders");
        if (json_is_array(arr) && json_array_size(arr) == 1)
            return load_decoder(tok, json_array_get(arr, 0), err);
    } else if (strcmp(t, "ByteLevel") == 0) {
        tok->decoder = TOK_DEC_BYTELEVEL;
        return WD_OK;
    }
    return wd_error_set(err, WD_ERR_UNSUPPORTED,
                        "tokenizer.json: decoder type '%.64s' is not supported", t);
}

/* Optional string member: absent/null -> NULL copy; else strdup. */
static int get_opt_str(json_t *obj, const char *key, char **out)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return -1;
    *out = strdup(json_string_value(v));
    return *out ? 0 : -2;
}

static enum wd_status load_bpe(struct wd_tokenizer *tok, json_t *model, int32_t *max_id,
                               struct wd_error *err)
{
    struct tok_bpe *bpe = &tok->bpe;
    const char *t = type_of(model);
    if (t && strcmp(t, "BPE") != 0)
        return wd_error_set(err, WD_ERR_UNSUPPORTED,
                            "tokenizer.json: model type '%.64s' is not supported (only BPE)", t);
    json_t *vocab = json_object_get(model, "vocab");
    json_t *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab))
        return fmt_err(err, "model.vocab is missing or not an object");
    if (merges && !json_is_array(merges) && !json_is_null(merges))
        return fmt_err(err, "model.merges must be an array");
    json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) &&
        !(json_is_number(dropout) && json_number_value(dropout) == 0.0))
        return wd_error_set(err, WD_ERR_UNSUPPORTED,
                            "tokenizer.json: BPE dropout is not supported");
    if (get_bool(model, "fuse_unk", 0, &bpe->fuse_unk) ||
        get_bool(model, "byte_fallback", 0, &bpe->byte_fallback) ||
        get_bool(model, "ignore_merges", 0, &bpe->ignore_merges))
        return fmt_err(err, "model flags fuse_unk/byte_fallback/ignore_merges must be booleans");
    char *unk = NULL;
    if (get_opt_str(model, "unk_token", &unk) ||
        get_opt_str(model, "continuing_subword_prefix", &bpe->prefix) ||
        get_opt_str(model, "end_of_word_suffix", &bpe->suffix)) {
        free(unk);
        return fmt_err(err, "model unk_token/continuing_subword_prefix/end_of_word_suffix must "
                            "be strings or null");
    }
    if (bpe->prefix && !bpe->prefix[0]) { /* "" behaves like no prefix */
        free(bpe->prefix);
        bpe->prefix = NULL;
    }
    if (bpe->suffix && !bpe->suffix[0]) {
        free(bpe->suffix);
        bpe->suffix = NULL;
    }

    size_t total = 0, n = json_object_size(vocab);
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) total += strlen(key) + 1;
    bpe->strings = malloc(total ? total : 1);
    if (!bpe->strings || tok_strmap_init(&bpe->vocab, n)) {
        free(unk);
        return wd_error_set(err, WD_ERR_NOMEM, "tokenizer.json: out of memory for the vocab");
    }
    size_t off = 0;
    json_object_foreach(vocab, key, val)
    {
        if (!json_is_integer(val) || json_integer_value(val) < 0 ||
            json_integer_value(val) >= TOK_MAX_ID) {
            free(unk);
            return wd_error_set(err, WD_ERR_FORMAT,
                                "tokenizer.json: vocab id of '%.64s' is not "
                                "an integer in [0, %d)",
                                key, TOK_MAX_ID);
        }
        size_t kl = strlen(key);
        memcpy(bpe->strings + off, key, kl + 1);
        int32_t id = (int32_t)json_integer_value(val);
        if (tok_strmap_put(&bpe->vocab, bpe->strings + off, kl, id)) {
            free(unk);
            return wd_error_set(err, WD_ERR_NOMEM, "tokenizer.json: out of memory for the vocab");
        }
        if (id > *max_id)
            *max_id = id;
        off += kl + 1;
    }
    bpe->unk_id = -1;
    if (unk) {
        bpe->unk_id = tok_strmap_get(&bpe->vocab, unk, strlen(unk));
        if (bpe->unk_id < 0) {
            wd_error_set(err, WD_ERR_FORMAT,
                         "tokenizer.json: unk_token '%.64s' is not in the "
                         "vocab",
                         unk);
            free(unk);
            return WD_ERR_FORMAT;
        }
        free(unk);
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof(name), "<0x%02X>", b);
        bpe->byte_ids[b] = tok_strmap_get(&bpe->vocab, name, strlen(name));
    }

    size_t n_merges = json_is_array(merges) ? json_array_size(merges) : 0;
    if (tok_u64map_init(&bpe->merges, n_merges))
        return wd_error_set(err, WD_ERR_NOMEM, "tokenizer.json: out of memory for merges");
    size_t pl = bpe->prefix ? strlen(bpe->prefix) : 0;
    char small[512];
    for (size_t i = 0; i < n_merges; i++) {
        json_t *m = json_array_get(merges, i);
        const char *a, *b;
        size_t al, bl;
        if (json_is_string(m)) { /* "a b" */
            a = json_string_value(m);
            const char *sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return wd_error_set(err, WD_ERR_FORMAT,
                                    "tokenizer.json: merge %zu '%.64s' is "
                                    "not two tokens separated by one space",
                                    i, a);
            al = (size_t)(sp - a);
            b = sp + 1;
            bl = strlen(b);
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            al = strlen(a);
            bl = strlen(b);
        } else {
            return wd_error_set(err, WD_ERR_FORMAT,
                                "tokenizer.json: merge %zu is neither \"a b\" "
                                "nor [a, b]",
                                i);
        }
        int32_t ia = tok_strmap_get(&bpe->vocab, a, al), ib = tok_strmap_get(&bpe->vocab, b, bl);
        if (ia < 0 || ib < 0)
            return wd_error_set(err, WD_ERR_FORMAT,
                                "tokenizer.json: merge %zu refers to token "
                                "'%.*s' that is not in the vocab",
                                i, (int)(ia < 0 ? (al > 64 ? 64 : al) : (bl > 64 ? 64 : bl)),
                                ia < 0 ? a : b);
        size_t skip = pl && bl >= pl && memcmp(b, bpe->prefix, pl) == 0 ? pl : 0;
        size_t ml = al + bl - skip;
        char *joined = ml <= sizeof(small) ? small : malloc(ml);
        if (!joined)
            return wd_error_set(err, WD_ERR_NOMEM, "tokenizer.json: out of memory for merges");
        memcpy(joined, a, al);
        memcpy(joined + al, b + skip, bl - skip);
        int32_t im = tok_strmap_get(&bpe->vocab, joined, ml);
        if (joined != small)
            free(joined);
        if (im < 0)
            return wd_error_set(err, WD_ERR_FORMAT,
                                "tokenizer.json: merge %zu ('%.32s' + "
                                "'%.32s') produces a token that is not in the vocab",
                                i, a, b);
        uint64_t k = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
        if (tok_u64map_put(&bpe->merges, k, (int32_t)i, im))
            return wd_error_set(err, WD_ERR_NOMEM, "tokenizer.json: out of memory for merges");
    }
    return tok_bpe_init_cache(bpe) == WD_OK
               ? WD_OK
               : wd_error_set(err, WD_ERR_NOMEM, "tokenizer.json: out of memory");
}

static enum wd_status load_added(struct wd_tokenizer *tok, json_t *arr, int32_t *max_id,
                                 struct wd_error *err)
{
    if (tok_trie_init(&tok->trie_raw) || tok_trie_init(&tok->trie_norm) ||
        tok_strmap_init(&tok->added_map, 16))
        return wd_error_set(err, WD_ERR_NOMEM, "tokenizer.json: out of memory");
    if (!arr || json_is_null(arr))
        return WD_OK;
    if (!json_is_array(arr))
        return fmt_err(err, "added_tokens must be an array");
    size_t n = json_array_size(arr);
    tok->added = calloc(n ? n : 1, sizeof(*tok->added));
    if (!tok->added)
        return wd_error_set(err, WD_ERR_NOMEM, "tokenizer.json: out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(arr, i);
        json_t *id = json_object_get(e, "id"), *content = json_object_get(e, "content");
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= TOK_MAX_ID || !json_is_string(content) ||
            json_string_length(content) == 0)
            return wd_error_set(err, WD_ERR_FORMAT,
                                "tokenizer.json: added_tokens[%zu] needs an "
                                "integer id in [0, %d) and a non-empty string content",
                                i, TOK_MAX_ID);
        struct tok_added *a = &tok->added[tok->n_added];
        if (get_bool(e, "single_word", 0, &a->single_word) ||
            get_bool(e, "lstrip", 0, &a->lstrip) || get_bool(e, "rstrip", 0, &a->rstrip) ||
            get_bool(e, "special", 0, &a->special) ||
            get_bool(e, "normalized", !a->special, &a->normalized))
            return wd_error_set(err, WD_ERR_FORMAT,
                                "tokenizer.json: added_tokens[%zu] flags "
                                "must be booleans",
                                i);
        a->len = json_string_length(content);
        a->content = malloc(a->len + 1);
        if (!a->content)
            return wd_error_set(err, WD_ERR_NOMEM, "tokenizer.json: out of memory");
        memcpy(a->content, json_string_value(content), a->len + 1);
        a->id = (int32_t)json_integer_value(id);
        tok->n_added++;
        if (memchr(a->content, 0, a->len))
            return wd_error_set(err, WD_ERR_FORMAT,
                                "tokenizer.json: added_tokens[%zu] content "
                                "contains a NUL",
                                i);
        if (a->id > *max_id)
            *max_id = a->id;
        if (tok_strmap_get(&tok->added_map, a->content, a->len) < 0 &&
            tok_strmap_put(&tok->added_map, a->content, a->len, a->id))
            return wd_error_set(err, WD_ERR_NOMEM, "tokenizer.json: out of memory");
    }
    /* Special tokens go into the tries first, then the others, as HF orders them. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < tok->n_added; i++) {
            struct tok_added *a = &tok->added[i];
            if (a->special != (pass == 0))
                continue;
            int rc;
            if (!a->normalized) {
                rc = tok_trie_add(&tok->trie_raw, a->content, a->len, (int32_t)i);
            } else {
                struct tok_arena arena = {0};
                const char *ns;
                size_t nn;
                enum wd_status st = tok_normalize(tok, a->content, a->len, &arena, &ns, &nn);
                rc = st != WD_OK;
                if (!rc) {
                    a->norm = malloc(nn + 1);
                    rc = !a->norm;
                    if (!rc) {
                        memcpy(a->norm, ns, nn);
                        a->norm[nn] = 0;
                        a->norm_len = nn;
                        rc = tok_trie_add(&tok->trie_norm, a->norm, nn, (int32_t)i);
                    }
                }
                tok_arena_free(&arena);
            }
            if (rc)
                return wd_error_set(err, WD_ERR_NOMEM, "tokenizer.json: out of memory");
        }
    }
    return WD_OK;
}

static enum wd_status build_id_tables(struct wd_tokenizer *tok, int32_t max_id,
                                      struct wd_error *err)
{
    tok->vocab_size = max_id + 1;
    size_t n = (size_t)tok->vocab_size;
    tok->id_to_str = calloc(n ? n : 1, sizeof(*tok->id_to_str));
    tok->id_to_len = calloc(n ? n : 1, sizeof(*tok->id_to_len));
    tok->id_special = calloc(n ? n : 1, 1);
    if (!tok->id_to_str || !tok->id_to_len || !tok->id_special)
        return wd_error_set(err, WD_ERR_NOMEM, "tokenizer.json: out of memory");
    const struct tok_strmap *v = &tok->bpe.vocab;
    size_t off = 0;
    for (size_t i = 0; i < v->n; i++) { /* walk the strings blob: same order as inserted */
        const char *s = tok->bpe.strings + off;
        size_t len = strlen(s);
        int32_t id = tok_strmap_get(v, s, len);
        if (id >= 0 && !tok->id_to_str[id]) {
            tok->id_to_str[id] = s;
            tok->id_to_len[id] = (uint32_t)len;
        }
        off += len + 1;
    }
    for (size_t i = 0; i < tok->n_added; i++) {
        /* HF stores a normalized token under its normalized content: that is what
         * id_to_token and decode give back */
        const struct tok_added *a = &tok->added[i];
        tok->id_to_str[a->id] = a->norm ? a->norm : a->content;
        tok->id_to_len[a->id] = (uint32_t)(a->norm ? a->norm_len : a->len);
        tok->id_special[a->id] = (uint8_t)a->special;
        if (a->norm && tok_strmap_get(&tok->added_map, a->norm, a->norm_len) < 0 &&
            tok_strmap_put(&tok->added_map, a->norm, a->norm_len, a->id))
            return wd_error_set(err, WD_ERR_NOMEM, "tokenizer.json: out of memory");
    }
    for (size_t i = 0; i < n; i++)
        if (tok->id_to_len[i] > tok->max_token_bytes)
            tok->max_token_bytes = tok->id_to_len[i];
    for (size_t i = 0; i < tok->post.n_prefix + tok->post.n_suffix; i++) {
        int32_t id =
            i < tok->post.n_prefix ? tok->post.prefix[i] : tok->post.suffix[i - tok->post.n_prefix];
        if (id >= tok->vocab_size)
            return wd_error_set(err, WD_ERR_FORMAT,
                                "tokenizer.json: post_processor id %d is "
                                "outside the vocab",
                                id);
    }
    return WD_OK;
}

enum wd_status tok_load_json(struct wd_tokenizer *tok, const char *json, size_t len,
                             struct wd_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    if (!root)
        return wd_error_set(err, WD_ERR_FORMAT,
                            "tokenizer.json: bad JSON at line %d column %d: "
                            "%s",
                            jerr.line, jerr.column, jerr.text);
    enum wd_status st = WD_OK;
    json_t *model = json_object_get(root, "model");
    int32_t max_id = -1;
    if (!json_is_object(root))
        st = fmt_err(err, "top level is not an object");
    else if (!json_is_object(model))
        st = fmt_err(err, "\"model\" is missing or not an object");
    if (st == WD_OK)
        st = add_norm(tok, json_object_get(root, "normalizer"), 0, err);
    if (st == WD_OK)
        st = add_pretok(tok, json_object_get(root, "pre_tokenizer"), 0, err);
    if (st == WD_OK)
        st = load_bpe(tok, model, &max_id, err);
    if (st == WD_OK)
        st = load_added(tok, json_object_get(root, "added_tokens"), &max_id, err);
    if (st == WD_OK)
        st = add_post(tok, json_object_get(root, "post_processor"), 0, err);
    if (st == WD_OK)
        st = load_decoder(tok, json_object_get(root, "decoder"), err);
    if (st == WD_OK)
        st = build_id_tables(tok, max_id, err);
    json_decref(root);
    return st;
}

/*
 * The encode pipeline before BPE, in Hugging Face's order: split the raw text on
 * non-normalized added tokens, normalize the other pieces and split them on the
 * normalized added tokens, then run the pre-tokenizers (Split, ByteLevel) on every
 * piece that is not already a token. Pieces point into the input or into the
 * call's arena; nothing here outlives one encode call.
 *
 * Regexes: HF compiles patterns with Oniguruma (its default syntax), wideep with PCRE2, so
 * tok_regex_compile rewrites what the two spell or mean differently: \s is Unicode
 * White_Space in Oniguruma (PCRE2's also takes U+180E); \uHHHH is a code point (PCRE2
 * refuses \u); \h / \H are hex digit / not one (horizontal space in PCRE2); \v is U+000B
 * alone (any vertical space in PCRE2); the inline option m is dot-all (PCRE2's s; '^' and
 * '$' always work per line in Oniguruma, hence PCRE2_MULTILINE).
 */
#include "common/tokenizer/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static const char WS_CLASS[] =
    "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
    "\\x{202F}\\x{205F}\\x{3000}";

/* Copies the \\p / \\P escape at pattern[*i] (pointing at the 'p'/'P') and adds the code
 * points of newer Unicode versions to general categories. Returns 0, or -1 out of memory. */
static int property(const char *pattern, size_t len, size_t *i, int in_class, struct tok_buf *b)
{
    size_t at = *i, name = at + 1, name_len = 1, end = at + 1;
    int negated = pattern[at] == 'P';
    if (name < len && pattern[name] == '{') {
        const char *close = memchr(pattern + name, '}', len - name);
        if (!close)
            return tok_buf_put(b, pattern + at - 1, len - at + 1) ? -1 : (*i = len - 1, 0);
        name++;
        name_len = (size_t)(close - (pattern + name));
        end = (size_t)(close - pattern);
    } else if (name >= len) {
        return tok_buf_put(b, pattern + at - 1, 2);
    }
    *i = end;
    struct tok_buf delta = {0};
    size_t nd = 0;
    if (name_len >= 1 && name_len <= 2 && pattern[name] != '^')
        nd = tok_unicode_delta(pattern + name, name_len, &delta);
    int rc = 0;
    if (nd == (size_t)-1)
        rc = -1;
    else if (nd == 0)
        rc = tok_buf_put(b, pattern + at - 1, end - at + 2);
    else if (in_class)
        rc = tok_buf_put(b, pattern + at - 1, end - at + 2) || tok_buf_put(b, delta.p, delta.n);
    else
        rc = tok_buf_put(b, negated ? "[^\\p" : "[\\p", negated ? 4 : 3) ||
             tok_buf_put(b, pattern + at + 1, end - at) || tok_buf_put(b, delta.p, delta.n) ||
             tok_buf_put(b, "]", 1);
    free(delta.p);
    return rc;
}

/* Value of a hex digit, -1 for another character. */
static int hex_val(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Oniguruma's \uHHHH at pattern[*i] (the 'u'; exactly four hex digits follow, else the
 * escape is copied and PCRE2 refuses it, as Oniguruma does) as PCRE2's \x{HHHH}. A
 * surrogate matches nothing in Oniguruma's UTF-8 and is an error in PCRE2's: outside a
 * class it becomes a never-matching group; inside one it is refused (*refuse_p set).
 * Returns 0, or -1 out of memory. */
static int unicode_escape(const char *pattern, size_t len, size_t *i, int in_class,
                          struct tok_buf *b, const char **refuse_p)
{
    size_t at = *i;
    unsigned cp = 0;
    for (size_t k = 1; k <= 4; k++) {
        int h = at + k < len ? hex_val(pattern[at + k]) : -1;
        if (h < 0)
            return tok_buf_put(b, pattern + at - 1, 2);
        cp = cp * 16 + (unsigned)h;
    }
    *i = at + 4;
    if (cp >= 0xD800 && cp <= 0xDFFF) {
        if (in_class)
            *refuse_p = "a surrogate \\u escape inside a character class is not supported";
        return in_class ? 0 : tok_buf_put(b, "(?!)", 4);
    }
    char x[16];
    int n = snprintf(x, sizeof(x), "\\x{%04X}", cp);
    return tok_buf_put(b, x, (size_t)n);
}

/* An inline option group "(?imx-imx)" or "(?imx-imx:" at pattern[i] (the '('): its length,
 * 0 if it is not one. Oniguruma's m is PCRE2's s (dot matches newline). */
static size_t option_group(const char *pattern, size_t len, size_t i)
{
    if (i + 2 >= len || pattern[i + 1] != '?')
        return 0;
    size_t j = i + 2;
    while (j < len && pattern[j] && strchr("imx-", pattern[j]))
        j++;
    if (j == i + 2 || j >= len || (pattern[j] != ')' && pattern[j] != ':'))
        return 0;
    return j - i;
}

pcre2_code *tok_regex_compile(const char *pattern, size_t len, int literal, char *why,
                              size_t why_len)
{
    int errcode = 0;
    PCRE2_SIZE erroff = 0;
    pcre2_code *re;
    if (literal) {
        re = pcre2_compile((PCRE2_SPTR)pattern, len, PCRE2_LITERAL | PCRE2_UTF, &errcode, &erroff,
                           NULL);
    } else {
        struct tok_buf b = {0};
        int in_class = 0, ok = 1;
        const char *refuse = NULL;
        for (size_t i = 0; i < len && ok && !refuse; i++) {
            char c = pattern[i];
            if (c == '\\' && i + 1 < len) {
                char e = pattern[++i];
                if (e == 'u')
                    ok = !unicode_escape(pattern, len, &i, in_class, &b, &refuse);
                else if (e == 'h' || e == 'H')
                    ok = !tok_buf_put(&b, in_class ? "[:" : "[[:", in_class ? 2 : 3) &&
                         !tok_buf_put(&b, e == 'h' ? "xdigit" : "^xdigit", e == 'h' ? 6 : 7) &&
                         !tok_buf_put(&b, in_class ? ":]" : ":]]", in_class ? 2 : 3);
                else if (e == 'v')
                    ok = !tok_buf_put(&b, "\\x0B", 4);
                else if (e == 's')
                    ok = in_class ? !tok_buf_put(&b, WS_CLASS, strlen(WS_CLASS))
                                  : !tok_buf_put(&b, "[", 1) &&
                                        !tok_buf_put(&b, WS_CLASS, strlen(WS_CLASS)) &&
                                        !tok_buf_put(&b, "]", 1);
                else if (e == 'S' && !in_class)
                    ok = !tok_buf_put(&b, "[^", 2) &&
                         !tok_buf_put(&b, WS_CLASS, strlen(WS_CLASS)) && !tok_buf_put(&b, "]", 1);
                else if (e == 'p' || (e == 'P' && !in_class))
                    ok = !property(pattern, len, &i, in_class, &b);
                else
                    ok = !tok_buf_put(&b, pattern + i - 1, 2);
                continue;
            }
            if (!in_class && c == '[') {
                in_class = 1;
                ok = !tok_buf_put(&b, "[", 1);
                /* a ']' right after '[' or '[^' is a literal */
                if (ok && i + 1 < len && pattern[i + 1] == '^')
                    ok = !tok_buf_put(&b, pattern + ++i, 1);
                if (ok && i + 1 < len && pattern[i + 1] == ']')
                    ok = !tok_buf_put(&b, pattern + ++i, 1);
                continue;
            }
            if (in_class && c == '[' && i + 1 < len && pattern[i + 1] == ':') {
                const char *end = memchr(pattern + i + 2, ']', len - i - 2);
                size_t n = end ? (size_t)(end - (pattern + i)) + 1 : 1;
                ok = !tok_buf_put(&b, pattern + i, n);
                i += n - 1;
                continue;
            }
            size_t opt = in_class ? 0 : option_group(pattern, len, i);
            if (opt) {
                for (size_t k = 0; k < opt && ok; k++)
                    ok = !tok_buf_put(&b, pattern[i + k] == 'm' ? "s" : pattern + i + k, 1);
                i += opt - 1;
                continue;
            }
            if (in_class && c == ']')
                in_class = 0;
            ok = !tok_buf_put(&b, &c, 1);
        }
        if (!ok || refuse) {
            free(b.p);
            snprintf(why, why_len, "%s", refuse ? refuse : "out of memory");
            return NULL;
        }
        re = pcre2_compile((PCRE2_SPTR)(b.p ? b.p : ""), b.n,
                           PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &errcode, &erroff, NULL);
        free(b.p);
    }
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(errcode, msg, sizeof(msg));
        snprintf(why, why_len, "%s", (const char *)msg);
    }
    return re;
}

static int pieces_push(struct tok_pieces *p, const char *s, size_t n, int32_t id)
{
    if (n == 0 && id < 0)
        return 0; /* empty pieces vanish, as in HF */
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        struct tok_piece *v = realloc(p->v, cap * sizeof(*v));
        if (!v)
            return -1;
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = (struct tok_piece){s, n, id};
    return 0;
}

/* Code point ending at s[end) (end > 0). */
static int32_t prev_cp(const char *s, size_t end, size_t *start)
{
    size_t i = end - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80)
        i--;
    int32_t cp;
    tok_utf8_next(s + i, end - i, &cp);
    if (start)
        *start = i;
    return cp;
}

/* Splits s on the added tokens of trie: leftmost-longest matches, with the single_word,
 * lstrip and rstrip rules of HF's AddedVocabulary. */
static int split_added(const struct wd_tokenizer *tok, const struct tok_trie *t, const char *s,
                       size_t n, struct tok_pieces *out)
{
    size_t start_offset = 0, i = 0;
    while (i < n) {
        size_t mlen = 0;
        int32_t idx = tok_trie_longest(t, s + i, n - i, &mlen);
        if (idx < 0) {
            i++;
            continue;
        }
        const struct tok_added *a = &tok->added[idx];
        size_t start = i, stop = i + mlen;
        if (a->single_word) {
            int32_t cp;
            int before = start > 0 && tok_is_word_char(prev_cp(s, start, NULL));
            int after = stop < n && (tok_utf8_next(s + stop, n - stop, &cp), tok_is_word_char(cp));
            if (before || after) {
                i = stop;
                continue;
            }
        }
        if (a->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t ps;
                if (!tok_is_white_space(prev_cp(s, ns, &ps)))
                    break;
                ns = ps;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) {
            while (stop < n) {
                int32_t cp;
                int k = tok_utf8_next(s + stop, n - stop, &cp);
                if (!tok_is_white_space(cp))
                    break;
                stop += (size_t)k;
            }
        }
        if (start_offset < start && pieces_push(out, s + start_offset, start - start_offset, -1))
            return -1;
        if (pieces_push(out, s + start, stop - start, a->id))
            return -1;
        start_offset = stop;
        i = stop;
    }
    if (start_offset < n && pieces_push(out, s + start_offset, n - start_offset, -1))
        return -1;
    return 0;
}

#define HANGUL_TBASE 0x11A7

/* One normalization form over s via utf8proc; result in the arena. */
static enum wd_status normalize_run(enum tok_norm form, const char *s, size_t n,
                                    struct tok_buf *out)
{
    utf8proc_option_t opt = UTF8PROC_STABLE;
    switch (form) {
    case TOK_NORM_NFC:
        opt |= UTF8PROC_COMPOSE;
        break;
    case TOK_NORM_NFD:
        opt |= UTF8PROC_DECOMPOSE;
        break;
    case TOK_NORM_NFKC:
        opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
        break;
    case TOK_NORM_NFKD:
        opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
        break;
    }
    if (n == 0)
        return WD_OK;
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, opt);
    if (r < 0) {
        free(dst);
        return r == UTF8PROC_ERROR_NOMEM ? WD_ERR_NOMEM : WD_ERR_INVALID;
    }
    int fail = tok_buf_put(out, dst, (size_t)r);
    free(dst);
    return fail ? WD_ERR_NOMEM : WD_OK;
}

enum wd_status tok_normalize(const struct wd_tokenizer *tok, const char *s, size_t n,
                             struct tok_arena *arena, const char **out, size_t *out_n)
{
    *out = s;
    *out_n = n;
    int ascii = 1;
    for (size_t i = 0; i < n && ascii; i++)
        ascii = (unsigned char)s[i] < 0x80;
    if (ascii) /* ASCII is invariant under every Unicode normalization form */
        return WD_OK;
    struct tok_buf b = {0};
    enum wd_status st = WD_OK;
    for (size_t k = 0; k < tok->n_norms && st == WD_OK; k++) {
        /* Runs between code points HF's tables do not know are normalized on their own;
         * those code points pass through, as they do in HF. So does U+11A7: it is TBase, not
         * a trailing consonant (those are U+11A8..U+11C2), so it composes with nothing, but
         * utf8proc (2.8 at least) adds it to a preceding LV syllable as T index 0, which
         * drops it from the text. A starter that composes with nothing is an exact place to
         * cut the run. */
        b.n = 0;
        size_t run = 0, i = 0;
        while (i < *out_n && st == WD_OK) {
            int32_t cp;
            int len = tok_utf8_next(*out + i, *out_n - i, &cp);
            if (cp == HANGUL_TBASE || (cp >= 0x300 && tok_norm_is_opaque(cp))) {
                st = normalize_run(tok->norms[k], *out + run, i - run, &b);
                if (st == WD_OK && tok_buf_put(&b, *out + i, (size_t)len))
                    st = WD_ERR_NOMEM;
                run = i + (size_t)len;
            }
            i += (size_t)len;
        }
        if (st == WD_OK)
            st = normalize_run(tok->norms[k], *out + run, *out_n - run, &b);
        if (st != WD_OK)
            break;
        char *copy = tok_arena_alloc(arena, b.n + 1);
        if (!copy) {
            st = WD_ERR_NOMEM;
            break;
        }
        memcpy(copy, b.p ? b.p : "", b.n);
        copy[b.n] = 0;
        *out = copy;
        *out_n = b.n;
    }
    free(b.p);
    return st;
}

struct match {
    size_t start, end;
    int is_match;
};

/* All matches of re in s as a cover of s: (range, is_match) in order, like HF's find_matches
 * over Oniguruma's find_iter (an empty match right after a match is skipped). */
static enum wd_status find_matches(const struct wd_tokenizer *tok, const pcre2_code *re,
                                   const char *s, size_t n, struct match **mv, size_t *mn)
{
    size_t cap = 16, cnt = 0, prev = 0, start = 0;
    long last_end = -1;
    struct match *v = malloc(cap * sizeof(*v));
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    enum wd_status st = v && md ? WD_OK : WD_ERR_NOMEM;
    while (st == WD_OK && start <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, md, tok->mctx);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            st = rc == PCRE2_ERROR_NOMEMORY ? WD_ERR_NOMEM : WD_ERR_INVALID;
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (ms == me && last_end == (long)me) {
            if (start >= n)
                break;
            int32_t cp;
            start += (size_t)tok_utf8_next(s + start, n - start, &cp);
            continue;
        }
        if (cnt + 2 > cap) {
            cap *= 2;
            struct match *nv = realloc(v, cap * sizeof(*nv));
            if (!nv) {
                st = WD_ERR_NOMEM;
                break;
            }
            v = nv;
        }
        if (prev != ms)
            v[cnt++] = (struct match){prev, ms, 0};
        v[cnt++] = (struct match){ms, me, 1};
        prev = me;
        start = me;
        last_end = (long)me;
    }
    if (st == WD_OK && prev != n) {
        struct match *nv = cnt + 1 > cap ? realloc(v, (cap + 1) * sizeof(*nv)) : v;
        if (!nv)
            st = WD_ERR_NOMEM;
        else {
            v = nv;
            v[cnt++] = (struct match){prev, n, 0};
        }
    }
    pcre2_match_data_free(md);
    if (st != WD_OK) {
        free(v);
        return st;
    }
    *mv = v;
    *mn = cnt;
    return WD_OK;
}

/* HF's NormalizedString::split: turns the match cover into pieces per behavior. */
static enum wd_status split_regex(const struct wd_tokenizer *tok, const struct tok_pretok *p,
                                  const char *s, size_t n, struct tok_pieces *out)
{
    struct match *m = NULL;
    size_t mn = 0;
    enum wd_status st = find_matches(tok, p->re, s, n, &m, &mn);
    if (st != WD_OK)
        return st;
    for (size_t i = 0; i < mn; i++)
        m[i].is_match ^= p->invert;
    /* Build (start, end, remove) splits in place. */
    size_t k = 0;
    int prev_match = 0;
    switch (p->behavior) {
    case TOK_SPLIT_ISOLATED:
        for (size_t i = 0; i < mn; i++)
            m[i].is_match = 0;
        k = mn;
        break;
    case TOK_SPLIT_REMOVED:
        k = mn;
        break;
    case TOK_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < mn; i++) {
            int im = m[i].is_match;
            if (im == prev_match && k > 0)
                m[k - 1].end = m[i].end;
            else
                m[k++] = (struct match){m[i].start, m[i].end, 0};
            prev_match = im;
        }
        break;
    case TOK_SPLIT_MERGED_PREV:
        for (size_t i = 0; i < mn; i++) {
            int im = m[i].is_match;
            if (im && !prev_match && k > 0)
                m[k - 1].end = m[i].end;
            else
                m[k++] = (struct match){m[i].start, m[i].end, 0};
            prev_match = im;
        }
        break;
    case TOK_SPLIT_MERGED_NEXT: {
        /* Walk backwards, merging a match into the piece after it; then reverse. */
        size_t w = mn;
        for (size_t i = mn; i-- > 0;) {
            int im = m[i].is_match;
            if (im && !prev_match && w < mn)
                m[w].start = m[i].start;
            else
                m[--w] = (struct match){m[i].start, m[i].end, 0};
            prev_match = im;
        }
        memmove(m, m + w, (mn - w) * sizeof(*m));
        k = mn - w;
        break;
    }
    }
    for (size_t i = 0; i < k && st == WD_OK; i++)
        if (!m[i].is_match && pieces_push(out, s + m[i].start, m[i].end - m[i].start, -1))
            st = WD_ERR_NOMEM;
    free(m);
    return st;
}

/* ByteLevel: optional prefix space, optional GPT-2 split, then every byte to its visible
 * character. */
static enum wd_status byte_level(const struct wd_tokenizer *tok, const struct tok_pretok *p,
                                 const char *s, size_t n, struct tok_arena *arena,
                                 struct tok_pieces *out)
{
    if (p->add_prefix_space && (n == 0 || s[0] != ' ')) {
        char *t = tok_arena_alloc(arena, n + 1);
        if (!t)
            return WD_ERR_NOMEM;
        t[0] = ' ';
        memcpy(t + 1, s, n);
        s = t;
        n++;
    }
    struct tok_pieces parts = {0};
    enum wd_status st = WD_OK;
    if (p->re) {
        struct tok_pretok iso = *p;
        iso.behavior = TOK_SPLIT_ISOLATED;
        iso.invert = 0;
        st = split_regex(tok, &iso, s, n, &parts);
    } else if (pieces_push(&parts, s, n, -1)) {
        st = WD_ERR_NOMEM;
    }
    for (size_t i = 0; i < parts.n && st == WD_OK; i++) {
        char *t = tok_arena_alloc(arena, parts.v[i].n * 2 + 1);
        if (!t) {
            st = WD_ERR_NOMEM;
            break;
        }
        size_t m = 0;
        for (size_t j = 0; j < parts.v[i].n; j++)
            m += (size_t)tok_utf8_put(t + m, tok_byte_to_cp((uint8_t)parts.v[i].s[j]));
        if (pieces_push(out, t, m, -1))
            st = WD_ERR_NOMEM;
    }
    free(parts.v);
    return st;
}

enum wd_status tok_split_text(const struct wd_tokenizer *tok, const char *text, size_t len,
                              struct tok_arena *arena, struct tok_pieces *out, struct wd_error *err)
{
    struct tok_pieces cur = {0}, next = {0};
    enum wd_status st = WD_OK;
    if (tok->trie_raw.n_nodes > 1) {
        if (split_added(tok, &tok->trie_raw, text, len, &cur))
            st = WD_ERR_NOMEM;
    } else if (pieces_push(&cur, text, len, -1)) {
        st = WD_ERR_NOMEM;
    }
    /* normalize, then the normalized added tokens */
    for (size_t i = 0; i < cur.n && st == WD_OK; i++) {
        struct tok_piece p = cur.v[i];
        if (p.id >= 0) {
            if (pieces_push(&next, p.s, p.n, p.id))
                st = WD_ERR_NOMEM;
            continue;
        }
        const char *ns = p.s;
        size_t nn = p.n;
        if (tok->n_norms)
            st = tok_normalize(tok, p.s, p.n, arena, &ns, &nn);
        if (st != WD_OK)
            break;
        if (tok->trie_norm.n_nodes > 1) {
            if (split_added(tok, &tok->trie_norm, ns, nn, &next))
                st = WD_ERR_NOMEM;
        } else if (pieces_push(&next, ns, nn, -1)) {
            st = WD_ERR_NOMEM;
        }
    }
    for (size_t k = 0; k < tok->n_pretoks && st == WD_OK; k++) {
        struct tok_pieces t = cur;
        cur = next;
        next = t;
        next.n = 0;
        const struct tok_pretok *p = &tok->pretoks[k];
        for (size_t i = 0; i < cur.n && st == WD_OK; i++) {
            struct tok_piece pc = cur.v[i];
            if (pc.id >= 0)
                st = pieces_push(&next, pc.s, pc.n, pc.id) ? WD_ERR_NOMEM : WD_OK;
            else if (p->kind == TOK_PRETOK_SPLIT)
                st = split_regex(tok, p, pc.s, pc.n, &next);
            else
                st = byte_level(tok, p, pc.s, pc.n, arena, &next);
        }
    }
    free(cur.v);
    if (st != WD_OK) {
        free(next.v);
        if (st == WD_ERR_NOMEM)
            return wd_error_set(err, st, "tokenizer: out of memory while splitting text");
        return wd_error_set(err, st, "tokenizer: pre-tokenizer regex failed (match limit?)");
    }
    *out = next;
    return WD_OK;
}

/*
 * Jinja front end: the render/parse arena, the scanner that cuts template source
 * into text and tags with the whitespace rules transformers renders with
 * (trim_blocks, lstrip_blocks, "-" and "+" modifiers, one trailing newline dropped,
 * newlines normalized to \n), and the tokenizer for the inside of tags (Python
 * string literals with their escapes, numbers, names, operators).
 */
#include "common/tokenizer/jinja_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ---- */

struct jj_arena_chunk {
    struct jj_arena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

#define JJ_ARENA_LIMIT ((size_t)256 << 20)

void *jj_alloc(struct jj_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n > JJ_ARENA_LIMIT || a->total + n > JJ_ARENA_LIMIT) {
        if (a->oom)
            longjmp(*a->oom, 2);
        abort();
    }
    a->total += n;
    struct jj_arena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 32768 ? n : 32768;
        c = malloc(sizeof(*c) + cap);
        if (!c) {
            if (a->oom)
                longjmp(*a->oom, 2);
            abort(); /* an arena without a landing pad is a programming error */
        }
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

void jj_arena_free(struct jj_arena *a)
{
    struct jj_arena_chunk *c = a->head;
    while (c) {
        struct jj_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

_Noreturn void jj_perr(struct jj_parser *p, const char *fmt, ...)
{
    char buf[WD_ERROR_LEN - 32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    snprintf(p->msg, sizeof(p->msg), "line %d: %s", p->line, buf);
    longjmp(p->jmp, 1);
}

static char *dup_n(struct jj_arena *a, const char *s, size_t n)
{
    char *d = jj_alloc(a, n + 1);
    memcpy(d, s, n);
    return d;
}

/* ---- expression tokenizer ---- */

static int is_name_start(int c)
{
    return isalpha(c) || c == '_';
}

/* Makes room for one more element in a malloc'd parser array of *cap (doubling). Tokens and
 * pieces are needed only while parsing, so they stay out of the template's arena; the
 * parser frees them on both of wd_jinja_parse's paths. */
static void *grow(struct jj_parser *p, void *v, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return v;
    size_t c = *cap ? 2 * *cap : 32;
    void *nv = realloc(v, c * size);
    if (!nv)
        longjmp(p->jmp, 2); /* v is still the parser's, freed there */
    *cap = c;
    return nv;
}

static void push_tok(struct jj_parser *p, struct jj_token t)
{
    p->toks = grow(p, p->toks, p->n_toks, &p->cap_toks, sizeof(*p->toks));
    p->toks[p->n_toks++] = t;
}

/* Python string-literal escapes, as Jinja2 decodes them. */
static void lex_string(struct jj_parser *p, const char *s, size_t n, size_t *i)
{
    char q = s[(*i)++];
    struct tok_buf *b = &p->strbuf; /* freed by wd_jinja_parse, error path included */
    b->n = 0;
    int ok = 1;
    while (*i < n && s[*i] != q) {
        char c = s[(*i)++];
        if (c != '\\' || *i >= n) {
            ok &= !tok_buf_put(b, &c, 1);
            continue;
        }
        char e = s[(*i)++];
        char simple = 0;
        switch (e) {
        case 'n':
            simple = '\n';
            break;
        case 'r':
            simple = '\r';
            break;
        case 't':
            simple = '\t';
            break;
        case 'b':
            simple = '\b';
            break;
        case 'f':
            simple = '\f';
            break;
        case 'v':
            simple = '\v';
            break;
        case 'a':
            simple = '\a';
            break;
        case '\\':
        case '\'':
        case '"':
            simple = e;
            break;
        case '0':
            simple = 1;
            break; /* NUL, marked by the flag below */
        }
        if (simple) {
            char out = e == '0' ? 0 : simple;
            ok &= !tok_buf_put(b, &out, 1);
        } else if (e == 'x' || e == 'u' || e == 'U') {
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            int32_t cp = 0;
            for (int k = 0; k < digits; k++, (*i)++) {
                if (*i >= n || !isxdigit((unsigned char)s[*i]))
                    jj_perr(p, "bad \\%c escape in string literal", e);
                char h = s[*i];
                cp = cp * 16 + (isdigit((unsigned char)h) ? h - '0' : (tolower(h) - 'a' + 10));
            }
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                jj_perr(p, "escape \\%c names an invalid code point", e);
            char u[4];
            ok &= !tok_buf_put(b, u, (size_t)tok_utf8_put(u, cp));
        } else { /* unknown escapes keep their backslash, as in Python */
            char two[2] = {'\\', e};
            ok &= !tok_buf_put(b, two, 2);
        }
    }
    if (*i >= n)
        jj_perr(p, "unterminated string literal");
    (*i)++;
    if (!ok)
        longjmp(p->jmp, 2);
    struct jj_token t = {TK_STR, NULL, b->n, 0, 0};
    t.s = dup_n(p->arena, b->p ? b->p : "", b->n);
    push_tok(p, t);
}

void jj_lex(struct jj_parser *p, const char *s, size_t n)
{
    static const char *ops[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*",
                                "/",  "%",  "~",  "<",  ">",  "=",  "(", ")", "[",
                                "]",  "{",  "}",  ",",  ".",  ":",  "|"};
    p->n_toks = p->pos = 0;
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (isspace(c)) {
            if (c == '\n')
                p->line++;
            i++;
        } else if (is_name_start(c)) {
            size_t st = i;
            while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '_'))
                i++;
            push_tok(p, (struct jj_token){TK_NAME, dup_n(p->arena, s + st, i - st), i - st, 0, 0});
        } else if (isdigit(c)) {
            size_t st = i;
            int is_float = 0;
            while (i < n && (isdigit((unsigned char)s[i]) || s[i] == '_'))
                i++;
            if (i + 1 < n && s[i] == '.' && isdigit((unsigned char)s[i + 1])) {
                is_float = 1;
                for (i++; i < n && isdigit((unsigned char)s[i]); i++) {
                }
            }
            if (i < n && (s[i] == 'e' || s[i] == 'E')) {
                size_t j = i + 1;
                if (j < n && (s[j] == '+' || s[j] == '-'))
                    j++;
                if (j < n && isdigit((unsigned char)s[j])) {
                    is_float = 1;
                    for (i = j; i < n && isdigit((unsigned char)s[i]); i++) {
                    }
                }
            }
            char num[64];
            size_t k = 0;
            for (size_t j = st; j < i; j++) {
                if (s[j] == '_')
                    continue;
                if (k + 1 == sizeof(num)) /* never cut a literal short: that changes its value */
                    jj_perr(p, "number literal too long");
                num[k++] = s[j];
            }
            num[k] = 0;
            struct jj_token t = {is_float ? TK_FLOAT : TK_INT, NULL, 0, 0, 0};
            errno = 0;
            if (is_float)
                t.f = strtod(num, NULL);
            else
                t.i = strtoll(num, NULL, 10);
            if (!is_float && errno == ERANGE) /* Python's integers are unbounded, ours int64 */
                jj_perr(p, "integer literal %s too large", num);
            push_tok(p, t);
        } else if (c == '\'' || c == '"') {
            lex_string(p, s, n, &i);
        } else {
            size_t k;
            for (k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
                size_t l = strlen(ops[k]);
                if (i + l <= n && memcmp(s + i, ops[k], l) == 0)
                    break;
            }
            if (k == sizeof(ops) / sizeof(ops[0]))
                jj_perr(p, "unexpected character '%c' in tag", c);
            push_tok(p, (struct jj_token){TK_OP, ops[k], strlen(ops[k]), 0, 0});
            i += strlen(ops[k]);
        }
    }
    push_tok(p, (struct jj_token){TK_END, "", 0, 0, 0});
}

/* ---- template pieces ---- */

static void add_piece(struct jj_parser *p, enum jj_piece_kind kind, const char *s, size_t n,
                      int line)
{
    p->pieces = grow(p, p->pieces, p->n_pieces, &p->cap_pieces, sizeof(*p->pieces));
    p->pieces[p->n_pieces++] = (struct jj_piece){kind, s, n, line};
}

static int ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* End of the tag whose inner part starts at i: the offset of the closing "}}" / "%}" / "#}",
 * skipping string literals inside expressions. */
static size_t tag_end(struct jj_parser *p, const char *s, size_t n, size_t i, char kind)
{
    char quote = 0;
    int depth = 0; /* brackets inside the tag: "{{ {'a': {}}}}" closes at the last "}}" */
    for (; i + 1 < n; i++) {
        char c = s[i];
        if (quote) {
            if (c == '\\')
                i++;
            else if (c == quote)
                quote = 0;
        } else if (kind == '#') {
            if (c == '#' && s[i + 1] == '}')
                return i;
        } else if (c == '\'' || c == '"') {
            quote = c;
        } else if (c == '(' || c == '[' || c == '{') {
            depth++;
        } else if ((c == ')' || c == ']' || (c == '}' && depth > 0)) && depth > 0) {
            depth--;
        } else if (depth == 0 && c == (kind == '{' ? '}' : '%') && s[i + 1] == '}') {
            return i;
        }
    }
    jj_perr(p, "unclosed '{%c' tag", kind);
}

/* Cuts the source into text, {{ }} and {% %} pieces, applying Jinja2's whitespace rules with
 * trim_blocks and lstrip_blocks on, as transformers configures its environment. */
void jj_scan(struct jj_parser *p, const char *src, size_t len)
{
    char *s = jj_alloc(p->arena, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) { /* newline_sequence "\n" */
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n')
                i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n && s[n - 1] == '\n') /* keep_trailing_newline=False */
        n--;
    int line_starting = 1, line = 1;
    size_t pos = 0;
    while (pos <= n) {
        size_t j = pos;
        while (j + 1 < n &&
               !(s[j] == '{' && (s[j + 1] == '{' || s[j + 1] == '%' || s[j + 1] == '#')))
            j++;
        if (j + 1 >= n) {
            add_piece(p, P_TEXT, s + pos, n - pos, line);
            return;
        }
        char kind = s[j + 1];
        char mod = j + 2 < n && (s[j + 2] == '-' || s[j + 2] == '+') ? s[j + 2] : 0;
        size_t tlen = j - pos;
        if (mod == '-') {
            while (tlen && ws(s[pos + tlen - 1]))
                tlen--;
        } else if (mod != '+' && kind != '{') { /* lstrip_blocks */
            size_t l = tlen;
            while (l > 0 && s[pos + l - 1] != '\n')
                l--;
            if (l > 0 || line_starting) {
                size_t k = l;
                while (k < tlen && (s[pos + k] == ' ' || s[pos + k] == '\t'))
                    k++;
                if (k == tlen)
                    tlen = l;
            }
        }
        add_piece(p, P_TEXT, s + pos, tlen, line);
        for (size_t k = pos; k < j; k++)
            line += s[k] == '\n';
        size_t in = j + 2 + (mod ? 1 : 0);
        p->line = line;
        size_t close = tag_end(p, s, n, in, kind);
        size_t in_end = close;
        char cmod =
            in_end > in && (s[in_end - 1] == '-' || s[in_end - 1] == '+') ? s[in_end - 1] : 0;
        if (cmod)
            in_end--;
        size_t after = close + 2;
        const char *inner = s + in;
        size_t inner_n = in_end > in ? in_end - in : 0;
        /* {% raw %} ... {% endraw %}: the content is text */
        size_t a = 0, b = inner_n;
        while (a < b && ws(inner[a]))
            a++;
        while (b > a && ws(inner[b - 1]))
            b--;
        if (kind == '%' && b - a == 3 && memcmp(inner + a, "raw", 3) == 0) {
            size_t k = after, body = after;
            for (;; k++) {
                if (k + 1 >= n)
                    jj_perr(p, "missing endraw");
                if (s[k] != '{' || s[k + 1] != '%')
                    continue;
                size_t m = k + 2;
                if (m < n && (s[m] == '-' || s[m] == '+'))
                    m++;
                while (m < n && ws(s[m]))
                    m++;
                if (m + 6 <= n && memcmp(s + m, "endraw", 6) == 0)
                    break;
            }
            size_t body_end = k;
            if (s[k + 2] == '-')
                while (body_end > body && ws(s[body_end - 1]))
                    body_end--;
            add_piece(p, P_TEXT, s + body, body_end - body, line);
            for (size_t q = j; q < k; q++)
                line += s[q] == '\n';
            close = tag_end(p, s, n, k + 2, '%');
            cmod = s[close - 1] == '-' || s[close - 1] == '+' ? s[close - 1] : 0;
            after = close + 2;
        } else if (kind != '#') {
            add_piece(p, kind == '{' ? P_VAR : P_BLOCK, inner, inner_n, line);
        }
        if (cmod == '-') {
            while (after < n && ws(s[after]))
                after++;
        } else if (cmod != '+' && kind != '{' && after < n && s[after] == '\n') {
            after++; /* trim_blocks */
        }
        for (size_t k = j; k < after && k < n; k++)
            line += s[k] == '\n';
        line_starting = after > 0 && after <= n && s[after - 1] == '\n';
        pos = after;
    }
}

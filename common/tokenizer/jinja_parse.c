/*
 * Jinja template source -> AST. First the source is cut into text and tags with
 * the whitespace rules transformers renders with (trim_blocks, lstrip_blocks, the
 * "-" and "+" modifiers, one trailing newline dropped, newlines normalized to \n);
 * then each tag is tokenized and parsed by recursive descent following Jinja2's
 * operator precedence. Parse errors longjmp back to wd_jinja_parse with a message.
 */
#include "common/tokenizer/jinja_internal.h"

#include <ctype.h>
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

/* ---- parser state ---- */

enum tk { TK_END, TK_NAME, TK_STR, TK_INT, TK_FLOAT, TK_OP };

struct token {
    enum tk kind;
    const char *s; /* TK_NAME / TK_OP text (NUL-terminated copy); TK_STR decoded */
    size_t n;
    int64_t i;
    double f;
};

struct parser {
    struct jj_arena *arena;
    jmp_buf jmp;
    char msg[WD_ERROR_LEN];
    int line;
    /* current tag's tokens */
    struct token *toks;
    size_t n_toks, pos;
    int depth; /* expression / block nesting, bounded to keep recursion off the stack's end */
    struct tok_buf strbuf; /* string literal being decoded (freed on the error path too) */
    /* template pieces */
    struct piece *pieces;
    size_t n_pieces, at;
};

enum piece_kind { P_TEXT, P_VAR, P_BLOCK };

struct piece {
    enum piece_kind kind;
    const char *s; /* text, or the tag's inner source */
    size_t n;
    int line;
};

static _Noreturn void perr(struct parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static _Noreturn void perr(struct parser *p, const char *fmt, ...)
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

static int is_name_start(int c) { return isalpha(c) || c == '_'; }

static void push_tok(struct parser *p, struct token t)
{
    if (p->n_toks % 32 == 0) {
        struct token *v = jj_alloc(p->arena, (p->n_toks + 32) * sizeof(*v));
        if (p->n_toks)
            memcpy(v, p->toks, p->n_toks * sizeof(*v));
        p->toks = v;
    }
    p->toks[p->n_toks++] = t;
}

/* Python string-literal escapes, as Jinja2 decodes them. */
static void lex_string(struct parser *p, const char *s, size_t n, size_t *i)
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
        case 'n': simple = '\n'; break;
        case 'r': simple = '\r'; break;
        case 't': simple = '\t'; break;
        case 'b': simple = '\b'; break;
        case 'f': simple = '\f'; break;
        case 'v': simple = '\v'; break;
        case 'a': simple = '\a'; break;
        case '\\': case '\'': case '"': simple = e; break;
        case '0': simple = 1; break; /* NUL, marked by the flag below */
        }
        if (simple) {
            char out = e == '0' ? 0 : simple;
            ok &= !tok_buf_put(b, &out, 1);
        } else if (e == 'x' || e == 'u' || e == 'U') {
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            int32_t cp = 0;
            for (int k = 0; k < digits; k++, (*i)++) {
                if (*i >= n || !isxdigit((unsigned char)s[*i]))
                    perr(p, "bad \\%c escape in string literal", e);
                char h = s[*i];
                cp = cp * 16 + (isdigit((unsigned char)h) ? h - '0' : (tolower(h) - 'a' + 10));
            }
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                perr(p, "escape \\%c names an invalid code point", e);
            char u[4];
            ok &= !tok_buf_put(b, u, (size_t)tok_utf8_put(u, cp));
        } else { /* unknown escapes keep their backslash, as in Python */
            char two[2] = {'\\', e};
            ok &= !tok_buf_put(b, two, 2);
        }
    }
    if (*i >= n)
        perr(p, "unterminated string literal");
    (*i)++;
    if (!ok)
        longjmp(p->jmp, 2);
    struct token t = {TK_STR, NULL, b->n, 0, 0};
    t.s = dup_n(p->arena, b->p ? b->p : "", b->n);
    push_tok(p, t);
}

static void lex(struct parser *p, const char *s, size_t n)
{
    static const char *ops[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%",
                                "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".",
                                ":", "|"};
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
            push_tok(p, (struct token){TK_NAME, dup_n(p->arena, s + st, i - st), i - st, 0, 0});
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
            for (size_t j = st; j < i && k + 1 < sizeof(num); j++)
                if (s[j] != '_')
                    num[k++] = s[j];
            num[k] = 0;
            struct token t = {is_float ? TK_FLOAT : TK_INT, NULL, 0, 0, 0};
            if (is_float)
                t.f = strtod(num, NULL);
            else
                t.i = strtoll(num, NULL, 10);
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
                perr(p, "unexpected character '%c' in tag", c);
            push_tok(p, (struct token){TK_OP, ops[k], strlen(ops[k]), 0, 0});
            i += strlen(ops[k]);
        }
    }
    push_tok(p, (struct token){TK_END, "", 0, 0, 0});
}

static struct token *cur(struct parser *p) { return &p->toks[p->pos]; }

static int is_op(struct parser *p, const char *op)
{
    return cur(p)->kind == TK_OP && strcmp(cur(p)->s, op) == 0;
}

static int is_name(struct parser *p, const char *name)
{
    return cur(p)->kind == TK_NAME && strcmp(cur(p)->s, name) == 0;
}

static int accept_op(struct parser *p, const char *op)
{
    if (!is_op(p, op))
        return 0;
    p->pos++;
    return 1;
}

static int accept_name(struct parser *p, const char *name)
{
    if (!is_name(p, name))
        return 0;
    p->pos++;
    return 1;
}

static void expect_op(struct parser *p, const char *op)
{
    if (!accept_op(p, op))
        perr(p, "expected '%s'", op);
}

static const char *expect_name(struct parser *p)
{
    if (cur(p)->kind != TK_NAME)
        perr(p, "expected a name");
    return p->toks[p->pos++].s;
}

static struct jj_expr *node(struct parser *p, enum jj_expr_kind kind)
{
    struct jj_expr *e = jj_alloc(p->arena, sizeof(*e));
    e->kind = kind;
    e->line = p->line;
    return e;
}

/* ---- expressions, lowest precedence first (as in Jinja2's parser) ---- */

static struct jj_expr *parse_expr(struct parser *p);
static struct jj_expr *parse_or(struct parser *p);
static struct jj_expr *parse_unary(struct parser *p, int with_filter);

static void push_expr(struct parser *p, struct jj_expr ***v, size_t *n, struct jj_expr *e)
{
    if (*n % 8 == 0) {
        struct jj_expr **nv = jj_alloc(p->arena, (*n + 8) * sizeof(*nv));
        if (*n)
            memcpy(nv, *v, *n * sizeof(*nv));
        *v = nv;
    }
    (*v)[(*n)++] = e;
}

static void push_name(struct parser *p, const char ***v, size_t *n, const char *s)
{
    if (*n % 8 == 0) {
        const char **nv = jj_alloc(p->arena, (*n + 8) * sizeof(*nv));
        if (*n)
            memcpy(nv, *v, *n * sizeof(*nv));
        *v = nv;
    }
    (*v)[(*n)++] = s;
}

/* "(args, kw=val)" after the opening parenthesis was consumed. */
static void parse_call_args(struct parser *p, struct jj_expr *e)
{
    while (!accept_op(p, ")")) {
        if (e->n_args + e->n_kw)
            expect_op(p, ",");
        if (accept_op(p, ")"))
            break;
        if (cur(p)->kind == TK_NAME && p->toks[p->pos + 1].kind == TK_OP &&
            strcmp(p->toks[p->pos + 1].s, "=") == 0) {
            const char *kw = expect_name(p);
            p->pos++;
            push_name(p, &e->kw_names, &e->n_kw, kw);
            size_t n = e->n_kw - 1;
            push_expr(p, &e->kw_vals, &n, parse_expr(p));
        } else {
            if (e->n_kw)
                perr(p, "positional argument after keyword argument");
            push_expr(p, &e->args, &e->n_args, parse_expr(p));
        }
    }
}

static struct jj_expr *parse_primary(struct parser *p)
{
    struct token *t = cur(p);
    struct jj_expr *e;
    switch (t->kind) {
    case TK_STR:
        e = node(p, X_CONST);
        e->cval = (struct jj_value){.type = JJ_STR, .u.str = {t->s, t->n}};
        p->pos++;
        /* adjacent literals concatenate */
        while (cur(p)->kind == TK_STR) {
            struct token *t2 = cur(p);
            char *s = jj_alloc(p->arena, e->cval.u.str.n + t2->n + 1);
            memcpy(s, e->cval.u.str.s, e->cval.u.str.n);
            memcpy(s + e->cval.u.str.n, t2->s, t2->n);
            e->cval.u.str.s = s;
            e->cval.u.str.n += t2->n;
            p->pos++;
        }
        return e;
    case TK_INT:
        e = node(p, X_CONST);
        e->cval = (struct jj_value){.type = JJ_INT, .u.i = t->i};
        p->pos++;
        return e;
    case TK_FLOAT:
        e = node(p, X_CONST);
        e->cval = (struct jj_value){.type = JJ_FLOAT, .u.f = t->f};
        p->pos++;
        return e;
    case TK_NAME:
        p->pos++;
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True") || !strcmp(t->s, "false") ||
            !strcmp(t->s, "False")) {
            e = node(p, X_CONST);
            e->cval = jj_bool(t->s[0] == 't' || t->s[0] == 'T');
            return e;
        }
        if (!strcmp(t->s, "none") || !strcmp(t->s, "None")) {
            e = node(p, X_CONST);
            e->cval = jj_none();
            return e;
        }
        e = node(p, X_NAME);
        e->name = t->s;
        return e;
    case TK_OP:
        if (accept_op(p, "(")) {
            if (accept_op(p, ")"))
                return node(p, X_TUPLE);
            struct jj_expr *first = parse_expr(p);
            if (accept_op(p, ")"))
                return first;
            e = node(p, X_TUPLE);
            push_expr(p, &e->args, &e->n_args, first);
            while (accept_op(p, ",")) {
                if (is_op(p, ")"))
                    break;
                push_expr(p, &e->args, &e->n_args, parse_expr(p));
            }
            expect_op(p, ")");
            return e;
        }
        if (accept_op(p, "[")) {
            e = node(p, X_LIST);
            while (!accept_op(p, "]")) {
                if (e->n_args)
                    expect_op(p, ",");
                if (accept_op(p, "]"))
                    break;
                push_expr(p, &e->args, &e->n_args, parse_expr(p));
            }
            return e;
        }
        if (accept_op(p, "{")) {
            e = node(p, X_DICT);
            while (!accept_op(p, "}")) {
                if (e->n_args)
                    expect_op(p, ",");
                if (accept_op(p, "}"))
                    break;
                push_expr(p, &e->args, &e->n_args, parse_expr(p));
                expect_op(p, ":");
                size_t n = e->n_args - 1;
                push_expr(p, &e->kw_vals, &n, parse_expr(p));
            }
            e->n_kw = e->n_args;
            return e;
        }
        break;
    default:
        break;
    }
    perr(p, "unexpected '%s'", t->kind == TK_END ? "end of tag" : t->s ? t->s : "token");
}

static struct jj_expr *parse_postfix(struct parser *p, struct jj_expr *e)
{
    for (;;) {
        if (accept_op(p, ".")) {
            struct jj_expr *a;
            if (cur(p)->kind == TK_INT) { /* x.0 is x[0] */
                a = node(p, X_ITEM);
                a->b = node(p, X_CONST);
                a->b->cval = (struct jj_value){.type = JJ_INT, .u.i = cur(p)->i};
                p->pos++;
            } else {
                a = node(p, X_ATTR);
                a->name = expect_name(p);
            }
            a->a = e;
            e = a;
        } else if (accept_op(p, "[")) {
            struct jj_expr *idx[3] = {NULL, NULL, NULL};
            int is_slice = 0, k = 0;
            for (;;) {
                if (is_op(p, ":")) {
                    if (++k > 2)
                        perr(p, "bad slice");
                    is_slice = 1;
                    p->pos++;
                    continue;
                }
                if (is_op(p, "]"))
                    break;
                if (idx[k])
                    perr(p, "expected ']'");
                idx[k] = parse_expr(p);
            }
            expect_op(p, "]");
            struct jj_expr *a = node(p, is_slice ? X_SLICE : X_ITEM);
            a->a = e;
            a->b = idx[0];
            a->c = idx[1];
            a->d = idx[2];
            if (!is_slice && !idx[0])
                perr(p, "empty subscript");
            e = a;
        } else if (accept_op(p, "(")) {
            struct jj_expr *a = node(p, X_CALL);
            a->a = e;
            parse_call_args(p, a);
            e = a;
        } else {
            return e;
        }
    }
}

static struct jj_expr *parse_filters_tests(struct parser *p, struct jj_expr *e)
{
    for (;;) {
        if (accept_op(p, "|")) {
            struct jj_expr *f = node(p, X_FILTER);
            f->name = expect_name(p);
            if (!jj_filter_known(f->name))
                perr(p, "no filter named '%s'", f->name);
            f->a = e;
            if (accept_op(p, "("))
                parse_call_args(p, f);
            e = f;
        } else if (accept_name(p, "is")) {
            struct jj_expr *t = node(p, X_TEST);
            t->negated = accept_name(p, "not");
            t->name = expect_name(p);
            if (!jj_test_known(t->name))
                perr(p, "no test named '%s'", t->name);
            t->a = e;
            if (accept_op(p, "(")) {
                parse_call_args(p, t);
            } else {
                struct token *c = cur(p);
                int arg_start = c->kind == TK_STR || c->kind == TK_INT || c->kind == TK_FLOAT ||
                                (c->kind == TK_NAME && strcmp(c->s, "else") && strcmp(c->s, "or") &&
                                 strcmp(c->s, "and") && strcmp(c->s, "if") &&
                                 strcmp(c->s, "is") && strcmp(c->s, "in") &&
                                 strcmp(c->s, "not")) ||
                                is_op(p, "(") || is_op(p, "[") || is_op(p, "{");
                if (arg_start)
                    push_expr(p, &t->args, &t->n_args, parse_postfix(p, parse_primary(p)));
            }
            e = t;
        } else {
            return e;
        }
    }
}

#define JJ_MAX_DEPTH 100

static struct jj_expr *parse_unary(struct parser *p, int with_filter)
{
    struct jj_expr *e;
    if (++p->depth > JJ_MAX_DEPTH)
        perr(p, "expression nested too deeply");
    if (accept_op(p, "-")) {
        e = node(p, X_NEG);
        e->a = parse_unary(p, 0);
    } else if (accept_op(p, "+")) {
        e = node(p, X_POS);
        e->a = parse_unary(p, 0);
    } else {
        e = parse_postfix(p, parse_primary(p));
    }
    e = with_filter ? parse_filters_tests(p, e) : e;
    p->depth--;
    return e;
}

static struct jj_expr *binary(struct parser *p, enum jj_binop op, struct jj_expr *a,
                              struct jj_expr *b)
{
    struct jj_expr *e = node(p, X_BIN);
    e->op = op;
    e->a = a;
    e->b = b;
    return e;
}

static struct jj_expr *parse_pow(struct parser *p)
{
    struct jj_expr *e = parse_unary(p, 1);
    while (accept_op(p, "**"))
        e = binary(p, OP_POW, e, parse_unary(p, 1));
    return e;
}

static struct jj_expr *parse_math2(struct parser *p)
{
    struct jj_expr *e = parse_pow(p);
    for (;;) {
        if (accept_op(p, "*"))
            e = binary(p, OP_MUL, e, parse_pow(p));
        else if (accept_op(p, "//"))
            e = binary(p, OP_FLOORDIV, e, parse_pow(p));
        else if (accept_op(p, "/"))
            e = binary(p, OP_DIV, e, parse_pow(p));
        else if (accept_op(p, "%"))
            e = binary(p, OP_MOD, e, parse_pow(p));
        else
            return e;
    }
}

static struct jj_expr *parse_concat(struct parser *p)
{
    struct jj_expr *e = parse_math2(p);
    while (accept_op(p, "~"))
        e = binary(p, OP_CONCAT, e, parse_math2(p));
    return e;
}

static struct jj_expr *parse_math1(struct parser *p)
{
    struct jj_expr *e = parse_concat(p);
    for (;;) {
        if (accept_op(p, "+"))
            e = binary(p, OP_ADD, e, parse_concat(p));
        else if (accept_op(p, "-"))
            e = binary(p, OP_SUB, e, parse_concat(p));
        else
            return e;
    }
}

static struct jj_expr *parse_compare(struct parser *p)
{
    struct jj_expr *left = parse_math1(p), *result = NULL;
    static const struct {
        const char *op;
        enum jj_binop code;
    } cmp[] = {{"==", OP_EQ}, {"!=", OP_NE}, {"<=", OP_LE}, {">=", OP_GE}, {"<", OP_LT},
               {">", OP_GT}};
    for (;;) {
        int op = -1;
        for (int k = 0; k < 6 && op < 0; k++)
            if (is_op(p, cmp[k].op))
                op = (int)cmp[k].code;
        if (op >= 0) {
            p->pos++;
        } else if (is_name(p, "in")) {
            p->pos++;
            op = OP_IN;
        } else if (is_name(p, "not") && p->toks[p->pos + 1].kind == TK_NAME &&
                   strcmp(p->toks[p->pos + 1].s, "in") == 0) {
            p->pos += 2;
            op = OP_NOTIN;
        } else {
            return result ? result : left;
        }
        struct jj_expr *right = parse_math1(p);
        struct jj_expr *c = binary(p, (enum jj_binop)op, left, right);
        if (result) { /* a < b < c is a < b and b < c */
            struct jj_expr *both = node(p, X_AND);
            both->a = result;
            both->b = c;
            result = both;
        } else {
            result = c;
        }
        left = right;
    }
}

static struct jj_expr *parse_not(struct parser *p)
{
    if (accept_name(p, "not")) {
        struct jj_expr *e = node(p, X_NOT);
        e->a = parse_not(p);
        return e;
    }
    return parse_compare(p);
}

static struct jj_expr *parse_and(struct parser *p)
{
    struct jj_expr *e = parse_not(p);
    while (accept_name(p, "and")) {
        struct jj_expr *a = node(p, X_AND);
        a->a = e;
        a->b = parse_not(p);
        e = a;
    }
    return e;
}

static struct jj_expr *parse_or(struct parser *p)
{
    struct jj_expr *e = parse_and(p);
    while (accept_name(p, "or")) {
        struct jj_expr *a = node(p, X_OR);
        a->a = e;
        a->b = parse_and(p);
        e = a;
    }
    return e;
}

static struct jj_expr *parse_expr(struct parser *p)
{
    struct jj_expr *e = parse_or(p);
    while (accept_name(p, "if")) {
        struct jj_expr *c = node(p, X_COND);
        c->a = parse_or(p); /* condition */
        c->b = e;
        if (accept_name(p, "else"))
            c->c = parse_expr(p);
        e = c;
    }
    return e;
}

/* "a" or "a, b" (for targets and set targets). */
static void parse_targets(struct parser *p, const char ***names, size_t *n)
{
    do {
        push_name(p, names, n, expect_name(p));
    } while (accept_op(p, ","));
}

static void expect_end(struct parser *p)
{
    if (cur(p)->kind != TK_END)
        perr(p, "unexpected '%s' at end of tag", cur(p)->s ? cur(p)->s : "token");
}

/* ---- template pieces ---- */

static void add_piece(struct parser *p, enum piece_kind kind, const char *s, size_t n, int line)
{
    if (p->n_pieces % 64 == 0) {
        struct piece *v = jj_alloc(p->arena, (p->n_pieces + 64) * sizeof(*v));
        if (p->n_pieces)
            memcpy(v, p->pieces, p->n_pieces * sizeof(*v));
        p->pieces = v;
    }
    p->pieces[p->n_pieces++] = (struct piece){kind, s, n, line};
}

static int ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* End of the tag whose inner part starts at i: the offset of the closing "}}" / "%}" / "#}",
 * skipping string literals inside expressions. */
static size_t tag_end(struct parser *p, const char *s, size_t n, size_t i, char kind)
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
    perr(p, "unclosed '{%c' tag", kind);
}

/* Cuts the source into text, {{ }} and {% %} pieces, applying Jinja2's whitespace rules with
 * trim_blocks and lstrip_blocks on, as transformers configures its environment. */
static void scan(struct parser *p, const char *src, size_t len)
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
        while (j + 1 < n && !(s[j] == '{' && (s[j + 1] == '{' || s[j + 1] == '%' || s[j + 1] == '#')))
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
        char cmod = in_end > in && (s[in_end - 1] == '-' || s[in_end - 1] == '+') ? s[in_end - 1] : 0;
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
                    perr(p, "missing endraw");
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

/* ---- statements ---- */

static struct jj_stmt *stmt(struct parser *p, enum jj_stmt_kind kind)
{
    struct jj_stmt *s = jj_alloc(p->arena, sizeof(*s));
    s->kind = kind;
    s->line = p->line;
    return s;
}

/* Parses pieces until a block tag whose keyword is in `ends` (NULL-terminated); returns the
 * body and leaves that tag's tokens current (keyword consumed) in *end_kw. */
static struct jj_stmt *parse_body(struct parser *p, const char *const *ends, const char **end_kw)
{
    struct jj_stmt *head = NULL, **tail = &head;
    if (++p->depth > JJ_MAX_DEPTH)
        perr(p, "blocks nested too deeply");
    while (p->at < p->n_pieces) {
        struct piece *pc = &p->pieces[p->at++];
        p->line = pc->line;
        struct jj_stmt *s = NULL;
        if (pc->kind == P_TEXT) {
            if (!pc->n)
                continue;
            s = stmt(p, S_TEXT);
            s->text = pc->s;
            s->n = pc->n;
        } else if (pc->kind == P_VAR) {
            lex(p, pc->s, pc->n);
            s = stmt(p, S_OUT);
            s->expr = parse_expr(p);
            expect_end(p);
        } else {
            lex(p, pc->s, pc->n);
            const char *kw = expect_name(p);
            for (size_t k = 0; ends && ends[k]; k++) {
                if (strcmp(kw, ends[k]) == 0) {
                    *end_kw = kw;
                    p->depth--;
                    return head;
                }
            }
            s = stmt(p, S_TEXT);
            if (!strcmp(kw, "if")) {
                s->kind = S_IF;
                struct jj_stmt *ifs = s;
                for (;;) {
                    ifs->expr = parse_expr(p);
                    expect_end(p);
                    static const char *const if_ends[] = {"elif", "else", "endif", NULL};
                    const char *e = NULL;
                    ifs->body = parse_body(p, if_ends, &e);
                    if (!e)
                        perr(p, "missing endif");
                    if (!strcmp(e, "elif")) {
                        ifs->orelse = stmt(p, S_IF);
                        ifs = ifs->orelse;
                        continue;
                    }
                    if (!strcmp(e, "else")) {
                        expect_end(p);
                        static const char *const else_ends[] = {"endif", NULL};
                        ifs->orelse = parse_body(p, else_ends, &e);
                        if (!e)
                            perr(p, "missing endif");
                    }
                    expect_end(p);
                    break;
                }
            } else if (!strcmp(kw, "for")) {
                s->kind = S_FOR;
                parse_targets(p, &s->targets, &s->n_targets);
                if (!accept_name(p, "in"))
                    perr(p, "expected 'in' in for");
                s->expr = parse_or(p);
                if (accept_name(p, "if"))
                    s->cond = parse_expr(p);
                if (accept_name(p, "recursive"))
                    perr(p, "recursive loops are not supported");
                expect_end(p);
                static const char *const for_ends[] = {"else", "endfor", NULL};
                const char *e = NULL;
                s->body = parse_body(p, for_ends, &e);
                if (!e)
                    perr(p, "missing endfor");
                if (!strcmp(e, "else")) {
                    expect_end(p);
                    static const char *const else_ends[] = {"endfor", NULL};
                    s->orelse = parse_body(p, else_ends, &e);
                    if (!e)
                        perr(p, "missing endfor");
                }
                expect_end(p);
            } else if (!strcmp(kw, "set")) {
                const char *first = expect_name(p);
                push_name(p, &s->targets, &s->n_targets, first);
                if (accept_op(p, ".")) {
                    s->attr = expect_name(p);
                } else {
                    while (accept_op(p, ","))
                        push_name(p, &s->targets, &s->n_targets, expect_name(p));
                }
                if (accept_op(p, "=")) {
                    s->kind = S_SET;
                    s->expr = parse_expr(p);
                    expect_end(p);
                } else {
                    if (s->attr || s->n_targets != 1)
                        perr(p, "block set takes one plain name");
                    expect_end(p);
                    s->kind = S_SETBLOCK;
                    static const char *const set_ends[] = {"endset", NULL};
                    const char *e = NULL;
                    s->body = parse_body(p, set_ends, &e);
                    if (!e)
                        perr(p, "missing endset");
                    expect_end(p);
                }
            } else if (!strcmp(kw, "break") || !strcmp(kw, "continue")) {
                s->kind = kw[0] == 'b' ? S_BREAK : S_CONTINUE;
                expect_end(p);
            } else if (!strcmp(kw, "generation")) {
                s->kind = S_BODY;
                expect_end(p);
                static const char *const gen_ends[] = {"endgeneration", NULL};
                const char *e = NULL;
                s->body = parse_body(p, gen_ends, &e);
                if (!e)
                    perr(p, "missing endgeneration");
                expect_end(p);
            } else {
                perr(p, "unsupported or unexpected tag '%s'", kw);
            }
        }
        *tail = s;
        tail = &s->next;
    }
    *end_kw = NULL;
    p->depth--;
    if (ends) {
        size_t k = 0;
        while (ends[k + 1])
            k++;
        perr(p, "unexpected end of template (missing '%s')", ends[k]);
    }
    return head;
}

enum wd_status wd_jinja_parse(const char *src, size_t len, struct wd_jinja **t_p,
                              struct wd_error *err)
{
    struct wd_jinja *t = calloc(1, sizeof(*t));
    if (!t)
        return wd_error_set(err, WD_ERR_NOMEM, "chat template: out of memory");
    struct parser *p = calloc(1, sizeof(*p));
    if (!p) {
        free(t);
        return wd_error_set(err, WD_ERR_NOMEM, "chat template: out of memory");
    }
    p->arena = &t->arena;
    t->arena.oom = &p->jmp;
    p->line = 1;
    int rc = setjmp(p->jmp);
    if (rc) {
        enum wd_status st = rc == 2 ? WD_ERR_NOMEM : WD_ERR_FORMAT;
        wd_error_set(err, st, "chat template: %s", rc == 2 ? "out of memory" : p->msg);
        jj_arena_free(&t->arena);
        free(p->strbuf.p);
        free(t);
        free(p);
        return st;
    }
    scan(p, src, len);
    const char *end = NULL;
    t->root = parse_body(p, NULL, &end);
    t->arena.oom = NULL;
    free(p->strbuf.p);
    free(p);
    *t_p = t;
    return WD_OK;
}

void wd_jinja_destroy(struct wd_jinja *t)
{
    if (!t)
        return;
    jj_arena_free(&t->arena);
    free(t);
}

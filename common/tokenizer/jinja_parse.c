/*
 * Jinja template -> AST: the pieces and tokens from jinja_lex.c are parsed by
 * recursive descent following Jinja2's operator precedence and statement rules.
 * Parse errors longjmp back to wd_jinja_parse with a message; everything lives in
 * the template's arena.
 */
#include "common/tokenizer/jinja_internal.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct jj_token *cur(struct jj_parser *p)
{
    return &p->toks[p->pos];
}

static int is_op(struct jj_parser *p, const char *op)
{
    return cur(p)->kind == TK_OP && strcmp(cur(p)->s, op) == 0;
}

static int is_name(struct jj_parser *p, const char *name)
{
    return cur(p)->kind == TK_NAME && strcmp(cur(p)->s, name) == 0;
}

static int accept_op(struct jj_parser *p, const char *op)
{
    if (!is_op(p, op))
        return 0;
    p->pos++;
    return 1;
}

static int accept_name(struct jj_parser *p, const char *name)
{
    if (!is_name(p, name))
        return 0;
    p->pos++;
    return 1;
}

static void expect_op(struct jj_parser *p, const char *op)
{
    if (!accept_op(p, op))
        jj_perr(p, "expected '%s'", op);
}

static const char *expect_name(struct jj_parser *p)
{
    if (cur(p)->kind != TK_NAME)
        jj_perr(p, "expected a name");
    return p->toks[p->pos++].s;
}

static struct jj_expr *node(struct jj_parser *p, enum jj_expr_kind kind)
{
    struct jj_expr *e = jj_alloc(p->arena, sizeof(*e));
    e->kind = kind;
    e->line = p->line;
    return e;
}

/* ---- expressions, lowest precedence first (as in Jinja2's parser) ---- */

static struct jj_expr *parse_expr(struct jj_parser *p);
static struct jj_expr *parse_or(struct jj_parser *p);
static struct jj_expr *parse_unary(struct jj_parser *p, int with_filter);

/* Arena arrays double when n reaches a power of two (from 8), so a long argument list or
 * dict literal costs linear memory, not one copy of the array per 8 items. */
static int arena_full(size_t n)
{
    return n == 0 || (n >= 8 && (n & (n - 1)) == 0);
}

static void push_expr(struct jj_parser *p, struct jj_expr ***v, size_t *n, struct jj_expr *e)
{
    if (arena_full(*n)) {
        struct jj_expr **nv = jj_alloc(p->arena, (*n ? 2 * *n : 8) * sizeof(*nv));
        if (*n)
            memcpy(nv, *v, *n * sizeof(*nv));
        *v = nv;
    }
    (*v)[(*n)++] = e;
}

static void push_name(struct jj_parser *p, const char ***v, size_t *n, const char *s)
{
    if (arena_full(*n)) {
        const char **nv = jj_alloc(p->arena, (*n ? 2 * *n : 8) * sizeof(*nv));
        if (*n)
            memcpy(nv, *v, *n * sizeof(*nv));
        *v = nv;
    }
    (*v)[(*n)++] = s;
}

/* "(args, kw=val)" after the opening parenthesis was consumed. */
static void parse_call_args(struct jj_parser *p, struct jj_expr *e)
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
                jj_perr(p, "positional argument after keyword argument");
            push_expr(p, &e->args, &e->n_args, parse_expr(p));
        }
    }
}

static struct jj_expr *parse_primary(struct jj_parser *p)
{
    struct jj_token *t = cur(p);
    struct jj_expr *e;
    switch (t->kind) {
    case TK_STR:
        e = node(p, X_CONST);
        e->cval = (struct jj_value){.type = JJ_STR, .u.str = {t->s, t->n}};
        p->pos++;
        /* adjacent literals concatenate */
        while (cur(p)->kind == TK_STR) {
            struct jj_token *t2 = cur(p);
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
    jj_perr(p, "unexpected '%s'", t->kind == TK_END ? "end of tag" : t->s ? t->s : "token");
}

static struct jj_expr *parse_postfix(struct jj_parser *p, struct jj_expr *e)
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
                        jj_perr(p, "bad slice");
                    is_slice = 1;
                    p->pos++;
                    continue;
                }
                if (is_op(p, "]"))
                    break;
                if (idx[k])
                    jj_perr(p, "expected ']'");
                idx[k] = parse_expr(p);
            }
            expect_op(p, "]");
            struct jj_expr *a = node(p, is_slice ? X_SLICE : X_ITEM);
            a->a = e;
            a->b = idx[0];
            a->c = idx[1];
            a->d = idx[2];
            if (!is_slice && !idx[0])
                jj_perr(p, "empty subscript");
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

static struct jj_expr *parse_filters_tests(struct jj_parser *p, struct jj_expr *e)
{
    for (;;) {
        if (accept_op(p, "|")) {
            struct jj_expr *f = node(p, X_FILTER);
            f->name = expect_name(p);
            if (!jj_filter_known(f->name))
                jj_perr(p, "no filter named '%s'", f->name);
            f->a = e;
            if (accept_op(p, "("))
                parse_call_args(p, f);
            e = f;
        } else if (accept_name(p, "is")) {
            struct jj_expr *t = node(p, X_TEST);
            t->negated = accept_name(p, "not");
            t->name = expect_name(p);
            if (!jj_test_known(t->name))
                jj_perr(p, "no test named '%s'", t->name);
            t->a = e;
            if (accept_op(p, "(")) {
                parse_call_args(p, t);
            } else {
                struct jj_token *c = cur(p);
                int arg_start = c->kind == TK_STR || c->kind == TK_INT || c->kind == TK_FLOAT ||
                                (c->kind == TK_NAME && strcmp(c->s, "else") && strcmp(c->s, "or") &&
                                 strcmp(c->s, "and") && strcmp(c->s, "if") && strcmp(c->s, "is") &&
                                 strcmp(c->s, "in") && strcmp(c->s, "not")) ||
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

static struct jj_expr *parse_unary(struct jj_parser *p, int with_filter)
{
    struct jj_expr *e;
    if (++p->depth > JJ_MAX_DEPTH)
        jj_perr(p, "expression nested too deeply");
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

static struct jj_expr *binary(struct jj_parser *p, enum jj_binop op, struct jj_expr *a,
                              struct jj_expr *b)
{
    struct jj_expr *e = node(p, X_BIN);
    e->op = op;
    e->a = a;
    e->b = b;
    return e;
}

static struct jj_expr *parse_pow(struct jj_parser *p)
{
    struct jj_expr *e = parse_unary(p, 1);
    while (accept_op(p, "**"))
        e = binary(p, OP_POW, e, parse_unary(p, 1));
    return e;
}

static struct jj_expr *parse_math2(struct jj_parser *p)
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

static struct jj_expr *parse_concat(struct jj_parser *p)
{
    struct jj_expr *e = parse_math2(p);
    while (accept_op(p, "~"))
        e = binary(p, OP_CONCAT, e, parse_math2(p));
    return e;
}

static struct jj_expr *parse_math1(struct jj_parser *p)
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

static struct jj_expr *parse_compare(struct jj_parser *p)
{
    struct jj_expr *left = parse_math1(p), *result = NULL;
    static const struct {
        const char *op;
        enum jj_binop code;
    } cmp[] = {{"==", OP_EQ}, {"!=", OP_NE}, {"<=", OP_LE},
               {">=", OP_GE}, {"<", OP_LT},  {">", OP_GT}};
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

static struct jj_expr *parse_not(struct jj_parser *p)
{
    if (accept_name(p, "not")) {
        if (++p->depth > JJ_MAX_DEPTH)
            jj_perr(p, "expression nested too deeply");
        struct jj_expr *e = node(p, X_NOT);
        e->a = parse_not(p);
        p->depth--;
        return e;
    }
    return parse_compare(p);
}

static struct jj_expr *parse_and(struct jj_parser *p)
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

static struct jj_expr *parse_or(struct jj_parser *p)
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

/* Every recursion of the parser passes parse_unary, parse_not or here, each counting depth
 * (an "a if b else c if d else ..." chain recurses through the else branch). */
static struct jj_expr *parse_expr(struct jj_parser *p)
{
    if (++p->depth > JJ_MAX_DEPTH)
        jj_perr(p, "expression nested too deeply");
    struct jj_expr *e = parse_or(p);
    while (accept_name(p, "if")) {
        struct jj_expr *c = node(p, X_COND);
        c->a = parse_or(p); /* condition */
        c->b = e;
        if (accept_name(p, "else"))
            c->c = parse_expr(p);
        e = c;
    }
    p->depth--;
    return e;
}

/* "a" or "a, b" (for targets and set targets). */
static void parse_targets(struct jj_parser *p, const char ***names, size_t *n)
{
    do {
        push_name(p, names, n, expect_name(p));
    } while (accept_op(p, ","));
}

static void expect_end(struct jj_parser *p)
{
    if (cur(p)->kind != TK_END)
        jj_perr(p, "unexpected '%s' at end of tag", cur(p)->s ? cur(p)->s : "token");
}

/* ---- statements ---- */

static struct jj_stmt *stmt(struct jj_parser *p, enum jj_stmt_kind kind)
{
    struct jj_stmt *s = jj_alloc(p->arena, sizeof(*s));
    s->kind = kind;
    s->line = p->line;
    return s;
}

/* Parses pieces until a block tag whose keyword is in `ends` (NULL-terminated); returns the
 * body and leaves that tag's tokens current (keyword consumed) in *end_kw. */
static struct jj_stmt *parse_body(struct jj_parser *p, const char *const *ends, const char **end_kw)
{
    struct jj_stmt *head = NULL, **tail = &head;
    if (++p->depth > JJ_MAX_DEPTH)
        jj_perr(p, "blocks nested too deeply");
    while (p->at < p->n_pieces) {
        struct jj_piece *pc = &p->pieces[p->at++];
        p->line = pc->line;
        struct jj_stmt *s = NULL;
        if (pc->kind == P_TEXT) {
            if (!pc->n)
                continue;
            s = stmt(p, S_TEXT);
            s->text = pc->s;
            s->n = pc->n;
        } else if (pc->kind == P_VAR) {
            jj_lex(p, pc->s, pc->n);
            s = stmt(p, S_OUT);
            s->expr = parse_expr(p);
            expect_end(p);
        } else {
            jj_lex(p, pc->s, pc->n);
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
                        jj_perr(p, "missing endif");
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
                            jj_perr(p, "missing endif");
                    }
                    expect_end(p);
                    break;
                }
            } else if (!strcmp(kw, "for")) {
                s->kind = S_FOR;
                parse_targets(p, &s->targets, &s->n_targets);
                if (!accept_name(p, "in"))
                    jj_perr(p, "expected 'in' in for");
                s->expr = parse_or(p);
                if (accept_name(p, "if"))
                    s->cond = parse_expr(p);
                if (accept_name(p, "recursive"))
                    jj_perr(p, "recursive loops are not supported");
                expect_end(p);
                static const char *const for_ends[] = {"else", "endfor", NULL};
                const char *e = NULL;
                s->body = parse_body(p, for_ends, &e);
                if (!e)
                    jj_perr(p, "missing endfor");
                if (!strcmp(e, "else")) {
                    expect_end(p);
                    static const char *const else_ends[] = {"endfor", NULL};
                    s->orelse = parse_body(p, else_ends, &e);
                    if (!e)
                        jj_perr(p, "missing endfor");
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
                        jj_perr(p, "block set takes one plain name");
                    expect_end(p);
                    s->kind = S_SETBLOCK;
                    static const char *const set_ends[] = {"endset", NULL};
                    const char *e = NULL;
                    s->body = parse_body(p, set_ends, &e);
                    if (!e)
                        jj_perr(p, "missing endset");
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
                    jj_perr(p, "missing endgeneration");
                expect_end(p);
            } else {
                jj_perr(p, "unsupported or unexpected tag '%s'", kw);
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
        jj_perr(p, "unexpected end of template (missing '%s')", ends[k]);
    }
    return head;
}

enum wd_status wd_jinja_parse(const char *src, size_t len, struct wd_jinja **t_p,
                              struct wd_error *err)
{
    struct wd_jinja *t = calloc(1, sizeof(*t));
    if (!t)
        return wd_error_set(err, WD_ERR_NOMEM, "chat template: out of memory");
    struct jj_parser *p = calloc(1, sizeof(*p));
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
        free(p->toks);
        free(p->pieces);
        free(t);
        free(p);
        return st;
    }
    jj_scan(p, src, len);
    const char *end = NULL;
    t->root = parse_body(p, NULL, &end);
    t->arena.oom = NULL;
    free(p->strbuf.p);
    free(p->toks);
    free(p->pieces);
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

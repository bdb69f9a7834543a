/*
 * Jinja AST -> text. Expressions evaluate to jj_values in the render arena;
 * statements append to the output buffer. Scoping follows Jinja2: if-blocks share
 * the enclosing scope, every for-loop iteration gets a fresh scope (assignments
 * inside never leak out or carry to the next iteration; namespace attributes do),
 * set at the top level writes template-wide. Runtime errors longjmp to
 * wd_jinja_render with a message.
 */
#include "common/tokenizer/jinja_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Noreturn void jj_fail(struct jj_render *r, const char *fmt, ...)
{
    char buf[WD_ERROR_LEN - 32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    snprintf(r->msg, sizeof(r->msg), "line %d: %s", r->line, buf);
    longjmp(r->jmp, 1);
}

void jj_charge(struct jj_render *r, uint64_t n)
{
    r->steps += n;
    if (r->steps > JJ_MAX_STEPS)
        jj_fail(r, "template takes too many steps");
}

void jj_put(struct jj_render *r, struct tok_buf *b, const char *s, size_t n)
{
    /* One cap for every buffer: a single filter (replace, join, indent, tojson) or output
     * statement can otherwise build gigabytes before any later check sees it. */
    if (n > JJ_MAX_STR - b->n)
        jj_fail(r, "%s too large (over %zu MiB)", b == &r->out ? "template output" : "string",
                JJ_MAX_STR >> 20);
    /* ... and one for all of them together: set blocks and scratch strings nest. */
    if (n > JJ_MAX_LIVE - r->live)
        jj_fail(r, "strings being built too large in all (over %zu MiB)", JJ_MAX_LIVE >> 20);
    if (tok_buf_put(b, s, n))
        longjmp(r->jmp, 2);
    r->live += n;
}

struct tok_buf *jj_scratch_open(struct jj_render *r)
{
    if (r->n_scratch == JJ_MAX_SCRATCH)
        jj_fail(r, "strings nested too deeply");
    struct tok_buf *b = &r->scratch[r->n_scratch++];
    *b = (struct tok_buf){0};
    return b;
}

void jj_scratch_close(struct jj_render *r, struct tok_buf *b)
{
    WD_ASSERT(r->n_scratch > 0 && b == &r->scratch[r->n_scratch - 1]);
    r->live -= b->n;
    free(b->p);
    *b = (struct tok_buf){0};
    r->n_scratch--;
}

struct jj_value jj_scratch_take(struct jj_render *r, struct tok_buf *b)
{
    WD_ASSERT(r->n_scratch > 0 && b == &r->scratch[r->n_scratch - 1]);
    struct jj_value v = jj_str(r->arena, b->p ? b->p : "", b->n); /* may jump: b stays open */
    jj_scratch_close(r, b);
    return v;
}

static void frame_set(struct jj_render *r, struct jj_frame *f, const char *name, struct jj_value v)
{
    for (size_t i = 0; i < f->n; i++) {
        if (strcmp(f->names[i], name) == 0) {
            f->vals[i] = v;
            return;
        }
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        const char **names = jj_alloc(r->arena, cap * sizeof(*names));
        struct jj_value *vals = jj_alloc(r->arena, cap * sizeof(*vals));
        if (f->n) {
            memcpy(names, f->names, f->n * sizeof(*names));
            memcpy(vals, f->vals, f->n * sizeof(*vals));
        }
        f->names = names;
        f->vals = vals;
        f->cap = cap;
    }
    f->names[f->n] = name;
    f->vals[f->n++] = v;
}

static struct jj_value lookup(struct jj_render *r, struct jj_frame *f, const char *name)
{
    for (; f; f = f->parent)
        for (size_t i = 0; i < f->n; i++)
            if (strcmp(f->names[i], name) == 0)
                return f->vals[i];
    for (int k = 0; k < F_COUNT; k++)
        if (strcmp(jj_func_names[k], name) == 0)
            return (struct jj_value){.type = JJ_FUNC, .u.func = k};
    (void)r;
    return (struct jj_value){.type = JJ_UNDEF};
}

static struct jj_value eval(struct jj_render *r, struct jj_frame *f, const struct jj_expr *e);

static void eval_args(struct jj_render *r, struct jj_frame *f, const struct jj_expr *e,
                      struct jj_value **args, struct jj_value **kw)
{
    *args = e->n_args ? jj_alloc(r->arena, e->n_args * sizeof(**args)) : NULL;
    *kw = e->n_kw ? jj_alloc(r->arena, e->n_kw * sizeof(**kw)) : NULL;
    for (size_t i = 0; i < e->n_args; i++)
        (*args)[i] = eval(r, f, e->args[i]);
    for (size_t i = 0; i < e->n_kw; i++)
        (*kw)[i] = eval(r, f, e->kw_vals[i]);
}

static struct jj_value eval_node(struct jj_render *r, struct jj_frame *f, const struct jj_expr *e);

/* The parser builds operator, filter and attribute chains with loops, so an AST can be as
 * deep as the template is long; the bound is here, where the recursion is. */
static struct jj_value eval(struct jj_render *r, struct jj_frame *f, const struct jj_expr *e)
{
    r->line = e->line;
    if (++r->depth > JJ_MAX_EVAL_DEPTH)
        jj_fail(r, "expression nested too deeply");
    jj_charge(r, 1);
    struct jj_value v = eval_node(r, f, e);
    r->depth--;
    return v;
}

static struct jj_value eval_node(struct jj_render *r, struct jj_frame *f, const struct jj_expr *e)
{
    struct jj_value a, b, *args, *kw;
    switch (e->kind) {
    case X_CONST:
        return e->cval;
    case X_NAME:
        return lookup(r, f, e->name);
    case X_LIST:
    case X_TUPLE: {
        struct jj_value l = jj_list_new(r->arena);
        l.is_tuple = e->kind == X_TUPLE;
        for (size_t i = 0; i < e->n_args; i++)
            jj_list_push(r->arena, l, eval(r, f, e->args[i]));
        return l;
    }
    case X_DICT: {
        struct jj_value d = jj_dict_new(r->arena);
        for (size_t i = 0; i < e->n_args; i++) {
            a = eval(r, f, e->args[i]);
            if (!jj_hashable(a))
                jj_fail(r, "unhashable type as a dict key");
            jj_dict_set(r->arena, d, a, eval(r, f, e->kw_vals[i]));
        }
        return d;
    }
    case X_ATTR:
        a = eval(r, f, e->a);
        r->line = e->line;
        return jj_getattr(r, a, e->name);
    case X_ITEM:
        a = eval(r, f, e->a);
        b = eval(r, f, e->b);
        r->line = e->line;
        return jj_getitem(r, a, b);
    case X_SLICE: {
        struct jj_value none = {.type = JJ_NONE};
        a = eval(r, f, e->a);
        struct jj_value s0 = e->b ? eval(r, f, e->b) : none, s1 = e->c ? eval(r, f, e->c) : none;
        struct jj_value s2 = e->d ? eval(r, f, e->d) : none;
        return jj_slice(r, a, s0, s1, s2);
    }
    case X_CALL:
        a = eval(r, f, e->a);
        eval_args(r, f, e, &args, &kw);
        r->line = e->line;
        return jj_call(r, a, args, e->n_args, e->kw_names, kw, e->n_kw);
    case X_FILTER:
        a = eval(r, f, e->a);
        eval_args(r, f, e, &args, &kw);
        r->line = e->line;
        return jj_filter(r, e->name, a, args, e->n_args, e->kw_names, kw, e->n_kw);
    case X_TEST: {
        a = eval(r, f, e->a);
        eval_args(r, f, e, &args, &kw);
        r->line = e->line;
        int t = jj_test(r, e->name, a, args, e->n_args);
        return jj_bool(e->negated ? !t : t);
    }
    case X_NOT:
        return jj_bool(!jj_truthy(eval(r, f, e->a)));
    case X_NEG:
    case X_POS:
        a = eval(r, f, e->a);
        if (a.type == JJ_INT || a.type == JJ_BOOL) {
            int64_t i = a.type == JJ_INT ? a.u.i : a.u.b;
            if (e->kind == X_NEG && i == INT64_MIN) /* Python has big integers; int64 does not */
                jj_fail(r, "integer overflow");
            return (struct jj_value){.type = JJ_INT, .u.i = e->kind == X_NEG ? -i : i};
        }
        if (a.type == JJ_FLOAT)
            return (struct jj_value){.type = JJ_FLOAT, .u.f = e->kind == X_NEG ? -a.u.f : a.u.f};
        jj_fail(r, "bad operand type for unary %c", e->kind == X_NEG ? '-' : '+');
    case X_BIN:
        a = eval(r, f, e->a);
        b = eval(r, f, e->b);
        r->line = e->line;
        return jj_binop(r, e->op, a, b);
    case X_AND:
        a = eval(r, f, e->a);
        return jj_truthy(a) ? eval(r, f, e->b) : a;
    case X_OR:
        a = eval(r, f, e->a);
        return jj_truthy(a) ? a : eval(r, f, e->b);
    case X_COND:
        if (jj_truthy(eval(r, f, e->a)))
            return eval(r, f, e->b);
        return e->c ? eval(r, f, e->c) : (struct jj_value){.type = JJ_UNDEF};
    }
    jj_fail(r, "bad expression");
}

enum flow { FLOW_NEXT, FLOW_BREAK, FLOW_CONTINUE };

static enum flow exec(struct jj_render *r, struct jj_frame *f, const struct jj_stmt *s,
                      int in_loop);

/* Binds loop targets: one name takes the item, several unpack a list/tuple. */
static void bind_targets(struct jj_render *r, struct jj_frame *f, const char **names, size_t n,
                         struct jj_value item)
{
    if (n == 1) {
        frame_set(r, f, names[0], item);
        return;
    }
    if (item.type != JJ_LIST || item.u.list->n != n)
        jj_fail(r, "cannot unpack %s into %zu names",
                item.type == JJ_LIST ? "a sequence of another length" : "a non-sequence", n);
    for (size_t i = 0; i < n; i++)
        frame_set(r, f, names[i], item.u.list->v[i]);
}

static struct jj_value loop_dict(struct jj_render *r, struct jj_list *items, size_t i)
{
    struct jj_value d = jj_dict_new(r->arena);
    size_t n = items->n;
    struct {
        const char *k;
        int64_t v;
    } ints[] = {{"index", (int64_t)i + 1},
                {"index0", (int64_t)i},
                {"revindex", (int64_t)(n - i)},
                {"revindex0", (int64_t)(n - i - 1)},
                {"length", (int64_t)n},
                {"depth", 1},
                {"depth0", 0}};
    for (size_t k = 0; k < sizeof(ints) / sizeof(ints[0]); k++)
        jj_dict_set(r->arena, d, jj_str(r->arena, ints[k].k, strlen(ints[k].k)),
                    (struct jj_value){.type = JJ_INT, .u.i = ints[k].v});
    jj_dict_set(r->arena, d, jj_str(r->arena, "first", 5), jj_bool(i == 0));
    jj_dict_set(r->arena, d, jj_str(r->arena, "last", 4), jj_bool(i + 1 == n));
    struct jj_value undef = {.type = JJ_UNDEF};
    jj_dict_set(r->arena, d, jj_str(r->arena, "previtem", 8), i > 0 ? items->v[i - 1] : undef);
    jj_dict_set(r->arena, d, jj_str(r->arena, "nextitem", 8), i + 1 < n ? items->v[i + 1] : undef);
    return d;
}

static void exec_for(struct jj_render *r, struct jj_frame *f, const struct jj_stmt *s)
{
    struct jj_list *src = jj_iterable(r, eval(r, f, s->expr));
    struct jj_list *items = src;
    if (s->cond) { /* the loop filter runs first; loop.length counts what passes */
        items = jj_alloc(r->arena, sizeof(*items));
        for (size_t i = 0; i < src->n; i++) {
            struct jj_frame probe = {.parent = f};
            bind_targets(r, &probe, s->targets, s->n_targets, src->v[i]);
            if (jj_truthy(eval(r, &probe, s->cond))) {
                struct jj_value l = {.type = JJ_LIST, .u.list = items};
                jj_list_push(r->arena, l, src->v[i]);
            }
        }
    }
    for (size_t i = 0; i < items->n; i++) {
        struct jj_frame it = {.parent = f};
        frame_set(r, &it, "loop", loop_dict(r, items, i));
        bind_targets(r, &it, s->targets, s->n_targets, items->v[i]);
        enum flow fl = FLOW_NEXT;
        for (const struct jj_stmt *b = s->body; b && fl == FLOW_NEXT; b = b->next)
            fl = exec(r, &it, b, 1);
        if (fl == FLOW_BREAK)
            break;
    }
    if (!items->n)
        for (const struct jj_stmt *b = s->orelse; b; b = b->next)
            exec(r, f, b, 0);
}

static enum flow exec(struct jj_render *r, struct jj_frame *f, const struct jj_stmt *s, int in_loop)
{
    r->line = s->line;
    jj_charge(r, 1);
    switch (s->kind) {
    case S_TEXT:
        jj_put(r, &r->out, s->text, s->n);
        return FLOW_NEXT;
    case S_OUT:
        jj_to_str(r, eval(r, f, s->expr), &r->out);
        return FLOW_NEXT;
    case S_IF: {
        const struct jj_stmt *body = jj_truthy(eval(r, f, s->expr)) ? s->body : s->orelse;
        for (const struct jj_stmt *b = body; b; b = b->next) {
            enum flow fl = exec(r, f, b, in_loop);
            if (fl != FLOW_NEXT)
                return fl;
        }
        return FLOW_NEXT;
    }
    case S_FOR:
        exec_for(r, f, s);
        return FLOW_NEXT;
    case S_SET: {
        struct jj_value v = eval(r, f, s->expr);
        r->line = s->line;
        if (s->attr) {
            struct jj_value ns = lookup(r, f, s->targets[0]);
            if (ns.type != JJ_NS)
                jj_fail(r, "cannot assign attribute on non-namespace object '%s'", s->targets[0]);
            if (s->attr[0] == '_')
                jj_fail(r, "cannot store underscore-prefixed attribute '%s'", s->attr);
            jj_dict_set(r->arena, ns, jj_str(r->arena, s->attr, strlen(s->attr)), v);
        } else {
            bind_targets(r, f, s->targets, s->n_targets, v);
        }
        return FLOW_NEXT;
    }
    case S_SETBLOCK: {
        if (r->n_saved == (int)(sizeof(r->saved) / sizeof(r->saved[0])))
            jj_fail(r, "set blocks nested too deep");
        r->saved[r->n_saved++] = r->out;
        r->out = (struct tok_buf){0};
        for (const struct jj_stmt *b = s->body; b; b = b->next)
            exec(r, f, b, 0);
        struct jj_value v = jj_str(r->arena, r->out.p ? r->out.p : "", r->out.n);
        r->live -= r->out.n;
        free(r->out.p);
        r->out = r->saved[--r->n_saved];
        frame_set(r, f, s->targets[0], v);
        return FLOW_NEXT;
    }
    case S_BREAK:
    case S_CONTINUE:
        if (!in_loop)
            jj_fail(r, "%s outside a loop", s->kind == S_BREAK ? "break" : "continue");
        return s->kind == S_BREAK ? FLOW_BREAK : FLOW_CONTINUE;
    case S_BODY:
        for (const struct jj_stmt *b = s->body; b; b = b->next) {
            enum flow fl = exec(r, f, b, in_loop);
            if (fl != FLOW_NEXT)
                return fl;
        }
        return FLOW_NEXT;
    }
    return FLOW_NEXT;
}

enum wd_status wd_jinja_render(const struct wd_jinja *t, struct jj_arena *arena,
                               const struct wd_jinja_var *vars, size_t n_vars, char **out_p,
                               size_t *len_p, struct wd_error *err)
{
    struct jj_render *r = calloc(1, sizeof(*r));
    if (!r)
        return wd_error_set(err, WD_ERR_NOMEM, "chat template: out of memory");
    r->arena = arena;
    jmp_buf *saved_oom = arena->oom;
    arena->oom = &r->jmp;
    struct jj_frame *root = NULL;
    int rc = setjmp(r->jmp);
    if (rc) {
        free(r->out.p);
        while (r->n_saved > 0)
            free(r->saved[--r->n_saved].p);
        while (r->n_scratch > 0)
            free(r->scratch[--r->n_scratch].p);
        arena->oom = saved_oom;
        enum wd_status st = rc == 2 ? WD_ERR_NOMEM : WD_ERR_INVALID;
        wd_error_set(err, st, "chat template: %s", rc == 2 ? "out of memory" : r->msg);
        free(r);
        return st;
    }
    root = jj_alloc(arena, sizeof(*root));
    for (size_t i = 0; i < n_vars; i++)
        frame_set(r, root, vars[i].name, vars[i].value);
    struct jj_frame *top = jj_alloc(arena, sizeof(*top));
    top->parent = root;
    for (const struct jj_stmt *s = t->root; s; s = s->next)
        exec(r, top, s, 0);
    jj_put(r, &r->out, "", 0);
    WD_ASSERT(r->n_scratch == 0);
    arena->oom = saved_oom;
    *out_p = r->out.p;
    *len_p = r->out.n;
    free(r);
    return WD_OK;
}

/*
 * Jinja interpreter internals shared by jinja_lex.c / jinja_parse.c (template -> AST),
 * jinja_eval.c (AST -> text) and the value code: jinja_builtins.c (semantics, operators,
 * globals), jinja_print.c (str / repr), jinja_filters.c, jinja_json.c. Errors inside parse and render longjmp to the entry point, which
 * frees the arena: every allocation below lives in an arena, or (a string being built) in
 * a buffer the render owns and frees on that path too, so nothing leaks.
 */
#ifndef WD_TOKENIZER_JINJA_INTERNAL_H
#define WD_TOKENIZER_JINJA_INTERNAL_H

#include "common/tokenizer/jinja.h"
#include "common/tokenizer/tok_internal.h"

enum jj_expr_kind {
    X_CONST,
    X_NAME,
    X_LIST,
    X_TUPLE,
    X_DICT,
    X_ATTR,
    X_ITEM,
    X_SLICE,
    X_CALL,
    X_FILTER,
    X_TEST,
    X_NOT,
    X_NEG,
    X_POS,
    X_BIN,
    X_AND,
    X_OR,
    X_COND,
};

enum jj_binop {
    OP_ADD,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_FLOORDIV,
    OP_MOD,
    OP_POW,
    OP_CONCAT,
    OP_EQ,
    OP_NE,
    OP_LT,
    OP_LE,
    OP_GT,
    OP_GE,
    OP_IN,
    OP_NOTIN,
};

struct jj_expr {
    enum jj_expr_kind kind;
    int line;
    struct jj_value cval;          /* X_CONST */
    const char *name;              /* X_NAME, X_ATTR attribute, X_FILTER / X_TEST name */
    enum jj_binop op;              /* X_BIN */
    int negated;                   /* X_TEST with "is not" */
    struct jj_expr *a, *b, *c, *d; /* operands; X_SLICE: a[b:c:d]; X_COND: b if a else c */
    struct jj_expr **args;         /* items, call/filter/test positional args, dict keys */
    size_t n_args;
    const char **kw_names;    /* call/filter keyword args */
    struct jj_expr **kw_vals; /* keyword values; X_DICT: the values */
    size_t n_kw;
};

enum jj_stmt_kind { S_TEXT, S_OUT, S_IF, S_FOR, S_SET, S_SETBLOCK, S_BREAK, S_CONTINUE, S_BODY };

struct jj_stmt {
    enum jj_stmt_kind kind;
    int line;
    const char *text; /* S_TEXT */
    size_t n;
    struct jj_expr *expr;   /* S_OUT, S_IF condition, S_FOR iterable, S_SET value */
    struct jj_expr *cond;   /* S_FOR loop filter */
    struct jj_stmt *body;   /* first statement of the body */
    struct jj_stmt *orelse; /* S_IF else / elif chain, S_FOR else */
    struct jj_stmt *next;
    const char **targets; /* S_FOR loop variables, S_SET / S_SETBLOCK names */
    size_t n_targets;
    const char *attr; /* S_SET ns.attr = ...: targets[0] is ns */
};

struct wd_jinja {
    struct jj_arena arena;
    struct jj_stmt *root;
};

/* ---- parser (jinja_lex.c scans and tokenizes, jinja_parse.c builds the AST) ---- */

enum jj_tk { TK_END, TK_NAME, TK_STR, TK_INT, TK_FLOAT, TK_OP };

struct jj_token {
    enum jj_tk kind;
    const char *s; /* TK_NAME / TK_OP text (NUL-terminated copy); TK_STR decoded */
    size_t n;
    int64_t i;
    double f;
};

struct jj_parser {
    struct jj_arena *arena;
    jmp_buf jmp;
    char msg[WD_ERROR_LEN];
    int line;
    /* current tag's tokens (malloc'd, reused from tag to tag) */
    struct jj_token *toks;
    size_t n_toks, cap_toks, pos;
    int depth; /* expression / block nesting, bounded to keep recursion off the stack's end */
    struct tok_buf strbuf; /* string literal being decoded (freed on the error path too) */
    /* template pieces (malloc'd) */
    struct jj_piece *pieces;
    size_t n_pieces, cap_pieces, at;
};

enum jj_piece_kind { P_TEXT, P_VAR, P_BLOCK };

struct jj_piece {
    enum jj_piece_kind kind;
    const char *s; /* text, or the tag's inner source */
    size_t n;
    int line;
};

_Noreturn void jj_perr(struct jj_parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Cuts src into p->pieces. */
void jj_scan(struct jj_parser *p, const char *src, size_t len);
/* Tokenizes the inside of one tag into p->toks (ending with TK_END). */
void jj_lex(struct jj_parser *p, const char *s, size_t n);

/* ---- render state (jinja_eval.c) ---- */
struct jj_frame {
    struct jj_frame *parent;
    const char **names;
    struct jj_value *vals;
    size_t n, cap;
};

#define JJ_MAX_STEPS 20000000u
#define JJ_MAX_STR ((size_t)64 << 20) /* bytes in any one string, the output included */
#define JJ_MAX_LIST (JJ_MAX_STR / 16) /* items in a list built by + or * */
#define JJ_MAX_LIVE (4 * JJ_MAX_STR)  /* bytes in all the render's buffers at once */
#define JJ_MAX_SCRATCH 16             /* strings under construction at once */
#define JJ_MAX_EVAL_DEPTH 256         /* nested evaluations (expressions, filters) */
#define JJ_WORK_PER_STEP 64           /* bytes scanned or compared per step charged */
#define JJ_MAX_NEST 64                /* value nesting that equality / printing follow */

struct jj_render {
    struct jj_arena *arena;
    struct tok_buf out;
    struct tok_buf saved[16]; /* outer outputs while {% set x %} blocks render */
    int n_saved;
    /* Strings being built by filters, conversions and slices. The render owns them so that
     * an error unwinding out of the builder still frees them: opened and closed in stack
     * order; the error path frees every one still open. */
    struct tok_buf scratch[JJ_MAX_SCRATCH];
    int n_scratch;
    size_t live; /* bytes in out, saved[] and scratch[] together, bounded by JJ_MAX_LIVE */
    int depth;   /* eval / nested-filter recursion, bounded to keep off the C stack's end */
    jmp_buf jmp;
    char msg[WD_ERROR_LEN];
    int line;
    /* Work so far (evaluations, element comparisons, bytes scanned / JJ_WORK_PER_STEP),
     * bounded so a hostile template cannot spin. */
    uint64_t steps;
};

/* Records a render error and longjmps out (never returns). */
_Noreturn void jj_fail(struct jj_render *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Counts n units of work; past JJ_MAX_STEPS the render fails. */
void jj_charge(struct jj_render *r, uint64_t n);
/* Appends to a buffer the render owns (r->out, a saved output or an open scratch). A result
 * past JJ_MAX_STR fails the render; out of memory longjmps with 2. Either way the render's
 * error path frees the buffer. */
void jj_put(struct jj_render *r, struct tok_buf *b, const char *s, size_t n);
/* A filter's scratch string: open one (empty), append with jj_put, then either turn it into
 * an arena string (take) or discard it (close); the one closed must be the last opened. */
struct tok_buf *jj_scratch_open(struct jj_render *r);
struct jj_value jj_scratch_take(struct jj_render *r, struct tok_buf *b);
void jj_scratch_close(struct jj_render *r, struct tok_buf *b);

/* ---- builtins (jinja_builtins.c) ---- */
enum jj_func { F_NAMESPACE, F_RAISE, F_STRFTIME, F_RANGE, F_DICT, F_COUNT };
extern const char *const jj_func_names[F_COUNT];

int jj_truthy(struct jj_value v);
/* Python ==. r (NULL outside a render) is charged one step per element pair compared: values
 * that share their halves make a naive walk exponential. */
int jj_equal(struct jj_render *r, struct jj_value a, struct jj_value b);
/* Whether v can be a dict key: the scalars (Python hashes tuples too; chat templates do not
 * key dicts by them, and a scalar key compares in O(1)). */
int jj_hashable(struct jj_value v);
/* jinja_print.c: str(v) as Python/Jinja print it, appended to out (a render-owned buffer). */
void jj_to_str(struct jj_render *r, struct jj_value v, struct tok_buf *out);
struct jj_value jj_str_of(struct jj_render *r, struct jj_value v);
/* int(f), truncating as Python does; NaN, infinities and values past int64 fail the render
 * (Python raises for the first two and makes a big integer of the last). */
int64_t jj_float_to_int(struct jj_render *r, double f);
struct jj_value jj_dict_get(struct jj_value dict, const char *key, size_t n, int *found);
struct jj_value jj_getattr(struct jj_render *r, struct jj_value obj, const char *name);
struct jj_value jj_getitem(struct jj_render *r, struct jj_value obj, struct jj_value key);
struct jj_value jj_slice(struct jj_render *r, struct jj_value obj, struct jj_value start,
                         struct jj_value stop, struct jj_value step);
struct jj_value jj_binop(struct jj_render *r, enum jj_binop op, struct jj_value a,
                         struct jj_value b);
struct jj_value jj_call(struct jj_render *r, struct jj_value fn, struct jj_value *args,
                        size_t n_args, const char **kw, struct jj_value *kw_vals, size_t n_kw);
struct jj_value jj_filter(struct jj_render *r, const char *name, struct jj_value v,
                          struct jj_value *args, size_t n_args, const char **kw,
                          struct jj_value *kw_vals, size_t n_kw);
int jj_test(struct jj_render *r, const char *name, struct jj_value v, struct jj_value *args,
            size_t n_args);
/* Items to iterate over (list items, dict keys, string characters); UNDEF -> empty. */
struct jj_list *jj_iterable(struct jj_render *r, struct jj_value v);
int jj_filter_known(const char *name);
/* jinja_json.c: the tojson filter, and "fmt" % args. */
struct jj_value jj_tojson(struct jj_render *r, struct jj_value v, struct jj_value *args,
                          size_t n_args, const char **kw, struct jj_value *kw_vals, size_t n_kw);
struct jj_value jj_percent_format(struct jj_render *r, struct jj_value fmt, struct jj_value args);
/* jinja_filters.c: str / dict methods. */
struct jj_value jj_call_method(struct jj_render *r, struct jj_value self, const char *name,
                               struct jj_value *args, size_t n_args, const char **kw,
                               struct jj_value *kw_vals, size_t n_kw);
int jj_test_known(const char *name);

#endif

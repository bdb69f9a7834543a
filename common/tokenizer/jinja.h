/*
 * A small Jinja2 interpreter for Hugging Face chat templates (internal to
 * common/tokenizer; chat_template.c is its only user).
 *
 * It implements the subset the shipped templates and their relatives use, with the
 * environment transformers renders them in (trim_blocks, lstrip_blocks, loop controls,
 * tojson without HTML escaping, raise_exception, namespace): text and {{ }} output with
 * whitespace control, if/elif/else, for (unpacking, loop filter, else, loop.*), set
 * (plain, namespace attribute, block), break/continue, generation blocks, raw, comments,
 * Python-like expressions (arithmetic, comparison chains, in/not in, and/or/not, ternary,
 * slicing, attribute/item access), the common filters, tests and str/dict methods.
 * Outside the subset: macros, call blocks, includes/inheritance, custom filters; they are
 * refused at parse time.
 *
 * Memory: a parsed template owns its AST (one arena). A render allocates values in a
 * per-render arena released when it returns. Values are plain structs; lists, dicts and
 * namespaces are referenced through pointers into that arena.
 */
#ifndef WD_TOKENIZER_JINJA_H
#define WD_TOKENIZER_JINJA_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util/status.h"

struct jj_arena_chunk;
struct jj_arena {
    struct jj_arena_chunk *head;
    jmp_buf *oom; /* where an allocation failure jumps (set by whoever owns the arena) */
    size_t total; /* bytes handed out; capped so a hostile template cannot eat the host */
};
/* Zeroed memory; on allocation failure longjmps to *a->oom with value 2 (never returns
 * NULL). */
void *jj_alloc(struct jj_arena *a, size_t n);
void jj_arena_free(struct jj_arena *a);

enum jj_type {
    JJ_UNDEF = 0,
    JJ_NONE,
    JJ_BOOL,
    JJ_INT,
    JJ_FLOAT,
    JJ_STR,
    JJ_LIST, /* also tuples (is_tuple) */
    JJ_DICT,
    JJ_NS,   /* namespace(): a dict with attribute assignment */
    JJ_FUNC, /* a global function */
    JJ_METHOD,
};

struct jj_list;
struct jj_dict;

struct jj_value {
    enum jj_type type;
    int is_tuple;
    union {
        int b;
        int64_t i;
        double f;
        struct {
            const char *s;
            size_t n;
        } str;
        struct jj_list *list;
        struct jj_dict *dict; /* JJ_DICT and JJ_NS */
        int func;             /* JJ_FUNC: builtin index */
        struct {
            struct jj_value *self;
            const char *name;
        } method;
    } u;
};

struct jj_list {
    struct jj_value *v;
    size_t n, cap;
};

struct jj_dict {
    struct jj_value *keys, *vals;
    size_t n, cap;
};

/* Value constructors (strings are copied into the arena). */
struct jj_value jj_str(struct jj_arena *a, const char *s, size_t n);
struct jj_value jj_bool(int b);
struct jj_value jj_none(void);
struct jj_value jj_list_new(struct jj_arena *a);
void jj_list_push(struct jj_arena *a, struct jj_value list, struct jj_value item);
struct jj_value jj_dict_new(struct jj_arena *a);
void jj_dict_set(struct jj_arena *a, struct jj_value dict, struct jj_value key,
                 struct jj_value val);

struct wd_jinja;

/* Parses template source. Errors: WD_ERR_FORMAT with the line and cause. */
enum wd_status wd_jinja_parse(const char *src, size_t len, struct wd_jinja **t_p,
                              struct wd_error *err);
void wd_jinja_destroy(struct wd_jinja *t);

struct wd_jinja_var {
    const char *name;
    struct jj_value value;
};

/* Renders with the given top-level variables (values built in *arena by the caller; the
 * render allocates there too, the caller frees it). *out_p is malloc'd, NUL-terminated.
 * Errors: WD_ERR_INVALID for a template runtime error (undefined access, type error,
 * raise_exception) with its message. */
enum wd_status wd_jinja_render(const struct wd_jinja *t, struct jj_arena *arena,
                               const struct wd_jinja_var *vars, size_t n_vars, char **out_p,
                               size_t *len_p, struct wd_error *err);

#endif

/*
 * json.dumps as transformers' tojson filter calls it (ensure_ascii=False, no HTML
 * escaping, indent / separators / sort_keys) and Python's printf-style "%" string
 * formatting for the conversions chat templates use (%s %d %i %r %%).
 */
#include "common/tokenizer/jinja_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- json.dumps ---- */

struct json_opts {
    int indent; /* -1: none */
    const char *item_sep, *key_sep;
    int sort_keys;
};

static void json_str(struct jj_render *r, struct tok_buf *b, const char *s, size_t n)
{
    jj_put(r, b, "\"", 1);
    size_t run = 0; /* start of the pending run of bytes copied as they are */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        size_t m = 0;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            m = 2;
        } else if (c < 0x20) {
            const char *named = c == '\n'   ? "\\n"
                                : c == '\r' ? "\\r"
                                : c == '\t' ? "\\t"
                                : c == '\b' ? "\\b"
                                : c == '\f' ? "\\f"
                                            : NULL;
            m = named ? 2 : (size_t)snprintf(esc, sizeof(esc), "\\u%04x", c);
            if (named)
                memcpy(esc, named, 2);
        }
        if (m) {
            jj_put(r, b, s + run, i - run);
            jj_put(r, b, esc, m);
            run = i + 1;
        }
    }
    jj_put(r, b, s + run, n - run);
    jj_put(r, b, "\"", 1);
}

static void json_newline(struct jj_render *r, struct tok_buf *b, const struct json_opts *o,
                         int depth)
{
    jj_put(r, b, "\n", 1);
    for (int k = 0; k < o->indent * depth; k++)
        jj_put(r, b, " ", 1);
}

static void json_dump(struct jj_render *r, struct tok_buf *b, struct jj_value v,
                      const struct json_opts *o, int depth)
{
    if (depth > 64)
        jj_fail(r, "tojson: nesting too deep");
    switch (v.type) {
    case JJ_NONE:
        jj_put(r, b, "null", 4);
        return;
    case JJ_BOOL:
        jj_put(r, b, v.u.b ? "true" : "false", v.u.b ? 4 : 5);
        return;
    case JJ_INT:
        jj_to_str(r, v, b);
        return;
    case JJ_FLOAT:
        if (v.u.f != v.u.f)
            jj_put(r, b, "NaN", 3);
        else if (v.u.f > 1e308 || v.u.f < -1e308)
            jj_put(r, b, v.u.f > 0 ? "Infinity" : "-Infinity", v.u.f > 0 ? 8 : 9);
        else
            jj_to_str(r, v, b);
        return;
    case JJ_STR:
        json_str(r, b, v.u.str.s, v.u.str.n);
        return;
    case JJ_LIST:
        jj_put(r, b, "[", 1);
        for (size_t i = 0; i < v.u.list->n; i++) {
            if (i)
                jj_put(r, b, o->item_sep, strlen(o->item_sep));
            if (o->indent >= 0)
                json_newline(r, b, o, depth + 1);
            json_dump(r, b, v.u.list->v[i], o, depth + 1);
        }
        if (o->indent >= 0 && v.u.list->n)
            json_newline(r, b, o, depth);
        jj_put(r, b, "]", 1);
        return;
    case JJ_DICT: {
        size_t n = v.u.dict->n;
        size_t *order = jj_alloc(r->arena, (n + 1) * sizeof(*order));
        for (size_t i = 0; i < n; i++)
            order[i] = i;
        for (size_t i = 1; o->sort_keys && i < n; i++) { /* insertion sort on string keys */
            for (size_t j = i; j > 0; j--) {
                struct jj_value ka = v.u.dict->keys[order[j - 1]], kb = v.u.dict->keys[order[j]];
                struct jj_value sa = jj_str_of(r, ka), sb = jj_str_of(r, kb);
                size_t m = sa.u.str.n < sb.u.str.n ? sa.u.str.n : sb.u.str.n;
                int c = memcmp(sa.u.str.s, sb.u.str.s, m);
                if (c < 0 || (c == 0 && sa.u.str.n <= sb.u.str.n))
                    break;
                size_t t = order[j];
                order[j] = order[j - 1];
                order[j - 1] = t;
            }
        }
        jj_put(r, b, "{", 1);
        for (size_t i = 0; i < n; i++) {
            struct jj_value k = v.u.dict->keys[order[i]];
            if (i)
                jj_put(r, b, o->item_sep, strlen(o->item_sep));
            if (o->indent >= 0)
                json_newline(r, b, o, depth + 1);
            if (k.type == JJ_STR)
                json_str(r, b, k.u.str.s, k.u.str.n);
            else if (k.type == JJ_NONE || k.type == JJ_BOOL || k.type == JJ_INT ||
                     k.type == JJ_FLOAT) {
                struct tok_buf *kb = jj_scratch_open(r);
                json_dump(r, kb, k, o, depth + 1);
                json_str(r, b, kb->p, kb->n);
                jj_scratch_close(r, kb);
            } else {
                jj_fail(r, "tojson: keys must be str, int, float, bool or None");
            }
            jj_put(r, b, o->key_sep, strlen(o->key_sep));
            json_dump(r, b, v.u.dict->vals[order[i]], o, depth + 1);
        }
        if (o->indent >= 0 && n)
            json_newline(r, b, o, depth);
        jj_put(r, b, "}", 1);
        return;
    }
    default:
        jj_fail(r, "tojson: object is not JSON serializable");
    }
}

struct jj_value jj_tojson(struct jj_render *r, struct jj_value v, struct jj_value *args,
                          size_t n_args, const char **kw, struct jj_value *kv, size_t n_kw)
{
    struct json_opts o = {-1, ", ", ": ", 0};
    struct jj_value indent = n_args > 0 ? args[0] : jj_none();
    for (size_t i = 0; i < n_kw; i++) {
        if (!strcmp(kw[i], "indent"))
            indent = kv[i];
        else if (!strcmp(kw[i], "sort_keys"))
            o.sort_keys = jj_truthy(kv[i]);
        else if (!strcmp(kw[i], "separators") && kv[i].type == JJ_LIST && kv[i].u.list->n == 2 &&
                 kv[i].u.list->v[0].type == JJ_STR && kv[i].u.list->v[1].type == JJ_STR) {
            o.item_sep = jj_str_of(r, kv[i].u.list->v[0]).u.str.s;
            o.key_sep = jj_str_of(r, kv[i].u.list->v[1]).u.str.s;
        } else if (strcmp(kw[i], "ensure_ascii") != 0 || jj_truthy(kv[i])) {
            jj_fail(r, "tojson: unsupported argument '%s'", kw[i]);
        }
    }
    if (indent.type == JJ_INT) {
        o.indent = indent.u.i < 0 ? 0 : indent.u.i > 64 ? 64 : (int)indent.u.i;
        int custom = 0;
        for (size_t i = 0; i < n_kw; i++)
            custom |= !strcmp(kw[i], "separators");
        if (!custom)
            o.item_sep = ",";
    }
    struct tok_buf *b = jj_scratch_open(r);
    json_dump(r, b, v, &o, 0);
    return jj_scratch_take(r, b);
}

struct jj_value jj_percent_format(struct jj_render *r, struct jj_value fmt, struct jj_value args)
{
    struct jj_list one = {&args, 1, 1};
    struct jj_list *av = args.type == JJ_LIST && args.is_tuple ? args.u.list : &one;
    struct tok_buf *b = jj_scratch_open(r);
    size_t k = 0;
    for (size_t i = 0; i < fmt.u.str.n; i++) {
        char c = fmt.u.str.s[i];
        if (c != '%') {
            jj_put(r, b, &c, 1);
            continue;
        }
        if (++i >= fmt.u.str.n)
            jj_fail(r, "incomplete format");
        char conv = fmt.u.str.s[i];
        if (conv == '%') {
            jj_put(r, b, "%", 1);
            continue;
        }
        if (k >= av->n || !conv || !strchr("sdir", conv))
            jj_fail(r, "unsupported format or not enough arguments");
        struct jj_value a = av->v[k++];
        if (conv == 'd' || conv == 'i') {
            if (a.type != JJ_INT && a.type != JJ_BOOL && a.type != JJ_FLOAT)
                jj_fail(r, "%%d format: a number is required");
            a = (struct jj_value){.type = JJ_INT,
                                  .u.i = a.type == JJ_FLOAT ? jj_float_to_int(r, a.u.f)
                                         : a.type == JJ_INT ? a.u.i
                                                            : a.u.b};
        }
        jj_to_str(r, a, b);
    }
    if (k != av->n)
        jj_fail(r, "not all arguments converted during string formatting");
    return jj_scratch_take(r, b);
}

/*
 * Jinja filters, tests and the Python str/dict methods chat templates call (tojson and
 * "%" formatting are in jinja_json.c). Case mapping is per code point (utf8proc), which
 * differs from Python only for the few characters whose upper/lower case is
 * longer than one code point.
 */
#include "common/tokenizer/jinja_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static const char *const FILTERS[] = {
    "length",  "count",     "string", "trim",       "upper",      "lower",  "capitalize", "title",
    "default", "d",         "join",   "first",      "last",       "list",   "reverse",    "tojson",
    "int",     "float",     "abs",    "replace",    "safe",       "escape", "e",          "items",
    "map",     "select",    "reject", "selectattr", "rejectattr", "unique", "sum",        "min",
    "max",     "wordcount", "indent", "batch",      NULL};
static const char *const TESTS[] = {
    "defined",     "undefined", "none",        "boolean", "true",     "false",    "integer",
    "float",       "number",    "string",      "mapping", "sequence", "iterable", "callable",
    "odd",         "even",      "divisibleby", "eq",      "equalto",  "==",       "ne",
    "!=",          "lt",        "lessthan",    "<",       "le",       "<=",       "gt",
    "greaterthan", ">",         "ge",          ">=",      "in",       "lower",    "upper",
    "sameas",      NULL};

static int known(const char *const *names, const char *name)
{
    for (; *names; names++)
        if (strcmp(*names, name) == 0)
            return 1;
    return 0;
}

int jj_filter_known(const char *name)
{
    return known(FILTERS, name);
}
int jj_test_known(const char *name)
{
    return known(TESTS, name);
}

static int py_space(int32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

static struct jj_value need_str(struct jj_render *r, struct jj_value v, const char *what)
{
    if (v.type != JJ_STR)
        jj_fail(r, "%s expects a string", what);
    return v;
}

static int in_chars(int32_t cp, struct jj_value chars)
{
    for (size_t i = 0; i < chars.u.str.n;) {
        int32_t c;
        i += (size_t)tok_utf8_next(chars.u.str.s + i, chars.u.str.n - i, &c);
        if (c == cp)
            return 1;
    }
    return 0;
}

/* str.strip / lstrip / rstrip: chars NONE means whitespace. */
static struct jj_value strip(struct jj_render *r, struct jj_value s, struct jj_value chars,
                             int left, int right)
{
    int ws = chars.type == JJ_NONE || chars.type == JJ_UNDEF;
    if (!ws)
        need_str(r, chars, "strip()");
    size_t a = 0, b = s.u.str.n;
    while (left && a < b) {
        int32_t cp;
        int k = tok_utf8_next(s.u.str.s + a, b - a, &cp);
        if (!(ws ? py_space(cp) : in_chars(cp, chars)))
            break;
        a += (size_t)k;
    }
    while (right && b > a) {
        size_t st = b - 1;
        while (st > a && ((unsigned char)s.u.str.s[st] & 0xC0) == 0x80)
            st--;
        int32_t cp;
        tok_utf8_next(s.u.str.s + st, b - st, &cp);
        if (!(ws ? py_space(cp) : in_chars(cp, chars)))
            break;
        b = st;
    }
    return jj_str(r->arena, s.u.str.s + a, b - a);
}

/* Byte offset of the first sub in p[from, n), SIZE_MAX if none. memmem (two-way) is linear
 * where a memcmp at every offset is len(p) * len(sub). It looks through a window that
 * doubles while nothing is found, so a loop over many close matches (replace, split,
 * count) costs about the distance between them, not the rest of the string each time
 * (which is what sanitizers' memmem interceptors check per call). */
static size_t search(struct jj_render *r, const char *p, size_t n, size_t from, struct jj_value sub)
{
    size_t m = sub.u.str.n, w = m < 32 ? 64 : 2 * m;
    for (;;) {
        size_t len = n - from < w ? n - from : w;
        const char *hit = memmem(p + from, len, sub.u.str.s, m);
        size_t at = hit ? (size_t)(hit - p) : from + len;
        jj_charge(r, (at - from + m) / JJ_WORK_PER_STEP); /* about what memmem read */
        if (hit)
            return at;
        if (from + len == n || len < m)
            return SIZE_MAX;
        from += len - m + 1; /* windows overlap by m - 1 bytes: no match straddles a cut */
        if (w < ((size_t)1 << 20))
            w *= 2;
    }
}

static struct jj_value split(struct jj_render *r, struct jj_value s, struct jj_value sep,
                             int64_t maxsplit)
{
    struct jj_value out = jj_list_new(r->arena);
    const char *p = s.u.str.s;
    size_t n = s.u.str.n;
    if (sep.type == JJ_NONE || sep.type == JJ_UNDEF) { /* runs of whitespace, no empties */
        size_t i = 0;
        for (;;) {
            while (i < n) {
                int32_t cp;
                int k = tok_utf8_next(p + i, n - i, &cp);
                if (!py_space(cp))
                    break;
                i += (size_t)k;
            }
            if (i >= n)
                break;
            if (maxsplit >= 0 && (int64_t)out.u.list->n == maxsplit) {
                size_t e = n;
                while (e > i) { /* the remainder keeps inner whitespace but not trailing */
                    size_t st = e - 1;
                    while (st > i && ((unsigned char)p[st] & 0xC0) == 0x80)
                        st--;
                    int32_t cp;
                    tok_utf8_next(p + st, e - st, &cp);
                    if (!py_space(cp))
                        break;
                    e = st;
                }
                jj_list_push(r->arena, out, jj_str(r->arena, p + i, e - i));
                break;
            }
            size_t st = i;
            while (i < n) {
                int32_t cp;
                int k = tok_utf8_next(p + i, n - i, &cp);
                if (py_space(cp))
                    break;
                i += (size_t)k;
            }
            jj_list_push(r->arena, out, jj_str(r->arena, p + st, i - st));
        }
        return out;
    }
    need_str(r, sep, "split()");
    if (!sep.u.str.n)
        jj_fail(r, "empty separator");
    size_t st = 0, at;
    while ((maxsplit < 0 || (int64_t)out.u.list->n < maxsplit) &&
           (at = search(r, p, n, st, sep)) != SIZE_MAX) {
        jj_list_push(r->arena, out, jj_str(r->arena, p + st, at - st));
        st = at + sep.u.str.n;
    }
    jj_list_push(r->arena, out, jj_str(r->arena, p + st, n - st));
    return out;
}

static struct jj_value replace(struct jj_render *r, struct jj_value s, struct jj_value old,
                               struct jj_value new_, int64_t count)
{
    need_str(r, old, "replace()");
    need_str(r, new_, "replace()");
    struct tok_buf *b = jj_scratch_open(r);
    size_t n = s.u.str.n, done = 0, i = 0, at;
    if (!old.u.str.n) { /* Python inserts new between every character */
        for (size_t k = 0; k <= n;) {
            if (count < 0 || (int64_t)done < count) {
                jj_put(r, b, new_.u.str.s, new_.u.str.n);
                done++;
            }
            if (k == n)
                break;
            size_t e = k + 1;
            while (e < n && ((unsigned char)s.u.str.s[e] & 0xC0) == 0x80)
                e++;
            jj_put(r, b, s.u.str.s + k, e - k);
            k = e;
        }
        return jj_scratch_take(r, b);
    }
    while ((count < 0 || (int64_t)done < count) &&
           (at = search(r, s.u.str.s, n, i, old)) != SIZE_MAX) {
        jj_put(r, b, s.u.str.s + i, at - i);
        jj_put(r, b, new_.u.str.s, new_.u.str.n);
        i = at + old.u.str.n;
        done++;
    }
    jj_put(r, b, s.u.str.s + i, n - i);
    return jj_scratch_take(r, b);
}

/* mode 0 lower, 1 upper, 2 capitalize, 3 title */
static struct jj_value recase(struct jj_render *r, struct jj_value s, int mode)
{
    struct tok_buf *b = jj_scratch_open(r);
    int prev_cased = 0, first = 1;
    for (size_t i = 0; i < s.u.str.n;) {
        int32_t cp;
        i += (size_t)tok_utf8_next(s.u.str.s + i, s.u.str.n - i, &cp);
        int32_t out = cp;
        if (mode == 0)
            out = utf8proc_tolower(cp);
        else if (mode == 1)
            out = utf8proc_toupper(cp);
        else if (mode == 2)
            out = first ? utf8proc_totitle(cp) : utf8proc_tolower(cp);
        else
            out = prev_cased ? utf8proc_tolower(cp) : utf8proc_totitle(cp);
        const utf8proc_property_t *pr = utf8proc_get_property(cp);
        prev_cased = pr->category == UTF8PROC_CATEGORY_LU || pr->category == UTF8PROC_CATEGORY_LL ||
                     pr->category == UTF8PROC_CATEGORY_LT;
        first = 0;
        char u[4];
        jj_put(r, b, u, (size_t)tok_utf8_put(u, out));
    }
    return jj_scratch_take(r, b);
}

static int64_t len_of(struct jj_render *r, struct jj_value v)
{
    switch (v.type) {
    case JJ_STR: {
        int64_t c = 0;
        for (size_t i = 0; i < v.u.str.n; i++)
            c += ((unsigned char)v.u.str.s[i] & 0xC0) != 0x80;
        return c;
    }
    case JJ_LIST:
        return (int64_t)v.u.list->n;
    case JJ_DICT:
    case JJ_NS:
        return (int64_t)v.u.dict->n;
    case JJ_UNDEF:
        return 0;
    default:
        jj_fail(r, "object has no len()");
    }
}

/* ---- methods ---- */

static struct jj_value arg(struct jj_value *args, size_t n, size_t i, const char **kw,
                           struct jj_value *kv, size_t n_kw, const char *name)
{
    if (i < n)
        return args[i];
    for (size_t k = 0; k < n_kw; k++)
        if (name && !strcmp(kw[k], name))
            return kv[k];
    return (struct jj_value){.type = JJ_NONE};
}

static int starts_or_ends(struct jj_render *r, struct jj_value s, struct jj_value x, int end)
{
    if (x.type == JJ_LIST && x.is_tuple) {
        for (size_t i = 0; i < x.u.list->n; i++)
            if (starts_or_ends(r, s, x.u.list->v[i], end))
                return 1;
        return 0;
    }
    need_str(r, x, end ? "endswith()" : "startswith()");
    if (x.u.str.n > s.u.str.n)
        return 0;
    return !memcmp(s.u.str.s + (end ? s.u.str.n - x.u.str.n : 0), x.u.str.s, x.u.str.n);
}

static int64_t find(struct jj_render *r, struct jj_value s, struct jj_value sub, int last)
{
    int64_t at = -1;
    if (!last) {
        size_t i = search(r, s.u.str.s, s.u.str.n, 0, sub);
        at = i == SIZE_MAX ? -1 : (int64_t)i;
    }
    /* rfind: memcmp at every offset from the end, charged per 64 offsets tried */
    for (size_t i = s.u.str.n - sub.u.str.n + 1; last && sub.u.str.n <= s.u.str.n && i-- > 0;) {
        if (!memcmp(s.u.str.s + i, sub.u.str.s, sub.u.str.n)) {
            at = (int64_t)i;
            break;
        }
        if (i % JJ_WORK_PER_STEP == 0)
            jj_charge(r, 1 + sub.u.str.n);
    }
    if (at < 0)
        return -1;
    int64_t cps = 0; /* byte offset -> code point index */
    for (int64_t i = 0; i < at; i++)
        cps += ((unsigned char)s.u.str.s[i] & 0xC0) != 0x80;
    return cps;
}

static int all_chars(struct jj_value s, int kind)
{
    if (!s.u.str.n)
        return 0;
    int cased = 0;
    for (size_t i = 0; i < s.u.str.n;) {
        int32_t cp;
        i += (size_t)tok_utf8_next(s.u.str.s + i, s.u.str.n - i, &cp);
        utf8proc_category_t c = utf8proc_category(cp);
        int is_upper = c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LT;
        int is_lower = c == UTF8PROC_CATEGORY_LL;
        switch (kind) {
        case 0:
            if (c != UTF8PROC_CATEGORY_ND)
                return 0;
            break;
        case 1:
            if (c < UTF8PROC_CATEGORY_LU || c > UTF8PROC_CATEGORY_LO)
                return 0;
            break;
        case 2:
            if (!py_space(cp))
                return 0;
            break;
        case 3:
            if (is_lower)
                return 0;
            cased |= is_upper;
            break;
        case 4:
            if (is_upper)
                return 0;
            cased |= is_lower;
            break;
        }
    }
    return kind >= 3 ? cased : 1;
}

struct jj_value jj_call_method(struct jj_render *r, struct jj_value self, const char *name,
                               struct jj_value *args, size_t n, const char **kw,
                               struct jj_value *kv, size_t n_kw)
{
    if (self.type == JJ_DICT) {
        struct jj_value out = jj_list_new(r->arena);
        if (!strcmp(name, "get")) {
            struct jj_value key = arg(args, n, 0, kw, kv, n_kw, "key");
            for (size_t i = 0; i < self.u.dict->n; i++)
                if (jj_equal(r, self.u.dict->keys[i], key))
                    return self.u.dict->vals[i];
            return arg(args, n, 1, kw, kv, n_kw, "default");
        }
        int items = !strcmp(name, "items"), keys = !strcmp(name, "keys");
        if (!items && !keys && strcmp(name, "values"))
            jj_fail(r, "dict.%s is not allowed in a chat template", name);
        for (size_t i = 0; i < self.u.dict->n; i++) {
            if (items) {
                struct jj_value pair = jj_list_new(r->arena);
                pair.is_tuple = 1;
                jj_list_push(r->arena, pair, self.u.dict->keys[i]);
                jj_list_push(r->arena, pair, self.u.dict->vals[i]);
                jj_list_push(r->arena, out, pair);
            } else {
                jj_list_push(r->arena, out, keys ? self.u.dict->keys[i] : self.u.dict->vals[i]);
            }
        }
        return out;
    }
    struct jj_value a0 = arg(args, n, 0, kw, kv, n_kw, NULL);
    struct jj_value a1 = arg(args, n, 1, kw, kv, n_kw, NULL);
    if (!strcmp(name, "startswith") || !strcmp(name, "endswith"))
        return jj_bool(starts_or_ends(r, self, a0, name[0] == 'e'));
    if (!strcmp(name, "strip"))
        return strip(r, self, a0, 1, 1);
    if (!strcmp(name, "lstrip"))
        return strip(r, self, a0, 1, 0);
    if (!strcmp(name, "rstrip"))
        return strip(r, self, a0, 0, 1);
    if (!strcmp(name, "split") || !strcmp(name, "rsplit")) {
        struct jj_value sep = arg(args, n, 0, kw, kv, n_kw, "sep");
        struct jj_value ms = arg(args, n, 1, kw, kv, n_kw, "maxsplit");
        if (!strcmp(name, "rsplit") && ms.type == JJ_INT && ms.u.i >= 0)
            jj_fail(r, "rsplit with maxsplit is not supported");
        return split(r, self, sep, ms.type == JJ_INT ? ms.u.i : -1);
    }
    if (!strcmp(name, "upper"))
        return recase(r, self, 1);
    if (!strcmp(name, "lower"))
        return recase(r, self, 0);
    if (!strcmp(name, "capitalize"))
        return recase(r, self, 2);
    if (!strcmp(name, "title"))
        return recase(r, self, 3);
    if (!strcmp(name, "replace")) {
        struct jj_value c = arg(args, n, 2, kw, kv, n_kw, "count");
        return replace(r, self, a0, a1, c.type == JJ_INT ? c.u.i : -1);
    }
    if (!strcmp(name, "find") || !strcmp(name, "rfind"))
        return (struct jj_value){.type = JJ_INT,
                                 .u.i = find(r, self, need_str(r, a0, name), name[0] == 'r')};
    if (!strcmp(name, "count")) {
        need_str(r, a0, "count()");
        if (!a0.u.str.n) /* Python: one more than the number of code points */
            return (struct jj_value){.type = JJ_INT, .u.i = len_of(r, self) + 1};
        int64_t c = 0;
        for (size_t i = 0, at; (at = search(r, self.u.str.s, self.u.str.n, i, a0)) != SIZE_MAX;
             i = at + a0.u.str.n)
            c++;
        return (struct jj_value){.type = JJ_INT, .u.i = c};
    }
    if (!strcmp(name, "join")) {
        struct jj_list *items = jj_iterable(r, a0);
        struct tok_buf *b = jj_scratch_open(r);
        for (size_t i = 0; i < items->n; i++) {
            if (items->v[i].type != JJ_STR)
                jj_fail(r, "join() expects strings");
            if (i)
                jj_put(r, b, self.u.str.s, self.u.str.n);
            jj_put(r, b, items->v[i].u.str.s, items->v[i].u.str.n);
        }
        return jj_scratch_take(r, b);
    }
    if (!strcmp(name, "isdigit"))
        return jj_bool(all_chars(self, 0));
    if (!strcmp(name, "isalpha"))
        return jj_bool(all_chars(self, 1));
    if (!strcmp(name, "isspace"))
        return jj_bool(all_chars(self, 2));
    if (!strcmp(name, "isupper"))
        return jj_bool(all_chars(self, 3));
    if (!strcmp(name, "islower"))
        return jj_bool(all_chars(self, 4));
    jj_fail(r, "str.%s is not supported", name);
}

/* ---- filters ---- */

static struct jj_value attr_path(struct jj_render *r, struct jj_value v, struct jj_value attr)
{
    if (attr.type == JJ_INT)
        return jj_getitem(r, v, attr);
    struct jj_value a = need_str(r, attr, "attribute");
    /* "a.b" walks nested items */
    size_t st = 0;
    for (size_t i = 0; i <= a.u.str.n; i++) {
        if (i == a.u.str.n || a.u.str.s[i] == '.') {
            v = jj_getitem(r, v, jj_str(r->arena, a.u.str.s + st, i - st));
            st = i + 1;
        }
    }
    return v;
}

static struct jj_value select_like(struct jj_render *r, struct jj_value v, struct jj_value *args,
                                   size_t n_args, int by_attr, int keep)
{
    struct jj_list *items = jj_iterable(r, v);
    struct jj_value out = jj_list_new(r->arena);
    size_t first_test = by_attr ? 1 : 0;
    if (by_attr && n_args < 1)
        jj_fail(r, "selectattr/rejectattr need an attribute");
    for (size_t i = 0; i < items->n; i++) {
        struct jj_value x = by_attr ? attr_path(r, items->v[i], args[0]) : items->v[i];
        int t;
        if (n_args > first_test) {
            struct jj_value test = need_str(r, args[first_test], "test name");
            char name[32];
            snprintf(name, sizeof(name), "%.*s", (int)test.u.str.n, test.u.str.s);
            if (!jj_test_known(name))
                jj_fail(r, "no test named '%s'", name);
            t = jj_test(r, name, x, args + first_test + 1, n_args - first_test - 1);
        } else {
            t = jj_truthy(x);
        }
        if (t == keep)
            jj_list_push(r->arena, out, items->v[i]);
    }
    return out;
}

struct jj_value jj_filter(struct jj_render *r, const char *name, struct jj_value v,
                          struct jj_value *args, size_t n, const char **kw, struct jj_value *kv,
                          size_t n_kw)
{
    struct jj_value a0 = arg(args, n, 0, kw, kv, n_kw, NULL);
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        struct jj_value def = n ? args[0] : arg(args, n, 0, kw, kv, n_kw, "default_value");
        if (def.type == JJ_NONE && !n)
            def = jj_str(r->arena, "", 0);
        int boolean = jj_truthy(arg(args, n, 1, kw, kv, n_kw, "boolean"));
        return v.type == JJ_UNDEF || (boolean && !jj_truthy(v)) ? def : v;
    }
    if (!strcmp(name, "tojson"))
        return jj_tojson(r, v, args, n, kw, kv, n_kw);
    if (!strcmp(name, "safe"))
        return v;
    if (!strcmp(name, "length") || !strcmp(name, "count"))
        return (struct jj_value){.type = JJ_INT, .u.i = len_of(r, v)};
    if (!strcmp(name, "string"))
        return jj_str_of(r, v);
    if (v.type == JJ_UNDEF && strcmp(name, "list") && strcmp(name, "join") &&
        strcmp(name, "first") && strcmp(name, "last"))
        v = jj_str(r->arena, "", 0); /* str filters see an undefined value as "" */
    if (!strcmp(name, "trim"))
        return strip(r, jj_str_of(r, v), a0, 1, 1);
    if (!strcmp(name, "upper"))
        return recase(r, jj_str_of(r, v), 1);
    if (!strcmp(name, "lower"))
        return recase(r, jj_str_of(r, v), 0);
    if (!strcmp(name, "capitalize"))
        return recase(r, jj_str_of(r, v), 2);
    if (!strcmp(name, "title"))
        return recase(r, jj_str_of(r, v), 3);
    if (!strcmp(name, "replace")) {
        struct jj_value c = arg(args, n, 2, kw, kv, n_kw, "count");
        return replace(r, jj_str_of(r, v), a0, arg(args, n, 1, kw, kv, n_kw, NULL),
                       c.type == JJ_INT ? c.u.i : -1);
    }
    if (!strcmp(name, "escape") || !strcmp(name, "e")) {
        struct jj_value s = jj_str_of(r, v);
        struct tok_buf *b = jj_scratch_open(r);
        for (size_t i = 0; i < s.u.str.n; i++) {
            char c = s.u.str.s[i];
            const char *rep = c == '&'    ? "&amp;"
                              : c == '<'  ? "&lt;"
                              : c == '>'  ? "&gt;"
                              : c == '"'  ? "&#34;"
                              : c == '\'' ? "&#39;"
                                          : NULL;
            jj_put(r, b, rep ? rep : &c, rep ? strlen(rep) : 1);
        }
        return jj_scratch_take(r, b);
    }
    if (!strcmp(name, "join")) {
        struct jj_list *items = jj_iterable(r, v);
        struct jj_value sep =
            n || n_kw ? jj_str_of(r, arg(args, n, 0, kw, kv, n_kw, "d")) : jj_str(r->arena, "", 0);
        struct jj_value attr = arg(args, n, 1, kw, kv, n_kw, "attribute");
        struct tok_buf *b = jj_scratch_open(r);
        for (size_t i = 0; i < items->n; i++) {
            if (i)
                jj_put(r, b, sep.u.str.s, sep.u.str.n);
            struct jj_value x =
                attr.type != JJ_NONE ? attr_path(r, items->v[i], attr) : items->v[i];
            jj_to_str(r, x, b);
        }
        return jj_scratch_take(r, b);
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        struct jj_list *items = jj_iterable(r, v);
        if (!items->n)
            return (struct jj_value){.type = JJ_UNDEF};
        return items->v[name[0] == 'f' ? 0 : items->n - 1];
    }
    if (!strcmp(name, "list") || !strcmp(name, "reverse") || !strcmp(name, "unique")) {
        struct jj_list *items = jj_iterable(r, v);
        if (name[0] == 'r' && v.type == JJ_STR) {
            struct tok_buf *b = jj_scratch_open(r);
            for (size_t i = items->n; i-- > 0;)
                jj_put(r, b, items->v[i].u.str.s, items->v[i].u.str.n);
            return jj_scratch_take(r, b);
        }
        struct jj_value out = jj_list_new(r->arena);
        for (size_t i = 0; i < items->n; i++) {
            struct jj_value x = items->v[name[0] == 'r' ? items->n - 1 - i : i];
            int dup = 0;
            for (size_t k = 0; name[0] == 'u' && k < out.u.list->n && !dup; k++)
                dup = jj_equal(r, out.u.list->v[k], x);
            if (!dup)
                jj_list_push(r->arena, out, x);
        }
        return out;
    }
    if (!strcmp(name, "items")) {
        if (v.type != JJ_DICT && v.type != JJ_NS)
            jj_fail(r, "items filter expects a mapping");
        struct jj_value d = v;
        d.type = JJ_DICT;
        return jj_call_method(r, d, "items", NULL, 0, NULL, NULL, 0);
    }
    if (!strcmp(name, "int") || !strcmp(name, "float") || !strcmp(name, "abs")) {
        int is_int = name[0] == 'i';
        if (name[0] == 'a') {
            if (v.type == JJ_FLOAT)
                return (struct jj_value){.type = JJ_FLOAT, .u.f = v.u.f < 0 ? -v.u.f : v.u.f};
            if (v.type != JJ_INT && v.type != JJ_BOOL)
                jj_fail(r, "bad operand type for abs()");
            int64_t i = v.type == JJ_INT ? v.u.i : v.u.b;
            if (i == INT64_MIN) /* -i is undefined; Python's result is a big integer */
                jj_fail(r, "integer overflow");
            return (struct jj_value){.type = JJ_INT, .u.i = i < 0 ? -i : i};
        }
        if (is_int && (v.type == JJ_INT || v.type == JJ_BOOL)) /* exact, not via double */
            return (struct jj_value){.type = JJ_INT, .u.i = v.type == JJ_INT ? v.u.i : v.u.b};
        double f = 0;
        if (v.type == JJ_INT || v.type == JJ_BOOL)
            f = (double)(v.type == JJ_INT ? v.u.i : v.u.b);
        else if (v.type == JJ_FLOAT)
            f = v.u.f;
        else if (v.type == JJ_STR) {
            char buf[64];
            snprintf(buf, sizeof(buf), "%.*s", (int)v.u.str.n, v.u.str.s);
            char *end;
            f = strtod(buf, &end);
            if (end == buf || (is_int && f != f)) /* Jinja2: int('nan') gives the default */
                f = a0.type == JJ_INT ? (double)a0.u.i : a0.type == JJ_FLOAT ? a0.u.f : 0;
        }
        if (is_int)
            return (struct jj_value){.type = JJ_INT, .u.i = jj_float_to_int(r, f)};
        return (struct jj_value){.type = JJ_FLOAT, .u.f = f};
    }
    if (!strcmp(name, "map")) {
        struct jj_list *items = jj_iterable(r, v);
        struct jj_value out = jj_list_new(r->arena);
        struct jj_value attr = arg(args, 0, 0, kw, kv, n_kw, "attribute");
        struct jj_value def = arg(args, 0, 0, kw, kv, n_kw, "default");
        for (size_t i = 0; i < items->n; i++) {
            struct jj_value x;
            if (attr.type != JJ_NONE) {
                x = attr_path(r, items->v[i], attr);
                if (x.type == JJ_UNDEF && def.type != JJ_NONE)
                    x = def;
            } else {
                struct jj_value f = need_str(r, a0, "map filter name");
                char fname[32];
                snprintf(fname, sizeof(fname), "%.*s", (int)f.u.str.n, f.u.str.s);
                if (!jj_filter_known(fname))
                    jj_fail(r, "no filter named '%s'", fname);
                /* map('map', 'map', ...) recurses once per argument */
                if (++r->depth > JJ_MAX_EVAL_DEPTH)
                    jj_fail(r, "filters nested too deeply");
                x = jj_filter(r, fname, items->v[i], n > 1 ? args + 1 : NULL, n ? n - 1 : 0, NULL,
                              NULL, 0);
                r->depth--;
            }
            jj_list_push(r->arena, out, x);
        }
        return out;
    }
    if (!strcmp(name, "select") || !strcmp(name, "reject"))
        return select_like(r, v, args, n, 0, name[0] == 's');
    if (!strcmp(name, "selectattr") || !strcmp(name, "rejectattr"))
        return select_like(r, v, args, n, 1, name[0] == 's');
    if (!strcmp(name, "sum") || !strcmp(name, "min") || !strcmp(name, "max")) {
        struct jj_list *items = jj_iterable(r, v);
        if (name[1] == 'u') {
            struct jj_value acc = {.type = JJ_INT, .u.i = 0};
            for (size_t i = 0; i < items->n; i++)
                acc = jj_binop(r, OP_ADD, acc, items->v[i]);
            return acc;
        }
        if (!items->n)
            return (struct jj_value){.type = JJ_UNDEF};
        struct jj_value best = items->v[0];
        for (size_t i = 1; i < items->n; i++) {
            int less = jj_truthy(jj_binop(r, OP_LT, items->v[i], best));
            if (name[1] == 'i' ? less : jj_truthy(jj_binop(r, OP_GT, items->v[i], best)))
                best = items->v[i];
        }
        return best;
    }
    if (!strcmp(name, "wordcount")) {
        struct jj_value parts = split(r, jj_str_of(r, v), jj_none(), -1);
        return (struct jj_value){.type = JJ_INT, .u.i = (int64_t)parts.u.list->n};
    }
    if (!strcmp(name, "indent")) { /* lines split on \n only (Python splitlines knows more) */
        struct jj_value s = jj_str_of(r, v), w = arg(args, n, 0, kw, kv, n_kw, "width");
        int first = jj_truthy(arg(args, n, 1, kw, kv, n_kw, "first"));
        int blank = jj_truthy(arg(args, n, 2, kw, kv, n_kw, "blank"));
        struct jj_value pad = w;
        if (w.type != JJ_STR) {
            size_t width = w.type == JJ_INT ? (size_t)(w.u.i > 256 ? 256
                                                       : w.u.i < 0 ? 0
                                                                   : w.u.i)
                                            : 4;
            char *sp = jj_alloc(r->arena, width + 1);
            memset(sp, ' ', width);
            pad = (struct jj_value){.type = JJ_STR, .u.str = {sp, width}};
        }
        struct tok_buf *b = jj_scratch_open(r);
        if (first)
            jj_put(r, b, pad.u.str.s, pad.u.str.n);
        size_t st = 0;
        int line = 0;
        for (size_t i = 0; i < s.u.str.n; i++) {
            if (s.u.str.s[i] != '\n')
                continue;
            if (line++ > 0) {
                jj_put(r, b, "\n", 1);
                if (blank || i > st)
                    jj_put(r, b, pad.u.str.s, pad.u.str.n);
            }
            jj_put(r, b, s.u.str.s + st, i - st);
            st = i + 1;
        }
        if (line > 0) {
            jj_put(r, b, "\n", 1);
            if (blank || st < s.u.str.n)
                jj_put(r, b, pad.u.str.s, pad.u.str.n);
        }
        jj_put(r, b, s.u.str.s + st, s.u.str.n - st);
        return jj_scratch_take(r, b);
    }
    jj_fail(r, "filter '%s' is not supported", name);
}

/* ---- tests ---- */

int jj_test(struct jj_render *r, const char *name, struct jj_value v, struct jj_value *args,
            size_t n)
{
    struct jj_value a = n ? args[0] : (struct jj_value){.type = JJ_UNDEF};
    if (!strcmp(name, "defined"))
        return v.type != JJ_UNDEF;
    if (!strcmp(name, "undefined"))
        return v.type == JJ_UNDEF;
    if (!strcmp(name, "none"))
        return v.type == JJ_NONE;
    if (!strcmp(name, "boolean"))
        return v.type == JJ_BOOL;
    if (!strcmp(name, "true") || !strcmp(name, "false"))
        return v.type == JJ_BOOL && v.u.b == (name[0] == 't');
    if (!strcmp(name, "integer"))
        return v.type == JJ_INT;
    if (!strcmp(name, "float"))
        return v.type == JJ_FLOAT;
    if (!strcmp(name, "number"))
        return v.type == JJ_INT || v.type == JJ_FLOAT || v.type == JJ_BOOL;
    if (!strcmp(name, "string"))
        return v.type == JJ_STR;
    if (!strcmp(name, "mapping"))
        return v.type == JJ_DICT;
    if (!strcmp(name, "sequence"))
        return v.type == JJ_STR || v.type == JJ_LIST || v.type == JJ_DICT;
    if (!strcmp(name, "iterable"))
        return v.type == JJ_STR || v.type == JJ_LIST || v.type == JJ_DICT;
    if (!strcmp(name, "callable"))
        return v.type == JJ_FUNC || v.type == JJ_METHOD;
    if (!strcmp(name, "odd") || !strcmp(name, "even") || !strcmp(name, "divisibleby")) {
        if (v.type != JJ_INT && v.type != JJ_BOOL)
            jj_fail(r, "%s test expects an integer", name);
        int64_t x = v.type == JJ_INT ? v.u.i : v.u.b;
        if (name[0] == 'd') {
            if ((a.type != JJ_INT) || a.u.i == 0)
                jj_fail(r, "divisibleby needs a non-zero integer");
            return a.u.i == -1 || x % a.u.i == 0; /* INT64_MIN % -1 traps */
        }
        return (x % 2 != 0) == (name[0] == 'o');
    }
    if (!strcmp(name, "lower") || !strcmp(name, "upper"))
        return v.type == JJ_STR && all_chars(v, name[0] == 'l' ? 4 : 3);
    if (!strcmp(name, "sameas"))
        return v.type == a.type && jj_equal(r, v, a);
    static const struct {
        const char *names[3];
        enum jj_binop op;
    } cmp[] = {{{"eq", "equalto", "=="}, OP_EQ},    {{"ne", "!=", NULL}, OP_NE},
               {{"lt", "lessthan", "<"}, OP_LT},    {{"le", "<=", NULL}, OP_LE},
               {{"gt", "greaterthan", ">"}, OP_GT}, {{"ge", ">=", NULL}, OP_GE},
               {{"in", NULL, NULL}, OP_IN}};
    for (size_t k = 0; k < sizeof(cmp) / sizeof(cmp[0]); k++)
        for (int j = 0; j < 3 && cmp[k].names[j]; j++)
            if (!strcmp(name, cmp[k].names[j]))
                return jj_truthy(jj_binop(r, cmp[k].op, v, a));
    jj_fail(r, "test '%s' is not supported", name);
}

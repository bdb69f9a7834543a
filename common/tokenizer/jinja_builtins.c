/*
 * Jinja values and their Python semantics: truthiness, equality and ordering, attribute
 * and item access the way Jinja2's sandbox resolves them, binary operators (int64, failing
 * where Python's integers would outgrow it), and the globals transformers adds (namespace,
 * raise_exception, strftime_now, dict) plus range. Printing is in jinja_print.c; filters,
 * tests and str/dict methods in jinja_filters.c.
 */
#include "common/tokenizer/jinja_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const jj_func_names[F_COUNT] = {"namespace", "raise_exception", "strftime_now", "range",
                                            "dict"};

struct jj_value jj_str(struct jj_arena *a, const char *s, size_t n)
{
    char *d = jj_alloc(a, n + 1);
    if (n)
        memcpy(d, s, n);
    return (struct jj_value){.type = JJ_STR, .u.str = {d, n}};
}

struct jj_value jj_bool(int b)
{
    return (struct jj_value){.type = JJ_BOOL, .u.b = !!b};
}
struct jj_value jj_none(void)
{
    return (struct jj_value){.type = JJ_NONE};
}

struct jj_value jj_list_new(struct jj_arena *a)
{
    struct jj_value v = {.type = JJ_LIST};
    v.u.list = jj_alloc(a, sizeof(*v.u.list));
    return v;
}

void jj_list_push(struct jj_arena *a, struct jj_value list, struct jj_value item)
{
    struct jj_list *l = list.u.list;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        struct jj_value *v = jj_alloc(a, cap * sizeof(*v));
        if (l->n)
            memcpy(v, l->v, l->n * sizeof(*v));
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = item;
}

struct jj_value jj_dict_new(struct jj_arena *a)
{
    struct jj_value v = {.type = JJ_DICT};
    v.u.dict = jj_alloc(a, sizeof(*v.u.dict));
    return v;
}

void jj_dict_set(struct jj_arena *a, struct jj_value dict, struct jj_value key, struct jj_value val)
{
    struct jj_dict *d = dict.u.dict;
    for (size_t i = 0; i < d->n; i++) {
        if (jj_equal(NULL, d->keys[i], key)) { /* keys are scalars (jj_hashable): cheap */
            d->vals[i] = val;
            return;
        }
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        struct jj_value *k = jj_alloc(a, cap * sizeof(*k)), *v = jj_alloc(a, cap * sizeof(*v));
        if (d->n) {
            memcpy(k, d->keys, d->n * sizeof(*k));
            memcpy(v, d->vals, d->n * sizeof(*v));
        }
        d->keys = k;
        d->vals = v;
        d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n++] = val;
}

struct jj_value jj_dict_get(struct jj_value dict, const char *key, size_t n, int *found)
{
    struct jj_dict *d = dict.u.dict;
    for (size_t i = 0; i < d->n; i++) {
        if (d->keys[i].type == JJ_STR && d->keys[i].u.str.n == n &&
            memcmp(d->keys[i].u.str.s, key, n) == 0) {
            *found = 1;
            return d->vals[i];
        }
    }
    *found = 0;
    return (struct jj_value){.type = JJ_UNDEF};
}

int jj_truthy(struct jj_value v)
{
    switch (v.type) {
    case JJ_UNDEF:
    case JJ_NONE:
        return 0;
    case JJ_BOOL:
        return v.u.b;
    case JJ_INT:
        return v.u.i != 0;
    case JJ_FLOAT:
        return v.u.f != 0.0;
    case JJ_STR:
        return v.u.str.n != 0;
    case JJ_LIST:
        return v.u.list->n != 0;
    case JJ_DICT:
        return v.u.dict->n != 0;
    default:
        return 1;
    }
}

static int is_num(struct jj_value v)
{
    return v.type == JJ_INT || v.type == JJ_BOOL || v.type == JJ_FLOAT;
}

static double num(struct jj_value v)
{
    return v.type == JJ_FLOAT ? v.u.f : v.type == JJ_INT ? (double)v.u.i : (double)v.u.b;
}

static int64_t inum(struct jj_value v)
{
    return v.type == JJ_INT ? v.u.i : v.u.b;
}

static int equal_depth(struct jj_render *r, struct jj_value a, struct jj_value b, int depth);

int jj_equal(struct jj_render *r, struct jj_value a, struct jj_value b)
{
    return equal_depth(r, a, b, 0);
}

int jj_hashable(struct jj_value v)
{
    return v.type == JJ_STR || v.type == JJ_INT || v.type == JJ_FLOAT || v.type == JJ_BOOL ||
           v.type == JJ_NONE;
}

/* Values nested deeper than JJ_MAX_NEST compare unequal instead of recursing further. */
static int equal_depth(struct jj_render *r, struct jj_value a, struct jj_value b, int depth)
{
    if (depth > JJ_MAX_NEST)
        return 0;
    if (r)
        jj_charge(r, 1);
    if (is_num(a) && is_num(b)) {
        if (a.type != JJ_FLOAT && b.type != JJ_FLOAT)
            return inum(a) == inum(b);
        return num(a) == num(b);
    }
    if (a.type != b.type)
        return 0;
    switch (a.type) {
    case JJ_UNDEF:
    case JJ_NONE:
        return 1;
    case JJ_STR:
        if (r)
            jj_charge(r, a.u.str.n / JJ_WORK_PER_STEP);
        return a.u.str.n == b.u.str.n && !memcmp(a.u.str.s, b.u.str.s, a.u.str.n);
    case JJ_LIST:
        if (a.is_tuple != b.is_tuple || a.u.list->n != b.u.list->n)
            return 0;
        for (size_t i = 0; i < a.u.list->n; i++)
            if (!equal_depth(r, a.u.list->v[i], b.u.list->v[i], depth + 1))
                return 0;
        return 1;
    case JJ_DICT:
        if (a.u.dict->n != b.u.dict->n)
            return 0;
        for (size_t i = 0; i < a.u.dict->n; i++) {
            size_t j = 0;
            while (j < b.u.dict->n && !equal_depth(r, a.u.dict->keys[i], b.u.dict->keys[j], 0))
                j++;
            if (j == b.u.dict->n ||
                !equal_depth(r, a.u.dict->vals[i], b.u.dict->vals[j], depth + 1))
                return 0;
        }
        return 1;
    case JJ_NS:
        return a.u.dict == b.u.dict;
    case JJ_FUNC:
        return a.u.func == b.u.func;
    default:
        return 0;
    }
}

/* Python ordering for <, <=, >, >=: numbers, strings (code point order = UTF-8 byte order),
 * sequences lexicographically. */
static int compare(struct jj_render *r, struct jj_value a, struct jj_value b, int depth)
{
    if (depth > JJ_MAX_NEST)
        jj_fail(r, "values nested too deeply to compare");
    jj_charge(r, 1);
    if (is_num(a) && is_num(b)) {
        double x = num(a), y = num(b);
        return x < y ? -1 : x > y;
    }
    if (a.type == JJ_STR && b.type == JJ_STR) {
        size_t n = a.u.str.n < b.u.str.n ? a.u.str.n : b.u.str.n;
        int c = memcmp(a.u.str.s, b.u.str.s, n);
        if (c)
            return c < 0 ? -1 : 1;
        return a.u.str.n < b.u.str.n ? -1 : a.u.str.n > b.u.str.n;
    }
    if (a.type == JJ_LIST && b.type == JJ_LIST) {
        for (size_t i = 0; i < a.u.list->n && i < b.u.list->n; i++) {
            if (!jj_equal(r, a.u.list->v[i], b.u.list->v[i]))
                return compare(r, a.u.list->v[i], b.u.list->v[i], depth + 1);
        }
        return a.u.list->n < b.u.list->n ? -1 : a.u.list->n > b.u.list->n;
    }
    jj_fail(r, "'<' not supported between these types");
}

int64_t jj_float_to_int(struct jj_render *r, double f)
{
    if (f != f)
        jj_fail(r, "cannot convert float NaN to integer");
    if (!(f >= -0x1p63 && f < 0x1p63)) /* the cast is undefined outside int64's range */
        jj_fail(r, "integer overflow converting %g to an integer", f);
    return (int64_t)f;
}

/* ---- access ---- */

static const char *const DICT_METHODS[] = {"items", "keys",    "values",     "get",
                                           "pop",   "popitem", "setdefault", "update",
                                           "clear", "copy",    NULL};
static const char *const STR_METHODS[] = {
    "startswith", "endswith", "strip",      "lstrip",  "rstrip",  "split",      "rsplit", "upper",
    "lower",      "title",    "capitalize", "replace", "find",    "rfind",      "count",  "join",
    "isdigit",    "isalpha",  "isspace",    "isupper", "islower", "splitlines", "format", NULL};

static int in_list(const char *const *names, const char *name)
{
    for (; *names; names++)
        if (strcmp(*names, name) == 0)
            return 1;
    return 0;
}

static struct jj_value method(struct jj_render *r, struct jj_value self, const char *name)
{
    struct jj_value m = {.type = JJ_METHOD};
    m.u.method.self = jj_alloc(r->arena, sizeof(struct jj_value));
    *m.u.method.self = self;
    m.u.method.name = name;
    return m;
}

struct jj_value jj_getattr(struct jj_render *r, struct jj_value obj, const char *name)
{
    int found;
    switch (obj.type) {
    case JJ_UNDEF:
        jj_fail(r, "'%s' accessed on an undefined value", name);
    case JJ_DICT:
        if (in_list(DICT_METHODS, name))
            return method(r, obj, name);
        return jj_dict_get(obj, name, strlen(name), &found);
    case JJ_NS:
        return jj_dict_get(obj, name, strlen(name), &found);
    case JJ_STR:
        if (in_list(STR_METHODS, name))
            return method(r, obj, name);
        break;
    default:
        break;
    }
    return (struct jj_value){.type = JJ_UNDEF};
}

/* Code point boundaries: the start of the code point after the one at byte i (i < n), and
 * of the one before byte i (i > 0). */
static size_t cp_next(const char *s, size_t n, size_t i)
{
    i++;
    while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80)
        i++;
    return i;
}

static size_t cp_prev(const char *s, size_t i)
{
    i--;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80)
        i--;
    return i;
}

static size_t cp_count(struct jj_render *r, const char *s, size_t n)
{
    jj_charge(r, n / JJ_WORK_PER_STEP);
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

/* Byte range [*a_p, *b_p) of code point i of s (negative: from the end), walking only as
 * far as i; 0 when out of range. */
static int cp_at(struct jj_render *r, const char *s, size_t n, int64_t i, size_t *a_p, size_t *b_p)
{
    size_t at = 0;
    if (i >= 0) {
        for (int64_t k = 0; k < i && at < n; k++)
            at = cp_next(s, n, at);
        if (at >= n)
            return 0;
    } else {
        at = n;
        for (int64_t k = 0; k > i; k--) {
            if (at == 0)
                return 0;
            at = cp_prev(s, at);
        }
    }
    jj_charge(r, (i >= 0 ? at : n - at) / JJ_WORK_PER_STEP);
    *a_p = at;
    *b_p = cp_next(s, n, at);
    return 1;
}

struct jj_value jj_getitem(struct jj_render *r, struct jj_value obj, struct jj_value key)
{
    if (obj.type == JJ_UNDEF)
        jj_fail(r, "subscript of an undefined value");
    if (obj.type == JJ_LIST && (key.type == JJ_INT || key.type == JJ_BOOL)) {
        int64_t i = inum(key), len = (int64_t)obj.u.list->n;
        if (i < 0)
            i += len;
        if (i < 0 || i >= len)
            return (struct jj_value){.type = JJ_UNDEF};
        return obj.u.list->v[i];
    }
    if (obj.type == JJ_STR && (key.type == JJ_INT || key.type == JJ_BOOL)) {
        size_t a, b;
        if (!cp_at(r, obj.u.str.s, obj.u.str.n, inum(key), &a, &b))
            return (struct jj_value){.type = JJ_UNDEF};
        return jj_str(r->arena, obj.u.str.s + a, b - a);
    }
    if (obj.type == JJ_DICT || obj.type == JJ_NS) {
        for (size_t i = 0; i < obj.u.dict->n; i++)
            if (jj_equal(r, obj.u.dict->keys[i], key))
                return obj.u.dict->vals[i];
    }
    if (key.type == JJ_STR && obj.type != JJ_NS) {
        char name[64];
        if (key.u.str.n < sizeof(name)) {
            memcpy(name, key.u.str.s, key.u.str.n);
            name[key.u.str.n] = 0;
            if ((obj.type == JJ_DICT && in_list(DICT_METHODS, name)) ||
                (obj.type == JJ_STR && in_list(STR_METHODS, name)))
                return method(r, obj, jj_str(r->arena, name, strlen(name)).u.str.s);
        }
    }
    return (struct jj_value){.type = JJ_UNDEF};
}

static int64_t slice_index(struct jj_render *r, struct jj_value v, int64_t def)
{
    if (v.type == JJ_NONE || v.type == JJ_UNDEF)
        return def;
    if (v.type != JJ_INT && v.type != JJ_BOOL)
        jj_fail(r, "slice indices must be integers");
    return inum(v);
}

struct jj_value jj_slice(struct jj_render *r, struct jj_value obj, struct jj_value start,
                         struct jj_value stop, struct jj_value step)
{
    if (obj.type != JJ_LIST && obj.type != JJ_STR)
        jj_fail(r, "cannot slice this value");
    int64_t len = obj.type == JJ_LIST ? (int64_t)obj.u.list->n
                                      : (int64_t)cp_count(r, obj.u.str.s, obj.u.str.n);
    int64_t st = slice_index(r, step, 1);
    if (st == 0)
        jj_fail(r, "slice step cannot be zero");
    int64_t lo = slice_index(r, start, st > 0 ? 0 : len - 1);
    int64_t hi = slice_index(r, stop, st > 0 ? len : -len - 1);
    /* Python's PySlice_AdjustIndices */
    if (lo < 0)
        lo = lo + len < 0 ? (st < 0 ? -1 : 0) : lo + len;
    else if (lo >= len)
        lo = st < 0 ? len - 1 : len;
    if (hi < 0)
        hi = hi + len < 0 ? (st < 0 ? -1 : 0) : hi + len;
    else if (hi >= len)
        hi = st < 0 ? len - 1 : len;
    /* i += st stops before it would overflow: the next index is out of range anyway. */
    if (obj.type == JJ_LIST) {
        struct jj_value out = jj_list_new(r->arena);
        out.is_tuple = obj.is_tuple;
        for (int64_t i = lo; st > 0 ? i < hi : i > hi;) {
            jj_list_push(r->arena, out, obj.u.list->v[i]);
            if (__builtin_add_overflow(i, st, &i))
                break;
        }
        return out;
    }
    /* Strings: one cursor (code point index ci at byte bi) walks the way the step goes, so
     * the slice costs one pass over the string, not one pass per code point. */
    const char *s = obj.u.str.s;
    size_t n = obj.u.str.n, bi = st > 0 ? 0 : n;
    int64_t ci = st > 0 ? 0 : len;
    struct tok_buf *b = jj_scratch_open(r);
    for (int64_t i = lo; st > 0 ? i < hi : i > hi;) {
        for (; ci < i; ci++)
            bi = cp_next(s, n, bi);
        for (; ci > i; ci--)
            bi = cp_prev(s, bi);
        jj_put(r, b, s + bi, cp_next(s, n, bi) - bi);
        if (__builtin_add_overflow(i, st, &i))
            break;
    }
    return jj_scratch_take(r, b);
}

struct jj_list *jj_iterable(struct jj_render *r, struct jj_value v)
{
    struct jj_value l;
    switch (v.type) {
    case JJ_UNDEF:
        return jj_list_new(r->arena).u.list;
    case JJ_LIST:
        return v.u.list;
    case JJ_DICT:
        l = jj_list_new(r->arena);
        for (size_t i = 0; i < v.u.dict->n; i++)
            jj_list_push(r->arena, l, v.u.dict->keys[i]);
        return l.u.list;
    case JJ_STR:
        l = jj_list_new(r->arena);
        for (size_t i = 0; i < v.u.str.n;) {
            size_t e = cp_next(v.u.str.s, v.u.str.n, i);
            jj_list_push(r->arena, l, jj_str(r->arena, v.u.str.s + i, e - i));
            i = e;
        }
        return l.u.list;
    default:
        jj_fail(r, "value is not iterable");
    }
}

/* ---- operators ---- */

static int contains(struct jj_render *r, struct jj_value hay, struct jj_value needle)
{
    switch (hay.type) {
    case JJ_STR:
        if (needle.type != JJ_STR)
            jj_fail(r, "'in <string>' requires string as left operand");
        jj_charge(r, hay.u.str.n / JJ_WORK_PER_STEP);
        /* memmem (two-way) is linear; a byte-by-byte memcmp loop is hay * needle. */
        return memmem(hay.u.str.s, hay.u.str.n, needle.u.str.s, needle.u.str.n) != NULL;
    case JJ_LIST:
        for (size_t i = 0; i < hay.u.list->n; i++)
            if (jj_equal(r, hay.u.list->v[i], needle))
                return 1;
        return 0;
    case JJ_DICT:
    case JJ_NS:
        for (size_t i = 0; i < hay.u.dict->n; i++)
            if (jj_equal(r, hay.u.dict->keys[i], needle))
                return 1;
        return 0;
    case JJ_UNDEF:
        return 0;
    default:
        jj_fail(r, "argument of type is not iterable for 'in'");
    }
}

static struct jj_value repeat(struct jj_render *r, struct jj_value seq, int64_t times)
{
    if (times < 0)
        times = 0;
    int is_str = seq.type == JJ_STR;
    size_t unit = is_str ? seq.u.str.n : seq.u.list->n;
    if (unit && (uint64_t)times > (is_str ? JJ_MAX_STR : JJ_MAX_LIST) / unit)
        jj_fail(r, "%s too large", is_str ? "string" : "list");
    jj_charge(r, (unit * (size_t)times) / JJ_WORK_PER_STEP);
    /* Copy one unit, then double the filled prefix: log2(times) copies, not times. */
    size_t total = unit * (size_t)times, esize = is_str ? 1 : sizeof(struct jj_value);
    char *d = jj_alloc(r->arena, (total + 1) * esize);
    if (total) {
        memcpy(d, is_str ? (const void *)seq.u.str.s : (const void *)seq.u.list->v, unit * esize);
        for (size_t done = unit; done < total; done *= 2)
            memcpy(d + done * esize, d, (done < total - done ? done : total - done) * esize);
    }
    if (is_str)
        return (struct jj_value){.type = JJ_STR, .u.str = {d, total}};
    struct jj_value out = jj_list_new(r->arena);
    out.is_tuple = seq.is_tuple;
    out.u.list->v = (struct jj_value *)(void *)d;
    out.u.list->n = out.u.list->cap = total;
    return out;
}

static struct jj_value int_or_float(int is_float, int64_t i, double f)
{
    if (is_float)
        return (struct jj_value){.type = JJ_FLOAT, .u.f = f};
    return (struct jj_value){.type = JJ_INT, .u.i = i};
}

/* x ** y for y >= 0 by squaring; Python's result is a big integer where int64 overflows,
 * so that fails instead of wrapping. */
static int64_t int_pow(struct jj_render *r, int64_t x, int64_t y)
{
    int64_t p = 1;
    while (y > 0) {
        if ((y & 1) && __builtin_mul_overflow(p, x, &p))
            jj_fail(r, "integer overflow");
        y >>= 1;
        if (y && __builtin_mul_overflow(x, x, &x))
            jj_fail(r, "integer overflow");
    }
    return p;
}

struct jj_value jj_binop(struct jj_render *r, enum jj_binop op, struct jj_value a,
                         struct jj_value b)
{
    if (op == OP_CONCAT) {
        struct jj_value x = jj_str_of(r, a), y = jj_str_of(r, b);
        if (x.u.str.n + y.u.str.n > JJ_MAX_STR)
            jj_fail(r, "string too large");
        char *s = jj_alloc(r->arena, x.u.str.n + y.u.str.n + 1);
        memcpy(s, x.u.str.s, x.u.str.n);
        memcpy(s + x.u.str.n, y.u.str.s, y.u.str.n);
        return (struct jj_value){.type = JJ_STR, .u.str = {s, x.u.str.n + y.u.str.n}};
    }
    switch (op) {
    case OP_EQ:
        return jj_bool(jj_equal(r, a, b));
    case OP_NE:
        return jj_bool(!jj_equal(r, a, b));
    case OP_LT:
        return jj_bool(compare(r, a, b, 0) < 0);
    case OP_LE:
        return jj_bool(compare(r, a, b, 0) <= 0);
    case OP_GT:
        return jj_bool(compare(r, a, b, 0) > 0);
    case OP_GE:
        return jj_bool(compare(r, a, b, 0) >= 0);
    case OP_IN:
        return jj_bool(contains(r, b, a));
    case OP_NOTIN:
        return jj_bool(!contains(r, b, a));
    default:
        break;
    }
    if (a.type == JJ_UNDEF || b.type == JJ_UNDEF)
        jj_fail(r, "arithmetic on an undefined value");
    if (is_num(a) && is_num(b)) {
        int fl = a.type == JJ_FLOAT || b.type == JJ_FLOAT;
        int64_t x = fl ? 0 : inum(a), y = fl ? 0 : inum(b), z = 0;
        double fx = num(a), fy = num(b);
        /* Python integers do not overflow; int64 ones fail rather than wrap. */
        int ovf = 0;
        switch (op) {
        case OP_ADD:
            ovf = __builtin_add_overflow(x, y, &z);
            break;
        case OP_SUB:
            ovf = __builtin_sub_overflow(x, y, &z);
            break;
        case OP_MUL:
            ovf = __builtin_mul_overflow(x, y, &z);
            break;
        default:
            break;
        }
        if (ovf)
            jj_fail(r, "integer overflow");
        switch (op) {
        case OP_ADD:
            return int_or_float(fl, z, fx + fy);
        case OP_SUB:
            return int_or_float(fl, z, fx - fy);
        case OP_MUL:
            return int_or_float(fl, z, fx * fy);
        case OP_DIV:
            if (fy == 0.0)
                jj_fail(r, "division by zero");
            return (struct jj_value){.type = JJ_FLOAT, .u.f = fx / fy};
        case OP_FLOORDIV:
        case OP_MOD:
            if (fl ? fy == 0.0 : y == 0)
                jj_fail(r, "integer division or modulo by zero");
            if (fl) {
                double q = floor(fx / fy), m = fx - q * fy;
                return (struct jj_value){.type = JJ_FLOAT, .u.f = op == OP_MOD ? m : q};
            } else {
                if (y == -1) { /* INT64_MIN / -1 traps in C; Python says -x and 0 */
                    if (op == OP_FLOORDIV && x == INT64_MIN)
                        jj_fail(r, "integer overflow");
                    return (struct jj_value){.type = JJ_INT, .u.i = op == OP_MOD ? 0 : -x};
                }
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) {
                    q--;
                    m += y;
                }
                return (struct jj_value){.type = JJ_INT, .u.i = op == OP_MOD ? m : q};
            }
        case OP_POW:
            if (!fl && y >= 0)
                return (struct jj_value){.type = JJ_INT, .u.i = int_pow(r, x, y)};
            if (fx == 0.0 && fy < 0)
                jj_fail(r, "0 cannot be raised to a negative power");
            return (struct jj_value){.type = JJ_FLOAT, .u.f = pow(fx, fy)};
        default:
            break;
        }
    }
    if (op == OP_ADD && a.type == JJ_STR && b.type == JJ_STR)
        return jj_binop(r, OP_CONCAT, a, b);
    if (op == OP_ADD && a.type == JJ_LIST && b.type == JJ_LIST) {
        if (a.u.list->n + b.u.list->n > JJ_MAX_LIST)
            jj_fail(r, "list too large");
        struct jj_value out = jj_list_new(r->arena);
        out.is_tuple = a.is_tuple;
        for (size_t i = 0; i < a.u.list->n; i++)
            jj_list_push(r->arena, out, a.u.list->v[i]);
        for (size_t i = 0; i < b.u.list->n; i++)
            jj_list_push(r->arena, out, b.u.list->v[i]);
        return out;
    }
    if (op == OP_MUL && (a.type == JJ_STR || a.type == JJ_LIST) &&
        (b.type == JJ_INT || b.type == JJ_BOOL))
        return repeat(r, a, inum(b));
    if (op == OP_MUL && (b.type == JJ_STR || b.type == JJ_LIST) &&
        (a.type == JJ_INT || a.type == JJ_BOOL))
        return repeat(r, b, inum(a));
    if (op == OP_MOD && a.type == JJ_STR)
        return jj_percent_format(r, a, b);
    jj_fail(r, "unsupported operand types for a binary operator");
}

/* ---- globals ---- */

struct jj_value jj_call(struct jj_render *r, struct jj_value fn, struct jj_value *args,
                        size_t n_args, const char **kw, struct jj_value *kw_vals, size_t n_kw)
{
    if (fn.type == JJ_METHOD)
        return jj_call_method(r, *fn.u.method.self, fn.u.method.name, args, n_args, kw, kw_vals,
                              n_kw);
    if (fn.type != JJ_FUNC)
        jj_fail(r, fn.type == JJ_UNDEF ? "call of an undefined value" : "value is not callable");
    switch ((enum jj_func)fn.u.func) {
    case F_NAMESPACE:
    case F_DICT: {
        struct jj_value d = jj_dict_new(r->arena);
        d.type = fn.u.func == F_NAMESPACE ? JJ_NS : JJ_DICT;
        for (size_t i = 0; i < n_args; i++) {
            if (args[i].type != JJ_DICT && args[i].type != JJ_NS)
                jj_fail(r, "%s() takes keyword arguments or a mapping", jj_func_names[fn.u.func]);
            for (size_t k = 0; k < args[i].u.dict->n; k++)
                jj_dict_set(r->arena, d, args[i].u.dict->keys[k], args[i].u.dict->vals[k]);
        }
        for (size_t i = 0; i < n_kw; i++) {
            if (fn.u.func == F_NAMESPACE && kw[i][0] == '_')
                jj_fail(r, "cannot store underscore-prefixed attribute '%s'", kw[i]);
            jj_dict_set(r->arena, d, jj_str(r->arena, kw[i], strlen(kw[i])), kw_vals[i]);
        }
        return d;
    }
    case F_RAISE: {
        struct jj_value m = n_args ? jj_str_of(r, args[0]) : jj_str(r->arena, "", 0);
        jj_fail(r, "%.*s", (int)(m.u.str.n > 400 ? 400 : m.u.str.n), m.u.str.s);
    }
    case F_STRFTIME: {
        if (n_args != 1 || args[0].type != JJ_STR)
            jj_fail(r, "strftime_now() takes one format string");
        char fmt[256], buf[512];
        snprintf(fmt, sizeof(fmt), "%.*s", (int)args[0].u.str.n, args[0].u.str.s);
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        size_t n = strftime(buf, sizeof(buf), fmt, &tm);
        return jj_str(r->arena, buf, n);
    }
    case F_RANGE: {
        int64_t lo = 0, hi, st = 1;
        for (size_t i = 0; i < n_args; i++)
            if (args[i].type != JJ_INT && args[i].type != JJ_BOOL)
                jj_fail(r, "range() takes integers");
        if (n_args == 1)
            hi = inum(args[0]);
        else if (n_args == 2 || n_args == 3) {
            lo = inum(args[0]);
            hi = inum(args[1]);
            if (n_args == 3)
                st = inum(args[2]);
        } else {
            jj_fail(r, "range() takes 1 to 3 arguments");
        }
        if (st == 0)
            jj_fail(r, "range() step must not be zero");
        struct jj_value l = jj_list_new(r->arena);
        for (int64_t i = lo, k = 0; st > 0 ? i < hi : i > hi; k++) {
            if (k >= 100000)
                jj_fail(r, "range() too large");
            jj_list_push(r->arena, l, (struct jj_value){.type = JJ_INT, .u.i = i});
            if (__builtin_add_overflow(i, st, &i)) /* the next value is past hi anyway */
                break;
        }
        return l;
    }
    default:
        break;
    }
    jj_fail(r, "unknown function");
}

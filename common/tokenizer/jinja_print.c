/*
 * str() and repr() of Jinja values as Python prints them (shortest float repr, quote
 * choice and escapes of str.__repr__, list / tuple / dict / namespace forms), appended
 * to a render-owned buffer through jj_put, so the size caps hold and an error on the way
 * (a value nested too deeply) frees the buffer with the render.
 */
#include "common/tokenizer/jinja_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static void put_float(struct jj_render *r, double f, struct tok_buf *out)
{
    char buf[64];
    if (isnan(f)) {
        jj_put(r, out, "nan", 3);
        return;
    }
    if (isinf(f)) {
        jj_put(r, out, f < 0 ? "-inf" : "inf", f < 0 ? 4 : 3);
        return;
    }
    int p = 1;
    for (; p < 17; p++) { /* shortest repr that reads back, as Python's repr */
        snprintf(buf, sizeof(buf), "%.*e", p - 1, f);
        if (strtod(buf, NULL) == f)
            break;
    }
    snprintf(buf, sizeof(buf), "%.*e", p - 1, f);
    int exp = atoi(strchr(buf, 'e') + 1);
    if (exp >= -5 && exp < 16) {
        int decimals = p - 1 - exp;
        snprintf(buf, sizeof(buf), "%.*f", decimals > 0 ? decimals : 0, f);
        if (!strchr(buf, '.'))
            strcat(buf, ".0");
    } else { /* 1e+16, 1.5e-07: C's %e already writes two exponent digits */
        char *e = strchr(buf, 'e');
        char mant[40];
        snprintf(mant, sizeof(mant), "%.*s", (int)(e - buf), buf);
        char tail[16];
        snprintf(tail, sizeof(tail), "%s", e);
        snprintf(buf, sizeof(buf), "%s%s", mant, tail);
    }
    jj_put(r, out, buf, strlen(buf));
}

static int py_printable(int32_t cp)
{
    if (cp == ' ')
        return 1;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS:
        return 0;
    default:
        return 1;
    }
}

static void put_repr_str(struct jj_render *r, const char *s, size_t n, struct tok_buf *out)
{
    char q = memchr(s, '\'', n) && !memchr(s, '"', n) ? '"' : '\'';
    jj_put(r, out, &q, 1);
    size_t run = 0; /* start of the pending run of characters that print as themselves */
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != (unsigned char)q) { /* plain ASCII */
            i++;
            continue;
        }
        int32_t cp;
        int k = tok_utf8_next(s + i, n - i, &cp);
        char esc[16];
        int m = 0;
        if (cp == '\\' || cp == q) {
            esc[0] = '\\';
            esc[1] = (char)cp;
            m = 2;
        } else if (cp == '\n' || cp == '\r' || cp == '\t') {
            memcpy(esc, cp == '\n' ? "\\n" : cp == '\r' ? "\\r" : "\\t", 2);
            m = 2;
        } else if (!py_printable(cp)) {
            m = cp < 0x100     ? snprintf(esc, sizeof(esc), "\\x%02x", cp)
                : cp < 0x10000 ? snprintf(esc, sizeof(esc), "\\u%04x", cp)
                               : snprintf(esc, sizeof(esc), "\\U%08x", cp);
        }
        if (m) {
            jj_put(r, out, s + run, i - run);
            jj_put(r, out, esc, (size_t)m);
            run = i + (size_t)k;
        }
        i += (size_t)k;
    }
    jj_put(r, out, s + run, n - run);
    jj_put(r, out, &q, 1);
}

static void put_repr(struct jj_render *r, struct jj_value v, struct tok_buf *out, int depth)
{
    if (depth > JJ_MAX_NEST)
        jj_fail(r, "value nested too deeply to print");
    if (v.type == JJ_STR) {
        put_repr_str(r, v.u.str.s, v.u.str.n, out);
    } else if (v.type == JJ_LIST) {
        jj_put(r, out, v.is_tuple ? "(" : "[", 1);
        for (size_t i = 0; i < v.u.list->n; i++) {
            if (i)
                jj_put(r, out, ", ", 2);
            put_repr(r, v.u.list->v[i], out, depth + 1);
        }
        if (v.is_tuple && v.u.list->n == 1)
            jj_put(r, out, ",", 1);
        jj_put(r, out, v.is_tuple ? ")" : "]", 1);
    } else if (v.type == JJ_DICT || v.type == JJ_NS) {
        if (v.type == JJ_NS)
            jj_put(r, out, "<Namespace ", 11);
        jj_put(r, out, "{", 1);
        for (size_t i = 0; i < v.u.dict->n; i++) {
            if (i)
                jj_put(r, out, ", ", 2);
            put_repr(r, v.u.dict->keys[i], out, depth + 1);
            jj_put(r, out, ": ", 2);
            put_repr(r, v.u.dict->vals[i], out, depth + 1);
        }
        jj_put(r, out, "}", 1);
        if (v.type == JJ_NS)
            jj_put(r, out, ">", 1);
    } else {
        jj_to_str(r, v, out);
    }
}

void jj_to_str(struct jj_render *r, struct jj_value v, struct tok_buf *out)
{
    char buf[32];
    switch (v.type) {
    case JJ_UNDEF:
        return;
    case JJ_NONE:
        jj_put(r, out, "None", 4);
        return;
    case JJ_BOOL:
        jj_put(r, out, v.u.b ? "True" : "False", v.u.b ? 4 : 5);
        return;
    case JJ_INT:
        jj_put(r, out, buf, (size_t)snprintf(buf, sizeof(buf), "%lld", (long long)v.u.i));
        return;
    case JJ_FLOAT:
        put_float(r, v.u.f, out);
        return;
    case JJ_STR:
        jj_put(r, out, v.u.str.s, v.u.str.n);
        return;
    case JJ_FUNC:
        jj_put(r, out, "<function>", 10);
        return;
    case JJ_METHOD:
        jj_put(r, out, "<built-in method>", 17);
        return;
    default:
        put_repr(r, v, out, 0);
        return;
    }
}

struct jj_value jj_str_of(struct jj_render *r, struct jj_value v)
{
    if (v.type == JJ_STR)
        return v;
    struct tok_buf *b = jj_scratch_open(r);
    jj_to_str(r, v, b);
    return jj_scratch_take(r, b);
}

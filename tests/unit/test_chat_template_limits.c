/*
 * Chat templates as a security boundary: the router renders one per request, so a
 * template (or the user text it formats) must not reach undefined behaviour, crash, leak,
 * hang or eat the host. Each case is a template that used to do one of those (signed
 * overflow in arithmetic, range, slices and negation; scratch strings leaked when an
 * error unwound out of a filter; filter results past the 64 MiB cap; recursion without a
 * bound; quadratic and exponential work) with the result Jinja2 gives, or the error it
 * must fail with. Run under the sanitizer build, a leak or UB report fails it too.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/tokenizer/chat_template.h"
#include "tests/unit/wd_test.h"

/* Loads tpl and renders it over one user message; returns the status and, on success,
 * the text (caller frees). A template that does not parse returns its parse status. */
static enum wd_status render(const char *tpl, char **text_p, struct wd_error *err)
{
    json_t *cfg = json_pack("{s:s, s:s}", "chat_template", tpl, "bos_token", "<s>");
    char *json = json_dumps(cfg, 0);
    json_decref(cfg);
    struct wd_chat_template *ct = NULL;
    enum wd_status st = wd_chat_template_load_from_memory(json, strlen(json), &ct, err);
    free(json);
    *text_p = NULL;
    if (st != WD_OK)
        return st;
    struct wd_chat_message msg = {"user", "hi"};
    st = wd_chat_template_render(ct, &msg, 1, 0, text_p, err);
    wd_chat_template_destroy(ct);
    return st;
}

/* want: the rendered text, or NULL when the render must fail with err_part in the message. */
static void expect(const char *tpl, const char *want, const char *err_part)
{
    char *text = NULL;
    struct wd_error err = {0};
    enum wd_status st = render(tpl, &text, &err);
    if (want)
        WD_EXPECT_MSG(st == WD_OK && strcmp(text, want) == 0, "'%.80s': want '%s', got %s '%.80s'",
                      tpl, want, wd_status_str(st), st == WD_OK ? text : err.msg);
    else
        WD_EXPECT_MSG(st != WD_OK && strstr(err.msg, err_part) != NULL,
                      "'%.80s': want an error with '%s', got %s '%.80s'", tpl, err_part,
                      wd_status_str(st), st == WD_OK ? text : err.msg);
    free(text);
}

/* A template made of head, then body repeated n times, then tail (malloc'd). */
static char *repeated(const char *head, const char *body, int n, const char *tail)
{
    size_t hb = strlen(head), bb = strlen(body), tb = strlen(tail);
    char *s = malloc(hb + bb * (size_t)n + tb + 1), *p = s;
    memcpy(p, head, hb);
    p += hb;
    for (int i = 0; i < n; i++, p += bb)
        memcpy(p, body, bb);
    memcpy(p, tail, tb + 1);
    return s;
}

static void test_integer_overflow(void)
{
    /* range stepping past INT64_MAX: one item, not a wrap to negative numbers. */
    expect("{% for i in range(9223372036854775806, 9223372036854775807, 1000) %}{{ i }},"
           "{% endfor %}",
           "9223372036854775806,", NULL);
    expect("{% for i in range(-9223372036854775807, -9223372036854775807 - 1, -1000) %}{{ i }}"
           "{% endfor %}",
           "-9223372036854775807", NULL);
    expect("{{ range(3, 0, -9223372036854775807 - 1)|list }}", "[3]", NULL);
    /* Python has big integers; an int64 interpreter must fail, never wrap or trap. */
    expect("{{ -(-9223372036854775807 - 1) }}", NULL, "integer overflow");
    expect("{{ (-9223372036854775807 - 1)|abs }}", NULL, "integer overflow");
    expect("{{ 9223372036854775807 + 1 }}", NULL, "integer overflow");
    expect("{{ -9223372036854775807 - 2 }}", NULL, "integer overflow");
    expect("{{ 4611686018427387904 * 2 }}", NULL, "integer overflow");
    expect("{{ 2 ** 63 }}", NULL, "integer overflow");
    expect("{{ 2 ** 62 }}|{{ (-2) ** 63 }}", "4611686018427387904|-9223372036854775808", NULL);
    expect("{{ (-1) ** 65 }}|{{ 1 ** 1000 }}|{{ 0 ** 0 }}|{{ 2 ** -1 }}", "-1|1|1|0.5", NULL);
    expect("{{ -9223372036854775807 - 1 }}", "-9223372036854775808", NULL);
    /* INT64_MIN % -1 traps on x86; Python says 0, so divisibleby(-1) is true. */
    expect("{{ (-9223372036854775807 - 1) is divisibleby(-1) }}", "True", NULL);
    expect("{{ 99999999999999999999 }}", NULL, "too large");
    /* Float -> int conversions that are undefined in C. */
    expect("{{ 'nan'|int }}|{{ 'nan'|int(7) }}|{{ 12345678901234567|int }}|{{ -2.7|int }}",
           "0|7|12345678901234567|-2", NULL);
    expect("{{ 'inf'|int }}", NULL, "integer overflow");
    expect("{{ -1e300|int }}", NULL, "integer overflow");
    expect("{{ '%d' % (1e300,) }}", NULL, "integer");
    expect("{{ '%d' % (-2.5,) }}", "-2", NULL);
    /* Slices whose step jumps past INT64_MAX. */
    expect("{{ [1, 2, 3][2::9223372036854775807] }}|{{ 'abc'[1::9223372036854775807] }}", "[3]|b",
           NULL);
    expect("{{ 'abc'[::-9223372036854775807 - 1] }}", "c", NULL);
}

static void test_size_caps(void)
{
    /* Each of these built a string past JJ_MAX_STR (64 MiB) inside one filter (replace on a
     * longer input grew its buffer to 512 MiB and leaked it when the arena refused the
     * copy). */
    expect("{% set s = 'x' * 14000000 %}{{ s|replace('x', 'xxxxx')|length }}", NULL, "too large");
    expect("{% set s = 'x' * 40000000 %}{{ s.replace('xxxxxxxx', 'x' * 17)|length }}", NULL,
           "too large");
    expect("{% set s = 'x' * 40000000 %}{{ [s, s]|join|length }}", NULL, "too large");
    expect("{% set s = 'x' * 40000000 %}{{ ''.join([s, s])|length }}", NULL, "too large");
    expect("{% set s = 'x\n' * 20000000 %}{{ s|indent(4)|length }}", NULL, "too large");
    expect("{% set s = 'x' * 40000000 %}{{ [s, s]|tojson|length }}", NULL, "too large");
    expect("{% set s = 'x' * 40000000 %}{{ ('%s%s' % (s, s))|length }}", NULL, "too large");
    expect("{% set s = 'x' * 40000000 %}{{ [s, s]|string|length }}", NULL, "too large");
    /* One output statement printing a list that repeats a big string. */
    expect("{% set s = 'x' * 40000000 %}{{ [s, s] }}", NULL, "too large");
    expect("{% set s = 'x' * 40000000 %}{{ s }}{{ s }}", NULL, "too large");
    /* Nested set blocks each hold a buffer just under the cap: bounded all together. */
    expect("{% set s = 'x' * 60000000 %}{% set a %}{{ s }}{% set b %}{{ s }}{% set c %}{{ s }}"
           "{% set d %}{{ s }}{% set e %}{{ s }}{% endset %}{% endset %}{% endset %}{% endset %}"
           "{% endset %}",
           NULL, "too large in all");
    /* Lists: * and + share one cap. */
    expect("{{ ([1] * 67108864)|length }}", NULL, "too large");
    expect("{{ ([1, 2] * 1000)|length }}|{{ ('ab' * 3) }}|{{ 'ab' * -1 }}|{{ [1, 'a'] * 3 }}|"
           "{{ 2 * (1,) }}|{{ [] * 5 }}|{{ 'xyz' * 0 }}",
           "2000|ababab||[1, 'a', 1, 'a', 1, 'a']|(1, 1)|[]|", NULL);
}

/* Values nested deeper than the printers allow, built without recursion in the template. */
#define DEEP                                                                                       \
    "{% set ns = namespace(l=[]) %}{% for i in range(70) %}{% set ns.l = [ns.l] %}"                \
    "{% endfor %}"

static void test_errors_free_scratch(void)
{
    /* Errors raised while a filter's string is half built: under the sanitizer build a
     * leaked buffer fails the run. */
    expect(DEEP "{{ ['a', ns.l]|join(',') }}", NULL, "nested too deeply");
    expect(DEEP "{{ ['a', ns.l]|tojson }}", NULL, "nesting too deep");
    expect(DEEP "{{ {'k': 1, 2: ns.l}|tojson }}", NULL, "nesting too deep");
    expect(DEEP "{{ ns.l ~ 'x' }}", NULL, "nested too deeply");
    expect(DEEP "{{ '%s%s' % ('a', ns.l) }}", NULL, "nested too deeply");
    expect(DEEP "{{ ['a', ns.l]|map('string')|list }}", NULL, "nested too deeply");
    expect("{{ [{'a': 'x'}, {'a': 'y'}, 1]|join(',', attribute='a') }}", "x,y,", NULL);
    expect("{{ [{'a': {'b': 'z'}}, {}]|join(',', attribute='a.b') }}", NULL, "undefined");
}

static void test_recursion_and_work(void)
{
    /* Chains the parser builds with loops (left-deep trees) and right-recursive ones:
     * thousands deep used to overflow the C stack. */
    static const struct {
        const char *head, *body, *tail;
    } chains[] = {{"{{ 1", " + 1", " }}"},
                  {"{{ 'a'", "|trim", " }}"},
                  {"{{ x", ".y", " }}"},
                  {"{{ 1", " and 1", " }}"},
                  {"{{ ", "not ", "1 }}"},
                  {"{{ ", "1 if 0 else ", "1 }}"},
                  {"{{ 'a'|map(", "'map', ", "'string')|list }}"},
                  {"{{ 1", " < 2", " }}"}};
    for (size_t i = 0; i < sizeof(chains) / sizeof(chains[0]); i++) {
        char *t = repeated(chains[i].head, chains[i].body, 20000, chains[i].tail);
        char *text = NULL;
        struct wd_error err = {0};
        enum wd_status st = render(t, &text, &err);
        WD_EXPECT_MSG(st != WD_OK && strstr(err.msg, "too deep") != NULL, "chain %zu: %s '%.60s'",
                      i, wd_status_str(st), st == WD_OK ? "rendered" : err.msg);
        free(text);
        free(t);
    }
    /* Short chains still work. */
    char *t = repeated("{{ 0", " + 1", 50, " }}");
    expect(t, "50", NULL);
    free(t);
    /* A DAG of lists shares its halves: comparing two of them is 2^40 element pairs. */
    expect("{% set ns = namespace(a=[0], b=[0]) %}{% for i in range(40) %}"
           "{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}{% endfor %}"
           "{{ ns.a == ns.b }}",
           NULL, "too many steps");
    expect("{% set ns = namespace(a=[0], b=[0]) %}{% for i in range(40) %}"
           "{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}{% endfor %}"
           "{{ ns.a < ns.b }}",
           NULL, "too many steps");
    /* Lists are unhashable, as in Python: no dict keys that cost a deep compare. */
    expect("{{ {[1]: 2} }}", NULL, "unhashable");
    /* Substring search and slicing used to be quadratic in the string length. */
    expect("{% set h = 'a' * 4000000 %}{{ ('a' * 2000000 ~ 'b') in h }}", "False", NULL);
    expect("{% set h = 'a' * 4000000 %}{{ h.find('a' * 2000000 ~ 'b') }}|"
           "{{ h.count('a' * 2000000 ~ 'b') }}|{{ h.split('a' * 2000000 ~ 'b')|length }}",
           "-1|0|1", NULL);
    expect("{{ ('\xc3\xa9' * 1000000)[1:]|length }}|{{ ('ab' * 1000000)[::-1][:3] }}|"
           "{{ ('\xc3\xa9"
           "a' * 1000000)[-2] }}",
           "999999|bab|\xc3\xa9", NULL);
}

int main(void)
{
    WD_RUN(test_integer_overflow);
    WD_RUN(test_size_caps);
    WD_RUN(test_errors_free_scratch);
    WD_RUN(test_recursion_and_work);
    return wd_test_finish();
}

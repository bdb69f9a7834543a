/*
 * Small building blocks of the tokenizer: growable buffer, bump arena, the two
 * open-addressing hash maps (string keys for the vocab, 64-bit keys for merges
 * and the added-token trie), UTF-8 checking and lossy repair, the GPT-2
 * byte-level table and the added-token trie. No global state.
 */
#include "common/tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

int tok_buf_reserve(struct tok_buf *b, size_t extra)
{
    if (b->n + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int tok_buf_put(struct tok_buf *b, const void *data, size_t n)
{
    if (tok_buf_reserve(b, n + 1))
        return -1;
    if (n)
        memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

/* ---- arena ---- */

struct tok_arena_chunk {
    struct tok_arena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

void *tok_arena_alloc(struct tok_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct tok_arena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        c = malloc(sizeof(*c) + cap);
        if (!c)
            return NULL;
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

void tok_arena_free(struct tok_arena *a)
{
    struct tok_arena_chunk *c = a->head;
    while (c) {
        struct tok_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

/* ---- hashing ---- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a: tokens are short, this is plenty */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static size_t pow2_for(size_t expect)
{
    size_t cap = 16;
    while (cap < expect * 2)
        cap *= 2;
    return cap;
}

/* ---- string map ---- */

struct tok_strmap_slot {
    const char *key; /* NULL: empty */
    uint64_t hash;
    uint32_t len;
    int32_t val;
};

int tok_strmap_init(struct tok_strmap *m, size_t expect)
{
    m->cap = pow2_for(expect);
    m->n = 0;
    m->slots = calloc(m->cap, sizeof(*m->slots));
    return m->slots ? 0 : -1;
}

void tok_strmap_cleanup(struct tok_strmap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->n = 0;
}

static int strmap_grow(struct tok_strmap *m)
{
    struct tok_strmap old = *m;
    size_t cap = m->cap * 2;
    struct tok_strmap_slot *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    for (size_t i = 0; i < old.cap; i++) {
        if (!old.slots[i].key)
            continue;
        size_t j = old.slots[i].hash & (cap - 1);
        while (slots[j].key)
            j = (j + 1) & (cap - 1);
        slots[j] = old.slots[i];
    }
    free(old.slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

int tok_strmap_put(struct tok_strmap *m, const char *key, size_t len, int32_t val)
{
    if ((m->n + 1) * 2 > m->cap && strmap_grow(m))
        return -1;
    uint64_t h = hash_bytes(key, len);
    size_t j = h & (m->cap - 1);
    while (m->slots[j].key) {
        struct tok_strmap_slot *s = &m->slots[j];
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) {
            s->val = val;
            return 0;
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->slots[j] = (struct tok_strmap_slot){key, h, (uint32_t)len, val};
    m->n++;
    return 0;
}

int32_t tok_strmap_get(const struct tok_strmap *m, const char *key, size_t len)
{
    if (!m->cap)
        return -1;
    uint64_t h = hash_bytes(key, len);
    size_t j = h & (m->cap - 1);
    while (m->slots[j].key) {
        const struct tok_strmap_slot *s = &m->slots[j];
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0)
            return s->val;
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

/* ---- u64 map ---- */

struct tok_u64map_slot {
    uint64_t key;
    int32_t a, b;
    int used;
};

int tok_u64map_init(struct tok_u64map *m, size_t expect)
{
    m->cap = pow2_for(expect);
    m->n = 0;
    m->slots = calloc(m->cap, sizeof(*m->slots));
    return m->slots ? 0 : -1;
}

void tok_u64map_cleanup(struct tok_u64map *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->n = 0;
}

static int u64map_grow(struct tok_u64map *m)
{
    size_t cap = m->cap * 2;
    struct tok_u64map_slot *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].used)
            continue;
        size_t j = hash_u64(m->slots[i].key) & (cap - 1);
        while (slots[j].used)
            j = (j + 1) & (cap - 1);
        slots[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

int tok_u64map_put(struct tok_u64map *m, uint64_t key, int32_t a, int32_t b)
{
    if ((m->n + 1) * 2 > m->cap && u64map_grow(m))
        return -1;
    size_t j = hash_u64(key) & (m->cap - 1);
    while (m->slots[j].used) {
        if (m->slots[j].key == key) {
            m->slots[j].a = a;
            m->slots[j].b = b;
            return 0;
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->slots[j] = (struct tok_u64map_slot){key, a, b, 1};
    m->n++;
    return 0;
}

int tok_u64map_get(const struct tok_u64map *m, uint64_t key, int32_t *a, int32_t *b)
{
    if (!m->cap)
        return 0;
    size_t j = hash_u64(key) & (m->cap - 1);
    while (m->slots[j].used) {
        if (m->slots[j].key == key) {
            *a = m->slots[j].a;
            if (b)
                *b = m->slots[j].b;
            return 1;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return 0;
}

/* ---- UTF-8 ---- */

/* Length of the valid sequence starting at s[0], following the Unicode table of
 * well-formed byte sequences. Returns 0 when s[0..] is invalid and sets *bad to the
 * number of bytes forming the maximal ill-formed subpart; returns -1 when the input ends
 * inside a sequence that could still become valid. */
static int utf8_seq(const unsigned char *s, size_t len, size_t *bad)
{
    unsigned char c = s[0];
    int need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        *bad = 1;
        return 0;
    }
    for (int k = 1; k <= need; k++) {
        if ((size_t)k >= len)
            return -1;
        unsigned char lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
        if (s[k] < lo_k || s[k] > hi_k) {
            *bad = (size_t)k;
            return 0;
        }
    }
    return need + 1;
}

size_t tok_utf8_check(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t bad = 0;
        int k = utf8_seq(u + i, len - i, &bad);
        if (k <= 0)
            return i;
        i += (size_t)k;
    }
    return len;
}

int tok_utf8_next(const char *s, size_t len, int32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned char c = u[0];
    if (c < 0x80 || len < 2) {
        *cp = c;
        return 1;
    }
    if (c < 0xE0) {
        *cp = ((c & 0x1F) << 6) | (u[1] & 0x3F);
        return 2;
    }
    if (c < 0xF0 || len < 4) {
        *cp = ((c & 0x0F) << 12) | ((u[1] & 0x3F) << 6) | (u[2] & 0x3F);
        return 3;
    }
    *cp = ((c & 0x07) << 18) | ((u[1] & 0x3F) << 12) | ((u[2] & 0x3F) << 6) | (u[3] & 0x3F);
    return 4;
}

int tok_utf8_put(char *dst, int32_t cp)
{
    unsigned char *d = (unsigned char *)dst;
    if (cp < 0x80) {
        d[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (unsigned char)(0xC0 | (cp >> 6));
        d[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (unsigned char)(0xE0 | (cp >> 12));
        d[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        d[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (unsigned char)(0xF0 | (cp >> 18));
    d[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    d[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    d[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

static const char REPLACEMENT[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

long tok_utf8_lossy(const unsigned char *s, size_t len, int final, struct tok_buf *out)
{
    size_t i = 0, run = 0; /* run: start of the pending valid stretch */
    while (i < len) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t bad = 0;
        int k = utf8_seq(s + i, len - i, &bad);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        if (tok_buf_put(out, s + run, i - run))
            return -1;
        if (k < 0) { /* incomplete tail */
            if (!final)
                return (long)i;
            if (tok_buf_put(out, REPLACEMENT, 3))
                return -1;
            return (long)len;
        }
        if (tok_buf_put(out, REPLACEMENT, 3))
            return -1;
        i += bad;
        run = i;
    }
    if (tok_buf_put(out, s + run, len - run))
        return -1;
    return (long)len;
}

int tok_is_white_space(int32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

int tok_is_word_char(int32_t cp)
{
    if (cp < 0x80)
        return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
               cp == '_';
    if (cp == 0x200C || cp == 0x200D)
        return 1;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC:
        return 1;
    default:
        return 0;
    }
}

/* ---- GPT-2 byte-level table ----
 * Printable bytes map to themselves; the 68 others (controls, space, 0x7F-0xA0, 0xAD)
 * map in byte order to U+0100 upwards, so every byte is a visible character. */

static int byte_is_printable(int b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

int32_t tok_byte_to_cp(uint8_t b)
{
    if (byte_is_printable(b))
        return b;
    int n = 0;
    for (int i = 0; i < b; i++)
        n += !byte_is_printable(i);
    return 256 + n;
}

int tok_cp_to_byte(int32_t cp)
{
    if (cp < 256)
        return byte_is_printable(cp) ? cp : -1;
    int n = cp - 256;
    if (n >= 68)
        return -1;
    for (int b = 0; b < 256; b++)
        if (!byte_is_printable(b) && n-- == 0)
            return b;
    return -1;
}

/* ---- added-token trie ---- */

int tok_trie_init(struct tok_trie *t)
{
    memset(t, 0, sizeof(*t));
    if (tok_u64map_init(&t->edges, 64))
        return -1;
    t->cap_nodes = 64;
    t->term = malloc(sizeof(int32_t) * (size_t)t->cap_nodes);
    if (!t->term)
        return -1;
    t->term[0] = -1;
    t->n_nodes = 1;
    return 0;
}

void tok_trie_cleanup(struct tok_trie *t)
{
    tok_u64map_cleanup(&t->edges);
    free(t->term);
    t->term = NULL;
}

int tok_trie_add(struct tok_trie *t, const char *s, size_t len, int32_t idx)
{
    if (len == 0)
        return 0;
    int32_t node = 0;
    t->first[(unsigned char)s[0]] = 1;
    for (size_t i = 0; i < len; i++) {
        uint64_t key = ((uint64_t)node << 8) | (unsigned char)s[i];
        int32_t child;
        if (!tok_u64map_get(&t->edges, key, &child, NULL)) {
            if (t->n_nodes == t->cap_nodes) {
                int32_t *term = realloc(t->term, sizeof(int32_t) * (size_t)t->cap_nodes * 2);
                if (!term)
                    return -1;
                t->term = term;
                t->cap_nodes *= 2;
            }
            child = t->n_nodes++;
            t->term[child] = -1;
            if (tok_u64map_put(&t->edges, key, child, 0))
                return -1;
        }
        node = child;
    }
    if (t->term[node] < 0)
        t->term[node] = idx; /* the first token with this content wins */
    return 0;
}

int32_t tok_trie_longest(const struct tok_trie *t, const char *s, size_t len, size_t *mlen)
{
    if (!len || !t->first[(unsigned char)s[0]])
        return -1;
    int32_t node = 0, best = -1;
    for (size_t i = 0; i < len; i++) {
        uint64_t key = ((uint64_t)node << 8) | (unsigned char)s[i];
        if (!tok_u64map_get(&t->edges, key, &node, NULL))
            break;
        if (t->term[node] >= 0) {
            best = t->term[node];
            *mlen = i + 1;
        }
    }
    return best;
}

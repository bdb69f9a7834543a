/*
 * BPE model: turns one pre-token word into ids. Each character starts as its own
 * symbol; a min-heap ordered by (merge rank, position) applies the lowest-rank merge
 * first, leftmost among equals, which is the order Hugging Face's BPE uses. Results
 * for short words go into a direct-mapped cache guarded by a mutex, so long texts
 * with repeated words skip the merge loop and several threads may share the model.
 */
#include "common/tokenizer/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOK_CACHE_SLOTS 8192
#define TOK_CACHE_MAX_WORD 128

struct sym {
    int32_t id;
    int32_t prev, next; /* -1 at the ends */
    int alive;
};

struct merge {
    int32_t rank, pos, new_id;
};

static int merge_less(const struct merge *a, const struct merge *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

struct heap {
    struct merge *v;
    size_t n, cap;
};

static int heap_push(struct heap *h, struct merge m)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct merge *v = realloc(h->v, cap * sizeof(*v));
        if (!v)
            return -1;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!merge_less(&m, &h->v[p]))
            break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = m;
    return 0;
}

static struct merge heap_pop(struct heap *h)
{
    struct merge top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && merge_less(&h->v[c + 1], &h->v[c]))
            c++;
        if (!merge_less(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n)
        h->v[i] = last;
    return top;
}

static int push_pair(const struct tok_bpe *bpe, struct heap *h, const struct sym *syms, int32_t pos)
{
    int32_t next = syms[pos].next;
    if (next < 0)
        return 0;
    int32_t rank, new_id;
    uint64_t key = ((uint64_t)(uint32_t)syms[pos].id << 32) | (uint32_t)syms[next].id;
    if (!tok_u64map_get(&bpe->merges, key, &rank, &new_id))
        return 0;
    return heap_push(h, (struct merge){rank, pos, new_id});
}

static int ids_push(int32_t **ids, size_t *n, size_t *cap, int32_t id)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        int32_t *v = realloc(*ids, c * sizeof(*v));
        if (!v)
            return -1;
        *ids = v;
        *cap = c;
    }
    (*ids)[(*n)++] = id;
    return 0;
}

/* Looks up one character (with the subword prefix/suffix the model asks for). */
static int32_t char_id(const struct tok_bpe *bpe, const char *c, size_t clen, int first, int last,
                       char *tmp, size_t tmp_cap)
{
    if ((first || !bpe->prefix) && (!last || !bpe->suffix))
        return tok_strmap_get(&bpe->vocab, c, clen);
    size_t pl = !first && bpe->prefix ? strlen(bpe->prefix) : 0;
    size_t sl = last && bpe->suffix ? strlen(bpe->suffix) : 0;
    if (pl + clen + sl > tmp_cap)
        return -1;
    if (pl)
        memcpy(tmp, bpe->prefix, pl);
    memcpy(tmp + pl, c, clen);
    if (sl)
        memcpy(tmp + pl + clen, bpe->suffix, sl);
    return tok_strmap_get(&bpe->vocab, tmp, pl + clen + sl);
}

/* Builds the initial symbols of w; unknown characters become byte-fallback tokens, the unk
 * token (fused when asked) or nothing, as in Hugging Face's BPE. */
static int initial_symbols(const struct tok_bpe *bpe, const char *w, size_t len, struct sym *syms,
                           int32_t *n_syms)
{
    char tmp[256];
    int32_t n = 0;
    int pending_unk = 0;
    for (size_t i = 0; i < len;) {
        int32_t cp;
        size_t clen = (size_t)tok_utf8_next(w + i, len - i, &cp);
        int32_t id = char_id(bpe, w + i, clen, i == 0, i + clen == len, tmp, sizeof(tmp));
        if (id >= 0) {
            if (pending_unk)
                syms[n++].id = bpe->unk_id;
            pending_unk = 0;
            syms[n++].id = id;
        } else {
            int fell_back = 0;
            if (bpe->byte_fallback) {
                fell_back = 1;
                for (size_t k = 0; k < clen; k++)
                    fell_back &= bpe->byte_ids[(unsigned char)w[i + k]] >= 0;
                if (fell_back) {
                    if (pending_unk)
                        syms[n++].id = bpe->unk_id;
                    pending_unk = 0;
                    for (size_t k = 0; k < clen; k++)
                        syms[n++].id = bpe->byte_ids[(unsigned char)w[i + k]];
                }
            }
            if (!fell_back && bpe->unk_id >= 0) {
                if (pending_unk && !bpe->fuse_unk)
                    syms[n++].id = bpe->unk_id;
                pending_unk = 1;
            }
        }
        i += clen;
    }
    if (pending_unk)
        syms[n++].id = bpe->unk_id;
    for (int32_t k = 0; k < n; k++) {
        syms[k].prev = k - 1;
        syms[k].next = k + 1 < n ? k + 1 : -1;
        syms[k].alive = 1;
    }
    *n_syms = n;
    return 0;
}

static size_t cache_slot(const char *w, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)w[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 32)) & (TOK_CACHE_SLOTS - 1);
}

enum wd_status tok_bpe_init_cache(struct tok_bpe *bpe)
{
    bpe->cache = calloc(TOK_CACHE_SLOTS, sizeof(*bpe->cache));
    if (!bpe->cache)
        return WD_ERR_NOMEM;
    if (pthread_mutex_init(&bpe->cache_lock, NULL)) {
        free(bpe->cache);
        bpe->cache = NULL;
        return WD_ERR_NOMEM;
    }
    return WD_OK;
}

void tok_bpe_cleanup(struct tok_bpe *bpe)
{
    if (bpe->cache) {
        for (size_t i = 0; i < TOK_CACHE_SLOTS; i++) {
            free(bpe->cache[i].word);
            free(bpe->cache[i].ids);
        }
        free(bpe->cache);
        pthread_mutex_destroy(&bpe->cache_lock);
        bpe->cache = NULL;
    }
    tok_strmap_cleanup(&bpe->vocab);
    tok_u64map_cleanup(&bpe->merges);
    free(bpe->strings);
    free(bpe->prefix);
    free(bpe->suffix);
    bpe->strings = bpe->prefix = bpe->suffix = NULL;
}

/* Returns 1 when the cache had w (ids appended), 0 when not, -1 on allocation failure. */
static int cache_lookup(const struct tok_bpe *bpe, const char *w, size_t len, int32_t **ids,
                        size_t *n, size_t *cap)
{
    struct tok_bpe *m = (struct tok_bpe *)bpe; /* the cache is the one mutable part */
    size_t slot = cache_slot(w, len);
    int found = 0;
    pthread_mutex_lock(&m->cache_lock);
    struct tok_cache_entry *e = &m->cache[slot];
    if (e->word && e->len == len && memcmp(e->word, w, len) == 0) {
        found = 1;
        for (size_t i = 0; i < e->n && found == 1; i++)
            if (ids_push(ids, n, cap, e->ids[i]))
                found = -1;
    }
    pthread_mutex_unlock(&m->cache_lock);
    return found;
}

static void cache_store(const struct tok_bpe *bpe, const char *w, size_t len, const int32_t *ids,
                        size_t n)
{
    struct tok_bpe *m = (struct tok_bpe *)bpe;
    char *word = malloc(len ? len : 1);
    int32_t *copy = malloc((n ? n : 1) * sizeof(*copy));
    if (!word || !copy) { /* the cache is an optimisation: skip on failure */
        free(word);
        free(copy);
        return;
    }
    memcpy(word, w, len);
    if (n)
        memcpy(copy, ids, n * sizeof(*copy));
    size_t slot = cache_slot(w, len);
    pthread_mutex_lock(&m->cache_lock);
    struct tok_cache_entry *e = &m->cache[slot];
    free(e->word);
    free(e->ids);
    *e = (struct tok_cache_entry){word, len, copy, n};
    pthread_mutex_unlock(&m->cache_lock);
}

enum wd_status tok_bpe_word(const struct tok_bpe *bpe, const char *w, size_t len, int32_t **ids,
                            size_t *n, size_t *cap)
{
    if (len == 0)
        return WD_OK;
    if (bpe->ignore_merges) {
        int32_t id = tok_strmap_get(&bpe->vocab, w, len);
        if (id >= 0)
            return ids_push(ids, n, cap, id) ? WD_ERR_NOMEM : WD_OK;
    }
    int cacheable = len <= TOK_CACHE_MAX_WORD;
    if (cacheable) {
        int r = cache_lookup(bpe, w, len, ids, n, cap);
        if (r)
            return r < 0 ? WD_ERR_NOMEM : WD_OK;
    }
    /* Every symbol (a character, a fallback byte or an unk) covers at least one byte. */
    struct sym *syms = malloc((len + 1) * sizeof(*syms));
    if (!syms)
        return WD_ERR_NOMEM;
    int32_t n_syms = 0;
    initial_symbols(bpe, w, len, syms, &n_syms);

    enum wd_status st = WD_OK;
    struct heap h = {0};
    for (int32_t i = 0; i + 1 < n_syms && st == WD_OK; i++)
        if (push_pair(bpe, &h, syms, i))
            st = WD_ERR_NOMEM;
    while (h.n && st == WD_OK) {
        struct merge top = heap_pop(&h);
        struct sym *s = &syms[top.pos];
        if (!s->alive || s->next < 0)
            continue;
        int32_t rank, new_id;
        uint64_t key = ((uint64_t)(uint32_t)s->id << 32) | (uint32_t)syms[s->next].id;
        if (!tok_u64map_get(&bpe->merges, key, &rank, &new_id) || new_id != top.new_id)
            continue;
        struct sym *r = &syms[s->next];
        s->id = new_id;
        r->alive = 0;
        s->next = r->next;
        if (r->next >= 0)
            syms[r->next].prev = top.pos;
        if ((s->prev >= 0 && push_pair(bpe, &h, syms, s->prev)) ||
            push_pair(bpe, &h, syms, top.pos))
            st = WD_ERR_NOMEM;
    }
    free(h.v);
    size_t start = *n;
    for (int32_t i = 0; i >= 0 && i < n_syms && st == WD_OK; i = syms[i].next)
        if (ids_push(ids, n, cap, syms[i].id))
            st = WD_ERR_NOMEM;
    if (st == WD_OK && cacheable && *n > start)
        cache_store(bpe, w, len, *ids + start, *n - start);
    free(syms);
    return st;
}

/* Stop-string search and hold-back: memmem over the new region, suffix/prefix compare. */
#include "router/stop_match.h"

#include <string.h>

void wd_stop_match_init(struct wd_stop_match *m, const char *const *stop, const size_t *len, int n)
{
    m->stop = stop;
    m->len = len;
    m->n = n;
    m->max_len = 0;
    for (int i = 0; i < n; i++)
        m->max_len = len[i] > m->max_len ? len[i] : m->max_len;
}

int wd_stop_match_find(const struct wd_stop_match *m, const char *text, size_t len, size_t old_len,
                       size_t *pos_p)
{
    int best = -1;
    size_t best_pos = 0;
    for (int i = 0; i < m->n; i++) {
        size_t sl = m->len[i];
        if (sl > len)
            continue;
        /* A match new to this chunk ends after old_len: it starts at >= old_len - sl + 1. */
        size_t from = old_len >= sl ? old_len - sl + 1 : 0;
        const char *hit = memmem(text + from, len - from, m->stop[i], sl);
        if (!hit)
            continue;
        size_t pos = (size_t)(hit - text);
        if (best < 0 || pos < best_pos) {
            best = i;
            best_pos = pos;
        }
    }
    if (best >= 0)
        *pos_p = best_pos;
    return best;
}

size_t wd_stop_match_holdback(const struct wd_stop_match *m, const char *text, size_t len)
{
    size_t k = m->max_len > 0 ? m->max_len - 1 : 0;
    if (k > len)
        k = len;
    for (; k > 0; k--)
        for (int i = 0; i < m->n; i++)
            if (m->len[i] > k && memcmp(text + len - k, m->stop[i], k) == 0)
                return k;
    return 0;
}

/*
 * wd_stop_match: stop strings over text that grows a chunk at a time.
 *
 * OpenAI and SGLang return the text before the first stop string and not the stop string
 * itself. While streaming, the tail of the text that could still become a stop string
 * ("Hel" with stop "Hello") must be held back until the next chunk settles it, or the
 * client would already have it when the match completes. The caller keeps the text; this
 * answers two questions about it: is there a match starting at or after some offset, and
 * how many trailing bytes must stay held. Stateless apart from the stop list (borrowed).
 */
#ifndef WD_ROUTER_STOP_MATCH_H
#define WD_ROUTER_STOP_MATCH_H

#include <stddef.h>

struct wd_stop_match {
    const char *const *stop; /* [n] borrowed */
    const size_t *len;       /* [n] bytes, each >= 1 */
    int n;
    size_t max_len;
};

void wd_stop_match_init(struct wd_stop_match *m, const char *const *stop, const size_t *len, int n);
/* Text grew from old_len to len bytes: finds the earliest stop string that ends past
 * old_len (so matches spanning the old end are found). Returns its index and writes its
 * start offset to *pos_p, or returns -1. */
int wd_stop_match_find(const struct wd_stop_match *m, const char *text, size_t len, size_t old_len,
                       size_t *pos_p);
/* Bytes at the end of text[0..len) that are a proper prefix of some stop string (the
 * longest such), i.e. what must not be released yet. */
size_t wd_stop_match_holdback(const struct wd_stop_match *m, const char *text, size_t len);

#endif

/*
 * Incremental detokenizer: keeps the undecoded tail of the byte stream (at most
 * three bytes of a UTF-8 sequence still waiting for its continuation) and, per
 * pushed id, emits only the text that is complete. Because the ByteLevel decoder
 * is a plain concatenation of per-token bytes, chunks concatenate to exactly what
 * wd_tokenizer_decode returns. One stream per object; not thread-safe.
 */
#include "common/tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

struct wd_detok {
    const struct wd_tokenizer *tok;
    int skip_special;
    int emitted_token; /* decoder "none" joins tokens with spaces */
    unsigned char pending[4];
    size_t n_pending;
    struct tok_buf raw, out; /* scratch, reused across pushes */
};

enum wd_status wd_detok_create(const struct wd_tokenizer *tok, int skip_special,
                               struct wd_detok **d_p)
{
    struct wd_detok *d = calloc(1, sizeof(*d));
    if (!d)
        return WD_ERR_NOMEM;
    d->tok = tok;
    d->skip_special = skip_special;
    *d_p = d;
    return WD_OK;
}

void wd_detok_destroy(struct wd_detok *d)
{
    if (!d)
        return;
    free(d->raw.p);
    free(d->out.p);
    free(d);
}

size_t wd_detok_chunk_cap(const struct wd_detok *d)
{
    /* every byte may turn into a 3-byte U+FFFD; plus pending bytes, a space and the NUL */
    return 3 * (d->tok->max_token_bytes + 4) + 2;
}

/* Runs the lossy decoder over pending + raw and commits the state if the result fits. */
static enum wd_status emit(struct wd_detok *d, int final, int consumed_token, char *out, size_t cap,
                           size_t *n_p)
{
    d->out.n = 0;
    long used =
        tok_utf8_lossy((const unsigned char *)(d->raw.p ? d->raw.p : ""), d->raw.n, final, &d->out);
    if (used < 0)
        return WD_ERR_NOMEM;
    if (!out || d->out.n + 1 > cap) {
        *n_p = d->out.n + 1;
        return WD_ERR_INVALID;
    }
    memcpy(out, d->out.p ? d->out.p : "", d->out.n);
    out[d->out.n] = 0;
    *n_p = d->out.n;
    d->n_pending = d->raw.n - (size_t)used;
    memcpy(d->pending, d->raw.p + used, d->n_pending);
    if (consumed_token)
        d->emitted_token = 1;
    return WD_OK;
}

enum wd_status wd_detok_push(struct wd_detok *d, int32_t id, char *out, size_t cap, size_t *n_p)
{
    const struct wd_tokenizer *tok = d->tok;
    d->raw.n = 0;
    if (tok_buf_put(&d->raw, d->pending, d->n_pending))
        return WD_ERR_NOMEM;
    int use = id >= 0 && id < tok->vocab_size && tok->id_to_str[id] &&
              !(d->skip_special && tok->id_special[id]);
    if (use) {
        if (tok->decoder == TOK_DEC_NONE && d->emitted_token && tok_buf_put(&d->raw, " ", 1))
            return WD_ERR_NOMEM;
        if (tok_token_bytes(tok, id, &d->raw))
            return WD_ERR_NOMEM;
    }
    return emit(d, 0, use, out, cap, n_p);
}

enum wd_status wd_detok_flush(struct wd_detok *d, char *out, size_t cap, size_t *n_p)
{
    d->raw.n = 0;
    if (tok_buf_put(&d->raw, d->pending, d->n_pending))
        return WD_ERR_NOMEM;
    return emit(d, 1, 0, out, cap, n_p);
}

/*
 * wd_tokenizer: Hugging Face tokenizer.json byte-level BPE (the format Qwen3 and
 * DeepSeek-V3 ship), with the incremental detokenizer the router streams with.
 *
 * Supported components: normalizers NFC/NFD/NFKC/NFKD (and Sequence of them),
 * pre-tokenizers Split (Regex or String, every behavior, invert), ByteLevel and
 * Sequence, model BPE (merges as "a b" strings or [a, b] pairs, ignore_merges,
 * byte_fallback, unk_token, fuse_unk), added tokens (single_word, lstrip, rstrip,
 * normalized, special), post-processors ByteLevel, TemplateProcessing, Bert,
 * Roberta and Sequence, decoder ByteLevel (or none). Anything else is refused at
 * load with WD_ERR_UNSUPPORTED naming the component.
 *
 * Threading: a loaded tokenizer is read-only apart from an internal word cache
 * guarded by a mutex, so encode/decode may run from several threads at once.
 * A wd_detok belongs to one stream and one thread.
 */
#ifndef WD_TOKENIZER_TOKENIZER_H
#define WD_TOKENIZER_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/util/status.h"

struct wd_tokenizer;

/* Loads a tokenizer.json file. Errors: WD_ERR_IO (unreadable), WD_ERR_FORMAT (bad JSON,
 * missing model/vocab, a merge naming an unknown token, a bad regex), WD_ERR_UNSUPPORTED
 * (a component type wideep does not implement). */
enum wd_status wd_tokenizer_load(const char *tokenizer_json_path, struct wd_tokenizer **tok_p,
                                 struct wd_error *err);
/* Same from a buffer of len bytes (need not be NUL-terminated). */
enum wd_status wd_tokenizer_load_from_memory(const char *json, size_t len,
                                             struct wd_tokenizer **tok_p, struct wd_error *err);
void wd_tokenizer_destroy(struct wd_tokenizer *tok);

/* Max id + 1, counting added tokens. */
int32_t wd_tokenizer_vocab_size(const struct wd_tokenizer *tok);

/* Encodes len bytes of UTF-8 text. Invalid UTF-8 -> WD_ERR_INVALID naming the byte offset.
 * add_special: apply the post-processor's template (DeepSeek-V3 prepends
 * <｜begin▁of▁sentence｜>; Qwen3 adds nothing). *ids_p is malloc'd (caller frees; may be
 * NULL when *n_p is 0). */
enum wd_status wd_tokenizer_encode(const struct wd_tokenizer *tok, const char *text, size_t len,
                                   int add_special, int32_t **ids_p, size_t *n_p,
                                   struct wd_error *err);

/* The token's string as in the vocab (borrowed, lives as long as tok), NULL when out of range. */
const char *wd_tokenizer_id_to_token(const struct wd_tokenizer *tok, int32_t id);
/* The id of a token string (added tokens first, then the model vocab), -1 if none. */
int32_t wd_tokenizer_token_to_id(const struct wd_tokenizer *tok, const char *token);
/* 1 when id is an added token marked special (dropped by skip_special), else 0. */
int wd_tokenizer_is_special(const struct wd_tokenizer *tok, int32_t id);

/* Full decode like HF's Tokenizer.decode: ids without a token are skipped, skip_special drops
 * special added tokens, invalid UTF-8 in the decoded bytes becomes U+FFFD per maximal
 * ill-formed subsequence. *text_p is a malloc'd NUL-terminated string. */
enum wd_status wd_tokenizer_decode(const struct wd_tokenizer *tok, const int32_t *ids, size_t n,
                                   int skip_special, char **text_p, struct wd_error *err);
/* Same, also giving the byte length (the text holds a NUL byte where ids decode to U+0000). */
enum wd_status wd_tokenizer_decode_len(const struct wd_tokenizer *tok, const int32_t *ids, size_t n,
                                       int skip_special, char **text_p, size_t *len_p,
                                       struct wd_error *err);

/* Incremental detokenizer: push one id at a time and get only newly completed text. A chunk
 * never ends inside a UTF-8 sequence: bytes are held back until the sequence completes (or
 * turns out invalid, which yields U+FFFD right away). flush emits U+FFFD for a dangling
 * incomplete sequence. The concatenation of every chunk plus the flush equals
 * wd_tokenizer_decode of the same ids. The tokenizer must outlive the detokenizer. */
struct wd_detok;
enum wd_status wd_detok_create(const struct wd_tokenizer *tok, int skip_special,
                               struct wd_detok **d_p);
void wd_detok_destroy(struct wd_detok *d);
/* Writes the new text plus a NUL into out (cap bytes including the NUL) and its length
 * (without the NUL) to *n_p. When cap is too small nothing is consumed and the call returns
 * WD_ERR_INVALID with *n_p set to the capacity needed (including the NUL); a cap of
 * wd_detok_chunk_cap() bytes always suffices. */
enum wd_status wd_detok_push(struct wd_detok *d, int32_t id, char *out, size_t cap, size_t *n_p);
enum wd_status wd_detok_flush(struct wd_detok *d, char *out, size_t cap, size_t *n_p);
/* A buffer size that fits any single push or flush for this tokenizer. */
size_t wd_detok_chunk_cap(const struct wd_detok *d);

#endif

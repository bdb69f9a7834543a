/*
 * Internals shared by the tokenizer's files (not a public header): the parsed
 * components of a tokenizer.json, the hash maps behind vocab and merges, the
 * per-call arena and byte buffer, and UTF-8 helpers.
 *
 * Ownership: struct wd_tokenizer owns everything hanging off it; an encode call
 * owns one struct tok_arena for its temporary strings and frees it on return.
 */
#ifndef WD_TOKENIZER_TOK_INTERNAL_H
#define WD_TOKENIZER_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "common/tokenizer/tokenizer.h"

/* Largest id a tokenizer.json may use: keeps a hostile file from sizing huge tables. */
#define TOK_MAX_ID (1 << 22)

/* ---- growable byte buffer ---- */
struct tok_buf {
    char *p;
    size_t n, cap;
};
int tok_buf_reserve(struct tok_buf *b, size_t extra); /* 0 ok, -1 out of memory */
int tok_buf_put(struct tok_buf *b, const void *data, size_t n);

/* ---- bump arena for the strings of one encode call ---- */
struct tok_arena_chunk;
struct tok_arena {
    struct tok_arena_chunk *head;
};
void *tok_arena_alloc(struct tok_arena *a, size_t n); /* NULL when out of memory */
void tok_arena_free(struct tok_arena *a);

/* ---- string -> int32 map (open addressing; keys are borrowed) ---- */
struct tok_strmap {
    struct tok_strmap_slot *slots;
    size_t cap, n;
};
int tok_strmap_init(struct tok_strmap *m, size_t expect);
void tok_strmap_cleanup(struct tok_strmap *m);
/* Inserts or overwrites; key must stay alive while the map is used. 0 ok, -1 no memory. */
int tok_strmap_put(struct tok_strmap *m, const char *key, size_t len, int32_t val);
/* Returns the value or -1. */
int32_t tok_strmap_get(const struct tok_strmap *m, const char *key, size_t len);

/* ---- uint64 -> (int32, int32) map, for merges (pair -> rank, new id) and the trie ---- */
struct tok_u64map {
    struct tok_u64map_slot *slots;
    size_t cap, n;
};
int tok_u64map_init(struct tok_u64map *m, size_t expect);
void tok_u64map_cleanup(struct tok_u64map *m);
int tok_u64map_put(struct tok_u64map *m, uint64_t key, int32_t a, int32_t b);
/* Returns 1 and fills *a, *b when found, else 0. */
int tok_u64map_get(const struct tok_u64map *m, uint64_t key, int32_t *a, int32_t *b);

/* ---- UTF-8 ---- */
/* Returns the offset of the first invalid byte, or len when the text is valid UTF-8. */
size_t tok_utf8_check(const char *s, size_t len);
/* Decodes one code point of valid UTF-8 at s (len > 0), returns its byte length. */
int tok_utf8_next(const char *s, size_t len, int32_t *cp);
int tok_utf8_put(char *dst, int32_t cp); /* writes 1-4 bytes, returns the count */
/* Length of the longest prefix of s that is complete; the tail held back is an incomplete but
 * still possibly valid sequence. Invalid bytes are replaced with U+FFFD into out as Rust's
 * String::from_utf8_lossy does. Appends the repaired prefix to out; returns bytes consumed
 * from s (the rest is the held-back tail), or -1 when out of memory. With final set the tail
 * is emitted as one U+FFFD. */
long tok_utf8_lossy(const unsigned char *s, size_t len, int final, struct tok_buf *out);

/* Rust regex's \s (Unicode White_Space) and \w (word character) classes. */
int tok_is_white_space(int32_t cp);
int tok_is_word_char(int32_t cp);

/* ---- components ---- */
enum tok_norm {
    TOK_NORM_NFC = 1,
    TOK_NORM_NFD,
    TOK_NORM_NFKC,
    TOK_NORM_NFKD,
};

enum tok_split_behavior {
    TOK_SPLIT_REMOVED,
    TOK_SPLIT_ISOLATED,
    TOK_SPLIT_MERGED_PREV,
    TOK_SPLIT_MERGED_NEXT,
    TOK_SPLIT_CONTIGUOUS,
};

enum tok_pretok_kind { TOK_PRETOK_SPLIT, TOK_PRETOK_BYTELEVEL };

struct tok_pretok {
    enum tok_pretok_kind kind;
    pcre2_code *re; /* Split pattern, or ByteLevel's GPT-2 regex when use_regex */
    enum tok_split_behavior behavior;
    int invert;
    int add_prefix_space;
};

struct tok_added {
    char *content; /* owned, NUL-terminated */
    size_t len;
    char *norm; /* content after the normalizer (only for normalized tokens; owned) */
    size_t norm_len;
    int32_t id;
    int single_word, lstrip, rstrip, normalized, special;
};

/* Trie over added-token contents: node ids, edges in a u64 map (node << 8 | byte). */
struct tok_trie {
    struct tok_u64map edges; /* -> (child node, unused) */
    int32_t *term;           /* [n_nodes] index into tok->added of the token ending here, -1 */
    int32_t n_nodes, cap_nodes;
    uint8_t first[256]; /* bytes that start some token */
};

enum tok_post_kind { TOK_POST_NONE, TOK_POST_TEMPLATE };

/* A post-processor reduced to what single-sequence encoding needs: ids before and after. */
struct tok_post {
    int32_t *prefix, *suffix;
    size_t n_prefix, n_suffix;
};

/* Word cache of the BPE model (shared by threads, hence the mutex). */
struct tok_cache_entry {
    char *word; /* owned */
    size_t len;
    int32_t *ids; /* owned */
    size_t n;
};

struct tok_bpe {
    struct tok_strmap vocab;  /* token -> id */
    struct tok_u64map merges; /* (left id << 32 | right id) -> (rank, merged id) */
    char *strings;            /* all vocab token strings, NUL-separated (owned) */
    int32_t unk_id;           /* -1 when no unk_token */
    int fuse_unk, byte_fallback, ignore_merges;
    char *prefix, *suffix; /* continuing_subword_prefix, end_of_word_suffix or NULL */
    int32_t byte_ids[256]; /* byte_fallback: id of "<0xXX>", -1 when absent */
    pthread_mutex_t cache_lock;
    struct tok_cache_entry *cache; /* [TOK_CACHE_SLOTS] direct-mapped */
};

enum tok_decoder_kind { TOK_DEC_NONE, TOK_DEC_BYTELEVEL };

struct wd_tokenizer {
    enum tok_norm *norms; /* [n_norms] applied in order */
    size_t n_norms;
    struct tok_pretok *pretoks; /* [n_pretoks] applied in order */
    size_t n_pretoks;
    struct tok_bpe bpe;
    struct tok_added *added; /* [n_added] */
    size_t n_added;
    struct tok_trie trie_raw, trie_norm; /* non-normalized / normalized added tokens */
    struct tok_strmap added_map;         /* content -> id */
    struct tok_post post;
    enum tok_decoder_kind decoder;
    int32_t vocab_size;
    const char **id_to_str;    /* [vocab_size] token text (borrowed from bpe.strings or added) */
    uint32_t *id_to_len;       /* [vocab_size] its byte length */
    uint8_t *id_special;       /* [vocab_size] */
    size_t max_token_bytes;    /* longest token string (bounds its decoded bytes) */
    pcre2_match_context *mctx; /* match limits (read-only, shared) */
};

/* tok_load.c: fills tok from parsed JSON text; frees nothing on error (caller destroys). */
enum wd_status tok_load_json(struct wd_tokenizer *tok, const char *json, size_t len,
                             struct wd_error *err);

/* tok_bpe.c */
enum wd_status tok_bpe_init_cache(struct tok_bpe *bpe);
void tok_bpe_cleanup(struct tok_bpe *bpe);
/* Tokenizes one pre-token word (len bytes), appending ids to *ids (growable, *n used, *cap). */
enum wd_status tok_bpe_word(const struct tok_bpe *bpe, const char *w, size_t len, int32_t **ids,
                            size_t *n, size_t *cap);

/* tok_trie (tok_util.c) */
int tok_trie_init(struct tok_trie *t);
void tok_trie_cleanup(struct tok_trie *t);
int tok_trie_add(struct tok_trie *t, const char *s, size_t len, int32_t idx);
/* Longest token starting at s[0..len): returns its index into added, its length in *mlen,
 * or -1. */
int32_t tok_trie_longest(const struct tok_trie *t, const char *s, size_t len, size_t *mlen);

/* tok_pretok.c: the encode pipeline up to BPE. */
struct tok_piece {
    const char *s;
    size_t n;
    int32_t id; /* >= 0: an added token already resolved */
};
struct tok_pieces {
    struct tok_piece *v;
    size_t n, cap;
};
enum wd_status tok_split_text(const struct wd_tokenizer *tok, const char *text, size_t len,
                              struct tok_arena *arena, struct tok_pieces *out,
                              struct wd_error *err);
/* Applies normalizers to s, result in the arena. */
enum wd_status tok_normalize(const struct wd_tokenizer *tok, const char *s, size_t n,
                             struct tok_arena *arena, const char **out, size_t *out_n);
/* tok_unicode_delta.c: appends to out the PCRE2 class ranges of code points that HF's regex
 * engine puts in general category cat ("L", "Lu", ...) but PCRE2's older tables leave
 * unassigned. Returns the bytes appended, or (size_t)-1 when out of memory. */
size_t tok_unicode_delta(const char *cat, size_t cat_len, struct tok_buf *out);
/* 1 when HF's (older) normalization tables do not know cp although utf8proc normalizes it:
 * such code points are copied verbatim and split the text into separately normalized runs. */
int tok_norm_is_opaque(int32_t cp);
/* Compiles a tokenizer.json regex (Oniguruma syntax as HF uses it) for PCRE2. */
pcre2_code *tok_regex_compile(const char *pattern, size_t len, int literal, char *why,
                              size_t why_len);

/* tokenizer.c: appends the decoded bytes of token id (valid, with a string) to out. */
int tok_token_bytes(const struct wd_tokenizer *tok, int32_t id, struct tok_buf *out);

/* GPT-2 byte <-> unicode table. */
int32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(int32_t cp); /* -1 when cp is not in the table */

#endif

/*
 * Fuzz target: wd_tokenizer_load_from_memory on arbitrary bytes. A tokenizer that
 * loads must also encode and decode a fixed text without crashing; every failure
 * must come back as a status (ASan/UBSan/LeakSanitizer watch the rest).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wd_tokenizer *tok = NULL;
    struct wd_error err;
    if (wd_tokenizer_load_from_memory((const char *)data, size, &tok, &err) != WD_OK)
        return 0;
    static const char text[] = "Hello world! <|im_start|>user\n  naïve 你好 123456 don't 😀\t";
    int32_t *ids = NULL;
    size_t n = 0;
    if (wd_tokenizer_encode(tok, text, sizeof(text) - 1, 1, &ids, &n, &err) == WD_OK) {
        char *out = NULL;
        if (wd_tokenizer_decode(tok, ids, n, 0, &out, &err) == WD_OK)
            free(out);
        free(ids);
    }
    int32_t probe[] = {0, 1, 2, wd_tokenizer_vocab_size(tok) - 1, wd_tokenizer_vocab_size(tok)};
    struct wd_detok *d = NULL;
    if (wd_detok_create(tok, 1, &d) == WD_OK) {
        size_t cap = wd_detok_chunk_cap(d), k;
        char *buf = malloc(cap);
        for (size_t i = 0; buf && i < sizeof(probe) / sizeof(probe[0]); i++)
            wd_detok_push(d, probe[i], buf, cap, &k);
        if (buf)
            wd_detok_flush(d, buf, cap, &k);
        free(buf);
        wd_detok_destroy(d);
    }
    wd_tokenizer_destroy(tok);
    return 0;
}

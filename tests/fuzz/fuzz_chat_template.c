/*
 * Fuzz target: the input is a Jinja chat template; it is parsed and rendered over a
 * fixed conversation. Parse and render errors must come back as statuses; nesting,
 * time and memory are bounded inside the interpreter.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/tokenizer/chat_template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *tpl = json_stringn_nocheck((const char *)data, size);
    json_t *cfg = json_pack("{s:o, s:s, s:{s:s}}", "chat_template", tpl, "bos_token", "<s>",
                            "eos_token", "content", "</s>");
    char *text = cfg ? json_dumps(cfg, 0) : NULL;
    json_decref(cfg);
    if (!text)
        return 0;
    struct wd_chat_template *ct = NULL;
    struct wd_error err;
    if (wd_chat_template_load_from_memory(text, strlen(text), &ct, &err) == WD_OK) {
        static const struct wd_chat_message msgs[] = {
            {"system", "Be brief."},
            {"user", "Hi <|im_end|> {{ x }}"},
            {"assistant", "<think>\nr\n</think>\n\nHello"},
            {"tool", NULL},
            {"user", "again"}};
        for (int agp = 0; agp < 2; agp++) {
            struct wd_chat_render_opts opts = {agp, agp ? 0 : -1};
            char *out = NULL;
            if (wd_chat_template_render_ex(ct, msgs, 5, &opts, &out, &err) == WD_OK)
                free(out);
        }
        wd_chat_template_destroy(ct);
    }
    free(text);
    return 0;
}

/* libFuzzer target: wd_generation_config_parse on arbitrary text. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/config/generation_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wd_generation_config g;
    struct wd_error err;
    if (wd_generation_config_parse((const char *)data, size, &g, &err) != WD_OK)
        return 0;
    if (g.n_eos < 0 || g.n_eos > WD_GENERATION_MAX_EOS || (g.has_top_p && !(g.top_p > 0)))
        abort();
    return 0;
}

/*
 * libFuzzer target: the router's request parsing. The first byte picks the endpoint
 * (chat, completions, /generate), the rest is the body. Whatever the bytes, the parser
 * returns a status, an error names a status and a message, and a parsed request keeps its
 * invariants; the error body it would send is valid JSON.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/api_request.h"

static const struct wd_api_model model = {
    .served_name = "tiny", .vocab_size = 1024, .temperature = 1.0f, .top_p = 1.0f};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum wd_api_kind kind = (enum wd_api_kind)(data[0] % 3);
    struct wd_api_request req;
    struct wd_api_error e;
    if (wd_api_request_parse(kind, (const char *)data + 1, size - 1, &model, &req, &e) != WD_OK) {
        if (e.status < 400 || e.status > 599 || !e.message[0])
            abort();
        char *json = wd_api_error_json(&e, NULL);
        if (!json)
            abort();
        free(json);
        return 0;
    }
    if (req.n_stop < 0 || req.n_stop > WD_API_MAX_STOP || req.n_stop_ids > WD_API_MAX_STOP_IDS)
        abort();
    for (int i = 0; i < req.n_stop; i++)
        if (req.stop_len[i] == 0 || req.stop_len[i] > WD_API_MAX_STOP_LEN)
            abort();
    for (int i = 0; i < req.n_ids; i++)
        if (req.ids[i] < 0 || req.ids[i] >= model.vocab_size)
            abort();
    if (kind == WD_API_CHAT && (req.n_msgs < 1 || !req.msgs[0].role))
        abort();
    if (kind != WD_API_CHAT && !req.text && !req.ids)
        abort();
    if (req.top_p <= 0 || req.top_p > 1 || req.temperature < 0 || req.top_k < 0)
        abort();
    wd_api_request_cleanup(&req);
    return 0;
}

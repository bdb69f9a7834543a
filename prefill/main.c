/*
 * wideep-prefill: a prefill server. Parses the worker flags (plus --bootstrap-port and
 * --bootstrap-host, the endpoint decode workers send their KV targets to), starts the ranks
 * and the front-end (common/server/worker.c), serves the router until drained, exits.
 * Each request's prompt is prefilled (chunked, batched with others) only once the decode
 * worker's target pages are known; its KV is written into them layer by layer over UCX.
 */
#include <stdio.h>

#include "common/server/worker.h"
#include "common/util/log.h"

int main(int argc, char **argv)
{
    wd_log_set_identity("prefill", NULL);
    struct wd_worker_args args;
    int rc = wd_worker_args_parse(&args, "prefill", argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    struct wd_error err = {0};
    struct wd_worker *w = NULL;
    if (wd_worker_create(&args, WD_WORKER_PREFILL, &w, &err) != WD_OK) {
        fprintf(stderr, "wideep-prefill: %s\n", err.msg);
        return 1;
    }
    rc = wd_worker_run(w);
    wd_worker_destroy(w);
    return rc;
}

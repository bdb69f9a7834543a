/*
 * wideep-decode: a decode server. Parses the worker flags, starts the ranks and the
 * front-end (common/server/worker.c), serves the router until drained, exits.
 * Requests the router sends as GenerateRequest are prefilled locally (conditional
 * disaggregation: no prefill worker registered, or a prompt under the router's threshold).
 */
#include <stdio.h>

#include "common/server/worker.h"
#include "common/util/log.h"

int main(int argc, char **argv)
{
    wd_log_set_identity("decode", NULL);
    struct wd_worker_args args;
    int rc = wd_worker_args_parse(&args, "decode", argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    struct wd_error err = {0};
    struct wd_worker *w = NULL;
    if (wd_worker_create(&args, WD_WORKER_DECODE, &w, &err) != WD_OK) {
        fprintf(stderr, "wideep-decode: %s\n", err.msg);
        return 1;
    }
    rc = wd_worker_run(w);
    wd_worker_destroy(w);
    return rc;
}

/* wideep-router: parse the flags, create the router, serve until SIGINT / SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "common/util/log.h"
#include "router/router.h"

static struct wd_router *g_router; /* for the signal handler only */

static void on_signal(int sig)
{
    (void)sig;
    if (g_router)
        wd_router_stop(g_router);
}

int main(int argc, char **argv)
{
    struct wd_router_args args;
    struct wd_error err = {0};
    int help = 0;
    wd_log_set_identity("router", NULL);
    if (wd_router_args_parse(&args, argc, argv, &help, &err) != WD_OK) {
        fprintf(stderr, "wideep-router: %s\n", err.msg);
        return 2;
    }
    if (help)
        return 0;
    /* A client that vanishes mid-write must not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    struct wd_router *r = NULL;
    if (wd_router_create(&args, &r, &err) != WD_OK) {
        fprintf(stderr, "wideep-router: %s\n", err.msg);
        return 1;
    }
    g_router = r;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int rc = 0;
    if (wd_router_run(r, &err) != WD_OK) {
        fprintf(stderr, "wideep-router: %s\n", err.msg);
        rc = 1;
    }
    g_router = NULL;
    wd_router_destroy(r);
    return rc;
}

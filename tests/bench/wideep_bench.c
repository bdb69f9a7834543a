/* wideep-bench: micro-benchmarks (engine step; ep dispatch/combine; router overhead; kv
 * transfer). Figures are printed beside a baseline measured in the same run (memcpy or raw
 * UCX put bandwidth), because shared machines are noisy. */
#include <stdio.h>
#include <string.h>

#include "common/util/log.h"

int wd_bench_engine(int argc, char **argv);
int wd_bench_ep(int argc, char **argv);
int wd_bench_kv(int argc, char **argv);
int wd_bench_null_worker(int argc, char **argv);
int wd_bench_router(int argc, char **argv);

int main(int argc, char **argv)
{
    wd_log_set_identity("bench", NULL);
    wd_log_set_level(WD_LOG_WARN);
    if (argc >= 2 && strcmp(argv[1], "engine") == 0)
        return wd_bench_engine(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "ep") == 0)
        return wd_bench_ep(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "kv") == 0)
        return wd_bench_kv(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "router") == 0)
        return wd_bench_router(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "null-worker") == 0)
        return wd_bench_null_worker(argc - 1, argv + 1);
    fprintf(stderr, "usage: wideep-bench engine [--model-path DIR | --random NAME] [options]\n"
                    "       wideep-bench ep [--ranks R] [--tokens N] [--mode normal|low_latency] "
                    "[--transport shm|ucx] [options]\n"
                    "       wideep-bench kv [--layers L] [--tokens 1,16,...] "
                    "[--layouts whole,gather,split] [options]\n"
                    "       wideep-bench router [--model-path DIR] [--connections N] "
                    "[--duration S]\n"
                    "       wideep-bench null-worker --router tcp://HOST:PORT --model-path DIR "
                    "[options]\n");
    return 2;
}

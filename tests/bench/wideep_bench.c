/* wideep-bench: micro-benchmarks. Figures are printed beside a baseline measured in the
 * same run (memcpy bandwidth), because shared machines are noisy. */
#include <stdio.h>
#include <string.h>

#include "common/util/log.h"

int wd_bench_engine(int argc, char **argv);

int main(int argc, char **argv)
{
    wd_log_set_identity("bench", NULL);
    wd_log_set_level(WD_LOG_WARN);
    if (argc >= 2 && strcmp(argv[1], "engine") == 0)
        return wd_bench_engine(argc - 1, argv + 1);
    fprintf(stderr, "usage: wideep-bench engine [--model-path DIR | --random NAME] [options]\n");
    return 2;
}

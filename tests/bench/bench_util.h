/* Timing and baseline measurements shared by the wideep-bench subcommands. */
#ifndef WD_BENCH_UTIL_H
#define WD_BENCH_UTIL_H

#include <stddef.h>

#include "kernels/threadpool.h"

double wd_bench_now(void); /* monotonic seconds */
/* Best-of-3 memcpy bandwidth in GB/s (bytes copied per second) over buffers of `bytes`,
 * split over the pool's threads (tp may be NULL for one thread). */
double wd_bench_memcpy_gbs(size_t bytes, struct wd_threadpool *tp, int n_threads);
/* Best-of-3 read-only bandwidth in GB/s (bytes read per second): a vectorized reduction over a
 * buffer of `bytes`, split over the pool's threads. This is decode's ceiling: decode reads its
 * weights and writes almost nothing, where memcpy moves every byte twice. */
double wd_bench_read_gbs(size_t bytes, struct wd_threadpool *tp, int n_threads);

/* "12.3 MB" / "45.6 KB" into buf (decimal units, as GB/s is). */
const char *wd_bench_human(double bytes, char *buf, size_t cap);
/* Median of v[0..n) (sorts v). */
double wd_bench_median(double *v, int n);

#endif

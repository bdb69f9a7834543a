/* Monotonic time for timeouts, deadlines and latency figures (never the wall clock, which
 * jumps). */
#ifndef WD_UTIL_CLOCK_H
#define WD_UTIL_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds / microseconds. */
int64_t wd_now_ms(void);
int64_t wd_now_us(void);

#endif

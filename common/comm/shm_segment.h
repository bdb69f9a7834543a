/*
 * POSIX shared-memory segments of a launch: create one (exclusive) and map it, map one a
 * peer created, and sweep every segment whose name starts with a launch's prefix. Names
 * look like "/wd-<launch_id>-<what>" (wd_rank_shm_name) and live in /dev/shm. The helpers
 * keep no state; mappings belong to the caller, who unmaps them with munmap.
 */
#ifndef WD_COMM_SHM_SEGMENT_H
#define WD_COMM_SHM_SEGMENT_H

#include <stddef.h>

#include "common/util/status.h"

/* Creates segment name (must not exist) of bytes, zeroed, with every page reserved, and
 * maps it read-write into *p_p. WD_ERR_NOMEM ("no space", naming the segment, its size and
 * what /dev/shm has free, with a hint to enlarge it) when /dev/shm cannot back all of it;
 * WD_ERR_IO names the segment, the step and the errno text. On failure nothing is left
 * behind (the name is removed again). */
enum wd_status wd_shm_segment_create(const char *name, size_t bytes, void **p_p,
                                     struct wd_error *err);
/* Maps existing segment name read-write; its size must equal bytes (WD_ERR_INVALID). */
enum wd_status wd_shm_segment_open(const char *name, size_t bytes, void **p_p,
                                   struct wd_error *err);
/* Removes every segment whose name (without the leading '/') starts with prefix; returns
 * how many it removed. Mappings stay valid. */
int wd_shm_segment_remove_prefix(const char *prefix);

#endif

/* Opening input files: one place that says why a path cannot be read. */
#ifndef WD_UTIL_FILE_H
#define WD_UTIL_FILE_H

#include <stddef.h>

#include "common/util/status.h"

/* Opens path read-only (close-on-exec) and checks it is a regular file. On success *fd_p is
 * the descriptor (the caller closes it) and *size_p the file's size. Errors name the path:
 * WD_ERR_NOT_FOUND when it does not exist, WD_ERR_IO otherwise (errno text, or "not a
 * regular file"). */
enum wd_status wd_file_open_regular(const char *path, int *fd_p, size_t *size_p,
                                    struct wd_error *err);

#endif

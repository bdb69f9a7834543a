/* Input files: open, stat, and refuse what is not a regular file. */
#include "common/util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum wd_status wd_file_open_regular(const char *path, int *fd_p, size_t *size_p,
                                    struct wd_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return wd_error_set(err, e == ENOENT ? WD_ERR_NOT_FOUND : WD_ERR_IO, "%s: %s", path,
                            strerror(e));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return wd_error_set(err, WD_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return wd_error_set(err, WD_ERR_IO, "%s: not a regular file", path);
    }
    *fd_p = fd;
    *size_p = (size_t)sb.st_size;
    return WD_OK;
}

/*
 * shm segments: shm_open + ftruncate + mmap for the creator, shm_open + fstat + mmap for
 * the peers, and a /dev/shm directory sweep for whoever cleans up after a launch.
 */
#include "common/comm/shm_segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util/log.h"

/* Maps segment name of exactly bytes; is_create makes it (O_EXCL). */
static enum wd_status map_segment(const char *name, size_t bytes, int is_create, void **p_p,
                                  struct wd_error *err)
{
    int fd = shm_open(name, is_create ? O_RDWR | O_CREAT | O_EXCL : O_RDWR, 0600);
    if (fd < 0)
        return wd_error_set(err, WD_ERR_IO, "shm segment %s: %s: %s", name,
                            is_create ? "create" : "open", strerror(errno));
    struct stat stbuf;
    const char *what = NULL;
    if (is_create && ftruncate(fd, (off_t)bytes) != 0)
        what = "resize";
    else if (!is_create && fstat(fd, &stbuf) != 0)
        what = "stat";
    if (what) {
        int e = errno;
        close(fd);
        if (is_create)
            shm_unlink(name);
        return wd_error_set(err, WD_ERR_IO, "shm segment %s: %s: %s", name, what, strerror(e));
    }
    if (!is_create && (size_t)stbuf.st_size != bytes) {
        close(fd);
        return wd_error_set(err, WD_ERR_INVALID, "shm segment %s has %lld bytes, expected %zu",
                            name, (long long)stbuf.st_size, bytes);
    }
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) {
        if (is_create)
            shm_unlink(name);
        return wd_error_set(err, WD_ERR_IO, "shm segment %s: map %zu bytes: %s", name, bytes,
                            strerror(e));
    }
    *p_p = p;
    return WD_OK;
}

enum wd_status wd_shm_segment_create(const char *name, size_t bytes, void **p_p,
                                     struct wd_error *err)
{
    return map_segment(name, bytes, 1, p_p, err);
}

enum wd_status wd_shm_segment_open(const char *name, size_t bytes, void **p_p, struct wd_error *err)
{
    return map_segment(name, bytes, 0, p_p, err);
}

int wd_shm_segment_remove_prefix(const char *prefix)
{
    size_t plen = strlen(prefix);
    DIR *d = opendir("/dev/shm");
    if (!d)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, prefix, plen) != 0)
            continue;
        char name[300];
        snprintf(name, sizeof(name), "/%s", de->d_name);
        if (shm_unlink(name) == 0) {
            wd_log(WD_LOG_DEBUG, "shm", "removed leftover shm segment %s", name);
            n++;
        }
    }
    closedir(d);
    return n;
}

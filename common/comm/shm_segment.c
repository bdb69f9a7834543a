/*
 * shm segments: shm_open + ftruncate + posix_fallocate + mmap for the creator, shm_open +
 * fstat + mmap for the peers, and a /dev/shm directory sweep for whoever cleans up after a
 * launch.
 *
 * Why posix_fallocate: ftruncate alone makes a sparse file, and tmpfs hands out a page only
 * when it is first touched. When /dev/shm is full at that moment (a container's default
 * 64 MiB, other jobs' segments), the touching process gets SIGBUS, in the middle of a
 * collective, with nothing to say why. Reserving every page at creation moves that failure
 * to one place with a clear error. The price: a window's memory is committed when it is
 * created, not when it is first written (DeepEP sizes its buffers the same way).
 */
#include "common/comm/shm_segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/util/log.h"

/* The error for a segment /dev/shm cannot back, with what is free there (after the failed
 * segment is gone) and how to get more. */
static enum wd_status no_space(const char *name, size_t bytes, struct wd_error *err)
{
    struct statvfs sv;
    double mib = 1024.0 * 1024.0, avail = 0, total = 0;
    if (statvfs("/dev/shm", &sv) == 0) {
        avail = (double)sv.f_bavail * (double)sv.f_frsize / mib;
        total = (double)sv.f_blocks * (double)sv.f_frsize / mib;
    }
    /* Short enough to survive the rank's error prefixes in the launcher's one line. */
    return wd_error_set(err, WD_ERR_NOMEM,
                        "shm segment %s: no space in /dev/shm for %zu bytes (%.1f of %.1f MiB "
                        "free): enlarge /dev/shm (docker --shm-size, k8s emptyDir medium Memory)",
                        name, bytes, avail, total);
}

/* Maps segment name of exactly bytes; is_create makes it (O_EXCL) and reserves its pages. */
static enum wd_status map_segment(const char *name, size_t bytes, int is_create, void **p_p,
                                  struct wd_error *err)
{
    int fd = shm_open(name, is_create ? O_RDWR | O_CREAT | O_EXCL : O_RDWR, 0600);
    if (fd < 0)
        return wd_error_set(err, WD_ERR_IO, "shm segment %s: %s: %s", name,
                            is_create ? "create" : "open", strerror(errno));
    struct stat stbuf;
    const char *what = NULL;
    int e = 0;
    if (is_create && ftruncate(fd, (off_t)bytes) != 0) {
        what = "resize";
        e = errno;
    } else if (is_create) {
        while ((e = posix_fallocate(fd, 0, (off_t)bytes)) == EINTR) {
        }
        what = e ? "reserve" : NULL;
    } else if (fstat(fd, &stbuf) != 0) {
        what = "stat";
        e = errno;
    }
    if (what) {
        close(fd);
        if (is_create)
            shm_unlink(name);
        if (e == ENOSPC)
            return no_space(name, bytes, err);
        return wd_error_set(err, WD_ERR_IO, "shm segment %s: %s: %s", name, what, strerror(e));
    }
    if (!is_create && (size_t)stbuf.st_size != bytes) {
        close(fd);
        return wd_error_set(err, WD_ERR_INVALID, "shm segment %s has %lld bytes, expected %zu",
                            name, (long long)stbuf.st_size, bytes);
    }
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    e = errno;
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

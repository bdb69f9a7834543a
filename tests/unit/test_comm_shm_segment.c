/*
 * shm segment helper against a small /dev/shm: the test mounts a 1 MiB tmpfs over
 * /dev/shm in a mount namespace of its own (skipped where that is not permitted), so a
 * segment that does not fit fails at creation with a "no space" error naming it and its
 * size, instead of a SIGBUS at the first write into a page tmpfs cannot back. Also: create
 * then open (same bytes, wrong size, existing name) and the sweep by prefix. After every
 * test /dev/shm is empty again.
 */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/statvfs.h>

#include "common/comm/shm_segment.h"
#include "tests/unit/wd_test.h"

#define TMPFS_BYTES (1u << 20)

static int shm_count(void)
{
    DIR *d = opendir("/dev/shm");
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

static unsigned long long shm_free(void)
{
    struct statvfs sv;
    return statvfs("/dev/shm", &sv) == 0 ? (unsigned long long)sv.f_bavail * sv.f_frsize : 0;
}

static void test_create_open(void)
{
    struct wd_error err = {0};
    void *a = NULL, *b = NULL;
    size_t n = 64 << 10;
    WD_EXPECT_MSG(wd_shm_segment_create("/wd-t-a", n, &a, &err) == WD_OK, "%s", err.msg);
    if (!a)
        return;
    int is_zero = 1;
    for (size_t i = 0; i < n; i++)
        is_zero &= ((unsigned char *)a)[i] == 0;
    WD_EXPECT(is_zero);
    memset(a, 0x5a, n);
    WD_EXPECT_MSG(wd_shm_segment_open("/wd-t-a", n, &b, &err) == WD_OK, "%s", err.msg);
    WD_EXPECT(b && ((unsigned char *)b)[n - 1] == 0x5a);
    void *c = NULL;
    WD_EXPECT(wd_shm_segment_open("/wd-t-a", n / 2, &c, &err) == WD_ERR_INVALID);
    WD_EXPECT_MSG(strstr(err.msg, "/wd-t-a") && strstr(err.msg, "expected 32768"), "%s", err.msg);
    WD_EXPECT(wd_shm_segment_create("/wd-t-a", n, &c, &err) == WD_ERR_IO);
    WD_EXPECT_MSG(strstr(err.msg, "File exists"), "%s", err.msg);
    WD_EXPECT(wd_shm_segment_open("/wd-t-none", n, &c, &err) == WD_ERR_IO);
    WD_EXPECT(wd_shm_segment_remove_prefix("wd-t-") == 1);
    if (b)
        munmap(b, n);
    munmap(a, n);
    WD_EXPECT_EQ_INT(shm_count(), 0);
}

/* Larger than the whole tmpfs: refused at once, nothing left, no space used. */
static void test_no_space(void)
{
    struct wd_error err = {0};
    unsigned long long before = shm_free();
    void *p = NULL;
    enum wd_status st = wd_shm_segment_create("/wd-t-big", 4u << 20, &p, &err);
    WD_EXPECT_MSG(st == WD_ERR_NOMEM, "status %s: %s", wd_status_str(st), err.msg);
    WD_EXPECT_MSG(strstr(err.msg, "no space") && strstr(err.msg, "/wd-t-big") &&
                      strstr(err.msg, "4194304 bytes") && strstr(err.msg, "/dev/shm") &&
                      strstr(err.msg, "shm-size"),
                  "message: %s", err.msg);
    if (st == WD_OK) {
        munmap(p, 4u << 20); /* the bug: it "worked", and the first write past 1 MiB is SIGBUS */
        wd_shm_segment_remove_prefix("wd-t-");
    }
    WD_EXPECT_EQ_INT(shm_count(), 0);
    WD_EXPECT_EQ_INT(shm_free(), before);
}

/* A segment that fits is backed in full (every page written); the next one that does not
 * fit into what is left fails cleanly, and the space comes back after the sweep. */
static void test_fill(void)
{
    struct wd_error err = {0};
    unsigned long long before = shm_free();
    size_t first = 768 << 10, second = 512 << 10;
    void *a = NULL, *b = NULL;
    WD_EXPECT_MSG(wd_shm_segment_create("/wd-t-1", first, &a, &err) == WD_OK, "%s", err.msg);
    if (a)
        memset(a, 1, first);
    enum wd_status st = wd_shm_segment_create("/wd-t-2", second, &b, &err);
    WD_EXPECT_MSG(st == WD_ERR_NOMEM && strstr(err.msg, "no space") && strstr(err.msg, "/wd-t-2"),
                  "status %s: %s", wd_status_str(st), err.msg);
    if (b)
        munmap(b, second);
    WD_EXPECT_EQ_INT(shm_count(), 1);
    WD_EXPECT(wd_shm_segment_remove_prefix("wd-t-") == 1);
    if (a)
        munmap(a, first);
    WD_EXPECT_EQ_INT(shm_count(), 0);
    WD_EXPECT_EQ_INT(shm_free(), before);
}

static void test_remove_prefix(void)
{
    struct wd_error err = {0};
    static const char *names[] = {"/wd-t1-a", "/wd-t1-b", "/wd-t10-a", "/wd-t2-a"};
    void *p[4] = {0};
    for (int i = 0; i < 4; i++)
        WD_EXPECT_MSG(wd_shm_segment_create(names[i], 4096, &p[i], &err) == WD_OK, "%s", err.msg);
    WD_EXPECT_EQ_INT(wd_shm_segment_remove_prefix("wd-t1-"), 2);
    WD_EXPECT_EQ_INT(shm_count(), 2);
    if (p[0])
        ((volatile char *)p[0])[0] = 1; /* still mapped after the name went */
    WD_EXPECT_EQ_INT(wd_shm_segment_remove_prefix("wd-t"), 2);
    WD_EXPECT_EQ_INT(shm_count(), 0);
    for (int i = 0; i < 4; i++)
        if (p[i])
            munmap(p[i], 4096);
}

int main(void)
{
    /* A private mount namespace: the small tmpfs is seen by this process only and goes
     * away with it. */
    char opts[32];
    snprintf(opts, sizeof(opts), "size=%u", TMPFS_BYTES);
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", "/dev/shm", "tmpfs", 0, opts) != 0) {
        printf("skip: cannot mount a small tmpfs over /dev/shm in a private mount namespace: "
               "%s\n",
               strerror(errno));
        return 77;
    }
    WD_RUN(test_create_open);
    WD_RUN(test_no_space);
    WD_RUN(test_fill);
    WD_RUN(test_remove_prefix);
    return wd_test_finish();
}

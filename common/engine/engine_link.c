/* Front-end <-> leader-rank link: two shared rings, eventfds, a stats seqlock, flags. */
#include "common/engine/engine_link.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

struct wd_engine_link_shm {
    uint32_t stop;           /* front-end -> ranks: leave at the next step boundary */
    uint32_t exit_when_idle; /* front-end -> ranks: leave once no rank has work */
    uint8_t pad0[56];
    uint64_t stats_seq; /* seqlock: odd while the rank writes */
    struct wd_engine_stats stats;
    uint8_t pad1[64];
};

static size_t align_up(size_t x, size_t a)
{
    return (x + a - 1) / a * a;
}

enum wd_status wd_engine_link_create(size_t cmd_cap, size_t ev_cap, struct wd_engine_link **l_p,
                                     struct wd_error *err)
{
    WD_ASSERT(cmd_cap >= 4096 && ev_cap >= 4096);
    struct wd_engine_link *l = calloc(1, sizeof(*l));
    if (!l)
        return wd_error_set(err, WD_ERR_NOMEM, "engine link: out of memory");
    l->cmd_efd = l->ev_efd = -1;
    size_t head = align_up(sizeof(struct wd_engine_link_shm), 64);
    size_t cmd_bytes = align_up(wd_ring_bytes(cmd_cap), 64);
    l->bytes = head + cmd_bytes + wd_ring_bytes(ev_cap);
    /* Untouched ring pages cost nothing: the mapping can be generous. */
    void *mem = mmap(NULL, l->bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        size_t bytes = l->bytes;
        free(l);
        return wd_error_set(err, WD_ERR_NOMEM, "engine link: cannot map %zu bytes", bytes);
    }
    l->mem = mem;
    l->shm = mem;
    memset(l->shm, 0, sizeof(*l->shm));
    l->cmd = wd_ring_init((uint8_t *)mem + head, cmd_cap);
    l->ev = wd_ring_init((uint8_t *)mem + head + cmd_bytes, ev_cap);
    l->cmd_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->ev_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->cmd_efd < 0 || l->ev_efd < 0) {
        int e = errno;
        wd_engine_link_destroy(l);
        return wd_error_set(err, WD_ERR_IO, "engine link: eventfd: %s", strerror(e));
    }
    *l_p = l;
    return WD_OK;
}

void wd_engine_link_destroy(struct wd_engine_link *l)
{
    if (!l)
        return;
    if (l->cmd_efd >= 0)
        close(l->cmd_efd);
    if (l->ev_efd >= 0)
        close(l->ev_efd);
    if (l->mem)
        munmap(l->mem, l->bytes);
    free(l);
}

static void efd_signal(int fd)
{
    uint64_t one = 1;
    /* EAGAIN only when the counter is saturated, which still means "readable". */
    while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

static void efd_clear(int fd)
{
    uint64_t v;
    while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
}

enum wd_status wd_engine_link_push_cmd(struct wd_engine_link *l, const struct wd_engine_cmd *c,
                                       const int32_t *prompt)
{
    size_t extra = c->kind == WD_ENGINE_CMD_ADD || c->kind == WD_ENGINE_CMD_RESERVE
                       ? (size_t)c->n_prompt * sizeof(int32_t)
                       : 0;
    return wd_ring_push2(l->cmd, c, sizeof(*c), prompt, extra);
}

void wd_engine_link_wake(struct wd_engine_link *l)
{
    efd_signal(l->cmd_efd);
}

size_t wd_engine_link_pop_event(struct wd_engine_link *l, void *buf, size_t cap)
{
    return wd_ring_pop(l->ev, buf, cap);
}

size_t wd_engine_link_peek_event(const struct wd_engine_link *l)
{
    return wd_ring_peek(l->ev);
}

int wd_engine_link_event_fd(const struct wd_engine_link *l)
{
    return l->ev_efd;
}

void wd_engine_link_clear_event_fd(struct wd_engine_link *l)
{
    efd_clear(l->ev_efd);
}

void wd_engine_link_set_stop(struct wd_engine_link *l)
{
    __atomic_store_n(&l->shm->stop, 1, __ATOMIC_RELEASE);
    efd_signal(l->cmd_efd);
}

void wd_engine_link_set_exit_when_idle(struct wd_engine_link *l)
{
    __atomic_store_n(&l->shm->exit_when_idle, 1, __ATOMIC_RELEASE);
    efd_signal(l->cmd_efd);
}

void wd_engine_link_read_stats(const struct wd_engine_link *l, struct wd_engine_stats *st)
{
    for (;;) {
        uint64_t s0 = __atomic_load_n(&l->shm->stats_seq, __ATOMIC_ACQUIRE);
        if (s0 & 1) {
            sched_yield();
            continue;
        }
        memcpy(st, &l->shm->stats, sizeof(*st));
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&l->shm->stats_seq, __ATOMIC_RELAXED) == s0)
            return;
    }
}

void wd_engine_link_wait_cmd(struct wd_engine_link *l, int timeout_ms)
{
    if (timeout_ms <= 0 || wd_ring_peek(l->cmd) > 0 || wd_engine_link_stop_requested(l))
        return;
    struct pollfd p = {.fd = l->cmd_efd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) > 0)
        efd_clear(l->cmd_efd);
}

size_t wd_engine_link_pop_cmd(struct wd_engine_link *l, void *buf, size_t cap)
{
    return wd_ring_pop(l->cmd, buf, cap);
}

size_t wd_engine_link_peek_cmd(const struct wd_engine_link *l)
{
    return wd_ring_peek(l->cmd);
}

enum wd_status wd_engine_link_push_event(struct wd_engine_link *l, const struct wd_engine_event *e,
                                         const void *extra, size_t extra_len)
{
    for (long sleep_ns = 20000;; sleep_ns = sleep_ns < 1000000 ? sleep_ns * 2 : sleep_ns) {
        enum wd_status st = wd_ring_push2(l->ev, e, sizeof(*e), extra, extra_len);
        if (st != WD_ERR_NOMEM)
            return st;
        /* Full: the front-end is behind. Wake it and give it time; a front-end that died
         * takes this process along (PR_SET_PDEATHSIG), so this cannot wait forever. */
        efd_signal(l->ev_efd);
        struct timespec ts = {0, sleep_ns};
        nanosleep(&ts, NULL);
    }
}

void wd_engine_link_notify(struct wd_engine_link *l)
{
    efd_signal(l->ev_efd);
}

int wd_engine_link_stop_requested(const struct wd_engine_link *l)
{
    return (int)__atomic_load_n(&l->shm->stop, __ATOMIC_ACQUIRE);
}

int wd_engine_link_exit_when_idle(const struct wd_engine_link *l)
{
    return (int)__atomic_load_n(&l->shm->exit_when_idle, __ATOMIC_ACQUIRE);
}

void wd_engine_link_publish_stats(struct wd_engine_link *l, const struct wd_engine_stats *st)
{
    uint64_t s = l->shm->stats_seq;
    __atomic_store_n(&l->shm->stats_seq, s + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    memcpy(&l->shm->stats, st, sizeof(*st));
    __atomic_store_n(&l->shm->stats_seq, s + 2, __ATOMIC_RELEASE);
}

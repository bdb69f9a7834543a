/*
 * Rendezvous store: set/get/add/barrier through real sockets against a server polled in a
 * thread (the launcher polls it from its loop), timeouts on absent keys, the size limits,
 * garbage on the server's socket (bad magic, bad op, oversized lengths, a frame cut short,
 * random bytes) which must cost only that connection, a fake server that answers garbage
 * or nothing (the client fails with an error, in time), the launch token (another token,
 * none, a request before the hello: refused, only that connection lost), the decoder fed
 * directly with valid and random streams and with the token's hello, and address parsing.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/comm/rendezvous.h"
#include "tests/unit/wd_test.h"

struct server_thread {
    struct wd_rdzv_server *srv;
    pthread_t th;
    int stop; /* atomic */
};

static void *serve(void *arg)
{
    struct server_thread *s = arg;
    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE))
        wd_rdzv_server_poll(s->srv, 10, NULL);
    return NULL;
}

/* token: the launch token the server requires (NULL: none). */
static int server_start(struct server_thread *s, const char *token)
{
    struct wd_error err = {0};
    memset(s, 0, sizeof(*s));
    if (wd_rdzv_server_create("127.0.0.1", 0, token, &s->srv, &err) != WD_OK) {
        WD_EXPECT_MSG(0, "server: %s", err.msg);
        return -1;
    }
    WD_EXPECT(wd_rdzv_server_port(s->srv) > 0);
    pthread_create(&s->th, NULL, serve, s);
    return 0;
}

static void server_stop(struct server_thread *s)
{
    __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
    pthread_join(s->th, NULL);
    wd_rdzv_server_destroy(s->srv);
}

static struct wd_rdzv *client(const struct server_thread *s, int timeout_ms)
{
    struct wd_rdzv *c = NULL;
    struct wd_error err = {0};
    enum wd_status st =
        wd_rdzv_create("127.0.0.1", wd_rdzv_server_port(s->srv), NULL, timeout_ms, &c, &err);
    WD_EXPECT_MSG(st == WD_OK, "connect: %s", err.msg);
    return c;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_store(void)
{
    struct server_thread s;
    if (server_start(&s, NULL))
        return;
    struct wd_rdzv *a = client(&s, 2000), *b = client(&s, 2000);
    struct wd_error err = {0};
    void *v = NULL;
    size_t len = 0;
    WD_EXPECT(wd_rdzv_set(a, "k1", "hello", 5, &err) == WD_OK);
    WD_EXPECT(wd_rdzv_get(b, "k1", 1000, &v, &len, &err) == WD_OK);
    WD_EXPECT(len == 5 && memcmp(v, "hello", 5) == 0);
    free(v);
    /* Replace, empty value, binary value with zero bytes. */
    WD_EXPECT(wd_rdzv_set(b, "k1", "", 0, &err) == WD_OK);
    WD_EXPECT(wd_rdzv_get(a, "k1", 0, &v, &len, &err) == WD_OK && len == 0 && v != NULL);
    free(v);
    uint8_t bin[300];
    for (int i = 0; i < 300; i++)
        bin[i] = (uint8_t)(i * 7);
    WD_EXPECT(wd_rdzv_set(a, "bin", bin, sizeof(bin), &err) == WD_OK);
    WD_EXPECT(wd_rdzv_get(b, "bin", 0, &v, &len, &err) == WD_OK && len == 300 &&
              memcmp(v, bin, 300) == 0);
    free(v);
    /* The largest value there is. */
    uint8_t *big = malloc(WD_RDZV_MAX_VALUE);
    for (size_t i = 0; i < WD_RDZV_MAX_VALUE; i++)
        big[i] = (uint8_t)(i * 13 + (i >> 12));
    WD_EXPECT(wd_rdzv_set(a, "big", big, WD_RDZV_MAX_VALUE, &err) == WD_OK);
    WD_EXPECT(wd_rdzv_get(b, "big", 0, &v, &len, &err) == WD_OK && len == WD_RDZV_MAX_VALUE &&
              memcmp(v, big, len) == 0);
    free(v);
    WD_EXPECT(wd_rdzv_set(a, "big", big, WD_RDZV_MAX_VALUE + 1, &err) == WD_ERR_INVALID);
    free(big);
    char long_key[WD_RDZV_MAX_KEY + 2];
    memset(long_key, 'k', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = 0;
    WD_EXPECT(wd_rdzv_set(a, long_key, "x", 1, &err) == WD_ERR_INVALID);
    WD_EXPECT(wd_rdzv_set(a, "", "x", 1, &err) == WD_ERR_INVALID);
    long_key[WD_RDZV_MAX_KEY] = 0; /* exactly the limit */
    WD_EXPECT(wd_rdzv_set(a, long_key, "x", 1, &err) == WD_OK);
    /* Counters. */
    int64_t x = 0;
    WD_EXPECT(wd_rdzv_add(a, "n", 5, &x, &err) == WD_OK && x == 5);
    WD_EXPECT(wd_rdzv_add(b, "n", -7, &x, &err) == WD_OK && x == -2);
    WD_EXPECT(wd_rdzv_add(b, "n", 0, &x, &err) == WD_OK && x == -2);
    WD_EXPECT(wd_rdzv_add(a, "k1", 1, &x, &err) == WD_ERR_INVALID); /* not a counter */
    WD_EXPECT(wd_rdzv_set(a, "after", "1", 1, &err) == WD_OK);      /* and the connection lives */
    /* Absent keys: at once, and after a timeout that is honoured. */
    WD_EXPECT(wd_rdzv_get(a, "absent", 0, &v, &len, &err) == WD_ERR_NOT_FOUND);
    long t0 = now_ms();
    WD_EXPECT(wd_rdzv_get(a, "absent", 150, &v, &len, &err) == WD_ERR_TIMEOUT);
    long el = now_ms() - t0;
    WD_EXPECT_MSG(el >= 140 && el < 1500, "waited %ld ms", el);
    WD_EXPECT(strstr(err.msg, "'absent'") != NULL);
    wd_rdzv_destroy(a);
    wd_rdzv_destroy(b);
    server_stop(&s);
}

struct barrier_arg {
    const struct server_thread *s;
    int n_passed;
    int delay_ms;
    enum wd_status st;
};

static void *barrier_thread(void *p)
{
    struct barrier_arg *a = p;
    struct wd_rdzv *c = NULL;
    struct wd_error err;
    if (wd_rdzv_create("127.0.0.1", wd_rdzv_server_port(a->s->srv), NULL, 3000, &c, &err) !=
        WD_OK) {
        a->st = err.status;
        return NULL;
    }
    usleep((useconds_t)a->delay_ms * 1000);
    for (int i = 0; i < 3; i++) { /* the same name three times */
        a->st = wd_rdzv_barrier(c, "b", 3, 3000, &err);
        if (a->st != WD_OK)
            break;
        a->n_passed++;
    }
    wd_rdzv_destroy(c);
    return NULL;
}

static void test_barrier(void)
{
    struct server_thread s;
    if (server_start(&s, NULL))
        return;
    struct barrier_arg args[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        args[i] = (struct barrier_arg){&s, 0, i * 40, WD_OK};
        pthread_create(&th[i], NULL, barrier_thread, &args[i]);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        WD_EXPECT_MSG(args[i].st == WD_OK && args[i].n_passed == 3, "thread %d: %d passes", i,
                      args[i].n_passed);
    }
    /* Two of three arrive: a timeout that says how many came. */
    struct wd_rdzv *c = client(&s, 2000);
    struct wd_error err = {0};
    WD_EXPECT(wd_rdzv_barrier(c, "lonely", 3, 100, &err) == WD_ERR_TIMEOUT);
    WD_EXPECT_MSG(strstr(err.msg, "1 of 3 arrived") != NULL, "%s", err.msg);
    wd_rdzv_destroy(c);
    server_stop(&s);
}

static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads until EOF or 2 s; returns the bytes read (reply headers of a dropped client). */
static size_t drain(int fd, uint8_t *buf, size_t cap)
{
    size_t n = 0;
    long deadline = now_ms() + 2000;
    while (now_ms() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t r = recv(fd, buf + n, cap - n, 0);
        if (r <= 0)
            return n;
        n += (size_t)r;
        if (n == cap)
            return n;
    }
    return (size_t)-1; /* never closed */
}

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4); /* the test runs little-endian, like the wire */
}

static void test_garbage_on_socket(void)
{
    struct server_thread s;
    if (server_start(&s, NULL))
        return;
    int port = wd_rdzv_server_port(s.srv);
    struct wd_rdzv *good = client(&s, 2000);
    struct wd_error err = {0};
    WD_EXPECT(wd_rdzv_set(good, "keep", "me", 2, &err) == WD_OK);

    uint8_t frames[5][64];
    size_t lens[5];
    memset(frames, 0, sizeof(frames));
    memcpy(frames[0], "GET / HTTP/1.0\r\n\r\n", 18); /* bad magic */
    lens[0] = 18;
    put32(frames[1], 0x5a524457u); /* bad op */
    frames[1][4] = 9;
    put32(frames[1] + 8, 1);
    lens[1] = 17;
    put32(frames[2], 0x5a524457u); /* value length over the limit */
    frames[2][4] = 1;
    put32(frames[2] + 8, 1);
    put32(frames[2] + 12, 0xffffffffu);
    lens[2] = 16;
    put32(frames[3], 0x5a524457u); /* key length 0 */
    frames[3][4] = 2;
    lens[3] = 16;
    put32(frames[4], 0x5a524457u); /* non-zero padding */
    frames[4][4] = 2;
    frames[4][6] = 1;
    put32(frames[4] + 8, 1);
    lens[4] = 17;
    for (int i = 0; i < 5; i++) {
        int fd = raw_connect(port);
        WD_EXPECT(fd >= 0);
        if (fd < 0)
            continue;
        send(fd, frames[i], lens[i], MSG_NOSIGNAL);
        uint8_t reply[64];
        size_t n = drain(fd, reply, sizeof(reply));
        WD_EXPECT_MSG(n == 16 && reply[4] == 2, "garbage %d: reply of %zu bytes", i, n);
        close(fd);
    }
    /* A frame cut short, then the client vanishes; random bytes; a client that never
     * reads its replies. */
    int fd = raw_connect(port);
    uint8_t half[20];
    memset(half, 0, sizeof(half));
    put32(half, 0x5a524457u);
    half[4] = 1;
    put32(half + 8, 4);
    put32(half + 12, 1000);
    send(fd, half, sizeof(half), MSG_NOSIGNAL);
    close(fd);
    fd = raw_connect(port);
    uint8_t noise[4096];
    uint32_t h = 12345;
    for (size_t i = 0; i < sizeof(noise); i++) {
        h = h * 1664525u + 1013904223u;
        noise[i] = (uint8_t)(h >> 24);
    }
    send(fd, noise, sizeof(noise), MSG_NOSIGNAL);
    uint8_t reply[64];
    WD_EXPECT(drain(fd, reply, sizeof(reply)) != (size_t)-1);
    close(fd);

    void *v = NULL;
    size_t len = 0;
    WD_EXPECT(wd_rdzv_get(good, "keep", 0, &v, &len, &err) == WD_OK && len == 2 &&
              memcmp(v, "me", 2) == 0);
    free(v);
    struct wd_rdzv *late = client(&s, 2000);
    WD_EXPECT(wd_rdzv_get(late, "keep", 0, &v, &len, &err) == WD_OK && len == 2);
    free(v);
    wd_rdzv_destroy(late);
    wd_rdzv_destroy(good);
    server_stop(&s);
}

/* A fake server: answers every request with `answer` (or never, when answer_len is 0). */
struct fake {
    int listen_fd, port;
    const uint8_t *answer;
    size_t answer_len;
    pthread_t th;
};

static void *fake_serve(void *p)
{
    struct fake *f = p;
    int fd = accept(f->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    uint8_t buf[256];
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 2000) == 1 && recv(fd, buf, sizeof(buf), 0) > 0 && f->answer_len)
        send(fd, f->answer, f->answer_len, MSG_NOSIGNAL);
    poll(&pfd, 1, 1500); /* hold the connection until the client gives up */
    close(fd);
    return NULL;
}

static void fake_start(struct fake *f, const uint8_t *answer, size_t len)
{
    f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa));
    socklen_t sl = sizeof(sa);
    getsockname(f->listen_fd, (struct sockaddr *)&sa, &sl);
    f->port = ntohs(sa.sin_port);
    listen(f->listen_fd, 4);
    f->answer = answer;
    f->answer_len = len;
    pthread_create(&f->th, NULL, fake_serve, f);
}

static void fake_stop(struct fake *f)
{
    pthread_join(f->th, NULL);
    close(f->listen_fd);
}

static void test_bad_server(void)
{
    static const uint8_t replies[][16] = {
        {'n', 'o', 'p', 'e'},                                         /* bad magic */
        {0x57, 0x44, 0x52, 0x5a, 7},                                  /* bad status */
        {0x57, 0x44, 0x52, 0x5a, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, /* huge value */
        {0x57, 0x44, 0x52, 0x5a, 0, 0, 0, 0, 5, 0, 0, 0},             /* value cut short */
    };
    for (int i = 0; i < 4; i++) {
        struct fake f;
        fake_start(&f, replies[i], i == 3 ? 16 : 16);
        struct wd_rdzv *c = NULL;
        struct wd_error err = {0};
        WD_EXPECT(wd_rdzv_create("127.0.0.1", f.port, NULL, 300, &c, &err) == WD_OK);
        void *v = NULL;
        size_t len;
        long t0 = now_ms();
        enum wd_status st = c ? wd_rdzv_get(c, "k", 0, &v, &len, &err) : WD_ERR_IO;
        WD_EXPECT_MSG(st == WD_ERR_FORMAT || st == WD_ERR_TIMEOUT, "reply %d: %s", i, err.msg);
        WD_EXPECT(now_ms() - t0 < 1500);
        /* The connection is marked broken: later calls fail at once. */
        if (c)
            WD_EXPECT(wd_rdzv_set(c, "k", "v", 1, &err) == WD_ERR_IO);
        wd_rdzv_destroy(c);
        fake_stop(&f);
    }
    /* Silence: the client's own timeout. */
    struct fake f;
    fake_start(&f, NULL, 0);
    struct wd_rdzv *c = NULL;
    struct wd_error err = {0};
    WD_EXPECT(wd_rdzv_create("127.0.0.1", f.port, NULL, 200, &c, &err) == WD_OK);
    int64_t x;
    long t0 = now_ms();
    WD_EXPECT(c && wd_rdzv_add(c, "k", 1, &x, &err) == WD_ERR_TIMEOUT);
    WD_EXPECT(now_ms() - t0 < 1500);
    wd_rdzv_destroy(c);
    fake_stop(&f);
    /* Nobody listening at all. */
    t0 = now_ms();
    WD_EXPECT(wd_rdzv_create("127.0.0.1", f.port, NULL, 150, &c, &err) == WD_ERR_TIMEOUT);
    WD_EXPECT(now_ms() - t0 < 1500);
}

/* Connects with token (NULL: presents none); returns the status, the client in *c_p. */
static enum wd_status connect_with(const struct server_thread *s, const char *token,
                                   struct wd_rdzv **c_p, struct wd_error *err)
{
    *c_p = NULL;
    return wd_rdzv_create("127.0.0.1", wd_rdzv_server_port(s->srv), token, 2000, c_p, err);
}

/* A server with a launch token serves only clients that present it: another token, none,
 * or a request before the hello is refused, costs only that connection, and changes
 * nothing in the store. */
static void test_token(void)
{
    struct server_thread s;
    if (server_start(&s, "job-a"))
        return;
    struct wd_error err = {0};
    struct wd_rdzv *a = NULL, *c = NULL;
    WD_EXPECT_MSG(connect_with(&s, "job-a", &a, &err) == WD_OK, "%s", err.msg);
    WD_EXPECT(a && wd_rdzv_set(a, "k", "v", 1, &err) == WD_OK);
    static const char *wrong[] = {"job-b", "", "job-a ", "job-"};
    for (int i = 0; i < 4; i++) {
        long t0 = now_ms();
        WD_EXPECT_MSG(connect_with(&s, wrong[i], &c, &err) == WD_ERR_INVALID && !c,
                      "token '%s': %s", wrong[i], err.msg);
        WD_EXPECT_MSG(strstr(err.msg, "launch token mismatch"), "%s", err.msg);
        WD_EXPECT(now_ms() - t0 < 1500);
    }
    /* No hello at all: the first request is refused and the connection closed. */
    WD_EXPECT(connect_with(&s, NULL, &c, &err) == WD_OK);
    WD_EXPECT(c && wd_rdzv_set(c, "evil", "x", 1, &err) == WD_ERR_INVALID);
    WD_EXPECT_MSG(strstr(err.msg, "no launch token presented"), "%s", err.msg);
    int64_t x;
    WD_EXPECT(c && wd_rdzv_add(c, "n", 1, &x, &err) != WD_OK);
    wd_rdzv_destroy(c);
    char long_token[WD_RDZV_MAX_TOKEN + 2];
    memset(long_token, 't', sizeof(long_token) - 1);
    long_token[sizeof(long_token) - 1] = 0;
    WD_EXPECT(connect_with(&s, long_token, &c, &err) == WD_ERR_INVALID);
    /* The admitted client and the store are untouched. */
    void *v = NULL;
    size_t len = 0;
    WD_EXPECT(a && wd_rdzv_get(a, "k", 0, &v, &len, &err) == WD_OK && len == 1);
    free(v);
    WD_EXPECT(a && wd_rdzv_get(a, "evil", 0, &v, &len, &err) == WD_ERR_NOT_FOUND);
    wd_rdzv_destroy(a);
    server_stop(&s);

    /* The empty token is a token; a server without one takes any hello. */
    if (server_start(&s, ""))
        return;
    WD_EXPECT(connect_with(&s, "", &a, &err) == WD_OK);
    WD_EXPECT(connect_with(&s, "x", &c, &err) == WD_ERR_INVALID);
    wd_rdzv_destroy(a);
    server_stop(&s);
    if (server_start(&s, NULL))
        return;
    WD_EXPECT(connect_with(&s, "anything", &a, &err) == WD_OK);
    WD_EXPECT(a && wd_rdzv_set(a, "k", "v", 1, &err) == WD_OK);
    wd_rdzv_destroy(a);
    server_stop(&s);
}

/* One frame: header, key, value. Returns its length. */
static size_t frame(uint8_t *p, int op, const char *key, const char *val)
{
    size_t kl = strlen(key), vl = strlen(val);
    memset(p, 0, 16);
    put32(p, 0x5a524457u);
    p[4] = (uint8_t)op;
    put32(p + 8, (uint32_t)kl);
    put32(p + 12, (uint32_t)vl);
    memcpy(p + 16, key, kl);
    memcpy(p + 16 + kl, val, vl);
    return 16 + kl + vl;
}

static void test_feed_token(void)
{
    struct wd_rdzv_server *srv = NULL;
    struct wd_error err = {0};
    WD_EXPECT(wd_rdzv_server_create(NULL, 0, "t0k", &srv, &err) == WD_OK);
    if (!srv)
        return;
    uint8_t in[256];
    const void *v;
    size_t len, n = frame(in, 1, "k", "v"); /* set before hello */
    WD_EXPECT(wd_rdzv_server_feed(srv, in, n) == -1);
    WD_EXPECT(wd_rdzv_server_lookup(srv, "k", &v, &len) == 0);
    n = frame(in, 4, "hello", "t0x");
    n += frame(in + n, 1, "k", "v");
    WD_EXPECT(wd_rdzv_server_feed(srv, in, n) == -1);
    WD_EXPECT(wd_rdzv_server_lookup(srv, "k", &v, &len) == 0);
    n = frame(in, 4, "hullo", "t0k"); /* well framed, meaningless: answered, kept */
    n += frame(in + n, 4, "hello", "t0k");
    n += frame(in + n, 1, "k", "v");
    WD_EXPECT(wd_rdzv_server_feed(srv, in, n) == 0);
    WD_EXPECT(wd_rdzv_server_lookup(srv, "k", &v, &len) == 1 && len == 1);
    wd_rdzv_server_destroy(srv);
}

static void test_feed(void)
{
    struct wd_rdzv_server *srv = NULL;
    struct wd_error err = {0};
    WD_EXPECT(wd_rdzv_server_create(NULL, 0, NULL, &srv, &err) == WD_OK);
    if (!srv)
        return;
    /* Two well-formed requests in one stream: set k=v, then add c += 3. */
    uint8_t in[64] = {0};
    put32(in, 0x5a524457u);
    in[4] = 1;
    put32(in + 8, 1);
    put32(in + 12, 1);
    in[16] = 'k';
    in[17] = 'v';
    put32(in + 18, 0x5a524457u);
    in[22] = 3;
    put32(in + 26, 1);
    put32(in + 30, 8);
    in[34] = 'c';
    in[35] = 3;
    WD_EXPECT(wd_rdzv_server_feed(srv, in, 43) == 0);
    const void *v;
    size_t len;
    WD_EXPECT(wd_rdzv_server_lookup(srv, "k", &v, &len) == 1 && len == 1 &&
              ((const char *)v)[0] == 'v');
    WD_EXPECT(wd_rdzv_server_lookup(srv, "c", &v, &len) == 1 && len == 8 &&
              ((const uint8_t *)v)[0] == 3);
    WD_EXPECT(wd_rdzv_server_lookup(srv, "nope", &v, &len) == 0);
    in[0] ^= 1;
    WD_EXPECT(wd_rdzv_server_feed(srv, in, 43) == -1);
    /* Random streams, some starting with a valid header, never crash. */
    uint32_t h = 99;
    uint8_t buf[2048];
    for (int it = 0; it < 2000; it++) {
        size_t n = 0;
        h = h * 1664525u + 1013904223u;
        n = h % sizeof(buf);
        for (size_t i = 0; i < n; i++) {
            h = h * 1664525u + 1013904223u;
            buf[i] = (uint8_t)(h >> 24);
        }
        if (it % 2 && n >= 16) {
            put32(buf, 0x5a524457u);
            buf[4] = (uint8_t)(1 + it % 3);
            buf[5] = buf[6] = buf[7] = 0;
            put32(buf + 8, 1 + (uint32_t)(it % 40));
            put32(buf + 12, (uint32_t)(it % 300));
        }
        wd_rdzv_server_feed(srv, buf, n);
    }
    wd_rdzv_server_destroy(srv);
}

static void test_parse_addr(void)
{
    char host[64];
    int port = 0;
    struct wd_error err;
    WD_EXPECT(wd_rdzv_parse_addr("127.0.0.1:5000", host, sizeof(host), &port, &err) == WD_OK);
    WD_EXPECT(strcmp(host, "127.0.0.1") == 0 && port == 5000);
    WD_EXPECT(wd_rdzv_parse_addr("[::1]:65535", host, sizeof(host), &port, &err) == WD_OK);
    WD_EXPECT(strcmp(host, "::1") == 0 && port == 65535);
    WD_EXPECT(wd_rdzv_parse_addr("node-3.cluster:29500", host, sizeof(host), &port, &err) == WD_OK);
    WD_EXPECT(strcmp(host, "node-3.cluster") == 0 && port == 29500);
    static const char *bad[] = {"",           "host",    "host:",  ":80",     "host:0",
                                "host:65536", "host:8x", "::1:80", "[::1]80", "[]:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        WD_EXPECT_MSG(wd_rdzv_parse_addr(bad[i], host, sizeof(host), &port, &err) == WD_ERR_INVALID,
                      "'%s' accepted", bad[i]);
    WD_EXPECT(wd_rdzv_parse_addr("averyveryveryverylonghostname:1", host, 8, &port, &err) ==
              WD_ERR_INVALID);
}

int main(void)
{
    WD_RUN(test_store);
    WD_RUN(test_barrier);
    WD_RUN(test_garbage_on_socket);
    WD_RUN(test_bad_server);
    WD_RUN(test_token);
    WD_RUN(test_feed);
    WD_RUN(test_feed_token);
    WD_RUN(test_parse_addr);
    return wd_test_finish();
}

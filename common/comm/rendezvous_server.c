/*
 * Rendezvous server: an open-addressing hash table (FNV-1a, linear probing) behind a
 * single-threaded poll() loop, for the launcher of node 0 to drive. A request whose header
 * does not parse gets one "bad request" reply and its connection is closed: the framing
 * is lost, so nothing after it can be trusted. A well-framed request that makes no sense
 * (add on a non-counter) gets "bad request" and the connection stays. The server never
 * holds a request (clients re-ask for a missing key with backoff), so it keeps no
 * per-request timers and a vanished client costs nothing. Limits bound what a misbehaving
 * client can make it hold: keys, total bytes, connections, unread replies. With a launch
 * token, a connection is served only after its hello presented it; anything else first,
 * or another token, is refused and the connection closed.
 */
#include "common/comm/rendezvous.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/comm/rendezvous_wire.h"
#include "common/util/le.h"
#include "common/util/log.h"

#define RDZV_MAX_CONNS 8192
#define RDZV_MAX_KEYS (1u << 20)
#define RDZV_MAX_BYTES ((size_t)256 << 20)
#define RDZV_MAX_OUT ((size_t)8 << 20) /* a client that never reads is dropped */

/* ---------------------------------------------------------------- store */

struct entry {
    uint8_t *key; /* NULL = empty slot */
    uint32_t key_len;
    uint32_t val_len;
    uint8_t *val;
};

struct store {
    struct entry *slots;
    size_t cap, n, bytes;
};

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* The slot holding key, or the empty slot where it would go. cap must be > n. */
static struct entry *store_slot(const struct store *s, const uint8_t *key, uint32_t key_len)
{
    size_t i = (size_t)hash_bytes(key, key_len) & (s->cap - 1);
    for (;;) {
        struct entry *e = &s->slots[i];
        if (!e->key || (e->key_len == key_len && memcmp(e->key, key, key_len) == 0))
            return e;
        i = (i + 1) & (s->cap - 1);
    }
}

static const struct entry *store_find(const struct store *s, const uint8_t *key, uint32_t kl)
{
    if (s->cap == 0)
        return NULL;
    const struct entry *e = store_slot(s, key, kl);
    return e->key ? e : NULL;
}

static int store_grow(struct store *s)
{
    size_t cap = s->cap ? s->cap * 2 : 64;
    struct entry *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    struct store ns = {slots, cap, s->n, s->bytes};
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i].key)
            *store_slot(&ns, s->slots[i].key, s->slots[i].key_len) = s->slots[i];
    free(s->slots);
    *s = ns;
    return 0;
}

/* Stores a copy of (key, val): WD_RDZV_REPLY_OK or WD_RDZV_REPLY_FULL. */
static int store_put(struct store *s, const uint8_t *key, uint32_t kl, const uint8_t *val,
                     uint32_t vl)
{
    if ((s->n + 1) * 10 > s->cap * 7 && store_grow(s) != 0)
        return WD_RDZV_REPLY_FULL;
    struct entry *e = store_slot(s, key, kl);
    size_t old = e->key ? e->val_len : 0;
    if (s->bytes - old + vl + (e->key ? 0 : kl) > RDZV_MAX_BYTES ||
        (!e->key && s->n >= RDZV_MAX_KEYS))
        return WD_RDZV_REPLY_FULL;
    uint8_t *v = malloc(vl ? vl : 1);
    if (!v)
        return WD_RDZV_REPLY_FULL;
    if (vl)
        memcpy(v, val, vl);
    if (!e->key) {
        uint8_t *k = malloc(kl);
        if (!k) {
            free(v);
            return WD_RDZV_REPLY_FULL;
        }
        memcpy(k, key, kl);
        e->key = k;
        e->key_len = kl;
        s->n++;
        s->bytes += kl;
    }
    free(e->val);
    e->val = v;
    s->bytes = s->bytes - old + vl;
    e->val_len = vl;
    return WD_RDZV_REPLY_OK;
}

static void store_free(struct store *s)
{
    for (size_t i = 0; i < s->cap; i++) {
        free(s->slots[i].key);
        free(s->slots[i].val);
    }
    free(s->slots);
    memset(s, 0, sizeof(*s));
}

/* ---------------------------------------------------------------- server */

struct conn {
    int fd;
    int is_closing;  /* malformed input or refused: flush the reply, then close */
    int is_admitted; /* presented the server's token (or the server has none) */
    int is_denied;   /* closing because of the token */
    uint8_t *in;
    size_t in_len, in_cap;
    uint8_t *out;
    size_t out_len, out_cap;
};

struct wd_rdzv_server {
    int listen_fd;
    int port;
    int has_token;
    char token[WD_RDZV_MAX_TOKEN + 1];
    struct store store;
    struct conn *conns;
    int n_conns, cap_conns;
    struct pollfd *pfds;
    int cap_pfds;
};

static int conn_reply(struct conn *c, int status, const uint8_t *val, uint32_t vl)
{
    size_t need = c->out_len + WD_RDZV_HDR + vl;
    if (need > RDZV_MAX_OUT)
        return -1;
    if (need > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 256;
        while (cap < need)
            cap *= 2;
        uint8_t *p = realloc(c->out, cap);
        if (!p)
            return -1;
        c->out = p;
        c->out_cap = cap;
    }
    uint8_t *h = c->out + c->out_len;
    memset(h, 0, WD_RDZV_HDR);
    wd_le_put32(h, WD_RDZV_MAGIC);
    h[4] = (uint8_t)status;
    wd_le_put32(h + 8, vl);
    if (vl)
        memcpy(h + WD_RDZV_HDR, val, vl);
    c->out_len = need;
    return 0;
}

/* hello: admits the connection when it presents the server's token. Returns 0, or -1 when
 * the connection must close (token refused, reply not queued). */
static int handle_hello(const struct wd_rdzv_server *srv, struct conn *c, const uint8_t *key,
                        uint32_t kl, const uint8_t *val, uint32_t vl)
{
    size_t hl = strlen(WD_RDZV_HELLO_KEY);
    if (kl != hl || memcmp(key, WD_RDZV_HELLO_KEY, hl) != 0)
        return conn_reply(c, WD_RDZV_REPLY_BAD, NULL, 0);
    if (srv->has_token && (vl != strlen(srv->token) || memcmp(val, srv->token, vl) != 0)) {
        c->is_denied = 1;
        conn_reply(c, WD_RDZV_REPLY_DENIED, NULL, 0);
        return -1;
    }
    c->is_admitted = 1;
    return conn_reply(c, WD_RDZV_REPLY_OK, NULL, 0);
}

/* One well-framed request: returns 0, or -1 when the connection must close (refused, or
 * the reply cannot be queued). */
static int handle_request(struct wd_rdzv_server *srv, struct conn *c, int op, const uint8_t *key,
                          uint32_t kl, const uint8_t *val, uint32_t vl)
{
    if (op == WD_RDZV_OP_HELLO)
        return handle_hello(srv, c, key, kl, val, vl);
    if (srv->has_token && !c->is_admitted) {
        c->is_denied = 1;
        conn_reply(c, WD_RDZV_REPLY_DENIED, NULL, 0);
        return -1;
    }
    struct store *st = &srv->store;
    const struct entry *e = store_find(st, key, kl);
    if (op == WD_RDZV_OP_SET)
        return conn_reply(c, store_put(st, key, kl, val, vl), NULL, 0);
    if (op == WD_RDZV_OP_GET)
        return e ? conn_reply(c, WD_RDZV_REPLY_OK, e->val, e->val_len)
                 : conn_reply(c, WD_RDZV_REPLY_NOT_FOUND, NULL, 0);
    /* WD_RDZV_OP_ADD: an 8-byte delta on an 8-byte counter; wraps instead of overflowing. */
    if (vl != 8 || (e && e->val_len != 8))
        return conn_reply(c, WD_RDZV_REPLY_BAD, NULL, 0);
    uint64_t sum = wd_le_get64(val) + (e ? wd_le_get64(e->val) : 0);
    uint8_t buf[8];
    wd_le_put64(buf, sum);
    int status = store_put(st, key, kl, buf, 8);
    return conn_reply(c, status, status == WD_RDZV_REPLY_OK ? buf : NULL,
                      status == WD_RDZV_REPLY_OK ? 8 : 0);
}

/* Answers every complete request at the front of c->in. Returns -1 when the connection
 * must close (malformed header, reply queue full), else 0. */
static int conn_process(struct wd_rdzv_server *srv, struct conn *c)
{
    size_t off = 0;
    int rc = 0;
    while (c->in_len - off >= WD_RDZV_HDR) {
        const uint8_t *h = c->in + off;
        uint32_t kl = wd_le_get32(h + 8), vl = wd_le_get32(h + 12);
        int op = h[4];
        if (wd_le_get32(h) != WD_RDZV_MAGIC || op < WD_RDZV_OP_SET || op > WD_RDZV_OP_HELLO ||
            (h[5] | h[6] | h[7]) || kl == 0 || kl > WD_RDZV_MAX_KEY || vl > WD_RDZV_MAX_VALUE) {
            conn_reply(c, WD_RDZV_REPLY_BAD, NULL, 0);
            off = c->in_len;
            rc = -1;
            break;
        }
        size_t frame = (size_t)WD_RDZV_HDR + kl + vl;
        if (c->in_len - off < frame)
            break;
        if (handle_request(srv, c, op, h + WD_RDZV_HDR, kl, h + WD_RDZV_HDR + kl, vl) != 0) {
            off = c->in_len;
            rc = -1;
            break;
        }
        off += frame;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    return rc;
}

/* The buffer holds less than one frame after each conn_process, plus one read's worth. */
static int conn_append(struct conn *c, const uint8_t *p, size_t n)
{
    if (c->in_len + n > 2 * (size_t)WD_RDZV_MAX_FRAME)
        return -1;
    if (c->in_len + n > c->in_cap) {
        size_t cap = c->in_cap ? c->in_cap : 4096;
        while (cap < c->in_len + n)
            cap *= 2;
        uint8_t *q = realloc(c->in, cap);
        if (!q)
            return -1;
        c->in = q;
        c->in_cap = cap;
    }
    memcpy(c->in + c->in_len, p, n);
    c->in_len += n;
    return 0;
}

static void conn_free(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->in);
    free(c->out);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

int wd_rdzv_server_feed(struct wd_rdzv_server *srv, const uint8_t *in, size_t len)
{
    struct conn c = {.fd = -1};
    int rc = 0;
    /* Arrives in pieces the way a socket delivers it; a frame larger than the limit is as
     * malformed as a bad header. */
    for (size_t off = 0; off < len && rc == 0;) {
        size_t n = len - off < 4096 ? len - off : 4096;
        if (conn_append(&c, in + off, n) != 0)
            rc = -1;
        else
            rc = conn_process(srv, &c);
        c.out_len = 0;
        off += n;
    }
    conn_free(&c);
    return rc;
}

enum wd_status wd_rdzv_server_create(const char *host, int port, const char *token,
                                     struct wd_rdzv_server **srv_p, struct wd_error *err)
{
    if (token && strlen(token) > WD_RDZV_MAX_TOKEN)
        return wd_error_set(err, WD_ERR_INVALID, "rendezvous: launch token longer than %d bytes",
                            WD_RDZV_MAX_TOKEN);
    struct wd_rdzv_server *s = calloc(1, sizeof(*s));
    if (!s)
        return wd_error_set(err, WD_ERR_NOMEM, "rendezvous server: out of memory");
    s->listen_fd = -1;
    s->has_token = token != NULL;
    if (token)
        snprintf(s->token, sizeof(s->token), "%s", token);
    if (!host) {
        *srv_p = s;
        return WD_OK;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port_s[16];
    snprintf(port_s, sizeof(port_s), "%d", port);
    int gai = getaddrinfo(host, port_s, &hints, &res);
    if (gai != 0) {
        free(s);
        return wd_error_set(err, WD_ERR_IO, "rendezvous server: cannot resolve '%s': %s", host,
                            gai_strerror(gai));
    }
    int saved = 0;
    for (struct addrinfo *ai = res; ai && s->listen_fd < 0; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 512) != 0) {
            saved = errno;
            close(fd);
            continue;
        }
        struct sockaddr_storage sa;
        socklen_t sl = sizeof(sa);
        getsockname(fd, (struct sockaddr *)&sa, &sl);
        s->port = sa.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&sa)->sin6_port)
                                           : ntohs(((struct sockaddr_in *)&sa)->sin_port);
        s->listen_fd = fd;
    }
    freeaddrinfo(res);
    if (s->listen_fd < 0) {
        free(s);
        return wd_error_set(err, WD_ERR_IO, "rendezvous server: cannot listen on %s:%d: %s", host,
                            port, strerror(saved));
    }
    *srv_p = s;
    return WD_OK;
}

void wd_rdzv_server_destroy(struct wd_rdzv_server *srv)
{
    if (!srv)
        return;
    for (int i = 0; i < srv->n_conns; i++)
        conn_free(&srv->conns[i]);
    if (srv->listen_fd >= 0)
        close(srv->listen_fd);
    store_free(&srv->store);
    free(srv->conns);
    free(srv->pfds);
    free(srv);
}

int wd_rdzv_server_port(const struct wd_rdzv_server *srv)
{
    return srv->port;
}

enum wd_status wd_rdzv_server_set(struct wd_rdzv_server *srv, const char *key, const void *val,
                                  size_t len, struct wd_error *err)
{
    size_t kl = strlen(key);
    if (kl == 0 || kl > WD_RDZV_MAX_KEY || len > WD_RDZV_MAX_VALUE)
        return wd_error_set(err, WD_ERR_INVALID, "rendezvous: key or value too long");
    if (store_put(&srv->store, (const uint8_t *)key, (uint32_t)kl, val, (uint32_t)len) !=
        WD_RDZV_REPLY_OK)
        return wd_error_set(err, WD_ERR_NOMEM, "rendezvous store full");
    return WD_OK;
}

int wd_rdzv_server_lookup(const struct wd_rdzv_server *srv, const char *key, const void **val_p,
                          size_t *len_p)
{
    size_t kl = strlen(key);
    if (kl == 0 || kl > WD_RDZV_MAX_KEY)
        return 0;
    const struct entry *e = store_find(&srv->store, (const uint8_t *)key, (uint32_t)kl);
    if (!e)
        return 0;
    *val_p = e->val;
    *len_p = e->val_len;
    return 1;
}

/* Reads what the socket has; returns -1 on EOF or error (after processing what came). */
static int conn_read(struct wd_rdzv_server *srv, struct conn *c)
{
    uint8_t buf[16384];
    for (int spins = 0; spins < 64; spins++) {
        ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n <= 0)
            return -1;
        if (conn_append(c, buf, (size_t)n) != 0 || conn_process(srv, c) != 0) {
            c->is_closing = 1;
            return 0;
        }
    }
    return 0;
}

static int conn_write(struct conn *c)
{
    size_t off = 0;
    while (off < c->out_len) {
        ssize_t n = send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    memmove(c->out, c->out + off, c->out_len - off);
    c->out_len -= off;
    return 0;
}

static void server_accept(struct wd_rdzv_server *s)
{
    for (int k = 0; k < 64; k++) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (s->n_conns >= RDZV_MAX_CONNS) {
            wd_log(WD_LOG_WARN, "rdzv", "too many connections (%d): refusing one", s->n_conns);
            close(fd);
            continue;
        }
        if (s->n_conns == s->cap_conns) {
            int cap = s->cap_conns ? s->cap_conns * 2 : 16;
            struct conn *p = realloc(s->conns, (size_t)cap * sizeof(*p));
            if (!p) {
                close(fd);
                return;
            }
            s->conns = p;
            s->cap_conns = cap;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        s->conns[s->n_conns++] = (struct conn){.fd = fd};
    }
}

enum wd_status wd_rdzv_server_poll(struct wd_rdzv_server *srv, int timeout_ms, struct wd_error *err)
{
    if (srv->listen_fd < 0)
        return WD_OK;
    int n = srv->n_conns + 1;
    if (n > srv->cap_pfds) {
        struct pollfd *p = realloc(srv->pfds, (size_t)n * 2 * sizeof(*p));
        if (!p)
            return wd_error_set(err, WD_ERR_NOMEM, "rendezvous server: out of memory");
        srv->pfds = p;
        srv->cap_pfds = n * 2;
    }
    srv->pfds[0] = (struct pollfd){.fd = srv->listen_fd, .events = POLLIN};
    for (int i = 0; i < srv->n_conns; i++) {
        struct conn *c = &srv->conns[i];
        srv->pfds[i + 1] = (struct pollfd){.fd = c->fd, .events = c->is_closing ? 0 : POLLIN};
        if (c->out_len)
            srv->pfds[i + 1].events |= POLLOUT;
    }
    int ready = poll(srv->pfds, (nfds_t)n, timeout_ms);
    if (ready < 0) {
        if (errno == EINTR)
            return WD_OK;
        return wd_error_set(err, WD_ERR_IO, "rendezvous server: poll: %s", strerror(errno));
    }
    int n_polled = srv->n_conns;
    for (int i = 0; i < n_polled; i++) {
        struct conn *c = &srv->conns[i];
        short re = srv->pfds[i + 1].revents;
        int is_dead = 0;
        if ((re & (POLLIN | POLLHUP | POLLERR)) && !c->is_closing)
            is_dead = conn_read(srv, c) != 0;
        if (!is_dead && c->out_len)
            is_dead = conn_write(c) != 0;
        if (!is_dead && c->is_closing && c->out_len == 0) {
            if (c->is_denied)
                wd_log(WD_LOG_WARN, "rdzv",
                       "refused a client without this job's launch token (another job's "
                       "launcher pointed at this address?)");
            else
                wd_log(WD_LOG_WARN, "rdzv", "dropped a client that sent a malformed request");
            is_dead = 1;
        }
        if (is_dead)
            conn_free(c);
    }
    int k = 0; /* compact away the closed connections */
    for (int i = 0; i < srv->n_conns; i++)
        if (srv->conns[i].fd >= 0)
            srv->conns[k++] = srv->conns[i];
    srv->n_conns = k;
    if (srv->pfds[0].revents & POLLIN)
        server_accept(srv);
    return WD_OK;
}

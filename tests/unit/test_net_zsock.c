/*
 * Control-plane sockets (common/net/zsock.h) on loopback, with a port the kernel picks:
 * messages both ways between a DEALER and a ROUTER, the ROUTER seeing the DEALER's
 * instance id, receive timeouts, a send to an unknown peer, garbage frames (answered with
 * an Error, except frames that are themselves Errors), another protocol version, a
 * multipart message, an oversized frame dropped by libzmq, and a restarted worker taking
 * over its routing id (ROUTER_HANDOVER).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "common/net/zsock.h"
#include "tests/unit/wd_test.h"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct pair {
    void *ctx, *router, *dealer;
    char endpoint[256];
};

static int pair_open(struct pair *p, const char *identity)
{
    struct wd_error err = {0};
    memset(p, 0, sizeof(*p));
    p->ctx = zmq_ctx_new();
    enum wd_status st = wd_zsock_router_bind(p->ctx, "tcp://127.0.0.1:*", &p->router, p->endpoint,
                                             sizeof(p->endpoint), &err);
    WD_EXPECT_MSG(st == WD_OK, "bind: %s", err.msg);
    if (st != WD_OK)
        return -1;
    WD_EXPECT_MSG(strncmp(p->endpoint, "tcp://127.0.0.1:", 16) == 0 && atoi(p->endpoint + 16) > 0,
                  "endpoint %s", p->endpoint);
    st = wd_zsock_dealer_connect(p->ctx, p->endpoint, identity, &p->dealer, &err);
    WD_EXPECT_MSG(st == WD_OK, "connect: %s", err.msg);
    return st == WD_OK ? 0 : -1;
}

static void pair_close(struct pair *p)
{
    wd_zsock_close(p->dealer);
    wd_zsock_close(p->router);
    zmq_ctx_term(p->ctx);
}

/* A DEALER send fails (WD_ERR_PEER) until its connection exists: retry for up to 5 s. */
static enum wd_status send_retry(void *dealer, const struct wd_msg *m, struct wd_error *err)
{
    enum wd_status st = WD_ERR_PEER;
    for (long t0 = now_ms(); now_ms() - t0 < 5000; sleep_ms(10))
        if ((st = wd_zsock_send(dealer, m, err)) != WD_ERR_PEER)
            break;
    return st;
}

/* Raw bytes from the DEALER, once it is connected. */
static int raw_send(void *dealer, const void *buf, size_t len)
{
    for (long t0 = now_ms(); now_ms() - t0 < 5000; sleep_ms(10))
        if (zmq_send(dealer, buf, len, ZMQ_DONTWAIT) == (int)len)
            return 0;
    WD_EXPECT_MSG(0, "raw send of %zu bytes failed: %s", len, zmq_strerror(zmq_errno()));
    return -1;
}

static void make_register(struct wd_msg *m, struct wd_msg_dp_capacity *cap)
{
    wd_msg_init(m, WD_MSG_REGISTER);
    struct wd_msg_register *r = &m->reg;
    r->role = WD_MSG_ROLE_DECODE;
    strcpy(r->instance_id, "worker-a");
    r->n_dp_ranks = 1, r->dp = cap;
    r->context_len = 4096;
    strcpy(r->fp.model, "tiny-qwen3-moe");
    strcpy(r->fp.weight_dtype, "bf16");
    strcpy(r->fp.kv_dtype, "bf16");
    r->fp.page_size = 16;
    r->fp.kv = (struct wd_msg_kv_layout){WD_MSG_KV_GQA, 2, 2, 16, 16};
    struct wd_msg_parallel *p = &r->fp.parallel;
    p->tp = p->dp = p->ep = p->attn_tp = p->attn_dp = p->moe_ep = p->moe_tp = p->nnodes = 1;
    strcpy(p->a2a_backend, "none");
    strcpy(p->deepep_mode, "auto");
}

/* A pair whose DEALER ("worker-a") has registered: *got is the Register the ROUTER
 * received (the caller frees it), *peer its sender. */
static int pair_open_registered(struct pair *p, struct wd_zsock_peer *peer, struct wd_msg *got)
{
    struct wd_error err = {0};
    struct wd_msg m;
    struct wd_msg_dp_capacity cap = {64, 8};
    if (pair_open(p, "worker-a"))
        return -1;
    make_register(&m, &cap);
    WD_EXPECT_MSG(send_retry(p->dealer, &m, &err) == WD_OK, "send: %s", err.msg);
    enum wd_status st = wd_zsock_recv_from(p->router, 5000, peer, got, &err);
    WD_EXPECT_MSG(st == WD_OK, "router recv: %s", err.msg);
    return 0;
}

static void test_both_ways(void)
{
    struct pair p;
    struct wd_error err = {0};
    struct wd_msg m, got;
    struct wd_zsock_peer peer;
    if (pair_open_registered(&p, &peer, &got))
        return;
    char name[64];
    WD_EXPECT(peer.len == 8 && memcmp(peer.id, "worker-a", 8) == 0);
    WD_EXPECT(strcmp(wd_zsock_peer_str(&peer, name, sizeof(name)), "worker-a") == 0);
    WD_EXPECT(got.kind == WD_MSG_REGISTER && got.reg.dp[0].n_pages == 64);
    WD_EXPECT(strcmp(got.reg.instance_id, "worker-a") == 0);
    wd_msg_free(&got);

    wd_msg_init(&m, WD_MSG_REGISTER_ACK);
    m.reg_ack = (struct wd_msg_register_ack){7, 1000, 5000};
    WD_EXPECT_MSG(wd_zsock_send_to(p.router, &peer, &m, &err) == WD_OK, "%s", err.msg);
    enum wd_status st = wd_zsock_recv(p.dealer, 5000, &got, &err);
    WD_EXPECT_MSG(st == WD_OK, "dealer recv: %s", err.msg);
    WD_EXPECT(got.kind == WD_MSG_REGISTER_ACK && got.reg_ack.worker_id == 7);
    wd_msg_free(&got);

    /* A request down, its tokens up. */
    int32_t ids[3] = {1, 2, 3};
    wd_msg_init(&m, WD_MSG_GENERATE);
    m.generate.request_id = 42, m.generate.n_input_ids = 3, m.generate.input_ids = ids;
    m.generate.max_new_tokens = 4;
    WD_EXPECT(wd_zsock_send_to(p.router, &peer, &m, &err) == WD_OK);
    WD_EXPECT(wd_zsock_recv(p.dealer, 5000, &got, &err) == WD_OK);
    WD_EXPECT(got.kind == WD_MSG_GENERATE && got.generate.request_id == 42);
    WD_EXPECT(got.generate.n_input_ids == 3 && got.generate.input_ids[2] == 3);
    wd_msg_free(&got);
    wd_msg_init(&m, WD_MSG_TOKEN_CHUNK);
    m.chunk.request_id = 42, m.chunk.n_tokens = 3, m.chunk.token_ids = ids;
    m.chunk.finish = WD_MSG_FINISH_LENGTH;
    WD_EXPECT(wd_zsock_send(p.dealer, &m, &err) == WD_OK);
    WD_EXPECT(wd_zsock_recv_from(p.router, 5000, &peer, &got, &err) == WD_OK);
    WD_EXPECT(got.kind == WD_MSG_TOKEN_CHUNK && got.chunk.finish == WD_MSG_FINISH_LENGTH);
    wd_msg_free(&got);

    /* An invalid message is refused before it leaves. */
    m.chunk.request_id = 0;
    WD_EXPECT(wd_zsock_send(p.dealer, &m, &err) == WD_ERR_INVALID);
    pair_close(&p);
}

static void test_timeouts_and_peers(void)
{
    struct pair p;
    struct wd_error err = {0};
    struct wd_msg got;
    struct wd_zsock_peer peer;
    if (pair_open(&p, "worker-b"))
        return;
    long t0 = now_ms();
    WD_EXPECT(wd_zsock_recv_from(p.router, 0, &peer, &got, &err) == WD_ERR_TIMEOUT);
    WD_EXPECT(wd_zsock_recv(p.dealer, 100, &got, &err) == WD_ERR_TIMEOUT);
    long dt = now_ms() - t0;
    WD_EXPECT_MSG(dt >= 90 && dt < 2000, "waited %ld ms", dt);
    WD_EXPECT(got.kind == WD_MSG_NONE);

    struct wd_msg m;
    wd_msg_init(&m, WD_MSG_ABORT);
    m.abort.request_id = 3;
    struct wd_zsock_peer nobody = {6, "nobody"};
    WD_EXPECT(wd_zsock_send_to(p.router, &nobody, &m, &err) == WD_ERR_PEER);
    WD_EXPECT_MSG(strstr(err.msg, "nobody is not connected") != NULL, "%s", err.msg);

    struct wd_zsock_peer raw = {3, {0x00, 0x7f, 0xab}};
    char name[16];
    WD_EXPECT(strcmp(wd_zsock_peer_str(&raw, name, sizeof(name)), "0x007fab") == 0);
    WD_EXPECT(strcmp(wd_zsock_peer_str(&raw, name, 5), "0x00") == 0);

    void *s = NULL;
    WD_EXPECT(wd_zsock_dealer_connect(p.ctx, p.endpoint, "has space", &s, &err) == WD_ERR_INVALID);
    WD_EXPECT(wd_zsock_dealer_connect(p.ctx, p.endpoint, "", &s, &err) == WD_ERR_INVALID);
    WD_EXPECT(wd_zsock_router_bind(p.ctx, "tcp://256.1.1.1:1", &s, NULL, 0, &err) == WD_ERR_IO);
    WD_EXPECT_MSG(strstr(err.msg, "cannot bind tcp://256.1.1.1:1") != NULL, "%s", err.msg);
    WD_EXPECT(s == NULL);
    pair_close(&p);
}

/* The router refuses a frame and the dealer receives the Error it sent back. */
static void expect_refusal(struct pair *p, const void *buf, size_t len, enum wd_status want,
                           const char *want_msg, int line)
{
    struct wd_error err = {0};
    struct wd_msg got;
    struct wd_zsock_peer peer = {0};
    if (raw_send(p->dealer, buf, len))
        return;
    enum wd_status st = wd_zsock_recv_from(p->router, 5000, &peer, &got, &err);
    if (st != want || !strstr(err.msg, want_msg) || got.kind != WD_MSG_NONE)
        wd_test_fail(__FILE__, line, "router: expected %s \"%s\", got %s: %s", wd_status_str(want),
                     want_msg, wd_status_str(st), err.msg);
    if (peer.len != 8 || memcmp(peer.id, "worker-c", 8) != 0)
        wd_test_fail(__FILE__, line, "refused frame's peer not reported");
    st = wd_zsock_recv(p->dealer, 5000, &got, &err);
    if (st != WD_OK || got.kind != WD_MSG_ERROR || got.error.code != want ||
        got.error.request_id != 0 || !strstr(got.error.message, want_msg))
        wd_test_fail(__FILE__, line, "dealer: no Error reply (%s: %s)", wd_status_str(st),
                     st == WD_OK ? got.error.message : err.msg);
    wd_msg_free(&got);
    wd_test_checks++;
}

static void test_garbage(void)
{
    struct pair p;
    struct wd_error err = {0};
    struct wd_msg got;
    struct wd_zsock_peer peer;
    if (pair_open(&p, "worker-c"))
        return;
    expect_refusal(&p, "garbage!", 8, WD_ERR_FORMAT, "is not a wideep frame", __LINE__);
    expect_refusal(&p, "", 0, WD_ERR_FORMAT, "frame has no protocol_version", __LINE__);
    const uint8_t v2[] = {0x08, 0x02, 0x4a, 0x02, 0x08, 0x01}; /* version 2, Abort{1} */
    expect_refusal(&p, v2, sizeof(v2), WD_ERR_UNSUPPORTED,
                   "peer speaks protocol version 2, this build speaks 1", __LINE__);
    const uint8_t no_id[] = {0x08, 0x01, 0x4a, 0x00}; /* Abort without its request id */
    expect_refusal(&p, no_id, sizeof(no_id), WD_ERR_FORMAT, "abort.request_id missing", __LINE__);

    /* Two parts from a DEALER: refused as a whole. */
    const uint8_t abort1[] = {0x08, 0x01, 0x4a, 0x02, 0x08, 0x01};
    WD_EXPECT(zmq_send(p.dealer, abort1, sizeof(abort1), ZMQ_SNDMORE) == sizeof(abort1));
    WD_EXPECT(zmq_send(p.dealer, abort1, sizeof(abort1), 0) == sizeof(abort1));
    WD_EXPECT(wd_zsock_recv_from(p.router, 5000, &peer, &got, &err) == WD_ERR_FORMAT);
    WD_EXPECT_MSG(strstr(err.msg, "a message of 2 parts") != NULL, "%s", err.msg);
    WD_EXPECT(wd_zsock_recv(p.dealer, 5000, &got, &err) == WD_OK && got.kind == WD_MSG_ERROR);
    wd_msg_free(&got);

    /* A broken Error is dropped without a reply: Errors are never answered. */
    const uint8_t bad_error[] = {0x08, 0x01, 0x52, 0x02, 0x10, 0x00}; /* Error{code 0} */
    WD_EXPECT(raw_send(p.dealer, bad_error, sizeof(bad_error)) == 0);
    WD_EXPECT(wd_zsock_recv_from(p.router, 5000, &peer, &got, &err) == WD_ERR_FORMAT);
    WD_EXPECT_MSG(strstr(err.msg, "error.code 0") != NULL, "%s", err.msg);
    WD_EXPECT(wd_zsock_recv(p.dealer, 300, &got, &err) == WD_ERR_TIMEOUT);

    /* The same rules on the DEALER side: garbage from the router is answered. */
    WD_EXPECT(zmq_send(p.router, "worker-c", 8, ZMQ_SNDMORE) == 8);
    WD_EXPECT(zmq_send(p.router, "\xff\xff", 2, 0) == 2);
    WD_EXPECT(wd_zsock_recv(p.dealer, 5000, &got, &err) == WD_ERR_FORMAT);
    WD_EXPECT(wd_zsock_recv_from(p.router, 5000, &peer, &got, &err) == WD_OK);
    WD_EXPECT(got.kind == WD_MSG_ERROR && got.error.code == WD_ERR_FORMAT);
    wd_msg_free(&got);

    /* Still serving after all that. */
    struct wd_msg m;
    wd_msg_init(&m, WD_MSG_DRAIN);
    strcpy(m.drain.instance_id, "worker-c");
    WD_EXPECT(wd_zsock_send(p.dealer, &m, &err) == WD_OK);
    WD_EXPECT(wd_zsock_recv_from(p.router, 5000, &peer, &got, &err) == WD_OK);
    WD_EXPECT(got.kind == WD_MSG_DRAIN && strcmp(got.drain.instance_id, "worker-c") == 0);
    wd_msg_free(&got);
    pair_close(&p);
}

/* libzmq drops a frame over WD_MSG_MAX_FRAME (ZMQ_MAXMSGSIZE disconnects the sender, which
 * reconnects); later messages get through again. */
static void test_oversized(void)
{
    struct pair p;
    struct wd_error err = {0};
    struct wd_msg m, got;
    struct wd_zsock_peer peer;
    if (pair_open(&p, "worker-d"))
        return;
    size_t n = WD_MSG_MAX_FRAME + 1;
    uint8_t *big = calloc(n, 1);
    big[0] = 0x08, big[1] = 0x01; /* would decode as far as the version */
    WD_EXPECT(raw_send(p.dealer, big, n) == 0);
    free(big);
    WD_EXPECT(wd_zsock_recv_from(p.router, 500, &peer, &got, &err) == WD_ERR_TIMEOUT);

    wd_msg_init(&m, WD_MSG_ABORT);
    m.abort.request_id = 11;
    enum wd_status st = WD_ERR_TIMEOUT;
    for (long t0 = now_ms(); st == WD_ERR_TIMEOUT && now_ms() - t0 < 10000;) {
        wd_zsock_send(p.dealer, &m, &err); /* may fail while reconnecting */
        st = wd_zsock_recv_from(p.router, 100, &peer, &got, &err);
    }
    WD_EXPECT_MSG(st == WD_OK, "no message after the oversized one: %s", err.msg);
    WD_EXPECT(got.kind == WD_MSG_ABORT && got.abort.request_id == 11);
    wd_msg_free(&got);
    pair_close(&p);
}

/* A worker restarted with the same instance id takes over its routing id at once. */
static void test_handover(void)
{
    struct pair p;
    struct wd_error err = {0};
    struct wd_msg m, got;
    struct wd_zsock_peer peer;
    struct wd_msg_dp_capacity cap = {64, 8};
    if (pair_open_registered(&p, &peer, &got))
        return;
    wd_msg_free(&got);

    make_register(&m, &cap);
    void *restarted = NULL;
    WD_EXPECT(wd_zsock_dealer_connect(p.ctx, p.endpoint, "worker-a", &restarted, &err) == WD_OK);
    WD_EXPECT(send_retry(restarted, &m, &err) == WD_OK);
    WD_EXPECT(wd_zsock_recv_from(p.router, 5000, &peer, &got, &err) == WD_OK);
    WD_EXPECT(got.kind == WD_MSG_REGISTER && peer.len == 8);
    wd_msg_free(&got);
    wd_msg_init(&m, WD_MSG_REGISTER_ACK);
    m.reg_ack = (struct wd_msg_register_ack){2, 1000, 5000};
    WD_EXPECT(wd_zsock_send_to(p.router, &peer, &m, &err) == WD_OK);
    WD_EXPECT_MSG(wd_zsock_recv(restarted, 5000, &got, &err) == WD_OK, "%s", err.msg);
    WD_EXPECT(got.kind == WD_MSG_REGISTER_ACK && got.reg_ack.worker_id == 2);
    wd_msg_free(&got);
    WD_EXPECT(wd_zsock_recv(p.dealer, 200, &got, &err) == WD_ERR_TIMEOUT);
    wd_zsock_close(restarted);
    pair_close(&p);
}

int main(void)
{
    WD_RUN(test_both_ways);
    WD_RUN(test_timeouts_and_peers);
    WD_RUN(test_garbage);
    WD_RUN(test_oversized);
    WD_RUN(test_handover);
    return wd_test_finish();
}

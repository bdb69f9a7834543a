/* In-process transport: put/signal/wait between rank threads, ordering, the timeout
 * message naming the silent rank, bounds checks, dead ranks, peer windows. */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "common/comm/transport_inproc.h"
#include "tests/unit/wd_test.h"

#define N_RANKS 4
#define SLOT 256 /* bytes each sender owns in every window */
#define SIG0 (N_RANKS * SLOT)

struct ring_ctx {
    struct wd_inproc_group *g;
    int rounds;
    int bad[N_RANKS];    /* per rank: mismatches seen */
    int status[N_RANKS]; /* per rank: first non-OK status */
};

/* Every round each rank writes (round, rank, byte index) into its slot of every peer's
 * window and signals; then waits for all peers and checks what landed. The next
 * round's writes wait for a second signal (the "consumed" ack), so nothing is
 * overwritten before it was read. */
static void ring_rank(int rank, void *arg)
{
    struct ring_ctx *c = arg;
    struct wd_transport *t = wd_inproc_group_transport(c->g, rank);
    struct wd_error err = {0};
    uint8_t buf[SLOT];
    size_t ack0 = SIG0 + N_RANKS * 8;
    for (int round = 1; round <= c->rounds; round++) {
        for (int j = 0; j < SLOT; j++)
            buf[j] = (uint8_t)(round * 31 + rank * 7 + j);
        for (int p = 0; p < N_RANKS; p++) {
            /* Peer p consumed the previous round from me? */
            enum wd_status st =
                wd_transport_wait(t, ack0 + (size_t)p * 8, (uint64_t)round - 1, p, 5000, &err);
            if (st == WD_OK)
                st = wd_transport_put(t, p, (size_t)rank * SLOT, buf, SLOT, &err);
            if (st == WD_OK)
                st = wd_transport_signal(t, p, SIG0 + (size_t)rank * 8, 1, &err);
            if (st != WD_OK && !c->status[rank])
                c->status[rank] = st;
        }
        for (int p = 0; p < N_RANKS; p++) {
            enum wd_status st =
                wd_transport_wait(t, SIG0 + (size_t)p * 8, (uint64_t)round, p, 5000, &err);
            if (st != WD_OK) {
                c->status[rank] = st;
                return;
            }
            for (int j = 0; j < SLOT; j++)
                if (t->window[p * SLOT + j] != (uint8_t)(round * 31 + p * 7 + j))
                    c->bad[rank]++;
            st = wd_transport_signal(t, p, ack0 + (size_t)rank * 8, 1, &err);
            if (st != WD_OK && !c->status[rank])
                c->status[rank] = st;
        }
    }
}

static void test_ring(void)
{
    struct ring_ctx c = {.rounds = 50};
    WD_EXPECT_EQ_INT(wd_inproc_group_create(N_RANKS, SIG0 + 2 * N_RANKS * 8, &c.g, NULL), WD_OK);
    WD_EXPECT_EQ_INT(wd_inproc_group_run(c.g, ring_rank, &c, NULL), WD_OK);
    for (int r = 0; r < N_RANKS; r++) {
        WD_EXPECT_EQ_INT(c.status[r], WD_OK);
        WD_EXPECT_EQ_INT(c.bad[r], 0);
    }
    wd_inproc_group_destroy(c.g);
}

static void test_timeout_names_peer(void)
{
    struct wd_inproc_group *g = NULL;
    WD_EXPECT_EQ_INT(wd_inproc_group_create(3, 64, &g, NULL), WD_OK);
    struct wd_transport *t = wd_inproc_group_transport(g, 0);
    struct wd_error err = {0};
    WD_EXPECT_EQ_INT(wd_transport_wait(t, 8, 1, 2, 30, &err), WD_ERR_TIMEOUT);
    WD_EXPECT_MSG(strstr(err.msg, "rank 2") != NULL, "message: %s", err.msg);
    /* A word already at the target returns at once, even with a zero timeout. */
    WD_EXPECT_EQ_INT(wd_transport_signal(wd_inproc_group_transport(g, 2), 0, 8, 3, &err), WD_OK);
    WD_EXPECT_EQ_INT(wd_transport_wait(t, 8, 3, 2, 0, &err), WD_OK);
    WD_EXPECT_EQ_INT(wd_transport_wait(t, 8, 4, 2, 0, &err), WD_ERR_TIMEOUT);
    wd_inproc_group_destroy(g);
}

static void test_bounds_and_dead(void)
{
    struct wd_inproc_group *g = NULL;
    struct wd_error err = {0};
    WD_EXPECT_EQ_INT(wd_inproc_group_create(0, 64, &g, &err), WD_ERR_INVALID);
    WD_EXPECT_EQ_INT(wd_inproc_group_create(2, 100, &g, NULL), WD_OK);
    struct wd_transport *t = wd_inproc_group_transport(g, 1);
    WD_EXPECT(wd_inproc_group_transport(g, 2) == NULL);
    WD_EXPECT_EQ_INT(t->rank, 1);
    WD_EXPECT_EQ_INT(t->n_ranks, 2);
    WD_EXPECT_EQ_INT(t->window_bytes, 100);
    uint8_t src[16] = {1, 2, 3};
    WD_EXPECT_EQ_INT(wd_transport_put(t, 0, 90, src, 10, &err), WD_OK);
    WD_EXPECT_EQ_INT(wd_transport_put(t, 0, 91, src, 10, &err), WD_ERR_INVALID);
    WD_EXPECT_EQ_INT(wd_transport_put(t, 0, SIZE_MAX, src, 2, &err), WD_ERR_INVALID);
    WD_EXPECT_EQ_INT(wd_transport_put(t, 2, 0, src, 1, &err), WD_ERR_INVALID);
    WD_EXPECT_EQ_INT(wd_transport_signal(t, 0, 4, 1, &err), WD_ERR_INVALID);
    WD_EXPECT_EQ_INT(wd_transport_signal(t, 0, 96, 1, &err), WD_ERR_INVALID);
    WD_EXPECT_EQ_INT(wd_transport_signal(t, -1, 0, 1, &err), WD_ERR_INVALID);
    /* peer_window is the fast path: the put above is visible through it. */
    uint8_t *w0 = t->ops->peer_window(t, 0);
    WD_EXPECT(w0 == wd_inproc_group_transport(g, 0)->window);
    WD_EXPECT_EQ_INT(w0[90], 1);
    WD_EXPECT_EQ_INT(w0[92], 3);
    wd_transport_destroy(t); /* a no-op: the group owns it */

    wd_inproc_group_kill(g, 0);
    WD_EXPECT_EQ_INT(wd_transport_put(t, 0, 0, src, 1, &err), WD_ERR_PEER);
    WD_EXPECT_MSG(strstr(err.msg, "rank 0") != NULL, "message: %s", err.msg);
    WD_EXPECT_EQ_INT(wd_transport_signal(t, 0, 0, 1, &err), WD_ERR_PEER);
    WD_EXPECT_EQ_INT(wd_transport_wait(t, 0, 1, 0, 10000, &err), WD_ERR_PEER);
    WD_EXPECT_MSG(strstr(err.msg, "rank 0") != NULL, "message: %s", err.msg);
    wd_inproc_group_destroy(g);
}

struct kill_ctx {
    struct wd_inproc_group *g;
    int status1;
};

/* A rank spinning on a peer that dies mid-wait fails with WD_ERR_PEER, not a timeout. */
static void kill_rank(int rank, void *arg)
{
    struct kill_ctx *c = arg;
    if (rank == 0) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        wd_inproc_group_kill(c->g, 0);
        return;
    }
    struct wd_error err = {0};
    c->status1 = wd_transport_wait(wd_inproc_group_transport(c->g, 1), 0, 1, 0, 10000, &err);
}

static void test_kill_during_wait(void)
{
    struct kill_ctx c = {0};
    WD_EXPECT_EQ_INT(wd_inproc_group_create(2, 64, &c.g, NULL), WD_OK);
    WD_EXPECT_EQ_INT(wd_inproc_group_run(c.g, kill_rank, &c, NULL), WD_OK);
    WD_EXPECT_EQ_INT(c.status1, WD_ERR_PEER);
    wd_inproc_group_destroy(c.g);
}

int main(void)
{
    WD_RUN(test_ring);
    WD_RUN(test_timeout_names_peer);
    WD_RUN(test_bounds_and_dead);
    WD_RUN(test_kill_during_wait);
    return wd_test_finish();
}

/*
 * The front-end <-> rank link: the ring's record framing, wrap-around and full/empty
 * states; records and stats across a real fork (the child is the rank side); command and
 * event validation refusing malformed records.
 */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/engine/engine_link.h"
#include "tests/unit/wd_test.h"

static void test_ring_wrap(void)
{
    static uint8_t mem[sizeof(struct wd_ring) + 256];
    struct wd_ring *r = wd_ring_init(mem, 256);
    uint8_t rec[100], out[200];
    for (int round = 0; round < 50; round++) {
        size_t len = 1 + (size_t)(round * 37) % 100;
        memset(rec, round, len);
        WD_EXPECT_EQ_INT(wd_ring_push2(r, rec, len / 2, rec + len / 2, len - len / 2), WD_OK);
        WD_EXPECT_EQ_INT(wd_ring_peek(r), len);
        WD_EXPECT_EQ_INT(wd_ring_pop(r, out, sizeof(out)), len);
        WD_EXPECT(memcmp(out, rec, len) == 0);
    }
    WD_EXPECT_EQ_INT(wd_ring_pop(r, out, sizeof(out)), 0);
    /* Fill: 2 records of 100 (+8 header, padded to 104) fit 256 once, the third does not. */
    WD_EXPECT_EQ_INT(wd_ring_push2(r, rec, 100, NULL, 0), WD_OK);
    WD_EXPECT_EQ_INT(wd_ring_push2(r, rec, 100, NULL, 0), WD_OK);
    WD_EXPECT_EQ_INT(wd_ring_push2(r, rec, 100, NULL, 0), WD_ERR_NOMEM);
    WD_EXPECT_EQ_INT(wd_ring_push2(r, rec, 0, NULL, 0), WD_ERR_INVALID);
    static uint8_t huge[300];
    WD_EXPECT_EQ_INT(wd_ring_push2(r, huge, sizeof(huge), NULL, 0), WD_ERR_INVALID);
    WD_EXPECT_EQ_INT(wd_ring_pop(r, out, sizeof(out)), 100);
    WD_EXPECT_EQ_INT(wd_ring_push2(r, rec, 100, NULL, 0), WD_OK);
}

/* The child plays the leader rank: it takes 200 commands, answers each with an event and
 * publishes stats; the parent checks every event in order. */
static void test_link_across_fork(void)
{
    struct wd_engine_link *l = NULL;
    WD_EXPECT_EQ_INT(wd_engine_link_create(4096, 4096, &l, NULL), WD_OK);
    if (!l)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        uint8_t buf[4096];
        int done = 0;
        while (done < 200) {
            wd_engine_link_wait_cmd(l, 100);
            size_t len;
            while ((len = wd_engine_link_pop_cmd(l, buf, sizeof(buf))) > 0) {
                struct wd_engine_cmd c;
                memcpy(&c, buf, sizeof(c));
                struct wd_engine_event ev = {.kind = WD_ENGINE_EV_TOKEN,
                                             .bytes = sizeof(ev),
                                             .id = c.id,
                                             .token = (int32_t)c.n_prompt};
                wd_engine_link_push_event(l, &ev, NULL, 0); /* waits while the ring is full */
                done++;
            }
            struct wd_engine_stats st = {.ready = 1, .running = done};
            wd_engine_link_publish_stats(l, &st);
            wd_engine_link_notify(l);
        }
        _exit(0);
    }
    int32_t prompt[64] = {0};
    int sent = 0, got = 0;
    uint8_t buf[4096];
    while (got < 200) {
        while (sent < 200) {
            struct wd_request_params p = {.prompt = prompt, .n_prompt = sent % 64, .id = sent + 1};
            struct wd_engine_cmd c;
            wd_engine_cmd_from_params(&c, WD_ENGINE_CMD_ADD, &p);
            if (wd_engine_link_push_cmd(l, &c, prompt) != WD_OK)
                break;
            sent++;
        }
        wd_engine_link_wake(l);
        size_t len;
        while ((len = wd_engine_link_pop_event(l, buf, sizeof(buf))) > 0) {
            WD_EXPECT_EQ_INT(wd_engine_event_check(buf, len, NULL), WD_OK);
            struct wd_engine_event ev;
            memcpy(&ev, buf, sizeof(ev));
            WD_EXPECT_EQ_INT(ev.id, got + 1);
            WD_EXPECT_EQ_INT(ev.token, got % 64);
            got++;
        }
        usleep(200);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    WD_EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct wd_engine_stats st;
    wd_engine_link_read_stats(l, &st);
    WD_EXPECT_EQ_INT(st.ready, 1);
    WD_EXPECT_EQ_INT(st.running, 200);
    wd_engine_link_destroy(l);
}

static void test_record_checks(void)
{
    struct wd_error err = {0};
    int32_t prompt[3] = {1, 2, 3};
    struct wd_request_params p = {.prompt = prompt, .n_prompt = 3, .id = 9};
    uint8_t rec[sizeof(struct wd_engine_cmd) + sizeof(prompt)];
    struct wd_engine_cmd c;
    wd_engine_cmd_from_params(&c, WD_ENGINE_CMD_ADD, &p);
    memcpy(rec, &c, sizeof(c));
    memcpy(rec + sizeof(c), prompt, sizeof(prompt));
    WD_EXPECT_EQ_INT(wd_engine_cmd_check(rec, sizeof(rec), &err), WD_OK);
    WD_EXPECT_EQ_INT(wd_engine_cmd_check(rec, sizeof(rec) - 4, &err), WD_ERR_FORMAT);
    WD_EXPECT_EQ_INT(wd_engine_cmd_check(rec, 10, &err), WD_ERR_FORMAT);
    struct wd_engine_cmd bad = c;
    bad.kind = 99;
    memcpy(rec, &bad, sizeof(bad));
    WD_EXPECT_EQ_INT(wd_engine_cmd_check(rec, sizeof(rec), &err), WD_ERR_FORMAT);
    bad = c;
    bad.n_prompt = -1;
    memcpy(rec, &bad, sizeof(bad));
    WD_EXPECT_EQ_INT(wd_engine_cmd_check(rec, sizeof(rec), &err), WD_ERR_FORMAT);
    bad = c;
    bad.id = 0;
    memcpy(rec, &bad, sizeof(bad));
    WD_EXPECT_EQ_INT(wd_engine_cmd_check(rec, sizeof(rec), &err), WD_ERR_FORMAT);
    struct wd_engine_event ev = {.kind = WD_ENGINE_EV_TOKEN, .bytes = sizeof(ev), .id = 1};
    WD_EXPECT_EQ_INT(wd_engine_event_check(&ev, sizeof(ev), &err), WD_OK);
    ev.n_top = WD_MAX_TOP_LOGPROBS + 1;
    WD_EXPECT_EQ_INT(wd_engine_event_check(&ev, sizeof(ev), &err), WD_ERR_FORMAT);
    ev.n_top = 0;
    ev.extra = 5; /* says 5 message bytes follow, none do */
    ev.kind = WD_ENGINE_EV_ERROR;
    WD_EXPECT_EQ_INT(wd_engine_event_check(&ev, sizeof(ev), &err), WD_ERR_FORMAT);
}

int main(void)
{
    WD_RUN(test_ring_wrap);
    WD_RUN(test_link_across_fork);
    WD_RUN(test_record_checks);
    return wd_test_finish();
}

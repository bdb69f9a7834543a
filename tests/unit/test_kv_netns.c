/*
 * KV transfer between two network namespaces: the test makes a prefill namespace and a
 * decode namespace joined by a veth pair with its own addresses (loopback left down), runs
 * each rank as this binary inside its namespace (`ip netns exec NS <self> --child ...`),
 * UCX restricted to TCP on the veth, and checks the self-describing payload as
 * test_kv_transfer does. So nothing in the transfer may assume one host: not a loopback
 * address, not a shared-memory segment. The namespaces (and with them the veth pair) are
 * removed at the end. Skips (exit 77) where `ip netns` is not permitted.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/unit/wd_kv_world.h"
#include "tests/unit/wd_test.h"

struct netns {
    char ns[2][32];   /* [0] prefill, [1] decode */
    char veth[2][16]; /* the end inside each */
    char self[4096];
    int is_made;
};

static struct netns g_net;

/* The worlds run across the namespaces, indexed for the children's command line. */
static const struct kv_world g_worlds[] = {
    {.kind = WD_KV_GQA,
     .dtype = WD_DTYPE_BF16,
     .n_layers = 3,
     .page_size = 4,
     .n_pages = 32,
     .head_dim = 8,
     .n_kv_heads = 4,
     .prefill_tp = 2,
     .decode_tp = 1,
     .n_requests = 3,
     .n_tokens = {13, 1, 24},
     .chunk = 5,
     .is_scattered = 1,
     .kill_after_layer = -1,
     .flush_timeout_ms = 20000},
    {.kind = WD_KV_GQA,
     .dtype = WD_DTYPE_F32,
     .n_layers = 2,
     .page_size = 16,
     .n_pages = 64,
     .head_dim = 64,
     .n_kv_heads = 4,
     .prefill_tp = 1,
     .decode_tp = 2,
     .n_requests = 2,
     .n_tokens = {300, 77},
     .is_scattered = 1,
     .kill_after_layer = -1,
     .flush_timeout_ms = 20000},
    {.kind = WD_KV_MLA,
     .dtype = WD_DTYPE_BF16,
     .n_layers = 3,
     .page_size = 8,
     .n_pages = 16,
     .head_dim = 40,
     .prefill_tp = 2,
     .decode_tp = 2,
     .n_requests = 2,
     .n_tokens = {50, 9},
     .kill_after_layer = -1,
     .flush_timeout_ms = 20000},
};

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[512], out[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int rc = wd_test_sh(cmd, out, sizeof(out));
    if (rc != 0)
        fprintf(stderr, "%s: exit %d: %s\n", cmd, rc, out);
    return rc;
}

static void net_remove(void)
{
    if (!g_net.is_made)
        return;
    for (int i = 0; i < 2; i++) {
        char cmd[128], out[256];
        snprintf(cmd, sizeof(cmd), "ip netns del %s", g_net.ns[i]);
        wd_test_sh(cmd, out, sizeof(out));
    }
    g_net.is_made = 0;
}

/* 0 when made; 77 when namespaces are not permitted here; 1 on a later failure. */
static int net_make(void)
{
    int id = (int)getpid();
    snprintf(g_net.ns[0], sizeof(g_net.ns[0]), "wdkv%d_p", id);
    snprintf(g_net.ns[1], sizeof(g_net.ns[1]), "wdkv%d_d", id);
    snprintf(g_net.veth[0], sizeof(g_net.veth[0]), "wdp%d", id % 100000);
    snprintf(g_net.veth[1], sizeof(g_net.veth[1]), "wdd%d", id % 100000);
    char out[512], cmd[128];
    snprintf(cmd, sizeof(cmd), "ip netns add %s", g_net.ns[0]);
    if (wd_test_sh(cmd, out, sizeof(out)) != 0) {
        printf("skip: ip netns not permitted here: %s", out);
        return 77;
    }
    g_net.is_made = 1;
    int net = 16 + id % 200; /* 10.<net>.77.0/24: unlikely to meet another test's */
    if (sh("ip netns add %s", g_net.ns[1]) ||
        sh("ip link add %s type veth peer name %s", g_net.veth[0], g_net.veth[1]) ||
        sh("ip link set %s netns %s", g_net.veth[0], g_net.ns[0]) ||
        sh("ip link set %s netns %s", g_net.veth[1], g_net.ns[1]))
        return 1;
    for (int i = 0; i < 2; i++)
        if (sh("ip -n %s addr add 10.%d.77.%d/24 dev %s", g_net.ns[i], net, i + 1, g_net.veth[i]) ||
            sh("ip -n %s link set %s up", g_net.ns[i], g_net.veth[i]))
            return 1;
    return 0;
}

static pid_t spawn_in_ns(void *arg, int is_decode, int rank, int fd)
{
    int world = *(int *)arg;
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    char sw[16], sd[16], sr[16], sf[16];
    snprintf(sw, sizeof(sw), "%d", world);
    snprintf(sd, sizeof(sd), "%d", is_decode);
    snprintf(sr, sizeof(sr), "%d", rank);
    snprintf(sf, sizeof(sf), "%d", fd);
    /* TCP only, on the veth: no shared memory, no loopback between the ranks. */
    setenv("UCX_TLS", "tcp", 1);
    setenv("UCX_NET_DEVICES", g_net.veth[is_decode], 1);
    execlp("ip", "ip", "netns", "exec", g_net.ns[is_decode], g_net.self, "--child", sw, sd, sr, sf,
           (char *)NULL);
    _exit(127);
}

static void run_world(int idx, const char *what)
{
    struct kv_world_result res;
    int rc = kv_world_run(&g_worlds[idx], spawn_in_ns, &idx, &res);
    WD_EXPECT_MSG(rc == 0 && res.n_checked_ranks == g_worlds[idx].decode_tp, "%s: %s", what,
                  res.msg);
    printf("     %s: %llu puts, %llu bytes across the veth\n", what, (unsigned long long)res.n_puts,
           (unsigned long long)res.n_bytes);
}

static void test_gqa_tp2_into_dp_attention_across_namespaces(void)
{
    run_world(0, "gqa prefill tp2 -> decode attn tp1, bf16, chunks");
}

static void test_gqa_tp1_into_tp2_across_namespaces(void)
{
    run_world(1, "gqa prefill tp1 -> decode tp2, fp32");
}

static void test_mla_across_namespaces(void)
{
    run_world(2, "mla prefill tp2 -> decode tp2, bf16");
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "--child") == 0) {
        int w = atoi(argv[2]);
        if (w < 0 || w >= (int)(sizeof(g_worlds) / sizeof(g_worlds[0])))
            return 2;
        return kv_world_child(&g_worlds[w], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    }
    ssize_t n = readlink("/proc/self/exe", g_net.self, sizeof(g_net.self) - 1);
    if (n <= 0) {
        printf("skip: cannot find this binary's path\n");
        return 77;
    }
    g_net.self[n] = '\0';
    int rc = net_make();
    if (rc == 77)
        return 77;
    if (rc != 0) {
        net_remove();
        fprintf(stderr, "FAIL: could not make the namespaces and veth pair\n");
        return 1;
    }
    WD_RUN(test_gqa_tp2_into_dp_attention_across_namespaces);
    WD_RUN(test_gqa_tp1_into_tp2_across_namespaces);
    WD_RUN(test_mla_across_namespaces);
    net_remove();
    return wd_test_finish();
}

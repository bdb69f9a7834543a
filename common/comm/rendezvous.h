/*
 * Rendezvous: the small TCP key-value store through which the ranks of one launch swap
 * shared-memory segment names, UCX worker addresses and rkeys (and later the NCCL unique
 * id), and on which they meet at named barriers.
 *
 * The server is hosted by the launcher of node 0 (the parent of rank 0), inside its
 * reaping loop: it is single-threaded and driven by wd_rdzv_server_poll, so it needs no
 * thread of its own and outlives a crashing rank 0. Clients are one blocking connection
 * per process. Every client call is bounded by a timeout; a malformed or short message
 * from the wire is an error (the server drops that connection, the client fails the
 * call), never a crash. Keys are byte strings up to WD_RDZV_MAX_KEY bytes, values up to
 * WD_RDZV_MAX_VALUE bytes. The store only grows: a launch is short-lived and small.
 * A launch token keeps strangers out: a server created with one serves only connections
 * that presented the same token first (the client does so when it connects), so a launcher
 * of another job pointed at this address cannot read or change anything. The token is an
 * identity check, not authentication: it travels in clear text.
 * Threading: one thread per object.
 */
#ifndef WD_COMM_RENDEZVOUS_H
#define WD_COMM_RENDEZVOUS_H

#include <stddef.h>
#include <stdint.h>

#include "common/util/status.h"

#define WD_RDZV_MAX_KEY 256
#define WD_RDZV_MAX_VALUE (1u << 20)
#define WD_RDZV_MAX_TOKEN 128

/* Splits "host:port" or "[v6addr]:port" into host and port (1..65535). WD_ERR_INVALID
 * names the address when it does not parse. */
enum wd_status wd_rdzv_parse_addr(const char *addr, char *host, size_t host_cap, int *port_p,
                                  struct wd_error *err);

/* ---- server ---- */
struct wd_rdzv_server;

/* Listens on host:port (port 0 picks a free one; see wd_rdzv_server_port). host NULL
 * creates a store with no socket, fed only through wd_rdzv_server_feed (fuzzing, tests).
 * token (up to WD_RDZV_MAX_TOKEN bytes, "" is a token too) is required from every
 * connection before anything else; NULL requires none. Connections refused for it are
 * logged. WD_ERR_IO names the address when it cannot bind. */
enum wd_status wd_rdzv_server_create(const char *host, int port, const char *token,
                                     struct wd_rdzv_server **srv_p, struct wd_error *err);
/* NULL-safe. Closes every connection. */
void wd_rdzv_server_destroy(struct wd_rdzv_server *srv);
/* The port actually bound (0 without a socket). */
int wd_rdzv_server_port(const struct wd_rdzv_server *srv);
/* Accepts connections and answers requests, waiting up to timeout_ms for activity
 * (0: only what is ready). Bad clients are dropped and logged; an error return means the
 * listening socket itself failed. */
enum wd_status wd_rdzv_server_poll(struct wd_rdzv_server *srv, int timeout_ms,
                                   struct wd_error *err);
/* The hosting process reads and writes its own store directly. lookup returns 1 and a
 * pointer valid until the next store change, or 0 when the key is absent. */
enum wd_status wd_rdzv_server_set(struct wd_rdzv_server *srv, const char *key, const void *val,
                                  size_t len, struct wd_error *err);
int wd_rdzv_server_lookup(const struct wd_rdzv_server *srv, const char *key, const void **val_p,
                          size_t *len_p);
/* Runs len bytes through the request decoder as if they arrived on one fresh connection
 * (the replies are discarded). Returns 0 when the connection would stay open, -1 when the
 * server would drop it as malformed. For fuzzing and decoder tests. */
int wd_rdzv_server_feed(struct wd_rdzv_server *srv, const uint8_t *in, size_t len);

/* ---- client ---- */
struct wd_rdzv;

/* Called between polls while a client call waits (get, barrier): may progress other
 * work and return non-OK (with err filled) to abandon the wait. */
typedef enum wd_status (*wd_rdzv_wait_hook)(void *arg, struct wd_error *err);

/* Connects to host:port, retrying while the server is not up yet, for up to timeout_ms,
 * and presents token (NULL: none; see wd_rdzv_server_create). timeout_ms also bounds every
 * later request/reply exchange on this connection. WD_ERR_TIMEOUT when nothing accepted in
 * time; WD_ERR_IO for a bad host; WD_ERR_INVALID "launch token mismatch" when the server
 * wants another token. */
enum wd_status wd_rdzv_create(const char *host, int port, const char *token, int timeout_ms,
                              struct wd_rdzv **c_p, struct wd_error *err);
void wd_rdzv_destroy(struct wd_rdzv *c); /* NULL-safe */
void wd_rdzv_set_wait_hook(struct wd_rdzv *c, wd_rdzv_wait_hook hook, void *arg);

/* Stores a copy of val under key (replacing any earlier value). */
enum wd_status wd_rdzv_set(struct wd_rdzv *c, const char *key, const void *val, size_t len,
                           struct wd_error *err);
/* Waits up to timeout_ms for key to be set and returns a malloc'ed copy of its value
 * (*val_p freed by the caller; a zero-length value still gets a non-NULL buffer).
 * timeout_ms 0 asks once: WD_ERR_NOT_FOUND when absent. WD_ERR_TIMEOUT names the key. */
enum wd_status wd_rdzv_get(struct wd_rdzv *c, const char *key, int timeout_ms, void **val_p,
                           size_t *len_p, struct wd_error *err);
/* Adds delta to the signed 64-bit counter at key (absent = 0) and returns the new value. */
enum wd_status wd_rdzv_add(struct wd_rdzv *c, const char *key, int64_t delta, int64_t *value_p,
                           struct wd_error *err);
/* Returns once n callers have entered the barrier called name (reusable: the k-th group
 * of n arrivals releases together). WD_ERR_TIMEOUT says how many had arrived. */
enum wd_status wd_rdzv_barrier(struct wd_rdzv *c, const char *name, int n, int timeout_ms,
                               struct wd_error *err);

#endif

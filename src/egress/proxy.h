/*
 * proxy — sqlfs's egress proxy: the only way out of a sandbox whose network is on.
 *
 * A jail's network namespace holds only `lo`. For an exec of a sandbox with egress on, the
 * exec layer makes a listening socket on 127.0.0.1:EGRESS_PROXY_PORT inside that namespace
 * (a port below 1024, which the sandbox user cannot bind) and hands it to the proxy with the
 * exec's policy (egress_session_open); the jail's environment names it in HTTP_PROXY and the
 * like. Every other destination has no route from the namespace: a connection attempt fails
 * at once.
 *
 * The proxy serves `CONNECT host:port` (what passes afterwards, TLS or not, is relayed
 * untouched) and absolute-form plain HTTP requests (`GET http://host/path HTTP/1.1`: one
 * request per connection, sent on with `Connection: close` and without the proxy's own
 * headers). It decides by the name and port asked for and by every address the name resolves
 * to (policy.h), and connects to exactly the address it checked, from the server's own network
 * namespace. A refusal is an HTTP answer the client shows: 403 with the body
 * "sqlfs egress: <host> is not allowed by this sandbox's network policy" and the rule, 429 for
 * an exec past its limits, 502/504 when the host cannot be reached.
 *
 * Bounds (egress_limits): connections per exec (in all, and open at once), bytes per exec,
 * an idle timeout, a connect timeout, and connections open on the whole server; each open
 * connection holds two descriptors and at most 2 × EGRESS_RELAY_BUFFER + EGRESS_HEAD_MAX bytes.
 * One thread serves every connection without blocking, so a slow or silent host holds no server
 * thread; names are resolved by a few threads of their own.
 *
 * Every connection asked for is recorded (struct egress_rec): the records of an exec are
 * written to the store, in one transaction, when its session closes.
 *
 * Thread-safe.
 */
#ifndef SQLFS_EGRESS_PROXY_H
#define SQLFS_EGRESS_PROXY_H

#include <stdbool.h>
#include <stdint.h>

#include "egress/policy.h"

struct store;
struct egress;
struct egress_session;

/* The proxy's address inside every jail with egress on. */
#define EGRESS_PROXY_PORT 3
#define EGRESS_PROXY_URL "http://127.0.0.1:3"
/* The request head a client may send (CONNECT line or HTTP request line and headers). */
#define EGRESS_HEAD_MAX (16 * 1024)
/* Each direction of a relayed connection buffers at most this much. */
#define EGRESS_RELAY_BUFFER (64 * 1024)

struct egress_limits {
    int64_t connections_per_exec; /* EGRESS_CONNECTIONS_PER_EXEC: asked for, in all */
    int64_t open_per_exec;        /* EGRESS_OPEN_PER_EXEC: open at once */
    int64_t bytes_per_exec;       /* EGRESS_BYTES_PER_EXEC: both directions together */
    int64_t idle_timeout_ms;      /* EGRESS_IDLE_TIMEOUT_MS: no byte either way */
    int64_t connect_timeout_ms;   /* EGRESS_CONNECT_TIMEOUT_MS: head, resolving, connecting */
    int64_t max_open;             /* EGRESS_MAX_OPEN: open connections on the whole server */
    int64_t log_max;              /* EGRESS_LOG_MAX: log records kept per sandbox */
    int64_t log_max_age_ms;       /* EGRESS_LOG_MAX_AGE: log records' age (0: no limit) */
};

struct egress_config {
    const char *allow;     /* EGRESS_ALLOW: rules of `network: true` (default none) */
    const char *allow_max; /* EGRESS_ALLOW_MAX: the ceiling of every sandbox (default "*") */
    const char *resolve;   /* EGRESS_RESOLVE: pinned names "host:addr,..." */
    struct egress_limits limits;
};

/* Parses the settings and starts the proxy's threads. The store (borrowed, outlives the proxy)
 * receives the log. -EINVAL naming the bad setting, -errno. */
__attribute__((warn_unused_result)) int egress_new(const struct egress_config *cfg,
                                                   struct store *st, struct egress **ret);
/* Closes every session and connection and stops the threads. NULL-safe. */
void egress_free(struct egress *eg);

/* Checks the settings without starting anything (configuration check at start-up). */
__attribute__((warn_unused_result)) int egress_config_check(const struct egress_config *cfg);

/* The policy of a sandbox: its stored policy JSON (NULL: `network: true`, the server's
 * EGRESS_ALLOW) under the server's ceiling. Release with egress_policy_release. */
__attribute__((warn_unused_result)) int
egress_policy_for(struct egress *eg, const char *policy_json, struct egress_policy *ret);

/* Starts serving one exec: listen_fd (taken, closed on every path) is a listening TCP socket,
 * non-blocking, in the exec's network namespace; policy is taken (released by the session).
 * exec_id may be NULL. -errno. */
__attribute__((warn_unused_result)) int
egress_session_open(struct egress *eg, int listen_fd, struct egress_policy *policy,
                    const char *sandbox_id, const char *exec_id, struct egress_session **ret);

/* Ends the session: its listener and every connection it still has are closed, and its log
 * records are written to the store (a failure there is logged). Returns once nothing of the
 * session runs any more. NULL-safe. */
void egress_session_close(struct egress_session *s);

/* Figures for GET /v1/status: open connections, sessions, connections served, refused. */
struct egress_stats {
    int64_t sessions;
    int64_t open;
    int64_t served;
    int64_t denied;
};
void egress_stats(struct egress *eg, struct egress_stats *ret);

#endif

/*
 * metrics — the server's counters for GET /metrics (docs/API.md "Metrics"), in the Prometheus
 * text exposition format 0.0.4.
 *
 * What is counted here as it happens: every HTTP request (by route pattern, method and status,
 * with its duration), the phases of every exec-sync and streamed exec (the Server-Timing
 * phases), every error answer by its API code, every refusal by an auth rate limit. What is read
 * at each scrape: execs running and queued, sandboxes in the store (a count query, cached for
 * METRICS_SANDBOXES_MAX_AGE_MS), the store's memory, the egress proxy's connections.
 *
 * Bounded memory: every label set is fixed when the registry is made, never taken from a
 * request. A route is its pattern in the route table ("/v1/sandboxes/:id/exec-sync"), never a
 * path; a request that matched no route counts under route "other", whose method is one of a
 * fixed list or "other"; a status is one of a fixed number per (route, method), more of them
 * counting under status "other"; an error code is one of the error table's (util/err.h).
 *
 * Thread-safety: every function may be called from any thread at any time between
 * metrics_new and metrics_free; counting is lock-free (relaxed atomics) and allocates nothing.
 */
#ifndef SQLFS_API_METRICS_H
#define SQLFS_API_METRICS_H

#include <stdint.h>

#include "util/buf.h"

struct app;
struct err_info;
struct route;
struct exec_timing;
struct metrics;

/* The sandbox count is read from the store at most this often; scrapes in between see the
 * last count. */
#define METRICS_SANDBOXES_MAX_AGE_MS 5000

/* The auth rate limits (src/auth/ratelimit.h, README "Configuration"), the `limit` label. */
enum metrics_limit {
    METRICS_LIMIT_AUTH_FAILURES, /* "auth_failures": AUTH_RATE_LIMIT_* */
    METRICS_LIMIT_AUTH_TOKENS,   /* "auth_tokens": AUTH_SUCCESS_RATE_LIMIT_* */
    METRICS_LIMITS
};

/* A registry with every counter at zero, for the route table of api/routes.c. -ENOMEM. */
__attribute__((warn_unused_result)) int metrics_new(struct metrics **ret);
/* NULL-safe. Nothing may count into it any more. */
void metrics_free(struct metrics *m);

/* One request, as it completes: its route (NULL: none matched), its method as sent, the status
 * answered (0: none was), how long it took from its first byte to its completion, and the
 * error answered (NULL: none; see http_mark_error). m NULL: nothing. */
void metrics_request(struct metrics *m, const struct route *route, const char *method,
                     unsigned status, int64_t duration_ns, const struct err_info *error);
/* One exec's phases: the wait for the sandbox's lock, then exec_timing's (queue, prepare, spawn,
 * run, commit). A phase the exec did not reach (0) is not counted. */
void metrics_exec_timing(struct metrics *m, int64_t lock_ns, const struct exec_timing *t);
/* One request refused by an auth rate limit. */
void metrics_rate_limited(struct metrics *m, enum metrics_limit limit);

/* Appends the exposition of every metric to out: the counters of m and the gauges read from
 * app now. -ENOMEM (out keeps what was appended). */
__attribute__((warn_unused_result)) int metrics_render(struct metrics *m, struct app *app,
                                                       struct buf *out);

#endif

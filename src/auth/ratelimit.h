/*
 * ratelimit — a per-key request limiter for the auth routes (API.md §2: by default 5 requests per
 * 60 s per client IP).
 *
 * Each key gets a fixed window that opens at its first hit: up to `max` hits are allowed until
 * `window_ms` later, then the window restarts at the next hit. Denied hits do not extend the
 * window. A limiter created with max 0 allows everything (rate limiting disabled).
 *
 * Memory is bounded: keys are truncated to RATELIMIT_KEY_MAX bytes, entries whose window has
 * passed are dropped as the limiter is used, and the table never holds more than `max_keys`
 * entries — when a new key arrives at the cap, the entry with the oldest window is evicted, so a
 * flood of distinct addresses costs a bounded amount of memory (and forgets the oldest clients
 * first). Keys are hashed with SipHash under a random per-limiter key, so chosen keys (IPv6
 * addresses, X-Forwarded-For values) cannot be crafted to collide.
 *
 * Times are caller-supplied milliseconds from a monotonic clock (time_mono_ms()); the eviction
 * order assumes they do not go backwards.
 *
 * Thread-safety: ratelimit_hit and ratelimit_size may be called concurrently (one mutex).
 * Ownership: the limiter copies keys; ratelimit_free releases everything.
 */
#ifndef SQLFS_AUTH_RATELIMIT_H
#define SQLFS_AUTH_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RATELIMIT_DEFAULT_MAX_KEYS 100000
#define RATELIMIT_KEY_MAX 128

struct ratelimit;

/* A limiter of `max` (>= 0) hits per `window_ms` (>= 1) per key, holding at most
 * RATELIMIT_DEFAULT_MAX_KEYS keys. NULL with errno EINVAL or ENOMEM. */
struct ratelimit *ratelimit_new(int64_t max, int64_t window_ms);
/* The same with an explicit cap on the number of keys (>= 1). */
struct ratelimit *ratelimit_new_bounded(int64_t max, int64_t window_ms, size_t max_keys);

/* Counts one hit for key at now_ms. True when allowed. When denied, *ret_retry_after_s (may be
 * NULL) gets the whole seconds until the key's window ends (>= 1), for a Retry-After header.
 * If memory for a new key cannot be allocated the hit is denied (retry after 1 s): failing open
 * would let an attacker bypass the limit by exhausting memory. */
bool ratelimit_hit(struct ratelimit *rl, const char *key, int64_t now_ms,
                   int64_t *ret_retry_after_s);

/* Number of keys currently tracked (for tests and metrics). */
size_t ratelimit_size(struct ratelimit *rl);

/* NULL-safe. */
void ratelimit_free(struct ratelimit *rl);

#endif

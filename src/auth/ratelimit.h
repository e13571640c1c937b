/*
 * ratelimit — a per-key request limiter for the auth routes (docs/API.md "Auth": per client IP,
 * failed attempts by default 5 per 60 s, minted tokens 600 per 60 s).
 *
 * Each key gets a fixed window that opens at its first hit: up to `max` hits are allowed until
 * `window_ms` later, then the window restarts at the next hit. Denied hits do not extend the
 * window. A limiter created with max 0 allows everything (rate limiting disabled).
 *
 * To limit only the attempts that turn out to fail, count each attempt with ratelimit_hit before
 * looking at it and ratelimit_refund it once it has passed. Counting first keeps the limit exact
 * under concurrency — a check made before counting would let through every attempt that arrives
 * at once. The price: attempts in flight hold hits, so more than `max` at the same instant from
 * one key are denied even if all of them would have passed.
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
 * Thread-safety: ratelimit_hit, ratelimit_refund and ratelimit_size may be called concurrently
 * (one mutex).
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

/* Takes back one hit that ratelimit_hit allowed for key in its current window, for an attempt
 * that, once checked, should not count. A key whose count drops to zero is forgotten (it holds no
 * memory until its next hit). Does nothing when the key is not tracked (its window has ended, it
 * was evicted, or the limiter has max 0). If the key's window restarted since the hit (only when
 * window_ms is shorter than the caller's check), a hit of the new window is taken back. */
void ratelimit_refund(struct ratelimit *rl, const char *key, int64_t now_ms);

/* Number of keys currently tracked (for tests and metrics). */
size_t ratelimit_size(struct ratelimit *rl);

/* NULL-safe. */
void ratelimit_free(struct ratelimit *rl);

#endif

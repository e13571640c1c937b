/*
 * lock — per-sandbox readers-writer locks (README.md "How it works").
 *
 * Write-mode execs and file writes take a sandbox's lock exclusively; read-only execs, reads,
 * tree and export take it shared. Different sandboxes never wait for each other. Waiting writers
 * block new readers, so a stream of readers cannot starve a writer. A lock may be released by a
 * different thread than the one that took it (a streaming response ends on a callback).
 *
 * Entries exist only while someone holds or waits for the lock: an idle sandbox costs no memory.
 * Thread-safe.
 *
 * Several servers on one database (struct lock_remote): the table then also holds each sandbox's
 * lock across servers. A writer takes the remote lock exclusively once it holds the local one;
 * the readers of one sandbox in this process share one remote shared lock, taken by the first
 * and released by the last. While a remote lock is being taken or released, the others of that
 * sandbox wait, so local and remote state never disagree.
 */
#ifndef SQLFS_SANDBOX_LOCK_H
#define SQLFS_SANDBOX_LOCK_H

#include <stdint.h>

enum lock_mode {
    LOCK_SHARED = 1,
    LOCK_EXCLUSIVE = 2,
};

struct locks;
struct lock_ref;

/* A lock shared with other servers (store.h: store_lock_acquire). */
struct lock_remote {
    /* Takes the lock of sandbox `id` in `mode`, waiting at most timeout_ms (>= 0); *ret gets
     * what release needs. A negative code (with its message) fails the local acquire too. */
    int (*acquire)(void *ud, const char *id, enum lock_mode mode, int64_t timeout_ms, void **ret);
    /* Releases it; never fails. */
    void (*release)(void *ud, void *handle);
    void *ud;
};

/* remote NULL: locks of this process only. The remote is copied. */
__attribute__((warn_unused_result)) int locks_new(const struct lock_remote *remote,
                                                  struct locks **ret);
/* Frees the table; every lock must have been released. NULL-safe. */
void locks_free(struct locks *l);
/* Takes the lock of sandbox `id` in `mode`, waiting at most timeout_ms (< 0: forever) in all,
 * the remote lock's wait included. -ERR_LOCK_TIMEOUT when the wait times out, -ENOMEM, or the
 * remote's failure. */
__attribute__((warn_unused_result)) int locks_acquire(struct locks *l, const char *id,
                                                      enum lock_mode mode, int64_t timeout_ms,
                                                      struct lock_ref **ret);
/* Releases a lock taken by locks_acquire. NULL-safe. */
void locks_release(struct lock_ref *ref);
/* Number of sandboxes with a live entry (held or awaited): for tests and diagnostics. */
int locks_active(struct locks *l);

#endif

/*
 * sandbox — the service layer between routes and the store: creating and deleting sandboxes,
 * opening one for a caller (ownership + lock), the one commit path of every mutation, symlink
 * resolution inside the sandbox, and the observers told of commits and deletions.
 *
 * The commit path (HACKING.md "The one commit path"): every mutation of a sandbox's tree builds a
 * change set and calls sandbox_commit() (or sandbox_commit_untold() + sandbox_tell_commit()) while
 * holding the sandbox's exclusive lock; creation and deletion go through sandbox_create() and
 * sandbox_delete(). Nothing else writes a sandbox to the store. A commit checks the reserved
 * paths (store/reserved.h), commits to SQL (fenced by the version read under the lock, bounded
 * by the quota), collects the contents of the files it deleted or replaced (store_gc), and
 * then tells the observers, so caches such as the exec's checkouts follow.
 *
 * Observers (sandbox_observe): the layers above register what they keep per sandbox; this
 * layer calls them and knows nothing of them. Contract of every observer call:
 *   - `committed` runs after a commit succeeded, `deleted` after a sandbox was deleted, on the
 *     thread that committed or deleted, once per observer, in registration order;
 *   - the caller holds the sandbox's exclusive lock (sandbox creation: nobody else knows the
 *     sandbox yet), so the observer sees the sandbox as of that commit and nothing changes it
 *     meanwhile; no other lock of this layer is held;
 *   - an observer must not commit, create or delete sandboxes, nor take a sandbox lock; it may
 *     read the store and do I/O of its own;
 *   - it cannot fail the commit, which stands: an observer that cannot follow drops what it
 *     keeps (e.g. invalidates a cache) and clears its error (err_clear).
 * Observers are registered before the layer serves and removed after it stopped serving
 * (registration is not synchronised with commits).
 *
 * Thread-safe otherwise; per-sandbox ordering comes from the lock the caller holds.
 */
#ifndef SQLFS_SANDBOX_SANDBOX_H
#define SQLFS_SANDBOX_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sandbox/lock.h"
#include "store/store.h"

struct sandboxes;

struct sandbox_config {
    int64_t lock_timeout_ms;     /* LOCK_TIMEOUT_MS: the longest wait for a sandbox's lock */
    int64_t quota_bytes;         /* SANDBOX_QUOTA_BYTES: a sandbox's tree at most (0: none) */
    int64_t max_per_owner;       /* MAX_SANDBOXES_PER_OWNER (0: no limit) */
    int64_t history_max_commits; /* HISTORY_MAX_COMMITS: versions kept (0: no limit) */
    int64_t history_max_age_ms;  /* HISTORY_MAX_AGE: versions younger than this kept (0: all) */
    int64_t max_snapshots;       /* MAX_SNAPSHOTS: snapshots of one sandbox (0: no limit) */
};

/* The layer over `st` (which must outlive it), with its table of sandbox locks. -ENOMEM. */
__attribute__((warn_unused_result)) int
sandboxes_new(struct store *st, const struct sandbox_config *cfg, struct sandboxes **ret);
/* Frees the layer; every lock must have been released. NULL-safe. */
void sandboxes_free(struct sandboxes *sbx);
/* SANDBOX_QUOTA_BYTES, as every commit applies it (0: none). */
int64_t sandboxes_quota_bytes(const struct sandboxes *sbx);
/* The store and the configuration the layer was made with. */
struct store *sandboxes_store(const struct sandboxes *sbx);
const struct sandbox_config *sandboxes_config(const struct sandboxes *sbx);

/* What a commit did, for observers. Everything is borrowed for the duration of the call. */
struct sandbox_commit_info {
    const char *sandbox_id;
    int64_t old_version;        /* the version the commit started from; -1: just created */
    int64_t new_version;        /* its version now */
    const struct changeset *cs; /* what was committed */
    /* A directory holding the change set's new regular files at their sandbox paths (the
     * overlay upper an exec's change set was diffed from): an observer may move files out of
     * it. NULL for changes that came through the API. */
    const char *upper_dir;
};

struct sandbox_observer {
    /* After every successful commit, creation included (may be NULL). */
    void (*committed)(void *ud, const struct sandbox_commit_info *c);
    /* After a sandbox was deleted (may be NULL). */
    void (*deleted)(void *ud, const char *sandbox_id);
    void *ud; /* passed to both; also names the observer for sandbox_unobserve */
};

#define SANDBOX_OBSERVERS_MAX 4

/* Registers an observer (copied) under the contract above. -ENOSPC when SANDBOX_OBSERVERS_MAX
 * are registered already. */
__attribute__((warn_unused_result)) int sandbox_observe(struct sandboxes *sbx,
                                                        const struct sandbox_observer *o);
/* Removes the observers registered with `ud`. */
void sandbox_unobserve(struct sandboxes *sbx, void *ud);

/* Checks the owner (NULL tenant/sub: any) from the record, without the lock, then takes the
 * sandbox's lock in `mode` and reads the record again under it. -ERR_SANDBOX_NOT_FOUND when
 * missing or foreign: a foreign sandbox never waits for its lock, so it is answered like a
 * missing one, in the same time; -ERR_SANDBOX_NOT_FOUND also when it was deleted while we
 * waited. -ERR_LOCK_TIMEOUT (owner only). On success the caller owns *ret_lock and must
 * release it. */
__attribute__((warn_unused_result)) int
sandbox_open(struct sandboxes *sbx, const char *id, const char *tenant, const char *sub,
             enum lock_mode mode, struct sandbox_rec *ret_rec, struct lock_ref **ret_lock);

/* Reads the record without locking (for existence checks before a long upload). */
__attribute__((warn_unused_result)) int sandbox_lookup(struct sandboxes *sbx, const char *id,
                                                       const char *tenant, const char *sub,
                                                       struct sandbox_rec *ret_rec);

/* Commits cs for the sandbox whose record (read under its exclusive lock) is rec; rec->version,
 * size_bytes, last_used_ms and cwd are updated, what the commit left unreferenced is collected
 * (its space is reusable when this returns), then the observers are told. Fails like
 * store_commit (-ERR_QUOTA with the quota in the details, -ERR_BUSY for -ESTALE, 400 for a
 * reserved path, ...) and then nothing changed and what cs stored is discarded. */
__attribute__((warn_unused_result)) int
sandbox_commit(struct sandboxes *sbx, struct sandbox_rec *rec, const struct changeset *cs);

/* sandbox_commit in two steps, for a caller that answers its client in between: the commit
 * (rec updated, nothing told) and then, before the sandbox lock is released, the observers'
 * call with the same change set and the version the commit started from (upper_dir: see
 * struct sandbox_commit_info). An exec makes the second step after its reply. */
__attribute__((warn_unused_result)) int
sandbox_commit_untold(struct sandboxes *sbx, struct sandbox_rec *rec, const struct changeset *cs);
void sandbox_tell_commit(struct sandboxes *sbx, const char *sandbox_id, int64_t old_version,
                         int64_t new_version, const struct changeset *cs, const char *upper_dir);

/* The change set will not be committed (its commit failed, or it was built and abandoned):
 * reclaims the contents it stored (store_discard). Keeps this thread's error message. */
void sandbox_discard(struct sandboxes *sbx, const struct changeset *cs);

/* Resolves path inside the sandbox, following symlinks of every intermediate segment, and of
 * the last one when follow_last (at most 40 links, else -ELOOP). Symlinks resolve against the
 * sandbox root, never the host. On success *ret_path is the resolved path and ret_meta (if not
 * NULL) its row. -ENOENT when the final node is missing: *ret_path still receives where it would
 * be (so a write can create it) if every parent exists; -ENOTDIR when a parent is not a directory.
 * *ret_path is malloc'd and set on 0 and on the -ENOENT case with existing parent (else NULL). */
__attribute__((warn_unused_result)) int sandbox_resolve(struct sandboxes *sbx,
                                                        const char *sandbox_id, const char *path,
                                                        bool follow_last, char **ret_path,
                                                        struct file_meta *ret_meta);

/* sandbox_resolve in the tree of `version` (< 0: the current tree; else the caller holds the
 * sandbox's lock, and -ERR_VERSION_NOT_FOUND when that version is not readable). */
__attribute__((warn_unused_result)) int
sandbox_resolve_at(struct sandboxes *sbx, const char *sandbox_id, int64_t version, const char *path,
                   bool follow_last, char **ret_path, struct file_meta *ret_meta);

/* Stores data[0..len) as content and appends a PUT of a regular file at path (mode, mtime now)
 * to cs. */
__attribute__((warn_unused_result)) int sandbox_put_bytes(struct sandboxes *sbx,
                                                          struct changeset *cs, const char *path,
                                                          const void *data, size_t len,
                                                          uint32_t mode);

/* Appends the tree every sandbox starts with to cs: SANDBOX_HOME (the start cwd) and /tmp (1777).
 * -ENOMEM. */
__attribute__((warn_unused_result)) int sandbox_add_skeleton(struct changeset *cs);

/* Marks the sandbox used now (lastUsedAt), at most about once a second per sandbox. */
void sandbox_touch(struct sandboxes *sbx, const char *sandbox_id);
/* Sets the sandbox's network (whether egress is on, and its own policy JSON or NULL) for its
 * next exec: no commit, no new version. -ERR_SANDBOX_NOT_FOUND when missing or not the
 * owner's. */
__attribute__((warn_unused_result)) int sandbox_set_network(struct sandboxes *sbx, const char *id,
                                                            const char *tenant, const char *sub,
                                                            bool on, const char *policy_json);

/* Creates the sandbox `rec` (id, owner, name, env_json, flags, cwd, created_ms; the rest is
 * ignored) with `initial` as its first version, reads it back into *ret_created (when not
 * NULL; the caller releases it) and tells the observers (old_version -1). Refuses reserved
 * paths (400), a tree over the quota (-ERR_QUOTA), an owner at MAX_SANDBOXES_PER_OWNER
 * (-ERR_SANDBOX_LIMIT), each with the setting in the details; -EEXIST when the id is taken; on
 * those failures what `initial` stored is discarded. A store error reading the new sandbox back
 * is returned as it is (the sandbox exists; observers hear of it at its next commit). */
__attribute__((warn_unused_result)) int sandbox_create(struct sandboxes *sbx,
                                                       const struct sandbox_rec *rec,
                                                       const struct changeset *initial,
                                                       struct sandbox_rec *ret_created);

/* Deletes the sandbox owned by (tenant, sub) (NULLs: any owner), whose exclusive lock the caller
 * holds, with its files and commit log, then tells the observers. -ERR_SANDBOX_NOT_FOUND when
 * it is missing or foreign. */
__attribute__((warn_unused_result)) int sandbox_delete(struct sandboxes *sbx, const char *id,
                                                       const char *tenant, const char *sub);

#endif

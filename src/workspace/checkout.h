/*
 * checkout — per-sandbox materialised trees on local disk, the read-only lower layer of execs.
 *
 * Layout under <data>/checkouts:
 *   <id>/tree          the sandbox's tree: sandbox path "/a/b" is <id>/tree/a/b
 *   <id>/tag           "the tree is complete and reflects version N" (written atomically, last)
 *   <id>/build-<rnd>   a tree being built (never valid; removed at start)
 *   .trash-<rnd>       a tree being deleted by a background thread (or at the next start)
 * A checkout without a tag is invalid: every operation that changes a tree removes the tag
 * first and writes it back only when the tree is coherent again, so a crash at any point leaves
 * either a valid tree or an untagged one that is dropped at the next start. Tags also record the
 * host's boot id: after a reboot (possible loss of unsynced data) every checkout is rebuilt.
 *
 * Every node of a tree is owned by the uid/gid given to checkouts_new (the host identity the
 * jail maps the sandbox user to: the exec engine passes SANDBOX_HOST_UID from jail/ids.h; this
 * module knows nothing of the jail) and has the mode and mtime of its store row; the tree root,
 * which has no row, is host root's with mode 0755, like the upper directory whose attributes the
 * jail's `/` shows. Trees are built and changed only with *at() calls relative to directory fds and
 * never follow a symlink (openat2 RESOLVE_NO_SYMLINKS, O_NOFOLLOW, AT_SYMLINK_NOFOLLOW), so a
 * symlink a sandbox made cannot redirect a host write.
 *
 * SQL is the source of truth: whenever a tree cannot be kept coherent it is invalidated and the
 * next acquire rebuilds it from the store.
 *
 * Disk budget: each checkout's size (bytes of its files) is tracked; when the total passes the
 * budget, least-recently-used checkouts that nobody uses are deleted.
 *
 * Threads: a rebuild creates files on up to 4 threads (bounded by the CPUs); the cache owns one
 * background thread that deletes trash, so replacing or evicting a tree never waits for its
 * deletion.
 *
 * The caller keeps the tree unchanged while it is acquired (it is an overlay lower layer) except
 * through checkout_apply*, which an exec's own commit calls while still holding its acquire.
 *
 * Thread-safety: all functions may be called from any thread. Calls for different sandboxes run
 * concurrently. For one sandbox the caller serialises writers against everything else (the
 * sandbox lock): checkout_apply*, checkout_invalidate and checkout_remove run under the exclusive
 * lock; several checkout_acquire of the same version may run concurrently under the shared lock
 * (the first builds, the others wait for it and share the tree).
 */
#ifndef SQLFS_WORKSPACE_CHECKOUT_H
#define SQLFS_WORKSPACE_CHECKOUT_H

#include <stdint.h>
#include <sys/types.h>

#include "store/changeset.h"
#include "store/store.h"

struct checkouts;

/* A tree behind by more changes than this is rebuilt rather than refreshed. */
#define CHECKOUT_REFRESH_MAX_CHANGES 4096

/* Statistics of the whole cache (for metrics and tests). */
struct checkout_stats {
    int64_t entries;       /* checkouts on disk (valid or being built) */
    int64_t bytes;         /* their tracked size */
    int64_t builds;        /* full rebuilds from the store since start */
    int64_t refreshes;     /* trees brought forward from the commit log since start */
    int64_t evictions;     /* checkouts deleted to stay within the budget */
    int64_t last_build_ms; /* duration of the latest rebuild */
};

/* Opens the cache at <data_dir>/checkouts (created 0700 if missing), drops crash leftovers
 * (untagged checkouts, build dirs, trash, tags of another boot) and adopts the valid ones.
 * `st` must outlive the cache. budget_bytes <= 0: unlimited. Every node the cache creates in a
 * tree (all but the tree root) is owned by uid/gid. */
__attribute__((warn_unused_result)) int checkouts_new(const char *data_dir, struct store *st,
                                                      int64_t budget_bytes, uid_t uid, gid_t gid,
                                                      struct checkouts **ret);
/* Calls fn(ud, sandbox_id) for each checkout evicted to meet the budget, once its tree is in the
 * trash: whoever still holds that tree open (an idle overlay over it) lets it go, so that its
 * blocks are freed. Set once, before the cache is used. fn runs with the cache's lock held: it
 * may discard (checkout_discard) but call nothing else of this module. */
void checkouts_on_evict(struct checkouts *cos, void (*fn)(void *ud, const char *sandbox_id),
                        void *ud);
/* Frees the cache (not the trees on disk); NULL-safe. Nothing may be acquired. */
void checkouts_free(struct checkouts *cos);

/* Returns the path of a tree reflecting `version` of the sandbox in *ret_tree_path (malloc'd,
 * caller frees), building it from the store when missing, invalid or at another version. A
 * tree at an older version (another server committed since) is brought forward instead: the
 * paths the commit log names since its version (at most CHECKOUT_REFRESH_MAX_CHANGES changes)
 * are read from the store and applied as checkout_apply does; when the log cannot tell, or
 * the refresh fails, the tree is rebuilt. The
 * checkout is pinned until checkout_release: it is never evicted and never rebuilt meanwhile.
 * -ERR_BUSY if a different version is asked while the tree is acquired by someone else; store
 * errors; -ENOSPC. On failure nothing stays acquired. */
__attribute__((warn_unused_result)) int checkout_acquire(struct checkouts *cos,
                                                         const char *sandbox_id, int64_t version,
                                                         char **ret_tree_path);
/* Ends one checkout_acquire; may evict other checkouts to meet the budget. */
void checkout_release(struct checkouts *cos, const char *sandbox_id);

/* The most changes of a file-API commit checkout_apply writes into the checkout at once. A larger
 * change set (an archive, a restore) leaves the checkout at the version it reflects, for the
 * next exec's acquire to bring forward from the commit log or rebuild: the request that
 * committed it does not wait for thousands of files to be written to a cache. */
#define CHECKOUT_APPLY_EAGER_MAX 256

/* Keeps the checkout coherent after a file-API commit took the sandbox from old_version to
 * new_version with change set `cs`: applies its PUTs (content streamed from the store) and
 * DELETEs, then retags new_version; a change set of more than CHECKOUT_APPLY_EAGER_MAX changes
 * is left to the next acquire (0). When there is no checkout there is nothing to do (0). If the
 * checkout is not at old_version or anything fails, it is invalidated (rebuilt at the next
 * acquire) and the error is returned; the commit itself stands, so callers only log it. */
__attribute__((warn_unused_result)) int checkout_apply(struct checkouts *cos,
                                                       const char *sandbox_id, int64_t old_version,
                                                       int64_t new_version,
                                                       const struct changeset *cs);

/* Like checkout_apply after an exec commit: `cs` is the diff of `upper_dir` (workspace/diff.h),
 * which must be unmounted and on the same filesystem as the checkouts. New and changed files are
 * moved from the upper into the tree by rename (falling back to the store's content), deletions
 * and opaque directories are applied, the tree is retagged. The upper is left for the caller to
 * discard. Same failure rule as checkout_apply. */
__attribute__((warn_unused_result)) int
checkout_apply_upper(struct checkouts *cos, const char *sandbox_id, int64_t old_version,
                     int64_t new_version, const char *upper_dir, const struct changeset *cs);

/* Marks the checkout invalid (the next acquire rebuilds it). */
void checkout_invalidate(struct checkouts *cos, const char *sandbox_id);

/* Deletes the checkout from disk (sandbox deleted). 0 when there was none. */
__attribute__((warn_unused_result)) int checkout_remove(struct checkouts *cos,
                                                        const char *sandbox_id);

void checkouts_get_stats(struct checkouts *cos, struct checkout_stats *ret);

/* Discards the directory tree dirfd/`name`, which must be on the same filesystem as the
 * checkouts (e.g. an exec's upper/work dirs): renames it into the checkouts directory at once and
 * removes it on the background thread (or at the next start), so callers do not wait for one
 * unlink per node. `close_fd` (or -1) is a descriptor the background thread closes first: an
 * exec's detached overlay mount over that upper, whose final close unmounts it (also off the
 * caller's path). It is consumed whatever the result. 0, 1 when name does not exist,
 * negative errno (nothing moved: the caller may remove it itself). Thread-safe. */
__attribute__((warn_unused_result)) int checkout_discard(struct checkouts *cos, int dirfd,
                                                         const char *name, int close_fd);

#endif

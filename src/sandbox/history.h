/*
 * history — the sandbox layer's part of sandbox history (store.h: History): restoring a sandbox
 * to one of its versions, forking a sandbox from one of its versions, and the two trees of a
 * diff. Reads of past versions themselves are the store's (store_list_at, store_stat_at,
 * sandbox_resolve_at).
 *
 * Locks: the caller holds the sandbox's lock, exclusive for a restore (it commits) and shared for
 * a fork or a diff (they read; pruning, which only commits do, is kept out).
 */
#ifndef SQLFS_SANDBOX_HISTORY_H
#define SQLFS_SANDBOX_HISTORY_H

#include <stdint.h>

#include "sandbox/sandbox.h"

/* Makes the tree and stored cwd of the sandbox whose record (read under its exclusive lock) is
 * rec equal to those of its version `version`, as one new commit (kind "restore", info_json
 * {"restoredFrom": version} plus `snapshot` when given), through sandbox_commit: history is
 * kept, so a restore is undone like any commit. rec is updated. Fails like sandbox_commit, and
 * -ERR_VERSION_NOT_FOUND. Memory: the two trees' metadata (not their contents). */
__attribute__((warn_unused_result)) int sandbox_restore(struct sandboxes *sbx,
                                                        struct sandbox_rec *rec, int64_t version,
                                                        const char *snapshot);

/* Creates a sandbox owned by src's owner, with src's env and flags and the name `name` (NULL:
 * src's), whose first version (kind "fork") is src's tree and cwd at `version`; the rows are
 * copied, the contents shared. Its record into *ret (sandbox_rec_release). -ERR_VERSION_NOT_FOUND,
 * -ERR_QUOTA, -ERR_SANDBOX_LIMIT (with the setting in the details). */
__attribute__((warn_unused_result)) int sandbox_fork(struct sandboxes *sbx,
                                                     const struct sandbox_rec *src, int64_t version,
                                                     const char *name, struct sandbox_rec *ret);

/* One path of a diff: how it differs and its row at `to` (added, modified) or at `from`
 * (deleted). */
typedef int (*sandbox_diff_cb)(enum path_change_kind change, const struct file_meta *meta,
                               void *userdata);

/* Calls cb in path order for each path whose row differs between versions `from` and `to` of
 * the sandbox (kind, mode, size, content, target or, for directories, mode only: a directory's
 * mtime alone is not a difference). -ERR_VERSION_NOT_FOUND. Memory: the two trees' metadata. */
__attribute__((warn_unused_result)) int sandbox_diff(struct sandboxes *sbx, const char *sandbox_id,
                                                     int64_t from, int64_t to, sandbox_diff_cb cb,
                                                     void *userdata);

#endif

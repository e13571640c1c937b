/*
 * sandbox — the service layer between routes and the store: opening a sandbox for a caller
 * (ownership + lock), the one commit path of every mutation, symlink resolution inside the
 * sandbox, and the wire shape of a sandbox record.
 *
 * The commit path (DESIGN.md): every mutation builds a change set and calls sandbox_commit()
 * while holding the sandbox's exclusive lock. It commits to SQL (fenced by the version read under
 * the lock, bounded by the quota) and then tells app->after_commit so caches follow.
 *
 * Thread-safe; per-sandbox ordering comes from the lock the caller holds.
 */
#ifndef SQLFS_SANDBOX_SANDBOX_H
#define SQLFS_SANDBOX_SANDBOX_H

#include <jansson.h>
#include <stdbool.h>

#include "app.h"
#include "sandbox/lock.h"
#include "store/store.h"

/* Checks the owner (NULL tenant/sub: any) from the record, without the lock, then takes the
 * sandbox's lock in `mode` and reads the record again under it. -ERR_SANDBOX_NOT_FOUND when
 * missing or foreign: a foreign sandbox never waits for its lock, so it is answered like a
 * missing one, in the same time; -ERR_SANDBOX_NOT_FOUND also when it was deleted while we
 * waited. -ERR_LOCK_TIMEOUT (owner only). On success the caller owns *ret_lock and must
 * release it. */
__attribute__((warn_unused_result)) int sandbox_open(struct app *app, const char *id,
                                                     const char *tenant, const char *sub,
                                                     enum lock_mode mode,
                                                     struct sandbox_rec *ret_rec,
                                                     struct lock_ref **ret_lock);

/* Reads the record without locking (for existence checks before a long upload). */
__attribute__((warn_unused_result)) int sandbox_lookup(struct app *app, const char *id,
                                                       const char *tenant, const char *sub,
                                                       struct sandbox_rec *ret_rec);

/* Commits cs for the sandbox whose record (read under its exclusive lock) is rec; rec->version,
 * size_bytes, last_used_ms and cwd are updated, then app->after_commit is told. Fails like
 * store_commit (-ERR_QUOTA with the quota in the details, -ESTALE, ...) and then nothing
 * changed. */
__attribute__((warn_unused_result)) int sandbox_commit(struct app *app, struct sandbox_rec *rec,
                                                       const struct changeset *cs);

/* sandbox_commit in two steps, for a caller that answers its client in between: the commit
 * (rec updated, nothing told) and then, before the sandbox lock is released, the
 * app->after_commit call with the same change set and the version the commit started from
 * (caches follow: the exec's checkout apply, from `upper_dir`, the overlay upper the change set
 * was read from; NULL otherwise). An exec makes the second step after its reply. */
__attribute__((warn_unused_result)) int
sandbox_commit_untold(struct app *app, struct sandbox_rec *rec, const struct changeset *cs);
void sandbox_tell_commit(struct app *app, const char *sandbox_id, int64_t old_version,
                         int64_t new_version, const struct changeset *cs, const char *upper_dir);

/* The change set will not be committed (its commit failed, or it was built and abandoned):
 * reclaims the contents it stored (store_discard). Keeps this thread's error message. */
void sandbox_discard(struct app *app, const struct changeset *cs);

/* Resolves path inside the sandbox, following symlinks of every intermediate segment, and of
 * the last one when follow_last (at most 40 links, else -ELOOP). Symlinks resolve against the
 * sandbox root, never the host. On success *ret_path is the resolved path and ret_meta (if not
 * NULL) its row. -ENOENT when the final node is missing: *ret_path still receives where it would
 * be (so a write can create it) if every parent exists; -ENOTDIR when a parent is not a directory.
 * *ret_path is malloc'd and set on 0 and on the -ENOENT case with existing parent (else NULL). */
__attribute__((warn_unused_result)) int sandbox_resolve(struct app *app, const char *sandbox_id,
                                                        const char *path, bool follow_last,
                                                        char **ret_path,
                                                        struct file_meta *ret_meta);

/* Stores data[0..len) as content and appends a PUT of a regular file at path (mode, mtime now)
 * to cs. */
__attribute__((warn_unused_result)) int sandbox_put_bytes(struct app *app, struct changeset *cs,
                                                          const char *path, const void *data,
                                                          size_t len, uint32_t mode);

/* Appends the tree every sandbox starts with to cs: SANDBOX_HOME (the start cwd) and /tmp (1777).
 * -ENOMEM. */
__attribute__((warn_unused_result)) int sandbox_add_skeleton(struct changeset *cs);

/* Marks the sandbox used now (lastUsedAt), at most about once a second per sandbox. */
void sandbox_touch(struct app *app, const char *sandbox_id);

/* The record as the API returns it (new reference; NULL when out of memory). */
json_t *sandbox_rec_json(const struct sandbox_rec *rec);

/* Milliseconds precision ISO time of a file's mtime. */
json_t *sandbox_mtime_json(int64_t mtime_ns);

#endif

/*
 * store — the SQL source of truth: sandboxes, their path-keyed file rows, content-addressed
 * chunked content and the commit log. One interface (struct store_ops, below), one or more
 * engines behind it: SQLite in store/sqlite/. Nothing above this header knows SQL.
 *
 * Content model: a file's bytes are split into chunks of at most STORE_CHUNK_SIZE bytes, each
 * stored once by its SHA-256. A content id is the SHA-256 of the file's ordered chunk hashes and
 * size, so equal files share one content row whatever sandbox holds them. Content is written
 * before the commit that references it (content writers stream chunk by chunk: memory stays at
 * one chunk), and is pinned while being written so that garbage collection never removes it.
 *
 * Versions: each sandbox has a `version` bumped by every commit. A commit may name the version it
 * was built from (`expect_version`); if the sandbox moved on, it fails with -ESTALE and changes
 * nothing (fencing of stale writers).
 *
 * Ownership lookups take (tenant, sub): a sandbox owned by someone else is reported exactly like
 * a missing one (-ENOENT). Internal callers pass NULL owner to skip the check.
 *
 * Thread-safety: every function may be called from any thread concurrently. Readers and content
 * readers see committed data only. Writers are serialised by the engine. Per-sandbox ordering
 * (e.g. check-then-commit) is the caller's job: see sandbox/lock.h.
 *
 * Errors: negative errno or -ERR_* (util/err.h). -ENOSPC when the disk is full, -EIO otherwise.
 */
#ifndef SQLFS_STORE_STORE_H
#define SQLFS_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/changeset.h"
#include "util/rand.h"

#define STORE_CHUNK_SIZE (1024 * 1024)

struct store;
struct content_writer;
struct content_reader;
struct content_batch;

/* One sandbox row. Strings are malloc'd and owned by the record. */
struct sandbox_rec {
    char id[UUID_STR_LEN]; /* lowercase UUIDv4 */
    char *tenant;          /* owner tenant */
    char *sub;             /* owner subject */
    char *name;            /* may be NULL */
    char *env_json;        /* JSON object of string→string, never NULL after a read ("{}") */
    bool python;           /* runtime flags */
    bool javascript;
    bool network;
    char *cwd;             /* stored start directory of execs */
    int64_t created_ms;    /* epoch ms */
    int64_t last_used_ms;  /* epoch ms; 0 = never used */
    int64_t version;       /* bumped by every commit */
    int64_t size_bytes;    /* sum of file sizes */
    int64_t file_count;    /* number of rows (files, dirs, symlinks) */
};

void sandbox_rec_release(struct sandbox_rec *r);

struct commit_opts {
    int64_t expect_version; /* -1: do not check */
    int64_t quota_bytes;    /* 0: unlimited; the sandbox's size after the commit must fit,
                               unless the commit does not grow it (an over-quota sandbox can
                               always be cleaned up) */
    int64_t now_ms;         /* timestamp of the commit (also lastUsedAt) */
    int64_t max_owner_sandboxes; /* store_sandbox_create only: the sandboxes the owner may have,
                                  * this one included (0: no limit), counted in the same
                                  * transaction as the insert */
};

struct commit_result {
    int64_t version;    /* the sandbox's version after the commit */
    int64_t size_bytes; /* the sandbox's size after the commit */
    int64_t commit_id;  /* row id in the commit log */
};

struct gc_stats {
    int64_t contents_deleted;
    int64_t chunks_deleted;
    int64_t bytes_freed;
};

/* Called once per sandbox / file; a non-zero return stops the walk and is returned. The record
 * or file_meta (and its strings) is valid during the call only. The callback may call other
 * store functions. */
typedef int (*store_sandbox_cb)(const struct sandbox_rec *rec, void *userdata);
typedef int (*store_file_cb)(const struct file_meta *meta, void *userdata);

struct store_ops {
    const char *name;
    void (*close)(struct store *st);
    int (*check)(struct store *st);
    /* Bytes of memory the engine holds (page caches, statements); -1 if it cannot tell. */
    int64_t (*memory_bytes)(struct store *st);
    int (*sandbox_create)(struct store *st, const struct sandbox_rec *rec,
                          const struct changeset *initial, const struct commit_opts *opts);
    int (*sandbox_get)(struct store *st, const char *id, const char *tenant, const char *sub,
                       struct sandbox_rec *ret);
    int (*sandbox_list)(struct store *st, const char *tenant, const char *sub,
                        store_sandbox_cb cb, void *userdata);
    int (*sandbox_delete)(struct store *st, const char *id, const char *tenant, const char *sub);
    int (*sandbox_touch)(struct store *st, const char *id, int64_t now_ms);
    int (*stat)(struct store *st, const char *sandbox_id, const char *path,
                struct file_meta *ret);
    int (*list)(struct store *st, const char *sandbox_id, const char *prefix, int max_depth,
                store_file_cb cb, void *userdata);
    int (*has_children)(struct store *st, const char *sandbox_id, const char *path);
    int (*content_begin)(struct store *st, struct content_writer **ret);
    int (*content_write)(struct content_writer *w, const void *data, size_t len);
    int (*content_finish)(struct content_writer *w, uint8_t ret_id[CONTENT_ID_LEN],
                          int64_t *ret_size);
    void (*content_abort)(struct content_writer *w);
    /* optional (NULL: finishes are not batched) */
    int (*content_batch_new)(struct store *st, struct content_batch **ret);
    int (*content_finish_in)(struct content_batch *b, struct content_writer *w,
                             uint8_t ret_id[CONTENT_ID_LEN], int64_t *ret_size);
    int (*content_batch_flush)(struct content_batch *b);
    void (*content_batch_free)(struct content_batch *b);
    int (*content_open)(struct store *st, const uint8_t id[CONTENT_ID_LEN],
                        struct content_reader **ret);
    int (*content_read)(struct content_reader *r, void *buf, size_t cap, size_t *ret_got);
    int (*content_seek)(struct content_reader *r, int64_t offset);
    void (*content_close)(struct content_reader *r);
    int (*commit)(struct store *st, const char *sandbox_id, const struct changeset *cs,
                  const struct commit_opts *opts, struct commit_result *ret);
    int (*gc)(struct store *st, struct gc_stats *ret);
    int (*discard)(struct store *st, const struct changeset *cs);
};

/* Every engine's handle starts with this. */
struct store {
    const struct store_ops *ops;
};

/* Opens (creating if needed) the SQLite store at `path`, applying schema migrations and removing
 * content pins left by a previous crash. */
__attribute__((warn_unused_result)) int store_open_sqlite(const char *path, struct store **ret);

/* Closes the store; NULL-safe. All readers and writers must be closed first. */
static inline void store_close(struct store *st)
{
    if (st)
        st->ops->close(st);
}

/* 0 when the store answers a trivial query. */
static inline int store_check(struct store *st)
{
    return st->ops->check(st);
}

/* Bytes of memory the store's engine holds now (bounded caches: what the server's RSS grows by
 * as the database grows, not per sandbox); -1 if the engine cannot tell. */
static inline int64_t store_memory_bytes(struct store *st)
{
    return st->ops->memory_bytes ? st->ops->memory_bytes(st) : -1;
}

/* Inserts the sandbox row and commits `initial` (may be NULL) as its first version, in one
 * transaction. -EEXIST if the id is taken; -ERR_SANDBOX_LIMIT when the owner has
 * opts->max_owner_sandboxes sandboxes already (concurrent creates cannot both pass the limit). */
__attribute__((warn_unused_result)) static inline int
store_sandbox_create(struct store *st, const struct sandbox_rec *rec,
                     const struct changeset *initial, const struct commit_opts *opts)
{
    return st->ops->sandbox_create(st, rec, initial, opts);
}

/* Reads one sandbox; -ENOENT if missing or not owned by (tenant, sub) (NULLs: any owner). */
__attribute__((warn_unused_result)) static inline int
store_sandbox_get(struct store *st, const char *id, const char *tenant, const char *sub,
                  struct sandbox_rec *ret)
{
    return st->ops->sandbox_get(st, id, tenant, sub, ret);
}

/* Walks the owner's sandboxes, newest first (creations within one millisecond in creation order). */
__attribute__((warn_unused_result)) static inline int
store_sandbox_list(struct store *st, const char *tenant, const char *sub, store_sandbox_cb cb,
                   void *userdata)
{
    return st->ops->sandbox_list(st, tenant, sub, cb, userdata);
}

/* Deletes the sandbox, its files and commit log, then collects unreferenced content.
 * -ENOENT if missing or not owned. */
__attribute__((warn_unused_result)) static inline int
store_sandbox_delete(struct store *st, const char *id, const char *tenant, const char *sub)
{
    return st->ops->sandbox_delete(st, id, tenant, sub);
}

/* Sets lastUsedAt. */
__attribute__((warn_unused_result)) static inline int
store_sandbox_touch(struct store *st, const char *id, int64_t now_ms)
{
    return st->ops->sandbox_touch(st, id, now_ms);
}

/* The row at path (no symlink following); -ENOENT. The root "/" has no row: it is reported as
 * a 0755 directory while the sandbox exists. ret's strings are owned: file_meta_release. */
__attribute__((warn_unused_result)) static inline int
store_stat(struct store *st, const char *sandbox_id, const char *path, struct file_meta *ret)
{
    return st->ops->stat(st, sandbox_id, path, ret);
}

/* Walks the rows strictly below `prefix` in path order (memcmp byte order: a directory always
 * comes before its contents), at most max_depth levels below it (<= 0: unlimited). The root "/"
 * is implicit: it has no row, and listing "/" walks the whole tree. -ENOENT when the sandbox
 * does not exist. */
__attribute__((warn_unused_result)) static inline int
store_list(struct store *st, const char *sandbox_id, const char *prefix, int max_depth,
           store_file_cb cb, void *userdata)
{
    return st->ops->list(st, sandbox_id, prefix, max_depth, cb, userdata);
}

/* 1 when some row lies below path, 0 when none, negative on error (-ENOENT: no sandbox). */
__attribute__((warn_unused_result)) static inline int
store_has_children(struct store *st, const char *sandbox_id, const char *path)
{
    return st->ops->has_children(st, sandbox_id, path);
}

/* Content writers: begin, write any number of times, then finish (which frees the writer
 * whatever it returns, and yields the content id and size; the content stays pinned until a
 * commit references it, an hour passes, or the store restarts) or abort. After a failed write
 * the writer can only be aborted (finish fails too). An empty content finishes with size 0 and
 * an all-zero id. */
__attribute__((warn_unused_result)) static inline int
store_content_begin(struct store *st, struct content_writer **ret)
{
    return st->ops->content_begin(st, ret);
}
__attribute__((warn_unused_result)) static inline int
store_content_write(struct store *st, struct content_writer *w, const void *data, size_t len)
{
    return st->ops->content_write(w, data, len);
}
__attribute__((warn_unused_result)) static inline int
store_content_finish(struct store *st, struct content_writer *w, uint8_t ret_id[CONTENT_ID_LEN],
                     int64_t *ret_size)
{
    return st->ops->content_finish(w, ret_id, ret_size);
}
static inline void store_content_abort(struct store *st, struct content_writer *w)
{
    if (w)
        st->ops->content_abort(w);
}

/* Content batches, for many small contents in a row (archive ingest): store_content_finish_in()
 * is store_content_finish() except that the content is stored and pinned only by a later flush
 * (the batch flushes itself when it holds a few MiB), with a few transactions for many contents.
 * Until store_content_batch_flush() has returned 0, a content finished into the batch may not be
 * committed; store_content_batch_free() discards what was not flushed. After a failed flush the
 * batch's unflushed contents are gone and every later call fails. Memory: the batch holds at most
 * a few MiB. A batch is used by one thread at a time. Engines without batches give a NULL batch,
 * with which finish_in is a plain finish and flush does nothing. */
__attribute__((warn_unused_result)) static inline int
store_content_batch_new(struct store *st, struct content_batch **ret)
{
    *ret = NULL;
    return st->ops->content_batch_new ? st->ops->content_batch_new(st, ret) : 0;
}
__attribute__((warn_unused_result)) static inline int
store_content_finish_in(struct store *st, struct content_batch *b, struct content_writer *w,
                        uint8_t ret_id[CONTENT_ID_LEN], int64_t *ret_size)
{
    return b ? st->ops->content_finish_in(b, w, ret_id, ret_size)
             : st->ops->content_finish(w, ret_id, ret_size);
}
__attribute__((warn_unused_result)) static inline int
store_content_batch_flush(struct store *st, struct content_batch *b)
{
    return b ? st->ops->content_batch_flush(b) : 0;
}
static inline void store_content_batch_free(struct store *st, struct content_batch *b)
{
    if (b)
        st->ops->content_batch_free(b);
}

/* Content readers stream a content's bytes; read returns *ret_got == 0 at the end. The caller
 * keeps the content referenced while reading (e.g. under the sandbox read lock): content
 * collected meanwhile reads as -EIO. A reader is used by one thread at a time. The all-zero id
 * opens as an empty content. */
__attribute__((warn_unused_result)) static inline int
store_content_open(struct store *st, const uint8_t id[CONTENT_ID_LEN], struct content_reader **ret)
{
    return st->ops->content_open(st, id, ret);
}
__attribute__((warn_unused_result)) static inline int
store_content_read(struct store *st, struct content_reader *r, void *buf, size_t cap,
                   size_t *ret_got)
{
    return st->ops->content_read(r, buf, cap, ret_got);
}
__attribute__((warn_unused_result)) static inline int
store_content_seek(struct store *st, struct content_reader *r, int64_t offset)
{
    return st->ops->content_seek(r, offset);
}
static inline void store_content_close(struct store *st, struct content_reader *r)
{
    if (r)
        st->ops->content_close(r);
}

/* Applies the change set in one transaction (rows, size accounting, cwd, version + 1, a commit
 * log row). On any failure nothing changes: -ESTALE (version moved), -ERR_QUOTA, -ENOENT (a
 * parent is missing and create_parents is off, or the sandbox is gone), -ENOTDIR, -ENOSPC, -EIO.
 * An empty change set still bumps the version and logs the commit (and may set cwd). */
__attribute__((warn_unused_result)) static inline int
store_commit(struct store *st, const char *sandbox_id, const struct changeset *cs,
             const struct commit_opts *opts, struct commit_result *ret)
{
    return st->ops->commit(st, sandbox_id, cs, opts, ret);
}

/* Removes contents no file references and no writer pins, then chunks no content uses. */
__attribute__((warn_unused_result)) static inline int store_gc(struct store *st,
                                                               struct gc_stats *ret)
{
    return st->ops->gc(st, ret);
}

/* The change set will never be committed (its commit failed, e.g. on the quota): gives back
 * the pins its contents got when they were finished, and removes at once every content (and
 * chunk) of it that nothing else references, so a refused write leaves nothing behind. */
__attribute__((warn_unused_result)) static inline int store_discard(struct store *st,
                                                                    const struct changeset *cs)
{
    return st->ops->discard ? st->ops->discard(st, cs) : 0;
}

#endif

/*
 * ingest — turns an uploaded archive (or a JSON map of base64 files) into a change set.
 *
 * Archive ingest is streaming and push-style: the HTTP layer hands over body pieces with
 * ingest_feed() as they arrive. A worker thread owned by the ingest runs libarchive with a read
 * callback that pulls from a bounded queue (INGEST_QUEUE_BYTES); when the queue is full,
 * ingest_feed() blocks until the worker catches up, so memory does not grow with the archive.
 * A gzip, bzip2, xz or zstd body is decompressed on a second thread of the ingest, which hands
 * the tar stream to the worker through a second queue of the same size (parsing, hashing and
 * storing then overlap with decompression). The worker finishes contents into a store content
 * batch (few transactions for many small files), flushed before the worker reports success.
 * Formats are detected from the bytes: tar (ustar, pax, GNU, v7) raw or compressed with gzip,
 * bzip2, xz, lzma or zstd, read as a stream; and zip. Zip keeps modes and symlinks only in its
 * central directory at the end, so a zip body (recognised by its "PK" signature) is first spooled
 * to an unlinked temporary file under tmp_dir (at most max_bytes * 9/8 + 64 MiB, else
 * -ERR_PAYLOAD_TOO_LARGE) and then read seekably. File contents go chunk by chunk into store
 * content writers; the change set is built in memory from metadata only.
 *
 * Rules (all input is hostile):
 *  - Every entry name is joined to basePath with path_join_strict(): a leading "./" is dropped,
 *    absolute names, "..", "." inside and empty segments are refused. Entries named "." or "./"
 *    (tar -C dir .) stand for basePath itself and are skipped.
 *  - Symlinks are kept verbatim whatever their target (the jail and the file API resolve them
 *    inside the sandbox root), but an entry whose path goes through a symlink created earlier in
 *    the same archive is refused ("symlink, then write through it").
 *  - Hardlinks become regular files sharing the content of their target (same content id); the
 *    target must be a regular file appearing earlier in the archive.
 *  - Devices, fifos and sockets are refused. setuid/setgid bits are dropped (modes & 01777).
 *  - Limits: more than max_files entries (of any kind) → -ERR_TOO_MANY_ENTRIES; more than
 *    max_bytes uncompressed file bytes → -ERR_PAYLOAD_TOO_LARGE; more than max_path_bytes of
 *    entry paths (basePath included) and symlink targets → -ERR_PAYLOAD_TOO_LARGE; each with a
 *    detail naming the limit ("MAX_INGEST_FILES=100000", "MAX_INGEST_BYTES=4294967296",
 *    "MAX_INGEST_PATH_BYTES=33554432"). Bytes are counted as they are decompressed (and declared
 *    sizes are checked up front), so a bomb stops early.
 *  - Memory: an entry's metadata stays in memory until the change set is built (it is moved
 *    there, not copied), so one ingest holds at most max_path_bytes of paths and targets plus
 *    a few hundred bytes per entry (at most max_files entries).
 *  - Duplicate paths: the last entry wins.
 *  - A corrupt, truncated or unrecognised archive → -ERR_INVALID_INPUT with libarchive's message.
 *    Two blind spots of libarchive: a tar cut exactly at an entry boundary reads as complete (the
 *    end-of-archive records are optional to it), and gzip's CRC is not checked. A body cut by a
 *    client disconnect never gets here: the HTTP layer aborts instead of finishing.
 *  - Every refusal is -ERR_INVALID_INPUT (or a limit error) naming the entry in err_detail(),
 *    and nothing at all reaches the caller's change set: the caller commits only on success.
 *    Content already written for a failed ingest is unreferenced and left to store_gc().
 *  Modes (permission bits) and mtimes (with nanoseconds where the format has them) are kept.
 *  An archive with no entries creates nothing (not even basePath).
 *
 * basePath must be known before the first byte: for multipart bodies the route must have seen
 * the `basePath` field before the `archive` part (or use the default); a basePath field arriving
 * after the archive part is a 400 decided by the route.
 *
 * Errors and messages: failures found by the worker thread are recorded in the ingest and
 * re-raised with err_set()/err_detail() on the thread that calls ingest_feed()/ingest_finish().
 *
 * Driving it from the HTTP layer (BODY_STREAM route):
 *   on_begin  resolve basePath (query, or the multipart field seen before the archive part),
 *             ingest_new(); raw bodies: any of application/x-tar, application/gzip,
 *             application/zip, application/octet-stream (the bytes decide the format).
 *   on_data   ingest_feed() with the body piece (multipart: from the MHD_PostProcessor iterator
 *             for key "archive"). On a negative return remember the error, stop feeding and
 *             discard the rest of the body.
 *   handler   ingest_finish() (also after a feed error: it re-raises the worker's error), then
 *             take the sandbox's exclusive lock and sandbox_commit() the change set; the contents
 *             stay pinned until then. Reply {"status":"ok","basePath","fileCount","bytes"}.
 *   on_done   if the request ended before the handler ran (client gone): ingest_abort().
 *
 * Thread-safety: one ingest is driven by one thread at a time (feed, then finish or abort); it
 * may be a different thread for each call (libmicrohttpd may switch threads between callbacks
 * only in thread-pool mode; any thread is fine). The store must be usable from the worker.
 */
#ifndef SQLFS_ARCHIVE_INGEST_H
#define SQLFS_ARCHIVE_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "store/changeset.h"
#include "store/store.h"

/* Bytes buffered between ingest_feed() and the worker at most. */
#define INGEST_QUEUE_BYTES (4u * 1024 * 1024)

struct ingest;

struct ingest_limits {
    int64_t max_files;      /* entries of any kind (MAX_INGEST_FILES); <= 0: unlimited */
    int64_t max_bytes;      /* uncompressed file bytes (MAX_INGEST_BYTES); <= 0: unlimited */
    const char *tmp_dir;    /* where a zip body is spooled (NULL: $TMPDIR, else /tmp); borrowed
                             * until ingest_new() returns (copied) */
    int64_t max_path_bytes; /* bytes of entry paths and symlink targets, the metadata held in
                             * memory (MAX_INGEST_PATH_BYTES); <= 0: unlimited */
    int64_t quota_bytes;    /* the sandbox's quota (SANDBOX_QUOTA_BYTES); <= 0: none. An archive
                             * whose files hold more can never be committed: it stops there
                             * with -ERR_QUOTA ("SANDBOX_QUOTA_BYTES=N") instead of being stored
                             * whole */
};

struct ingest_result {
    int64_t file_count; /* regular files (hardlinks included) in the change set */
    int64_t bytes;      /* their uncompressed bytes */
    char *base_path;    /* normalised basePath, malloc'd; release with ingest_result_release */
};

void ingest_result_release(struct ingest_result *r);

/* Starts an ingest into `base_path` (absolute; normalised here) and its worker thread.
 * -EINVAL for a bad base_path, -ENOMEM, -EAGAIN (no thread). */
__attribute__((warn_unused_result)) int ingest_new(struct store *st, const char *base_path,
                                                   const struct ingest_limits *lim,
                                                   struct ingest **ret);

/* Hands over the next `len` bytes of the archive; may block while the queue is full. Returns 0,
 * or the worker's error as soon as it has failed (with err_set() on this thread): the caller
 * should then stop feeding (it may keep draining the body and discard it) and call
 * ingest_finish() or ingest_abort(). Bytes fed after the archive's end are ignored. */
__attribute__((warn_unused_result)) int ingest_feed(struct ingest *ing, const void *data,
                                                    size_t len);

/* End of body: waits for the worker, then, on success only, appends the entries to cs (sets
 * cs->create_parents) and fills *ret. Always frees the ingest. On failure, cs and *ret are
 * untouched and the error is raised on this thread. */
__attribute__((warn_unused_result)) int ingest_finish(struct ingest *ing, struct changeset *cs,
                                                      struct ingest_result *ret);

/* Client gone or request failed elsewhere: stops the worker, discards everything, frees the
 * ingest. NULL-safe. */
void ingest_abort(struct ingest *ing);

/* POST .../ingest-files: `files` is the JSON object {"rel/path": "<base64>"}. Validates every
 * key (path_join_strict against base_path; a key that is also the parent of another key is bad)
 * and every value (a string, strict base64) first; any bad one → -ERR_INVALID_INPUT with one
 * err_detail() per bad key ("<key>: <reason>", up to the detail cap) and nothing stored. Over
 * max_files keys → -ERR_TOO_MANY_ENTRIES ("MAX_INGEST_FILES=N"), over max_bytes decoded bytes →
 * -ERR_PAYLOAD_TOO_LARGE ("MAX_INGEST_BYTES=N") (<= 0: unlimited). Then decodes each value
 * straight into a content writer (no second copy of the body) and appends files (0644, mtime now)
 * to cs with create_parents set. On failure cs and *ret are untouched. */
__attribute__((warn_unused_result)) int ingest_files_build(struct store *st, const char *base_path,
                                                           json_t *files, int64_t max_files,
                                                           int64_t max_bytes, struct changeset *cs,
                                                           struct ingest_result *ret);

#endif

/*
 * export — a sandbox subtree as a tar (optionally gzip-compressed) byte stream, pulled piece by
 * piece by the HTTP layer.
 *
 * export_open() lists the subtree's metadata (paths, kinds, modes, mtimes, content ids, link
 * targets: no file bytes) into memory; export_read() then produces the archive incrementally,
 * one header or one content chunk at a time, so memory stays at the metadata plus about one chunk
 * whatever the size of the files. Format: POSIX pax (restricted: plain ustar headers unless a long
 * path, a big file or a non-ASCII name needs a pax extension), so any tar reads it. Entries are
 * named relative to basePath ("src/a.c", directories "src/"), in path order (a directory comes
 * before its contents); modes, mtimes and symlinks (verbatim targets) are kept; owner is uid/gid
 * 1000 "user". gzip: a sequence of gzip members of about 1 MiB of tar each, compressed by
 * libdeflate at level EXPORT_GZIP_LEVEL (chosen for throughput, see export.c).
 *
 * basePath: a directory exports its contents (basePath itself is not an entry; "/" exports the
 * whole sandbox); a file or symlink exports that single node under its own name; missing →
 * -ENOENT.
 *
 * Consistency is the caller's job: it holds the sandbox's shared lock from export_open() to
 * export_close(), so the listed contents cannot be collected underneath the export.
 *
 * Driving it from the HTTP layer: take the sandbox's shared lock, export_open() (ENOENT → 404
 * before any byte is sent), then MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 KiB,
 * reader, exp, free_cb): the reader calls export_read(exp, buf, max, &got) and returns got,
 * MHD_CONTENT_READER_END_OF_STREAM when got == 0, MHD_CONTENT_READER_END_WITH_ERROR on an error;
 * free_cb calls export_close() (and the lock is released when the request completes).
 * Headers: Content-Type application/gzip (or application/x-tar) and
 * Content-Disposition: attachment; filename="export.tar.gz" (or "export.tar").
 *
 * Not thread-safe: one thread at a time drives an export (it may be a different thread per call).
 */
#ifndef SQLFS_ARCHIVE_EXPORT_H
#define SQLFS_ARCHIVE_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define EXPORT_GZIP_LEVEL 1

enum export_format {
    EXPORT_TAR_GZ = 1, /* application/gzip, "export.tar.gz" */
    EXPORT_TAR = 2,    /* application/x-tar, "export.tar" */
};

struct export;

/* Lists the subtree of `base_path` (absolute; normalised here) of sandbox `sandbox_id` and
 * prepares the archive writer. -ENOENT (missing basePath), -EINVAL (bad basePath), -ENOMEM,
 * store errors. */
__attribute__((warn_unused_result)) int export_open(struct store *st, const char *sandbox_id,
                                                    const char *base_path, enum export_format fmt,
                                                    struct export **ret);

/* Number of entries the archive will hold (for logs). */
size_t export_entry_count(const struct export *exp);

/* Copies up to `cap` (> 0) next bytes of the archive into buf; *ret_got == 0 means the archive is
 * complete. Errors (-EIO, store errors, e.g. a content that vanished) leave the stream
 * truncated: the HTTP layer can only abort the response at that point. */
__attribute__((warn_unused_result)) int export_read(struct export *exp, void *buf, size_t cap,
                                                    size_t *ret_got);

/* Frees everything; NULL-safe. May be called at any point (client gone). */
void export_close(struct export *exp);

#endif

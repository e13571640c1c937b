/*
 * diff — the change set of an exec, read from its overlayfs upper directory.
 *
 * After an exec the upper directory holds exactly what changed relative to the lower layer (the
 * checkout): new and modified files (whole files: a copy-up copies the content even for a chmod),
 * directories copied up or created, whiteouts (0/0 character devices, or zero-size files marked
 * trusted.overlay.whiteout) for deletions, and opaque directories (overlay xattr "opaque" = "y",
 * trusted.* or user.* namespace) whose lower content is hidden. Walking it gives the change set
 * without scanning the unchanged tree.
 *
 * Mapping (paths are sandbox paths: upper/<rel> is "/<rel>"):
 *   regular file → CHANGE_PUT file (content stored by streaming, mode & 07777, size, mtime_ns)
 *   directory    → CHANGE_PUT dir (mode, mtime) unless the lower has it alike (diff_upper);
 *                  an opaque one is preceded by CHANGE_DELETE of its path, since its lower
 *                  subtree is replaced
 *   symlink      → CHANGE_PUT symlink (target verbatim)
 *   whiteout     → CHANGE_DELETE
 *   fifo, socket, other devices → not persisted, counted in stats.skipped
 *   anything at a reserved path (/usr, /etc, /proc, /dev, /sys, /bin, ...: store/reserved.h)
 *                → not persisted, counted in stats.reserved (diff_upper_changed ignores it too)
 * A directory's changes precede its entries; entries of a directory come in name order.
 * The upper root itself has no row (the sandbox root "/").
 *
 * The overlay must be mounted with redirect_dir=off and metacopy=off: a redirected directory or
 * a metadata-only copy-up does not hold the data it stands for, and the diff fails with
 * -ENOTSUP rather than lose data.
 *
 * Trust: the upper was written by a sandbox. It is walked with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS) and O_NOFOLLOW, never following a symlink; files are opened O_NONBLOCK
 * and checked to be regular. The upper must no longer be mounted or written (the exec ended).
 * Paths longer than PATH_MAX_LEN fail with -ENAMETOOLONG.
 *
 * Thread-safe (no shared state); memory is bounded by one I/O buffer plus the change set.
 */
#ifndef SQLFS_WORKSPACE_DIFF_H
#define SQLFS_WORKSPACE_DIFF_H

#include <stdint.h>

#include "store/changeset.h"
#include "store/store.h"

struct diff_stats {
    int64_t files;    /* regular files put */
    int64_t dirs;     /* directories put */
    int64_t symlinks; /* symlinks put */
    int64_t deletes;  /* deletions (whiteouts and opaque directories) */
    int64_t bytes;    /* content bytes stored */
    int64_t skipped;  /* fifos, sockets and device files not persisted */
    int64_t reserved; /* entries at reserved paths (store/reserved.h), not persisted */
};

/* Appends the changes recorded in upper_dir to cs, storing file contents in st (each file is
 * streamed; content stays pinned until a commit references it). lower_dir (may be NULL) is the
 * checkout the upper was over: a directory in the upper that is not opaque and has the same
 * mode and mtime as the lower's is not a change (copied up only because something inside it
 * changed, or prepared in the upper by the engine) and gives no entry. ret (may be NULL)
 * receives the stats. On failure cs may hold some of the changes: release it. */
__attribute__((warn_unused_result)) int diff_upper(struct store *st, const char *upper_dir,
                                                   const char *lower_dir, struct changeset *cs,
                                                   struct diff_stats *ret);

/* For read-only execs: 1 when upper_dir holds a persistable change relative to lower_dir (the
 * checkout the exec ran on), 0 when it does not, negative on error. Not a change: directories
 * copied up unchanged (same mode and mtime), files copied up whose mode, mtime and content equal
 * the lower's (an open for writing that wrote nothing, an atime update), fifos and sockets. */
__attribute__((warn_unused_result)) int diff_upper_changed(const char *upper_dir,
                                                           const char *lower_dir);

/* Disk use of an upper directory, read while its exec may still run (diff_upper_usage). */
struct upper_usage {
    int64_t bytes;    /* disk blocks of every node in the upper, in bytes */
    int64_t replaced; /* disk blocks of the lower's regular files that the upper's files and
                       * whiteouts replace or delete (their space returns at the commit) */
    int64_t entries;  /* nodes walked */
};

/* Walks upper_dir (safe while the exec writes it: vanished entries are skipped) and sums what
 * it holds on disk; with lower_dir (may be NULL: replaced stays 0) also what of the lower it
 * replaces: one stat of the lower per regular file and whiteout of the upper (a deleted or
 * replaced directory counts nothing). The quota watch of a running exec and its commit use it.
 * Memory: one directory's names at a time plus the directories still to visit. */
__attribute__((warn_unused_result)) int
diff_upper_usage(const char *upper_dir, const char *lower_dir, struct upper_usage *ret);

#endif

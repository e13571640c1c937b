/*
 * fs — file system operations confined to a directory descriptor.
 *
 * Trees below the data directory (checkouts, exec uppers, the jail tree) contain names and
 * symlinks that sandboxes chose. These helpers never let such a symlink or ".." lead out of the
 * tree they are given, and never act on another mount by accident: open_beneath resolves with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), rm_rf_at walks with *at() calls, never
 * follows a symlink and never descends into a mount point.
 *
 * Every descriptor made here is O_CLOEXEC. Thread-safe (no state, no chdir).
 */
#ifndef SQLFS_UTIL_FS_H
#define SQLFS_UTIL_FS_H

#include <stdint.h>
#include <sys/types.h>

/* Opens `path` relative to dirfd (an empty path means dirfd itself) as openat(2) would with
 * `flags | O_CLOEXEC` and `mode` (used only with O_CREAT or O_TMPFILE), except that resolution
 * must stay below dirfd: an absolute path, a ".." above dirfd or a symlink pointing out of it
 * fails with -EXDEV, and a magic link (/proc/<pid>/fd/...) with -ELOOP.
 *
 * Symlinks that stay below dirfd are followed, unless flags holds O_NOFOLLOW: then no component
 * of the path may be a symlink (RESOLVE_NO_SYMLINKS: -ELOOP), not only the last one; with
 * O_PATH | O_NOFOLLOW a last component that is a symlink is opened itself, as openat does.
 *
 * A rename racing with the resolution of ".." (the kernel's -EAGAIN) is retried a few times.
 * The descriptor or -errno. */
__attribute__((warn_unused_result)) int open_beneath(int dirfd, const char *path, int flags,
                                                     mode_t mode);

/* Removes `name` relative to dirfd and, when it is a directory, everything below it, like
 * `rm -rf`. Absent is not an error (0). Symlinks are removed, never followed (only the last
 * component of `name` is checked: earlier ones, if any, are the caller's). A directory on
 * another mount than `name` is never entered: the removal stops with -EBUSY, leaving that mount
 * and what is not removed yet. The first other failure also stops it (-errno), with part of the
 * tree removed.
 *
 * One directory descriptor is held at a time (it climbs back with "..", checking that it lands
 * where it came from, else -EIO), so depth is bounded by neither descriptors nor PATH_MAX.
 * Adds the sizes of the regular files it removed to *ret_bytes when that is not NULL (also on
 * failure, for what was removed). */
__attribute__((warn_unused_result)) int rm_rf_at(int dirfd, const char *name, int64_t *ret_bytes);

#endif

/*
 * path — normalisation of sandbox paths (client input; hostile).
 *
 * A sandbox path is absolute, '/'-separated, with no empty, "." or ".." segments and no trailing
 * slash except the root "/" itself. ".." at the root stays at the root: normalisation can never
 * leave the sandbox. Paths are byte strings; NUL is rejected; at most PATH_MAX_LEN bytes in all
 * and PATH_NAME_MAX per segment.
 *
 * All functions are pure and thread-safe; returned strings are malloc'd and owned by the caller.
 */
#ifndef SQLFS_UTIL_PATH_H
#define SQLFS_UTIL_PATH_H

#include <stdbool.h>
#include <stddef.h>

#define PATH_MAX_LEN 4096
#define PATH_NAME_MAX 255

/* Normalises `len` bytes at `in` into an absolute sandbox path. A relative input is taken as
 * relative to "/". -EINVAL (empty, NUL byte), -ENAMETOOLONG (too long), -ENOMEM. */
__attribute__((warn_unused_result)) int path_normalize(const char *in, size_t len, char **ret);

/* Like path_normalize, but `rel` is resolved against the absolute normalised `base`; an
 * absolute `rel` replaces base. */
__attribute__((warn_unused_result)) int path_resolve(const char *base, const char *rel, char **ret);

/* Strict join for archive entries and ingest keys: `rel` must be relative with no empty, "." or
 * ".." segments (a trailing '/' is allowed and dropped, a leading "./" is dropped). The result is
 * base + "/" + rel. -EINVAL when rel breaks a rule, -ENAMETOOLONG. */
__attribute__((warn_unused_result)) int path_join_strict(const char *base, const char *rel,
                                                         char **ret);

/* True when `path` equals `prefix` or lies below it (both normalised). */
bool path_is_within(const char *path, const char *prefix);

/* The parent of a normalised path ("/" for "/a" and for "/"); malloc'd, NULL on ENOMEM. */
char *path_parent(const char *path);

/* Pointer to the last segment inside `path` ("" for "/"). */
const char *path_basename(const char *path);

/* Number of segments ("/" = 0, "/a/b" = 2). */
int path_depth(const char *path);

#endif

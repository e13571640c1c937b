/*
 * reserved — the paths of a sandbox that belong to the exec runtime, not to the sandbox's tree.
 *
 * Every jail provides its own system directories at these paths (see jail/jail.h and
 * jail/rootfs.h): /usr and Debian's merged-/usr links into it (/bin, /sbin, /lib, /lib32, /lib64,
 * /libx32), the curated /etc, /opt/sqlfs (py-exec and friends), a fresh /proc and /dev, and /sys
 * (an empty directory). A node of the tree at one of them would hide or break what the jail
 * mounts there; and /opt, the parent of /opt/sqlfs, may only be a directory. So:
 *   - the file API and ingest refuse to write there (400 naming the reserved path);
 *   - an exec's changes there are not committed (its diff skips them);
 *   - checkouts never materialise them, so a tree that already holds such entries (from before
 *     they were refused) still runs execs: the entries stay in the store, readable, exportable
 *     and deletable through the API, but no jail sees them.
 * Deleting, reading and listing are never refused.
 *
 * Why here, next to the change set: it is a rule about which nodes a sandbox tree may hold, and
 * every layer that makes or materialises trees applies it: the sandbox layer's commit path
 * (every change set it commits), archive ingest, and the workspace (the exec diff and the
 * checkouts). Those layers share only the store below them, so the rule lives there; the store's
 * engines themselves do not enforce it (sandbox_commit does, before calling them).
 *
 * Pure functions over normalised sandbox paths (util/path.h); thread-safe.
 */
#ifndef SQLFS_STORE_RESERVED_H
#define SQLFS_STORE_RESERVED_H

#include <stdbool.h>

#include "store/changeset.h"

/* The reserved path that a node at `path` would occupy ("/usr" for "/usr/lib/x"), or NULL when
 * the node may be there. `is_dir`: the node is (or would be) a directory; only matters for the
 * parents of reserved paths (/opt). */
const char *reserved_root(const char *path, bool is_dir);

/* reserved_root(path, is_dir) != NULL. */
bool reserved_path(const char *path, bool is_dir);

/* Sets the 400 error for a write to `path` below the reserved `root` and returns it. */
int reserved_error(const char *path, const char *root);

/* 0 when no PUT of cs writes a reserved path, else reserved_error() for the first that does.
 * Every commit checks this (sandbox_commit, sandbox_create). */
__attribute__((warn_unused_result)) int reserved_check_changeset(const struct changeset *cs);

#endif

/*
 * datadir — the server's data directory: created when missing, named by its absolute path, and
 * held by one server process at a time.
 *
 * Everything a server keeps on disk or on the host (the database, checkouts, overlay uppers,
 * the generated jail tree, exec cgroups named after the directory) belongs to its data
 * directory. Two servers on one directory would clean up each other's live state as
 * "leftovers", so datadir_open takes an exclusive lock (flock on <dir>/sqlfs.lock, which also
 * holds the owner's pid for the message a second server prints) before the caller touches
 * anything else, and the lock lives as long as the process holds the descriptor. The kernel
 * drops it when the process dies, so a crash never leaves the directory locked.
 *
 * Ownership: struct datadir owns its path and descriptor (datadir_close). Not thread-safe; used
 * once at start and once at exit by main.
 */
#ifndef SQLFS_UTIL_DATADIR_H
#define SQLFS_UTIL_DATADIR_H

#include <sys/types.h>

#define DATADIR_LOCK_NAME "sqlfs.lock"

struct datadir {
    char *path;          /* absolute, no symlinks, no trailing slash (realpath) */
    int lock_fd;         /* the locked sqlfs.lock, -1 when not held */
    unsigned loose_mode; /* the mode it had when datadir_open made it 0700, else 0 */
};

#define DATADIR_INIT                                                                               \
    {                                                                                              \
        .path = NULL, .lock_fd = -1, .loose_mode = 0                                               \
    }

/* Creates `dir` and its missing parents (0700 each). -errno with err_set(). */
__attribute__((warn_unused_result)) int datadir_make(const char *dir);

/* Creates `dir` when missing, resolves it to an absolute path and takes its lock; the
 * directory is made 0700 when it is accessible to group or others (ret->loose_mode says so, for
 * the caller's log) and the lock file 0600. When another
 * process holds the lock: -EBUSY, with *ret_owner set to that process's pid (0 when unknown)
 * and ret->path set so the caller can name the directory; nothing was changed. Other failures:
 * -errno with err_set(). ret is always initialised; release it with datadir_close. */
__attribute__((warn_unused_result)) int datadir_open(const char *dir, struct datadir *ret,
                                                     pid_t *ret_owner);

/* Drops the lock (the lock file stays) and frees the path. Idempotent. */
void datadir_close(struct datadir *d);

#endif

/*
 * checkout_internal — what the parts of the checkout cache share; not for other modules.
 *
 *   checkout.c        the cache: entries (pins, LRU, sizes, the budget), tags, the trash and
 *                     its reaper thread, start-up adoption, acquire/release/invalidate/remove;
 *   checkout_tree.c   nodes of a tree (files streamed from the store, symlinks, directories
 *                     with their owner, mode and mtime) and the build of a whole tree;
 *   checkout_apply.c  a committed change set applied to a tree (checkout_apply*).
 *
 * Locking (checkout.h for the callers' side): cos->mu guards the entry list, pins, users,
 * sizes and stats; an entry's own mu serialises building and changing its tree and guards its
 * version. Lock order: entry->mu, then cos->mu; never the other way round.
 */
#ifndef SQLFS_WORKSPACE_CHECKOUT_INTERNAL_H
#define SQLFS_WORKSPACE_CHECKOUT_INTERNAL_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/fd.h"
#include "util/fs.h"
#include "util/path.h"
#include "util/rand.h"
#include "workspace/checkout.h"

#define TAG_NAME "tag"
#define TAG_TMP_NAME "tag.tmp"
#define TREE_NAME "tree"
#define BUILD_PREFIX "build-"
#define TRASH_PREFIX ".trash-"
#define IO_BUF_SIZE STORE_CHUNK_SIZE

struct entry {
    struct entry *prev, *next; /* LRU list, most recently used first (cos->mu) */
    char id[UUID_STR_LEN];     /* sandbox id = directory name */
    pthread_mutex_t mu;        /* serialises building and changing this tree */
    int pins;                  /* calls in progress + acquires not released (cos->mu) */
    int users;                 /* acquires not released (cos->mu) */
    int64_t version;           /* version of the tagged tree, -1 = invalid (e->mu) */
    int64_t size;              /* tracked bytes of the tree (cos->mu) */
};

struct checkouts {
    char *dir;        /* <data>/checkouts */
    int dirfd;        /* O_PATH fd of dir */
    struct store *st; /* not owned */
    int64_t budget;   /* <= 0: unlimited */
    uid_t uid;        /* owner of every node of a tree but its root */
    gid_t gid;
    char boot_id[64];          /* this boot's id, recorded in tags */
    pthread_mutex_t mu;        /* entries list, pins, sizes, stats */
    struct entry *head, *tail; /* LRU list */
    struct checkout_stats stats;
    /* Deleting a tree takes long (one unlink per node): directories to delete are renamed to
     * .trash-<rnd> at once and removed by a background thread. */
    pthread_t reaper;
    bool reaper_running;
    pthread_mutex_t qmu; /* trash queue and stop flag */
    pthread_cond_t qcond;
    struct trash *queue; /* names to remove, LIFO */
    bool stop;
    void (*evict_fn)(void *ud, const char *sandbox_id); /* checkouts_on_evict */
    void *evict_ud;
};

struct trash {
    struct trash *next;
    char name[32];
    int close_fd; /* closed before the removal, or -1 */
};

/* Rows of a sandbox's tree, as the store lists them (path order). */
struct rows {
    struct file_meta *v;
    size_t n, cap;
};

/* Resolves parent directories of tree paths, caching the last one (rows come in path order, so
 * siblings share it). */
struct parent_cache {
    int rootfd; /* the tree root (not owned) */
    char *path; /* relative path of the cached parent ("" = root) */
    int fd;     /* O_PATH fd of it, -1 when none */
};

/* utimensat times that set the mtime to mtime_ns and leave the atime alone. */
static inline void ts_from_ns(struct timespec ts[2], int64_t mtime_ns)
{
    ts[0].tv_sec = 0;
    ts[0].tv_nsec = UTIME_OMIT;
    int64_t sec = mtime_ns / 1000000000, nsec = mtime_ns % 1000000000;
    if (nsec < 0) {
        sec--;
        nsec += 1000000000;
    }
    ts[1].tv_sec = (time_t)sec;
    ts[1].tv_nsec = (long)nsec;
}

/* A stored path must be absolute with non-empty segments other than "." and "..". */
static inline bool row_path_ok(const char *p)
{
    if (p[0] != '/' || p[1] == '\0' || strlen(p) > PATH_MAX_LEN)
        return false;
    const char *s = p + 1;
    for (;;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || n > PATH_NAME_MAX || (n == 1 && s[0] == '.') ||
            (n == 2 && s[0] == '.' && s[1] == '.'))
            return false;
        if (!e)
            return true;
        s = e + 1;
    }
}

/* ---- checkout.c ---- */

/* Finds or creates the entry and pins it (it cannot be evicted or freed until unpinned). With
 * create false, *ret is NULL when there is none. */
__attribute__((warn_unused_result)) int checkout_entry_pin(struct checkouts *cos, const char *id,
                                                           bool create, bool touch,
                                                           struct entry **ret);
/* Drops one pin (and one user when `user`); then enforces the budget. */
void checkout_entry_unpin(struct checkouts *cos, struct entry *e, bool user);
void checkout_entry_set_size(struct checkouts *cos, struct entry *e, int64_t size);
int64_t checkout_entry_size(struct checkouts *cos, struct entry *e);
/* Opens <checkouts>/<id> (creating it when asked); -errno. */
int checkout_entry_dir_open(struct checkouts *cos, const char *id, bool create);
/* Under e->mu: removes the tag, forgets the version. */
void checkout_entry_invalidate_locked(struct checkouts *cos, struct entry *e);
/* Under e->mu: true when the tagged tree on disk is `version`. */
bool checkout_tree_is_valid(struct checkouts *cos, struct entry *e, int edfd, int64_t version);
/* Renames fromfd/name to <checkouts>/.trash-<rnd> and queues it for the reaper, which closes
 * close_fd (or -1) first. 0 when moved and queued (close_fd is then the reaper's), 1 when name
 * did not exist, -errno. */
int checkout_trash_move(struct checkouts *cos, int fromfd, const char *name, int close_fd);
/* Best-effort rm_rf_at of leftovers: a failure only leaves garbage that start-up
 * removes. */
void checkout_rm_rf_quiet(int dirfd, const char *name);
/* Tags the entry directory edfd: its tree is complete at `version` with `size` bytes. */
int checkout_tag_write(struct checkouts *cos, int edfd, int64_t version, int64_t size);
/* Makes the tag invalid (the tree is about to change). */
int checkout_tag_invalidate(const struct checkouts *cos, int edfd);

/* ---- checkout_apply.c ---- */

/* Under e->mu, edfd the entry's directory, its tree valid at e->version < version: brings it to
 * `version` from the commit log (checkout_acquire). -ERANGE when the log cannot tell (nothing
 * changed); other failures leave the entry invalid. */
__attribute__((warn_unused_result)) int
checkout_refresh_locked(struct checkouts *cos, struct entry *e, int edfd, int64_t version);

/* ---- checkout_tree.c ---- */

/* Builds version `version` into <id>/build-<rnd>, swaps it in as <id>/tree and tags it.
 * Runs under e->mu. */
__attribute__((warn_unused_result)) int checkout_build_tree(struct checkouts *cos, struct entry *e,
                                                            int edfd, int64_t version);
/* A store_file_cb appending a copy of the row to the struct rows `userdata` (rows at reserved
 * paths are left out: never materialised). */
int checkout_rows_add(const struct file_meta *meta, void *userdata);
void checkout_rows_release(struct rows *rs);
/* A borrowed fd of the directory containing sandbox path `p` and its basename; -errno. */
int checkout_parent_get(struct parent_cache *pc, const char *p, const char **ret_name);
void checkout_parent_cache_release(struct parent_cache *pc);
/* Nodes, created below the directory pfd with the cache's owner: a regular file streamed from
 * the store (buf: IO_BUF_SIZE bytes of scratch), a symlink, an empty directory (its mode and
 * mtime come later: checkout_fix_dir). -errno. */
int checkout_create_file(const struct checkouts *cos, int pfd, const char *name,
                         const struct file_meta *m, char *buf);
int checkout_create_symlink(const struct checkouts *cos, int pfd, const char *name,
                            const struct file_meta *m);
int checkout_create_dir(const struct checkouts *cos, int pfd, const char *name);
/* Sets the owner, mode and mtime of the open node fd. */
int checkout_set_meta_fd(const struct checkouts *cos, int fd, uint32_t mode, int64_t mtime_ns);
/* Sets a directory's owner, mode and mtime once its entries exist (creating them moves its
 * mtime). */
int checkout_fix_dir(const struct checkouts *cos, int rootfd, const char *p, uint32_t mode,
                     int64_t mtime_ns);

#endif

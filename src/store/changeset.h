/*
 * changeset — an ordered list of filesystem changes to one sandbox, the unit of every commit.
 *
 * Every mutation (file API writes, mkdir, deletes, ingest, the diff of an exec) is expressed as a
 * change set and committed through one path: store_commit() (SQL, one transaction) followed by
 * the checkout update (see sandbox/sandbox.h). Changes apply in order:
 *   CHANGE_PUT    create or replace the node at meta.path (file, dir or symlink). Replacing a
 *                 directory by a non-directory removes the directory's subtree first. Putting a
 *                 directory over an existing directory only updates its mode/mtime.
 *   CHANGE_DELETE remove meta.path and everything below it; absent paths are ignored.
 * Parent directories must exist when a change applies, or be created by it when
 * `create_parents` is set (0755 dirs); a parent that is not a directory fails with -ENOTDIR.
 *
 * File content is referenced by content id (see store.h content writers): the bytes were stored
 * before the change set is committed. Ownership: the change set owns copies of all strings.
 * Not thread-safe.
 */
#ifndef SQLFS_STORE_CHANGESET_H
#define SQLFS_STORE_CHANGESET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONTENT_ID_LEN 32

enum file_kind {
    FILE_KIND_FILE = 1,
    FILE_KIND_DIR = 2,
    FILE_KIND_SYMLINK = 3,
};

/* Metadata of one node of a sandbox tree. */
struct file_meta {
    char *path;                      /* normalised absolute sandbox path */
    enum file_kind kind;             /* file, dir or symlink */
    uint32_t mode;                   /* permission bits (07777) */
    int64_t size;                    /* bytes of content (file) or target length (symlink) */
    int64_t mtime_ns;                /* modification time, ns since the epoch */
    bool has_content;                /* files only: false for an empty file */
    uint8_t content[CONTENT_ID_LEN]; /* content id when has_content */
    char *target;                    /* symlinks only: the link target, verbatim */
};

/* The permission bits a node of kind k may carry in a sandbox: setuid and setgid never (a tree
 * exported and unpacked by root must not grant privileges), the sticky bit only on directories
 * (where it restricts deletion, as on /tmp; it means nothing on a file). Every PUT of a change
 * set is stored with these bits, whatever way it came in (exec, file API, ingest). */
uint32_t file_mode_allowed(enum file_kind k, uint32_t mode);

/* Frees the strings of m (not m itself). */
void file_meta_release(struct file_meta *m);
/* Deep copy; -ENOMEM. */
__attribute__((warn_unused_result)) int file_meta_copy(struct file_meta *dst,
                                                       const struct file_meta *src);
/* Kind as the wire name: "file", "dir", "symlink". */
const char *file_kind_name(enum file_kind k);

enum change_op {
    CHANGE_PUT = 1,
    CHANGE_DELETE = 2,
};

struct change {
    enum change_op op;
    struct file_meta meta; /* for CHANGE_DELETE only meta.path is used */
};

struct changeset {
    struct change *items; /* in application order */
    size_t n, cap;
    bool create_parents; /* create missing parent dirs (0755) instead of failing -ENOENT */
    bool keep_dirs;      /* a file or symlink PUT onto an existing directory fails -EISDIR
                          * (archive ingests, like the file API) instead of replacing the
                          * directory's subtree (what an exec's diff means by it) */
    bool unpinned;       /* its contents were not finished for it (they are stored already, held
                          * by a retained version: a restore): its commit drops no pins */
    char *new_cwd;       /* when set, the sandbox's stored cwd becomes this */
    char *kind;          /* what made it: "put", "exec", "ingest", ... (commit log) */
    char *info_json;     /* free-form JSON object for the commit log, or NULL */
};

void changeset_init(struct changeset *cs, const char *kind);
void changeset_release(struct changeset *cs);
/* Appends a copy of meta as a PUT, its mode reduced by file_mode_allowed(). -ENOMEM. */
__attribute__((warn_unused_result)) int changeset_put(struct changeset *cs,
                                                      const struct file_meta *meta);
/* Makes room for `more` further changes: that many appends cannot fail for want of memory.
 * -ENOMEM. */
__attribute__((warn_unused_result)) int changeset_reserve(struct changeset *cs, size_t more);
/* changeset_put, but takes meta's strings instead of copying them: on success meta is left
 * without strings. -ENOMEM (meta untouched); never fails within a changeset_reserve. */
__attribute__((warn_unused_result)) int changeset_put_take(struct changeset *cs,
                                                           struct file_meta *meta);
/* Appends a DELETE of path (subtree). -ENOMEM. */
__attribute__((warn_unused_result)) int changeset_delete(struct changeset *cs, const char *path);
/* Sets info_json (copied). */
__attribute__((warn_unused_result)) int changeset_set_info(struct changeset *cs, const char *json);
/* Sum of file sizes put by the change set (an upper bound of the bytes it adds). */
int64_t changeset_put_bytes(const struct changeset *cs);

#endif

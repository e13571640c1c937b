/*
 * apply.c — the commit driver every engine uses (engine.h): a change set's changes applied in
 * order through the engine's row primitives, with path checks, parents (found, created or
 * refused), subtree deletes and the size and count accounting; and the helpers around a commit
 * (the quota rule, the contents whose pins a commit drops).
 */
#include "store/engine.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/err.h"

/* Removes the rows in the range, keeping the accounting. */
static int subtree_delete(struct apply *a, const char *path, size_t len)
{
    struct subtree range;
    int64_t n = 0, bytes = 0;
    int r = subtree_init(&range, path, len);
    if (r >= 0)
        r = a->ops->range_delete(a->ctx, &range, &n, &bytes);
    subtree_release(&range);
    if (r < 0)
        return r;
    a->count -= n;
    a->size -= bytes;
    if (bytes > 0) /* a file with bytes has content */
        a->unreferenced = true;
    return 0;
}

/* Accounts for the row `old` going away (its row is deleted or replaced by the caller). */
/* Accounts a row that goes; its content becomes a GC candidate unless it is `kept`, the content
 * of the row that replaces it (NULL: none). */
static int forget_row(struct apply *a, const struct store_row *old, const uint8_t *kept)
{
    a->count--;
    if (old->kind == FILE_KIND_FILE)
        a->size -= old->size;
    if (!old->has_content || (kept && memcmp(kept, old->content, CONTENT_ID_LEN) == 0))
        return 0;
    a->unreferenced = true;
    return a->ops->candidate_add(a->ctx, old->content);
}

static int row_insert(struct apply *a, const char *path, size_t len, int kind, uint32_t mode,
                      int64_t size, int64_t mtime_ns, const uint8_t *content, const char *target)
{
    int r = a->ops->row_put(a->ctx, path, len, kind, mode & 07777, size, mtime_ns, content, target);
    if (r < 0)
        return r;
    a->count++;
    if (kind == FILE_KIND_FILE)
        a->size += size;
    return 0;
}

/* The error for a missing directory path[0..len): like path resolution, -ENOTDIR when the
 * nearest existing ancestor is not a directory, else -ENOENT. */
static int parent_missing(struct apply *a, const char *path, size_t len)
{
    for (size_t n = len; n > 1;) {
        while (n > 0 && path[n - 1] != '/')
            n--;
        if (n <= 1)
            break;
        n--;
        struct store_row anc;
        int r = a->ops->row_get(a->ctx, path, n, &anc);
        if (r < 0)
            return r;
        if (anc.kind == FILE_KIND_DIR)
            break;
        if (anc.kind)
            return err_set(-ENOTDIR, "not a directory: %.*s", (int)n, path);
    }
    return err_set(-ENOENT, "no such directory: %.*s", (int)len, path);
}

/* Makes sure the parent of path[0..len) exists as a directory, creating missing ones (0755)
 * when the change set allows it: 1 when it created the parent (so nothing lies below it yet),
 * 0 when the parent was there. The tree invariant (every row's parent is a dir row or the root)
 * means an existing parent directory needs no further check. */
static int parents_ensure(struct apply *a, const char *path, size_t len)
{
    size_t plen = len;
    while (plen > 0 && path[plen - 1] != '/')
        plen--;
    if (plen <= 1)
        return 0; /* the parent is the root, which always exists */
    plen--;       /* drop the slash */
    struct store_row parent;
    int r = a->ops->row_get(a->ctx, path, plen, &parent);
    if (r < 0)
        return r;
    if (parent.kind == FILE_KIND_DIR)
        return 0;
    if (parent.kind)
        return err_set(-ENOTDIR, "not a directory: %.*s", (int)plen, path);
    if (!a->create_parents)
        return parent_missing(a, path, plen);
    r = parents_ensure(a, path, plen);
    if (r >= 0)
        r = row_insert(a, path, plen, FILE_KIND_DIR, DIR_MODE_DEFAULT, 0, a->now_ns, NULL, NULL);
    return r < 0 ? r : 1;
}

/* Checks a file's content reference: the content must be stored and of the stated size. */
static int content_check(struct apply *a, const struct file_meta *m, const uint8_t **ret_id)
{
    *ret_id = NULL;
    if (!m->has_content || id_is_zero(m->content)) {
        if (m->size != 0)
            return err_set(-EINVAL, "file has a size but no content: %s", m->path);
        return 0;
    }
    int64_t size = -1;
    int r = a->ops->content_size(a->ctx, m->content, &size);
    if (r == -ENOENT)
        return err_set(-EIO, "file content is missing from the store: %s", m->path);
    if (r < 0)
        return r;
    if (size != m->size)
        return err_set(-EINVAL, "file size does not match its content: %s", m->path);
    *ret_id = m->content;
    return 0;
}

static int change_put(struct apply *a, const struct file_meta *m)
{
    size_t len = m->path ? strlen(m->path) : 0;
    if (!m->path || !path_ok(m->path, len))
        return err_set(-EINVAL, "invalid path");
    if (m->kind != FILE_KIND_FILE && m->kind != FILE_KIND_DIR && m->kind != FILE_KIND_SYMLINK)
        return err_set(-EINVAL, "invalid file kind: %s", m->path);
    if (len == 1) {
        if (m->kind == FILE_KIND_DIR)
            return 0; /* the root is implicit; its metadata is fixed */
        return err_set(-EISDIR, "cannot replace the root directory");
    }
    const uint8_t *content = NULL;
    int64_t size = 0;
    int r = 0;
    if (m->kind == FILE_KIND_FILE) {
        r = content_check(a, m, &content);
        size = m->size;
    } else if (m->kind == FILE_KIND_SYMLINK) {
        if (!m->target)
            r = err_set(-EINVAL, "symlink without a target: %s", m->path);
        else
            size = (int64_t)strlen(m->target);
    }
    if (r >= 0)
        r = parents_ensure(a, m->path, len);
    struct store_row old = {0};
    if (r == 0) /* a parent created just now has nothing below it */
        r = a->ops->row_get(a->ctx, m->path, len, &old);
    if (r < 0)
        return r;
    if (old.kind == FILE_KIND_DIR && m->kind == FILE_KIND_DIR)
        return a->ops->dir_update(a->ctx, m->path, len, m->mode & 07777, m->mtime_ns);
    if (old.kind == FILE_KIND_DIR && a->keep_dirs)
        return err_set(-EISDIR, "would replace the directory %s: delete it first", m->path);
    if (old.kind == FILE_KIND_DIR)
        r = subtree_delete(a, m->path, len);
    if (r >= 0 && old.kind)
        r = forget_row(a, &old, content);
    if (r >= 0)
        r = row_insert(a, m->path, len, m->kind, m->mode, size, m->mtime_ns, content,
                       m->kind == FILE_KIND_SYMLINK ? m->target : NULL);
    return r;
}

static int change_delete(struct apply *a, const char *path)
{
    size_t len = path ? strlen(path) : 0;
    if (!path || !path_ok(path, len))
        return err_set(-EINVAL, "invalid path");
    if (len == 1)
        return subtree_delete(a, path, len);
    struct store_row old;
    int r = a->ops->row_get(a->ctx, path, len, &old);
    if (r < 0 || !old.kind)
        return r; /* an absent path has no subtree either */
    if (old.kind == FILE_KIND_DIR) {
        r = subtree_delete(a, path, len);
        if (r < 0)
            return r;
    }
    r = a->ops->row_delete(a->ctx, path, len);
    return r < 0 ? r : forget_row(a, &old, NULL);
}

int apply_changes(struct apply *a, const struct changeset *cs)
{
    a->create_parents = cs->create_parents;
    a->keep_dirs = cs->keep_dirs;
    int r = 0;
    for (size_t i = 0; i < cs->n && r >= 0; i++) {
        const struct change *ch = &cs->items[i];
        if (ch->op == CHANGE_PUT)
            r = change_put(a, &ch->meta);
        else if (ch->op == CHANGE_DELETE)
            r = change_delete(a, ch->meta.path);
        else
            r = err_set(-EINVAL, "invalid change");
    }
    return r;
}

int apply_delete_all(struct apply *a)
{
    return subtree_delete(a, "/", 1);
}

int apply_quota_check(const struct commit_opts *opts, int64_t old_size, int64_t new_size)
{
    /* A commit that does not grow the sandbox is always allowed, so that an over-quota sandbox
     * (quota lowered) can still be cleaned up. */
    if (opts->quota_bytes > 0 && new_size > opts->quota_bytes && new_size > old_size)
        return err_set(-ERR_QUOTA,
                       "sandbox storage quota exceeded: %" PRId64 " bytes needed, quota is %" PRId64
                       " bytes",
                       new_size, opts->quota_bytes);
    return 0;
}

static int id_cmp(const void *x, const void *y)
{
    return memcmp(x, y, CONTENT_ID_LEN);
}

static bool puts_content(const struct change *ch)
{
    return ch->op == CHANGE_PUT && ch->meta.kind == FILE_KIND_FILE && ch->meta.has_content &&
           !id_is_zero(ch->meta.content);
}

int changeset_contents(const struct changeset *cs, uint8_t **ret_ids, size_t *ret_n)
{
    size_t n = 0;
    for (size_t i = 0; i < cs->n; i++)
        n += puts_content(&cs->items[i]);
    *ret_ids = NULL;
    *ret_n = 0;
    if (n == 0)
        return 0;
    _cleanup_free_ uint8_t *ids = malloc(n * CONTENT_ID_LEN);
    if (!ids)
        return -ENOMEM;
    n = 0;
    for (size_t i = 0; i < cs->n; i++)
        if (puts_content(&cs->items[i]))
            memcpy(ids + CONTENT_ID_LEN * n++, cs->items[i].meta.content, CONTENT_ID_LEN);
    qsort(ids, n, CONTENT_ID_LEN, id_cmp);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *id = ids + CONTENT_ID_LEN * i;
        if (distinct > 0 && memcmp(id, ids + CONTENT_ID_LEN * (distinct - 1), CONTENT_ID_LEN) == 0)
            continue;
        memmove(ids + CONTENT_ID_LEN * distinct++, id, CONTENT_ID_LEN);
    }
    *ret_ids = TAKE_PTR(ids);
    *ret_n = distinct;
    return 0;
}

/*
 * sqlite_commit.c — applying a change set (changeset.h) to a sandbox's file rows in one write
 * transaction of the SQLite engine: path checks, parents, subtree deletes, size and count
 * accounting, quota, the version check, the commit log, and the pins a commit drops. Every row
 * a commit removes or replaces records its content as a GC candidate (sqlite_int.h).
 */
#include "store/sqlite/sqlite_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "util/cleanup.h"
#include "util/err.h"
#include "util/timeutil.h"

/* State of one commit being applied on the write connection. */
struct apply {
    struct conn *c;      /* the write connection (transaction open) */
    int64_t sid;         /* sandbox key */
    int64_t size;        /* running size_bytes */
    int64_t count;       /* running file_count */
    int64_t now_ns;      /* mtime of created parents */
    bool create_parents; /* from the change set */
    bool keep_dirs;      /* from the change set */
};

/* An existing row as seen by a commit. kind 0: no row. */
struct old_row {
    int kind;
    int64_t size;
    bool has_content;
    uint8_t content[CONTENT_ID_LEN];
};

static int row_lookup(struct apply *a, const char *path, size_t len, struct old_row *ret)
{
    _cleanup_reset_ sqlite3_stmt *st = NULL;
    int r = sq_stmt_get(a->c, ST_F_GET, &st);
    if (r < 0)
        return r;
    r = sq_bind_check(a->c, sqlite3_bind_int64(st, 1, a->sid) | bind_textn(st, 2, path, len));
    if (r < 0)
        return r;
    memset(ret, 0, sizeof(*ret));
    r = sq_stmt_step(a->c, st);
    if (r <= 0)
        return r;
    ret->kind = sqlite3_column_int(st, 0);
    ret->size = sqlite3_column_int64(st, 1);
    ret->has_content = column_id(st, 2, ret->content);
    return 0;
}

/* Removes the rows in the range, keeping the accounting and GC candidates up to date. */
static int range_delete(struct apply *a, const struct subtree *range)
{
    static const enum stmt_id ids[] = {ST_F_RANGE_STATS, ST_F_RANGE_CAND, ST_F_RANGE_DEL};
    int64_t n = 0, bytes = 0;
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        sqlite3_stmt *st = NULL;
        int r = sq_stmt_get(a->c, ids[i], &st);
        if (r < 0)
            return r;
        r = sq_bind_check(a->c, sqlite3_bind_int64(st, 1, a->sid) |
                                    bind_textn(st, 2, range->lo, range->lolen) |
                                    bind_textn(st, 3, range->hi, range->hilen));
        if (r < 0)
            return r;
        r = sq_stmt_step(a->c, st);
        if (r > 0 && ids[i] == ST_F_RANGE_STATS) {
            n = sqlite3_column_int64(st, 0);
            bytes = sqlite3_column_int64(st, 1);
        }
        sqlite3_reset(st);
        if (r < 0)
            return r;
        if (n == 0)
            return 0; /* nothing below: skip the other two statements */
    }
    a->count -= n;
    a->size -= bytes;
    return 0;
}

/* Deletes the subtree strictly below `path`. */
static int subtree_delete(struct apply *a, const char *path, size_t len)
{
    struct subtree range;
    int r = subtree_init(&range, path, len);
    if (r >= 0)
        r = range_delete(a, &range);
    subtree_release(&range);
    return r;
}

/* Accounts for the row `old` going away (its row is deleted or replaced by the caller). */
static int forget_row(struct apply *a, const struct old_row *old)
{
    a->count--;
    if (old->kind == FILE_KIND_FILE)
        a->size -= old->size;
    return old->has_content ? sq_run_content(a->c, ST_CAND_ADD, old->content) : 0;
}

static int row_insert(struct apply *a, const char *path, size_t len, int kind, uint32_t mode,
                      int64_t size, int64_t mtime_ns, const uint8_t *content, const char *target)
{
    sqlite3_stmt *st = NULL;
    int r = sq_stmt_get(a->c, ST_F_PUT, &st);
    if (r < 0)
        return r;
    r = sq_bind_check(a->c,
                      sqlite3_bind_int64(st, 1, a->sid) | bind_textn(st, 2, path, len) |
                          sqlite3_bind_int(st, 3, kind) | sqlite3_bind_int64(st, 4, mode & 07777) |
                          sqlite3_bind_int64(st, 5, size) | sqlite3_bind_int64(st, 6, mtime_ns) |
                          (content ? bind_id(st, 7, content) : sqlite3_bind_null(st, 7)) |
                          bind_text(st, 8, target));
    if (r < 0)
        return r;
    r = sq_stmt_run(a->c, st);
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
        struct old_row anc;
        int r = row_lookup(a, path, n, &anc);
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
 * when the change set allows it. The tree invariant (every row's parent is a dir row or the
 * root) means an existing parent directory needs no further check. */
static int parents_ensure(struct apply *a, const char *path, size_t len)
{
    size_t plen = len;
    while (plen > 0 && path[plen - 1] != '/')
        plen--;
    if (plen <= 1)
        return 0; /* the parent is the root, which always exists */
    plen--;       /* drop the slash */
    struct old_row parent;
    int r = row_lookup(a, path, plen, &parent);
    if (r < 0)
        return r;
    if (parent.kind == FILE_KIND_DIR)
        return 0;
    if (parent.kind)
        return err_set(-ENOTDIR, "not a directory: %.*s", (int)plen, path);
    if (!a->create_parents)
        return parent_missing(a, path, plen);
    r = parents_ensure(a, path, plen);
    if (r < 0)
        return r;
    return row_insert(a, path, plen, FILE_KIND_DIR, DIR_MODE_DEFAULT, 0, a->now_ns, NULL, NULL);
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
    _cleanup_reset_ sqlite3_stmt *st = NULL;
    int r = sq_query_content(a->c, ST_CONTENT_SIZE, m->content, &st);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-EIO, "file content is missing from the store: %s", m->path);
    if (sqlite3_column_int64(st, 0) != m->size)
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
    struct old_row old;
    if (r >= 0)
        r = row_lookup(a, m->path, len, &old);
    if (r < 0)
        return r;
    if (old.kind == FILE_KIND_DIR && m->kind == FILE_KIND_DIR) {
        sqlite3_stmt *st = NULL;
        r = sq_stmt_get(a->c, ST_F_SETDIR, &st);
        if (r >= 0)
            r = sq_bind_check(a->c, sqlite3_bind_int64(st, 1, a->sid) |
                                        bind_textn(st, 2, m->path, len) |
                                        sqlite3_bind_int64(st, 3, m->mode & 07777) |
                                        sqlite3_bind_int64(st, 4, m->mtime_ns));
        return r < 0 ? r : sq_stmt_run(a->c, st);
    }
    if (old.kind == FILE_KIND_DIR && a->keep_dirs)
        return err_set(-EISDIR, "would replace the directory %s: delete it first", m->path);
    if (old.kind == FILE_KIND_DIR)
        r = subtree_delete(a, m->path, len);
    if (r >= 0 && old.kind)
        r = forget_row(a, &old);
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
    struct old_row old;
    int r = row_lookup(a, path, len, &old);
    if (r < 0 || !old.kind)
        return r; /* an absent path has no subtree either */
    if (old.kind == FILE_KIND_DIR) {
        r = subtree_delete(a, path, len);
        if (r < 0)
            return r;
    }
    sqlite3_stmt *st = NULL;
    r = sq_stmt_get(a->c, ST_F_DEL, &st);
    if (r >= 0)
        r = sq_bind_check(a->c, sqlite3_bind_int64(st, 1, a->sid) | bind_textn(st, 2, path, len));
    if (r >= 0)
        r = sq_stmt_run(a->c, st);
    return r < 0 ? r : forget_row(a, &old);
}

static int id_cmp(const void *x, const void *y)
{
    return memcmp(x, y, CONTENT_ID_LEN);
}

/* Drops one pin reference of every distinct content the change set puts; with `candidates`,
 * also records each as a GC candidate (the change set was abandoned: nothing references it). */
static int pins_drop(struct conn *c, const struct changeset *cs, bool candidates)
{
    size_t n = 0;
    for (size_t i = 0; i < cs->n; i++)
        if (cs->items[i].op == CHANGE_PUT && cs->items[i].meta.kind == FILE_KIND_FILE &&
            cs->items[i].meta.has_content)
            n++;
    if (n == 0)
        return 0;
    _cleanup_free_ uint8_t *ids = malloc(n * CONTENT_ID_LEN);
    if (!ids)
        return -ENOMEM;
    n = 0;
    for (size_t i = 0; i < cs->n; i++) {
        const struct change *ch = &cs->items[i];
        if (ch->op == CHANGE_PUT && ch->meta.kind == FILE_KIND_FILE && ch->meta.has_content &&
            !id_is_zero(ch->meta.content))
            memcpy(ids + CONTENT_ID_LEN * n++, ch->meta.content, CONTENT_ID_LEN);
    }
    qsort(ids, n, CONTENT_ID_LEN, id_cmp);
    int r = 0;
    for (size_t i = 0; i < n && r >= 0; i++) {
        const uint8_t *id = ids + CONTENT_ID_LEN * i;
        if (i > 0 && memcmp(id, id - CONTENT_ID_LEN, CONTENT_ID_LEN) == 0)
            continue;
        r = sq_run_content(c, ST_PIN_DROP, id);
        if (r >= 0 && sqlite3_changes(c->db) > 0)
            r = sq_run_content(c, ST_PIN_DEL_ZERO, id);
        if (r >= 0 && candidates)
            r = sq_run_content(c, ST_CAND_ADD, id);
    }
    return r;
}

static int commit_log(struct apply *a, const struct changeset *cs, int64_t version, int64_t now_ms,
                      int64_t delta, int64_t *ret_id)
{
    sqlite3_stmt *st = NULL;
    int r = sq_stmt_get(a->c, ST_COMMIT_INSERT, &st);
    if (r >= 0)
        r = sq_bind_check(
            a->c, sqlite3_bind_int64(st, 1, a->sid) | sqlite3_bind_int64(st, 2, version) |
                      bind_text(st, 3, cs->kind) | bind_text(st, 4, cs->info_json) |
                      sqlite3_bind_int64(st, 5, now_ms) |
                      sqlite3_bind_int64(st, 6, (int64_t)cs->n) | sqlite3_bind_int64(st, 7, delta));
    if (r >= 0)
        r = sq_stmt_run(a->c, st);
    if (r < 0)
        return r;
    int64_t commit_id = sqlite3_last_insert_rowid(a->c->db);
    r = sq_stmt_get(a->c, ST_CHANGE_INSERT, &st);
    for (size_t i = 0; i < cs->n && r >= 0; i++) {
        r = sq_bind_check(a->c, sqlite3_bind_int64(st, 1, commit_id) |
                                    sqlite3_bind_int64(st, 2, (int64_t)i) |
                                    sqlite3_bind_int(st, 3, cs->items[i].op) |
                                    bind_text(st, 4, cs->items[i].meta.path));
        if (r >= 0)
            r = sq_stmt_run(a->c, st);
    }
    *ret_id = commit_id;
    return r;
}

/* Applies cs to sandbox `id` inside the open write transaction. */
int sq_commit_locked(struct sqlite_store *s, const char *id, const struct changeset *cs,
                     const struct commit_opts *opts, struct commit_result *ret)
{
    struct conn *c = s->w;
    struct apply a = {.c = c};
    int64_t version;
    {
        _cleanup_reset_ sqlite3_stmt *st = NULL;
        int r = sq_query_sandbox(c, ST_SB_STATE, id, &st);
        if (r < 0)
            return r;
        if (r == 0)
            return err_set(-ENOENT, "sandbox not found");
        a.sid = sqlite3_column_int64(st, 0);
        version = sqlite3_column_int64(st, 1);
        a.size = sqlite3_column_int64(st, 2);
        a.count = sqlite3_column_int64(st, 3);
    }
    if (opts->expect_version >= 0 && opts->expect_version != version)
        return err_set(-ESTALE, "sandbox changed: version %" PRId64 ", expected %" PRId64, version,
                       opts->expect_version);
    int64_t now_ms = opts->now_ms > 0 ? opts->now_ms : time_now_ms();
    a.now_ns = now_ms * 1000000;
    a.create_parents = cs->create_parents;
    a.keep_dirs = cs->keep_dirs;
    int64_t old_size = a.size;
    int r = 0;
    for (size_t i = 0; i < cs->n && r >= 0; i++) {
        const struct change *ch = &cs->items[i];
        if (ch->op == CHANGE_PUT)
            r = change_put(&a, &ch->meta);
        else if (ch->op == CHANGE_DELETE)
            r = change_delete(&a, ch->meta.path);
        else
            r = err_set(-EINVAL, "invalid change");
    }
    if (r < 0)
        return r;
    /* A commit that does not grow the sandbox is always allowed, so that an over-quota sandbox
     * (quota lowered) can still be cleaned up. */
    if (opts->quota_bytes > 0 && a.size > opts->quota_bytes && a.size > old_size)
        return err_set(-ERR_QUOTA,
                       "sandbox storage quota exceeded: %" PRId64 " bytes needed, quota is %" PRId64
                       " bytes",
                       a.size, opts->quota_bytes);
    int64_t commit_id;
    r = commit_log(&a, cs, version + 1, now_ms, a.size - old_size, &commit_id);
    if (r < 0)
        return r;
    sqlite3_stmt *st = NULL;
    r = sq_stmt_get(c, ST_SB_UPDATE, &st);
    if (r >= 0)
        r = sq_bind_check(
            c, sqlite3_bind_int64(st, 1, a.sid) | sqlite3_bind_int64(st, 2, version + 1) |
                   sqlite3_bind_int64(st, 3, a.size) | sqlite3_bind_int64(st, 4, a.count) |
                   sqlite3_bind_int64(st, 5, now_ms) | bind_text(st, 6, cs->new_cwd));
    if (r >= 0)
        r = sq_stmt_run(c, st);
    if (r >= 0)
        r = pins_drop(c, cs, false);
    if (r < 0)
        return r;
    if (ret) {
        ret->version = version + 1;
        ret->size_bytes = a.size;
        ret->commit_id = commit_id;
    }
    return 0;
}

static const struct commit_opts default_opts = {.expect_version = -1};

int sq_commit(struct store *st, const char *sandbox_id, const struct changeset *cs,
              const struct commit_opts *opts, struct commit_result *ret)
{
    struct sqlite_store *s = to_sq(st);
    struct changeset empty = {0};
    int r = sq_wtx_begin(s);
    if (r < 0)
        return r;
    r = sq_commit_locked(s, sandbox_id, cs ? cs : &empty, opts ? opts : &default_opts, ret);
    return sq_wtx_end(s, r);
}

int sq_files_delete_all(struct sqlite_store *s, int64_t sid)
{
    struct apply a = {.c = s->w, .sid = sid};
    return subtree_delete(&a, "/", 1);
}

/* The change set's contents lose their pins and become GC candidates; the collection runs after
 * the transaction, so that whatever nothing else references goes at once. */
int sq_discard(struct store *st, const struct changeset *cs)
{
    struct sqlite_store *s = to_sq(st);
    int r = sq_wtx_begin(s);
    if (r < 0)
        return r;
    r = sq_wtx_end(s, pins_drop(s->w, cs, true));
    return r < 0 ? r : sq_gc_run(s, NULL);
}

/*
 * history.c — restore, fork and diff of sandbox versions (sandbox/history.h). A restore and a
 * diff compare two trees read whole from the store, in path order, with one merge pass.
 */
#include "sandbox/history.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/array.h"
#include "util/err.h"
#include "util/timeutil.h"

/* A tree's rows, in path order. */
struct rows {
    struct file_meta *v;
    size_t n, cap;
};

static void rows_release(struct rows *t)
{
    for (size_t i = 0; i < t->n; i++)
        file_meta_release(&t->v[i]);
    free(t->v);
    memset(t, 0, sizeof(*t));
}

static int rows_add(const struct file_meta *m, void *userdata)
{
    struct rows *t = userdata;
    if (t->n >= HISTORY_TREE_ROWS_MAX)
        return err_set(-ERR_TOO_MANY_ENTRIES,
                       "the tree has more than %d entries, the most a restore or a diff compares",
                       HISTORY_TREE_ROWS_MAX);
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        struct file_meta *v = reallocarray(t->v, cap, sizeof(*v));
        if (!v)
            return -ENOMEM;
        t->v = v;
        t->cap = cap;
    }
    int r = file_meta_copy(&t->v[t->n], m);
    if (r < 0)
        return r;
    t->n++;
    return 0;
}

/* The tree at `version` (< 0: the current one). */
static int rows_read(struct store *st, const char *id, int64_t version, struct rows *ret)
{
    int r = version < 0 ? store_list(st, id, "/", 0, rows_add, ret)
                        : store_list_at(st, id, version, "/", 0, rows_add, ret);
    if (r < 0)
        rows_release(ret);
    return r;
}

/* True when b would change what a reader of a sees: its kind, mode, bytes or target, and for a
 * file or symlink its mtime (a directory's mtime follows from its entries). */
static bool row_differs(const struct file_meta *a, const struct file_meta *b, bool mtimes)
{
    if (a->kind != b->kind || a->mode != b->mode)
        return true;
    if (a->kind == FILE_KIND_DIR)
        return mtimes && a->mtime_ns != b->mtime_ns;
    if (a->size != b->size || a->has_content != b->has_content ||
        (a->has_content && memcmp(a->content, b->content, CONTENT_ID_LEN) != 0))
        return true;
    if (a->kind == FILE_KIND_SYMLINK &&
        strcmp(a->target ? a->target : "", b->target ? b->target : ""))
        return true;
    return mtimes && a->mtime_ns != b->mtime_ns;
}

/* memcmp order of two paths (the store's). */
static int path_cmp(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int c = memcmp(a, b, la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

/* The merge of trees a (old) and b (new): cb for each path only in a (deleted), only in b
 * (added) or in both but different (modified). */
static int merge(const struct rows *a, const struct rows *b, bool mtimes, sandbox_diff_cb cb,
                 void *userdata)
{
    size_t i = 0, j = 0;
    int r = 0;
    while (r == 0 && (i < a->n || j < b->n)) {
        int c = i == a->n ? 1 : j == b->n ? -1 : path_cmp(a->v[i].path, b->v[j].path);
        if (c < 0)
            r = cb(PATH_DELETED, &a->v[i++], userdata);
        else if (c > 0)
            r = cb(PATH_ADDED, &b->v[j++], userdata);
        else {
            if (row_differs(&a->v[i], &b->v[j], mtimes))
                r = cb(PATH_MODIFIED, &b->v[j], userdata);
            i++;
            j++;
        }
    }
    return r;
}

int sandbox_diff(struct sandboxes *sbx, const char *sandbox_id, int64_t from, int64_t to,
                 sandbox_diff_cb cb, void *userdata)
{
    struct store *st = sandboxes_store(sbx);
    struct rows a = {0}, b = {0};
    int r = rows_read(st, sandbox_id, from, &a);
    if (r >= 0)
        r = rows_read(st, sandbox_id, to, &b);
    if (r >= 0)
        r = merge(&a, &b, false, cb, userdata);
    rows_release(&a);
    rows_release(&b);
    return r;
}

/* ---- restore ------------------------------------------------------------------------------ */

struct restore_build {
    struct changeset *cs;
    const char *gone; /* the last path deleted or made a non-directory: what lies below it goes
                       * with it (the store removes a directory's subtree when a file replaces
                       * it), so no change below it is made */
};

static bool below(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && path[n] == '/';
}

static int restore_one(enum path_change_kind change, const struct file_meta *m, void *userdata)
{
    struct restore_build *b = userdata;
    if (change == PATH_DELETED) {
        if (b->gone && below(m->path, b->gone))
            return 0;
        b->gone = m->path;
        return changeset_delete(b->cs, m->path);
    }
    if (m->kind != FILE_KIND_DIR)
        b->gone = m->path;
    return changeset_put(b->cs, m);
}

int sandbox_restore(struct sandboxes *sbx, struct sandbox_rec *rec, int64_t version,
                    const char *snapshot)
{
    struct store *st = sandboxes_store(sbx);
    struct commit_rec target;
    bool have_target = false;
    int r = 0;
    if (version != rec->version) {
        r = store_commit_get(st, rec->id, version, &target);
        have_target = r >= 0;
    }
    struct rows cur = {0}, old = {0};
    if (r >= 0)
        r = rows_read(st, rec->id, -1, &cur);
    if (r >= 0)
        r = rows_read(st, rec->id, version, &old);
    struct changeset cs;
    changeset_init(&cs, "restore");
    cs.unpinned = true; /* every content it puts is held by the version restored */
    struct restore_build b = {.cs = &cs};
    if (r >= 0)
        r = merge(&cur, &old, true, restore_one, &b);
    const char *cwd = have_target && target.cwd ? target.cwd : NULL;
    if (r >= 0 && cwd && (!rec->cwd || strcmp(cwd, rec->cwd) != 0) && !(cs.new_cwd = strdup(cwd)))
        r = -ENOMEM;
    if (r >= 0) {
        json_t *info = json_pack("{sI}", "restoredFrom", (json_int_t)version);
        if (info && snapshot)
            json_object_set_new(info, "snapshot", json_string(snapshot));
        char *text = info ? json_dumps(info, JSON_COMPACT) : NULL;
        json_decref(info);
        r = text ? changeset_set_info(&cs, text) : -ENOMEM;
        free(text);
    }
    rows_release(&cur);
    rows_release(&old);
    if (have_target)
        commit_rec_release(&target);
    if (r >= 0)
        r = sandbox_commit(sbx, rec, &cs);
    changeset_release(&cs);
    return r;
}

/* ---- fork --------------------------------------------------------------------------------- */

int sandbox_fork(struct sandboxes *sbx, const struct sandbox_rec *src, int64_t version,
                 const char *name, struct sandbox_rec *ret)
{
    const struct sandbox_config *cfg = sandboxes_config(sbx);
    struct sandbox_rec rec = *src;
    int r = rand_uuid(rec.id);
    if (r < 0)
        return r;
    rec.name = (char *)(name ? name : src->name);
    rec.created_ms = time_now_ms();
    rec.last_used_ms = 0;
    struct commit_opts opts = {
        .expect_version = -1,
        .quota_bytes = cfg->quota_bytes,
        .now_ms = rec.created_ms,
        .max_owner_sandboxes = cfg->max_per_owner,
    };
    json_t *info = json_pack("{sssI}", "from", src->id, "version", (json_int_t)version);
    char *text = info ? json_dumps(info, JSON_COMPACT) : NULL;
    json_decref(info);
    if (!text)
        return -ENOMEM;
    r = store_sandbox_fork(sandboxes_store(sbx), src->id, version, &rec, text, &opts);
    free(text);
    if (r == -ERR_QUOTA)
        err_detail("SANDBOX_QUOTA_BYTES=%lld", (long long)cfg->quota_bytes);
    if (r == -ERR_SANDBOX_LIMIT)
        err_detail("MAX_SANDBOXES_PER_OWNER=%lld", (long long)cfg->max_per_owner);
    if (r < 0)
        return r;
    struct sandbox_rec created;
    r = sandbox_lookup(sbx, rec.id, NULL, NULL, &created);
    if (r < 0)
        return r;
    struct changeset none;
    changeset_init(&none, "fork");
    sandbox_tell_commit(sbx, created.id, -1, created.version, &none, NULL);
    changeset_release(&none);
    *ret = created;
    return 0;
}

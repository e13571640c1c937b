#include "sandbox/sandbox.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/reserved.h"
#include "util/err.h"
#include "util/jsontext.h"
#include "util/path.h"
#include "util/timeutil.h"

#define SYMLINK_MAX_FOLLOW 40

int sandbox_lookup(struct app *app, const char *id, const char *tenant, const char *sub,
                   struct sandbox_rec *ret_rec)
{
    int r = store_sandbox_get(app->store, id, tenant, sub, ret_rec);
    if (r == -ENOENT)
        return err_set(-ERR_SANDBOX_NOT_FOUND, "sandbox not found: %s", id);
    return r;
}

int sandbox_open(struct app *app, const char *id, const char *tenant, const char *sub,
                 enum lock_mode mode, struct sandbox_rec *ret_rec, struct lock_ref **ret_lock)
{
    /* Ownership first, from the record alone and before the lock: a sandbox of someone else is
     * answered exactly like a missing one (one lookup, no wait), so a stranger can neither tell
     * that its owner is busy nor queue on its lock (a waiting writer holds back new readers). */
    int r = sandbox_lookup(app, id, tenant, sub, ret_rec);
    if (r < 0)
        return r;
    sandbox_rec_release(ret_rec);
    struct lock_ref *lock = NULL;
    r = locks_acquire(app->locks, id, mode, app->cfg->lock_timeout_ms, &lock);
    if (r < 0)
        return r;
    /* the record as of the lock: it may have changed, or gone, while we waited */
    r = sandbox_lookup(app, id, tenant, sub, ret_rec);
    if (r < 0) {
        locks_release(lock);
        return r;
    }
    *ret_lock = lock;
    return 0;
}

static int commit_once(struct app *app, struct sandbox_rec *rec, const struct changeset *cs)
{
    struct commit_opts opts = {
        .expect_version = rec->version,
        .quota_bytes = app->cfg->sandbox_quota_bytes,
        .now_ms = time_now_ms(),
    };
    struct commit_result res;
    int r = reserved_check_changeset(cs);
    if (r < 0)
        return r;
    r = store_commit(app->store, rec->id, cs, &opts, &res);
    if (r == -ERR_QUOTA) {
        err_detail("SANDBOX_QUOTA_BYTES=%lld", (long long)app->cfg->sandbox_quota_bytes);
        return r;
    }
    if (r == -ESTALE)
        return err_set(-ERR_BUSY, "the sandbox changed concurrently; retry");
    if (r == -ENOENT && !err_message())
        return err_set(-ENOENT, "parent directory does not exist");
    if (r < 0)
        return r;
    rec->version = res.version;
    rec->size_bytes = res.size_bytes;
    rec->last_used_ms = opts.now_ms;
    if (cs->new_cwd) {
        char *cwd = strdup(cs->new_cwd);
        if (cwd) {
            free(rec->cwd);
            rec->cwd = cwd;
        }
    }
    return 0;
}

void sandbox_discard(struct app *app, const struct changeset *cs)
{
    char saved[512];
    const char *m = err_message();
    snprintf(saved, sizeof(saved), "%s", m ? m : "");
    if (store_discard(app->store, cs) == 0)
        return;
    /* Left pinned until its lease expires and the store's GC takes it; the caller's own error
     * is what its client must see. */
    err_clear_message();
    if (m)
        err_set(-EIO, "%s", saved);
}

int sandbox_commit_untold(struct app *app, struct sandbox_rec *rec, const struct changeset *cs)
{
    int r = commit_once(app, rec, cs);
    if (r < 0)
        sandbox_discard(app, cs); /* nothing references what it stored: reclaim it now */
    return r;
}

void sandbox_tell_commit(struct app *app, const char *sandbox_id, int64_t old_version,
                         int64_t new_version, const struct changeset *cs, const char *upper_dir)
{
    if (app->after_commit)
        app->after_commit(app, sandbox_id, old_version, new_version, cs, upper_dir);
}

int sandbox_commit(struct app *app, struct sandbox_rec *rec, const struct changeset *cs)
{
    int64_t old = rec->version;
    int r = sandbox_commit_untold(app, rec, cs);
    if (r == 0)
        sandbox_tell_commit(app, rec->id, old, rec->version, cs, NULL);
    return r;
}

/* Joins dir and the remaining segments `rest` (may be empty) into a new normalised path. */
static int join_rest(const char *dir, const char *rest, char **ret)
{
    return path_resolve(dir, rest, ret);
}

int sandbox_resolve(struct app *app, const char *sandbox_id, const char *path, bool follow_last,
                    char **ret_path, struct file_meta *ret_meta)
{
    *ret_path = NULL;
    char *todo = strdup(path); /* the normalised path still to resolve */
    if (!todo)
        return -ENOMEM;
    int follows = 0;
restart:;
    /* walk segment by segment: `done` is the resolved prefix */
    char *done = strdup("/");
    if (!done) {
        free(todo);
        return -ENOMEM;
    }
    const char *p = todo;
    int rc = 0;
    struct file_meta meta;
    memset(&meta, 0, sizeof(meta));
    bool have_meta = false;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *seg_end = strchr(p, '/');
        size_t seglen = seg_end ? (size_t)(seg_end - p) : strlen(p);
        bool last = p[seglen] == '\0' || (seg_end && seg_end[strspn(seg_end, "/")] == '\0');
        size_t dlen = strlen(done);
        char *cand = malloc(dlen + seglen + 2);
        if (!cand) {
            rc = -ENOMEM;
            break;
        }
        memcpy(cand, done, dlen);
        size_t off = dlen;
        if (dlen > 1)
            cand[off++] = '/';
        memcpy(cand + off, p, seglen);
        cand[off + seglen] = '\0';
        if (have_meta)
            file_meta_release(&meta);
        have_meta = false;
        rc = store_stat(app->store, sandbox_id, cand, &meta);
        if (rc == -ENOENT) {
            if (last) {
                free(done);
                *ret_path = cand;
                free(todo);
                return err_set(-ENOENT, "no such file or directory: %s", cand);
            }
            free(cand);
            rc = err_set(-ENOENT, "no such file or directory: %s", path);
            break;
        }
        if (rc < 0) {
            free(cand);
            break;
        }
        have_meta = true;
        if (meta.kind == FILE_KIND_SYMLINK && (!last || follow_last)) {
            if (++follows > SYMLINK_MAX_FOLLOW) {
                free(cand);
                rc = err_set(-ELOOP, "too many levels of symbolic links: %s", path);
                break;
            }
            /* new path = (target relative to the link's dir) + remaining segments */
            char *linkdir = path_parent(cand);
            char *base = NULL, *next = NULL;
            rc = linkdir ? path_resolve(linkdir, meta.target ? meta.target : "", &base) : -ENOMEM;
            if (rc == 0)
                rc = join_rest(base, p + seglen + (p[seglen] == '/' ? 1 : 0), &next);
            free(linkdir);
            free(base);
            free(cand);
            file_meta_release(&meta);
            have_meta = false;
            if (rc < 0)
                break;
            free(todo);
            free(done);
            todo = next;
            goto restart;
        }
        if (!last && meta.kind != FILE_KIND_DIR) {
            rc = err_set(-ENOTDIR, "not a directory: %s", cand);
            free(cand);
            break;
        }
        free(done);
        done = cand;
        p += seglen;
    }
    if (rc < 0) {
        if (have_meta)
            file_meta_release(&meta);
        free(done);
        free(todo);
        return rc;
    }
    free(todo);
    if (!have_meta) {
        /* the root itself */
        memset(&meta, 0, sizeof(meta));
        meta.path = strdup("/");
        meta.kind = FILE_KIND_DIR;
        meta.mode = 0755;
        if (!meta.path) {
            free(done);
            return -ENOMEM;
        }
    }
    *ret_path = done;
    if (ret_meta)
        *ret_meta = meta;
    else
        file_meta_release(&meta);
    return 0;
}

int sandbox_add_skeleton(struct changeset *cs)
{
    int64_t now = time_now_ns();
    struct file_meta dirs[] = {
        {.path = "/home", .kind = FILE_KIND_DIR, .mode = 0755, .mtime_ns = now},
        {.path = "/home/user", .kind = FILE_KIND_DIR, .mode = 0755, .mtime_ns = now},
        {.path = "/tmp", .kind = FILE_KIND_DIR, .mode = 01777, .mtime_ns = now},
    };
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        int r = changeset_put(cs, &dirs[i]);
        if (r < 0)
            return r;
    }
    return 0;
}

int sandbox_put_bytes(struct app *app, struct changeset *cs, const char *path, const void *data,
                      size_t len, uint32_t mode)
{
    struct file_meta m = {
        .path = (char *)path,
        .kind = FILE_KIND_FILE,
        .mode = mode,
        .mtime_ns = time_now_ns(),
    };
    if (len > 0) {
        struct content_writer *w = NULL;
        int r = store_content_begin(app->store, &w);
        if (r < 0)
            return r;
        r = store_content_write(app->store, w, data, len);
        if (r < 0) {
            store_content_abort(app->store, w);
            return r;
        }
        r = store_content_finish(app->store, w, m.content, &m.size);
        if (r < 0)
            return r;
        m.has_content = true;
    }
    return changeset_put(cs, &m);
}

/* lastUsedAt is advisory: a lost update only makes it a second older. A tiny table of recent
 * touches keeps read-heavy workloads from writing on every request. */
#define TOUCH_SLOTS 64
static struct {
    char id[UUID_STR_LEN];
    int64_t ms;
} touches[TOUCH_SLOTS];
static pthread_mutex_t touch_mu = PTHREAD_MUTEX_INITIALIZER;

void sandbox_touch(struct app *app, const char *sandbox_id)
{
    int64_t now = time_now_ms();
    unsigned h = 0;
    for (const char *p = sandbox_id; *p; p++)
        h = h * 31 + (unsigned char)*p;
    h %= TOUCH_SLOTS;
    pthread_mutex_lock(&touch_mu);
    bool recent = strcmp(touches[h].id, sandbox_id) == 0 && now - touches[h].ms < 1000;
    if (!recent) {
        snprintf(touches[h].id, sizeof(touches[h].id), "%s", sandbox_id);
        touches[h].ms = now;
    }
    pthread_mutex_unlock(&touch_mu);
    if (!recent && store_sandbox_touch(app->store, sandbox_id, now) < 0)
        err_clear(); /* advisory: a failed touch must not fail the request */
}

json_t *sandbox_mtime_json(int64_t mtime_ns)
{
    char ts[TIME_ISO_LEN];
    time_iso8601(mtime_ns / 1000000, ts, sizeof(ts));
    return json_string(ts);
}

json_t *sandbox_rec_json(const struct sandbox_rec *rec)
{
    json_t *o = json_object();
    char ts[TIME_ISO_LEN];
    json_object_set_new(o, "id", json_string(rec->id));
    json_object_set_new(o, "name", rec->name ? json_string(rec->name) : json_null());
    json_object_set_new(o, "owner", json_string(rec->sub));
    json_object_set_new(o, "tenant", json_string(rec->tenant));
    time_iso8601(rec->created_ms, ts, sizeof(ts));
    json_object_set_new(o, "createdAt", json_string(ts));
    if (rec->last_used_ms > 0) {
        time_iso8601(rec->last_used_ms, ts, sizeof(ts));
        json_object_set_new(o, "lastUsedAt", json_string(ts));
    } else {
        json_object_set_new(o, "lastUsedAt", json_null());
    }
    json_object_set_new(o, "python", json_boolean(rec->python));
    json_object_set_new(o, "javascript", json_boolean(rec->javascript));
    json_object_set_new(o, "network", json_boolean(rec->network));
    const char *cwd = rec->cwd ? rec->cwd : "/home/user";
    if (jsontext_set_path(o, "cwd", cwd, strlen(cwd)) < 0) {
        json_decref(o);
        return NULL;
    }
    json_t *env = rec->env_json ? json_loads(rec->env_json, 0, NULL) : NULL;
    json_object_set_new(o, "env", env ? env : json_object());
    json_object_set_new(o, "fileCount", json_integer(rec->file_count));
    json_object_set_new(o, "sizeBytes", json_integer(rec->size_bytes));
    json_object_set_new(o, "version", json_integer(rec->version));
    return o;
}

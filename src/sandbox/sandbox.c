#include "sandbox/sandbox.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/reserved.h"
#include "util/err.h"
#include "util/home.h"
#include "util/path.h"
#include "util/timeutil.h"

#define SYMLINK_MAX_FOLLOW 40

struct sandboxes {
    struct store *st; /* not owned */
    struct sandbox_config cfg;
    struct locks *locks; /* per-sandbox readers-writer locks */
    struct sandbox_observer observers[SANDBOX_OBSERVERS_MAX];
    size_t nobservers;
};

/* The sandbox locks of other servers on the same database: the store's (store_lock_acquire). */
static int remote_acquire(void *ud, const char *id, enum lock_mode mode, int64_t timeout_ms,
                          void **ret)
{
    struct store_lock *l;
    int r = store_lock_acquire(ud, id, mode == LOCK_EXCLUSIVE, timeout_ms, &l);
    if (r >= 0)
        *ret = l;
    return r;
}

static void remote_release(void *ud, void *handle)
{
    store_lock_release(ud, handle);
}

int sandboxes_new(struct store *st, const struct sandbox_config *cfg, struct sandboxes **ret)
{
    *ret = NULL;
    struct sandboxes *sbx = calloc(1, sizeof(*sbx));
    if (!sbx)
        return -ENOMEM;
    sbx->st = st;
    sbx->cfg = *cfg;
    struct lock_remote remote = {.acquire = remote_acquire, .release = remote_release, .ud = st};
    int r = locks_new(store_has_locks(st) ? &remote : NULL, &sbx->locks);
    if (r < 0) {
        free(sbx);
        return r;
    }
    *ret = sbx;
    return 0;
}

void sandboxes_free(struct sandboxes *sbx)
{
    if (!sbx)
        return;
    locks_free(sbx->locks);
    free(sbx);
}

int64_t sandboxes_quota_bytes(const struct sandboxes *sbx)
{
    return sbx->cfg.quota_bytes;
}

struct store *sandboxes_store(const struct sandboxes *sbx)
{
    return sbx->st;
}

const struct sandbox_config *sandboxes_config(const struct sandboxes *sbx)
{
    return &sbx->cfg;
}

int sandbox_observe(struct sandboxes *sbx, const struct sandbox_observer *o)
{
    if (sbx->nobservers == SANDBOX_OBSERVERS_MAX)
        return -ENOSPC;
    sbx->observers[sbx->nobservers++] = *o;
    return 0;
}

void sandbox_unobserve(struct sandboxes *sbx, void *ud)
{
    size_t kept = 0;
    for (size_t i = 0; i < sbx->nobservers; i++)
        if (sbx->observers[i].ud != ud)
            sbx->observers[kept++] = sbx->observers[i];
    sbx->nobservers = kept;
}

static void tell_deleted(struct sandboxes *sbx, const char *sandbox_id)
{
    for (size_t i = 0; i < sbx->nobservers; i++)
        if (sbx->observers[i].deleted)
            sbx->observers[i].deleted(sbx->observers[i].ud, sandbox_id);
}

int sandbox_lookup(struct sandboxes *sbx, const char *id, const char *tenant, const char *sub,
                   struct sandbox_rec *ret_rec)
{
    int r = store_sandbox_get(sbx->st, id, tenant, sub, ret_rec);
    if (r == -ENOENT)
        return err_set(-ERR_SANDBOX_NOT_FOUND, "sandbox not found: %s", id);
    return r;
}

int sandbox_open(struct sandboxes *sbx, const char *id, const char *tenant, const char *sub,
                 enum lock_mode mode, struct sandbox_rec *ret_rec, struct lock_ref **ret_lock)
{
    /* Ownership first, from the record alone and before the lock: a sandbox of someone else is
     * answered exactly like a missing one (one lookup, no wait), so a stranger can neither tell
     * that its owner is busy nor queue on its lock (a waiting writer holds back new readers). */
    int r = sandbox_lookup(sbx, id, tenant, sub, ret_rec);
    if (r < 0)
        return r;
    sandbox_rec_release(ret_rec);
    struct lock_ref *lock = NULL;
    r = locks_acquire(sbx->locks, id, mode, sbx->cfg.lock_timeout_ms, &lock);
    if (r < 0)
        return r;
    /* the record as of the lock: it may have changed, or gone, while we waited */
    r = sandbox_lookup(sbx, id, tenant, sub, ret_rec);
    if (r < 0) {
        locks_release(lock);
        return r;
    }
    *ret_lock = lock;
    return 0;
}

/* The details of a refusal by the sandbox's quota. */
static int quota_error(struct sandboxes *sbx, int r)
{
    err_detail("SANDBOX_QUOTA_BYTES=%lld", (long long)sbx->cfg.quota_bytes);
    return r;
}

/* True when the store no longer has the sandbox (a commit's -ENOENT may mean that, or a missing
 * parent). Keeps this thread's error message. */
static bool sandbox_gone(struct sandboxes *sbx, const char *id)
{
    struct err_saved saved;
    err_save(&saved);
    struct sandbox_rec rec;
    int r = store_sandbox_get(sbx->st, id, NULL, NULL, &rec);
    if (r == 0)
        sandbox_rec_release(&rec);
    err_clear();
    err_restore(&saved, -ENOENT);
    return r == -ENOENT;
}

/* Collects what a commit left unreferenced (deleted or replaced files), so that the space it
 * held is reused by the next writes instead of waiting for a restart. The commit stands
 * whatever this does: what cannot be collected now (a full disk may refuse even the
 * collection's transaction) stays a candidate for the next collection. */
static void collect(struct sandboxes *sbx)
{
    struct gc_stats gs;
    if (store_gc(sbx->st, &gs) < 0)
        err_clear();
}

static int commit_once(struct sandboxes *sbx, struct sandbox_rec *rec, const struct changeset *cs)
{
    struct commit_opts opts = {
        .expect_version = rec->version,
        .quota_bytes = sbx->cfg.quota_bytes,
        .now_ms = time_now_ms(),
        .history_max_commits = sbx->cfg.history_max_commits,
        .history_max_age_ms = sbx->cfg.history_max_age_ms,
    };
    struct commit_result res;
    int r = reserved_check_changeset(cs);
    if (r < 0)
        return r;
    r = store_commit(sbx->st, rec->id, cs, &opts, &res);
    if (r == -ERR_QUOTA)
        return quota_error(sbx, r);
    if (r == -ESTALE)
        return err_set(-ERR_BUSY, "the sandbox changed concurrently; retry");
    if (r == -ENOENT && sandbox_gone(sbx, rec->id))
        return err_set(-ERR_SANDBOX_NOT_FOUND, "sandbox not found (deleted meanwhile)");
    if (r == -ENOENT && !err_message())
        return err_set(-ENOENT, "parent directory does not exist");
    if (r < 0)
        return r;
    if (res.unreferenced)
        collect(sbx);
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

void sandbox_discard(struct sandboxes *sbx, const struct changeset *cs)
{
    struct err_saved saved;
    err_save(&saved);
    if (store_discard(sbx->st, cs) == 0)
        return;
    /* Left pinned until its lease expires and the store's GC takes it; the caller's own error
     * is what its client must see. */
    err_restore(&saved, -EIO);
}

int sandbox_commit_untold(struct sandboxes *sbx, struct sandbox_rec *rec,
                          const struct changeset *cs)
{
    int r = commit_once(sbx, rec, cs);
    if (r < 0)
        sandbox_discard(sbx, cs); /* nothing references what it stored: reclaim it now */
    return r;
}

void sandbox_tell_commit(struct sandboxes *sbx, const char *sandbox_id, int64_t old_version,
                         int64_t new_version, const struct changeset *cs, const char *upper_dir)
{
    struct sandbox_commit_info c = {
        .sandbox_id = sandbox_id,
        .old_version = old_version,
        .new_version = new_version,
        .cs = cs,
        .upper_dir = upper_dir,
    };
    for (size_t i = 0; i < sbx->nobservers; i++)
        if (sbx->observers[i].committed)
            sbx->observers[i].committed(sbx->observers[i].ud, &c);
}

int sandbox_commit(struct sandboxes *sbx, struct sandbox_rec *rec, const struct changeset *cs)
{
    int64_t old = rec->version;
    int r = sandbox_commit_untold(sbx, rec, cs);
    if (r == 0)
        sandbox_tell_commit(sbx, rec->id, old, rec->version, cs, NULL);
    return r;
}

/* Joins dir and the remaining segments `rest` (may be empty) into a new normalised path. */
static int join_rest(const char *dir, const char *rest, char **ret)
{
    return path_resolve(dir, rest, ret);
}

int sandbox_resolve(struct sandboxes *sbx, const char *sandbox_id, const char *path,
                    bool follow_last, char **ret_path, struct file_meta *ret_meta)
{
    return sandbox_resolve_at(sbx, sandbox_id, -1, path, follow_last, ret_path, ret_meta);
}

int sandbox_resolve_at(struct sandboxes *sbx, const char *sandbox_id, int64_t version,
                       const char *path, bool follow_last, char **ret_path,
                       struct file_meta *ret_meta)
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
        rc = version < 0 ? store_stat(sbx->st, sandbox_id, cand, &meta)
                         : store_stat_at(sbx->st, sandbox_id, version, cand, &meta);
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
        {.path = SANDBOX_HOME, .kind = FILE_KIND_DIR, .mode = 0755, .mtime_ns = now},
        {.path = "/tmp", .kind = FILE_KIND_DIR, .mode = 01777, .mtime_ns = now},
    };
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        int r = changeset_put(cs, &dirs[i]);
        if (r < 0)
            return r;
    }
    return 0;
}

int sandbox_put_bytes(struct sandboxes *sbx, struct changeset *cs, const char *path,
                      const void *data, size_t len, uint32_t mode)
{
    struct file_meta m = {
        .path = (char *)path,
        .kind = FILE_KIND_FILE,
        .mode = mode,
        .mtime_ns = time_now_ns(),
    };
    if (len > 0) {
        struct content_writer *w = NULL;
        int r = store_content_begin(sbx->st, &w);
        if (r < 0)
            return r;
        r = store_content_write(sbx->st, w, data, len);
        if (r < 0) {
            store_content_abort(sbx->st, w);
            return r;
        }
        r = store_content_finish(sbx->st, w, m.content, &m.size);
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

void sandbox_touch(struct sandboxes *sbx, const char *sandbox_id)
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
    if (!recent && store_sandbox_touch(sbx->st, sandbox_id, now) < 0)
        err_clear(); /* advisory: a failed touch must not fail the request */
}

int sandbox_set_network(struct sandboxes *sbx, const char *id, const char *tenant, const char *sub,
                        bool on, const char *policy_json)
{
    int r = store_sandbox_set_network(sbx->st, id, tenant, sub, on, policy_json);
    if (r == -ENOENT)
        return err_set(-ERR_SANDBOX_NOT_FOUND, "sandbox not found: %s", id);
    return r;
}

int sandbox_create(struct sandboxes *sbx, const struct sandbox_rec *rec,
                   const struct changeset *initial, struct sandbox_rec *ret_created)
{
    struct commit_opts opts = {
        .expect_version = -1,
        .quota_bytes = sbx->cfg.quota_bytes,
        .now_ms = rec->created_ms,
        .max_owner_sandboxes = sbx->cfg.max_per_owner,
        .history_max_commits = sbx->cfg.history_max_commits,
        .history_max_age_ms = sbx->cfg.history_max_age_ms,
    };
    int r = reserved_check_changeset(initial);
    if (r == 0)
        r = store_sandbox_create(sbx->st, rec, initial, &opts);
    if (r < 0)
        sandbox_discard(sbx, initial);
    if (r == -ERR_QUOTA)
        return quota_error(sbx, r);
    if (r == -ERR_SANDBOX_LIMIT)
        err_detail("MAX_SANDBOXES_PER_OWNER=%lld", (long long)sbx->cfg.max_per_owner);
    if (r < 0)
        return r;
    struct sandbox_rec created;
    r = sandbox_lookup(sbx, rec->id, NULL, NULL, &created);
    if (r < 0)
        return r;
    sandbox_tell_commit(sbx, rec->id, -1, created.version, initial, NULL);
    if (ret_created)
        *ret_created = created;
    else
        sandbox_rec_release(&created);
    return 0;
}

int sandbox_delete(struct sandboxes *sbx, const char *id, const char *tenant, const char *sub)
{
    int r = store_sandbox_delete(sbx->st, id, tenant, sub);
    if (r == -ENOENT)
        return err_set(-ERR_SANDBOX_NOT_FOUND, "sandbox not found: %s", id);
    if (r < 0)
        return r;
    tell_deleted(sbx, id);
    return 0;
}

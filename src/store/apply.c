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

#include "util/array.h"
#include "util/cleanup.h"
#include "util/err.h"

/* Removes the rows in the range, keeping the accounting. */
static int subtree_delete(struct apply *a, const char *path, size_t len)
{
    struct subtree range;
    int64_t n = 0, bytes = 0;
    bool candidates = false;
    int r = subtree_init(&range, path, len);
    if (r >= 0)
        r = a->ops->range_delete(a->ctx, &range, &n, &bytes, &candidates);
    subtree_release(&range);
    if (r < 0)
        return r;
    a->count -= n;
    a->size -= bytes;
    if (candidates)
        a->unreferenced = true;
    return 0;
}

/* Accounts for the row `old` going away (its row is deleted or replaced by the caller). */
/* Accounts a row that goes; its content becomes a GC candidate unless the history keeps the
 * row, or it is `kept`, the content of the row that replaces it (NULL: none). */
static int forget_row(struct apply *a, const struct store_row *old, const uint8_t *kept)
{
    a->count--;
    if (old->kind == FILE_KIND_FILE)
        a->size -= old->size;
    if (!old->has_content || old->kept || (kept && memcmp(kept, old->content, CONTENT_ID_LEN) == 0))
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

/* ---- runs of puts in bulk ------------------------------------------------------------- */

/*
 * For an engine with bulk primitives (apply_ops.rows_get, rows_put, candidates_add), a run of
 * two or more consecutive puts (a lone put costs less through the per-row primitives) is
 * applied through a row cache that stands in for the engine's primitives: before the run, one
 * rows_get reads the rows the run will look at (each put's path and its ancestors); then the puts
 * run through change_put as always, their reads answered from the cache and their writes kept there
 * (the row as the transaction now sees it) and queued; the queue goes to the engine with one
 * rows_put. A primitive that changes rows in a way the cache does not model (a row or subtree
 * delete, when a put replaces a directory) first writes the queue, then runs on the engine, and the
 * cache follows what it did. A read the cache cannot answer goes to the engine's row_get: every row
 * this run wrote is in the cache, so the engine has the current row there. The result is therefore
 * the per-row one, in the same order.
 *
 * Memory: at most APPLY_CACHE_ROWS rows cached (past that the queue is written and the cache
 * starts over empty), APPLY_QUEUE_ROWS rows and as many candidates queued; paths, targets and
 * content ids point into the change set.
 */
#define APPLY_RUN_PUTS 1024    /* puts per run: one rows_get */
#define APPLY_RUN_MIN 2        /* a lone put goes through the per-row primitives */
#define APPLY_QUEUE_ROWS 2048  /* rows (and candidates) per rows_put (candidates_add) */
#define APPLY_CACHE_ROWS 16384 /* rows cached at most */

struct row_cache {
    const struct apply_ops *ops; /* the engine's */
    void *ctx;                   /* the engine's */
    struct row_read *rows;       /* cached rows: path and the row there now */
    size_t *queued;              /* per cached row: its index in queue + 1, 0 when none */
    uint64_t *hashes;            /* per cached row: path_hash */
    size_t n, cap;               /* cached rows; capacity of rows (and queued, hashes) */
    size_t *slots;               /* open addressing over rows: index + 1, 0 empty */
    size_t nslots;               /* a power of two, > 2 n; 0 before the first row */
    struct row_write *queue;     /* writes not yet given to the engine, distinct paths */
    size_t nqueue, qcap;
    uint8_t *cands; /* candidates not yet given, CONTENT_ID_LEN bytes each */
    size_t ncands, ccap;
};

static uint64_t path_hash(const char *p, size_t len)
{
    uint64_t h = 14695981039346656037ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    return h;
}

static void cache_release(struct row_cache *rc)
{
    free(rc->rows);
    free(rc->queued);
    free(rc->hashes);
    free(rc->slots);
    free(rc->queue);
    free(rc->cands);
}

/* The cached row at path[0..len), or NULL. */
static struct row_read *cache_find(struct row_cache *rc, const char *path, size_t len)
{
    if (rc->nslots == 0)
        return NULL;
    uint64_t h = path_hash(path, len);
    for (size_t i = h & (rc->nslots - 1);; i = (i + 1) & (rc->nslots - 1)) {
        size_t k = rc->slots[i];
        if (k == 0)
            return NULL;
        struct row_read *e = &rc->rows[k - 1];
        if (rc->hashes[k - 1] == h && e->len == len && memcmp(e->path, path, len) == 0)
            return e;
    }
}

static void slot_insert(struct row_cache *rc, size_t k)
{
    size_t i = rc->hashes[k] & (rc->nslots - 1);
    while (rc->slots[i])
        i = (i + 1) & (rc->nslots - 1);
    rc->slots[i] = k + 1;
}

/* Room for one more row, the slots at most half full. -ENOMEM. */
static int cache_grow(struct row_cache *rc)
{
    size_t need = rc->n + 1;
    size_t cap = rc->cap;
    int r = ARRAY_GROW(rc->rows, need, cap);
    if (r >= 0) {
        cap = rc->cap;
        r = ARRAY_GROW(rc->queued, need, cap);
    }
    if (r >= 0) {
        cap = rc->cap;
        r = ARRAY_GROW(rc->hashes, need, cap);
    }
    if (r < 0)
        return r;
    rc->cap = cap;
    if (2 * need < rc->nslots)
        return 0;
    size_t nslots = rc->nslots ? 2 * rc->nslots : 64;
    size_t *slots = calloc(nslots, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    free(rc->slots);
    rc->slots = slots;
    rc->nslots = nslots;
    for (size_t k = 0; k < rc->n; k++)
        slot_insert(rc, k);
    return 0;
}

/* Adds path[0..len) (not cached) with `row`, in *ret. -ENOMEM. */
static int cache_add(struct row_cache *rc, const char *path, size_t len,
                     const struct store_row *row, struct row_read **ret)
{
    int r = cache_grow(rc);
    if (r < 0)
        return r;
    size_t k = rc->n++;
    rc->rows[k] = (struct row_read){.path = path, .len = len, .row = *row};
    rc->queued[k] = 0;
    rc->hashes[k] = path_hash(path, len);
    slot_insert(rc, k);
    *ret = &rc->rows[k];
    return 0;
}

/* Gives the queued writes and candidates to the engine. */
static int cache_flush(struct row_cache *rc)
{
    int r = 0;
    if (rc->nqueue > 0) {
        r = rc->ops->rows_put(rc->ctx, rc->queue, rc->nqueue);
        if (r < 0)
            return r;
        memset(rc->queued, 0, rc->n * sizeof(*rc->queued));
        rc->nqueue = 0;
    }
    if (rc->ncands > 0) {
        r = rc->ops->candidates_add(rc->ctx, rc->cands, rc->ncands);
        rc->ncands = 0;
    }
    return r;
}

/* Makes room for a row not cached: when the cache is full, writes the queue (the engine then
 * has every row) and empties the cache. */
static int cache_room(struct row_cache *rc)
{
    if (rc->n < APPLY_CACHE_ROWS)
        return 0;
    int r = cache_flush(rc);
    if (r < 0)
        return r;
    rc->n = 0;
    memset(rc->slots, 0, rc->nslots * sizeof(*rc->slots));
    return 0;
}

static int cache_row_get(void *ctx, const char *path, size_t len, struct store_row *ret)
{
    struct row_cache *rc = ctx;
    struct row_read *e = cache_find(rc, path, len);
    if (e) {
        *ret = e->row;
        return 0;
    }
    int r = rc->ops->row_get(rc->ctx, path, len, ret);
    if (r >= 0)
        r = cache_room(rc);
    if (r >= 0)
        r = cache_add(rc, path, len, ret, &e);
    return r;
}

static int cache_row_put(void *ctx, const char *path, size_t len, int kind, uint32_t mode,
                         int64_t size, int64_t mtime_ns, const uint8_t *content, const char *target)
{
    struct row_cache *rc = ctx;
    struct store_row row = {.kind = kind, .size = size, .has_content = content != NULL};
    if (content)
        memcpy(row.content, content, CONTENT_ID_LEN);
    struct row_read *e = cache_find(rc, path, len);
    int r = 0;
    if (e)
        e->row = row;
    else if ((r = cache_room(rc)) >= 0)
        r = cache_add(rc, path, len, &row, &e);
    if (r < 0)
        return r;
    size_t *q = &rc->queued[e - rc->rows];
    if (*q == 0) {
        r = ARRAY_GROW(rc->queue, rc->nqueue + 1, rc->qcap);
        if (r < 0)
            return r;
        *q = ++rc->nqueue;
    }
    rc->queue[*q - 1] = (struct row_write){.path = path,
                                           .len = len,
                                           .kind = kind,
                                           .mode = mode,
                                           .size = size,
                                           .mtime_ns = mtime_ns,
                                           .content = content,
                                           .target = target};
    return rc->nqueue >= APPLY_QUEUE_ROWS ? cache_flush(rc) : 0;
}

/* A directory row holds no size, content or target: updating its mode and mtime is writing
 * it whole. */
static int cache_dir_update(void *ctx, const char *path, size_t len, uint32_t mode,
                            int64_t mtime_ns)
{
    return cache_row_put(ctx, path, len, FILE_KIND_DIR, mode, 0, mtime_ns, NULL, NULL);
}

static int cache_row_delete(void *ctx, const char *path, size_t len)
{
    struct row_cache *rc = ctx;
    int r = cache_flush(rc);
    if (r >= 0)
        r = rc->ops->row_delete(rc->ctx, path, len);
    struct row_read *e = r >= 0 ? cache_find(rc, path, len) : NULL;
    if (e)
        e->row = (struct store_row){0};
    return r;
}

/* memcmp order of two byte strings. */
static int key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

static int cache_range_delete(void *ctx, const struct subtree *range, int64_t *ret_rows,
                              int64_t *ret_bytes, bool *ret_candidates)
{
    struct row_cache *rc = ctx;
    int r = cache_flush(rc);
    if (r >= 0)
        r = rc->ops->range_delete(rc->ctx, range, ret_rows, ret_bytes, ret_candidates);
    if (r < 0)
        return r;
    for (size_t k = 0; k < rc->n; k++) {
        struct row_read *e = &rc->rows[k];
        if (key_cmp(e->path, e->len, range->lo, range->lolen) >= 0 &&
            key_cmp(e->path, e->len, range->hi, range->hilen) < 0)
            e->row = (struct store_row){0};
    }
    return 0;
}

static int cache_content_size(void *ctx, const uint8_t id[CONTENT_ID_LEN], int64_t *ret_size)
{
    struct row_cache *rc = ctx;
    return rc->ops->content_size(rc->ctx, id, ret_size);
}

static int cache_candidate_add(void *ctx, const uint8_t id[CONTENT_ID_LEN])
{
    struct row_cache *rc = ctx;
    int r = ARRAY_GROW(rc->cands, (rc->ncands + 1) * CONTENT_ID_LEN, rc->ccap);
    if (r < 0)
        return r;
    memcpy(rc->cands + CONTENT_ID_LEN * rc->ncands++, id, CONTENT_ID_LEN);
    return rc->ncands >= APPLY_QUEUE_ROWS ? cache_flush(rc) : 0;
}

static const struct apply_ops cache_ops = {
    .row_get = cache_row_get,
    .row_put = cache_row_put,
    .dir_update = cache_dir_update,
    .row_delete = cache_row_delete,
    .range_delete = cache_range_delete,
    .content_size = cache_content_size,
    .candidate_add = cache_candidate_add,
};

/* Caches path[0..len) unread (its row comes with the run's rows_get): 1 when it was added, 0
 * when it was cached already or the cache is full. */
static int cache_want(struct row_cache *rc, const char *path, size_t len)
{
    if (cache_find(rc, path, len) || rc->n >= APPLY_CACHE_ROWS)
        return 0;
    struct row_read *e;
    int r = cache_add(rc, path, len, &(struct store_row){0}, &e);
    return r < 0 ? r : 1;
}

/* Reads, with one rows_get, the rows the puts [from, to) of cs look at: each path and its
 * ancestors up to the first one cached already (whose own ancestors were then cached with it),
 * while the cache has room. */
static int cache_prefetch(struct row_cache *rc, const struct changeset *cs, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        const char *path = cs->items[i].meta.path;
        size_t len = path ? strlen(path) : 0;
        if (!path || !path_ok(path, len))
            continue; /* refused by change_put */
        while (len > 1) {
            int r = cache_want(rc, path, len);
            if (r <= 0) {
                if (r < 0)
                    return r;
                break;
            }
            while (len > 0 && path[len - 1] != '/')
                len--;
            len = len > 1 ? len - 1 : 0; /* the parent, unless it is the root */
        }
    }
    return rc->n > 0 ? rc->ops->rows_get(rc->ctx, rc->rows, rc->n) : 0;
}

/* Applies the puts [from, to) of cs through a row cache (above). */
static int apply_run(struct apply *a, const struct changeset *cs, size_t from, size_t to)
{
    struct row_cache rc = {.ops = a->ops, .ctx = a->ctx};
    int r = cache_prefetch(&rc, cs, from, to);
    a->ops = &cache_ops;
    a->ctx = &rc;
    for (size_t i = from; i < to && r >= 0; i++)
        r = change_put(a, &cs->items[i].meta);
    a->ops = rc.ops;
    a->ctx = rc.ctx;
    if (r >= 0)
        r = cache_flush(&rc);
    cache_release(&rc);
    return r;
}

/* The end of the run of puts that starts at `from`, at most APPLY_RUN_PUTS long. */
static size_t run_end(const struct changeset *cs, size_t from)
{
    size_t to = from;
    while (to < cs->n && to - from < APPLY_RUN_PUTS && cs->items[to].op == CHANGE_PUT)
        to++;
    return to;
}

int apply_changes(struct apply *a, const struct changeset *cs)
{
    a->create_parents = cs->create_parents;
    a->keep_dirs = cs->keep_dirs;
    bool bulk = a->ops->rows_get && a->ops->rows_put && a->ops->candidates_add;
    int r = 0;
    for (size_t i = 0; i < cs->n && r >= 0;) {
        const struct change *ch = &cs->items[i];
        size_t to = ch->op == CHANGE_PUT && bulk ? run_end(cs, i) : i;
        if (to - i >= APPLY_RUN_MIN) {
            r = apply_run(a, cs, i, to);
            i = to;
            continue;
        }
        if (ch->op == CHANGE_PUT)
            r = change_put(a, &ch->meta);
        else if (ch->op == CHANGE_DELETE)
            r = change_delete(a, ch->meta.path);
        else
            r = err_set(-EINVAL, "invalid change");
        i++;
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

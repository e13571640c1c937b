/*
 * checkout_apply — a committed change set applied to the checkout of its sandbox, so that the
 * tree follows the store without a rebuild (checkout_apply, checkout_apply_upper in checkout.h).
 * Same trust rules as checkout.c; an exec's upper is read beneath its directory fd too.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "store/reserved.h"
#include "util/array.h"
#include "util/err.h"
#include "util/path.h"
#include "workspace/checkout_internal.h"

struct applier {
    struct checkouts *cos;
    int rootfd;             /* tree root */
    int upperfd;            /* exec upper dir, -1 for file-API commits */
    struct parent_cache pc; /* parents in the tree */
    int64_t size;           /* running size of the tree */
    char *buf;              /* IO_BUF_SIZE bytes */
    const char *sandbox_id;
    bool create_parents;
};

/* Removes whatever is at pfd/name, accounting its bytes. */
static int remove_node(struct applier *a, int pfd, const char *name)
{
    int64_t bytes = 0;
    int r = rm_rf_at(pfd, name, &bytes);
    a->size -= bytes;
    return r;
}

/* mkdir -p of the parents of sandbox path p inside the tree (file-API create_parents). */
static int make_parents(struct applier *a, const char *p)
{
    char *rel = strdup(p + 1);
    if (!rel)
        return -ENOMEM;
    int r = 0;
    int fd = open_beneath(a->rootfd, "", O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
    if (fd < 0) {
        free(rel);
        return fd;
    }
    char *seg = rel;
    for (char *slash; (slash = strchr(seg, '/')); seg = slash + 1) {
        *slash = '\0';
        if (mkdirat(fd, seg, 0755) == 0) {
            /* the mode the store gives such a parent, whatever the server's umask */
            if (fchownat(fd, seg, a->cos->uid, a->cos->gid, AT_SYMLINK_NOFOLLOW) < 0 ||
                fchmodat(fd, seg, 0755, 0) < 0) {
                r = -errno;
                break;
            }
        } else if (errno != EEXIST) {
            r = -errno;
            break;
        }
        int next = open_beneath(fd, seg, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
        if (next < 0) {
            r = next;
            break;
        }
        close(fd);
        fd = next;
    }
    close(fd);
    free(rel);
    return r;
}

/* Moves the exec's file at the same path from the upper into the tree. -EAGAIN when the upper
 * does not hold a regular file of the expected size (the caller then uses the store). */
static int move_from_upper(struct applier *a, int pfd, const char *name, const struct file_meta *m)
{
    const char *slash = strrchr(m->path, '/');
    char *prel = strndup(m->path + 1, (size_t)(slash - m->path) - (slash > m->path ? 1 : 0));
    if (!prel)
        return -ENOMEM;
    int ufd = open_beneath(a->upperfd, prel, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
    free(prel);
    if (ufd < 0)
        return -EAGAIN;
    struct stat sb;
    int r = 0;
    if (fstatat(ufd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(sb.st_mode) ||
        sb.st_size != m->size || sb.st_nlink != 1)
        r = -EAGAIN;
    else if (renameat(ufd, name, pfd, name) < 0)
        r = errno == EXDEV || errno == ENOENT ? -EAGAIN : -errno;
    close(ufd);
    if (r < 0)
        return r;
    int fd = openat(pfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* Overlay bookkeeping xattrs of the upper (origin, metacopy, ...) mean something in a
     * lower layer, and no xattr is part of the store's state: strip them all, so the tree
     * equals a rebuild. */
    char names[4096];
    ssize_t len = flistxattr(fd, names, sizeof(names));
    for (ssize_t off = 0; len > 0 && off < len; off += (ssize_t)strlen(names + off) + 1)
        (void)fremovexattr(fd, names + off);
    r = checkout_set_meta_fd(a->cos, fd, m->mode, m->mtime_ns);
    close(fd);
    return r;
}

static int apply_put(struct applier *a, int pfd, const char *name, const struct file_meta *m)
{
    struct stat sb;
    bool exists = fstatat(pfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0;
    if (!exists && errno != ENOENT)
        return -errno;
    int r = 0;
    if (m->kind == FILE_KIND_DIR) {
        if (exists && S_ISDIR(sb.st_mode))
            return 0; /* mode/mtime are set after its entries changed */
        if (exists && (r = remove_node(a, pfd, name)) < 0)
            return r;
        return checkout_create_dir(a->cos, pfd, name);
    }
    if (exists && (r = remove_node(a, pfd, name)) < 0)
        return r;
    if (m->kind == FILE_KIND_SYMLINK)
        return checkout_create_symlink(a->cos, pfd, name, m);
    if (m->kind != FILE_KIND_FILE)
        return -EIO;
    /* Unlink, then rename: renaming over an existing file makes ext4 (auto_da_alloc) start
     * writeback of the new file's data at once, which the commit would wait for. */
    r = -EAGAIN;
    if (a->upperfd >= 0)
        r = move_from_upper(a, pfd, name, m);
    if (r == -EAGAIN)
        r = checkout_create_file(a->cos, pfd, name, m, a->buf);
    if (r >= 0)
        a->size += m->size;
    return r;
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* The paths of the directories cs puts, sorted (borrowed from cs; *ret NULL when none), so that
 * looking one up costs a binary search however large the change set. -ENOMEM. */
static int put_dirs(const struct changeset *cs, const char ***ret, size_t *ret_n)
{
    size_t n = 0;
    for (size_t i = 0; i < cs->n; i++)
        n += cs->items[i].op == CHANGE_PUT && cs->items[i].meta.kind == FILE_KIND_DIR;
    *ret = NULL;
    *ret_n = 0;
    if (n == 0)
        return 0;
    const char **v = malloc(n * sizeof(*v));
    if (!v)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < cs->n; i++)
        if (cs->items[i].op == CHANGE_PUT && cs->items[i].meta.kind == FILE_KIND_DIR)
            v[k++] = cs->items[i].meta.path;
    qsort(v, n, sizeof(*v), cmp_str);
    *ret = v;
    *ret_n = n;
    return 0;
}

static bool is_put_dir(const char **dirs, size_t n, const char *p)
{
    return n > 0 && bsearch(&p, dirs, n, sizeof(*dirs), cmp_str) != NULL;
}

/* Sets mode/mtime of directories the change set touched: those it PUT (from the change) and
 * the parents of its changes (from the store, which decides what a parent's mtime becomes). */
static int apply_dir_meta(struct applier *a, const struct changeset *cs)
{
    int r = 0;
    for (size_t i = cs->n; i-- > 0 && r >= 0;) {
        const struct change *c = &cs->items[i];
        if (c->op == CHANGE_PUT && c->meta.kind == FILE_KIND_DIR &&
            !reserved_path(c->meta.path, true))
            r = checkout_fix_dir(a->cos, a->rootfd, c->meta.path, c->meta.mode, c->meta.mtime_ns);
    }
    if (r < 0 || cs->n == 0)
        return r;
    /* Parents, and with create_parents all ancestors (they may have been created). */
    size_t cap = 0, np = 0, ndirs = 0;
    char **parents = NULL;
    const char **dirs = NULL;
    r = put_dirs(cs, &dirs, &ndirs);
    for (size_t i = 0; i < cs->n && r >= 0; i++) {
        if (reserved_path(cs->items[i].meta.path, true))
            continue;
        char *pp = path_parent(cs->items[i].meta.path);
        while (r >= 0) {
            if (!pp) {
                r = -ENOMEM;
                break;
            }
            if (strcmp(pp, "/") == 0) {
                free(pp);
                break;
            }
            char *next = cs->create_parents ? path_parent(pp) : strdup("/");
            if (is_put_dir(dirs, ndirs, pp)) {
                free(pp);
            } else {
                if (ARRAY_GROW(parents, np + 1, cap) < 0) {
                    free(pp);
                    free(next);
                    r = -ENOMEM;
                    break;
                }
                parents[np++] = pp;
            }
            pp = next;
        }
    }
    free(dirs);
    if (np > 1)
        qsort(parents, np, sizeof(*parents), cmp_str);
    for (size_t i = 0; i < np && r >= 0; i++) {
        if (i > 0 && strcmp(parents[i], parents[i - 1]) == 0)
            continue;
        struct file_meta m;
        memset(&m, 0, sizeof(m));
        r = store_stat(a->cos->st, a->sandbox_id, parents[i], &m);
        if (r == -ENOENT) {
            /* gone since (a refresh replays older changes): a later delete removes it */
            err_clear();
            r = 0;
            continue;
        }
        if (r == 0 && m.kind == FILE_KIND_DIR)
            r = checkout_fix_dir(a->cos, a->rootfd, parents[i], m.mode, m.mtime_ns);
        else if (r == 0)
            r = -EIO;
        file_meta_release(&m);
    }
    for (size_t i = 0; i < np; i++)
        free(parents[i]);
    free(parents);
    return r;
}

static int apply_changes(struct applier *a, const struct changeset *cs)
{
    for (size_t i = 0; i < cs->n; i++) {
        const struct change *c = &cs->items[i];
        if (!row_path_ok(c->meta.path))
            return -EINVAL; /* includes "/": the root is never put or deleted here */
        if (reserved_path(c->meta.path, c->op == CHANGE_DELETE || c->meta.kind == FILE_KIND_DIR))
            continue; /* never in a tree (checkout_rows_add) */
        const char *name;
        int pfd = checkout_parent_get(&a->pc, c->meta.path, &name);
        if (pfd == -ENOENT && c->op == CHANGE_DELETE)
            continue;
        if (pfd == -ENOENT && a->create_parents && c->op == CHANGE_PUT) {
            int r = make_parents(a, c->meta.path);
            if (r < 0)
                return r;
            pfd = checkout_parent_get(&a->pc, c->meta.path, &name);
        }
        if (pfd < 0)
            return pfd;
        int r =
            c->op == CHANGE_DELETE ? remove_node(a, pfd, name) : apply_put(a, pfd, name, &c->meta);
        if (r < 0)
            return r;
    }
    return apply_dir_meta(a, cs);
}

/* Under e->mu: applies cs, committed from old_version to new_version, to the entry's tree
 * (edfd: its directory). On failure the entry is invalid. */
static int apply_locked(struct checkouts *cos, struct entry *e, int edfd, int64_t old_version,
                        int64_t new_version, const char *upper_dir, const struct changeset *cs)
{
    struct applier a = {.cos = cos,
                        .rootfd = -1,
                        .upperfd = -1,
                        .pc = {.fd = -1},
                        .sandbox_id = e->id,
                        .create_parents = cs->create_parents};
    int r;
    /* Left behind by a larger change set (checkout_apply): it stays behind, coherent at its
     * version, for the next acquire to bring forward from the commit log. */
    if (e->version >= 0 && e->version < old_version &&
        checkout_tree_is_valid(cos, e, edfd, e->version))
        return 0;
    if (!checkout_tree_is_valid(cos, e, edfd, old_version)) {
        r = -ESTALE;
        goto out;
    }
    /* From here the tree is incoherent until retagged. */
    e->version = -1;
    if ((r = checkout_tag_invalidate(cos, edfd)) < 0)
        goto out;
    a.rootfd = openat(edfd, TREE_NAME, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (a.rootfd < 0) {
        r = -errno;
        goto out;
    }
    if (upper_dir) {
        a.upperfd = open(upper_dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (a.upperfd < 0) {
            r = -errno;
            goto out;
        }
    }
    a.pc.rootfd = a.rootfd;
    a.size = checkout_entry_size(cos, e);
    a.buf = malloc(IO_BUF_SIZE);
    if (!a.buf) {
        r = -ENOMEM;
        goto out;
    }
    r = apply_changes(&a, cs);
    if (r >= 0)
        r = checkout_tag_write(cos, edfd, new_version, a.size < 0 ? 0 : a.size);
    if (r >= 0) {
        e->version = new_version;
        checkout_entry_set_size(cos, e, a.size);
    }
out:
    if (r < 0)
        checkout_entry_invalidate_locked(cos, e);
    checkout_parent_cache_release(&a.pc);
    free(a.buf);
    closep(&a.rootfd);
    closep(&a.upperfd);
    return r;
}

static int apply_common(struct checkouts *cos, const char *sandbox_id, int64_t old_version,
                        int64_t new_version, const char *upper_dir, const struct changeset *cs)
{
    struct entry *e;
    int r = checkout_entry_pin(cos, sandbox_id, false, true, &e);
    if (r < 0 || !e)
        return r;
    pthread_mutex_lock(&e->mu);
    int edfd = checkout_entry_dir_open(cos, sandbox_id, false);
    if (edfd < 0) {
        r = edfd == -ENOENT ? 0 : edfd;
        e->version = -1;
    } else {
        r = apply_locked(cos, e, edfd, old_version, new_version, upper_dir, cs);
    }
    safe_close(edfd);
    pthread_mutex_unlock(&e->mu);
    checkout_entry_unpin(cos, e, false);
    return r;
}

/* ---- refresh from the commit log ---- */

/* One change the log names: its path and op, in log order. */
struct logged {
    char *path;
    int op;
    bool superseding; /* a put of this path came earlier and is left out */
};

struct log_read {
    struct logged *v;
    size_t n, cap;
};

static int log_add(int64_t version, int op, const char *path, void *ud)
{
    (void)version;
    struct log_read *lr = ud;
    if (op != CHANGE_PUT && op != CHANGE_DELETE)
        return err_set(-EIO, "unknown change in the commit log");
    if (ARRAY_GROW(lr->v, lr->n + 1, lr->cap) < 0)
        return -ENOMEM;
    char *p = strdup(path);
    if (!p)
        return -ENOMEM;
    lr->v[lr->n++] = (struct logged){.path = p, .op = op};
    return 0;
}

static int cmp_logged(const void *x, const void *y)
{
    const struct logged *a = *(const struct logged *const *)x,
                        *b = *(const struct logged *const *)y;
    int c = strcmp(a->path, b->path);
    return c ? c : (a < b ? -1 : a > b);
}

/*
 * The change set that takes the tree from its version to the log's last: the logged changes in
 * order, each PUT carrying the path's row as the store has it now (a path put several times
 * only at its last put; one the store no longer has is left out: a later delete in the log, of
 * it or of a parent, removes it), deletes as logged (a delete removes a whole subtree). Parents
 * are created as needed and every touched directory takes its mode and mtime from the store, as
 * in checkout_apply.
 */
static int log_changeset(struct checkouts *cos, const char *sandbox_id, struct log_read *lr,
                         struct changeset *cs)
{
    struct logged **order = malloc((lr->n ? lr->n : 1) * sizeof(*order));
    if (!order)
        return -ENOMEM;
    for (size_t i = 0; i < lr->n; i++)
        order[i] = &lr->v[i];
    qsort(order, lr->n, sizeof(*order), cmp_logged);
    /* an earlier put of a path that the log changes again is superseded */
    for (size_t i = 0; i + 1 < lr->n; i++)
        if (order[i]->op == CHANGE_PUT && strcmp(order[i]->path, order[i + 1]->path) == 0) {
            order[i]->op = -1;
            order[i + 1]->superseding = true;
        }
    free(order);
    cs->create_parents = true;
    int r = changeset_reserve(cs, lr->n);
    for (size_t i = 0; i < lr->n && r >= 0; i++) {
        const struct logged *c = &lr->v[i];
        if (c->op == CHANGE_DELETE) {
            r = changeset_delete(cs, c->path);
            continue;
        }
        if (c->op != CHANGE_PUT)
            continue;
        struct file_meta m;
        memset(&m, 0, sizeof(m));
        r = store_stat(cos->st, sandbox_id, c->path, &m);
        if (r == -ENOENT) {
            err_clear();
            r = 0;
            continue;
        }
        /* A put left out may have replaced a directory by a file, which dropped the
         * directory's contents without a logged change each; a directory put over the tree's
         * old directory would keep them: the tree is rebuilt instead. */
        if (r >= 0 && c->superseding && m.kind == FILE_KIND_DIR)
            r = err_set(-ERANGE, "a directory replaced more than once");
        if (r >= 0)
            r = changeset_put_take(cs, &m);
        file_meta_release(&m);
    }
    return r;
}

/* -ERANGE unless the sandbox is still at `version`. */
static int version_unchanged(struct checkouts *cos, const char *sandbox_id, int64_t version)
{
    struct sandbox_rec rec;
    int r = store_sandbox_get(cos->st, sandbox_id, NULL, NULL, &rec);
    if (r < 0)
        return r;
    if (rec.version != version)
        r = err_set(-ERANGE, "the sandbox moved on during the refresh");
    sandbox_rec_release(&rec);
    return r;
}

int checkout_refresh_locked(struct checkouts *cos, struct entry *e, int edfd, int64_t version)
{
    int64_t from = e->version;
    if (from < 0 || from >= version)
        return -ERANGE;
    struct log_read lr = {0};
    struct changeset cs;
    changeset_init(&cs, "refresh");
    int r = store_changes_since(cos->st, e->id, from, version, CHECKOUT_REFRESH_MAX_CHANGES,
                                log_add, &lr);
    if (r >= 0)
        r = log_changeset(cos, e->id, &lr, &cs);
    /* the rows were read as the store has them now: they are `version`'s only if no commit
     * came in between (one of another server whose lock this caller's does not exclude) */
    if (r >= 0)
        r = version_unchanged(cos, e->id, version);
    if (r == -ERANGE) {
        err_clear();
    } else if (r >= 0) {
        r = apply_locked(cos, e, edfd, from, version, NULL, &cs);
        if (r >= 0) {
            pthread_mutex_lock(&cos->mu);
            cos->stats.refreshes++;
            pthread_mutex_unlock(&cos->mu);
        }
    }
    for (size_t i = 0; i < lr.n; i++)
        free(lr.v[i].path);
    free(lr.v);
    changeset_release(&cs);
    return r;
}

int checkout_apply(struct checkouts *cos, const char *sandbox_id, int64_t old_version,
                   int64_t new_version, const struct changeset *cs)
{
    /* Left behind on purpose: the next acquire brings it forward (checkout_refresh_locked). */
    if (cs->n > CHECKOUT_APPLY_EAGER_MAX)
        return 0;
    return apply_common(cos, sandbox_id, old_version, new_version, NULL, cs);
}

int checkout_apply_upper(struct checkouts *cos, const char *sandbox_id, int64_t old_version,
                         int64_t new_version, const char *upper_dir, const struct changeset *cs)
{
    return apply_common(cos, sandbox_id, old_version, new_version, upper_dir, cs);
}

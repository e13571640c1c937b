/*
 * checkout_tree — the nodes of a checkout tree and the build of a whole tree from the store
 * (checkout_internal.h). Same trust rules as checkout.c: every path below a tree is resolved
 * beneath a directory fd without following symlinks.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/reserved.h"
#include "util/array.h"
#include "util/err.h"
#include "util/rand.h"
#include "util/timeutil.h"
#include "workspace/checkout_internal.h"

/* ---- rows and parents ---- */

void checkout_rows_release(struct rows *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        file_meta_release(&rs->v[i]);
    free(rs->v);
    memset(rs, 0, sizeof(*rs));
}

int checkout_rows_add(const struct file_meta *meta, void *userdata)
{
    struct rows *rs = userdata;
    if (reserved_path(meta->path, meta->kind == FILE_KIND_DIR))
        return 0; /* the jail's own (store/reserved.h): never materialised */
    if (ARRAY_GROW(rs->v, rs->n + 1, rs->cap) < 0)
        return -ENOMEM;
    int r = file_meta_copy(&rs->v[rs->n], meta);
    if (r < 0)
        return r;
    rs->n++;
    return 0;
}

void checkout_parent_cache_release(struct parent_cache *pc)
{
    free(pc->path);
    pc->path = NULL;
    closep(&pc->fd);
}

int checkout_parent_get(struct parent_cache *pc, const char *p, const char **ret_name)
{
    const char *slash = strrchr(p, '/');
    const char *rel = p + 1;
    size_t plen = (size_t)(slash - rel < 0 ? 0 : slash - rel);
    *ret_name = slash + 1;
    if (pc->fd >= 0 && strlen(pc->path) == plen && memcmp(pc->path, rel, plen) == 0)
        return pc->fd;
    checkout_parent_cache_release(pc);
    pc->path = strndup(rel, plen);
    if (!pc->path)
        return -ENOMEM;
    int fd = open_beneath(pc->rootfd, pc->path, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
    if (fd < 0) {
        checkout_parent_cache_release(pc);
        return fd;
    }
    pc->fd = fd;
    return fd;
}

/* ---- nodes ---- */

/* Streams the row's content (m->size bytes) into fd. */
static int write_content(struct store *st, int fd, const struct file_meta *m, char *buf)
{
    if (!m->has_content)
        return m->size == 0 ? 0 : -EIO;
    struct content_reader *rd = NULL;
    int r = store_content_open(st, m->content, &rd);
    if (r < 0)
        return r;
    int64_t total = 0;
    for (;;) {
        size_t got = 0;
        r = store_content_read(st, rd, buf, IO_BUF_SIZE, &got);
        if (r < 0 || got == 0)
            break;
        r = write_all(fd, buf, got);
        if (r < 0)
            break;
        total += (int64_t)got;
    }
    store_content_close(st, rd);
    if (r >= 0 && total != m->size)
        r = -EIO;
    return r < 0 ? r : 0;
}

int checkout_set_meta_fd(const struct checkouts *cos, int fd, uint32_t mode, int64_t mtime_ns)
{
    struct timespec ts[2];
    ts_from_ns(ts, mtime_ns);
    if (fchown(fd, cos->uid, cos->gid) < 0 || fchmod(fd, mode & 07777) < 0 || futimens(fd, ts) < 0)
        return -errno;
    return 0;
}

int checkout_create_file(const struct checkouts *cos, int pfd, const char *name,
                         const struct file_meta *m, char *buf)
{
    int fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int r = write_content(cos->st, fd, m, buf);
    if (r == 0)
        r = checkout_set_meta_fd(cos, fd, m->mode, m->mtime_ns);
    if (close(fd) < 0 && r == 0)
        r = -errno;
    return r;
}

int checkout_create_symlink(const struct checkouts *cos, int pfd, const char *name,
                            const struct file_meta *m)
{
    if (!m->target || !m->target[0])
        return -EIO;
    if (symlinkat(m->target, pfd, name) < 0)
        return -errno;
    struct timespec ts[2];
    ts_from_ns(ts, m->mtime_ns);
    if (fchownat(pfd, name, cos->uid, cos->gid, AT_SYMLINK_NOFOLLOW) < 0 ||
        utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    return 0;
}

int checkout_create_dir(const struct checkouts *cos, int pfd, const char *name)
{
    if (mkdirat(pfd, name, 0700) < 0)
        return -errno;
    if (fchownat(pfd, name, cos->uid, cos->gid, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    return 0;
}

int checkout_fix_dir(const struct checkouts *cos, int rootfd, const char *p, uint32_t mode,
                     int64_t mtime_ns)
{
    int fd = open_beneath(rootfd, p + 1, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
    if (fd < 0)
        return fd;
    int r = checkout_set_meta_fd(cos, fd, mode, mtime_ns);
    close(fd);
    return r;
}

/* ---- building a whole tree ---- */

/* Files and symlinks are created by up to BUILD_MAX_THREADS threads taking batches of rows
 * (rows of a batch mostly share a parent): creating many small files is bound by system calls,
 * which run in parallel on several cores. */
#define BUILD_MAX_THREADS 4
#define BUILD_BATCH 64

struct build_job {
    struct checkouts *cos;
    int rootfd;            /* the tree being built */
    const struct rows *rs; /* all rows; directories already exist */
    pthread_mutex_t mu;    /* next, err */
    size_t next;           /* first row of the next batch */
    int err;               /* first failure */
};

static int create_leaf(const struct checkouts *cos, struct parent_cache *pc,
                       const struct file_meta *m, char *buf)
{
    const char *name;
    int pfd = checkout_parent_get(pc, m->path, &name);
    if (pfd < 0)
        return pfd;
    if (m->kind == FILE_KIND_FILE)
        return checkout_create_file(cos, pfd, name, m, buf);
    return checkout_create_symlink(cos, pfd, name, m);
}

static void *build_worker(void *arg)
{
    struct build_job *job = arg;
    char *buf = malloc(IO_BUF_SIZE);
    struct parent_cache pc = {.rootfd = job->rootfd, .path = NULL, .fd = -1};
    int r = buf ? 0 : -ENOMEM;
    while (r >= 0) {
        pthread_mutex_lock(&job->mu);
        size_t start = job->next;
        bool stop = job->err < 0 || start >= job->rs->n;
        job->next = start + BUILD_BATCH;
        pthread_mutex_unlock(&job->mu);
        if (stop)
            break;
        size_t end = start + BUILD_BATCH < job->rs->n ? start + BUILD_BATCH : job->rs->n;
        for (size_t i = start; i < end && r >= 0; i++)
            if (job->rs->v[i].kind != FILE_KIND_DIR)
                r = create_leaf(job->cos, &pc, &job->rs->v[i], buf);
    }
    if (r < 0) {
        pthread_mutex_lock(&job->mu);
        if (job->err == 0)
            job->err = r;
        pthread_mutex_unlock(&job->mu);
    }
    checkout_parent_cache_release(&pc);
    free(buf);
    return NULL;
}

/* Creates every row below the fresh tree rootfd: directories first (in path order, so parents
 * come first), then files and symlinks in parallel, then directory modes and mtimes (creating
 * entries moved them). Adds file bytes to *size. */
static int build_rows(struct checkouts *cos, int rootfd, struct rows *rs, int64_t *size)
{
    struct parent_cache pc = {.rootfd = rootfd, .path = NULL, .fd = -1};
    int r = 0;
    size_t leaves = 0;
    for (size_t i = 0; i < rs->n && r >= 0; i++) {
        const struct file_meta *m = &rs->v[i];
        if (!row_path_ok(m->path) || m->kind < FILE_KIND_FILE || m->kind > FILE_KIND_SYMLINK) {
            r = err_set(-EIO, "bad row in store");
            break;
        }
        if (m->kind != FILE_KIND_DIR) {
            leaves++;
            if (m->kind == FILE_KIND_FILE)
                *size += m->size;
            continue;
        }
        const char *name;
        int pfd = checkout_parent_get(&pc, m->path, &name);
        r = pfd < 0 ? pfd : checkout_create_dir(cos, pfd, name);
    }
    checkout_parent_cache_release(&pc);
    if (r < 0)
        return r;

    struct build_job job = {.cos = cos, .rootfd = rootfd, .rs = rs};
    pthread_mutex_init(&job.mu, NULL);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    size_t want = leaves / (4 * BUILD_BATCH) + 1;
    if (want > BUILD_MAX_THREADS)
        want = BUILD_MAX_THREADS;
    if (ncpu > 0 && want > (size_t)ncpu)
        want = (size_t)ncpu;
    pthread_t th[BUILD_MAX_THREADS];
    size_t started = 0;
    for (; started + 1 < want; started++)
        if (pthread_create(&th[started], NULL, build_worker, &job) != 0)
            break; /* fewer threads: still correct */
    build_worker(&job);
    for (size_t i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&job.mu);
    r = job.err;

    for (size_t i = rs->n; i-- > 0 && r >= 0;)
        if (rs->v[i].kind == FILE_KIND_DIR)
            r = checkout_fix_dir(cos, rootfd, rs->v[i].path, rs->v[i].mode, rs->v[i].mtime_ns);
    return r;
}

static int store_version(struct store *st, const char *id, int64_t *ret)
{
    struct sandbox_rec rec;
    memset(&rec, 0, sizeof(rec));
    int r = store_sandbox_get(st, id, NULL, NULL, &rec);
    if (r < 0)
        return r;
    *ret = rec.version;
    sandbox_rec_release(&rec);
    return 0;
}

int checkout_build_tree(struct checkouts *cos, struct entry *e, int edfd, int64_t version)
{
    int64_t t0 = time_mono_ms();
    struct rows rs = {0};
    int64_t v1 = -1, v2 = -1;
    int r = store_version(cos->st, e->id, &v1);
    if (r >= 0 && v1 != version)
        r = -ESTALE;
    if (r >= 0)
        r = store_list(cos->st, e->id, "/", 0, checkout_rows_add, &rs);
    if (r >= 0)
        r = store_version(cos->st, e->id, &v2);
    if (r >= 0 && v2 != version)
        r = -ESTALE; /* a commit slipped in: the rows may not be `version` */
    if (r < 0) {
        checkout_rows_release(&rs);
        return r;
    }

    char bname[64];
    uint8_t rnd[8];
    char hex[17];
    r = rand_bytes(rnd, sizeof(rnd));
    if (r < 0) {
        checkout_rows_release(&rs);
        return r;
    }
    hex_encode(rnd, sizeof(rnd), hex);
    snprintf(bname, sizeof(bname), BUILD_PREFIX "%s", hex);
    int rootfd = -1;
    int64_t size = 0;
    if (mkdirat(edfd, bname, 0700) < 0) {
        r = -errno;
        goto out;
    }
    rootfd = openat(edfd, bname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (rootfd < 0) {
        r = -errno;
        goto out;
    }
    r = build_rows(cos, rootfd, &rs, &size);
    if (r >= 0 && (fchown(rootfd, 0, 0) < 0 || fchmod(rootfd, 0755) < 0))
        r = -errno;
    if (r < 0)
        goto out;
    /* Swap in: untag, exchange with an old tree (which then goes away under the build
     * name), tag. The old tree stayed valid while building. */
    e->version = -1;
    if ((r = checkout_tag_invalidate(cos, edfd)) < 0)
        goto out;
    if (renameat2(edfd, bname, edfd, TREE_NAME, RENAME_EXCHANGE) < 0) {
        if (errno != ENOENT || renameat(edfd, bname, edfd, TREE_NAME) < 0) {
            r = -errno;
            goto out;
        }
    }
    r = checkout_tag_write(cos, edfd, version, size);
    if (r < 0)
        goto out;
    e->version = version;
    checkout_entry_set_size(cos, e, size);
    pthread_mutex_lock(&cos->mu);
    cos->stats.builds++;
    cos->stats.last_build_ms = time_mono_ms() - t0;
    pthread_mutex_unlock(&cos->mu);
out:
    closep(&rootfd);
    /* The old tree after a swap, or a failed build. */
    if (checkout_trash_move(cos, edfd, bname, -1) < 0)
        checkout_rm_rf_quiet(edfd, bname);
    checkout_rows_release(&rs);
    return r;
}

/*
 * checkout — see checkout.h.
 *
 * Trust: the store's rows are checked for well-formed paths but are otherwise trusted; the trees
 * and exec upper dirs hold nodes a sandbox made (symlinks pointing anywhere, odd names, deep
 * nesting). Every path below a tree or upper is therefore resolved with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS) from a directory fd, final components are handled with *at() calls and
 * O_NOFOLLOW/AT_SYMLINK_NOFOLLOW, and nothing outside <data>/checkouts is ever written. Nobody
 * else changes a tree while we work on it (sandbox lock), so the checks are not racing a
 * sandbox process.
 */
#include "workspace/checkout.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "jail/ids.h"
#include "sandbox/reserved.h"
#include "util/err.h"
#include "util/path.h"
#include "util/rand.h"
#include "util/timeutil.h"

#define TAG_NAME "tag"
#define TAG_TMP_NAME "tag.tmp"
#define TREE_NAME "tree"
#define BUILD_PREFIX "build-"
#define TRASH_PREFIX ".trash-"
#define TAG_MAGIC "sqlfs-checkout 1"
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
    char *dir;                 /* <data>/checkouts */
    int dirfd;                 /* O_PATH fd of dir */
    struct store *st;          /* not owned */
    int64_t budget;            /* <= 0: unlimited */
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

/* ---------- small fs helpers ---------- */

static int open_beneath(int dirfd, const char *rel, int flags)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    long fd = syscall(SYS_openat2, dirfd, *rel ? rel : ".", &how, sizeof(how));
    if (fd < 0)
        return -errno;
    return (int)fd;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void ts_from_ns(struct timespec ts[2], int64_t mtime_ns)
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
static bool row_path_ok(const char *p)
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

/* ---------- rm -rf without following symlinks ---------- */

struct rm_frame {
    char **names; /* subdirectories still to remove */
    size_t n, i;  /* count, next index */
    dev_t dev;    /* identity of the directory, to check ".." when coming back */
    ino_t ino;
};

static void rm_frame_release(struct rm_frame *f)
{
    for (size_t k = 0; k < f->n; k++)
        free(f->names[k]);
    free(f->names);
    memset(f, 0, sizeof(*f));
}

/* Unlinks the non-directories of the directory `fd` and lists its subdirectories into f. */
static int rm_scan(int fd, struct rm_frame *f, int64_t *bytes)
{
    int dfd = dup(fd);
    if (dfd < 0)
        return -errno;
    DIR *d = fdopendir(dfd);
    if (!d) {
        int r = -errno;
        close(dfd);
        return r;
    }
    size_t cap = 0;
    int r = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        if (nm[0] == '.' && (nm[1] == '\0' || (nm[1] == '.' && nm[2] == '\0')))
            continue;
        bool isdir = de->d_type == DT_DIR;
        bool need_stat = de->d_type == DT_UNKNOWN || (bytes && de->d_type == DT_REG);
        if (need_stat) {
            struct stat sb;
            if (fstatat(fd, nm, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
                r = -errno;
                break;
            }
            isdir = S_ISDIR(sb.st_mode);
            if (bytes && S_ISREG(sb.st_mode))
                *bytes += sb.st_size;
        }
        if (!isdir) {
            if (unlinkat(fd, nm, 0) < 0 && errno != ENOENT) {
                r = -errno;
                break;
            }
            continue;
        }
        if (f->n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            char **p = realloc(f->names, ncap * sizeof(*p));
            if (!p) {
                r = -ENOMEM;
                break;
            }
            f->names = p;
            cap = ncap;
        }
        if (!(f->names[f->n] = strdup(nm))) {
            r = -ENOMEM;
            break;
        }
        f->n++;
        errno = 0;
    }
    if (r == 0 && errno != 0)
        r = -errno;
    closedir(d);
    return r;
}

/* Depth-first removal holding one directory fd at a time: it descends with openat(O_NOFOLLOW)
 * and climbs back with "..", checking that ".." is the directory it came from. Depth is not
 * limited by fds or PATH_MAX (an exec can nest directories arbitrarily deep). */
int checkout_rm_rf_at(int dirfd, const char *name, int64_t *ret_bytes)
{
    struct stat sb;
    if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(sb.st_mode)) {
        if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
            return -errno;
        if (ret_bytes && S_ISREG(sb.st_mode))
            *ret_bytes += sb.st_size;
        return 0;
    }
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct rm_frame *stack = NULL;
    size_t depth = 0, cap = 0;
    int r = 0;
    for (;;) {
        if (depth == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct rm_frame *p = realloc(stack, ncap * sizeof(*p));
            if (!p) {
                r = -ENOMEM;
                break;
            }
            stack = p;
            cap = ncap;
        }
        struct rm_frame *f = &stack[depth++];
        memset(f, 0, sizeof(*f));
        if (fstat(fd, &sb) < 0 || (r = rm_scan(fd, f, ret_bytes)) < 0) {
            if (r == 0)
                r = -errno;
            break;
        }
        f->dev = sb.st_dev;
        f->ino = sb.st_ino;
        /* Descend into the next pending subdirectory, climbing up over finished ones. */
        bool descended = false;
        while (!descended && depth > 0) {
            f = &stack[depth - 1];
            if (f->i < f->n) {
                int child =
                    openat(fd, f->names[f->i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (child < 0) {
                    r = -errno;
                    break;
                }
                f->i++;
                close(fd);
                fd = child;
                descended = true;
                break;
            }
            /* This directory is empty now: go up and remove it. */
            rm_frame_release(f);
            depth--;
            if (depth == 0)
                break;
            int up = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (up < 0) {
                r = -errno;
                break;
            }
            close(fd);
            fd = up;
            struct rm_frame *pf = &stack[depth - 1];
            if (fstat(fd, &sb) < 0 || sb.st_dev != pf->dev || sb.st_ino != pf->ino) {
                r = -EIO;
                break;
            }
            if (unlinkat(fd, pf->names[pf->i - 1], AT_REMOVEDIR) < 0) {
                r = -errno;
                break;
            }
        }
        if (r < 0 || !descended)
            break;
    }
    for (size_t k = 0; k < depth; k++)
        rm_frame_release(&stack[k]);
    free(stack);
    close(fd);
    if (r < 0)
        return r;
    if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

/* Best-effort removal of leftovers: a failure only leaves garbage that start-up removes. */
static void rm_rf_quiet(int dirfd, const char *name, int64_t *bytes)
{
    if (checkout_rm_rf_at(dirfd, name, bytes) < 0)
        return;
}

/* ---------- tags ---------- */

static void read_boot_id(char out[64])
{
    snprintf(out, 64, "none");
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char b[64];
    ssize_t n = read(fd, b, sizeof(b) - 1);
    close(fd);
    if (n <= 0)
        return;
    b[n] = '\0';
    b[strcspn(b, "\n ")] = '\0';
    if (b[0])
        snprintf(out, 64, "%s", b);
}

/* The tag lives in an extended attribute of the entry directory when the file system has them:
 * retagging after every commit is then one setxattr, where a tag file costs a new inode, a
 * rename and an unlink per commit (expensive on a busy ext4 without a journal). Where the
 * attribute is not supported the tag is the file TAG_NAME, written by rename. Readers and the
 * remover handle both. */
#define TAG_XATTR "trusted.sqlfs.checkout"

/* The tag text. Fixed width (zero-padded numbers, the boot id's fixed length): ext4 rewrites an
 * attribute of unchanged length in place (~5 us) but reallocates its block when the length
 * changes (~100 us), on every commit. version -1 gives the invalid tag of the same width. */
static int tag_format(const struct checkouts *cos, int64_t version, int64_t size, char *text,
                      size_t cap)
{
    return snprintf(text, cap, TAG_MAGIC " %020lld %020lld %s\n", (long long)version,
                    (long long)size, cos->boot_id);
}

static int tag_write(struct checkouts *cos, int edfd, int64_t version, int64_t size)
{
    char text[256];
    int len = tag_format(cos, version, size, text, sizeof(text));
    if (fsetxattr(edfd, TAG_XATTR, text, (size_t)len, 0) == 0)
        return 0;
    if (errno != EOPNOTSUPP && errno != ENOTSUP && errno != EPERM && errno != EACCES)
        return -errno;
    int fd =
        openat(edfd, TAG_TMP_NAME, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int r = write_all(fd, text, (size_t)len);
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && renameat(edfd, TAG_TMP_NAME, edfd, TAG_NAME) < 0)
        r = -errno;
    return r;
}

/* Makes the tag invalid (the tree is about to change). The attribute is overwritten with a value
 * of the same width that no reader accepts (a negative version), rather than removed: removing
 * an inode's last attribute frees its ext4 attribute block, which the next tag_write allocates
 * again (see tag_format). */
static int tag_invalidate(const struct checkouts *cos, int edfd)
{
    char text[256];
    int len = tag_format(cos, -1, 0, text, sizeof(text));
    if (fsetxattr(edfd, TAG_XATTR, text, (size_t)len, XATTR_REPLACE) < 0 &&
        errno != ENODATA && errno != EOPNOTSUPP && errno != ENOTSUP && errno != EPERM &&
        errno != EACCES)
        return -errno;
    if (unlinkat(edfd, TAG_NAME, 0) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

static int parse_i64(const char *s, char **end, int64_t *ret)
{
    errno = 0;
    long long v = strtoll(s, end, 10);
    if (errno || *end == s || v < 0)
        return -EINVAL;
    *ret = v;
    return 0;
}

/* Reads the tag: 0 and the version/size when valid for this boot, -ENOENT/-EINVAL otherwise. */
static int tag_read(struct checkouts *cos, int edfd, int64_t *ret_version, int64_t *ret_size)
{
    char b[256];
    ssize_t n = fgetxattr(edfd, TAG_XATTR, b, sizeof(b) - 1);
    /* Both present: written in different runs (attributes usable in one, not in the other),
     * so neither can be trusted. */
    if (n >= 0 && faccessat(edfd, TAG_NAME, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        return -EINVAL;
    if (n < 0) {
        int fd = openat(edfd, TAG_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        n = read(fd, b, sizeof(b) - 1);
        close(fd);
    }
    if (n <= 0)
        return -EINVAL;
    b[n] = '\0';
    size_t ml = strlen(TAG_MAGIC);
    if (strncmp(b, TAG_MAGIC " ", ml + 1) != 0)
        return -EINVAL;
    char *p = b + ml + 1, *end;
    int64_t version, size;
    if (parse_i64(p, &end, &version) < 0 || *end != ' ')
        return -EINVAL;
    if (parse_i64(end + 1, &end, &size) < 0 || *end != ' ')
        return -EINVAL;
    p = end + 1;
    p[strcspn(p, "\n")] = '\0';
    if (strcmp(p, cos->boot_id) != 0)
        return -EINVAL;
    *ret_version = version;
    *ret_size = size;
    return 0;
}

/* ---------- entries ---------- */

static struct entry *entry_find(struct checkouts *cos, const char *id)
{
    for (struct entry *e = cos->head; e; e = e->next)
        if (strcmp(e->id, id) == 0)
            return e;
    return NULL;
}

static void lru_unlink(struct checkouts *cos, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        cos->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        cos->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(struct checkouts *cos, struct entry *e)
{
    e->prev = NULL;
    e->next = cos->head;
    if (cos->head)
        cos->head->prev = e;
    cos->head = e;
    if (!cos->tail)
        cos->tail = e;
}

static struct entry *entry_new(const char *id)
{
    struct entry *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    snprintf(e->id, sizeof(e->id), "%s", id);
    pthread_mutex_init(&e->mu, NULL);
    e->version = -1;
    return e;
}

static void entry_free(struct entry *e)
{
    if (!e)
        return;
    pthread_mutex_destroy(&e->mu);
    free(e);
}

/* Finds or creates the entry and pins it (it cannot be evicted or freed until unpinned). With
 * create false, returns NULL when there is none. */
static int entry_pin(struct checkouts *cos, const char *id, bool create, bool touch,
                     struct entry **ret)
{
    if (!uuid_valid(id))
        return err_set(-EINVAL, "invalid sandbox id");
    pthread_mutex_lock(&cos->mu);
    struct entry *e = entry_find(cos, id);
    if (!e && create) {
        e = entry_new(id);
        if (!e) {
            pthread_mutex_unlock(&cos->mu);
            return -ENOMEM;
        }
        lru_push_front(cos, e);
        cos->stats.entries++;
    }
    if (e) {
        e->pins++;
        if (touch && cos->head != e) {
            lru_unlink(cos, e);
            lru_push_front(cos, e);
        }
    }
    pthread_mutex_unlock(&cos->mu);
    *ret = e;
    return 0;
}

/* Renames fromfd/name to <checkouts>/.trash-<rnd> and queues it for the reaper. 0, 1 when
 * name did not exist, negative errno. */
/* 0 when moved and queued (t owns close_fd from then on), 1 when absent, -errno. */
static int trash_move(struct checkouts *cos, int fromfd, const char *name, int close_fd)
{
    struct trash *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->close_fd = -1;
    uint8_t rnd[8];
    char hex[17];
    int r = rand_bytes(rnd, sizeof(rnd));
    if (r < 0) {
        free(t);
        return r;
    }
    hex_encode(rnd, sizeof(rnd), hex);
    snprintf(t->name, sizeof(t->name), TRASH_PREFIX "%s", hex);
    if (renameat(fromfd, name, cos->dirfd, t->name) < 0) {
        r = errno == ENOENT ? 1 : -errno;
        free(t);
        return r;
    }
    t->close_fd = close_fd;
    pthread_mutex_lock(&cos->qmu);
    t->next = cos->queue;
    cos->queue = t;
    pthread_cond_signal(&cos->qcond);
    pthread_mutex_unlock(&cos->qmu);
    return 0;
}

int checkout_discard(struct checkouts *cos, int dirfd, const char *name, int close_fd)
{
    int r = trash_move(cos, dirfd, name, close_fd);
    if (r != 0 && close_fd >= 0)
        close(close_fd);
    return r;
}

static void trash_free(struct trash *t)
{
    if (t->close_fd >= 0)
        close(t->close_fd);
    free(t);
}

static void *reaper_main(void *arg)
{
    struct checkouts *cos = arg;
    pthread_mutex_lock(&cos->qmu);
    for (;;) {
        while (!cos->queue && !cos->stop)
            pthread_cond_wait(&cos->qcond, &cos->qmu);
        if (cos->stop)
            break; /* what is left is removed at the next start */
        struct trash *t = cos->queue;
        cos->queue = t->next;
        pthread_mutex_unlock(&cos->qmu);
        if (t->close_fd >= 0) { /* unmount before the unlinks */
            close(t->close_fd);
            t->close_fd = -1;
        }
        rm_rf_quiet(cos->dirfd, t->name, NULL);
        trash_free(t);
        pthread_mutex_lock(&cos->qmu);
    }
    pthread_mutex_unlock(&cos->qmu);
    return NULL;
}

/* Under cos->mu: evicts least recently used unpinned checkouts until within the budget. */
static void evict_locked(struct checkouts *cos)
{
    if (cos->budget <= 0)
        return;
    struct entry *e = cos->tail;
    while (e && cos->stats.bytes > cos->budget) {
        struct entry *prev = e->prev;
        if (e->pins == 0) {
            if (trash_move(cos, cos->dirfd, e->id, -1) < 0)
                break;
            lru_unlink(cos, e);
            cos->stats.bytes -= e->size;
            cos->stats.entries--;
            cos->stats.evictions++;
            if (cos->evict_fn)
                cos->evict_fn(cos->evict_ud, e->id);
            entry_free(e);
        }
        e = prev;
    }
}

/* Drops one pin (and one user when `user`); then enforces the budget. */
static void entry_unpin(struct checkouts *cos, struct entry *e, bool user)
{
    pthread_mutex_lock(&cos->mu);
    e->pins--;
    if (user)
        e->users--;
    evict_locked(cos);
    pthread_mutex_unlock(&cos->mu);
}

static void entry_set_size(struct checkouts *cos, struct entry *e, int64_t size)
{
    if (size < 0)
        size = 0;
    pthread_mutex_lock(&cos->mu);
    cos->stats.bytes += size - e->size;
    e->size = size;
    pthread_mutex_unlock(&cos->mu);
}

static int64_t entry_get_size(struct checkouts *cos, struct entry *e)
{
    pthread_mutex_lock(&cos->mu);
    int64_t s = e->size;
    pthread_mutex_unlock(&cos->mu);
    return s;
}

/* Opens <checkouts>/<id> (creating it when asked). */
static int entry_dir_open(struct checkouts *cos, const char *id, bool create)
{
    if (create && mkdirat(cos->dirfd, id, 0700) < 0 && errno != EEXIST)
        return -errno;
    /* not O_PATH: the tag is an extended attribute of this directory (f*xattr need a real fd) */
    int fd = openat(cos->dirfd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* Invalidates under e->mu: removes the tag, forgets the version. */
static void entry_invalidate_locked(struct checkouts *cos, struct entry *e)
{
    e->version = -1;
    int edfd = entry_dir_open(cos, e->id, false);
    if (edfd >= 0) {
        (void)tag_invalidate(cos, edfd);
        close(edfd);
    }
}

/* ---------- building a tree from the store ---------- */

struct rows {
    struct file_meta *v;
    size_t n, cap;
};

static void rows_release(struct rows *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        file_meta_release(&rs->v[i]);
    free(rs->v);
    memset(rs, 0, sizeof(*rs));
}

static int rows_add(const struct file_meta *meta, void *userdata)
{
    struct rows *rs = userdata;
    if (reserved_path(meta->path, meta->kind == FILE_KIND_DIR))
        return 0; /* the jail's own (sandbox/reserved.h): never materialised */
    if (rs->n == rs->cap) {
        size_t ncap = rs->cap ? rs->cap * 2 : 256;
        struct file_meta *p = realloc(rs->v, ncap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        rs->v = p;
        rs->cap = ncap;
    }
    int r = file_meta_copy(&rs->v[rs->n], meta);
    if (r < 0)
        return r;
    rs->n++;
    return 0;
}

/* Resolves parent directories of tree paths, caching the last one (rows come in path order, so
 * siblings share it). */
struct parent_cache {
    int rootfd; /* the tree root (not owned) */
    char *path; /* relative path of the cached parent ("" = root) */
    int fd;     /* O_PATH fd of it, -1 when none */
};

static void parent_cache_release(struct parent_cache *pc)
{
    free(pc->path);
    pc->path = NULL;
    close_fd(&pc->fd);
}

/* Returns a borrowed fd of the directory containing sandbox path `p` and its basename. */
static int parent_get(struct parent_cache *pc, const char *p, const char **ret_name)
{
    const char *slash = strrchr(p, '/');
    const char *rel = p + 1;
    size_t plen = (size_t)(slash - rel < 0 ? 0 : slash - rel);
    *ret_name = slash + 1;
    if (pc->fd >= 0 && strlen(pc->path) == plen && memcmp(pc->path, rel, plen) == 0)
        return pc->fd;
    parent_cache_release(pc);
    pc->path = strndup(rel, plen);
    if (!pc->path)
        return -ENOMEM;
    int fd = open_beneath(pc->rootfd, pc->path, O_PATH | O_DIRECTORY);
    if (fd < 0) {
        parent_cache_release(pc);
        return fd;
    }
    pc->fd = fd;
    return fd;
}

/* Streams content `id` of `size` bytes into fd. */
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

static int set_meta_fd(int fd, uint32_t mode, int64_t mtime_ns)
{
    struct timespec ts[2];
    ts_from_ns(ts, mtime_ns);
    if (fchown(fd, SANDBOX_HOST_UID, SANDBOX_HOST_UID) < 0 || fchmod(fd, mode & 07777) < 0 ||
        futimens(fd, ts) < 0)
        return -errno;
    return 0;
}

static int create_file(struct store *st, int pfd, const char *name, const struct file_meta *m,
                       char *buf)
{
    int fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int r = write_content(st, fd, m, buf);
    if (r == 0)
        r = set_meta_fd(fd, m->mode, m->mtime_ns);
    if (close(fd) < 0 && r == 0)
        r = -errno;
    return r;
}

static int create_symlink(int pfd, const char *name, const struct file_meta *m)
{
    if (!m->target || !m->target[0])
        return -EIO;
    if (symlinkat(m->target, pfd, name) < 0)
        return -errno;
    struct timespec ts[2];
    ts_from_ns(ts, m->mtime_ns);
    if (fchownat(pfd, name, SANDBOX_HOST_UID, SANDBOX_HOST_UID, AT_SYMLINK_NOFOLLOW) < 0 ||
        utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    return 0;
}

static int create_dir(int pfd, const char *name)
{
    if (mkdirat(pfd, name, 0700) < 0)
        return -errno;
    if (fchownat(pfd, name, SANDBOX_HOST_UID, SANDBOX_HOST_UID, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    return 0;
}

/* Sets a directory's mode and mtime once its entries exist (creating them moves its mtime). */
static int fix_dir(int rootfd, const char *p, uint32_t mode, int64_t mtime_ns)
{
    int fd = open_beneath(rootfd, p + 1, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return fd;
    int r = set_meta_fd(fd, mode, mtime_ns);
    close(fd);
    return r;
}

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

static int create_leaf(struct store *st, struct parent_cache *pc, const struct file_meta *m,
                       char *buf)
{
    const char *name;
    int pfd = parent_get(pc, m->path, &name);
    if (pfd < 0)
        return pfd;
    if (m->kind == FILE_KIND_FILE)
        return create_file(st, pfd, name, m, buf);
    return create_symlink(pfd, name, m);
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
                r = create_leaf(job->cos->st, &pc, &job->rs->v[i], buf);
    }
    if (r < 0) {
        pthread_mutex_lock(&job->mu);
        if (job->err == 0)
            job->err = r;
        pthread_mutex_unlock(&job->mu);
    }
    parent_cache_release(&pc);
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
        int pfd = parent_get(&pc, m->path, &name);
        r = pfd < 0 ? pfd : create_dir(pfd, name);
    }
    parent_cache_release(&pc);
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
            r = fix_dir(rootfd, rs->v[i].path, rs->v[i].mode, rs->v[i].mtime_ns);
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

/* Builds version `version` into <id>/build-<rnd>, swaps it in as <id>/tree and tags it.
 * Runs under e->mu. */
static int build_tree(struct checkouts *cos, struct entry *e, int edfd, int64_t version)
{
    int64_t t0 = time_mono_ms();
    struct rows rs = {0};
    int64_t v1 = -1, v2 = -1;
    int r = store_version(cos->st, e->id, &v1);
    if (r >= 0 && v1 != version)
        r = -ESTALE;
    if (r >= 0)
        r = store_list(cos->st, e->id, "/", 0, rows_add, &rs);
    if (r >= 0)
        r = store_version(cos->st, e->id, &v2);
    if (r >= 0 && v2 != version)
        r = -ESTALE; /* a commit slipped in: the rows may not be `version` */
    if (r < 0) {
        rows_release(&rs);
        return r;
    }

    char bname[64];
    uint8_t rnd[8];
    char hex[17];
    r = rand_bytes(rnd, sizeof(rnd));
    if (r < 0) {
        rows_release(&rs);
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
    if ((r = tag_invalidate(cos, edfd)) < 0)
        goto out;
    if (renameat2(edfd, bname, edfd, TREE_NAME, RENAME_EXCHANGE) < 0) {
        if (errno != ENOENT || renameat(edfd, bname, edfd, TREE_NAME) < 0) {
            r = -errno;
            goto out;
        }
    }
    r = tag_write(cos, edfd, version, size);
    if (r < 0)
        goto out;
    e->version = version;
    entry_set_size(cos, e, size);
    pthread_mutex_lock(&cos->mu);
    cos->stats.builds++;
    cos->stats.last_build_ms = time_mono_ms() - t0;
    pthread_mutex_unlock(&cos->mu);
out:
    close_fd(&rootfd);
    /* The old tree after a swap, or a failed build. */
    if (trash_move(cos, edfd, bname, -1) < 0)
        rm_rf_quiet(edfd, bname, NULL);
    rows_release(&rs);
    return r;
}

/* ---------- public: lifecycle ---------- */

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Adopts <id> when tagged for this boot (cleaning build leftovers in it), else removes it. */
static int adopt(struct checkouts *cos, const char *name)
{
    int edfd = entry_dir_open(cos, name, false);
    if (edfd < 0)
        return edfd;
    int64_t version = -1, size = 0;
    int r = tag_read(cos, edfd, &version, &size);
    struct stat sb;
    if (r == 0 && fstatat(edfd, TREE_NAME, &sb, AT_SYMLINK_NOFOLLOW) < 0)
        r = -ENOENT;
    if (r == 0 && !S_ISDIR(sb.st_mode))
        r = -EINVAL;
    if (r < 0) {
        close(edfd);
        return checkout_rm_rf_at(cos->dirfd, name, NULL);
    }
    /* Drop build dirs and half-written tags. */
    int lfd = openat(edfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)))
            if (has_prefix(de->d_name, BUILD_PREFIX) || strcmp(de->d_name, TAG_TMP_NAME) == 0)
                rm_rf_quiet(edfd, de->d_name, NULL);
        closedir(d);
    } else if (lfd >= 0) {
        close(lfd);
    }
    close(edfd);
    struct entry *e = entry_new(name);
    if (!e)
        return -ENOMEM;
    e->version = version;
    e->size = size;
    /* Directory order is arbitrary: adopted checkouts start as equally old. */
    e->prev = cos->tail;
    if (cos->tail)
        cos->tail->next = e;
    else
        cos->head = e;
    cos->tail = e;
    cos->stats.entries++;
    cos->stats.bytes += size;
    return 0;
}

static int scan_dir(struct checkouts *cos)
{
    int lfd = openat(cos->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (lfd < 0)
        return -errno;
    DIR *d = fdopendir(lfd);
    if (!d) {
        close(lfd);
        return -errno;
    }
    /* Collect first: adopting removes entries, which must not disturb readdir. */
    struct rows names = {0};
    struct dirent *de;
    int r = 0;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct file_meta m = {.path = de->d_name};
        if ((r = rows_add(&m, &names)) < 0)
            break;
    }
    closedir(d);
    for (size_t i = 0; i < names.n && r >= 0; i++) {
        const char *nm = names.v[i].path;
        if (has_prefix(nm, TRASH_PREFIX))
            r = checkout_rm_rf_at(cos->dirfd, nm, NULL);
        else if (uuid_valid(nm))
            r = adopt(cos, nm);
    }
    rows_release(&names);
    return r;
}

void checkouts_on_evict(struct checkouts *cos, void (*fn)(void *ud, const char *sandbox_id),
                        void *ud)
{
    cos->evict_fn = fn;
    cos->evict_ud = ud;
}

int checkouts_new(const char *data_dir, struct store *st, int64_t budget_bytes,
                  struct checkouts **ret)
{
    struct checkouts *cos = calloc(1, sizeof(*cos));
    if (!cos)
        return -ENOMEM;
    cos->dirfd = -1;
    pthread_mutex_init(&cos->mu, NULL);
    pthread_mutex_init(&cos->qmu, NULL);
    pthread_cond_init(&cos->qcond, NULL);
    cos->st = st;
    cos->budget = budget_bytes;
    read_boot_id(cos->boot_id);
    int r = 0;
    if (asprintf(&cos->dir, "%s/checkouts", data_dir) < 0) {
        cos->dir = NULL;
        r = -ENOMEM;
        goto fail;
    }
    if (mkdir(cos->dir, 0700) < 0 && errno != EEXIST) {
        r = err_set(-errno, "cannot create the checkouts directory");
        goto fail;
    }
    cos->dirfd = open(cos->dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (cos->dirfd < 0) {
        r = err_set(-errno, "cannot open the checkouts directory");
        goto fail;
    }
    r = scan_dir(cos);
    if (r < 0)
        goto fail;
    if (pthread_create(&cos->reaper, NULL, reaper_main, cos) != 0) {
        r = -EAGAIN;
        goto fail;
    }
    cos->reaper_running = true;
    pthread_mutex_lock(&cos->mu);
    evict_locked(cos);
    pthread_mutex_unlock(&cos->mu);
    *ret = cos;
    return 0;
fail:
    checkouts_free(cos);
    return r;
}

void checkouts_free(struct checkouts *cos)
{
    if (!cos)
        return;
    if (cos->reaper_running) {
        pthread_mutex_lock(&cos->qmu);
        cos->stop = true;
        pthread_cond_signal(&cos->qcond);
        pthread_mutex_unlock(&cos->qmu);
        pthread_join(cos->reaper, NULL);
    }
    while (cos->queue) {
        struct trash *t = cos->queue;
        cos->queue = t->next;
        trash_free(t);
    }
    pthread_cond_destroy(&cos->qcond);
    pthread_mutex_destroy(&cos->qmu);
    struct entry *e = cos->head;
    while (e) {
        struct entry *next = e->next;
        entry_free(e);
        e = next;
    }
    close_fd(&cos->dirfd);
    pthread_mutex_destroy(&cos->mu);
    free(cos->dir);
    free(cos);
}

void checkouts_get_stats(struct checkouts *cos, struct checkout_stats *ret)
{
    pthread_mutex_lock(&cos->mu);
    *ret = cos->stats;
    pthread_mutex_unlock(&cos->mu);
}

/* ---------- public: acquire / release ---------- */

/* Under e->mu: true when the tagged tree on disk is `version`. */
static bool tree_is_valid(struct checkouts *cos, struct entry *e, int edfd, int64_t version)
{
    if (e->version != version)
        return false;
    int64_t v, s;
    if (tag_read(cos, edfd, &v, &s) < 0 || v != version) {
        e->version = -1;
        return false;
    }
    return true;
}

int checkout_acquire(struct checkouts *cos, const char *sandbox_id, int64_t version,
                     char **ret_tree_path)
{
    struct entry *e;
    int r = entry_pin(cos, sandbox_id, true, true, &e);
    if (r < 0)
        return r;
    char *path = NULL;
    if (asprintf(&path, "%s/%s/" TREE_NAME, cos->dir, sandbox_id) < 0) {
        entry_unpin(cos, e, false);
        return -ENOMEM;
    }
    pthread_mutex_lock(&e->mu);
    int edfd = entry_dir_open(cos, sandbox_id, true);
    if (edfd < 0) {
        r = edfd;
    } else if (!tree_is_valid(cos, e, edfd, version)) {
        pthread_mutex_lock(&cos->mu);
        bool busy = e->users > 0;
        pthread_mutex_unlock(&cos->mu);
        if (busy) {
            r = err_set(-ERR_BUSY, "sandbox checkout is in use at another version");
        } else {
            r = build_tree(cos, e, edfd, version);
        }
    }
    if (edfd >= 0)
        close(edfd);
    if (r >= 0) {
        pthread_mutex_lock(&cos->mu);
        e->users++;
        pthread_mutex_unlock(&cos->mu);
    }
    pthread_mutex_unlock(&e->mu);
    if (r < 0) {
        free(path);
        /* Forget an entry that never got a valid tree, unless others wait on it. */
        pthread_mutex_lock(&cos->mu);
        if (e->pins == 1 && e->users == 0 && e->version < 0) {
            if (trash_move(cos, cos->dirfd, e->id, -1) >= 0) {
                lru_unlink(cos, e);
                cos->stats.bytes -= e->size;
                cos->stats.entries--;
                entry_free(e);
                e = NULL;
            }
        }
        pthread_mutex_unlock(&cos->mu);
        if (e)
            entry_unpin(cos, e, false);
        return r;
    }
    /* Keep the pin; enforce the budget for the others now that this tree's size is known. */
    pthread_mutex_lock(&cos->mu);
    evict_locked(cos);
    pthread_mutex_unlock(&cos->mu);
    *ret_tree_path = path;
    return 0;
}

void checkout_release(struct checkouts *cos, const char *sandbox_id)
{
    pthread_mutex_lock(&cos->mu);
    struct entry *e = entry_find(cos, sandbox_id);
    bool ok = e && e->users > 0;
    pthread_mutex_unlock(&cos->mu);
    if (ok)
        entry_unpin(cos, e, true);
}

/* ---------- public: invalidate / remove ---------- */

void checkout_invalidate(struct checkouts *cos, const char *sandbox_id)
{
    struct entry *e;
    if (entry_pin(cos, sandbox_id, false, false, &e) < 0 || !e)
        return;
    pthread_mutex_lock(&e->mu);
    entry_invalidate_locked(cos, e);
    pthread_mutex_unlock(&e->mu);
    entry_unpin(cos, e, false);
}

int checkout_remove(struct checkouts *cos, const char *sandbox_id)
{
    struct entry *e;
    int r = entry_pin(cos, sandbox_id, false, false, &e);
    if (r < 0 || !e)
        return r;
    pthread_mutex_lock(&e->mu);
    entry_invalidate_locked(cos, e);
    r = trash_move(cos, cos->dirfd, sandbox_id, -1);
    entry_set_size(cos, e, 0);
    pthread_mutex_unlock(&e->mu);
    pthread_mutex_lock(&cos->mu);
    e->pins--;
    if (e->pins == 0) {
        lru_unlink(cos, e);
        cos->stats.entries--;
        entry_free(e);
    }
    pthread_mutex_unlock(&cos->mu);
    return r < 0 ? r : 0;
}

/* ---------- applying change sets ---------- */

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
    int r = checkout_rm_rf_at(pfd, name, &bytes);
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
    int fd = open_beneath(a->rootfd, "", O_PATH | O_DIRECTORY);
    if (fd < 0) {
        free(rel);
        return fd;
    }
    char *seg = rel;
    for (char *slash; (slash = strchr(seg, '/')); seg = slash + 1) {
        *slash = '\0';
        if (mkdirat(fd, seg, 0755) == 0) {
            /* the mode the store gives such a parent, whatever the server's umask */
            if (fchownat(fd, seg, SANDBOX_HOST_UID, SANDBOX_HOST_UID, AT_SYMLINK_NOFOLLOW) < 0 ||
                fchmodat(fd, seg, 0755, 0) < 0) {
                r = -errno;
                break;
            }
        } else if (errno != EEXIST) {
            r = -errno;
            break;
        }
        int next = open_beneath(fd, seg, O_PATH | O_DIRECTORY);
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
    int ufd = open_beneath(a->upperfd, prel, O_PATH | O_DIRECTORY);
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
    r = set_meta_fd(fd, m->mode, m->mtime_ns);
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
        return create_dir(pfd, name);
    }
    if (exists && (r = remove_node(a, pfd, name)) < 0)
        return r;
    if (m->kind == FILE_KIND_SYMLINK)
        return create_symlink(pfd, name, m);
    if (m->kind != FILE_KIND_FILE)
        return -EIO;
    /* Unlink, then rename: renaming over an existing file makes ext4 (auto_da_alloc) start
     * writeback of the new file's data at once, about 1 ms instead of 0.03 ms here. */
    r = -EAGAIN;
    if (a->upperfd >= 0)
        r = move_from_upper(a, pfd, name, m);
    if (r == -EAGAIN)
        r = create_file(a->cos->st, pfd, name, m, a->buf);
    if (r >= 0)
        a->size += m->size;
    return r;
}

static bool is_put_dir(const struct changeset *cs, const char *p)
{
    for (size_t i = cs->n; i-- > 0;)
        if (cs->items[i].op == CHANGE_PUT && cs->items[i].meta.kind == FILE_KIND_DIR &&
            strcmp(cs->items[i].meta.path, p) == 0)
            return true;
    return false;
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
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
            r = fix_dir(a->rootfd, c->meta.path, c->meta.mode, c->meta.mtime_ns);
    }
    if (r < 0 || cs->n == 0)
        return r;
    /* Parents, and with create_parents all ancestors (they may have been created). */
    size_t cap = 0, np = 0;
    char **parents = NULL;
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
            if (is_put_dir(cs, pp)) {
                free(pp);
            } else {
                if (np == cap) {
                    size_t ncap = cap ? cap * 2 : 16;
                    char **q = realloc(parents, ncap * sizeof(*q));
                    if (!q) {
                        free(pp);
                        free(next);
                        r = -ENOMEM;
                        break;
                    }
                    parents = q;
                    cap = ncap;
                }
                parents[np++] = pp;
            }
            pp = next;
        }
    }
    if (np > 1)
        qsort(parents, np, sizeof(*parents), cmp_str);
    for (size_t i = 0; i < np && r >= 0; i++) {
        if (i > 0 && strcmp(parents[i], parents[i - 1]) == 0)
            continue;
        struct file_meta m;
        memset(&m, 0, sizeof(m));
        r = store_stat(a->cos->st, a->sandbox_id, parents[i], &m);
        if (r == 0 && m.kind == FILE_KIND_DIR)
            r = fix_dir(a->rootfd, parents[i], m.mode, m.mtime_ns);
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
            continue; /* never in a tree (rows_add) */
        const char *name;
        int pfd = parent_get(&a->pc, c->meta.path, &name);
        if (pfd == -ENOENT && c->op == CHANGE_DELETE)
            continue;
        if (pfd == -ENOENT && a->create_parents && c->op == CHANGE_PUT) {
            int r = make_parents(a, c->meta.path);
            if (r < 0)
                return r;
            pfd = parent_get(&a->pc, c->meta.path, &name);
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

static int apply_common(struct checkouts *cos, const char *sandbox_id, int64_t old_version,
                        int64_t new_version, const char *upper_dir, const struct changeset *cs)
{
    struct entry *e;
    int r = entry_pin(cos, sandbox_id, false, true, &e);
    if (r < 0 || !e)
        return r;
    pthread_mutex_lock(&e->mu);
    struct applier a = {.cos = cos,
                        .rootfd = -1,
                        .upperfd = -1,
                        .pc = {.fd = -1},
                        .sandbox_id = sandbox_id,
                        .create_parents = cs->create_parents};
    int edfd = entry_dir_open(cos, sandbox_id, false);
    if (edfd < 0) {
        r = edfd == -ENOENT ? 0 : edfd;
        e->version = -1;
        goto out;
    }
    if (!tree_is_valid(cos, e, edfd, old_version)) {
        r = -ESTALE;
        goto out;
    }
    /* From here the tree is incoherent until retagged. */
    e->version = -1;
    if ((r = tag_invalidate(cos, edfd)) < 0)
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
    a.size = entry_get_size(cos, e);
    a.buf = malloc(IO_BUF_SIZE);
    if (!a.buf) {
        r = -ENOMEM;
        goto out;
    }
    r = apply_changes(&a, cs);
    if (r >= 0)
        r = tag_write(cos, edfd, new_version, a.size < 0 ? 0 : a.size);
    if (r >= 0) {
        e->version = new_version;
        entry_set_size(cos, e, a.size);
    }
out:
    if (r < 0)
        entry_invalidate_locked(cos, e);
    parent_cache_release(&a.pc);
    free(a.buf);
    close_fd(&a.rootfd);
    close_fd(&a.upperfd);
    if (edfd >= 0)
        close(edfd);
    pthread_mutex_unlock(&e->mu);
    entry_unpin(cos, e, false);
    return r;
}

int checkout_apply(struct checkouts *cos, const char *sandbox_id, int64_t old_version,
                   int64_t new_version, const struct changeset *cs)
{
    return apply_common(cos, sandbox_id, old_version, new_version, NULL, cs);
}

int checkout_apply_upper(struct checkouts *cos, const char *sandbox_id, int64_t old_version,
                         int64_t new_version, const char *upper_dir, const struct changeset *cs)
{
    return apply_common(cos, sandbox_id, old_version, new_version, upper_dir, cs);
}

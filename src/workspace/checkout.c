/*
 * checkout — the cache of checkouts: entries, tags, the trash, start-up adoption and
 * acquire/release (see checkout.h; checkout_internal.h says how the parts divide the work).
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
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "util/err.h"
#include "util/fs.h"
#include "util/rand.h"
#include "workspace/checkout_internal.h"

#define TAG_MAGIC "sqlfs-checkout 1"

void checkout_rm_rf_quiet(int dirfd, const char *name)
{
    if (rm_rf_at(dirfd, name, NULL) < 0)
        return; /* start-up removes what is left */
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
 * attribute of unchanged length in place but reallocates its block, far slower, when the
 * length changes, on every commit. version -1 gives the invalid tag of the same width. */
static int tag_format(const struct checkouts *cos, int64_t version, int64_t size, char *text,
                      size_t cap)
{
    return snprintf(text, cap, TAG_MAGIC " %020lld %020lld %s\n", (long long)version,
                    (long long)size, cos->boot_id);
}

int checkout_tag_write(struct checkouts *cos, int edfd, int64_t version, int64_t size)
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
 * an inode's last attribute frees its ext4 attribute block, which the next checkout_tag_write
 * allocates again (see tag_format). */
int checkout_tag_invalidate(const struct checkouts *cos, int edfd)
{
    char text[256];
    int len = tag_format(cos, -1, 0, text, sizeof(text));
    if (fsetxattr(edfd, TAG_XATTR, text, (size_t)len, XATTR_REPLACE) < 0 && errno != ENODATA &&
        errno != EOPNOTSUPP && errno != ENOTSUP && errno != EPERM && errno != EACCES)
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

int checkout_entry_pin(struct checkouts *cos, const char *id, bool create, bool touch,
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

int checkout_trash_move(struct checkouts *cos, int fromfd, const char *name, int close_fd)
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
    int r = checkout_trash_move(cos, dirfd, name, close_fd);
    if (r != 0)
        safe_close(close_fd);
    return r;
}

static void trash_free(struct trash *t)
{
    safe_close(t->close_fd);
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
        checkout_rm_rf_quiet(cos->dirfd, t->name);
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
            if (checkout_trash_move(cos, cos->dirfd, e->id, -1) < 0)
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
void checkout_entry_unpin(struct checkouts *cos, struct entry *e, bool user)
{
    pthread_mutex_lock(&cos->mu);
    e->pins--;
    if (user)
        e->users--;
    evict_locked(cos);
    pthread_mutex_unlock(&cos->mu);
}

void checkout_entry_set_size(struct checkouts *cos, struct entry *e, int64_t size)
{
    if (size < 0)
        size = 0;
    pthread_mutex_lock(&cos->mu);
    cos->stats.bytes += size - e->size;
    e->size = size;
    pthread_mutex_unlock(&cos->mu);
}

int64_t checkout_entry_size(struct checkouts *cos, struct entry *e)
{
    pthread_mutex_lock(&cos->mu);
    int64_t s = e->size;
    pthread_mutex_unlock(&cos->mu);
    return s;
}

/* Opens <checkouts>/<id> (creating it when asked). */
int checkout_entry_dir_open(struct checkouts *cos, const char *id, bool create)
{
    if (create && mkdirat(cos->dirfd, id, 0700) < 0 && errno != EEXIST)
        return -errno;
    /* not O_PATH: the tag is an extended attribute of this directory (f*xattr need a real fd) */
    int fd = openat(cos->dirfd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* Invalidates under e->mu: removes the tag, forgets the version. */
void checkout_entry_invalidate_locked(struct checkouts *cos, struct entry *e)
{
    e->version = -1;
    int edfd = checkout_entry_dir_open(cos, e->id, false);
    if (edfd >= 0) {
        (void)checkout_tag_invalidate(cos, edfd);
        close(edfd);
    }
}

/* ---------- public: lifecycle ---------- */

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Adopts <id> when tagged for this boot (cleaning build leftovers in it), else removes it. */
static int adopt(struct checkouts *cos, const char *name)
{
    int edfd = checkout_entry_dir_open(cos, name, false);
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
        return rm_rf_at(cos->dirfd, name, NULL);
    }
    /* Drop build dirs and half-written tags. */
    int lfd = openat(edfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)))
            if (has_prefix(de->d_name, BUILD_PREFIX) || strcmp(de->d_name, TAG_TMP_NAME) == 0)
                checkout_rm_rf_quiet(edfd, de->d_name);
        closedir(d);
    } else {
        safe_close(lfd);
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
        if ((r = checkout_rows_add(&m, &names)) < 0)
            break;
    }
    closedir(d);
    for (size_t i = 0; i < names.n && r >= 0; i++) {
        const char *nm = names.v[i].path;
        if (has_prefix(nm, TRASH_PREFIX))
            r = rm_rf_at(cos->dirfd, nm, NULL);
        else if (uuid_valid(nm))
            r = adopt(cos, nm);
    }
    checkout_rows_release(&names);
    return r;
}

void checkouts_on_evict(struct checkouts *cos, void (*fn)(void *ud, const char *sandbox_id),
                        void *ud)
{
    cos->evict_fn = fn;
    cos->evict_ud = ud;
}

int checkouts_new(const char *data_dir, struct store *st, int64_t budget_bytes, uid_t uid,
                  gid_t gid, struct checkouts **ret)
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
    cos->uid = uid;
    cos->gid = gid;
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
    closep(&cos->dirfd);
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
bool checkout_tree_is_valid(struct checkouts *cos, struct entry *e, int edfd, int64_t version)
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
    int r = checkout_entry_pin(cos, sandbox_id, true, true, &e);
    if (r < 0)
        return r;
    char *path = NULL;
    if (asprintf(&path, "%s/%s/" TREE_NAME, cos->dir, sandbox_id) < 0) {
        checkout_entry_unpin(cos, e, false);
        return -ENOMEM;
    }
    pthread_mutex_lock(&e->mu);
    int edfd = checkout_entry_dir_open(cos, sandbox_id, true);
    if (edfd < 0) {
        r = edfd;
    } else if (!checkout_tree_is_valid(cos, e, edfd, version)) {
        pthread_mutex_lock(&cos->mu);
        bool busy = e->users > 0;
        pthread_mutex_unlock(&cos->mu);
        if (busy) {
            r = err_set(-ERR_BUSY, "sandbox checkout is in use at another version");
        } else {
            /* behind (another server committed): forward from the log, else rebuild */
            r = checkout_refresh_locked(cos, e, edfd, version);
            if (r < 0) {
                err_clear();
                r = checkout_build_tree(cos, e, edfd, version);
            }
        }
    }
    safe_close(edfd);
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
            if (checkout_trash_move(cos, cos->dirfd, e->id, -1) >= 0) {
                lru_unlink(cos, e);
                cos->stats.bytes -= e->size;
                cos->stats.entries--;
                entry_free(e);
                e = NULL;
            }
        }
        pthread_mutex_unlock(&cos->mu);
        if (e)
            checkout_entry_unpin(cos, e, false);
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
        checkout_entry_unpin(cos, e, true);
}

/* ---------- public: invalidate / remove ---------- */

void checkout_invalidate(struct checkouts *cos, const char *sandbox_id)
{
    struct entry *e;
    if (checkout_entry_pin(cos, sandbox_id, false, false, &e) < 0 || !e)
        return;
    pthread_mutex_lock(&e->mu);
    checkout_entry_invalidate_locked(cos, e);
    pthread_mutex_unlock(&e->mu);
    checkout_entry_unpin(cos, e, false);
}

int checkout_remove(struct checkouts *cos, const char *sandbox_id)
{
    struct entry *e;
    int r = checkout_entry_pin(cos, sandbox_id, false, false, &e);
    if (r < 0 || !e)
        return r;
    pthread_mutex_lock(&e->mu);
    checkout_entry_invalidate_locked(cos, e);
    r = checkout_trash_move(cos, cos->dirfd, sandbox_id, -1);
    checkout_entry_set_size(cos, e, 0);
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

/*
 * diff — see diff.h.
 *
 * The walk is iterative: a stack of directories still to read, each reopened from the upper's
 * root with openat2 (so no fd is held per level and no symlink is ever followed). Directory
 * paths are bounded by PATH_MAX_LEN, which keeps each openat2 within PATH_MAX.
 */
#include "workspace/diff.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "store/reserved.h"
#include "util/array.h"
#include "util/err.h"
#include "util/fd.h"
#include "util/fs.h"
#include "util/path.h"

#define DIFF_BUF_SIZE (1024 * 1024)

static int64_t mtime_ns_of(const struct stat *sb)
{
    return (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec;
}

/* The value of the overlay xattr trusted.overlay.<n> (and user.overlay.<n> when `user`) into v
 * (NUL terminated); its length, or -ENODATA when absent. */
static ssize_t ovl_xattr(int fd, const char *n, bool user, char *v, size_t cap)
{
    static const char *const prefixes[] = {"trusted.overlay.", "user.overlay."};
    for (size_t i = 0; i < (user ? 2u : 1u); i++) {
        char name[64];
        snprintf(name, sizeof(name), "%s%s", prefixes[i], n);
        ssize_t len = fgetxattr(fd, name, v, cap - 1);
        if (len >= 0) {
            v[len] = '\0';
            return len;
        }
        if (errno == ERANGE)
            return (ssize_t)cap; /* present, long: callers only test presence or "y" */
        if (errno != ENODATA && errno != ENOTSUP)
            return -errno;
    }
    return -ENODATA;
}

/* Markers that change what the diff means are honoured only in the trusted namespace, which a
 * sandbox cannot write; user.overlay.opaque is accepted too (an overlay mounted with userxattr),
 * since the worst it can do is replace the sandbox's own directory. */
static bool ovl_has(int fd, const char *n)
{
    char v[8];
    return ovl_xattr(fd, n, false, v, sizeof(v)) >= 0;
}

static bool ovl_opaque(int fd)
{
    char v[8];
    return ovl_xattr(fd, "opaque", true, v, sizeof(v)) == 1 && v[0] == 'y';
}

static bool is_dots(const char *n)
{
    return n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'));
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

struct names {
    char **v;
    size_t n, cap;
};

static void names_release(struct names *ns)
{
    for (size_t i = 0; i < ns->n; i++)
        free(ns->v[i]);
    free(ns->v);
    memset(ns, 0, sizeof(*ns));
}

/* Takes ownership of s (frees it on failure). */
static int names_push(struct names *ns, char *s)
{
    if (!s)
        return -ENOMEM;
    if (ARRAY_GROW(ns->v, ns->n + 1, ns->cap) < 0) {
        free(s);
        return -ENOMEM;
    }
    ns->v[ns->n++] = s;
    return 0;
}

/* The sorted entry names of the directory fd (without "." and ".."). */
static int list_dir(int fd, struct names *ret)
{
    int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    DIR *d = fdopendir(dfd);
    if (!d) {
        int r = -errno;
        close(dfd);
        return r;
    }
    int r = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d))) {
        if (is_dots(de->d_name))
            continue;
        if ((r = names_push(ret, strdup(de->d_name))) < 0)
            break;
        errno = 0;
    }
    if (r == 0 && errno)
        r = -errno;
    closedir(d);
    if (r == 0 && ret->n > 1)
        qsort(ret->v, ret->n, sizeof(*ret->v), cmp_str);
    return r;
}

/* "<rel>/<name>" (or "<name>" at the root) and the sandbox path "/<that>". */
static int join_rel(const char *rel, const char *name, char **ret)
{
    char *s = NULL;
    int n = *rel ? asprintf(&s, "%s/%s", rel, name) : asprintf(&s, "%s", name);
    if (n < 0)
        return -ENOMEM;
    if ((size_t)n + 1 > PATH_MAX_LEN) {
        free(s);
        return err_set(-ENAMETOOLONG, "a path made by the command is too long");
    }
    *ret = s;
    return 0;
}

/* An entry at a reserved path (store/reserved.h: /usr, /etc, /proc, ...) belongs to the
 * runtime, never to the change set: whatever a script did there (`rm /bin`, `mkdir /sys/x`) lasts
 * only as long as its exec. Reserved paths are at most two segments deep, so only entries of the
 * root (rel "") and of its direct subdirectories can be one. */
static bool reserved_entry(const char *rel, const char *crel, const struct stat *sb)
{
    if (strchr(rel, '/'))
        return false;
    char path[2 * PATH_NAME_MAX + 3];
    int n = snprintf(path, sizeof(path), "/%s", crel);
    /* a whiteout deletes: never refused for a directory-only parent such as /opt */
    bool is_dir = S_ISDIR(sb->st_mode) || S_ISCHR(sb->st_mode);
    return n > 0 && (size_t)n < sizeof(path) && reserved_path(path, is_dir);
}

static int sandbox_path(const char *rel, char **ret)
{
    return asprintf(ret, "/%s", rel) < 0 ? -ENOMEM : 0;
}

/* ---------- the walks ---------- */

/* The upper's root directory and, when lower_dir is not NULL, the lower's (else *lowerfd is
 * -1), both O_PATH. */
static int open_roots(const char *upper_dir, const char *lower_dir, int *upperfd, int *lowerfd)
{
    *lowerfd = -1;
    *upperfd = open(upper_dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (*upperfd < 0)
        return -errno;
    if (lower_dir &&
        (*lowerfd = open(lower_dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
        int r = -errno;
        *upperfd = safe_close(*upperfd);
        return r;
    }
    return 0;
}

/* Reads the directory at rel (relative to the walked root, "" the root itself) and pushes onto
 * todo the subdirectories still to read. 0 to go on; anything else stops the walk. */
typedef int (*walk_dir_fn)(void *ud, const char *rel, struct names *todo);

/* Walks a tree depth first from its root: a stack of directories still to read. Returns the
 * first non-zero answer of dir, else 0. */
static int walk_tree(walk_dir_fn dir, void *ud)
{
    struct names todo = {0};
    int r = names_push(&todo, strdup(""));
    while (r == 0 && todo.n > 0) {
        char *rel = todo.v[--todo.n];
        r = dir(ud, rel, &todo);
        free(rel);
    }
    names_release(&todo);
    return r;
}

/*
 * The walk of diff_upper and diff_upper_changed: every entry of the upper in name order, a
 * directory's entries after the directory, entries at reserved paths passed over (counted).
 * `entry` gets each other entry (dfd: its directory, crel: its path from the root, sb: its
 * lstat) and sets *descend to have a directory's entries read; it returns 0 to go on, anything
 * else stops the walk, which returns it.
 */
struct entry_walk {
    int rootfd;
    int (*entry)(void *ud, int dfd, const char *name, const char *crel, const struct stat *sb,
                 bool *descend);
    void *ud;
    int64_t reserved; /* entries at reserved paths */
};

static int walk_entries(void *ud, const char *rel, struct names *todo)
{
    struct entry_walk *wk = ud;
    int dfd = open_beneath(wk->rootfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
    if (dfd < 0)
        return dfd;
    struct names ns = {0};
    int r = list_dir(dfd, &ns);
    size_t first_sub = todo->n;
    for (size_t i = 0; i < ns.n && r == 0; i++) {
        const char *name = ns.v[i];
        char *crel = NULL;
        struct stat sb;
        bool descend = false;
        if ((r = join_rel(rel, name, &crel)) < 0)
            break;
        if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
            r = -errno;
        else if (reserved_entry(rel, crel, &sb))
            wk->reserved++;
        else
            r = wk->entry(wk->ud, dfd, name, crel, &sb, &descend);
        if (r == 0 && descend) {
            r = names_push(todo, crel);
            crel = NULL;
        }
        free(crel);
    }
    names_release(&ns);
    close(dfd);
    if (r != 0)
        return r;
    /* Reverse the pushed subdirectories so that they pop in name order. */
    for (size_t a = first_sub, b = todo->n; a + 1 < b; a++, b--) {
        char *t = todo->v[a];
        todo->v[a] = todo->v[b - 1];
        todo->v[b - 1] = t;
    }
    return 0;
}

/* ---------- diff_upper ---------- */

struct walker {
    struct store *st;
    int lowerfd; /* the tree the upper was over, or -1 */
    struct changeset *cs;
    struct diff_stats stats;
    char *buf; /* bufcap bytes, grown up to DIFF_BUF_SIZE on demand */
    size_t bufcap;
};

/* Most files an exec writes are small: a buffer of their size (not the full 1 MiB, a fresh
 * mapping and page faults per exec) is enough to read them in one call. */
static int walker_buf(struct walker *w, int64_t size)
{
    size_t want = size < 0 || size >= DIFF_BUF_SIZE ? DIFF_BUF_SIZE : (size_t)size + 1;
    if (want <= w->bufcap)
        return 0;
    char *p = realloc(w->buf, want);
    if (!p)
        return -ENOMEM;
    w->buf = p;
    w->bufcap = want;
    return 0;
}

static int put_delete(struct walker *w, const char *rel)
{
    char *p;
    int r = sandbox_path(rel, &p);
    if (r < 0)
        return r;
    r = changeset_delete(w->cs, p);
    free(p);
    if (r == 0)
        w->stats.deletes++;
    return r;
}

static int put_meta(struct walker *w, const char *rel, struct file_meta *m)
{
    int r = sandbox_path(rel, &m->path);
    if (r < 0)
        return r;
    r = changeset_put(w->cs, m);
    free(m->path);
    m->path = NULL;
    return r;
}

/* Streams the regular file open at fd (size_hint: its size when stat'ed) into the store. */
static int store_file(struct walker *w, int fd, int64_t size_hint, struct file_meta *m)
{
    int r = walker_buf(w, size_hint);
    if (r < 0)
        return r;
    struct content_writer *cw = NULL;
    r = store_content_begin(w->st, &cw);
    if (r < 0)
        return r;
    for (;;) {
        ssize_t n = read(fd, w->buf, w->bufcap);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            break;
        }
        if (n == 0)
            break;
        r = store_content_write(w->st, cw, w->buf, (size_t)n);
        if (r < 0)
            break;
    }
    if (r < 0) {
        store_content_abort(w->st, cw);
        return r;
    }
    int64_t size = 0;
    r = store_content_finish(w->st, cw, m->content, &size);
    if (r < 0)
        return r;
    m->size = size;
    m->has_content = size > 0;
    return 0;
}

static int diff_file(struct walker *w, int dfd, const char *name, const char *rel)
{
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat sb;
    int r = 0;
    if (fstat(fd, &sb) < 0)
        r = -errno;
    else if (!S_ISREG(sb.st_mode))
        r = -EIO; /* changed under us: nothing may write the upper any more */
    else if (ovl_has(fd, "metacopy"))
        r = err_set(-ENOTSUP, "overlay metadata-only copy-up is not supported");
    if (r < 0) {
        close(fd);
        return r;
    }
    if (sb.st_size == 0 && ovl_has(fd, "whiteout")) {
        close(fd);
        return put_delete(w, rel);
    }
    struct file_meta m;
    memset(&m, 0, sizeof(m));
    m.kind = FILE_KIND_FILE;
    m.mode = sb.st_mode & 07777;
    r = store_file(w, fd, sb.st_size, &m);
    struct stat after;
    if (r == 0 && fstat(fd, &after) < 0)
        r = -errno;
    close(fd);
    if (r < 0)
        return r;
    if (m.size != after.st_size)
        return -EIO;
    m.mtime_ns = mtime_ns_of(&after);
    r = put_meta(w, rel, &m);
    if (r == 0) {
        w->stats.files++;
        w->stats.bytes += m.size;
    }
    return r;
}

static int diff_symlink(struct walker *w, int dfd, const char *name, const char *rel,
                        const struct stat *sb)
{
    char target[PATH_MAX_LEN + 1];
    ssize_t n = readlinkat(dfd, name, target, sizeof(target));
    if (n < 0)
        return -errno;
    if (n == 0 || (size_t)n >= sizeof(target))
        return err_set(-ENAMETOOLONG, "a symlink target made by the command is too long");
    target[n] = '\0';
    struct file_meta m;
    memset(&m, 0, sizeof(m));
    m.kind = FILE_KIND_SYMLINK;
    m.mode = 0777;
    m.size = n;
    m.mtime_ns = mtime_ns_of(sb);
    m.target = target;
    int r = put_meta(w, rel, &m);
    if (r == 0)
        w->stats.symlinks++;
    return r;
}

/* True when the lower holds rel as a directory with the same mode and mtime as sb. */
static bool same_dir_in_lower(int lowerfd, const char *rel, const struct stat *sb)
{
    int fd = open_beneath(lowerfd, rel, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
    if (fd < 0)
        return false;
    struct stat lsb;
    bool same = fstat(fd, &lsb) == 0 && S_ISDIR(lsb.st_mode) &&
                (lsb.st_mode & 07777) == (sb->st_mode & 07777) &&
                mtime_ns_of(&lsb) == mtime_ns_of(sb);
    close(fd);
    return same;
}

/* Emits the directory's own changes; its entries are read later from the stack. */
static int diff_dir(struct walker *w, int dfd, const char *name, const char *rel)
{
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat sb;
    int r = 0;
    bool opaque = false;
    if (fstat(fd, &sb) < 0)
        r = -errno;
    else if (ovl_has(fd, "redirect"))
        r = err_set(-ENOTSUP, "overlay redirected directories are not supported");
    else if ((opaque = ovl_opaque(fd)))
        r = put_delete(w, rel);
    close(fd);
    if (r < 0)
        return r;
    /* Copied up (or prepared in the upper) and still as the lower has it: nothing to store.
     * Its entries are still walked. */
    if (!opaque && w->lowerfd >= 0 && same_dir_in_lower(w->lowerfd, rel, &sb))
        return 0;
    struct file_meta m;
    memset(&m, 0, sizeof(m));
    m.kind = FILE_KIND_DIR;
    m.mode = sb.st_mode & 07777;
    m.mtime_ns = mtime_ns_of(&sb);
    r = put_meta(w, rel, &m);
    if (r == 0)
        w->stats.dirs++;
    return r;
}

/* One entry of the upper (struct entry_walk). */
static int diff_entry(void *ud, int dfd, const char *name, const char *crel, const struct stat *sb,
                      bool *descend)
{
    struct walker *w = ud;
    if (S_ISCHR(sb->st_mode) && major(sb->st_rdev) == 0 && minor(sb->st_rdev) == 0)
        return put_delete(w, crel);
    if (S_ISREG(sb->st_mode))
        return diff_file(w, dfd, name, crel);
    if (S_ISLNK(sb->st_mode))
        return diff_symlink(w, dfd, name, crel, sb);
    if (S_ISDIR(sb->st_mode)) {
        int r = diff_dir(w, dfd, name, crel);
        *descend = r == 0;
        return r;
    }
    w->stats.skipped++;
    return 0;
}

int diff_upper(struct store *st, const char *upper_dir, const char *lower_dir, struct changeset *cs,
               struct diff_stats *ret)
{
    struct walker w = {.st = st, .cs = cs};
    struct entry_walk wk = {.entry = diff_entry, .ud = &w};
    int r = open_roots(upper_dir, lower_dir, &wk.rootfd, &w.lowerfd);
    if (r < 0)
        return r;
    r = walk_tree(walk_entries, &wk);
    free(w.buf);
    close(wk.rootfd);
    safe_close(w.lowerfd);
    w.stats.reserved = wk.reserved;
    if (r == 0 && ret)
        *ret = w.stats;
    return r;
}

/* ---------- diff_upper_changed ---------- */

/* 1 when the two open regular files differ in content. */
static int content_differs(int a, int b, char *buf)
{
    char *ba = buf, *bb = buf + DIFF_BUF_SIZE / 2;
    for (;;) {
        ssize_t na = read(a, ba, DIFF_BUF_SIZE / 2);
        if (na < 0)
            return -errno;
        ssize_t nb = read_all(b, bb, (size_t)na);
        if (nb < 0)
            return (int)nb;
        if (nb < na)
            return 1;
        if (memcmp(ba, bb, (size_t)na) != 0)
            return 1;
        if (na == 0) {
            nb = read(b, bb, 1);
            return nb < 0 ? -errno : nb > 0;
        }
    }
}

/* 1 when the upper node rel (stat usb, in dir udfd) is a change against the lower. */
static int node_changed(int udfd, const char *name, const struct stat *usb, int lowerfd,
                        const char *rel, char *buf)
{
    struct stat lsb;
    int lfd = open_beneath(lowerfd, rel, O_PATH | O_NOFOLLOW, 0);
    if (lfd == -ENOENT || lfd == -ELOOP || lfd == -ENOTDIR)
        return 1;
    if (lfd < 0)
        return lfd;
    int r = fstat(lfd, &lsb) < 0 ? -errno : 0;
    close(lfd);
    if (r < 0)
        return r;
    if ((usb->st_mode & S_IFMT) != (lsb.st_mode & S_IFMT) ||
        (usb->st_mode & 07777) != (lsb.st_mode & 07777) || mtime_ns_of(usb) != mtime_ns_of(&lsb))
        return 1;
    if (S_ISDIR(usb->st_mode)) {
        int fd = openat(udfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        r = ovl_opaque(fd) || ovl_has(fd, "redirect");
        close(fd);
        return r;
    }
    if (S_ISLNK(usb->st_mode)) {
        char t1[PATH_MAX_LEN + 1], t2[PATH_MAX_LEN + 1];
        ssize_t n1 = readlinkat(udfd, name, t1, sizeof(t1));
        const char *slash = strrchr(rel, '/');
        char *prel = strndup(rel, slash ? (size_t)(slash - rel) : 0);
        if (!prel)
            return -ENOMEM;
        int pfd = open_beneath(lowerfd, prel, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);
        free(prel);
        if (pfd < 0)
            return 1;
        ssize_t n2 = readlinkat(pfd, slash ? slash + 1 : rel, t2, sizeof(t2));
        close(pfd);
        return n1 < 0 || n2 < 0 || n1 != n2 || memcmp(t1, t2, (size_t)n1) != 0;
    }
    if (!S_ISREG(usb->st_mode))
        return 0;
    if (usb->st_size != lsb.st_size)
        return 1;
    int ufd = openat(udfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (ufd < 0)
        return -errno;
    lfd = open_beneath(lowerfd, rel, O_RDONLY | O_NONBLOCK | O_NOFOLLOW, 0);
    if (lfd < 0) {
        close(ufd);
        return 1;
    }
    r = ovl_has(ufd, "metacopy") ? 0 : content_differs(ufd, lfd, buf);
    close(ufd);
    close(lfd);
    return r;
}

struct changed_walk {
    int lowerfd;
    char *buf; /* DIFF_BUF_SIZE bytes for content_differs */
};

/* One entry of the upper (struct entry_walk): 1 when it is a change. */
static int changed_entry(void *ud, int dfd, const char *name, const char *crel,
                         const struct stat *sb, bool *descend)
{
    struct changed_walk *cw = ud;
    if (S_ISCHR(sb->st_mode) && sb->st_rdev == makedev(0, 0))
        return 1;
    int r = 0;
    if (S_ISREG(sb->st_mode) || S_ISDIR(sb->st_mode) || S_ISLNK(sb->st_mode))
        r = node_changed(dfd, name, sb, cw->lowerfd, crel, cw->buf);
    *descend = r == 0 && S_ISDIR(sb->st_mode);
    return r;
}

int diff_upper_changed(const char *upper_dir, const char *lower_dir)
{
    struct changed_walk cw = {.lowerfd = -1};
    struct entry_walk wk = {.entry = changed_entry, .ud = &cw};
    int r = open_roots(upper_dir, lower_dir, &wk.rootfd, &cw.lowerfd);
    if (r < 0)
        return r;
    cw.buf = malloc(DIFF_BUF_SIZE);
    r = cw.buf ? walk_tree(walk_entries, &wk) : -ENOMEM;
    free(cw.buf);
    close(wk.rootfd);
    safe_close(cw.lowerfd);
    return r;
}

/* ---------- diff_upper_usage ---------- */

/* Disk blocks (bytes) of the lower's regular file at rel, 0 when there is none. */
static int64_t lower_file_bytes(int lowerfd, const char *rel)
{
    int fd = open_beneath(lowerfd, rel, O_PATH | O_NOFOLLOW, 0);
    if (fd < 0)
        return 0;
    struct stat sb;
    int64_t bytes = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) ? (int64_t)sb.st_blocks * 512 : 0;
    close(fd);
    return bytes;
}

/* One directory of the usage walk. Entries that vanish under the walk (the exec still runs) are
 * skipped. */
struct usage_walk {
    int upperfd, lowerfd;
    struct upper_usage *u;
};

static int usage_entries(void *ud, const char *rel, struct names *todo)
{
    struct usage_walk *uw = ud;
    int lowerfd = uw->lowerfd;
    struct upper_usage *u = uw->u;
    int dfd = open_beneath(uw->upperfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
    if (dfd == -ENOENT || dfd == -ENOTDIR)
        return 0;
    if (dfd < 0)
        return dfd;
    struct names ns = {0};
    int r = list_dir(dfd, &ns);
    for (size_t i = 0; i < ns.n && r == 0; i++) {
        struct stat sb;
        if (fstatat(dfd, ns.v[i], &sb, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno != ENOENT)
                r = -errno;
            continue;
        }
        u->entries++;
        u->bytes += (int64_t)sb.st_blocks * 512;
        bool whiteout = S_ISCHR(sb.st_mode) && sb.st_rdev == makedev(0, 0);
        if (!S_ISDIR(sb.st_mode) && !(lowerfd >= 0 && (S_ISREG(sb.st_mode) || whiteout)))
            continue;
        char *crel = NULL;
        if ((r = join_rel(rel, ns.v[i], &crel)) < 0)
            break;
        if (S_ISDIR(sb.st_mode)) {
            r = names_push(todo, crel);
            continue;
        }
        u->replaced += lower_file_bytes(lowerfd, crel);
        free(crel);
    }
    names_release(&ns);
    close(dfd);
    return r;
}

int diff_upper_usage(const char *upper_dir, const char *lower_dir, struct upper_usage *ret)
{
    memset(ret, 0, sizeof(*ret));
    struct usage_walk uw = {.u = ret};
    int r = open_roots(upper_dir, lower_dir, &uw.upperfd, &uw.lowerfd);
    if (r < 0)
        return r;
    r = walk_tree(usage_entries, &uw);
    close(uw.upperfd);
    safe_close(uw.lowerfd);
    return r;
}

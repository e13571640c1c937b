#include "util/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/array.h"
#include "util/fd.h"

/* How often open_beneath retries the kernel's -EAGAIN (a rename raced with ".."). */
#define OPEN_BENEATH_TRIES 8

int open_beneath(int dirfd, const char *path, int flags, mode_t mode)
{
    struct open_how how = {
        .flags = (uint64_t)(unsigned)(flags | O_CLOEXEC),
        .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS |
                   ((flags & O_NOFOLLOW) ? RESOLVE_NO_SYMLINKS : 0),
    };
    for (int i = 0;; i++) {
        long fd = syscall(SYS_openat2, dirfd, *path ? path : ".", &how, sizeof(how));
        if (fd >= 0)
            return (int)fd;
        if (errno != EAGAIN || i + 1 == OPEN_BENEATH_TRIES)
            return -errno;
    }
}

/* ---------- rm -rf ---------- */

/* The identity of the mount an open descriptor is on: its mount id where statx knows it (bind
 * mounts of one file system differ), else its device. */
struct mount_key {
    uint64_t id;
    bool is_mnt_id;
};

static int mount_key_of(int fd, struct mount_key *ret)
{
    struct statx sx;
    if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &sx) < 0)
        return -errno;
    if (sx.stx_mask & STATX_MNT_ID)
        *ret = (struct mount_key){sx.stx_mnt_id, true};
    else
        *ret = (struct mount_key){((uint64_t)sx.stx_dev_major << 32) | sx.stx_dev_minor, false};
    return 0;
}

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

static bool is_dot_or_dotdot(const char *nm)
{
    return nm[0] == '.' && (nm[1] == '\0' || (nm[1] == '.' && nm[2] == '\0'));
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
        safe_close(dfd);
        return r;
    }
    size_t cap = 0;
    int r = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        if (is_dot_or_dotdot(nm))
            continue;
        bool isdir = de->d_type == DT_DIR;
        if (de->d_type == DT_UNKNOWN || (bytes && de->d_type == DT_REG)) {
            struct stat sb;
            if (fstatat(fd, nm, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT) { /* removed meanwhile */
                    errno = 0;
                    continue;
                }
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
            errno = 0;
            continue;
        }
        if ((r = ARRAY_GROW(f->names, f->n + 1, cap)) < 0)
            break;
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

/* Opens the subdirectory nm of fd if it is on the mount `top`: the descriptor, -EBUSY for a
 * mount point, or -errno. */
static int rm_open_child(int fd, const char *nm, const struct mount_key *top)
{
    int child = openat(fd, nm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (child < 0)
        return -errno;
    struct mount_key k;
    int r = mount_key_of(child, &k);
    if (r == 0 && (k.id != top->id || k.is_mnt_id != top->is_mnt_id))
        r = -EBUSY;
    if (r < 0) {
        safe_close(child);
        return r;
    }
    return child;
}

/* Empties the directory open at fd (consumed) depth first. */
static int rm_tree(int fd, int64_t *bytes)
{
    struct mount_key top;
    int r = mount_key_of(fd, &top);
    if (r < 0) {
        safe_close(fd);
        return r;
    }
    struct rm_frame *stack = NULL;
    size_t depth = 0, cap = 0;
    for (;;) {
        if ((r = ARRAY_GROW(stack, depth + 1, cap)) < 0)
            break;
        struct rm_frame *f = &stack[depth++];
        memset(f, 0, sizeof(*f));
        struct stat sb;
        if (fstat(fd, &sb) < 0) {
            r = -errno;
            break;
        }
        if ((r = rm_scan(fd, f, bytes)) < 0)
            break;
        f->dev = sb.st_dev;
        f->ino = sb.st_ino;
        /* Descend into the next pending subdirectory, climbing up over finished ones. */
        bool descended = false;
        while (!descended && depth > 0) {
            f = &stack[depth - 1];
            if (f->i < f->n) {
                int child = rm_open_child(fd, f->names[f->i], &top);
                if (child < 0) {
                    r = child;
                    break;
                }
                f->i++;
                safe_close(fd);
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
            safe_close(fd);
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
    safe_close(fd);
    return r;
}

int rm_rf_at(int dirfd, const char *name, int64_t *ret_bytes)
{
    struct stat sb;
    if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(sb.st_mode)) {
        if (unlinkat(dirfd, name, 0) < 0)
            return errno == ENOENT ? 0 : -errno;
        if (ret_bytes && S_ISREG(sb.st_mode))
            *ret_bytes += sb.st_size;
        return 0;
    }
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    int r = rm_tree(fd, ret_bytes);
    if (r < 0)
        return r;
    if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

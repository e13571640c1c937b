#include "util/datadir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/err.h"

int datadir_make(const char *dir)
{
    if (!dir || !*dir)
        return err_set(-EINVAL, "the data directory must not be empty");
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
        return 0; /* its parents may not even be readable to us */
    char *p = strdup(dir);
    if (!p)
        return -ENOMEM;
    int r = 0;
    for (char *s = p + 1;; s++) {
        bool end = *s == '\0';
        if (*s != '/' && !end)
            continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, 0700) < 0 && errno != EEXIST) {
            int e = errno;
            r = err_set(-e, "cannot create the data directory %s: %s", dir, strerror(e));
            break;
        }
        *s = saved;
        if (end)
            break;
    }
    free(p);
    return r;
}

/* The pid recorded in the lock file by its holder, or 0. */
static pid_t read_owner(int fd)
{
    char text[32];
    ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
    if (n <= 0)
        return 0;
    text[n] = '\0';
    char *end;
    errno = 0;
    long pid = strtol(text, &end, 10);
    if (errno || end == text || pid <= 0 || pid > INT_MAX)
        return 0;
    return (pid_t)pid;
}

static int write_owner(int fd)
{
    char text[32];
    int len = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, text, (size_t)len, 0) != len)
        return -errno;
    return 0;
}

int datadir_open(const char *dir, struct datadir *ret, pid_t *ret_owner)
{
    *ret = (struct datadir)DATADIR_INIT;
    *ret_owner = 0;
    int r = datadir_make(dir);
    if (r < 0)
        return r;
    ret->path = realpath(dir, NULL);
    if (!ret->path)
        return err_set(-errno, "cannot resolve the data directory %s: %s", dir, strerror(errno));
    struct stat st;
    if (stat(ret->path, &st) < 0 || !S_ISDIR(st.st_mode))
        return err_set(-ENOTDIR, "the data directory %s is not a directory", ret->path);
    char *lock_path = NULL;
    if (asprintf(&lock_path, "%s/" DATADIR_LOCK_NAME, ret->path) < 0)
        return -ENOMEM;
    _cleanup_close_ int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    free(lock_path);
    if (fd < 0)
        return err_set(-errno, "cannot open the lock file of the data directory %s: %s", ret->path,
                       strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        if (e == EWOULDBLOCK) {
            *ret_owner = read_owner(fd);
            return -EBUSY;
        }
        return err_set(-e, "cannot lock the data directory %s: %s", ret->path, strerror(e));
    }
    /* Ours now: what is in it is private to the server's user. */
    if ((st.st_mode & 077) && chmod(ret->path, 0700) < 0) {
        int e = errno;
        return err_set(-e,
                       "the data directory %s is accessible to group or others (mode %04o) and "
                       "cannot be made 0700: %s",
                       ret->path, (unsigned)(st.st_mode & 07777), strerror(e));
    }
    if (st.st_mode & 077)
        ret->loose_mode = st.st_mode & 07777;
    if (fchmod(fd, 0600) < 0 || (r = write_owner(fd)) < 0) {
        r = r < 0 ? r : -errno;
        return err_set(r, "cannot write the lock file of the data directory %s: %s", ret->path,
                       strerror(-r));
    }
    ret->lock_fd = TAKE_FD(fd);
    return 0;
}

void datadir_close(struct datadir *d)
{
    safe_close(d->lock_fd);
    free(d->path);
    *d = (struct datadir)DATADIR_INIT;
}

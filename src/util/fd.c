#include "util/fd.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

ssize_t read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, p + got, len - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

int safe_close(int fd)
{
    if (fd >= 0) {
        int saved = errno;
        (void)close(fd);
        errno = saved;
    }
    return -1;
}

void closep(int *fd)
{
    *fd = safe_close(*fd);
}

int memfd_from_bytes(const char *name, const void *data, size_t len, unsigned flags)
{
    unsigned mfd = MFD_CLOEXEC | (flags & MEMFD_SEALED ? MFD_ALLOW_SEALING : 0);
    int fd = -1;
    if (flags & MEMFD_EXECUTABLE) {
        /* kernels before 6.3 reject the flag (EINVAL) and make every memfd executable */
        fd = memfd_create(name, mfd | MFD_EXEC);
        if (fd < 0 && errno == EINVAL)
            fd = memfd_create(name, mfd);
    } else {
        fd = memfd_create(name, mfd);
    }
    if (fd < 0)
        return -errno;
    int r = write_all(fd, data, len);
    if (r == 0 && lseek(fd, 0, SEEK_SET) < 0)
        r = -errno;
    if (r == 0 && (flags & MEMFD_EXECUTABLE) && fchmod(fd, 0555) < 0)
        r = -errno;
    if (r == 0 && (flags & MEMFD_SEALED) &&
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
        r = -errno;
    if (r < 0) {
        safe_close(fd);
        return r;
    }
    return fd;
}

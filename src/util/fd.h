/*
 * fd — file descriptor primitives: whole reads and writes, closing, and memfds built from bytes.
 *
 * write_all and read_all loop over short transfers and EINTR so a caller sees one outcome per
 * buffer. They are meant for blocking descriptors: on a non-blocking one an EAGAIN ends them
 * with -EAGAIN after an unknown part of the buffer went through. They only call read/write, so
 * they are async-signal-safe (usable between clone and execve).
 *
 * safe_close never changes errno, so it can run on an error path between a failing call and the
 * `return -errno` that reports it. Every descriptor made here is O_CLOEXEC.
 *
 * Thread-safe (no state).
 */
#ifndef SQLFS_UTIL_FD_H
#define SQLFS_UTIL_FD_H

#include <stddef.h>
#include <sys/types.h>

/* Writes all `len` bytes of `data` to fd, retrying short writes and EINTR. 0 or -errno
 * (-EIO if the descriptor accepts nothing). */
__attribute__((warn_unused_result)) int write_all(int fd, const void *data, size_t len);

/* Reads until `len` bytes are in buf or the end of the file, retrying short reads and EINTR.
 * The number of bytes read (less than len only at the end of the file) or -errno; what was
 * read before an error is in buf but not counted. */
__attribute__((warn_unused_result)) ssize_t read_all(int fd, void *buf, size_t len);

/* Closes fd when it is >= 0, keeping errno as it was. Always returns -1, for
 * `fd = safe_close(fd);`. */
int safe_close(int fd);

/* safe_close(*fd), then *fd = -1. Idempotent; the cleanup function of _cleanup_close_. */
void closep(int *fd);

enum memfd_flags {
    MEMFD_SEALED = 1 << 0,     /* sealed against any change of size or contents */
    MEMFD_EXECUTABLE = 1 << 1, /* mode 0555 and executable even where memfds default to noexec */
};

/* A memfd named `name` (shown in /proc, no meaning otherwise) holding the `len` bytes of
 * `data`, its offset back at 0, O_CLOEXEC. `flags` is a set of enum memfd_flags. MEMFD_EXECUTABLE
 * asks for MFD_EXEC (hosts with vm.memfd_noexec=1 make memfds non-executable by default) and
 * does without it on kernels that predate it. The descriptor or -errno. */
__attribute__((warn_unused_result)) int memfd_from_bytes(const char *name, const void *data,
                                                         size_t len, unsigned flags);

#endif

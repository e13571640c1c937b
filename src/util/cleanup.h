/*
 * cleanup — scope-bound release of locals (GCC/Clang `cleanup` attribute), after systemd.
 *
 *     _cleanup_free_ char *path = NULL;
 *     _cleanup_close_ int fd = -1;
 *     ...
 *     *ret_fd = TAKE_FD(fd);        ownership leaves the scope: nothing is closed
 *     *ret_path = TAKE_PTR(path);
 *
 * A variable with a cleanup attribute is released when it goes out of scope on every path, so
 * it must be initialised at its declaration (NULL, -1). The release functions accept the
 * "empty" value (free(NULL), fd < 0, NULL FILE/DIR), so TAKE_PTR/TAKE_FD, which return the value
 * and leave the empty one behind, hand ownership to someone else. _cleanup_close_ keeps errno
 * (safe_close), so `return -errno;` after a failed call reports that call's error.
 *
 * Other types: _cleanup_(x_releasep) with a `void x_releasep(T *)`, e.g. _cleanup_(buf_release)
 * on a struct buf.
 */
#ifndef SQLFS_UTIL_CLEANUP_H
#define SQLFS_UTIL_CLEANUP_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/fd.h"

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p)
{
    free(*(void **)p);
}

static inline void fclosep(FILE **f)
{
    if (*f)
        (void)fclose(*f);
}

static inline void closedirp(DIR **d)
{
    if (*d)
        (void)closedir(*d);
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)
#define _cleanup_closedir_ _cleanup_(closedirp)

/* The value of the pointer lvalue p, leaving NULL in p. */
#define TAKE_PTR(p)                                                                                \
    __extension__({                                                                                \
        __typeof__(p) *take_p_ = &(p);                                                             \
        __typeof__(p) take_v_ = *take_p_;                                                          \
        *take_p_ = NULL;                                                                           \
        take_v_;                                                                                   \
    })

/* The value of the descriptor lvalue fd, leaving -1 in fd. */
#define TAKE_FD(fd)                                                                                \
    __extension__({                                                                                \
        int *take_fd_p_ = &(fd);                                                                   \
        int take_fd_v_ = *take_fd_p_;                                                              \
        *take_fd_p_ = -1;                                                                          \
        take_fd_v_;                                                                                \
    })

#endif

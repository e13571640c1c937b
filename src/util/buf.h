/*
 * buf — a bounded, growable, binary-safe byte buffer.
 *
 * Invariants: `data` is NULL while nothing was added (len == cap == 0); otherwise it points at
 * `cap` bytes of which `len` are used and data[len] == '\0', so text can be read as a C string
 * (binary content may hold NULs; always use `len`). `max` (0 = unbounded) caps `len`: an add that
 * would pass it fails with -EFBIG and leaves the buffer unchanged.
 *
 * Ownership: the buffer owns `data`; buf_release frees it, buf_detach hands it to the caller.
 * Not thread-safe; one owner at a time.
 */
#ifndef SQLFS_UTIL_BUF_H
#define SQLFS_UTIL_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data; /* NUL-terminated storage, NULL until first add */
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated, excluding the terminating NUL */
    size_t max; /* limit on len; 0 = none */
};

#define BUF_INIT(limit)                                                                            \
    {                                                                                              \
        NULL, 0, 0, (limit)                                                                        \
    }

/* Ensures room for `extra` more bytes. 0, -EFBIG (over max) or -ENOMEM. */
__attribute__((warn_unused_result)) int buf_grow(struct buf *b, size_t extra);
__attribute__((warn_unused_result)) int buf_add(struct buf *b, const void *data, size_t len);
__attribute__((warn_unused_result)) int buf_addstr(struct buf *b, const char *s);
__attribute__((warn_unused_result, format(printf, 2, 3))) int buf_addf(struct buf *b,
                                                                       const char *fmt, ...);
__attribute__((warn_unused_result, format(printf, 2, 0))) int
buf_vaddf(struct buf *b, const char *fmt, va_list ap);
/* Drops the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
/* Empties the buffer, keeping its storage. */
void buf_reset(struct buf *b);
/* Frees the storage; the buffer is empty and reusable (max kept). */
void buf_release(struct buf *b);
/* Returns the storage (caller frees; never NULL: "" when empty) and empties the buffer. */
char *buf_detach(struct buf *b, size_t *ret_len);
/* The contents as a C string; "" when empty. */
static inline const char *buf_cstr(const struct buf *b)
{
    return b->data ? b->data : "";
}

#endif

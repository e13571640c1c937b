/*
 * err — the one table of sqlfs errors and their HTTP mapping.
 *
 * Fallible functions return >= 0 on success and a negative code on failure: either -errno
 * (ENOENT, EISDIR, ENOTDIR, EEXIST, ENOTEMPTY, ELOOP, EINVAL, EFBIG, ENOSPC, ENOMEM, EIO, ...) or
 * -ERR_* from the enum below. err_info() turns any such code into the wire code, HTTP status and
 * retryable flag; the HTTP layer builds error bodies only from it.
 *
 * A human message and details can accompany a failure: err_set()/err_detail() store them in
 * thread-local state (like errno), which the HTTP layer reads when it answers the request that
 * failed on this thread. err_clear() resets it at the start of each request.
 * Messages must never hold host paths, SQL text or secrets.
 */
#ifndef SQLFS_UTIL_ERR_H
#define SQLFS_UTIL_ERR_H

#include <stdbool.h>
#include <stddef.h>

enum err_code {
    ERR_BASE = 10000,
    ERR_INVALID_INPUT = ERR_BASE, /* 400 */
    ERR_EDIT_BINARY,              /* 400 */
    ERR_AUTH_REQUIRED,            /* 401 */
    ERR_AUTH_INVALID,             /* 401 */
    ERR_FORBIDDEN,                /* 403 */
    ERR_SANDBOX_NOT_FOUND,        /* 404 */
    ERR_NOT_FOUND,                /* 404 unknown route */
    ERR_METHOD_NOT_ALLOWED,       /* 405 */
    ERR_EXEC_TIMEOUT,             /* 408 */
    ERR_EDIT_NO_MATCH,            /* 409 */
    ERR_EDIT_NOT_UNIQUE,          /* 409 */
    ERR_PAYLOAD_TOO_LARGE,        /* 413 */
    ERR_QUOTA,                    /* 413 EQUOTA */
    ERR_TOO_MANY_ENTRIES,         /* 413 tree/ingest entry caps */
    ERR_UNSUPPORTED_MEDIA_TYPE,   /* 415 */
    ERR_READONLY_VIOLATION,       /* 422 */
    ERR_RATE_LIMITED,             /* 429 */
    ERR_INTERNAL,                 /* 500 */
    ERR_ADMIN_NOT_CONFIGURED,     /* 500 */
    ERR_JAIL_UNAVAILABLE,         /* 503 EXEC_UNAVAILABLE: this server cannot run execs at all */
    ERR_BUSY,                     /* 503 retryable */
    ERR_SHUTTING_DOWN,            /* 503 retryable */
    ERR_LOCK_TIMEOUT,             /* 503 retryable */
    ERR_STORAGE_FULL,             /* 507 disk full, retryable */
    ERR_RANGE_NOT_SATISFIABLE,    /* 416 Range starts past the end of the file */
    ERR_EXEC_FAILED,              /* 500 an exec's set-up failed on the server's side */
    ERR_EXEC_TRANSIENT,           /* 503 EXEC_UNAVAILABLE, retryable: the host is short of a
                                   * resource (memory, processes, descriptors) for an exec */
    ERR_CWD_MISSING,              /* 400 an exec's start directory does not exist */
    ERR_SANDBOX_LIMIT,            /* 409 the owner has MAX_SANDBOXES_PER_OWNER sandboxes */
    ERR_NOT_IMPLEMENTED,          /* 501 a request framing the server does not implement */
    ERR_STORE_UNAVAILABLE,        /* 503 retryable: the database cannot be reached (connection
                                   * lost, server restarting); nothing was applied */
    ERR_VERSION_NOT_FOUND,        /* 404 a sandbox version never made or pruned from history */
    ERR_SNAPSHOT_LIMIT,           /* 409 the sandbox has MAX_SNAPSHOTS snapshots */
    ERR_EXEC_NOT_FOUND,           /* 404 no such exec in the sandbox's journal (never run, or
                                   * pruned) */
    ERR_IDEMPOTENCY_MISMATCH,     /* 422 an Idempotency-Key reused for another request */
    ERR_IDEMPOTENCY_IN_PROGRESS,  /* 409 retryable: the key's first request still runs */
    ERR_IDEMPOTENCY_ANSWER_UNAVAILABLE, /* 409 the key's request was applied; its answer was
                                         * too large to keep */
    ERR_COMMIT_IN_DOUBT,                /* 500 INTERNAL_ERROR: the database connection was lost
                                         * while committing, and whether the commit was
                                         * applied cannot be told */
    ERR_END
};

struct err_info {
    const char *code;    /* wire code, e.g. "ENOENT" */
    int status;          /* HTTP status */
    bool retryable;      /* nothing applied; may succeed later */
    const char *message; /* default human message */
};

/* Maps a (negative or positive) error code to its table entry; unknown codes map to
 * INTERNAL_ERROR. Never NULL. */
const struct err_info *err_info(int code);
/* The i-th entry of the table, the errno entries included, from 0; NULL past the last. Several
 * entries may share a wire code (EBUSY, INVALID_INPUT, ...): for listing every wire code the
 * server can send. */
const struct err_info *err_info_at(size_t i);
/* The entry whose wire code is `code` ("ENOENT"; the first of several), or NULL when no entry
 * has it. */
const struct err_info *err_info_by_code(const char *code);

/* Records a message for the current thread and returns -abs(code), so callers can write
 * `return err_set(-ENOENT, "no such file: %s", path);`. */
__attribute__((format(printf, 2, 3))) int err_set(int code, const char *fmt, ...);
/* Appends one detail string (at most 32 are kept). */
__attribute__((format(printf, 1, 2))) void err_detail(const char *fmt, ...);
/* The message recorded since the last err_clear(), or NULL. */
const char *err_message(void);
/* Number of details and the i-th one. */
int err_detail_count(void);
const char *err_detail_at(int i);
/* Forgets the message and details of this thread. */
void err_clear(void);
/* Forgets the message only (the details stay). */
void err_clear_message(void);

/* This thread's message kept aside while cleanup that may set its own runs (err_save), then
 * put back (err_restore: recorded again with `code`, or none when there was none). */
#define ERR_MSG_MAX 512 /* bytes of a message, its NUL included */
struct err_saved {
    bool has;
    char msg[ERR_MSG_MAX];
};
void err_save(struct err_saved *s);
void err_restore(const struct err_saved *s, int code);

#endif

#include "util/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERR_DETAILS_MAX 32
#define ERR_DETAIL_LEN 256

static const struct err_info table[ERR_END - ERR_BASE] = {
    [ERR_INVALID_INPUT - ERR_BASE] = {"INVALID_INPUT", 400, false, "invalid input"},
    [ERR_EDIT_BINARY -
        ERR_BASE] = {"EDIT_BINARY", 400, false, "file is not UTF-8 text and cannot be edited"},
    [ERR_AUTH_REQUIRED - ERR_BASE] = {"AUTH_REQUIRED", 401, false,
                                      "missing or malformed Authorization: Bearer header"},
    [ERR_AUTH_INVALID - ERR_BASE] = {"AUTH_INVALID", 401, false, "invalid or expired token"},
    [ERR_FORBIDDEN - ERR_BASE] = {"FORBIDDEN", 403, false, "forbidden"},
    [ERR_SANDBOX_NOT_FOUND - ERR_BASE] = {"SANDBOX_NOT_FOUND", 404, false, "sandbox not found"},
    [ERR_NOT_FOUND - ERR_BASE] = {"NOT_FOUND", 404, false, "no such route"},
    [ERR_METHOD_NOT_ALLOWED -
        ERR_BASE] = {"METHOD_NOT_ALLOWED", 405, false, "method not allowed on this route"},
    [ERR_EXEC_TIMEOUT - ERR_BASE] = {"EXEC_TIMEOUT", 408, false, "exec timed out"},
    [ERR_EDIT_NO_MATCH - ERR_BASE] = {"EDIT_NO_MATCH", 409, false, "oldString not found"},
    [ERR_EDIT_NOT_UNIQUE - ERR_BASE] = {"EDIT_NOT_UNIQUE", 409, false,
                                        "oldString matches more than once; use replaceAll"},
    [ERR_PAYLOAD_TOO_LARGE -
        ERR_BASE] = {"PAYLOAD_TOO_LARGE", 413, false, "request body too large"},
    [ERR_QUOTA - ERR_BASE] = {"EQUOTA", 413, false, "sandbox storage quota exceeded"},
    [ERR_TOO_MANY_ENTRIES - ERR_BASE] = {"PAYLOAD_TOO_LARGE", 413, false, "too many entries"},
    [ERR_UNSUPPORTED_MEDIA_TYPE -
        ERR_BASE] = {"UNSUPPORTED_MEDIA_TYPE", 415, false, "unsupported content type"},
    [ERR_READONLY_VIOLATION - ERR_BASE] = {"EREADONLY_VIOLATION", 422, false,
                                           "read-only exec tried to change the filesystem"},
    [ERR_RATE_LIMITED - ERR_BASE] = {"RATE_LIMITED", 429, true, "too many requests"},
    [ERR_INTERNAL - ERR_BASE] = {"INTERNAL_ERROR", 500, false, "internal error"},
    [ERR_ADMIN_NOT_CONFIGURED -
        ERR_BASE] = {"ADMIN_NOT_CONFIGURED", 500, false, "admin routes are not configured"},
    [ERR_JAIL_UNAVAILABLE - ERR_BASE] = {"EXEC_UNAVAILABLE", 503, false,
                                         "the sandbox runtime is not available on this host"},
    [ERR_BUSY - ERR_BASE] = {"EBUSY", 503, true, "server busy, retry later"},
    [ERR_SHUTTING_DOWN - ERR_BASE] = {"ESHUTTINGDOWN", 503, true, "server is shutting down"},
    [ERR_LOCK_TIMEOUT -
        ERR_BASE] = {"ELOCKTIMEOUT", 503, true, "sandbox is busy; timed out waiting for its lock"},
    [ERR_STORAGE_FULL - ERR_BASE] = {"ENOSPC", 507, true, "server storage is full"},
    [ERR_RANGE_NOT_SATISFIABLE -
        ERR_BASE] = {"RANGE_NOT_SATISFIABLE", 416, false, "requested range not satisfiable"},
    [ERR_EXEC_FAILED - ERR_BASE] = {"EXEC_FAILED", 500, false,
                                    "the server failed to set up the exec; nothing ran"},
    [ERR_EXEC_TRANSIENT - ERR_BASE] = {"EXEC_UNAVAILABLE", 503, true,
                                       "the server is short of resources for an exec; retry"},
    [ERR_CWD_MISSING - ERR_BASE] = {"INVALID_INPUT", 400, false,
                                    "the working directory does not exist in the sandbox"},
    [ERR_SANDBOX_LIMIT - ERR_BASE] = {"ESANDBOX_LIMIT", 409, false,
                                      "too many sandboxes; delete one to create another"},
    [ERR_NOT_IMPLEMENTED - ERR_BASE] = {"NOT_IMPLEMENTED", 501, false,
                                        "the server does not implement this request framing"},
    [ERR_STORE_UNAVAILABLE -
        ERR_BASE] = {"STORE_UNAVAILABLE", 503, true, "the database is unavailable; retry later"},
    [ERR_VERSION_NOT_FOUND - ERR_BASE] = {"VERSION_NOT_FOUND", 404, false,
                                          "no such version of this sandbox (never made, or "
                                          "pruned from its history)"},
    [ERR_SNAPSHOT_LIMIT - ERR_BASE] = {"ESNAPSHOT_LIMIT", 409, false,
                                       "too many snapshots; delete one to take another"},
    [ERR_EXEC_NOT_FOUND - ERR_BASE] = {"EXEC_NOT_FOUND", 404, false,
                                       "no such exec in this sandbox's journal (never run, or "
                                       "pruned from it)"},
    [ERR_IDEMPOTENCY_MISMATCH - ERR_BASE] = {"IDEMPOTENCY_MISMATCH", 422, false,
                                             "this Idempotency-Key was used for a different "
                                             "request; use a new key"},
    [ERR_IDEMPOTENCY_IN_PROGRESS - ERR_BASE] = {"IDEMPOTENCY_IN_PROGRESS", 409, true,
                                                "the first request with this Idempotency-Key "
                                                "is still running; retry shortly"},
    [ERR_IDEMPOTENCY_ANSWER_UNAVAILABLE - ERR_BASE] = {"IDEMPOTENCY_ANSWER_UNAVAILABLE", 409, false,
                                                       "the request with this Idempotency-Key "
                                                       "was applied, but its answer was too "
                                                       "large to keep"},
    [ERR_COMMIT_IN_DOUBT - ERR_BASE] = {"INTERNAL_ERROR", 500, false,
                                        "the database connection was lost while committing: the "
                                        "change may or may not have been applied"},
};

static const struct err_info errno_table[] = {
    {"ENOENT", 404, false, "no such file or directory"},
    {"EISDIR", 400, false, "is a directory"},
    {"ENOTDIR", 400, false, "not a directory"},
    {"EEXIST", 409, false, "already exists"},
    {"ENOTEMPTY", 409, false, "directory not empty"},
    {"ELOOP", 400, false, "too many levels of symbolic links"},
    {"EINVAL", 400, false, "invalid argument"},
    {"EFBIG", 413, false, "file too large"},
    {"ENAMETOOLONG", 400, false, "path too long"},
    {"ENOSPC", 507, true, "server storage is full"},
    {"EBUSY", 503, true, "server busy, retry later"},
};

static const struct err_info *errno_info(int e)
{
    switch (e) {
    case ENOENT:
        return &errno_table[0];
    case EISDIR:
        return &errno_table[1];
    case ENOTDIR:
        return &errno_table[2];
    case EEXIST:
        return &errno_table[3];
    case ENOTEMPTY:
        return &errno_table[4];
    case ELOOP:
        return &errno_table[5];
    case EINVAL:
        return &errno_table[6];
    case EFBIG:
        return &errno_table[7];
    case ENAMETOOLONG:
        return &errno_table[8];
    case ENOSPC:
    case EDQUOT:
        return &errno_table[9];
    case EBUSY:
    case EAGAIN:
        return &errno_table[10];
    default:
        return NULL;
    }
}

const struct err_info *err_info(int code)
{
    if (code < 0)
        code = -code;
    if (code >= ERR_BASE && code < ERR_END && table[code - ERR_BASE].code)
        return &table[code - ERR_BASE];
    const struct err_info *e = errno_info(code);
    return e ? e : &table[ERR_INTERNAL - ERR_BASE];
}

const struct err_info *err_info_at(size_t i)
{
    size_t n = sizeof(table) / sizeof(table[0]);
    for (size_t k = 0; k < n; k++) /* the enum may leave holes in the table */
        if (table[k].code && i-- == 0)
            return &table[k];
    return i < sizeof(errno_table) / sizeof(errno_table[0]) ? &errno_table[i] : NULL;
}

const struct err_info *err_info_by_code(const char *code)
{
    const struct err_info *e;
    for (size_t i = 0; (e = err_info_at(i)); i++)
        if (strcmp(e->code, code) == 0)
            return e;
    return NULL;
}

static __thread char msg[ERR_MSG_MAX];
static __thread bool has_msg;
static __thread char details[ERR_DETAILS_MAX][ERR_DETAIL_LEN];
static __thread int ndetails;

int err_set(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    has_msg = true;
    return code < 0 ? code : -code;
}

void err_detail(const char *fmt, ...)
{
    if (ndetails >= ERR_DETAILS_MAX)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(details[ndetails++], ERR_DETAIL_LEN, fmt, ap);
    va_end(ap);
}

const char *err_message(void)
{
    return has_msg ? msg : NULL;
}

int err_detail_count(void)
{
    return ndetails;
}

const char *err_detail_at(int i)
{
    return (i >= 0 && i < ndetails) ? details[i] : NULL;
}

void err_clear_message(void)
{
    has_msg = false;
    msg[0] = '\0';
}

void err_save(struct err_saved *s)
{
    const char *m = err_message();
    s->has = m != NULL;
    snprintf(s->msg, sizeof(s->msg), "%s", m ? m : "");
}

void err_restore(const struct err_saved *s, int code)
{
    if (s->has)
        err_set(code, "%s", s->msg);
    else
        err_clear_message();
}

void err_clear(void)
{
    has_msg = false;
    msg[0] = '\0';
    ndetails = 0;
}

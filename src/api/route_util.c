/*
 * route_util — helpers every resource's routes share (routes.h): the request's sandbox opened
 * under its lock, sandbox paths from the URL or from JSON fields and query parameters (with the
 * reserved-path check for writes), and the bulk-write limit.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "api/idem.h"
#include "api/routes.h"
#include "sandbox/sandbox.h"
#include "store/reserved.h"
#include "util/err.h"
#include "util/path.h"

int route_path_arg(const char *field, const char *value, size_t len, char **ret)
{
    if (len == 0 || value[0] != '/')
        return err_set(-ERR_INVALID_INPUT, "%s: path must be absolute (start with '/')", field);
    int r = path_normalize(value, len, ret);
    if (r == -EINVAL)
        return err_set(-ERR_INVALID_INPUT, "%s: path contains a NUL byte", field);
    if (r == -ENAMETOOLONG)
        return err_set(-ENAMETOOLONG, "%s: path too long (max %d bytes, %d per name)", field,
                       PATH_MAX_LEN, PATH_NAME_MAX);
    return r;
}

int route_write_path_arg(const char *field, const char *value, size_t len, bool is_dir, char **ret)
{
    int r = route_path_arg(field, value, len, ret);
    const char *reserved = r < 0 ? NULL : reserved_root(*ret, is_dir);
    if (reserved) {
        r = reserved_error(*ret, reserved);
        free(*ret);
        *ret = NULL;
    }
    return r;
}

int route_open_sandbox(struct request *req, enum lock_mode mode, struct sandbox_rec *rec)
{
    struct sandbox_rec unused, *out = rec ? rec : &unused;
    int r = sandbox_open(req->app->sandboxes, req->sandbox_id, req->tenant, req->sub, mode, out,
                         &req->lock);
    if (r < 0)
        return r;
    /* the wait for the lock may have been long: the request's Idempotency-Key claim is renewed
     * (or found lost) before the handler changes anything */
    r = idem_renew(req);
    if (r < 0 || !rec)
        sandbox_rec_release(out);
    return r;
}

int route_check_bulk_count(struct request *req, size_t n)
{
    int64_t max = req->app->cfg->max_bulk_write_files;
    if ((int64_t)n <= max)
        return 0;
    err_set(-ERR_PAYLOAD_TOO_LARGE, "too many files: %zu (limit %lld)", n, (long long)max);
    err_detail("MAX_BULK_WRITE_FILES=%lld", (long long)max);
    return -ERR_PAYLOAD_TOO_LARGE;
}

int route_capture_path(struct request *req, char **ret)
{
    const char *rest = req->rest ? req->rest : "";
    size_t len = req->rest ? req->rest_len : 0;
    if (memchr(rest, '\0', len))
        return err_set(-ERR_INVALID_INPUT, "path contains a NUL byte");
    if (len == 0) {
        *ret = strdup("/");
        return *ret ? 0 : -ENOMEM;
    }
    int r = path_normalize(rest, len, ret);
    if (r == -EINVAL)
        return err_set(-ERR_INVALID_INPUT, "invalid path");
    if (r == -ENAMETOOLONG)
        return err_set(-ENAMETOOLONG, "path too long (max %d bytes, %d per name)", PATH_MAX_LEN,
                       PATH_NAME_MAX);
    return r;
}

int route_commit_info_path(struct changeset *cs, const char *path)
{
    json_t *o = json_object();
    json_t *p = json_string(path); /* NULL when not UTF-8: no path in the record */
    if (!o) {
        json_decref(p);
        return -ENOMEM;
    }
    if (p)
        json_object_set_new(o, "path", p);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    int r = text ? changeset_set_info(cs, text) : -ENOMEM;
    free(text);
    return r;
}

int route_query_int(struct request *req, const char *name, int64_t min, int64_t max, int64_t *ret)
{
    char *v = NULL;
    int r = http_query(req, name, &v);
    if (r < 0 || !v)
        return r;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < min || n > max)
        r = err_set(-ERR_INVALID_INPUT,
                    "query parameter '%s' must be an integer from %" PRId64 " to %" PRId64, name,
                    min, max);
    else
        *ret = n;
    free(v);
    return r;
}

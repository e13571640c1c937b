/* Files (docs/API.md "Files"): read, write (streamed), edit, delete, mkdir, writeFiles, tree. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/jsonv.h"
#include "api/routes.h"
#include "api/wire.h"
#include "store/reserved.h"
#include "sandbox/sandbox.h"
#include "util/cleanup.h"
#include "util/compiler.h"
#include "util/err.h"
#include "util/jsontext.h"
#include "util/path.h"
#include "util/timeutil.h"
#include "util/utf8.h"

#define READ_BLOCK (256 * 1024)
#define EDIT_MAX_BYTES (64 * 1024 * 1024)

static const char *content_type_for(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".txt", "text/plain; charset=utf-8"},
        {".md", "text/markdown; charset=utf-8"},
        {".json", "application/json"},
        {".html", "text/html; charset=utf-8"},
        {".htm", "text/html; charset=utf-8"},
        {".css", "text/css"},
        {".js", "text/javascript"},
        {".mjs", "text/javascript"},
        {".ts", "text/plain; charset=utf-8"},
        {".py", "text/x-python; charset=utf-8"},
        {".sh", "text/x-shellscript"},
        {".c", "text/x-c; charset=utf-8"},
        {".h", "text/x-c; charset=utf-8"},
        {".csv", "text/csv"},
        {".xml", "application/xml"},
        {".yaml", "application/yaml"},
        {".yml", "application/yaml"},
        {".toml", "application/toml"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".jpeg", "image/jpeg"},
        {".gif", "image/gif"},
        {".svg", "image/svg+xml"},
        {".webp", "image/webp"},
        {".pdf", "application/pdf"},
        {".zip", "application/zip"},
        {".gz", "application/gzip"},
        {".tgz", "application/gzip"},
        {".tar", "application/x-tar"},
        {".wasm", "application/wasm"},
    };
    const char *base = path_basename(path);
    const char *dot = strrchr(base, '.');
    if (dot)
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (strcasecmp(dot, types[i].ext) == 0)
                return types[i].type;
    return "application/octet-stream";
}

static char *stat_header(const struct file_meta *m)
{
    json_t *o = json_object();
    json_object_set_new(o, "kind", json_string(file_kind_name(m->kind)));
    json_object_set_new(o, "mode", json_integer(m->mode & 07777));
    json_object_set_new(o, "size", json_integer(m->size));
    json_object_set_new(o, "mtime", wire_mtime_json(m->mtime_ns));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* ---- GET ---- */

struct read_ctx {
    struct store *store;
    struct content_reader *reader;
};

static ssize_t read_cb(void *cls, uint64_t pos UNUSED, char *buf, size_t max)
{
    struct read_ctx *ctx = cls;
    size_t got = 0;
    int r = store_content_read(ctx->store, ctx->reader, buf, max, &got);
    if (r < 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (got == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    return (ssize_t)got;
}

static void read_free(void *cls)
{
    struct read_ctx *ctx = cls;
    store_content_close(ctx->store, ctx->reader);
    free(ctx);
}

/* Parses a single "bytes=a-b" range against size. 1 = range set, 0 = none/ignored,
 * -1 = unsatisfiable. */
static int parse_range(const char *h, int64_t size, int64_t *start, int64_t *end)
{
    if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
        return 0;
    const char *p = h + 6;
    char *e;
    if (*p == '-') {
        errno = 0;
        long long n = strtoll(p + 1, &e, 10);
        if (errno || *e || n <= 0)
            return 0;
        if (size == 0)
            return -1;
        *start = n >= size ? 0 : size - n;
        *end = size - 1;
        return 1;
    }
    errno = 0;
    long long a = strtoll(p, &e, 10);
    if (errno || e == p || *e != '-' || a < 0)
        return 0;
    const char *q = e + 1;
    long long b = size - 1;
    if (*q) {
        b = strtoll(q, &e, 10);
        if (errno || *e || b < a)
            return 0;
    }
    if (a >= size)
        return -1;
    if (b >= size)
        b = size - 1;
    *start = a;
    *end = b;
    return 1;
}

/* The "version" query parameter: a past version to read (store.h: History), or -1 (absent: the
 * current tree). */
static int version_arg(struct request *req, int64_t *ret)
{
    *ret = -1;
    return route_query_int(req, "version", 0, INT64_MAX, ret);
}

int route_file_get(struct request *req)
{
    char *path = NULL;
    int64_t version;
    int r = version_arg(req, &version);
    if (r == 0)
        r = route_capture_path(req, &path);
    if (r < 0)
        return r;
    r = route_open_sandbox(req, LOCK_SHARED, NULL);
    if (r < 0) {
        free(path);
        return r;
    }
    char *real = NULL;
    struct file_meta m;
    r = sandbox_resolve_at(req->app->sandboxes, req->sandbox_id, version, path, true, &real, &m);
    free(path);
    free(real);
    if (r < 0)
        return r;
    if (m.kind == FILE_KIND_DIR) {
        r = err_set(-EISDIR, "is a directory: %s", m.path);
        file_meta_release(&m);
        return r;
    }
    sandbox_touch(req->app->sandboxes, req->sandbox_id);
    int64_t start = 0, end = m.size - 1;
    int ranged = parse_range(http_header(req, "Range"), m.size, &start, &end);
    char cr[96];
    if (ranged < 0) {
        /* an error like any other (JSON body), plus the size the client can retry against */
        snprintf(cr, sizeof(cr), "bytes */%lld", (long long)m.size);
        r = err_set(-ERR_RANGE_NOT_SATISFIABLE,
                    "Range starts past the end of the file (%lld bytes)", (long long)m.size);
        file_meta_release(&m);
        http_reply_error(req, r);
        http_add_header(req, "Content-Range", cr);
        return 0;
    }
    struct MHD_Response *resp;
    if (m.size == 0 || !m.has_content) {
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    } else {
        struct read_ctx *ctx = calloc(1, sizeof(*ctx));
        if (!ctx) {
            file_meta_release(&m);
            return -ENOMEM;
        }
        ctx->store = req->app->store;
        r = store_content_open(req->app->store, m.content, &ctx->reader);
        if (r == 0 && start > 0)
            r = store_content_seek(req->app->store, ctx->reader, start);
        if (r < 0) {
            read_free(ctx);
            file_meta_release(&m);
            return r;
        }
        resp = MHD_create_response_from_callback((uint64_t)(end - start + 1), READ_BLOCK, read_cb,
                                                 ctx, read_free);
        if (!resp)
            read_free(ctx);
    }
    r = http_reply_response(req, ranged > 0 ? 206 : 200, resp);
    if (r == 0) {
        char *st = stat_header(&m);
        http_add_header(req, "Content-Type", content_type_for(m.path));
        http_add_header(req, "X-Content-Type-Options", "nosniff");
        http_add_header(req, "Content-Disposition", "attachment");
        http_add_header(req, "Accept-Ranges", "bytes");
        if (st)
            http_add_header(req, "X-FS-Stat", st);
        free(st);
        if (ranged > 0) {
            snprintf(cr, sizeof(cr), "bytes %lld-%lld/%lld", (long long)start, (long long)end,
                     (long long)m.size);
            http_add_header(req, "Content-Range", cr);
        }
    }
    file_meta_release(&m);
    return r;
}

/* ---- PUT (streamed) ---- */

struct put_state {
    char *path;                    /* normalised target path */
    struct content_writer *writer; /* open while the body streams */
    int64_t bytes;
    int64_t room;  /* bytes the sandbox's quota has left for this file when the upload began
                    * (the file it replaces counted as free), -1 = no quota */
    int64_t quota; /* SANDBOX_QUOTA_BYTES, for the error's detail */
};

/* 413 EQUOTA for an upload of `bytes` (at least) that cannot fit in `room`. */
static int put_over_quota(const struct put_state *st, int64_t bytes)
{
    int r = err_set(-ERR_QUOTA,
                    "the file (%lld bytes or more) does not fit in what the sandbox's quota has "
                    "left (%lld bytes); nothing was written",
                    (long long)bytes, (long long)st->room);
    err_detail("SANDBOX_QUOTA_BYTES=%lld", (long long)st->quota);
    return r;
}

/* What the quota leaves for a file written at path: the quota minus the sandbox's size, plus
 * the size of the file it replaces. -1 when there is no quota. */
static int64_t put_room(struct app *app, const struct sandbox_rec *rec, const char *path)
{
    int64_t quota = app->cfg->sandbox_quota_bytes;
    if (quota <= 0)
        return -1;
    int64_t room = quota - rec->size_bytes;
    struct file_meta m;
    char *real = NULL;
    if (sandbox_resolve(app->sandboxes, rec->id, path, true, &real, &m) == 0) {
        if (m.kind == FILE_KIND_FILE)
            room += m.size;
        file_meta_release(&m);
    }
    free(real);
    err_clear(); /* a missing file is not this request's error */
    return room > 0 ? room : 0;
}

int route_file_put_begin(struct request *req)
{
    struct put_state *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    req->route_state = st;
    int r = route_capture_path(req, &st->path);
    if (r < 0)
        return r;
    if (strcmp(st->path, "/") == 0)
        return err_set(-EISDIR, "cannot write the sandbox root directory");
    const char *reserved = reserved_root(st->path, false);
    if (reserved) /* refused before the upload, not after it */
        return reserved_error(st->path, reserved);
    struct sandbox_rec rec;
    r = sandbox_lookup(req->app->sandboxes, req->sandbox_id, req->tenant, req->sub, &rec);
    if (r < 0)
        return r;
    st->room = put_room(req->app, &rec, st->path);
    st->quota = req->app->cfg->sandbox_quota_bytes;
    sandbox_rec_release(&rec);
    int64_t cap = req->app->cfg->max_file_write_bytes;
    const char *cl = http_header(req, "Content-Length");
    if (cl) {
        char *e;
        errno = 0;
        unsigned long long n = strtoull(cl, &e, 10);
        if (errno || *e || n > (unsigned long long)cap) {
            err_set(-ERR_PAYLOAD_TOO_LARGE, "file is larger than %lld bytes", (long long)cap);
            err_detail("MAX_FILE_WRITE_BYTES=%lld", (long long)cap);
            return -ERR_PAYLOAD_TOO_LARGE;
        }
        /* refused before a byte of it is read or stored */
        if (st->room >= 0 && (int64_t)n > st->room)
            return put_over_quota(st, (int64_t)n);
    }
    return store_content_begin(req->app->store, &st->writer);
}

int route_file_put_data(struct request *req, const char *data, size_t len)
{
    struct put_state *st = req->route_state;
    st->bytes += (int64_t)len;
    int64_t cap = req->app->cfg->max_file_write_bytes;
    int r = 0;
    if (st->bytes > cap) {
        r = err_set(-ERR_PAYLOAD_TOO_LARGE, "file is larger than %lld bytes", (long long)cap);
        err_detail("MAX_FILE_WRITE_BYTES=%lld", (long long)cap);
    } else if (st->room >= 0 && st->bytes > st->room) { /* a body without Content-Length */
        r = put_over_quota(st, st->bytes);
    }
    if (r < 0) {
        /* the rest of the body is read and dropped: what was stored of it goes now */
        store_content_abort(req->app->store, st->writer);
        st->writer = NULL;
        return r;
    }
    return store_content_write(req->app->store, st->writer, data, len);
}

void route_file_put_done(struct request *req, bool completed UNUSED)
{
    struct put_state *st = req->route_state;
    if (!st)
        return;
    store_content_abort(req->app->store, st->writer);
    free(st->path);
    free(st);
    req->route_state = NULL;
}

/* Where a write of `path` lands: the resolved target (through symlinks) and the mode to keep.
 * -EISDIR for directories. */
static int write_target(struct app *app, const char *sandbox_id, const char *path, char **ret_path,
                        uint32_t *ret_mode)
{
    struct file_meta m;
    char *real = NULL;
    int r = sandbox_resolve(app->sandboxes, sandbox_id, path, true, &real, &m);
    if (r == 0) {
        bool dir = m.kind == FILE_KIND_DIR;
        *ret_mode = m.kind == FILE_KIND_FILE ? m.mode : 0644;
        file_meta_release(&m);
        if (dir) {
            free(real);
            return err_set(-EISDIR, "is a directory: %s", path);
        }
        *ret_path = real;
        return 0;
    }
    if (r == -ENOENT) {
        err_clear();
        *ret_mode = 0644;
        if (real) {
            *ret_path = real;
            return 0;
        }
        /* a parent is missing: create it (writes create parents) */
        *ret_path = strdup(path);
        return *ret_path ? 0 : -ENOMEM;
    }
    free(real);
    return r;
}

/* The end of a route that changes files, with the sandbox open (rec; NULL when opening it
 * failed): commits cs (NULL: nothing to change) when r is 0 (a failed commit discards what it
 * stored), or else, when the route `stored` contents for cs, gives them back. Releases cs and
 * rec; 204 on success. */
static int change_done(struct request *req, struct sandbox_rec *rec, struct changeset *cs,
                       bool stored, int r)
{
    if (cs && r == 0)
        r = sandbox_commit(req->app->sandboxes, rec, cs);
    else if (cs && stored)
        sandbox_discard(req->app->sandboxes, cs);
    if (cs)
        changeset_release(cs);
    sandbox_rec_release(rec);
    return r < 0 ? r : http_reply_empty(req, 204);
}

int route_file_put(struct request *req)
{
    struct put_state *st = req->route_state;
    struct file_meta m = {.kind = FILE_KIND_FILE, .mtime_ns = time_now_ns()};
    struct content_writer *w = st->writer;
    st->writer = NULL;
    int r = store_content_finish(req->app->store, w, m.content, &m.size);
    if (r < 0)
        return r;
    m.has_content = m.size > 0;
    struct sandbox_rec rec;
    bool opened = (r = route_open_sandbox(req, LOCK_EXCLUSIVE, &rec)) == 0;
    if (r == 0)
        r = write_target(req->app, req->sandbox_id, st->path, &m.path, &m.mode);
    struct changeset cs;
    changeset_init(&cs, "put");
    cs.create_parents = true;
    if (changeset_put(&cs, &m) < 0 || (m.path && route_commit_info_path(&cs, m.path) < 0))
        r = r < 0 ? r : -ENOMEM;
    free(m.path);
    /* on failure the upload is not going anywhere */
    return change_done(req, opened ? &rec : NULL, &cs, m.has_content, r);
}

/* ---- PATCH ---- */

static int read_content(struct app *app, const struct file_meta *m, size_t max, struct buf *out)
{
    if (!m->has_content || m->size == 0)
        return 0;
    if ((uint64_t)m->size > max) {
        err_set(-EFBIG, "file is too large to edit (%lld bytes, limit %zu)", (long long)m->size,
                max);
        return -EFBIG;
    }
    struct content_reader *rd = NULL;
    int r = store_content_open(app->store, m->content, &rd);
    if (r < 0)
        return r;
    r = buf_grow(out, (size_t)m->size);
    while (r == 0) {
        size_t got = 0;
        r = store_content_read(app->store, rd, out->data + out->len, out->cap - out->len, &got);
        if (r < 0 || got == 0)
            break;
        out->len += got;
        out->data[out->len] = '\0';
        if (out->len == out->cap)
            r = buf_grow(out, 64 * 1024);
    }
    store_content_close(app->store, rd);
    return r;
}

static size_t count_matches(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
    size_t n = 0;
    const char *p = hay, *end = hay + hlen;
    while (p < end) {
        const char *m = memmem(p, (size_t)(end - p), needle, nlen);
        if (!m)
            break;
        n++;
        p = m + nlen;
    }
    return n;
}

static int replace_all(const char *hay, size_t hlen, const char *old, size_t olen, const char *new,
                       size_t nlen, size_t limit, struct buf *out)
{
    const char *p = hay, *end = hay + hlen;
    size_t done = 0;
    while (p < end && done < limit) {
        const char *m = memmem(p, (size_t)(end - p), old, olen);
        if (!m)
            break;
        int r = buf_add(out, p, (size_t)(m - p));
        if (r == 0)
            r = buf_add(out, new, nlen);
        if (r < 0)
            return r;
        p = m + olen;
        done++;
    }
    return buf_add(out, p, (size_t)(end - p));
}

int route_file_patch(struct request *req)
{
    json_t *body = req->json;
    const char *olds = NULL, *news = NULL;
    size_t olen = 0, nlen = 0;
    bool all = false;
    int r;
    if (!body)
        return err_set(-ERR_INVALID_INPUT, "body must be {\"oldString\", \"newString\"}");
    if ((r = jsonv_string(body, "oldString", 0, &olds, &olen)) < 0)
        return r;
    if (r == 0 || olen == 0)
        return err_set(-ERR_INVALID_INPUT, "field 'oldString' is required and must not be empty");
    if ((r = jsonv_string(body, "newString", 0, &news, &nlen)) < 0)
        return r;
    if (r == 0)
        return err_set(-ERR_INVALID_INPUT, "field 'newString' is required");
    if ((r = jsonv_bool(body, "replaceAll", &all)) < 0)
        return r;
    if (olen == nlen && memcmp(olds, news, olen) == 0)
        return err_set(-ERR_INVALID_INPUT, "oldString and newString are equal: nothing to do");
    _cleanup_free_ char *path = NULL;
    if ((r = route_capture_path(req, &path)) < 0)
        return r;
    struct sandbox_rec rec;
    r = route_open_sandbox(req, LOCK_EXCLUSIVE, &rec);
    if (r < 0)
        return r;
    char *real = NULL;
    struct file_meta m;
    struct buf content = BUF_INIT(0), edited = BUF_INIT(0);
    r = sandbox_resolve(req->app->sandboxes, req->sandbox_id, path, true, &real, &m);
    if (r < 0)
        goto out_nometa;
    if (m.kind == FILE_KIND_DIR) {
        r = err_set(-EISDIR, "is a directory: %s", path);
        goto out;
    }
    r = read_content(req->app, &m, EDIT_MAX_BYTES, &content);
    if (r < 0)
        goto out;
    if (memchr(buf_cstr(&content), '\0', content.len) ||
        !utf8_valid(buf_cstr(&content), content.len)) {
        r = err_set(-ERR_EDIT_BINARY, "file is not UTF-8 text (or contains NUL bytes): %s", path);
        goto out;
    }
    size_t n = count_matches(buf_cstr(&content), content.len, olds, olen);
    if (n == 0) {
        r = err_set(-ERR_EDIT_NO_MATCH, "oldString was not found in %s", path);
        goto out;
    }
    if (n > 1 && !all) {
        r = err_set(-ERR_EDIT_NOT_UNIQUE, "oldString matches %zu times in %s", n, path);
        err_detail("%zu matches; set replaceAll to replace every one, or add context to "
                   "oldString",
                   n);
        goto out;
    }
    r = replace_all(buf_cstr(&content), content.len, olds, olen, news, nlen, all ? n : 1, &edited);
    if (r < 0)
        goto out;
    struct changeset cs;
    changeset_init(&cs, "edit");
    r = sandbox_put_bytes(req->app->sandboxes, &cs, real, buf_cstr(&edited), edited.len, m.mode);
    if (r == 0)
        r = route_commit_info_path(&cs, real);
    if (r == 0)
        r = sandbox_commit(req->app->sandboxes, &rec, &cs);
    changeset_release(&cs);
    if (r == 0) {
        json_t *o = json_object();
        r = jsontext_set_path(o, "path", real, strlen(real));
        json_object_set_new(o, "replacements", json_integer((json_int_t)(all ? n : 1)));
        json_object_set_new(o, "size", json_integer((json_int_t)edited.len));
        if (r == 0)
            r = http_reply_json(req, 200, o);
        else
            json_decref(o);
    }
out:
    file_meta_release(&m);
out_nometa:
    buf_release(&content);
    buf_release(&edited);
    free(real);
    sandbox_rec_release(&rec);
    return r;
}

/* ---- DELETE ---- */

static int parse_bool_query(struct request *req, const char *name, bool *ret)
{
    char *v = NULL;
    int r = http_query(req, name, &v);
    if (r < 0 || !v)
        return r;
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
        *ret = true;
    else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0 || !*v)
        *ret = false;
    else
        r = err_set(-ERR_INVALID_INPUT, "query parameter '%s' must be true or false", name);
    free(v);
    return r;
}

int route_file_delete(struct request *req)
{
    bool recursive = false;
    int r = parse_bool_query(req, "recursive", &recursive);
    if (r < 0)
        return r;
    _cleanup_free_ char *path = NULL;
    if ((r = route_capture_path(req, &path)) < 0)
        return r;
    if (strcmp(path, "/") == 0)
        return err_set(-EINVAL, "cannot delete the sandbox root; delete the sandbox instead");
    struct sandbox_rec rec;
    r = route_open_sandbox(req, LOCK_EXCLUSIVE, &rec);
    if (r < 0)
        return r;
    char *real = NULL;
    struct file_meta m;
    r = sandbox_resolve(req->app->sandboxes, req->sandbox_id, path, false, &real, &m);
    if (r == 0) {
        if (m.kind == FILE_KIND_DIR && !recursive) {
            r = store_has_children(req->app->store, req->sandbox_id, real);
            if (r > 0)
                r = err_set(-ENOTEMPTY, "directory not empty: %s (use recursive=true)", path);
        }
        file_meta_release(&m);
    }
    struct changeset cs;
    changeset_init(&cs, "delete");
    if (r >= 0)
        r = changeset_delete(&cs, real);
    if (r >= 0)
        r = route_commit_info_path(&cs, real);
    free(real);
    return change_done(req, &rec, &cs, false, r);
}

/* ---- mkdir ---- */

int route_mkdir(struct request *req)
{
    const char *p = NULL;
    size_t plen = 0;
    bool recursive = false;
    int r;
    if ((r = jsonv_string(req->json, "path", 0, &p, &plen)) < 0)
        return r;
    if (r == 0)
        return err_set(-ERR_INVALID_INPUT, "field 'path' is required");
    if ((r = jsonv_bool(req->json, "recursive", &recursive)) < 0)
        return r;
    _cleanup_free_ char *path = NULL;
    if ((r = route_write_path_arg("path", p, plen, true, &path)) < 0)
        return r;
    struct sandbox_rec rec;
    r = route_open_sandbox(req, LOCK_EXCLUSIVE, &rec);
    if (r < 0)
        return r;
    char *real = NULL;
    struct file_meta m;
    r = sandbox_resolve(req->app->sandboxes, req->sandbox_id, path, false, &real, &m);
    bool create = false;
    if (r == 0) {
        bool dir = m.kind == FILE_KIND_DIR;
        file_meta_release(&m);
        if (!(recursive && dir))
            r = err_set(-EEXIST, "already exists: %s", path);
    } else if (r == -ENOENT && (real || recursive)) {
        err_clear();
        r = 0;
        create = true;
    }
    struct changeset cs;
    if (create) { /* else it exists and was asked for recursively: nothing to do */
        changeset_init(&cs, "mkdir");
        cs.create_parents = recursive;
        struct file_meta d = {
            .path = real ? real : path,
            .kind = FILE_KIND_DIR,
            .mode = 0755,
            .mtime_ns = time_now_ns(),
        };
        r = changeset_put(&cs, &d);
    }
    free(real);
    return change_done(req, &rec, create ? &cs : NULL, false, r);
}

/* ---- writeFiles ---- */

int route_write_files(struct request *req)
{
    json_t *files = NULL;
    int r = jsonv_object(req->json, "files", &files);
    if (r < 0)
        return r;
    if (r == 0)
        return err_set(-ERR_INVALID_INPUT, "field 'files' is required: {\"/abs/path\": \"text\"}");
    if ((r = route_check_bulk_count(req, json_object_size(files))) < 0)
        return r;
    /* validate everything before touching anything */
    const char *key;
    json_t *val;
    int bad = 0;
    json_object_foreach(files, key, val)
    {
        char *p = NULL;
        if (!json_is_string(val)) {
            err_detail("%.200s: value must be a string", key);
            bad++;
        } else if (route_write_path_arg(key, key, strlen(key), false, &p) < 0) {
            err_detail("%.200s: %s", key, err_message() ? err_message() : "invalid path");
            bad++;
        } else if (strcmp(p, "/") == 0) {
            err_detail("/: is the root directory");
            bad++;
        }
        free(p);
    }
    if (bad)
        return err_set(-ERR_INVALID_INPUT, "%d invalid entr%s in 'files'", bad,
                       bad == 1 ? "y" : "ies");
    struct sandbox_rec rec;
    r = route_open_sandbox(req, LOCK_EXCLUSIVE, &rec);
    if (r < 0)
        return r;
    struct changeset cs;
    changeset_init(&cs, "writeFiles");
    cs.create_parents = true;
    json_object_foreach(files, key, val)
    {
        char *p = NULL, *target = NULL;
        uint32_t mode = 0644;
        r = route_path_arg(key, key, strlen(key), &p);
        if (r == 0)
            r = write_target(req->app, req->sandbox_id, p, &target, &mode);
        if (r == 0)
            r = sandbox_put_bytes(req->app->sandboxes, &cs, target, json_string_value(val),
                                  json_string_length(val), mode);
        free(p);
        free(target);
        if (r < 0)
            break;
    }
    return change_done(req, &rec, &cs, true, r);
}

/* ---- tree ---- */

struct tree_ctx {
    json_t *arr;
    int64_t max;
    int64_t n;
};

static int tree_one(const struct file_meta *m, void *userdata)
{
    struct tree_ctx *t = userdata;
    if (++t->n > t->max)
        return -ERR_TOO_MANY_ENTRIES;
    json_t *o = json_object();
    if (!o || jsontext_set_path(o, "path", m->path, strlen(m->path)) < 0) {
        json_decref(o);
        return -ENOMEM;
    }
    json_object_set_new(o, "kind", json_string(file_kind_name(m->kind)));
    json_object_set_new(o, "size", json_integer(m->size));
    json_object_set_new(o, "mtime", wire_mtime_json(m->mtime_ns));
    json_object_set_new(o, "mode", json_integer(m->mode & 07777));
    return json_array_append_new(t->arr, o) == 0 ? 0 : -ENOMEM;
}

int route_tree(struct request *req)
{
    char *prefix_arg = NULL, *depth_arg = NULL, *prefix = NULL;
    int64_t depth = 0, version;
    int r = version_arg(req, &version);
    if (r == 0)
        r = http_query(req, "prefix", &prefix_arg);
    if (r == 0)
        r = http_query(req, "depth", &depth_arg);
    if (r == 0 && depth_arg) {
        char *e;
        errno = 0;
        long long d = strtoll(depth_arg, &e, 10);
        if (errno || e == depth_arg || *e || d <= 0 || d > 4096)
            r = err_set(-ERR_INVALID_INPUT, "query parameter 'depth' must be a positive integer");
        depth = d;
    }
    if (r == 0)
        r = prefix_arg ? route_path_arg("prefix", prefix_arg, strlen(prefix_arg), &prefix)
                       : ((prefix = strdup("/")) ? 0 : -ENOMEM);
    free(prefix_arg);
    free(depth_arg);
    if (r < 0) {
        free(prefix);
        return r;
    }
    r = route_open_sandbox(req, LOCK_SHARED, NULL);
    if (r < 0) {
        free(prefix);
        return r;
    }
    struct tree_ctx t = {.arr = json_array(), .max = req->app->cfg->max_tree_entries};
    char *real = NULL;
    struct file_meta m;
    r = sandbox_resolve_at(req->app->sandboxes, req->sandbox_id, version, prefix, true, &real, &m);
    if (r == 0) {
        if (m.kind == FILE_KIND_DIR && version >= 0)
            r = store_list_at(req->app->store, req->sandbox_id, version, real, (int)depth, tree_one,
                              &t);
        else if (m.kind == FILE_KIND_DIR)
            r = store_list(req->app->store, req->sandbox_id, real, (int)depth, tree_one, &t);
        file_meta_release(&m);
    } else if (r == -ENOENT || r == -ENOTDIR) {
        r = 0; /* a missing prefix lists nothing */
    }
    free(real);
    free(prefix);
    if (r == -ERR_TOO_MANY_ENTRIES) {
        json_decref(t.arr);
        err_set(-ERR_TOO_MANY_ENTRIES,
                "more than %lld entries; narrow the prefix or pass a smaller depth",
                (long long)t.max);
        err_detail("MAX_TREE_ENTRIES=%lld", (long long)t.max);
        return -ERR_TOO_MANY_ENTRIES;
    }
    if (r < 0) {
        json_decref(t.arr);
        return r;
    }
    sandbox_touch(req->app->sandboxes, req->sandbox_id);
    return http_reply_json(req, 200, t.arr);
}

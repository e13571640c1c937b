/*
 * Archive routes (docs/API.md "Ingest and export"): POST ingest (multipart or raw archive body,
 * streamed into the store while it arrives), POST ingest-files (base64 JSON map), GET export
 * (tar.gz or tar, streamed from a consistent snapshot: the shared lock is held until the
 * response ends).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/jsonv.h"
#include "api/routes.h"
#include "archive/export.h"
#include "archive/ingest.h"
#include "sandbox/sandbox.h"
#include "util/compiler.h"
#include "util/err.h"
#include "util/home.h"
#include "util/jsontext.h"

#define DEFAULT_INGEST_BASE SANDBOX_HOME "/project"
#define DEFAULT_EXPORT_BASE SANDBOX_HOME
#define POST_BUFFER 65536
#define BASE_PATH_FIELD_MAX 4096

struct ingest_state {
    struct MHD_PostProcessor *pp; /* multipart bodies only */
    struct ingest *ing;           /* created at the first archive byte */
    char *base_path;              /* from ?basePath=, the multipart field, or the default */
    struct buf field;             /* the basePath field while it arrives */
    bool archive_seen;            /* the archive part has started */
    int error;                    /* first failure inside the post processor iterator */
};

static bool ctype_is(const char *ctype, const char *want)
{
    size_t n = strcspn(ctype, ";");
    while (n && (ctype[n - 1] == ' ' || ctype[n - 1] == '\t'))
        n--;
    return strlen(want) == n && strncasecmp(ctype, want, n) == 0;
}

static bool raw_archive_type(const char *ctype)
{
    static const char *types[] = {
        "application/x-tar", "application/gzip",         "application/x-gzip",
        "application/zip",   "application/octet-stream", "application/x-bzip2",
        "application/x-xz",  "application/zstd",         "application/x-compressed-tar"};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (ctype_is(ctype, types[i]))
            return true;
    return false;
}

static int start_ingest(struct request *req, struct ingest_state *st)
{
    const char *base = st->base_path ? st->base_path : DEFAULT_INGEST_BASE;
    char *norm = NULL;
    int r = route_write_path_arg("basePath", base, strlen(base), true, &norm);
    if (r < 0)
        return r;
    struct ingest_limits lim = {
        .max_files = req->app->cfg->max_ingest_files,
        .max_bytes = req->app->cfg->max_ingest_bytes,
        .max_path_bytes = req->app->cfg->max_ingest_path_bytes,
        .quota_bytes = req->app->cfg->sandbox_quota_bytes,
        .tmp_dir = req->app->cfg->data_dir,
    };
    r = ingest_new(req->app->store, norm, &lim, &st->ing);
    free(norm);
    return r;
}

static enum MHD_Result post_iter(void *cls, enum MHD_ValueKind kind UNUSED, const char *key,
                                 const char *filename UNUSED, const char *content_type UNUSED,
                                 const char *transfer_encoding UNUSED, const char *data,
                                 uint64_t off UNUSED, size_t size)
{
    struct request *req = cls;
    struct ingest_state *st = req->route_state;
    if (st->error)
        return MHD_NO;
    int r = 0;
    if (key && strcmp(key, "basePath") == 0) {
        if (st->archive_seen)
            r = err_set(-ERR_INVALID_INPUT, "the basePath field must come before the archive part");
        else if (size && buf_add(&st->field, data, size) < 0)
            r = err_set(-ERR_INVALID_INPUT, "basePath is too long");
    } else if (key && strcmp(key, "archive") == 0) {
        if (!st->archive_seen) {
            st->archive_seen = true;
            if (st->field.len) {
                free(st->base_path);
                st->base_path = strndup(buf_cstr(&st->field), st->field.len);
                if (!st->base_path)
                    r = -ENOMEM;
            }
            if (r == 0)
                r = start_ingest(req, st);
        }
        if (r == 0 && size)
            r = ingest_feed(st->ing, data, size);
    }
    /* other fields are ignored */
    if (r < 0) {
        st->error = r;
        return MHD_NO;
    }
    return MHD_YES;
}

int route_ingest_begin(struct request *req)
{
    struct ingest_state *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->field = (struct buf)BUF_INIT(BASE_PATH_FIELD_MAX);
    req->route_state = st;
    struct sandbox_rec rec;
    int r = sandbox_lookup(req->app->sandboxes, req->sandbox_id, req->tenant, req->sub, &rec);
    if (r < 0)
        return r;
    sandbox_rec_release(&rec);
    r = http_query(req, "basePath", &st->base_path);
    if (r < 0)
        return r;
    const char *ctype = http_header(req, "Content-Type");
    if (ctype && ctype_is(ctype, "multipart/form-data")) {
        st->pp = MHD_create_post_processor(req->conn, POST_BUFFER, post_iter, req);
        if (!st->pp)
            return err_set(-ERR_INVALID_INPUT, "malformed multipart/form-data header");
        return 0;
    }
    if (ctype && !raw_archive_type(ctype))
        return err_set(-ERR_UNSUPPORTED_MEDIA_TYPE,
                       "send multipart/form-data with an 'archive' part, or the raw archive as "
                       "application/x-tar, application/gzip, application/zip or "
                       "application/octet-stream");
    return start_ingest(req, st);
}

int route_ingest_data(struct request *req, const char *data, size_t len)
{
    struct ingest_state *st = req->route_state;
    if (!st->pp)
        return ingest_feed(st->ing, data, len);
    if (MHD_post_process(st->pp, data, len) != MHD_YES) {
        if (st->error)
            return st->error;
        return err_set(-ERR_INVALID_INPUT, "malformed multipart/form-data body");
    }
    return 0;
}

void route_ingest_done(struct request *req, bool completed UNUSED)
{
    struct ingest_state *st = req->route_state;
    if (!st)
        return;
    if (st->pp)
        MHD_destroy_post_processor(st->pp);
    ingest_abort(st->ing);
    buf_release(&st->field);
    free(st->base_path);
    free(st);
    req->route_state = NULL;
}

/* {"status":"ok","basePath","fileCount","bytes"}: what an ingest committed. */
static int reply_ingested(struct request *req, const char *base, const struct ingest_result *res)
{
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string("ok"));
    int r = jsontext_set_path(o, "basePath", base, strlen(base));
    json_object_set_new(o, "fileCount", json_integer(res->file_count));
    json_object_set_new(o, "bytes", json_integer(res->bytes));
    if (r < 0) {
        json_decref(o);
        return r;
    }
    return http_reply_json(req, 200, o);
}

int route_ingest(struct request *req)
{
    struct ingest_state *st = req->route_state;
    if (st->pp) {
        MHD_destroy_post_processor(st->pp);
        st->pp = NULL;
        if (st->error)
            return st->error;
        if (!st->ing)
            return err_set(-ERR_INVALID_INPUT, "multipart body has no 'archive' file part");
    }
    struct changeset cs;
    changeset_init(&cs, "ingest");
    cs.keep_dirs = true;
    struct ingest_result res = {0};
    struct ingest *ing = st->ing;
    st->ing = NULL;
    int r = ingest_finish(ing, &cs, &res);
    struct sandbox_rec rec;
    bool opened = false;
    if (r == 0) {
        r = route_open_sandbox(req, LOCK_EXCLUSIVE, &rec);
        opened = r == 0;
        if (r < 0)
            sandbox_discard(req->app->sandboxes, &cs); /* a failed commit discards for itself */
    }
    if (r == 0 && cs.n > 0)
        r = sandbox_commit(req->app->sandboxes, &rec, &cs);
    if (r == 0)
        r = reply_ingested(req, res.base_path ? res.base_path : "", &res);
    if (opened)
        sandbox_rec_release(&rec);
    ingest_result_release(&res);
    changeset_release(&cs);
    return r;
}

int route_ingest_files(struct request *req)
{
    json_t *files = NULL;
    const char *base = DEFAULT_INGEST_BASE;
    size_t blen = strlen(base);
    int r = jsonv_object(req->json, "files", &files);
    if (r == 0)
        r = err_set(-ERR_INVALID_INPUT, "field 'files' is required: {\"rel/path\": \"<base64>\"}");
    if (r < 0)
        return r;
    if ((r = jsonv_string(req->json, "basePath", 0, &base, &blen)) < 0)
        return r;
    char *norm = NULL;
    if ((r = route_write_path_arg("basePath", base, blen, true, &norm)) < 0)
        return r;
    struct sandbox_rec rec;
    r = route_open_sandbox(req, LOCK_EXCLUSIVE, &rec);
    if (r < 0) {
        free(norm);
        return r;
    }
    struct changeset cs;
    changeset_init(&cs, "ingest-files");
    cs.keep_dirs = true;
    struct ingest_result res = {0};
    r = ingest_files_build(req->app->store, norm, files, req->app->cfg->max_ingest_files,
                           req->app->cfg->max_ingest_bytes, &cs, &res);
    if (r == 0 && cs.n > 0)
        r = sandbox_commit(req->app->sandboxes, &rec, &cs);
    if (r == 0)
        r = reply_ingested(req, norm, &res);
    ingest_result_release(&res);
    changeset_release(&cs);
    sandbox_rec_release(&rec);
    free(norm);
    return r;
}

static ssize_t export_cb(void *cls, uint64_t pos UNUSED, char *buf, size_t max)
{
    size_t got = 0;
    if (export_read(cls, buf, max, &got) < 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    return got == 0 ? MHD_CONTENT_READER_END_OF_STREAM : (ssize_t)got;
}

static void export_free(void *cls)
{
    export_close(cls);
}

int route_export(struct request *req)
{
    char *base = NULL, *fmt = NULL, *norm = NULL;
    enum export_format format = EXPORT_TAR_GZ;
    int r = http_query(req, "basePath", &base);
    if (r == 0)
        r = http_query(req, "format", &fmt);
    if (r == 0 && fmt) {
        if (strcmp(fmt, "tar") == 0)
            format = EXPORT_TAR;
        else if (strcmp(fmt, "tar.gz") != 0 && strcmp(fmt, "tgz") != 0)
            r = err_set(-ERR_INVALID_INPUT, "query parameter 'format' must be tar.gz or tar");
    }
    if (r == 0) {
        const char *b = base && *base ? base : DEFAULT_EXPORT_BASE;
        r = route_path_arg("basePath", b, strlen(b), &norm);
    }
    free(base);
    free(fmt);
    if (r < 0)
        return r;
    r = route_open_sandbox(req, LOCK_SHARED, NULL);
    if (r < 0) {
        free(norm);
        return r;
    }
    struct export *exp = NULL;
    r = export_open(req->app->store, req->sandbox_id, norm, format, &exp);
    if (r == -ENOENT)
        r = err_set(-ENOENT, "basePath does not exist: %s", norm);
    free(norm);
    if (r < 0)
        return r;
    sandbox_touch(req->app->sandboxes, req->sandbox_id);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 256 * 1024,
                                                                  export_cb, exp, export_free);
    if (!resp) {
        export_close(exp);
        return -ENOMEM;
    }
    r = http_reply_response(req, 200, resp);
    if (r == 0) {
        bool gz = format == EXPORT_TAR_GZ;
        http_add_header(req, "Content-Type", gz ? "application/gzip" : "application/x-tar");
        http_add_header(req, "Content-Disposition",
                        gz ? "attachment; filename=\"export.tar.gz\""
                           : "attachment; filename=\"export.tar\"");
    }
    return r;
}

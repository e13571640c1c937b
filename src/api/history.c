/*
 * history.c — the routes of sandbox history: the commit list and one commit with its paths, the
 * diff of two versions (a path list, or a unified diff of one file), restore, fork and
 * snapshots. Reads of one version's files and tree are files.c's (?version=).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/http.h"
#include "api/jsonv.h"
#include "api/routes.h"
#include "api/wire.h"
#include "sandbox/history.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/jsontext.h"
#include "util/textdiff.h"
#include "util/timeutil.h"
#include "util/utf8.h"

#define COMMITS_PAGE_DEFAULT 100
#define COMMITS_PAGE_MAX 1000
#define SNAPSHOT_NAME_MAX 128
/* The largest file a unified diff reads (each side). */
#define DIFF_FILE_MAX ((int64_t)8 << 20)

/* The public kind of a commit (create, exec, files, ingest, restore, fork) from its change
 * set's kind. */
static const char *commit_kind(const char *kind)
{
    static const char *const same[] = {"create", "exec", "restore", "fork"};
    for (size_t i = 0; kind && i < sizeof(same) / sizeof(same[0]); i++)
        if (strcmp(kind, same[i]) == 0)
            return same[i];
    if (kind && strncmp(kind, "ingest", 6) == 0)
        return "ingest";
    return "files";
}

static const char *info_str(json_t *info, const char *key)
{
    return json_string_value(json_object_get(info, key));
}

/* What a commit did, in a line: the exec's first script line, the path written, what was
 * restored or forked. */
static json_t *commit_summary(const struct commit_rec *c, const char *kind, json_t *info)
{
    char line[256];
    if (strcmp(kind, "exec") == 0 && info_str(info, "script"))
        return json_string(info_str(info, "script"));
    if (strcmp(kind, "exec") == 0 && json_object_get(info, "batch"))
        snprintf(line, sizeof(line), "batch of %lld scripts",
                 (long long)json_integer_value(json_object_get(info, "batch")));
    else if (strcmp(kind, "restore") == 0 && info_str(info, "snapshot"))
        snprintf(line, sizeof(line), "restored snapshot %s (version %lld)",
                 info_str(info, "snapshot"),
                 (long long)json_integer_value(json_object_get(info, "restoredFrom")));
    else if (strcmp(kind, "restore") == 0)
        snprintf(line, sizeof(line), "restored version %lld",
                 (long long)json_integer_value(json_object_get(info, "restoredFrom")));
    else if (strcmp(kind, "fork") == 0)
        snprintf(line, sizeof(line), "forked from sandbox %s at version %lld",
                 info_str(info, "from") ? info_str(info, "from") : "?",
                 (long long)json_integer_value(json_object_get(info, "version")));
    else if (strcmp(kind, "files") == 0 && info_str(info, "path"))
        snprintf(line, sizeof(line), "%s %s", c->kind ? c->kind : "write", info_str(info, "path"));
    else if (strcmp(kind, "create") == 0)
        snprintf(line, sizeof(line), "sandbox created");
    else
        snprintf(line, sizeof(line), "%s", c->kind ? c->kind : kind);
    return json_string(line);
}

static json_t *commit_json(const struct commit_rec *c)
{
    json_t *info = c->info_json ? json_loads(c->info_json, 0, NULL) : NULL;
    const char *kind = commit_kind(c->kind);
    json_t *o = json_object();
    if (!o) {
        json_decref(info);
        return NULL;
    }
    json_object_set_new(o, "version", json_integer(c->version));
    bool root = c->version <= 1 || strcmp(kind, "fork") == 0;
    json_object_set_new(o, "parent", root ? json_null() : json_integer(c->version - 1));
    json_object_set_new(o, "at", wire_time_json(c->created_ms));
    json_object_set_new(o, "kind", json_string(kind));
    json_t *summary = commit_summary(c, kind, info);
    json_object_set_new(o, "summary", summary ? summary : json_string(kind));
    const char *exec_id = info_str(info, "execId");
    json_object_set_new(o, "execId", exec_id ? json_string(exec_id) : json_null());
    json_object_set_new(o, "changes",
                        json_pack("{sIsIsI}", "added", (json_int_t)c->added, "modified",
                                  (json_int_t)c->modified, "deleted", (json_int_t)c->deleted));
    json_object_set_new(o, "bytesAdded", json_integer(c->bytes_added));
    json_decref(info);
    return o;
}

struct commits_page {
    json_t *arr;
    int64_t last;
    int64_t n;
};

static int commits_one(const struct commit_rec *c, void *userdata)
{
    struct commits_page *p = userdata;
    json_t *o = commit_json(c);
    if (!o || json_array_append_new(p->arr, o) < 0)
        return -ENOMEM;
    p->last = c->version;
    p->n++;
    return 0;
}

int route_commits(struct request *req)
{
    int64_t limit = COMMITS_PAGE_DEFAULT, before = INT64_MAX;
    int r = route_query_int(req, "limit", 1, COMMITS_PAGE_MAX, &limit);
    if (r == 0)
        r = route_query_int(req, "before", 1, INT64_MAX, &before);
    if (r == 0)
        r = route_open_sandbox(req, LOCK_SHARED, NULL);
    if (r < 0)
        return r;
    struct commits_page p = {.arr = json_array()};
    if (!p.arr)
        return -ENOMEM;
    r = store_commits_list(req->app->store, req->sandbox_id, before, limit, commits_one, &p);
    if (r < 0) {
        json_decref(p.arr);
        return r;
    }
    json_t *o = json_object();
    json_object_set_new(o, "commits", p.arr);
    json_object_set_new(o, "next", p.n == limit && p.last > 1 ? json_integer(p.last) : json_null());
    return http_reply_json(req, 200, o);
}

/* ---- paths of a commit or a diff ---------------------------------------------------------- */

static const char *change_name(enum path_change_kind k)
{
    return k == PATH_ADDED ? "added" : k == PATH_MODIFIED ? "modified" : "deleted";
}

struct path_list {
    json_t *arr;
    int64_t n, max;
    const char *under; /* only this path and what lies below it (NULL: every path) */
};

/* path is `dir` or lies below it. */
static bool at_or_below(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    if (n == 1)
        return true; /* "/" */
    return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static int path_one(enum path_change_kind change, const struct file_meta *m, void *userdata)
{
    struct path_list *l = userdata;
    if (l->under && !at_or_below(m->path, l->under))
        return 0;
    if (++l->n > l->max)
        return -ERR_TOO_MANY_ENTRIES;
    json_t *o = json_object();
    if (!o || jsontext_set_path(o, "path", m->path, strlen(m->path)) < 0) {
        json_decref(o);
        return -ENOMEM;
    }
    json_object_set_new(o, "change", json_string(change_name(change)));
    json_object_set_new(o, "kind", json_string(file_kind_name(m->kind)));
    json_object_set_new(o, "size", json_integer(m->size));
    return json_array_append_new(l->arr, o) == 0 ? 0 : -ENOMEM;
}

static int too_many_paths(struct request *req)
{
    int64_t max = req->app->cfg->max_tree_entries;
    err_set(-ERR_TOO_MANY_ENTRIES, "more than %lld changed paths; diff narrower versions",
            (long long)max);
    err_detail("MAX_TREE_ENTRIES=%lld", (long long)max);
    return -ERR_TOO_MANY_ENTRIES;
}

/* The version named by the "*" capture. */
static int capture_version(struct request *req, int64_t *ret)
{
    const char *v = req->rest ? req->rest : "";
    while (*v == '/')
        v++;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < 0)
        return err_set(-ERR_INVALID_INPUT, "a version is a non-negative integer");
    *ret = n;
    return 0;
}

int route_commit(struct request *req)
{
    int64_t version = 0;
    int r = capture_version(req, &version);
    if (r == 0)
        r = route_open_sandbox(req, LOCK_SHARED, NULL);
    if (r < 0)
        return r;
    struct commit_rec c;
    r = store_commit_get(req->app->store, req->sandbox_id, version, &c);
    if (r < 0)
        return r;
    json_t *o = commit_json(&c);
    commit_rec_release(&c);
    struct path_list l = {.arr = json_array(), .max = req->app->cfg->max_tree_entries};
    if (!o || !l.arr) {
        json_decref(o);
        json_decref(l.arr);
        return -ENOMEM;
    }
    r = store_commit_paths(req->app->store, req->sandbox_id, version, path_one, &l);
    if (r < 0) {
        json_decref(o);
        json_decref(l.arr);
        return r == -ERR_TOO_MANY_ENTRIES && !err_message() ? too_many_paths(req) : r;
    }
    json_object_set_new(o, "paths", l.arr);
    return http_reply_json(req, 200, o);
}

/* ---- diff --------------------------------------------------------------------------------- */

/* The bytes of `path` at `version` into out ("" when it has no file there); *ret_is_file. */
static int read_at(struct request *req, int64_t version, const char *path, struct buf *out,
                   bool *ret_exists)
{
    struct file_meta m;
    *ret_exists = false;
    int r = store_stat_at(req->app->store, req->sandbox_id, version, path, &m);
    if (r == -ENOENT) {
        err_clear();
        return 0;
    }
    if (r < 0)
        return r;
    if (m.kind != FILE_KIND_FILE)
        r = err_set(-EISDIR, "not a regular file at version %" PRId64 ": %s", version, path);
    else if (m.size > DIFF_FILE_MAX)
        r = err_set(-EFBIG,
                    "a unified diff reads files up to %lld bytes; %s is %lld at version %lld",
                    (long long)DIFF_FILE_MAX, path, (long long)m.size, (long long)version);
    struct content_reader *rd = NULL;
    if (r >= 0 && m.has_content)
        r = store_content_open(req->app->store, m.content, &rd);
    while (r >= 0 && rd) {
        char block[65536];
        size_t got = 0;
        r = store_content_read(req->app->store, rd, block, sizeof(block), &got);
        if (r >= 0 && got == 0)
            break;
        if (r >= 0)
            r = buf_add(out, block, got);
    }
    store_content_close(req->app->store, rd);
    file_meta_release(&m);
    *ret_exists = r >= 0;
    return r;
}

static int diff_unified(struct request *req, int64_t from, int64_t to, const char *path)
{
    struct buf a = BUF_INIT(DIFF_FILE_MAX), b = BUF_INIT(DIFF_FILE_MAX), out = BUF_INIT(0);
    bool ea = false, eb = false;
    int r = read_at(req, from, path, &a, &ea);
    if (r >= 0)
        r = read_at(req, to, path, &b, &eb);
    if (r >= 0 && !ea && !eb)
        r = err_set(-ENOENT, "no file %s at version %" PRId64 " or %" PRId64, path, from, to);
    char la[64], lb[64];
    snprintf(la, sizeof(la), "a@%" PRId64, from);
    snprintf(lb, sizeof(lb), "b@%" PRId64, to);
    if (r >= 0 && (textdiff_is_binary(a.data, a.len) || textdiff_is_binary(b.data, b.len))) {
        char line[192];
        snprintf(line, sizeof(line), "Binary files %s and %s differ\n", la, lb);
        bool same = a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
        r = same ? 0 : buf_add(&out, line, strlen(line));
    } else if (r >= 0) {
        char *label_a = NULL, *label_b = NULL;
        if (asprintf(&label_a, "%s%s", ea ? "a" : "/dev/null", ea ? path : "") < 0)
            label_a = NULL;
        if (asprintf(&label_b, "%s%s", eb ? "b" : "/dev/null", eb ? path : "") < 0)
            label_b = NULL;
        r = label_a && label_b
                ? textdiff_unified(a.data, a.len, b.data, b.len, label_a, label_b, 3, &out)
                : -ENOMEM;
        free(label_a);
        free(label_b);
    }
    buf_release(&a);
    buf_release(&b);
    if (r < 0) {
        buf_release(&out);
        return r;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(out.len, out.data, MHD_RESPMEM_MUST_COPY);
    buf_release(&out);
    r = http_reply_response(req, 200, resp);
    if (r == 0)
        http_add_header(req, "Content-Type", "text/x-diff; charset=utf-8");
    return r;
}

int route_diff(struct request *req)
{
    int64_t from = -1, to = -1;
    char *path_arg = NULL, *format = NULL, *path = NULL;
    int r = route_query_int(req, "from", 0, INT64_MAX, &from);
    if (r == 0)
        r = route_query_int(req, "to", 0, INT64_MAX, &to);
    if (r == 0 && (from < 0 || to < 0))
        r = err_set(-ERR_INVALID_INPUT, "query parameters 'from' and 'to' (versions) are required");
    if (r == 0)
        r = http_query(req, "path", &path_arg);
    if (r == 0)
        r = http_query(req, "format", &format);
    if (r == 0 && format && strcmp(format, "unified") != 0)
        r = err_set(-ERR_INVALID_INPUT, "query parameter 'format' must be 'unified'");
    if (r == 0 && format && !path_arg)
        r = err_set(-ERR_INVALID_INPUT, "format=unified needs the file's 'path'");
    if (r == 0 && path_arg)
        r = route_path_arg("path", path_arg, strlen(path_arg), &path);
    free(path_arg);
    if (r == 0)
        r = route_open_sandbox(req, LOCK_SHARED, NULL);
    if (r == 0 && format) {
        r = diff_unified(req, from, to, path);
        free(format);
        free(path);
        return r;
    }
    free(format);
    if (r < 0) {
        free(path);
        return r;
    }
    struct path_list l = {
        .arr = json_array(), .max = req->app->cfg->max_tree_entries, .under = path};
    if (!l.arr) {
        free(path);
        return -ENOMEM;
    }
    r = sandbox_diff(req->app->sandboxes, req->sandbox_id, from, to, path_one, &l);
    free(path);
    if (r < 0) {
        json_decref(l.arr);
        return r == -ERR_TOO_MANY_ENTRIES && !err_message() ? too_many_paths(req) : r;
    }
    json_t *o =
        json_pack("{sIsIso}", "from", (json_int_t)from, "to", (json_int_t)to, "paths", l.arr);
    return o ? http_reply_json(req, 200, o) : -ENOMEM;
}

/* ---- restore, fork, snapshots ------------------------------------------------------------- */

/* The version a body names: "version", or "snapshot" (its version; *ret_snapshot borrows the
 * name), one of them at most; neither: dflt (-1: one is required). */
static int body_version(struct request *req, int64_t dflt, int64_t *ret, const char **ret_snapshot)
{
    json_t *body = req->json;
    int64_t version = -1;
    const char *snapshot = NULL;
    int r = jsonv_int(body, "version", 0, INT64_MAX, &version);
    if (r >= 0)
        r = jsonv_string(body, "snapshot", SNAPSHOT_NAME_MAX, &snapshot, NULL);
    if (r > 0)
        r = 0; /* the jsonv functions answer 1 for a key present */
    if (r == 0 && version >= 0 && snapshot)
        r = err_set(-ERR_INVALID_INPUT, "give either 'version' or 'snapshot', not both");
    if (r == 0 && version < 0 && !snapshot && dflt < 0)
        r = err_set(-ERR_INVALID_INPUT, "give the 'version' or the 'snapshot' to use");
    if (r < 0)
        return r;
    if (snapshot) {
        struct snapshot_rec s;
        r = store_snapshot_get(req->app->store, req->sandbox_id, snapshot, &s);
        if (r < 0)
            return r;
        version = s.version;
        snapshot_rec_release(&s);
    }
    *ret = version >= 0 ? version : dflt;
    if (ret_snapshot)
        *ret_snapshot = snapshot;
    return 0;
}

int route_restore(struct request *req)
{
    struct sandbox_rec rec;
    int r = route_open_sandbox(req, LOCK_EXCLUSIVE, &rec);
    if (r < 0)
        return r;
    int64_t version = -1;
    const char *snapshot = NULL;
    r = body_version(req, -1, &version, &snapshot);
    if (r == 0)
        r = sandbox_restore(req->app->sandboxes, &rec, version, snapshot);
    int64_t now = rec.version;
    sandbox_rec_release(&rec);
    if (r < 0)
        return r;
    json_t *o =
        json_pack("{sIsI}", "version", (json_int_t)now, "restoredFrom", (json_int_t)version);
    return o ? http_reply_json(req, 200, o) : -ENOMEM;
}

int route_fork(struct request *req)
{
    const char *name = NULL;
    int r = jsonv_string(req->json, "name", SANDBOX_NAME_MAX, &name, NULL);
    if (r < 0)
        return r;
    struct sandbox_rec src;
    r = route_open_sandbox(req, LOCK_SHARED, &src);
    if (r < 0)
        return r;
    int64_t version = src.version;
    r = body_version(req, src.version, &version, NULL);
    struct sandbox_rec created;
    if (r == 0)
        r = sandbox_fork(req->app->sandboxes, &src, version, name, &created);
    sandbox_rec_release(&src);
    if (r < 0)
        return r;
    json_t *o = wire_sandbox_json(&created);
    sandbox_rec_release(&created);
    return http_reply_json(req, 201, o);
}

static json_t *snapshot_json(const struct snapshot_rec *s)
{
    return json_pack("{sssIso}", "name", s->name, "version", (json_int_t)s->version, "at",
                     wire_time_json(s->created_ms));
}

int route_snapshot_create(struct request *req)
{
    const char *name = NULL;
    size_t name_len = 0;
    int r = jsonv_string(req->json, "name", SNAPSHOT_NAME_MAX, &name, &name_len);
    if (r > 0)
        r = 0; /* present */
    if (r == 0 && (!name || name_len == 0 || !utf8_valid(name, name_len)))
        r = err_set(-ERR_INVALID_INPUT, "'name' is required: 1 to %d bytes of UTF-8",
                    SNAPSHOT_NAME_MAX);
    if (r == 0 &&
        (strchr(name, '/') || strcspn(name, "\x01\x02\x03\x04\x05\x06\x07\x08\t\n\v\f\r"
                                            "\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17"
                                            "\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x7f") != name_len))
        r = err_set(-ERR_INVALID_INPUT, "a snapshot name holds no '/' and no control character");
    struct sandbox_rec rec;
    if (r == 0)
        r = route_open_sandbox(req, LOCK_EXCLUSIVE, &rec);
    if (r < 0)
        return r;
    int64_t version = rec.version;
    r = body_version(req, rec.version, &version, NULL);
    sandbox_rec_release(&rec);
    if (r < 0)
        return r;
    struct snapshot_rec s = {.name = (char *)name, .version = version, .created_ms = time_now_ms()};
    int64_t max = sandboxes_config(req->app->sandboxes)->max_snapshots;
    r = store_snapshot_create(req->app->store, req->sandbox_id, name, version, s.created_ms, max);
    if (r == -E2BIG) {
        r = err_set(-ERR_SNAPSHOT_LIMIT,
                    "this sandbox has %lld snapshots, the limit; delete one "
                    "to take another",
                    (long long)max);
        err_detail("MAX_SNAPSHOTS=%lld", (long long)max);
    }
    if (r < 0)
        return r;
    json_t *o = snapshot_json(&s);
    return o ? http_reply_json(req, 201, o) : -ENOMEM;
}

static int snapshot_one(const struct snapshot_rec *s, void *userdata)
{
    json_t *o = snapshot_json(s);
    return o && json_array_append_new(userdata, o) == 0 ? 0 : -ENOMEM;
}

int route_snapshot_list(struct request *req)
{
    int r = route_open_sandbox(req, LOCK_SHARED, NULL);
    if (r < 0)
        return r;
    json_t *arr = json_array();
    if (!arr)
        return -ENOMEM;
    r = store_snapshot_list(req->app->store, req->sandbox_id, snapshot_one, arr);
    if (r < 0) {
        json_decref(arr);
        return r;
    }
    return http_reply_json(req, 200, json_pack("{so}", "snapshots", arr));
}

int route_snapshot_delete(struct request *req)
{
    const char *name = req->rest ? req->rest : "";
    while (*name == '/')
        name++;
    int r = route_open_sandbox(req, LOCK_EXCLUSIVE, NULL);
    if (r < 0)
        return r;
    r = store_snapshot_delete(req->app->store, req->sandbox_id, name);
    if (r < 0)
        return r;
    return http_reply_empty(req, 204);
}

/* Sandboxes (docs/API.md "Sandboxes"): create, list, get, delete. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/jsonv.h"
#include "api/routes.h"
#include "store/reserved.h"
#include "sandbox/sandbox.h"
#include "util/err.h"
#include "util/path.h"
#include "util/rand.h"
#include "util/timeutil.h"

#define SANDBOX_NAME_MAX 255
#define SANDBOX_ENV_MAX 1000

/* Adds the "files" of a create request: absolute path → UTF-8 text. */
static int add_initial_files(struct request *req, json_t *files, struct changeset *cs)
{
    int r = route_check_bulk_count(req, json_object_size(files));
    if (r < 0)
        return r;
    const char *key;
    json_t *val;
    json_object_foreach(files, key, val)
    {
        if (!json_is_string(val))
            return err_set(-ERR_INVALID_INPUT, "files['%.200s'] must be a string", key);
        char *path = NULL;
        r = route_write_path_arg("files", key, strlen(key), false, &path);
        if (r < 0)
            return r;
        if (strcmp(path, "/") == 0 || strcmp(path, "/home") == 0 ||
            strcmp(path, "/home/user") == 0 || strcmp(path, "/tmp") == 0) {
            free(path);
            return err_set(-EISDIR, "files['%.200s'] names a directory", key);
        }
        r = sandbox_put_bytes(req->app, cs, path, json_string_value(val), json_string_length(val),
                              0644);
        free(path);
        if (r < 0)
            return r;
    }
    return 0;
}

int route_sandbox_create(struct request *req)
{
    json_t *body = req->json;
    const char *name = NULL;
    json_t *env = NULL, *files = NULL;
    bool python = false, javascript = false, network = false;
    int r;
    if ((r = jsonv_string(body, "name", SANDBOX_NAME_MAX, &name, NULL)) < 0 ||
        (r = jsonv_env(body, "env", SANDBOX_ENV_MAX, &env)) < 0 ||
        (r = jsonv_object(body, "files", &files)) < 0 ||
        (r = jsonv_bool(body, "python", &python)) < 0 ||
        (r = jsonv_bool(body, "javascript", &javascript)) < 0 ||
        (r = jsonv_bool(body, "network", &network)) < 0)
        return r;

    struct sandbox_rec rec;
    memset(&rec, 0, sizeof(rec));
    struct changeset cs;
    changeset_init(&cs, "create");
    cs.create_parents = true;
    r = rand_uuid(rec.id);
    if (r == 0)
        r = sandbox_add_skeleton(&cs);
    if (r == 0 && files)
        r = add_initial_files(req, files, &cs);
    if (r == 0)
        r = reserved_check_changeset(&cs);
    if (r < 0) {
        sandbox_discard(req->app, &cs);
        changeset_release(&cs);
        return r;
    }
    rec.tenant = req->tenant;
    rec.sub = req->sub;
    rec.name = (char *)name;
    rec.env_json = env ? json_dumps(env, JSON_COMPACT) : strdup("{}");
    rec.python = python;
    rec.javascript = javascript;
    rec.network = network;
    rec.cwd = "/home/user";
    rec.created_ms = time_now_ms();
    struct commit_opts opts = {
        .expect_version = -1,
        .quota_bytes = req->app->cfg->sandbox_quota_bytes,
        .now_ms = rec.created_ms,
        .max_owner_sandboxes = req->app->cfg->max_sandboxes_per_owner,
    };
    r = rec.env_json ? store_sandbox_create(req->app->store, &rec, &cs, &opts) : -ENOMEM;
    free(rec.env_json);
    if (r < 0)
        sandbox_discard(req->app, &cs);
    changeset_release(&cs);
    if (r == -ERR_QUOTA)
        err_detail("SANDBOX_QUOTA_BYTES=%lld", (long long)req->app->cfg->sandbox_quota_bytes);
    if (r == -ERR_SANDBOX_LIMIT)
        err_detail("MAX_SANDBOXES_PER_OWNER=%lld",
                   (long long)req->app->cfg->max_sandboxes_per_owner);
    if (r < 0)
        return r;
    struct sandbox_rec created;
    r = sandbox_lookup(req->app, rec.id, NULL, NULL, &created);
    if (r < 0)
        return r;
    json_t *o = sandbox_rec_json(&created);
    sandbox_rec_release(&created);
    return http_reply_json(req, 201, o);
}

static int list_one(const struct sandbox_rec *rec, void *userdata)
{
    return json_array_append_new(userdata, sandbox_rec_json(rec)) == 0 ? 0 : -ENOMEM;
}

int route_sandbox_list(struct request *req)
{
    json_t *arr = json_array();
    int r = store_sandbox_list(req->app->store, req->tenant, req->sub, list_one, arr);
    if (r < 0) {
        json_decref(arr);
        return r;
    }
    json_t *o = json_object();
    json_object_set_new(o, "sandboxes", arr);
    return http_reply_json(req, 200, o);
}

int route_sandbox_get(struct request *req)
{
    struct sandbox_rec rec;
    int r = sandbox_lookup(req->app, req->sandbox_id, req->tenant, req->sub, &rec);
    if (r < 0)
        return r;
    json_t *o = sandbox_rec_json(&rec);
    sandbox_rec_release(&rec);
    return http_reply_json(req, 200, o);
}

int route_sandbox_delete(struct request *req)
{
    struct sandbox_rec rec;
    int r = route_open_sandbox(req, LOCK_EXCLUSIVE, &rec);
    if (r < 0)
        return r;
    sandbox_rec_release(&rec);
    r = store_sandbox_delete(req->app->store, req->sandbox_id, req->tenant, req->sub);
    if (r == -ENOENT)
        return err_set(-ERR_SANDBOX_NOT_FOUND, "sandbox not found: %s", req->sandbox_id);
    if (r < 0)
        return r;
    if (req->app->after_delete)
        req->app->after_delete(req->app, req->sandbox_id);
    return http_reply_empty(req, 204);
}

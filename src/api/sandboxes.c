/* Sandboxes (docs/API.md "Sandboxes"): create, list, get, delete. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/jsonv.h"
#include "api/routes.h"
#include "api/wire.h"
#include "egress/policy.h"
#include "sandbox/sandbox.h"
#include "util/err.h"
#include "util/home.h"
#include "util/path.h"
#include "util/rand.h"
#include "util/timeutil.h"

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
            strcmp(path, SANDBOX_HOME) == 0 || strcmp(path, "/tmp") == 0) {
            free(path);
            return err_set(-EISDIR, "files['%.200s'] names a directory", key);
        }
        r = sandbox_put_bytes(req->app->sandboxes, cs, path, json_string_value(val),
                              json_string_length(val), 0644);
        free(path);
        if (r < 0)
            return r;
    }
    return 0;
}

/* The body's "network" (absent: off): whether egress is on, and the sandbox's own policy. */
static int network_arg(json_t *body, bool *ret_on, char **ret_policy)
{
    json_t *v = json_object_get(body, "network");
    *ret_on = false;
    *ret_policy = NULL;
    if (!v || json_is_null(v))
        return 0;
    return egress_network_parse(v, ret_on, ret_policy);
}

int route_sandbox_create(struct request *req)
{
    json_t *body = req->json;
    const char *name = NULL;
    json_t *env = NULL, *files = NULL;
    bool python = false, javascript = false, network = false;
    char *network_policy = NULL;
    int r;
    if ((r = jsonv_string(body, "name", SANDBOX_NAME_MAX, &name, NULL)) < 0 ||
        (r = jsonv_env(body, "env", SANDBOX_ENV_MAX, &env)) < 0 ||
        (r = jsonv_object(body, "files", &files)) < 0 ||
        (r = jsonv_bool(body, "python", &python)) < 0 ||
        (r = jsonv_bool(body, "javascript", &javascript)) < 0 ||
        (r = network_arg(body, &network, &network_policy)) < 0)
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
    if (r < 0) {
        sandbox_discard(req->app->sandboxes, &cs);
        changeset_release(&cs);
        free(network_policy);
        return r;
    }
    rec.tenant = req->tenant;
    rec.sub = req->sub;
    rec.name = (char *)name;
    rec.env_json = env ? json_dumps(env, JSON_COMPACT) : strdup("{}");
    rec.python = python;
    rec.javascript = javascript;
    rec.network = network;
    rec.network_policy = network_policy;
    rec.cwd = SANDBOX_HOME;
    rec.created_ms = time_now_ms();
    struct sandbox_rec created;
    if (rec.env_json) {
        r = sandbox_create(req->app->sandboxes, &rec, &cs, &created);
    } else {
        sandbox_discard(req->app->sandboxes, &cs);
        r = -ENOMEM;
    }
    free(rec.env_json);
    free(network_policy);
    changeset_release(&cs);
    if (r < 0)
        return r;
    json_t *o = wire_sandbox_json(&created);
    sandbox_rec_release(&created);
    return http_reply_json(req, 201, o);
}

static int list_one(const struct sandbox_rec *rec, void *userdata)
{
    return json_array_append_new(userdata, wire_sandbox_json(rec)) == 0 ? 0 : -ENOMEM;
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
    int r = sandbox_lookup(req->app->sandboxes, req->sandbox_id, req->tenant, req->sub, &rec);
    if (r < 0)
        return r;
    json_t *o = wire_sandbox_json(&rec);
    sandbox_rec_release(&rec);
    return http_reply_json(req, 200, o);
}

/* PATCH: what may change of a sandbox after its creation (its network, for its next exec).
 * No lock: an exec running now keeps the policy it started with. */
int route_sandbox_patch(struct request *req)
{
    json_t *body = req->json;
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "network") != 0)
            return err_set(-ERR_INVALID_INPUT,
                           "\"%.100s\" cannot be changed; a PATCH of a sandbox changes \"network\"",
                           key);
    }
    if (!json_object_get(body, "network"))
        return err_set(-ERR_INVALID_INPUT, "the body names nothing to change: give \"network\"");
    bool on;
    char *policy = NULL;
    int r = network_arg(body, &on, &policy);
    if (r == 0)
        r = sandbox_set_network(req->app->sandboxes, req->sandbox_id, req->tenant, req->sub, on,
                                policy);
    free(policy);
    if (r < 0)
        return r;
    struct sandbox_rec rec;
    if ((r = sandbox_lookup(req->app->sandboxes, req->sandbox_id, req->tenant, req->sub, &rec)) < 0)
        return r;
    json_t *o = wire_sandbox_json(&rec);
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
    r = sandbox_delete(req->app->sandboxes, req->sandbox_id, req->tenant, req->sub);
    if (r < 0)
        return r;
    return http_reply_empty(req, 204);
}

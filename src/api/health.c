#include <jansson.h>

#include "api/routes.h"
#include "exec/engine.h"
#include "store/store.h"

int route_healthz(struct request *req)
{
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string("ok"));
    return http_reply_json(req, 200, o);
}

int route_readyz(struct request *req)
{
    struct app *app = req->app;
    json_t *checks = json_object();
    bool ok = true;
    int r = store_check(app->store);
    json_object_set_new(checks, "store", json_string(r == 0 ? "ok" : "unavailable"));
    ok = ok && r == 0;
    json_t *exec = exec_engine_status_json(app->exec);
    bool exec_ok = json_is_true(json_object_get(exec, "ok"));
    json_object_set_new(checks, "exec", exec);
    ok = ok && exec_ok;
    if (atomic_load(&app->shutting_down)) {
        json_object_set_new(checks, "shutdown", json_string("in progress"));
        ok = false;
    }
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string(ok ? "ok" : "degraded"));
    json_object_set_new(o, "checks", checks);
    /* The store's caches grow with the database up to their bound: an operator (and the scale
     * benchmark) can tell them apart from memory that would grow per sandbox. */
    json_t *mem = json_object();
    json_object_set_new(mem, "storeBytes", json_integer(store_memory_bytes(app->store)));
    json_object_set_new(o, "memory", mem);
    return http_reply_json(req, ok ? 200 : 503, o);
}

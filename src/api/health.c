/*
 * Health (docs/API.md "Health"): /healthz and /readyz for anyone (liveness, and readiness with
 * the reason of a failing check, never a counter or a host path), GET /v1/status for the
 * operator (X-Admin-Secret): the same checks plus the exec engine's counters and limits, the
 * store's memory and the token settings.
 */
#include <jansson.h>

#include "api/routes.h"
#include "egress/proxy.h"
#include "api/wire.h"
#include "auth/jwt.h"
#include "exec/engine.h"
#include "store/store.h"

int route_healthz(struct request *req)
{
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string("ok"));
    return http_reply_json(req, 200, o);
}

/* {"status": "ok" | "degraded", "checks": {"store", "exec", "shutdown"?}}: each check "ok" or
 * why not. *ret_ok tells which. */
static json_t *readiness(struct app *app, bool *ret_ok)
{
    json_t *checks = json_object();
    bool ok = store_check(app->store) == 0;
    json_object_set_new(checks, "store", json_string(ok ? "ok" : "unavailable"));
    char why[512];
    bool exec_ok = exec_engine_ready_why(app->exec, why, sizeof(why));
    json_object_set_new(checks, "exec", json_string(exec_ok ? "ok" : why));
    ok = ok && exec_ok;
    if (atomic_load(&app->shutting_down)) {
        json_object_set_new(checks, "shutdown", json_string("in progress"));
        ok = false;
    }
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string(ok ? "ok" : "degraded"));
    json_object_set_new(o, "checks", checks);
    /* Not a readiness check: without the warm interpreter py-exec still works, cold. */
    json_object_set_new(o, "pyExec", exec_engine_py_exec_json(app->exec, false));
    *ret_ok = ok;
    return o;
}

int route_readyz(struct request *req)
{
    bool ok;
    json_t *o = readiness(req->app, &ok);
    return http_reply_json(req, ok ? 200 : 503, o);
}

static json_t *expires_json(int64_t seconds)
{
    char s[32];
    jwt_format_expires(seconds, s, sizeof(s));
    return json_string(s);
}

/* The egress proxy: sessions (execs with egress on running now), connections open, and those
 * served and refused since start, with the limits. */
static json_t *egress_status_json(const struct app *app)
{
    const struct config *c = app->cfg;
    json_t *o = json_object();
    struct egress_stats st = {0};
    if (app->egress)
        egress_stats(app->egress, &st);
    json_object_set_new(o, "sessions", json_integer(st.sessions));
    json_object_set_new(o, "open", json_integer(st.open));
    json_object_set_new(o, "served", json_integer(st.served));
    json_object_set_new(o, "denied", json_integer(st.denied));
    json_t *lim = json_object();
    json_object_set_new(lim, "connectionsPerExec", json_integer(c->egress_connections_per_exec));
    json_object_set_new(lim, "openPerExec", json_integer(c->egress_open_per_exec));
    json_object_set_new(lim, "bytesPerExec", json_integer(c->egress_bytes_per_exec));
    json_object_set_new(lim, "idleTimeoutMs", json_integer(c->egress_idle_timeout_ms));
    json_object_set_new(lim, "connectTimeoutMs", json_integer(c->egress_connect_timeout_ms));
    json_object_set_new(lim, "maxOpen", json_integer(c->egress_max_open));
    json_object_set_new(o, "limits", lim);
    return o;
}

int route_status(struct request *req)
{
    int r = route_admin_gate(req);
    if (r != 0)
        return r < 0 ? r : 0;
    struct app *app = req->app;
    const struct config *c = app->cfg;
    bool ok;
    json_t *o = readiness(app, &ok);
    json_object_set_new(o, "exec", exec_engine_status_json(app->exec));
    /* The store's caches grow with the database up to their bound: an operator (and the scale
     * benchmark) can tell them apart from memory that would grow per sandbox. */
    json_t *mem = json_object();
    json_object_set_new(mem, "storeBytes", json_integer(store_memory_bytes(app->store)));
    json_object_set_new(o, "memory", mem);
    json_t *auth = json_object();
    json_object_set_new(auth, "tokenDefaultExpires", expires_json(c->token_default_expires_s));
    json_object_set_new(auth, "tokenMaxExpires", expires_json(c->token_max_expires_s));
    json_object_set_new(auth, "tokensNotBefore",
                        c->tokens_not_before_s > 0 ? wire_time_json(c->tokens_not_before_s * 1000)
                                                   : json_null());
    json_object_set_new(auth, "previousSecret", json_boolean(app->auth_secret_previous != NULL));
    json_object_set_new(auth, "previousSecretUses",
                        json_integer((json_int_t)atomic_load(&app->previous_secret_uses)));
    json_object_set_new(o, "auth", auth);
    json_object_set_new(o, "egress", egress_status_json(app));
    return http_reply_json(req, 200, o);
}

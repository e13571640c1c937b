/* POST /v1/sandboxes/{id}/exec-sync-batch (docs/API.md "Exec"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/exec.h"
#include "api/idem.h"
#include "api/jsonv.h"
#include "api/routes.h"
#include "sandbox/sandbox.h"
#include "util/err.h"
#include "util/jsontext.h"

#define BATCH_MAX_SCRIPTS 50
#define BATCH_TIMEOUT_DEFAULT 30000
#define BATCH_TIMEOUT_MAX 300000

static int parse_scripts(json_t *arr, struct batch_script **ret, size_t *ret_n)
{
    size_t n = json_array_size(arr);
    if (n < 1 || n > BATCH_MAX_SCRIPTS)
        return err_set(-ERR_INVALID_INPUT, "'scripts' must hold 1 to %d scripts (got %zu)",
                       BATCH_MAX_SCRIPTS, n);
    struct batch_script *v = calloc(n, sizeof(*v));
    if (!v)
        return -ENOMEM;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(arr, i);
        json_t *id = json_is_object(it) ? json_object_get(it, "id") : NULL;
        json_t *sc = json_is_object(it) ? json_object_get(it, "script") : NULL;
        if (!json_is_object(it) || !json_is_string(id) || !json_is_string(sc)) {
            err_detail("scripts[%zu]: must be {\"id\": string, \"script\": string}", i);
            bad++;
            continue;
        }
        if (memchr(json_string_value(sc), '\0', json_string_length(sc))) {
            err_detail("scripts[%zu]: script must not contain NUL bytes", i);
            bad++;
            continue;
        }
        v[i].id = json_string_value(id);
        v[i].script = json_string_value(sc);
        v[i].script_len = json_string_length(sc);
    }
    if (bad) {
        free(v);
        return err_set(-ERR_INVALID_INPUT, "%d invalid entr%s in 'scripts'", bad,
                       bad == 1 ? "y" : "ies");
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

/* Appends one script's result to the reply, taking its output buffers. */
static int add_result(struct outreply *rep, const struct batch_script *s, struct batch_result *r)
{
    json_t *o = json_object();
    if (!o)
        return -ENOMEM;
    json_object_set_new(o, "id", json_string(s->id));
    json_object_set_new(o, "exitCode", json_integer(r->exit_code));
    json_object_set_new(o, "durationMs", json_integer(r->duration_ms));
    if (r->error)
        json_object_set_new(o, "error", jsontext(r->error));
    return exec_reply_result(rep, o, &r->output);
}

/* The reply: {"results": [...]}, the output escaped only as it is sent. */
static int reply_results(struct request *req, const char *exec_id,
                         const struct batch_script *scripts, struct batch_result *res, size_t n)
{
    struct outreply *rep = outreply_new(&req->app->reply_memory);
    char head[EXEC_ID_LEN + 32];
    int len = snprintf(head, sizeof(head), "{\"execId\":\"%s\",\"results\":[", exec_id);
    int r = rep ? outreply_text(rep, head, (size_t)len) : -ENOMEM;
    for (size_t i = 0; i < n && r == 0; i++) {
        if (i)
            r = outreply_text(rep, ",", 1);
        if (r == 0)
            r = add_result(rep, &scripts[i], &res[i]);
    }
    if (r == 0)
        r = outreply_text(rep, "]}", 2);
    if (r < 0) {
        outreply_free(rep);
        return r;
    }
    r = outreply_send(req, 200, rep);
    if (r == 0)
        http_add_header(req, "X-Exec-Id", exec_id);
    return r;
}

int route_exec_batch(struct request *req)
{
    if (!req->app->exec)
        return exec_engine_unavailable();
    json_t *body = req->json; /* borrowed */
    if (!body)
        return err_set(-ERR_INVALID_INPUT, "request body must be {\"scripts\": [...]}");
    char exec_id[EXEC_ID_LEN + 1] = "";
    struct batch_params p = {.timeout_ms = BATCH_TIMEOUT_DEFAULT,
                             .cancel_fd = -1,
                             .journal_kind = "batch",
                             .keepalive = idem_keepalive,
                             .keepalive_arg = req,
                             .ret_exec_id = exec_id};
    struct batch_script *scripts = NULL;
    json_t *arr = NULL;
    int r =
        json_is_object(body) ? 0 : err_set(-ERR_INVALID_INPUT, "request body must be an object");
    if (r == 0 && (r = jsonv_array(body, "scripts", &arr)) == 0)
        r = err_set(-ERR_INVALID_INPUT, "field 'scripts' is required: [{\"id\", \"script\"}]");
    if (r > 0)
        r = parse_scripts(arr, &scripts, &p.n);
    if (r == 0) {
        /* the total budget is clamped, not refused (API.md) */
        json_t *t = json_object_get(body, "timeoutMs");
        if (t && !json_is_null(t)) {
            if (!json_is_integer(t) || json_integer_value(t) < 1)
                r = err_set(-ERR_INVALID_INPUT, "field 'timeoutMs' must be a positive integer");
            else
                p.timeout_ms = json_integer_value(t) > BATCH_TIMEOUT_MAX ? BATCH_TIMEOUT_MAX
                                                                         : json_integer_value(t);
        }
    }
    if (r == 0 && (r = jsonv_int(body, "perScriptTimeoutMs", 1, BATCH_TIMEOUT_MAX,
                                 &p.per_script_timeout_ms)) > 0)
        r = 0;
    if (r == 0 && (r = jsonv_bool(body, "readOnly", &p.read_only)) > 0)
        r = 0;
    if (r == 0 && (r = jsonv_bool(body, "stopOnError", &p.stop_on_error)) > 0)
        r = 0;
    if (r == 0)
        r = exec_reply_admit(req);
    /* owned by the request from here on (route_exec_rest_done): a write batch's checkout
     * apply and upper removal run after the reply, with the record and the lock kept */
    struct exec_route_rest *state = NULL;
    if (r == 0 && !(state = calloc(1, sizeof(*state))))
        r = -ENOMEM;
    if (r == 0 && (r = exec_open_sandbox(req, p.read_only, &state->rec)) == 0)
        req->route_state = state;
    else {
        free(state);
        state = NULL;
    }
    struct batch_result *res = NULL;
    if (r == 0) {
        res = calloc(p.n, sizeof(*res));
        if (!res)
            r = -ENOMEM;
    }
    if (r == 0) {
        p.scripts = scripts;
        p.cancel_fd = http_client_fd(req);
        r = exec_engine_run_batch(req->app->exec, &state->rec, &p, res, &state->rest);
        if (exec_id[0])
            idem_exec_id(req, exec_id);
    }
    if (r == 0)
        r = reply_results(req, exec_id, scripts, res, p.n);
    if (res)
        batch_results_release(res, p.n);
    free(res);
    free(scripts);
    return r;
}

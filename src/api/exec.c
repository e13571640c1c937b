/* Exec routes (docs/API.md "Exec"): exec-sync (this file), SSE exec (exec_stream.c) and batches
 * (exec_batch.c); this file also holds what they share (api/exec.h). */
#include "api/exec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/idem.h"
#include "api/jsonv.h"
#include "api/metrics.h"
#include "api/routes.h"
#include "exec/engine.h"
#include "sandbox/sandbox.h"
#include "util/err.h"
#include "util/timeutil.h"

#define EXEC_TIMEOUT_DEFAULT 30000
#define EXEC_TIMEOUT_MAX 300000
#define EXEC_ENV_MAX 1000

void exec_request_release(struct exec_request *x)
{
    json_decref(x->owned);
    free(x->cwd);
    memset(x, 0, sizeof(*x));
}

static bool is_text_script(const char *ctype)
{
    if (!ctype)
        return false;
    size_t n = strcspn(ctype, ";");
    return (n == 10 && strncasecmp(ctype, "text/plain", n) == 0) ||
           (n == 18 && strncasecmp(ctype, "text/x-shellscript", n) == 0);
}

static bool is_json(const char *ctype)
{
    if (!ctype || !*ctype)
        return true; /* clients that send JSON without saying so */
    size_t n = strcspn(ctype, ";");
    return n == 16 && strncasecmp(ctype, "application/json", n) == 0;
}

int exec_parse_timeout(json_t *body, struct request *req, int64_t *ret)
{
    *ret = EXEC_TIMEOUT_DEFAULT;
    if (body)
        return jsonv_int(body, "timeoutMs", 1, EXEC_TIMEOUT_MAX, ret) < 0 ? -ERR_INVALID_INPUT : 0;
    char *q = NULL;
    int r = http_query(req, "timeoutMs", &q);
    if (r < 0 || !q)
        return r;
    char *e;
    errno = 0;
    long long v = strtoll(q, &e, 10);
    if (errno || e == q || *e || v < 1 || v > EXEC_TIMEOUT_MAX)
        r = err_set(-ERR_INVALID_INPUT,
                    "query parameter 'timeoutMs' must be an integer between "
                    "1 and %d",
                    EXEC_TIMEOUT_MAX);
    else
        *ret = v;
    free(q);
    return r;
}

int exec_request_parse(struct request *req, struct exec_request *x)
{
    memset(x, 0, sizeof(*x));
    const char *ctype = http_header(req, "Content-Type");
    int r;
    if (is_text_script(ctype)) {
        x->params.script = buf_cstr(&req->body);
        x->params.script_len = req->body.len;
        r = exec_parse_timeout(NULL, req, &x->params.timeout_ms);
        if (r < 0)
            return r;
        goto check;
    }
    if (!is_json(ctype))
        return err_set(-ERR_UNSUPPORTED_MEDIA_TYPE,
                       "Content-Type must be application/json, text/plain or text/x-shellscript");
    if ((r = jsonv_parse_object(buf_cstr(&req->body), req->body.len, &x->owned)) < 0)
        return r;
    json_t *b = x->owned;
    const char *script = NULL, *cwd = NULL, *stdin_data = NULL;
    size_t script_len = 0, cwd_len = 0, stdin_len = 0;
    if ((r = jsonv_string(b, "script", 0, &script, &script_len)) < 0)
        return r;
    if (r == 0)
        return err_set(-ERR_INVALID_INPUT, "field 'script' is required");
    if ((r = jsonv_string(b, "cwd", 0, &cwd, &cwd_len)) < 0)
        return r;
    if (r > 0 && (r = route_path_arg("cwd", cwd, cwd_len, &x->cwd)) < 0)
        return r;
    if ((r = jsonv_env(b, "env", EXEC_ENV_MAX, &x->params.env)) < 0)
        return r;
    if ((r = exec_parse_timeout(b, req, &x->params.timeout_ms)) < 0)
        return r;
    if ((r = jsonv_bool(b, "debug", &x->params.debug)) < 0 ||
        (r = jsonv_bool(b, "readOnly", &x->params.read_only)) < 0)
        return r;
    json_t *si = json_object_get(b, "stdin");
    if (si && !json_is_null(si)) {
        if (!json_is_string(si))
            return err_set(-ERR_INVALID_INPUT, "field 'stdin' must be a string");
        stdin_data = json_string_value(si);
        stdin_len = json_string_length(si);
    }
    x->params.script = script;
    x->params.script_len = script_len;
    x->params.cwd = x->cwd;
    x->params.stdin_data = stdin_data;
    x->params.stdin_len = stdin_len;
check:
    if (memchr(x->params.script, '\0', x->params.script_len))
        return err_set(-ERR_INVALID_INPUT, "script must not contain NUL bytes");
    x->params.cancel_fd = http_client_fd(req);
    if (req->inner)
        x->params.allowance = req->inner->allowance;
    return 0;
}

int exec_reply_admit(struct request *req)
{
    if (!budget_spent(&req->app->reply_memory))
        return 0;
    err_set(-ERR_BUSY, "the server holds all the exec output it may for replies that clients "
                       "have not read yet; retry shortly");
    err_detail("REPLY_MEMORY_BYTES=%lld", (long long)req->app->reply_memory.limit);
    return -ERR_BUSY;
}

int exec_reply_result(struct outreply *rep, json_t *fields, struct capture *output)
{
    json_object_set_new(fields, "stdoutTruncated", json_boolean(output->out.truncated));
    json_object_set_new(fields, "stderrTruncated", json_boolean(output->err.truncated));
    int r = outreply_text(rep, "{", 1);
    if (r == 0)
        r = outreply_members(rep, fields);
    if (r == 0)
        r = outreply_text(rep, ",\"stdout\":", 10);
    if (r == 0)
        r = outreply_output(rep, &output->out.data, output->out.truncated);
    if (r == 0)
        r = outreply_text(rep, ",\"stderr\":", 10);
    if (r == 0)
        r = outreply_output(rep, &output->err.data, output->err.truncated);
    if (r == 0)
        r = outreply_text(rep, "}", 1);
    json_decref(fields);
    return r;
}

/* Opens the sandbox with the lock the exec needs (shared for read-only). */
int exec_open_sandbox(struct request *req, bool read_only, struct sandbox_rec *rec)
{
    return route_open_sandbox(req, read_only ? LOCK_SHARED : LOCK_EXCLUSIVE, rec);
}

void route_exec_rest_done(struct request *req, bool completed)
{
    (void)completed;
    struct exec_route_rest *rest = req->route_state;
    if (!rest)
        return;
    req->route_state = NULL;
    exec_rest_finish(rest->rest);
    sandbox_rec_release(&rest->rec);
    free(rest);
}

/* The Server-Timing header of an exec-sync reply (W3C Server Timing: durations in ms): the
 * sandbox's lock and record, then the engine's phases (exec_timing). What follows the reply
 * (the checkout catching up with the commit, the upper's removal) is in none of them. */
static void exec_timing_header(char *buf, size_t cap, int64_t lock_ns, const struct exec_timing *t)
{
    const struct {
        const char *name;
        int64_t ns;
    } phase[] = {{"lock", lock_ns},      {"queue", t->queue_ns}, {"prepare", t->prepare_ns},
                 {"spawn", t->spawn_ns}, {"run", t->run_ns},     {"commit", t->commit_ns}};
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(phase) / sizeof(phase[0]); i++) {
        int64_t us = phase[i].ns > 0 ? phase[i].ns / 1000 : 0;
        int n = snprintf(buf + len, cap - len, "%s%s;dur=%lld.%03lld", i ? ", " : "", phase[i].name,
                         (long long)(us / 1000), (long long)(us % 1000));
        if (n < 0 || (size_t)n >= cap - len)
            return; /* cannot happen with the caller's buffer; a cut header is still valid */
        len += (size_t)n;
    }
}

int route_exec_sync(struct request *req)
{
    if (!req->app->exec)
        return exec_engine_unavailable();
    struct exec_request x;
    int r = exec_request_parse(req, &x);
    struct exec_route_rest *rest = r < 0 ? NULL : calloc(1, sizeof(*rest));
    if (r == 0 && !rest)
        r = -ENOMEM;
    if (r == 0)
        r = exec_reply_admit(req);
    int64_t lock_ns = time_mono_ns();
    if (r == 0)
        r = exec_open_sandbox(req, x.params.read_only, &rest->rec);
    lock_ns = time_mono_ns() - lock_ns;
    if (r < 0) {
        exec_request_release(&x);
        free(rest);
        return r;
    }
    /* The reply goes out before the checkout follows the commit and the upper goes: both
     * happen in route_exec_rest_done, under the same lock. */
    req->route_state = rest;
    struct exec_outcome out;
    int64_t timeout_ms = x.params.timeout_ms;
    x.params.rest_after_reply = true;
    x.params.journal_kind = "sync";
    x.params.keepalive = idem_keepalive;
    x.params.keepalive_arg = req;
    r = exec_engine_run(req->app->exec, &rest->rec, &x.params, &out);
    metrics_exec_timing(req->app->metrics, lock_ns, &out.timing);
    if (out.exec_id[0])
        idem_exec_id(req, out.exec_id);
    rest->rest = out.rest;
    out.rest = NULL;
    exec_request_release(&x);
    if (r < 0) {
        exec_outcome_release(&out);
        return r;
    }
    /* a timeout answers 408: the error body's fields, then the result's */
    json_t *o;
    if (out.timed_out) {
        char msg[96];
        snprintf(msg, sizeof(msg), "exec timed out after %lld ms", (long long)timeout_ms);
        o = api_error_json(-ERR_EXEC_TIMEOUT, msg, NULL);
    } else {
        o = json_object();
    }
    if (!o) {
        exec_outcome_release(&out);
        return -ENOMEM;
    }
    const char *sig = exec_signal_name(out.exit_signal);
    json_object_set_new(o, "execId", json_string(out.exec_id));
    json_object_set_new(o, "exitCode", json_integer(out.exit_code));
    json_object_set_new(o, "exitSignal", sig ? json_string(sig) : json_null());
    json_object_set_new(o, "timedOut", json_boolean(out.timed_out));
    json_object_set_new(o, "durationMs", json_integer(out.duration_ms));
    unsigned status = out.timed_out ? 408 : 200;
    char exec_id[EXEC_ID_LEN + 1];
    memcpy(exec_id, out.exec_id, sizeof(exec_id));
    char timing[256];
    exec_timing_header(timing, sizeof(timing), lock_ns, &out.timing);
    /* the output goes into the reply as it is, escaped only as it is sent */
    struct outreply *rep = outreply_new(&req->app->reply_memory);
    r = rep ? exec_reply_result(rep, o, &out.output) : -ENOMEM;
    if (!rep)
        json_decref(o);
    exec_outcome_release(&out);
    if (r < 0) {
        outreply_free(rep);
        return r;
    }
    r = outreply_send(req, status, rep);
    if (r == 0) {
        if (status == 408)
            http_mark_error(req, err_info(-ERR_EXEC_TIMEOUT));
        http_add_header(req, "Server-Timing", timing);
        http_add_header(req, "X-Exec-Id", exec_id);
    }
    return r;
}

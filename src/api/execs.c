/*
 * The exec journal's routes (docs/API.md "Exec journal"): GET execs (a page of records, newest
 * first) and GET execs/{execId} (one record with the start of its output). The journal is read
 * without the sandbox's lock (a running exec is not kept waiting for, and its record is written
 * before its answer); the owner is checked like every route's.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "api/routes.h"
#include "api/wire.h"
#include "sandbox/sandbox.h"
#include "util/b64.h"
#include "util/err.h"
#include "util/jsontext.h"
#include "util/utf8.h"

#define EXECS_PAGE_DEFAULT 100
#define EXECS_PAGE_MAX 1000
/* An exec id as clients may send it: anything longer names no exec. */
#define EXEC_ID_ARG_MAX 64

static int query_limit(struct request *req, int64_t *ret)
{
    char *v = NULL;
    int r = http_query(req, "limit", &v);
    if (r < 0 || !v)
        return r;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < 1 || n > EXECS_PAGE_MAX)
        r = err_set(-ERR_INVALID_INPUT, "query parameter 'limit' must be an integer from 1 to %d",
                    EXECS_PAGE_MAX);
    else
        *ret = n;
    free(v);
    return r;
}

/* The fields every view of a record has. NULL when out of memory. */
static json_t *exec_json(const struct exec_rec *e)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "execId", jsontext(e->exec_id));
    json_object_set_new(o, "kind", jsontext(e->kind));
    json_object_set_new(o, "script", jsontext(e->script));
    json_object_set_new(o, "startedAt", wire_time_json(e->started_ms));
    json_object_set_new(o, "durationMs", json_integer(e->duration_ms));
    json_object_set_new(o, "exitCode", json_integer(e->exit_code));
    json_object_set_new(o, "timedOut", json_boolean(e->timed_out));
    json_object_set_new(o, "version", e->version > 0 ? json_integer(e->version) : json_null());
    json_object_set_new(o, "stdoutBytes", json_integer(e->stdout_bytes));
    json_object_set_new(o, "stderrBytes", json_integer(e->stderr_bytes));
    return o;
}

struct execs_page {
    json_t *arr;
    int64_t n;
    char last[EXEC_ID_ARG_MAX + 1]; /* the id of the last record listed */
};

static int execs_one(const struct exec_rec *e, void *ud)
{
    struct execs_page *p = ud;
    json_t *o = exec_json(e);
    if (!o || json_array_append_new(p->arr, o) < 0)
        return -ENOMEM;
    p->n++;
    snprintf(p->last, sizeof(p->last), "%s", e->exec_id ? e->exec_id : "");
    return 0;
}

/* The exec id named by ?before= or the path: -ERR_EXEC_NOT_FOUND when it cannot be one. */
static int check_exec_id(const char *id, size_t len)
{
    if (len == 0 || len > EXEC_ID_ARG_MAX || memchr(id, '\0', len))
        return err_set(-ERR_EXEC_NOT_FOUND, "no such exec in this sandbox's journal");
    return 0;
}

int route_execs(struct request *req)
{
    int64_t limit = EXECS_PAGE_DEFAULT;
    char *before = NULL;
    int r = query_limit(req, &limit);
    if (r == 0)
        r = http_query(req, "before", &before);
    if (r == 0 && before)
        r = check_exec_id(before, strlen(before));
    struct sandbox_rec rec = {0};
    if (r == 0)
        r = sandbox_lookup(req->app->sandboxes, req->sandbox_id, req->tenant, req->sub, &rec);
    sandbox_rec_release(&rec);
    struct execs_page p = {.arr = r == 0 ? json_array() : NULL};
    if (r == 0 && !p.arr)
        r = -ENOMEM;
    if (r == 0)
        r = store_exec_list(req->app->store, req->sandbox_id, before, limit, execs_one, &p);
    free(before);
    if (r == -ENOENT)
        r = err_set(-ERR_SANDBOX_NOT_FOUND, "sandbox not found: %s", req->sandbox_id);
    if (r < 0) {
        json_decref(p.arr);
        return r;
    }
    json_t *o = json_object();
    if (!o) {
        json_decref(p.arr);
        return -ENOMEM;
    }
    json_object_set_new(o, "execs", p.arr);
    json_object_set_new(o, "next", p.n == limit ? json_string(p.last) : json_null());
    return http_reply_json(req, 200, o);
}

/* Sets `name` to the kept output as text when it is UTF-8 (with `cut`, the output was cut at the
 * record's cap: an incomplete character at the end is the cut's and is dropped), else as base64
 * with "<name>Encoding": "base64". */
static int set_output(json_t *o, const char *name, const char *data, size_t len, bool cut)
{
    char key[32];
    snprintf(key, sizeof(key), "%sEncoding", name);
    size_t text_len = len - (cut ? utf8_incomplete_tail(data ? data : "", len) : 0);
    if (!data || utf8_valid(data, text_len)) {
        json_object_set_new(o, name, json_stringn(data ? data : "", text_len));
        json_object_set_new(o, key, json_string("utf-8"));
        return 0;
    }
    char *b64 = NULL;
    int r = b64_encode(data, len, &b64, NULL);
    if (r < 0)
        return r;
    json_object_set_new(o, name, json_string(b64));
    json_object_set_new(o, key, json_string("base64"));
    free(b64);
    return 0;
}

int route_exec_get(struct request *req)
{
    const char *id = req->rest ? req->rest : "";
    size_t len = req->rest ? req->rest_len : 0;
    while (len > 0 && *id == '/') {
        id++;
        len--;
    }
    int r = check_exec_id(id, len);
    struct sandbox_rec rec = {0};
    if (r == 0)
        r = sandbox_lookup(req->app->sandboxes, req->sandbox_id, req->tenant, req->sub, &rec);
    sandbox_rec_release(&rec);
    struct exec_rec e = {0};
    if (r == 0)
        r = store_exec_get(req->app->store, req->sandbox_id, id, &e);
    if (r == -ENOENT)
        r = err_set(-ERR_SANDBOX_NOT_FOUND, "sandbox not found: %s", req->sandbox_id);
    if (r < 0)
        return r;
    json_t *o = exec_json(&e);
    r = o ? 0 : -ENOMEM;
    if (r == 0)
        r = set_output(o, "stdout", e.stdout_data, e.stdout_len, e.stdout_truncated);
    if (r == 0)
        r = set_output(o, "stderr", e.stderr_data, e.stderr_len, e.stderr_truncated);
    if (r == 0) {
        json_object_set_new(o, "stdoutTruncated", json_boolean(e.stdout_truncated));
        json_object_set_new(o, "stderrTruncated", json_boolean(e.stderr_truncated));
    }
    exec_rec_release(&e);
    if (r < 0) {
        json_decref(o);
        return r;
    }
    return http_reply_json(req, 200, o);
}

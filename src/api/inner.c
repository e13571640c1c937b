/* Requests the server makes to itself (api/inner.h). */
#include "api/inner.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/lock.h"
#include "util/err.h"
#include "util/rand.h"
#include "util/timeutil.h"

const struct route *inner_route(const char *method, const char *pattern)
{
    for (size_t i = 0; i < http_routes_count; i++)
        if (strcmp(http_routes[i].method, method) == 0 &&
            strcmp(http_routes[i].pattern, pattern) == 0)
            return &http_routes[i];
    return NULL;
}

void inner_answer_init(struct http_inner *ans)
{
    memset(ans, 0, sizeof(*ans));
    ans->body = (struct buf)BUF_INIT(0);
}

void inner_answer_release(struct http_inner *ans)
{
    buf_release(&ans->body);
    ans->status = 0;
}

/* Fills the inner request: the outer one's owner and id, the call's captures and body. */
static int inner_prepare(struct request *req, struct request *outer, const struct inner_call *call)
{
    req->app = outer->app;
    req->conn = outer->conn;
    req->route = call->route;
    req->method = call->route->method;
    req->started_ns = time_mono_ns();
    req->body = (struct buf)BUF_INIT(0);
    memcpy(req->request_id, outer->request_id, sizeof(req->request_id));
    req->url = strdup(call->route->pattern);
    req->tenant = outer->tenant ? strdup(outer->tenant) : NULL;
    req->sub = outer->sub ? strdup(outer->sub) : NULL;
    if (!req->url || (outer->tenant && !req->tenant) || (outer->sub && !req->sub))
        return -ENOMEM;
    if (call->sandbox_id) {
        if (!uuid_valid(call->sandbox_id))
            return err_set(-ERR_SANDBOX_NOT_FOUND, "sandbox not found");
        if (!(req->sandbox_id = strdup(call->sandbox_id)))
            return -ENOMEM;
    }
    if (call->rest) {
        req->rest_len = strlen(call->rest);
        if (!(req->rest = strdup(call->rest)))
            return -ENOMEM;
    }
    if (call->raw && buf_add(&req->body, call->raw, call->raw_len) < 0)
        return -ENOMEM;
    if (call->body) {
        char *text = json_dumps(call->body, JSON_COMPACT);
        if (!text)
            return -ENOMEM;
        int r = buf_add(&req->body, text, strlen(text));
        free(text);
        if (r < 0)
            return -ENOMEM;
    }
    return 0;
}

/* The route's work, as the server runs it once the body is in. */
static int inner_run(struct request *req)
{
    const struct route *route = req->route;
    int r = 0;
    if (route->body == BODY_JSON)
        r = http_parse_json_body(req);
    if (r == 0 && route->body == BODY_STREAM) {
        if (route->on_begin)
            r = route->on_begin(req);
        req->begun = r == 0;
        if (r == 0 && req->body.len)
            r = route->on_data(req, req->body.data, req->body.len);
    }
    if (r == 0)
        r = route->handler(req);
    return r;
}

int inner_call(struct request *outer, const struct inner_call *call, struct http_inner *ans)
{
    struct request *req = calloc(1, sizeof(*req));
    if (!req)
        return -ENOMEM;
    ans->query = call->query;
    req->inner = ans;
    err_clear();
    int r = inner_prepare(req, outer, call);
    if (r == 0)
        r = inner_run(req);
    if (r < 0 && !(ans->status >= 400))
        http_reply_error(req, r);
    if (req->route->on_done)
        req->route->on_done(req, true);
    locks_release(req->lock);
    if (req->response)
        MHD_destroy_response(req->response);
    json_decref(req->json);
    buf_release(&req->body);
    free(req->url);
    free(req->sandbox_id);
    free(req->rest);
    free(req->tenant);
    free(req->sub);
    free(req);
    err_clear();
    ans->query = NULL;
    return ans->status ? 0 : -ENOMEM;
}

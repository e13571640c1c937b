/*
 * The egress log's route (docs/API.md "Network"): GET egress?limit=N, the connections the
 * sandbox's execs asked its egress proxy for, newest first. Read without the sandbox's lock
 * (records are written when an exec ends); the owner is checked like every route's.
 */
#include <errno.h>
#include <stdlib.h>

#include "api/routes.h"
#include "api/wire.h"
#include "sandbox/sandbox.h"
#include "util/err.h"
#include "util/jsontext.h"

#define EGRESS_PAGE_DEFAULT 100
#define EGRESS_PAGE_MAX 1000

static json_t *record_json(const struct egress_rec *e)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "at", wire_time_json(e->at_ms));
    json_object_set_new(o, "execId", e->exec_id ? jsontext(e->exec_id) : json_null());
    json_object_set_new(o, "host", jsontext(e->host ? e->host : ""));
    json_object_set_new(o, "port", json_integer(e->port));
    json_object_set_new(o, "address", e->address ? jsontext(e->address) : json_null());
    json_object_set_new(o, "allowed", json_boolean(e->allowed));
    json_object_set_new(o, "rule", jsontext(e->rule ? e->rule : ""));
    json_object_set_new(o, "error", e->error ? jsontext(e->error) : json_null());
    json_object_set_new(o, "bytesUp", json_integer(e->bytes_up));
    json_object_set_new(o, "bytesDown", json_integer(e->bytes_down));
    json_object_set_new(o, "durationMs", json_integer(e->duration_ms));
    return o;
}

static int egress_one(const struct egress_rec *e, void *arr)
{
    json_t *o = record_json(e);
    return o && json_array_append_new(arr, o) == 0 ? 0 : -ENOMEM;
}

int route_egress(struct request *req)
{
    int64_t limit = EGRESS_PAGE_DEFAULT;
    int r = route_query_int(req, "limit", 1, EGRESS_PAGE_MAX, &limit);
    struct sandbox_rec rec = {0};
    if (r == 0)
        r = sandbox_lookup(req->app->sandboxes, req->sandbox_id, req->tenant, req->sub, &rec);
    sandbox_rec_release(&rec);
    json_t *arr = r == 0 ? json_array() : NULL;
    if (r == 0 && !arr)
        r = -ENOMEM;
    if (r == 0)
        r = store_egress_list(req->app->store, req->sandbox_id, limit, egress_one, arr);
    if (r < 0) {
        json_decref(arr);
        return r;
    }
    json_t *o = json_object();
    if (!o) {
        json_decref(arr);
        return -ENOMEM;
    }
    json_object_set_new(o, "egress", arr);
    return http_reply_json(req, 200, o);
}

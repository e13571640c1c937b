#include "api/wire.h"

#include <string.h>

#include "util/home.h"
#include "util/jsontext.h"
#include "util/timeutil.h"

static json_t *iso_json(int64_t ms)
{
    char ts[TIME_ISO_LEN];
    time_iso8601(ms, ts, sizeof(ts));
    return json_string(ts);
}

json_t *wire_time_json(int64_t ms)
{
    return ms > 0 ? iso_json(ms) : json_null();
}

json_t *wire_mtime_json(int64_t mtime_ns)
{
    return iso_json(mtime_ns / 1000000);
}

json_t *wire_sandbox_json(const struct sandbox_rec *rec)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(rec->id));
    json_object_set_new(o, "name", rec->name ? json_string(rec->name) : json_null());
    json_object_set_new(o, "owner", json_string(rec->sub));
    json_object_set_new(o, "tenant", json_string(rec->tenant));
    json_object_set_new(o, "createdAt", iso_json(rec->created_ms));
    json_object_set_new(o, "lastUsedAt", wire_time_json(rec->last_used_ms));
    json_object_set_new(o, "python", json_boolean(rec->python));
    json_object_set_new(o, "javascript", json_boolean(rec->javascript));
    json_t *policy =
        rec->network && rec->network_policy ? json_loads(rec->network_policy, 0, NULL) : NULL;
    json_object_set_new(o, "network", policy ? policy : json_boolean(rec->network));
    const char *cwd = rec->cwd ? rec->cwd : SANDBOX_HOME;
    if (jsontext_set_path(o, "cwd", cwd, strlen(cwd)) < 0) {
        json_decref(o);
        return NULL;
    }
    json_t *env = rec->env_json ? json_loads(rec->env_json, 0, NULL) : NULL;
    json_object_set_new(o, "env", env ? env : json_object());
    json_object_set_new(o, "fileCount", json_integer(rec->file_count));
    json_object_set_new(o, "sizeBytes", json_integer(rec->size_bytes));
    json_object_set_new(o, "version", json_integer(rec->version));
    return o;
}

/* The route table: every route of the API in one place (API.md). */
#include "api/routes.h"

#define SBX "/v1/sandboxes/:id"

const struct route http_routes[] = {
    {"GET", "/healthz", BODY_NONE, false, NULL, NULL, route_healthz, NULL, 0, false},
    {"GET", "/readyz", BODY_NONE, false, NULL, NULL, route_readyz, NULL, 0, false},
    {"POST", "/v1/auth/bootstrap", BODY_RAW, false, NULL, NULL, route_auth_bootstrap, NULL,
     HTTP_AUTH_BODY_MAX, false},
    {"POST", "/v1/auth/admin", BODY_RAW, true, NULL, NULL, route_auth_admin, NULL,
     HTTP_AUTH_BODY_MAX, false},
    {"GET", "/v1/status", BODY_NONE, false, NULL, NULL, route_status, NULL, 0, false},
    {"POST", "/v1/sandboxes", BODY_JSON, true, NULL, NULL, route_sandbox_create, NULL, 0, false},
    {"GET", "/v1/sandboxes", BODY_NONE, true, NULL, NULL, route_sandbox_list, NULL, 0, false},
    {"GET", SBX, BODY_NONE, true, NULL, NULL, route_sandbox_get, NULL, 0, false},
    {"DELETE", SBX, BODY_NONE, true, NULL, NULL, route_sandbox_delete, NULL, 0, false},
    {"GET", SBX "/files/*", BODY_NONE, true, NULL, NULL, route_file_get, NULL, 0, false},
    {"PUT", SBX "/files/*", BODY_STREAM, true, route_file_put_begin, route_file_put_data,
     route_file_put, route_file_put_done, 0, true},
    {"PATCH", SBX "/files/*", BODY_JSON, true, NULL, NULL, route_file_patch, NULL, 0, false},
    {"DELETE", SBX "/files/*", BODY_NONE, true, NULL, NULL, route_file_delete, NULL, 0, false},
    {"POST", SBX "/mkdir", BODY_JSON, true, NULL, NULL, route_mkdir, NULL, 0, false},
    {"POST", SBX "/writeFiles", BODY_JSON, true, NULL, NULL, route_write_files, NULL, 0, true},
    {"GET", SBX "/tree", BODY_NONE, true, NULL, NULL, route_tree, NULL, 0, false},
    {"POST", SBX "/exec-sync", BODY_RAW, true, NULL, NULL, route_exec_sync, route_exec_rest_done, 0,
     true},
    {"POST", SBX "/exec", BODY_RAW, true, NULL, NULL, route_exec_stream, route_exec_stream_done, 0,
     false},
    {"POST", SBX "/exec-sync-batch", BODY_JSON, true, NULL, NULL, route_exec_batch,
     route_exec_rest_done, 0, true},
    {"POST", SBX "/ingest", BODY_STREAM, true, route_ingest_begin, route_ingest_data, route_ingest,
     route_ingest_done, 0, true},
    {"POST", SBX "/ingest-files", BODY_JSON, true, NULL, NULL, route_ingest_files, NULL, 0, true},
    {"GET", SBX "/export", BODY_NONE, true, NULL, NULL, route_export, NULL, 0, false},
    {"GET", SBX "/commits", BODY_NONE, true, NULL, NULL, route_commits, NULL, 0, false},
    {"GET", SBX "/commits/*", BODY_NONE, true, NULL, NULL, route_commit, NULL, 0, false},
    {"GET", SBX "/execs", BODY_NONE, true, NULL, NULL, route_execs, NULL, 0, false},
    {"GET", SBX "/execs/*", BODY_NONE, true, NULL, NULL, route_exec_get, NULL, 0, false},
    {"GET", SBX "/diff", BODY_NONE, true, NULL, NULL, route_diff, NULL, 0, false},
    {"POST", SBX "/restore", BODY_JSON, true, NULL, NULL, route_restore, NULL, 0, false},
    {"POST", SBX "/fork", BODY_JSON, true, NULL, NULL, route_fork, NULL, 0, false},
    {"POST", SBX "/snapshots", BODY_JSON, true, NULL, NULL, route_snapshot_create, NULL, 0, false},
    {"GET", SBX "/snapshots", BODY_NONE, true, NULL, NULL, route_snapshot_list, NULL, 0, false},
    {"DELETE", SBX "/snapshots/*", BODY_NONE, true, NULL, NULL, route_snapshot_delete, NULL, 0,
     false},
};

const size_t http_routes_count = sizeof(http_routes) / sizeof(http_routes[0]);

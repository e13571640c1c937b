/* The route table: every route of the API in one place (API.md). */
#include "api/routes.h"

#define SBX "/v1/sandboxes/:id"

const struct route http_routes[] = {
    {"GET", "/healthz", BODY_NONE, false, NULL, NULL, route_healthz, NULL},
    {"GET", "/readyz", BODY_NONE, false, NULL, NULL, route_readyz, NULL},
    {"POST", "/v1/auth/bootstrap", BODY_RAW, false, NULL, NULL, route_auth_bootstrap, NULL},
    {"POST", "/v1/auth/admin", BODY_RAW, true, NULL, NULL, route_auth_admin, NULL},
    {"GET", "/v1/status", BODY_NONE, false, NULL, NULL, route_status, NULL},
    {"POST", "/v1/sandboxes", BODY_JSON, true, NULL, NULL, route_sandbox_create, NULL},
    {"GET", "/v1/sandboxes", BODY_NONE, true, NULL, NULL, route_sandbox_list, NULL},
    {"GET", SBX, BODY_NONE, true, NULL, NULL, route_sandbox_get, NULL},
    {"DELETE", SBX, BODY_NONE, true, NULL, NULL, route_sandbox_delete, NULL},
    {"GET", SBX "/files/*", BODY_NONE, true, NULL, NULL, route_file_get, NULL},
    {"PUT", SBX "/files/*", BODY_STREAM, true, route_file_put_begin, route_file_put_data,
     route_file_put, route_file_put_done},
    {"PATCH", SBX "/files/*", BODY_JSON, true, NULL, NULL, route_file_patch, NULL},
    {"DELETE", SBX "/files/*", BODY_NONE, true, NULL, NULL, route_file_delete, NULL},
    {"POST", SBX "/mkdir", BODY_JSON, true, NULL, NULL, route_mkdir, NULL},
    {"POST", SBX "/writeFiles", BODY_JSON, true, NULL, NULL, route_write_files, NULL},
    {"GET", SBX "/tree", BODY_NONE, true, NULL, NULL, route_tree, NULL},
    {"POST", SBX "/exec-sync", BODY_RAW, true, NULL, NULL, route_exec_sync, route_exec_rest_done},
    {"POST", SBX "/exec", BODY_RAW, true, NULL, NULL, route_exec_stream, route_exec_stream_done},
    {"POST", SBX "/exec-sync-batch", BODY_JSON, true, NULL, NULL, route_exec_batch,
     route_exec_rest_done},
    {"POST", SBX "/ingest", BODY_STREAM, true, route_ingest_begin, route_ingest_data,
     route_ingest, route_ingest_done},
    {"POST", SBX "/ingest-files", BODY_JSON, true, NULL, NULL, route_ingest_files, NULL},
    {"GET", SBX "/export", BODY_NONE, true, NULL, NULL, route_export, NULL},
};

const size_t http_routes_count = sizeof(http_routes) / sizeof(http_routes[0]);

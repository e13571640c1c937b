/* The MCP endpoint's protocol: JSON-RPC 2.0 over Streamable HTTP (api/mcp.h). */
#include "api/mcp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/jsonv.h"
#include "util/err.h"
#include "version.h"

/* JSON-RPC 2.0 error codes. */
#define RPC_PARSE_ERROR (-32700)
#define RPC_INVALID_REQUEST (-32600)
#define RPC_METHOD_NOT_FOUND (-32601)
#define RPC_INVALID_PARAMS (-32602)
#define RPC_INTERNAL_ERROR (-32603)

/* The protocol revisions spoken, newest first: initialize answers the client's when it is one
 * of them, else the newest. */
static const char *const protocol_versions[] = {"2025-11-25", "2025-06-18", "2025-03-26",
                                                "2024-11-05"};
#define N_PROTOCOL_VERSIONS (sizeof(protocol_versions) / sizeof(protocol_versions[0]))

static const char instructions[] =
    "sqlfs keeps persistent bash sandboxes. Create one with sandbox_create (or reuse one from "
    "sandbox_list), then run shell scripts in it with exec and read or change its files with "
    "read_file, write_file, edit_file and list_tree. Files persist between calls; every change "
    "is a commit: commits lists them, diff compares two versions, restore goes back to one, "
    "fork copies a sandbox at a version.";

static bool protocol_supported(const char *v)
{
    for (size_t i = 0; i < N_PROTOCOL_VERSIONS; i++)
        if (strcmp(v, protocol_versions[i]) == 0)
            return true;
    return false;
}

/* Sends a JSON-RPC error: `id` (borrowed; NULL: null), with HTTP `status`. */
static int reply_rpc_error(struct request *req, unsigned status, json_t *id, int code,
                           const char *message)
{
    json_t *o = json_pack("{s:s,s:O,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(),
                          "error", "code", code, "message", message);
    if (!o)
        return -ENOMEM;
    return http_reply_json(req, status, o);
}

static int reply_rpc_result(struct request *req, json_t *id, json_t *result)
{
    json_t *o = json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", id, "result", result);
    if (!o)
        return -ENOMEM;
    return http_reply_json(req, 200, o);
}

/* The authority (host[:port]) of an Origin, or NULL when it has none. */
static const char *origin_authority(const char *origin, size_t *ret_len)
{
    const char *p = strstr(origin, "://");
    if (!p)
        return NULL;
    p += 3;
    *ret_len = strcspn(p, "/");
    return p;
}

/* Streamable HTTP: a request carrying an Origin must come from this server's own origin (a web
 * page elsewhere must not reach it through a rebound name); one without is not from a browser.
 * 0, or 1 when answered (403). */
static int check_origin(struct request *req)
{
    const char *origin = http_header(req, "Origin");
    if (!origin)
        return 0;
    const char *host = http_header(req, "Host");
    size_t n = 0;
    const char *auth = origin_authority(origin, &n);
    if (auth && host && strlen(host) == n && strncasecmp(auth, host, n) == 0)
        return 0;
    int r = reply_rpc_error(req, 403, NULL, RPC_INVALID_REQUEST,
                            "Origin is not this server's: requests from other origins are refused");
    return r < 0 ? r : 1;
}

/* MCP-Protocol-Version (after initialize): absent is the oldest revision with the header; an
 * unknown one is refused (400). 0, or 1 when answered. */
static int check_protocol_header(struct request *req)
{
    const char *v = http_header(req, "MCP-Protocol-Version");
    if (!v || protocol_supported(v))
        return 0;
    char msg[256];
    snprintf(
        msg, sizeof(msg), "unsupported MCP-Protocol-Version '%.40s' (supported: %s, %s, %s, %s)", v,
        protocol_versions[0], protocol_versions[1], protocol_versions[2], protocol_versions[3]);
    int r = reply_rpc_error(req, 400, NULL, RPC_INVALID_REQUEST, msg);
    return r < 0 ? r : 1;
}

static int do_initialize(struct request *req, json_t *id, json_t *params)
{
    const char *asked = json_string_value(json_object_get(params, "protocolVersion"));
    if (!asked)
        return reply_rpc_error(req, 200, id, RPC_INVALID_PARAMS,
                               "initialize needs params.protocolVersion (a string)");
    const char *v = protocol_supported(asked) ? asked : protocol_versions[0];
    json_t *result = json_pack("{s:s,s:{s:{s:b}},s:{s:s,s:s},s:s}", "protocolVersion", v,
                               "capabilities", "tools", "listChanged", 0, "serverInfo", "name",
                               "sqlfs", "version", SQLFS_VERSION, "instructions", instructions);
    return result ? reply_rpc_result(req, id, result) : -ENOMEM;
}

static int do_tools_call(struct request *req, json_t *id, json_t *params)
{
    const char *name = json_string_value(json_object_get(params, "name"));
    json_t *args = json_object_get(params, "arguments");
    if (!name)
        return reply_rpc_error(req, 200, id, RPC_INVALID_PARAMS,
                               "tools/call needs params.name (a string)");
    if (args && !json_is_object(args) && !json_is_null(args))
        return reply_rpc_error(req, 200, id, RPC_INVALID_PARAMS,
                               "params.arguments must be an object");
    json_t *empty = NULL;
    if (!json_is_object(args) && !(args = empty = json_object()))
        return -ENOMEM;
    json_t *result = NULL;
    int r = mcp_tools_call(req, name, args, &result);
    json_decref(empty);
    if (r == -ENOENT) {
        char msg[160];
        snprintf(msg, sizeof(msg), "unknown tool '%.100s' (tools/list names them)", name);
        return reply_rpc_error(req, 200, id, RPC_INVALID_PARAMS, msg);
    }
    if (r < 0)
        return reply_rpc_error(req, 200, id, RPC_INTERNAL_ERROR, "out of memory");
    return reply_rpc_result(req, id, result);
}

/* One JSON-RPC request (it has an id): dispatched by method. */
static int do_request(struct request *req, json_t *id, const char *method, json_t *params)
{
    if (params && !json_is_object(params))
        return reply_rpc_error(req, 200, id, RPC_INVALID_PARAMS, "params must be an object");
    if (strcmp(method, "initialize") == 0)
        return do_initialize(req, id, params);
    if (strcmp(method, "ping") == 0)
        return reply_rpc_result(req, id, json_object());
    if (strcmp(method, "tools/list") == 0) {
        json_t *tools = mcp_tools_list();
        return tools ? reply_rpc_result(req, id, json_pack("{s:o}", "tools", tools)) : -ENOMEM;
    }
    if (strcmp(method, "tools/call") == 0)
        return do_tools_call(req, id, params);
    char msg[160];
    snprintf(msg, sizeof(msg), "method not found: '%.100s'", method);
    return reply_rpc_error(req, 200, id, RPC_METHOD_NOT_FOUND, msg);
}

/* One JSON-RPC message: a request is answered; a notification or a response is taken with
 * 202 and no body (nothing this server sends expects one). */
static int do_message(struct request *req, json_t *msg)
{
    json_t *id = json_object_get(msg, "id");
    json_t *method = json_object_get(msg, "method");
    const char *jsonrpc = json_string_value(json_object_get(msg, "jsonrpc"));
    if (!jsonrpc || strcmp(jsonrpc, "2.0") != 0)
        return reply_rpc_error(req, 400, NULL, RPC_INVALID_REQUEST,
                               "not a JSON-RPC 2.0 message: \"jsonrpc\" must be \"2.0\"");
    if (id && !json_is_string(id) && !json_is_integer(id))
        return reply_rpc_error(req, 400, NULL, RPC_INVALID_REQUEST,
                               "\"id\" must be a string or an integer");
    if (!method) {
        if (id && (json_object_get(msg, "result") || json_object_get(msg, "error")))
            return http_reply_empty(req, 202);
        return reply_rpc_error(req, 400, id, RPC_INVALID_REQUEST,
                               "a JSON-RPC request needs a \"method\"");
    }
    if (!json_is_string(method))
        return reply_rpc_error(req, 400, id, RPC_INVALID_REQUEST, "\"method\" must be a string");
    if (!id)
        return http_reply_empty(req, 202);
    return do_request(req, id, json_string_value(method), json_object_get(msg, "params"));
}

int route_mcp(struct request *req)
{
    int r = check_origin(req);
    if (r == 0)
        r = check_protocol_header(req);
    if (r != 0)
        return r < 0 ? r : 0;
    const char *p = buf_cstr(&req->body);
    size_t skip = strspn(p, " \t\r\n");
    if (skip < req->body.len && p[skip] == '[')
        return reply_rpc_error(req, 400, NULL, RPC_INVALID_REQUEST,
                               "JSON-RPC batches are not supported: send one message per POST");
    json_t *msg = NULL;
    r = jsonv_parse_object(p, req->body.len, &msg);
    if (r < 0) {
        char text[300];
        snprintf(text, sizeof(text), "parse error: %s", err_message() ? err_message() : "bad JSON");
        err_clear();
        return reply_rpc_error(req, 400, NULL, RPC_PARSE_ERROR, text);
    }
    r = do_message(req, msg);
    json_decref(msg);
    return r;
}

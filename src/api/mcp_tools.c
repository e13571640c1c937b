/*
 * The MCP tools (api/mcp.h; docs/API.md "MCP"). Each tool is an inner request (api/inner.h) of
 * the /v1 route it stands for, so it validates, locks, limits and fails exactly like that route,
 * with the caller's owner: a sandbox of another owner is "not found" as over /v1. read_file alone
 * has a handler of its own, since GET files/{path} streams its answer.
 *
 * The arguments are checked against the tool's inputSchema first (names, required members,
 * JSON types); what the schema cannot say (ranges, paths) the route checks. A failure is a tool
 * result with isError and the API's error body as its text, never a protocol error.
 */
#include "api/mcp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/inner.h"
#include "api/routes.h"
#include "exec/capture.h"
#include "sandbox/sandbox.h"
#include "util/err.h"
#include "util/jsontext.h"
#include "util/utf8.h"

#define SBX "/v1/sandboxes/:id"

/* What one tool call may answer: each exec stream, and a file's text, at most MCP_OUTPUT_BYTES
 * (the rest is cut and flagged); the whole answer (JSON text, escapes included) at most
 * MCP_ANSWER_BYTES, past which the tool fails with 413 instead of holding more. */
#define MCP_OUTPUT_BYTES ((size_t)1024 * 1024)
#define MCP_ANSWER_BYTES ((size_t)32 * 1024 * 1024)

/* ---- schemas -------------------------------------------------------------------------------- */

#define S_SANDBOX_ID                                                                               \
    "\"sandboxId\":{\"type\":\"string\",\"description\":\"The sandbox's id (from sandbox_create "  \
    "or sandbox_list).\"}"
#define S_PATH(what) "\"path\":{\"type\":\"string\",\"description\":\"" what "\"}"
#define S_INPUT(props, required)                                                                   \
    "{\"type\":\"object\",\"properties\":{" props "},\"required\":[" required "],"                 \
    "\"additionalProperties\":false}"
#define S_RECORD_PROPS                                                                             \
    "\"id\":{\"type\":\"string\"},\"name\":{\"type\":[\"string\",\"null\"]},"                      \
    "\"python\":{\"type\":\"boolean\"},\"javascript\":{\"type\":\"boolean\"},\"network\":{},"      \
    "\"cwd\":{\"type\":\"string\"},\"env\":{\"type\":\"object\"},"                                 \
    "\"fileCount\":{\"type\":\"integer\"},\"sizeBytes\":{\"type\":\"integer\"},"                   \
    "\"version\":{\"type\":\"integer\"},\"createdAt\":{},\"lastUsedAt\":{}"
#define S_RECORD                                                                                   \
    "{\"type\":\"object\",\"properties\":{" S_RECORD_PROPS "},\"required\":[\"id\",\"version\"]}"
#define S_PATHS                                                                                    \
    "{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{\"path\":{\"type\":"       \
    "\"string\"},\"change\":{\"type\":\"string\"},\"kind\":{\"type\":\"string\"},\"size\":{"       \
    "\"type\":\"integer\"}}}}"

/* ---- results -------------------------------------------------------------------------------- */

/* A CallToolResult: `text` in a text block, and structuredContent (stolen; NULL: none). */
static json_t *result_new(const char *text, size_t len, json_t *structured, bool is_error)
{
    json_t *block = json_pack("{s:s,s:s%}", "type", "text", "text", text, len);
    json_t *o = json_object();
    json_t *content = json_array();
    if (!block || !o || !content || json_array_append_new(content, block) < 0) {
        json_decref(o);
        json_decref(content);
        json_decref(structured);
        return NULL;
    }
    json_object_set_new(o, "content", content);
    if (structured)
        json_object_set_new(o, "structuredContent", structured);
    if (is_error)
        json_object_set_new(o, "isError", json_true());
    return o;
}

/* The result of a tool whose answer is the JSON object `structured` (stolen). */
static json_t *result_json(json_t *structured)
{
    if (!structured)
        return NULL;
    char *text = json_dumps(structured, JSON_COMPACT);
    json_t *o = text ? result_new(text, strlen(text), structured, false) : NULL;
    if (!text)
        json_decref(structured);
    free(text);
    return o;
}

/* An error result for `code` (negative) with this thread's error message. */
static json_t *result_error(int code)
{
    json_t *e = http_error_json(code);
    err_clear();
    char *text = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
    json_t *o = text ? result_new(text, strlen(text), NULL, true) : NULL;
    free(text);
    return o;
}

/* The result of an inner request's answer: an error answer (status >= 400) is an isError
 * result with the API's body; a JSON answer is the structured content, `wrap` naming the member
 * to put an answer that is not an object in (list_tree's array); an empty answer is `empty`
 * (stolen). Takes `empty` whatever happens. */
static json_t *result_answer(const struct http_inner *ans, const char *wrap, json_t *empty,
                             bool error_ok)
{
    if (ans->status >= 400 && !error_ok) {
        json_decref(empty);
        return result_new(buf_cstr(&ans->body), ans->body.len, NULL, true);
    }
    if (ans->body.len == 0)
        return result_json(empty ? empty : json_object());
    json_decref(empty);
    json_error_t jerr;
    if (ans->opaque) /* a streamed answer: no tool runs such a route */
        return result_error(err_set(-ERR_INTERNAL, "the tool's answer could not be read"));
    /* an exec's output may hold NUL bytes (\u0000 in the answer) */
    json_t *v = json_loadb(ans->body.data, ans->body.len, JSON_ALLOW_NUL, &jerr);
    if (!v)
        return NULL;
    if (!json_is_object(v)) {
        json_t *w = json_object();
        if (!w || json_object_set_new(w, wrap ? wrap : "value", v) < 0) {
            json_decref(w);
            return NULL;
        }
        v = w;
    }
    return result_json(v);
}

/* ---- argument checks against the inputSchema ----------------------------------------------- */

static bool type_is(const char *type, json_t *v)
{
    if (strcmp(type, "string") == 0)
        return json_is_string(v);
    if (strcmp(type, "integer") == 0)
        return json_is_integer(v);
    if (strcmp(type, "boolean") == 0)
        return json_is_boolean(v);
    if (strcmp(type, "object") == 0)
        return json_is_object(v);
    return true;
}

/* Whether v has the JSON type a property schema names ("type": a name or a list of names). */
static bool type_ok(json_t *prop, json_t *v)
{
    json_t *type = json_object_get(prop, "type");
    if (json_is_string(type))
        return type_is(json_string_value(type), v);
    if (!json_is_array(type))
        return true;
    size_t i;
    json_t *t;
    json_array_foreach(type, i,
                       t) if (json_is_string(t) && type_is(json_string_value(t), v)) return true;
    return false;
}

/* 0, or -ERR_INVALID_INPUT naming the argument that breaks the schema. */
static int check_args(const char *tool, json_t *schema, json_t *args)
{
    json_t *props = json_object_get(schema, "properties");
    size_t i;
    json_t *req;
    json_array_foreach(json_object_get(schema, "required"), i, req)
    {
        if (!json_object_get(args, json_string_value(req)))
            return err_set(-ERR_INVALID_INPUT, "%s: argument '%s' is required", tool,
                           json_string_value(req));
    }
    const char *key;
    json_t *v;
    json_object_foreach(args, key, v)
    {
        json_t *prop = json_object_get(props, key);
        if (!prop)
            return err_set(-ERR_INVALID_INPUT, "%s: unknown argument '%.100s'", tool, key);
        if (!type_ok(prop, v))
            return err_set(-ERR_INVALID_INPUT, "%s: argument '%s' must be of type %s", tool, key,
                           json_is_string(json_object_get(prop, "type"))
                               ? json_string_value(json_object_get(prop, "type"))
                               : "boolean or object");
    }
    return 0;
}

/* ---- running a route ------------------------------------------------------------------------ */

/* A copy of args without the members that are not the route's body (sandboxId, path). */
static json_t *body_of(json_t *args)
{
    json_t *b = json_deep_copy(args);
    if (b) {
        json_object_del(b, "sandboxId");
        json_object_del(b, "path");
    }
    return b;
}

/* Sets query[name] to the string form of args[name] when present. */
static int query_arg(json_t *query, json_t *args, const char *name)
{
    json_t *v = json_object_get(args, name);
    if (!v)
        return 0;
    char num[32];
    json_t *s;
    if (json_is_integer(v)) {
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        s = json_string(num);
    } else {
        s = json_string(json_string_value(v));
    }
    return s && json_object_set_new(query, name, s) == 0 ? 0 : -ENOMEM;
}

/* Runs the route (method, pattern) for the tool's args into *ret. */
struct tool_run {
    const char *method, *pattern;
    bool with_body;          /* the args (less sandboxId and path) are the body */
    const char *query[4];    /* args sent as query parameters */
    const char *wrap;        /* see result_answer */
    bool timeout_is_result;  /* a 408 answer with output is a result (exec) */
    const struct route *own; /* a route of the tool's own instead of the table's */
    const char *raw_member;  /* the arg whose string is the body as it is (write_file) */
    json_t *empty;           /* the structured content of an empty answer (stolen), or NULL */
};

/* The output of each stream of an exec a tool answers, at most (MAX_EXEC_OUTPUT_BYTES when
 * that is lower). */
static size_t mcp_output_bytes(const struct request *req)
{
    int64_t max = req->app->cfg->max_exec_output_bytes;
    return (uint64_t)max < MCP_OUTPUT_BYTES ? (size_t)max : MCP_OUTPUT_BYTES;
}

/* Runs t for args into *ret; takes t->empty whatever happens. */
static int run_route(struct request *req, const struct tool_run *t, json_t *args, json_t **ret)
{
    struct inner_call call = {
        .route = t->own ? t->own : inner_route(t->method, t->pattern),
        .sandbox_id = json_string_value(json_object_get(args, "sandboxId")),
        .rest = json_string_value(json_object_get(args, "path")),
    };
    if (!call.route) { /* cannot happen: the patterns are the table's */
        json_decref(t->empty);
        return -ENOMEM;
    }
    if (!strchr(call.route->pattern, '*'))
        call.rest = NULL;
    json_t *query = json_object();
    int r = query ? 0 : -ENOMEM;
    for (size_t i = 0; r == 0 && i < 4 && t->query[i]; i++)
        r = query_arg(query, args, t->query[i]);
    if (r == 0 && t->with_body && !(call.body = body_of(args)))
        r = -ENOMEM;
    if (r == 0 && t->raw_member) { /* write_file: the body is the content itself */
        json_t *raw = json_object_get(args, t->raw_member);
        call.raw = json_string_value(raw);
        call.raw_len = json_string_length(raw);
    }
    call.query = query;
    struct http_inner ans;
    inner_answer_init(&ans);
    /* What a tool answers is read by a model: an exec keeps at most MCP_OUTPUT_BYTES of each
     * stream (the rest is counted as truncated), and no answer is held past
     * MCP_ANSWER_BYTES. */
    struct capture_allowance allowance = CAPTURE_ALLOWANCE_INIT(mcp_output_bytes(req));
    ans.allowance = &allowance;
    ans.body.max = MCP_ANSWER_BYTES;
    if (r == 0)
        r = inner_call(req, &call, &ans);
    /* the memory of a large answer goes back to the system once the request is done */
    if (ans.body.cap > req->parse_peak)
        req->parse_peak = ans.body.cap;
    json_decref(query);
    json_decref(call.body);
    if (r < 0)
        json_decref(t->empty);
    if (r == 0) {
        bool timeout = t->timeout_is_result && ans.status == 408 && ans.body.len;
        *ret = result_answer(&ans, t->wrap, t->empty, timeout);
        r = *ret ? 0 : -ENOMEM;
    }
    inner_answer_release(&ans);
    return r;
}

/* ---- read_file: a handler of its own (GET files/{path} streams its answer)
 * ----------------------- */

/* Reads the file into out, at most max bytes; *ret_cut when there was more. */
static int read_text(struct app *app, const struct file_meta *m, size_t max, struct buf *out,
                     bool *ret_cut)
{
    *ret_cut = false;
    if (!m->has_content || m->size == 0)
        return 0;
    struct content_reader *rd = NULL;
    int r = store_content_open(app->store, m->content, &rd);
    if (r < 0)
        return r;
    size_t want = (uint64_t)m->size > max ? max : (size_t)m->size;
    *ret_cut = want < (uint64_t)m->size;
    r = buf_grow(out, want);
    while (r == 0 && out->len < want) {
        size_t got = 0;
        r = store_content_read(app->store, rd, out->data + out->len, want - out->len, &got);
        if (r < 0 || got == 0)
            break;
        out->len += got;
        out->data[out->len] = '\0';
    }
    store_content_close(app->store, rd);
    return r;
}

/* GET files/{path} answering {path, content, size, truncated}: the file's text, cut at
 * MCP_OUTPUT_BYTES (at a character's boundary). */
static int read_file_handler(struct request *req)
{
    char *path = NULL;
    int r = route_capture_path(req, &path);
    if (r == 0)
        r = route_open_sandbox(req, LOCK_SHARED, NULL);
    if (r < 0) {
        free(path);
        return r;
    }
    char *real = NULL;
    struct file_meta m;
    r = sandbox_resolve_at(req->app->sandboxes, req->sandbox_id, -1, path, true, &real, &m);
    free(path);
    free(real);
    if (r < 0)
        return r;
    struct buf text = BUF_INIT(0);
    bool cut = false;
    if (m.kind == FILE_KIND_DIR)
        r = err_set(-EISDIR, "is a directory: %s (list_tree lists it)", m.path);
    if (r == 0)
        r = read_text(req->app, &m, mcp_output_bytes(req), &text, &cut);
    if (r == 0 && cut)
        text.len -= utf8_incomplete_tail(text.data, text.len);
    if (r == 0 &&
        (memchr(buf_cstr(&text), '\0', text.len) || !utf8_valid(buf_cstr(&text), text.len)))
        r = err_set(-ERR_INVALID_INPUT,
                    "not a UTF-8 text file: %s (%lld bytes); read it with exec, e.g. base64 or xxd",
                    m.path, (long long)m.size);
    json_t *o = NULL;
    if (r == 0) {
        o = json_pack("{s:o,s:s%,s:I,s:b}", "path", jsontext(m.path), "content", buf_cstr(&text),
                      text.len, "size", (json_int_t)m.size, "truncated", cut);
        r = o ? http_reply_json(req, 200, o) : -ENOMEM;
    }
    buf_release(&text);
    file_meta_release(&m);
    return r;
}

static const struct route read_file_route = {
    "GET", SBX "/files/*", BODY_NONE, true, NULL, NULL, read_file_handler, NULL, 0, false, NULL};

/* ---- the tools ------------------------------------------------------------------------------ */

static int tool_sandbox_create(struct request *req, json_t *args, json_t **ret)
{
    struct tool_run t = {.method = "POST", .pattern = "/v1/sandboxes", .with_body = true};
    return run_route(req, &t, args, ret);
}

static int tool_sandbox_list(struct request *req, json_t *args, json_t **ret)
{
    struct tool_run t = {.method = "GET", .pattern = "/v1/sandboxes"};
    return run_route(req, &t, args, ret);
}

static int tool_sandbox_delete(struct request *req, json_t *args, json_t **ret)
{
    struct tool_run t = {"DELETE", SBX,
                         .empty = json_pack("{s:b,s:O}", "deleted", 1, "sandboxId",
                                            json_object_get(args, "sandboxId"))};
    return run_route(req, &t, args, ret);
}

static int tool_exec(struct request *req, json_t *args, json_t **ret)
{
    struct tool_run t = {.method = "POST",
                         .pattern = SBX "/exec-sync",
                         .with_body = true,
                         .timeout_is_result = true};
    return run_route(req, &t, args, ret);
}

static int tool_read_file(struct request *req, json_t *args, json_t **ret)
{
    struct tool_run t = {.own = &read_file_route};
    int r = run_route(req, &t, args, ret);
    if (r < 0 || json_is_true(json_object_get(*ret, "isError")))
        return r;
    /* the text block is the file's text itself */
    json_t *content = json_object_get(json_object_get(*ret, "structuredContent"), "content");
    json_t *block = json_array_get(json_object_get(*ret, "content"), 0);
    return json_object_set(block, "text", content) == 0 ? 0 : -ENOMEM;
}

static int tool_write_file(struct request *req, json_t *args, json_t **ret)
{
    struct tool_run t = {
        "PUT", SBX "/files/*", .raw_member = "content",
        .empty = json_pack("{s:O,s:I}", "path", json_object_get(args, "path"), "size",
                           (json_int_t)json_string_length(json_object_get(args, "content")))};
    return run_route(req, &t, args, ret);
}

static int tool_edit_file(struct request *req, json_t *args, json_t **ret)
{
    struct tool_run t = {.method = "PATCH", .pattern = SBX "/files/*", .with_body = true};
    return run_route(req, &t, args, ret);
}

static int tool_list_tree(struct request *req, json_t *args, json_t **ret)
{
    struct tool_run t = {
        .method = "GET", .pattern = SBX "/tree", .query = {"prefix"}, .wrap = "entries"};
    return run_route(req, &t, args, ret);
}

static int tool_commits(struct request *req, json_t *args, json_t **ret)
{
    struct tool_run t = {.method = "GET", .pattern = SBX "/commits", .query = {"limit"}};
    return run_route(req, &t, args, ret);
}

static int tool_diff(struct request *req, json_t *args, json_t **ret)
{
    /* path is a query parameter here, not a capture */
    struct tool_run t = {.method = "GET", .pattern = SBX "/diff", .query = {"from", "to", "path"}};
    return run_route(req, &t, args, ret);
}

static int tool_restore(struct request *req, json_t *args, json_t **ret)
{
    struct tool_run t = {.method = "POST", .pattern = SBX "/restore", .with_body = true};
    return run_route(req, &t, args, ret);
}

static int tool_fork(struct request *req, json_t *args, json_t **ret)
{
    struct tool_run t = {.method = "POST", .pattern = SBX "/fork", .with_body = true};
    return run_route(req, &t, args, ret);
}

struct tool {
    const char *name;
    const char *description;
    const char *input;  /* inputSchema, JSON text */
    const char *output; /* outputSchema, JSON text */
    int (*run)(struct request *req, json_t *args, json_t **ret);
};

static const struct tool tools[] = {
    {"sandbox_create",
     "Create a persistent Linux sandbox (bash, coreutils; optionally Python and Node.js) and "
     "return its record; use its id as sandboxId in the other tools. Files and history persist "
     "until sandbox_delete.",
     S_INPUT("\"name\":{\"type\":\"string\",\"description\":\"A label for the sandbox.\"},"
             "\"python\":{\"type\":\"boolean\",\"description\":\"Provide python3.\"},"
             "\"javascript\":{\"type\":\"boolean\",\"description\":\"Provide node.\"},"
             "\"network\":{\"type\":[\"boolean\",\"object\"],\"description\":\"Outbound network "
             "access: false (default), true, or a policy object (see the API docs).\"}",
             ""),
     S_RECORD, tool_sandbox_create},
    {"sandbox_list", "List your sandboxes, newest first.", S_INPUT("", ""),
     "{\"type\":\"object\",\"properties\":{\"sandboxes\":{\"type\":\"array\",\"items\":" S_RECORD
     "}},\"required\":[\"sandboxes\"]}",
     tool_sandbox_list},
    {"sandbox_delete", "Delete a sandbox with its files and history. Cannot be undone.",
     S_INPUT(S_SANDBOX_ID, "\"sandboxId\""),
     "{\"type\":\"object\",\"properties\":{\"deleted\":{\"type\":\"boolean\"},\"sandboxId\":{"
     "\"type\":\"string\"}},\"required\":[\"deleted\",\"sandboxId\"]}",
     tool_sandbox_delete},
    {"exec",
     "Run a bash script in the sandbox and return its stdout, stderr and exitCode. A non-zero "
     "exitCode is a normal result. File changes persist and make a new version. The working "
     "directory defaults to the sandbox's (/home/user); the time limit to 30 s.",
     S_INPUT(S_SANDBOX_ID ",\"script\":{\"type\":\"string\",\"description\":\"The bash script.\"},"
                          "\"cwd\":{\"type\":\"string\",\"description\":\"Absolute working "
                          "directory.\"},\"timeoutMs\":{\"type\":\"integer\",\"minimum\":1,"
                          "\"maximum\":300000,\"description\":\"Time limit in ms (default "
                          "30000).\"}",
             "\"sandboxId\",\"script\""),
     "{\"type\":\"object\",\"properties\":{\"stdout\":{\"type\":\"string\"},\"stderr\":{\"type\":"
     "\"string\"},\"exitCode\":{\"type\":\"integer\"},\"exitSignal\":{\"type\":[\"string\","
     "\"null\"]},\"timedOut\":{\"type\":\"boolean\"},\"durationMs\":{\"type\":\"integer\"},"
     "\"execId\":{\"type\":\"string\"},\"stdoutTruncated\":{\"type\":\"boolean\"},"
     "\"stderrTruncated\":{\"type\":\"boolean\"}},\"required\":[\"stdout\",\"stderr\","
     "\"exitCode\",\"execId\",\"durationMs\",\"timedOut\"]}",
     tool_exec},
    {"read_file", "Read a UTF-8 text file of the sandbox. Very large files are cut (truncated).",
     S_INPUT(S_SANDBOX_ID "," S_PATH("Absolute path, e.g. /home/user/notes.txt."),
             "\"sandboxId\",\"path\""),
     "{\"type\":\"object\",\"properties\":{\"path\":{\"type\":\"string\"},\"content\":{\"type\":"
     "\"string\"},\"size\":{\"type\":\"integer\"},\"truncated\":{\"type\":\"boolean\"}},"
     "\"required\":[\"path\",\"content\",\"size\",\"truncated\"]}",
     tool_read_file},
    {"write_file",
     "Create or replace a file with the given text (parent directories are created). Makes a new "
     "version.",
     S_INPUT(S_SANDBOX_ID "," S_PATH("Absolute path of the file.") ",\"content\":{\"type\":"
                                                                   "\"string\"}",
             "\"sandboxId\",\"path\",\"content\""),
     "{\"type\":\"object\",\"properties\":{\"path\":{\"type\":\"string\"},\"size\":{\"type\":"
     "\"integer\"}},\"required\":[\"path\",\"size\"]}",
     tool_write_file},
    {"edit_file",
     "Replace the exact text oldString with newString in a text file. oldString must occur "
     "exactly once unless replaceAll is true; add surrounding lines to make it unique.",
     S_INPUT(S_SANDBOX_ID "," S_PATH("Absolute path of the file.") ",\"oldString\":{\"type\":"
                                                                   "\"string\"},\"newString\":{"
                                                                   "\"type\":\"string\"},"
                                                                   "\"replaceAll\":{\"type\":"
                                                                   "\"boolean\"}",
             "\"sandboxId\",\"path\",\"oldString\",\"newString\""),
     "{\"type\":\"object\",\"properties\":{\"path\":{\"type\":\"string\"},\"replacements\":{"
     "\"type\":\"integer\"},\"size\":{\"type\":\"integer\"}},\"required\":[\"path\","
     "\"replacements\",\"size\"]}",
     tool_edit_file},
    {"list_tree",
     "List the files and directories of the sandbox under a prefix (default /), recursively, "
     "sorted by path, with kind, size, mode and mtime.",
     S_INPUT(S_SANDBOX_ID ",\"prefix\":{\"type\":\"string\",\"description\":\"Directory to list, "
                          "e.g. /home/user.\"}",
             "\"sandboxId\""),
     "{\"type\":\"object\",\"properties\":{\"entries\":{\"type\":\"array\",\"items\":{\"type\":"
     "\"object\",\"properties\":{\"path\":{\"type\":\"string\"},\"kind\":{\"type\":\"string\"},"
     "\"size\":{\"type\":\"integer\"}}}}},\"required\":[\"entries\"]}",
     tool_list_tree},
    {"commits",
     "List the sandbox's versions (commits), newest first: what made each (exec, file write, "
     "restore, ...) and how many paths it changed.",
     S_INPUT(S_SANDBOX_ID ",\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":1000,"
                          "\"description\":\"How many (default 100).\"}",
             "\"sandboxId\""),
     "{\"type\":\"object\",\"properties\":{\"commits\":{\"type\":\"array\",\"items\":{\"type\":"
     "\"object\",\"properties\":{\"version\":{\"type\":\"integer\"},\"kind\":{\"type\":\"string\"}"
     "}}},\"next\":{\"type\":[\"integer\",\"null\"]}},\"required\":[\"commits\"]}",
     tool_commits},
    {"diff",
     "List the paths that differ between two versions of the sandbox (added, modified, "
     "deleted), optionally only under path.",
     S_INPUT(S_SANDBOX_ID ",\"from\":{\"type\":\"integer\",\"minimum\":0},\"to\":{\"type\":"
                          "\"integer\",\"minimum\":0}," S_PATH("Only this path and below."),
             "\"sandboxId\",\"from\",\"to\""),
     "{\"type\":\"object\",\"properties\":{\"from\":{\"type\":\"integer\"},\"to\":{\"type\":"
     "\"integer\"},\"paths\":" S_PATHS "},\"required\":[\"from\",\"to\",\"paths\"]}",
     tool_diff},
    {"restore",
     "Make the sandbox's files what they were at a past version. This is a new version itself, "
     "so it can be undone by restoring the version before it.",
     S_INPUT(S_SANDBOX_ID ",\"version\":{\"type\":\"integer\",\"minimum\":0}",
             "\"sandboxId\",\"version\""),
     "{\"type\":\"object\",\"properties\":{\"version\":{\"type\":\"integer\"},\"restoredFrom\":{"
     "\"type\":\"integer\"}},\"required\":[\"version\",\"restoredFrom\"]}",
     tool_restore},
    {"fork",
     "Copy a sandbox (at its current or a past version) into a new sandbox and return the new "
     "one's record. The source is not changed.",
     S_INPUT(S_SANDBOX_ID ",\"version\":{\"type\":\"integer\",\"minimum\":0},\"name\":{\"type\":"
                          "\"string\"}",
             "\"sandboxId\""),
     S_RECORD, tool_fork},
};
#define N_TOOLS (sizeof(tools) / sizeof(tools[0]))

json_t *mcp_tools_list(void)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < N_TOOLS; i++) {
        json_error_t jerr;
        json_t *in = json_loads(tools[i].input, 0, &jerr);
        json_t *out = json_loads(tools[i].output, 0, &jerr);
        json_t *t = in && out
                        ? json_pack("{s:s,s:s,s:o,s:o}", "name", tools[i].name, "description",
                                    tools[i].description, "inputSchema", in, "outputSchema", out)
                        : NULL;
        if (!t || json_array_append_new(arr, t) < 0) {
            if (!t) {
                json_decref(in);
                json_decref(out);
            }
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

int mcp_tools_call(struct request *req, const char *name, json_t *args, json_t **ret)
{
    const struct tool *t = NULL;
    for (size_t i = 0; i < N_TOOLS && !t; i++)
        if (strcmp(tools[i].name, name) == 0)
            t = &tools[i];
    if (!t)
        return -ENOENT;
    json_error_t jerr;
    json_t *schema = json_loads(t->input, 0, &jerr);
    if (!schema)
        return -ENOMEM;
    err_clear();
    int r = check_args(t->name, schema, args);
    json_decref(schema);
    if (r < 0) {
        *ret = result_error(r);
        return *ret ? 0 : -ENOMEM;
    }
    *ret = NULL;
    r = t->run(req, args, ret);
    if (r < 0 && !*ret)
        *ret = result_error(r);
    return *ret ? 0 : -ENOMEM;
}

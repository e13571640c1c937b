/*
 * http — the HTTP layer on libmicrohttpd: one request struct per request, the route table
 * dispatch, bodies (buffered JSON with a cap, or streamed to the route) and responses (JSON,
 * empty, streamed). Error responses are built in exactly one place (http_reply_error) from the
 * error table of util/err.h.
 *
 * Threading: libmicrohttpd runs one thread per connection; all callbacks of a request run on its
 * connection's thread, so a route may block (exec, lock waits) without stalling other clients.
 * Request-scoped data hangs off struct request and is freed in one place when the request
 * completes (including client aborts), which also releases any sandbox lock it holds.
 */
#ifndef SQLFS_API_HTTP_H
#define SQLFS_API_HTTP_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

#include "app.h"
#include "store/store.h"
#include "util/buf.h"

struct err_info;
struct request;
struct lock_ref;
struct idem;

enum body_mode {
    BODY_NONE = 0,   /* a body is read and ignored (at most 64 KiB) */
    BODY_JSON = 1,   /* buffered up to the route's cap, parsed before the handler */
    BODY_STREAM = 2, /* handed to route->on_data piece by piece (the route checks its size) */
    BODY_RAW = 3,    /* buffered up to the route's cap, not parsed before the handler
                      * (exec's text/plain form; the auth routes parse after their rate check) */
};

/* The body cap of the auth routes: their JSON ({"sub", "tenant", "expiresIn"}) is under 4 KiB
 * even with every character escaped. */
#define HTTP_AUTH_BODY_MAX (8 * 1024)

struct route {
    const char *method;  /* "GET", "POST", ... */
    const char *pattern; /* e.g. "/v1/sandboxes/:id/files/..." (see server.c) */
    enum body_mode body;
    bool auth; /* needs a valid bearer token */
    /* BODY_STREAM: called before the first body byte; may reject (negative error). */
    int (*on_begin)(struct request *req);
    /* BODY_STREAM: one piece of the body. */
    int (*on_data)(struct request *req, const char *data, size_t len);
    /* Called once the whole body is in (or streamed); sets a response or returns an error. */
    int (*handler)(struct request *req);
    /* Optional: the request ended (completed or aborted); release route state. */
    void (*on_done)(struct request *req, bool completed);
    /* BODY_JSON / BODY_RAW: the largest body taken, bytes; 0 = MAX_REQUEST_BODY_BYTES. A
     * Content-Length above it is refused before any body byte is read; a chunked body is
     * refused once it passes it, and never buffered beyond it. */
    size_t body_max;
    /* Takes an Idempotency-Key (api/idem.h): the route changes the sandbox :id and answers with
     * http_reply_json, http_reply_empty or outreply_send. */
    bool idempotent;
    /* Optional: whether the route exists on this server (NULL: always). A route that does not
     * is matched by nothing: its path answers 404 NOT_FOUND like any unknown one. */
    bool (*available)(const struct app *app);
};

/* The answer of a request the server makes to itself (api/inner.h), captured instead of sent.
 * Such a request reads no header (http_header answers NULL) and its query parameters from
 * `query`; the reply builders fill the rest. */
struct capture_allowance;

struct http_inner {
    json_t *query; /* query parameters: an object of strings (borrowed), or NULL */
    /* the output an exec of the inner request may keep, per stream (borrowed); NULL: the
     * route's own, MAX_EXEC_OUTPUT_BYTES */
    struct capture_allowance *allowance;
    unsigned status; /* the answer's status; 0 while none was set */
    struct buf body; /* its body: JSON text, or empty */
    bool opaque;     /* the answer was a response whose body cannot be captured (a stream) */
};

/* The longest X-Request-Id taken from a client; what the server makes is 32 hex digits. */
#define HTTP_REQUEST_ID_MAX 128

struct request {
    struct app *app;
    struct MHD_Connection *conn;
    const struct route *route;
    const char *method;
    char *url;        /* raw URL path, still percent-encoded */
    char *sandbox_id; /* the ":id" capture, validated UUID, or NULL */
    char *rest;       /* the "*" capture, percent-decoded (may be NULL) */
    size_t rest_len;  /* bytes in rest (it may not be a C string if it held %00) */
    char *tenant;     /* authenticated owner */
    char *sub;
    int64_t started_ns; /* monotonic start, for the log line */
    struct buf body;    /* BODY_JSON / BODY_RAW */
    json_t *json;       /* BODY_JSON parsed object */
    int64_t body_bytes; /* bytes of body seen */
    bool chunked;       /* the body comes with Transfer-Encoding: chunked (length unknown) */
    int pending_error;  /* an error found while reading the body, answered at the end */
    int64_t drained;    /* chunked body bytes dropped after pending_error */
    size_t parse_peak;  /* most memory the parse of the body held (jsonv_parse_peak) */
    bool begun;         /* on_begin ran */
    struct MHD_Response *response; /* set by the handler */
    unsigned status;               /* status of response */
    struct lock_ref *lock;         /* a sandbox lock held until the request completes */
    void *route_state;             /* route-owned; freed by route->on_done */
    struct idem *idem;             /* the Idempotency-Key's state, or NULL (api/idem.h) */
    /* The request's id: the client's valid X-Request-Id, else a random one. Sent back in
     * X-Request-Id on every answer and written in the request's log line. */
    char request_id[HTTP_REQUEST_ID_MAX + 1];
    /* The error table's entry of the error answer set as the response (http_mark_error), or
     * NULL: counted in the metrics when the request completes. */
    const struct err_info *error;
    /* Set on a request the server makes to itself (api/inner.h): where its answer goes. */
    struct http_inner *inner;
};

/* Starts the server. -errno with err_set() on failure. */
__attribute__((warn_unused_result)) int http_start(struct app *app, struct MHD_Daemon **ret);
/* Stops accepting new connections (existing ones finish). */
void http_quiesce(struct MHD_Daemon *d);
void http_stop(struct MHD_Daemon *d);

/* ---- helpers for routes ---- */

/* The error of an inner request whose answer did not fit its buffer (r from the buffer):
 * -ERR_PAYLOAD_TOO_LARGE for -EFBIG, else -ENOMEM; with the message set. */
__attribute__((warn_unused_result)) int http_inner_full(struct request *req, int r);

/* A request header, or NULL (always NULL for an inner request). */
const char *http_header(struct request *req, const char *name);
/* A query argument, percent-decoded into *ret (malloc'd; NULL when absent). -EINVAL when it
 * holds a NUL byte, -ENOMEM. */
__attribute__((warn_unused_result)) int http_query(struct request *req, const char *name,
                                                   char **ret);
/* Parses the buffered body into req->json (freed with the request): a JSON object, or NULL
 * when the body is empty (the handler decides). The server calls it before the handler of a
 * BODY_JSON route; a BODY_RAW route may call it itself. -ERR_INVALID_INPUT with a message. */
__attribute__((warn_unused_result)) int http_parse_json_body(struct request *req);
/* The client's address (X-Forwarded-For first hop when TRUST_PROXY is set) into out. */
void http_client_ip(struct request *req, char *out, size_t outlen);
/* The socket of the connection (to notice a client that goes away during a long exec). */
int http_client_fd(struct request *req);

/* Responses: each replaces any previous one. They steal `body` / take ownership of `resp`. */
int http_reply_json(struct request *req, unsigned status, json_t *body);
int http_reply_empty(struct request *req, unsigned status);
int http_reply_response(struct request *req, unsigned status, struct MHD_Response *resp);
/* The error body for `code` (negative), the one builder of every error body and error field
 * set: {"error": message (NULL or "": the code's default message), "code", "details"?: the
 * strings of `details` (a JSON array, stolen; NULL or empty: none), "retryable"}, the code and
 * the retryable flag from util/err.h's table. Any bytes in message are made valid text
 * (jsontext.h). New reference; NULL only when out of memory. */
json_t *api_error_json(int code, const char *message, json_t *details);
/* api_error_json for this thread's error: err_message() and err_detail_*(), any bytes in them
 * made valid text. */
json_t *http_error_json(int code);
/* Sets the error response for `code` with a body made by http_error_json (stolen), possibly on
 * another thread: the status and headers of http_reply_error. Returns 0. */
int http_reply_error_body(struct request *req, int code, json_t *body);
/* Sets an error response for `code` (negative): http_error_json() with its status. */
void http_reply_error(struct request *req, int code);
/* Says that the response just set is the error answer of `info` (an entry of util/err.h's
 * table): http_reply_error_body does it; a route that builds an error answer otherwise
 * (exec-sync's 408 with its output, a replayed answer) calls it after setting the response.
 * Setting another response forgets it. */
void http_mark_error(struct request *req, const struct err_info *info);
/* Adds a header to the current response. */
void http_add_header(struct request *req, const char *name, const char *value);

/* Percent-decodes s[0..len) into a new buffer (may contain NUL bytes; *ret_len says how many). */
__attribute__((warn_unused_result)) int http_unescape(const char *s, size_t len, char **ret,
                                                      size_t *ret_len);

/* The route table (api/routes.c). */
extern const struct route http_routes[];
extern const size_t http_routes_count;

#endif

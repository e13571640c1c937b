/*
 * server — libmicrohttpd wiring: dispatch through the route table, body handling, responses,
 * the per-request log line. See http.h for the contract.
 */
#include "api/http.h"
#include "api/idem.h"
#include "api/jsonv.h"
#include "api/metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/jwt.h"
#include "sandbox/lock.h"
#include "util/compiler.h"
#include "util/err.h"
#include "util/jsontext.h"
#include "util/log.h"
#include "util/rand.h"
#include "util/timeutil.h"

/* Bodies of routes that take none are still drained, but only this much. */
#define IGNORED_BODY_MAX (64 * 1024)
/* After an error found while a chunked body arrives (its length unknown), the server reads and
 * drops at most this much more of it, so that a client writing its whole body before reading
 * still gets the answer when little follows; past it the connection is closed unanswered. A
 * body with a Content-Length is drained to its end (the length was checked against the cap). */
#define BODY_DRAIN_MAX (1024 * 1024)
/* A request whose body buffer or JSON parse held this much returns the freed heap to the kernel
 * when it completes: the C library keeps freed memory of its arenas otherwise. */
#define TRIM_AFTER_BYTES (1024 * 1024)

const char *http_header(struct request *req, const char *name)
{
    if (req->inner)
        return NULL;
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

int http_unescape(const char *s, size_t len, char **ret, size_t *ret_len)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, s, len);
    copy[len] = '\0';
    /* libmicrohttpd's decoder: "%xx" → byte; it returns the decoded length, which may include
     * NUL bytes that the caller must check for. */
    size_t n = MHD_http_unescape(copy);
    *ret = copy;
    if (ret_len)
        *ret_len = n;
    return 0;
}

int http_query(struct request *req, const char *name, char **ret)
{
    *ret = NULL;
    if (req->inner) {
        const char *v = json_string_value(json_object_get(req->inner->query, name));
        if (v && !(*ret = strdup(v)))
            return -ENOMEM;
        return 0;
    }
    const char *raw = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
    if (!raw)
        return 0;
    /* '+' means space in query strings */
    size_t len = strlen(raw);
    char *tmp = strdup(raw);
    if (!tmp)
        return -ENOMEM;
    for (size_t i = 0; i < len; i++)
        if (tmp[i] == '+')
            tmp[i] = ' ';
    char *out;
    size_t outlen;
    int r = http_unescape(tmp, len, &out, &outlen);
    free(tmp);
    if (r < 0)
        return r;
    if (memchr(out, '\0', outlen)) {
        free(out);
        return err_set(-ERR_INVALID_INPUT, "query parameter '%s' contains a NUL byte", name);
    }
    *ret = out;
    return 0;
}

void http_client_ip(struct request *req, char *out, size_t outlen)
{
    if (req->app->cfg->trust_proxy) {
        const char *xff = http_header(req, "X-Forwarded-For");
        if (xff && *xff) {
            size_t n = strcspn(xff, ", ");
            if (n >= outlen)
                n = outlen - 1;
            memcpy(out, xff, n);
            out[n] = '\0';
            return;
        }
    }
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, outlen, "unknown");
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)outlen);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)outlen);
}

int http_client_fd(struct request *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

int http_reply_response(struct request *req, unsigned status, struct MHD_Response *resp)
{
    if (!resp)
        return err_set(-ENOMEM, "out of memory");
    if (req->inner) {
        MHD_destroy_response(resp);
        buf_reset(&req->inner->body);
        req->inner->status = status;
        req->inner->opaque = true;
        return 0;
    }
    if (req->response)
        MHD_destroy_response(req->response);
    req->response = resp;
    req->status = status;
    req->error = NULL;
    /* the builders that can say what the answer is say it after this */
    idem_answer_unknown(req);
    return 0;
}

void http_mark_error(struct request *req, const struct err_info *info)
{
    if (req->response)
        req->error = info;
}

void http_add_header(struct request *req, const char *name, const char *value)
{
    if (req->response)
        MHD_add_response_header(req->response, name, value);
}

int http_inner_full(struct request *req, int r)
{
    if (r != -EFBIG)
        return err_set(-ENOMEM, "out of memory");
    return err_set(-ERR_PAYLOAD_TOO_LARGE,
                   "the answer is larger than the %zu bytes a tool may return; use the HTTP API "
                   "for it",
                   req->inner->body.max);
}

int http_reply_json(struct request *req, unsigned status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!text)
        return err_set(-ENOMEM, "out of memory");
    size_t len = strlen(text);
    if (req->inner) {
        buf_reset(&req->inner->body);
        int r = buf_add(&req->inner->body, text, len);
        free(text);
        if (r < 0)
            return http_inner_full(req, r);
        req->inner->status = status;
        req->inner->opaque = false;
        return 0;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return err_set(-ENOMEM, "out of memory");
    }
    http_reply_response(req, status, r);
    http_add_header(req, "Content-Type", "application/json");
    idem_answer(req, status, "application/json", text, len, false);
    return 0;
}

int http_reply_empty(struct request *req, unsigned status)
{
    if (req->inner) {
        buf_reset(&req->inner->body);
        req->inner->status = status;
        req->inner->opaque = false;
        return 0;
    }
    int r = http_reply_response(req, status,
                                MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT));
    if (r == 0)
        idem_answer(req, status, NULL, NULL, 0, false);
    return r;
}

json_t *api_error_json(int code, const char *message, json_t *details)
{
    const struct err_info *info = err_info(code);
    json_t *o = json_object();
    if (!o) {
        json_decref(details);
        return NULL;
    }
    /* messages embed paths, which may be any bytes: jsontext keeps them valid JSON */
    json_object_set_new(o, "error", jsontext(message && *message ? message : info->message));
    json_object_set_new(o, "code", json_string(info->code));
    if (json_array_size(details) > 0)
        json_object_set(o, "details", details);
    json_decref(details);
    json_object_set_new(o, "retryable", json_boolean(info->retryable));
    return o;
}

json_t *http_error_json(int code)
{
    json_t *d = err_detail_count() > 0 ? json_array() : NULL;
    for (int i = 0; d && i < err_detail_count(); i++)
        json_array_append_new(d, jsontext(err_detail_at(i)));
    return api_error_json(code, err_message(), d);
}

int http_reply_error_body(struct request *req, int code, json_t *body)
{
    const struct err_info *info = err_info(code);
    if (http_reply_json(req, (unsigned)info->status, body) < 0)
        return 0;
    http_mark_error(req, info);
    if (info->retryable)
        idem_answer(req, (unsigned)info->status, NULL, NULL, 0, true);
    if (code == -ERR_COMMIT_IN_DOUBT)
        idem_answer_in_doubt(req);
    /* A retryable 503 (busy, shutting down, short of resources) names when to come back; a
     * 429 sets its own, computed from the window. */
    if (info->status == 503 && info->retryable)
        http_add_header(req, "Retry-After", "1");
    return 0;
}

void http_reply_error(struct request *req, int code)
{
    (void)http_reply_error_body(req, code, http_error_json(code));
}

/* ---- dispatch ---- */

/* Matches url against pattern; on success fills the captures of req. 1 match, 0 no match,
 * negative on a bad capture. */
static int match_route(const char *pattern, const char *url, struct request *req, bool fill)
{
    const char *p = pattern, *u = url;
    while (*p) {
        if (*p == '*') {
            if (fill) {
                int r = http_unescape(u, strlen(u), &req->rest, &req->rest_len);
                if (r < 0)
                    return r;
            }
            return 1;
        }
        if (*p == ':') {
            const char *pe = strchr(p, '/');
            const char *ue = strchr(u, '/');
            size_t ulen = ue ? (size_t)(ue - u) : strlen(u);
            if (ulen == 0)
                return 0;
            if (fill) {
                req->sandbox_id = strndup(u, ulen);
                if (!req->sandbox_id)
                    return -ENOMEM;
            }
            p = pe ? pe : p + strlen(p);
            u += ulen;
            continue;
        }
        if (*p != *u)
            return 0;
        p++;
        u++;
    }
    return *u == '\0' ? 1 : 0;
}

/* Finds the route for (method, url) among the routes available on this server. Sets
 * *ret_route, or returns -ERR_NOT_FOUND / -ERR_METHOD_NOT_ALLOWED (with the allowed methods in
 * allow). */
static int find_route(const struct app *app, const char *method, const char *url,
                      const struct route **ret_route, char *allow, size_t allowlen)
{
    bool path_matched = false;
    allow[0] = '\0';
    for (size_t i = 0; i < http_routes_count; i++) {
        const struct route *r = &http_routes[i];
        if (r->available && !r->available(app))
            continue;
        if (match_route(r->pattern, url, NULL, false) != 1)
            continue;
        if (strcmp(r->method, method) == 0 ||
            (strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0)) {
            *ret_route = r;
            return 0;
        }
        path_matched = true;
        if (!strstr(allow, r->method)) {
            size_t n = strlen(allow);
            snprintf(allow + n, allowlen - n, "%s%s", n ? ", " : "", r->method);
        }
    }
    if (path_matched)
        return err_set(-ERR_METHOD_NOT_ALLOWED,
                       "method %s is not allowed on this route (allowed: %s)", method, allow);
    return err_set(-ERR_NOT_FOUND, "no such route: %s %s", method, url);
}

/* A token signed with AUTH_SECRET_PREVIOUS was accepted: counted (GET /v1/status), and the
 * first one since start is logged, so the operator knows clients still hold such tokens. */
static void previous_secret_used(struct app *app, const struct jwt_claims *c)
{
    if (atomic_fetch_add(&app->previous_secret_uses, 1) != 0)
        return;
    json_t *f = json_object();
    json_object_set_new(f, "sub", jsontext(c->sub));
    json_object_set_new(f, "tenant", jsontext(c->tenant));
    log_json("warn",
             "key rotation: accepted a token signed with AUTH_SECRET_PREVIOUS (grace period); "
             "remove AUTH_SECRET_PREVIOUS once clients hold tokens signed with AUTH_SECRET",
             f);
}

static int authenticate(struct request *req)
{
    const char *h = http_header(req, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0 || !h[7])
        return err_set(-ERR_AUTH_REQUIRED,
                       "missing or malformed Authorization header; expected 'Bearer <token>'");
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    struct app *app = req->app;
    const struct jwt_key keys[2] = {{app->auth_secret, app->auth_secret_len},
                                    {app->auth_secret_previous, app->auth_secret_previous_len}};
    struct jwt_claims claims;
    size_t key = 0;
    int r = jwt_verify_keys(keys, app->auth_secret_previous ? 2 : 1, tok, strlen(tok),
                            time_now_ms() / 1000, &claims, &key);
    if (r < 0)
        return r;
    int64_t cutoff = app->cfg->tokens_not_before_s;
    if (cutoff > 0 && claims.iat < cutoff) {
        jwt_claims_release(&claims);
        return err_set(-ERR_AUTH_INVALID,
                       "token revoked: it was issued before the server's cut-off "
                       "(TOKENS_NOT_BEFORE); get a new token");
    }
    if (key == 1)
        previous_secret_used(app, &claims);
    req->tenant = strdup(claims.tenant);
    req->sub = strdup(claims.sub);
    jwt_claims_release(&claims);
    if (!req->tenant || !req->sub)
        return -ENOMEM;
    return 0;
}

/* The headers that say where a request ends, counted over every header line. */
struct framing {
    unsigned content_length;    /* Content-Length lines */
    unsigned transfer_encoding; /* Transfer-Encoding lines */
    unsigned host;              /* Host lines */
    const char *te;             /* the (first) Transfer-Encoding value */
    bool space_in_name;         /* a header name holding a space or tab */
};

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind UNUSED, const char *key,
                                     const char *value)
{
    struct framing *f = cls;
    if (strpbrk(key, " \t"))
        f->space_in_name = true;
    else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
        f->content_length++;
    else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        if (f->transfer_encoding++ == 0)
            f->te = value;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0)
        f->host++;
    return MHD_YES;
}

static int framing_error(const char *what)
{
    err_set(-ERR_INVALID_INPUT, "%s", what);
    err_detail("the connection is closed after this answer");
    return -ERR_INVALID_INPUT;
}

/* RFC 9112 §6.3: a request whose end two HTTP parsers (a proxy in front and this server) could
 * see in different places is refused, before any body byte is read. An answer given now makes
 * libmicrohttpd close the connection after it, so nothing that follows these headers is ever
 * read as a request. libmicrohttpd itself reads only the first Content-Length line, and reads a
 * body with any Transfer-Encoding other than "chunked" until the connection closes. */
static int check_framing(struct request *req, const char *version)
{
    struct framing f = {0};
    (void)MHD_get_connection_values(req->conn, MHD_HEADER_KIND, count_framing, &f);
    bool http10 = strcmp(version, MHD_HTTP_VERSION_1_0) == 0;
    if (f.space_in_name)
        return framing_error("a header name must not contain spaces or tabs (none before the ':')");
    if (f.host > 1)
        return framing_error("the request has more than one Host header");
    if (f.host == 0 && !http10)
        return framing_error("an HTTP/1.1 request needs a Host header");
    if (f.content_length > 1)
        return framing_error("the request has more than one Content-Length header");
    if (f.transfer_encoding && f.content_length)
        return framing_error("the request has both Content-Length and Transfer-Encoding; send "
                             "one of them");
    if (f.transfer_encoding > 1)
        return framing_error("the request has more than one Transfer-Encoding header");
    if (f.transfer_encoding && http10)
        return framing_error("an HTTP/1.0 request must not use Transfer-Encoding");
    if (f.transfer_encoding && strcasecmp(f.te, "chunked") != 0) {
        err_set(-ERR_NOT_IMPLEMENTED,
                "Transfer-Encoding '%.40s' is not supported: send the body "
                "with Content-Length, or with 'Transfer-Encoding: chunked'",
                f.te);
        err_detail("the connection is closed after this answer");
        return -ERR_NOT_IMPLEMENTED;
    }
    req->chunked = f.transfer_encoding == 1;
    return 0;
}

/* The most body bytes the route takes; -1 for a streamed body, whose route checks its own. */
static int64_t body_cap(const struct request *req)
{
    switch (req->route->body) {
    case BODY_NONE:
        return IGNORED_BODY_MAX;
    case BODY_STREAM:
        return -1;
    case BODY_JSON:
    case BODY_RAW:
        break;
    }
    if (req->route->body_max)
        return (int64_t)req->route->body_max;
    return req->app->cfg->max_request_body_bytes;
}

/* 413 for a body over the route's cap, naming the cap and what sets it. */
static int body_too_large(const struct request *req)
{
    int64_t cap = body_cap(req);
    err_set(-ERR_PAYLOAD_TOO_LARGE, "request body is larger than %lld bytes", (long long)cap);
    if (req->route->body == BODY_NONE)
        err_detail("this route takes no body");
    else if (req->route->body_max)
        err_detail("this route takes a body of at most %lld bytes", (long long)cap);
    else
        err_detail("MAX_REQUEST_BODY_BYTES=%lld", (long long)cap);
    return -ERR_PAYLOAD_TOO_LARGE;
}

/* Checks done once the headers are in, before any body byte is read. */
static int begin_request(struct request *req, const char *method, const char *url,
                         const char *version)
{
    int r = check_framing(req, version);
    if (r < 0)
        return r;
    char allow[128];
    r = find_route(req->app, method, url, &req->route, allow, sizeof(allow));
    if (r < 0) {
        http_reply_error(req, r);
        if (r == -ERR_METHOD_NOT_ALLOWED)
            http_add_header(req, "Allow", allow);
        return r;
    }
    if (atomic_load(&req->app->shutting_down))
        return err_set(-ERR_SHUTTING_DOWN, "server is shutting down");
    r = match_route(req->route->pattern, url, req, true);
    if (r < 0)
        return r;
    if (req->route->auth) {
        r = authenticate(req);
        if (r < 0)
            return r;
    }
    if (req->sandbox_id && !uuid_valid(req->sandbox_id))
        return err_set(-ERR_SANDBOX_NOT_FOUND, "sandbox not found");
    const char *cl = http_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    int64_t cap = body_cap(req);
    if (cl && cap >= 0) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno || *end || n > (unsigned long long)cap)
            return body_too_large(req);
    }
    if (req->route->body == BODY_JSON || req->route->body == BODY_RAW)
        req->body.max = (size_t)cap;
    if (req->route->idempotent && (r = idem_begin(req)) < 0)
        return r;
    if (req->route->body == BODY_STREAM && req->route->on_begin) {
        r = req->route->on_begin(req);
        if (r < 0)
            return r;
    }
    req->begun = true;
    return 0;
}

static int take_body(struct request *req, const char *data, size_t len)
{
    req->body_bytes += (int64_t)len;
    idem_body(req, data, len);
    switch (req->route->body) {
    case BODY_STREAM:
        return req->route->on_data(req, data, len);
    case BODY_JSON:
    case BODY_RAW: {
        int r = buf_add(&req->body, data, len);
        if (r == -EFBIG)
            return body_too_large(req);
        return r;
    }
    default:
        if (req->body_bytes > IGNORED_BODY_MAX)
            return body_too_large(req);
        return 0;
    }
}

int http_parse_json_body(struct request *req)
{
    if (req->body.len == 0) {
        req->json = NULL; /* absent body: the handler decides */
        return 0;
    }
    int r = jsonv_parse_object(req->body.data, req->body.len, &req->json);
    req->parse_peak = jsonv_parse_peak();
    return r;
}

/* Sets the connection's inactivity timeout: REQUEST_TIMEOUT_S while the server waits for the
 * client's bytes (headers, a body, the next request), CONNECTION_TIMEOUT_S while it answers
 * (a streamed exec may be silent between keep-alives, a download may be read slowly). */
static void set_timeout(struct MHD_Connection *conn, int64_t seconds)
{
    (void)MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)seconds);
}

static enum MHD_Result queue(struct request *req)
{
    if (!req->response)
        http_reply_error(req, err_set(-ERR_INTERNAL, "internal error"));
    http_add_header(req, "X-Request-Id", req->request_id);
    idem_finish(req);
    set_timeout(req->conn, req->app->cfg->connection_timeout_s);
    return MHD_queue_response(req->conn, req->status, req->response);
}

static enum MHD_Result fail(struct request *req, int code)
{
    if (!(req->response && req->status >= 400))
        http_reply_error(req, code);
    if (code == -ERR_RATE_LIMITED || err_info(code)->status == 429) {
        /* the route added Retry-After itself */
    }
    return queue(req);
}

/* A client's X-Request-Id is kept when it is 1 to HTTP_REQUEST_ID_MAX characters of
 * [A-Za-z0-9._-]: it goes into a header and a log line as it is. */
static bool request_id_valid(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok || n == HTTP_REQUEST_ID_MAX)
            return false;
    }
    return n > 0;
}

/* The request's id: the client's when valid (request_id_valid), else 16 random bytes in hex.
 * Should the kernel refuse randomness, a process-wide sequence number still tells requests
 * apart. */
static void set_request_id(struct request *req)
{
    const char *given = http_header(req, "X-Request-Id");
    if (given && request_id_valid(given)) {
        snprintf(req->request_id, sizeof(req->request_id), "%s", given);
        return;
    }
    uint8_t raw[16];
    if (rand_bytes(raw, sizeof(raw)) == 0) {
        hex_encode(raw, sizeof(raw), req->request_id);
        return;
    }
    err_clear();
    static atomic_ullong seq;
    snprintf(req->request_id, sizeof(req->request_id), "seq-%llu",
             (unsigned long long)atomic_fetch_add(&seq, 1));
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    struct app *app = cls;
    struct request *req = *con_cls;
    if (!req) {
        req = calloc(1, sizeof(*req));
        if (!req)
            return MHD_NO;
        *con_cls = req;
        req->app = app;
        req->conn = conn;
        req->method = method;
        req->url = strdup(url);
        req->started_ns = time_mono_ns();
        req->body = (struct buf)BUF_INIT(0);
        set_request_id(req);
        atomic_fetch_add(&app->active_requests, 1);
        /* Many clients write the headers and the body of a request separately; with Nagle on
         * their side the body waits for our ACK of the headers, which the kernel delays by up
         * to 40 ms. Acknowledge now. */
        int one = 1, fd = http_client_fd(req);
        if (fd >= 0 && setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one)) < 0)
            err_clear();
        err_clear();
        int r = req->url ? begin_request(req, method, url, version) : -ENOMEM;
        if (r < 0)
            return fail(req, r);
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->pending_error == 0) {
            err_clear();
            int r = take_body(req, upload_data, n);
            if (r < 0) {
                req->pending_error = r;
                /* keep the message for the final answer */
                http_reply_error(req, r);
            }
        } else if (req->chunked) {
            req->drained += (int64_t)n;
            if (req->drained > BODY_DRAIN_MAX)
                return MHD_NO; /* closes the connection (see BODY_DRAIN_MAX) */
        }
        return MHD_YES;
    }
    if (req->pending_error) /* an error while reading the body: answer it now */
        return queue(req);
    if (req->response) /* already answered (an error at the start) */
        return MHD_YES;
    err_clear();
    int r = 0;
    if (req->route->body == BODY_JSON)
        r = http_parse_json_body(req);
    if (r == 0)
        r = idem_claim(req);
    if (r == 0)
        r = req->route->handler(req);
    if (r < 0)
        return fail(req, r);
    return queue(req);
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct app *app = cls;
    struct request *req = *con_cls;
    if (!req)
        return;
    *con_cls = NULL;
    bool ok = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK;
    if (req->route && req->route->on_done)
        req->route->on_done(req, ok);
    locks_release(req->lock);
    idem_free(req);
    int64_t duration_ns = time_mono_ns() - req->started_ns;
    metrics_request(app->metrics, req->route, req->method, req->status, duration_ns, req->error);
    if (!app->cfg->quiet) {
        json_t *f = json_object();
        json_object_set_new(f, "method", jsontext(req->method));
        json_object_set_new(f, "path", jsontext(req->url));
        json_object_set_new(f, "status", json_integer(req->status));
        /* milliseconds with microseconds */
        json_object_set_new(f, "durationMs", json_real((double)(duration_ns / 1000) / 1000.0));
        json_object_set_new(f, "requestId", json_string(req->request_id));
        if (!ok)
            json_object_set_new(f, "aborted", json_true());
        log_json("info", "request", f);
    }
    if (req->response)
        MHD_destroy_response(req->response);
    bool trim = req->body.cap + req->parse_peak >= TRIM_AFTER_BYTES;
    json_decref(req->json);
    buf_release(&req->body);
    free(req->url);
    free(req->sandbox_id);
    free(req->rest);
    free(req->tenant);
    free(req->sub);
    free(req);
    /* the connection now waits for its next request, or closes */
    set_timeout(conn, app->cfg->request_timeout_s);
#ifdef __GLIBC__
    if (trim)
        (void)malloc_trim(0);
#endif
    atomic_fetch_sub(&app->active_requests, 1);
}

/* Keeps the URL as sent: routes decode each capture themselves, so "%00" or "%2F" cannot
 * change how a path is split or be silently truncated. */
static size_t keep_escaped(void *cls UNUSED, struct MHD_Connection *c UNUSED, char *s)
{
    return strlen(s);
}

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls UNUSED, const char *fmt,
                                                          va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_json("debug", msg, NULL);
}

int http_start(struct app *app, struct MHD_Daemon **ret)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ITC;
    if (inet_pton(AF_INET, app->cfg->listen_host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)app->cfg->port);
    } else if (inet_pton(AF_INET6, app->cfg->listen_host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)app->cfg->port);
        flags |= MHD_USE_IPv6;
    } else {
        return err_set(-EINVAL, "listen address '%s' is not an IPv4 or IPv6 address",
                       app->cfg->listen_host);
    }
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)app->cfg->port, NULL, NULL, access_cb, app, MHD_OPTION_SOCK_ADDR, &ss,
        MHD_OPTION_NOTIFY_COMPLETED, completed_cb, app, MHD_OPTION_UNESCAPE_CALLBACK, keep_escaped,
        NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned)app->cfg->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)app->cfg->max_connections_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)app->cfg->request_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_THREAD_STACK_SIZE,
        (size_t)(1024 * 1024), MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    if (!d)
        return err_set(-EADDRINUSE, "cannot listen on %s:%d (address in use or not available)",
                       app->cfg->listen_host, app->cfg->port);
    *ret = d;
    return 0;
}

void http_quiesce(struct MHD_Daemon *d)
{
    MHD_socket s = MHD_quiesce_daemon(d);
    if (s != MHD_INVALID_SOCKET)
        close(s);
}

void http_stop(struct MHD_Daemon *d)
{
    if (d)
        MHD_stop_daemon(d);
}

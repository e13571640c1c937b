/*
 * client — libcurl under the command-line client (see client.h).
 */
#include "client/client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define CONNECT_TIMEOUT_S 10L

int client_say(int status, const char *fmt, ...)
{
    fputs("sqlfs: ", stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return status;
}

int client_open(struct client *c, const char *url, const char *token)
{
    *c = (struct client){0};
    if (!url || !*url)
        url = CLIENT_DEFAULT_URL;
    if (!token || !*token)
        return client_say(CLIENT_EXIT_USAGE,
                          "no token: set SQLFS_TOKEN or pass --token (an operator mints one "
                          "with `sqlfs token --sub NAME`, or POST /v1/auth/bootstrap)");
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    c->url = strndup(url, n);
    if (!c->url || asprintf(&c->auth, "Authorization: Bearer %s", token) < 0) {
        c->auth = NULL;
        return client_say(CLIENT_EXIT_FAILURE, "out of memory");
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(c->curl = curl_easy_init()))
        return client_say(CLIENT_EXIT_FAILURE, "cannot initialise libcurl");
    return CLIENT_EXIT_OK;
}

void client_close(struct client *c)
{
    if (c->curl) {
        curl_easy_cleanup(c->curl);
        curl_global_cleanup();
    }
    free(c->url);
    free(c->auth);
    *c = (struct client){0};
}

/* The state of one transfer, for the write callback. */
struct xfer {
    CURL *curl;                       /* the handle, to learn the status */
    const struct client_request *req; /* the request (its sink) */
    struct client_reply *rep;         /* where the status and a buffered body go */
    bool sink_failed;                 /* the sink refused: it said why */
    bool too_big;                     /* a buffered body passed CLIENT_MAX_REPLY_BYTES */
};

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nmemb;
    if (x->rep->status == 0)
        (void)curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &x->rep->status);
    if (x->req->sink && x->rep->status / 100 == 2) {
        if (x->req->sink(x->req->sink_ctx, p, n) < 0) {
            x->sink_failed = true;
            return 0;
        }
        return n;
    }
    if (buf_add(&x->rep->body, p, n) < 0) {
        x->too_big = true;
        return 0;
    }
    return n;
}

/* Sets the method and the body of the request on the (reset) handle. */
static void set_body(CURL *h, const struct client_request *req)
{
    bool post = strcmp(req->method, "POST") == 0;
    bool put = strcmp(req->method, "PUT") == 0;
    if (req->upload && put) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READDATA, req->upload);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->upload_len);
    } else if (req->upload) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_READDATA, req->upload);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->upload_len);
    } else if (req->body || post || put) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "");
    }
    if (!post && !(put && req->upload))
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
}

int client_send(struct client *c, const struct client_request *req, struct client_reply *ret)
{
    CURL *h = c->curl;
    char *url = NULL;
    if (asprintf(&url, "%s%s", c->url, req->path) < 0)
        return client_say(CLIENT_EXIT_FAILURE, "out of memory");
    struct curl_slist *headers = curl_slist_append(NULL, c->auth);
    /* no "Expect: 100-continue" round trip before an upload */
    struct curl_slist *more = headers ? curl_slist_append(headers, "Expect:") : NULL;
    char ctype[128];
    if (more && req->content_type) {
        snprintf(ctype, sizeof(ctype), "Content-Type: %s", req->content_type);
        more = curl_slist_append(more, ctype);
    }
    if (!more) {
        curl_slist_free_all(headers);
        free(url);
        return client_say(CLIENT_EXIT_FAILURE, "out of memory");
    }
    headers = more;
    ret->status = 0;
    buf_reset(&ret->body);
    struct xfer x = {.curl = h, .req = req, .rep = ret};
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "sqlfs-cli");
    set_body(h, req);
    CURLcode cc = curl_easy_perform(h);
    curl_slist_free_all(headers);
    int rc = CLIENT_EXIT_OK;
    if (cc == CURLE_OK) {
        (void)curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &ret->status);
    } else if (x.sink_failed) {
        rc = CLIENT_EXIT_FAILURE;
    } else if (x.too_big) {
        rc = client_say(CLIENT_EXIT_FAILURE, "the answer of %s is larger than %zu bytes", url,
                        CLIENT_MAX_REPLY_BYTES);
    } else {
        rc = client_say(CLIENT_EXIT_FAILURE, "cannot reach %s: %s", url,
                        errbuf[0] ? errbuf : curl_easy_strerror(cc));
    }
    free(url);
    return rc;
}

int client_fail(const struct client_reply *rep)
{
    json_t *j = json_loadb(buf_cstr(&rep->body), rep->body.len, 0, NULL);
    const char *msg = j ? json_string_value(json_object_get(j, "error")) : NULL;
    if (msg)
        client_say(CLIENT_EXIT_FAILURE, "%s (HTTP %ld)", msg, rep->status);
    else
        client_say(CLIENT_EXIT_FAILURE, "the server answered HTTP %ld%s%.200s", rep->status,
                   rep->body.len ? ": " : "", buf_cstr(&rep->body));
    json_decref(j);
    return CLIENT_EXIT_FAILURE;
}

int client_json(struct client *c, const char *method, const char *path, json_t *body, json_t **ret)
{
    *ret = NULL;
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (body && !text)
        return client_say(CLIENT_EXIT_FAILURE, "out of memory");
    struct client_request req = {
        .method = method,
        .path = path,
        .content_type = text ? "application/json" : NULL,
        .body = text,
        .body_len = text ? strlen(text) : 0,
    };
    struct client_reply rep = CLIENT_REPLY_INIT;
    int rc = client_send(c, &req, &rep);
    free(text);
    if (rc == CLIENT_EXIT_OK && rep.status / 100 != 2)
        rc = client_fail(&rep);
    if (rc == CLIENT_EXIT_OK && rep.body.len > 0) {
        json_error_t e;
        *ret = json_loadb(rep.body.data, rep.body.len, 0, &e);
        if (!*ret)
            rc = client_say(CLIENT_EXIT_FAILURE, "the server's answer is not JSON: %s", e.text);
    }
    buf_release(&rep.body);
    return rc;
}

int client_print_json(const json_t *v)
{
    if (json_dumpf(v, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY) < 0 || putchar('\n') == EOF ||
        fflush(stdout) != 0)
        return client_say(CLIENT_EXIT_FAILURE, "cannot write the answer: %s", strerror(errno));
    return CLIENT_EXIT_OK;
}

int client_escape(struct buf *b, const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char ch = *p;
        bool plain = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                     (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '~' ||
                     (keep_slash && ch == '/');
        int r = plain ? buf_add(b, p, 1) : buf_add(b, (char[]){'%', hex[ch >> 4], hex[ch & 15]}, 3);
        if (r < 0)
            return r;
    }
    return 0;
}

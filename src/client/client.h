/*
 * client — HTTP for the command-line client (`sqlfs sandbox`, `exec`, `cp`, ...): one libcurl
 * handle talking to one sqlfs server with one bearer token, and the way its failures reach the
 * user.
 *
 * Like cli.c, this layer talks to a terminal: it prints its messages on stderr ("sqlfs: ...") and
 * its functions return process exit statuses (CLIENT_EXIT_*) rather than -errno, since every
 * failure ends the command. A network failure names the server's URL; an API error prints the
 * JSON error body's "error" message.
 *
 * Ownership: struct client owns its strings and its curl handle (client_close frees them); a
 * reply owns its body (client_reply_release). Not thread-safe: one command, one thread.
 */
#ifndef SQLFS_CLIENT_CLIENT_H
#define SQLFS_CLIENT_CLIENT_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "util/buf.h"

#define CLIENT_EXIT_OK 0
#define CLIENT_EXIT_FAILURE 1 /* an API error, a network failure, a local I/O error */
#define CLIENT_EXIT_USAGE 2   /* bad arguments or configuration */

#define CLIENT_DEFAULT_URL "http://127.0.0.1:8080"
/* The most of an answer held in memory (JSON answers, error bodies). */
#define CLIENT_MAX_REPLY_BYTES ((size_t)256 << 20)

struct client {
    char *url;  /* the server's base URL, without a trailing '/' */
    char *auth; /* "Authorization: Bearer <token>" */
    bool json;  /* --json: commands print the API's JSON answers */
    void *curl; /* the CURL handle, reused so that requests share a connection */
};

/* Receives a 2xx answer's body as it arrives. A negative return aborts the transfer (the sink
 * has printed why). */
typedef int (*client_sink_fn)(void *ctx, const char *p, size_t n);

struct client_request {
    const char *method;       /* "GET", "POST", "PUT", "DELETE" */
    const char *path;         /* "/v1/...", percent-encoded (client_escape) */
    const char *content_type; /* of the body; NULL without one */
    const char *body;         /* an in-memory body, or NULL */
    size_t body_len;          /* its length */
    FILE *upload;             /* or a body read from this file (from its current offset) */
    long long upload_len;     /* the bytes of `upload` to send */
    client_sink_fn sink;      /* a 2xx body goes here instead of into the reply; NULL: buffered */
    void *sink_ctx;           /* the sink's first argument */
};

struct client_reply {
    long status;     /* the HTTP status */
    struct buf body; /* the body, unless a sink took it (error bodies are always here) */
};

#define CLIENT_REPLY_INIT                                                                          \
    {                                                                                              \
        0, BUF_INIT(CLIENT_MAX_REPLY_BYTES)                                                        \
    }

/* Sets up *c for `url` (NULL: CLIENT_DEFAULT_URL) and `token` (NULL or empty: a usage error
 * saying how to get one). CLIENT_EXIT_OK or a failure status (message printed); on failure *c
 * needs only client_close. */
int client_open(struct client *c, const char *url, const char *token);
/* Frees what client_open made; NULL-safe members, idempotent. */
void client_close(struct client *c);

/* Sends one request and waits for the whole answer, whatever its status. CLIENT_EXIT_OK with
 * ret->status set, or CLIENT_EXIT_FAILURE (no answer, or a sink refused: message printed). */
int client_send(struct client *c, const struct client_request *req, struct client_reply *ret);

/* Prints the API error of a non-2xx reply ("sqlfs: <error>") and returns CLIENT_EXIT_FAILURE. */
int client_fail(const struct client_reply *rep);

/* One JSON exchange: `body` (NULL: none) sent as application/json; a 2xx answer parsed into
 * *ret (NULL for an empty body such as a 204's; caller json_decref's). CLIENT_EXIT_OK, or
 * CLIENT_EXIT_FAILURE with the API error or the parse failure printed. */
int client_json(struct client *c, const char *method, const char *path, json_t *body, json_t **ret);

/* Prints `v` on stdout as indented JSON and a newline. CLIENT_EXIT_OK or CLIENT_EXIT_FAILURE. */
int client_print_json(const json_t *v);

/* Appends s percent-encoded for a URL: every byte but the unreserved ones (RFC 3986) and, when
 * keep_slash, '/'. 0 or a negative errno. */
__attribute__((warn_unused_result)) int client_escape(struct buf *b, const char *s,
                                                      bool keep_slash);

/* Prints "sqlfs: " and the message on stderr; returns `status`. */
__attribute__((format(printf, 2, 3))) int client_say(int status, const char *fmt, ...);

#endif

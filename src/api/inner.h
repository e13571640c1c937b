/*
 * inner — requests the server makes to itself: a route of the table (or a route-shaped handler)
 * run on the connection's thread for an authenticated outer request, with its answer captured
 * (struct http_inner) instead of sent. The MCP endpoint (api/mcp.c) runs its tools this way, so
 * that a tool and its /v1 route share validation, locking, limits and error messages.
 *
 * An inner request carries the outer one's owner (tenant, sub), request id and connection (an
 * exec notices the client going away), no headers, the query parameters and the body it is
 * given. It is complete when inner_call returns: its on_done has run and any sandbox lock it took
 * is released. Not for routes that answer with a stream (their answer is marked opaque).
 */
#ifndef SQLFS_API_INNER_H
#define SQLFS_API_INNER_H

#include <jansson.h>
#include <stddef.h>

#include "api/http.h"

struct inner_call {
    const struct route *route; /* what runs: an entry of http_routes or a route of its own */
    const char *sandbox_id;    /* the ":id" capture, or NULL */
    const char *rest;          /* the "*" capture (a sandbox path), or NULL */
    json_t *body;              /* the body (borrowed; sent as JSON text), or NULL */
    const char *raw;           /* or the body's bytes as they are (raw_len of them) */
    size_t raw_len;
    json_t *query; /* query parameters, an object of strings (borrowed), or NULL */
};

/* The route of the table for (method, pattern), or NULL (a programmer error). */
const struct route *inner_route(const char *method, const char *pattern);

/* Initialises an answer (no allocation) and frees what it holds. */
void inner_answer_init(struct http_inner *ans);
void inner_answer_release(struct http_inner *ans);

/* Runs `call` for `outer` into `ans` (initialised): its answer, error answers included (the
 * API's error body with its status, built as for any request). Returns 0, or -ENOMEM when not
 * even an error answer could be made. */
__attribute__((warn_unused_result)) int
inner_call(struct request *outer, const struct inner_call *call, struct http_inner *ans);

#endif

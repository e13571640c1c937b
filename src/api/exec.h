/* exec — request parsing and response shaping shared by the exec routes (docs/API.md "Exec"). */
#ifndef SQLFS_API_EXEC_H
#define SQLFS_API_EXEC_H

#include <jansson.h>

#include "api/http.h"
#include "api/outreply.h"
#include "exec/engine.h"

/* A parsed exec request: params borrow from `owned` and the request body. */
struct exec_request {
    struct exec_params params;
    json_t *owned; /* the parsed JSON body, NULL for text/plain */
    char *cwd;     /* normalised cwd */
};

/* Parses a JSON or text/plain exec body (415 for other content types), validating every field. */
__attribute__((warn_unused_result)) int exec_request_parse(struct request *req,
                                                           struct exec_request *x);
void exec_request_release(struct exec_request *x);
/* timeoutMs from the JSON body, or from ?timeoutMs= when body is NULL. */
__attribute__((warn_unused_result)) int exec_parse_timeout(json_t *body, struct request *req,
                                                           int64_t *ret);
/* 503 EBUSY while REPLY_MEMORY_BYTES is spent (replies not read yet hold it all): checked by
 * exec-sync and batch before their exec. 0 or -ERR_BUSY with a message. */
__attribute__((warn_unused_result)) int exec_reply_admit(struct request *req);
/* Appends one exec's result to a reply: {<fields' members>,"stdoutTruncated",
 * "stderrTruncated","stdout":"…","stderr":"…"}, taking `fields` whatever happens, and the
 * storage of the output's buffers as far as it got (capture_release frees the rest). The
 * capture counts in the reply's budget. 0 or -ENOMEM. */
__attribute__((warn_unused_result)) int exec_reply_result(struct outreply *rep, json_t *fields,
                                                          struct capture *output);
/* What an exec route leaves for after its reply (exec_params.rest_after_reply, the ret_rest of
 * exec_engine_run_batch): the record the exec ran with, kept alive, and the exec's remaining
 * work. A route keeps it in req->route_state and names route_exec_rest_done as its on_done,
 * which runs the work before the sandbox's lock is released. */
struct exec_route_rest {
    struct sandbox_rec rec;
    struct exec_session *rest;
};

/* Takes the sandbox lock an exec needs: shared when read_only, else exclusive. */
__attribute__((warn_unused_result)) int exec_open_sandbox(struct request *req, bool read_only,
                                                          struct sandbox_rec *rec);

#endif

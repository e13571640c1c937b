/*
 * idem — Idempotency-Key on the routes that change a sandbox (docs/API.md "Idempotency"): a
 * request carrying the header is recorded as pending (store_idem_begin) before its handler runs;
 * its answer (status, Content-Type, body up to IDEMPOTENCY_MAX_BODY_BYTES) is stored once the
 * handler has set it; a retry with the same key on the same sandbox gets that answer again,
 * with `Idempotent-Replayed: true`, and runs nothing.
 *
 * A request is identified by the SHA-256 of its method, URL path, query arguments,
 * Content-Type, sandbox and body bytes, hashed as they arrive (a streamed upload is never held
 * whole for it); the same key with another hash is 422 IDEMPOTENCY_MISMATCH.
 *
 * The server calls, for a route marked idempotent, in this order on the request's thread:
 * idem_begin (headers in: checks the key), idem_body (each piece of the body), idem_claim
 * (before the handler), idem_finish (the response is set) and idem_free (the request ended).
 * The reply builders (http_reply_json, http_reply_empty, http_reply_error_body,
 * outreply_send) hand the answer to idem_answer / idem_answer_reply as they set it.
 */
#ifndef SQLFS_API_IDEM_H
#define SQLFS_API_IDEM_H

#include <stdbool.h>
#include <stddef.h>

struct request;
struct outreply;

/* How long a key is remembered, and the most a sandbox keeps (the oldest go first); the answers
 * a sandbox keeps are bounded in bytes too (IDEMPOTENCY_MAX_STORED_BYTES). */
#define IDEM_TTL_MS (24LL * 3600 * 1000)
#define IDEM_MAX_KEYS 10000
/* Keys past IDEM_TTL_MS are forgotten when a key is added to their sandbox, and this many of
 * any sandbox's, the oldest, when a key is added to any: a sandbox no longer used does not keep
 * its answers for ever, and no call does more than a bounded piece of that work. */
#define IDEM_SWEEP_MAX 16
/* A pending key not renewed for this long was left by a server that died while running its
 * request, and a retry may claim it afresh. A live request renews its claim (idem_renew) once it
 * holds the sandbox's lock and, for an exec, once it has its exec slot and before its commit:
 * what runs between two renewals (the longest exec or batch, 300 s, the exec's set-up, a commit)
 * stays well within it. A request whose claim was taken over meanwhile stops at its next
 * renewal and changes nothing. */
#define IDEM_PENDING_TTL_MS (15LL * 60 * 1000)
/* The longest key: 1..255 printable ASCII characters. */
#define IDEM_KEY_MAX 255
/* The longest exec id idem_exec_id keeps (an exec's id is EXEC_ID_LEN, exec/engine.h). */
#define IDEM_EXEC_ID_MAX 64

/* Headers in: reads Idempotency-Key (none: nothing to do) and starts the request's hash. 0, or
 * -ERR_INVALID_INPUT for a malformed key, -ENOMEM. */
__attribute__((warn_unused_result)) int idem_begin(struct request *req);
/* One piece of the body, into the hash. */
void idem_body(struct request *req, const char *data, size_t len);
/* Before the handler: 0 to run it (the key is now pending), 1 when the request has been answered
 * (a replay), or a negative error to answer: -ERR_IDEMPOTENCY_MISMATCH,
 * -ERR_IDEMPOTENCY_IN_PROGRESS, -ERR_IDEMPOTENCY_ANSWER_UNAVAILABLE, -ERR_SANDBOX_NOT_FOUND,
 * a store error. */
__attribute__((warn_unused_result)) int idem_claim(struct request *req);
/* Renews the request's claim on its pending key (IDEM_PENDING_TTL_MS starts again): 0 (also
 * without a claim), -ERR_IDEMPOTENCY_IN_PROGRESS when the claim was lost (a retry took the key
 * over: the request must change nothing), or a store error. Thread-safe between claim and
 * finish (an exec's threads call it). */
__attribute__((warn_unused_result)) int idem_renew(struct request *req);
/* idem_renew as an exec's keepalive (exec_params.keepalive, with the request as its arg). */
__attribute__((warn_unused_result)) int idem_keepalive(void *req);
/* The response is set: stores it for the key. A 5xx or retryable answer is not stored: the key
 * is forgotten, so that a retry runs afresh; but one whose commit is in doubt
 * (idem_answer_in_doubt) is kept as IDEM_IN_DOUBT, so that a retry hears the request may have
 * been applied instead of running it again. Once per request; nothing without a claim. */
void idem_finish(struct request *req);
/* The request ended: forgets a key still pending (its handler never answered), frees the
 * state. */
void idem_free(struct request *req);

/* The answer being set: `status`, `content_type` (NULL: none) and body[0..len). retryable:
 * the answer is an error a retry may not get. */
void idem_answer(struct request *req, unsigned status, const char *content_type, const char *body,
                 size_t len, bool retryable);
/* The answer being set is the reply o (before outreply_send takes it). */
void idem_answer_reply(struct request *req, unsigned status, const struct outreply *o);
/* A response set some other way: the answer cannot be kept (a retry hears that the request was
 * applied). */
void idem_answer_unknown(struct request *req);
/* The error answer just set (-ERR_COMMIT_IN_DOUBT) says that the request's commit may or may not
 * have been applied. */
void idem_answer_in_doubt(struct request *req);
/* The request ran exec `exec_id`: a retry that cannot get the answer is pointed at its record. */
void idem_exec_id(struct request *req, const char *exec_id);

#endif

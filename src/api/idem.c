/* Idempotency-Key (api/idem.h; docs/API.md "Idempotency"). */
#include "api/idem.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/http.h"
#include "api/outreply.h"
#include "util/err.h"
#include "util/log.h"
#include "util/timeutil.h"

enum idem_phase {
    PHASE_HASHING = 0, /* headers and body go into the hash */
    PHASE_CLAIMED,     /* the key is pending for this request: its answer is owed */
    PHASE_ENDED,       /* finished, replayed or refused: nothing more to store */
};

struct idem {
    char key[IDEM_KEY_MAX + 1];
    uint8_t claim[IDEM_CLAIM_LEN]; /* PHASE_CLAIMED: the claim on the pending record */
    EVP_MD_CTX *md;                /* the request's hash, until the claim */
    enum idem_phase phase;
    /* the answer set last (idem_answer*) */
    bool answered;  /* an answer was set */
    bool unknown;   /* it cannot be kept (too large, or set some other way) */
    bool retryable; /* it is an error a retry may not get */
    bool in_doubt;  /* it is an error whose commit may or may not have been applied */
    unsigned status;
    const char *ctype;                  /* static: "application/json" or NULL */
    struct buf body;                    /* at most IDEMPOTENCY_MAX_BODY_BYTES */
    char exec_id[IDEM_EXEC_ID_MAX + 1]; /* the exec the request ran, or "" (idem_exec_id) */
};

static bool key_valid(const char *k)
{
    size_t n = strlen(k);
    if (n < 1 || n > IDEM_KEY_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (k[i] < 0x21 || k[i] > 0x7e)
            return false;
    return true;
}

/* One field of the hash: its length first, so that no two requests hash the same fields
 * alike. */
static void hash_field(EVP_MD_CTX *md, const char *s, size_t n)
{
    uint64_t len = n;
    (void)EVP_DigestUpdate(md, &len, sizeof(len));
    if (n)
        (void)EVP_DigestUpdate(md, s, n);
}

static enum MHD_Result hash_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value)
{
    (void)kind;
    hash_field(cls, key, strlen(key));
    hash_field(cls, value ? value : "", value ? strlen(value) : 0);
    return MHD_YES;
}

int idem_begin(struct request *req)
{
    const char *k = http_header(req, "Idempotency-Key");
    if (!k)
        return 0;
    if (!key_valid(k))
        return err_set(-ERR_INVALID_INPUT,
                       "header Idempotency-Key must be 1 to %d printable ASCII characters",
                       IDEM_KEY_MAX);
    struct idem *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    snprintf(d->key, sizeof(d->key), "%s", k);
    /* an answer is kept whole or not at all: no larger than what its sandbox may hold */
    int64_t cap = req->app->cfg->idempotency_max_body_bytes;
    int64_t stored = req->app->cfg->idempotency_max_stored_bytes;
    d->body = (struct buf)BUF_INIT((size_t)(stored > 0 && stored < cap ? stored : cap));
    req->idem = d;
    d->md = EVP_MD_CTX_new();
    if (!d->md || EVP_DigestInit_ex(d->md, EVP_sha256(), NULL) != 1)
        return err_set(-ENOMEM, "out of memory");
    const char *ctype = http_header(req, "Content-Type");
    hash_field(d->md, req->method, strlen(req->method));
    hash_field(d->md, req->url, strlen(req->url));
    hash_field(d->md, req->sandbox_id ? req->sandbox_id : "",
               req->sandbox_id ? strlen(req->sandbox_id) : 0);
    hash_field(d->md, ctype ? ctype : "", ctype ? strlen(ctype) : 0);
    (void)MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, hash_arg, d->md);
    return 0;
}

void idem_body(struct request *req, const char *data, size_t len)
{
    if (req->idem && req->idem->md && len)
        (void)EVP_DigestUpdate(req->idem->md, data, len);
}

/* The error table's entry of a stored error answer (its JSON body's "code"), or NULL. */
static const struct err_info *stored_error(const struct idem_rec *rec)
{
    if (rec->status < 400 || !rec->body_len)
        return NULL;
    json_t *o = json_loadb(rec->body, rec->body_len, 0, NULL);
    const char *code = json_string_value(json_object_get(o, "code"));
    const struct err_info *info = code ? err_info_by_code(code) : NULL;
    json_decref(o);
    return info;
}

/* The stored answer as the response, marked replayed. */
static int replay(struct request *req, const struct idem_rec *rec)
{
    char *copy = NULL;
    if (rec->body_len) {
        if (!(copy = malloc(rec->body_len)))
            return -ENOMEM;
        memcpy(copy, rec->body, rec->body_len);
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(rec->body_len, copy, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(copy);
        return -ENOMEM;
    }
    int r = http_reply_response(req, (unsigned)rec->status, resp);
    if (r < 0)
        return r;
    if (rec->content_type)
        http_add_header(req, "Content-Type", rec->content_type);
    http_add_header(req, "Idempotent-Replayed", "true");
    http_mark_error(req, stored_error(rec));
    return 1;
}

/* What a retry hears when the first request's commit was in doubt: it may have been applied,
 * and where to look. */
static int in_doubt_error(struct request *req, const struct idem *d, const struct idem_rec *rec)
{
    const char *sid = req->sandbox_id;
    if (rec->body_len)
        return err_set(-ERR_IDEMPOTENCY_ANSWER_UNAVAILABLE,
                       "the request with Idempotency-Key '%s' failed (status %d) because the "
                       "database connection was lost while committing: it may or may not have "
                       "been applied, so it is not run again. Its exec's record is GET "
                       "/v1/sandboxes/%s/execs/%.*s; it was applied if GET /v1/sandboxes/%s/"
                       "commits lists a commit with that execId",
                       d->key, rec->status, sid, (int)rec->body_len, rec->body, sid);
    return err_set(-ERR_IDEMPOTENCY_ANSWER_UNAVAILABLE,
                   "the request with Idempotency-Key '%s' failed (status %d) because the "
                   "database connection was lost while committing: it may or may not have been "
                   "applied, so it is not run again; GET /v1/sandboxes/%s/commits lists what "
                   "was committed",
                   d->key, rec->status, sid);
}

int idem_claim(struct request *req)
{
    struct idem *d = req->idem;
    if (!d)
        return 0;
    uint8_t hash[32];
    unsigned hlen = 0;
    if (EVP_DigestFinal_ex(d->md, hash, &hlen) != 1 || hlen != sizeof(hash))
        return err_set(-EIO, "cannot hash the request");
    EVP_MD_CTX_free(d->md);
    d->md = NULL;
    d->phase = PHASE_ENDED;
    struct idem_opts o = {
        .now_ms = time_now_ms(),
        .ttl_ms = IDEM_TTL_MS,
        .pending_ttl_ms = IDEM_PENDING_TTL_MS,
        .max_keys = IDEM_MAX_KEYS,
        .sweep_max = IDEM_SWEEP_MAX,
    };
    struct idem_rec rec;
    int r = store_idem_begin(req->app->store, req->sandbox_id, req->tenant, req->sub, d->key, hash,
                             &o, &rec);
    if (r == -ENOENT)
        return err_set(-ERR_SANDBOX_NOT_FOUND, "sandbox not found: %s", req->sandbox_id);
    if (r < 0)
        return r;
    if (rec.state == IDEM_NEW) {
        memcpy(d->claim, rec.claim, sizeof(d->claim));
        d->phase = PHASE_CLAIMED;
        return 0;
    }
    if (memcmp(rec.hash, hash, sizeof(hash)) != 0)
        r = err_set(-ERR_IDEMPOTENCY_MISMATCH,
                    "Idempotency-Key '%s' was used for a different request (another method, "
                    "path, query, content type, sandbox or body); use a new key",
                    d->key);
    else if (rec.state == IDEM_PENDING)
        r = err_set(-ERR_IDEMPOTENCY_IN_PROGRESS,
                    "the first request with Idempotency-Key '%s' is still running; retry "
                    "shortly",
                    d->key);
    else if (rec.state == IDEM_TOO_LARGE && rec.body_len)
        r = err_set(-ERR_IDEMPOTENCY_ANSWER_UNAVAILABLE,
                    "the request with Idempotency-Key '%s' was applied (status %d), but its "
                    "answer was larger than IDEMPOTENCY_MAX_BODY_BYTES and was not kept; read "
                    "its record with GET /v1/sandboxes/%s/execs/%.*s",
                    d->key, rec.status, req->sandbox_id, (int)rec.body_len, rec.body);
    else if (rec.state == IDEM_IN_DOUBT)
        r = in_doubt_error(req, d, &rec);
    else if (rec.state == IDEM_TOO_LARGE)
        r = err_set(-ERR_IDEMPOTENCY_ANSWER_UNAVAILABLE,
                    "the request with Idempotency-Key '%s' was applied (status %d), but its "
                    "answer was larger than IDEMPOTENCY_MAX_BODY_BYTES and was not kept",
                    d->key, rec.status);
    else
        r = replay(req, &rec);
    if (r == -ERR_IDEMPOTENCY_ANSWER_UNAVAILABLE && rec.state == IDEM_TOO_LARGE)
        err_detail("IDEMPOTENCY_MAX_BODY_BYTES=%lld",
                   (long long)req->app->cfg->idempotency_max_body_bytes);
    idem_rec_release(&rec);
    return r;
}

void idem_answer(struct request *req, unsigned status, const char *content_type, const char *body,
                 size_t len, bool retryable)
{
    struct idem *d = req->idem;
    if (!d || d->phase != PHASE_CLAIMED)
        return;
    d->answered = true;
    d->status = status;
    d->ctype = content_type;
    d->retryable = retryable;
    d->in_doubt = false;
    buf_reset(&d->body);
    d->unknown = len && buf_add(&d->body, body, len) < 0;
}

void idem_answer_reply(struct request *req, unsigned status, const struct outreply *o)
{
    struct idem *d = req->idem;
    if (!d || d->phase != PHASE_CLAIMED)
        return;
    d->answered = true;
    d->status = status;
    d->ctype = "application/json";
    d->retryable = false;
    d->in_doubt = false;
    d->unknown = outreply_render(o, &d->body) < 0;
}

void idem_answer_unknown(struct request *req)
{
    struct idem *d = req->idem;
    if (!d || d->phase != PHASE_CLAIMED)
        return;
    d->answered = true;
    d->unknown = true;
    d->retryable = false;
    d->in_doubt = false;
    d->status = req->status;
}

void idem_answer_in_doubt(struct request *req)
{
    struct idem *d = req->idem;
    if (d && d->phase == PHASE_CLAIMED && d->answered)
        d->in_doubt = true;
}

void idem_exec_id(struct request *req, const char *exec_id)
{
    struct idem *d = req->idem;
    if (d && exec_id)
        snprintf(d->exec_id, sizeof(d->exec_id), "%s", exec_id);
}

int idem_renew(struct request *req)
{
    struct idem *d = req->idem;
    if (!d || d->phase != PHASE_CLAIMED)
        return 0;
    int r = store_idem_renew(req->app->store, req->sandbox_id, d->key, d->claim, time_now_ms());
    if (r == -ENOENT)
        return err_set(-ERR_IDEMPOTENCY_IN_PROGRESS,
                       "this request waited more than %lld minutes to run, and a later request "
                       "with Idempotency-Key '%s' took the key over; that one runs instead of "
                       "this one: retry to get its answer",
                       IDEM_PENDING_TTL_MS / 60000, d->key);
    return r;
}

int idem_keepalive(void *req)
{
    return idem_renew(req);
}

/* Forgets the pending key (a retry runs afresh); nothing when the claim was lost. */
static void forget(struct request *req, struct idem *d)
{
    if (store_idem_abort(req->app->store, req->sandbox_id, d->key, d->claim) < 0) {
        log_msg("warn", "idempotency: cannot forget a pending key: %s",
                err_message() ? err_message() : "storage error");
        err_clear();
    }
}

void idem_finish(struct request *req)
{
    struct idem *d = req->idem;
    if (!d || d->phase != PHASE_CLAIMED)
        return;
    d->phase = PHASE_ENDED;
    unsigned status = d->answered ? d->status : req->status;
    bool keep = d->answered && (d->in_doubt || (status < 500 && !d->retryable));
    if (!keep) { /* nothing was applied: a retry runs afresh */
        forget(req, d);
        return;
    }
    int r;
    if (d->unknown || d->in_doubt) {
        /* the exec's id, when there is one, says where its outcome can be read */
        const char *xid = d->exec_id[0] ? d->exec_id : NULL;
        if (!xid && req->response)
            xid = MHD_get_response_header(req->response, "X-Exec-Id");
        r = store_idem_finish(req->app->store, req->sandbox_id, d->key, d->claim,
                              d->in_doubt ? IDEM_IN_DOUBT : IDEM_TOO_LARGE, (int)status, NULL, xid,
                              xid ? strlen(xid) : 0, req->app->cfg->idempotency_max_stored_bytes);
    } else {
        r = store_idem_finish(req->app->store, req->sandbox_id, d->key, d->claim, IDEM_DONE,
                              (int)status, d->ctype, d->body.data, d->body.len,
                              req->app->cfg->idempotency_max_stored_bytes);
    }
    if (r == -ENOENT) {
        /* the claim was lost (taken as abandoned, and the key claimed again by a retry, whose
         * record is left alone) or the record went with its sandbox */
        log_msg("warn", "idempotency: the answer of a request is not kept: its claim on the key "
                        "was lost");
        err_clear();
    } else if (r < 0) {
        /* the key stays pending until IDEM_PENDING_TTL_MS: retries are refused meanwhile,
         * never run twice */
        log_msg("warn", "idempotency: cannot store the answer of a request: %s",
                err_message() ? err_message() : "storage error");
        err_clear();
    }
    buf_release(&d->body);
}

void idem_free(struct request *req)
{
    struct idem *d = req->idem;
    if (!d)
        return;
    if (d->phase == PHASE_CLAIMED)
        forget(req, d);
    EVP_MD_CTX_free(d->md);
    buf_release(&d->body);
    free(d);
    req->idem = NULL;
}

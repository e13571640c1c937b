/*
 * POST /v1/auth/bootstrap and POST /v1/auth/admin (docs/API.md "Auth"), the X-Admin-Secret
 * check of GET /v1/status and the METRICS_TOKEN check of GET /metrics.
 *
 * Two per-IP limits, shared by these routes (an attacker gains nothing by alternating them):
 *   - failures (AUTH_RATE_LIMIT_*): every attempt is counted before its secret or body is
 *     looked at and refunded once it has passed, so only client errors (403 wrong secret, 400
 *     bad body) stay counted; an IP past the limit gets 429 for every auth request, the right
 *     secret included, until its window ends;
 *   - successes (AUTH_SUCCESS_RATE_LIMIT_*): tokens minted; past it, 429 and no token.
 * A bad bearer token on the admin route is a 401 from the server before the route runs and is
 * not counted here: it is the same check every authenticated route makes. A wrong or missing
 * X-Admin-Secret or METRICS_TOKEN counts as a failure, so that no route is an oracle for
 * guessing a secret faster than the auth routes are. Each 429 is counted in the metrics
 * (sqlfs_rate_limited_total, by the limit that refused).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/jsonv.h"
#include "api/metrics.h"
#include "api/routes.h"
#include "api/wire.h"
#include "auth/jwt.h"
#include "auth/ratelimit.h"
#include "auth/secret.h"
#include "util/err.h"
#include "util/timeutil.h"

/* A 429 with Retry-After, counted under `limit`; returns 0 (the response is set). */
static int reply_limited(struct request *req, enum metrics_limit limit, int64_t retry_after,
                         const char *what)
{
    metrics_rate_limited(req->app->metrics, limit);
    int r = err_set(-ERR_RATE_LIMITED, "too many %s from this address; retry in %lld s", what,
                    (long long)retry_after);
    http_reply_error(req, r);
    char v[32];
    snprintf(v, sizeof(v), "%lld", (long long)(retry_after > 0 ? retry_after : 1));
    http_add_header(req, "Retry-After", v);
    return 0;
}

/* What a valid body asks for; the strings point into req->json. */
struct mint_req {
    const char *sub;    /* 1..256 characters */
    size_t sublen;      /* bytes in sub */
    const char *tenant; /* ^[A-Za-z0-9_.-]{1,64}$, default "default" */
    size_t tlen;        /* bytes in tenant */
    int64_t secs;       /* lifetime in seconds, -1 = never expires */
};

/* Validates the body shared by both routes into *ret; expiresIn defaults to and is bounded by
 * TOKEN_DEFAULT_EXPIRES and TOKEN_MAX_EXPIRES. -ERR_INVALID_INPUT with a message. */
static int parse_body(const struct config *cfg, json_t *body, struct mint_req *ret)
{
    if (!body)
        return err_set(-ERR_INVALID_INPUT, "request body must be a JSON object with 'sub'");
    struct mint_req m = {.tenant = "default", .tlen = 7};
    const char *expires = NULL;
    int r = jsonv_string(body, "sub", 0, &m.sub, &m.sublen);
    if (r < 0)
        return r;
    if (r == 0 || !jwt_sub_valid(m.sub, m.sublen))
        return err_set(-ERR_INVALID_INPUT, "field 'sub' is required: a non-empty string of at "
                                           "most 256 characters");
    r = jsonv_string(body, "tenant", 0, &m.tenant, &m.tlen);
    if (r < 0)
        return r;
    if (!jwt_tenant_valid(m.tenant, m.tlen))
        return err_set(-ERR_INVALID_INPUT, "field 'tenant' must match ^[A-Za-z0-9_.-]{1,64}$");
    r = jsonv_string(body, "expiresIn", 32, &expires, NULL);
    if (r < 0)
        return r;
    if (jwt_lifetime("field 'expiresIn'", expires, cfg->token_default_expires_s,
                     cfg->token_max_expires_s, &m.secs) < 0)
        return -ERR_INVALID_INPUT; /* with jwt_lifetime's message */
    *ret = m;
    return 0;
}

/* Checks the request's secret header (X-Auth-Secret, or X-Admin-Secret for admin). 403 when it
 * is missing or wrong; 500 when ADMIN_SECRET is not set. */
static int check_secret(struct request *req, bool admin)
{
    const char *want = req->app->auth_secret;
    size_t wantlen = req->app->auth_secret_len;
    const char *header = "X-Auth-Secret";
    if (admin) {
        want = req->app->cfg->admin_secret;
        if (!want || !*want)
            return err_set(-ERR_ADMIN_NOT_CONFIGURED,
                           "admin routes are not configured on this server (set ADMIN_SECRET)");
        wantlen = strlen(want);
        header = "X-Admin-Secret";
    }
    const char *given = http_header(req, header);
    if (!given || !secret_equal(given, strlen(given), want, wantlen))
        return err_set(-ERR_FORBIDDEN, "missing or wrong %s header", header);
    return 0;
}

/* Checks the route's secret header, then parses and validates the body. 403 / 400 are the
 * caller's failures; 500 when admin minting is off. */
static int check_attempt(struct request *req, bool admin, struct mint_req *ret)
{
    int r = check_secret(req, admin);
    if (r < 0)
        return r;
    r = http_parse_json_body(req);
    if (r < 0)
        return r;
    return parse_body(req->app->cfg, req->json, ret);
}

/* Mints the token the request asked for and answers 201. */
static int mint(struct request *req, bool admin, const struct mint_req *m)
{
    char *token = NULL;
    int64_t exp_at = 0;
    int64_t now = time_now_ms() / 1000;
    int r = jwt_mint(req->app->auth_secret, req->app->auth_secret_len, m->sub, m->tenant, m->secs,
                     admin, now, &token, &exp_at);
    if (r < 0)
        return r;
    json_t *o = json_object();
    json_object_set_new(o, "token", json_string(token));
    json_object_set_new(o, "sub", json_string(m->sub));
    json_object_set_new(o, "tenant", json_string(m->tenant));
    json_object_set_new(o, "expiresAt", exp_at > 0 ? wire_time_json(exp_at * 1000) : json_null());
    free(token);
    return http_reply_json(req, 201, o);
}

static bool is_client_error(int r)
{
    int status = err_info(r)->status;
    return status >= 400 && status < 500;
}

/* Both routes: the failure limit, the check, the success limit, the token. */
static int auth_request(struct request *req, bool admin)
{
    struct app *app = req->app;
    char ip[64];
    http_client_ip(req, ip, sizeof(ip));
    int64_t now = time_mono_ms(), retry_after = 0;
    if (!ratelimit_hit(app->auth_fail_limit, ip, now, &retry_after))
        return reply_limited(req, METRICS_LIMIT_AUTH_FAILURES, retry_after,
                             "failed token requests");
    struct mint_req m = {0};
    int r = check_attempt(req, admin, &m);
    if (r < 0 && is_client_error(r))
        return r; /* the attempt stays counted as a failure */
    ratelimit_refund(app->auth_fail_limit, ip, now);
    if (r < 0)
        return r;
    if (!ratelimit_hit(app->auth_success_limit, ip, now, &retry_after))
        return reply_limited(req, METRICS_LIMIT_AUTH_TOKENS, retry_after, "tokens minted");
    return mint(req, admin, &m);
}

int route_auth_bootstrap(struct request *req)
{
    return auth_request(req, false);
}

int route_auth_admin(struct request *req)
{
    return auth_request(req, true);
}

/* A secret check of an operator route under the failure limit: route_admin_gate and
 * route_metrics_gate. */
static int gate(struct request *req, int (*check)(struct request *req))
{
    struct app *app = req->app;
    char ip[64];
    http_client_ip(req, ip, sizeof(ip));
    int64_t now = time_mono_ms(), retry_after = 0;
    if (!ratelimit_hit(app->auth_fail_limit, ip, now, &retry_after)) {
        reply_limited(req, METRICS_LIMIT_AUTH_FAILURES, retry_after, "failed token requests");
        return 1;
    }
    int r = check(req);
    if (r < 0 && is_client_error(r))
        return r; /* counted as a failure */
    ratelimit_refund(app->auth_fail_limit, ip, now);
    return r;
}

static int check_admin_secret(struct request *req)
{
    return check_secret(req, true);
}

int route_admin_gate(struct request *req)
{
    return gate(req, check_admin_secret);
}

/* `Authorization: Bearer <METRICS_TOKEN>`, compared in constant time. */
static int check_metrics_token(struct request *req)
{
    const char *want = req->app->cfg->metrics_token;
    const char *h = http_header(req, "Authorization");
    if (!want)
        return err_set(-ERR_NOT_FOUND, "no such route");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0 || !h[7])
        return err_set(-ERR_AUTH_REQUIRED, "missing or malformed Authorization header; expected "
                                           "'Bearer <METRICS_TOKEN>'");
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    if (!secret_equal(tok, strlen(tok), want, strlen(want)))
        return err_set(-ERR_AUTH_INVALID, "wrong metrics token");
    return 0;
}

int route_metrics_gate(struct request *req)
{
    return gate(req, check_metrics_token);
}

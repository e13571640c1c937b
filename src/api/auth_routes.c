/* POST /v1/auth/bootstrap and POST /v1/auth/admin (API.md §2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/jsonv.h"
#include "api/routes.h"
#include "auth/jwt.h"
#include "auth/ratelimit.h"
#include "auth/secret.h"
#include "util/err.h"
#include "util/timeutil.h"

static int rate_limit(struct request *req, int64_t *retry_after)
{
    char ip[64];
    http_client_ip(req, ip, sizeof(ip));
    if (ratelimit_hit(req->app->auth_limit, ip, time_mono_ms(), retry_after))
        return 0;
    return err_set(-ERR_RATE_LIMITED, "too many token requests; retry in %lld s",
                   (long long)*retry_after);
}

/* Validates the body shared by both routes and mints the token. */
static int mint(struct request *req, bool admin)
{
    json_t *body = req->json;
    if (!body)
        return err_set(-ERR_INVALID_INPUT, "request body must be a JSON object with 'sub'");
    const char *sub = NULL, *tenant = "default", *expires = "30d";
    size_t sublen = 0, tlen = 7;
    int r = jsonv_string(body, "sub", 0, &sub, &sublen);
    if (r < 0)
        return r;
    if (r == 0 || !jwt_sub_valid(sub, sublen))
        return err_set(-ERR_INVALID_INPUT, "field 'sub' is required: a non-empty string of at "
                                           "most 256 characters");
    r = jsonv_string(body, "tenant", 0, &tenant, &tlen);
    if (r < 0)
        return r;
    if (!jwt_tenant_valid(tenant, tlen))
        return err_set(-ERR_INVALID_INPUT, "field 'tenant' must match ^[A-Za-z0-9_.-]{1,64}$");
    r = jsonv_string(body, "expiresIn", 32, &expires, NULL);
    if (r < 0)
        return r;
    int64_t secs;
    if (jwt_parse_expires(expires, &secs) < 0)
        return err_set(-ERR_INVALID_INPUT,
                       "field 'expiresIn' must be like \"24h\", \"30d\", \"1y\" or \"never\"");
    char *token = NULL;
    int64_t exp_at = 0;
    int64_t now = time_now_ms() / 1000;
    r = jwt_mint(req->app->auth_secret, req->app->auth_secret_len, sub, tenant, secs, admin, now,
                 &token, &exp_at);
    if (r < 0)
        return r;
    json_t *o = json_object();
    json_object_set_new(o, "token", json_string(token));
    json_object_set_new(o, "sub", json_string(sub));
    json_object_set_new(o, "tenant", json_string(tenant));
    json_object_set_new(o, "expiresAt", exp_at > 0 ? http_time_json(exp_at * 1000) : json_null());
    free(token);
    return http_reply_json(req, 201, o);
}

static int reply_limited(struct request *req, int r, int64_t retry_after)
{
    if (r != -ERR_RATE_LIMITED)
        return r;
    http_reply_error(req, r);
    char v[32];
    snprintf(v, sizeof(v), "%lld", (long long)(retry_after > 0 ? retry_after : 1));
    http_add_header(req, "Retry-After", v);
    return 0;
}

int route_auth_bootstrap(struct request *req)
{
    int64_t retry_after = 0;
    int r = rate_limit(req, &retry_after);
    if (r < 0)
        return reply_limited(req, r, retry_after);
    const char *given = http_header(req, "X-Auth-Secret");
    if (!given || !secret_equal(given, strlen(given), req->app->auth_secret,
                                req->app->auth_secret_len))
        return err_set(-ERR_FORBIDDEN, "missing or wrong X-Auth-Secret header");
    return mint(req, false);
}

int route_auth_admin(struct request *req)
{
    int64_t retry_after = 0;
    int r = rate_limit(req, &retry_after);
    if (r < 0)
        return reply_limited(req, r, retry_after);
    const char *admin = req->app->cfg->admin_secret;
    if (!admin || !*admin)
        return err_set(-ERR_ADMIN_NOT_CONFIGURED,
                       "admin token minting is not configured (set ADMIN_SECRET)");
    const char *given = http_header(req, "X-Admin-Secret");
    if (!given || !secret_equal(given, strlen(given), admin, strlen(admin)))
        return err_set(-ERR_FORBIDDEN, "missing or wrong X-Admin-Secret header");
    return mint(req, true);
}

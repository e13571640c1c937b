/*
 * jwt — HS256 JSON Web Tokens (RFC 7519 / RFC 7515 compact form), the bearer tokens of
 * docs/API.md "Auth".
 *
 * Only HS256 exists here: jwt_verify rejects every other "alg" (including "none") before looking
 * at the claims, checks the HMAC in constant time before trusting anything in the payload, and
 * accepts only canonical unpadded base64url segments, so one token has exactly one spelling.
 *
 * Claims understood: sub (required: non-empty string, at most JWT_SUB_MAX characters, no NUL),
 * tenant (optional, ^[A-Za-z0-9_.-]{1,64}$, default "default"), iat, exp and nbf (NumericDate,
 * seconds; a token is expired once now >= exp and not yet valid while now < nbf), jti (optional
 * string). Other claims are ignored.
 *
 * The secret is the raw bytes of AUTH_SECRET (not hex-decoded), as other HS256 issuers use it.
 *
 * Errors: -ERR_AUTH_INVALID with an err_set() message such as "token expired", "bad signature",
 * "unsupported alg" for anything wrong with a presented token; -EINVAL for a bad argument to the
 * signing side; -ENOMEM. Messages never contain the token or the secret.
 *
 * Ownership: jwt_claims strings are malloc'd and owned by the struct (jwt_claims_release). Tokens
 * returned through ret_token are malloc'd; the caller frees them.
 * Thread-safety: every function is reentrant; no shared state.
 */
#ifndef SQLFS_AUTH_JWT_H
#define SQLFS_AUTH_JWT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest token jwt_verify looks at; longer ones are rejected before any decoding. */
#define JWT_MAX_TOKEN_LEN 8192
/* Longest sub, in Unicode characters. */
#define JWT_SUB_MAX 256
/* Longest tenant, in bytes (its alphabet is ASCII). */
#define JWT_TENANT_MAX 64
/* Longest jti accepted in a token. */
#define JWT_JTI_MAX 256
/* Tenant of tokens that carry none. */
#define JWT_DEFAULT_TENANT "default"

struct jwt_claims {
    char *sub;    /* owner name; never NULL after a successful verify */
    char *tenant; /* the token's tenant, or "default"; never NULL after a successful verify */
    int64_t iat;  /* issued-at, seconds since the epoch; 0 when absent */
    int64_t exp;  /* expiry, seconds since the epoch; 0 = never expires */
    char *jti;    /* token id (admin- and CLI-minted tokens); NULL when absent */
};

#define JWT_CLAIMS_INIT                                                                            \
    {                                                                                              \
        NULL, NULL, 0, 0, NULL                                                                     \
    }

/* Frees the strings of c and resets it to JWT_CLAIMS_INIT. NULL-safe. */
void jwt_claims_release(struct jwt_claims *c);

/* True when s (len bytes) is a valid sub: valid UTF-8 without NUL, 1..JWT_SUB_MAX characters.
 * The HTTP layer uses it for request bodies so tokens it mints always verify. */
bool jwt_sub_valid(const char *s, size_t len);
/* True when s (len bytes) matches ^[A-Za-z0-9_.-]{1,64}$. */
bool jwt_tenant_valid(const char *s, size_t len);

/* Signs `claims` (a JSON object; borrowed, not modified) with header {"alg":"HS256","typ":"JWT"}.
 * The secret must be non-empty. *ret_token is set only on success. -EINVAL, -ENOMEM. */
__attribute__((warn_unused_result)) int jwt_sign(const void *secret, size_t secret_len,
                                                 const json_t *claims, char **ret_token);

/* Verifies token (token_len bytes, need not be NUL-terminated) against secret at time now_s and
 * fills *ret (which must be released by the caller) only on success. -ERR_AUTH_INVALID, -ENOMEM. */
__attribute__((warn_unused_result)) int jwt_verify(const void *secret, size_t secret_len,
                                                   const char *token, size_t token_len,
                                                   int64_t now_s, struct jwt_claims *ret);

/* One key a token may be signed with. */
struct jwt_key {
    const void *secret;
    size_t len;
};

/* jwt_verify for a token that may be signed with any of keys[0..nkeys) (key rotation: the
 * current secret, then the previous one). The signature is compared against every key, so the
 * time taken does not tell which one matched. *ret_key (may be NULL) gets the index of the key
 * that signed it. */
__attribute__((warn_unused_result)) int jwt_verify_keys(const struct jwt_key *keys, size_t nkeys,
                                                        const char *token, size_t token_len,
                                                        int64_t now_s, struct jwt_claims *ret,
                                                        size_t *ret_key);

/* Parses an expiry such as "3600s", "15m", "24h", "30d", "1y" (365 days) or "never" (→ -1) into
 * seconds. The number is a positive decimal without sign or spaces; the total is capped at 100
 * years. -EINVAL with an err_set() message otherwise. */
__attribute__((warn_unused_result)) int jwt_parse_expires(const char *s, int64_t *ret_seconds);

/* Writes a lifetime in seconds (-1 = never) the way jwt_parse_expires reads it, in the largest
 * unit that divides it: "never", "365d", "12h", "90m", "45s". */
void jwt_format_expires(int64_t seconds, char *out, size_t n);

/* The lifetime of a token to mint: `requested` (jwt_parse_expires syntax; NULL = default_s),
 * which must not exceed max_s (-1 = no maximum, "never" allowed). -1 = never. -EINVAL with a
 * message naming `field` (e.g. "field 'expiresIn'") and, when it is too long, the maximum. */
__attribute__((warn_unused_result)) int jwt_lifetime(const char *field, const char *requested,
                                                     int64_t default_s, int64_t max_s,
                                                     int64_t *ret_s);

/* Builds and signs {"sub", "tenant", "iat": now_s, "exp": now_s + expires_s (omitted when
 * expires_s is -1), "jti": random UUID (when with_jti)}. tenant NULL means "default". sub and
 * tenant are validated as jwt_verify would (-EINVAL with a message). *ret_expires_at_s gets the
 * exp claim, or 0 for a token that never expires; ret_expires_at_s may be NULL. */
__attribute__((warn_unused_result)) int jwt_mint(const void *secret, size_t secret_len,
                                                 const char *sub, const char *tenant,
                                                 int64_t expires_s, bool with_jti, int64_t now_s,
                                                 char **ret_token, int64_t *ret_expires_at_s);

#endif

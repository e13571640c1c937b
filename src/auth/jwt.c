/*
 * jwt — HS256 tokens. A token is hostile input until its signature is checked: the header is
 * parsed only to learn it claims HS256, the HMAC over the received "header.payload" bytes is
 * compared in constant time, and only then is the payload parsed and its claims trusted.
 */
#include "auth/jwt.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "util/err.h"
#include "util/rand.h"

#define SHA256_LEN 32
/* Upper bound on any NumericDate we accept (year ~5138); keeps arithmetic far from overflow. */
#define JWT_TIME_MAX 100000000000LL
#define EXPIRES_MAX_S (100LL * 365 * 86400)

static const char jwt_header_b64[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"; /* {"alg":"HS256","typ":"JWT"} */

void jwt_claims_release(struct jwt_claims *c)
{
    if (!c)
        return;
    free(c->sub);
    free(c->tenant);
    free(c->jti);
    *c = (struct jwt_claims)JWT_CLAIMS_INIT;
}

/* ---- base64url (RFC 4648 §5, unpadded) on top of OpenSSL's standard base64 ---- */

static size_t b64url_encoded_len(size_t n)
{
    return (n / 3) * 4 + (n % 3 ? n % 3 + 1 : 0);
}

/* Encodes n bytes into out, which must hold 4*ceil(n/3)+1 bytes; returns the unpadded length. */
static size_t b64url_encode(const uint8_t *in, size_t n, char *out)
{
    int w = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    size_t len = (size_t)w;
    while (len > 0 && out[len - 1] == '=')
        len--;
    out[len] = '\0';
    for (size_t i = 0; i < len; i++) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
    return len;
}

static bool b64url_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/*
 * Decodes an unpadded base64url segment into a malloc'd buffer (NUL-terminated for the JSON
 * parser's convenience). Rejects characters outside the url-safe alphabet (so OpenSSL's leniency
 * about whitespace and '=' never applies), impossible lengths, and non-canonical spellings (unused
 * trailing bits set), which a re-encode comparison detects. -ERR_AUTH_INVALID or -ENOMEM.
 */
static int b64url_decode(const char *in, size_t len, uint8_t **ret, size_t *ret_len)
{
    if (len % 4 == 1)
        return -ERR_AUTH_INVALID;
    for (size_t i = 0; i < len; i++)
        if (!b64url_char(in[i]))
            return -ERR_AUTH_INVALID;
    size_t pad = (4 - len % 4) % 4;
    size_t plen = len + pad;
    char *std = malloc(plen + 1);
    uint8_t *out = malloc(plen / 4 * 3 + 1);
    char *check = malloc(plen + 1);
    int r = -ENOMEM;
    if (!std || !out || !check)
        goto out;
    for (size_t i = 0; i < len; i++)
        std[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
    memset(std + len, '=', pad);
    std[plen] = '\0';
    r = -ERR_AUTH_INVALID;
    int n = plen ? EVP_DecodeBlock(out, (const unsigned char *)std, (int)plen) : 0;
    if (n < 0 || (size_t)n < pad)
        goto out;
    size_t outlen = (size_t)n - pad;
    if (b64url_encode(out, outlen, check) != len || memcmp(check, in, len) != 0)
        goto out;
    out[outlen] = '\0';
    *ret = out;
    *ret_len = outlen;
    out = NULL;
    r = 0;
out:
    free(std);
    free(out);
    free(check);
    return r;
}

/* ---- claim validation ---- */

bool jwt_tenant_valid(const char *s, size_t len)
{
    if (len < 1 || len > JWT_TENANT_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

/* Counts the characters of a UTF-8 string; -1 when it is not well-formed UTF-8 (overlongs,
 * surrogates and values past U+10FFFF included) or holds a NUL. */
static long utf8_chars(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    long count = 0;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        size_t n;
        uint32_t cp;
        if (c == 0)
            return -1;
        if (c < 0x80) {
            n = 1;
            cp = c;
        } else if ((c & 0xe0) == 0xc0) {
            n = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 3;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 4;
            cp = c & 0x07;
        } else {
            return -1;
        }
        if (len - i < n)
            return -1;
        for (size_t k = 1; k < n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return -1;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        static const uint32_t min_for_len[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_for_len[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return -1;
        i += n;
        count++;
    }
    return count;
}

bool jwt_sub_valid(const char *s, size_t len)
{
    if (len == 0 || len > 4 * JWT_SUB_MAX)
        return false;
    long n = utf8_chars(s, len);
    return n >= 1 && n <= JWT_SUB_MAX;
}

/* Reads an optional NumericDate claim. Absent → 0 and *present false. Present but not a
 * number in [0, JWT_TIME_MAX] → -ERR_AUTH_INVALID. Fractions are truncated (RFC 7519 allows them).
 */
static int claim_time(const json_t *payload, const char *name, int64_t *ret, bool *present)
{
    const json_t *v = json_object_get(payload, name);
    *present = v != NULL;
    *ret = 0;
    if (!v)
        return 0;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0 || i > JWT_TIME_MAX)
            return err_set(-ERR_AUTH_INVALID, "invalid %s claim", name);
        *ret = (int64_t)i;
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d < 0 || d > (double)JWT_TIME_MAX)
            return err_set(-ERR_AUTH_INVALID, "invalid %s claim", name);
        *ret = (int64_t)d;
        return 0;
    }
    return err_set(-ERR_AUTH_INVALID, "invalid %s claim", name);
}

static int dup_str(const json_t *v, char **ret)
{
    char *s = strndup(json_string_value(v), json_string_length(v));
    if (!s)
        return -ENOMEM;
    *ret = s;
    return 0;
}

/* Checks the (already authenticated) payload and extracts the claims into *c. */
static int claims_from_payload(const json_t *payload, int64_t now_s, struct jwt_claims *c)
{
    if (!json_is_object(payload))
        return err_set(-ERR_AUTH_INVALID, "malformed token payload");

    int64_t nbf;
    bool has_exp, has_nbf, has_iat;
    int r = claim_time(payload, "exp", &c->exp, &has_exp);
    if (r < 0)
        return r;
    r = claim_time(payload, "nbf", &nbf, &has_nbf);
    if (r < 0)
        return r;
    r = claim_time(payload, "iat", &c->iat, &has_iat);
    if (r < 0)
        return r;
    if (has_exp && now_s >= c->exp)
        return err_set(-ERR_AUTH_INVALID, "token expired");
    if (has_nbf && now_s < nbf)
        return err_set(-ERR_AUTH_INVALID, "token not yet valid");

    const json_t *sub = json_object_get(payload, "sub");
    if (!sub)
        return err_set(-ERR_AUTH_INVALID, "token has no sub claim");
    if (!json_is_string(sub) || !jwt_sub_valid(json_string_value(sub), json_string_length(sub)))
        return err_set(-ERR_AUTH_INVALID,
                       "sub claim must be a non-empty string of at most %d characters",
                       JWT_SUB_MAX);

    const json_t *tenant = json_object_get(payload, "tenant");
    if (tenant && (!json_is_string(tenant) ||
                   !jwt_tenant_valid(json_string_value(tenant), json_string_length(tenant))))
        return err_set(-ERR_AUTH_INVALID, "tenant claim must match ^[A-Za-z0-9_.-]{1,64}$");

    const json_t *jti = json_object_get(payload, "jti");
    if (jti && (!json_is_string(jti) || json_string_length(jti) == 0 ||
                json_string_length(jti) > JWT_JTI_MAX ||
                strlen(json_string_value(jti)) != json_string_length(jti)))
        return err_set(-ERR_AUTH_INVALID, "invalid jti claim");

    r = dup_str(sub, &c->sub);
    if (r >= 0)
        r = tenant ? dup_str(tenant, &c->tenant)
                   : ((c->tenant = strdup(JWT_DEFAULT_TENANT)) ? 0 : -ENOMEM);
    if (r >= 0 && jti)
        r = dup_str(jti, &c->jti);
    return r;
}

/* Checks the decoded header: a JSON object whose alg is exactly "HS256"; typ, when present,
 * must be "JWT"; a "crit" list names extensions we do not implement, so it is refused. */
static int check_header(const uint8_t *data, size_t len)
{
    json_error_t jerr;
    json_t *h = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
    int r = 0;
    if (!json_is_object(h)) {
        r = err_set(-ERR_AUTH_INVALID, "malformed token header");
        goto out;
    }
    const json_t *alg = json_object_get(h, "alg");
    if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0 ||
        json_string_length(alg) != 5) {
        r = err_set(-ERR_AUTH_INVALID, "unsupported alg (only HS256 is accepted)");
        goto out;
    }
    const json_t *typ = json_object_get(h, "typ");
    if (typ && (!json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT") != 0)) {
        r = err_set(-ERR_AUTH_INVALID, "unsupported token type");
        goto out;
    }
    if (json_object_get(h, "crit")) {
        r = err_set(-ERR_AUTH_INVALID, "unsupported critical header");
        goto out;
    }
out:
    json_decref(h);
    return r;
}

static int hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                       uint8_t out[SHA256_LEN])
{
    if (key_len == 0 || key_len > INT_MAX)
        return -EINVAL;
    unsigned int out_len = 0;
    if (!HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &out_len) || out_len != SHA256_LEN)
        return -ENOMEM;
    return 0;
}

/* Index of the key among keys[0..nkeys) whose HMAC of data equals sig, or -1. Every key is
 * tried. -ERR_AUTH_INVALID (no key at all) or -ENOMEM. */
static int match_key(const struct jwt_key *keys, size_t nkeys, const char *data, size_t len,
                     const uint8_t *sig, size_t sig_len, long *ret_index)
{
    long found = -1;
    for (size_t i = 0; i < nkeys; i++) {
        uint8_t mac[SHA256_LEN];
        int m = hmac_sha256(keys[i].secret, keys[i].len, data, len, mac);
        if (m < 0)
            return m == -EINVAL ? err_set(-ERR_AUTH_INVALID, "server has no signing secret") : m;
        if (sig && sig_len == SHA256_LEN && CRYPTO_memcmp(mac, sig, SHA256_LEN) == 0 && found < 0)
            found = (long)i;
    }
    if (nkeys == 0)
        return err_set(-ERR_AUTH_INVALID, "server has no signing secret");
    *ret_index = found;
    return 0;
}

int jwt_verify_keys(const struct jwt_key *keys, size_t nkeys, const char *token, size_t token_len,
                    int64_t now_s, struct jwt_claims *ret, size_t *ret_key)
{
    if (!token || token_len == 0)
        return err_set(-ERR_AUTH_INVALID, "empty token");
    if (token_len > JWT_MAX_TOKEN_LEN)
        return err_set(-ERR_AUTH_INVALID, "token too long");
    const char *dot1 = memchr(token, '.', token_len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', token_len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', token_len - (size_t)(dot2 + 1 - token)))
        return err_set(-ERR_AUTH_INVALID, "malformed token: expected three segments");
    size_t hlen = (size_t)(dot1 - token);
    size_t plen = (size_t)(dot2 - dot1 - 1);
    size_t slen = token_len - (size_t)(dot2 + 1 - token);
    if (hlen == 0 || plen == 0)
        return err_set(-ERR_AUTH_INVALID, "malformed token: empty segment");

    uint8_t *header = NULL, *payload = NULL, *sig = NULL;
    size_t header_len, payload_len, sig_len = 0;
    json_t *claims = NULL;
    struct jwt_claims c = JWT_CLAIMS_INIT;
    int r = b64url_decode(token, hlen, &header, &header_len);
    if (r < 0) {
        if (r == -ERR_AUTH_INVALID)
            err_set(r, "malformed token header");
        goto out;
    }
    r = check_header(header, header_len);
    if (r < 0)
        goto out;

    r = b64url_decode(dot2 + 1, slen, &sig, &sig_len);
    if (r == -ENOMEM)
        goto out;
    long key = -1;
    int m = match_key(keys, nkeys, token, hlen + 1 + plen, r < 0 ? NULL : sig, sig_len, &key);
    if (m < 0) {
        r = m;
        goto out;
    }
    if (key < 0) {
        r = err_set(-ERR_AUTH_INVALID, "bad signature");
        goto out;
    }

    r = b64url_decode(dot1 + 1, plen, &payload, &payload_len);
    if (r < 0) {
        if (r == -ERR_AUTH_INVALID)
            err_set(r, "malformed token payload");
        goto out;
    }
    json_error_t jerr;
    claims = json_loadb((const char *)payload, payload_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!claims) {
        r = err_set(-ERR_AUTH_INVALID, "malformed token payload");
        goto out;
    }
    r = claims_from_payload(claims, now_s, &c);
    if (r < 0)
        goto out;
    if (ret_key)
        *ret_key = (size_t)key;
    *ret = c;
    c = (struct jwt_claims)JWT_CLAIMS_INIT;
    r = 0;
out:
    jwt_claims_release(&c);
    json_decref(claims);
    free(header);
    free(payload);
    free(sig);
    return r;
}

int jwt_verify(const void *secret, size_t secret_len, const char *token, size_t token_len,
               int64_t now_s, struct jwt_claims *ret)
{
    const struct jwt_key key = {secret, secret_len};
    return jwt_verify_keys(&key, 1, token, token_len, now_s, ret, NULL);
}

int jwt_sign(const void *secret, size_t secret_len, const json_t *claims, char **ret_token)
{
    if (!secret || secret_len == 0)
        return err_set(-EINVAL, "signing secret is empty");
    if (!json_is_object(claims))
        return err_set(-EINVAL, "token claims must be a JSON object");
    char *payload = json_dumps(claims, JSON_COMPACT);
    if (!payload)
        return -ENOMEM;
    size_t plen = strlen(payload);
    size_t hlen = sizeof(jwt_header_b64) - 1;
    size_t penc = b64url_encoded_len(plen);
    size_t senc = b64url_encoded_len(SHA256_LEN);
    /* EVP_EncodeBlock writes padded output plus a NUL; leave room for it at each position. */
    char *tok = malloc(hlen + 1 + penc + 4 + 1 + senc + 4 + 1);
    if (!tok) {
        free(payload);
        return -ENOMEM;
    }
    memcpy(tok, jwt_header_b64, hlen);
    tok[hlen] = '.';
    size_t n = hlen + 1;
    n += b64url_encode((const uint8_t *)payload, plen, tok + n);
    free(payload);
    uint8_t mac[SHA256_LEN];
    int r = hmac_sha256(secret, secret_len, tok, n, mac);
    if (r < 0) {
        free(tok);
        return r == -EINVAL ? err_set(-EINVAL, "signing secret is too long") : r;
    }
    tok[n++] = '.';
    b64url_encode(mac, SHA256_LEN, tok + n);
    *ret_token = tok;
    return 0;
}

int jwt_parse_expires(const char *s, int64_t *ret_seconds)
{
    static const char expected[] =
        "expiresIn must be \"never\" or a positive number followed by s, m, h, d or y "
        "(e.g. \"24h\", \"30d\", \"1y\"), at most 100 years";
    if (!s)
        return err_set(-EINVAL, "%s", expected);
    if (strcmp(s, "never") == 0) {
        *ret_seconds = -1;
        return 0;
    }
    size_t len = strlen(s);
    if (len < 2 || len > 16)
        return err_set(-EINVAL, "%s", expected);
    int64_t unit;
    switch (s[len - 1]) {
    case 's':
        unit = 1;
        break;
    case 'm':
        unit = 60;
        break;
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    case 'y':
        unit = 365LL * 86400;
        break;
    default:
        return err_set(-EINVAL, "%s", expected);
    }
    int64_t n = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return err_set(-EINVAL, "%s", expected);
        n = n * 10 + (s[i] - '0');
        if (n > EXPIRES_MAX_S)
            return err_set(-EINVAL, "%s", expected);
    }
    if (n == 0 || n > EXPIRES_MAX_S / unit)
        return err_set(-EINVAL, "%s", expected);
    *ret_seconds = n * unit;
    return 0;
}

void jwt_format_expires(int64_t seconds, char *out, size_t n)
{
    static const struct {
        int64_t unit;
        char suffix;
    } units[] = {{365LL * 86400, 'y'}, {86400, 'd'}, {3600, 'h'}, {60, 'm'}};
    if (seconds < 0) {
        snprintf(out, n, "never");
        return;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (seconds > 0 && seconds % units[i].unit == 0) {
            snprintf(out, n, "%lld%c", (long long)(seconds / units[i].unit), units[i].suffix);
            return;
        }
    snprintf(out, n, "%llds", (long long)seconds);
}

int jwt_lifetime(const char *field, const char *requested, int64_t default_s, int64_t max_s,
                 int64_t *ret_s)
{
    int64_t s = default_s;
    if (requested && jwt_parse_expires(requested, &s) < 0)
        return err_set(-EINVAL,
                       "%s must be a positive number followed by s, m, h, d or y (e.g. \"24h\", "
                       "\"30d\", \"1y\")%s",
                       field, max_s < 0 ? ", or \"never\"" : "");
    if (max_s >= 0 && (s < 0 || s > max_s)) {
        char max[32];
        jwt_format_expires(max_s, max, sizeof(max));
        return err_set(-EINVAL, "%s may be at most %s on this server (TOKEN_MAX_EXPIRES)", field,
                       max);
    }
    *ret_s = s;
    return 0;
}

int jwt_mint(const void *secret, size_t secret_len, const char *sub, const char *tenant,
             int64_t expires_s, bool with_jti, int64_t now_s, char **ret_token,
             int64_t *ret_expires_at_s)
{
    if (!sub || !jwt_sub_valid(sub, strlen(sub)))
        return err_set(-EINVAL, "sub must be a non-empty string of at most %d characters",
                       JWT_SUB_MAX);
    if (!tenant)
        tenant = JWT_DEFAULT_TENANT;
    if (!jwt_tenant_valid(tenant, strlen(tenant)))
        return err_set(-EINVAL, "tenant must match ^[A-Za-z0-9_.-]{1,64}$");
    if ((expires_s <= 0 && expires_s != -1) || expires_s > EXPIRES_MAX_S)
        return err_set(-EINVAL, "invalid token lifetime");
    if (now_s < 0 || now_s > JWT_TIME_MAX - EXPIRES_MAX_S)
        return err_set(-EINVAL, "invalid clock value");

    int64_t exp = expires_s == -1 ? 0 : now_s + expires_s;
    json_t *claims = json_object();
    int r = -ENOMEM;
    if (!claims)
        return r;
    if (json_object_set_new(claims, "sub", json_string(sub)) < 0 ||
        json_object_set_new(claims, "tenant", json_string(tenant)) < 0 ||
        json_object_set_new(claims, "iat", json_integer(now_s)) < 0)
        goto out;
    if (exp && json_object_set_new(claims, "exp", json_integer(exp)) < 0)
        goto out;
    if (with_jti) {
        char jti[UUID_STR_LEN];
        r = rand_uuid(jti);
        if (r < 0)
            goto out;
        r = -ENOMEM;
        if (json_object_set_new(claims, "jti", json_string(jti)) < 0)
            goto out;
    }
    r = jwt_sign(secret, secret_len, claims, ret_token);
    if (r >= 0 && ret_expires_at_s)
        *ret_expires_at_s = exp;
out:
    json_decref(claims);
    return r;
}

#include "unit.h"

#include <errno.h>
#include <stdio.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/jwt.h"
#include "util/err.h"
#include "util/rand.h"

static const char SECRET[] = "test-secret-0123456789";
#define NOW 1800000000LL

/* Independent base64url encoder for building hostile tokens (the padded output of OpenSSL with
 * the alphabet swapped and '=' dropped). */
static char *b64url(const void *data, size_t len)
{
    char *out = malloc(len * 4 / 3 + 8);
    int n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
    for (char *p = out; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    return out;
}

/* header.payload.signature with a correct HMAC-SHA256 under `secret`, whatever the header says. */
static char *make_token(const char *header, const char *payload, const char *secret)
{
    char *h = b64url(header, strlen(header));
    char *p = b64url(payload, strlen(payload));
    size_t n = strlen(h) + strlen(p) + 2;
    char *signing = malloc(n);
    snprintf(signing, n, "%s.%s", h, p);
    unsigned char mac[32];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)signing, strlen(signing), mac,
         &maclen);
    char *s = b64url(mac, maclen);
    size_t tn = n + strlen(s) + 1;
    char *tok = malloc(tn);
    snprintf(tok, tn, "%s.%s", signing, s);
    free(h);
    free(p);
    free(s);
    free(signing);
    return tok;
}

static int verify(const char *tok, struct jwt_claims *c)
{
    err_clear();
    return jwt_verify(SECRET, strlen(SECRET), tok, strlen(tok), NOW, c);
}

/* Asserts that tok is rejected with AUTH_INVALID and a message containing `want`. */
static void expect_reject(const char *tok, const char *want)
{
    struct jwt_claims c = JWT_CLAIMS_INIT;
    assert_int_equal(verify(tok, &c), -ERR_AUTH_INVALID);
    assert_null(c.sub);
    const char *msg = err_message();
    assert_non_null(msg);
    if (!strstr(msg, want))
        fail_msg("message \"%s\" lacks \"%s\"", msg, want);
}

static const char HS256[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

static void test_round_trip(void **state)
{
    (void)state;
    json_t *claims = json_pack("{s:s, s:s, s:I, s:I, s:s}", "sub", "agent-001", "tenant", "t1",
                               "iat", (json_int_t)NOW, "exp", (json_int_t)(NOW + 60), "jti", "abc");
    char *tok = NULL;
    assert_int_equal(jwt_sign(SECRET, strlen(SECRET), claims, &tok), 0);
    json_decref(claims);
    assert_non_null(tok);
    assert_null(strchr(tok, '='));
    assert_true(strncmp(tok, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.", 37) == 0);

    struct jwt_claims c = JWT_CLAIMS_INIT;
    assert_int_equal(verify(tok, &c), 0);
    assert_string_equal(c.sub, "agent-001");
    assert_string_equal(c.tenant, "t1");
    assert_int_equal(c.iat, NOW);
    assert_int_equal(c.exp, NOW + 60);
    assert_string_equal(c.jti, "abc");
    jwt_claims_release(&c);
    assert_null(c.sub);

    /* A different secret fails, as does a different length of the same prefix. */
    assert_int_equal(jwt_verify("other", 5, tok, strlen(tok), NOW, &c), -ERR_AUTH_INVALID);
    assert_int_equal(jwt_verify(SECRET, strlen(SECRET) - 1, tok, strlen(tok), NOW, &c),
                     -ERR_AUTH_INVALID);
    /* The token need not be NUL-terminated: a trailing byte outside token_len is ignored. */
    size_t n = strlen(tok);
    char *padded = malloc(n + 2);
    memcpy(padded, tok, n);
    padded[n] = 'X';
    padded[n + 1] = '\0';
    assert_int_equal(jwt_verify(SECRET, strlen(SECRET), padded, n, NOW, &c), 0);
    jwt_claims_release(&c);
    assert_int_equal(jwt_verify(SECRET, strlen(SECRET), padded, n + 1, NOW, &c), -ERR_AUTH_INVALID);
    free(padded);
    free(tok);
}

static void test_defaults_and_independent_token(void **state)
{
    (void)state;
    /* A token built by an independent encoder, no tenant, no exp, no jti. */
    char *tok = make_token(HS256, "{\"sub\":\"u\",\"iat\":1700000000}", SECRET);
    struct jwt_claims c = JWT_CLAIMS_INIT;
    assert_int_equal(verify(tok, &c), 0);
    assert_string_equal(c.sub, "u");
    assert_string_equal(c.tenant, "default");
    assert_int_equal(c.exp, 0);
    assert_null(c.jti);
    jwt_claims_release(&c);
    free(tok);
    /* typ is optional; extra claims are ignored; a fractional exp is accepted. */
    tok = make_token("{\"alg\":\"HS256\"}", "{\"sub\":\"u\",\"x\":[1,2],\"exp\":1800000100.5}",
                     SECRET);
    assert_int_equal(verify(tok, &c), 0);
    assert_int_equal(c.exp, 1800000100);
    jwt_claims_release(&c);
    free(tok);
}

static void test_tampered(void **state)
{
    (void)state;
    char *tok = NULL;
    assert_int_equal(jwt_mint(SECRET, strlen(SECRET), "alice", NULL, 3600, false, NOW, &tok, NULL),
                     0);
    /* Swap the payload for one naming another owner, keep the signature. */
    char *evil = make_token(HS256, "{\"sub\":\"mallory\",\"iat\":1800000000}", SECRET);
    const char *sig = strrchr(tok, '.');
    const char *evil_end = strrchr(evil, '.');
    size_t head = (size_t)(evil_end - evil);
    char *mixed = malloc(head + strlen(sig) + 1);
    memcpy(mixed, evil, head);
    strcpy(mixed + head, sig);
    expect_reject(mixed, "bad signature");
    free(mixed);
    free(evil);

    /* Flip one character of the payload and of the signature. */
    char *t = strdup(tok);
    char *p = strchr(t, '.') + 2;
    *p = *p == 'A' ? 'B' : 'A';
    expect_reject(t, "signature");
    free(t);
    t = strdup(tok);
    p = strrchr(t, '.') + 3;
    *p = *p == 'A' ? 'B' : 'A';
    expect_reject(t, "bad signature");
    free(t);
    /* Truncated / extended / empty signature. */
    t = strdup(tok);
    t[strlen(t) - 4] = '\0';
    expect_reject(t, "bad signature");
    free(t);
    t = strdup(tok);
    *(strrchr(t, '.') + 1) = '\0';
    expect_reject(t, "bad signature");
    free(t);
    /* Signed with another secret. */
    t = make_token(HS256, "{\"sub\":\"alice\"}", "wrong-secret");
    expect_reject(t, "bad signature");
    free(t);
    free(tok);
}

static void test_alg(void **state)
{
    (void)state;
    const char *payload = "{\"sub\":\"alice\"}";
    const char *headers[] = {
        "{\"alg\":\"none\",\"typ\":\"JWT\"}",
        "{\"alg\":\"HS512\",\"typ\":\"JWT\"}",
        "{\"alg\":\"hs256\"}",
        "{\"typ\":\"JWT\"}",
        "{\"alg\":null}",
        "{\"alg\":[\"HS256\"]}",
        "{\"alg\":\"HS256 \"}",
        "{\"alg\":\"RS256\"}",
    };
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        /* Even with a correct HMAC, the header decides. */
        char *t = make_token(headers[i], payload, SECRET);
        expect_reject(t, "alg");
        free(t);
    }
    /* The classic "alg none" token with an empty signature. */
    char *h = b64url("{\"alg\":\"none\"}", 14);
    char *p = b64url(payload, strlen(payload));
    char t[256];
    snprintf(t, sizeof(t), "%s.%s.", h, p);
    expect_reject(t, "alg");
    free(h);
    free(p);

    char *bad = make_token("{\"alg\":\"HS256\",\"typ\":\"JOSE+JSON\"}", payload, SECRET);
    expect_reject(bad, "type");
    free(bad);
    bad = make_token("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", payload, SECRET);
    expect_reject(bad, "critical");
    free(bad);
    bad = make_token("{\"alg\":\"HS256\",\"alg\":\"none\"}", payload, SECRET);
    expect_reject(bad, "header");
    free(bad);
    bad = make_token("{\"alg\":\"HS256\\u0000x\"}", payload, SECRET);
    expect_reject(bad, "header");
    free(bad);
    bad = make_token("[\"HS256\"]", payload, SECRET);
    expect_reject(bad, "header");
    free(bad);
}

static void test_expiry(void **state)
{
    (void)state;
    char *t = make_token(HS256, "{\"sub\":\"a\",\"exp\":1799999999}", SECRET);
    expect_reject(t, "token expired");
    free(t);
    t = make_token(HS256, "{\"sub\":\"a\",\"exp\":1800000000}", SECRET); /* exp == now */
    expect_reject(t, "token expired");
    free(t);
    t = make_token(HS256, "{\"sub\":\"a\",\"exp\":1800000001}", SECRET);
    struct jwt_claims c = JWT_CLAIMS_INIT;
    assert_int_equal(verify(t, &c), 0);
    jwt_claims_release(&c);
    free(t);
    t = make_token(HS256, "{\"sub\":\"a\",\"exp\":\"tomorrow\"}", SECRET);
    expect_reject(t, "exp");
    free(t);
    t = make_token(HS256, "{\"sub\":\"a\",\"exp\":-5}", SECRET);
    expect_reject(t, "exp");
    free(t);
    t = make_token(HS256, "{\"sub\":\"a\",\"exp\":1e300}", SECRET);
    expect_reject(t, "exp");
    free(t);
    t = make_token(HS256, "{\"sub\":\"a\",\"nbf\":1800000060}", SECRET);
    expect_reject(t, "not yet valid");
    free(t);
    t = make_token(HS256, "{\"sub\":\"a\",\"nbf\":1800000000}", SECRET);
    assert_int_equal(verify(t, &c), 0);
    jwt_claims_release(&c);
    free(t);
    t = make_token(HS256, "{\"sub\":\"a\",\"iat\":\"x\"}", SECRET);
    expect_reject(t, "iat");
    free(t);
}

static void test_sub_tenant(void **state)
{
    (void)state;
    struct {
        const char *payload, *want;
    } bad[] = {
        {"{\"tenant\":\"t\"}", "sub"},
        {"{\"sub\":\"\"}", "sub"},
        {"{\"sub\":42}", "sub"},
        {"{\"sub\":null}", "sub"},
        {"{\"sub\":\"a\",\"tenant\":\"\"}", "tenant"},
        {"{\"sub\":\"a\",\"tenant\":\"has space\"}", "tenant"},
        {"{\"sub\":\"a\",\"tenant\":\"a/b\"}", "tenant"},
        {"{\"sub\":\"a\",\"tenant\":\"\\u00e9\"}", "tenant"},
        {"{\"sub\":\"a\",\"tenant\":7}", "tenant"},
        {"{\"sub\":\"a\",\"jti\":7}", "jti"},
        {"{\"sub\":\"a\",\"sub\":\"b\"}", "payload"},
        {"[\"sub\"]", "payload"},
        {"not json", "payload"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *t = make_token(HS256, bad[i].payload, SECRET);
        expect_reject(t, bad[i].want);
        free(t);
    }
    /* 256 characters pass, 257 do not; multibyte characters count once. */
    char payload[2048];
    char sub[1100];
    memset(sub, 'x', 256);
    sub[256] = '\0';
    snprintf(payload, sizeof(payload), "{\"sub\":\"%s\",\"tenant\":\"A-z_0.9\"}", sub);
    char *t = make_token(HS256, payload, SECRET);
    struct jwt_claims c = JWT_CLAIMS_INIT;
    assert_int_equal(verify(t, &c), 0);
    assert_string_equal(c.tenant, "A-z_0.9");
    jwt_claims_release(&c);
    free(t);
    strcpy(sub + 256, "y");
    snprintf(payload, sizeof(payload), "{\"sub\":\"%s\"}", sub);
    t = make_token(HS256, payload, SECRET);
    expect_reject(t, "sub");
    free(t);
    sub[0] = '\0';
    for (int i = 0; i < 256; i++)
        strcat(sub, "\xc3\xa9"); /* é: 512 bytes, 256 characters */
    snprintf(payload, sizeof(payload), "{\"sub\":\"%s\"}", sub);
    t = make_token(HS256, payload, SECRET);
    assert_int_equal(verify(t, &c), 0);
    assert_int_equal(strlen(c.sub), 512);
    jwt_claims_release(&c);
    free(t);

    char tenant65[66];
    memset(tenant65, 'a', 65);
    tenant65[65] = '\0';
    assert_true(jwt_tenant_valid(tenant65, 64));
    assert_false(jwt_tenant_valid(tenant65, 65));
    assert_false(jwt_tenant_valid("", 0));
    assert_false(jwt_sub_valid("a\0b", 3));
    assert_false(jwt_sub_valid("\xff", 1));
    assert_false(jwt_sub_valid("\xc0\x80", 2));        /* overlong NUL */
    assert_false(jwt_sub_valid("\xed\xa0\x80", 3));    /* surrogate */
    assert_true(jwt_sub_valid("\xf0\x9f\x98\x80", 4)); /* emoji */
}

static void test_structure(void **state)
{
    (void)state;
    char *good = make_token(HS256, "{\"sub\":\"a\"}", SECRET);
    char buf[512];
    snprintf(buf, sizeof(buf), "%s.extra", good);
    expect_reject(buf, "three segments");
    snprintf(buf, sizeof(buf), "%s.", good);
    expect_reject(buf, "three segments");
    expect_reject("abc", "three segments");
    expect_reject("abc.def", "three segments");
    expect_reject("..", "empty segment");
    expect_reject("", "empty");
    /* Garbage base64 in header, payload and signature positions. */
    expect_reject("e$J.eyJ.abc", "header");
    expect_reject("eyJhbGciOiJIUzI1NiJ9.e y.abc", "signature");
    const char *dot = strchr(good, '.');
    snprintf(buf, sizeof(buf), "%.*s.eyJzdWIiOiJhIn0=.%s", (int)(dot - good), good,
             strrchr(good, '.') + 1);
    expect_reject(buf, "signature"); /* padding is not part of the signed bytes we accept */
    /* Standard-alphabet characters and whitespace are not base64url. */
    snprintf(buf, sizeof(buf), "%s+", good);
    expect_reject(buf, "bad signature");
    snprintf(buf, sizeof(buf), "%s\n", good);
    expect_reject(buf, "bad signature");
    /* Header of length 1 mod 4 and a non-canonical trailing character. */
    expect_reject("eyJhb.eyJ.x", "header");
    expect_reject("eyJhbGciOiJIUzI1NiJ9.eyJ.x", "signature");
    /* Overlong tokens are refused before decoding. */
    char *huge = malloc(JWT_MAX_TOKEN_LEN + 2);
    memset(huge, 'a', JWT_MAX_TOKEN_LEN + 1);
    huge[10] = '.';
    huge[20] = '.';
    huge[JWT_MAX_TOKEN_LEN + 1] = '\0';
    expect_reject(huge, "too long");
    free(huge);
    free(good);
}

static void test_noncanonical_base64(void **state)
{
    (void)state;
    /* "eyJzdWIiOiJhIn0" is {"sub":"a"}; its last char '0' encodes 4 used bits + 2 zero bits.
     * '1' decodes to the same bytes with a non-zero unused bit: a second spelling, refused. */
    char *good = make_token(HS256, "{\"sub\":\"a\"}", SECRET);
    struct jwt_claims c = JWT_CLAIMS_INIT;
    assert_int_equal(verify(good, &c), 0);
    jwt_claims_release(&c);
    char *alt = strdup(good);
    char *sig = strrchr(alt, '.') + 1;
    /* 32-byte signature → 43 chars, the last one carries 2 unused bits. */
    assert_int_equal(strlen(sig), 43);
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *pos = strchr(alphabet, sig[42]);
    assert_non_null(pos);
    assert_int_equal((pos - alphabet) & 3, 0);
    sig[42] = alphabet[(pos - alphabet) | 1];
    expect_reject(alt, "bad signature");
    free(alt);
    free(good);
}

static void test_parse_expires(void **state)
{
    (void)state;
    int64_t s = 0;
    assert_int_equal(jwt_parse_expires("never", &s), 0);
    assert_int_equal(s, -1);
    assert_int_equal(jwt_parse_expires("24h", &s), 0);
    assert_int_equal(s, 86400);
    assert_int_equal(jwt_parse_expires("30d", &s), 0);
    assert_int_equal(s, 30 * 86400);
    assert_int_equal(jwt_parse_expires("1y", &s), 0);
    assert_int_equal(s, 365 * 86400);
    assert_int_equal(jwt_parse_expires("3600s", &s), 0);
    assert_int_equal(s, 3600);
    assert_int_equal(jwt_parse_expires("15m", &s), 0);
    assert_int_equal(s, 900);
    assert_int_equal(jwt_parse_expires("100y", &s), 0);
    const char *bad[] = {"",    "h",     "0h",    "-1h",  "+1h",   "1 h",  " 1h",
                         "1",   "1w",    "1H",    "1.5h", "Never", "101y", "99999999999999999d",
                         "1hh", "0x10s", "never "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        s = 42;
        err_clear();
        if (jwt_parse_expires(bad[i], &s) != -EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(s, 42);
        assert_non_null(strstr(err_message(), "expiresIn"));
    }
    assert_int_equal(jwt_parse_expires(NULL, &s), -EINVAL);
}

static void test_mint(void **state)
{
    (void)state;
    char *tok = NULL;
    int64_t exp = 0;
    assert_int_equal(jwt_mint(SECRET, strlen(SECRET), "bob", "t-2", 86400, true, NOW, &tok, &exp),
                     0);
    assert_int_equal(exp, NOW + 86400);
    struct jwt_claims c = JWT_CLAIMS_INIT;
    assert_int_equal(verify(tok, &c), 0);
    assert_string_equal(c.sub, "bob");
    assert_string_equal(c.tenant, "t-2");
    assert_int_equal(c.iat, NOW);
    assert_int_equal(c.exp, NOW + 86400);
    assert_non_null(c.jti);
    assert_true(uuid_valid(c.jti));
    jwt_claims_release(&c);
    /* The same token is expired a day later. */
    assert_int_equal(jwt_verify(SECRET, strlen(SECRET), tok, strlen(tok), NOW + 86400, &c),
                     -ERR_AUTH_INVALID);
    free(tok);

    assert_int_equal(jwt_mint(SECRET, strlen(SECRET), "bob", NULL, -1, false, NOW, &tok, &exp), 0);
    assert_int_equal(exp, 0);
    assert_int_equal(
        jwt_verify(SECRET, strlen(SECRET), tok, strlen(tok), NOW + 100LL * 31536000, &c), 0);
    assert_string_equal(c.tenant, "default");
    assert_int_equal(c.exp, 0);
    assert_null(c.jti);
    jwt_claims_release(&c);
    free(tok);

    tok = NULL;
    assert_int_equal(jwt_mint(SECRET, strlen(SECRET), "", NULL, -1, false, NOW, &tok, NULL),
                     -EINVAL);
    assert_int_equal(
        jwt_mint(SECRET, strlen(SECRET), "a", "bad tenant", -1, false, NOW, &tok, NULL), -EINVAL);
    assert_int_equal(jwt_mint(SECRET, strlen(SECRET), "a", NULL, 0, false, NOW, &tok, NULL),
                     -EINVAL);
    assert_int_equal(jwt_mint(SECRET, 0, "a", NULL, 60, false, NOW, &tok, NULL), -EINVAL);
    assert_null(tok);
    json_t *arr = json_array();
    assert_int_equal(jwt_sign(SECRET, strlen(SECRET), arr, &tok), -EINVAL);
    json_decref(arr);
    assert_null(tok);
}

static void test_verify_keys(void **state)
{
    (void)state;
    static const char CURRENT[] = "current-secret-0123456789abcdef0123";
    static const char PREVIOUS[] = "previous-secret-0123456789abcdef012";
    const struct jwt_key keys[2] = {{CURRENT, strlen(CURRENT)}, {PREVIOUS, strlen(PREVIOUS)}};
    const char *payload = "{\"sub\":\"a\",\"iat\":1}";
    char *by_current = make_token(HS256, payload, CURRENT);
    char *by_previous = make_token(HS256, payload, PREVIOUS);
    char *by_other = make_token(HS256, payload, SECRET);
    struct jwt_claims c = JWT_CLAIMS_INIT;
    size_t key = 7;

    assert_int_equal(jwt_verify_keys(keys, 2, by_current, strlen(by_current), NOW, &c, &key), 0);
    assert_int_equal(key, 0);
    assert_string_equal(c.sub, "a");
    jwt_claims_release(&c);
    assert_int_equal(jwt_verify_keys(keys, 2, by_previous, strlen(by_previous), NOW, &c, &key), 0);
    assert_int_equal(key, 1);
    assert_int_equal(c.iat, 1);
    jwt_claims_release(&c);
    /* Signed with neither: refused, and *ret_key untouched. */
    key = 7;
    err_clear();
    assert_int_equal(jwt_verify_keys(keys, 2, by_other, strlen(by_other), NOW, &c, &key),
                     -ERR_AUTH_INVALID);
    assert_string_equal(err_message(), "bad signature");
    assert_int_equal(key, 7);
    assert_null(c.sub);
    /* Only the current key: the previous one's tokens are refused. */
    assert_int_equal(jwt_verify_keys(keys, 1, by_previous, strlen(by_previous), NOW, &c, NULL),
                     -ERR_AUTH_INVALID);
    /* Claims are checked whichever key signed: an expired token stays expired. */
    char *expired = make_token(HS256, "{\"sub\":\"a\",\"exp\":1000}", PREVIOUS);
    err_clear();
    assert_int_equal(jwt_verify_keys(keys, 2, expired, strlen(expired), NOW, &c, &key),
                     -ERR_AUTH_INVALID);
    assert_string_equal(err_message(), "token expired");
    assert_int_equal(jwt_verify_keys(keys, 0, by_current, strlen(by_current), NOW, &c, &key),
                     -ERR_AUTH_INVALID);
    free(expired);
    free(by_current);
    free(by_previous);
    free(by_other);
}

static void test_lifetime(void **state)
{
    (void)state;
    char out[32];
    const struct {
        int64_t s;
        const char *text;
    } formats[] = {{-1, "never"},         {45, "45s"},         {90 * 60, "90m"},
                   {12 * 3600, "12h"},    {30 * 86400, "30d"}, {365 * 86400, "1y"},
                   {400 * 86400, "400d"}, {61, "61s"}};
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        jwt_format_expires(formats[i].s, out, sizeof(out));
        assert_string_equal(out, formats[i].text);
        int64_t back = 0;
        assert_int_equal(jwt_parse_expires(out, &back), 0);
        assert_int_equal(back, formats[i].s);
    }

    const int64_t day = 86400, def = 30 * day, max = 365 * day;
    int64_t s = 0;
    assert_int_equal(jwt_lifetime("f", NULL, def, max, &s), 0); /* the default */
    assert_int_equal(s, def);
    assert_int_equal(jwt_lifetime("f", "24h", def, max, &s), 0);
    assert_int_equal(s, day);
    assert_int_equal(jwt_lifetime("f", "1y", def, max, &s), 0); /* the maximum itself */
    assert_int_equal(s, max);
    s = 42;
    err_clear();
    assert_int_equal(jwt_lifetime("field 'expiresIn'", "366d", def, max, &s), -EINVAL);
    assert_string_equal(err_message(),
                        "field 'expiresIn' may be at most 1y on this server (TOKEN_MAX_EXPIRES)");
    assert_int_equal(s, 42);
    assert_int_equal(jwt_lifetime("f", "never", def, max, &s), -EINVAL);
    assert_non_null(strstr(err_message(), "at most 1y"));
    assert_int_equal(jwt_lifetime("f", "tomorrow", def, max, &s), -EINVAL);
    assert_non_null(strstr(err_message(), "f must be a positive number"));
    assert_null(strstr(err_message(), "never")); /* not offered where it is refused */
    /* No maximum: never is allowed, and offered. */
    assert_int_equal(jwt_lifetime("f", "never", def, -1, &s), 0);
    assert_int_equal(s, -1);
    assert_int_equal(jwt_lifetime("f", NULL, -1, -1, &s), 0);
    assert_int_equal(s, -1);
    assert_int_equal(jwt_lifetime("f", "x", def, -1, &s), -EINVAL);
    assert_non_null(strstr(err_message(), "or \"never\""));
    /* A default above the maximum is refused too (the server refuses to start with one). */
    assert_int_equal(jwt_lifetime("f", NULL, -1, max, &s), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),    cmocka_unit_test(test_defaults_and_independent_token),
        cmocka_unit_test(test_tampered),      cmocka_unit_test(test_alg),
        cmocka_unit_test(test_expiry),        cmocka_unit_test(test_sub_tenant),
        cmocka_unit_test(test_structure),     cmocka_unit_test(test_noncanonical_base64),
        cmocka_unit_test(test_parse_expires), cmocka_unit_test(test_mint),
        cmocka_unit_test(test_verify_keys),   cmocka_unit_test(test_lifetime),
    };
    return cmocka_run_group_tests_name("jwt", tests, NULL, NULL);
}

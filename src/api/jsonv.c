#include "api/jsonv.h"

#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

/*
 * The parse budget. jansson allocates through jsonv_init's functions: plain malloc and free,
 * except on a thread whose budget is armed (only around the parse of a request body), where
 * each allocation is charged at its real size (the usable size plus the allocator's header) and
 * the one that would take the live total past the limit fails, which ends the parse. During the
 * armed window the thread runs nothing but jansson's parser, and the parser frees only what it
 * allocated in that window, so every free there is of a charged block.
 */
struct parse_budget {
    bool armed;    /* charging this thread's jansson allocations */
    bool exceeded; /* an allocation was refused for the limit */
    size_t used;   /* live charged bytes */
    size_t peak;   /* most live charged bytes during the parse */
    size_t limit;  /* what used may reach */
};

static __thread struct parse_budget budget;

static size_t charge_of(void *p)
{
    return malloc_usable_size(p) + sizeof(size_t);
}

static void *budget_malloc(size_t n)
{
    void *p = malloc(n);
    if (!p || !budget.armed)
        return p;
    size_t c = charge_of(p);
    if (c > budget.limit - budget.used) {
        free(p);
        budget.exceeded = true;
        return NULL;
    }
    budget.used += c;
    if (budget.used > budget.peak)
        budget.peak = budget.used;
    return p;
}

static void budget_free(void *p)
{
    if (p && budget.armed) {
        size_t c = charge_of(p);
        budget.used = c < budget.used ? budget.used - c : 0;
    }
    free(p);
}

void jsonv_init(void)
{
    json_set_alloc_funcs(budget_malloc, budget_free);
}

size_t jsonv_parse_limit(size_t len)
{
    if (len > (SIZE_MAX - JSONV_PARSE_SLACK) / JSONV_PARSE_FACTOR)
        return SIZE_MAX;
    return JSONV_PARSE_FACTOR * len + JSONV_PARSE_SLACK;
}

size_t jsonv_parse_peak(void)
{
    return budget.peak;
}

int jsonv_parse_object(const char *data, size_t len, json_t **ret)
{
    json_error_t jerr;
    size_t limit = jsonv_parse_limit(len);
    budget = (struct parse_budget){.armed = true, .limit = limit};
    *ret = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    budget.armed = false;
    if (!*ret && budget.exceeded) {
        err_set(-ERR_PAYLOAD_TOO_LARGE,
                "the request body needs more memory to parse than the server allows for its "
                "size: send fewer, larger JSON values");
        err_detail("JSON parse memory is limited to %d x the body size + %d bytes = %zu bytes "
                   "for this %zu-byte body",
                   JSONV_PARSE_FACTOR, JSONV_PARSE_SLACK, limit, len);
        return -ERR_PAYLOAD_TOO_LARGE;
    }
    if (!*ret && json_error_code(&jerr) == json_error_out_of_memory)
        return err_set(-ENOMEM, "out of memory");
    if (!*ret) {
        if (json_error_code(&jerr) == json_error_null_character)
            return err_set(-ERR_INVALID_INPUT,
                           "JSON strings in the request body must not contain "
                           "\\u0000 (line %d, column %d)",
                           jerr.line, jerr.column);
        return err_set(-ERR_INVALID_INPUT, "request body is not valid JSON: %s (line %d)",
                       jerr.text, jerr.line);
    }
    if (!json_is_object(*ret)) {
        json_decref(*ret);
        *ret = NULL;
        return err_set(-ERR_INVALID_INPUT, "request body must be a JSON object");
    }
    return 0;
}

int jsonv_string(json_t *obj, const char *key, size_t maxlen, const char **ret, size_t *ret_len)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return err_set(-ERR_INVALID_INPUT, "field '%s' must be a string", key);
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (memchr(s, '\0', len))
        return err_set(-ERR_INVALID_INPUT, "field '%s' must not contain NUL bytes", key);
    if (maxlen && len > maxlen)
        return err_set(-ERR_INVALID_INPUT, "field '%s' is longer than %zu bytes", key, maxlen);
    *ret = s;
    if (ret_len)
        *ret_len = len;
    return 1;
}

int jsonv_bool(json_t *obj, const char *key, bool *ret)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return err_set(-ERR_INVALID_INPUT, "field '%s' must be a boolean", key);
    *ret = json_is_true(v);
    return 1;
}

/* True when d is a whole number that int64_t holds. Checked before the cast: converting an
 * out-of-range double (1e19) to an integer is undefined behaviour. */
static bool real_is_int64(double d)
{
    return d >= -9223372036854775808.0 && d < 9223372036854775808.0 && d == (double)(int64_t)d;
}

int jsonv_int(json_t *obj, const char *key, int64_t min, int64_t max, int64_t *ret)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (!v || json_is_null(v))
        return 0;
    int64_t n;
    if (json_is_integer(v)) {
        n = json_integer_value(v);
    } else if (json_is_real(v) && real_is_int64(json_real_value(v))) {
        n = (int64_t)json_real_value(v);
    } else {
        return err_set(-ERR_INVALID_INPUT, "field '%s' must be an integer between %lld and %lld",
                       key, (long long)min, (long long)max);
    }
    if (n < min || n > max)
        return err_set(-ERR_INVALID_INPUT, "field '%s' must be between %lld and %lld (got %lld)",
                       key, (long long)min, (long long)max, (long long)n);
    *ret = n;
    return 1;
}

int jsonv_object(json_t *obj, const char *key, json_t **ret)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return err_set(-ERR_INVALID_INPUT, "field '%s' must be an object", key);
    *ret = v;
    return 1;
}

int jsonv_array(json_t *obj, const char *key, json_t **ret)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return err_set(-ERR_INVALID_INPUT, "field '%s' must be an array", key);
    *ret = v;
    return 1;
}

bool jsonv_env_name_ok(const char *name)
{
    if (!name[0] || !((name[0] >= 'A' && name[0] <= 'Z') || (name[0] >= 'a' && name[0] <= 'z') ||
                      name[0] == '_'))
        return false;
    for (const char *p = name + 1; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return false;
    return strlen(name) <= 256;
}

int jsonv_env(json_t *obj, const char *key, size_t max_vars, json_t **ret)
{
    json_t *env = NULL;
    int r = jsonv_object(obj, key, &env);
    if (r <= 0)
        return r;
    if (json_object_size(env) > max_vars)
        return err_set(-ERR_INVALID_INPUT, "field '%s' has more than %zu variables", key, max_vars);
    const char *name;
    json_t *val;
    int bad = 0;
    json_object_foreach(env, name, val)
    {
        if (!jsonv_env_name_ok(name)) {
            err_detail("bad variable name: '%.64s' (must match ^[A-Za-z_][A-Za-z0-9_]*$)", name);
            bad++;
        } else if (!json_is_string(val) ||
                   memchr(json_string_value(val), '\0', json_string_length(val))) {
            err_detail("value of '%s' must be a string without NUL bytes", name);
            bad++;
        }
    }
    if (bad)
        return err_set(-ERR_INVALID_INPUT, "field '%s' has %d invalid entr%s", key, bad,
                       bad == 1 ? "y" : "ies");
    *ret = env;
    return 1;
}

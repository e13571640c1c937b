/*
 * jsonv — validation of fields of JSON request bodies, with error messages that tell the client
 * what to fix ("field 'timeoutMs' must be an integer between 1 and 300000"). Every field getter
 * (jsonv_string to jsonv_env) returns 0 when the field is absent (leaving *ret unchanged), 1 when
 * present and valid, or -ERR_INVALID_INPUT (message set). `obj` may be NULL (no body): every field
 * is then absent.
 */
#ifndef SQLFS_API_JSONV_H
#define SQLFS_API_JSONV_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* The memory a request body of len bytes may take while it is parsed: JSONV_PARSE_FACTOR × len
 * + JSONV_PARSE_SLACK. Legitimate bodies stay well under it (a map of 100,000 empty strings, the
 * densest one the routes accept, takes about 17 × its size; large strings about 3 ×), while
 * bodies made of tiny values take more (an array of zeros 20 ×, of empty objects 77 ×). */
#define JSONV_PARSE_FACTOR 16
#define JSONV_PARSE_SLACK (2 * 1024 * 1024)
size_t jsonv_parse_limit(size_t len);

/* Makes jansson allocate through the parse budget of jsonv_parse_object. Call once at start,
 * before any thread uses jansson; without it the budget is not enforced. */
void jsonv_init(void);

/* Parses a request body that must be one JSON object (duplicate keys refused): 0 and *ret a new
 * reference, or an error and *ret NULL. The parse may take at most jsonv_parse_limit(len) bytes of
 * memory (once jsonv_init ran): past it, -ERR_PAYLOAD_TOO_LARGE naming the bound.
 * -ERR_INVALID_INPUT with a message saying what is wrong and where; -ENOMEM. */
__attribute__((warn_unused_result)) int jsonv_parse_object(const char *data, size_t len,
                                                           json_t **ret);
/* The most memory the last jsonv_parse_object on this thread held at once, in bytes. */
size_t jsonv_parse_peak(void);
/* A string of at most maxlen bytes (0: unlimited) without NUL bytes; *ret borrows from obj. */
__attribute__((warn_unused_result)) int jsonv_string(json_t *obj, const char *key, size_t maxlen,
                                                     const char **ret, size_t *ret_len);
__attribute__((warn_unused_result)) int jsonv_bool(json_t *obj, const char *key, bool *ret);
/* An integer in [min, max]. */
__attribute__((warn_unused_result)) int jsonv_int(json_t *obj, const char *key, int64_t min,
                                                  int64_t max, int64_t *ret);
/* An object (borrowed). */
__attribute__((warn_unused_result)) int jsonv_object(json_t *obj, const char *key, json_t **ret);
/* An array (borrowed). */
__attribute__((warn_unused_result)) int jsonv_array(json_t *obj, const char *key, json_t **ret);
/* An object of environment variables: names ^[A-Za-z_][A-Za-z0-9_]*$, string values without
 * NUL bytes; at most max_vars entries. */
__attribute__((warn_unused_result)) int jsonv_env(json_t *obj, const char *key, size_t max_vars,
                                                  json_t **ret);
/* True when name is a valid environment variable name. */
bool jsonv_env_name_ok(const char *name);

#endif

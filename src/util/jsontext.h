/*
 * jsontext — JSON strings from bytes that need not be UTF-8.
 *
 * jansson refuses invalid UTF-8 (json_string() returns NULL, and json_object_set_new() with a
 * NULL value silently drops the field), while names in a sandbox are arbitrary bytes and messages
 * embed them. Every string that can hold sandbox-derived, client or host bytes goes into JSON
 * through this module:
 *   - text (messages, log lines): every invalid byte becomes U+FFFD; the field is never lost.
 *   - paths (`path`, `cwd`, `basePath`): the same text, plus, when and only when the bytes are not
 *     valid UTF-8, a sibling field `<key>Bytes` with the exact bytes in standard base64
 *     (RFC 4648, padded), so a client can address the file again (docs/API.md).
 * Pure functions, thread-safe.
 */
#ifndef SQLFS_UTIL_JSONTEXT_H
#define SQLFS_UTIL_JSONTEXT_H

#include <jansson.h>
#include <stddef.h>

/* A new JSON string holding s[0..n) with every invalid UTF-8 byte replaced by U+FFFD (NUL bytes
 * are kept). NULL only when out of memory. */
json_t *jsontext_new(const char *s, size_t n);

/* jsontext_new() of a C string; NULL gives "". */
json_t *jsontext(const char *s);

/* Sets obj[key] to jsontext(s) (NULL s gives ""). 0 or -ENOMEM. */
__attribute__((warn_unused_result)) int jsontext_set(json_t *obj, const char *key, const char *s);

/* Sets obj[key] to the text of path[0..n) and, when those bytes are not valid UTF-8,
 * obj[key + "Bytes"] to their base64; otherwise removes a stale obj[key + "Bytes"].
 * 0, -ENOMEM, -EINVAL (key longer than 63 bytes with its suffix). */
__attribute__((warn_unused_result)) int jsontext_set_path(json_t *obj, const char *key,
                                                          const char *path, size_t n);

#endif

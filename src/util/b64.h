/*
 * b64 — strict base64 (RFC 4648 §4, standard alphabet, padded): client-supplied file bodies in,
 * and the exact bytes of names that are not UTF-8 out (see jsontext.h).
 *
 * Strict means: the length is a multiple of 4; only A–Z a–z 0–9 + / are accepted, plus at most
 * two '=' that may only end the text; no whitespace, no line breaks, no URL-safe alphabet.
 * Unused low bits of the last quantum are not checked (like Python's b64decode(validate=True)).
 * The empty string is valid and decodes to zero bytes.
 *
 * The decoding itself is OpenSSL's EVP_DecodeBlock; this module adds the validation and the exact
 * decoded length (EVP_DecodeBlock counts '=' as zero bytes). Pure functions, thread-safe.
 */
#ifndef SQLFS_UTIL_B64_H
#define SQLFS_UTIL_B64_H

#include <stddef.h>
#include <stdint.h>

/* Validates `len` bytes at `in` and yields the exact decoded length. -EINVAL when not strict
 * base64 (the reason goes to err_set()). */
__attribute__((warn_unused_result)) int b64_check(const char *in, size_t len, size_t *ret_len);

/* Decodes validated-or-not input into out, which must hold the length b64_check() reports
 * (3 * len / 4 is always enough). -EINVAL on bad input; out is then unspecified. */
__attribute__((warn_unused_result)) int b64_decode_into(const char *in, size_t len, uint8_t *out,
                                                        size_t *ret_len);

/* Decodes into a new malloc'd buffer (caller frees; never NULL on success, even when empty).
 * -EINVAL, -ENOMEM. */
__attribute__((warn_unused_result)) int b64_decode(const char *in, size_t len, uint8_t **ret,
                                                   size_t *ret_len);

/* Encodes `len` bytes into a new malloc'd NUL-terminated string (caller frees). -ENOMEM,
 * -EFBIG for inputs whose encoding would not fit an int (OpenSSL's limit). */
__attribute__((warn_unused_result)) int b64_encode(const void *in, size_t len, char **ret,
                                                   size_t *ret_len);

#endif

/*
 * secret — the server's signing secret on disk, and constant-time secret comparison.
 *
 * When AUTH_SECRET is not set, the server keeps a generated secret in <data dir>/auth_secret:
 * 32 random bytes written as 64 lowercase hex characters and a newline, in a regular file of mode
 * 0600 owned by the server's user. A file that is group- or world-accessible or owned by someone
 * else is refused rather than used: anyone who can read it can mint tokens for every owner.
 * The file is created atomically (a temporary file renamed into place without replacing an
 * existing one), so concurrent starts agree on one secret and a crash never leaves a partial
 * file. Surrounding whitespace in the file is ignored, so an operator may write their own value
 * (at least SECRET_MIN_LEN bytes: a shorter one is refused like an unsafe file).
 *
 * Ownership: returned secrets are malloc'd NUL-terminated strings; the caller frees them (and
 * should not log them). Thread-safety: reentrant; the file system is the only shared state.
 */
#ifndef SQLFS_AUTH_SECRET_H
#define SQLFS_AUTH_SECRET_H

#include <stdbool.h>
#include <stddef.h>

#define SECRET_FILE_NAME "auth_secret"
/* Longest secret accepted from the file. */
#define SECRET_MAX_LEN 4096
/* Shortest signing secret accepted, in bytes (from AUTH_SECRET, AUTH_SECRET_PREVIOUS or the
 * file): an HS256 key shorter than its 32-byte output can be guessed offline from one token. */
#define SECRET_MIN_LEN 32
/* How to make one, for messages. */
#define SECRET_HOWTO "make one with: openssl rand -hex 32"

/* 0 when a signing secret of len bytes is long enough; else -EINVAL with a one-line message
 * naming `name` (e.g. "AUTH_SECRET"), the rule and SECRET_HOWTO. */
__attribute__((warn_unused_result)) int secret_check_length(const char *name, size_t len);

/* Reads <data_dir>/auth_secret. -ENOENT when the directory or file does not exist; -EACCES
 * when its mode or owner is unsafe; -EINVAL when it is not a regular file, or is shorter than
 * SECRET_MIN_LEN or longer than SECRET_MAX_LEN;
 * other -errno from the file system. Messages via err_set(). */
__attribute__((warn_unused_result)) int secret_load(const char *data_dir, char **ret_secret);

/* Like secret_load, but when the file does not exist it creates the data directory (and missing
 * parents, mode 0700) and a new random secret. *ret_created tells which happened (may be NULL). */
__attribute__((warn_unused_result)) int secret_load_or_create(const char *data_dir,
                                                              char **ret_secret, bool *ret_created);

/* Compares two secrets in time independent of their contents and lengths (it compares SHA-256
 * digests of both with CRYPTO_memcmp). False also when hashing fails. */
bool secret_equal(const void *a, size_t alen, const void *b, size_t blen);

#endif
